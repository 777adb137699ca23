"""IEC 60870-5-104: masters, redundancy groups, the event queue and commands whose master
goes away (issue 10 items 5 to 7), against peers whose APDUs scapy builds and dissects
(iec104peer.py).

- test_second_master_does_not_freeze_first: without `groups` every connection is its own
  redundancy group: a second master that sends STARTDT (and closes) takes nothing from the
  first; two started masters both get every change.
- test_configured_group_moves_data: with `groups`, a STARTDT on another connection of the
  group moves the data there; the first connection is stopped, and its next I-frame closes
  it with a log line that says why (not a silent freeze).
- test_queue_keeps_only_time_tagged_events: while no master is started, only time-tagged
  events are queued (types 30-40 and the CP24 types); the first master to start gets them
  after its STARTDT, then its interrogation answers the rest; untimed changes are never
  sent as spontaneous after the fact.
- test_queue_bounded_per_line: the queue is the line's (no `groups`), bounded by
  queue_size whatever the number of connections; the first master takes it.
- test_select_cancelled_when_master_closes: a select (S/E = 1) whose connection closes is
  cancelled: an execute from another connection does not operate it (with and without
  sbo on the served tag); a select and execute on one connection does.
- test_detached_command_goes_on: a command routed to a device on a client line whose master
  closes before the device answers still completes; komd logs the result for the master
  that left.
- test_client_never_sends_an_answered_write: komd's client does not send an execute whose
  select was confirmed after the write timed out, nor a command that waited for the k
  window past the write timeout.
"""
import subprocess
import threading

from komdtest import KOMCTL, Komd, check, free_port, main
from iec104peer import (COT_ACT, COT_ACTCON, COT_ACTTERM, COT_DEACT, COT_INROGEN, COT_SPONT, C_IC_NA_1, C_SC_NA_1, M_EI_NA_1,
                        M_ME_NB_1, M_SP_TB_1, Peer, PeerServer, io)

COT_DEACTCON = 9
M_ME_TE_1 = 35

MEM = """tags = ( { name = "m.sp"; type = "bool"; initial = false; }, { name = "m.sc"; type = "int"; initial = 0; },
  { name = "m.te"; type = "int"; initial = 0; }, { name = "m.cmd"; type = "bool"; initial = false; },
  { name = "m.sbo"; type = "bool"; initial = false; } );
"""


def server_line(port, extra=""):
    return """{ name = "srv"; protocol = "iec104-server"; host = "127.0.0.1"; port = %d; %s
  stations = ( { name = "ca1"; address = 1; cmdc = 3; tags = (
    { name = "m.sp"; address = "100"; iec_type = "M_SP_TB_1"; },
    { name = "m.sc"; address = "101"; iec_type = "M_ME_NB_1"; },
    { name = "m.te"; address = "102"; iec_type = "M_ME_TE_1"; },
    { name = "m.cmd"; address = "201"; iec_type = "C_SC_NA_1"; direction = "inout"; },
    { name = "m.sbo"; address = "202"; iec_type = "C_SC_NA_1"; direction = "inout"; sbo = true; } ); } ); }""" % (
        port, extra)


def peer_rx(p):
    host, port = p.local
    return r"%s:%d" % (host.replace(".", r"\."), port)


def change(k, p, value, what):
    """Set m.sc; p must get the change."""
    m = p.mark()
    k.ctl("set", "m.sc", str(value))
    return p.wait(lambda f: f.fmt == "I" and f.type == M_ME_NB_1 and f.cot == COT_SPONT and
                  f.obj(101).scaled_value == value, 5, what, m)


def test_second_master_does_not_freeze_first():
    port = free_port()
    with Komd(MEM + "lines = (%s);" % server_line(port)).start() as k:
        k.wait_log(r"line srv: listening")
        a = Peer.connect(port, name="first master")
        a.startdt()
        change(k, a, 1, "a change before the second master")
        # the input: connect, STARTDT act, close
        b = Peer.connect(port, name="second master")
        b.send_raw(bytes.fromhex("680407000000"))
        b.wait_u("STARTDT_CON")
        b.close()
        k.wait_log(r"line srv: %s: closed" % peer_rx(b))
        change(k, a, 2, "a change after the second master left")
        # two started masters: both get every change
        c = Peer.connect(port, name="third master")
        c.startdt()
        mc = c.mark()
        change(k, a, 3, "the first master, with the third started")
        c.wait(lambda f: f.fmt == "I" and f.cot == COT_SPONT and f.obj(101) and f.obj(101).scaled_value == 3, 5,
               "the third master gets it too", mc)
        for p in (a, c):
            p.check_clean()
            p.close()


def test_configured_group_moves_data():
    port = free_port()
    with Komd(MEM + "lines = (%s);" % server_line(port, 'groups = "127.0.0.1, 127.0.0.3";')).start() as k:
        k.wait_log(r"line srv: listening")
        a = Peer.connect(port, name="first of the group")
        a.startdt()
        change(k, a, 1, "to the first")
        b = Peer.connect(port, src="127.0.0.3", name="second of the group")
        b.startdt()
        ma = a.mark()
        change(k, b, 2, "to the second, which took the data")
        a.roundtrip()
        check(not a.find(lambda f: f.fmt == "I" and f.cot == COT_SPONT, ma), "the first gets nothing now")
        # the first master's next request: closed, with the reason in the log
        a.send_i([io(C_IC_NA_1, 0, qoi=20)], COT_ACT)
        a.wait_closed(5)
        k.wait_log(r"line srv: %s: (closed: )?protocol error: I-frame while data transfer is stopped \(%s of its redundancy "
                   r"group took the data\)" % (peer_rx(a), peer_rx(b)))
        change(k, b, 3, "the second goes on")
        b.check_clean()
        b.close()


def test_queue_keeps_only_time_tagged_events():
    port = free_port()
    with Komd(MEM + "lines = (%s);" % server_line(port)).start() as k:
        k.wait_log(r"line srv: listening")
        waiting = Peer.connect(port, name="connected, not started")
        for v in (1, 2, 3):
            k.ctl("set", "m.sc", str(v))     # untimed: not queued
            k.ctl("set", "m.te", str(10 * v))  # CP56 time tag: queued
        k.ctl("set", "m.sp", "true")
        waiting.roundtrip()
        check(not waiting.iframes(), "nothing to a connection not started")
        p = Peer.connect(port, name="first master of the day")
        p.startdt()
        p.wait(lambda f: f.fmt == "I" and f.type == M_SP_TB_1 and f.cot == COT_SPONT, 5, "the queued events")
        p.roundtrip()
        spont = [(f.type, f.objs[0].information_object_address) for f in p.iframes() if f.cot == COT_SPONT]
        check(spont == [(M_ME_TE_1, 102)] * 3 + [(M_SP_TB_1, 100)], "only the time-tagged events, in order: %s" % spont)
        check([f.objs[0].scaled_value for f in p.iframes() if f.type == M_ME_TE_1] == [10, 20, 30], "their values")
        check(p.iframes()[0].type == M_EI_NA_1, "after the end of initialisation")
        # the interrogation answers the rest
        m = p.mark()
        p.send_i([io(C_IC_NA_1, 0, qoi=20)], COT_ACT)
        p.wait_i(C_IC_NA_1, COT_ACTTERM, since=m)
        gi = {o.information_object_address: o for f in p.iframes(m) if f.cot == COT_INROGEN for o in f.objs}
        check(gi[101].scaled_value == 3 and gi[102].scaled_value == 30, "the current image: %r" % gi)
        # a second master later gets none of the old events (the first took them)
        q = Peer.connect(port, name="second master")
        q.startdt()
        q.roundtrip()
        check(not [f for f in q.iframes() if f.cot == COT_SPONT], "no old events for the second: %r" % q.iframes())
        for x in (p, q, waiting):
            x.check_clean()
            x.close()


def test_queue_bounded_per_line():
    port = free_port()
    with Komd(MEM + "lines = (%s);" % server_line(port, "queue_size = 3;")).start() as k:
        k.wait_log(r"line srv: listening")
        idle = [Peer.connect(port, name="idle %d" % n) for n in range(3)]
        for v in range(1, 8):
            k.ctl("set", "m.te", str(v))
        k.wait_log(r"line srv: event queue full \(3\): oldest events dropped")
        p = idle[0]
        p.startdt()
        p.wait(lambda f: f.fmt == "I" and f.type == M_ME_TE_1 and f.objs[0].scaled_value == 7, 5, "the newest event")
        p.roundtrip()
        vals = [f.objs[0].scaled_value for f in p.iframes() if f.type == M_ME_TE_1]
        check(vals == [5, 6, 7], "the three newest, once for the line: %s" % vals)
        idle[1].startdt()
        idle[1].roundtrip()
        check(not [f for f in idle[1].iframes() if f.cot == COT_SPONT], "nothing left for the next")
        for x in idle:
            x.check_clean()
            x.close()


def test_select_cancelled_when_master_closes():
    port = free_port()
    with Komd(MEM + "lines = (%s);" % server_line(port)).start() as k:
        k.wait_log(r"line srv: listening")
        b = Peer.connect(port, name="second master")
        b.startdt()
        for ioa, tag in ((201, "m.cmd"), (202, "m.sbo")):
            a = Peer.connect(port, name="selecting master")
            a.startdt()
            m = a.mark()
            a.send_i([io(C_SC_NA_1, ioa, scs=1, s_or_e=1)], COT_ACT)
            con = a.wait_i(C_SC_NA_1, COT_ACTCON, since=m)
            check(con.pn == 0, "select confirmed")
            # while A holds the select, B's execute is refused
            m = b.mark()
            b.send_i([io(C_SC_NA_1, ioa, scs=1)], COT_ACT)
            f = b.wait_i(C_SC_NA_1, COT_ACTCON, since=m, pn=1)
            check(k.tag(tag)["value"] is False, "%s: not operated by another master's execute" % tag)
            a.close()
            k.wait_log(r"line srv: %s: closed" % peer_rx(a))
            # A is gone: its select is cancelled; B's execute does not operate it
            m = b.mark()
            b.send_i([io(C_SC_NA_1, ioa, scs=1)], COT_ACT)
            f = b.wait(lambda f: f.fmt == "I" and f.type == C_SC_NA_1 and f.cot == COT_ACTCON, 5, "B's answer", m)
            check(f.pn == 1 and k.tag(tag)["value"] is False, "%s: execute after the select's master left: %r %s" % (
                tag, f, k.tag(tag)))
            # B's own select, then its execute: operated
            m = b.mark()
            b.send_i([io(C_SC_NA_1, ioa, scs=1, s_or_e=1)], COT_ACT)
            b.wait_i(C_SC_NA_1, COT_ACTCON, since=m)
            b.send_i([io(C_SC_NA_1, ioa, scs=1)], COT_ACT)
            b.wait_i(C_SC_NA_1, COT_ACTTERM, since=m)
            check(k.tag(tag)["value"] is True, "%s: operated after B's own select" % tag)
            # an execute that is not the command selected is refused, and ends the select
            m = b.mark()
            b.send_i([io(C_SC_NA_1, ioa, scs=1, s_or_e=1)], COT_ACT)
            b.wait_i(C_SC_NA_1, COT_ACTCON, since=m)
            b.send_i([io(C_SC_NA_1, ioa, scs=0)], COT_ACT)
            b.wait_i(C_SC_NA_1, COT_ACTCON, since=m, pn=1)
            check(k.tag(tag)["value"] is True, "%s: a different execute is not operated" % tag)
            # select, then deactivation: cancelled
            m = b.mark()
            b.send_i([io(C_SC_NA_1, ioa, scs=0, s_or_e=1)], COT_ACT)
            b.wait_i(C_SC_NA_1, COT_ACTCON, since=m)
            b.send_i([io(C_SC_NA_1, ioa, scs=0, s_or_e=1)], COT_DEACT)
            b.wait_i(C_SC_NA_1, COT_DEACTCON, since=m)
            b.send_i([io(C_SC_NA_1, ioa, scs=0)], COT_ACT)
            f = b.wait(lambda f: f.fmt == "I" and f.cot == COT_ACTCON and not f.objs[0].s_or_e, 5, "execute", m)
            if tag == "m.sbo":
                check(f.pn == 1 and k.tag(tag)["value"] is True, "sbo: no execute without a select: %r" % f)
        # a direct execute on a tag without sbo, nothing selected: operated
        m = b.mark()
        b.send_i([io(C_SC_NA_1, 201, scs=0)], COT_ACT)
        b.wait_i(C_SC_NA_1, COT_ACTTERM, since=m)
        check(k.tag("m.cmd")["value"] is False, "direct execute")
        b.check_clean()
        b.close()


def komctl_async(k, *args):
    r = []
    th = threading.Thread(target=lambda: r.append(subprocess.run([KOMCTL, "-s", k.sock] + list(args),
                                                                  capture_output=True, text=True, timeout=20)))
    th.start()
    return r, th


def client_line(port, extra="", sbo="false"):
    return """{ name = "cli"; protocol = "iec104-client"; host = "127.0.0.1"; port = %d; %s
  connect_timeout = 1; reconnect_delay = 0.2; reconnect_max = 0.5;
  stations = ( { name = "dev"; address = 1; cmdc = 1; tags = (
    { name = "d.cmd"; address = "501"; type = "bool"; iec_type = "C_SC_NA_1"; direction = "out"; sbo = %s; } ); } ); }""" % (
        port, extra, sbo)


def test_detached_command_goes_on():
    dev = PeerServer(name="device")
    port = free_port()
    srv = """{ name = "srv"; protocol = "iec104-server"; host = "127.0.0.1"; port = %d;
  stations = ( { name = "ca1"; address = 1; tags = (
    { name = "d.cmd"; address = "201"; iec_type = "C_SC_NA_1"; direction = "inout"; } ); } ); }""" % port
    try:
        with Komd("lines = (%s, %s);" % (srv, client_line(dev.port))).start() as k:
            d = dev.wait_conn(1)
            d.wait_i(C_IC_NA_1, COT_ACT)
            a = Peer.connect(port, name="master")
            a.startdt()
            a.send_i([io(C_SC_NA_1, 201, scs=1)], COT_ACT)
            cmd = d.wait_i(C_SC_NA_1, COT_ACT)
            a.close()
            k.wait_log(r"line srv: %s: closed" % peer_rx(a))
            d.send_i(cmd.objs, COT_ACTCON)
            k.wait_log(r"tag d\.cmd: write from line srv station ca1 \(who has disconnected since\): activation confirmed")
            d.check_clean()
    finally:
        dev.close()


def test_client_never_sends_an_answered_write():
    # select-before-operate: the select's ActCon comes after the write timed out
    dev = PeerServer(name="slow device")
    try:
        with Komd("write_timeout = 1;\nlines = (%s);" % client_line(dev.port, sbo="true")).start() as k:
            d = dev.wait_conn(1)
            d.wait_i(C_IC_NA_1, COT_ACT)
            r, th = komctl_async(k, "set", "d.cmd", "true")
            sel = d.wait_i(C_SC_NA_1, COT_ACT)
            check(sel.objs[0].s_or_e == 1, "a select first")
            th.join(10)
            check(r and r[0].returncode == 1 and "timeout" in r[0].stderr, "the write timed out: %s" % r)
            m = d.mark()
            d.send_i(sel.objs, COT_ACTCON)
            d.roundtrip()
            check(not d.iframes(m), "no execute after the write was answered: %r" % d.iframes(m))
            d.check_clean()
    finally:
        dev.close()
    # the k window: komd's interrogation is not acknowledged (k = 1); a command waits behind
    # it; the write times out; the acknowledgement then must not release the command
    dev = PeerServer(name="device that does not acknowledge", auto_ack=None)
    try:
        with Komd("write_timeout = 1;\nlines = (%s);" % client_line(dev.port, "k = 1; w = 1; t1 = 30;")).start() as k:
            d = dev.wait_conn(1)
            d.wait_i(C_IC_NA_1, COT_ACT)
            r, th = komctl_async(k, "set", "d.cmd", "true")
            th.join(10)
            check(r and r[0].returncode == 1 and "timeout" in r[0].stderr, "the write timed out: %s" % r)
            m = d.mark()
            d.send_s()
            d.roundtrip()
            check(not d.find(lambda f: f.fmt == "I" and f.type == C_SC_NA_1, m), "the timed-out command was sent: %r" % (
                d.iframes(m)))
            # a write now goes out
            r, th = komctl_async(k, "set", "d.cmd", "false")
            cmd = d.wait_i(C_SC_NA_1, COT_ACT, since=m)
            d.send_i(cmd.objs, COT_ACTCON)
            th.join(10)
            check(r and r[0].returncode == 0, "the next write: %s" % r)
            d.check_clean()
    finally:
        dev.close()


if __name__ == "__main__":
    main([test_second_master_does_not_freeze_first, test_configured_group_moves_data,
          test_queue_keeps_only_time_tagged_events, test_queue_bounded_per_line,
          test_select_cancelled_when_master_closes, test_detached_command_goes_on,
          test_client_never_sends_an_answered_write])
