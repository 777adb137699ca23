"""Everything else an integrator touches: man pages, make install, the control socket's
mode, EMFILE on accept, polling schedules, drop-in files, write timeouts, JSON output of
every komctl command, name resolution errors."""
import json
import re
import os
import stat
import subprocess
import tempfile
import time

from komdtest import BUILD, TOP, Komd, KtPeer, check, free_port, main, run_komd


def test_man_pages():
    for page in ("man/komd.8", "man/komd.conf.5", "man/komctl.1"):
        path = os.path.join(TOP, page)
        r = subprocess.run(["man", "--warnings", "-l", path], capture_output=True, text=True,
                           env=dict(os.environ, MANPAGER="cat", MANWIDTH="80"))
        check(r.returncode == 0 and len(r.stdout) > 2000, "%s renders with man -l" % page)
        check(r.stderr.strip() == "", "%s: no warnings: %s" % (page, r.stderr))


def test_documented_configurations_load():
    """The README's example and the demo configuration are valid (docs in step with code)."""
    readme = open(os.path.join(TOP, "README.md")).read()
    m = re.search(r"\n    lines = \(\n(.*?)\n    \);\n", readme, re.S)
    check(m, "README has a configuration example")
    d = tempfile.mkdtemp(prefix="komd-readme-")
    try:
        path = os.path.join(d, "komd.conf")
        with open(path, "w") as f:
            f.write("lines = (\n" + "\n".join(l[4:] for l in m.group(1).splitlines()) + "\n);\n")
        for conf in (path, os.path.join(TOP, "conf", "komd.conf")):
            r = run_komd("-t", "-c", conf)
            check(r.returncode == 0 and "configuration OK" in r.stdout, "%s: %s" % (conf, r.stderr))
    finally:
        subprocess.run(["rm", "-rf", d])


def test_install():
    d = tempfile.mkdtemp(prefix="komd-install-")
    try:
        r = subprocess.run(["make", "-s", "-C", TOP, "install", "BUILD=%s" % os.path.relpath(BUILD, TOP),
                            "DESTDIR=%s" % d, "PREFIX=/usr", "SYSCONFDIR=/etc"], capture_output=True, text=True)
        check(r.returncode == 0, "make install: %s" % r.stderr)
        for f in ("usr/sbin/komd", "usr/bin/komctl", "usr/share/man/man8/komd.8", "usr/share/man/man5/komd.conf.5",
                  "usr/share/man/man1/komctl.1", "usr/lib/systemd/system/komd.service",
                  "usr/lib/sysusers.d/komd.conf", "etc/komd/komd.conf"):
            check(os.path.exists(os.path.join(d, f)), "installed %s" % f)
        unit = open(os.path.join(d, "usr/lib/systemd/system/komd.service")).read()
        check(not re.search(r"@[A-Z]+@", unit), "placeholders substituted")
        check("ExecStart=/usr/sbin/komd -c /etc/komd/komd.conf" in unit, "paths in the unit")
        check(os.access(os.path.join(d, "usr/sbin/komd"), os.X_OK), "komd executable")
        # a skeleton, not the demo: the default control socket, no line, every section commented
        conf = open(os.path.join(d, "etc/komd/komd.conf")).read()
        check("control_socket = " not in conf.replace("# control_socket", "") and "#\tname = " in conf
              and "simulation" not in conf, "a skeleton: %s" % conf[:300])
        example = os.path.join(d, "usr/share/doc/komd/examples/komd-demo.conf")
        check(os.path.exists(example) and 'control_socket = "/run/komd/komd-demo.sock";' in open(example).read(),
              "the demo as an example, its socket where the unit's PrivateTmp does not hide it")
        for path in (os.path.join(d, "etc/komd/komd.conf"), example):
            r = subprocess.run([os.path.join(d, "usr/sbin/komd"), "-t", "-c", path], capture_output=True, text=True)
            check(r.returncode == 0 and "configuration OK" in r.stdout, "%s is valid: %s" % (path, r.stderr))
        # the default config path follows SYSCONFDIR
        r = subprocess.run([os.path.join(d, "usr/sbin/komd"), "-h"], capture_output=True, text=True)
        check("/etc/komd/komd.conf" in r.stdout, "default config path: %s" % r.stdout)
    finally:
        subprocess.run(["rm", "-rf", d])


def test_control_socket_mode():
    with Komd("lines = ();").start() as k:
        mode = stat.S_IMODE(os.stat(k.sock).st_mode)
        check(mode == 0o660, "control socket mode %o" % mode)


def test_emfile_pauses_accepting():
    port = free_port()
    conf = """tags = ( { name = "m"; type = "int"; initial = 1; } );
lines = ( { name = "srv"; protocol = "komtext-server"; host = "127.0.0.1"; port = %d; max_clients = 1000;
  stations = ( { name = "s"; address = 1; tags = ( { name = "m"; address = "m"; } ); } ); } );""" % port
    # komd raises its descriptor limit to what the configuration needs and leaves the last
    # KOMD_FD_RESERVE to the control socket; a limit lowered behind its back (prlimit on the
    # running process) makes accept() itself fail with EMFILE
    k = Komd(conf).start()
    subprocess.run(["prlimit", "--pid", str(k.proc.pid), "--nofile=48:48"], check=True)
    with k:
        clients = [KtPeer("127.0.0.1", port, listen=False) for _ in range(60)]
        k.wait_log(r"line srv: accept: Too many open files; pausing for 1 s")
        n = len([l for l in k.lines if re.search(r"line srv: 127\.0\.0\.1:\d+: accepted", l)])
        check(20 < n < 48, "accepted up to the fd limit: %d" % n)
        check(k.proc.poll() is None, "komd keeps running")
        mark = len(k.lines)
        for c in clients[:30]:
            c.close()
        k.wait_log(r"line srv: accepting again", since=mark)
        k.until(lambda: k.ctl("status", check=False)[0] == 0, 10, "control socket answers again")
        check(k.line("srv")["sessions"] == 30, "the waiting clients were accepted: %d" % k.line("srv")["sessions"])
        late = KtPeer("127.0.0.1", port, listen=False)
        late.send("PING 1\n")
        k.until(lambda: late.received("PONG 1"), 5, "a new client is served")
        for c in clients[30:] + [late]:
            c.close()


def poll_conf(port, sched):
    return """lines = ( { name = "cli"; protocol = "komtext-client"; host = "127.0.0.1"; port = %d;
  stations = ( { name = "dev"; address = 1; %s tags = ( { name = "t"; address = "t"; type = "int"; } ); } ); } );""" % (
        port, sched)


def test_polling_period_offset():
    peer = KtPeer("127.0.0.1")
    times = []
    orig = peer._serve
    with Komd(poll_conf(peer.port, "period = 0.25; offset = 0.1;")).start() as k:
        k.until(lambda: len(peer.received("PING")) >= 1, 5, "first poll")
        start = len(peer.received("PING"))

        def stamp():
            n = len(peer.received("PING"))
            while len(times) < n - start:
                times.append(time.time())
            return len(times) >= 6
        k.until(stamp, 5, "six polls")
        phases = [round((t * 1000 - 100) % 250) for t in times]
        # aligned to the wall clock: each poll lands just after a multiple of 250 ms + 100 ms
        # (or a fraction of a millisecond before it: komd's timers run on the monotonic clock,
        # which the wall clock may be slewed against)
        check(all(p < 80 or p >= 249 for p in phases), "polls aligned to period+offset: phases %s ms" % phases)
        check(k.line("cli")["stations"][0]["polls"] >= 6, "polls counted")
    del orig
    peer.close()


def test_polling_period_once_per_boundary():
    """A period's poll runs once per boundary: libevent's coarse clock fires timers up to a
    tick (4 ms) early, and a poll started then must not be followed by a second one for the
    same boundary. The station's polls counter over at least 1.5 s of wall clock may not
    exceed the boundaries passed (+2 for the edges)."""
    peer = KtPeer("127.0.0.1")
    with Komd(poll_conf(peer.port, "period = 0.05;")).start() as k:
        k.until(lambda: k.line("cli")["stations"][0]["polls"] >= 1, 5, "first poll")
        p0, t0 = k.line("cli")["stations"][0]["polls"], time.time()
        k.until(lambda: time.time() - t0 >= 1.5 and len(peer.received("PING")) >= 10, 10, "1.5 s of polling")
        p1, t1 = k.line("cli")["stations"][0]["polls"], time.time()
        bound = int((t1 - t0) / 0.05) + 2
        check(p1 - p0 <= bound, "%d polls in %.2f s of a 50 ms period: at most %d" % (p1 - p0, t1 - t0, bound))
        check(len(peer.received("PING")) <= int((t1 - t0 + 1) / 0.05) + 2, "no extra requests either")
        print("    %d polls in %.2f s (period 50 ms, at most %d)" % (p1 - p0, t1 - t0, bound))
    peer.close()


def test_polling_delay_waits_for_answer():
    peer = KtPeer("127.0.0.1", answer=False)
    with Komd(poll_conf(peer.port, "delay = 0.05;")).start() as k:
        k.until(lambda: len(peer.received("PING")) >= 1, 5, "first poll")
        # no answer: delay mode never sends the next poll (0.5 s is ten delays)
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            check(len(peer.received("PING")) == 1 and k.line("cli")["stations"][0]["polls"] == 1,
                  "no second poll before the answer")
        peer.answer = True
        peer.send("PONG 0\n")
        k.until(lambda: len(peer.received("PING")) >= 4, 5, "polling resumes after the answer")


def test_polling_continuous():
    peer = KtPeer("127.0.0.1")
    with Komd(poll_conf(peer.port, "continuous = true;")).start() as k:
        # each answer triggers the next poll at once: many polls, one outstanding at a time
        k.until(lambda: len(peer.received("PING")) >= 200, 10, "200 polls")
        check(k.line("cli")["stations"][0]["state"] == "ok", "station ok")
    peer.close()
    bad = Komd(poll_conf(free_port(), "continuous = true; delay = 1;"))
    r = run_komd("-t", "-c", bad.conf)
    check(r.returncode == 1 and "'continuous' excludes 'period' and 'delay'" in r.stderr, r.stderr)
    subprocess.run(["rm", "-rf", bad.dir])


def test_drop_in_line():
    port = free_port()
    dropin = """lines = ( { name = "extra"; protocol = "komtext-server"; host = "127.0.0.1"; port = %d;
  stations = ( { name = "s"; address = 1; tags = ( { name = "m"; address = "m"; } ); } ); } );""" % port
    with Komd('tags = ( { name = "m"; type = "int"; initial = 5; } );\nlines = ();',
              files={"komd.conf.d/10-extra.conf": dropin, "komd.conf.d/README": "not read"}).start() as k:
        check([l["name"] for l in k.status()["lines"]] == ["extra"], "drop-in line runs")
        c = KtPeer("127.0.0.1", port, listen=False)
        k.until(lambda: c.received("VAL m 0 "), 5, "drop-in line serves")
        c.close()
        with open(os.path.join(k.dir, "komd.conf.d/20-bad.conf"), "w") as f:
            f.write('lines = ( { name = "bad"; protocol = "komtext-server"; port = 0; } );\n')
        rc, _, err = k.ctl("reload", check=False)
        check(rc == 1 and "komd.conf.d/20-bad.conf:1:" in err, "error names the drop-in file: %s" % err)


def test_write_timeout_and_json():
    peer = KtPeer("127.0.0.1", answer=False)
    conf = 'write_timeout = 0.3;\n' + poll_conf(peer.port, "").replace('type = "int";', 'type = "int"; direction = "out";')
    with Komd(conf).start() as k:
        k.until(lambda: peer.nconns() == 1, 5, "connected")
        t0 = time.monotonic()
        rc, out, err = k.ctl("set", "t", "5", check=False)
        dt = time.monotonic() - t0
        check(rc == 1 and "timeout" in err and 0.25 < dt < 3, "write timeout: %d %s %.2f" % (rc, err, dt))
        k.wait_log(r"tag t: write from komctl failed: timeout")
        # the device answers late: the write was already answered (timeout); nothing breaks
        peer.send("ACK 0\n")
        peer.answer = True
        r = subprocess.run([os.path.join(BUILD, "komctl"), "-s", k.sock, "--json", "set", "t", "6"],
                           capture_output=True, text=True)
        check(r.returncode == 0 and json.loads(r.stdout)["ok"] is True, "set --json: %s" % r.stdout)
        for args in (["status"], ["tags"], ["tags", "t*"], ["get", "t"], ["trace", "cli", "on"], ["reload"]):
            r = subprocess.run([os.path.join(BUILD, "komctl"), "-s", k.sock, "--json"] + args,
                               capture_output=True, text=True)
            check(r.returncode == 0, "komctl --json %s: %s" % (args, r.stderr))
            json.loads(r.stdout)
        r = subprocess.run([os.path.join(BUILD, "komctl"), "-s", k.sock, "--json", "get", "nope"],
                           capture_output=True, text=True)
        check(r.returncode == 1 and "no tag" in r.stderr, "error with --json: exit 1")
        # a failed write's answer: the ERR line, then its JSON object (komctl: both on stderr)
        peer.answer = False
        r = subprocess.run([os.path.join(BUILD, "komctl"), "-s", k.sock, "--json", "set", "t", "7"],
                           capture_output=True, text=True)
        first, _, body = r.stderr.partition("\n")
        check(r.returncode == 1 and "timeout" in first and json.loads(body)["ok"] is False and
              "timeout" in json.loads(body)["message"], "failed set --json: %r" % r.stderr)
    peer.close()


def test_name_resolution_failure():
    conf = """lines = ( { name = "cli"; protocol = "komtext-client"; host = "no-such-host.invalid"; port = 1;
  connect_timeout = 0.5; reconnect_delay = 0.2; reconnect_max = 0.5;
  stations = ( { name = "dev"; address = 1; tags = ( { name = "t"; address = "t"; type = "int"; } ); } ); } );"""
    with Komd(conf).start() as k:
        k.wait_log(r"line cli: connect no-such-host\.invalid:1: (cannot resolve|timeout resolving)")
        k.wait_log(r"line cli: all 1 host failed")
        k.ctl("status")


if __name__ == "__main__":
    main([test_man_pages, test_documented_configurations_load, test_install, test_control_socket_mode, test_emfile_pauses_accepting,
          test_polling_period_offset, test_polling_period_once_per_boundary, test_polling_delay_waits_for_answer, test_polling_continuous, test_drop_in_line,
          test_write_timeout_and_json, test_name_resolution_failure])
