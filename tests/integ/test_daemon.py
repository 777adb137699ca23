"""The daemon as a whole: command line, komctl on every command, the tag hub (routing of
writes, invalid-not-zero, simulation, memory tags), reload as a difference, SIGTERM, and
sd_notify messages on a test NOTIFY_SOCKET."""
import os
import re
import signal
import socket
import threading

from komdtest import Komd, KtPeer, WAIT, check, free_port, main, run_komd


def gateway_conf(dev_port, srv_port):
    """dev (a peer) -> line 'acq' (client) -> tags -> line 'srv' (server) -> clients."""
    return """
tags = ( { name = "mem.limit"; type = "float"; initial = 1.5; } );
lines = (
  { name = "acq"; protocol = "komtext-client"; host = "127.0.0.1"; port = %d;
    connect_timeout = 0.5; reconnect_delay = 0.2; reconnect_max = 0.5;
    stations = ( { name = "plc"; address = 3; delay = 0.2; tags = (
        { name = "plc.temp"; address = "temp"; type = "float"; },
        { name = "plc.cmd"; address = "cmd"; type = "int"; direction = "inout"; },
        { name = "plc.text"; address = "text"; type = "string"; direction = "inout"; } ); } ); },
  { name = "sim"; protocol = "komtext-client"; host = "127.0.0.1"; port = 1;
    stations = ( { name = "simst"; simulation = true; period = 0.1; tags = (
        { name = "sim.a"; type = "float"; }, { name = "sim.b"; type = "bool"; },
        { name = "sim.out"; type = "int"; direction = "out"; } ); } ); },
  { name = "srv"; protocol = "komtext-server"; host = "127.0.0.1"; port = %d;
    stations = ( { name = "pub"; address = 1; tags = (
        { name = "plc.temp"; address = "temp"; },
        { name = "plc.cmd"; address = "cmd"; direction = "inout"; },
        { name = "mem.limit"; address = "limit"; direction = "inout"; },
        { name = "sim.a"; address = "sa"; } ); } ); }
);
""" % (dev_port, srv_port)


def test_command_line():
    r = run_komd("-h")
    check(r.returncode == 0 and "usage: komd" in r.stdout and "/DC" in r.stdout, "komd -h")
    r = run_komd("-V")
    check(r.returncode == 0 and r.stdout.startswith("komd "), "komd -V")
    r = run_komd("-x")
    check(r.returncode == 2 and "usage: komd" in r.stderr, "unknown option: usage on stderr, exit 2")
    r = run_komd("--bogus")
    check(r.returncode == 2, "unknown long option: exit 2")
    with Komd(gateway_conf(free_port(), free_port())) as k:
        r = run_komd("-t", "-c", k.conf)
        check(r.returncode == 0 and r.stdout.strip() == "configuration OK", "komd -t: %s %s" % (r.stdout, r.stderr))
        k.write_conf(gateway_conf(free_port(), free_port()).replace('port = 1;', 'port = 70000;')
                     .replace('type = "bool"', 'type = "boolean"'))
        r = run_komd("-t", "-c", k.conf)
        check(r.returncode == 1, "bad config: exit 1")
        errs = r.stderr.strip().splitlines()
        check(len(errs) == 2, "every error printed: %s" % errs)
        for e in errs:
            check(re.match(r"^%s:\d+: " % re.escape(k.conf), e), "FILE:LINE: message: %s" % e)


def test_no_peer_verify_warns():
    with Komd("lines = ();", args=["/DC"]).start() as k:
        k.wait_log(r"certificates will NOT be verified")
    with Komd("lines = ();", args=["--no-peer-verify"]).start() as k:
        k.wait_log(r"certificates will NOT be verified")


def test_gateway_routing_and_komctl():
    dev_port, srv_port = free_port(), free_port()
    dev = KtPeer("127.0.0.1", dev_port)
    with Komd(gateway_conf(dev_port, srv_port)).start() as k:
        k.until(lambda: dev.nconns() == 1, 5, "acq connected")
        # status, text and json (the station is "ok" once the device has answered a poll)
        k.until(lambda: "station plc [3]: ok" in k.ctl("status")[1], 5, "the device answered")
        rc, out, _ = k.ctl("status")
        check("line acq (komtext-client, tcp): connected to 127.0.0.1:%d via primary" % dev_port in out, out)
        check("station plc [3]: ok" in out, out)
        # polling with delay: PING frames keep coming
        k.until(lambda: len(dev.received("PING")) >= 3, 5, "polls")
        # a value from the device reaches a client of the server line
        cli = KtPeer("127.0.0.1", srv_port, listen=False)
        k.until(lambda: cli.received("VAL limit 0 "), 5, "memory tag served")
        dev.val("temp", "21.5", ts=1700000000123)
        k.until(lambda: [f for f in cli.received("VAL temp ") if f.endswith(" 21.5")], 5, "value through gateway")
        t = k.tag("plc.temp")
        check(t["value"] == 21.5 and t["quality"] == "good", "get plc.temp: %s" % t)
        check(t["source_time"] == "2023-11-14T22:13:20.123Z", "source time kept: %s" % t)
        rc, out, _ = k.ctl("get", "plc.temp")
        check(out.startswith("plc.temp") and "21.5" in out and "good" in out, out)
        # tags with a glob
        rc, out, _ = k.ctl("tags", "plc.*")
        check(len(out.strip().splitlines()) == 3, "tags plc.*: %s" % out)
        tags = k.ctl("tags", json_out=True)[1]["tags"]
        check({x["name"] for x in tags} == {"plc.temp", "plc.cmd", "plc.text", "mem.limit", "sim.a", "sim.b", "sim.out"},
              "all tags: %s" % [x["name"] for x in tags])
        # komctl set -> acquiring station -> device ACK
        rc, out, err = k.ctl("set", "plc.cmd", "17")
        check(rc == 0, "set ok")
        check(dev.received("SET ") and dev.received("SET ")[-1].endswith(" cmd 17"), dev.received("SET"))
        # a write from a client of the server line is routed to the device, and answered
        cli.send("SET 9 cmd 33\n")
        k.until(lambda: cli.received("ACK 9"), 5, "ACK routed back")
        check(dev.received("SET ")[-1].endswith(" cmd 33"), dev.received("SET"))
        # the device refuses: the error comes back
        dev.nak = "interlock active"
        rc, out, err = k.ctl("set", "plc.cmd", "1", check=False)
        check(rc == 1 and "interlock active" in err, "NAK: %d %s" % (rc, err))
        cli.send("SET 10 cmd 2\n")
        k.until(lambda: cli.received("NAK 10 interlock active"), 5, "NAK routed back")
        dev.nak = None
        # writes to an input tag and to unknown tags are refused
        rc, _, err = k.ctl("set", "plc.temp", "3", check=False)
        check(rc == 1 and "direction in" in err, err)
        rc, _, err = k.ctl("set", "nope", "3", check=False)
        check(rc == 1 and "no tag" in err, err)
        rc, _, err = k.ctl("set", "plc.cmd", "abc", check=False)
        check(rc == 1 and "plc.cmd" in err, err)
        cli.send("SET 11 temp 5\n")
        k.until(lambda: cli.received("NAK 11"), 5, "NAK for input tag")
        # memory tag: a write is the value; served clients see it
        cli.send("SET 12 limit 2.25\n")
        k.until(lambda: cli.received("ACK 12"), 5, "memory write")
        check(k.tag("mem.limit")["value"] == 2.25, "memory tag stored")
        k.until(lambda: [f for f in cli.received("VAL limit") if f.endswith(" 2.25")], 5, "memory change served")
        rc, _, _ = k.ctl("set", "mem.limit", "3")
        check(k.tag("mem.limit")["value"] == 3, "komctl set on memory tag")
        # simulation: values move between 0 and 100; writes to a simulated output are stored
        k.until(lambda: k.tag("sim.a")["updates"] >= 3, 5, "simulated values")
        check(0 <= k.tag("sim.a")["value"] <= 100, "sine 0..100")
        k.ctl("set", "sim.out", "4")
        check(k.tag("sim.out")["value"] == 4, "simulated output stored")
        # trace
        rc, out, _ = k.ctl("trace", "acq", "on")
        n = len(k.lines)
        dev.val("temp", "22")
        k.wait_log(r"line acq: <- 127\.0\.0\.1:%d rx \[\d+\] 56 41 4c .*\| VAL temp 0 0 22" % dev_port, since=n)
        k.ctl("trace", "acq", "off")
        rc, _, err = k.ctl("trace", "nosuch", "on", check=False)
        check(rc == 1 and "no line" in err, err)
        # unknown command and bad arguments
        rc, _, err = k.ctl("frobnicate", check=False)
        check(rc == 1 and "unknown command" in err, err)
        # device lost: its tags become invalid, keep their value; served quality follows
        dev.close()
        k.until(lambda: k.tag("plc.temp")["invalid"], 5, "invalid after loss")
        check(k.tag("plc.temp")["value"] == 22, "invalid, not zero")
        k.until(lambda: [f for f in cli.received("VAL temp 1 ")], 5, "invalid quality served")
        rc, out, _ = k.ctl("status")
        check("station plc [3]: error" in out, out)
        cli.close()


def test_komctl_errors():
    import subprocess
    from komdtest import KOMCTL
    r = subprocess.run([KOMCTL, "-s", "/nonexistent/sock", "status"], capture_output=True, text=True)
    check(r.returncode == 1 and "cannot connect" in r.stderr, "no daemon: exit 1: %s" % r.stderr)
    r = subprocess.run([KOMCTL], capture_output=True, text=True)
    check(r.returncode == 2 and "usage" in r.stderr, "no command: usage, exit 2")


def test_reload():
    dev_port, srv_port = free_port(), free_port()
    dev = KtPeer("127.0.0.1", dev_port)
    conf = gateway_conf(dev_port, srv_port)
    with Komd(conf).start() as k:
        k.until(lambda: dev.nconns() == 1, 5, "acq connected")
        cli = KtPeer("127.0.0.1", srv_port, listen=False)
        k.until(lambda: k.line("srv")["sessions"] == 1, 5, "client on srv")
        local_port = dev.conns[0].getpeername()[1]
        # an invalid file changes nothing
        k.write_conf(conf.replace('port = %d;' % srv_port, 'port = "x";'))
        rc, out, err = k.ctl("reload", check=False)
        check(rc == 1 and "reload refused, nothing changed" in err and "komd.conf:" in err, err)
        n = len(k.lines)
        k.proc.send_signal(signal.SIGHUP)
        k.wait_log(r"reload refused, nothing changed: 1 error", since=n)
        check(dev.conns and dev.conns[0].getpeername()[1] == local_port and dev.accepted == 1, "kept after bad reload")
        # a valid change to one line: only that line restarts
        k.write_conf(conf.replace('address = "sa"; }', 'address = "sa2"; }'))
        rc, out, err = k.ctl("reload")
        check("1 stopped, 1 started" in out and "2 lines kept" in out, out)
        check(dev.accepted == 1 and dev.nconns() == 1 and dev.conns[0].getpeername()[1] == local_port,
              "unchanged line kept its connection (same local port)")
        k.until(lambda: cli.closed == 1, 5, "the changed server line dropped its clients")
        cli2 = KtPeer("127.0.0.1", srv_port, listen=False)
        k.until(lambda: cli2.received("VAL sa2 "), 5, "new line serves the new address")
        # tag values survive a reload
        check(k.tag("mem.limit")["value"] == 1.5, "memory tag kept")
        # remove a line, add one
        p2 = free_port()
        k.write_conf(conf.replace('{ name = "srv"', '{ name = "srv2"').replace("port = %d;" % srv_port, "port = %d;" % p2))
        n = len(k.lines)
        k.proc.send_signal(signal.SIGHUP)
        k.wait_log(r"configuration applied: 2 lines kept, 1 stopped, 1 started", since=n)
        names = [l["name"] for l in k.status()["lines"]]
        check(names == ["acq", "sim", "srv2"], names)
        check(dev.accepted == 1, "acq untouched")
        cli.close(); cli2.close()
    dev.close()


def test_control_socket_moves_on_reload():
    """A reload that changes control_socket opens the new socket, then closes the old one; a
    new path that cannot be opened leaves the old one serving, with a warning."""
    with Komd("lines = ();").start() as k:
        old, new = k.sock, os.path.join(k.dir, "moved.sock")
        k.write_conf('control_socket = "%s";\nlines = ();' % new)
        rc, out, err = k.ctl("reload")
        check(rc == 0, "reload through the old socket answered: %s %s" % (out, err))
        k.wait_log(r"control socket moved from %s to %s" % (re.escape(old), re.escape(new)))
        check(not os.path.exists(old), "the old socket is gone")
        k.sock = new
        check(k.ctl("status", check=False)[0] == 0, "komctl on the new socket")
        n = len(k.lines)
        # a directory that cannot be made (komd makes a missing one): a file is in the way
        open(os.path.join(k.dir, "a-file"), "w").close()
        k.write_conf('control_socket = "%s";\nlines = ();' % os.path.join(k.dir, "a-file", "x.sock"))
        check(k.ctl("reload", check=False)[0] == 0, "the reload is still taken")
        k.wait_log(r"control_socket .*a-file/x\.sock cannot be opened: %s still serves" % re.escape(new), since=n)
        check(k.ctl("status", check=False)[0] == 0 and os.path.exists(new), "the moved socket still serves")
        # another name of the same socket (through a symbolic link): kept, not removed
        link = k.dir + "-link"
        os.symlink(k.dir, link)
        try:
            n = len(k.lines)
            k.write_conf('control_socket = "%s";\nlines = ();' % os.path.join(link, "moved.sock"))
            check(k.ctl("reload", check=False)[0] == 0, "reload to another name of the socket")
            k.wait_log(r"is the same socket as %s: kept" % re.escape(new), since=n)
            check(os.path.exists(new) and k.ctl("status", check=False)[0] == 0, "the socket is still there")
        finally:
            os.unlink(link)


def test_sigterm_exit_time():
    dev_port, srv_port = free_port(), free_port()
    dev = KtPeer("127.0.0.1", dev_port)
    with Komd(gateway_conf(dev_port, srv_port)).start() as k:
        k.until(lambda: dev.nconns() == 1, 5, "connected")
        clis = [KtPeer("127.0.0.1", srv_port, listen=False) for _ in range(20)]
        k.until(lambda: k.line("srv")["sessions"] == 20, 5, "20 clients")
        rc, dt = k.stop(signal.SIGTERM)
        check(rc == 0, "exit 0 on SIGTERM, got %s" % rc)
        check(dt < 2.0, "exit within 2 s: %.2f" % dt)
        check(not os.path.exists(k.sock), "control socket removed")
        for c in clis:
            c.close()
    with Komd("lines = ();").start() as k:
        rc, dt = k.stop(signal.SIGINT)
        check(rc == 0 and dt < 2.0, "SIGINT: %s %.2f" % (rc, dt))
    dev.close()


def test_sd_notify():
    d = Komd("lines = ();")
    path = os.path.join(d.dir, "notify.sock")
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(path)
    msgs = []

    def rx():
        while True:
            try:
                m = ns.recv(4096).decode()
            except OSError:
                return
            msgs.append(m)
            WAIT.kick()
    threading.Thread(target=rx, daemon=True).start()
    d.env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"}
    with d:
        d.start(wait=False)
        d.proc.pid  # WATCHDOG_PID unset: sd_watchdog_enabled accepts any pid
        d.until(lambda: "READY=1" in msgs, 5, "READY=1")
        check(any(m.startswith("STATUS=") for m in msgs), "STATUS= sent: %s" % msgs)
        d.until(lambda: msgs.count("WATCHDOG=1") >= 3, 5, "WATCHDOG=1 at half the interval")
        n = len(msgs)
        d.proc.send_signal(signal.SIGHUP)
        d.until(lambda: any(m.startswith("RELOADING=1") for m in msgs[n:]) and "READY=1" in msgs[n:], 5,
                "RELOADING=1 then READY=1")
        d.stop()
        d.until(lambda: "STOPPING=1" in msgs, 5, "STOPPING=1")
    ns.close()


def test_journal_format():
    with Komd("lines = ();") as k:
        import subprocess
        from komdtest import KOMD
        env = dict(os.environ, JOURNAL_STREAM="8:1234")
        p = subprocess.Popen([KOMD, "-c", k.conf], stderr=subprocess.PIPE, text=True, env=env)
        line = p.stderr.readline()
        p.send_signal(signal.SIGTERM)
        p.wait(5)
        check(re.match(r"^<6>komd .* starting", line), "journal line with <6> and no timestamp: %r" % line)
        p = subprocess.Popen([KOMD, "-f", "-c", k.conf], stderr=subprocess.PIPE, text=True, env=env)
        line = p.stderr.readline()
        p.send_signal(signal.SIGTERM)
        p.wait(5)
        check(re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} info +komd", line), "-f: timestamps: %r" % line)


if __name__ == "__main__":
    main([test_command_line, test_no_peer_verify_warns, test_gateway_routing_and_komctl, test_komctl_errors, test_control_socket_moves_on_reload,
          test_reload, test_sigterm_exit_time, test_sd_notify, test_journal_format])
