"""komd's modbus-server against the MODBUS Application Protocol Specification V1.1b3, with
requests framed by hand (the specification's byte layouts) and read back by independent peers:
every request inside a well-formed ADU gets an answer, with the exception code the state
diagrams of clause 6 give (01 illegal function, 02 illegal data address, 03 illegal data
value), and only a broken MBAP header closes the connection (issue 10 item 7); FC 17 (report
server id, 6.13) and FC 43 / MEI 14 (read device identification, 6.21) as pymodbus 3.0,
libmodbus (tests/peers/mbpeer.c) and tshark read them (issue 10 item 9)."""
import os
import shutil
import socket
import ssl
import struct
import tempfile

import tlspki

from komdtest import Komd, KtPeer, check, free_port, main, run_komd
from mbpeers import MEM, SERVED, Capture, RawClient, excode, mbclient, pyclient, server_conf

from pymodbus.mei_message import ReadDeviceInformationRequest
from pymodbus.other_message import ReportSlaveIdRequest


def h(s):
    return bytes.fromhex(s.replace(" ", ""))


# (what, unit, request PDU, the answer's PDU). Unit 1 serves SERVED (3.23 is an inout uint16,
# 40 is not served), unit 2 serves 3.0, no station has unit 9 or 255.
ANSWERS = [
    # function codes komd does not implement, and codes that are not function codes: 01
    ("function 0", 1, "00", "80 01"),
    ("function 0 with data", 1, "00 00 00 00 01", "80 01"),
    ("0x80", 1, "80", "80 01"),
    ("0x81", 1, "81 00 00 00 01", "81 01"),
    ("0x83 (an exception code as a request)", 1, "83 02", "83 01"),
    ("0xAB", 1, "AB 0E 01 00", "AB 01"),
    ("0xFF", 1, "FF", "FF 01"),
    ("FC 7", 1, "07", "87 01"),
    ("FC 8 diagnostics", 1, "08 00 00 12 34", "88 01"),
    ("FC 11", 1, "0B", "8B 01"),
    ("FC 12", 1, "0C", "8C 01"),
    ("FC 20", 1, "14 07 06 00 04 00 01 00 02", "94 01"),
    ("FC 21", 1, "15 09 06 00 04 00 07 00 01 12 34", "95 01"),
    ("FC 24", 1, "18 00 00", "98 01"),
    ("FC 43 MEI 13 (CANopen)", 1, "2B 0D 00 00", "AB 01"),
    ("FC 127", 1, "7F 00", "FF 01"),
    # PDUs shorter (or longer) than their function needs: 03
    ("the issue's FC 3 of 3 bytes, unit 255", 255, "03 01 60", "83 03"),
    ("FC 3 of 3 bytes", 1, "03 01 60", "83 03"),
    ("FC 1 alone", 1, "01", "81 03"),
    ("FC 1 of 2 bytes", 1, "01 00", "81 03"),
    ("FC 2 of 4 bytes", 1, "02 00 00 00", "82 03"),
    ("FC 3 of 6 bytes", 1, "03 00 0A 00 01 00", "83 03"),
    ("FC 4 alone", 1, "04", "84 03"),
    ("FC 5 of 4 bytes", 1, "05 00 01 FF", "85 03"),
    ("FC 5 alone", 1, "05", "85 03"),
    ("FC 6 of 3 bytes", 1, "06 00 17", "86 03"),
    ("FC 6 of 6 bytes", 1, "06 00 17 00 05 00", "86 03"),
    ("FC 15 of 3 bytes", 1, "0F 00 00", "8F 03"),
    ("FC 15 without byte count", 1, "0F 00 00 00 02", "8F 03"),
    ("FC 15 without its data", 1, "0F 00 00 00 02 01", "8F 03"),
    ("FC 16 of 5 bytes", 1, "10 00 17 00 01", "90 03"),
    ("FC 16 one data byte short", 1, "10 00 17 00 01 02 00", "90 03"),
    ("FC 16 one data byte over", 1, "10 00 17 00 01 02 00 05 00", "90 03"),
    ("FC 22 of 6 bytes", 1, "16 00 18 FF FF 00", "96 03"),
    ("FC 22 alone", 1, "16", "96 03"),
    ("FC 23 of 9 bytes", 1, "17 00 16 00 02 00 17 00 01", "97 03"),
    ("FC 23 one data byte short", 1, "17 00 16 00 02 00 17 00 01 02 00", "97 03"),
    ("FC 17 with data", 1, "11 00", "91 03"),
    ("FC 43 alone", 1, "2B", "AB 03"),
    ("FC 43 MEI 14 without code", 1, "2B 0E", "AB 03"),
    ("FC 43 MEI 14 without object id", 1, "2B 0E 01", "AB 03"),
    ("FC 43 MEI 14 of 5 bytes", 1, "2B 0E 01 00 00", "AB 03"),
    # byte counts that disagree with quantities, quantities out of range: 03
    ("FC 15 byte count 2 for 2 coils", 1, "0F 00 00 00 02 02 03 00", "8F 03"),
    ("FC 15 byte count 0 for 2 coils", 1, "0F 00 00 00 02 00", "8F 03"),
    ("FC 15 quantity 0", 1, "0F 00 00 00 00 00", "8F 03"),
    ("FC 15 quantity 1969", 1, "0F 00 00 07 B1 F7", "8F 03"),
    ("FC 16 byte count 4 for 1 register", 1, "10 00 17 00 01 04 00 05 00 06", "90 03"),
    ("FC 16 quantity 124", 1, "10 00 00 00 7C F8", "90 03"),
    ("FC 16 quantity 0", 1, "10 00 17 00 00 00", "90 03"),
    ("FC 23 byte count 4 for 1 register", 1, "17 00 16 00 02 00 17 00 01 04 00 05 00 06", "97 03"),
    ("FC 23 read quantity 126", 1, "17 00 00 00 7E 00 17 00 01 02 00 05", "97 03"),
    ("FC 23 write quantity 0", 1, "17 00 16 00 02 00 17 00 00 00", "97 03"),
    ("FC 23 write quantity 122", 1, "17 00 00 00 01 00 00 00 7A F4", "97 03"),
    ("FC 1 quantity 0", 1, "01 00 00 00 00", "81 03"),
    ("FC 2 quantity 2001", 1, "02 00 00 07 D1", "82 03"),
    ("FC 3 quantity 126", 1, "03 00 00 00 7E", "83 03"),
    ("FC 4 quantity 0", 1, "04 00 00 00 00", "84 03"),
    ("FC 5 value 0x0001", 1, "05 00 01 00 01", "85 03"),
    ("FC 43 MEI 14 code 0", 1, "2B 0E 00 00", "AB 03"),
    ("FC 43 MEI 14 code 5", 1, "2B 0E 05 00", "AB 03"),
    # addresses: 02
    ("FC 3 past 65535", 1, "03 FF FF 00 02", "83 02"),
    ("FC 16 past 65535", 1, "10 FF FF 00 02 04 00 01 00 02", "90 02"),
    ("FC 23 reading what no tag serves", 1, "17 00 28 00 01 00 17 00 01 02 00 05", "97 02"),
    ("FC 43 individual object 7", 1, "2B 0E 04 07", "AB 02"),
    ("FC 43 individual object 3 (not configured)", 1, "2B 0E 04 03", "AB 02"),
    ("FC 43 individual object 0x80", 1, "2B 0E 04 80", "AB 02"),
    # a malformed request is malformed whichever unit it names; a valid one for no station: 0B
    ("function 0, unit 9", 9, "00", "80 01"),
    ("FC 3 of 3 bytes, unit 9", 9, "03 01 60", "83 03"),
    ("FC 3, unit 9", 9, "03 00 0A 00 01", "83 0B"),
    ("FC 17, unit 9", 9, "11", "91 0B"),
]


def test_every_request_answered():
    """Each request of ANSWERS, alone and then all pipelined on one connection, gets its answer;
    the connection stays open, nothing was written (m.U, written by the rejected FC 16 and FC 23
    requests, keeps its value) and no protocol error is counted."""
    port = free_port()
    with Komd(server_conf(port)).start() as k:
        c = RawClient(port, timeout=2)
        for what, unit, req, want in ANSWERS:
            got = c.ask(unit, h(req))
            check(got is not None, "%s (%s): no answer%s" % (what, req, "" if c.is_open() else
                                                             ", the connection was closed"))
            check(got == h(want), "%s (%s): answer %s, expected %s" % (what, req, got.hex(" "), want))
        # pipelined: every answer, in order
        tids = [c.send(unit, h(req)) for what, unit, req, want in ANSWERS]
        for tid, (what, unit, req, want) in zip(tids, ANSWERS):
            a = c.answer()
            check(a is not None, "pipelined %s: no answer" % what)
            check(a[0] == tid and a[1] == unit and a[2] == h(want),
                  "pipelined %s: answer %s, expected tid %d unit %d %s" % (what, a, tid, unit, want))
        check(c.ask(1, h("03 00 17 00 01")) == h("03 02 FD E8"), "3.23 still 65000, and the connection works")
        check(k.tag("m.U")["value"] == 65000, "nothing written: %s" % k.tag("m.U"))
        c.close()
        check(k.line("srv")["counters"]["protocol_errors"] == 0, "no protocol error: %s" % k.line("srv")["counters"])
        # libmodbus reads the answers too
        out = mbclient(port, 1, "raw:00", "raw:81", "raw:030160", "raw:2B0E", "raw:0300170001")
        check(out == ["raw 8001", "raw 8101", "raw 8303", "raw AB03", "raw 0302FDE8"], "libmodbus: %s" % out)
        out = mbclient(port, 255, "raw:030160")
        check(out == ["raw 8303"], "libmodbus, the issue's request for unit 255: %s" % out)


def test_only_a_broken_header_closes():
    """A request with an unknown unit on a line with unknown_unit = "ignore" stays unanswered
    (as configured), whatever it asks; a broken MBAP header (protocol id, length) still closes."""
    port = free_port()
    conf = MEM + """lines = ( { name = "srv"; protocol = "modbus-server"; host = "127.0.0.1"; port = %d;
      unknown_unit = "ignore"; stations = ( { name = "u1"; address = 1; tags = ( %s ); } ); } );""" % (port, SERVED)
    with Komd(conf).start() as k:
        c = RawClient(port)
        # answers come in the order of the requests: the first answer is unit 1's
        for req in ("00", "03 01 60", "03 00 0A 00 01", "11"):
            c.send(9, h(req))
        tid = c.send(1, h("00"))
        a = c.answer()
        check(a is not None and a[0] == tid and a[2] == h("80 01"), "unit 9 ignored, unit 1 answered: %s" % (a,))
        check(c.ask(1, h("03 01 60")) == h("83 03"), "unit 1: a short FC 3 answered")
        check(c.ask(1, h("03 00 0A 00 02")) == h("03 04 3F C0 00 00"), "unit 1: FC 3")
        c.s.sendall(struct.pack(">HHHB", 7, 1, 6, 1) + h("03 00 0A 00 01"))
        check(c.answer() is None and not c.is_open(), "protocol id 1 closes")
        k.wait_log(r"line srv: .*protocol error: protocol id 1", 5)
        c.close()


def test_answers_before_a_broken_header_go_out():
    """Requests answered before a broken MBAP header in the same read still get their
    answers: the connection closes after they are written, not before (over TLS the answers
    wait in the session's output when the header is found: they used to be thrown away)."""
    pki = tempfile.mkdtemp(prefix="komd-pki-")
    tlspki.make(pki)
    try:
        for tls in ("", 'tls = { my_cert = "%s/server.pem"; my_key = "%s/server.key"; };' % (pki, pki)):
            port = free_port()
            with Komd(server_conf(port, tls)).start() as k:
                raw = socket.create_connection(("127.0.0.1", port), timeout=5)
                if tls:
                    ctx = ssl.create_default_context(cafile=os.path.join(pki, "ca.pem"))
                    raw = ctx.wrap_socket(raw, server_hostname="localhost")
                c = RawClient.__new__(RawClient)
                c.s, c.tid = raw, 0
                good = struct.pack(">HHHB", 5, 0, 6, 1) + h("03 00 0A 00 02")
                c.s.sendall(good * 3 + struct.pack(">HHHB", 7, 1, 6, 1) + h("03 00 0A 00 01"))
                for _ in range(3):
                    a = c.answer()
                    check(a is not None and a[0] == 5 and a[2] == h("03 04 3F C0 00 00"),
                          "%s: the answers first: %s" % ("TLS" if tls else "plain", a))
                check(c.answer() is None, "then the close")
                k.wait_log(r"line srv: .*protocol error: protocol id 1", 5)
                raw.close()
    finally:
        shutil.rmtree(pki, ignore_errors=True)


def test_busy_instead_of_closing():
    """A client that pipelines more requests than komd keeps waiting (256, each a write held by
    a komtext device that does not answer) gets exception 6 (server device busy) for the
    rest, in order, after the held writes time out; it is not closed on."""
    port = free_port()
    kt = KtPeer("127.0.0.1", answer=False)
    conf = """write_timeout = 1; lines = (
      { name = "srv"; protocol = "modbus-server"; host = "127.0.0.1"; port = %d;
        stations = ( { name = "u1"; address = 1; tags = ( { name = "k.y"; address = "3.0"; direction = "inout"; } ); } ); },
      { name = "kt"; protocol = "komtext-client"; host = "127.0.0.1"; port = %d;
        stations = ( { name = "k"; address = 1; tags = (
          { name = "k.y"; address = "y"; type = "int"; direction = "inout"; } ); } ); } );""" % (port, kt.port)
    try:
        with Komd(conf).start() as k:
            k.until(lambda: kt.nconns() == 1, 5, "komtext line connected")
            c = RawClient(port, timeout=10)
            tids = [c.send(1, h("06 00 00 00 %02X" % (i & 0xff))) for i in range(260)]
            got = [c.answer() for _ in tids]
            check(all(a is not None for a in got), "every request answered: %d" % sum(a is not None for a in got))
            check([a[0] for a in got] == tids, "in order")
            check([a[2] for a in got[:256]] == [h("86 04")] * 256, "the held writes fail after write_timeout: %s"
                  % {a[2].hex() for a in got[:256]})
            check([a[2] for a in got[256:]] == [h("86 06")] * 4, "the rest: busy: %s" % [a[2].hex() for a in got[256:]])
            check(len(kt.received("SET ")) == 256, "256 writes reached the device: %d" % len(kt.received("SET ")))
            check(c.ask(1, h("03 00 00 00 01")) is not None and c.is_open(), "the connection goes on")
            c.close()
    finally:
        kt.close()


# ---- FC 17 and FC 43 / MEI 14 ----

LONG = "x" * 200


def ident_conf(port):
    """u1 with the defaults, u2 with every key, u3 with objects too long for one response."""
    return MEM + """lines = ( { name = "srv"; protocol = "modbus-server"; host = "127.0.0.1"; port = %d;
      stations = ( { name = "u1"; address = 1; tags = ( %s ); },
        { name = "u2"; address = 2; vendor_name = "ACME Power"; product_code = "GW-7"; revision = "2.11";
          vendor_url = "https://example.com/gw"; product_name = "Gateway seven"; model_name = "GW-7 rack";
          tags = ( { name = "m.u2"; address = "3.0"; } ); },
        { name = "u3"; address = 3; vendor_url = "%s"; product_name = "%s"; model_name = "%s";
          tags = ( { name = "m.in"; address = "3.0"; } ); } ); } );""" % (port, SERVED, LONG + "u", LONG + "p",
                                                                        LONG + "m")


def version():
    r = run_komd("-V")
    check(r.returncode == 0 and r.stdout.startswith("komd "), "komd -V: %s" % r.stdout)
    return r.stdout.split()[1]


def devid(c, unit, code, obj=0):
    r = c.execute(ReadDeviceInformationRequest(read_code=code, object_id=obj, unit=unit))
    check(not r.isError(), "FC 43 unit %d code %d object %d: %s" % (unit, code, obj, r))
    return r


def devid_all(c, unit, code):
    """Stream access to the end (More Follows), as a master does: {id: value}, responses."""
    info, rs, obj = {}, [], 0
    for _ in range(10):
        r = devid(c, unit, code, obj)
        rs.append(r)
        info.update(r.information)
        if r.more_follows == 0:
            return info, rs
        check(r.more_follows == 0xFF, "More Follows 00 or FF: %#x" % r.more_follows)
        check(r.next_object_id > obj or not rs[:-1], "Next Object Id %d moves on from %d" % (r.next_object_id, obj))
        obj = r.next_object_id
    raise AssertionError("no end of the stream")


def test_device_identification_pymodbus():
    port = free_port()
    ver = version()
    with Komd(ident_conf(port)).start() as k:
        c = pyclient(port)
        # defaults: vendor and product code "komd", revision = komd's version; basic level only
        r = devid(c, 1, 1)
        check(r.information == {0: b"komd", 1: b"komd", 2: ver.encode()}, "basic objects: %s" % r.information)
        check(r.conformity == 0x81 and r.more_follows == 0 and r.next_object_id == 0 and r.read_code == 1,
              "basic level, stream and individual access: %#x %#x %#x %d" % (r.conformity, r.more_follows,
                                                                           r.next_object_id, r.read_code))
        r = devid(c, 1, 2)
        check(r.information == {0: b"komd", 1: b"komd", 2: ver.encode()} and r.read_code == 2,
              "regular asked of a basic device: its basic objects (6.21): %s" % r.information)
        r = devid(c, 1, 4, 1)
        check(r.information == {1: b"komd"} and r.read_code == 4, "individual access: %s" % r.information)
        check(excode(c.execute(ReadDeviceInformationRequest(read_code=4, object_id=4, unit=1)), "object 4") == 2,
              "an object it does not have: exception 2")
        # every key set: regular level
        full = {0: b"ACME Power", 1: b"GW-7", 2: b"2.11", 3: b"https://example.com/gw", 4: b"Gateway seven",
                5: b"GW-7 rack"}
        r = devid(c, 2, 2)
        check(r.information == full and r.conformity == 0x82, "regular: %#x %s" % (r.conformity, r.information))
        check(devid(c, 2, 1).information == {k_: full[k_] for k_ in (0, 1, 2)}, "basic: objects 0..2 only")
        check(devid(c, 2, 3).information == full, "extended asked of a regular device: the regular objects")
        check(devid(c, 2, 2, 4).information == {4: full[4], 5: full[5]}, "stream access from object 4")
        check(devid(c, 2, 1, 3).information == {k_: full[k_] for k_ in (0, 1, 2)},
              "basic from object 3 (not a basic object): from the beginning")
        check(devid(c, 2, 2, 0x10).information == full, "from an unknown object: from the beginning")
        for o in range(6):
            check(devid(c, 2, 4, o).information == {o: full[o]}, "individual object %d" % o)
        # objects that need several transactions: More Follows, Next Object Id
        info, rs = devid_all(c, 3, 2)
        check(len(rs) >= 2 and rs[0].more_follows == 0xFF, "several responses: %d" % len(rs))
        check(info == {0: b"komd", 1: b"komd", 2: ver.encode(), 3: (LONG + "u").encode(), 4: (LONG + "p").encode(),
                       5: (LONG + "m").encode()}, "every object once: %s" % info)
        check(devid(c, 3, 4, 5).information == {5: (LONG + "m").encode()}, "a long object alone")
        # FC 17: server id (the unit), run indicator ON, then vendor, product code and revision
        r = c.execute(ReportSlaveIdRequest(unit=1))
        check(not r.isError(), "FC 17: %s" % r)
        check(r.identifier == b"\x01\xffkomd komd " + ver.encode(), "FC 17 data: %r" % r.identifier)
        r = c.execute(ReportSlaveIdRequest(unit=2))
        check(r.identifier == b"\x02\xffACME Power GW-7 2.11", "FC 17 unit 2: %r" % r.identifier)
        check(excode(c.execute(ReportSlaveIdRequest(unit=9)), "FC 17 unit 9") == 0x0B, "no such unit: 0B")
        c.close()
        check(k.line("srv")["counters"]["protocol_errors"] == 0, "no protocol error")


def test_device_identification_libmodbus_and_tshark():
    """libmodbus reads FC 17 (modbus_report_slave_id) and the bytes of FC 43 (a raw request);
    tshark decodes every frame of both without a malformed field."""
    port = free_port()
    ver = version().encode()
    path = os.path.join(tempfile.mkdtemp(prefix="komdcap-"), "mbid.pcapng")
    cap = Capture(port, path)
    try:
        with Komd(ident_conf(port)).start():
            out = mbclient(port, 2, "id17", "raw:2B0E0100", "raw:2B0E0204", "raw:2B0E0402", "raw:2B0E0407")
            check(out[0] == "id17 " + (b"\x02\xffACME Power GW-7 2.11").hex().upper(), "FC 17: %s" % out[0])
            check(h(out[1][4:]) == h("2B 0E 01 82 00 00 03") + b"\x00\x0aACME Power\x01\x04GW-7\x02\x042.11",
                  "FC 43 basic: %s" % out[1])
            check(h(out[2][4:]) == h("2B 0E 02 82 00 00 02") + b"\x04\x0dGateway seven\x05\x09GW-7 rack",
                  "FC 43 regular from object 4: %s" % out[2])
            check(h(out[3][4:]) == h("2B 0E 04 82 00 00 01 02 04") + b"2.11", "FC 43 individual: %s" % out[3])
            check(out[4] == "raw AB02", "FC 43 individual object 7: %s" % out[4])
            out = mbclient(port, 1, "id17", "raw:2B0E0100", "raw:00")
            check(out[0] == "id17 " + (b"\x01\xffkomd komd " + ver).hex().upper(), "FC 17 defaults: %s" % out[0])
            check(h(out[1][4:]) == h("2B 0E 01 81 00 00 03 00 04") + b"komd\x01\x04komd\x02" + bytes([len(ver)]) + ver,
                  "FC 43 defaults: %s" % out[1])
            out = mbclient(port, 3, "raw:2B0E0200")
            pdu = h(out[0][4:])
            check(len(pdu) <= 253 and pdu[4] == 0xFF and pdu[6] < 6, "FC 43 in parts: %s" % out[0])
            c = pyclient(port)
            devid_all(c, 3, 2)
            c.close()
        cap.stop()
        bad = cap.read("_ws.malformed || _ws.expert.severity == error")
        check(bad == [], "no malformed frames: %s" % bad)
        names = cap.read("modbus.object_str_value", ("modbus.object_str_value",))
        check(any("ACME Power" in n for n in names) and any("GW-7 rack" in n for n in names),
              "tshark reads the objects: %s" % names[:6])
        fcs = {l for l in cap.read("modbus", ("modbus.func_code",))}
        check({"17", "43"} <= fcs, "function codes seen: %s" % fcs)
    finally:
        if cap.p.proc.poll() is None:
            cap.stop()


def komd_t(conf):
    """komd -t on conf: (exit status, its output)."""
    d = tempfile.mkdtemp(prefix="komdconf-")
    path = os.path.join(d, "komd.conf")
    with open(path, "w") as f:
        f.write('control_socket = "%s";\n' % os.path.join(d, "ctl.sock") + conf)
    r = run_komd("-t", "-c", path)
    os.remove(path)
    os.rmdir(d)
    return r.returncode, r.stdout + r.stderr


def test_device_identification_config():
    """The keys are checked at load: mandatory objects not empty, each object short enough for
    one response."""
    port = free_port()
    for key, val, msg in (("vendor_name", "", "vendor_name"), ("revision", "", "revision"),
                          ("model_name", "y" * 245, "model_name")):
        conf = MEM + """lines = ( { name = "srv"; protocol = "modbus-server"; host = "127.0.0.1"; port = %d;
          stations = ( { name = "u1"; address = 1; %s = "%s"; tags = ( %s ); } ); } );""" % (port, key, val, SERVED)
        rc, out = komd_t(conf)
        check(rc != 0 and msg in out and "komd.conf:" in out and "unknown key" not in out,
              "%s = %r refused with file:line: %s" % (key, val[:10], out))
    # and as a client station key it is unknown
    conf = """lines = ( { name = "cli"; protocol = "modbus-client"; host = "127.0.0.1"; port = %d;
      stations = ( { name = "u1"; address = 1; period = 1; vendor_name = "x";
        tags = ( { name = "x"; address = "3.0"; type = "int"; } ); } ); } );""" % port
    rc, out = komd_t(conf)
    check(rc != 0 and "unknown key 'vendor_name'" in out, "client: %s" % out)


if __name__ == "__main__":
    main([test_every_request_answered, test_only_a_broken_header_closes, test_answers_before_a_broken_header_go_out,
          test_busy_instead_of_closing,
          test_device_identification_pymodbus,
          test_device_identification_libmodbus_and_tshark, test_device_identification_config])
