"""Modbus TCP against independent peers: pymodbus 3.0 as client of komd's modbus-server and as
server (with pymodbus's reactive response manipulator) for komd's modbus-client; a Modbus server
framed by hand (tests/integ/mbpeers.py RawServer) for stray and wrong-unit replies, silent units
and pipelining; libmodbus (tests/peers/mbpeer.c) as server and client; tshark on the loopback."""
import os
import socket
import struct
import tempfile
import threading
import time

from komdtest import Komd, KtPeer, check, free_port, main
from mbpeers import Capture, MbPeer, PyServer, RawServer, mbclient

from pymodbus.client import ModbusTcpClient
from pymodbus.pdu import ExceptionResponse
from pymodbus.register_read_message import ReadWriteMultipleRegistersRequest
from pymodbus.register_write_message import MaskWriteRegisterRequest

# ---- komd as server ----

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
    check(isinstance(r, ExceptionResponse), "%s: an exception response, got %s" % (what, r))
    return r.exception_code


def test_server_reads_pymodbus():
    port = free_port()
    with Komd(server_conf(port)).start() as k:
        c = pyclient(port)
        r = regs(c.read_holding_registers(10, 14, slave=1), "FC3 10..23")
        check(r[0:2] == [0x3FC0, 0x0000], "f3.10 = 1.5 big-endian words: %s" % r[0:2])
        check(r[2:4] == [0x0000, 0x3FC0], "F3.12 = 1.5 swapped: %s" % r[2:4])
        check(r[4:6] == [0x1234, 0x5678], "L3.14: %s" % r[4:6])
        check(r[6:8] == [0x5678, 0x1234], "Ll3.16: %s" % r[6:8])
        check(r[8:10] == [0xFFFF, 0xFFFE], "S3.18 = -2: %s" % r[8:10])
        check(r[10:12] == [0xFFFE, 0xFFFF], "Sl3.20 = -2: %s" % r[10:12])
        check(r[12] == 0xFFFB, "I3.22 = -5: %#x" % r[12])
        check(r[13] == 65000, "3.23 = 65000: %d" % r[13])
        check(regs(c.read_holding_registers(24, 1, slave=1), "FC3 24") == [0x21], "bits 0 and 5 of 3.24")
        check(bits(c.read_coils(0, 3, slave=1), 3, "FC1") == [True, False, True], "coils 1.0..1.2")
        check(bits(c.read_discrete_inputs(0, 2, slave=1), 2, "FC2") == [False, True], "inputs 2.0, 2.1")
        check(regs(c.read_input_registers(0, 3, slave=1), "FC4") == [321, 0xC010, 0x0000],
              "input registers 4.0 = 321, f4.1 = -2.25")
        check(regs(c.read_holding_registers(30, 1, slave=1), "FC3 30") == [9], "an input tag is readable")
        # a second station (unit 2) on the same line
        check(regs(c.read_holding_registers(0, 1, slave=2), "unit 2") == [222], "unit 2 serves m.u2")
        check(excode(c.read_holding_registers(10, 1, slave=2), "unit 2 at 10") == 2, "unit 2 does not serve 10")
        # a value changed in komd is served at once
        k.ctl("set", "m.f", "-3.5")
        check(regs(c.read_holding_registers(10, 2, slave=1), "FC3 10") == [0xC060, 0], "m.f = -3.5 served")
        c.close()


def test_server_writes_pymodbus():
    port = free_port()
    with Komd(server_conf(port)).start() as k:
        c = pyclient(port)
        check(not c.write_coil(1, True, slave=1).isError(), "FC5")
        check(k.tag("m.c1")["value"] is True, "FC5 set m.c1: %s" % k.tag("m.c1"))
        check(not c.write_register(23, 1234, slave=1).isError(), "FC6")
        check(k.tag("m.U")["value"] == 1234, "FC6 set m.U: %s" % k.tag("m.U"))
        check(not c.write_coils(0, [False, True, False], slave=1).isError(), "FC15")
        check([k.tag(t)["value"] for t in ("m.c0", "m.c1", "m.c2")] == [False, True, False], "FC15 set the coils")
        check(not c.write_registers(10, [0x4049, 0x0FDB, 0x0000, 0x4120], slave=1).isError(), "FC16 two floats")
        check(abs(k.tag("m.f")["value"] - 3.1415927) < 1e-6, "f3.10 = pi: %s" % k.tag("m.f"))
        check(k.tag("m.fs")["value"] == 10.0, "F3.12 = 10 (swapped words): %s" % k.tag("m.fs"))
        check(not c.write_registers(14, [0xFFFF, 0xFFFF, 0x0002, 0x0001], slave=1).isError(), "FC16 L, Ll")
        check(k.tag("m.L")["value"] == 4294967295, "L3.14 = 2^32-1: %s" % k.tag("m.L"))
        check(k.tag("m.Ll")["value"] == 0x00010002, "Ll3.16: %s" % k.tag("m.Ll"))
        check(not c.write_registers(18, [0xFFFF, 0xFF38, 0xFF38, 0xFFFF, 0x8000], slave=1).isError(), "FC16 S Sl I")
        check([k.tag(t)["value"] for t in ("m.S", "m.Sl", "m.I")] == [-200, -200, -32768], "signed values")
        # FC 22: clear bit 0, set bit 5 stays, via masks (and = ~1 & ~0x20, or = 0x20)
        r = c.execute(MaskWriteRegisterRequest(24, 0xFFDE, 0x0020, unit=1))
        check(not r.isError(), "FC22: %s" % r)
        check(k.tag("m.b0")["value"] is False and k.tag("m.b5")["value"] is True, "FC22 bits: %s %s" % (
            k.tag("m.b0"), k.tag("m.b5")))
        # FC 23: write 23 then read 22..23 (the write comes first)
        r = c.execute(ReadWriteMultipleRegistersRequest(read_address=22, read_count=2, write_address=23,
                                                        write_registers=[4321], unit=1))
        check(not r.isError() and list(r.registers) == [0x8000, 4321], "FC23 write then read: %s" % r)
        check(k.tag("m.U")["value"] == 4321, "FC23 set m.U")
        c.close()


def test_server_exceptions_pymodbus():
    port, port2 = free_port(), free_port()
    ign = """, { name = "ign"; protocol = "modbus-server"; host = "127.0.0.1"; port = %d; unknown_unit = "ignore";
      stations = ( { name = "i1"; address = 1; tags = ( { name = "m.u2"; address = "3.0"; } ); } ); }""" % port2
    with Komd(server_conf(port, extra_lines=ign)).start() as k:
        c = pyclient(port)
        # illegal function: FC 7 (read exception status) and 43 (device identification)
        from pymodbus.other_message import ReadExceptionStatusRequest
        from pymodbus.mei_message import ReadDeviceInformationRequest
        check(excode(c.execute(ReadExceptionStatusRequest(unit=1)), "FC7") == 1, "FC7: illegal function")
        check(excode(c.execute(ReadDeviceInformationRequest(unit=1)), "FC43") == 1, "FC43: illegal function")
        # illegal data address
        check(excode(c.read_holding_registers(40, 1, slave=1), "unmapped") == 2, "unmapped register")
        check(excode(c.read_holding_registers(23, 3, slave=1), "23..24 mapped, 25 not") == 2, "a range past the map")
        check(excode(c.read_holding_registers(29, 2, slave=1), "29 unmapped") == 2, "a gap in the range")
        check(excode(c.write_register(10, 1, slave=1), "half a float") == 2, "partial write of a float")
        check(excode(c.write_registers(11, [1, 2], slave=1), "straddling floats") == 2, "write across two floats")
        check(excode(c.write_register(30, 1, slave=1), "direction in") == 2, "write to a direction in tag")
        check(excode(c.write_coil(5, True, slave=1), "unmapped coil") == 2, "unmapped coil")
        check(k.tag("m.f")["value"] == 1.5 and k.tag("m.in")["value"] == 9, "nothing was written")
        # illegal data value: quantity 0 and 126 for FC 3
        check(excode(c.read_holding_registers(10, 0, slave=1), "quantity 0") == 3, "FC3 quantity 0")
        check(excode(c.read_holding_registers(10, 126, slave=1), "quantity 126") == 3, "FC3 quantity 126")
        # unknown unit: exception 0x0B
        check(excode(c.read_holding_registers(10, 2, slave=9), "unit 9") == 0x0B, "unknown unit: 0x0B")
        # the connection is still fine
        check(regs(c.read_holding_registers(10, 2, slave=1), "after exceptions") == [0x3FC0, 0], "still served")
        c.close()
        # unknown_unit = "ignore": no answer at all (pymodbus times out), unit 1 answers
        c2 = pyclient(port2)
        # pymodbus 3.0.0rc1 cannot connect with a timeout under 1 s (connect() gets EINPROGRESS):
        # shorten it once connected
        c2.params.timeout = 0.5
        c2.socket.settimeout(0.5)
        t0 = time.monotonic()
        r = c2.read_holding_registers(0, 1, slave=7)
        check(r.isError() and not isinstance(r, ExceptionResponse), "no reply for unit 7: %s" % r)
        check(time.monotonic() - t0 >= 0.4, "pymodbus waited for its timeout")
        c2.close()
        c2 = pyclient(port2)
        check(regs(c2.read_holding_registers(0, 1, slave=1), "ign unit 1") == [222], "unit 1 on the ignore line")
        c2.close()


def test_server_image_follows_tags():
    """The served image is cached and kept in step with the tags: every change (komctl set,
    a client's write, a value that cannot be encoded and then can) shows in the next read,
    on a station whose spans overlap (not cached) as on one whose do not, across
    reconnections and a reload."""
    port = free_port()
    mem = """tags = ( { name = "x.a"; type = "int"; initial = 5; }, { name = "x.big"; type = "int"; initial = 70000; },
      { name = "x.c"; type = "int"; initial = 1; }, { name = "x.b3"; type = "bool"; initial = false; },
      { name = "x.b9"; type = "bool"; initial = true; }, { name = "x.o1"; type = "int"; initial = 1; },
      { name = "x.o2"; type = "int"; initial = 1; }, { name = "x.w"; type = "int"; initial = 40; } );
"""

    def conf(extra=""):
        return mem + """lines = ( { name = "srv"; protocol = "modbus-server"; host = "127.0.0.1"; port = %d; %s
          stations = ( { name = "u1"; address = 1; tags = (
              { name = "x.a"; address = "3.0"; direction = "inout"; },
              { name = "x.big"; address = "3.1"; },
              { name = "x.b3"; address = "3.2.3"; direction = "inout"; },
              { name = "x.b9"; address = "3.2.9"; direction = "inout"; },
              { name = "x.c"; address = "1.7"; direction = "inout"; } ); },
            { name = "u2"; address = 2; tags = (
              { name = "x.o1"; address = "3.5.2"; }, { name = "x.o2"; address = "3.5.2"; },
              { name = "x.w"; address = "3.6"; direction = "inout"; } ); } ); } );""" % (port, extra)
    with Komd(conf()).start() as k:
        c = pyclient(port)
        check(regs(c.read_holding_registers(0, 1, slave=1), "3.0") == [5], "x.a = 5 served")
        # 70000 does not fit a uint16: device failure, named in the station's last error
        check(excode(c.read_holding_registers(0, 2, slave=1), "3.0..1") == 4, "70000 at 3.1: exception 4")
        check("x.big" in station_state(k, "srv", "u1")["last_error"], "last error names x.big: %s"
              % station_state(k, "srv", "u1"))
        k.ctl("set", "x.big", "65535")
        check(regs(c.read_holding_registers(0, 3, slave=1), "3.0..2") == [5, 65535, 0x200],
              "x.big fits now; bits 3 (off) and 9 (on) of 3.2")
        k.ctl("set", "x.a", "-1")
        check(excode(c.read_holding_registers(0, 1, slave=1), "x.a = -1") == 4, "-1 in a uint16: exception 4")
        check(regs(c.read_holding_registers(1, 2, slave=1), "3.1..2") == [65535, 0x200],
              "a bad value elsewhere does not spoil the rest")
        k.ctl("set", "x.a", "6")
        k.ctl("set", "x.b3", "true")
        k.ctl("set", "x.b9", "false")
        check(regs(c.read_holding_registers(0, 3, slave=1), "after set") == [6, 65535, 0x8], "komctl set is served")
        # a client's writes change the tags, and the next read shows them
        check(not c.write_register(0, 77, slave=1).isError(), "FC6 to 3.0")
        check(not c.write_coil(7, False, slave=1).isError(), "FC5 to 1.7")
        check(not c.execute(MaskWriteRegisterRequest(2, 0xFFFF & ~0x208, 0x200, unit=1)).isError(), "FC22")
        check(regs(c.read_holding_registers(0, 3, slave=1), "after writes") == [77, 65535, 0x200], "writes served")
        check(bits(c.read_coils(7, 1, slave=1), 1, "1.7") == [False], "coil 1.7 written off")
        check(excode(c.read_holding_registers(0, 4, slave=1), "3.3") == 2, "3.3 is not served")
        # u2: two tags on one bit (not cached): still follows the tags
        check(regs(c.read_holding_registers(5, 2, slave=2), "u2") == [4, 40], "u2: bit 2 of 3.5, 3.6 = 40")
        k.ctl("set", "x.w", "41")
        check(regs(c.read_holding_registers(6, 1, slave=2), "u2 3.6") == [41], "u2: 3.6 = 41")
        c.close()
        # a new connection, and a reload that changes the line: the image is rebuilt
        c = pyclient(port)
        check(regs(c.read_holding_registers(0, 1, slave=1), "reconnected") == [77], "3.0 after reconnecting")
        c.close()
        k.ctl("set", "x.a", "78")
        k.write_conf(conf("max_clients = 50;"))
        k.ctl("reload")
        k.until(lambda: k.line("srv")["listeners"], 10, "the reloaded line to listen")
        c = pyclient(port)
        check(regs(c.read_holding_registers(0, 1, slave=1), "reloaded") == [78], "3.0 after the reload")
        c.close()


def test_server_write_routed_to_acquirer():
    """A write to a tag acquired by a Modbus client line (from a RawServer device that holds
    its answers) and by a komtext client line: the Modbus answer waits for the device."""
    port = free_port()
    dev = RawServer({1: "normal"}, regs={(1, 3, 0): 5})
    kt = KtPeer("127.0.0.1", answer=False)
    conf = """write_timeout = 1; lines = (
      { name = "srv"; protocol = "modbus-server"; host = "127.0.0.1"; port = %d;
        stations = ( { name = "u1"; address = 1; tags = (
          { name = "d.x"; address = "3.0"; direction = "inout"; },
          { name = "k.y"; address = "3.1"; direction = "inout"; } ); } ); },
      { name = "cli"; protocol = "modbus-client"; host = "127.0.0.1"; port = %d;
        stations = ( { name = "d"; address = 1; period = 0.2; response_timeout = 2; retries = 0;
          tags = ( { name = "d.x"; address = "3.0"; type = "int"; direction = "inout"; } ); } ); },
      { name = "kt"; protocol = "komtext-client"; host = "127.0.0.1"; port = %d;
        stations = ( { name = "k"; address = 1; tags = (
          { name = "k.y"; address = "y"; type = "int"; direction = "inout"; } ); } ); } );""" % (
        port, dev.port, kt.port)
    with Komd(conf).start() as k:
        k.until(lambda: k.tag("d.x")["value"] == 5 and not k.tag("d.x")["invalid"], 5, "d.x polled")
        k.until(lambda: kt.nconns() == 1, 5, "komtext line connected")
        c = pyclient(port)
        # Modbus-acquired tag: the device receives FC 6 at 0 with 77
        n6 = dev.count(fc=6)
        r = c.write_register(0, 77, slave=1)
        check(not r.isError(), "write routed to the Modbus device: %s" % r)
        check(dev.count(fc=6) == n6 + 1, "the device got one FC 6")
        check(dev.regs[(1, 3, 0)] == 77, "the device's register is 77")
        # komtext-acquired tag: the answer waits for the device's ACK
        res = {}
        th = threading.Thread(target=lambda: res.setdefault("r", c.write_register(1, 42, slave=1)))
        th.start()
        k.until(lambda: kt.received("SET "), 5, "SET at the komtext device")
        f = kt.received("SET ")[0].split()
        check(f[2] == "y" and f[-1] == "42", "SET y 42: %s" % f)
        th.join(0.3)
        check(th.is_alive(), "the Modbus answer waits for the komtext device's answer")
        kt.send("ACK %s\n" % f[1])
        th.join(5)
        check(not th.is_alive() and not res["r"].isError(), "answered after the ACK: %s" % res)
        # pipelined on one connection: a write held by the komtext device, then a read: both
        # answers wait, and come in the order of the requests
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(struct.pack(">HHHBBHH", 0x101, 0, 6, 1, 6, 1, 44) + struct.pack(">HHHBBHH", 0x102, 0, 6, 1, 3, 0, 1))
        k.until(lambda: len(kt.received("SET ")) >= 2, 5, "second SET at the komtext device")
        f = kt.received("SET ")[1].split()
        s.settimeout(0.3)
        try:
            early = s.recv(100)
        except socket.timeout:
            early = None
        check(early is None, "nothing answered before the device's ACK: %r" % early)
        kt.send("ACK %s\n" % f[1])
        s.settimeout(5)
        got = b""
        while len(got) < 12 + 11:
            d = s.recv(100)
            check(d, "both answers: %r" % got)
            got += d
        check(got[:12] == struct.pack(">HHHBBHH", 0x101, 0, 6, 1, 6, 1, 44), "first the FC 6 echo: %r" % got)
        check(got[12:] == struct.pack(">HHHBBBH", 0x102, 0, 5, 1, 3, 2, 77), "then the FC 3 answer: %r" % got)
        s.close()
        # a NAK becomes exception 4 (device failure)
        kt.nak, kt.answer = "refused", True
        check(excode(c.write_register(1, 43, slave=1), "NAK") == 4, "a refused write: exception 4")
        # a device that never answers: exception 4 after write_timeout (1 s here)
        kt.answer = False
        t0 = time.monotonic()
        check(excode(c.write_register(1, 45, slave=1), "no answer") == 4, "an unanswered write: exception 4")
        check(0.8 <= time.monotonic() - t0 < 2.5, "after write_timeout: %.2f s" % (time.monotonic() - t0))
        c.close()
    dev.close()
    kt.close()


def test_server_malformed_frames():
    port = free_port()
    with Komd(server_conf(port)).start() as k:
        good = pyclient(port)
        for what, data, logrx in (
                ("protocol id", struct.pack(">HHHB", 1, 7, 6, 1) + bytes([3, 0, 10, 0, 2]),
                 r"protocol error: protocol id 7"),
                ("length 255", struct.pack(">HHHB", 2, 0, 255, 1) + bytes([3, 0, 10, 0, 2]),
                 r"protocol error: MBAP length 255 out of range"),
                ("length 1", struct.pack(">HHHB", 3, 0, 1, 1) + bytes([3, 0, 10, 0, 2]),
                 r"protocol error: MBAP length 1 out of range"),
                ("truncated", struct.pack(">HHHB", 4, 0, 6, 1) + bytes([3, 0]), r"closed: connection closed by peer")):
            n = len(k.lines)
            s = socket.create_connection(("127.0.0.1", port))
            me = "127.0.0.1:%d" % s.getsockname()[1]
            s.sendall(data)
            if what == "truncated":
                s.shutdown(socket.SHUT_WR)
            s.settimeout(5)
            got = s.recv(100)
            check(got == b"", "%s: connection closed without an answer: %r" % (what, got))
            s.close()
            k.wait_log(r"line srv: %s: %s" % (me, logrx), 5, since=n)
            k.wait_log(r"line srv: %s: closed" % me, 5, since=n)
            check(regs(good.read_holding_registers(10, 2, slave=1), "other client") == [0x3FC0, 0],
                  "the other client is still served after the %s frame" % what)
        check(k.line("srv")["counters"]["protocol_errors"] >= 3, "protocol errors counted: %s" %
              k.line("srv")["counters"])
        good.close()


# ---- komd as client ----

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


def test_client_pymodbus_poll_and_writes():
    port = free_port()
    srv = PyServer(port, (1, 2))
    try:
        srv.set(1, "hr", 0, [0x3FC0, 0x0000, 7, 0xFFFE, 0x0021])
        srv.set(1, "co", 0, [1, 0, 1])
        srv.set(1, "di", 0, [0, 1])
        srv.set(1, "ir", 0, [0x0000, 0x4120, 11])
        srv.set(2, "hr", 0, [222])
        tags1 = ",".join([tag("f", "f3.0", "float"), tag("x", "3.2"), tag("neg", "I3.3"), tag("b0", "3.4.0", "bool"),
                          tag("b5", "3.4.5", "bool"), tag("b1", "3.4.1", "bool"), tag("c0", "1.0", "bool"),
                          tag("c1", "1.1", "bool"), tag("d1", "2.1", "bool", "in"), tag("fs", "F4.0", "float", "in"),
                          tag("ir", "4.2", "int", "in"), tag("w", "3.10", "int", "out"),
                          tag("big", "S3.12", "int")])
        conf = client_conf(port, station("u1", 1, tags1) + "," + station("u2", 2, tag("y", "3.0")))
        with Komd(conf).start() as k:
            k.until(lambda: valid(k, "f", 1.5) and valid(k, "x", 7) and valid(k, "neg", -2) and valid(k, "b0", True)
                    and valid(k, "b5", True) and valid(k, "b1", False) and valid(k, "c0", True)
                    and valid(k, "c1", False) and valid(k, "d1", True) and valid(k, "fs", 10.0)
                    and valid(k, "ir", 11) and valid(k, "y", 222), 10, "all tags polled from pymodbus")
            srv.set(1, "hr", 2, [8])
            k.until(lambda: valid(k, "x", 8), 5, "a changed register is polled")
            n = len(srv.writes())
            k.ctl("set", "c1", "true")          # FC 5
            k.ctl("set", "x", "300")            # FC 6
            k.ctl("set", "big", "-70000")       # FC 16
            k.ctl("set", "b1", "true")          # FC 22
            k.ctl("set", "w", "9")              # FC 6 on an output-only tag
            k.ctl("set", "f", "2.5")            # FC 16 float
            w = srv.writes()[n:]
            check((1, 5, 1, [1]) in w, "FC 5 coil 1: %s" % w)
            check((1, 6, 2, [300]) in w, "FC 6 register 2: %s" % w)
            check((1, 16, 12, [0xFFFE, 0xEE90]) in w, "FC 16 S3.12 = -70000: %s" % w)
            check((1, 22, 4, [0x23]) in w, "FC 22 bit 1 of register 4 (0x21 -> 0x23): %s" % w)
            check((1, 6, 10, [9]) in w, "FC 6 register 10: %s" % w)
            check((1, 16, 0, [0x4020, 0]) in w, "FC 16 float 2.5: %s" % w)
            k.until(lambda: valid(k, "b1", True) and valid(k, "x", 300) and valid(k, "big", -70000), 5, "read back")
            # a write to an input register is refused by komd, nothing sent
            rc, _, err = k.ctl("set", "ir", "1", check=False)
            check(rc != 0, "write to an input register refused")
            check(len(srv.writes()) == n + 6, "nothing more written: %s" % srv.writes()[n:])
    finally:
        srv.stop()


def test_client_reactive_delayed_and_errors():
    """pymodbus's reactive manipulator: delayed replies come after response_timeout (dropped as
    stray, later values right); error replies with exception 4 put the unit in error, with
    exception 2 only the request's tags turn invalid."""
    port = free_port()
    srv = PyServer(port, (1,))
    try:
        srv.set(1, "hr", 0, [10])
        conf = client_conf(port, station("u1", 1, tag("x", "3.0"), ) )
        with Komd(conf).start() as k:
            k.until(lambda: valid(k, "x", 10), 5, "x = 10")
            n = len(k.lines)
            srv.manip(response_type="delayed", delay_by=0.8)
            k.wait_log(r"line cli: 127\.0\.0\.1:%d: response with transaction id \d+ matches no request, dropped"
                       % port, 10, since=n)
            k.until(lambda: station_state(k, "cli", "u1")["state"] == "error", 5, "u1 in error while late")
            check(k.tag("x")["invalid"], "x invalid while answers are late")
            srv.manip(response_type="normal")
            srv.set(1, "hr", 0, [11])
            k.until(lambda: valid(k, "x", 11), 10, "in step again: x = 11")
            k.until(lambda: station_state(k, "cli", "u1")["state"] != "error", 5, "u1 ok again")
            srv.set(1, "hr", 0, [12])
            k.until(lambda: valid(k, "x", 12), 5, "x = 12 (no shifted answers)")
            n = len(k.lines)
            srv.manip(response_type="error", error_code=4)
            k.until(lambda: k.tag("x")["invalid"] and station_state(k, "cli", "u1")["state"] == "error", 5,
                    "exception 4: unit in error")
            check("device failure" in station_state(k, "cli", "u1")["last_error"], "last error names exception 4: %s"
                  % station_state(k, "cli", "u1"))
            srv.manip(response_type="normal")
            k.until(lambda: valid(k, "x", 12), 5, "x valid again")
            srv.manip(response_type="error", error_code=2)
            k.until(lambda: k.tag("x")["invalid"], 5, "exception 2: x invalid")
            k.wait_log(r"line cli: station u1: unit 1: read holding registers at 0: exception 2, illegal data address",
                       5)
            check(station_state(k, "cli", "u1")["state"] != "error", "exception 2 leaves the unit in communication")
            srv.manip(response_type="normal")
            k.until(lambda: valid(k, "x", 12), 5, "x valid again")
    finally:
        srv.stop()


def test_client_stray_wrong_unit_and_isolation():
    """A hand-framed server: unit 1 answers normally, unit 2 sends a stray transaction id before
    each right answer, unit 3 is silent, unit 4 answers exception 4, unit 5 answers as unit 6."""
    dev = RawServer({1: "normal", 2: "stray", 3: "silent", 4: ("exception", 4), 5: "wrong_unit"},
                    regs={(1, 3, 0): 101, (2, 3, 0): 102, (3, 3, 0): 103, (4, 3, 0): 104, (5, 3, 0): 105})
    sts = ",".join(station("u%d" % u, u, tag("x%d" % u, "3.0")) for u in range(1, 6))
    with Komd(client_conf(dev.port, sts, "max_outstanding = 4;")).start() as k:
        k.until(lambda: valid(k, "x1", 101) and valid(k, "x2", 102), 5, "units 1 and 2 polled")
        k.wait_log(r"response with transaction id \d+ matches no request, dropped", 5)
        k.until(lambda: all(station_state(k, "cli", "u%d" % u)["state"] == "error" for u in (3, 4)), 5,
                "units 3 and 4 in error")
        check("no answer" in station_state(k, "cli", "u3")["last_error"], "u3: %s" % station_state(k, "cli", "u3"))
        check("device failure" in station_state(k, "cli", "u4")["last_error"], "u4: %s" % station_state(k, "cli", "u4"))
        k.wait_log(r"line cli: station u5: unit 5: malformed response: response from unit 6 to a request for unit 5",
                   5)
        for u in (3, 4, 5):
            check(k.tag("x%d" % u)["invalid"], "x%d invalid" % u)
        # units 1 and 2 keep being polled, in step, while 3, 4 and 5 fail
        n1 = dev.count(unit=1)
        dev.regs[(1, 3, 0)], dev.regs[(2, 3, 0)] = 201, 202
        k.until(lambda: valid(k, "x1", 201) and valid(k, "x2", 202), 5, "units 1, 2 keep their polls")
        k.until(lambda: dev.count(unit=1) >= n1 + 5, 5, "unit 1 polled every 0.2 s")
        check(station_state(k, "cli", "u1")["state"] != "error", "u1 not in error")
        check(station_state(k, "cli", "u2")["state"] != "error", "u2 not in error")
    dev.close()


def test_client_exception_is_last_error():
    """komd.conf(5), modbus-client: exceptions other than 4, 10, 11 "invalidate the tags of that
    request only; they are logged by name and shown as the station's last error". A device that
    answers exception 2 to every poll must show it in the status (and log it once, not at every
    poll)."""
    dev = RawServer({1: ("exception", 2)})
    with Komd(client_conf(dev.port, station("u1", 1, tag("x", "3.0")))).start() as k:
        k.until(lambda: dev.count(unit=1) >= 5, 5, "five polls answered with exception 2")
        k.until(lambda: k.tag("x")["invalid"], 5, "x invalid")
        st = station_state(k, "cli", "u1")
        logged = [l for l in k.lines if "exception 2, illegal data address" in l]
        check("illegal data address" in st["last_error"],
              "the station's last error shows exception 2 after %d polls answered with it: %s "
              "(the same warning was logged %d times)" % (dev.count(unit=1), st, len(logged)))
        check(len(logged) <= 2, "the same exception is logged once, not at every poll: %d times" % len(logged))
    dev.close()


def test_client_max_outstanding():
    dev = RawServer({1: "normal", 2: "normal", 3: "normal"}, regs={(1, 3, 0): 1, (2, 3, 0): 2, (3, 3, 0): 3},
                    hold=3, hold_timeout=1.0)
    sts = ",".join(station("u%d" % u, u, tag("x%d" % u, "3.0")) for u in (1, 2, 3))
    with Komd(client_conf(dev.port, sts, "max_outstanding = 4;")).start() as k:
        k.until(lambda: valid(k, "x1", 1) and valid(k, "x2", 2) and valid(k, "x3", 3), 5, "polled")
        check(dev.max_pending >= 3, "three requests in flight before the first answer: %d" % dev.max_pending)
    dev2 = RawServer({1: "normal", 2: "normal", 3: "normal"}, regs={(1, 3, 0): 1, (2, 3, 0): 2, (3, 3, 0): 3},
                     hold=3, hold_timeout=0.2)
    with Komd(client_conf(dev2.port, sts, "max_outstanding = 1;")).start() as k:
        k.until(lambda: valid(k, "x1", 1) and valid(k, "x2", 2) and valid(k, "x3", 3), 5, "polled")
        check(dev2.max_pending == 1, "max_outstanding = 1: one at a time: %d" % dev2.max_pending)
    dev.close()
    dev2.close()


def test_client_writes_keep_their_order():
    """Writes that wait behind a poll in flight reach the device in the order they came:
    1 then 0 leaves 0 in the register (a LIFO queue once left the older value)."""
    import subprocess
    from komdtest import KOMCTL
    dev = RawServer({1: "normal"}, regs={(1, 3, 0): 7}, hold=2, hold_timeout=0.3)
    # continuous polling: a poll is always in flight, so both writes wait in the queue
    st = station("u1", 1, tag("x", "3.0")).replace("period = 0.2;", "continuous = true;")
    with Komd(client_conf(dev.port, st)).start() as k:
        k.until(lambda: valid(k, "x", 7), 5, "polled")
        procs = []
        for i, v in enumerate(("1", "0")):
            procs.append(subprocess.Popen([KOMCTL, "-s", k.sock, "set", "x", v], stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE))
            k.until(lambda: station_state(k, "cli", "u1")["writes"] == i + 1, 5, "write %d queued" % (i + 1))
        for p in procs:
            p.wait(10)
            check(p.returncode == 0, "komctl set: %s" % p.stderr.read())
        check(dev.regs[(1, 3, 0)] == 0, "the later write wins: register %d" % dev.regs[(1, 3, 0)])
    dev.close()


def test_libmodbus_peers():
    """tests/peers/mbpeer (libmodbus 3.1.6) as the server of komd's client line, and as a
    client of komd's server line."""
    port, sport = free_port(), free_port()
    peer = MbPeer(port, ["hr:0=0x3FC0", "hr:1=0", "hr:2=0xFFFF", "hr:3=0xFFFE", "hr:4=5", "co:3=1", "ir:7=77"])
    try:
        tags1 = ",".join([tag("f", "f3.0", "float"), tag("s", "S3.2"), tag("x", "3.4"), tag("c", "1.3", "bool"),
                          tag("i", "4.7", "int", "in"), tag("b", "3.4.3", "bool")])
        conf = MEM + """lines = ( { name = "cli"; protocol = "modbus-client"; host = "127.0.0.1"; port = %d;
              stations = ( %s ); },
            { name = "srv"; protocol = "modbus-server"; host = "127.0.0.1"; port = %d;
              stations = ( { name = "u1"; address = 1; tags = ( %s ); } ); } );""" % (
            port, station("u1", 1, tags1), sport, SERVED)
        with Komd(conf).start() as k:
            k.until(lambda: valid(k, "f", 1.5) and valid(k, "s", -2) and valid(k, "x", 5) and valid(k, "c", True)
                    and valid(k, "i", 77) and valid(k, "b", False), 5, "values from libmodbus")
            k.ctl("set", "x", "4660")
            k.ctl("set", "b", "true")
            k.ctl("set", "s", "-100000")
            k.until(lambda: "hr 4=4660" in peer.out and "hr 4=4668" in peer.out, 5, "FC6 and FC22 at libmodbus")
            k.until(lambda: "hr 2=65534" in peer.out and "hr 3=31072" in peer.out, 5, "FC16 at libmodbus")
            check(peer.lines("req unit=1 fc=22 addr=4"), "FC 22 seen: %s" % peer.out)
            # libmodbus as client of komd's server
            out = mbclient(sport, 1, "r3:10:4", "r3:14:4", "r3:24:1", "r1:0:3", "r2:0:2", "r4:0:3",
                           "w16:10:0x4049,0x0FDB", "w6:23:999", "w5:1:1", "m22:24:0xFFFE:0", "rw23:22:2:23:7",
                           "r3:40:1", "w6:10:1")
            check(out[0] == "r3 10 16320 0 0 16320", "f3.10, F3.12: %s" % out[0])
            check(out[1] == "r3 14 4660 22136 22136 4660", "L3.14, Ll3.16: %s" % out[1])
            check(out[2] == "r3 24 33", "3.24: %s" % out[2])
            check(out[3] == "r1 0 1 0 1", "coils: %s" % out[3])
            check(out[4] == "r2 0 0 1", "inputs: %s" % out[4])
            check(out[5] == "r4 0 321 49168 0", "input registers: %s" % out[5])
            check(out[6:10] == ["w16 10 ok", "w6 23 ok", "w5 1 ok", "m22 24 ok"], "writes: %s" % out[6:10])
            check(out[10] == "rw23 22 65531 7", "FC23: %s" % out[10])
            check(out[11].startswith("r3 40 error") and "Illegal data address" in out[11], "unmapped: %s" % out[11])
            check(out[12].startswith("w6 10 error") and "Illegal data address" in out[12], "half float: %s" % out[12])
            check(abs(k.tag("m.f")["value"] - 3.1415927) < 1e-6, "m.f: %s" % k.tag("m.f"))
            check(k.tag("m.U")["value"] == 7 and k.tag("m.c1")["value"] is True and k.tag("m.b0")["value"] is False,
                  "tags written by libmodbus")
    finally:
        peer.stop()


def test_tshark_capture_clean():
    port = free_port()
    path = os.path.join(tempfile.mkdtemp(prefix="komdcap-"), "mb.pcapng")
    cap = Capture(port, path)
    try:
        conf = MEM + """lines = ( { name = "srv"; protocol = "modbus-server"; host = "127.0.0.1"; port = %d;
              stations = ( { name = "u1"; address = 1; tags = ( %s ); } ); } );""" % (port, SERVED)
        with Komd(conf).start():
            c = pyclient(port)
            regs(c.read_holding_registers(10, 14, slave=1), "FC3")
            bits(c.read_coils(0, 3, slave=1), 3, "FC1")
            bits(c.read_discrete_inputs(0, 2, slave=1), 2, "FC2")
            regs(c.read_input_registers(0, 3, slave=1), "FC4")
            c.write_coil(1, True, slave=1)
            c.write_register(23, 5, slave=1)
            c.write_coils(0, [True, True], slave=1)
            c.write_registers(10, [0, 0], slave=1)
            excode(c.read_holding_registers(40, 1, slave=1), "exception")
            excode(c.read_holding_registers(0, 1, slave=9), "unit 9")
            c.close()
            mbclient(port, 1, "m22:24:0xFFFE:0", "rw23:22:2:23:7")
        cap.stop()
        bad = cap.read("_ws.malformed || _ws.expert.severity == error")
        check(bad == [], "no malformed frames: %s" % bad)
        frames = cap.read("mbtcp", ("mbtcp.trans_id", "modbus.func_code"))
        check(len(frames) >= 24, "Modbus frames decoded: %d" % len(frames))
        fcs = {l.split("\t")[1] for l in frames if "\t" in l}
        check({"1", "2", "3", "4", "5", "6", "15", "16", "22", "23"} <= fcs | {"131"}, "function codes: %s" % fcs)
    finally:
        if cap.p.proc.poll() is None:
            cap.stop()


def test_redundant_failover_and_back():
    port, bport = free_port(), free_port()
    primary = PyServer(port, (1,))
    backup = PyServer(bport, (1,))
    primary.set(1, "hr", 0, [111])
    backup.set(1, "hr", 0, [222])
    conf = """lines = ( { name = "red"; type = "tcp-redundant"; protocol = "modbus-client";
      host = "127.0.0.1"; port = %d; connect_timeout = 0.5; reconnect_delay = 0.2; reconnect_max = 0.5;
      backup = { host = "127.0.0.1"; port = %d; };
      stations = ( %s ); } );""" % (port, bport, station("u1", 1, tag("x", "3.0")))
    try:
        with Komd(conf).start() as k:
            k.until(lambda: valid(k, "x", 111), 5, "x from the primary")
            check(k.line("red")["paths"][0]["via"] == "primary", "via primary: %s" % k.line("red")["paths"])
            t0 = time.monotonic()
            primary.stop()
            k.until(lambda: valid(k, "x", 222), 10, "x from the backup")
            t_fail = time.monotonic() - t0
            check(k.line("red")["paths"][0]["via"] == "backup", "via backup: %s" % k.line("red")["paths"])
            primary = PyServer(port, (1,))
            primary.set(1, "hr", 0, [333])
            t0 = time.monotonic()
            backup.stop()
            k.until(lambda: valid(k, "x", 333), 10, "x from the primary again")
            t_back = time.monotonic() - t0
            check(k.line("red")["paths"][0]["via"] == "primary", "via primary: %s" % k.line("red")["paths"])
            check(k.line("red")["counters"]["failovers"] >= 2, "failovers: %s" % k.line("red")["counters"])
            print("    failover %.2f s, back %.2f s" % (t_fail, t_back))
    finally:
        primary.stop()
        backup.stop()


if __name__ == "__main__":
    main([test_server_reads_pymodbus, test_server_writes_pymodbus, test_server_exceptions_pymodbus,
          test_server_image_follows_tags, test_server_write_routed_to_acquirer, test_server_malformed_frames,
          test_client_pymodbus_poll_and_writes, test_client_writes_keep_their_order,
          test_client_reactive_delayed_and_errors,
          test_client_stray_wrong_unit_and_isolation, test_client_exception_is_last_error,
          test_client_max_outstanding, test_libmodbus_peers,
          test_tshark_capture_clean, test_redundant_failover_and_back])
