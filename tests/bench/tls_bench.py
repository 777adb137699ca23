#!/usr/bin/python3
"""tls_bench: cost of TLS on komd lines, against OpenSSL's own server and against plain TCP.

Run from the repository root:  /usr/bin/python3 tests/bench/tls_bench.py
Binaries: $KOMD_BUILD/komd and $KOMD_BUILD/komctl (default build/). Tools: openssl, and
socat for the throughput measurement (Debian package socat).

Certificates are made at run time in the bench's temporary directory (tests/integ/tlspki.py):
a CA, an EC P-256 server certificate and an RSA-2048 one, both signed by the CA.

Measures, in one run:
  1. full TLS handshakes per second: one komtext-server line with tls { my_cert; my_key; }
     (no client certificates) on 127.0.0.1, and `openssl s_server -quiet` with the same
     certificate and key, each loaded by `openssl s_time -new` (a full handshake per
     connection, no resumption, no data) for HS_SECONDS, HS_ROUNDS times, alternately; per
     key type (EC, RSA) and TLS version (1.3, 1.2, pinned on s_time). The rate is s_time's
     connection count over the wall time of the s_time process (s_time's own "real
     seconds" are whole seconds). Also recorded: the CPU time of s_time (rusage) and of the
     server (/proc/PID/stat) over the run, and the machine's busy CPU (/proc/stat), to tell
     what limits the rate: s_time is one blocking process, one handshake at a time;
  2. bulk throughput of one komtext-client line (one station, one int tag, address "a"):
     socat streams NFRAMES frames "VAL a 0 0 <i>\\n" (i = 1..NFRAMES) to it, over plain TCP
     (TCP-LISTEN) and over TLS (OPENSSL-LISTEN, the EC certificate; komd verifies it),
     BULK_ROUNDS times each, alternately. socat reads the frames from a pipe that the bench
     fills only once komd's line reports "connected", so the clock starts (t0, wall clock)
     at the first byte; it stops at the tag's receive time (komd's wall clock, ms) once the
     tag has taken NFRAMES updates and holds the last value, NFRAMES. The line's counters
     must then show NFRAMES frames and every byte in, and no protocol error.

Medians are reported, with the ratios komd/s_server (handshakes) and the cost of TLS,
1 - tls/plain (throughput). Readiness is always polled (komctl, /proc/net/tcp, with a
10 ms wait between polls) under a deadline; every process and temporary directory is
cleaned up on exit. Exit status 1 when a measurement could not be taken (or a komd did not
exit cleanly).
"""
import datetime
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time

import benchlib
from benchlib import TOP, BenchError, KOMCTL, KOMD, median, poll, proc_cpu

sys.path.insert(0, os.path.join(TOP, "tests", "integ"))
import tlspki  # noqa: E402

HS_SECONDS = 5  # one s_time run
HS_ROUNDS = 3  # s_time runs per server, alternating komd and s_server
HS_CASES = (("EC P-256", "server", "-tls1_3"), ("EC P-256", "server", "-tls1_2"),
            ("RSA-2048", "rsa", "-tls1_3"), ("RSA-2048", "rsa", "-tls1_2"))
NFRAMES = 5000000  # about 93 MB; komd takes about half a second
BULK_ROUNDS = 3
SOCAT_BLOCK = 65536  # socat -b: bytes per read/write (an SSL_write of 64 KiB is 4 full records)
POLL = 0.01  # seconds between polls
TICK = os.sysconf("SC_CLK_TCK")



def free_port():
    import socket
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def listening(port):
    """True when some socket listens on 127.0.0.1:port (or *:port), from /proc/net/tcp:
    connecting to find out would use up the single accept of socat or s_server -naccept."""
    want = ("0100007F:%04X" % port, "00000000:%04X" % port)
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] in want and fields[3] == "0A":
                return True
    return False



def machine_cpu():
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def make_pki(d):
    """CA and EC P-256 server certificate from tlspki; an RSA-2048 server certificate too."""
    tlspki.ca(d, "ca")
    tlspki.cert(d, "server", "ca")
    tlspki.run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "rsa.key", "-out", "rsa.csr",
               "-subj", "/CN=rsa", cwd=d)
    with open(os.path.join(d, "rsa.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    tlspki.run("openssl", "x509", "-req", "-in", "rsa.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
               "-CAcreateserial", "-days", "825", "-out", "rsa.pem", "-extfile", "rsa.ext", cwd=d)



S_TIME_RX = re.compile(r"^(\d+) connections in ([\d.]+)s; ([\d.]+) connections/user sec", re.M)
S_TIME_REAL_RX = re.compile(r"^(\d+) connections in (\d+) real seconds", re.M)


class Bench(benchlib.Bench):
    def __init__(self):
        super().__init__("komd-tlsbench-")
        self.pki = os.path.join(self.workdir, "pki")
        os.mkdir(self.pki)

    def p(self, name):
        return os.path.join(self.pki, name)

    # ---- measurements ------------------------------------------------------------------

    def pki_setup(self):
        """certificates: CA, EC P-256 and RSA-2048 server certificates"""
        t = time.monotonic()
        try:
            make_pki(self.pki)
        except RuntimeError as e:
            raise BenchError("openssl: %s" % e)
        print("   made in %.2f s in %s" % (time.monotonic() - t, self.pki), flush=True)

    def s_time(self, port, version, server_pid):
        """One s_time run against 127.0.0.1:port: a dict of figures."""
        args = ["openssl", "s_time", "-connect", "127.0.0.1:%d" % port, "-new", "-time", str(HS_SECONDS), version]
        cpu0 = proc_cpu(server_pid)
        m0 = machine_cpu()
        t0 = time.monotonic()
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out = b""
        deadline = t0 + HS_SECONDS + 30
        # read to EOF, then reap with wait4 for s_time's own CPU time
        while True:
            r, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                proc.kill()
                proc.wait()
                raise BenchError("s_time did not finish within %d s" % (HS_SECONDS + 30))
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            out += chunk
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.monotonic() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        proc.stdout.close()
        cpu1 = proc_cpu(server_pid)
        m1 = machine_cpu()
        text = out.decode(errors="replace")
        m = S_TIME_RX.search(text)
        mr = S_TIME_REAL_RX.search(text)
        if proc.returncode != 0 or not m:
            raise BenchError("%s: exit %s:\n%s" % (" ".join(args), proc.returncode, text[-2000:]))
        n = int(m.group(1))
        if n == 0:
            raise BenchError("%s: no connection:\n%s" % (" ".join(args), text[-2000:]))
        return dict(n=n, wall=wall, rate=n / wall, user_rate=float(m.group(3)),
                    real_rate=(int(mr.group(1)) / int(mr.group(2))) if mr and int(mr.group(2)) else 0.0,
                    client_cpu=ru.ru_utime + ru.ru_stime, server_cpu=cpu1 - cpu0,
                    machine=(m1[0] - m0[0]) / max(1, m1[1] - m0[1]))

    def handshakes(self):
        """full TLS handshakes per second: komd server line vs openssl s_server (s_time -new)"""
        res = self.results.setdefault("hs", [])
        for keyname, cert, version in HS_CASES:
            kport, sport = free_port(), free_port()
            while sport == kport:
                sport = free_port()
            body = ('tags = ( { name = "m"; type = "int"; initial = 42; } );\n'
                    'lines = ( { name = "srv"; protocol = "komtext-server"; host = "127.0.0.1"; port = %d;\n'
                    '  max_clients = 100000; tls = { my_cert = "%s"; my_key = "%s"; };\n'
                    '  stations = ( { name = "pub"; address = 1; tags = ( { name = "m"; address = "m"; } ); } ); } );\n'
                    % (kport, self.p(cert + ".pem"), self.p(cert + ".key")))
            k = self.komd("hs", body).start()
            srv = self.proc("s_server", ["openssl", "s_server", "-accept", "127.0.0.1:%d" % sport,
                                           "-cert", self.p(cert + ".pem"), "-key", self.p(cert + ".key"), "-quiet"])
            try:
                poll(lambda: (k.line("srv") or {}).get("listeners"), 30, "komd's TLS server line to listen")
                poll(lambda: srv.alive() or listening(sport), 30, "s_server to listen")
                runs = {"komd": [], "s_server": []}
                for _ in range(HS_ROUNDS):
                    runs["komd"].append(self.s_time(kport, version, k.proc.pid))
                    k.alive()
                    runs["s_server"].append(self.s_time(sport, version, srv.proc.pid))
                    srv.alive()
                c = k.line("srv")["counters"]
                nk = sum(r["n"] for r in runs["komd"])
                if c["tls_failures"] or c["connects"] != nk:
                    raise BenchError("komd counted %d connects and %d TLS failures for s_time's %d connections"
                                     % (c["connects"], c["tls_failures"], nk))
                if c["frames_out"] != nk:
                    raise BenchError("komd sent %d frames for %d handshakes (one VAL each)" % (c["frames_out"], nk))
            finally:
                self.unproc(srv)
                if k in self.komds:
                    self.finish(k)
            row = dict(key=keyname, version=version.replace("-tls1_", "TLS 1."), runs=runs)
            for who in ("komd", "s_server"):
                rs = runs[who]
                row[who] = dict(rate=median([r["rate"] for r in rs]),
                                client_cpu=median([r["client_cpu"] / r["wall"] for r in rs]),
                                server_cpu=median([r["server_cpu"] / r["wall"] for r in rs]),
                                server_us=median([r["server_cpu"] / r["n"] * 1e6 for r in rs]),
                                client_us=median([r["client_cpu"] / r["n"] * 1e6 for r in rs]),
                                machine=median([r["machine"] for r in rs]))
            row["ratio"] = row["komd"]["rate"] / row["s_server"]["rate"]
            res.append(row)
            print("   %s %s: komd %s /s, s_server %s /s (ratio %.2f)"
                  % (keyname, row["version"], " ".join("%.0f" % r["rate"] for r in runs["komd"]),
                     " ".join("%.0f" % r["rate"] for r in runs["s_server"]), row["ratio"]), flush=True)
            for who in ("komd", "s_server"):
                x = row[who]
                print("     %-8s median %.0f handshakes/s; server CPU %.0f %% (%.0f us a handshake), s_time CPU"
                      " %.0f %% (%.0f us), machine busy %.0f %% of %d cores"
                      % (who, x["rate"], 100 * x["server_cpu"], x["server_us"], 100 * x["client_cpu"],
                         x["client_us"], 100 * x["machine"], os.cpu_count()), flush=True)

    def bulk_once(self, data, tls):
        """One transfer of data to a fresh komd client line; returns a dict of figures."""
        port = free_port()
        if tls:
            listen = "OPENSSL-LISTEN:%d,bind=127.0.0.1,reuseaddr,cert=%s,key=%s,verify=0" % (
                port, self.p("server.pem"), self.p("server.key"))
            tls_conf = '  tls = { partner_certs = "%s"; };\n' % self.p("ca.pem")
        else:
            listen = "TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr" % port
            tls_conf = ""
        peer = self.proc("socat", ["socat", "-u", "-b", str(SOCAT_BLOCK), "STDIN", listen], stdin=subprocess.PIPE)
        writer = None
        k = None
        try:
            poll(lambda: peer.alive() or listening(port), 30, "socat to listen")
            body = ('lines = ( { name = "cli"; protocol = "komtext-client"; host = "127.0.0.1"; port = %d;\n'
                    '  connect_timeout = 5; reconnect_delay = 0.1; reconnect_max = 0.5;\n%s'
                    '  stations = ( { name = "dev"; address = 1;\n'
                    '    tags = ( { name = "t"; address = "a"; type = "int"; } ); } ); } );\n' % (port, tls_conf))
            k = self.komd("bulk-tls" if tls else "bulk-plain", body).start()

            def connected():
                l = k.line("cli")
                return l and l["paths"] and l["paths"][0]["state"] == "connected"
            poll(connected, 30, "komd's client line to connect to socat")
            kcpu0, pcpu0, m0 = proc_cpu(k.proc.pid), proc_cpu(peer.proc.pid), machine_cpu()
            failed = []

            def write_all():
                fd = peer.proc.stdin.fileno()
                mv = memoryview(data)
                try:
                    while mv:
                        n = os.write(fd, mv[:1 << 20])
                        mv = mv[n:]
                except OSError as e:
                    failed.append(e)
            # the pipe stays open after the last byte: socat would end the connection at EOF,
            # and komd would then mark the tag invalid and overwrite its receive time
            t0 = time.time()
            writer = threading.Thread(target=write_all, daemon=True)
            writer.start()

            def done():
                if failed:
                    raise BenchError("writing to socat: %s" % failed[0])
                peer.alive()
                t = k.ctl("get", "t")
                return t if t and t["updates"] >= NFRAMES and t["value"] == NFRAMES else None
            tag = poll(done, 300, "%d frames through the %s line" % (NFRAMES, "TLS" if tls else "plain"))
            kcpu1, pcpu1, m1 = proc_cpu(k.proc.pid), proc_cpu(peer.proc.pid), machine_cpu()
            t1 = datetime.datetime.strptime(tag["receive_time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                tzinfo=datetime.timezone.utc).timestamp()
            secs = t1 - t0
            if secs <= 0:
                raise BenchError("tag received at %s, before the first byte was sent (%.3f)" % (tag["receive_time"], t0))
            c = k.line("cli")["counters"]
            if c["frames_in"] != NFRAMES or c["bytes_in"] != len(data) or c["protocol_errors"]:
                raise BenchError("counters after the transfer: %s (expected %d frames, %d bytes)"
                                 % (c, NFRAMES, len(data)))
            if tag["updates"] != NFRAMES:
                raise BenchError("tag updated %d times for %d frames" % (tag["updates"], NFRAMES))
            # CPU over the transfer and the polls that followed it (komctl's share on komd is small)
            span = time.time() - t0
            return dict(secs=secs, mbps=len(data) / secs / 1e6, fps=NFRAMES / secs,
                        komd_cpu=(kcpu1 - kcpu0) / span, peer_cpu=(pcpu1 - pcpu0) / span,
                        komd_cpu_s=kcpu1 - kcpu0, peer_cpu_s=pcpu1 - pcpu0,
                        machine=(m1[0] - m0[0]) / max(1, m1[1] - m0[1]))
        finally:
            if writer:
                writer.join(30)
            self.unproc(peer)
            if k and k in self.komds:
                self.finish(k)

    def bulk(self):
        """bulk throughput of one komtext-client line, plain TCP vs TLS (socat peers)"""
        if not shutil.which("socat"):
            raise BenchError("socat not found (Debian package socat)")
        data = b"".join(b"".join(b"VAL a 0 0 %d\n" % i for i in range(j, min(j + 100000, NFRAMES + 1)))
                        for j in range(1, NFRAMES + 1, 100000))
        path = os.path.join(self.workdir, "frames.txt")
        with open(path, "wb") as f:
            f.write(data)
        print("   %d frames, %d bytes (%s)" % (NFRAMES, len(data), path), flush=True)
        runs = {"plain": [], "tls": []}
        for _ in range(BULK_ROUNDS):
            for mode in ("plain", "tls"):
                r = self.bulk_once(data, mode == "tls")
                runs[mode].append(r)
                print("   %-5s %.3f s: %.1f MB/s, %.0f frames/s; CPU komd %.2f s, socat %.2f s; machine busy %.0f %%"
                      % (mode, r["secs"], r["mbps"], r["fps"], r["komd_cpu_s"], r["peer_cpu_s"], 100 * r["machine"]),
                      flush=True)
        res = dict(bytes=len(data), runs=runs)
        for mode in runs:
            rs = runs[mode]
            res[mode] = dict(secs=median([r["secs"] for r in rs]), mbps=median([r["mbps"] for r in rs]),
                             fps=median([r["fps"] for r in rs]),
                             komd_cpu_s=median([r["komd_cpu_s"] for r in rs]),
                             peer_cpu_s=median([r["peer_cpu_s"] for r in rs]))
        res["cost"] = 1 - res["tls"]["fps"] / res["plain"]["fps"]
        self.results["bulk"] = res

    # ---- report ------------------------------------------------------------------------

    def report(self):
        r = self.results
        print()
        print("komd TLS benchmark (%s, %d cores, komd %s, %s)"
              % (time.strftime("%Y-%m-%d"), os.cpu_count(), KOMD,
                 subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip()))
        rows = []
        for h in r.get("hs", []):
            rows.append(("handshakes/s, %s, %s (s_time -new, %d x %d s)"
                         % (h["key"], h["version"], HS_ROUNDS, HS_SECONDS),
                         "komd %.0f, s_server %.0f: komd/s_server %.2f (goal >= 1: %s)"
                         % (h["komd"]["rate"], h["s_server"]["rate"], h["ratio"],
                            "met" if h["ratio"] >= 1 else "NOT met")))
            rows.append(("  server CPU a handshake", "komd %.0f us, s_server %.0f us (s_time %.0f / %.0f us)"
                         % (h["komd"]["server_us"], h["s_server"]["server_us"], h["komd"]["client_us"],
                            h["s_server"]["client_us"])))
            rows.append(("  CPU busy: server / s_time / machine",
                         "komd run %.0f / %.0f / %.0f %%, s_server run %.0f / %.0f / %.0f %%"
                         % (100 * h["komd"]["server_cpu"], 100 * h["komd"]["client_cpu"], 100 * h["komd"]["machine"],
                            100 * h["s_server"]["server_cpu"], 100 * h["s_server"]["client_cpu"],
                            100 * h["s_server"]["machine"])))
        b = r.get("bulk")
        if b:
            for mode in ("plain", "tls"):
                x = b[mode]
                rows.append(("1 client line, %d frames, %s" % (NFRAMES, "TLS" if mode == "tls" else "plain TCP"),
                             "%.3f s: %.1f MB/s, %.0f frames/s (CPU komd %.2f s, socat %.2f s)"
                             % (x["secs"], x["mbps"], x["fps"], x["komd_cpu_s"], x["peer_cpu_s"])))
            rows.append(("  cost of TLS (1 - tls/plain)", "%.1f %% (goal < 25 %%: %s)"
                         % (100 * b["cost"], "met" if b["cost"] < 0.25 else "NOT met")))
        w = max(len(a) for a, _ in rows) if rows else 0
        for a, v in rows:
            print("  %-*s  %s" % (w, a, v))


def main():
    for exe in (KOMD, KOMCTL):
        if not os.access(exe, os.X_OK):
            print("tls_bench: %s not found; run make all (or set KOMD_BUILD)" % exe, file=sys.stderr)
            return 1
    if not shutil.which("openssl"):
        print("tls_bench: the openssl tool is needed", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    b = Bench()
    return b.run("tls_bench", (b.handshakes, b.bulk), first=(b.pki_setup,))


if __name__ == "__main__":
    sys.exit(main())
