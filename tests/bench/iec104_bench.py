#!/usr/bin/python3
"""iec104_bench: komd's IEC 60870-5-104 server and client against raw sockets, in one run.

Run from the repository root:  /usr/bin/python3 tests/bench/iec104_bench.py
Binaries: $KOMD_BUILD/komd and $KOMD_BUILD/komctl (default build/). The raw peers are this
script itself, run as separate processes (one Python process each, so that neither shares
a GIL with the bench or with the other side):
  --reader PORT W [RECORD]   a controlling station by hand: STARTDT act, waits for
                             STARTDT con and M_EI_NA_1, sends C_IC_NA_1 (CA 1, QOI 20),
                             reads APDUs, acknowledges with an S-frame every W I-frames,
                             counts objects (VSQ number) until the ActTerm (type 100, COT
                             10); objects/s from the request to the ActTerm. RECORD keeps
                             the bytes it received (RECORD.pre before the request,
                             RECORD.post after). Prints one JSON line.
  --writer PORT K RECORD     the raw limit: listens, accepts one connection, answers its
                             STARTDT with RECORD.pre and its first I-frame (the
                             interrogation) with RECORD.post, the bytes komd sent in a
                             recorded run, K I-frames at most unacknowledged (it reads the
                             peer's S-frames, as komd does; K 0: everything at once).

Measures (goals from the issue in brackets):
  1. server to client: information objects/s of a general interrogation of one station of
     NTAGS float memory tags served as M_ME_NC_1 (komd packs them 30-ish to an ASDU), with
     (k, w) = (12, 8), (128, 8) and (128, 85) (85 = 2/3 k, the standard's advice):
       a. komd's iec104-server -> the raw reader;  the raw writer (same bytes, same k) ->
          the same reader: komd/raw is the figure  [>= 0.5 with k 128];
       b. komd's iec104-server -> komd's iec104-client (NTAGS tags): from the client's
          "data transfer started" log line (STARTDT con; the interrogation goes out at
          once) to the last tag's receive time (IOA NTAGS, sent last), komd's clock in ms;
          and the raw writer -> komd's client the same way; both against the raw limit;
       also the raw writer with no window (everything at once) as a diagnostic;
  2. switch-over, after the loss is detected  [< 50 ms]:
       a. client: a komd iec104-client on a tcp-redundant line (parallel) to two komd
          servers serving one float tag (21.5 and 22.5); SIGKILL to the started one's komd;
          from the kill (and from the client's "closed" log line: the loss detected) to the
          receive time of the tag's first value from the standby;
       b. server: two raw connections of one redundancy group to komd's server (NTAGS
          tags); the started one closes; a value changes (komctl set: queued for the
          group); the other sends STARTDT: from its STARTDT to the first monitor-direction
          value (the queued event) on it;
  3. memory: VmRSS of a komd serving NTAGS tags on one iec104-server line with NCONNS
     raw client connections, each having sent STARTDT and got STARTDT con  [< 128 MiB].

Readiness is always polled (komctl, a peer's "listening" line or a socket, 10 ms between
polls) under a deadline; every process and the temporary directory are cleaned up on exit.
Exit status 1 when a measurement could not be taken (a peer or komd failed, objects were
missing, a komd did not exit cleanly); a missed goal is reported, not a failure.
"""
import calendar
import json
import os
import resource
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

import benchlib
from benchlib import BenchError, KOMCTL, KOMD, free_ports, median, poll, proc_cpu, raise_nofile

SELF = os.path.abspath(__file__)
PY = sys.executable or "/usr/bin/python3"

NTAGS = 100000
CONFIGS = ((12, 8), (128, 8), (128, 85))  # (k, w)
ROUNDS = 5           # raw reader runs of each configuration (komd and writer alternately)
CLIENT_ROUNDS = 3    # komd-client runs (each a fresh komd parsing NTAGS tags)
SWITCH_ROUNDS = 5
NCONNS = 1000
BATCH = 64
POLL = 0.01
TICK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024

GOAL_RATIO_K128 = 0.5
GOAL_SWITCH_MS = 50.0
GOAL_RSS_KB = 128 * 1024

STARTDT_ACT = bytes([0x68, 4, 0x07, 0, 0, 0])
STARTDT_CON = 0x0B
TESTFR_ACT, TESTFR_CON = 0x43, 0x83
C_IC_NA_1, M_EI_NA_1 = 100, 70
COT_ACTCON, COT_ACTTERM, COT_SPONT, COT_INROGEN = 7, 10, 3, 20



# ---- APDUs by hand ------------------------------------------------------------------------

def s_frame(vr):
    return struct.pack("<BBHH", 0x68, 4, 1, (vr << 1) & 0xFFFF)


def i_frame(ns, nr, asdu):
    return struct.pack("<BBHH", 0x68, 4 + len(asdu), (ns << 1) & 0xFFFF, (nr << 1) & 0xFFFF) + bytes(asdu)


def cic_asdu(ca=1, qoi=20):
    # type 100, VSQ 1, COT 6 (2 octets: cause, originator 0), CA (2 octets), IOA 0 (3), QOI
    return bytes([C_IC_NA_1, 1, 6, 0, ca & 0xFF, ca >> 8, 0, 0, 0, qoi])


def split_frames(data):
    """The APDUs of a byte string: a list of (offset, length); BenchError on a torn stream."""
    out, pos = [], 0
    while pos < len(data):
        if data[pos] != 0x68 or pos + 2 > len(data) or pos + 2 + data[pos + 1] > len(data):
            raise BenchError("not a whole APDU at offset %d" % pos)
        n = 2 + data[pos + 1]
        out.append((pos, n))
        pos += n
    return out


class Conn:
    """A blocking socket with an APDU reader (deadlines through select)."""

    def __init__(self, sock):
        self.s = sock
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.pos = 0
        self.raw = bytearray()  # every byte received, when recording
        self.record = False

    def fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise BenchError("timed out reading from the peer")
        r, _, _ = select.select([self.s], [], [], left)
        if not r:
            raise BenchError("timed out reading from the peer")
        d = self.s.recv(1 << 18)
        if not d:
            raise BenchError("the peer closed the connection")
        if self.pos:
            del self.buf[:self.pos]
            self.pos = 0
        self.buf += d
        if self.record:
            self.raw += d

    def frame(self, deadline):
        """The next APDU (bytes)."""
        while True:
            b, p = self.buf, self.pos
            if len(b) - p >= 2:
                if b[p] != 0x68:
                    raise BenchError("bad start octet 0x%02x" % b[p])
                n = 2 + b[p + 1]
                if len(b) - p >= n:
                    self.pos = p + n
                    return bytes(b[p:p + n])
            self.fill(deadline)


# ---- the raw peers (run as separate processes) ---------------------------------------------

def reader_main(port, w, record):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    c = Conn(s)
    c.record = True
    deadline = time.monotonic() + 30
    s.sendall(STARTDT_ACT)
    vr = 0
    got_con = got_ei = False
    while not (got_con and got_ei):
        f = c.frame(deadline)
        if f[2] & 1 == 0:
            vr = (vr + 1) & 0x7FFF
            if f[6] == M_EI_NA_1:
                got_ei = True
        elif f[2] == STARTDT_CON:
            got_con = True
        elif f[2] == TESTFR_ACT:
            s.sendall(bytes([0x68, 4, TESTFR_CON, 0, 0, 0]))
    pre = bytes(c.raw[:len(c.raw) - (len(c.buf) - c.pos)])
    c.raw = bytearray(c.buf[c.pos:])
    s.sendall(i_frame(0, vr, cic_asdu()))
    t0 = time.perf_counter()
    unacked = objs = iframes = sframes = actcon = 0
    types = {}
    # the hot loop: index the buffer, no per-frame objects beyond what is needed
    buf = c.buf
    while True:
        b, p = c.buf, c.pos
        end = len(b)
        done = False
        while end - p >= 2:
            n = 2 + b[p + 1]
            if end - p < n:
                break
            if b[p + 2] & 1 == 0:
                vr = (vr + 1) & 0x7FFF
                iframes += 1
                unacked += 1
                t, vsq, cot = b[p + 6], b[p + 7], b[p + 8] & 0x3F
                if t == C_IC_NA_1:
                    if cot == COT_ACTTERM:
                        p += n
                        done = True
                        break
                    if cot == COT_ACTCON:
                        actcon += 1
                elif cot == COT_INROGEN:
                    objs += vsq & 0x7F
                    types[t] = types.get(t, 0) + 1
                if unacked >= w:
                    s.sendall(s_frame(vr))
                    sframes += 1
                    unacked = 0
            elif b[p + 2] == TESTFR_ACT:
                s.sendall(bytes([0x68, 4, TESTFR_CON, 0, 0, 0]))
            p += n
        c.pos = p
        if done:
            break
        c.fill(deadline)
    t1 = time.perf_counter()
    s.sendall(s_frame(vr))
    post = bytes(c.raw[:len(c.raw) - (len(c.buf) - c.pos)])
    del buf
    if record:
        with open(record + ".pre", "wb") as f:
            f.write(pre)
        with open(record + ".post", "wb") as f:
            f.write(post)
    # stay until the peer has our last acknowledgement, then close
    s.shutdown(socket.SHUT_WR)
    try:
        while select.select([s], [], [], 2)[0] and s.recv(65536):
            pass
    except OSError:
        pass
    s.close()
    print(json.dumps(dict(objs=objs, iframes=iframes, sframes=sframes, actcon=actcon, secs=t1 - t0,
                          bytes=len(post), types={str(k): v for k, v in types.items()})), flush=True)
    return 0


def writer_main(port, k, record):
    with open(record + ".pre", "rb") as f:
        pre = f.read()
    with open(record + ".post", "rb") as f:
        post = f.read()
    frames = [(o, n, (post[o + 2] | post[o + 3] << 8) >> 1) for o, n in split_frames(post) if post[o + 2] & 1 == 0]
    pre_i = [(pre[o + 2] | pre[o + 3] << 8) >> 1 for o, n in split_frames(pre) if pre[o + 2] & 1 == 0]
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(4)
    print("listening %d" % port, flush=True)
    s, _ = ls.accept()
    ls.close()
    c = Conn(s)
    deadline = time.monotonic() + 60
    f = c.frame(deadline)
    if f[2] != 0x07:
        raise BenchError("expected STARTDT act, got %s" % f.hex())
    s.sendall(pre)
    while True:
        f = c.frame(deadline)
        if f[2] & 1 == 0:
            break
        if f[2] == TESTFR_ACT:
            s.sendall(bytes([0x68, 4, TESTFR_CON, 0, 0, 0]))
    # the peer's N(R) acknowledges up to what we sent; the window as komd keeps it
    nxt = (pre_i[-1] + 1) & 0x7FFF if pre_i else 0
    ack = (f[4] | f[5] << 8) >> 1
    i = 0
    mv = memoryview(post)
    while i < len(frames):
        if k == 0:
            s.sendall(post[frames[i][0]:])
            i = len(frames)
            break
        room = k - ((nxt - ack) & 0x7FFF)
        if room > 0:
            j = min(len(frames), i + room)
            a, b = frames[i][0], frames[j - 1][0] + frames[j - 1][1]
            s.sendall(mv[a:b])
            nxt = (frames[j - 1][2] + 1) & 0x7FFF
            i = j
            continue
        f = c.frame(deadline)
        if f[2] & 3 == 1 or f[2] & 1 == 0:
            ack = (f[4] | f[5] << 8) >> 1
        elif f[2] == TESTFR_ACT:
            s.sendall(bytes([0x68, 4, TESTFR_CON, 0, 0, 0]))
    # keep the connection until the peer closes it (komd's client: when it stops)
    try:
        while True:
            r, _, _ = select.select([s], [], [], 120)
            if not r:
                break
            d = s.recv(65536)
            if not d:
                break
            if TESTFR_ACT in d[2:3]:
                s.sendall(bytes([0x68, 4, TESTFR_CON, 0, 0, 0]))
    except OSError:
        pass
    s.close()
    print("done %d frames" % len(frames), flush=True)
    return 0


# ---- the bench ----------------------------------------------------------------------------


def iso_ms(s):
    """komd's "2026-11-23T21:06:53.055Z" -> ms since the epoch."""
    base, _, frac = s.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) * 1000 + int((frac + "000")[:3])


def log_ms(line):
    """A komd log line's "2026-11-23 21:07:10.096" (local time) -> ms since the epoch."""
    base, _, frac = line[:23].partition(".")
    return int(time.mktime(time.strptime(base, "%Y-%m-%d %H:%M:%S")) * 1000) + int(frac)


# ---- configurations ----------------------------------------------------------------------

def memory_tags(n):
    return "tags = (\n" + ",\n".join('  { name = "m%d"; type = "float"; initial = %d.5; }' % (i, i)
                                     for i in range(n)) + "\n);\n"


def served_station(n):
    return ('stations = ( { name = "ca1"; address = 1; tags = (\n' +
            ",\n".join('    { name = "m%d"; address = "%d"; iec_type = "M_ME_NC_1"; }' % (i, i + 1) for i in range(n)) +
            "\n  ); } );")


def server_line(name, port, k, w, station, extra=""):
    return ('{ name = "%s"; protocol = "iec104-server"; host = "127.0.0.1"; port = %d; k = %d; w = %d; %s\n  %s }'
            % (name, port, k, w, extra, station))


def client_conf(port, k, w, n):
    tags = ",\n".join('    { name = "c%d"; address = "%d"; type = "float"; iec_type = "M_ME_NC_1"; }' % (i, i + 1)
                      for i in range(n))
    return ('lines = ( { name = "cli"; protocol = "iec104-client"; host = "127.0.0.1"; port = %d; k = %d; w = %d;\n'
            '  connect_timeout = 1; reconnect_delay = 0.2; reconnect_max = 0.5;\n'
            '  stations = ( { name = "ca1"; address = 1; tags = (\n%s\n  ); } ); } );\n' % (port, k, w, tags))


def switch_server_conf(ntags, v0, port):
    """A server of ntags float tags (m0 = v0 at IOA 1) on port."""
    tags = memory_tags(ntags).replace('"m0"; type = "float"; initial = 0.5;', '"m0"; type = "float"; initial = %s;' % v0)
    return tags + "lines = ( %s );\n" % server_line("srv", port, 12, 8, served_station(ntags))


SWITCH_CLIENT = """lines = ( { name = "cli"; protocol = "iec104-client"; type = "tcp-redundant";
  host = "127.0.0.1"; port = %d; backup = { host = "127.0.0.1"; port = %d; };
  connect_timeout = 1; reconnect_delay = 0.2; reconnect_max = 0.5;
  stations = ( { name = "ca1"; address = 1; tags = (
    { name = "c.f"; address = "1"; type = "float"; iec_type = "M_ME_NC_1"; } ); } ); } );
"""


class Bench(benchlib.Bench):
    def __init__(self):
        super().__init__("komd-iecbench-")
        self.server = None     # the komd serving NTAGS tags on one line per configuration
        self.ports = {}        # (k, w) -> its server line's port

    def peer(self, name, args):
        """This script in a peer role (--reader, --writer)."""
        return self.proc(name, [PY, SELF] + [str(a) for a in args])

    # ---- raw peers ----

    def read(self, port, w, record=None):
        """The raw reader against port; its figures (BenchError unless every object came)."""
        p = self.peer("reader", ["--reader", port, w] + ([record] if record else []))
        out = p.wait(120)
        self.procs.remove(p)
        p.log.close()
        r = json.loads(out.strip().splitlines()[-1])
        if r["objs"] != NTAGS or r["actcon"] != 1:
            raise BenchError("the reader got %d objects (ActCon %d), not %d" % (r["objs"], r["actcon"], NTAGS))
        r["rate"] = r["objs"] / r["secs"]
        return r

    def writer(self, port, k, record):
        p = self.peer("writer", ["--writer", port, k, record])
        poll(lambda: p.alive() and "listening" in p.text(), 20, "the raw writer to listen")
        return p

    # ---- measurements ----

    def start_server(self):
        """komd serving %d float tags (M_ME_NC_1), one iec104-server line per (k, w)"""
        ports = free_ports(len(CONFIGS))
        self.ports = dict(zip(CONFIGS, ports))
        station = served_station(NTAGS)
        lines = ",\n".join(server_line("srv%d_%d" % kw, p, kw[0], kw[1], station) for kw, p in self.ports.items())
        t0 = time.monotonic()
        k = self.komd("server", memory_tags(NTAGS) + "lines = (\n%s\n);\n" % lines).start()
        poll(lambda: (lambda st: st and all(l["listeners"] for l in st["lines"]) and st)(k.ctl("status")), 120,
             "komd's server lines to listen")
        self.server = k
        m = k.mem()
        print("   %d lines listening after %.2f s; VmRSS %d kB" % (len(CONFIGS), time.monotonic() - t0, m["VmRSS"]),
              flush=True)
    start_server.__doc__ = start_server.__doc__ % NTAGS

    def throughput_raw(self):
        """server to client: komd's server and the raw writer, each to the raw reader"""
        if not self.server:
            raise BenchError("no server komd")
        res = {}
        for (kk, w), port in self.ports.items():
            rec = os.path.join(self.workdir, "rec_%d_%d" % (kk, w))
            runs = {"komd": [], "raw": []}
            cpu = []
            # the first run records the bytes komd sent, for the writer
            r = self.read(port, w, rec)
            frames = r["iframes"]
            print("   k %3d w %2d: recorded %d bytes, %d I-frames (%s)"
                  % (kk, w, r["bytes"], frames, ", ".join("type %s: %d" % x for x in r["types"].items())), flush=True)
            for rnd in range(ROUNDS):
                order = ("komd", "raw") if rnd % 2 == 0 else ("raw", "komd")
                for who in order:
                    if who == "komd":
                        c0 = proc_cpu(self.server.proc.pid)
                        r = self.read(port, w)
                        cpu.append(proc_cpu(self.server.proc.pid) - c0)
                    else:
                        wp = free_ports(1)[0]
                        wr = self.writer(wp, kk, rec)
                        r = self.read(wp, w)
                        self.unproc(wr)
                    runs[who].append(r["rate"])
                    print("   k %3d w %2d run %d %-4s: %9.0f objects/s (%.1f ms, %d I-frames, %d S-frames)"
                          % (kk, w, rnd + 1, who, r["rate"], r["secs"] * 1000, r["iframes"], r["sframes"]), flush=True)
            # diagnostic: the writer with no window at all
            wp = free_ports(1)[0]
            wr = self.writer(wp, 0, rec)
            push = self.read(wp, w)
            self.unproc(wr)
            self.server.alive()
            res[(kk, w)] = dict(komd=median(runs["komd"]), raw=median(runs["raw"]), push=push["rate"],
                                frames=frames, cpu_ms=median(cpu) * 1000)
            res[(kk, w)]["ratio"] = res[(kk, w)]["komd"] / res[(kk, w)]["raw"]
            print("   k %3d w %2d: komd %.0f, raw writer %.0f objects/s (medians): komd/raw %.2f; raw writer with no"
                  " window %.0f; komd's CPU a GI %.0f ms (clock ticks)"
                  % (kk, w, res[(kk, w)]["komd"], res[(kk, w)]["raw"], res[(kk, w)]["ratio"], push["rate"],
                     res[(kk, w)]["cpu_ms"]), flush=True)
        self.results["raw"] = res

    def client_run(self, port, kk, w, full_check=False):
        """A fresh komd client of NTAGS tags to port: objects/s from STARTDT con to the last tag."""
        c = self.komd("client", client_conf(port, kk, w, NTAGS), level="info").start()
        last = "c%d" % (NTAGS - 1)

        def arrived():
            t = c.ctl("get", last)
            return t and t["updates"] >= 1 and not t["invalid"] and t
        t = poll(arrived, 120, "the client's last tag")
        if t["value"] != NTAGS - 1 + 0.5:
            raise BenchError("%s is %r, not %s" % (last, t["value"], NTAGS - 1 + 0.5))
        started = c.log_line("data transfer started")
        if not started:
            raise BenchError("no 'data transfer started' in the client's log")
        t_start = log_ms(started)
        t_end = iso_ms(t["receive_time"])
        if full_check:
            tags = c.ctl("tags", "c*")
            tags = tags if isinstance(tags, list) else (tags or {}).get("tags", [])
            bad = [x["name"] for x in tags if x["updates"] < 1 or x["invalid"]]
            if len(tags) != NTAGS or bad:
                raise BenchError("%d tags listed, %d not updated (%s...)" % (len(tags), len(bad), bad[:3]))
        cpu = proc_cpu(c.proc.pid)
        self.finish(c)
        ms = max(t_end - t_start, 1)
        return dict(rate=NTAGS * 1000.0 / ms, ms=ms, cpu=cpu)

    def throughput_client(self):
        """server to client: komd's server and the raw writer, each to komd's iec104-client (%d tags)"""
        if not self.server or "raw" not in self.results:
            raise BenchError("no server komd or no recorded bytes")
        res = {}
        checked = False
        for (kk, w), port in self.ports.items():
            rec = os.path.join(self.workdir, "rec_%d_%d" % (kk, w))
            runs = {"komd": [], "raw": []}
            for rnd in range(CLIENT_ROUNDS):
                for who in (("komd", "raw") if rnd % 2 == 0 else ("raw", "komd")):
                    if who == "komd":
                        r = self.client_run(port, kk, w, full_check=not checked)
                        checked = True
                    else:
                        wp = free_ports(1)[0]
                        wr = self.writer(wp, kk, rec)
                        r = self.client_run(wp, kk, w)
                        self.unproc(wr)
                    runs[who].append(r["rate"])
                    print("   k %3d w %2d run %d %-4s -> komd client: %9.0f objects/s (%d ms, komd's clock)"
                          % (kk, w, rnd + 1, who, r["rate"], r["ms"]), flush=True)
            self.server.alive()
            raw = self.results["raw"][(kk, w)]["raw"]
            res[(kk, w)] = dict(komd=median(runs["komd"]), writer=median(runs["raw"]))
            res[(kk, w)]["ratio"] = res[(kk, w)]["komd"] / raw
            res[(kk, w)]["ratio_writer"] = res[(kk, w)]["writer"] / raw
            print("   k %3d w %2d: komd server -> komd client %.0f, raw writer -> komd client %.0f objects/s (medians);"
                  " against the raw limit (writer -> reader, %.0f): %.2f and %.2f"
                  % (kk, w, res[(kk, w)]["komd"], res[(kk, w)]["writer"], raw, res[(kk, w)]["ratio"],
                     res[(kk, w)]["ratio_writer"]), flush=True)
        self.results["client"] = res
    throughput_client.__doc__ = throughput_client.__doc__ % NTAGS

    def switch_client_1(self):
        """switch-over, client side: SIGKILL to the started server's komd (servers of 1 tag)"""
        self.switch_client(1, SWITCH_ROUNDS)

    def switch_client_n(self):
        """switch-over, client side: SIGKILL to the started server's komd (servers of %d tags)"""
        self.switch_client(NTAGS, 3)
    switch_client_n.__doc__ = switch_client_n.__doc__ % NTAGS

    def switch_client(self, ntags, rounds):
        """The standby's first value after a SIGKILL to the started server's komd: the servers serve
        ntags float tags, m0 (IOA 1, the first object of the interrogation) 21.5 and 22.5."""
        runs = []
        for rnd in range(rounds):
            p1, p2 = free_ports(2)
            a = self.komd("swA", switch_server_conf(ntags, "21.5", p1)).start()
            b = self.komd("swB", switch_server_conf(ntags, "22.5", p2)).start()
            for k in (a, b):
                poll(lambda: (k.line("srv") or {}).get("listeners"), 120, "a switch-over server to listen")
            c = self.komd("swC", SWITCH_CLIENT % (p1, p2), level="info").start()

            def ready():
                l = c.line("cli")
                if not l or len(l["paths"]) != 2 or not all(p["state"] == "connected" for p in l["paths"]):
                    return None
                if sum(bool(p["active"]) for p in l["paths"]) != 1:
                    return None
                t = c.ctl("get", "c.f")
                return t and t["updates"] >= 1 and not t["invalid"] and (l, t)
            l, t = poll(ready, 30, "both paths connected, one started, the tag's first value")
            active = 0 if l["paths"][0]["active"] else 1
            victim, other = (a, b) if active == 0 else (b, a)
            want = 22.5 if victim is a else 21.5
            if t["value"] == want:
                raise BenchError("the tag holds the standby's value before the switch")
            vport = (p1, p2)[active]
            u0 = t["updates"]
            t_kill = time.time()
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait()
            victim.log.close()
            self.komds.remove(victim)

            def switched():
                x = c.ctl("get", "c.f")
                return x and x["value"] == want and x["updates"] > u0 and x
            x = poll(switched, 30, "the standby's value")
            t_val = iso_ms(x["receive_time"])
            lost = c.log_line("127.0.0.1:%d: closed" % vport)
            if not lost:
                raise BenchError("no 'closed' line for 127.0.0.1:%d in the client's log" % vport)
            t_lost = log_ms(lost)
            r = dict(kill_ms=t_val - t_kill * 1000, detect_ms=t_lost - t_kill * 1000, after_ms=t_val - t_lost)
            runs.append(r)
            print("   run %d: kill -> loss detected %.1f ms, detected -> first standby value %d ms, kill -> value"
                  " %.1f ms (komd's clock, ms)" % (rnd + 1, r["detect_ms"], r["after_ms"], r["kill_ms"]), flush=True)
            self.finish(c)
            self.finish(other)
        self.results["switch_client_%d" % ntags] = dict(after=median([r["after_ms"] for r in runs]),
                                             after_max=max(r["after_ms"] for r in runs),
                                             kill=median([r["kill_ms"] for r in runs]),
                                             kill_max=max(r["kill_ms"] for r in runs))

    def switch_server(self):
        """switch-over, server side: the started raw client closes, the other sends STARTDT"""
        if not self.server:
            raise BenchError("no server komd")
        k = self.server
        kk, w = CONFIGS[-1]
        name = "srv%d_%d" % (kk, w)
        port = self.ports[(kk, w)]
        runs = []
        for rnd in range(SWITCH_ROUNDS):
            a = Conn(socket.create_connection(("127.0.0.1", port), timeout=10))
            b = Conn(socket.create_connection(("127.0.0.1", port), timeout=10))
            try:
                poll(lambda: (k.line(name) or {}).get("sessions", 0) >= 2, 30, "two sessions")
                a.s.sendall(STARTDT_ACT)
                dl = time.monotonic() + 10
                while a.frame(dl)[2] != STARTDT_CON:
                    pass
                f = a.frame(dl)
                if f[2] & 1 or f[6] != M_EI_NA_1:
                    raise BenchError("expected M_EI_NA_1 after STARTDT con, got %s" % f.hex())
                # acknowledged, so that nothing of it goes back to the group's queue
                a.s.sendall(s_frame(1))
                a.s.close()
                poll(lambda: (k.line(name) or {}).get("sessions", 9) == 1, 30, "komd to see the started one close")
                value = "%d.25" % (rnd + 1)
                if k.ctl("set", "m0", value) is None and k.ctl("get", "m0")["value"] != float(value):
                    raise BenchError("komctl set m0 %s failed" % value)
                t0 = time.perf_counter()
                b.s.sendall(STARTDT_ACT)
                dl = time.monotonic() + 10
                first = None
                nb = 0
                while True:
                    f = b.frame(dl)
                    if f[2] & 1 == 0:
                        nb += 1
                        if f[6] not in (M_EI_NA_1, C_IC_NA_1):
                            first = f
                            break
                t1 = time.perf_counter()
                # acknowledge what came: events not acknowledged would be queued again (as they should)
                b.s.sendall(s_frame(nb))
                cot = first[8] & 0x3F
                ioa = first[12] | first[13] << 8 | first[14] << 16
                fval = struct.unpack("<f", first[15:19])[0] if first[6] == 13 else None
                if ioa != 1 or cot != COT_SPONT or fval != float(value):
                    raise BenchError("first value on the standby: type %d cot %d ioa %d value %r, not the queued event"
                                     % (first[6], cot, ioa, fval))
                runs.append((t1 - t0) * 1000)
                print("   run %d: STARTDT -> queued event (ioa 1 = %s, cot 3) %.2f ms" % (rnd + 1, value, runs[-1]),
                      flush=True)
            finally:
                a.s.close()
                b.s.close()
            poll(lambda: (k.line(name) or {}).get("sessions", 9) == 0, 30, "the sessions to close")
        self.results["switch_server"] = dict(ms=median(runs), max=max(runs))

    def memory(self):
        """memory: %d raw connections (STARTDT each) to one iec104-server line serving %d tags"""
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if nofile < NCONNS + 200:
            raise BenchError("RLIMIT_NOFILE is %d; %d connections need more" % (nofile, NCONNS + 200))
        # the server komd of the other steps is done with: its memory is not this one's
        if self.server:
            self.finish(self.server)
            self.server = None
        port = free_ports(1)[0]
        k = self.komd("memory", memory_tags(NTAGS) + "lines = (\n%s\n);\n"
                      % server_line("srv", port, 12, 8, served_station(NTAGS), "max_clients = %d;" % (2 * NCONNS)))
        k.start()
        conns = []
        try:
            poll(lambda: (k.line("srv") or {}).get("listeners"), 120, "the server line to listen")
            m0 = k.mem()
            t0 = time.monotonic()
            for i in range(NCONNS):
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conns.append(Conn(s))
                if len(conns) % BATCH == 0:
                    n = len(conns)
                    poll(lambda: (k.line("srv") or {}).get("sessions", 0) >= n, 60, "komd to accept %d" % n)
            poll(lambda: (k.line("srv") or {}).get("sessions", 0) >= NCONNS, 60, "%d sessions" % NCONNS)
            # STARTDT on each in turn (one group: data moves to each); wait for every con
            for c in conns:
                c.s.sendall(STARTDT_ACT)
                dl = time.monotonic() + 10
                while c.frame(dl)[2] != STARTDT_CON:
                    pass
            t_conn = time.monotonic() - t0
            m = k.mem()
            l = k.line("srv")
            self.results["memory"] = dict(m0=m0, mem=m, secs=t_conn, sessions=l["sessions"])
            print("   before: VmRSS %d kB; %d sessions, STARTDT confirmed on each in %.2f s; VmRSS %d kB, VmHWM %d kB,"
                  " RssAnon %d kB" % (m0["VmRSS"], l["sessions"], t_conn, m["VmRSS"], m["VmHWM"], m["RssAnon"]),
                  flush=True)
            self.malloc_diag(k)
        finally:
            for c in conns:
                c.s.close()
        self.finish(k)
        # for the breakdown: the same tags as memory tags with no line
        k = self.komd("tagsonly", memory_tags(NTAGS) + "lines = ( );\n").start()
        poll(lambda: k.ctl("status"), 120, "komd with memory tags only")
        self.results["memory"]["tagsonly"] = k.mem()
        print("   the same %d memory tags, no line: VmRSS %d kB, VmHWM %d kB"
              % (NTAGS, self.results["memory"]["tagsonly"]["VmRSS"], self.results["memory"]["tagsonly"]["VmHWM"]),
              flush=True)
        self.finish(k)
    memory.__doc__ = memory.__doc__ % (NCONNS, NTAGS)

    def malloc_diag(self, k):
        """A diagnostic when gdb can attach (komd is our child): glibc's malloc_stats() (to komd's
        log: the heap in use) and RSS after malloc_trim(0), which returns free pages inside the
        heap. It changes nothing komd holds, and comes after the measurement."""
        gdb = shutil.which("gdb")
        if not gdb:
            return
        try:
            subprocess.run([gdb, "-p", str(k.proc.pid), "-batch", "-ex", "call (void)malloc_stats()",
                            "-ex", "call (int)malloc_trim(0)"], capture_output=True, timeout=60)
        except (subprocess.TimeoutExpired, OSError):
            return
        k.alive()
        text = k.logtext(None)
        tail = text[text.rfind("Total (incl. mmap)"):] if "Total (incl. mmap)" in text else ""
        in_use = [int(x.split("=")[1]) for x in tail.splitlines() if x.startswith("in use bytes")]
        system = [int(x.split("=")[1]) for x in tail.splitlines() if x.startswith("system bytes")]
        if not in_use or not system:
            return
        d = dict(in_use_kb=in_use[0] // 1024, system_kb=system[0] // 1024, trimmed=k.mem())
        self.results["memory"]["malloc"] = d
        print("   diagnostic (gdb): malloc heap %d kB obtained, %d kB in use; VmRSS after malloc_trim(0) %d kB"
              % (d["system_kb"], d["in_use_kb"], d["trimmed"]["VmRSS"]), flush=True)

    # ---- report ----

    def report(self):
        r = self.results
        print()
        print("komd IEC 104 benchmark (%s, %d cores, komd %s, %d tags)"
              % (time.strftime("%Y-%m-%d"), os.cpu_count(), KOMD, NTAGS))
        rows = []

        def verdict(ok):
            return "met" if ok else "MISSED"
        for kw in CONFIGS:
            x = r.get("raw", {}).get(kw)
            if x:
                goal = " (goal >= %.1f: %s)" % (GOAL_RATIO_K128, verdict(x["ratio"] >= GOAL_RATIO_K128)) \
                    if kw[0] == 128 else ""
                rows.append(("k %d w %d: komd server -> raw reader" % kw,
                             "%.0f objects/s; raw writer %.0f: %.2f x%s" % (x["komd"], x["raw"], x["ratio"], goal)))
                rows.append(("  raw writer, no window (diagnostic)", "%.0f objects/s" % x["push"]))
            y = r.get("client", {}).get(kw)
            if y:
                goal = " (goal >= %.1f: %s)" % (GOAL_RATIO_K128, verdict(y["ratio"] >= GOAL_RATIO_K128)) \
                    if kw[0] == 128 else ""
                rows.append(("k %d w %d: komd server -> komd client" % kw,
                             "%.0f objects/s: %.2f x the raw limit%s" % (y["komd"], y["ratio"], goal)))
                rows.append(("  raw writer -> komd client", "%.0f objects/s: %.2f x" % (y["writer"], y["ratio_writer"])))
        for n in (1, NTAGS):
            s = r.get("switch_client_%d" % n)
            if not s:
                continue
            rows.append(("switch-over, client, %d tag%s: loss detected -> value" % (n, "" if n == 1 else "s"),
                         "median %.0f ms, max %.0f ms (goal < %.0f ms: %s)"
                         % (s["after"], s["after_max"], GOAL_SWITCH_MS, verdict(s["after_max"] < GOAL_SWITCH_MS))))
            rows.append(("  from the SIGKILL (ms clock)", "median %.1f ms, max %.1f ms" % (s["kill"], s["kill_max"])))
        s = r.get("switch_server")
        if s:
            rows.append(("switch-over, server: STARTDT -> queued value",
                         "median %.2f ms, max %.2f ms (goal < %.0f ms: %s)"
                         % (s["ms"], s["max"], GOAL_SWITCH_MS, verdict(s["max"] < GOAL_SWITCH_MS))))
        m = r.get("memory")
        if m:
            rows.append(("RSS, %d tags served, %d connections" % (NTAGS, NCONNS),
                         "VmRSS %d kB = %.1f MiB (goal < 128 MiB: %s), VmHWM %d kB"
                         % (m["mem"]["VmRSS"], m["mem"]["VmRSS"] / 1024, verdict(m["mem"]["VmRSS"] < GOAL_RSS_KB),
                            m["mem"]["VmHWM"])))
            rows.append(("  same komd before the connections", "VmRSS %d kB" % m["m0"]["VmRSS"]))
            if "malloc" in m:
                rows.append(("  diagnostic: malloc heap in use / obtained", "%d kB / %d kB; VmRSS after malloc_trim(0) %d kB"
                             % (m["malloc"]["in_use_kb"], m["malloc"]["system_kb"], m["malloc"]["trimmed"]["VmRSS"])))
            if "tagsonly" in m:
                rows.append(("  %d memory tags, no line" % NTAGS, "VmRSS %d kB" % m["tagsonly"]["VmRSS"]))
        w = max(len(a) for a, _ in rows) if rows else 0
        for a, v in rows:
            print("  %-*s  %s" % (w, a, v))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--reader":
        return reader_main(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else None)
    if len(sys.argv) > 1 and sys.argv[1] == "--writer":
        return writer_main(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    for exe in (KOMD, KOMCTL):
        if not os.access(exe, os.X_OK):
            print("iec104_bench: %s not found; run make all (or set KOMD_BUILD)" % exe, file=sys.stderr)
            return 1
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    nofile = raise_nofile()
    print("RLIMIT_NOFILE %d (bench and komd)" % nofile, flush=True)
    b = Bench()
    return b.run("iec104_bench", (b.start_server, b.throughput_raw, b.throughput_client, b.switch_server,
                                  b.switch_client_1, b.switch_client_n, b.memory))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        if len(sys.argv) > 1 and sys.argv[1] in ("--reader", "--writer"):
            print("%s: %s" % (sys.argv[1][2:], e), file=sys.stderr)
            sys.exit(1)
        raise
