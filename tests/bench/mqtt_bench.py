#!/usr/bin/python3
"""mqtt_bench: komd's mqtt-client against libmosquitto and mosquitto_pub, in one run, through
the same mosquitto 2.0 broker on loopback (issue 13, "Benchmarks").

Run from the repository root:  /usr/bin/python3 tests/bench/mqtt_bench.py
Binaries: $KOMD_BUILD/komd, komctl, and the peers $KOMD_BUILD/peers/mqtt_pub and mqtt_sub
(libmosquitto; `make bench` builds them); mosquitto and mosquitto_pub from Debian.

Measures, with 100-byte payloads (goals from the issue in brackets):
  1. publishing: N messages at QoS 0, 1 and 2 to a topic that mqtt_sub (libmosquitto) counts,
     from three publishers in turn, ROUNDS rounds: komd (a string tag acquired from a
     komtext peer of this script that sends N changes at once, each published by komd), the
     libmosquitto publisher tests/peers/mqtt_pub (window 20 = komd's max_inflight), and
     mosquitto_pub -l. Rate: messages over the subscriber's time from the first message to
     the last; publisher CPU a message: komd's /proc CPU time (which includes reading the
     komtext changes, so it is an upper bound), mqtt_pub's own getrusage, mosquitto_pub's
     from wait4 [komd >= 1.0 x libmosquitto's rate at every QoS, CPU <= 0.7 x];
  2. ingest: a flood of N messages from mosquitto_pub -l into a subscribed string tag of komd
     (counted by mqtt_received_total) and into mqtt_sub, at QoS 0, 1, 2: rate from the
     first message to the last, CPU a message;
  3. memory: VmRSS of komd with TAGS published memory tags (QoS 0, one topic each) once all
     their current values went out.
Environment: MQTT_BENCH_N (messages a run, default 20000), MQTT_BENCH_ROUNDS (3),
MQTT_BENCH_TAGS (100000), MQTT_BENCH_QOS (the QoS levels, default "0,1,2") and
MQTT_BENCH_STEPS (which of "publish,ingest,memory" to run, default all), and
MQTT_BENCH_BROKER_NODELAY=1 (mosquitto with set_tcp_nodelay true; its default is Nagle's
algorithm, which holds its PUBCOMPs back until komd acknowledges, see komd.conf(5)).
Ratios are printed komd / libmosquitto; where the broker is the limit (mosquitto's own CPU
near 100 % of a core) the line says so. Readiness is polled under deadlines; everything is
cleaned up on exit; exit status 1 when a measurement could not be taken.
"""
import os
import resource
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import BUILD, BenchError, free_ports, median, poll, proc_cpu  # noqa: E402

MQTT_PUB = os.path.join(BUILD, "peers", "mqtt_pub")
MQTT_SUB = os.path.join(BUILD, "peers", "mqtt_sub")
N = int(os.environ.get("MQTT_BENCH_N", "20000"))   # messages a run (< 65,535: mosquitto_pub -l)
ROUNDS = int(os.environ.get("MQTT_BENCH_ROUNDS", "3"))
TAGS = int(os.environ.get("MQTT_BENCH_TAGS", "100000"))
SIZE = 100
QOS = tuple(int(q) for q in os.environ.get("MQTT_BENCH_QOS", "0,1,2").split(","))
STEPS = os.environ.get("MQTT_BENCH_STEPS", "publish,ingest,memory").split(",")
MIB = 1024 * 1024


def payload(i):
    s = "%d " % i
    return s + "x" * (SIZE - len(s))


class Broker:
    """mosquitto on a free loopback port (no persistence: the broker's disk is not measured)."""

    def __init__(self, bench, port):
        self.port = port
        conf = os.path.join(bench.workdir, "mosquitto-%d.conf" % port)
        with open(conf, "w") as f:
            f.write("listener %d 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n"
                    "%suser %s\n" % (port, "set_tcp_nodelay true\n" if os.environ.get("MQTT_BENCH_BROKER_NODELAY") else "", "root" if os.getuid() == 0 else os.environ.get("USER", "nobody")))
        self.p = bench.proc("mosquitto", ["mosquitto", "-c", conf])
        poll(lambda: self.p.alive() and _accepts(port), 10, "mosquitto accepting")

    def cpu(self):
        return proc_cpu(self.p.proc.pid)


def _accepts(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


class KtSource:
    """A komtext server komd's komtext-client line connects to: answers PING with PONG and,
    on burst(), sends n VAL frames changing tag address v (its changes are what komd
    publishes)."""

    def __init__(self):
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(4)
        self.port = self.ls.getsockname()[1]
        self.conn = None
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        try:
            c, _ = self.ls.accept()
        except OSError:
            return
        self.conn = c
        buf = b""
        while True:
            try:
                d = c.recv(65536)
            except OSError:
                return
            if not d:
                return
            buf += d
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                w = line.split(b" ")
                if w[0] == b"PING":
                    try:
                        c.sendall(b"PONG " + w[1] + b"\n")
                    except OSError:
                        return

    def burst(self, first, n):
        block = "".join("VAL v 0 0 %s\n" % payload(i) for i in range(first, first + n)).encode()
        self.conn.sendall(block)

    def close(self):
        self.ls.close()
        if self.conn:
            self.conn.close()


def station_ok(k, name):
    for st in (k.line("mq") or {}).get("stations", []):
        if st["name"] == name:
            return st["state"] == "ok"
    return False


def sub_start(bench, port, topic, qos, n):
    s = bench.proc("mqtt_sub", [MQTT_SUB, "-p", str(port), "-t", topic, "-q", str(qos), "-n", str(n), "-T", "120"])
    poll(lambda: s.alive() and "ready" in s.text(), 10, "mqtt_sub ready")
    return s


def sub_result(s):
    out = s.wait(130)
    for line in out.splitlines():
        if line.startswith("received"):
            w = line.split()
            r = dict(zip(w[0::2], w[1::2]))
            if int(r["missing"]) != 0:
                raise BenchError("mqtt_sub: %s" % line)
            return float(r["elapsed"]), float(r["cpu_us_per_msg"])
    raise BenchError("mqtt_sub printed no result: %s" % out)


def publish_runs(bench):
    """1. publishing: komd, libmosquitto (mqtt_pub), mosquitto_pub at QoS 0, 1, 2"""
    bport = free_ports(1)[0]
    br = Broker(bench, bport)
    res = {}
    busy = {}           # the broker's CPU share during each publisher's runs
    srcs = []
    try:
        for q in QOS:
            src = KtSource()
            srcs.append(src)
            body = """lines = (
  { name = "src"; protocol = "komtext-client"; host = "127.0.0.1"; port = %d;
    stations = ( { name = "s"; address = 1; period = 30; tags = ( { name = "b.v"; address = "v"; type = "string"; } ); } ); },
  { name = "mq"; protocol = "mqtt-client"; host = "127.0.0.1"; port = %d; keepalive = 60;
    stations = ( { name = "out"; address = "komd/none"; tags = (
      { name = "b.v"; address = ""; publish = "bench/komd/q%d"; qos = %d; retain = false; } ); } ); } );
""" % (src.port, bport, q, q)
            k = bench.komd("mqtt-pub-q%d" % q, body)
            k.start()
            k.wait_ready()
            poll(lambda: src.conn is not None and station_ok(k, "out"), 10,
                 "komd connected to the broker and the komtext source")
            first = 1          # each round 1..N again (mqtt_sub counts 1..N)
            for r in range(ROUNDS):
                # komd
                s = sub_start(bench, bport, "bench/komd/q%d" % q, q, N)
                c0, b0 = proc_cpu(k.proc.pid), br.cpu()
                src.burst(first, N)
                el, _ = sub_result(s)
                busy.setdefault(("komd", q), []).append((br.cpu() - b0) / el)
                poll(lambda: (k.line("mq") or {}).get("protocol_counters", {}).get("mqtt_queued_messages", 1) == 0,
                     30, "komd's queue empty")
                kc = proc_cpu(k.proc.pid) - c0
                res.setdefault(("komd", q), []).append((N / el, kc * 1e6 / N))
                # libmosquitto
                s = sub_start(bench, bport, "bench/lib/q%d" % q, q, N)
                b0 = br.cpu()
                p = bench.proc("mqtt_pub", [MQTT_PUB, "-p", str(bport), "-t", "bench/lib/q%d" % q, "-q", str(q),
                                            "-n", str(N), "-s", str(SIZE), "-w", "20"])
                out = p.wait(120)
                el, _ = sub_result(s)
                busy.setdefault(("libmosquitto", q), []).append((br.cpu() - b0) / el)
                cpu = float(out.split("cpu_us_per_msg")[1].split()[0])
                res.setdefault(("libmosquitto", q), []).append((N / el, cpu))
                # mosquitto_pub -l
                s = sub_start(bench, bport, "bench/mp/q%d" % q, q, N)
                data = "".join(payload(i) + "\n" for i in range(1, N + 1)).encode()
                r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                mp = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(bport), "-t", "bench/mp/q%d" % q,
                                     "-q", str(q), "-l"], input=data, capture_output=True, timeout=120)
                r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                if mp.returncode != 0:
                    raise BenchError("mosquitto_pub: %s" % mp.stderr)
                el, _ = sub_result(s)
                cpu = (r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime) * 1e6 / N
                res.setdefault(("mosquitto_pub", q), []).append((N / el, cpu))
            bench.finish(k)
    finally:
        for src in srcs:
            src.close()
    print("   %-14s %3s %12s %14s" % ("publisher", "QoS", "messages/s", "CPU us/message"))
    for q in QOS:
        for who in ("komd", "libmosquitto", "mosquitto_pub"):
            v = res[(who, q)]
            print("   %-14s %3d %12.0f %14.2f" % (who, q, median([x[0] for x in v]), median([x[1] for x in v])))
        kr, lr = median([x[0] for x in res[("komd", q)]]), median([x[0] for x in res[("libmosquitto", q)]])
        kc, lc = median([x[1] for x in res[("komd", q)]]), median([x[1] for x in res[("libmosquitto", q)]])
        verdict = "rate %.2fx libmosquitto (goal >= 1.0), CPU %.2fx (goal <= 0.7)" % (kr / lr, kc / lc)
        bk, bl = median(busy[("komd", q)]), median(busy[("libmosquitto", q)])
        verdict += "; mosquitto's CPU %.0f %% / %.0f %% of a core%s" % (
            100 * bk, 100 * bl, " (the broker is the limit)" if max(bk, bl) > 0.85 else "")
        print("   QoS %d: komd %s" % (q, verdict))
        bench.results["publish_q%d" % q] = (kr / lr, kc / lc)


def ingest_runs(bench):
    """2. ingest: mosquitto_pub -l into komd's subscribed tag and into mqtt_sub"""
    bport = free_ports(1)[0]
    Broker(bench, bport)
    res = {}
    for q in QOS:
        body = """lines = ( { name = "mq"; protocol = "mqtt-client"; host = "127.0.0.1"; port = %d; keepalive = 60;
    stations = ( { name = "in"; address = "bench/in/q%d"; qos = %d; tags = (
      { name = "b.in"; address = ""; type = "string"; } ); } ); } );
""" % (bport, q, q)
        k = bench.komd("mqtt-in-q%d" % q, body)
        k.start()
        k.wait_ready()
        poll(lambda: station_ok(k, "in"), 10, "komd subscribed")
        data = "".join(payload(i) + "\n" for i in range(1, N + 1)).encode()

        def received():
            return (k.line("mq") or {}).get("protocol_counters", {}).get("mqtt_received_total", 0)
        for r in range(ROUNDS):
            base = received()
            c0 = proc_cpu(k.proc.pid)
            mp = subprocess.Popen(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(bport), "-t", "bench/in/q%d" % q,
                                   "-q", str(q), "-l"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
            threading.Thread(target=lambda: (mp.stdin.write(data), mp.stdin.close()), daemon=True).start()
            t_first = poll(lambda: received() > base and time.monotonic(), 30, "komd's first message")
            t_last = poll(lambda: received() >= base + N and time.monotonic(), 120, "komd's %d messages" % N)
            mp.wait(60)
            kc = proc_cpu(k.proc.pid) - c0
            res.setdefault(("komd", q), []).append((N / max(t_last - t_first, 1e-3), kc * 1e6 / N))
            s = sub_start(bench, bport, "bench/in/q%d" % q, q, N)
            subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(bport), "-t", "bench/in/q%d" % q,
                            "-q", str(q), "-l"], input=data, capture_output=True, timeout=120)
            el, cpu = sub_result(s)
            res.setdefault(("libmosquitto", q), []).append((N / el, cpu))
        bench.finish(k)
    print("   %-14s %3s %12s %14s" % ("subscriber", "QoS", "messages/s", "CPU us/message"))
    for q in QOS:
        for who in ("komd", "libmosquitto"):
            v = res[(who, q)]
            print("   %-14s %3d %12.0f %14.2f" % (who, q, median([x[0] for x in v]), median([x[1] for x in v])))
        kr, lr = median([x[0] for x in res[("komd", q)]]), median([x[0] for x in res[("libmosquitto", q)]])
        kc, lc = median([x[1] for x in res[("komd", q)]]), median([x[1] for x in res[("libmosquitto", q)]])
        print("   QoS %d: komd ingest %.2fx libmosquitto's rate, CPU %.2fx (komd's includes its tag hub)" %
              (q, kr / lr, kc / lc))
        bench.results["ingest_q%d" % q] = (kr / lr, kc / lc)


def memory_run(bench):
    """3. memory: komd's RSS with many published tags"""
    bport = free_ports(1)[0]
    Broker(bench, bport)
    tags = ",\n".join('{ name = "m%d"; type = "int"; initial = %d; }' % (i, i) for i in range(TAGS))
    pubs = ",\n".join('{ name = "m%d"; address = ""; publish = "bench/m/%d"; qos = 0; retain = false; }' % (i, i)
                      for i in range(TAGS))
    body = """tags = ( %s );
lines = ( { name = "mq"; protocol = "mqtt-client"; host = "127.0.0.1"; port = %d; keepalive = 60;
    stations = ( { name = "out"; address = "komd/none"; tags = ( %s ); } ); } );
""" % (tags, bport, pubs)
    k = bench.komd("mqtt-mem", body)
    k.start()
    secs, _ = k.wait_ready(120)

    def sent():
        return (k.line("mq") or {}).get("protocol_counters", {}).get("mqtt_published_total", 0)
    poll(lambda: sent() >= TAGS, 120, "the %d current values published" % TAGS)
    m = k.mem()
    print("   %d published tags: VmRSS %.1f MiB (VmHWM %.1f MiB), ready after %.1f s" % (
        TAGS, m["VmRSS"] / 1024, m["VmHWM"] / 1024, secs))
    bench.results["rss_mib"] = m["VmRSS"] / 1024
    bench.finish(k)


def main():
    for f in (MQTT_PUB, MQTT_SUB, benchlib.KOMD):
        if not os.path.exists(f):
            sys.exit("mqtt_bench: %s missing: make bench builds it" % f)
    b = benchlib.Bench("mqtt-bench-")
    b.report = lambda: None
    steps = []
    for key, run in (("publish", publish_runs), ("ingest", ingest_runs), ("memory", memory_run)):
        if key in STEPS:
            fn = (lambda run: lambda: run(b))(run)
            fn.__doc__ = run.__doc__
            fn.__name__ = run.__doc__.split(":")[0]
            steps.append(fn)
    return b.run("mqtt_bench", steps)


if __name__ == "__main__":
    sys.exit(main())
