"""komd's modbus-server against independent peers: pymodbus 3.0 as its client (reads, writes,
exceptions, the image kept in step with the tags, writes routed to acquiring lines), malformed
frames; libmodbus (tests/peers/mbpeer.c) as server and client; tshark on the loopback. The client
side is in test_modbus_client.py, conformance to the specification in test_modbus_conformance.py."""
import os
import socket
import struct
import tempfile
import threading
import time

from komdtest import Komd, KtPeer, check, free_port, main
from mbpeers import (MEM, SERVED, Capture, MbPeer, RawServer, bits, excode, mbclient, pyclient, regs, server_conf,
                     station, station_state, tag, valid)

from pymodbus.pdu import ExceptionResponse
from pymodbus.register_read_message import ReadWriteMultipleRegistersRequest
from pymodbus.register_write_message import MaskWriteRegisterRequest

# ---- komd as server ----


def test_server_reads_pymodbus():
    port = free_port()
    with Komd(server_conf(port)).start() as k:
        c = pyclient(port)
        r = regs(c.read_holding_registers(10, 14, slave=1), "FC3 10..23")
        check(r[0:2] == [0x3FC0, 0x0000], "f3.10 = 1.5 big-endian words: %s" % r[0:2])
        check(r[2:4] == [0x0000, 0x3FC0], "F3.12 = 1.5 swapped: %s" % r[2:4])
        check(r[4:6] == [0x1234, 0x5678], "L3.14: %s" % r[4:6])
        check(r[6:8] == [0x5678, 0x1234], "Ll3.16: %s" % r[6:8])
        check(r[8:10] == [0xFFFF, 0xFFFE], "S3.18 = -2: %s" % r[8:10])
        check(r[10:12] == [0xFFFE, 0xFFFF], "Sl3.20 = -2: %s" % r[10:12])
        check(r[12] == 0xFFFB, "I3.22 = -5: %#x" % r[12])
        check(r[13] == 65000, "3.23 = 65000: %d" % r[13])
        check(regs(c.read_holding_registers(24, 1, slave=1), "FC3 24") == [0x21], "bits 0 and 5 of 3.24")
        check(bits(c.read_coils(0, 3, slave=1), 3, "FC1") == [True, False, True], "coils 1.0..1.2")
        check(bits(c.read_discrete_inputs(0, 2, slave=1), 2, "FC2") == [False, True], "inputs 2.0, 2.1")
        check(regs(c.read_input_registers(0, 3, slave=1), "FC4") == [321, 0xC010, 0x0000],
              "input registers 4.0 = 321, f4.1 = -2.25")
        check(regs(c.read_holding_registers(30, 1, slave=1), "FC3 30") == [9], "an input tag is readable")
        # a second station (unit 2) on the same line
        check(regs(c.read_holding_registers(0, 1, slave=2), "unit 2") == [222], "unit 2 serves m.u2")
        check(excode(c.read_holding_registers(10, 1, slave=2), "unit 2 at 10") == 2, "unit 2 does not serve 10")
        # a value changed in komd is served at once
        k.ctl("set", "m.f", "-3.5")
        check(regs(c.read_holding_registers(10, 2, slave=1), "FC3 10") == [0xC060, 0], "m.f = -3.5 served")
        c.close()


def test_server_writes_pymodbus():
    port = free_port()
    with Komd(server_conf(port)).start() as k:
        c = pyclient(port)
        check(not c.write_coil(1, True, slave=1).isError(), "FC5")
        check(k.tag("m.c1")["value"] is True, "FC5 set m.c1: %s" % k.tag("m.c1"))
        check(not c.write_register(23, 1234, slave=1).isError(), "FC6")
        check(k.tag("m.U")["value"] == 1234, "FC6 set m.U: %s" % k.tag("m.U"))
        check(not c.write_coils(0, [False, True, False], slave=1).isError(), "FC15")
        check([k.tag(t)["value"] for t in ("m.c0", "m.c1", "m.c2")] == [False, True, False], "FC15 set the coils")
        check(not c.write_registers(10, [0x4049, 0x0FDB, 0x0000, 0x4120], slave=1).isError(), "FC16 two floats")
        check(abs(k.tag("m.f")["value"] - 3.1415927) < 1e-6, "f3.10 = pi: %s" % k.tag("m.f"))
        check(k.tag("m.fs")["value"] == 10.0, "F3.12 = 10 (swapped words): %s" % k.tag("m.fs"))
        check(not c.write_registers(14, [0xFFFF, 0xFFFF, 0x0002, 0x0001], slave=1).isError(), "FC16 L, Ll")
        check(k.tag("m.L")["value"] == 4294967295, "L3.14 = 2^32-1: %s" % k.tag("m.L"))
        check(k.tag("m.Ll")["value"] == 0x00010002, "Ll3.16: %s" % k.tag("m.Ll"))
        check(not c.write_registers(18, [0xFFFF, 0xFF38, 0xFF38, 0xFFFF, 0x8000], slave=1).isError(), "FC16 S Sl I")
        check([k.tag(t)["value"] for t in ("m.S", "m.Sl", "m.I")] == [-200, -200, -32768], "signed values")
        # FC 22: clear bit 0, set bit 5 stays, via masks (and = ~1 & ~0x20, or = 0x20)
        r = c.execute(MaskWriteRegisterRequest(24, 0xFFDE, 0x0020, unit=1))
        check(not r.isError(), "FC22: %s" % r)
        check(k.tag("m.b0")["value"] is False and k.tag("m.b5")["value"] is True, "FC22 bits: %s %s" % (
            k.tag("m.b0"), k.tag("m.b5")))
        # FC 23: write 23 then read 22..23 (the write comes first)
        r = c.execute(ReadWriteMultipleRegistersRequest(read_address=22, read_count=2, write_address=23,
                                                        write_registers=[4321], unit=1))
        check(not r.isError() and list(r.registers) == [0x8000, 4321], "FC23 write then read: %s" % r)
        check(k.tag("m.U")["value"] == 4321, "FC23 set m.U")
        c.close()


def test_server_exceptions_pymodbus():
    port, port2 = free_port(), free_port()
    ign = """, { name = "ign"; protocol = "modbus-server"; host = "127.0.0.1"; port = %d; unknown_unit = "ignore";
      stations = ( { name = "i1"; address = 1; tags = ( { name = "m.u2"; address = "3.0"; } ); } ); }""" % port2
    with Komd(server_conf(port, extra_lines=ign)).start() as k:
        c = pyclient(port)
        # illegal function: FC 7 (read exception status), FC 11 (get comm event counter)
        from pymodbus.other_message import GetCommEventCounterRequest, ReadExceptionStatusRequest
        check(excode(c.execute(ReadExceptionStatusRequest(unit=1)), "FC7") == 1, "FC7: illegal function")
        check(excode(c.execute(GetCommEventCounterRequest(unit=1)), "FC11") == 1, "FC11: illegal function")
        # illegal data address
        check(excode(c.read_holding_registers(40, 1, slave=1), "unmapped") == 2, "unmapped register")
        check(excode(c.read_holding_registers(23, 3, slave=1), "23..24 mapped, 25 not") == 2, "a range past the map")
        check(excode(c.read_holding_registers(29, 2, slave=1), "29 unmapped") == 2, "a gap in the range")
        check(excode(c.write_register(10, 1, slave=1), "half a float") == 2, "partial write of a float")
        check(excode(c.write_registers(11, [1, 2], slave=1), "straddling floats") == 2, "write across two floats")
        check(excode(c.write_register(30, 1, slave=1), "direction in") == 2, "write to a direction in tag")
        check(excode(c.write_coil(5, True, slave=1), "unmapped coil") == 2, "unmapped coil")
        check(k.tag("m.f")["value"] == 1.5 and k.tag("m.in")["value"] == 9, "nothing was written")
        # illegal data value: quantity 0 and 126 for FC 3
        check(excode(c.read_holding_registers(10, 0, slave=1), "quantity 0") == 3, "FC3 quantity 0")
        check(excode(c.read_holding_registers(10, 126, slave=1), "quantity 126") == 3, "FC3 quantity 126")
        # unknown unit: exception 0x0B
        check(excode(c.read_holding_registers(10, 2, slave=9), "unit 9") == 0x0B, "unknown unit: 0x0B")
        # the connection is still fine
        check(regs(c.read_holding_registers(10, 2, slave=1), "after exceptions") == [0x3FC0, 0], "still served")
        c.close()
        # unknown_unit = "ignore": no answer at all (pymodbus times out), unit 1 answers
        c2 = pyclient(port2)
        # pymodbus 3.0.0rc1 cannot connect with a timeout under 1 s (connect() gets EINPROGRESS):
        # shorten it once connected
        c2.params.timeout = 0.5
        c2.socket.settimeout(0.5)
        t0 = time.monotonic()
        r = c2.read_holding_registers(0, 1, slave=7)
        check(r.isError() and not isinstance(r, ExceptionResponse), "no reply for unit 7: %s" % r)
        check(time.monotonic() - t0 >= 0.4, "pymodbus waited for its timeout")
        c2.close()
        c2 = pyclient(port2)
        check(regs(c2.read_holding_registers(0, 1, slave=1), "ign unit 1") == [222], "unit 1 on the ignore line")
        c2.close()


def test_server_image_follows_tags():
    """The served image is cached and kept in step with the tags: every change (komctl set,
    a client's write, a value that cannot be encoded and then can) shows in the next read,
    on a station whose spans overlap (not cached) as on one whose do not, across
    reconnections and a reload."""
    port = free_port()
    mem = """tags = ( { name = "x.a"; type = "int"; initial = 5; }, { name = "x.big"; type = "int"; initial = 70000; },
      { name = "x.c"; type = "int"; initial = 1; }, { name = "x.b3"; type = "bool"; initial = false; },
      { name = "x.b9"; type = "bool"; initial = true; }, { name = "x.o1"; type = "int"; initial = 1; },
      { name = "x.o2"; type = "int"; initial = 1; }, { name = "x.w"; type = "int"; initial = 40; } );
"""

    def conf(extra=""):
        return mem + """lines = ( { name = "srv"; protocol = "modbus-server"; host = "127.0.0.1"; port = %d; %s
          stations = ( { name = "u1"; address = 1; tags = (
              { name = "x.a"; address = "3.0"; direction = "inout"; },
              { name = "x.big"; address = "3.1"; },
              { name = "x.b3"; address = "3.2.3"; direction = "inout"; },
              { name = "x.b9"; address = "3.2.9"; direction = "inout"; },
              { name = "x.c"; address = "1.7"; direction = "inout"; } ); },
            { name = "u2"; address = 2; tags = (
              { name = "x.o1"; address = "3.5.2"; }, { name = "x.o2"; address = "3.5.2"; },
              { name = "x.w"; address = "3.6"; direction = "inout"; } ); } ); } );""" % (port, extra)
    with Komd(conf()).start() as k:
        c = pyclient(port)
        check(regs(c.read_holding_registers(0, 1, slave=1), "3.0") == [5], "x.a = 5 served")
        # 70000 does not fit a uint16: device failure, named in the station's last error
        check(excode(c.read_holding_registers(0, 2, slave=1), "3.0..1") == 4, "70000 at 3.1: exception 4")
        check("x.big" in station_state(k, "srv", "u1")["last_error"], "last error names x.big: %s"
              % station_state(k, "srv", "u1"))
        k.ctl("set", "x.big", "65535")
        check(regs(c.read_holding_registers(0, 3, slave=1), "3.0..2") == [5, 65535, 0x200],
              "x.big fits now; bits 3 (off) and 9 (on) of 3.2")
        k.ctl("set", "x.a", "-1")
        check(excode(c.read_holding_registers(0, 1, slave=1), "x.a = -1") == 4, "-1 in a uint16: exception 4")
        check(regs(c.read_holding_registers(1, 2, slave=1), "3.1..2") == [65535, 0x200],
              "a bad value elsewhere does not spoil the rest")
        k.ctl("set", "x.a", "6")
        k.ctl("set", "x.b3", "true")
        k.ctl("set", "x.b9", "false")
        check(regs(c.read_holding_registers(0, 3, slave=1), "after set") == [6, 65535, 0x8], "komctl set is served")
        # a client's writes change the tags, and the next read shows them
        check(not c.write_register(0, 77, slave=1).isError(), "FC6 to 3.0")
        check(not c.write_coil(7, False, slave=1).isError(), "FC5 to 1.7")
        check(not c.execute(MaskWriteRegisterRequest(2, 0xFFFF & ~0x208, 0x200, unit=1)).isError(), "FC22")
        check(regs(c.read_holding_registers(0, 3, slave=1), "after writes") == [77, 65535, 0x200], "writes served")
        check(bits(c.read_coils(7, 1, slave=1), 1, "1.7") == [False], "coil 1.7 written off")
        check(excode(c.read_holding_registers(0, 4, slave=1), "3.3") == 2, "3.3 is not served")
        # u2: two tags on one bit (not cached): still follows the tags
        check(regs(c.read_holding_registers(5, 2, slave=2), "u2") == [4, 40], "u2: bit 2 of 3.5, 3.6 = 40")
        k.ctl("set", "x.w", "41")
        check(regs(c.read_holding_registers(6, 1, slave=2), "u2 3.6") == [41], "u2: 3.6 = 41")
        c.close()
        # a new connection, and a reload that changes the line: the image is rebuilt
        c = pyclient(port)
        check(regs(c.read_holding_registers(0, 1, slave=1), "reconnected") == [77], "3.0 after reconnecting")
        c.close()
        k.ctl("set", "x.a", "78")
        k.write_conf(conf("max_clients = 50;"))
        k.ctl("reload")
        k.until(lambda: k.line("srv")["listeners"], 10, "the reloaded line to listen")
        c = pyclient(port)
        check(regs(c.read_holding_registers(0, 1, slave=1), "reloaded") == [78], "3.0 after the reload")
        c.close()


def test_server_write_routed_to_acquirer():
    """A write to a tag acquired by a Modbus client line (from a RawServer device that holds
    its answers) and by a komtext client line: the Modbus answer waits for the device."""
    port = free_port()
    dev = RawServer({1: "normal"}, regs={(1, 3, 0): 5})
    kt = KtPeer("127.0.0.1", answer=False)
    conf = """write_timeout = 1; lines = (
      { name = "srv"; protocol = "modbus-server"; host = "127.0.0.1"; port = %d;
        stations = ( { name = "u1"; address = 1; tags = (
          { name = "d.x"; address = "3.0"; direction = "inout"; },
          { name = "k.y"; address = "3.1"; direction = "inout"; } ); } ); },
      { name = "cli"; protocol = "modbus-client"; host = "127.0.0.1"; port = %d;
        stations = ( { name = "d"; address = 1; period = 0.2; response_timeout = 2; retries = 0;
          tags = ( { name = "d.x"; address = "3.0"; type = "int"; direction = "inout"; } ); } ); },
      { name = "kt"; protocol = "komtext-client"; host = "127.0.0.1"; port = %d;
        stations = ( { name = "k"; address = 1; tags = (
          { name = "k.y"; address = "y"; type = "int"; direction = "inout"; } ); } ); } );""" % (
        port, dev.port, kt.port)
    with Komd(conf).start() as k:
        k.until(lambda: k.tag("d.x")["value"] == 5 and not k.tag("d.x")["invalid"], 5, "d.x polled")
        k.until(lambda: kt.nconns() == 1, 5, "komtext line connected")
        c = pyclient(port)
        # Modbus-acquired tag: the device receives FC 6 at 0 with 77
        n6 = dev.count(fc=6)
        r = c.write_register(0, 77, slave=1)
        check(not r.isError(), "write routed to the Modbus device: %s" % r)
        check(dev.count(fc=6) == n6 + 1, "the device got one FC 6")
        check(dev.regs[(1, 3, 0)] == 77, "the device's register is 77")
        # komtext-acquired tag: the answer waits for the device's ACK
        res = {}
        th = threading.Thread(target=lambda: res.setdefault("r", c.write_register(1, 42, slave=1)))
        th.start()
        k.until(lambda: kt.received("SET "), 5, "SET at the komtext device")
        f = kt.received("SET ")[0].split()
        check(f[2] == "y" and f[-1] == "42", "SET y 42: %s" % f)
        th.join(0.3)
        check(th.is_alive(), "the Modbus answer waits for the komtext device's answer")
        kt.send("ACK %s\n" % f[1])
        th.join(5)
        check(not th.is_alive() and not res["r"].isError(), "answered after the ACK: %s" % res)
        # pipelined on one connection: a write held by the komtext device, then a read: both
        # answers wait, and come in the order of the requests
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(struct.pack(">HHHBBHH", 0x101, 0, 6, 1, 6, 1, 44) + struct.pack(">HHHBBHH", 0x102, 0, 6, 1, 3, 0, 1))
        k.until(lambda: len(kt.received("SET ")) >= 2, 5, "second SET at the komtext device")
        f = kt.received("SET ")[1].split()
        s.settimeout(0.3)
        try:
            early = s.recv(100)
        except socket.timeout:
            early = None
        check(early is None, "nothing answered before the device's ACK: %r" % early)
        kt.send("ACK %s\n" % f[1])
        s.settimeout(5)
        got = b""
        while len(got) < 12 + 11:
            d = s.recv(100)
            check(d, "both answers: %r" % got)
            got += d
        check(got[:12] == struct.pack(">HHHBBHH", 0x101, 0, 6, 1, 6, 1, 44), "first the FC 6 echo: %r" % got)
        check(got[12:] == struct.pack(">HHHBBBH", 0x102, 0, 5, 1, 3, 2, 77), "then the FC 3 answer: %r" % got)
        s.close()
        # a NAK becomes exception 4 (device failure)
        kt.nak, kt.answer = "refused", True
        check(excode(c.write_register(1, 43, slave=1), "NAK") == 4, "a refused write: exception 4")
        # a device that never answers: exception 4 after write_timeout (1 s here)
        kt.answer = False
        t0 = time.monotonic()
        check(excode(c.write_register(1, 45, slave=1), "no answer") == 4, "an unanswered write: exception 4")
        check(0.8 <= time.monotonic() - t0 < 2.5, "after write_timeout: %.2f s" % (time.monotonic() - t0))
        c.close()
    dev.close()
    kt.close()


def test_server_malformed_frames():
    port = free_port()
    with Komd(server_conf(port)).start() as k:
        good = pyclient(port)
        for what, data, logrx in (
                ("protocol id", struct.pack(">HHHB", 1, 7, 6, 1) + bytes([3, 0, 10, 0, 2]),
                 r"protocol error: protocol id 7"),
                ("length 255", struct.pack(">HHHB", 2, 0, 255, 1) + bytes([3, 0, 10, 0, 2]),
                 r"protocol error: MBAP length 255 out of range"),
                ("length 1", struct.pack(">HHHB", 3, 0, 1, 1) + bytes([3, 0, 10, 0, 2]),
                 r"protocol error: MBAP length 1 out of range"),
                ("truncated", struct.pack(">HHHB", 4, 0, 6, 1) + bytes([3, 0]), r"closed: connection closed by peer")):
            n = len(k.lines)
            s = socket.create_connection(("127.0.0.1", port))
            me = "127.0.0.1:%d" % s.getsockname()[1]
            s.sendall(data)
            if what == "truncated":
                s.shutdown(socket.SHUT_WR)
            s.settimeout(5)
            got = s.recv(100)
            check(got == b"", "%s: connection closed without an answer: %r" % (what, got))
            s.close()
            k.wait_log(r"line srv: %s: %s" % (me, logrx), 5, since=n)
            k.wait_log(r"line srv: %s: closed" % me, 5, since=n)
            check(regs(good.read_holding_registers(10, 2, slave=1), "other client") == [0x3FC0, 0],
                  "the other client is still served after the %s frame" % what)
        check(k.line("srv")["counters"]["protocol_errors"] >= 3, "protocol errors counted: %s" %
              k.line("srv")["counters"])
        good.close()


def test_libmodbus_peers():
    """tests/peers/mbpeer (libmodbus 3.1.6) as the server of komd's client line, and as a
    client of komd's server line."""
    port, sport = free_port(), free_port()
    peer = MbPeer(port, ["hr:0=0x3FC0", "hr:1=0", "hr:2=0xFFFF", "hr:3=0xFFFE", "hr:4=5", "co:3=1", "ir:7=77"])
    try:
        tags1 = ",".join([tag("f", "f3.0", "float"), tag("s", "S3.2"), tag("x", "3.4"), tag("c", "1.3", "bool"),
                          tag("i", "4.7", "int", "in"), tag("b", "3.4.3", "bool")])
        conf = MEM + """lines = ( { name = "cli"; protocol = "modbus-client"; host = "127.0.0.1"; port = %d;
              stations = ( %s ); },
            { name = "srv"; protocol = "modbus-server"; host = "127.0.0.1"; port = %d;
              stations = ( { name = "u1"; address = 1; tags = ( %s ); } ); } );""" % (
            port, station("u1", 1, tags1), sport, SERVED)
        with Komd(conf).start() as k:
            k.until(lambda: valid(k, "f", 1.5) and valid(k, "s", -2) and valid(k, "x", 5) and valid(k, "c", True)
                    and valid(k, "i", 77) and valid(k, "b", False), 5, "values from libmodbus")
            k.ctl("set", "x", "4660")
            k.ctl("set", "b", "true")
            k.ctl("set", "s", "-100000")
            k.until(lambda: "hr 4=4660" in peer.out and "hr 4=4668" in peer.out, 5, "FC6 and FC22 at libmodbus")
            k.until(lambda: "hr 2=65534" in peer.out and "hr 3=31072" in peer.out, 5, "FC16 at libmodbus")
            check(peer.lines("req unit=1 fc=22 addr=4"), "FC 22 seen: %s" % peer.out)
            # libmodbus as client of komd's server
            out = mbclient(sport, 1, "r3:10:4", "r3:14:4", "r3:24:1", "r1:0:3", "r2:0:2", "r4:0:3",
                           "w16:10:0x4049,0x0FDB", "w6:23:999", "w5:1:1", "m22:24:0xFFFE:0", "rw23:22:2:23:7",
                           "r3:40:1", "w6:10:1")
            check(out[0] == "r3 10 16320 0 0 16320", "f3.10, F3.12: %s" % out[0])
            check(out[1] == "r3 14 4660 22136 22136 4660", "L3.14, Ll3.16: %s" % out[1])
            check(out[2] == "r3 24 33", "3.24: %s" % out[2])
            check(out[3] == "r1 0 1 0 1", "coils: %s" % out[3])
            check(out[4] == "r2 0 0 1", "inputs: %s" % out[4])
            check(out[5] == "r4 0 321 49168 0", "input registers: %s" % out[5])
            check(out[6:10] == ["w16 10 ok", "w6 23 ok", "w5 1 ok", "m22 24 ok"], "writes: %s" % out[6:10])
            check(out[10] == "rw23 22 65531 7", "FC23: %s" % out[10])
            check(out[11].startswith("r3 40 error") and "Illegal data address" in out[11], "unmapped: %s" % out[11])
            check(out[12].startswith("w6 10 error") and "Illegal data address" in out[12], "half float: %s" % out[12])
            check(abs(k.tag("m.f")["value"] - 3.1415927) < 1e-6, "m.f: %s" % k.tag("m.f"))
            check(k.tag("m.U")["value"] == 7 and k.tag("m.c1")["value"] is True and k.tag("m.b0")["value"] is False,
                  "tags written by libmodbus")
    finally:
        peer.stop()


def test_tshark_capture_clean():
    port = free_port()
    path = os.path.join(tempfile.mkdtemp(prefix="komdcap-"), "mb.pcapng")
    cap = Capture(port, path)
    try:
        conf = MEM + """lines = ( { name = "srv"; protocol = "modbus-server"; host = "127.0.0.1"; port = %d;
              stations = ( { name = "u1"; address = 1; tags = ( %s ); } ); } );""" % (port, SERVED)
        with Komd(conf).start():
            c = pyclient(port)
            regs(c.read_holding_registers(10, 14, slave=1), "FC3")
            bits(c.read_coils(0, 3, slave=1), 3, "FC1")
            bits(c.read_discrete_inputs(0, 2, slave=1), 2, "FC2")
            regs(c.read_input_registers(0, 3, slave=1), "FC4")
            c.write_coil(1, True, slave=1)
            c.write_register(23, 5, slave=1)
            c.write_coils(0, [True, True], slave=1)
            c.write_registers(10, [0, 0], slave=1)
            excode(c.read_holding_registers(40, 1, slave=1), "exception")
            excode(c.read_holding_registers(0, 1, slave=9), "unit 9")
            c.close()
            mbclient(port, 1, "m22:24:0xFFFE:0", "rw23:22:2:23:7")
        cap.stop()
        bad = cap.read("_ws.malformed || _ws.expert.severity == error")
        check(bad == [], "no malformed frames: %s" % bad)
        frames = cap.read("mbtcp", ("mbtcp.trans_id", "modbus.func_code"))
        check(len(frames) >= 24, "Modbus frames decoded: %d" % len(frames))
        fcs = {l.split("\t")[1] for l in frames if "\t" in l}
        check({"1", "2", "3", "4", "5", "6", "15", "16", "22", "23"} <= fcs | {"131"}, "function codes: %s" % fcs)
    finally:
        if cap.p.proc.poll() is None:
            cap.stop()


if __name__ == "__main__":
    main([test_server_reads_pymodbus, test_server_writes_pymodbus, test_server_exceptions_pymodbus,
          test_server_image_follows_tags, test_server_write_routed_to_acquirer, test_server_malformed_frames,
          test_libmodbus_peers, test_tshark_capture_clean])
