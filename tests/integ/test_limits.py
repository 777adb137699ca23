"""Every connection is bounded in time and number: a TLS handshake has an absolute deadline
(a client trickling one byte at a time cannot hold it), a server line drops clients that send
no complete request within idle_timeout, and max_clients_per_address bounds one address."""
import os
import re
import select
import shutil
import socket
import subprocess
import tempfile
import time

import tlspki
from komdtest import KtPeer, Komd, check, free_port, main

PKI = tempfile.mkdtemp(prefix="komd-pki-")


def server_conf(port, extra="", tls=""):
    return """tags = ( { name = "m"; type = "int"; initial = 42; } );
lines = ( { name = "srv"; protocol = "komtext-server"; host = "127.0.0.1, 127.0.0.2"; port = %d; %s
  %s
  stations = ( { name = "pub"; address = 1; tags = ( { name = "m"; address = "m"; } ); } ); } );""" % (
        port, extra, ("tls = { %s };" % tls) if tls else "")


def closed_by_peer(sock, timeout):
    """Has komd closed sock within timeout (EOF or reset), reading whatever it sent?"""
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
        return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_handshake_deadline_is_absolute():
    port = free_port()
    tls = 'my_cert = "%s"; my_key = "%s";' % (os.path.join(PKI, "server.pem"), os.path.join(PKI, "server.key"))
    with Komd(server_conf(port, "connect_timeout = 1.5;", tls)).start() as k:
        # a ClientHello header, then one byte of its body every 0.3 s: each byte used to restart
        # the timeout, so the handshake (and its slot of max_clients) was held for ever
        s = socket.create_connection(("127.0.0.1", port))
        t0 = time.monotonic()
        s.sendall(bytes([0x16, 0x03, 0x01, 0x02, 0x00]))
        closed = False
        while time.monotonic() - t0 < 6 and not closed:
            try:
                s.sendall(b"\x01")
            except OSError:
                closed = True
                break
            closed = closed_by_peer(s, 0.3)
        took = time.monotonic() - t0
        check(closed, "a trickling handshake is cut")
        check(1.4 <= took < 3.0, "cut at the deadline (1.5 s), not later: %.2f s" % took)
        k.wait_log(r"line srv: 127\.0\.0\.1:\d+: TLS handshake failed: timeout: no complete handshake within 1\.5 s")
        check(k.line("srv")["counters"]["tls_failures"] == 1, "counted")
        s.close()


def test_idle_timeout():
    port = free_port()
    with Komd(server_conf(port, "idle_timeout = 1;")).start() as k:
        silent = socket.create_connection(("127.0.0.1", port))
        partial = socket.create_connection(("127.0.0.1", port))
        busy = socket.create_connection(("127.0.0.1", port))
        # each is sent the served tag at once: take it, so that silent turns readable only at its close
        for c in (silent, partial, busy):
            c.settimeout(5)
            check(c.recv(4096).startswith(b"VAL m"), "the served tag")
        t0 = time.monotonic()
        # busy sends a complete request every 0.3 s; partial only bytes of one that never ends
        while time.monotonic() - t0 < 2.5:
            busy.sendall(b"PING 1\n")
            try:
                partial.sendall(b"P")
            except OSError:
                pass  # closed by komd: as it should be after 1 s
            # the clients' pace: 0.3 s, or sooner when komd closes the silent one
            select.select([silent], [], [], 0.3)
        check(closed_by_peer(silent, 0.1), "a silent client is dropped after idle_timeout")
        check(closed_by_peer(partial, 0.1), "a client sending no complete request is dropped")
        busy.settimeout(0.1)
        got = b""
        try:
            while True:
                d = busy.recv(65536)
                if not d:
                    break
                got += d
        except socket.timeout:
            pass
        check(b"PONG" in got and k.line("srv")["sessions"] == 1, "a client with requests stays")
        k.wait_log(r"line srv: 127\.0\.0\.1:\d+: closed: idle: no complete request for 1\.\d s \(idle_timeout\)")
        for s in (silent, partial, busy):
            s.close()
    # 0 turns it off
    port = free_port()
    with Komd(server_conf(port, "idle_timeout = 0;")).start() as k:
        s = socket.create_connection(("127.0.0.1", port))
        check(not closed_by_peer(s, 1.5), "idle_timeout = 0: kept")
        s.close()


def test_max_clients_per_address():
    port = free_port()
    with Komd(server_conf(port, "max_clients_per_address = 2;")).start() as k:
        a = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        k.until(lambda: k.line("srv")["sessions"] == 2, 5, "two from 127.0.0.1")
        third = socket.create_connection(("127.0.0.1", port))
        check(closed_by_peer(third, 5), "a third from 127.0.0.1 is refused")
        k.wait_log(r"line srv: 127\.0\.0\.1:\d+: refused: max_clients_per_address 2 reached for 127\.0\.0\.1")
        other = socket.create_connection(("127.0.0.2", port), source_address=("127.0.0.2", 0))
        k.until(lambda: k.line("srv")["sessions"] == 3, 5, "another address is served")
        check(k.line("srv")["counters"]["rejected"] == 1, "counted as rejected")
        a[0].close()
        k.until(lambda: k.line("srv")["sessions"] == 2, 5, "one closed")
        again = socket.create_connection(("127.0.0.1", port))
        k.until(lambda: k.line("srv")["sessions"] == 3, 5, "room again for 127.0.0.1")
        for s in a[1:] + [third, other, again]:
            s.close()


def test_max_clients_makes_room():
    """max_clients taken by sockets that never send: a new master is still served, and the
    connection longest without a request is the one closed (Modbus implementation guide 4.2)."""
    port = free_port()
    with Komd(server_conf(port, "max_clients = 3; idle_timeout = 0;")).start() as k:
        busy = socket.create_connection(("127.0.0.1", port))
        first = socket.create_connection(("127.0.0.1", port))
        k.until(lambda: k.line("srv")["sessions"] == 2, 5, "two connected")
        second = socket.create_connection(("127.0.0.1", port))
        k.until(lambda: k.line("srv")["sessions"] == 3, 5, "three connected")
        for c in (busy, first, second):
            c.settimeout(5)
            check(c.recv(4096).startswith(b"VAL m"), "the served tag")
        busy.sendall(b"PING 1\n")
        check(b"PONG 1" in busy.recv(4096), "busy has sent a request")
        newer = socket.create_connection(("127.0.0.1", port))
        check(closed_by_peer(first, 5), "the oldest silent connection makes room")
        newer.settimeout(5)
        check(newer.recv(4096).startswith(b"VAL m"), "the new master is served")
        k.wait_log(r"line srv: 127\.0\.0\.1:\d+: closed: max_clients 3 reached: room made for 127\.0\.0\.1:\d+ "
                   r"\(no request for \d+\.\d s, the longest\)")
        newest = socket.create_connection(("127.0.0.1", port))
        check(closed_by_peer(second, 5), "then the next silent one")
        busy.sendall(b"PING 2\n")
        check(b"PONG 2" in busy.recv(4096), "the busy master was never cut")
        for c in (busy, newer, newest, first, second):
            c.close()


def test_repeated_warnings_are_summed():
    """Refused clients: the first few of a second are logged, the rest counted and summed up."""
    port = free_port()
    with Komd(server_conf(port, "max_clients_per_address = 1;")).start() as k:
        first = socket.create_connection(("127.0.0.1", port))
        k.until(lambda: k.line("srv")["sessions"] == 1, 5, "one connected")
        others = []
        for _ in range(30):
            c = socket.create_connection(("127.0.0.1", port))
            others.append(c)
        for c in others:
            check(closed_by_peer(c, 5), "refused")
        k.until(lambda: k.line("srv")["counters"]["rejected"] == 30, 5, "30 refused")
        k.wait_log(r"line srv: (\d+) more like this in the last 1\.0 s, the last: 127\.0\.0\.1:\d+: refused: "
                       r"max_clients_per_address 1 reached")
        logged = [l for l in k.lines if re.search(r"line srv: 127\.0\.0\.1:\d+: refused: max_clients_per_address", l)]
        summed = sum(int(x.group(1)) for x in (re.search(r"line srv: (\d+) more like this", l) for l in k.lines) if x)
        check(5 <= len(logged) <= 15 and len(logged) + summed == 30,
              "%d logged and %d summed up, of 30" % (len(logged), summed))
        for c in [first] + others:
            c.close()


def test_allow_list():
    """The line's allow list, matched as addresses at accept: not as text (10.0.0.1 is not
    10.0.0.11), prefixes, and the refusal logged and counted."""
    for allow, ok, refused in (("127.0.0.11", [], ["127.0.0.1"]),
                               ("127.0.0.2, 127.0.0.1", ["127.0.0.1", "127.0.0.2"], ["127.0.0.3"]),
                               ("127.0.0.0/31", ["127.0.0.1"], ["127.0.0.2", "127.0.0.3"])):
        port = free_port()
        conf = server_conf(port, 'allow = "%s";' % allow).replace('host = "127.0.0.1, 127.0.0.2"', 'host = "*"')
        with Komd(conf).start() as k:
            for src in ok:
                c = socket.create_connection(("127.0.0.1", port), source_address=(src, 0))
                c.settimeout(5)
                check(c.recv(4096).startswith(b"VAL m"), "%s allowed by %r" % (src, allow))
                c.close()
            for src in refused:
                c = socket.create_connection(("127.0.0.1", port), source_address=(src, 0))
                check(closed_by_peer(c, 5), "%s refused by %r" % (src, allow))
                c.close()
                k.wait_log(r"line srv: %s:\d+: refused: not in the line's allow list" % re.escape(src))
            k.until(lambda: k.line("srv")["counters"]["rejected"] == len(refused), 5, "counted")
    # an IEC 104 server line: its allow list used to be matched as text, per connection
    port = free_port()
    conf = """lines = ( { name = "srv"; protocol = "iec104-server"; host = "*"; port = %d; allow = "127.0.0.11";
  stations = ( { name = "ca1"; address = 1; tags = (); } ); } );""" % port
    with Komd(conf).start() as k:
        c = socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.1", 0))
        check(closed_by_peer(c, 5), "127.0.0.1 is not 127.0.0.11")
        c.close()
        k.wait_log(r"line srv: 127\.0\.0\.1:\d+: refused: not in the line's allow list")


def keepalive_timer(port):
    """The keepalive timer ss shows on komd's end of the connection with port (local or remote)."""
    out = subprocess.run(["ss", "-tnoH", "state", "established", "( sport = :%d or dport = :%d )" % (port, port)],
                         capture_output=True, text=True).stdout
    return out


def test_tcp_keepalive():
    port = free_port()
    peer = KtPeer("127.0.0.1")
    conf = server_conf(port, "tcp_keepalive_idle = 7; tcp_keepalive_interval = 3; tcp_keepalive_count = 2;")
    conf = conf.replace("lines = (", """lines = ( { name = "cli"; protocol = "komtext-client"; host = "127.0.0.1"; port = %d;
  tcp_keepalive_idle = 9; stations = (); },""" % peer.port)
    with Komd(conf).start() as k:
        s = socket.create_connection(("127.0.0.1", port))
        k.until(lambda: k.line("srv")["sessions"] == 1 and peer.nconns() == 1, 5, "both connected")
        # komd's accepted socket (source port = port) and its client socket (to peer.port)
        srv = [l for l in keepalive_timer(port).splitlines() if "127.0.0.1:%d " % port in l.split()[2] + " "]
        check(srv and re.search(r"timer:\(keepalive,[67]\.?\d*(sec|ms),0\)", srv[0]), "server side idle 7 s: %s" % srv)
        cli = [l for l in keepalive_timer(peer.port).splitlines() if l.split()[3].endswith(":%d" % peer.port)]
        check(cli and re.search(r"timer:\(keepalive,[89]\.?\d*(sec|ms),0\)", cli[0]), "client side idle 9 s: %s" % cli)
        s.close()
    peer.close()


if __name__ == "__main__":
    tlspki.make(PKI)
    try:
        main([test_handshake_deadline_is_absolute, test_idle_timeout, test_max_clients_per_address,
              test_max_clients_makes_room, test_tcp_keepalive, test_repeated_warnings_are_summed, test_allow_list])
    finally:
        shutil.rmtree(PKI, ignore_errors=True)
