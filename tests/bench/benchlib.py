"""benchlib: what the benchmarks share: waits bounded by deadlines (polls, never blind
pauses used as synchronisation), free ports, and a process's memory and CPU from /proc."""
import errno
import json
import os
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

POLL = 0.01  # seconds between polls
TICK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    pass


def pause(seconds=POLL):
    """A short wait between two polls (not a synchronisation)."""
    select.select([], [], [], seconds)


def poll(pred, timeout, what):
    """Call pred until it returns a true value; raise BenchError after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise BenchError("timed out after %.0f s waiting for %s" % (timeout, what))
        pause()


def raise_nofile(want=65536):
    """Raise our RLIMIT_NOFILE (komd inherits it); return the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for lim in ((max(want, hard), max(want, hard)), (hard, hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, lim)
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def proc_mem(pid):
    """VmRSS, VmHWM and RssAnon of a process, in kB."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon"):
                out[k] = int(v.split()[0])
    return out


def proc_cpu(pid):
    """CPU time of a process (all its threads), in seconds: the scheduler's run time in ns
    from /proc/PID/task/*/schedstat, where /proc/PID/stat counts 10 ms ticks (20,000 messages
    of 16 us are 32 ticks); utime + stime from /proc/PID/stat where schedstat is missing."""
    try:
        total = 0
        for t in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/schedstat" % (pid, t)) as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        pass
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def free_ports(n):
    """n distinct TCP ports free on 127.0.0.1 right now (held together, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def callgrind_total(path):
    """The instructions (Ir) a callgrind output file counts in all."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(("summary:", "totals:")):
                    return int(line.split()[1])
    except OSError as e:
        raise BenchError("no callgrind output %s: %s" % (path, e))
    raise BenchError("callgrind output %s has no summary line" % path)


def median(xs):
    return statistics.median(xs) if xs else float("nan")


TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("KOMD_BUILD", os.path.join(TOP, "build"))
KOMD = os.path.join(BUILD, "komd")
KOMCTL = os.path.join(BUILD, "komctl")


class Proc:
    """A peer or helper process with its output in a file of the bench's directory."""

    def __init__(self, workdir, name, args, stdin=subprocess.DEVNULL):
        self.name = name
        self.logpath = os.path.join(workdir, name + ".log")
        self.log = open(self.logpath, "w")
        self.proc = subprocess.Popen(args, stdin=stdin, stdout=self.log, stderr=subprocess.STDOUT)

    def logtext(self, tail=20):
        """The last tail lines of the output (all of it with None)."""
        try:
            with open(self.logpath, errors="replace") as f:
                lines = f.readlines()
        except OSError:
            return ""
        return "".join(lines[-tail:] if tail else lines)

    def text(self):
        return self.logtext(None)

    def alive(self):
        if self.proc.poll() is not None:
            raise BenchError("%s exited with %s; output:\n%s" % (self.name, self.proc.returncode, self.logtext()))
        return True

    def wait(self, timeout):
        """Wait for a peer that ends by itself; its whole output."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise BenchError("%s did not finish in %.0f s" % (self.name, timeout))
        if self.proc.returncode != 0:
            raise BenchError("%s exited with %s; output:\n%s" % (self.name, self.proc.returncode, self.logtext()))
        return self.text()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdin:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        self.log.close()


class Komd:
    """One komd in the foreground, its log in a file of the bench's temporary directory."""

    def __init__(self, workdir, name, conf_body, level="warning"):
        self.dir = os.path.join(workdir, name)
        os.mkdir(self.dir)
        self.sock = os.path.join(self.dir, "ctl.sock")
        self.conf = os.path.join(self.dir, "komd.conf")
        self.logpath = os.path.join(self.dir, "komd.log")
        with open(self.conf, "w") as f:
            f.write('control_socket = "%s";\nlog_level = "%s";\n' % (self.sock, level))
            f.write(conf_body)
        self.proc = None
        self.t0 = None
        self.stop_secs = 0.0

    def start(self, wrap=()):
        """Start komd (under the command wrap, e.g. valgrind and its options, if given)."""
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        env.pop("JOURNAL_STREAM", None)
        self.log = open(self.logpath, "w")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(list(wrap) + [KOMD, "-f", "-c", self.conf], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)
        return self

    def logtext(self, tail=20):
        """The last tail lines of the log (all of it with None)."""
        try:
            with open(self.logpath) as f:
                lines = f.readlines()
        except OSError:
            return ""
        return "".join(lines[-tail:] if tail else lines)

    def log_line(self, needle):
        """The first log line containing needle, or None."""
        for line in self.logtext(None).splitlines():
            if needle in line:
                return line
        return None

    def alive(self):
        if self.proc.poll() is not None:
            raise BenchError("komd exited with %s; log:\n%s" % (self.proc.returncode, self.logtext()))

    def ctl(self, *args):
        """komctl --json ARGS, parsed, or None when the control socket does not answer (yet)."""
        self.alive()
        try:
            r = subprocess.run([KOMCTL, "-s", self.sock, "--json"] + list(args), capture_output=True,
                               text=True, timeout=60)
        except subprocess.TimeoutExpired:
            return None
        if r.returncode != 0:
            return None
        return json.loads(r.stdout)

    def status(self):
        return self.ctl("status")

    def line(self, name=None):
        """A line's status (the first line without a name), or None."""
        st = self.status()
        for l in (st or {}).get("lines", []):
            if name is None or l["name"] == name:
                return l
        return None

    def wait_ready(self, timeout=30):
        """Seconds from start until the control socket answers; returns (seconds, status)."""
        st = poll(self.status, timeout, "komd's control socket")
        return time.monotonic() - self.t0, st

    def mem(self):
        self.alive()
        return proc_mem(self.proc.pid)

    def stop(self, timeout=20):
        """SIGTERM; returns the exit code (and keeps the seconds it took in stop_secs)."""
        if self.proc is None:
            return None
        t = time.monotonic()
        rc = self.proc.poll()
        if rc is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                rc = "killed after %d s" % timeout
        self.stop_secs = time.monotonic() - t
        self.log.close()
        return rc


class Bench:
    """A benchmark run: its directory, komds and peers (all stopped by cleanup), and errors."""

    def __init__(self, prefix):
        self.workdir = tempfile.mkdtemp(prefix=prefix)
        self.komds = []
        self.procs = []
        self.results = {}
        self.errors = []
        self.n = 0

    def komd(self, name, body, level="warning"):
        self.n += 1
        k = Komd(self.workdir, "%s-%d" % (name, self.n), body, level)
        self.komds.append(k)
        return k

    def finish(self, k):
        """Stop komd k, which must exit 0; the seconds it took."""
        rc = k.stop()
        if k in self.komds:
            self.komds.remove(k)
        if rc != 0:
            raise BenchError("komd (%s) exited with %s; log:\n%s" % (os.path.basename(k.dir), rc, k.logtext()))
        return k.stop_secs

    def proc(self, name, args, stdin=subprocess.DEVNULL):
        self.n += 1
        pr = Proc(self.workdir, "%s-%d" % (name, self.n), args, stdin)
        self.procs.append(pr)
        return pr

    def unproc(self, pr):
        pr.stop()
        if pr in self.procs:
            self.procs.remove(pr)

    def cleanup(self):
        for pr in list(self.procs):
            try:
                pr.stop()
            except Exception:
                pass
        for k in list(self.komds):
            try:
                k.stop()
            except Exception:
                pass
        self.procs = []
        self.komds = []
        shutil.rmtree(self.workdir, ignore_errors=True)

    def step(self, fn):
        print("-- %s" % fn.__doc__, flush=True)
        try:
            fn()
        except BenchError as e:
            self.errors.append("%s: %s" % (fn.__name__, e))
            print("   FAILED: %s" % e, flush=True)

    def run(self, name, steps, first=()):
        """The bench's measurements: the steps of first (set-up: the rest only if they
        worked), then steps, each on its own (a failed one is reported and the others go
        on); the report; cleanup. The exit status: 1 when a measurement failed."""
        try:
            for fn in first:
                self.step(fn)
            if not self.errors:
                for fn in steps:
                    self.step(fn)
            self.report()
        finally:
            self.cleanup()
        if self.errors:
            print("\n%s: %d measurement(s) failed:" % (name, len(self.errors)), file=sys.stderr)
            for e in self.errors:
                print("  " + e, file=sys.stderr)
            return 1
        return 0


def open_idle_connections(port, n, nsessions, batch=64, limit=120):
    """n TCP connections to 127.0.0.1:port, opened in batches of batch, each batch accepted
    by komd (nsessions() >= the count so far) before the next: a full accept queue drops
    SYNs, which costs a 1 s retransmission. When ephemeral ports run out the source address
    moves on (127.0.0.2, ...). Returns (sockets, connects that took over 0.5 s, source
    addresses used)."""
    conns, src, slow = [], 1, 0
    deadline = time.monotonic() + limit
    try:
        while len(conns) < n:
            if time.monotonic() > deadline:
                raise BenchError("opened only %d connections in %d s" % (len(conns), limit))
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(10)
            tc = time.monotonic()
            try:
                if src > 1:
                    s.bind(("127.0.0.%d" % src, 0))
                s.connect(("127.0.0.1", port))
            except OSError as e:
                s.close()
                if e.errno in (errno.EADDRNOTAVAIL, errno.EADDRINUSE) and src < 16:
                    src += 1
                    continue
                raise BenchError("connection %d: %s" % (len(conns) + 1, e))
            if time.monotonic() - tc > 0.5:
                slow += 1
            conns.append(s)
            if len(conns) % batch == 0 and len(conns) < n:
                k = len(conns)
                poll(lambda: nsessions() >= k, 60, "komd to accept %d connections" % k)
    except BaseException:
        for s in conns:
            s.close()
        raise
    return conns, slow, src

