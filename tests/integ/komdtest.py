"""komdtest: helpers for komd's integration tests.

Each test starts a fresh komd in a temporary directory on free ports, waits for readiness by
polling (the control socket, or komd's own log lines as they arrive), bounds every wait, and
cleans up. Waits are never blind pauses: they wake on each new log line from komd and re-check.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("KOMD_BUILD", os.path.join(TOP, "build"))
KOMD = os.path.join(BUILD, "komd")
KOMCTL = os.path.join(BUILD, "komctl")


def records(read, sep, size=65536):
    """The records of a byte stream split at sep, as they arrive (sep not included): read(n)
    gives the next bytes, b"" or an OSError at the end."""
    buf = b""
    while True:
        try:
            d = read(size)
        except OSError:
            d = b""
        if not d:
            return
        buf += d
        while sep in buf:
            rec, buf = buf.split(sep, 1)
            yield rec


class TestFailure(AssertionError):
    pass


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def free_port():
    """A TCP port free on 127.0.0.1 and ::1 right now."""
    for _ in range(50):
        s4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s4.bind(("127.0.0.1", 0))
        port = s4.getsockname()[1]
        try:
            s6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s6.bind(("::1", port))
            s6.close()
        except OSError:
            s4.close()
            continue
        s4.close()
        return port
    raise RuntimeError("no free port")


class Waiter:
    """A condition that komd's log reader (or a peer) signals on every event."""

    def __init__(self):
        self.cond = threading.Condition()

    def kick(self):
        with self.cond:
            self.cond.notify_all()

    def until(self, pred, timeout=10.0, what="condition"):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                v = pred()
                if v:
                    return v
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TestFailure("timed out after %.1f s waiting for %s" % (timeout, what))
                self.cond.wait(min(left, 0.05))


WAIT = Waiter()


class Komd:
    """One komd process with its own directory, config and control socket."""

    def __init__(self, conf, args=(), env=None, files=None):
        """files: {"name": text} written into komd's directory (#APPDIR# in the configuration),
        e.g. a hosts_file and resolv_conf of the test's own."""
        self.dir = tempfile.mkdtemp(prefix="komdtest-")
        self.sock = os.path.join(self.dir, "ctl.sock")
        self.conf = os.path.join(self.dir, "komd.conf")
        self.args = list(args)
        self.env = env
        self.lines = []
        self.proc = None
        self.write_conf(conf)
        for name, text in (files or {}).items():
            path = os.path.join(self.dir, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)

    def write_conf(self, conf):
        if "control_socket" not in conf:
            conf = 'control_socket = "%s";\n' % self.sock + conf
        with open(self.conf, "w") as f:
            f.write(conf)

    def start(self, wait=True):
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        env.pop("JOURNAL_STREAM", None)
        if self.env:
            env.update(self.env)
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen([KOMD, "-f", "-c", self.conf] + self.args, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=env, text=True, errors="replace",
                                     bufsize=1)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        if wait:
            WAIT.until(lambda: self.proc.poll() is not None or self.ctl("status", check=False)[0] == 0,
                       10, "komd's control socket")
            check(self.proc.poll() is None, "komd exited at start:\n" + self.log())
        return self

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            WAIT.kick()
        WAIT.kick()

    def log(self):
        return "\n".join(self.lines)

    def ctl(self, *args, check=True, json_out=False):
        cmd = [KOMCTL, "-s", self.sock] + (["--json"] if json_out else []) + list(args)
        r = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=20)
        if check and r.returncode != 0:
            raise TestFailure("komctl %s failed (%d): %s" % (" ".join(args), r.returncode, r.stderr))
        if json_out and r.returncode == 0:
            return r.returncode, json.loads(r.stdout), r.stderr
        return r.returncode, r.stdout, r.stderr

    def status(self):
        return self.ctl("status", json_out=True)[1]

    def line(self, name):
        for l in self.status()["lines"]:
            if l["name"] == name:
                return l
        raise TestFailure("no line %s in status" % name)

    def tag(self, name):
        return self.ctl("get", name, json_out=True)[1]

    def wait_log(self, regex, timeout=10.0, since=0):
        rx = re.compile(regex)

        def found():
            for l in self.lines[since:]:
                m = rx.search(l)
                if m:
                    return m
            return None
        return WAIT.until(found, timeout, "komd log line /%s/" % regex)

    def until(self, pred, timeout=10.0, what="condition"):
        return WAIT.until(pred, timeout, what)

    def stop(self, sig=signal.SIGTERM, timeout=5.0):
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None, 0.0
        t = time.monotonic()
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.reader.join(5)
        return rc, time.monotonic() - t

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        rc, _ = self.stop()
        try:
            if exc[0] is None and self.proc:
                # every komd must end cleanly: exit 0, no sanitizer report (make asan)
                check(rc == 0, "komd exited with %s" % rc)
                check(not re.search(r"ERROR: (Address|Leak)Sanitizer|runtime error:", self.log()),
                      "sanitizer report in komd's log")
        except TestFailure:
            print("---- komd log ----\n" + self.log() + "\n------------------")
            raise
        finally:
            if exc[0] is not None:
                print("---- komd log ----\n" + self.log() + "\n------------------")
            subprocess.run(["rm", "-rf", self.dir])


def run_komd(*args, conf=None, timeout=10):
    """Run komd to completion (for -t, -h, bad options)."""
    cmd = [KOMD] + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


class KtPeer:
    """A komtext peer: a server (listen=True) that komd's client lines connect to, or a client
    of komd's server lines. Frames received are kept; PING is answered with PONG, SET with
    ACK (or NAK when nak is set)."""

    def __init__(self, host="127.0.0.1", port=None, listen=True, nak=None, answer=True):
        self.host, self.nak, self.answer = host, nak, answer
        self.frames = []
        self.conns = []
        self.accepted = 0
        self.closed = 0
        self.lock = threading.Lock()
        self.stopping = False
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        if listen:
            self.lsock = socket.socket(fam, socket.SOCK_STREAM)
            self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.lsock.bind((host, port or 0))
            self.lsock.listen(64)
            self.port = self.lsock.getsockname()[1]
            threading.Thread(target=self._accept, daemon=True).start()
        else:
            self.lsock = None
            self.port = port
            s = socket.create_connection((host, port), timeout=5)
            s.settimeout(None)
            self._add(s)

    def _add(self, s):
        with self.lock:
            self.conns.append(s)
        threading.Thread(target=self._serve, args=(s,), daemon=True).start()
        WAIT.kick()

    def _accept(self):
        while not self.stopping:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            self.accepted += 1
            self._add(s)

    def _serve(self, s):
        for line in records(s.recv, b"\n"):
            text = line.decode(errors="replace")
            with self.lock:
                self.frames.append(text)
            w = text.split(" ")
            try:
                if self.answer and w[0] == "PING":
                    s.sendall(("PONG %s\n" % w[1]).encode())
                elif self.answer and w[0] == "SET":
                    if self.nak:
                        s.sendall(("NAK %s %s\n" % (w[1], self.nak)).encode())
                    else:
                        s.sendall(("ACK %s\n" % w[1]).encode())
            except OSError:
                pass
            WAIT.kick()
        with self.lock:
            if s in self.conns:
                self.conns.remove(s)
            self.closed += 1
        try:
            s.close()
        except OSError:
            pass
        WAIT.kick()

    def send(self, text, conn=None):
        with self.lock:
            conns = [conn] if conn else list(self.conns)
        for c in conns:
            c.sendall(text.encode() if isinstance(text, str) else text)

    def val(self, addr, value, quality=0, ts=0):
        self.send("VAL %s %d %d %s\n" % (addr, quality, ts, value))

    def nconns(self):
        with self.lock:
            return len(self.conns)

    def received(self, prefix):
        with self.lock:
            return [f for f in self.frames if f.startswith(prefix)]

    def close(self):
        self.stopping = True
        if self.lsock:
            try:
                self.lsock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.lsock.close()
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()


def serve(handler, path=None):
    """A listening socket (TCP on 127.0.0.1, or a Unix socket at path) that runs
    handler(conn) for each connection in a thread of its own; returns (socket, port).
    Close the socket to stop it."""
    ls = socket.socket(socket.AF_UNIX) if path else socket.socket()
    ls.bind(path or ("127.0.0.1", 0))
    ls.listen(8)

    def loop():
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            threading.Thread(target=handler, args=(c,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()
    return ls, (None if path else ls.getsockname()[1])


def main(tests):
    """Run every test function; print PASS/FAIL; exit 1 on any failure."""
    failed = 0
    for t in tests:
        t0 = time.monotonic()
        try:
            t()
            print("  ok   %-45s %.2fs" % (t.__name__, time.monotonic() - t0), flush=True)
        except Exception:
            failed += 1
            print("  FAIL %s" % t.__name__, flush=True)
            traceback.print_exc()
    sys.exit(1 if failed else 0)
