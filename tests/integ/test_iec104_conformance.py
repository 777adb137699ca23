"""IEC 60870-5-104 conformance of komd's iec104-server (and client) against a peer whose APDUs
scapy builds and dissects (iec104peer.py), issue 10 items 1 to 3.

- test_stopdt_waits_for_acknowledgement: 104 clause 5.3: STOPDT act with I-frames
  unacknowledged puts the connection in the pending-stopped state: no STOPDT con, no new
  I-frame, until every I-frame sent is acknowledged; then STOPDT con.
- test_frames_in_stopped_state_close: an S- or I-frame on a connection never started, one
  stopped, or one pending-stopped (I-frame) is closed actively, with a log line.
- test_client_frames_before_startdt_con: the controlling station's side: an S-frame before
  STARTDT con, or on the standby connection of a parallel line, closes that connection.
- test_answers_only_to_requester: every request type (read, interrogation, counter
  interrogation, clock synchronisation, reset process, test command, commands, negative
  confirmations) is answered on the connection that asked and nowhere else, with the
  requester's originator address.
- test_client_confirmation_of_another_originator: komd's client takes a confirmation only
  when its originator address is komd's line_number (or 0, as many stations send).
- test_global_common_address: interrogation, counter interrogation, clock synchronisation and
  reset process to 0xFFFF are answered per station with its own common address; other types
  to it get cause 46.
- test_global_common_address_one_octet: the same with ca_size = 1 (0xFF), frames crafted by
  hand (scapy's layer knows only the default field sizes).
"""
import struct
import subprocess
import threading

from komdtest import KOMCTL, Komd, check, free_port, main, run_komd
from iec104peer import (COT_ACT, COT_ACTCON, COT_ACTTERM, COT_INROGEN, COT_REQCOGEN, COT_SPONT, COT_UNKNOWN_CA,
                        COT_UNKNOWN_IOA, COT_UNKNOWN_TYPE, C_CI_NA_1, C_CS_NA_1, C_IC_NA_1, C_SC_NA_1, M_ME_NC_1, Peer, PeerServer, cp56_kw, io, now_ms)

C_RD_NA_1, C_RP_NA_1, C_TS_TA_1 = 102, 105, 107
COT_REQ = 5

# station 1: five monitor objects whose types alternate, so that an interrogation takes
# seven I-frames (ActCon, five ASDUs, ActTerm); station 2: one object
MEM = """tags = ( { name = "a.sp1"; type = "bool"; initial = true; }, { name = "a.f1"; type = "float"; initial = 1.5; },
  { name = "a.sp2"; type = "bool"; initial = false; }, { name = "a.f2"; type = "float"; initial = 2.5; },
  { name = "a.sp3"; type = "bool"; initial = true; }, { name = "a.cnt"; type = "int"; initial = 5; },
  { name = "a.cmd"; type = "bool"; initial = false; }, { name = "b.f"; type = "float"; initial = 7.5; } );
"""


def server_conf(port, extra="", ca_size=2):
    return MEM + """lines = ( { name = "srv"; protocol = "iec104-server"; host = "127.0.0.1"; port = %d;
  end_of_init = false; ca_size = %d; %s
  stations = ( { name = "ca1"; address = 1; cmdc = 3; tags = (
    { name = "a.sp1"; address = "100"; iec_type = "M_SP_NA_1"; }, { name = "a.f1"; address = "101"; iec_type = "M_ME_NC_1"; },
    { name = "a.sp2"; address = "102"; iec_type = "M_SP_NA_1"; }, { name = "a.f2"; address = "103"; iec_type = "M_ME_NC_1"; },
    { name = "a.sp3"; address = "104"; iec_type = "M_SP_NA_1"; }, { name = "a.cnt"; address = "105"; iec_type = "M_IT_NA_1"; },
    { name = "a.cmd"; address = "201"; iec_type = "C_SC_NA_1"; direction = "inout"; } ); },
   { name = "ca2"; address = 2; tags = ( { name = "b.f"; address = "300"; iec_type = "M_ME_NC_1"; },
    { name = "a.cnt"; address = "301"; iec_type = "M_IT_NA_1"; } ); } ); } );""" % (port, ca_size, extra)


def peer_rx(p):
    host, port = p.local
    return r"%s:%d" % (host.replace(".", r"\."), port)


def no_frame(p, pred, since, what):
    p.roundtrip()  # komd has done what it does for our earlier frames
    got = p.find(pred, since)
    check(not got, "%s: %r" % (what, got))


def test_stopdt_waits_for_acknowledgement():
    port = free_port()
    with Komd(server_conf(port, "t1 = 30;")).start() as k:
        k.wait_log(r"line srv: listening")
        p = Peer.connect(port, auto_ack=None, name="master")
        p.startdt()
        m = p.mark()
        p.send_i([io(C_IC_NA_1, 0, qoi=20)], COT_ACT)
        p.wait_i(C_IC_NA_1, COT_ACTTERM, since=m)
        check(len(p.iframes(m)) == 7, "the interrogation takes 7 I-frames: %r" % p.iframes(m))
        # STOPDT act with the 7 unacknowledged: no STOPDT con yet (pending stopped)
        m = p.mark()
        p.send_u("STOPDT_ACT")
        no_frame(p, lambda f: f.fmt == "U" and f.u == "STOPDT_CON", m, "STOPDT con with 7 I-frames unacknowledged")
        # no new I-frame in the pending-stopped state, nor once stopped
        k.ctl("set", "a.f1", "9.5")
        no_frame(p, lambda f: f.fmt == "I", m, "an I-frame after STOPDT act")
        # part of them acknowledged: still pending
        p.send_s((p.vr - 3) & 0x7fff)
        no_frame(p, lambda f: f.fmt == "U" and f.u == "STOPDT_CON", m, "STOPDT con with 3 I-frames unacknowledged")
        m2 = p.mark()
        p.send_s()
        p.wait_u("STOPDT_CON", since=m2)
        no_frame(p, lambda f: f.fmt == "I", m, "an I-frame after STOPDT")
        check(not p.closed, "connection kept")
        # STARTDT again: the change made meanwhile is not lost for a master that asks (GI)
        p.startdt()
        m = p.mark()
        p.send_i([io(C_IC_NA_1, 0, qoi=20)], COT_ACT)
        p.wait_i(C_IC_NA_1, COT_ACTTERM, since=m)
        f = [f for f in p.iframes(m) if f.type == M_ME_NC_1 and f.obj(101)]
        check(f and f[0].obj(101).scaled_value == 9.5, "the interrogation has the new value: %r" % f)
        # STOPDT with everything acknowledged: STOPDT con at once
        p.send_s()
        m = p.mark()
        p.send_u("STOPDT_ACT")
        p.wait_u("STOPDT_CON", since=m)
        p.check_clean()
        check(k.line("srv")["counters"]["protocol_errors"] == 0, "no protocol error")
        p.close()


def test_frames_in_stopped_state_close():
    # the misbehaving masters (127.0.0.2) in a redundancy group of their own
    port = free_port()
    with Komd(server_conf(port, 'groups = "127.0.0.2";')).start() as k:
        k.wait_log(r"line srv: listening")
        good = Peer.connect(port, name="good master")
        good.startdt()
        cases = []

        def never_started_s(p):
            p.send_s(0)
        cases.append(("S-frame, never started", never_started_s, r"S-frame while data transfer is stopped"))

        def never_started_i(p):
            p.send_i([io(C_IC_NA_1, 0, qoi=20)], COT_ACT)
        cases.append(("I-frame, never started", never_started_i, r"I-frame while data transfer is stopped"))

        def stopped_s(p):
            p.startdt()
            m = p.mark()
            p.send_u("STOPDT_ACT")
            p.wait_u("STOPDT_CON", since=m)
            p.send_s()
        cases.append(("S-frame after STOPDT con", stopped_s, r"S-frame while data transfer is stopped"))

        def stopped_i(p):
            p.startdt()
            m = p.mark()
            p.send_u("STOPDT_ACT")
            p.wait_u("STOPDT_CON", since=m)
            p.send_i([io(C_IC_NA_1, 0, qoi=20)], COT_ACT)
        cases.append(("I-frame after STOPDT con", stopped_i, r"I-frame while data transfer is stopped"))

        def pending_i(p):
            p.startdt()
            m = p.mark()
            p.send_i([io(C_IC_NA_1, 0, qoi=20)], COT_ACT)
            p.wait_i(C_IC_NA_1, COT_ACTTERM, since=m)
            p.send_u("STOPDT_ACT")
            p.send_i([io(C_IC_NA_1, 0, qoi=20)], COT_ACT)
        cases.append(("I-frame while pending stopped", pending_i, r"I-frame while data transfer is stopping"))

        for n, (what, act, rule) in enumerate(cases):
            p = Peer.connect(port, src="127.0.0.2", auto_ack=None, name=what)
            act(p)
            p.wait_closed(5)
            k.wait_log(r"line srv: %s: (closed: )?protocol error: %s" % (peer_rx(p), rule))
            check(not p.find(lambda f: f.fmt == "U" and f.u == "STOPDT_CON" and what.endswith("pending stopped")),
                  "%s: no STOPDT con" % what)
            check(k.line("srv")["counters"]["protocol_errors"] == n + 1, "%s: counted" % what)
            p.check_clean()
        # the started master was not disturbed
        m = good.mark()
        k.ctl("set", "a.f2", "4.25")
        good.wait(lambda f: f.fmt == "I" and f.cot == COT_SPONT and f.obj(103), 5, "the change", m)
        good.check_clean()
        good.close()


def test_client_frames_before_startdt_con():
    def client_conf(port, backup=None):
        kind = 'type = "tcp-redundant"; backup = { host = "127.0.0.1"; port = %d; };' % backup if backup else ""
        return """lines = ( { name = "cli"; protocol = "iec104-client"; host = "127.0.0.1"; port = %d; %s
  connect_timeout = 1; reconnect_delay = 0.2; reconnect_max = 0.5; t1 = 10;
  stations = ( { name = "ca1"; address = 1; tags = (
    { name = "c.f"; address = "101"; type = "float"; iec_type = "M_ME_NC_1"; } ); } ); } );""" % (port, kind)
    srv = PeerServer(name="controlled station", answer_startdt=False)
    try:
        with Komd(client_conf(srv.port)).start() as k:
            p = srv.wait_conn(1)
            p.wait_u("STARTDT_ACT")
            p.send_s(0)
            p.wait_closed(3)
            k.wait_log(r"line cli: 127\.0\.0\.1:%d: (closed: )?protocol error: S-frame while data transfer is stopped" % srv.port)
            p2 = srv.wait_conn(2, 5)
            p2.wait_u("STARTDT_ACT")
            p2.send_u("STARTDT_CON")
            p2.wait_i(C_IC_NA_1, COT_ACT)
            p2.send_s()
            p2.roundtrip()
            check(not p2.closed, "an S-frame after STARTDT con is fine")
            p2.check_clean()
    finally:
        srv.close()
    # parallel line: the standby connection is stopped; an S-frame on it closes it
    a, b = PeerServer(name="primary"), PeerServer(name="backup")
    try:
        with Komd(client_conf(a.port, backup=b.port)).start() as k:
            pa, pb = a.wait_conn(1), b.wait_conn(1)
            pa.wait_i(C_IC_NA_1, COT_ACT)
            k.until(lambda: all(x["state"] == "connected" for x in k.line("cli")["paths"]), 5, "both connected")
            check(not pb.find(lambda f: f.fmt == "U" and f.u == "STARTDT_ACT"), "the standby is not started")
            pb.send_s(0)
            pb.wait_closed(3)
            k.wait_log(r"line cli: 127\.0\.0\.1:%d: (closed: )?protocol error: S-frame while data transfer is stopped" % b.port)
            check(not pa.closed, "the started connection stays")
    finally:
        a.close()
        b.close()


def test_answers_only_to_requester():
    # A (127.0.0.1) and B (127.0.0.2) are in two redundancy groups, both started; A asks
    # with originator address 7; B must see none of the answers
    port = free_port()
    with Komd(server_conf(port, 'groups = "127.0.0.2";')).start() as k:
        k.wait_log(r"line srv: listening")
        a = Peer.connect(port, name="asking master")
        b = Peer.connect(port, src="127.0.0.2", name="other master")
        a.startdt()
        b.startdt()
        mb = b.mark()
        requests = [
            ("read", [io(C_RD_NA_1, 101)], COT_REQ, 1, lambda f: f.type == M_ME_NC_1 and f.cot == COT_REQ),
            ("interrogation", [io(C_IC_NA_1, 0, qoi=20)], COT_ACT, 1,
             lambda f: f.type == C_IC_NA_1 and f.cot == COT_ACTTERM),
            ("counter interrogation", [io(C_CI_NA_1, 0, rqt=5)], COT_ACT, 1,
             lambda f: f.type == C_CI_NA_1 and f.cot == COT_ACTTERM),
            ("clock synchronisation", [io(C_CS_NA_1, 0, **cp56_kw(now_ms()))], COT_ACT, 1,
             lambda f: f.type == C_CS_NA_1 and f.cot == COT_ACTCON),
            ("reset process", [io(C_RP_NA_1, 0, qrp=1)], COT_ACT, 1, lambda f: f.type == C_RP_NA_1 and f.cot == COT_ACTCON),
            ("test command", [io(C_TS_TA_1, 0, tsc=0x1234, **cp56_kw(now_ms()))], COT_ACT, 1,
             lambda f: f.type == C_TS_TA_1 and f.cot == COT_ACTCON),
            ("command", [io(C_SC_NA_1, 201, scs=1)], COT_ACT, 1, lambda f: f.type == C_SC_NA_1 and f.cot == COT_ACTTERM),
            ("select", [io(C_SC_NA_1, 201, scs=0, s_or_e=1)], COT_ACT, 1,
             lambda f: f.type == C_SC_NA_1 and f.cot == COT_ACTCON),
            ("unknown IOA", [io(C_SC_NA_1, 299, scs=1)], COT_ACT, 1, lambda f: f.cot == COT_UNKNOWN_IOA),
            ("unknown common address", [io(C_RD_NA_1, 101)], COT_REQ, 9, lambda f: f.cot == COT_UNKNOWN_CA),
            ("monitor type", [io(M_ME_NC_1, 101, scaled_value=1.0)], COT_ACT, 1, lambda f: f.cot == COT_UNKNOWN_TYPE),
        ]
        for what, objs, cot, ca, last in requests:
            m = a.mark()
            a.send_i(objs, cot, ca=ca, oa=7)
            a.wait(lambda f: f.fmt == "I" and last(f), 5, what, m)
            answers = a.iframes(m)
            check(all(f.oa == 7 for f in answers), "%s: every answer carries originator address 7: %s" % (
                what, [(f.type, f.cot, f.oa) for f in answers]))
        # unknown type (99): the same ASDU back, with its originator address
        m = a.mark()
        a.send_i([io(C_SC_NA_1, 201, scs=1)], COT_ACT, oa=7, type_id=99)
        f = a.wait(lambda f: f.fmt == "I" and f.type == 99, 5, "type 99 back", m)
        check(f.oa == 7 and f.cot == COT_UNKNOWN_TYPE, "type 99: %r oa %d" % (f, f.oa))
        no_frame(b, lambda f: f.fmt == "I", mb, "answers to A reached B")
        # and the other way round: B's read reaches B only
        ma = a.mark()
        mb = b.mark()
        b.send_i([io(C_RD_NA_1, 300)], COT_REQ, ca=2, oa=3)
        f = b.wait(lambda f: f.fmt == "I" and f.cot == COT_REQ, 5, "B's read", mb)
        check(f.oa == 3 and f.ca == 2 and f.obj(300).scaled_value == 7.5, "B's answer: %r" % f)
        no_frame(a, lambda f: f.fmt == "I", ma, "B's answer reached A")
        a.check_clean()
        b.check_clean()
        a.close()
        b.close()


def test_client_confirmation_of_another_originator():
    srv = PeerServer(name="controlled station")
    conf = """lines = ( { name = "cli"; protocol = "iec104-client"; host = "127.0.0.1"; port = %d; line_number = 3;
  connect_timeout = 1; reconnect_delay = 0.2; reconnect_max = 0.5;
  stations = ( { name = "ca1"; address = 1; cmdc = 1; tags = (
    { name = "c.cmd"; address = "201"; type = "bool"; iec_type = "C_SC_NA_1"; direction = "out"; } ); } ); } );""" % srv.port
    try:
        with Komd(conf).start() as k:
            p = srv.wait_conn(1)
            p.wait_i(C_IC_NA_1, COT_ACT)
            for oa in (3, 0):
                m = p.mark()
                r = []
                th = threading.Thread(target=lambda: r.append(subprocess.run(
                    [KOMCTL, "-s", k.sock, "set", "c.cmd", "true"], capture_output=True, text=True, timeout=20)))
                th.start()
                cmd = p.wait_i(C_SC_NA_1, COT_ACT, since=m)
                check(cmd.oa == 3, "komd's originator address is its line_number: %d" % cmd.oa)
                # a confirmation for another controlling station (originator 9) is not komd's
                p.send_i([io(C_SC_NA_1, 201, scs=1)], COT_ACTCON, oa=9, pn=1)
                p.roundtrip()
                check(not r, "a confirmation with originator address 9 completed komd's command: %s" % r)
                p.send_i([io(C_SC_NA_1, 201, scs=1)], COT_ACTCON, oa=oa)
                th.join(10)
                check(r and r[0].returncode == 0 and "activation confirmed" in r[0].stdout,
                      "confirmed by originator %d: %s" % (oa, r))
            p.check_clean()
    finally:
        srv.close()


def global_answers(p, since):
    return [(f.type, f.cot, f.pn, f.ca) for f in p.iframes(since)]


def test_global_common_address():
    port = free_port()
    with Komd(server_conf(port)).start() as k:
        k.wait_log(r"line srv: listening")
        p = Peer.connect(port, name="master")
        p.startdt()
        # interrogation: ActCon, the image, ActTerm per station, each with its own address
        for objs, typ, data_cot in (([io(C_IC_NA_1, 0, qoi=20)], C_IC_NA_1, COT_INROGEN),
                                    ([io(C_CI_NA_1, 0, rqt=5)], C_CI_NA_1, COT_REQCOGEN)):
            m = p.mark()
            p.send_i(objs, COT_ACT, ca=0xFFFF)
            p.wait_i(typ, COT_ACTTERM, since=m, ca=2)
            got = global_answers(p, m)
            check(all(ca in (1, 2) for _, _, _, ca in got), "no answer with the global address: %s" % got)
            for ca in (1, 2):
                mine = [g for g in got if g[3] == ca]
                check(mine[0][:3] == (typ, COT_ACTCON, 0) and mine[-1][:3] == (typ, COT_ACTTERM, 0) and
                      all(g[1] == data_cot for g in mine[1:-1]) and len(mine) >= 3,
                      "station %d: ActCon, data, ActTerm: %s" % (ca, got))
        # clock synchronisation and reset process: one ActCon per station
        for objs, typ in (([io(C_CS_NA_1, 0, **cp56_kw(now_ms()))], C_CS_NA_1), ([io(C_RP_NA_1, 0, qrp=1)], C_RP_NA_1)):
            m = p.mark()
            p.send_i(objs, COT_ACT, ca=0xFFFF)
            p.wait_i(typ, COT_ACTCON, since=m, ca=2)
            p.roundtrip()
            got = global_answers(p, m)
            check(got == [(typ, COT_ACTCON, 0, 1), (typ, COT_ACTCON, 0, 2)], "%d: one ActCon per station: %s" % (
                typ, got))
        # types that may not use the global address: cause 46
        for objs, cot in (([io(C_RD_NA_1, 101)], COT_REQ), ([io(C_SC_NA_1, 201, scs=1)], COT_ACT),
                          ([io(C_TS_TA_1, 0, tsc=1, **cp56_kw(now_ms()))], COT_ACT)):
            m = p.mark()
            p.send_i(objs, cot, ca=0xFFFF)
            f = p.wait(lambda f: f.fmt == "I", 5, "the answer", m)
            check(f.cot == COT_UNKNOWN_CA and f.pn == 1 and f.ca == 0xFFFF, "%s to the global address: %r" % (
                objs[0].__class__.__name__, f))
        check(k.tag("a.cmd")["value"] is False, "the command was not executed")
        p.check_clean()
        p.close()


def raw_i(p, asdu):
    """An I-frame with a hand-made ASDU (field sizes scapy does not know); N(S), N(R) kept."""
    with p.lock:
        raw = bytes([0x68, len(asdu) + 4]) + struct.pack("<HH", p.vs << 1, p.vr << 1) + asdu
        p.vs = (p.vs + 1) & 0x7fff
        p.acked_by_us = p.vr
        p._send(raw)


def test_global_common_address_one_octet():
    # COT 2 octets, CA 1 octet, IOA 3: type, VSQ, COT, OA, CA, IOA, element
    port = free_port()
    with Komd(server_conf(port, ca_size=1)).start() as k:
        k.wait_log(r"line srv: listening")
        p = Peer.connect(port, name="master")
        p.errors = []  # scapy dissects the default sizes only: komd's frames are read by hand here
        p.startdt()

        def answers(since):
            return [(f.raw[6], f.raw[8] & 0x3f, f.raw[8] >> 6 & 1, f.raw[10]) for f in p.frames[since:] if f.raw[2] & 1 == 0]
        for asdu, typ, n in ((bytes([C_IC_NA_1, 1, COT_ACT, 0, 0xFF, 0, 0, 0, 20]), C_IC_NA_1, None),
                             (bytes([C_RP_NA_1, 1, COT_ACT, 0, 0xFF, 0, 0, 0, 1]), C_RP_NA_1, 2)):
            m = p.mark()
            raw_i(p, asdu)
            p.wait(lambda f: f.raw[2] & 1 == 0 and f.raw[6] == typ and f.raw[10] == 2 and
                   (f.raw[8] & 0x3f) == (COT_ACTTERM if n is None else COT_ACTCON), 5, "station 2's answer", m)
            p.roundtrip()
            got = answers(m)
            check(all(g[3] in (1, 2) and g[2] == 0 for g in got), "each station with its own address: %s" % got)
            check({g[3] for g in got if g[0] == typ and g[1] == COT_ACTCON} == {1, 2}, "ActCon per station: %s" % got)
            if n:
                check(len(got) == n, "one ActCon per station: %s" % got)
        m = p.mark()
        raw_i(p, bytes([C_RD_NA_1, 1, COT_REQ, 0, 0xFF, 101, 0, 0]))
        f = p.wait(lambda f: f.raw[2] & 1 == 0, 5, "the answer to a read to 0xFF", m)
        check(f.raw[8] & 0x3f == COT_UNKNOWN_CA and f.raw[8] & 0x40 and f.raw[10] == 0xFF, "read: %s" % f.raw.hex())
        p.close()
    # a station address that is the global address, or does not fit ca_size, is refused
    for ca_size, addr in ((2, 65535), (1, 255), (1, 256)):
        k = Komd(server_conf(free_port(), ca_size=ca_size).replace('address = 2;', 'address = %d;' % addr))
        r = run_komd("-t", "-c", k.conf)
        check(r.returncode == 1 and "komd.conf:" in r.stderr and "common address" in r.stderr,
              "ca_size %d, station %d: %s" % (ca_size, addr, r.stderr))
        subprocess.run(["rm", "-rf", k.dir])


if __name__ == "__main__":
    main([test_stopdt_waits_for_acknowledgement, test_frames_in_stopped_state_close, test_client_frames_before_startdt_con,
          test_answers_only_to_requester, test_client_confirmation_of_another_originator, test_global_common_address,
          test_global_common_address_one_octet])
