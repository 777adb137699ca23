"""iec104peer: an IEC 60870-5-104 peer for komd's tests (test_iec104_peer.py).

Raw TCP sockets; every APDU is built and dissected with scapy's IEC 104 layer
(scapy.contrib.scada.iec104, Debian's python3-scapy 2.5), so nothing here shares code or
framing rules with komd's codec (protocols/iec104_codec.c). Run with /usr/bin/python3.

Peer         one connection, either role: Peer.connect() dials komd's iec104-server (the
             peer is the controlling station), PeerServer accepts komd's iec104-client
             (the peer is the controlled station). A reader thread splits the byte stream
             into APDUs (start 0x68, length), dissects each with scapy and keeps them as
             Frame objects; every frame wakes komdtest.WAIT. It checks what komd sends:
             scapy must dissect the whole APDU and rebuild the same octets, komd's N(S)
             must count up without a gap, its N(R) must not acknowledge frames the peer
             never sent; anything else goes to Peer.errors. It answers TESTFR act (and,
             as a controlled station, STARTDT/STOPDT act) unless told not to, and
             acknowledges komd's I-frames after auto_ack of them (None: never, the test
             acknowledges by hand).
tshark_read  a capture file decoded as IEC 104 on a given port (capture with
             mbpeers.Capture).
"""
import calendar
import datetime
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import warnings

warnings.filterwarnings("ignore")
logging.getLogger("scapy").setLevel(logging.ERROR)
from scapy.contrib.scada.iec104 import (  # noqa: E402
    IEC104_I_Message_SingleIOA, IEC104_I_Message_SeqIOA, IEC104_S_Message, IEC104_U_Message,
    IEC104_IO_WITH_IOA_CLASSES, iec104_decode)
from scapy.packet import Padding, Raw  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from komdtest import WAIT, TestFailure  # noqa: E402

U_NAMES = {0x07: "STARTDT_ACT", 0x0B: "STARTDT_CON", 0x13: "STOPDT_ACT", 0x23: "STOPDT_CON",
           0x43: "TESTFR_ACT", 0x83: "TESTFR_CON"}
U_FIELDS = {"STARTDT_ACT": "startdt_act", "STARTDT_CON": "startdt_con", "STOPDT_ACT": "stopdt_act",
            "STOPDT_CON": "stopdt_con", "TESTFR_ACT": "testfr_act", "TESTFR_CON": "testfr_con"}

# type identifications used by the tests (101 7.2.1.1)
M_SP_NA_1, M_DP_NA_1, M_ME_NB_1, M_ME_NC_1, M_IT_NA_1 = 1, 3, 11, 13, 15
M_SP_TB_1, M_DP_TB_1, M_ME_TE_1, M_ME_TF_1 = 30, 31, 35, 36
C_SC_NA_1, C_SE_NC_1, M_EI_NA_1, C_IC_NA_1, C_CI_NA_1, C_CS_NA_1 = 45, 50, 70, 100, 101, 103
# causes of transmission (101 7.2.3)
COT_PER, COT_SPONT, COT_INIT, COT_ACT, COT_ACTCON, COT_DEACT, COT_ACTTERM = 1, 3, 4, 6, 7, 8, 10
COT_INROGEN, COT_REQCOGEN = 20, 37
COT_UNKNOWN_TYPE, COT_UNKNOWN_COT, COT_UNKNOWN_CA, COT_UNKNOWN_IOA = 44, 45, 46, 47


def seq_diff(b, a):
    """Frames from a to b, modulo 32768."""
    return (b - a) & 0x7fff


# ---- CP56Time2a (101 7.2.6.18), UTC ----

def cp56_kw(ms, iv=0):
    """scapy's CP56Time2a fields for ms since the epoch (UTC)."""
    dt = datetime.datetime.fromtimestamp(ms / 1000.0, datetime.timezone.utc)
    return dict(sec_milli=dt.second * 1000 + (ms % 1000), minutes=dt.minute, hours=dt.hour,
                day_of_month=dt.day, weekday=dt.isoweekday(), month=dt.month, year=dt.year - 2000, iv_time=iv)


def cp56_ms(o):
    """ms since the epoch (UTC) from a dissected object's CP56Time2a fields."""
    ms = o.sec_milli
    dt = datetime.datetime(2000 + o.year, o.month, o.day_of_month, o.hours, o.minutes, ms // 1000)
    return calendar.timegm(dt.timetuple()) * 1000 + ms % 1000


def iso_ms(ms):
    """komd's time text (komctl get): 2024-03-15T10:30:00.000Z."""
    dt = datetime.datetime.fromtimestamp(ms // 1000, datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + ".%03dZ" % (ms % 1000)


def now_ms():
    return int(time.time() * 1000)


# ---- building APDUs with scapy ----

def io(type_id, ioa, **fields):
    """One information object (with its IOA) of a type, scapy's field names."""
    return IEC104_IO_WITH_IOA_CLASSES[type_id](information_object_address=ioa, **fields)


def i_apdu(ns, nr, objs, cot, ca=1, pn=0, test=0, oa=0):
    """An I-format APDU (SQ=0) with scapy's objects; type from the objects."""
    return bytes(IEC104_I_Message_SingleIOA(tx_seq_num=ns, rx_seq_num=nr, cot=cot, ack=pn, test=test,
                                            origin_address=oa, common_asdu_address=ca, io=list(objs)))


def s_apdu(nr):
    return bytes(IEC104_S_Message(rx_seq_num=nr))


def u_apdu(name):
    return bytes(IEC104_U_Message(**{U_FIELDS[name]: 1}))


class Frame:
    """One APDU as scapy dissected it."""

    def __init__(self, raw, pkt, t):
        self.raw, self.pkt, self.t = raw, pkt, t
        self.ns = self.nr = self.type = self.cot = self.ca = None
        self.pn = self.test = 0
        self.u = None
        self.objs = []
        if isinstance(pkt, IEC104_U_Message):
            self.fmt = "U"
            c1 = raw[2]
            self.u = U_NAMES.get(c1, "U_%02x" % c1)
        elif isinstance(pkt, IEC104_S_Message):
            self.fmt = "S"
            self.nr = pkt.rx_seq_num
        else:
            self.fmt = "I"
            self.ns, self.nr, self.type, self.cot = pkt.tx_seq_num, pkt.rx_seq_num, pkt.type_id, pkt.cot
            self.pn, self.test, self.ca, self.oa = pkt.ack, pkt.test, pkt.common_asdu_address, pkt.origin_address
            self.objs = list(pkt.io) if pkt.io else []
            if isinstance(pkt, IEC104_I_Message_SeqIOA):
                self.ioa0 = pkt.information_object_address

    def obj(self, ioa):
        for o in self.objs:
            if getattr(o, "information_object_address", None) == ioa:
                return o
        return None

    def __repr__(self):
        if self.fmt == "U":
            return "U(%s)" % self.u
        if self.fmt == "S":
            return "S(nr=%d)" % self.nr
        return "I(ns=%d,nr=%d) type %d cot %d%s ca %d %d objs" % (self.ns, self.nr, self.type, self.cot,
                                                                 " neg" if self.pn else "", self.ca, len(self.objs))


class Peer:
    """One IEC 104 connection (see the module's comment)."""

    def __init__(self, sock, auto_ack=1, answer_testfr=True, answer_startdt=False, name="peer"):
        self.sock = sock
        self.name = name
        self.local = sock.getsockname()[:2]   # (address, port): the peer as komd names it
        self.auto_ack, self.answer_testfr, self.answer_startdt = auto_ack, answer_testfr, answer_startdt
        self.frames = []
        self.errors = []
        self.vs = 0             # the next N(S) the peer sends
        self.vr = 0             # the next N(S) expected from komd (I-frames received)
        self.acked_by_us = 0    # the last N(R) the peer sent
        self.acked_by_komd = 0  # the last N(R) komd sent
        self.lock = threading.Lock()
        self.closed = False
        self.closed_at = None
        self.t0 = time.monotonic()
        self.sent = []          # (monotonic, raw) of everything the peer sent
        threading.Thread(target=self._read, daemon=True).start()

    @classmethod
    def connect(cls, port, host="127.0.0.1", src=None, **kw):
        """Dial komd's server; src binds the source address (e.g. 127.0.0.2, another
        redundancy group)."""
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5)
        if src:
            s.bind((src, 0))
        s.connect((host, port))
        s.settimeout(None)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(s, **kw)

    # ---- receiving ----

    def _read(self):
        buf = b""
        while True:
            try:
                d = self.sock.recv(65536)
            except OSError:
                d = b""
            if not d:
                break
            buf += d
            while len(buf) >= 2:
                if buf[0] != 0x68:
                    self.errors.append("start octet 0x%02x from komd" % buf[0])
                    buf = b""
                    break
                n = buf[1] + 2
                if len(buf) < n:
                    break
                raw, buf = buf[:n], buf[n:]
                self._frame(raw)
        self.closed = True
        self.closed_at = time.monotonic()
        WAIT.kick()

    def _frame(self, raw):
        t = time.monotonic()
        pkt = iec104_decode(raw)
        if isinstance(pkt, Raw):
            self.errors.append("scapy cannot dissect %s" % raw.hex())
            return
        if pkt.haslayer(Padding) or bytes(pkt) != raw:
            self.errors.append("scapy: trailing or changed octets in %s" % raw.hex())
        f = Frame(raw, pkt, t)
        if f.fmt == "I" and f.type is not None and f.type < 128 and f.type in IEC104_IO_WITH_IOA_CLASSES and \
                any(isinstance(o, (Raw, Padding)) for o in f.objs):
            self.errors.append("scapy: objects of %r not dissected: %s" % (f, raw.hex()))
        reply = None
        with self.lock:
            if f.fmt == "I":
                if f.ns != self.vr:
                    self.errors.append("komd's N(S) %d, expected %d" % (f.ns, self.vr))
                self.vr = (f.ns + 1) & 0x7fff
            if f.fmt in ("I", "S"):
                if seq_diff(f.nr, self.acked_by_komd) > seq_diff(self.vs, self.acked_by_komd):
                    self.errors.append("komd's N(R) %d acknowledges frames not sent (next N(S) %d)" % (f.nr, self.vs))
                self.acked_by_komd = f.nr
            self.frames.append(f)
            if f.fmt == "U":
                if f.u == "TESTFR_ACT" and self.answer_testfr:
                    reply = u_apdu("TESTFR_CON")
                elif f.u == "STARTDT_ACT" and self.answer_startdt:
                    reply = u_apdu("STARTDT_CON")
                elif f.u == "STOPDT_ACT" and self.answer_startdt:
                    reply = u_apdu("STOPDT_CON")
            elif f.fmt == "I" and self.auto_ack and seq_diff(self.vr, self.acked_by_us) >= self.auto_ack:
                reply = s_apdu(self.vr)
                self.acked_by_us = self.vr
            if reply:
                self._send(reply)
        WAIT.kick()

    # ---- sending ----

    def _send(self, raw):
        self.sent.append((time.monotonic(), raw))
        try:
            self.sock.sendall(raw)
        except OSError:
            pass

    def send_raw(self, raw):
        with self.lock:
            self._send(raw)

    def send_u(self, name):
        self.send_raw(u_apdu(name))

    def send_s(self, nr=None):
        with self.lock:
            nr = self.vr if nr is None else nr
            self.acked_by_us = nr
            self._send(s_apdu(nr))

    def send_i(self, objs, cot, ca=1, pn=0, test=0, oa=0, ns=None, nr=None, type_id=None):
        """An I-frame; N(S) and N(R) the right ones unless given. type_id patches the type
        octet after scapy built it (types scapy has no class for)."""
        with self.lock:
            ns = self.vs if ns is None else ns
            nr = self.vr if nr is None else nr
            raw = bytearray(i_apdu(ns, nr, objs, cot, ca, pn, test, oa))
            if type_id is not None:
                raw[6] = type_id
            self.vs = (ns + 1) & 0x7fff
            self.acked_by_us = nr
            self._send(bytes(raw))
            return bytes(raw)

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    # ---- looking at what came ----

    def iframes(self, since=0):
        with self.lock:
            return [f for f in self.frames[since:] if f.fmt == "I"]

    def mark(self):
        with self.lock:
            return len(self.frames)

    def find(self, pred, since=0):
        with self.lock:
            return [f for f in self.frames[since:] if pred(f)]

    def wait(self, pred, timeout=5.0, what="a frame", since=0):
        """The first frame from index since on that pred accepts."""
        def found():
            with self.lock:
                for f in self.frames[since:]:
                    if pred(f):
                        return f
            return None
        try:
            return WAIT.until(found, timeout, what)
        except TestFailure:
            raise TestFailure("%s: timed out after %.1f s waiting for %s; frames since %d: %s" % (
                self.name, timeout, what, since, self.frames[since:][-20:]))

    def wait_i(self, type_id, cot, timeout=5.0, since=0, pn=0, ca=None):
        return self.wait(lambda f: f.fmt == "I" and f.type == type_id and f.cot == cot and f.pn == pn and
                         (ca is None or f.ca == ca), timeout, "type %d cot %d%s" % (type_id, cot, " neg" if pn else ""),
                         since)

    def wait_u(self, name, timeout=5.0, since=0):
        return self.wait(lambda f: f.fmt == "U" and f.u == name, timeout, "U " + name, since)

    def wait_closed(self, timeout=5.0):
        WAIT.until(lambda: self.closed, timeout, "%s: komd closing the connection" % self.name)
        return self.closed_at

    def startdt(self, timeout=5.0):
        m = self.mark()
        self.send_u("STARTDT_ACT")
        return self.wait_u("STARTDT_CON", timeout, since=m)

    def roundtrip(self, timeout=5.0):
        """TESTFR act and its con: komd has sent everything it sent before reading ours."""
        m = self.mark()
        self.send_u("TESTFR_ACT")
        return self.wait_u("TESTFR_CON", timeout, since=m)

    def check_clean(self):
        if self.errors:
            raise TestFailure("%s: komd's frames: %s" % (self.name, "; ".join(self.errors[:10])))


class PeerServer:
    """A controlled station for komd's iec104-client: accepts connections on 127.0.0.1:port
    (port 0: a free one) and makes a Peer of each (answering STARTDT act by default)."""

    def __init__(self, port=0, **peer_kw):
        self.peer_kw = dict(dict(answer_startdt=True, name="server peer"), **peer_kw)
        self.conns = []
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", port))
        self.ls.listen(8)
        self.port = self.ls.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                s, _ = self.ls.accept()
            except OSError:
                return
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.conns.append(Peer(s, **self.peer_kw))
            WAIT.kick()

    def wait_conn(self, n=1, timeout=5.0):
        WAIT.until(lambda: len(self.conns) >= n, timeout, "komd's connection #%d" % n)
        return self.conns[n - 1]

    def close(self):
        try:
            self.ls.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.ls.close()
        for c in self.conns:
            c.close()


def tshark_read(path, port, display_filter, fields=("frame.number",)):
    """Lines of tshark's fields for the packets of a capture that match a display filter,
    TCP port decoded as IEC 60870-5-104."""
    args = ["tshark", "-r", path, "-d", "tcp.port==%d,iec60870_104" % port, "-Y", display_filter, "-T", "fields"]
    for f in fields:
        args += ["-e", f]
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise TestFailure("tshark -r failed: %s" % r.stderr)
    return [l for l in r.stdout.splitlines() if l.strip()]
