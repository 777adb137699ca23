"""komd's modbus-client against independent servers: pymodbus 3.0 (with its reactive response
manipulator: delayed and error replies), a Modbus server framed by hand (tests/integ/mbpeers.py
RawServer) for stray and wrong-unit replies, silent units and pipelining, and a redundant
line failing over between two pymodbus servers."""
import subprocess
import time

from komdtest import KOMCTL, Komd, check, free_port, main
from mbpeers import PyServer, RawServer, client_conf, station, station_state, tag, valid


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
            # the peer's log is read by another thread: wait until all six writes are in it
            k.until(lambda: len(srv.writes()) >= n + 6, 5, "the six writes in the peer's log")
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


def test_client_answered_write_never_sent():
    """A write whose requester was told it failed (write_timeout) is never sent afterwards, on
    the paths where komd sends a write later than it took it: the write half of a
    read-modify-write (u1, bit_write = "rmw") whose read half is answered after write_timeout,
    and the retry (u2, retries) of a write whose answer is late. The device holds its answers
    1 s once both units are polled."""
    dev = RawServer({1: "normal", 2: "normal"}, regs={(1, 3, 0): 5, (1, 3, 1): 0x10, (2, 3, 0): 6})
    u1 = station("u1", 1, tag("x", "3.0") + "," + tag("b", "3.1.0", "bool"), 'bit_write = "rmw";')
    u2 = station("u2", 2, tag("y", "3.0"), "")
    u1 = u1.replace("period = 0.2; response_timeout = 0.5; retries = 0;", "delay = 3600; response_timeout = 3;")
    u2 = u2.replace("period = 0.2; response_timeout = 0.5; retries = 0;", "delay = 3600; response_timeout = 0.5; "
                    "retries = 2;")
    with Komd("write_timeout = 0.3;\n" + client_conf(dev.port, u1 + "," + u2, "max_outstanding = 4;")).start() as k:
        k.until(lambda: valid(k, "x", 5) and valid(k, "b", False) and valid(k, "y", 6), 5, "polled once")
        dev.hold, dev.hold_timeout = 99, 1.0
        n = len(k.lines)
        rc, _, err = k.ctl("set", "b", "true", check=False)
        check(rc != 0 and "timeout" in err, "rmw: failed after write_timeout: %s" % err)
        check(dev.count(unit=1, fc=3) == 2, "its read half went out (held): %d" % dev.count(unit=1, fc=3))
        rc, _, err = k.ctl("set", "y", "9", check=False)
        check(rc != 0 and "timeout" in err, "FC 6: failed after write_timeout: %s" % err)
        # its first try went out; its answer comes after response_timeout and is stray, by
        # when a retry would have gone out; the read half's answer came with it
        k.wait_log(r"line cli: .*response with transaction id \d+ matches no request, dropped", 5, since=n)
        dev.hold = 0
        k.ctl("set", "x", "7")  # queued after anything the late answers might have sent
        sent = [(r[0], r[2], r[3]) for r in dev.requests if r[2] in (6, 16, 22)]
        check(sent == [(2, 6, 0), (1, 6, 0)], "writes the device got (unit, fc, addr): %s" % sent)
        check(dev.regs[(1, 3, 1)] == 0x10 and dev.regs[(2, 3, 0)] == 9 and dev.regs[(1, 3, 0)] == 7,
              "registers: %s" % dev.regs)
    dev.close()


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
    main([test_client_pymodbus_poll_and_writes, test_client_writes_keep_their_order,
          test_client_reactive_delayed_and_errors, test_client_stray_wrong_unit_and_isolation,
          test_client_exception_is_last_error, test_client_max_outstanding, test_client_answered_write_never_sent,
          test_redundant_failover_and_back])
