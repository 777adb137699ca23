"""TLS hygiene and key renewal, against OpenSSL's s_client and s_server: session resumption on
mutual-TLS lines, explicit cipher defaults (no CBC-SHA1; PSK only with (EC)DHE unless
plain_psk), revocation lists (crl, re-read at reload), an expired certificate that fails its
own line only, the partner's secure renegotiation (accepted, rate-limited, or refused), and
komd's own key renewal (TLS 1.2 renegotiation, TLS 1.3 KeyUpdate) in both roles."""
import os
import re
import shutil
import tempfile

import tlspki
from komdtest import Komd, check, free_port, main, run_komd
from tlspki import OpenSSL, s_server

PKI = tempfile.mkdtemp(prefix="komd-pki-")
PSK = "1a2b3c4d5e6f77889900aabbccddeeff"


def p(name):
    return os.path.join(PKI, name)


MEM = 'tags = ( { name = "m"; type = "int"; initial = 42; } );\n'
MUTUAL = 'my_cert = "%s"; my_key = "%s"; partner_certs = "%s";' % (p("server.pem"), p("server.key"), p("ca.pem"))


def server_line(port, tls, extra="", name="srv"):
    return """{ name = "%s"; protocol = "komtext-server"; host = "127.0.0.1"; port = %d; connect_timeout = 2; %s
  tls = { %s };
  stations = ( { name = "pub"; address = 1; tags = ( { name = "m"; address = "m"; } ); } ); }""" % (
        name, port, extra, tls)


def client_line(port, tls):
    return """lines = ( { name = "cli"; protocol = "komtext-client"; host = "127.0.0.1"; port = %d;
  connect_timeout = 2; reconnect_delay = 0.1; reconnect_max = 0.2;
  tls = { %s };
  stations = ( { name = "dev"; address = 1; tags = ( { name = "t1"; address = "a1"; type = "int"; } ); } ); } );""" % (
        port, tls)


def s_client(port, *args):
    return OpenSSL("s_client", "-connect", "127.0.0.1:%d" % port, *args)


CLIENT_CERT = ("-cert", p("client.pem"), "-key", p("client.key"), "-CAfile", p("ca.pem"))


def test_resumption_on_mutual_line():
    port = free_port()
    with Komd(MEM + "lines = (%s);" % server_line(port, MUTUAL)).start() as k:
        for ver in ("-tls1_2", "-tls1_3"):
            sess = os.path.join(k.dir, "sess%s.pem" % ver)
            first = s_client(port, ver, "-sess_out", sess, *CLIENT_CERT)
            first.wait(r"^VAL m 0 \d+ 42$")
            k.until(lambda: os.path.exists(sess) and os.path.getsize(sess) > 0, 5, "the session saved")
            first.stop()
            again = s_client(port, ver, "-sess_in", sess, *CLIENT_CERT)
            again.wait(r"^VAL m 0 \d+ 42$")
            check(any(l.startswith("Reused,") for l in again.lines), "%s: the session is resumed:\n%s" % (ver, again.text()))
            again.stop()
        k.wait_log(r"line srv: 127\.0\.0\.1:\d+: TLS established: TLSv1\.2 .*peer /CN=client \(verified\), resumed")
        k.wait_log(r"line srv: 127\.0\.0\.1:\d+: TLS established: TLSv1\.3 .*peer /CN=client \(verified\), resumed")
        check("handshake failed" not in k.log(), "no handshake failed (alert 80 before session-id contexts)")


def test_cipher_defaults():
    port = free_port()
    tls = 'my_cert = "%s"; my_key = "%s";' % (p("server.pem"), p("server.key"))
    with Komd(MEM + "lines = (%s);" % server_line(port, tls)).start() as k:
        cbc = s_client(port, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:@SECLEVEL=0")
        k.wait_log(r"line srv: 127\.0\.0\.1:\d+: TLS handshake failed: .*no shared cipher")
        cbc.stop()
        gcm = s_client(port, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256")
        gcm.wait(r"^VAL m 0 \d+ 42$")
        gcm.stop()
    # PSK: (EC)DHE with the PSK by default, the PSK alone only with plain_psk
    for plain, accepted in (("", False), ("plain_psk = true;", True)):
        port = free_port()
        with Komd(MEM + "lines = (%s);" % server_line(port, 'psk = "%s"; %s' % (PSK, plain))).start() as k:
            cli = s_client(port, "-tls1_2", "-psk", PSK, "-cipher", "PSK-AES128-GCM-SHA256")
            if accepted:
                cli.wait(r"^VAL m 0 \d+ 42$")
                k.wait_log(r"TLS established: TLSv1\.2 PSK-AES128-GCM-SHA256, PSK identity Client_identity")
            else:
                k.wait_log(r"line srv: 127\.0\.0\.1:\d+: TLS handshake failed: .*no shared cipher")
            cli.stop()
            fs = s_client(port, "-tls1_2", "-psk", PSK)
            fs.wait(r"^VAL m 0 \d+ 42$")
            k.wait_log(r"TLS established: TLSv1\.2 (ECDHE|DHE)-PSK-")
            fs.stop()
    # komd as client: a server offering plain PSK only is refused; ciphers overrides
    port = free_port()
    srv = s_server(port, "-nocert", "-psk", PSK, "-tls1_2", "-cipher", "PSK-AES128-GCM-SHA256")
    with Komd(client_line(port, 'psk = "%s";' % PSK)).start() as k:
        k.wait_log(r"line cli: connect 127\.0\.0\.1:%d: TLS handshake failed" % port)
    with Komd(client_line(port, 'psk = "%s"; ciphers = "PSK-AES128-GCM-SHA256";' % PSK)).start() as k:
        k.wait_log(r"TLS established: TLSv1\.2 PSK-AES128-GCM-SHA256")
    srv.stop()


def test_crl():
    d = tempfile.mkdtemp(prefix="komd-crl-")
    shutil.copy(p("crl1.pem"), os.path.join(d, "crl.pem"))
    port = free_port()
    tls = MUTUAL + ' crl = "%s/crl.pem";' % d
    with Komd(MEM + "lines = (%s);" % server_line(port, tls)).start() as k:
        bad = s_client(port, "-cert", p("revoked.pem"), "-key", p("revoked.key"), "-CAfile", p("ca.pem"))
        k.wait_log(r"line srv: 127\.0\.0\.1:\d+: TLS handshake failed: .*certificate revoked")
        bad.stop()
        for ver in ("-tls1_2", "-tls1_3"):
            good = s_client(port, ver, "-cert", p("client2.pem"), "-key", p("client2.key"), "-CAfile", p("ca.pem"))
            good.wait(r"^VAL m 0 \d+ 42$")
            good.stop()
        # a new CRL revokes client2 as well: read again at reload
        shutil.copy(p("crl2.pem"), os.path.join(d, "crl.pem"))
        k.ctl("reload")
        mark = len(k.lines)
        again = s_client(port, "-cert", p("client2.pem"), "-key", p("client2.key"), "-CAfile", p("ca.pem"))
        k.wait_log(r"line srv: 127\.0\.0\.1:\d+: TLS handshake failed: .*certificate revoked", since=mark)
        again.stop()
    # komd as client: a server whose certificate is revoked is refused
    sport = free_port()
    srv = s_server(sport, "-cert", p("srvrevoked.pem"), "-key", p("srvrevoked.key"))
    with Komd(client_line(sport, 'partner_certs = "%s"; crl = "%s";' % (p("ca.pem"), p("crl1.pem")))).start() as k:
        k.wait_log(r"line cli: connect 127\.0\.0\.1:%d: TLS handshake failed: .*certificate revoked" % sport)
    srv.stop()
    shutil.rmtree(d)


def test_expired_certificate_fails_its_line_only():
    d = tempfile.mkdtemp(prefix="komd-exp-")
    shutil.copy(p("old.pem"), os.path.join(d, "cur.pem"))
    shutil.copy(p("old.key"), os.path.join(d, "cur.key"))
    tport, pport = free_port(), free_port()
    tls = 'my_cert = "%s/cur.pem"; my_key = "%s/cur.key";' % (d, d)
    plain = """{ name = "plain"; protocol = "komtext-server"; host = "127.0.0.1"; port = %d;
  stations = ( { name = "pub"; address = 1; tags = ( { name = "m"; address = "m"; } ); } ); }""" % pport
    conf = MEM + "lines = (%s,\n%s);" % (server_line(tport, tls), plain)
    with Komd(conf).start() as k:
        # komd -t still calls it an error, at the key's line
        r = run_komd("-t", "-c", k.conf)
        check(r.returncode == 1 and re.search(r"komd\.conf:\d+: line 'srv': tls: my_cert: certificate .* expired",
                                              r.stdout + r.stderr), "komd -t: %s%s" % (r.stdout, r.stderr))
        # the daemon runs: the plain line serves, the TLS line says why it does not
        k.until(lambda: "listening" in k.line("plain")["state"], 5, "the other line runs")
        srv = k.line("srv")
        check(re.search(r"not started: tls: my_cert: certificate .* expired", srv["state"]), srv)
        check("expired" in k.ctl("status")[1], "komctl status shows it")
        # renewed in place, then a reload: the line starts
        shutil.copy(p("server.pem"), os.path.join(d, "cur.pem"))
        shutil.copy(p("server.key"), os.path.join(d, "cur.key"))
        k.ctl("reload")
        k.until(lambda: "listening" in k.line("srv")["state"], 5, "the TLS line starts after the reload")
        cli = s_client(tport, "-CAfile", p("ca.pem"))
        cli.wait(r"^VAL m 0 \d+ 42$")
        cli.stop()
    shutil.rmtree(d)


def test_partner_renegotiation():
    port = free_port()
    with Komd(MEM + "lines = (%s);" % server_line(port, MUTUAL + " renegotiation_min_interval = 3;")).start() as k:
        cli = s_client(port, "-tls1_2", *CLIENT_CERT)
        cli.wait(r"^VAL m 0 \d+ 42$")
        cli.send("R\n")
        cli.wait(r"RENEGOTIATING")
        k.wait_log(r"tls: session keys renewed by renegotiation \(TLSv1\.2")
        k.ctl("set", "m", "43")
        cli.wait(r"^VAL m 0 \d+ 43$")
        # at once again: too soon
        cli.send("R\n")
        k.wait_log(r"line srv: 127\.0\.0\.1:\d+: closed: TLS error: renegotiation too soon")
        cli.proc.wait(5)
        cli.stop()
    port = free_port()
    with Komd(MEM + "lines = (%s);" % server_line(port, MUTUAL + " renegotiation = false;")).start() as k:
        cli = s_client(port, "-tls1_2", *CLIENT_CERT)
        cli.wait(r"^VAL m 0 \d+ 42$")
        cli.send("R\n")
        k.wait_log(r"line srv: 127\.0\.0\.1:\d+: closed: TLS error: renegotiation refused \(renegotiation = false\)")
        cli.stop()


def test_komd_renews_keys():
    # server role: komd sends HelloRequest (TLS 1.2) or KeyUpdate (TLS 1.3) every 0.3 s
    port = free_port()
    with Komd(MEM + "lines = (%s);" % server_line(port, MUTUAL + " renegotiate_interval = 0.3;")).start() as k:
        for ver, msg in (("-tls1_2", "HelloRequest"), ("-tls1_3", "KeyUpdate")):
            cli = s_client(port, ver, "-msg", *CLIENT_CERT)
            cli.wait(r"^VAL m 0 \d+ \d+$")
            cli.wait(r"<<< .*%s" % msg)
            k.ctl("set", "m", "44" if ver == "-tls1_2" else "45")
            cli.wait(r"^VAL m 0 \d+ %s$" % ("44" if ver == "-tls1_2" else "45"))
            cli.stop()
        k.wait_log(r"tls: session keys renewed by renegotiation \(TLSv1\.2")
        k.wait_log(r"tls: session keys renewed by KeyUpdate \(TLSv1\.3")
    # client role: komd renegotiates (a second ClientHello) or sends KeyUpdate
    cli_tls = 'partner_certs = "%s"; renegotiate_interval = 0.3;' % p("ca.pem")
    for ver, msg in (("-tls1_2", "ClientHello"), ("-tls1_3", "KeyUpdate")):
        sport = free_port()
        srv = s_server(sport, ver, "-msg", "-client_renegotiation", "-cert", p("server.pem"), "-key", p("server.key"))
        with Komd(client_line(sport, cli_tls)).start() as k:
            k.wait_log(r"TLS established")
            k.until(lambda: sum(1 for l in srv.lines if re.search(r"<<< .*%s" % msg, l)) >= (2 if msg == "ClientHello" else 1),
                    5, "%s: komd renews the keys" % ver)
            srv.send("VAL a1 0 0 46\n")
            k.until(lambda: k.tag("t1")["value"] == 46, 5, "data flows after the renewal")
        srv.stop()
    # and the server asks komd to renegotiate (s_server's R): accepted by default
    sport = free_port()
    srv = s_server(sport, "-tls1_2", "-cert", p("server.pem"), "-key", p("server.key"))
    with Komd(client_line(sport, 'partner_certs = "%s";' % p("ca.pem"))).start() as k:
        k.wait_log(r"TLS established")
        srv.send("R\n")
        k.wait_log(r"tls: session keys renewed by renegotiation")
        srv.send("VAL a1 0 0 47\n")
        k.until(lambda: k.tag("t1")["value"] == 47, 5, "data flows after the server's renegotiation")
    srv.stop()


def test_alpn():
    """alpn (RFC 7301), for clouds that choose the protocol by it on port 443 (AWS IoT's
    x-amzn-mqtt-ca): a client line offers it, s_server sees it and chooses it; a server line
    accepts a client offering one of its protocols and refuses one offering only others."""
    sport = free_port()
    srv = s_server(sport, "-alpn", "x-amzn-mqtt-ca", "-cert", p("server.pem"), "-key", p("server.key"))
    with Komd(client_line(sport, 'partner_certs = "%s"; alpn = "x-amzn-mqtt-ca";' % p("ca.pem"))).start() as k:
        srv.wait(r"^ALPN protocols advertised by the client: x-amzn-mqtt-ca$")
        k.wait_log(r"line cli: 127\.0\.0\.1:%d: TLS established: .*\(verified\), ALPN x-amzn-mqtt-ca" % sport)
    srv.stop()
    port = free_port()
    with Komd(MEM + "lines = (%s);" % server_line(port, MUTUAL + ' alpn = "mqtt, x-amzn-mqtt-ca";')).start() as k:
        good = s_client(port, "-alpn", "foo,x-amzn-mqtt-ca", *CLIENT_CERT)
        good.wait(r"^ALPN protocol: x-amzn-mqtt-ca$")
        good.wait(r"^VAL m 0 \d+ 42$")
        good.stop()
        bad = s_client(port, "-alpn", "http/1.1", *CLIENT_CERT)
        k.wait_log(r"line srv: 127\.0\.0\.1:\d+: TLS handshake failed: .*no application protocol")
        bad.stop()
    # a name longer than 255 bytes: komd -t names the tls section
    k = Komd(client_line(sport, 'partner_certs = "%s"; alpn = "%s";' % (p("ca.pem"), "x" * 300)))
    r = run_komd("-t", "-c", k.conf)
    out = r.stdout + r.stderr
    check(r.returncode == 1 and re.search(r"\.conf:\d+: .*alpn: 'x+': a protocol name is 1 to 255 bytes", out), out)
    shutil.rmtree(k.dir)


def test_secret_file_modes():
    d = tempfile.mkdtemp(prefix="komd-modes-")
    key = os.path.join(d, "server.key")
    shutil.copy(p("server.key"), key)
    tls = 'my_cert = "%s"; my_key = "%s";' % (p("server.pem"), key)
    for mode, warned in ((0o644, True), (0o640, False), (0o600, False)):
        os.chmod(key, mode)
        k = Komd(MEM + "lines = (%s);" % server_line(free_port(), tls))
        os.chmod(k.conf, 0o600)
        r = run_komd("-t", "-c", k.conf)
        out = r.stdout + r.stderr
        hit = re.search(r"komd\.conf:\d+: my_key: private key: '%s' is readable by others \(mode 0644\)" % re.escape(key), out)
        check(r.returncode == 0 and bool(hit) == warned, "key mode %o: %s" % (mode, out))
        shutil.rmtree(k.dir)
    # a psk in a file others may read
    for mode, warned in ((0o644, True), (0o640, False)):
        k = Komd(MEM + "lines = (%s);" % server_line(free_port(), 'psk = "%s";' % PSK))
        os.chmod(k.conf, mode)
        r = run_komd("-t", "-c", k.conf)
        out = r.stdout + r.stderr
        hit = re.search(r"komd\.conf:\d+: psk: '%s' is readable by others" % re.escape(k.conf), out)
        check(r.returncode == 0 and bool(hit) == warned and PSK not in out, "psk file mode %o: %s" % (mode, out))
        shutil.rmtree(k.dir)
    shutil.rmtree(d)


def memory_count(pid, needle):
    """How often needle stands in the readable memory of process pid (root reads /proc/PID/mem)."""
    hits = 0
    with open("/proc/%d/maps" % pid) as maps, open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for line in maps:
            addr, perms = line.split()[:2]
            if "r" not in perms or "[vvar]" in line or "[vsyscall]" in line:
                continue
            lo, hi = (int(x, 16) for x in addr.split("-"))
            if hi - lo > 1 << 30:
                continue  # a sanitizer's shadow memory (terabytes reserved), not komd's data
            # in pieces that overlap by the needle's length, so that none is missed at a seam
            step = 16 << 20
            for at in range(lo, hi, step):
                try:
                    mem.seek(at)
                    hits += mem.read(min(step + len(needle) - 1, hi - at)).count(needle)
                except OSError:
                    break
    return hits


def test_secrets_wiped():
    port = free_port()
    conf = lambda secret: MEM + "lines = (%s);" % server_line(port, 'psk = "text:%s";' % secret)
    # under AddressSanitizer freed memory is held back, not reused: have it overwritten when
    # freed, as reuse does (a stdio buffer of the file would count); other builds ignore it
    asan = (os.environ.get("ASAN_OPTIONS", "") + ":max_free_fill_size=16777216").lstrip(":")
    with Komd(conf("OldSecretOfTheScan-1"), env={"ASAN_OPTIONS": asan}).start() as k:
        # the parsed configuration and the line's TLS context: no third copy (the fingerprint
        # of the line held one), none in the freed libconfig tree
        n = memory_count(k.proc.pid, b"OldSecretOfTheScan-1")
        check(1 <= n <= 2, "copies of the PSK while in use: %d" % n)
        k.write_conf(conf("NewSecretOfTheScan-2"))
        k.ctl("reload")
        check(memory_count(k.proc.pid, b"OldSecretOfTheScan-1") == 0, "the old PSK is wiped when freed")
        check(memory_count(k.proc.pid, b"NewSecretOfTheScan-2") <= 2, "the new one in at most two copies")
    # every key marked secret is treated so (conf_key.secret), e.g. MQTT's password
    mport = free_port()
    mconf = lambda secret: """lines = ( { name = "mq"; protocol = "mqtt-client"; host = "127.0.0.1"; port = %d;
      username = "u"; password = "%s"; stations = ( { name = "s"; address = "a/b";
      tags = ( { name = "a.b"; type = "int"; } ); } ); } );""" % (mport, secret)
    with Komd(mconf("OldMqttPassOfTheScan-1"), env={"ASAN_OPTIONS": asan}).start() as k:
        n = memory_count(k.proc.pid, b"OldMqttPassOfTheScan-1")
        check(1 <= n <= 2, "copies of the MQTT password while in use: %d" % n)
        k.write_conf(mconf("NewMqttPassOfTheScan-2"))
        k.ctl("reload")
        check(memory_count(k.proc.pid, b"OldMqttPassOfTheScan-1") == 0, "the old MQTT password is wiped when freed")


if __name__ == "__main__":
    tlspki.make(PKI)
    try:
        main([test_resumption_on_mutual_line, test_cipher_defaults, test_crl, test_expired_certificate_fails_its_line_only,
              test_partner_renegotiation, test_komd_renews_keys, test_alpn, test_secret_file_modes,
              test_secrets_wiped])
    finally:
        shutil.rmtree(PKI, ignore_errors=True)
