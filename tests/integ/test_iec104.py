"""IEC 60870-5-104: komd's client against komd's server (each test under a loopback capture
that tshark must decode without malformed frames) (values with quality and time,
commands with each cmdc mode and select-before-operate, interrogation), client
redundancy (parallel: one started, the standby takes over), the server's event queue
(time-tagged events queued while no connection is started are delivered, none lost),
event queue overflow."""
import os
import subprocess
import tempfile

import komdtest
from komdtest import Komd, check, main
from mbpeers import Capture


def free_port():
    """A free port, remembered: each test's capture is decoded as IEC 104 on these."""
    p = komdtest.free_port()
    PORTS.append(p)
    return p


PORTS = []


def captured(test):
    """Run test under a loopback capture of all TCP, then check that tshark decodes every
    IEC 104 port the test used without malformed frames or expert errors."""
    def run():
        d = tempfile.mkdtemp(prefix="komd-cap-")
        path = os.path.join(d, "cap.pcapng")
        del PORTS[:]
        cap = Capture(komdtest.free_port(), path, capture_filter="tcp")
        try:
            test()
        finally:
            cap.stop()
        try:
            decode = []
            for p in PORTS:
                decode += ["-d", "tcp.port==%d,iec60870_104" % p]
            def tshark(flt):
                r = subprocess.run(["tshark", "-r", path] + decode + ["-Y", flt, "-T", "fields", "-e", "frame.number"],
                                   capture_output=True, text=True, timeout=120)
                check(r.returncode == 0, "tshark -r: %s" % r.stderr)
                return [l for l in r.stdout.splitlines() if l.strip()]
            # only the test's own ports: the capture takes all loopback TCP, and another test
            # run on the machine at the same time must not count
            ours = "tcp.port in {%s}" % ", ".join(str(p) for p in PORTS)
            bad = tshark("(%s) && (_ws.malformed || _ws.expert.severity == error)" % ours)
            check(not bad, "%s: tshark finds malformed frames or errors in frames %s" % (test.__name__, bad[:10]))
            check(len(tshark("iec60870_asdu")) > 0, "%s: tshark decodes ASDUs" % test.__name__)
        finally:
            subprocess.run(["rm", "-rf", d])
    run.__name__ = test.__name__
    return run

MEM = """tags = ( { name = "m.sp"; type = "bool"; initial = true; },
  { name = "m.f"; type = "float"; initial = 21.5; },
  { name = "m.sc"; type = "int"; initial = -42; },
  { name = "m.dp"; type = "dpi"; initial = 2; },
  { name = "m.cnt"; type = "int"; initial = 7; },
  { name = "m.set"; type = "float"; initial = 0.0; },
  { name = "m.cmd"; type = "bool"; initial = false; } );
"""


def server_line(port, extra="", name="srv", cmdc=3):
    return """{ name = "%s"; protocol = "iec104-server"; host = "127.0.0.1"; port = %d; %s
  stations = ( { name = "ca1"; address = 1; cmdc = %d; tags = (
    { name = "m.sp"; address = "100"; iec_type = "M_SP_TB_1"; },
    { name = "m.f"; address = "101"; iec_type = "M_ME_NC_1"; },
    { name = "m.sc"; address = "#66"; iec_type = "M_ME_NB_1"; },
    { name = "m.dp"; address = "0,0,103"; iec_type = "M_DP_NA_1"; },
    { name = "m.cnt"; address = "104"; iec_type = "M_IT_NA_1"; },
    { name = "m.set"; address = "200"; iec_type = "C_SE_NC_1"; direction = "inout"; },
    { name = "m.cmd"; address = "201"; iec_type = "C_SC_NA_1"; direction = "inout"; } ); } ); }""" % (
        name, port, extra, cmdc)


def client_line(port, extra="", cmdc=1, sbo="false", backup=None):
    kind = 'type = "tcp-redundant"; backup = { host = "127.0.0.1"; port = %d; };' % backup if backup else ""
    return """{ name = "cli"; protocol = "iec104-client"; host = "127.0.0.1"; port = %d; %s
  connect_timeout = 1; reconnect_delay = 0.2; reconnect_max = 0.5; t3 = 1; %s
  stations = ( { name = "ca1"; address = 1; cmdc = %d; ci_period = 0.5; tags = (
    { name = "c.sp"; address = "100"; type = "bool"; iec_type = "M_SP_TB_1"; },
    { name = "c.f"; address = "101"; type = "float"; iec_type = "M_ME_NC_1"; },
    { name = "c.sc"; address = "102"; type = "int"; iec_type = "M_ME_NB_1"; },
    { name = "c.dp"; address = "103"; type = "dpi"; iec_type = "M_DP_NA_1"; },
    { name = "c.cnt"; address = "104"; type = "int"; iec_type = "M_IT_NA_1"; },
    { name = "c.set"; address = "200"; type = "float"; iec_type = "C_SE_NC_1"; direction = "out"; sbo = %s; },
    { name = "c.cmd"; address = "201"; type = "bool"; iec_type = "C_SC_NA_1"; direction = "out"; } ); } ); }""" % (
        port, kind, extra, cmdc, sbo)


def test_values_commands_interrogation():
    port = free_port()
    with Komd(MEM + "lines = (%s, %s);" % (server_line(port), client_line(port))).start() as k:
        k.until(lambda: k.tag("c.f")["value"] == 21.5 and not k.tag("c.f")["invalid"], 5, "GI after STARTDT")
        check(k.tag("c.sp")["value"] is True and k.tag("c.sc")["value"] == -42 and k.tag("c.dp")["value"] == "on",
              "types: %s %s %s" % (k.tag("c.sp"), k.tag("c.sc"), k.tag("c.dp")))
        k.until(lambda: k.tag("c.cnt")["value"] == 7, 5, "counter interrogation")
        # a spontaneous change with its time tag (M_SP_TB_1 carries CP56Time2a)
        k.ctl("set", "m.sp", "false")
        k.until(lambda: k.tag("c.sp")["value"] is False, 5, "spontaneous change")
        check(k.tag("c.sp")["source_time"] == k.tag("m.sp")["source_time"], "time tag carried: %s / %s" % (
            k.tag("c.sp")["source_time"], k.tag("m.sp")["source_time"]))
        # commands: the server routes to the memory tag and confirms; the client writes back
        rc, out, _ = k.ctl("set", "c.set", "33.25")
        check(rc == 0 and "activation confirmed" in out, out)
        check(k.tag("m.set")["value"] == 33.25 and k.tag("c.set")["value"] == 33.25, "set point routed and confirmed")
        rc, out, _ = k.ctl("set", "c.cmd", "true")
        check(rc == 0 and k.tag("m.cmd")["value"] is True, "single command")
        # invalid quality travels
        k.wait_log(r"line cli: 127\.0\.0\.1:%d: data transfer started" % port)


def test_cmdc_modes_and_sbo():
    for cmdc, expect in ((0, "acknowledged"), (1, "activation confirmed"), (2, "activation terminated"),
                         (3, "activation confirmed")):
        port = free_port()
        with Komd(MEM + "lines = (%s, %s);" % (server_line(port), client_line(port, cmdc=cmdc, sbo="true"))).start() as k:
            k.until(lambda: not k.tag("c.f")["invalid"], 5, "started")
            rc, out, err = k.ctl("set", "c.set", "%d.5" % cmdc)
            check(rc == 0 and expect in out, "cmdc %d: %s %s" % (cmdc, out, err))
            k.until(lambda: k.tag("m.set")["value"] == cmdc + 0.5, 5, "executed after select")


def test_unknown_ioa_is_refused():
    port = free_port()
    conf = MEM + "lines = (%s, %s);" % (server_line(port), client_line(port).replace(
        '{ name = "c.cmd"; address = "201";', '{ name = "c.cmd"; address = "299";'))
    with Komd(conf).start() as k:
        k.until(lambda: not k.tag("c.f")["invalid"], 5, "started")
        rc, out, err = k.ctl("set", "c.cmd", "true", check=False)
        check(rc == 1 and "negative" in err, "unknown IOA: negative confirmation: %s" % err)


def test_client_parallel_failover():
    p1, p2 = free_port(), free_port()
    a = Komd(MEM + "lines = (%s);" % server_line(p1)).start()
    b = Komd(MEM.replace("21.5", "22.5") + "lines = (%s);" % server_line(p2)).start()
    with a, b, Komd("lines = (%s);" % client_line(p1, backup=p2)).start() as c:
        c.until(lambda: c.tag("c.f")["value"] == 21.5, 5, "data from the primary")
        c.until(lambda: all(p["state"] == "connected" for p in c.line("cli")["paths"]), 5, "both connected")
        check(sum(p["active"] for p in c.line("cli")["paths"]) == 1, "one started")
        a.stop()
        c.until(lambda: c.tag("c.f")["value"] == 22.5, 5, "the standby started and interrogated")
        check(c.line("cli")["paths"][1]["active"], "backup active")
        c.wait_log(r"line cli: 127\.0\.0\.1:%d: data transfer started" % p2)


def test_server_group_switch_keeps_events():
    # a client that stops leaves no connection started: time-tagged changes (m.sp is
    # M_SP_TB_1) are queued, not lost, and the next client gets them before its interrogation
    port = free_port()
    srv = Komd(MEM + "lines = (%s);" % server_line(port)).start()
    with srv:
        c1 = Komd("lines = (%s);" % client_line(port)).start()
        with c1:
            c1.until(lambda: c1.tag("c.f")["value"] == 21.5, 5, "c1 started")
            c1.stop()
        # no started connection now: changes queue up
        for v in ("false", "true", "false"):
            srv.ctl("set", "m.sp", v)
        c2 = Komd("lines = (%s);" % client_line(port)).start()
        with c2:
            c2.until(lambda: c2.tag("c.sp")["value"] is False, 5, "queued events delivered")
            # three queued events before the interrogation's image: four updates
            c2.until(lambda: c2.tag("c.sp")["updates"] >= 4, 5, "every queued event arrived: %s" % c2.tag("c.sp"))


def test_event_queue_overflow():
    # queue_size 3: with no started connection, 10 changes keep the newest 3; the loss is
    # logged and counted, and the interrogation after STARTDT gives the current image
    port = free_port()
    srv = Komd(MEM + "lines = (%s);" % server_line(port, extra="queue_size = 3;")).start()
    with srv:
        for n in range(1, 11):
            srv.ctl("set", "m.sp", "true" if n % 2 == 0 else "false")
        srv.wait_log(r"line srv: event queue full \(3\): oldest events dropped")
        c = Komd("lines = (%s);" % client_line(port)).start()
        with c:
            c.until(lambda: c.tag("c.sp")["value"] is True and c.tag("c.sp")["updates"] >= 4, 5,
                    "the three newest events and the interrogation's image")
            check(c.tag("c.sp")["updates"] < 11, "not every event: %s" % c.tag("c.sp"))


def test_cyclic_and_clock_sync():
    # a tag served with cyclic = 0.1 is sent again and again (COT 1) without changing; a
    # client with clock_sync_period synchronises after STARTDT (the server confirms it)
    port = free_port()
    srv = server_line(port).replace('{ name = "m.f"; address = "101"; iec_type = "M_ME_NC_1"; }',
                                    '{ name = "m.f"; address = "101"; iec_type = "M_ME_NC_1"; cyclic = 0.1; }')
    cli = client_line(port).replace("ci_period = 0.5;", "ci_period = 0.5; clock_sync_period = 60;")
    with Komd(MEM + "lines = (%s, %s);" % (srv, cli)).start() as k:
        k.ctl("trace", "cli", "on")
        k.until(lambda: k.tag("c.f")["updates"] >= 5, 5, "cyclic transmissions")
        check(k.tag("c.f")["value"] == 21.5, "same value")
        k.wait_log(r"line cli: <- .* M_ME_NC_1 .*(per/cyc|cot=1|COT 1|periodic)")
        k.ctl("trace", "cli", "off")
        check(k.line("cli")["stations"][0]["errors"] == 0, "clock synchronisation confirmed, no errors")


def test_config_checks():
    # bad addresses in groups/allow, an unknown iec_type: errors at the right line
    from komdtest import run_komd
    for extra, msg in (('groups = "10.0.0.1, not-an-ip";', "'groups': 'not-an-ip' is not an IP address"),
                       ('allow = "10.0.0.300";', "'allow': '10.0.0.300' is not an IP address")):
        k = Komd(MEM + "lines = (%s);" % server_line(free_port(), extra=extra))
        r = run_komd("-t", "-c", k.conf)
        check(r.returncode == 1 and msg in r.stderr and "komd.conf:" in r.stderr, r.stderr)
        subprocess.run(["rm", "-rf", k.dir])
    k = Komd(MEM + "lines = (%s);" % server_line(free_port()).replace('"M_ME_NC_1"', '"M_XX_NA_1"'))
    r = run_komd("-t", "-c", k.conf)
    check(r.returncode == 1 and "unknown iec_type 'M_XX_NA_1'" in r.stderr, r.stderr)
    subprocess.run(["rm", "-rf", k.dir])
    # w over 2k/3 and t2 >= t1: taken, with a warning naming file:line; the defaults warn of nothing
    k = Komd(MEM + "lines = (%s);" % server_line(free_port(), extra="k = 6; w = 5; t1 = 2; t2 = 2;"))
    r = run_komd("-t", "-c", k.conf)
    check(r.returncode == 0 and "komd.conf:" in r.stderr and "w 5 is more than two thirds of k 6" in r.stderr
          and "t2 (2 s) is not less than t1 (2 s)" in r.stderr, r.stderr)
    k.write_conf(MEM + "lines = (%s);" % server_line(free_port()))
    r = run_komd("-t", "-c", k.conf)
    check(r.returncode == 0 and "warning" not in r.stderr, "defaults: no warning: %s" % r.stderr)
    subprocess.run(["rm", "-rf", k.dir])


if __name__ == "__main__":
    main([captured(t) for t in [test_values_commands_interrogation, test_cmdc_modes_and_sbo, test_unknown_ioa_is_refused,
          test_client_parallel_failover, test_server_group_switch_keeps_events, test_event_queue_overflow,
          test_cyclic_and_clock_sync]] + [test_config_checks])
