#!/usr/bin/python3
"""Bad bytes from the network, at every protocol's server and client: frames from the fuzz
seed corpora (tests/fuzz/corpus/), cut, bit-flipped, glued together and mixed with random
bytes (a fixed random seed: the same run every time), sent by many connections to komd's
komtext, Modbus and IEC 104 servers, and answered by fake devices to komd's Modbus and
IEC 104 clients. Half of them are right where the protocol checks first (Modbus: the MBAP
header; IEC 104: STARTDT and the sequence numbers) and wrong only after, so that they
reach the handling of requests, commands and answers. komd must refuse what breaks the rules with a log line naming the peer
(the peer's bytes escaped: one line, UTF-8), keep serving well-behaved peers at the same
time, and end cleanly (under make asan: no sanitizer report)."""
import os
import random
import socket
import struct
import threading

from komdtest import WAIT, Komd, KtPeer, check, free_port, main

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(TOP, "tests", "fuzz", "corpus")


def seeds(name):
    d = os.path.join(CORPUS, name)
    return [open(os.path.join(d, f), "rb").read() for f in sorted(os.listdir(d))]


def mutate(rng, pool):
    """One bad input: seeds cut, flipped, glued, or random bytes."""
    out = b""
    for _ in range(rng.randint(1, 4)):
        s = bytearray(rng.choice(pool))
        op = rng.randrange(5)
        if op == 0 and s:
            for _ in range(rng.randint(1, 4)):
                i = rng.randrange(len(s))
                s[i] ^= 1 << rng.randrange(8)
        elif op == 1 and s:
            s = s[:rng.randrange(len(s))]
        elif op == 2:
            s = bytearray(rng.randbytes(rng.randint(1, 300)))
        elif op == 3 and len(s) > 2:
            i = rng.randrange(len(s))
            s[i:i] = rng.randbytes(rng.randint(1, 8))
        out += bytes(s)
    return out


def modbus_frames(pool):
    """The Modbus seeds that are ADUs (the others are tag addresses)."""
    return [s for s in pool if len(s) >= 8 and s[2:4] == b"\0\0"] or pool


def tweak(rng, b, limit):
    """A few bytes of b changed, cut or inserted: mostly well-formed, a little wrong."""
    b = bytearray(b)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(4)
        if op == 0 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 1 and len(b) > 1:
            del b[rng.randrange(len(b)):]
        elif op == 2:
            i = rng.randrange(len(b) + 1)
            b[i:i] = rng.randbytes(rng.randint(1, 4))
    return bytes(b[:limit])


STARTDT_ACT, STARTDT_CON = bytes.fromhex("680407000000"), bytes.fromhex("68040b000000")


def iec_asdus(pool):
    return [p[6:] for p in pool if len(p) > 6 and p[0] == 0x68 and (p[2] & 1) == 0]


def iec_iframes(rng, asdus, ns0, nr, n):
    """n I-frames in sequence from N(S) ns0, their ASDUs the seeds' a little wrong."""
    out = b""
    for ns in range(ns0, ns0 + n):
        a = tweak(rng, rng.choice(asdus), 249)
        out += bytes([0x68, len(a) + 4, (ns << 1) & 0xff, (ns >> 7) & 0xff, (nr << 1) & 0xff, (nr >> 7) & 0xff]) + a
    return out


def iec_session(rng, pool):
    """STARTDT act, then I-frames with the right sequence numbers and ASDUs a little wrong:
    past the APCI checks, into the handling of the ASDUs (commands, interrogations...)."""
    return STARTDT_ACT + iec_iframes(rng, iec_asdus(pool), 0, 0, rng.randint(1, 8))


def mb_session(rng, pool):
    """Requests with a right MBAP header (length fixed up) and a PDU a little wrong, to the
    unit served or another."""
    out = b""
    for tid in range(rng.randint(1, 6)):
        pdu = tweak(rng, rng.choice(pool)[7:], 253) or b"\x03"
        out += struct.pack(">HHHB", tid, 0, len(pdu) + 1, rng.choice((1, 1, 1, 0, 9))) + pdu
    return out


def blast(port, payloads):
    """One connection a payload: send it, close our side, read until komd closes. Returns
    how many connections komd closed (all should be)."""
    socks = []
    for p in payloads:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            s.sendall(p)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # komd closed it already: that is an answer too
        socks.append(s)
    closed = 0
    for s in socks:
        try:
            while s.recv(65536):
                pass
            closed += 1
        except ConnectionResetError:
            closed += 1  # reset by komd
        except OSError:
            pass  # a timeout: komd left it open
        finally:
            s.close()
    return closed


class BadDevice:
    """A fake device for komd's client lines: every connection gets bad answers to what komd
    sends (as many as komd's requests, up to a few), then the device closes it. answer(rng,
    request, state) makes an answer (state: a dict for the connection); by default the
    seeds and the request itself, mutated."""

    def __init__(self, pool, rng, answer=None):
        self.pool, self.rng, self.conns = pool, rng, 0
        self.answer = answer or (lambda rng, req, st: mutate(rng, self.pool + [req]))
        self.lock = threading.Lock()
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        c.settimeout(0.5)  # a komd that has nothing more to say: the device hangs up
        st = {}
        try:
            for _ in range(4):
                req = c.recv(4096)
                if not req:
                    break
                with self.lock:
                    bad = self.answer(self.rng, req, st)
                c.sendall(bad)
        except OSError:
            pass
        finally:
            c.close()
            with self.lock:
                self.conns += 1
            WAIT.kick()

    def close(self):
        self.lsock.close()


def iec_device_answer(asdus):
    """An IEC 104 device a little wrong: STARTDT con, then I-frames in sequence."""
    def answer(rng, req, st):
        out = STARTDT_CON if STARTDT_ACT in req else b""
        n = rng.randint(1, 6)
        out += iec_iframes(rng, asdus, st.get("ns", 0), 0, n)
        st["ns"] = st.get("ns", 0) + n
        return out
    return answer


def mb_device_answer(rng, req, st):
    """Modbus answers with komd's transaction ids and units, their PDUs a little wrong."""
    out = b""
    i = 0
    while i + 8 <= len(req):
        tid, _, ln, unit, fc = struct.unpack(">HHHBB", req[i:i + 8])
        if fc in (1, 2, 3, 4) and i + 12 <= len(req):
            n = struct.unpack(">H", req[i + 10:i + 12])[0]
            size = 2 * n if fc >= 3 else (n + 7) // 8
            pdu = bytes([fc, size & 0xff]) + rng.randbytes(min(size, 250))
        else:
            pdu = req[i + 7:i + 6 + ln]
        pdu = tweak(rng, pdu, 253) if rng.random() < 0.7 else pdu
        out += struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu
        i += 6 + ln
    return out or mutate(rng, [req])


MEM = """tags = ( { name = "m.i"; type = "int"; initial = 1234; }, { name = "m.f"; type = "float"; initial = 2.5; },
  { name = "m.b"; type = "bool"; initial = true; } );
"""


def conf(pk, pm, pi, dev_m, dev_i):
    return MEM + """lines = (
  { name = "kt"; protocol = "komtext-server"; host = "127.0.0.1"; port = %d;
    stations = ( { name = "s"; address = 1; tags = ( { name = "m.i"; address = "m.i"; } ); } ); },
  { name = "mb"; protocol = "modbus-server"; host = "127.0.0.1"; port = %d;
    stations = ( { name = "u1"; address = 1; tags = ( { name = "m.i"; address = "3.0"; },
      { name = "m.f"; address = "f3.1"; direction = "inout"; }, { name = "m.b"; address = "1.0"; direction = "inout"; } ); } ); },
  { name = "iec"; protocol = "iec104-server"; host = "127.0.0.1"; port = %d; t1 = 2; t2 = 1;
    stations = ( { name = "ca1"; address = 1; tags = ( { name = "m.i"; address = "100"; iec_type = "M_ME_NB_1"; },
      { name = "m.f"; address = "101"; iec_type = "M_ME_NC_1"; }, { name = "m.b"; address = "102"; iec_type = "M_SP_NA_1"; },
      { name = "m.b"; address = "200"; iec_type = "C_SC_NA_1"; direction = "inout"; } ); } ); },
  { name = "mbc"; protocol = "modbus-client"; host = "127.0.0.1"; port = %d; connect_timeout = 1;
    reconnect_delay = 0.1; reconnect_max = 0.2; max_outstanding = 4;
    stations = ( { name = "d1"; address = 1; period = 0.05; response_timeout = 0.3; retries = 0; tags = (
      { name = "c.r0"; address = "3.0"; type = "int"; direction = "inout"; },
      { name = "c.r1"; address = "f4.10"; type = "float"; }, { name = "c.c"; address = "1.3"; type = "bool"; } ); } ); },
  { name = "iecc"; protocol = "iec104-client"; host = "127.0.0.1"; port = %d; connect_timeout = 1;
    reconnect_delay = 0.1; reconnect_max = 0.2; t1 = 2; t2 = 1;
    stations = ( { name = "ca1"; address = 1; tags = (
      { name = "c.sp"; address = "100"; type = "bool"; iec_type = "M_SP_TB_1"; },
      { name = "c.f"; address = "101"; type = "float"; iec_type = "M_ME_NC_1"; } ); } ); } );
""" % (pk, pm, pi, dev_m, dev_i)


def read_holding(port, addr, count):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(struct.pack(">HHHBBHH", 7, 0, 6, 1, 3, addr, count))
        want, buf = 9 + 2 * count, b""
        while len(buf) < want:
            b = s.recv(want - len(buf))
            if not b:
                break
            buf += b
    return list(struct.unpack(">%dH" % count, buf[9:])) if len(buf) == want else None


def test_garbage_at_every_protocol():
    # the same run every time; KOMD_GARBAGE_SEED=N tries another
    seed = int(os.environ.get("KOMD_GARBAGE_SEED", "20261123"))
    rng = random.Random(seed)
    pools = {"komtext": seeds("komtext"), "modbus": modbus_frames(seeds("modbus")), "iec104": seeds("iec104")}
    pk, pm, pi = free_port(), free_port(), free_port()
    dev_m = BadDevice(pools["modbus"], random.Random(seed + 1), mb_device_answer)
    dev_i = BadDevice(pools["iec104"], random.Random(seed + 2), iec_device_answer(iec_asdus(pools["iec104"])))
    try:
        with Komd(conf(pk, pm, pi, dev_m.port, dev_i.port)).start() as k:
            good = KtPeer("127.0.0.1", pk, listen=False)  # a well-behaved komtext client, all along
            rounds = 0
            for rnd in range(4):
                for name, port in (("komtext", pk), ("modbus", pm), ("iec104", pi)):
                    payloads = [mutate(rng, pools[name]) for _ in range(20)]
                    structured = {"modbus": mb_session, "iec104": iec_session}.get(name)
                    payloads += [structured(rng, pools[name]) if structured else mutate(rng, pools[name])
                                 for _ in range(20)]
                    check(blast(port, payloads) == len(payloads), "%s: komd closed every bad connection" % name)
                # still serving well-behaved peers between the rounds
                check(read_holding(pm, 0, 1) == [1234], "round %d: the Modbus server still answers" % rnd)
                rounds += 1
            k.until(lambda: dev_m.conns >= 20 and dev_i.conns >= 20, 30,
                    "komd's clients to have met the bad devices 20 times each")
            check(k.proc.poll() is None, "komd is alive")
            errs = {l["name"]: l["counters"]["protocol_errors"] for l in k.status()["lines"]}
            for name in ("kt", "mb", "iec", "mbc", "iecc"):
                check(errs[name] > 0, "line %s counted protocol errors: %s" % (name, errs))
            k.wait_log(r"line mb: 127\.0\.0\.1:\d+: protocol error: ")
            k.wait_log(r"line iec: 127\.0\.0\.1:\d+: protocol error: ")
            # the komtext client connected before it all is still served
            n = len(good.received("VAL m.i"))
            k.ctl("set", "m.i", "4321")
            k.until(lambda: len(good.received("VAL m.i")) > n, 5, "the good komtext client gets the change")
            check(read_holding(pm, 0, 1) == [4321], "the Modbus server serves the new value")
            good.close()
            # what peers sent reaches the log escaped: no control bytes, nothing that is not UTF-8
            bad = [l for l in k.lines if "\ufffd" in l or any(c < " " and c != "\t" for c in l)]
            check(not bad, "log lines with raw bytes: %r" % bad[:3])
            check(any("\\x" in l for l in k.lines), "some bytes of the garbage were logged escaped (\\xNN)")
            # and komctl's output (last errors quote peers): valid UTF-8, no control bytes
            text = k.ctl("status")[1] + k.ctl("tags")[1]
            check("\ufffd" not in text and not any(c < " " and c not in "\n\t" for c in text),
                  "komctl status/tags print raw bytes")
            print("    %d rounds of 120 bad connections; the clients met the bad devices %d and %d times;"
                  " protocol errors %s" % (rounds, dev_m.conns, dev_i.conns, errs))
    finally:
        dev_m.close()
        dev_i.close()


if __name__ == "__main__":
    main([test_garbage_at_every_protocol])
