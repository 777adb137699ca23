#!/usr/bin/python3
"""modbus_bench: komd's Modbus TCP server and client against libmodbus, side by side.

Run from the repository root:  /usr/bin/python3 tests/bench/modbus_bench.py
Binaries: $KOMD_BUILD/komd, $KOMD_BUILD/komctl and the peers $KOMD_BUILD/peers/mb_ref_server,
$KOMD_BUILD/peers/mb_epoll_server and $KOMD_BUILD/peers/mb_load (make all build/peers/...;
`make bench` builds them); valgrind for the instruction counts. Peers (tests/peers/):
  mb_ref_server  libmodbus's bandwidth-server pattern: modbus_tcp_listen, one select() over
                 every connection, modbus_receive, modbus_reply; 65536 holding registers;
  mb_epoll_server  the physical limit: a minimal epoll server of our own (no library), one
                 recv a readiness and one send of canned answers (register i holds i);
  mb_load        `load`: N connections, a thread and a modbus_t each, reading 125 holding
                 registers at 0 in a loop; `rr`: the same from one thread, a read sent on
                 every connection and then every answer taken, round after round; `rounds`: rr
                 for a number of rounds instead of a time; `scan`: one connection reading
                 registers 0..9999 in requests of 125 in a loop. Rates from its elapsed time.

Measures (goals from the issue in brackets):
  1. server: requests/s of mb_load against a modbus-server line of komd (unit 1, 125 int
     memory tags at "3.0".."3.124") and against mb_ref_server: 1 connection (mb_load
     `load`), 32 connections with `rr` (one thread, a request in flight on every
     connection: the goal) and with `load` (a thread a connection, shown), ROUNDS runs of
     SECONDS each, alternately; with 2 CPUs or more the servers run on one CPU and mb_load
     on another for the 32-connection runs. Also the servers' CPU time a request (/proc/PID/stat), whose ratio is the
     rate ratio when the server and not the load client is the limit
     [komd >= 1.5 x ref with 32, >= 1 x with 1]. The same runs against mb_epoll_server,
     the physical limit: komd's and the reference's CPU a request as multiples of its;
  1b. callgrind: komd's instructions a request as a server, which the machine's noise does
     not change: komd under valgrind --tool=callgrind serving mb_load `rounds` (1 and 32
     connections) for a short and a long run (CG_RUNS), the difference of the two totals
     over the difference of the requests (start-up, the configuration and the exit cancel
     out); the same for mb_epoll_server. User space only: the kernel's part is not counted;
  2. client: registers/s komd acquires from mb_ref_server with one modbus-client line, one
     station (unit 1, continuous = true: polled again as soon as a poll ends) of 10,000 int tags at
     "3.0".."3.9999" (80 requests of 125 a poll), with max_outstanding 1 and 8: the
     station's polls counter (komctl status) over a WINDOW, times 10,000; against
     `mb_load scan` over the same registers, ROUNDS rounds alternately
     [>= 1 x with max_outstanding 1, >= 2 x with 8];
  3. memory: VmRSS of komd with 10,000 idle TCP connections (no request) on a
     modbus-server line (max_clients 20000), opened in batches of 64 (the accept queue is
     128; a full queue drops SYNs, 1 s retransmissions)  [< 64 MiB].

Readiness is always polled (komctl, or the peer's "listening" line, with a 10 ms wait
between polls) under a deadline; every process and the temporary directory are cleaned up
on exit. Exit status 1 when a measurement could not be taken (a peer or komd failed, a
request failed, komd did not exit cleanly); a goal that is missed is reported, and is not
a failure of the benchmark.
"""
import os
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

import benchlib
from benchlib import (BUILD, BenchError, KOMCTL, KOMD, callgrind_total, free_ports, median, open_idle_connections,
                      pause, poll, proc_cpu, raise_nofile)

REF_SERVER = os.path.join(BUILD, "peers", "mb_ref_server")
LIMIT_SERVER = os.path.join(BUILD, "peers", "mb_epoll_server")
LOAD = os.path.join(BUILD, "peers", "mb_load")

ROUNDS = 3          # runs of each measurement, alternately komd and the reference
SECONDS = 3.0       # one server-load run
WINDOW = 3.0        # one client-polling window
CONNS = (1, 32)     # load connections
NREGS = 125         # registers a request
SERVER_TAGS = 125   # memory tags komd serves at 3.0 .. 3.124
CLIENT_REGS = 10000  # registers komd polls at 3.0 .. 3.9999
OUTSTANDING = (1, 8)
DIAG_OUTSTANDING = 8  # also against mb_ref_server with TCP_NODELAY (a diagnostic)
NCONNS = 10000      # idle connections of the memory test
BATCH = 64
POLL = 0.01         # seconds between polls
TICK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024

# Server runs: (connections, mb_load mode). The goal with 32 connections is judged with
# "rr" (one load thread keeping a request in flight on every connection); "load" (a thread
# a connection) is shown too: its context switches make the client the limit of any server.
SERVER_RUNS = ((1, "load"), (32, "rr"), (32, "load"))
GOAL_SERVER = {(1, "load"): 1.0, (32, "rr"): 1.5}
# With 2 CPUs or more, runs of many connections: the server on SERVER_CPU, mb_load on
# LOAD_CPU (sched_setaffinity).
PIN = len(os.sched_getaffinity(0)) >= 2
LOAD_CPU, SERVER_CPU = (sorted(os.sched_getaffinity(0))[:2] if PIN else (None, None))
GOAL_CLIENT = {1: 1.0, 8: 2.0}
GOAL_RSS_KB = 64 * 1024
# callgrind: (connections of mb_load rounds, the rounds of the two runs whose difference
# counts); one connection is exact to an instruction or two, 32 vary by about 0.5 % (how
# many requests one epoll_wait returns)
CG_RUNS = ((1, 200, 5200), (32, 100, 1100))



def read_holding(port, unit, addr, count, timeout=5):
    """One FC 3 request on a fresh connection (Python sockets, no library): the registers."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(struct.pack(">HHHBBHH", 0x4242, 0, 6, unit, 3, addr, count))
        want = 9 + 2 * count
        buf = b""
        while len(buf) < want:
            b = s.recv(want - len(buf))
            if not b:
                raise BenchError("connection closed after %d bytes of a response" % len(buf))
            buf += b
            if len(buf) >= 9 and buf[7] & 0x80:
                raise BenchError("exception %d to a read of %d at %d" % (buf[8], count, addr))
    tid, pid, ln, u, fc, bc = struct.unpack(">HHHBBB", buf[:9])
    if tid != 0x4242 or pid != 0 or u != unit or fc != 3 or bc != 2 * count:
        raise BenchError("bad response header %r" % (buf[:9],))
    return list(struct.unpack(">%dH" % count, buf[9:]))


def server_conf(port, max_clients=1000):
    """A modbus-server line on port: unit 1 serves SERVER_TAGS int memory tags at 3.0 ..."""
    tags = ",\n".join('  { name = "m%d"; type = "int"; initial = %d; }' % (i, i) for i in range(SERVER_TAGS))
    served = ",\n".join('      { name = "m%d"; address = "3.%d"; }' % (i, i) for i in range(SERVER_TAGS))
    return ('tags = (\n%s\n);\n'
            'lines = ( { name = "srv"; protocol = "modbus-server"; host = "127.0.0.1"; port = %d;'
            ' max_clients = %d;\n  stations = ( { name = "u1"; address = 1; tags = (\n%s\n); } ); } );\n'
            % (tags, port, max_clients, served))


def client_conf(port, outstanding):
    """A modbus-client line to port: one station, unit 1, CLIENT_REGS int tags at 3.0 ...,
    polled again as soon as each poll ends (continuous = true; a period would count polls that
    are skipped while the previous one runs)."""
    tags = ",\n".join('      { name = "r%d"; address = "3.%d"; type = "int"; }' % (i, i)
                      for i in range(CLIENT_REGS))
    return ('lines = ( { name = "cli"; protocol = "modbus-client"; host = "127.0.0.1"; port = %d;'
            ' max_outstanding = %d;\n  stations = ( { name = "plc"; address = 1; continuous = true;'
            ' response_timeout = 1; retries = 0; tags = (\n%s\n); } ); } );\n' % (port, outstanding, tags))


LOAD_KEYS = ("requests", "scans", "registers", "errors", "elapsed", "req_per_s", "regs_per_s", "conns")


def parse_load(out):
    """The key=value line of mb_load."""
    for line in out.splitlines():
        if line.startswith("mode="):
            kv = dict(f.split("=", 1) for f in line.split())
            return {k: float(v) for k, v in kv.items() if k in LOAD_KEYS}
    return None


class Bench(benchlib.Bench):
    def __init__(self):
        super().__init__("komd-mbbench-")

    def ref_server(self, port, nodelay=False):
        """mb_ref_server on port (65536 registers; TCP_NODELAY on its connections with nodelay),
        once it says it listens."""
        pr = self.proc("mb_ref_server", [REF_SERVER, str(port), "65536"] + (["nodelay"] if nodelay else []))
        poll(lambda: pr.alive() and "listening %d" % port in pr.text(), 10, "mb_ref_server to listen")
        return pr

    def limit_server(self, port, wrap=(), name="mb_epoll_server"):
        """mb_epoll_server on port (under the command wrap, if given), once it says it listens."""
        pr = self.proc(name, list(wrap) + [LIMIT_SERVER, str(port)])
        poll(lambda: pr.alive() and "listening %d" % port in pr.text(), 60, "mb_epoll_server to listen")
        return pr

    def load(self, args, what, cpu=None):
        """Run mb_load to completion (on CPU cpu alone, if given); its parsed figures
        (BenchError unless all requests succeeded)."""
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        try:
            r = subprocess.run([LOAD] + [str(a) for a in args], capture_output=True, text=True,
                               timeout=SECONDS + WINDOW + 60,
                               preexec_fn=None if cpu is None else lambda: os.sched_setaffinity(0, {cpu}))
        except subprocess.TimeoutExpired:
            raise BenchError("mb_load (%s) did not finish" % what)
        res = parse_load(r.stdout)
        if r.returncode != 0 or res is None:
            raise BenchError("mb_load (%s) exited with %d: %s%s" % (what, r.returncode, r.stdout, r.stderr))
        if res["errors"]:
            raise BenchError("mb_load (%s): %d of %d requests failed: %s" % (what, res["errors"], res["requests"],
                                                                         r.stderr.strip()))
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        res["load_cpu"] = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
        return res

    # ---- measurements ------------------------------------------------------------------

    def server(self):
        """server: mb_load (125 registers a request) against komd's modbus-server, mb_ref_server and mb_epoll_server"""
        pref, pkomd, plim = free_ports(3)
        ref = self.ref_server(pref)
        lim = self.limit_server(plim)
        k = self.komd("server", server_conf(pkomd)).start()
        try:
            poll(lambda: (k.line() or {}).get("listeners"), 30, "komd's modbus-server line to listen")
            # all serve the same registers to unit 1: check one request each
            want = list(range(SERVER_TAGS))
            for name, port in (("komd", pkomd), ("mb_ref_server", pref), ("mb_epoll_server", plim)):
                got = read_holding(port, 1, 0, NREGS)
                if got != want[:NREGS]:
                    raise BenchError("%s serves %r... at 3.0, not 0, 1, 2, ..." % (name, got[:5]))
            frames0 = k.line()["counters"]["frames_in"]
            reqs_komd = 0
            res = {}
            for n, mode in SERVER_RUNS:
                pin = PIN and n > 1
                if pin:
                    # many connections: the server on a core of its own, the load on another, so
                    # that the load client does not take the server's CPU. One connection is a
                    # question of latency: there both run where the scheduler puts them (a wake-up
                    # across CPUs costs more than the request).
                    for pid in (ref.proc.pid, lim.proc.pid, k.proc.pid):
                        os.sched_setaffinity(pid, {SERVER_CPU})
                runs = {"komd": [], "ref": [], "limit": []}
                servers = (("ref", pref, ref.proc.pid), ("limit", plim, lim.proc.pid), ("komd", pkomd, k.proc.pid))
                for rnd in range(ROUNDS):
                    order = servers[rnd % 3:] + servers[:rnd % 3]
                    for name, port, pid in order:
                        cpu0 = proc_cpu(pid)
                        r = self.load([mode, "127.0.0.1", port, 1, n, SECONDS, NREGS, 0],
                                      "%s, %d connections, %s" % (name, n, mode), cpu=LOAD_CPU if pin else None)
                        r["cpu_us"] = (proc_cpu(pid) - cpu0) * 1e6 / r["requests"]
                        r["cpu_share"] = (proc_cpu(pid) - cpu0) / r["elapsed"]
                        r["load_us"] = r["load_cpu"] * 1e6 / r["requests"]
                        runs[name].append(r)
                        if name == "komd":
                            reqs_komd += r["requests"]
                        ref.alive()
                        lim.alive()
                        k.alive()
                        print("   %2d connections (%-4s), %-5s run %d: %9.0f requests/s, server CPU %.1f us a request"
                              " (%.0f %% of a core), mb_load CPU %.1f us a request"
                              % (n, mode, name, rnd + 1, r["req_per_s"], r["cpu_us"], 100 * r["cpu_share"],
                                 r["load_us"]), flush=True)
                x = {name: dict(rate=median([r["req_per_s"] for r in rs]),
                                cpu_us=median([r["cpu_us"] for r in rs]),
                                load_us=median([r["load_us"] for r in rs]),
                                cpu_share=median([r["cpu_share"] for r in rs]), runs=rs)
                     for name, rs in runs.items()}
                x["ratio"] = x["komd"]["rate"] / x["ref"]["rate"]
                # what the servers' CPU a request says: the rate ratio when the server is the limit
                x["cpu_ratio"] = x["ref"]["cpu_us"] / x["komd"]["cpu_us"]
                # the servers' CPU a request as multiples of the physical limit's
                x["komd_limit"] = x["komd"]["cpu_us"] / x["limit"]["cpu_us"]
                x["ref_limit"] = x["ref"]["cpu_us"] / x["limit"]["cpu_us"]
                # The load client has load_cores cores: even a server that cost nothing could not go
                # past (load_cores / mb_load's CPU a request) when the client's CPU is the limit.
                x["load_cores"] = 1 if pin else os.cpu_count()
                x["bound"] = x["load_cores"] * 1e6 / x["komd"]["load_us"] / x["ref"]["rate"]
                res[(n, mode)] = x
                print("   %2d connections (%s): komd %.0f, mb_ref_server %.0f requests/s (medians): komd/ref %.2f;"
                      " server CPU a request ref/komd %.2f; against the limit (%.1f us): komd %.2f x, ref %.2f x"
                      % (n, mode, x["komd"]["rate"], x["ref"]["rate"], x["ratio"], x["cpu_ratio"],
                         x["limit"]["cpu_us"], x["komd_limit"], x["ref_limit"]), flush=True)
            # komd counted every request it was sent (the two checks above included)
            frames = k.line()["counters"]["frames_in"] - frames0
            if frames < reqs_komd:
                raise BenchError("komd counted %d frames in, mb_load made %d requests" % (frames, reqs_komd))
            self.results["server"] = res
        finally:
            self.unproc(ref)
            self.unproc(lim)
        self.finish(k)

    def callgrind_run(self, name, conns, rounds):
        """komd's server (name "komd") or mb_epoll_server ("limit") under callgrind, serving
        mb_load rounds over conns connections; (instructions counted in all, requests)."""
        port = free_ports(1)[0]
        self.n += 1
        out = os.path.join(self.workdir, "callgrind.%s.%d.%d.%d" % (name, conns, rounds, self.n))
        wrap = ("valgrind", "--tool=callgrind", "--callgrind-out-file=" + out)
        args = ["rounds", "127.0.0.1", port, 1, conns, rounds, NREGS, 0]
        if name == "limit":
            pr = self.limit_server(port, wrap, "callgrind-limit")
            try:
                r = self.load(args, "limit under callgrind, %d rounds" % rounds)
            finally:
                pr.proc.terminate()
                try:
                    pr.proc.wait(60)
                except subprocess.TimeoutExpired:
                    raise BenchError("mb_epoll_server under callgrind did not exit")
                self.unproc(pr)
            if pr.proc.returncode != 0:
                raise BenchError("mb_epoll_server under callgrind exited with %s" % pr.proc.returncode)
        else:
            k = self.komd("callgrind", server_conf(port)).start(wrap)

            # ready when it accepts (not komctl: each status would count, as many as the polls)
            def accepts():
                k.alive()
                try:
                    socket.create_connection(("127.0.0.1", port), 1).close()
                    return True
                except OSError:
                    return False
            poll(accepts, 60, "komd under callgrind to listen")
            r = self.load(args, "komd under callgrind, %d rounds" % rounds)
            self.finish(k)
        if r["requests"] != conns * rounds:
            raise BenchError("mb_load made %d requests, not %d" % (r["requests"], conns * rounds))
        return callgrind_total(out), int(r["requests"])

    def callgrind(self):
        """callgrind: komd's and mb_epoll_server's instructions a request (mb_load rounds, 1 and 32 connections)"""
        if not shutil.which("valgrind"):
            raise BenchError("valgrind not found (apt-get install valgrind)")
        res = {}
        for conns, short, long in CG_RUNS:
            for name in ("komd", "limit"):
                (ir0, n0), (ir1, n1) = (self.callgrind_run(name, conns, rounds) for rounds in (short, long))
                res[(name, conns)] = x = dict(per=(ir1 - ir0) / (n1 - n0), runs=((ir0, n0), (ir1, n1)))
                print("   %-5s %2d connection%s: %d instructions for %d requests, %d for %d: %.0f a request (the"
                      " difference); %.0f a request in all in the longer run"
                      % (name, conns, " " if conns == 1 else "s", ir0, n0, ir1, n1, x["per"], ir1 / n1), flush=True)
        self.results["callgrind"] = res

    def client_window(self, port, outstanding):
        """Start a komd polling mb_ref_server; its registers/s over WINDOW seconds."""
        k = self.komd("client%d" % outstanding, client_conf(port, outstanding)).start()

        def polling():
            l = k.line()
            return l and l["stations"][0]["polls"] >= 3 and l["stations"][0]["state"] == "ok" and l
        l0 = poll(polling, 60, "komd's station to poll (3 polls, state ok)")

        def sample():
            ta = time.monotonic()
            l = k.line()
            tb = time.monotonic()
            if l is None:
                raise BenchError("komctl status did not answer")
            return (ta + tb) / 2, l["stations"][0]
        t0, s0 = sample()
        while time.monotonic() < t0 + WINDOW:
            pause(0.05)
            k.alive()
        t1, s1 = sample()
        cpu = proc_cpu(k.proc.pid)
        polls = s1["polls"] - s0["polls"]
        errs = s1["errors"] - s0["errors"]
        if errs or s1["state"] != "ok":
            raise BenchError("komd's station had %d errors in the window (state %s: %s)"
                             % (errs, s1["state"], s1["last_error"]))
        if polls < 2:
            raise BenchError("komd polled only %d times in %.1f s" % (polls, t1 - t0))
        # the last register holds what the reference server put there
        tag = k.ctl("get", "r%d" % (CLIENT_REGS - 1))
        if not tag or tag["value"] != CLIENT_REGS - 1 or tag["invalid"]:
            raise BenchError("tag r%d is %r, not %d" % (CLIENT_REGS - 1, tag, CLIENT_REGS - 1))
        self.finish(k)
        rate = polls * CLIENT_REGS / (t1 - t0)
        del l0
        return dict(rate=rate, polls=polls, secs=t1 - t0, ms_poll=(t1 - t0) * 1000 / polls, cpu=cpu)

    def client(self):
        """client: registers/s komd polls from mb_ref_server (10,000 registers, 80 requests) against mb_load scan"""
        port, port_nd = free_ports(2)
        ref = self.ref_server(port)
        # a diagnostic, not a goal: the same server with TCP_NODELAY on its connections
        ref_nd = self.ref_server(port_nd, nodelay=True)
        try:
            runs = {"ref": [], "nodelay": []}
            for mo in OUTSTANDING:
                runs[mo] = []
            for rnd in range(ROUNDS):
                r = self.load(["scan", "127.0.0.1", port, 1, WINDOW, CLIENT_REGS], "scan")
                r["ms_poll"] = r["elapsed"] * 1000 / r["scans"]
                runs["ref"].append(r["regs_per_s"])
                print("   round %d: mb_load scan %9.0f registers/s (%.3f ms a scan of %d)"
                      % (rnd + 1, r["regs_per_s"], r["ms_poll"], CLIENT_REGS), flush=True)
                for mo in OUTSTANDING:
                    c = self.client_window(port, mo)
                    runs[mo].append(c["rate"])
                    print("   round %d: komd max_outstanding %d: %9.0f registers/s (%d polls in %.3f s,"
                          " %.3f ms a poll)" % (rnd + 1, mo, c["rate"], c["polls"], c["secs"],
                                                                     c["ms_poll"]), flush=True)
                c = self.client_window(port_nd, DIAG_OUTSTANDING)
                runs["nodelay"].append(c["rate"])
                print("   round %d: komd max_outstanding %d, mb_ref_server nodelay (diagnostic): %9.0f registers/s"
                      " (%.3f ms a poll)" % (rnd + 1, DIAG_OUTSTANDING, c["rate"], c["ms_poll"]), flush=True)
                ref.alive()
                ref_nd.alive()
            res = {"ref": median(runs["ref"])}
            for mo in OUTSTANDING:
                res[mo] = dict(rate=median(runs[mo]), ratio=median(runs[mo]) / res["ref"])
                print("   max_outstanding %d: komd %.0f, mb_load scan %.0f registers/s (medians): komd/ref %.2f"
                      % (mo, res[mo]["rate"], res["ref"], res[mo]["ratio"]), flush=True)
            res["nodelay"] = dict(rate=median(runs["nodelay"]), ratio=median(runs["nodelay"]) / res["ref"])
            print("   diagnostic: komd max_outstanding %d against mb_ref_server nodelay %.0f registers/s: %.2f x"
                  " mb_load scan" % (DIAG_OUTSTANDING, res["nodelay"]["rate"], res["nodelay"]["ratio"]), flush=True)
            self.results["client"] = res
        finally:
            self.unproc(ref)
            self.unproc(ref_nd)

    def memory(self):
        """memory: komd's modbus-server line with 10,000 idle connections"""
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if nofile < NCONNS + 200:
            raise BenchError("RLIMIT_NOFILE is %d; %d connections need more" % (nofile, NCONNS + 200))
        port = free_ports(1)[0]
        k = self.komd("memory", server_conf(port, max_clients=2 * NCONNS)).start()
        conns = []
        try:
            poll(lambda: (k.line() or {}).get("listeners"), 30, "komd's modbus-server line to listen")
            m0 = k.mem()
            t0 = time.monotonic()

            def nsessions():
                l = k.line()
                return l["sessions"] if l else -1
            conns, slow, src = open_idle_connections(port, NCONNS, nsessions, BATCH)
            poll(lambda: nsessions() >= NCONNS, 120, "%d sessions on the server line" % NCONNS)
            t_sess = time.monotonic() - t0
            m = k.mem()
            # still serving: one request on one of the idle connections
            got = read_holding(port, 1, 0, 4)
            if got != [0, 1, 2, 3]:
                raise BenchError("komd with %d connections serves %r at 3.0" % (NCONNS, got))
            rejected = k.line()["counters"].get("rejected", 0)
            for s in conns:
                s.close()
            conns = []
            poll(lambda: nsessions() == 0, 60, "all sessions closed")
            self.finish(k)
            self.results["memory"] = dict(m0=m0, mem=m, t_sess=t_sess, slow=slow, src=src, rejected=rejected)
            print("   RSS before %d kB; %d sessions after %.3f s (connects retransmitted: %d, source addresses: %d);"
                  " VmRSS %d kB, VmHWM %d kB, RssAnon %d kB; rejected %s"
                  % (m0["VmRSS"], NCONNS, t_sess, slow, src, m["VmRSS"], m["VmHWM"], m["RssAnon"], rejected),
                  flush=True)
        finally:
            for s in conns:
                s.close()

    # ---- report ------------------------------------------------------------------------

    def report(self):
        r = self.results
        print()
        print("komd Modbus benchmark (%s, %d cores, komd %s, %d rounds)"
              % (time.strftime("%Y-%m-%d"), os.cpu_count(), KOMD, ROUNDS))
        rows = []

        def verdict(ok):
            return "met" if ok else "MISSED"
        s = r.get("server")
        if s:
            for n, mode in SERVER_RUNS:
                x = s[(n, mode)]
                goal = GOAL_SERVER.get((n, mode))
                rows.append(("server, %d connection%s (mb_load %s): requests/s" % (n, "" if n == 1 else "s", mode),
                             "komd %.0f, ref %.0f: %.2f x %s"
                             % (x["komd"]["rate"], x["ref"]["rate"], x["ratio"],
                                "(goal >= %.1f x: %s)" % (goal, verdict(x["ratio"] >= goal)) if goal
                                else "(shown, no goal)")))
                rows.append(("  server CPU a request", "komd %.1f us (%.0f %% of a core), ref %.1f us (%.0f %%):"
                             " ref/komd %.2f"
                             % (x["komd"]["cpu_us"], 100 * x["komd"]["cpu_share"], x["ref"]["cpu_us"],
                                100 * x["ref"]["cpu_share"], x["cpu_ratio"])))
                rows.append(("  server CPU a request / the limit's",
                             "limit (mb_epoll_server) %.1f us (%.0f rq/s): komd %.2f x, ref %.2f x"
                             % (x["limit"]["cpu_us"], x["limit"]["rate"], x["komd_limit"], x["ref_limit"])))
                rows.append(("  mb_load CPU a request",
                             "against komd %.1f us, against ref %.1f us: a server costing nothing could reach"
                             " at most %.2f x ref (mb_load on %d core%s)"
                             % (x["komd"]["load_us"], x["ref"]["load_us"], x["bound"], x["load_cores"],
                                "" if x["load_cores"] == 1 else "s")))
        g = r.get("callgrind")
        if g:
            for conns, _, _ in CG_RUNS:
                rows.append(("server instructions a request (callgrind, %d connection%s)"
                             % (conns, "" if conns == 1 else "s"),
                             "komd %.0f, limit %.0f (user space only)"
                             % (g[("komd", conns)]["per"], g[("limit", conns)]["per"])))
        c = r.get("client")
        if c:
            for mo in OUTSTANDING:
                rows.append(("client, max_outstanding %d: registers/s" % mo,
                             "komd %.0f, mb_load scan %.0f: %.2f x (goal >= %.1f x: %s)"
                             % (c[mo]["rate"], c["ref"], c[mo]["ratio"], GOAL_CLIENT[mo],
                                verdict(c[mo]["ratio"] >= GOAL_CLIENT[mo]))))
            rows.append(("  diagnostic: max_outstanding %d, ref server nodelay" % DIAG_OUTSTANDING,
                         "komd %.0f: %.2f x mb_load scan (the server without Nagle's algorithm)"
                         % (c["nodelay"]["rate"], c["nodelay"]["ratio"])))
        m = r.get("memory")
        if m:
            rows.append(("RSS, %d idle Modbus connections" % NCONNS,
                         "VmRSS %d kB = %.1f MiB (goal < 64 MiB: %s), VmHWM %d kB"
                         % (m["mem"]["VmRSS"], m["mem"]["VmRSS"] / 1024, verdict(m["mem"]["VmRSS"] < GOAL_RSS_KB),
                            m["mem"]["VmHWM"])))
            rows.append(("  per connection (RSS - same komd before)", "%d bytes"
                         % round((m["mem"]["VmRSS"] - m["m0"]["VmRSS"]) * 1024 / NCONNS)))
        w = max(len(a) for a, _ in rows) if rows else 0
        for a, v in rows:
            print("  %-*s  %s" % (w, a, v))


def main():
    for exe in (KOMD, KOMCTL, REF_SERVER, LIMIT_SERVER, LOAD):
        if not os.access(exe, os.X_OK):
            print("modbus_bench: %s not found; run make all build/peers/mb_ref_server build/peers/mb_epoll_server"
                  " build/peers/mb_load"
                  " (or set KOMD_BUILD)" % exe, file=sys.stderr)
            return 1
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    nofile = raise_nofile()  # before any komd: every komd inherits it
    print("RLIMIT_NOFILE %d (bench and komd)" % nofile, flush=True)
    if PIN:
        print("server runs of many connections: the servers on CPU %d, mb_load on CPU %d" % (SERVER_CPU, LOAD_CPU),
              flush=True)
    b = Bench()
    return b.run("modbus_bench", (b.server, b.callgrind, b.client, b.memory))


if __name__ == "__main__":
    sys.exit(main())
