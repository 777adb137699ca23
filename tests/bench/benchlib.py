"""benchlib: what the benchmarks share: waits bounded by deadlines (polls, never blind
pauses used as synchronisation), free ports, and a process's memory and CPU from /proc."""
import os
import resource
import select
import socket
import statistics
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
    """utime + stime of a process, in seconds."""
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


def median(xs):
    return statistics.median(xs) if xs else float("nan")
