"""Peers that misbehave without breaking a single frame: one that never reads, one that
never answers polls, one that accepts and hangs up at once; and reloads that change what
a tag is."""
import socket
import time

from komdtest import Komd, KtPeer, check, free_port, main


def test_peer_not_reading_is_dropped():
    port = free_port()
    tags = ",\n".join('{ name = "s%d"; address = "s%d"; type = "float"; }' % (i, i) for i in range(2000))
    served = ",\n".join('{ name = "s%d"; address = "s%d"; }' % (i, i) for i in range(2000))
    conf = """lines = (
  { name = "sim"; protocol = "komtext-client"; host = "127.0.0.1"; port = 1;
    stations = ( { name = "st"; simulation = true; period = 0.01; tags = ( %s ); } ); },
  { name = "srv"; protocol = "komtext-server"; host = "127.0.0.1"; port = %d;
    stations = ( { name = "pub"; address = 1; tags = ( %s ); } ); } );""" % (tags, port, served)
    with Komd(conf).start() as k:
        lazy = socket.socket()
        lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        lazy.connect(("127.0.0.1", port))
        good = KtPeer("127.0.0.1", port, listen=False)
        k.wait_log(r"line srv: 127\.0\.0\.1:\d+: closed: peer not reading: over 4 MiB queued", timeout=30)
        check(k.line("srv")["sessions"] == 1, "the reading client stays")
        n = len(good.received("VAL s1 "))
        k.until(lambda: len(good.received("VAL s1 ")) > n, 5, "the reading client is still served")
        lazy.close()
        good.close()


def test_flooding_peer_that_does_not_read():
    """An IEC 104 client sends TESTFR act without end and never reads: komd's answers pile
    up until the session is closed as "peer not reading" inside a write; the protocol must
    not touch the session's timers or parse more frames after that (ASan checks it)."""
    port = free_port()
    conf = """tags = ( { name = "m.f"; type = "float"; initial = 1.0; } );
lines = ( { name = "srv"; protocol = "iec104-server"; host = "127.0.0.1"; port = %d;
  stations = ( { name = "ca1"; address = 1; tags = (
    { name = "m.f"; address = "101"; iec_type = "M_ME_NC_1"; } ); } ); } );""" % port
    with Komd(conf).start() as k:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", port))
        s.settimeout(10)
        chunk = bytes([0x68, 4, 0x43, 0, 0, 0]) * 20000
        sent = 0
        try:
            while sent < 12000000:
                s.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # komd closed it
        k.wait_log(r"line srv: 127\.0\.0\.1:\d+: closed: peer not reading", timeout=30)
        s.close()
        check(k.ctl("status")[0] == 0, "komd still answers")


def test_unanswered_polls_mean_communication_error():
    peer = KtPeer("127.0.0.1", answer=False)
    conf = """lines = ( { name = "cli"; protocol = "komtext-client"; host = "127.0.0.1"; port = %d;
  stations = ( { name = "dev"; address = 1; delay = 0.05; response_timeout = 0.2;
    tags = ( { name = "t"; address = "t"; type = "int"; } ); } ); } );""" % peer.port
    with Komd(conf).start() as k:
        k.until(lambda: peer.nconns() == 1, 5, "connected")
        peer.val("t", 5)
        k.until(lambda: k.tag("t")["value"] == 5 and not k.tag("t")["invalid"], 5, "value")
        k.wait_log(r"line cli: station dev: communication lost: no answer to a poll within 0\.2 s")
        check(k.tag("t")["invalid"] and k.tag("t")["value"] == 5, "invalid, value kept")
        k.until(lambda: len(peer.received("PING")) >= 3, 5, "polling goes on after the timeout")
        peer.answer = True
        k.until(lambda: k.line("cli")["stations"][0]["state"] == "ok", 5, "ok again once answered")
    peer.close()


def test_backoff_when_peer_hangs_up_at_once():
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    port = lsock.getsockname()[1]
    conf = """lines = ( { name = "cli"; protocol = "komtext-client"; host = "127.0.0.1"; port = %d;
  reconnect_delay = 0.1; reconnect_max = 0.8;
  stations = ( { name = "dev"; address = 1; tags = ( { name = "t"; address = "t"; type = "int"; } ); } ); } );""" % port
    with Komd(conf).start() as k:
        stamps = []
        lsock.settimeout(5)
        for _ in range(6):
            c, _ = lsock.accept()
            stamps.append(time.monotonic())
            c.close()
        gaps = [b - a for a, b in zip(stamps, stamps[1:])]
        # 0.1, 0.2, 0.4, 0.8, 0.8: the delay grows instead of hammering the peer
        check(gaps[-1] > 0.6 and gaps[-2] > 0.6 and gaps[0] < 0.5, "backoff grows to reconnect_max: %s" % ["%.2f" % g for g in gaps])
        k.wait_log(r"line cli: next attempt in 0\.8 s")
    lsock.close()


def test_bytes_in_counted_once():
    port = free_port()
    conf = """tags = ( { name = "m"; type = "int"; initial = 1; } );
lines = ( { name = "srv"; protocol = "komtext-server"; host = "127.0.0.1"; port = %d;
  stations = ( { name = "pub"; address = 1; tags = ( { name = "m"; address = "m"; } ); } ); } );""" % port
    with Komd(conf).start() as k:
        c = KtPeer("127.0.0.1", port, listen=False)
        sent = 0
        for i in range(20):
            frame = "PING %d\n" % i
            for part in (frame[:3], frame[3:]):
                c.send(part)
                sent += len(part)
            k.until(lambda: len(c.received("PONG %d" % i)) == 1, 5, "PONG %d" % i)
        check(k.line("srv")["counters"]["bytes_in"] == sent, "bytes_in %d, sent %d" % (
            k.line("srv")["counters"]["bytes_in"], sent))
        c.close()


def test_reload_memory_tag_becomes_acquired():
    port = free_port()
    srv = """{ name = "srv"; protocol = "komtext-server"; host = "127.0.0.1"; port = %d;
  stations = ( { name = "pub"; address = 1; tags = ( { name = "x"; address = "x"; } ); } ); }""" % port
    mem = 'tags = ( { name = "x"; type = "int"; initial = 42; } );\nlines = ( %s );' % srv
    acq = """lines = ( %s, { name = "dev"; protocol = "komtext-client"; host = "127.0.0.1"; port = %d;
  stations = ( { name = "d"; address = 1; tags = ( { name = "x"; address = "x"; type = "int"; } ); } ); } );""" % (
        srv, free_port())
    with Komd(mem).start() as k:
        check(k.tag("x")["value"] == 42 and not k.tag("x")["invalid"], "memory tag")
        k.write_conf(acq)
        out = k.ctl("reload")[1]
        check("1 line kept" in out, out)
        t = k.tag("x")
        check(t["invalid"] and t["acquired_by"] == "dev/d", "now acquired, and invalid until the device answers: %s" % t)
        k.write_conf(mem.replace("42", "7"))
        k.ctl("reload")
        t = k.tag("x")
        check(t["value"] == 7 and not t["invalid"] and t["acquired_by"] is None, "a memory tag again: %s" % t)


if __name__ == "__main__":
    main([test_peer_not_reading_is_dropped, test_flooding_peer_that_does_not_read,
          test_unanswered_polls_mean_communication_error,
          test_backoff_when_peer_hangs_up_at_once, test_bytes_in_counted_once, test_reload_memory_tag_becomes_acquired])
