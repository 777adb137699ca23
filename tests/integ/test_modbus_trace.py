"""`komctl trace LINE on` on Modbus lines: each frame is logged decoded, requests as requests and
replies as replies (issue 10 item 11: a reply to FC 1 or 3 was decoded as a request, "addr 1485
27570"), for every function code, exceptions, FC 17 and FC 43 included; on a server line the
requests come in and the replies go out, on a client line the other way round. The peers are
pymodbus 3.0 (client and server) and frames framed by hand."""
import re

from komdtest import Komd, check, free_port, main
from mbpeers import MEM, SERVED, PyServer, RawClient, client_conf, pyclient, station, tag, valid

from pymodbus.mei_message import ReadDeviceInformationRequest
from pymodbus.other_message import ReportSlaveIdRequest
from pymodbus.register_read_message import ReadWriteMultipleRegistersRequest
from pymodbus.register_write_message import MaskWriteRegisterRequest


def traced(k, line, arrow, what, since=0, timeout=5):
    """Wait for the trace of one frame: arrow "<-" (received) or "->" (sent); what: the
    decoded text after the unit (a regex that must match to the end of the line)."""
    rx = r"line %s: %s \S+ %s \[\d+\] [0-9a-f .]+ \| tid \d+ unit \d+ %s$" % (
        line, re.escape(arrow), "rx" if arrow == "<-" else "tx", what)
    return k.wait_log(rx, timeout, since=since)


def test_server_trace():
    port = free_port()
    conf = MEM + """lines = ( { name = "srv"; protocol = "modbus-server"; host = "127.0.0.1"; port = %d;
      stations = ( { name = "u1"; address = 1; tags = ( %s ); } ); } );""" % (port, SERVED)
    with Komd(conf).start() as k:
        k.ctl("trace", "srv", "on")
        c = pyclient(port)
        n = len(k.lines)
        c.read_holding_registers(10, 3, slave=1)
        traced(k, "srv", "<-", r"read holding registers addr 10 count 3", n)
        traced(k, "srv", "->", r"read holding registers reply: 16320 0 0", n)
        c.read_coils(0, 3, slave=1)
        traced(k, "srv", "<-", r"read coils addr 0 count 3", n)
        traced(k, "srv", "->", r"read coils reply: 1 byte 05", n)
        c.read_discrete_inputs(0, 2, slave=1)
        traced(k, "srv", "->", r"read discrete inputs reply: 1 byte 02", n)
        c.read_input_registers(0, 1, slave=1)
        traced(k, "srv", "->", r"read input registers reply: 321", n)
        c.write_coil(1, True, slave=1)
        traced(k, "srv", "<-", r"write single coil addr 1 on", n)
        traced(k, "srv", "->", r"write single coil reply addr 1 on", n)
        c.write_register(23, 1234, slave=1)
        traced(k, "srv", "<-", r"write single register addr 23 value 1234", n)
        traced(k, "srv", "->", r"write single register reply addr 23 value 1234", n)
        c.write_coils(0, [True, False, True], slave=1)
        traced(k, "srv", "<-", r"write multiple coils addr 0 count 3: 05", n)
        traced(k, "srv", "->", r"write multiple coils reply addr 0 count 3", n)
        c.write_registers(22, [7, 8], slave=1)
        traced(k, "srv", "<-", r"write multiple registers addr 22 count 2: 7 8", n)
        traced(k, "srv", "->", r"write multiple registers reply addr 22 count 2", n)
        c.execute(MaskWriteRegisterRequest(24, 0xFFDE, 0x0020, unit=1))
        traced(k, "srv", "<-", r"mask write register addr 24 and 0xffde or 0x0020", n)
        traced(k, "srv", "->", r"mask write register reply addr 24 and 0xffde or 0x0020", n)
        c.execute(ReadWriteMultipleRegistersRequest(read_address=22, read_count=2, write_address=23,
                                                    write_registers=[4321], unit=1))
        traced(k, "srv", "<-", r"read/write multiple registers read addr 22 count 2 write addr 23 count 1: 4321", n)
        traced(k, "srv", "->", r"read/write multiple registers reply: 7 4321", n)
        c.execute(ReportSlaveIdRequest(unit=1))
        traced(k, "srv", "<-", r"report server id", n)
        traced(k, "srv", "->", r'report server id reply: server id 1 run on "komd komd [0-9.]+"', n)
        c.execute(ReadDeviceInformationRequest(read_code=1, object_id=0, unit=1))
        traced(k, "srv", "<-", r"read device identification basic object 0", n)
        traced(k, "srv", "->", r'read device identification reply: basic conformity 0x81 more 0x00 next 0 '
               r'objects 3: 0 "komd" 1 "komd" 2 "[0-9.]+"', n)
        c.execute(ReadDeviceInformationRequest(read_code=4, object_id=1, unit=1))
        traced(k, "srv", "<-", r"read device identification individual object 1", n)
        traced(k, "srv", "->", r'read device identification reply: individual conformity 0x81 more 0x00 next 0 '
               r'objects 1: 1 "komd"', n)
        # exceptions, unknown functions, short requests
        c.read_holding_registers(40, 1, slave=1)
        traced(k, "srv", "->", r"read holding registers exception 2 \(illegal data address\)", n)
        c.close()
        r = RawClient(port)
        r.ask(1, bytes([0]))
        traced(k, "srv", "<-", r"function 0", n)
        traced(k, "srv", "->", r"function 0 exception 1 \(illegal function\)", n)
        r.ask(1, bytes([0x81]))
        traced(k, "srv", "->", r"read coils exception 1 \(illegal function\)", n)  # 81 01: as it reads
        r.ask(1, bytes([3, 1, 0x60]))
        traced(k, "srv", "<-", r"read holding registers \(malformed, 3 bytes\)", n)
        traced(k, "srv", "->", r"read holding registers exception 3 \(illegal data value\)", n)
        r.ask(1, bytes([0x2B, 0x0E, 0x04, 0x07]))
        traced(k, "srv", "->", r"encapsulated interface transport exception 2 \(illegal data address\)", n)
        r.close()
        # nothing of it was a reply read as a request, or the other way round
        for l in k.lines[n:]:
            if re.search(r"line srv: -> .* tx ", l):
                check(re.search(r"\| tid \d+ unit \d+ .*(reply|exception)", l), "a frame sent is a reply: %s" % l)
            elif re.search(r"line srv: <- .* rx ", l):
                check(not re.search(r"reply|exception", l), "a frame received is a request: %s" % l)


def test_client_trace():
    port = free_port()
    srv = PyServer(port, (1,))
    try:
        srv.set(1, "hr", 0, [10, 0, 0, 0, 0x21])
        srv.set(1, "co", 0, [1])
        tags = ",".join([tag("x", "3.0"), tag("c", "1.0", "bool"), tag("f", "f3.2", "float"), tag("b", "3.4.1", "bool")])
        with Komd(client_conf(port, station("u1", 1, tags))).start() as k:
            k.until(lambda: valid(k, "x", 10) and valid(k, "c", True), 5, "polled")
            n = len(k.lines)
            k.ctl("trace", "cli", "on")
            traced(k, "cli", "->", r"read holding registers addr 0 count 5", n)
            traced(k, "cli", "<-", r"read holding registers reply: 10 0 0 0 33", n)
            traced(k, "cli", "->", r"read coils addr 0 count 1", n)
            traced(k, "cli", "<-", r"read coils reply: 1 byte 01", n)
            k.ctl("set", "x", "5")
            traced(k, "cli", "->", r"write single register addr 0 value 5", n)
            traced(k, "cli", "<-", r"write single register reply addr 0 value 5", n)
            k.ctl("set", "c", "false")
            traced(k, "cli", "->", r"write single coil addr 0 off", n)
            traced(k, "cli", "<-", r"write single coil reply addr 0 off", n)
            k.ctl("set", "f", "2.5")
            traced(k, "cli", "->", r"write multiple registers addr 2 count 2: 16416 0", n)
            traced(k, "cli", "<-", r"write multiple registers reply addr 2 count 2", n)
            k.ctl("set", "b", "true")
            traced(k, "cli", "->", r"mask write register addr 4 and 0xfffd or 0x0002", n)
            traced(k, "cli", "<-", r"mask write register reply addr 4 and 0xfffd or 0x0002", n)
            m = len(k.lines)
            srv.manip(response_type="error", error_code=2)
            traced(k, "cli", "<-", r"read holding registers exception 2 \(illegal data address\)", m)
            for l in k.lines[n:]:
                if re.search(r"line cli: <- .* rx ", l):
                    check(re.search(r"\| tid \d+ unit \d+ .*(reply|exception)", l), "a frame received is a reply: %s" % l)
                elif re.search(r"line cli: -> .* tx ", l):
                    check(not re.search(r"reply|exception", l), "a frame sent is a request: %s" % l)
    finally:
        srv.stop()


if __name__ == "__main__":
    main([test_server_trace, test_client_trace])
