#!/usr/bin/python3
"""core_bench: start-up time and memory of the core komd daemon.

Run from the repository root:  /usr/bin/python3 tests/bench/core_bench.py
Binaries: $KOMD_BUILD/komd and $KOMD_BUILD/komctl (default build/).

Measures, each with a fresh komd in a temporary directory:
  1. an idle komd with no lines (the baseline RSS and start-up time);
  2. 1,000 komtext-client lines, all connecting to one listening socket of the bench that
     accepts and never sends: time until the control socket answers and until every
     line's path reports "connected"; VmRSS/VmHWM idle once they are;
  3. 1,000 komtext-server lines, each listening on its own port: time until the control
     socket answers and until every line has its listener;
  4. one komtext-server line (max_clients 20000) serving one memory tag, with 10,000 TCP
     connections from the bench, opened in batches of 64 (komd's accept queue is 128: a
     full queue drops SYNs and costs 1 s retransmissions): time until komd reports 10,000
     sessions, and RSS.

Readiness is always polled (komctl, with a 10 ms wait between polls) under a deadline;
every komd and temporary directory is cleaned up on exit. Exit status 1 when a
measurement could not be taken (or a komd did not exit cleanly).
"""
import os
import resource
import signal
import socket
import sys
import threading
import time

import benchlib
from benchlib import BenchError, KOMCTL, KOMD, free_ports, open_idle_connections, poll, raise_nofile

NLINES = 1000
NCONNS = 10000
POLL = 0.01  # seconds between polls
BATCH = 64  # connections opened before waiting for komd to accept them



class Sink:
    """A listening socket that accepts every connection, keeps it open and never sends."""

    def __init__(self):
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(4096)
        self.port = self.lsock.getsockname()[1]
        self.conns = []
        self.t_last = None  # monotonic time of the latest accept
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            self.conns.append(c)
            self.t_last = time.monotonic()

    def close(self):
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.lsock.close()
        self.thread.join(5)
        for c in self.conns:
            c.close()
        self.conns = []


def client_line(i, port):
    return ('  { name = "c%d"; protocol = "komtext-client"; host = "127.0.0.1"; port = %d;\n'
            '    stations = ( { name = "s"; address = 1; tags = (\n'
            '      { name = "c%d.a"; address = "a"; type = "int"; },\n'
            '      { name = "c%d.b"; address = "b"; type = "float"; },\n'
            '      { name = "c%d.c"; address = "c"; type = "bool"; } ); } ); }'
            % (i, port, i, i, i))


def server_line(i, port):
    return ('  { name = "srv%d"; protocol = "komtext-server"; host = "127.0.0.1"; port = %d;\n'
            '    stations = ( { name = "s"; address = "s"; tags = (\n'
            '      { name = "m.v"; address = "v"; } ); } ); }' % (i, port))


MEMTAG = 'tags = ( { name = "m.v"; type = "int"; initial = 1; } );\n'


class Bench(benchlib.Bench):
    def __init__(self):
        super().__init__("komd-bench-")

    # ---- measurements ------------------------------------------------------------------

    def baseline(self):
        """idle komd with no lines"""
        k = self.komd("baseline", "lines = ( );\n").start()
        t_ctl, _ = k.wait_ready()
        m = k.mem()
        self.results["baseline"] = dict(t_ctl=t_ctl, mem=m, t_stop=self.finish(k))
        print("   control socket %.3f s; VmRSS %d kB, VmHWM %d kB" % (t_ctl, m["VmRSS"], m["VmHWM"]),
              flush=True)

    def clients(self):
        """1,000 komtext-client lines connecting to one idle listening socket"""
        sink = Sink()
        try:
            body = "lines = (\n" + ",\n".join(client_line(i, sink.port) for i in range(NLINES)) + "\n);\n"
            k = self.komd("clients", body).start()
            t_ctl, _ = k.wait_ready()

            def all_connected():
                st = k.status()
                if st is None:
                    return None
                lines = st["lines"]
                n = sum(1 for l in lines if l["paths"] and l["paths"][0]["state"] == "connected")
                return len(lines) == NLINES and n == NLINES
            poll(all_connected, 60, "%d connected client lines" % NLINES)
            t_conn = time.monotonic() - k.t0
            if len(sink.conns) < NLINES:
                raise BenchError("komd reports %d connected but the peer accepted only %d"
                                 % (NLINES, len(sink.conns)))
            t_peer = sink.t_last - k.t0
            m = k.mem()
            t_stop = self.finish(k)
            self.results["clients"] = dict(t_ctl=t_ctl, t_conn=t_conn, t_peer=t_peer, mem=m, t_stop=t_stop)
            print("   control socket %.3f s; all connected %.3f s (peer accepted the last at %.3f s);"
                  " VmRSS %d kB, VmHWM %d kB; SIGTERM to exit %.3f s"
                  % (t_ctl, t_conn, t_peer, m["VmRSS"], m["VmHWM"], t_stop), flush=True)
        finally:
            sink.close()

    def servers(self):
        """1,000 komtext-server lines, each listening on its own port"""
        ports = free_ports(NLINES)
        body = MEMTAG + "lines = (\n" + ",\n".join(server_line(i, p) for i, p in enumerate(ports)) + "\n);\n"
        k = self.komd("servers", body).start()
        t_ctl, _ = k.wait_ready()

        def all_listening():
            st = k.status()
            if st is None:
                return None
            lines = st["lines"]
            n = sum(1 for l in lines if l["listeners"])
            return len(lines) == NLINES and n == NLINES
        poll(all_listening, 60, "%d listening server lines" % NLINES)
        t_listen = time.monotonic() - k.t0
        # every port really accepts: connect to the first and the last one
        for p in (ports[0], ports[-1]):
            try:
                socket.create_connection(("127.0.0.1", p), timeout=5).close()
            except OSError as e:
                raise BenchError("server line on port %d does not accept: %s" % (p, e))
        m = k.mem()
        t_stop = self.finish(k)
        self.results["servers"] = dict(t_ctl=t_ctl, t_listen=t_listen, mem=m, t_stop=t_stop)
        print("   control socket %.3f s; all listening %.3f s; VmRSS %d kB, VmHWM %d kB;"
              " SIGTERM to exit %.3f s" % (t_ctl, t_listen, m["VmRSS"], m["VmHWM"], t_stop), flush=True)

    def connections(self):
        """one komtext-server line with 10,000 accepted connections"""
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if nofile < NCONNS + 200:
            raise BenchError("RLIMIT_NOFILE is %d; %d connections need more" % (nofile, NCONNS + 200))
        port = free_ports(1)[0]
        body = MEMTAG + ('lines = ( { name = "srv"; protocol = "komtext-server"; host = "127.0.0.1";'
                         ' port = %d; max_clients = 20000;\n  stations = ( { name = "s"; address = "s";'
                         ' tags = ( { name = "m.v"; address = "v"; } ); } ); } );\n' % port)
        k = self.komd("conns", body).start()
        conns = []
        try:
            k.wait_ready()
            m0 = k.mem()
            t0 = time.monotonic()

            def nsessions():
                st = k.status()
                return st["lines"][0]["sessions"] if st else -1
            # connects that took a SYN retransmission (the accept queue was full) are counted
            conns, slow, src = open_idle_connections(port, NCONNS, nsessions, BATCH)
            t_open = time.monotonic() - t0

            def sessions():
                st = k.status()
                if st is None:
                    return None
                return st["lines"][0]["sessions"] >= NCONNS
            poll(sessions, 120, "%d sessions on the server line" % NCONNS)
            t_sess = time.monotonic() - t0
            st = k.status()
            rejected = st["lines"][0]["counters"].get("rejected", 0)
            m = k.mem()
            for s in conns:
                s.close()
            conns = []
            poll(lambda: (k.status() or {"lines": [{"sessions": -1}]})["lines"][0]["sessions"] == 0, 60,
                 "all sessions closed")
            t_close = time.monotonic() - t0 - t_sess
            t_stop = self.finish(k)
            self.results["conns"] = dict(m0=m0, mem=m, t_open=t_open, t_sess=t_sess, t_close=t_close,
                                         src=src, slow=slow, rejected=rejected, t_stop=t_stop)
            print("   RSS before %d kB; %d connections opened in %.3f s (batches of %d, source addresses"
                  " used: %d, connects retransmitted: %d), komd reports %d sessions at %.3f s;"
                  " VmRSS %d kB, VmHWM %d kB; all closed in %.3f s; rejected %s"
                  % (m0["VmRSS"], NCONNS, t_open, BATCH, src, slow, NCONNS, t_sess, m["VmRSS"],
                     m["VmHWM"], t_close, rejected), flush=True)
        finally:
            for s in conns:
                s.close()

    # ---- report ------------------------------------------------------------------------

    def report(self):
        r = self.results
        print()
        print("komd core benchmark (%s, %d cores, komd %s)" % (time.strftime("%Y-%m-%d"), os.cpu_count(), KOMD))
        rows = []
        b = r.get("baseline")
        if b:
            rows.append(("start, no lines", "control socket %.3f s" % b["t_ctl"]))
            rows.append(("RSS idle, no lines (baseline)", "VmRSS %d kB, VmHWM %d kB"
                         % (b["mem"]["VmRSS"], b["mem"]["VmHWM"])))
        c = r.get("clients")
        if c:
            rows.append(("start %d client lines" % NLINES, "control socket %.3f s, all connected %.3f s"
                         % (c["t_ctl"], c["t_conn"])))
            rows.append(("RSS idle, %d connected client lines" % NLINES, "VmRSS %d kB, VmHWM %d kB"
                         % (c["mem"]["VmRSS"], c["mem"]["VmHWM"])))
            if b:
                rows.append(("  per client line (RSS - baseline)", "%.1f kB"
                             % ((c["mem"]["VmRSS"] - b["mem"]["VmRSS"]) / NLINES)))
            rows.append(("stop %d client lines (SIGTERM)" % NLINES, "%.3f s" % c["t_stop"]))
        s = r.get("servers")
        if s:
            rows.append(("start %d server lines" % NLINES, "control socket %.3f s, all listening %.3f s"
                         % (s["t_ctl"], s["t_listen"])))
            rows.append(("RSS idle, %d server lines" % NLINES, "VmRSS %d kB, VmHWM %d kB"
                         % (s["mem"]["VmRSS"], s["mem"]["VmHWM"])))
            if b:
                rows.append(("  per server line (RSS - baseline)", "%.1f kB"
                             % ((s["mem"]["VmRSS"] - b["mem"]["VmRSS"]) / NLINES)))
        n = r.get("conns")
        if n:
            rows.append(("%d connections accepted" % NCONNS, "%.3f s (batches of %d; %d connects retransmitted)"
                         % (n["t_sess"], BATCH, n["slow"])))
            rows.append(("RSS with %d connections" % NCONNS, "VmRSS %d kB, VmHWM %d kB"
                         % (n["mem"]["VmRSS"], n["mem"]["VmHWM"])))
            if b:
                rows.append(("  per connection (RSS - baseline)/%d" % NCONNS, "%d bytes"
                             % round((n["mem"]["VmRSS"] - b["mem"]["VmRSS"]) * 1024 / NCONNS)))
            rows.append(("  per connection (RSS - same komd before)/%d" % NCONNS, "%d bytes"
                         % round((n["mem"]["VmRSS"] - n["m0"]["VmRSS"]) * 1024 / NCONNS)))
        w = max(len(a) for a, _ in rows) if rows else 0
        for a, v in rows:
            print("  %-*s  %s" % (w, a, v))


def main():
    for exe in (KOMD, KOMCTL):
        if not os.access(exe, os.X_OK):
            print("core_bench: %s not found; run make all (or set KOMD_BUILD)" % exe, file=sys.stderr)
            return 1
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    nofile = raise_nofile()  # before any thread or komd: every komd inherits it
    print("RLIMIT_NOFILE %d (bench and komd)" % nofile, flush=True)
    b = Bench()
    return b.run("core_bench", (b.baseline, b.clients, b.servers, b.connections))


if __name__ == "__main__":
    sys.exit(main())
