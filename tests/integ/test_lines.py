"""Lines and endpoints: listen addresses (checked with ss), host cycling on client lines,
backoff, the three redundancy policies, max_clients, bad frames."""
import socket
import struct
import subprocess
import threading

from komdtest import WAIT, Komd, KtPeer, check, free_port, main


def server_line(name, host, port, extra=""):
    return """{ name = "%s"; protocol = "komtext-server"; host = "%s"; port = %d; %s
      stations = ( { name = "s"; address = 1; tags = ( { name = "m1"; address = "m1"; } ); } ); }""" % (
        name, host, port, extra)


MEM = 'tags = ( { name = "m1"; type = "int"; initial = 7; } );\n'


def listening(port):
    out = subprocess.run(["ss", "-Htln", "sport = :%d" % port], capture_output=True, text=True).stdout
    return sorted(l.split()[3] for l in out.splitlines() if l.strip())


def test_listen_addresses():
    p1, p2, p3, p4 = free_port(), free_port(), free_port(), free_port()
    conf = MEM + "lines = (%s, %s, %s, %s);" % (
        server_line("any4", "*", p1), server_line("any6", "[*]", p2),
        server_line("lo4", "127.0.0.1", p3), server_line("both", "[::1], 127.0.0.1", p4))
    with Komd(conf).start() as k:
        check(listening(p1) == ["0.0.0.0:%d" % p1], "* listens on all IPv4: %s" % listening(p1))
        check(listening(p2) == ["[::]:%d" % p2] or listening(p2) == ["*:%d" % p2],
              "[*] listens on all IPv6: %s" % listening(p2))
        check(listening(p3) == ["127.0.0.1:%d" % p3], "127.0.0.1: %s" % listening(p3))
        check(listening(p4) == sorted(["127.0.0.1:%d" % p4, "[::1]:%d" % p4]), "both: %s" % listening(p4))
        # a client on IPv6 gets the memory tag's value
        c = KtPeer("::1", p4, listen=False)
        k.until(lambda: c.received("VAL m1 0 "), 5, "VAL frame over IPv6")
        check(c.received("VAL m1")[0].endswith(" 7"), "value 7: %s" % c.received("VAL m1"))
        c.close()


def client_conf(hosts, port, extra="", stations=None):
    st = stations or """( { name = "dev"; address = 1; tags = (
        { name = "t1"; address = "a1"; type = "int"; direction = "inout"; } ); } )"""
    return """lines = ( { name = "cli"; protocol = "komtext-client"; host = "%s"; port = %d;
      connect_timeout = 0.5; reconnect_delay = 0.2; reconnect_max = 1; %s stations = %s; } );""" % (
        hosts, port, extra, st)


def test_cycle_to_third_host():
    port = free_port()
    # host 1 refuses; host 2 never answers (its accept queue is full, so SYNs are dropped);
    # host 3 is the peer
    black = socket.socket()
    black.bind(("127.0.0.2", port))
    black.listen(0)
    fillers = []
    for _ in range(3):
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex(("127.0.0.2", port))
        fillers.append(f)
    peer = KtPeer("127.0.0.3", port)
    with Komd(client_conf("127.0.0.1; 127.0.0.2, 127.0.0.3", port)).start() as k:
        k.until(lambda: peer.accepted >= 1, 10, "connection to the third host")
        k.wait_log(r"line cli: connect 127\.0\.0\.1:%d: Connection refused" % port)
        k.wait_log(r"line cli: connect 127\.0\.0\.2:%d: connect timeout" % port)
        l = k.until(lambda: (lambda l: l if l["paths"][0]["state"] == "connected" else None)(k.line("cli")), 5,
                    "status connected")
        check(l["paths"][0]["peer"] == "127.0.0.3:%d" % port, "peer: %s" % l["paths"][0])
        check(l["paths"][0]["via"] == "primary", "via primary")
        peer.val("a1", 42)
        k.until(lambda: k.tag("t1")["value"] == 42, 5, "t1 = 42")
    peer.close()
    black.close()
    for f in fillers:
        f.close()


def test_name_with_several_addresses():
    """A name with several addresses: each is tried in turn within one attempt, IPv6 too
    (komd gets a hosts file of its own: hosts_file)."""
    port = free_port()
    hosts = ("127.0.0.1 localhost\n"
             "127.0.0.3 plc.komd.test\n127.0.0.2 plc.komd.test\n"
             "::1 plc6.komd.test\n")
    peer = KtPeer("127.0.0.2", port)
    peer6 = KtPeer("::1", 0)
    line = """{ name = "%s"; protocol = "komtext-client"; host = "%s"; port = %d; connect_timeout = 0.5;
      reconnect_delay = 5; stations = ( { name = "dev"; address = 1; tags = (
        { name = "%s"; address = "a1"; type = "int"; } ); } ); }"""
    conf = "lines = ( %s, %s );" % (line % ("cli", "plc.komd.test", port, "t1"),
                                    line % ("cli6", "plc6.komd.test", peer6.port, "t6"))
    with Komd('hosts_file = "#APPDIR#/hosts";\n' + conf, files={"hosts": hosts}).start() as k:
        k.until(lambda: peer.accepted >= 1, 10, "connection to plc.komd.test's second address")
        k.wait_log(r"line cli: connect plc\.komd\.test\(127\.0\.0\.3\):%d: Connection refused" % port)
        l = k.until(lambda: (lambda l: l if l["paths"][0]["state"] == "connected" else None)(k.line("cli")), 5,
                    "status connected")
        check(l["paths"][0]["peer"] == "plc.komd.test(127.0.0.2):%d" % port, "peer: %s" % l["paths"][0])
        check(not any("all 1 hosts failed" in x for x in k.lines), "no back-off: one attempt tried both addresses")
        peer.val("a1", 42)
        k.until(lambda: k.tag("t1")["value"] == 42, 5, "t1 = 42")
        k.until(lambda: peer6.accepted >= 1, 10, "connection to plc6.komd.test over IPv6")
        peer6.val("a1", 6)
        k.until(lambda: k.tag("t6")["value"] == 6, 5, "t6 = 6")
        check(k.line("cli6")["paths"][0]["peer"] == "plc6.komd.test([::1]):%d" % peer6.port, "cli6 peer: %s" % k.line("cli6")["paths"])
    peer.close()
    peer6.close()


class DnsServer:
    """A DNS server on 127.0.0.1 (UDP) for one name: A queries get the addresses in
    self.addrs at the time of the query, other types none; every A query is counted."""

    def __init__(self, name, addrs):
        self.name, self.addrs, self.queries = name.lower(), list(addrs), 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                q, src = self.sock.recvfrom(512)
            except OSError:
                return
            if len(q) < 12:
                continue
            i, labels = 12, []
            while i < len(q) and q[i]:
                labels.append(q[i + 1:i + 1 + q[i]].decode(errors="replace"))
                i += 1 + q[i]
            qtype = struct.unpack(">H", q[i + 1:i + 3])[0] if i + 3 <= len(q) else 0
            question = q[12:i + 5]
            answers = b""
            known = ".".join(labels).lower() == self.name
            if known and qtype == 1:
                self.queries += 1
                for a in self.addrs:
                    answers += struct.pack(">HHHIH", 0xC00C, 1, 1, 0, 4) + socket.inet_aton(a)
                WAIT.kick()
            n = len(self.addrs) if known and qtype == 1 else 0
            rcode = 0 if known else 3
            hdr = struct.pack(">HHHHHH", struct.unpack(">H", q[:2])[0], 0x8180 | rcode, 1, n, 0, 0)
            self.sock.sendto(hdr + question + answers, src)

    def close(self):
        self.sock.close()


def test_name_resolved_at_every_attempt():
    """A name is resolved again at every connection attempt (evdns, komd's own resolver):
    when the DNS answer changes, the next attempt goes to the new address."""
    port = free_port()
    dns = DnsServer("plc.komd.test", ["127.0.0.2"])
    first = KtPeer("127.0.0.2", port)
    second = KtPeer("127.0.0.3", port)
    files = {"hosts": "127.0.0.1 localhost\n", "resolv.conf": "nameserver 127.0.0.1:%d\n" % dns.port}
    conf = 'hosts_file = "#APPDIR#/hosts"; resolv_conf = "#APPDIR#/resolv.conf";\n' + client_conf("plc.komd.test", port)
    try:
        with Komd(conf, files=files).start() as k:
            k.until(lambda: first.accepted >= 1, 10, "connection to the first answer, 127.0.0.2")
            check(dns.queries >= 1, "komd asked the DNS server")
            n = dns.queries
            dns.addrs = ["127.0.0.3"]
            first.close()  # the device goes; its name now points elsewhere
            k.until(lambda: second.accepted >= 1, 10, "connection to the new answer, 127.0.0.3")
            check(dns.queries > n, "asked again before the new attempt")
            l = k.until(lambda: (lambda l: l if l["paths"][0]["state"] == "connected" else None)(k.line("cli")),
                        5, "status connected")
            check(l["paths"][0]["peer"] == "plc.komd.test(127.0.0.3):%d" % port, "peer: %s" % l["paths"][0])
            second.val("a1", 9)
            k.until(lambda: k.tag("t1")["value"] == 9, 5, "t1 = 9 from the new address")
    finally:
        dns.close()
        first.close()
        second.close()


def test_short_session_moves_to_next_host():
    """A host that accepts and drops the connection at once (or whose protocol never
    answers: an MQTT broker without CONNACK) did not prove itself: the next host of the
    list is tried, as after a failed connect, not the first one again and again."""
    port = free_port()
    bad = socket.socket()
    bad.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    bad.bind(("127.0.0.1", port))
    bad.listen(8)
    drops = []

    def drop():
        while True:
            try:
                c, _ = bad.accept()
            except OSError:
                return
            drops.append(1)
            c.close()
            WAIT.kick()
    threading.Thread(target=drop, daemon=True).start()
    peer = KtPeer("127.0.0.2", port)
    with Komd(client_conf("127.0.0.1, 127.0.0.2", port)).start() as k:
        k.until(lambda: peer.accepted >= 1, 10, "the second host after the first dropped the session")
        check(len(drops) == 1, "the first host tried once before the second: %d" % len(drops))
        peer.val("a1", 5)
        k.until(lambda: k.tag("t1")["value"] == 5, 5, "t1 from the second host")
    peer.close()
    bad.close()


def test_backoff_after_full_cycle():
    port = free_port()
    with Komd(client_conf("127.0.0.1, localhost", port)).start() as k:
        k.wait_log(r"line cli: all 2 hosts failed, next attempt in")
        n = len(k.lines)
        k.wait_log(r"line cli: all 2 hosts failed", since=n)
        l = k.line("cli")
        check(l["paths"][0]["state"] in ("waiting", "connecting", "resolving"), "state %s" % l["paths"][0])
        check("Connection refused" in l["state"] or "refused" in l["paths"][0]["last_error"], "last error: %s" % l)


def redundant_conf(port, bport, policy, primary="127.0.0.1", backup="127.0.0.1"):
    return """lines = ( { name = "red"; type = "tcp-redundant"; protocol = "komtext-client";
      host = "%s"; port = %d; redundancy = "%s"; connect_timeout = 0.5; reconnect_delay = 0.2;
      reconnect_max = 0.5; backup = { host = "%s"; port = %d; };
      stations = ( { name = "dev"; address = 1; tags = ( { name = "t1"; address = "a1"; type = "int"; } ); } ); } );""" % (
        primary, port, policy, backup, bport)


def test_alternate_failover_and_back():
    port, bport = free_port(), free_port()
    backup = KtPeer("127.0.0.1", bport)
    with Komd(redundant_conf(port, bport, "alternate")).start() as k:
        k.until(lambda: backup.nconns() == 1, 10, "failover to the backup")
        l = k.line("red")
        check(l["paths"][0]["via"] == "backup", "via backup: %s" % l["paths"])
        backup.val("a1", 5)
        k.until(lambda: k.tag("t1")["value"] == 5 and not k.tag("t1")["invalid"], 5, "t1 from backup")
        # primary comes up, backup fails: back to the primary
        primary = KtPeer("127.0.0.1", port)
        backup.close()
        k.until(lambda: k.tag("t1")["invalid"], 5, "t1 invalid while disconnected")
        check(k.tag("t1")["value"] == 5, "an invalid tag keeps its value, not zero")
        k.until(lambda: primary.nconns() == 1, 10, "back to the primary")
        k.until(lambda: k.line("red")["paths"][0]["via"] == "primary", 5, "via primary")
        check(k.line("red")["counters"]["failovers"] >= 2, "failovers counted: %s" % k.line("red")["counters"])
        check(len(k.line("red")["paths"]) == 1, "alternate uses one connection")
        primary.close()


def test_parallel_keeps_two_connections():
    port, bport = free_port(), free_port()
    primary, backup = KtPeer("127.0.0.1", port), KtPeer("127.0.0.1", bport)
    with Komd(redundant_conf(port, bport, "parallel")).start() as k:
        k.until(lambda: primary.nconns() == 1 and backup.nconns() == 1, 10, "two connections")
        l = k.until(lambda: (lambda l: l if all(p["state"] == "connected" for p in l["paths"]) else None)(
            k.line("red")), 5, "both paths connected")
        check([p["via"] for p in l["paths"]] == ["primary", "backup"], "paths: %s" % l["paths"])
        check(sum(p["active"] for p in l["paths"]) == 1, "one carries data: %s" % l["paths"])
        active = 0 if l["paths"][0]["active"] else 1
        (primary if active == 0 else backup).val("a1", 11)
        (backup if active == 0 else primary).val("a1", 99)   # the standby's data is ignored
        k.until(lambda: k.tag("t1")["value"] == 11, 5, "t1 from the active connection")
        # the active one fails: the standby takes over at once, the failed side reconnects
        (primary if active == 0 else backup).close()
        k.until(lambda: (lambda l: l["paths"][1 - active]["active"])(k.line("red")), 5, "standby active")
        (backup if active == 0 else primary).val("a1", 12)
        k.until(lambda: k.tag("t1")["value"] == 12, 5, "t1 from the new active connection")
        check(k.line("red")["counters"]["failovers"] >= 1, "failover counted")
        primary.close()
        backup.close()


def test_dual_two_sessions():
    port, bport = free_port(), free_port()
    primary, backup = KtPeer("127.0.0.1", port), KtPeer("127.0.0.1", bport)
    with Komd(redundant_conf(port, bport, "dual")).start() as k:
        k.until(lambda: primary.nconns() == 1 and backup.nconns() == 1, 10, "two sessions")
        primary.val("a1", 1)
        k.until(lambda: k.tag("t1")["value"] == 1, 5, "value from the primary device")
        backup.val("a1", 2)
        k.until(lambda: k.tag("t1")["value"] == 2, 5, "value from the backup device")
        primary.close()
        backup.close()


def test_backup_disabled_is_plain():
    port, bport = free_port(), free_port()
    backup = KtPeer("127.0.0.1", bport)
    conf = redundant_conf(port, bport, "alternate").replace("backup = {", "backup = { enabled = false;")
    with Komd(conf).start() as k:
        k.wait_log(r"line red: all 1 host failed")
        check(backup.accepted == 0, "a disabled backup is never contacted")
        check(len(k.line("red")["paths"]) == 1, "one path")
    backup.close()


def test_max_clients_and_bad_frames():
    port = free_port()
    conf = MEM + "lines = (%s);" % server_line("srv", "127.0.0.1", port, "max_clients = 2;")
    with Komd(conf).start() as k:
        a = KtPeer("127.0.0.1", port, listen=False)
        b = KtPeer("127.0.0.1", port, listen=False)
        k.until(lambda: k.line("srv")["sessions"] == 2, 5, "two clients")
        # a third: served, and the one longest without a request (a, first) makes room
        c = KtPeer("127.0.0.1", port, listen=False)
        k.wait_log(r"line srv: 127\.0\.0\.1:\d+: closed: max_clients 2 reached: room made for")
        k.until(lambda: a.closed == 1, 5, "the oldest client closed")
        check(k.line("srv")["sessions"] == 2 and k.line("srv")["counters"]["rejected"] == 1, "one made room, counted")
        # garbage from one client closes only that one, naming the peer
        c.send(b"\x01\x02 garbage\n")
        k.wait_log(r"line srv: 127\.0\.0\.1:\d+: protocol error: not a komtext frame")
        k.until(lambda: c.closed == 1, 5, "bad client closed")
        b.send("PING 5\n")
        k.until(lambda: b.received("PONG 5"), 5, "the other client still served")
        check(k.line("srv")["counters"]["protocol_errors"] == 1, "protocol error counted")
        a.close(); b.close(); c.close()


if __name__ == "__main__":
    main([test_listen_addresses, test_cycle_to_third_host, test_name_with_several_addresses, test_name_resolved_at_every_attempt, test_short_session_moves_to_next_host,
          test_backoff_after_full_cycle,
          test_alternate_failover_and_back, test_parallel_keeps_two_connections, test_dual_two_sessions,
          test_backup_disabled_is_plain, test_max_clients_and_bad_frames])
