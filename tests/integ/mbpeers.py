"""mbpeers: Modbus TCP peers (and tshark) for komd's tests: test_modbus*.py, test_writes.py.

PyServer   pymodbus 3.0's ModbusTcpServer with a ModbusSlaveContext datastore, in a
           subprocess (this file run as a script), with the response manipulator of
           pymodbus.server.reactive (ReactiveServer.manipulate_response: "delayed",
           "error", "empty" responses), driven over stdin instead of its HTTP endpoint.
           Writes into the datastore are reported on stdout with their function code.
RawServer  a Modbus TCP server written here by hand (MBAP framing, raw sockets) that can
           misbehave per unit: stay silent, answer an exception, answer with a stray
           transaction id first, answer for the wrong unit, or hold answers until several
           requests are pending (to observe pipelining).
MbPeer     tests/peers/mbpeer (libmodbus) as a server in a subprocess; mbclient() runs it
           as a client.
RawClient  a Modbus TCP client framing by hand: any PDU, answers read back as they come.
Capture    tshark on the loopback.
And the komd configurations and pymodbus helpers the Modbus tests share (server_conf,
client_conf, pyclient, regs, excode, ...).
"""
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from komdtest import BUILD, WAIT, TestFailure, check  # noqa: E402

PY = "/usr/bin/python3"


class _Proc:
    """A subprocess whose stdout lines are kept (and wake WAIT)."""

    def __init__(self, argv, stdin=False):
        self.out = []
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, text=True, bufsize=1)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.out.append(line.rstrip("\n"))
            WAIT.kick()
        WAIT.kick()

    def lines(self, prefix=""):
        return [l for l in list(self.out) if l.startswith(prefix)]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class PyServer(_Proc):
    """pymodbus server on 127.0.0.1:port for the given unit ids (100 of each table each)."""

    def __init__(self, port, units=(1,)):
        super().__init__([PY, os.path.abspath(__file__), "pyserver", str(port), ",".join(map(str, units))],
                         stdin=True)
        self.port = port
        WAIT.until(lambda: self.lines("ready") or self.proc.poll() is not None, 10, "pymodbus server ready")
        if not self.lines("ready"):
            raise TestFailure("pymodbus server did not start: %s" % self.out)

    def cmd(self, **kw):
        n = len(self.lines("done"))
        self.proc.stdin.write(json.dumps(kw) + "\n")
        self.proc.stdin.flush()
        WAIT.until(lambda: len(self.lines("done")) > n, 5, "pymodbus server command %s" % kw)

    def set(self, unit, table, addr, values):
        self.cmd(cmd="set", unit=unit, table=table, addr=addr, values=values)

    def manip(self, **config):
        """The reactive manipulator's configuration (response_type, delay_by, error_code,
        clear_after); response_type "normal" turns it off."""
        self.cmd(cmd="manip", config=config)

    def writes(self):
        """[(unit, fc, addr, values)] written into the datastore, in order."""
        out = []
        for l in self.lines("write "):
            d = json.loads(l[6:])
            out.append((d["unit"], d["fc"], d["addr"], d["values"]))
        return out


def _pyserver_main(port, units):
    import asyncio
    import logging
    from pymodbus.datastore import ModbusServerContext, ModbusSlaveContext, ModbusSequentialDataBlock
    from pymodbus.server.async_io import ModbusTcpServer
    from pymodbus.server.reactive.main import ReactiveServer, DEFAULT_MANIPULATOR

    logging.basicConfig(level=int(os.environ.get("PYSERVER_LOG", logging.CRITICAL)))

    def out(s):
        sys.stdout.write(s + "\n")
        sys.stdout.flush()

    class Slave(ModbusSlaveContext):
        def __init__(self, unit, **kw):
            super().__init__(**kw)
            self.unit = unit

        def setValues(self, fc_as_hex, address, values):
            out("write " + json.dumps({"unit": self.unit, "fc": fc_as_hex, "addr": address,
                                       "values": [int(v) for v in values]}))
            super().setValues(fc_as_hex, address, values)

    slaves = {}
    for u in units:
        slaves[u] = Slave(u, di=ModbusSequentialDataBlock(0, [0] * 100), co=ModbusSequentialDataBlock(0, [0] * 100),
                          hr=ModbusSequentialDataBlock(0, [0] * 100), ir=ModbusSequentialDataBlock(0, [0] * 100),
                          zero_mode=True)
    context = ModbusServerContext(slaves=slaves, single=False)
    fcs = {"co": 1, "di": 2, "hr": 3, "ir": 4}

    async def run():
        loop = asyncio.get_running_loop()
        server = ModbusTcpServer(context, address=("127.0.0.1", port), allow_reuse_address=True)
        # the reactive server's manipulator, without its HTTP endpoint (no web port needed)
        rs = ReactiveServer("127.0.0.1", 0, server)
        rs.update_manipulator_config(dict(DEFAULT_MANIPULATOR))
        task = asyncio.create_task(server.serve_forever())
        await server.serving
        out("ready")

        def on_cmd():
            line = sys.stdin.readline()
            if not line:
                task.cancel()
                return
            c = json.loads(line)
            if c["cmd"] == "set":
                ModbusSlaveContext.setValues(slaves[c["unit"]], fcs[c["table"]], c["addr"], c["values"])
            elif c["cmd"] == "manip":
                cfg = dict(DEFAULT_MANIPULATOR)
                cfg["clear_after"] = 0
                cfg.update(c["config"])
                rs.update_manipulator_config(cfg)
            out("done")

        loop.add_reader(sys.stdin.fileno(), on_cmd)
        try:
            await task
        except asyncio.CancelledError:
            pass

    asyncio.run(run())


class RawServer:
    """A Modbus TCP server, framing by hand. units: {unit: mode}, mode one of
    "normal" (answer FC 3/4 from regs, echo FC 5/6/16/22), "silent", ("exception", code),
    "stray" (send an answer with another transaction id first), "wrong_unit" (answer as
    unit + 1). hold=N: keep answers until N requests are pending (or hold_timeout passes)."""

    def __init__(self, units, regs=None, hold=0, hold_timeout=2.0):
        self.units = dict(units)
        self.regs = regs if regs is not None else {}
        self.hold, self.hold_timeout = hold, hold_timeout
        self.requests = []          # (unit, tid, fc, addr, count)
        self.max_pending = 0        # most requests received before an answer was sent
        self.lock = threading.Lock()
        self.conns = []
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(8)
        self.port = self.ls.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                s, _ = self.ls.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(s)
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()
            WAIT.kick()

    def _answer(self, unit, tid, pdu):
        fc = pdu[0]
        mode = self.units.get(unit, "silent")
        if mode == "silent":
            return []
        if isinstance(mode, tuple) and mode[0] == "exception":
            return [struct.pack(">HHHBBB", tid, 0, 3, unit, fc | 0x80, mode[1])]
        if fc in (3, 4):
            addr, count = struct.unpack(">HH", pdu[1:5])
            vals = [self.regs.get((unit, fc, addr + i), 0) for i in range(count)]
            body = bytes([fc, 2 * count]) + b"".join(struct.pack(">H", v & 0xffff) for v in vals)
        elif fc in (5, 6, 15, 16):
            body = pdu[:5]
            if fc == 6:
                self.regs[(unit, 3, struct.unpack(">H", pdu[1:3])[0])] = struct.unpack(">H", pdu[3:5])[0]
        elif fc == 22:
            body = pdu[:7]
        else:
            body = bytes([fc | 0x80, 1])
        out = []
        if mode == "stray":
            out.append(struct.pack(">HHHB", (tid + 5000) & 0xffff, 0, len(body) + 1, unit) + body)
        if mode == "wrong_unit":
            unit = (unit + 1) & 0xff
        out.append(struct.pack(">HHHB", tid, 0, len(body) + 1, unit) + body)
        return out

    def _serve(self, s):
        buf = b""
        pending = []
        first_at = None
        s.settimeout(0.05)
        while True:
            try:
                d = s.recv(4096)
                if not d:
                    break
                buf += d
            except socket.timeout:
                pass
            except OSError:
                break
            while len(buf) >= 7:
                tid, pid, length, unit = struct.unpack(">HHHB", buf[:7])
                if len(buf) < 6 + length:
                    break
                pdu = buf[7:6 + length]
                buf = buf[6 + length:]
                with self.lock:
                    self.requests.append((unit, tid, pdu[0], struct.unpack(">H", pdu[1:3])[0],
                                          struct.unpack(">H", pdu[3:5])[0]))
                pending.append((unit, tid, pdu))
                if first_at is None:
                    first_at = time.monotonic()
                WAIT.kick()
            self.max_pending = max(self.max_pending, len(pending))
            if pending and (len(pending) >= self.hold or time.monotonic() - first_at > self.hold_timeout):
                try:
                    for unit, tid, pdu in pending:
                        for frame in self._answer(unit, tid, pdu):
                            s.sendall(frame)
                except OSError:
                    break
                pending = []
                first_at = None
        with self.lock:
            if s in self.conns:
                self.conns.remove(s)
        s.close()
        WAIT.kick()

    def count(self, unit=None, fc=None):
        with self.lock:
            return len([r for r in self.requests if (unit is None or r[0] == unit) and (fc is None or r[2] == fc)])

    def close(self):
        try:
            self.ls.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.ls.close()
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


MBPEER = os.path.join(BUILD, "peers", "mbpeer")


class MbPeer(_Proc):
    """tests/peers/mbpeer server PORT TABLE:ADDR=VALUE ... (libmodbus)."""

    def __init__(self, port, values=()):
        if not os.path.exists(MBPEER):
            raise TestFailure("%s is missing: make %s" % (MBPEER, os.path.relpath(MBPEER)))
        super().__init__([MBPEER, "server", str(port)] + list(values))
        WAIT.until(lambda: self.lines("listening") or self.proc.poll() is not None, 5, "mbpeer listening")
        if not self.lines("listening"):
            raise TestFailure("mbpeer did not start: %s" % self.out)


def mbclient(port, unit, *ops):
    """Run mbpeer as a client; its output lines."""
    r = subprocess.run([MBPEER, "client", str(port), str(unit)] + list(ops), capture_output=True, text=True,
                       timeout=30)
    if r.returncode != 0:
        raise TestFailure("mbpeer client failed (%d): %s %s" % (r.returncode, r.stdout, r.stderr))
    return r.stdout.splitlines()


class Capture:
    """tshark -i lo -f 'tcp port N' -w FILE, from before the traffic until stop()."""

    def __init__(self, port, path, capture_filter=None):
        self.port, self.path = port, path
        # -P: a summary line for each packet, so that we see when capturing has really begun
        self.p = _Proc(["tshark", "-i", "lo", "-f", capture_filter or "tcp port %d" % port, "-w", path, "-P", "-l"])
        WAIT.until(lambda: (os.path.exists(path) and any("Capturing on" in l for l in self.p.out))
                   or self.p.proc.poll() is not None, 15, "tshark capturing")
        if self.p.proc.poll() is not None:
            raise TestFailure("tshark could not capture on lo: %s" % self.p.out)
        # "Capturing on" comes before packets are really seen: probe the (still closed) port
        # until tshark shows a packet of it (a SYN and its RST: no Modbus in them)
        WAIT.until(self._probe, 15, "tshark seeing loopback packets")

    def _probe(self, since=0):
        if any(str(self.port) in l and "TCP" in l for l in self.p.out[since:]):
            return True
        s = socket.socket()
        try:
            s.connect(("127.0.0.1", self.port))
        except OSError:
            pass
        s.close()
        return False

    def stop(self):
        # tshark gets packets from dumpcap a little later: probe the port (closed again by now)
        # and wait for that probe, so that everything before it is in the file
        n = len(self.p.out)
        WAIT.until(lambda: self._probe(n), 15, "tshark seeing the last packets")
        self.p.proc.send_signal(signal.SIGINT)
        try:
            self.p.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.p.proc.kill()
            self.p.proc.wait()

    def read(self, display_filter, fields=("frame.number",)):
        args = ["tshark", "-r", self.path, "-o", "mbtcp.tcp.port:%d" % self.port, "-Y", display_filter, "-T", "fields"]
        for f in fields:
            args += ["-e", f]
        r = subprocess.run(args, capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise TestFailure("tshark -r failed: %s" % r.stderr)
        return [l for l in r.stdout.splitlines() if l.strip()]



class RawClient:
    """A Modbus TCP client framing by hand: send() any PDU, answer() reads one ADU back."""

    def __init__(self, port, timeout=3.0):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.s.settimeout(timeout)
        self.tid = 0

    def send(self, unit, pdu, tid=None):
        if tid is None:
            self.tid = (self.tid + 1) & 0xffff
            tid = self.tid
        self.s.sendall(struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + bytes(pdu))
        return tid

    def _read(self, n):
        buf = b""
        while len(buf) < n:
            try:
                d = self.s.recv(n - len(buf))
            except socket.timeout:
                return None
            if not d:
                return None
            buf += d
        return buf

    def answer(self):
        """(tid, unit, pdu), or None when nothing came within the timeout or the connection closed."""
        h = self._read(7)
        if h is None:
            return None
        tid, pid, length, unit = struct.unpack(">HHHB", h)
        pdu = self._read(length - 1)
        return None if pdu is None else (tid, unit, pdu)

    def ask(self, unit, pdu):
        """The answer's PDU to one request (None: no answer)."""
        tid = self.send(unit, pdu)
        a = self.answer()
        if a is None:
            return None
        if a[0] != tid:
            raise TestFailure("answer with transaction id %d to request %d" % (a[0], tid))
        return a[2]

    def is_open(self):
        """Still connected (nothing to read, no EOF)?"""
        self.s.setblocking(False)
        try:
            return self.s.recv(1, socket.MSG_PEEK) != b""
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            self.s.setblocking(True)
            self.s.settimeout(3.0)

    def close(self):
        self.s.close()


# ---- komd configurations and pymodbus helpers shared by the Modbus tests ----

MEM = """tags = (
  { name = "m.f"; type = "float"; initial = 1.5; },
  { name = "m.fs"; type = "float"; initial = 1.5; },
  { name = "m.L"; type = "int"; initial = 305419896; },
  { name = "m.Ll"; type = "int"; initial = 305419896; },
  { name = "m.S"; type = "int"; initial = -2; },
  { name = "m.Sl"; type = "int"; initial = -2; },
  { name = "m.I"; type = "int"; initial = -5; },
  { name = "m.U"; type = "int"; initial = 65000; },
  { name = "m.b0"; type = "bool"; initial = true; },
  { name = "m.b5"; type = "bool"; initial = true; },
  { name = "m.c0"; type = "bool"; initial = true; },
  { name = "m.c1"; type = "bool"; initial = false; },
  { name = "m.c2"; type = "bool"; initial = true; },
  { name = "m.d0"; type = "bool"; initial = false; },
  { name = "m.d1"; type = "bool"; initial = true; },
  { name = "m.ir"; type = "int"; initial = 321; },
  { name = "m.irf"; type = "float"; initial = -2.25; },
  { name = "m.in"; type = "int"; initial = 9; },
  { name = "m.u2"; type = "int"; initial = 222; }
);
"""

SERVED = """
  { name = "m.f"; address = "f3.10"; direction = "inout"; },
  { name = "m.fs"; address = "F3.12"; direction = "inout"; },
  { name = "m.L"; address = "L3.14"; direction = "inout"; },
  { name = "m.Ll"; address = "Ll3.16"; direction = "inout"; },
  { name = "m.S"; address = "S3.18"; direction = "inout"; },
  { name = "m.Sl"; address = "Sl3.20"; direction = "inout"; },
  { name = "m.I"; address = "I3.22"; direction = "inout"; },
  { name = "m.U"; address = "3.23"; direction = "inout"; },
  { name = "m.b0"; address = "3.24.0"; direction = "inout"; },
  { name = "m.b5"; address = "3.24.5"; direction = "inout"; },
  { name = "m.c0"; address = "1.0"; direction = "inout"; },
  { name = "m.c1"; address = "1.1"; direction = "inout"; },
  { name = "m.c2"; address = "1.2"; direction = "inout"; },
  { name = "m.d0"; address = "2.0"; },
  { name = "m.d1"; address = "2.1"; },
  { name = "m.ir"; address = "4.0"; },
  { name = "m.irf"; address = "f4.1"; },
  { name = "m.in"; address = "3.30"; }
"""


def server_conf(port, extra_line="", extra_lines=""):
    return MEM + """lines = ( { name = "srv"; protocol = "modbus-server"; host = "127.0.0.1"; port = %d; %s
      stations = ( { name = "u1"; address = 1; tags = ( %s ); },
                   { name = "u2"; address = 2; tags = ( { name = "m.u2"; address = "3.0"; direction = "inout"; } ); } ); }
      %s );""" % (port, extra_line, SERVED, extra_lines)


def pyclient(port, timeout=3):
    from pymodbus.client import ModbusTcpClient
    c = ModbusTcpClient("127.0.0.1", port=port, timeout=timeout, retries=0)
    check(c.connect(), "pymodbus connects to komd")
    return c


def regs(r, what):
    check(not r.isError(), "%s: %s" % (what, r))
    return list(r.registers)


def bits(r, n, what):
    check(not r.isError(), "%s: %s" % (what, r))
    return [bool(b) for b in r.bits[:n]]


def excode(r, what):
    from pymodbus.pdu import ExceptionResponse
    check(isinstance(r, ExceptionResponse), "%s: an exception response, got %s" % (what, r))
    return r.exception_code


def client_conf(port, stations, extra="max_outstanding = 1;"):
    return """lines = ( { name = "cli"; protocol = "modbus-client"; host = "127.0.0.1"; port = %d; %s
      connect_timeout = 1; reconnect_delay = 0.2; reconnect_max = 0.5; stations = ( %s ); } );""" % (
        port, extra, stations)


def station(name, unit, tags, extra=""):
    return """{ name = "%s"; address = %d; period = 0.2; response_timeout = 0.5; retries = 0; %s
      tags = ( %s ); }""" % (name, unit, extra, tags)


def tag(name, addr, typ="int", direction="inout"):
    return '{ name = "%s"; address = "%s"; type = "%s"; direction = "%s"; }' % (name, addr, typ, direction)


def valid(k, name, value):
    t = k.tag(name)
    return not t["invalid"] and t["value"] == value


def station_state(k, line, name):
    for s in k.line(line)["stations"]:
        if s["name"] == name:
            return s
    raise AssertionError("no station %s" % name)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "pyserver":
        _pyserver_main(int(sys.argv[2]), [int(u) for u in sys.argv[3].split(",")])
    else:
        sys.exit("usage: mbpeers.py pyserver PORT UNIT,UNIT")
