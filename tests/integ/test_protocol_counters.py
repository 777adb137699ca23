"""The protocols' own counters against peers we did not write, each read both from komctl
status (text and --json) and from /metrics:
- test_modbus_server_exceptions: pymodbus 3.0 as client provokes each exception komd's
  modbus-server sends (01, 02, 03, 0B); modbus_exceptions_total by code counts exactly those.
- test_modbus_client_exceptions: komd's modbus-client against pymodbus's server, whose own
  datastore answers 02 for an address past its end and whose reactive manipulator answers
  06 and 0x20 (not in clause 7: "other") or nothing (response timeouts).
- test_iec104_t1: komd's iec104-client against a controlled station (scapy's IEC 104
  layer, iec104peer.py) that never confirms STARTDT, komd's iec104-server against a
  controlling station that never confirms TESTFR: t1 expiries and TESTFR act sent.
promtool checks each /metrics page with the labelled families."""
import os
import re
import subprocess

from komdtest import Komd, check, free_port, main
from mbpeers import PyServer, excode, pyclient, server_conf, station, tag
from iec104peer import Peer, PeerServer
from test_http import PROM_BIN, get, metrics

CODES = ["1", "2", "3", "4", "5", "6", "8", "10", "11", "other"]


def http_conf(hport):
    return 'http = { host = "127.0.0.1"; port = %d; };\n' % hport


def pcnt(k, line):
    return k.line(line)["protocol_counters"]


def family(ms, name, line, label):
    """{label value: sample value} of one metric family for one line."""
    out = {}
    for (n, ls), v in ms.items():
        d = dict(ls)
        if n == name and d.get("line") == line and label in d:
            out[d[label]] = int(v)
    return out


def promtool(hport):
    _, _, body = get(hport, "/metrics")
    r = subprocess.run([os.path.join(PROM_BIN, "promtool"), "check", "metrics"], input=body, capture_output=True,
                       timeout=20)
    check(r.returncode == 0, "promtool check metrics: %s %s" % (r.stdout, r.stderr))


def test_modbus_server_exceptions():
    port, hport = free_port(), free_port()
    with Komd(http_conf(hport) + server_conf(port)).start() as k:
        zero = dict((c, 0) for c in CODES)
        check(pcnt(k, "srv") == {"modbus_exceptions_total": zero}, "zero at start: %s" % pcnt(k, "srv"))
        c = pyclient(port)
        from pymodbus.other_message import GetCommEventCounterRequest, ReadExceptionStatusRequest
        check(excode(c.execute(ReadExceptionStatusRequest(unit=1)), "FC7") == 1, "FC7: illegal function")
        check(excode(c.execute(GetCommEventCounterRequest(unit=1)), "FC11") == 1, "FC11: illegal function")
        check(excode(c.read_holding_registers(40, 1, slave=1), "unmapped") == 2, "unmapped register")
        check(excode(c.write_register(30, 1, slave=1), "direction in") == 2, "write to a direction in tag")
        check(excode(c.read_holding_registers(10, 126, slave=1), "quantity 126") == 3, "FC3 quantity 126")
        check(excode(c.read_holding_registers(10, 2, slave=9), "unit 9") == 0x0B, "unknown unit: 0x0B")
        check(not c.read_holding_registers(10, 2, slave=1).isError(), "a good read is no exception")
        c.close()
        want = dict(zero, **{"1": 2, "2": 2, "3": 1, "11": 1})
        got = pcnt(k, "srv")
        check(got == {"modbus_exceptions_total": want}, "--json: %s" % got)
        out = k.ctl("status")[1]
        check("\n  modbus_exceptions_total by code: 1 2, 2 2, 3 1, 4 0, 5 0, 6 0, 8 0, 10 0, 11 1, other 0\n" in out,
              "text: %s" % out)
        check(family(metrics(hport), "komd_modbus_exceptions_total", "srv", "code") == want, "/metrics by code")
        promtool(hport)


def test_modbus_client_exceptions():
    port, hport = free_port(), free_port()
    srv = PyServer(port)
    try:
        sts = ", ".join([station("near", 1, tag("c.ok", "3.0", direction="in")),
                         station("far", 1, tag("c.far", "3.200", direction="in"))])
        conf = http_conf(hport) + """lines = ( { name = "cli"; protocol = "modbus-client"; host = "127.0.0.1";
          port = %d; connect_timeout = 1; reconnect_delay = 0.2; reconnect_max = 0.5; stations = ( %s ); } );""" % (
            port, sts)
        with Komd(conf).start() as k:
            def exc():
                return pcnt(k, "cli")["modbus_exceptions_total"]
            # pymodbus's datastore (100 registers) answers 02 for 3.200, and only that
            k.until(lambda: exc()["2"] >= 2, 10, "02 from pymodbus's datastore")
            check(all(v == 0 for c, v in exc().items() if c != "2"), "02 only: %s" % exc())
            check(pcnt(k, "cli")["modbus_response_timeouts_total"] == 0, "no timeout yet")
            # the reactive manipulator: 06 server device busy, then 0x20 (not in clause 7)
            srv.manip(response_type="error", error_code=6)
            k.until(lambda: exc()["6"] >= 2, 10, "06 from pymodbus's manipulator")
            srv.manip(response_type="error", error_code=0x20)
            k.until(lambda: exc()["other"] >= 1, 10, "0x20 counted as other")
            # no answer at all: response_timeout (0.5 s) expires
            srv.manip(response_type="empty")
            k.until(lambda: pcnt(k, "cli")["modbus_response_timeouts_total"] >= 2, 10, "response timeouts")
            srv.stop()
            k.until(lambda: k.line("cli")["paths"][0]["state"] != "connected", 10, "the peer gone: counts stand still")
            got = pcnt(k, "cli")
            ms = metrics(hport)
            check(family(ms, "komd_modbus_exceptions_total", "cli", "code") == got["modbus_exceptions_total"],
                  "/metrics as --json: %s" % got)
            check(ms[("komd_modbus_response_timeouts_total", frozenset({("line", "cli")}))] ==
                  got["modbus_response_timeouts_total"], "timeouts in /metrics")
            check(all(got["modbus_exceptions_total"][c] == 0 for c in CODES if c not in ("2", "6", "other")),
                  "nothing else: %s" % got)
            out = k.ctl("status")[1]
            check(re.search(r"\n  modbus_response_timeouts_total \d+\n  modbus_exceptions_total by code: 1 0, 2 \d+, "
                            r"3 0, 4 0, 5 0, 6 \d+, 8 0, 10 0, 11 0, other \d+\n", out), "text: %s" % out)
            promtool(hport)
    finally:
        srv.stop()


def test_iec104_t1():
    peer_srv = PeerServer(name="no STARTDT con", answer_startdt=False)
    port, hport = free_port(), free_port()
    try:
        conf = http_conf(hport) + """tags = ( { name = "m.f"; type = "float"; initial = 1.5; } );
lines = ( { name = "cli"; protocol = "iec104-client"; host = "127.0.0.1"; port = %d; t1 = 1;
    connect_timeout = 1; reconnect_delay = 0.2; reconnect_max = 0.5;
    stations = ( { name = "ca1"; address = 1; tags = ( { name = "c.f"; address = "101"; type = "float"; } ); } ); },
  { name = "srv"; protocol = "iec104-server"; host = "127.0.0.1"; port = %d; t1 = 1; t3 = 1;
    stations = ( { name = "ca1"; address = 1; tags = ( { name = "m.f"; address = "101"; iec_type = "M_ME_NC_1"; } ); } ); }
);""" % (peer_srv.port, port)
        with Komd(conf).start() as k:
            zero = {"iec104_t1_expiries_total": 0, "iec104_testfr_sent_total": 0}
            check(pcnt(k, "srv") == zero, "zero at start: %s" % pcnt(k, "srv"))
            # client: STARTDT act never confirmed
            p = peer_srv.wait_conn(1)
            p.wait_u("STARTDT_ACT")
            p.wait_closed(5)
            k.until(lambda: pcnt(k, "cli")["iec104_t1_expiries_total"] >= 1, 5, "the client's t1 expiry counted")
            # server: a controlling station that never confirms TESTFR (t3 = 1 s, then t1 = 1 s)
            b = Peer.connect(port, answer_testfr=False, name="no TESTFR con")
            b.wait_u("TESTFR_ACT", 5)
            b.wait_closed(5)
            k.until(lambda: pcnt(k, "srv") == {"iec104_t1_expiries_total": 1, "iec104_testfr_sent_total": 1}, 5,
                    "one TESTFR act sent, one t1 expiry")
            b.check_clean()
            ms = metrics(hport)
            for n in ("iec104_t1_expiries_total", "iec104_testfr_sent_total"):
                check(ms[("komd_" + n, frozenset({("line", "srv")}))] == pcnt(k, "srv")[n], "%s in /metrics" % n)
            check(ms[("komd_iec104_t1_expiries_total", frozenset({("line", "cli")}))] >= 1, "cli's in /metrics")
            out = k.ctl("status")[1]
            check("\n  iec104_t1_expiries_total 1, iec104_testfr_sent_total 1\n" in out, "text: %s" % out)
            promtool(hport)
    finally:
        peer_srv.close()


if __name__ == "__main__":
    main([test_modbus_server_exceptions, test_modbus_client_exceptions, test_iec104_t1])
