"""A write that komd accepted is never lost silently: when the requester (a Modbus master, a
komtext client) disconnects before the result, the write still goes to the device unless
write_timeout has passed, and its result is logged and counted (writes_orphaned); a write
that was already reported as failed is never sent later."""
import socket
import struct

from komdtest import KtPeer, Komd, check, free_port, main
from mbpeers import RawServer


def conf_for(port, kport, dev_port, kt_port, write_timeout=5):
    """A Modbus server and a komtext server serving tags that a Modbus client line (dev_port)
    and a komtext client line (kt_port) acquire."""
    return """write_timeout = %g; lines = (
      { name = "srv"; protocol = "modbus-server"; host = "127.0.0.1"; port = %d;
        stations = ( { name = "u1"; address = 1; tags = (
          { name = "d.x"; address = "3.0"; direction = "inout"; } ); } ); },
      { name = "ksrv"; protocol = "komtext-server"; host = "127.0.0.1"; port = %d;
        stations = ( { name = "pub"; address = 1; tags = ( { name = "k.y"; address = "y"; direction = "inout"; } ); } ); },
      { name = "cli"; protocol = "modbus-client"; host = "127.0.0.1"; port = %d; max_outstanding = 1;
        stations = ( { name = "d"; address = 1; period = 0.2; response_timeout = 3; retries = 0;
          tags = ( { name = "d.x"; address = "3.0"; type = "int"; direction = "inout"; } ); } ); },
      { name = "kt"; protocol = "komtext-client"; host = "127.0.0.1"; port = %d;
        stations = ( { name = "k"; address = 1; tags = (
          { name = "k.y"; address = "y"; type = "int"; direction = "inout"; } ); } ); } );""" % (
        write_timeout, port, kport, dev_port, kt_port)


def test_master_disconnects_behind_a_busy_line():
    port, kport = free_port(), free_port()
    # the device holds every answer for 1 s: the acquiring line is busy with a poll when the
    # master's write arrives, so the write waits in the line's queue
    dev = RawServer({1: "normal"}, regs={(1, 3, 0): 5}, hold=99, hold_timeout=1.0)
    kt = KtPeer("127.0.0.1")
    with Komd(conf_for(port, kport, dev.port, kt.port)).start() as k:
        k.until(lambda: k.tag("d.x")["value"] == 5, 5, "d.x polled")
        n6 = dev.count(fc=6)
        s = socket.create_connection(("127.0.0.1", port))
        n3 = dev.count(fc=3)
        k.until(lambda: dev.count(fc=3) > n3, 5, "a poll just sent: the device holds it, the line is busy")
        s.sendall(struct.pack(">HHHBBHH", 7, 0, 6, 1, 6, 0, 99))  # FC 6: register 0 = 99
        k.until(lambda: k.line("srv")["counters"]["frames_in"] >= 1, 5, "the request is in")
        s.close()  # gone before the device could answer
        k.until(lambda: dev.count(fc=6) == n6 + 1, 5, "the write still reaches the device")
        k.until(lambda: dev.regs[(1, 3, 0)] == 99, 5, "with its value")
        k.wait_log(r"tag d\.x: write from .* \(who has disconnected since\): ")
        k.until(lambda: k.line("cli")["stations"][0]["writes_orphaned"] == 1, 5, "counted (writes_orphaned)")
        check("(1 orphaned)" in k.ctl("status")[1], "komctl status counts it")
        # komtext: SET, then gone before the device answers; the device is told, the result logged
        kt.answer = False
        c = socket.create_connection(("127.0.0.1", kport))
        c.settimeout(5)
        check(c.recv(4096).startswith(b"VAL y"), "the served tag first")
        c.sendall(b"SET 1 y 31\n")
        # gone: its side closed at once (FIN; a close() with unread bytes would reset the
        # connection and the kernel drop the SET before komd reads it)
        c.shutdown(socket.SHUT_WR)
        while c.recv(4096):
            pass
        c.close()
        k.until(lambda: any(f.split()[-1] == "31" for f in kt.received("SET ")), 5, "SET y 31 at the device")
        k.until(lambda: k.line("ksrv")["sessions"] == 0, 5, "the master is gone")
        kt.send("ACK %s\n" % kt.received("SET ")[-1].split()[1])
        k.wait_log(r"tag k\.y: write from .* \(who has disconnected since\): ok")
    dev.close()
    kt.close()


def test_failed_write_never_sent_later():
    port, kport = free_port(), free_port()
    dev = RawServer({1: "normal"}, regs={(1, 3, 0): 5}, hold=99, hold_timeout=1.5)
    kt = KtPeer("127.0.0.1")
    with Komd(conf_for(port, kport, dev.port, kt.port, write_timeout=0.3)).start() as k:
        k.until(lambda: k.tag("d.x")["value"] == 5, 5, "d.x polled")
        n6 = dev.count(fc=6)
        s = socket.create_connection(("127.0.0.1", port))
        n3 = dev.count(fc=3)
        k.until(lambda: dev.count(fc=3) > n3, 5, "a poll just sent: the device holds it, the line is busy")
        s.sendall(struct.pack(">HHHBBHH", 8, 0, 6, 1, 6, 0, 98))
        s.settimeout(5)
        ans = s.recv(100)
        check(ans[7] == 0x86 and ans[8] == 4, "exception 4 after write_timeout: %r" % ans)
        s.close()
        # polls go on (each held 1.5 s); the timed-out write must not follow them
        n3 = dev.count(fc=3)
        k.until(lambda: dev.count(fc=3) >= n3 + 2, 10, "two more polls")
        check(dev.count(fc=6) == n6, "a write reported as failed is never sent")
    dev.close()
    kt.close()


def test_nan_and_infinities_refused():
    """NaN and infinities are never sent to a device: not from komctl, not from a Modbus
    master's float registers (a gateway write to a tag a komtext device acquires)."""
    port, kport = free_port(), free_port()
    kt = KtPeer("127.0.0.1")
    conf = """lines = (
      { name = "srv"; protocol = "modbus-server"; host = "127.0.0.1"; port = %d;
        stations = ( { name = "u1"; address = 1; tags = (
          { name = "k.f"; address = "f3.10"; direction = "inout"; } ); } ); },
      { name = "kt"; protocol = "komtext-client"; host = "127.0.0.1"; port = %d;
        stations = ( { name = "k"; address = 1; tags = (
          { name = "k.f"; address = "f"; type = "float"; direction = "inout"; } ); } ); } );""" % (port, kt.port)
    with Komd(conf).start() as k:
        k.until(lambda: kt.nconns() == 1, 5, "komtext line connected")
        for text in ("nan", "inf", "-inf", "NaN"):
            rc, out, err = k.ctl("set", "k.f", text, check=False)
            check(rc == 1 and "not a finite number" in err, "komctl set k.f %s: %d %s" % (text, rc, err))
        s = socket.create_connection(("127.0.0.1", port))
        s.settimeout(5)
        for tid, words in ((1, (0x7FC0, 0x0000)), (2, (0x7F80, 0x0000)), (3, (0xFF80, 0x0000))):
            # FC 16: registers 10 and 11 = NaN, +inf, -inf (big-endian float)
            s.sendall(struct.pack(">HHHBBHHB", tid, 0, 11, 1, 16, 10, 2, 4) + struct.pack(">HH", *words))
            ans = s.recv(100)
            check(len(ans) == 9 and ans[7] == 0x90, "an exception, not an echo: %r" % ans)
        k.wait_log(r"tag k\.f: write from .* refused: NaN is not a finite number")
        k.wait_log(r"tag k\.f: write from .* refused: an infinity is not a finite number")
        rc, out, err = k.ctl("set", "k.f", "1.5")
        k.until(lambda: kt.received("SET "), 5, "a finite value goes through")
        check(len(kt.received("SET ")) == 1 and kt.received("SET ")[0].split()[-1] == "1.5",
              "only the finite value reached the device: %s" % kt.received("SET "))
        s.close()
    kt.close()


if __name__ == "__main__":
    main([test_master_disconnects_behind_a_busy_line, test_failed_write_never_sent_later, test_nan_and_infinities_refused])
