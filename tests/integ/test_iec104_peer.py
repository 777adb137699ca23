"""IEC 60870-5-104: komd against a peer whose APDUs scapy builds and dissects
(iec104peer.py), not komd's own codec.

- test_server_controlling_station: the peer as controlling station against komd's
  iec104-server: STARTDT, end of initialisation, general interrogation (types and values),
  spontaneous change with CP56Time2a, read, counter interrogation, clock synchronisation,
  commands with ActCon/ActTerm and select, negative confirmations (causes 44 to 47),
  komd's acknowledgement after w I-frames.
- test_server_misbehaving_clients: wrong N(S), wrong N(R), unknown U functions, a length over
  253, a bad start octet, an I-frame before STARTDT, t1 on unacknowledged I-frames: each
  closes that connection with a log line naming the peer and the rule; the other client of
  the line goes on.
- test_t1_not_extended_by_old_acks: t1 runs from the oldest unacknowledged I-frame; S-frames
  that acknowledge nothing new do not restart it.
- test_t1_from_each_frames_sending: t1 runs from each I-frame's sending: acknowledging the
  oldest frame does not give the later ones a new t1.
- test_t1_after_stopdt: frames sent before STOPDT are still owed their acknowledgement
  within t1 (no STOPDT con before it), TESTFRs confirmed or not.
- test_one_testfr_at_a_time: with t3 < t1 an unconfirmed TESTFR is not repeated every t3;
  t1 closes. Each U act is confirmed by its own con.
- test_server_t3_testfr: with t3 = 1 s komd sends TESTFR act when idle; unanswered, t1 closes.
- test_client_controlled_station: the peer as controlled station for komd's iec104-client:
  STARTDT, the interrogation answered, quality bits and times into tags, komd's
  acknowledgements (t2, w), commands confirmed and refused, unknown type and common address
  ignored, wrong N(S) closes and komd reconnects.
- test_server_k_window: komd sends at most k unacknowledged I-frames and goes on as they are
  acknowledged.
- test_server_requeue_unacknowledged: time-tagged events a lost connection did not
  acknowledge go to the next started one, in order; acknowledged and untimed ones do not.
- test_client_startdt_rules: komd's client closes on t1 when STARTDT is not confirmed (and
  sends no I-frame before), and when the controlled station sends STARTDT act.
- test_client_more_than_k_received: with w > k komd closes a connection whose partner sends
  more than k I-frames without an acknowledgement.
- test_capture_decodes_cleanly: tshark decodes a captured session without malformed frames
  or expert errors and sees every ASDU.
"""
import os
import subprocess
import tempfile
import threading
import time

from komdtest import KOMCTL, Komd, check, free_port, main
from iec104peer import (i_apdu, COT_ACT, COT_ACTCON, COT_ACTTERM, COT_DEACT, COT_INIT, COT_INROGEN, COT_REQCOGEN,
                        COT_SPONT, COT_UNKNOWN_CA, COT_UNKNOWN_COT, COT_UNKNOWN_IOA, COT_UNKNOWN_TYPE,
                        C_CI_NA_1, C_CS_NA_1, C_IC_NA_1, C_SC_NA_1, C_SE_NC_1, M_DP_NA_1, M_DP_TB_1, M_EI_NA_1,
                        M_IT_NA_1, M_ME_NB_1, M_ME_NC_1, M_ME_TE_1, M_ME_TF_1, M_SP_NA_1, M_SP_TB_1, Peer,
                        PeerServer, cp56_kw, cp56_ms, io, iso_ms, now_ms, tshark_read)
from mbpeers import Capture

C_RD_NA_1 = 102
COT_REQ = 5

MEM = """tags = ( { name = "m.sp"; type = "bool"; initial = true; },
  { name = "m.f"; type = "float"; initial = 21.5; },
  { name = "m.sc"; type = "int"; initial = -42; },
  { name = "m.dp"; type = "dpi"; initial = 2; },
  { name = "m.cnt"; type = "int"; initial = 7; },
  { name = "m.set"; type = "float"; initial = 0.0; },
  { name = "m.cmd"; type = "bool"; initial = false; },
  { name = "m.cmd2"; type = "bool"; initial = false; } );
"""


def server_line(port, extra="", name="srv"):
    """Station 1 (cmdc 3) serves every kind; station 2 (cmdc 0: no replies) one command."""
    return """{ name = "%s"; protocol = "iec104-server"; host = "127.0.0.1"; port = %d; %s
  stations = ( { name = "ca1"; address = 1; cmdc = 3; tags = (
    { name = "m.sp"; address = "100"; iec_type = "M_SP_TB_1"; },
    { name = "m.f"; address = "101"; iec_type = "M_ME_NC_1"; },
    { name = "m.sc"; address = "#66"; iec_type = "M_ME_NB_1"; },
    { name = "m.dp"; address = "0,0,103"; iec_type = "M_DP_NA_1"; },
    { name = "m.cnt"; address = "104"; iec_type = "M_IT_NA_1"; },
    { name = "m.set"; address = "200"; iec_type = "C_SE_NC_1"; direction = "inout"; },
    { name = "m.cmd"; address = "201"; iec_type = "C_SC_NA_1"; direction = "inout"; } ); },
   { name = "ca2"; address = 2; cmdc = 0; tags = (
    { name = "m.cmd2"; address = "300"; iec_type = "C_SC_NA_1"; direction = "inout"; } ); } ); }""" % (
        name, port, extra)


def client_line(port, extra=""):
    return """{ name = "cli"; protocol = "iec104-client"; host = "127.0.0.1"; port = %d;
  connect_timeout = 1; reconnect_delay = 0.2; reconnect_max = 0.5; %s
  stations = ( { name = "ca1"; address = 1; cmdc = 1; tags = (
    { name = "c.sp"; address = "100"; type = "bool"; iec_type = "M_SP_TB_1"; },
    { name = "c.f"; address = "101"; type = "float"; iec_type = "M_ME_NC_1"; },
    { name = "c.sc"; address = "102"; type = "int"; iec_type = "M_ME_NB_1"; },
    { name = "c.dp"; address = "103"; type = "dpi"; iec_type = "M_DP_NA_1"; },
    { name = "c.set"; address = "200"; type = "float"; iec_type = "C_SE_NC_1"; direction = "out"; },
    { name = "c.cmd"; address = "201"; type = "bool"; iec_type = "C_SC_NA_1"; direction = "out"; } ); } ); }""" % (
        port, extra)


def peer_name(p):
    """komd's name of a peer: its address and port as komd sees them."""
    host, port = p.local
    return r"%s:%d" % (host.replace(".", r"\."), port)


def served_ok(k, p, value):
    """A client of komd's server that still works: a change reaches it."""
    m = p.mark()
    k.ctl("set", "m.f", value)
    f = p.wait(lambda f: f.fmt == "I" and f.type == M_ME_NC_1 and f.cot == COT_SPONT and
               abs(f.obj(101).scaled_value - float(value)) < 1e-6, 5, "the change to %s" % value, m)
    check(not p.closed, "the good client was closed")
    return f


def test_server_controlling_station():
    port = free_port()
    with Komd(MEM + "lines = (%s);" % server_line(port)).start() as k:
        k.wait_log(r"line srv: listening")
        p = Peer.connect(port, name="master")
        p.startdt()
        p.wait_i(M_EI_NA_1, COT_INIT, ca=2)
        ei = p.wait_i(M_EI_NA_1, COT_INIT)
        check([f.ca for f in p.iframes() if f.type == M_EI_NA_1] == [1, 2], "end of initialisation for both stations")
        check(ei.objs[0].coi == 0 and ei.objs[0].information_object_address == 0, "COI 0, IOA 0: %r" % ei.objs)

        # general interrogation: ActCon, the image with COT 20, ActTerm
        m = p.mark()
        p.send_i([io(C_IC_NA_1, 0, qoi=20)], COT_ACT)
        term = p.wait_i(C_IC_NA_1, COT_ACTTERM, since=m, ca=1)
        seq = p.iframes(m)
        check(seq[0].type == C_IC_NA_1 and seq[0].cot == COT_ACTCON and seq[0].pn == 0 and seq[0].objs[0].qoi == 20,
              "ActCon first: %r" % seq)
        image = {}
        for f in seq[1:seq.index(term)]:
            check(f.cot == COT_INROGEN and f.ca == 1, "COT 20 between ActCon and ActTerm: %r" % f)
            for o in f.objs:
                image[o.information_object_address] = (f.type, o)
        check(sorted(image) == [100, 101, 102, 103], "the image has the monitor tags, no counter, no command: %s"
              % sorted(image))
        t, o = image[100]
        check(t == M_SP_NA_1 and o.spi_value == 1 and (o.iv, o.nt, o.sb, o.bl) == (0, 0, 0, 0),
              "M_SP_TB_1 tag interrogated as M_SP_NA_1, on, good: %d %r" % (t, o))
        t, o = image[101]
        check(t == M_ME_NC_1 and o.scaled_value == 21.5 and (o.iv, o.ov) == (0, 0), "M_ME_NC_1 21.5: %d %r" % (t, o))
        t, o = image[102]
        check(t == M_ME_NB_1 and o.scaled_value == -42, "M_ME_NB_1 at #66 = 102, -42: %d %r" % (t, o))
        t, o = image[103]
        check(t == M_DP_NA_1 and o.dpi_value == 2, "M_DP_NA_1 on (2) at 0,0,103: %d %r" % (t, o))

        # a spontaneous change: M_SP_TB_1 with the tag's source time
        m = p.mark()
        k.ctl("set", "m.sp", "false")
        f = p.wait_i(M_SP_TB_1, COT_SPONT, since=m)
        o = f.obj(100)
        check(o is not None and o.spi_value == 0, "spontaneous off: %r" % f.objs)
        check(iso_ms(cp56_ms(o)) == k.tag("m.sp")["source_time"], "CP56Time2a %s is the tag's source time %s" % (
            iso_ms(cp56_ms(o)), k.tag("m.sp")["source_time"]))
        check(abs(cp56_ms(o) - now_ms()) < 10000 and o.iv_time == 0, "time tag now and valid")

        # read command: the object with cause 5
        m = p.mark()
        p.send_i([io(C_RD_NA_1, 101)], COT_REQ)
        f = p.wait_i(M_ME_NC_1, COT_REQ, since=m)
        check(f.obj(101).scaled_value == 21.5, "read: %r" % f.objs)

        # counter interrogation
        m = p.mark()
        p.send_i([io(C_CI_NA_1, 0, rqt=5, frz=0)], COT_ACT)
        term = p.wait_i(C_CI_NA_1, COT_ACTTERM, since=m)
        seq = p.iframes(m)
        check(seq[0].type == C_CI_NA_1 and seq[0].cot == COT_ACTCON, "CI ActCon first: %r" % seq)
        cnt = [f for f in seq if f.type == M_IT_NA_1]
        check(len(cnt) == 1 and cnt[0].cot == COT_REQCOGEN and cnt[0].obj(104).counter_value == 7,
              "M_IT_NA_1 104 = 7 with COT 37: %r" % cnt)
        check(seq.index(cnt[0]) < seq.index(term), "counters before ActTerm")

        # clock synchronisation: confirmed with komd's time
        m = p.mark()
        t0 = now_ms()
        p.send_i([io(C_CS_NA_1, 0, **cp56_kw(t0))], COT_ACT)
        f = p.wait_i(C_CS_NA_1, COT_ACTCON, since=m)
        check(abs(cp56_ms(f.objs[0]) - t0) < 5000, "clock synchronisation ActCon with the time: %s" % iso_ms(
            cp56_ms(f.objs[0])))

        # commands: ActCon and ActTerm (cmdc 3), the memory tag changes
        m = p.mark()
        p.send_i([io(C_SC_NA_1, 201, scs=1)], COT_ACT)
        con = p.wait_i(C_SC_NA_1, COT_ACTCON, since=m)
        p.wait_i(C_SC_NA_1, COT_ACTTERM, since=m)
        check(con.obj(201).scs == 1, "ActCon mirrors the command: %r" % con.objs)
        check(k.tag("m.cmd")["value"] is True, "single command executed: %s" % k.tag("m.cmd"))
        m = p.mark()
        p.send_i([io(C_SE_NC_1, 200, scaled_value=12.5)], COT_ACT)
        con = p.wait_i(C_SE_NC_1, COT_ACTCON, since=m)
        p.wait_i(C_SE_NC_1, COT_ACTTERM, since=m)
        check(con.obj(200).scaled_value == 12.5, "set point ActCon: %r" % con.objs)
        check(k.tag("m.set")["value"] == 12.5, "set point executed: %s" % k.tag("m.set"))
        # select then execute: the select is confirmed and writes nothing
        m = p.mark()
        p.send_i([io(C_SE_NC_1, 200, scaled_value=40.0, action=1)], COT_ACT)
        p.wait_i(C_SE_NC_1, COT_ACTCON, since=m)
        check(k.tag("m.set")["value"] == 12.5, "a select writes nothing")
        m = p.mark()
        p.send_i([io(C_SE_NC_1, 200, scaled_value=40.0)], COT_ACT)
        p.wait_i(C_SE_NC_1, COT_ACTTERM, since=m)
        check(k.tag("m.set")["value"] == 40.0, "executed after the select")

        # negative confirmations
        for what, send, cot in (
                ("unknown IOA", dict(objs=[io(C_SC_NA_1, 299, scs=1)], cot=COT_ACT), COT_UNKNOWN_IOA),
                ("unknown common address", dict(objs=[io(C_SC_NA_1, 201, scs=1)], cot=COT_ACT, ca=9), COT_UNKNOWN_CA),
                ("unknown cause (interrogation)", dict(objs=[io(C_IC_NA_1, 0, qoi=20)], cot=COT_SPONT),
                 COT_UNKNOWN_COT),
                ("unknown cause (command)", dict(objs=[io(C_SC_NA_1, 201, scs=1)], cot=COT_SPONT), COT_UNKNOWN_COT),
                ("monitor type in control direction", dict(objs=[io(M_ME_NC_1, 101, scaled_value=1.0)], cot=COT_ACT),
                 COT_UNKNOWN_TYPE)):
            m = p.mark()
            raw = p.send_i(**send)
            f = p.wait(lambda f: f.fmt == "I" and f.cot == cot, 5, what, m)
            check(f.pn == 1 and f.type == raw[6] and f.ca == send.get("ca", 1), "%s: negative, the same ASDU: %r" % (
                what, f))
        # type 99, which no class of scapy builds: the octet patched
        m = p.mark()
        p.send_i([io(C_SC_NA_1, 201, scs=1)], COT_ACT, type_id=99)
        f = p.wait(lambda f: f.fmt == "I" and f.type == 99, 5, "type 99 back", m)
        check(f.cot == COT_UNKNOWN_TYPE and f.pn == 1, "type 99: cause 44, negative: %r" % f)
        k.wait_log(r"line srv: %s: ASDU not understood: unknown type 99" % peer_name(p))
        check(k.tag("m.cmd")["value"] is True and not p.closed, "nothing executed, connection kept")

        # komd acknowledged every I-frame of ours (its I-frames carry N(R))
        check(p.acked_by_komd == p.vs, "komd acknowledged %d of %d" % (p.acked_by_komd, p.vs))

        # w = 8: commands to station 2 (cmdc 0: no replies) without our acknowledgement;
        # komd's S-frame comes after the 8th, at once (t2 is 10 s)
        p.auto_ack = None
        p.send_s()
        m = p.mark()
        start = p.vs
        t0 = time.monotonic()
        for n in range(7):
            p.send_i([io(C_SC_NA_1, 300, scs=n % 2)], COT_ACT, ca=2)
        p.roundtrip()  # komd has read the 7 when its TESTFR con comes
        check(not p.find(lambda f: f.fmt in ("S", "I"), m), "no acknowledgement before the 8th: %r" % p.frames[m:])
        p.send_i([io(C_SC_NA_1, 300, scs=1)], COT_ACT, ca=2)
        s = p.wait(lambda f: f.fmt == "S", 5, "S-frame after w=8", m)
        check(s.nr == (start + 8) & 0x7fff, "S acknowledges the 8: %r (from %d)" % (s, start))
        check(s.t - t0 < 2.0, "w, not t2: %.2f s" % (s.t - t0))
        check(k.tag("m.cmd2")["value"] is True, "station 2 executed")
        # a burst of k = 12 frames in one write: one S-frame for all of them, at once (not
        # one at the 8th and t2 for the other 4)
        m = p.mark()
        start = p.vs
        burst = b"".join(i_apdu((start + n) & 0x7fff, p.vr, [io(C_SC_NA_1, 300, scs=n % 2)], COT_ACT, ca=2)
                         for n in range(12))
        p.vs = (start + 12) & 0x7fff
        t0 = time.monotonic()
        p.send_raw(burst)
        s = p.wait(lambda f: f.fmt == "S", 5, "S-frame after the burst", m)
        check(s.nr == p.vs and s.t - t0 < 2.0, "one S-frame acknowledges the 12 at once: %r (from %d)" % (s, start))
        p.roundtrip()
        check(len(p.find(lambda f: f.fmt == "S", m)) == 1, "one S-frame: %r" % p.frames[m:])
        p.check_clean()
        check(k.line("srv")["counters"]["protocol_errors"] == 0, "no protocol errors")
        p.close()


def test_server_misbehaving_clients():
    # 127.0.0.2 is a redundancy group of its own, so that its STARTDT leaves the good
    # client (127.0.0.1, the default group) started
    port = free_port()
    with Komd(MEM + "lines = (%s);" % server_line(port, 't1 = 1; groups = "127.0.0.2";')).start() as k:
        k.wait_log(r"line srv: listening")
        good = Peer.connect(port, name="good client")
        good.startdt()
        good.wait_i(M_EI_NA_1, COT_INIT)
        served_ok(k, good, "1.5")
        cases = [
            # (what, source, STARTDT first, action, rule in the log)
            ("wrong N(S)", "127.0.0.2", True,
             lambda b: b.send_i([io(C_IC_NA_1, 0, qoi=20)], COT_ACT, ns=5), r"wrong N\(S\) 5, expected 0"),
            ("wrong N(R)", "127.0.0.2", True,
             lambda b: (b.roundtrip(), b.send_s(nr=b.vr + 4)),
             r"wrong N\(R\) \d+: acknowledges frames not sent"),
            ("wrong N(R) in an I-frame", "127.0.0.2", True,
             lambda b: (b.roundtrip(), b.send_i([io(C_IC_NA_1, 0, qoi=20)], COT_ACT, nr=b.vr + 100)),
             r"wrong N\(R\) \d+: acknowledges frames not sent"),
            ("U frame with no function", "127.0.0.1", False,
             lambda b: b.send_raw(bytes([0x68, 4, 0x03, 0, 0, 0])), r"unknown U frame 03 00 00 00"),
            ("U frame with two functions", "127.0.0.1", False,
             lambda b: b.send_raw(bytes([0x68, 4, 0x47, 0, 0, 0])), r"U frame 0x47 with more than one function"),
            ("length 254", "127.0.0.1", False,
             lambda b: b.send_raw(bytes([0x68, 254, 0, 0, 0, 0]) + bytes(250)), r"APDU length 254 out of range"),
            ("length 255", "127.0.0.1", False,
             lambda b: b.send_raw(bytes([0x68, 255, 0, 0, 0, 0])), r"APDU length 255 out of range"),
            ("start octet", "127.0.0.1", False,
             lambda b: b.send_raw(bytes([0x69, 4, 0x07, 0, 0, 0])), r"start octet 0x69, not 0x68"),
            ("I-frame before STARTDT", "127.0.0.1", False,
             lambda b: b.send_i([io(C_IC_NA_1, 0, qoi=20)], COT_ACT), r"I-frame while data transfer is stopped"),
        ]
        errors = 0
        for n, (what, src, start, act, rule) in enumerate(cases):
            b = Peer.connect(port, src=src, auto_ack=None, name=what)
            if start:
                b.startdt()
            act(b)
            b.wait_closed(5)
            k.wait_log(r"line srv: %s: (closed: )?protocol error: .*%s" % (peer_name(b), rule))
            errors += 1
            check(k.line("srv")["counters"]["protocol_errors"] == errors, "%s counted" % what)
            b.check_clean()
            served_ok(k, good, "%d.25" % (n + 2))

        # t1: the misbehaving client never acknowledges the end of initialisation
        b = Peer.connect(port, src="127.0.0.2", auto_ack=None, name="silent")
        b.startdt()
        ei = b.wait_i(M_EI_NA_1, COT_INIT)
        closed = b.wait_closed(5)
        k.wait_log(r"line srv: %s: (closed: )?protocol error: t1 expired: I-frames not confirmed within 1 s" % peer_name(b))
        check(0.8 <= closed - ei.t <= 2.0, "closed %.2f s after the unacknowledged I-frame (t1 = 1 s)" % (
            closed - ei.t))
        served_ok(k, good, "99.5")
        good.check_clean()
        check(not good.closed, "the good client kept its connection")
        good.close()


def test_t1_not_extended_by_old_acks():
    # the peer keeps sending S-frames that acknowledge nothing new (N(R) 0 while komd's
    # N(S) 0 waits): t1 runs from that I-frame, so komd closes about 1 s after it
    port = free_port()
    with Komd(MEM + "lines = (%s);" % server_line(port, "t1 = 1;")).start() as k:
        k.wait_log(r"line srv: listening")
        b = Peer.connect(port, auto_ack=None, name="stale acks")
        b.startdt()
        ei = b.wait_i(M_EI_NA_1, COT_INIT)
        last = [time.monotonic()]

        def stale():
            if b.closed:
                return True
            if time.monotonic() - last[0] >= 0.2:
                b.send_s(nr=0)
                last[0] = time.monotonic()
            return False
        try:
            k.until(stale, 4, "komd closing on t1 while S-frames acknowledge nothing new")
        finally:
            b.close()
        k.wait_log(r"t1 expired: I-frames not confirmed within 1 s")
        check(b.closed_at - ei.t <= 2.0, "closed %.2f s after the unacknowledged I-frame (t1 = 1 s)" % (
            b.closed_at - ei.t))


def test_t1_from_each_frames_sending():
    # t1 is each I-frame's own: a peer that acknowledges the oldest frame now and then does
    # not keep the later ones alive. t1 = 2 s; the interrogation's frames (N(S) 1..) go out
    # at g; 1 s later the peer acknowledges only the first of them: komd must close at
    # about g + 2 s (the second frame's due time), not g + 3 s (t1 again from the progress)
    port = free_port()
    with Komd(MEM + "lines = (%s);" % server_line(port, "t1 = 2; t2 = 1;")).start() as k:
        k.wait_log(r"line srv: listening")
        b = Peer.connect(port, auto_ack=None, name="slow acks")
        b.startdt()
        b.wait_i(M_EI_NA_1, COT_INIT)
        m = b.mark()
        b.send_i([io(C_IC_NA_1, 0, qoi=20)], COT_ACT)  # its N(R) acknowledges the end of init
        con = b.wait_i(C_IC_NA_1, COT_ACTCON, since=m)
        b.wait_i(C_IC_NA_1, COT_ACTTERM, since=m)
        check(len(b.iframes(since=m)) >= 3, "the interrogation took several I-frames: %s" % b.iframes(since=m))
        acked = []

        def slow():
            if b.closed:
                return True
            if not acked and time.monotonic() - con.t >= 1.0:
                b.send_s(nr=(con.ns + 1) & 0x7fff)  # the ActCon only
                acked.append(time.monotonic())
            return False
        try:
            k.until(slow, 6, "komd closing on the second frame's t1")
        finally:
            b.close()
        check(acked, "the peer acknowledged the first frame before komd closed")
        k.wait_log(r"t1 expired: I-frames not confirmed within 2 s")
        check(1.6 <= b.closed_at - con.t <= 2.6, "closed %.2f s after the interrogation's frames (t1 = 2 s; "
              "from the last progress it would be 3 s)" % (b.closed_at - con.t))


def test_t1_after_stopdt():
    # STOPDT with I-frames unacknowledged: pending stopped (no STOPDT con yet, 104 5.3); the
    # frames sent are still owed their acknowledgement within t1, even while the peer keeps
    # confirming komd's TESTFRs (t3 = 1 s): komd closes about t1 = 2 s after them
    port = free_port()
    with Komd(MEM + "lines = (%s);" % server_line(port, "k = 2; w = 1; t1 = 2; t2 = 1; t3 = 1;")).start() as k:
        k.wait_log(r"line srv: listening")
        a = Peer.connect(port, auto_ack=None, name="stopper")
        a.startdt()
        ei = a.wait_i(M_EI_NA_1, COT_INIT)
        m = a.mark()
        a.send_u("STOPDT_ACT")
        closed = a.wait_closed(6)
        check(not a.find(lambda f: f.fmt == "U" and f.u == "STOPDT_CON", since=m), "no STOPDT con: I-frames unacknowledged")
        check(a.find(lambda f: f.fmt == "U" and f.u == "TESTFR_ACT", since=m),
              "komd sent TESTFR while waiting (the peer confirmed it)")
        check(1.6 <= closed - ei.t <= 2.8, "closed %.2f s after the unacknowledged I-frames (t1 = 2 s)" % (
            closed - ei.t))
        k.wait_log(r"line srv: %s: (closed: )?protocol error: t1 expired: I-frames not confirmed within 2 s" % peer_name(a))


def test_one_testfr_at_a_time():
    # t3 (1 s) shorter than t1 (3 s) and a peer that never confirms TESTFR: komd sends one
    # TESTFR act and waits for its con (t1), not one more every t3
    port = free_port()
    with Komd(MEM + "lines = (%s);" % server_line(port, "t1 = 3; t2 = 1; t3 = 1;")).start() as k:
        k.wait_log(r"line srv: listening")
        b = Peer.connect(port, answer_testfr=False, name="no TESTFR con")
        tf = b.wait_u("TESTFR_ACT", 5)
        closed = b.wait_closed(6)
        n = len(b.find(lambda f: f.fmt == "U" and f.u == "TESTFR_ACT"))
        check(n == 1, "one TESTFR act before t1 closed the connection, not %d" % n)
        check(2.6 <= closed - tf.t <= 3.8, "closed %.2f s after the TESTFR act (t1 = 3 s)" % (closed - tf.t))
        k.wait_log(r"line srv: %s: (closed: )?protocol error: t1 expired: TESTFR not confirmed within 3 s" % peer_name(b))


def test_server_t3_testfr():
    port = free_port()
    with Komd(MEM + "lines = (%s);" % server_line(port, "t1 = 1; t3 = 1;")).start() as k:
        k.wait_log(r"line srv: listening")
        good = Peer.connect(port, name="good client")
        good.startdt()
        b = Peer.connect(port, answer_testfr=False, name="no TESTFR con")
        t0 = time.monotonic()
        tf = b.wait_u("TESTFR_ACT", 5)
        check(0.8 <= tf.t - t0 <= 2.0, "TESTFR act after t3 = 1 s idle: %.2f s" % (tf.t - t0))
        closed = b.wait_closed(5)
        check(0.8 <= closed - tf.t <= 2.0, "closed %.2f s after the unconfirmed TESTFR (t1 = 1 s)" % (closed - tf.t))
        k.wait_log(r"line srv: %s: (closed: )?protocol error: t1 expired: TESTFR not confirmed" % peer_name(b))
        # the good client answered komd's TESTFRs and is still there
        good.wait_u("TESTFR_ACT", 5)
        served_ok(k, good, "3.5")
        # komd answers our TESTFR act
        m = good.mark()
        good.send_u("TESTFR_ACT")
        good.wait_u("TESTFR_CON", 5, since=m)
        good.check_clean()
        good.close()


def komctl_async(k, *args):
    """komctl in the background (set waits for the device's answer); the result in r[0]."""
    r = []

    def run():
        r.append(subprocess.run([KOMCTL, "-s", k.sock] + list(args), capture_output=True, text=True, timeout=20))
    th = threading.Thread(target=run, daemon=True)
    th.start()
    return r, th


def test_client_controlled_station():
    srv = PeerServer(name="controlled station")
    try:
        with Komd("lines = (%s);" % client_line(srv.port, "t2 = 2;")).start() as k:
            p = srv.wait_conn(1)
            p.wait_u("STARTDT_ACT")
            k.wait_log(r"line cli: 127\.0\.0\.1:%d: data transfer started" % srv.port)
            gi = p.wait_i(C_IC_NA_1, COT_ACT)
            check(gi.ca == 1 and gi.objs[0].qoi == 20 and gi.objs[0].information_object_address == 0,
                  "station interrogation of CA 1: %r" % gi.objs)
            # the answer: ActCon, four objects with COT 20, ActTerm
            m = p.mark()
            t_first = time.monotonic()
            p.send_i([io(C_IC_NA_1, 0, qoi=20)], COT_ACTCON)
            p.send_i([io(M_SP_NA_1, 100, spi_value=1)], COT_INROGEN)
            p.send_i([io(M_ME_NC_1, 101, scaled_value=21.5), io(M_ME_NC_1, 1101, scaled_value=1.0)], COT_INROGEN)
            p.send_i([io(M_ME_NB_1, 102, scaled_value=-42)], COT_INROGEN)
            p.send_i([io(M_DP_NA_1, 103, dpi_value=2)], COT_INROGEN)
            p.send_i([io(C_IC_NA_1, 0, qoi=20)], COT_ACTTERM)
            k.until(lambda: k.tag("c.dp")["value"] == "on", 5, "the interrogation's values")
            for name, v in (("c.sp", True), ("c.f", 21.5), ("c.sc", -42), ("c.dp", "on")):
                t = k.tag(name)
                check(t["value"] == v and t["quality"] == "good", "%s: %s" % (name, t))
            # komd acknowledges the 6 I-frames (fewer than w) after t2 = 2 s
            s = p.wait(lambda f: f.fmt == "S", 5, "komd's S-frame after t2", m)
            check(s.nr == 6, "S acknowledges the 6: %r" % s)
            check(1.6 <= s.t - t_first <= 3.5, "after t2 = 2 s: %.2f s" % (s.t - t_first))

            # w = 8: eight spontaneous values, komd's S-frame at once
            m = p.mark()
            t0 = time.monotonic()
            for v in range(1, 9):
                p.send_i([io(M_ME_NB_1, 102, scaled_value=v)], COT_SPONT)
            s = p.wait(lambda f: f.fmt == "S", 5, "komd's S-frame after w = 8", m)
            check(s.nr == 14 and s.t - t0 < 1.5, "S(nr=14) after w, not t2: %r %.2f s" % (s, s.t - t0))
            k.until(lambda: k.tag("c.sc")["value"] == 8, 5, "the eight values")

            # quality bits and CP56Time2a times
            t1 = now_ms() - 3600 * 1000 - 123
            t2 = now_ms() - 60 * 1000 - 7
            t3 = now_ms() - 5000 - 999
            p.send_i([io(M_ME_TF_1, 101, scaled_value=3.5, iv=1, nt=1, **cp56_kw(t1))], COT_SPONT)
            p.send_i([io(M_SP_TB_1, 100, spi_value=0, sb=1, bl=1, **cp56_kw(t2))], COT_SPONT)
            p.send_i([io(M_ME_TE_1, 102, scaled_value=32767, ov=1, **cp56_kw(t3))], COT_SPONT)
            p.send_i([io(M_DP_TB_1, 103, dpi_value=1, iv=1, nt=1, sb=1, bl=1, **cp56_kw(t3, iv=0))], COT_SPONT)
            k.until(lambda: k.tag("c.dp")["value"] == "off", 5, "the timed values")
            for name, v, q, t in (("c.f", 3.5, "IV,NT", t1), ("c.sp", False, "SB,BL", t2), ("c.sc", 32767, "OV", t3),
                                  ("c.dp", "off", "IV,NT,SB,BL", t3)):
                tag = k.tag(name)
                check(tag["value"] == v and tag["quality"] == q and tag["source_time"] == iso_ms(t),
                      "%s: %s (want %s %s %s)" % (name, tag, v, q, iso_ms(t)))
            check(k.tag("c.f")["invalid"] is True and k.tag("c.sc")["invalid"] is False, "IV is invalid")
            # a time tag marked invalid makes the value invalid
            p.send_i([io(M_ME_TF_1, 101, scaled_value=4.5, **cp56_kw(t1, iv=1))], COT_SPONT)
            k.until(lambda: k.tag("c.f")["value"] == 4.5, 5, "value with an invalid time")
            check(k.tag("c.f")["quality"] == "IV", "invalid time tag: %s" % k.tag("c.f"))

            # komd's command: the right type and value; our ActCon completes it (cmdc 1)
            m = p.mark()
            r, th = komctl_async(k, "set", "c.cmd", "true")
            cmd = p.wait_i(C_SC_NA_1, COT_ACT, since=m)
            o = cmd.obj(201)
            check(cmd.ca == 1 and o is not None and o.scs == 1 and o.s_or_e == 0, "C_SC_NA_1 201 on: %r" % cmd.objs)
            p.send_i([io(C_SC_NA_1, 201, scs=1)], COT_ACTCON)
            th.join(10)
            check(r and r[0].returncode == 0 and "activation confirmed" in r[0].stdout, "confirmed: %s" % r)
            p.send_i([io(C_SC_NA_1, 201, scs=1)], COT_ACTTERM)  # after the ActCon: normal, ignored
            # a set point refused: negative ActCon fails komctl set
            m = p.mark()
            r, th = komctl_async(k, "set", "c.set", "7.25")
            cmd = p.wait_i(C_SE_NC_1, COT_ACT, since=m)
            check(cmd.obj(200) is not None and cmd.obj(200).scaled_value == 7.25 and cmd.obj(200).action == 0,
                  "C_SE_NC_1 200 7.25: %r" % cmd.objs)
            p.send_i([io(C_SE_NC_1, 200, scaled_value=7.25)], COT_ACTCON, pn=1)
            th.join(10)
            check(r and r[0].returncode == 1 and "negative" in r[0].stderr, "refused: %s" % r)

            # an unknown type and an unknown common address are logged and ignored
            p.send_i([io(M_ME_NC_1, 101, scaled_value=1.0)], COT_SPONT, type_id=99)
            k.wait_log(r"line cli: 127\.0\.0\.1:%d: ASDU not understood: unknown type 99" % srv.port)
            p.send_i([io(M_ME_NC_1, 101, scaled_value=2.0)], COT_SPONT, ca=9)
            k.wait_log(r"line cli: 127\.0\.0\.1:%d: M_ME_NC_1 for unknown common address 9, ignored" % srv.port)
            p.send_i([io(M_ME_NC_1, 101, scaled_value=9.5)], COT_SPONT)
            k.until(lambda: k.tag("c.f")["value"] == 9.5, 5, "a value after them")
            check(not p.closed and len(srv.conns) == 1, "the connection stays")
            check(k.line("cli")["counters"]["protocol_errors"] == 0, "no protocol error so far")
            p.check_clean()

            # a wrong N(S) from the station: komd closes and connects again
            p.send_i([io(M_ME_NC_1, 101, scaled_value=1.0)], COT_SPONT, ns=p.vs + 3)
            p.wait_closed(5)
            k.wait_log(r"line cli: 127\.0\.0\.1:%d: (closed: )?protocol error: wrong N\(S\) %d, expected %d" % (
                srv.port, p.vs - 1, p.vs - 4))
            p2 = srv.wait_conn(2, 5)
            p2.wait_i(C_IC_NA_1, COT_ACT)
            check(k.tag("c.f")["invalid"] is True, "values invalid while the station is lost")
    finally:
        srv.close()


def test_server_k_window():
    port = free_port()
    with Komd(MEM + "lines = (%s);" % server_line(port)).start() as k:
        k.wait_log(r"line srv: listening")
        p = Peer.connect(port, auto_ack=None, name="slow master")
        p.startdt()
        p.wait_i(M_EI_NA_1, COT_INIT)
        for v in range(1, 21):
            k.ctl("set", "m.sc", str(v))

        settle = p.roundtrip  # everything komd did before our TESTFR act comes before its con
        settle()
        vals = lambda: [f.obj(102).scaled_value for f in p.iframes() if f.type == M_ME_NB_1]  # noqa: E731
        check(len(p.iframes()) == 12, "k = 12 I-frames unacknowledged, then komd waits: %d" % len(p.iframes()))
        check(vals() == list(range(1, 11)), "2 ends of initialisation and 10 events: %s" % vals())
        # acknowledge 5: five more
        p.send_s(5)
        settle()
        check(len(p.iframes()) == 17 and vals() == list(range(1, 16)), "5 more after S(5): %s" % vals())
        # acknowledge all: the rest
        p.send_s()
        settle()
        check(vals() == list(range(1, 21)), "every event in order: %s" % vals())
        check(len(p.iframes()) == 22, "22 I-frames in all: %d" % len(p.iframes()))
        p.send_s()
        p.check_clean()
        check(not p.closed, "connection kept")
        p.close()


def test_client_more_than_k_received():
    # w (16) over k (12): komd does not acknowledge before the 13th frame, which breaks k
    srv = PeerServer(name="controlled station")
    try:
        with Komd("lines = (%s);" % client_line(srv.port, "w = 16;")).start() as k:
            p = srv.wait_conn(1)
            p.wait_i(C_IC_NA_1, COT_ACT)
            for v in range(1, 13):
                p.send_i([io(M_ME_NB_1, 102, scaled_value=v)], COT_SPONT)
            k.until(lambda: k.tag("c.sc")["value"] == 12, 5, "12 values")
            check(not p.closed and not p.find(lambda f: f.fmt == "S"), "12 frames are within k")
            p.send_i([io(M_ME_NB_1, 102, scaled_value=13)], COT_SPONT)
            p.wait_closed(5)
            k.wait_log(r"line cli: 127\.0\.0\.1:%d: (closed: )?protocol error: more than k=12 unacknowledged I-frames received"
                       % srv.port)
            check(k.tag("c.sc")["value"] == 12, "the 13th is not taken")
            srv.wait_conn(2, 5)
    finally:
        srv.close()


def test_server_requeue_unacknowledged():
    # time-tagged events the lost connection did not acknowledge go to the next started one,
    # in order; the acknowledged ones do not, nor untimed ones (its interrogation tells)
    port = free_port()
    with Komd(MEM + "lines = (%s);" % server_line(port)).start() as k:
        k.wait_log(r"line srv: listening")
        a = Peer.connect(port, auto_ack=None, name="first master")
        a.startdt()
        a.wait_i(M_EI_NA_1, COT_INIT, ca=2)
        for v in ("false", "true", "false"):
            k.ctl("set", "m.sp", v)  # M_SP_TB_1
        k.ctl("set", "m.sc", "5")   # M_ME_NB_1, untimed
        a.wait(lambda f: f.fmt == "I" and f.type == M_ME_NB_1 and f.obj(102).scaled_value == 5, 5, "4 events")
        a.send_s(3)  # the two ends of initialisation and the first event
        m = a.mark()
        a.send_u("TESTFR_ACT")
        a.wait_u("TESTFR_CON", 5, since=m)
        a.close()
        k.wait_log(r"line srv: %s: closed" % peer_name(a))
        b = Peer.connect(port, name="second master")
        b.startdt()
        b.wait(lambda f: f.fmt == "I" and f.type == M_SP_TB_1 and f.obj(100).spi_value == 0, 5, "event 3 again")
        b.roundtrip()
        vals = [f.obj(100).spi_value for f in b.iframes() if f.type == M_SP_TB_1]
        check(vals == [1, 0], "the unacknowledged time-tagged events, in order: %s" % vals)
        check(not [f for f in b.iframes() if f.type == M_ME_NB_1], "no untimed event again")
        check([f.type for f in b.iframes()][:2] == [M_EI_NA_1, M_EI_NA_1], "after the ends of initialisation")
        b.check_clean()
        b.close()


def test_client_startdt_rules():
    # a controlled station that never confirms STARTDT: t1 closes; one that sends STARTDT
    # act itself breaks the rules
    srv = PeerServer(name="no STARTDT con", answer_startdt=False)
    try:
        with Komd("lines = (%s);" % client_line(srv.port, "t1 = 1;")).start() as k:
            p = srv.wait_conn(1)
            act = p.wait_u("STARTDT_ACT")
            closed = p.wait_closed(5)
            check(0.8 <= closed - act.t <= 2.0, "closed %.2f s after STARTDT act (t1 = 1 s)" % (closed - act.t))
            k.wait_log(r"line cli: 127\.0\.0\.1:%d: (closed: )?protocol error: t1 expired: STARTDT not confirmed"
                       % srv.port)
            check(not p.find(lambda f: f.fmt == "I"), "no I-frame before STARTDT con")
            p2 = srv.wait_conn(2, 5)
            p2.wait_u("STARTDT_ACT")
            p2.send_u("STARTDT_CON")
            p2.wait_i(C_IC_NA_1, COT_ACT)
            p2.send_u("STARTDT_ACT")
            p2.wait_closed(5)
            k.wait_log(r"line cli: 127\.0\.0\.1:%d: (closed: )?protocol error: STARTDT act from a controlled station" % srv.port)
            p2.check_clean()
    finally:
        srv.close()


def test_capture_decodes_cleanly():
    port = free_port()
    d = tempfile.mkdtemp(prefix="iec104cap-")
    path = os.path.join(d, "iec104.pcapng")
    cap = Capture(port, path)
    try:
        with Komd(MEM + "lines = (%s);" % server_line(port)).start() as k:
            k.wait_log(r"line srv: listening")
            p = Peer.connect(port, name="master")
            p.startdt()
            p.wait_i(M_EI_NA_1, COT_INIT, ca=2)
            for objs, cot, ca, want in (
                    ([io(C_IC_NA_1, 0, qoi=20)], COT_ACT, 1, (C_IC_NA_1, COT_ACTTERM)),
                    ([io(C_CI_NA_1, 0, rqt=5)], COT_ACT, 1, (C_CI_NA_1, COT_ACTTERM)),
                    ([io(C_CS_NA_1, 0, **cp56_kw(now_ms()))], COT_ACT, 1, (C_CS_NA_1, COT_ACTCON)),
                    ([io(C_SE_NC_1, 200, scaled_value=-3.25)], COT_ACT, 1, (C_SE_NC_1, COT_ACTTERM)),
                    ([io(C_SC_NA_1, 201, scs=1)], COT_DEACT, 1, (C_SC_NA_1, 9)),
                    ([io(C_SC_NA_1, 299, scs=1)], COT_ACT, 1, (C_SC_NA_1, COT_UNKNOWN_IOA))):
                m = p.mark()
                p.send_i(objs, cot, ca=ca)
                p.wait(lambda f: f.fmt == "I" and (f.type, f.cot) == want, 5, "%s" % (want,), m)
            for tag, v in (("m.sp", "false"), ("m.f", "-1e-3"), ("m.sc", "32767"), ("m.dp", "1")):
                k.ctl("set", tag, v)
            k.until(lambda: len(p.find(lambda f: f.fmt == "I" and f.cot == COT_SPONT)) >= 4, 5, "4 events")
            m = p.mark()
            p.send_u("TESTFR_ACT")
            p.wait_u("TESTFR_CON", 5, since=m)
            p.send_s()
            p.send_u("STOPDT_ACT")
            p.wait_u("STOPDT_CON", 5, since=m)
            p.check_clean()
            n_asdu = len(p.iframes()) + len([r for _, r in p.sent if (r[2] & 1) == 0])
            p.close()
        cap.stop()
        bad = tshark_read(path, port, "_ws.malformed || _ws.expert.severity == error",
                          ("frame.number", "_ws.col.Info"))
        check(not bad, "tshark finds malformed frames or errors: %s" % bad[:10])
        asdus = tshark_read(path, port, "iec60870_asdu", ("frame.number", "iec60870_asdu.typeid"))
        check(len(asdus) > 0, "tshark sees ASDUs")
        typeids = sum(len(l.split("\t")[1].split(",")) for l in asdus)
        check(typeids == n_asdu, "tshark sees every ASDU: %d of %d" % (typeids, n_asdu))
        u = tshark_read(path, port, "iec60870_104.type == 3", ("frame.number",))
        check(len(u) >= 6, "U frames decoded: %d" % len(u))
    finally:
        if cap.p.proc.poll() is None:
            cap.p.stop()
        subprocess.run(["rm", "-rf", d])


if __name__ == "__main__":
    main([test_server_controlling_station, test_server_misbehaving_clients, test_t1_not_extended_by_old_acks,
          test_t1_from_each_frames_sending, test_t1_after_stopdt, test_one_testfr_at_a_time,
          test_server_t3_testfr, test_client_controlled_station, test_server_k_window,
          test_server_requeue_unacknowledged, test_client_startdt_rules, test_client_more_than_k_received,
          test_capture_decodes_cleanly])
