"""The control socket and the process under attack or short of resources (issue 9): a
client that never finishes its request, too many clients, a flood behind a pending set,
an over-long request; descriptors (RLIMIT_NOFILE raised to what the configuration needs,
the control socket answering when lines have used them all); core dumps off; peer
credentials in the log and control_readonly_group."""
import grp
import json
import os
import pwd
import re
import select
import socket
import subprocess
import time

import komdtest
from komdtest import KOMCTL, KOMD, Komd, KtPeer, TestFailure, check, free_port, main, run_komd


def started(k, wrap):
    """k started through wrap (prlimit, setpriv: each execs the next, so the process is komd)."""
    orig = komdtest.subprocess.Popen

    def popen(args, *a, **kw):
        if isinstance(args, list) and args and args[0] == KOMD:
            args = wrap + args
        return orig(args, *a, **kw)
    komdtest.subprocess.Popen = popen
    try:
        return k.start()
    finally:
        komdtest.subprocess.Popen = orig


def connect(k):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(k.sock)
    return s


def answer(s, limit=10.0):
    """Everything komd sends until it closes (a reset after the answer counts as the end)."""
    s.settimeout(limit)
    data = b""
    while True:
        try:
            d = s.recv(65536)
        except ConnectionResetError:
            break
        if not d:
            break
        data += d
    s.close()
    return data.decode(errors="replace")


def proc_field(pid, name):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(name + ":"):
                return line.split()[1]
    return None


def nofile(pid):
    """(soft, hard) of RLIMIT_NOFILE for pid."""
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                w = line.split()
                return int(w[3]), int(w[4])
    return None


def server_conf(port, max_clients, extra=""):
    return extra + """tags = ( { name = "m"; type = "int"; initial = 1; } );
lines = ( { name = "srv"; protocol = "komtext-server"; host = "127.0.0.1"; port = %d; max_clients = %d;
  stations = ( { name = "s"; address = 1; tags = ( { name = "m"; address = "m"; } ); } ); } );""" % (port, max_clients)


def test_request_timeout():
    with Komd("control_timeout = 0.5;\nlines = ();").start() as k:
        # part of a request, then nothing
        s = connect(k)
        s.sendall(b"text\x1fsta")
        t0 = time.monotonic()
        out = answer(s)
        dt = time.monotonic() - t0
        check(out.startswith("ERR no complete request within 0.5 s"), "dropped with an error: %r" % out)
        check(0.4 < dt < 5, "dropped after control_timeout: %.2f s" % dt)
        k.wait_log(r"control socket: uid 0 \(root\) pid \d+: no complete request within 0\.5 s: dropped")
        # a byte at a time: the deadline is for the whole request, not between bytes
        s = connect(k)
        t0 = time.monotonic()
        closed = False
        while not closed and time.monotonic() - t0 < 5:
            try:
                s.send(b"x")
            except OSError:
                break
            closed = bool(select.select([s], [], [], 0.1)[0])
        out = answer(s)
        check(out.startswith("ERR no complete request") and time.monotonic() - t0 < 2,
              "a slow client is dropped at the deadline: %r after %.2f s" % (out, time.monotonic() - t0))
        k.ctl("status")


def test_max_clients():
    with Komd("control_max_clients = 3;\ncontrol_timeout = 60;\nlines = ();").start() as k:
        idle = [connect(k) for _ in range(3)]
        rc, _, err = k.ctl("status", check=False)
        check(rc == 1 and "too many control clients: control_max_clients 3 reached" in err,
              "a fourth client is refused with an error: %d %r" % (rc, err))
        k.wait_log(r"control socket: uid 0 \(root\) pid \d+: refused: control_max_clients 3 reached")
        for _ in range(20):
            s = connect(k)
            check(answer(s).startswith("ERR too many control clients"), "refused")
        n = len([l for l in k.lines if "refused: control_max_clients" in l])
        check(n <= 2, "refusals are logged at most once per 10 s: %d lines" % n)
        for s in idle:
            s.close()
        k.until(lambda: k.ctl("status", check=False)[0] == 0, 5, "served again once the idle clients left")


def test_no_reading_while_a_set_is_pending():
    """A set waits for a device that does not answer; the client pushes 50 MB behind it.
    komd reads nothing more until the set is answered: its RSS stays flat."""
    dev = KtPeer("127.0.0.1", answer=False)
    conf = """write_timeout = 60;
lines = ( { name = "dev"; protocol = "komtext-client"; host = "127.0.0.1"; port = %d;
  stations = ( { name = "plc"; address = 1; delay = 1;
    tags = ( { name = "t"; address = "t"; type = "int"; direction = "out"; } ); } ); } );""" % dev.port
    with Komd(conf).start() as k:
        pid = k.proc.pid
        k.until(lambda: dev.nconns() == 1, 5, "device connected")
        s = connect(k)
        s.sendall(b"text\x1fset\x1ft\x1f5\n")
        k.until(lambda: dev.received("SET "), 5, "the set reaches the device")
        rss0 = int(proc_field(pid, "VmRSS"))
        s.setblocking(False)
        sent, chunk = 0, b"x" * 65536
        while sent < 50 << 20:
            # writable within 1 s, or komd has stopped reading and the socket stays full
            if not select.select([], [s], [], 1.0)[1]:
                break
            try:
                sent += s.send(chunk)
            except BlockingIOError:
                pass
        check(k.ctl("status", check=False)[0] == 0, "komd serves others meanwhile")
        rss1 = int(proc_field(pid, "VmRSS"))
        print("    flood: %d bytes taken by the socket; komd RSS %d kB before, %d kB after" % (sent, rss0, rss1))
        check(sent < 4 << 20, "komd stopped reading behind the pending set: %d bytes taken" % sent)
        check(rss1 - rss0 < 4096, "RSS flat: %d kB -> %d kB" % (rss0, rss1))
        # the device answers: the set's answer still reaches the client
        dev.send("ACK %s\n" % dev.received("SET ")[0].split()[1])
        s.setblocking(True)
        out = answer(s)
        check(re.match(r"WAIT \d+\nOK\n", out), "the set is answered (after komd said how long it waits): %r" % out[:80])
        k.ctl("status")
    dev.close()


def test_request_too_long():
    with Komd("lines = ();").start() as k:
        s = connect(k)
        s.sendall(b"text\x1f" + b"a" * 9000)
        out = answer(s)
        check(out.startswith("ERR request too long"), "over-long request: %r" % out[:80])
        k.ctl("status")


def test_string_values_whole_and_clean():
    """A string tag's value (a peer's text) comes out whole, as UTF-8 and valid JSON."""
    value = b"a\xff\x01b" + "\u00e9".encode() * 600
    with Komd('tags = ( { name = "m.s"; type = "string"; } );\nlines = ();').start() as k:
        r = subprocess.run([KOMCTL, "-s", k.sock, "set", "m.s", value], capture_output=True)
        check(r.returncode == 0, "set: %r" % r.stderr)
        r = subprocess.run([KOMCTL, "-s", k.sock, "--json", "get", "m.s"], capture_output=True)
        try:
            got = json.loads(r.stdout.decode("utf-8"))["value"]
        except ValueError as e:
            raise TestFailure("--json get: not UTF-8 JSON: %s: %r" % (e, r.stdout[:120]))
        check(got == "a\\xff\x01b" + "\u00e9" * 600, "whole value, bad bytes as \\xNN: %r" % got[:40])
        r = subprocess.run([KOMCTL, "-s", k.sock, "get", "m.s"], capture_output=True)
        out = r.stdout.decode("utf-8")
        check("a\\xff\\x01b" + "\u00e9" * 600 in out, "text: whole value, bad bytes as \\xNN: %r" % out[:80])


def test_descriptor_limit_raised():
    port = free_port()
    k = Komd(server_conf(port, 1000))
    with started(k, ["prlimit", "--nofile=100:8192"]):
        soft, hard = nofile(k.proc.pid)
        check(1000 < soft < hard == 8192, "soft limit raised for max_clients 1000: %d" % soft)
        k.wait_log(r"descriptors: RLIMIT_NOFILE soft limit raised from 100 to %d" % soft)
        k.write_conf(server_conf(port, 3000))
        k.ctl("reload")
        soft2 = nofile(k.proc.pid)[0]
        check(3000 < soft2 < 8192, "raised again at reload for max_clients 3000: %d" % soft2)
    k = Komd(server_conf(port, 1000))
    with started(k, ["prlimit", "--nofile=64:64"]):
        k.wait_log(r"descriptors: the configuration needs \d+ \(.*\), but the hard limit of RLIMIT_NOFILE is 64")
        k.wait_log(r"komd\.conf:\d+: line '.*': max_clients 1000 cannot be had: about \d+ descriptors are left")


def test_control_answers_when_descriptors_run_out():
    """Lines stop short of the limit (they leave KOMD_FD_RESERVE); idle control clients take
    the rest; komctl status is still served, with the spare descriptor."""
    port = free_port()
    k = Komd(server_conf(port, 1000, "control_max_clients = 100;\ncontrol_timeout = 60;\n"))
    with started(k, ["prlimit", "--nofile=64:64"]):
        fds = lambda: len(os.listdir("/proc/%d/fd" % k.proc.pid))
        clients = [KtPeer("127.0.0.1", port, listen=False) for _ in range(80)]
        k.wait_log(r"line srv: accept: .*pausing|line srv: .*refused")
        r = subprocess.run([KOMCTL, "-s", k.sock, "status"], capture_output=True, text=True, timeout=5)
        check(r.returncode == 0 and "line srv" in r.stdout, "status answers with the line full: %r" % r.stderr)
        idle = []
        while fds() < 64:
            n = fds()
            idle.append(connect(k))
            k.until(lambda: fds() > n, 5, "idle control client %d accepted" % len(idle))
        for _ in range(3):
            r = subprocess.run([KOMCTL, "-s", k.sock, "status"], capture_output=True, text=True, timeout=5)
            check(r.returncode == 0 and "line srv" in r.stdout, "status answers with no descriptor left: %r" % r.stderr)
        k.wait_log(r"control socket: out of descriptors \(Too many open files\): serving with the spare one")
        for s in idle:
            s.close()
        for c in clients:
            c.close()


def test_core_dumps_off():
    r = run_komd("-h")
    check("--core-dumps" in r.stdout, "komd -h names --core-dumps")
    nobody = pwd.getpwnam("nobody")
    for args, dumpable in (([], False), (["--core-dumps"], True)):
        k = Komd("lines = ();", args=args)
        os.chown(k.dir, nobody.pw_uid, nobody.pw_gid)
        os.chown(k.conf, nobody.pw_uid, nobody.pw_gid)
        as_nobody = ["setpriv", "--reuid=%d" % nobody.pw_uid, "--regid=%d" % nobody.pw_gid, "--clear-groups"]
        with started(k, as_nobody):
            pid = k.proc.pid
            owner = os.stat("/proc/%d/environ" % pid).st_uid
            # another process of the same user reads komd's environment only if komd is dumpable
            r = subprocess.run(as_nobody + ["cat", "/proc/%d/environ" % pid], capture_output=True)
            with open("/proc/%d/limits" % pid) as f:
                core = [l.split()[4] for l in f if l.startswith("Max core file size")][0]
            if dumpable:
                check(owner == nobody.pw_uid and r.returncode == 0, "--core-dumps: dumpable (%d, %r)" % (owner, r.stderr))
                k.wait_log(r"core dumps are allowed \(--core-dumps\)")
            else:
                check(owner == 0, "/proc/PID owned by root when not dumpable: %d" % owner)
                check(r.returncode != 0 and b"Permission denied" in r.stderr,
                      "the same user cannot read komd's environment: %r" % r.stderr)
                check(core == "0", "RLIMIT_CORE 0: %s" % core)


def test_peer_credentials_and_readonly_group():
    n = os.getpid() % 100000
    ops, ro, oper, viewer = "kdops%d" % n, "kdro%d" % n, "kdop%d" % n, "kdvw%d" % n
    made = []

    def sh(*cmd):
        subprocess.run(cmd, check=True, capture_output=True)
    try:
        for g in (ops, ro):
            sh("groupadd", g)
            made.append(("groupdel", g))
        sh("useradd", "-M", "-N", "-g", ops, "-s", "/usr/sbin/nologin", oper)
        made.insert(0, ("userdel", oper))
        sh("useradd", "-M", "-N", "-g", ops, "-G", ro, "-s", "/usr/sbin/nologin", viewer)
        made.insert(0, ("userdel", viewer))
        gops, gro = grp.getgrnam(ops).gr_gid, grp.getgrnam(ro).gr_gid
        uop, uvw = pwd.getpwnam(oper).pw_uid, pwd.getpwnam(viewer).pw_uid
        k = Komd('control_readonly_group = "%s";\ntags = ( { name = "m"; type = "int"; initial = 1; } );\n'
                 'lines = ( { name = "cli"; protocol = "komtext-client"; host = "127.0.0.1"; port = %d;\n'
                 '  stations = ( { name = "s"; address = 1; simulation = true;\n'
                 '    tags = ( { name = "x"; type = "int"; } ); } ); } );' % (ro, free_port()))
        os.chmod(k.dir, 0o755)
        # root with group ops: the socket comes out root:ops 0660, as komd:komd under systemd
        as_ops = ["setpriv", "--regid=%d" % gops, "--clear-groups"]

        def ctl(who, *args):
            cmd = ["setpriv", "--reuid=%s" % who[0], "--regid=%d" % who[1], "--groups=%s" % who[2],
                   KOMCTL, "-s", k.sock] + list(args)
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        with started(k, as_ops):
            check(os.stat(k.sock).st_gid == gops, "socket group")
            as_oper = (uop, gops, str(gops))
            r = ctl(as_oper, "set", "m", "5")
            check(r.returncode == 0, "an operator sets: %r" % r.stderr)
            k.wait_log(r"control socket: uid %d \(%s\) pid \d+: set m 5" % (uop, oper))
            r = ctl(as_oper, "trace", "cli", "on")
            check(r.returncode == 0, "an operator traces: %r" % r.stderr)
            k.wait_log(r"control socket: uid %d \(%s\) pid \d+: trace cli on" % (uop, oper))
            # read-only: by supplementary group; by primary group; by the group database alone
            # (the process lacks the group); by the process's groups alone (a uid unknown to the database)
            for who in ((uvw, gops, "%d,%d" % (gops, gro)), (uvw, gro, str(gops)), (uvw, gops, str(gops)),
                        (54321, gops, "%d,%d" % (gops, gro))):
                for args in (("status",), ("tags",), ("get", "m"), ("certs",)):
                    r = ctl(who, *args)
                    check(r.returncode == 0, "read-only %s may %s: %r" % (who, args, r.stderr))
                for args in (("set", "m", "7"), ("reload",), ("trace", "cli", "off")):
                    r = ctl(who, *args)
                    check(r.returncode == 1 and "%s refused" % args[0] in r.stderr and "control_readonly_group %s" % ro
                          in r.stderr, "read-only %s may not %s: %r" % (who, args, r.stderr))
            k.wait_log(r"control socket: uid %d \(%s\) pid \d+: set refused: in control_readonly_group %s" % (uvw, viewer, ro))
            check(k.tag("m")["value"] == 5, "the read-only set changed nothing")
            check(k.ctl("set", "m", "6")[0] == 0, "root is never read-only")
            r = ctl((54322, 54322, "54322"), "status")
            check(r.returncode == 1 and "Permission denied" in r.stderr, "others cannot connect: %r" % r.stderr)
            # a group that does not exist: nobody but root may change anything (fail closed)
            k.write_conf(open(k.conf).read().replace('"%s"' % ro, '"nosuchgroup%d"' % n))
            k.ctl("reload")
            r = ctl(as_oper, "set", "m", "8")
            check(r.returncode == 1 and "nosuchgroup" in r.stderr, "unknown group: refused: %r" % r.stderr)
    finally:
        for cmd in made:
            subprocess.run(cmd, capture_output=True)


if __name__ == "__main__":
    main([test_request_timeout, test_max_clients, test_no_reading_while_a_set_is_pending, test_request_too_long, test_string_values_whole_and_clean,
          test_descriptor_limit_raised, test_control_answers_when_descriptors_run_out, test_core_dumps_off,
          test_peer_credentials_and_readonly_group])
