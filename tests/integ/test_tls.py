"""TLS on lines, against OpenSSL's own s_server and s_client: certificate mode one-way and
mutual, untrusted and expired certificates, /DC, encrypted keys, PSK in TLS 1.2 and 1.3
both ways, PSK mismatch, SNI, precedence of certificates over PSK, komd -t checks, komctl
certs, reload of renewed certificates, and komd against komd on a redundant line."""
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


def client_line(port, tls, host="127.0.0.1", extra=""):
    return """lines = ( { name = "cli"; protocol = "komtext-client"; host = "%s"; port = %d;
  connect_timeout = 2; reconnect_delay = 0.2; reconnect_max = 0.5; %s
  tls = { %s };
  stations = ( { name = "dev"; address = 1; tags = ( { name = "t1"; address = "a1"; type = "int"; } ); } ); } );""" % (
        host, port, extra, tls)


def server_line(port, tls, host="127.0.0.1", name="srv"):
    return """{ name = "%s"; protocol = "komtext-server"; host = "%s"; port = %d; connect_timeout = 2;
  tls = { %s };
  stations = ( { name = "pub"; address = 1; tags = ( { name = "m"; address = "m"; } ); } ); }""" % (
        name, host, port, tls)


MEM = 'tags = ( { name = "m"; type = "int"; initial = 42; } );\n'


def connected(k):
    return k.line("cli")["paths"][0]["state"] == "connected"


def expect_data(k, srv, value):
    """s_server forwards its stdin to komd: a value arrives only through a working TLS session."""
    srv.send("VAL a1 0 0 %d\n" % value)
    k.until(lambda: k.tag("t1")["value"] == value, 5, "t1 = %d over TLS" % value)


def test_client_one_way_and_mutual():
    port = free_port()
    srv = s_server(port, "-cert", p("server.pem"), "-key", p("server.key"))
    with Komd(client_line(port, 'partner_certs = "%s";' % p("ca.pem"))).start() as k:
        k.wait_log(r"line cli: 127\.0\.0\.1:%d: TLS established: TLSv1\.3 .*peer /CN=server \(verified\)" % port)
        expect_data(k, srv, 7)
        check(k.line("cli")["tls"] == "certificate" and k.line("cli")["tls_verify"] is True, "tls mode in status")
    srv.stop()
    # mutual: s_server demands a client certificate from our CA
    srv = s_server(port, "-cert", p("server.pem"), "-key", p("server.key"), "-Verify", "1", "-CAfile", p("ca.pem"),
                   "-verify_return_error")
    tls = 'partner_certs = "%s"; my_cert = "%s"; my_key = "%s";' % (p("ca.pem"), p("client.pem"), p("client.key"))
    with Komd(client_line(port, tls)).start() as k:
        expect_data(k, srv, 8)
        srv.wait(r"subject=.*CN ?= ?client")
    srv.stop()
    # mutual, but komd has no certificate: the server refuses, komd logs why and retries
    srv = s_server(port, "-cert", p("server.pem"), "-key", p("server.key"), "-Verify", "1", "-CAfile", p("ca.pem"),
                   "-verify_return_error")
    with Komd(client_line(port, 'partner_certs = "%s";' % p("ca.pem"))).start() as k:
        # TLS 1.3: the client's handshake ends before the server checks its certificate, so the
        # refusal arrives as an alert on the new session
        k.wait_log(r"line cli: 127\.0\.0\.1:%d: TLS error: .*certificate required" % port)
        k.until(lambda: k.line("cli")["counters"]["tls_failures"] >= 2, 10, "retries counted")
    srv.stop()


def test_client_rejects_untrusted_expired_wrong_name():
    port = free_port()
    for name, reason in (("rogue", "unable to get local issuer certificate"),
                         ("old", "certificate has expired"),
                         ("wrongname", "hostname mismatch|IP address mismatch")):
        srv = s_server(port, "-cert", p(name + ".pem"), "-key", p(name + ".key"))
        with Komd(client_line(port, 'partner_certs = "%s";' % p("ca.pem"))).start() as k:
            k.wait_log(r"line cli: connect 127\.0\.0\.1:%d: TLS handshake failed: certificate verify failed: (%s)"
                       % (port, reason))
            check(not connected(k), "%s: not connected" % name)
            check(k.line("cli")["counters"]["tls_failures"] >= 1, "counted")
        srv.stop()


def test_dc_accepts_untrusted():
    port = free_port()
    srv = s_server(port, "-cert", p("rogue.pem"), "-key", p("rogue.key"))
    for flag in ("/DC", "--no-peer-verify"):
        with Komd(client_line(port, 'partner_certs = "%s";' % p("ca.pem")), args=[flag]).start() as k:
            k.wait_log(r"certificates will NOT be verified")
            k.wait_log(r"line cli: 127\.0\.0\.1:%d: partner accepted UNVERIFIED \(/DC\): unable to (get local issuer|verify the first)"
                       % port)
            expect_data(k, srv, 9 if flag == "/DC" else 10)
            # and komctl status says so on the line, in text and JSON
            check("TLS, partners NOT verified (/DC)" in k.ctl("status")[1], "status names /DC")
            check(k.line("cli")["tls_verify"] is False, "tls_verify false in --json")
    srv.stop()


def test_cycles_past_a_failed_handshake():
    port = free_port()
    bad = OpenSSL("s_server", "-accept", "127.0.0.2:%d" % port, "-cert", p("rogue.pem"), "-key", p("rogue.key"))
    bad.wait("^ACCEPT")
    good = s_server(port, "-cert", p("server.pem"), "-key", p("server.key"))
    conf = client_line(port, 'partner_certs = "%s"; verify_host = false;' % p("ca.pem"), host="127.0.0.2, 127.0.0.1")
    with Komd(conf).start() as k:
        k.wait_log(r"line cli: connect 127\.0\.0\.2:%d: TLS handshake failed" % port)
        expect_data(k, good, 11)
    bad.stop()
    good.stop()


def test_sni():
    port = free_port()
    for host, present in (("localhost", True), ("127.0.0.1", False)):
        srv = OpenSSL("s_server", "-accept", "%d" % port, "-cert", p("server.pem"), "-key", p("server.key"),
                      "-tlsextdebug")
        srv.wait("^ACCEPT")
        with Komd(client_line(port, 'partner_certs = "%s";' % p("ca.pem"), host=host)).start() as k:
            expect_data(k, srv, 12)
            sni = any('extension "server name"' in l for l in srv.lines)
            check(sni == present, "SNI %s for %s:\n%s" % ("sent" if present else "absent", host, srv.text()))
        srv.stop()


def test_psk_both_ways():
    port = free_port()
    for ver in ("-tls1_2", "-tls1_3"):
        # komd client, s_server with the PSK
        srv = s_server(port, "-nocert", "-psk", PSK, ver)
        with Komd(client_line(port, 'psk = "%s";' % PSK)).start() as k:
            expect_data(k, srv, 13)
            k.wait_log(r"TLS established: %s .*PSK identity Client_identity" % ("TLSv1\\.2" if ver == "-tls1_2" else "TLSv1\\.3"))
            check(k.line("cli")["tls"] == "psk", "psk mode")
        srv.stop()
        # komd server, s_client with the PSK: komd's komtext server sends the tag at once
        sport = free_port()
        with Komd(MEM + "lines = (%s);" % server_line(sport, 'psk = "%s";' % PSK)).start() as k:
            cli = OpenSSL("s_client", "-connect", "127.0.0.1:%d" % sport, "-psk", PSK, ver)
            cli.wait(r"^VAL m 0 \d+ 42$")
            k.wait_log(r"line srv: 127\.0\.0\.1:\d+: TLS established: TLSv1\.[23]")
            cli.stop()
    # mismatch: refused, logged with the peer, counted
    srv = s_server(port, "-nocert", "-psk", "00112233445566778899aabbccddeeff")
    with Komd(client_line(port, 'psk = "%s";' % PSK)).start() as k:
        k.wait_log(r"line cli: connect 127\.0\.0\.1:%d: TLS handshake failed" % port)
        check(not connected(k), "PSK mismatch: not connected")
    srv.stop()
    sport = free_port()
    with Komd(MEM + "lines = (%s);" % server_line(sport, 'psk = "text:open sesame"; psk_identity = "plc7";')).start() as k:
        cli = OpenSSL("s_client", "-connect", "127.0.0.1:%d" % sport, "-psk", PSK, "-psk_identity", "plc7")
        k.wait_log(r"line srv: 127\.0\.0\.1:\d+: TLS handshake failed")
        check(k.line("srv")["counters"]["tls_failures"] == 1, "counted on the server")
        cli.stop()
        # the text key, in hex for s_client
        cli = OpenSSL("s_client", "-connect", "127.0.0.1:%d" % sport, "-psk", b"open sesame".hex(),
                      "-psk_identity", "plc7")
        cli.wait(r"^VAL m 0 \d+ 42$")
        cli.stop()


def test_certificates_take_precedence_over_psk():
    port = free_port()
    srv = s_server(port, "-cert", p("server.pem"), "-key", p("server.key"))
    with Komd(client_line(port, 'partner_certs = "%s"; psk = "%s";' % (p("ca.pem"), PSK))).start() as k:
        expect_data(k, srv, 14)
        check(k.line("cli")["tls"] == "certificate", "certificate mode")
    srv.stop()


def test_server_side_and_encrypted_key():
    port = free_port()
    tls = 'my_cert = "%s"; my_key = "%s"; psk = "s3cret";' % (p("server.pem"), p("server.enc.key"))
    with Komd(MEM + "lines = (%s);" % server_line(port, tls)).start() as k:
        cli = OpenSSL("s_client", "-connect", "127.0.0.1:%d" % port, "-CAfile", p("ca.pem"), "-verify_return_error")
        cli.wait(r"Verify return code: 0 \(ok\)")
        cli.wait(r"^VAL m 0 \d+ 42$")
        cli.stop()
    # mutual: partner_certs on the server demands a client certificate
    tls = 'my_cert = "%s"; my_key = "%s"; partner_certs = "%s";' % (p("server.pem"), p("server.key"), p("ca.pem"))
    with Komd(MEM + "lines = (%s);" % server_line(port, tls)).start() as k:
        cli = OpenSSL("s_client", "-connect", "127.0.0.1:%d" % port, "-CAfile", p("ca.pem"))
        k.wait_log(r"line srv: 127\.0\.0\.1:\d+: TLS handshake failed: .*(peer did not return a certificate|certificate required)")
        cli.stop()
        cli = OpenSSL("s_client", "-connect", "127.0.0.1:%d" % port, "-CAfile", p("ca.pem"),
                      "-cert", p("rogue.pem"), "-key", p("rogue.key"))
        k.wait_log(r"line srv: 127\.0\.0\.1:\d+: TLS handshake failed: .*certificate verify failed")
        cli.stop()
        cli = OpenSSL("s_client", "-connect", "127.0.0.1:%d" % port, "-CAfile", p("ca.pem"),
                      "-cert", p("client.pem"), "-key", p("client.key"))
        cli.wait(r"^VAL m 0 \d+ 42$")
        k.wait_log(r"line srv: 127\.0\.0\.1:\d+: TLS established: .*peer /CN=client \(verified\)")
        check(k.line("srv")["counters"]["tls_failures"] == 2, "two failures counted")
        # close_notify when komd closes the session (line stopped by SIGTERM)
        k.stop()
        cli.wait(r"(closed|DONE)")
        cli.stop()


def test_config_check_loads_certificates():
    # (tls keys, the file line the error must name, the message); the file is: 1 control_socket,
    # 2 the line, 3 "tls = {", then one key a line
    cases = (
        ('my_cert = "%s"; my_key = "%s";' % (p("server.pem"), p("client.key")), 5, r"does not match my_cert"),
        ('my_cert = "%s"; my_key = "%s"; psk = "wrong";' % (p("server.pem"), p("server.enc.key")), 5,
         r"my_key: .*(bad decrypt|wrong password)"),
        ('my_cert = "%s"; my_key = "%s";' % (p("server.pem"), p("server.enc.key")), 5, r"its password goes in psk"),
        ('my_cert = "%s"; my_key = "%s";' % (p("old.pem"), p("old.key")), 4, r"my_cert: certificate .* expired"),
        ('partner_certs = "%s, %s";' % (p("ca.pem"), p("nope.pem")), 4, r"cannot read"),
        ('partner_certs = "%s"; ciphers = "NO-SUCH-CIPHER";' % p("ca.pem"), 3, r"ciphers: 'NO-SUCH-CIPHER'"),
    )
    for tls, line, msg in cases:
        k = Komd("lines = ( { name = \"cli\"; protocol = \"komtext-client\"; host = \"127.0.0.1\"; port = 1;\n"
                 "  tls = {\n    %s\n  };\n  stations = (); } );" % tls.replace("; ", ";\n    "))
        r = run_komd("-t", "-c", k.conf)
        out = r.stdout + r.stderr
        check(r.returncode == 1, "komd -t refuses: %s" % tls)
        m = re.search(r"%s:(\d+): .*(%s)" % (re.escape(k.conf), msg), out)
        check(m and int(m.group(1)) == line, "error at line %d for %s: %s" % (line, tls, out))
        shutil.rmtree(k.dir)


def test_protocol_version_and_expiry_warning():
    port = free_port()
    srv = s_server(port, "-cert", p("server.pem"), "-key", p("server.key"), "-tls1_2")
    with Komd(client_line(port, 'partner_certs = "%s"; min_version = "1.3";' % p("ca.pem"))).start() as k:
        k.wait_log(r"line cli: connect 127\.0\.0\.1:%d: TLS handshake failed: .*(protocol version|unsupported protocol)"
                   % port)
    srv.stop()
    srv = s_server(port, "-cert", p("server.pem"), "-key", p("server.key"), "-tls1_2")
    with Komd(client_line(port, 'partner_certs = "%s"; max_version = "1.2";' % p("ca.pem"))).start() as k:
        expect_data(k, srv, 15)
        k.wait_log(r"TLS established: TLSv1\.2 ")
    srv.stop()
    # a certificate that expires in 10 days: a warning at start-up, and marked by komctl certs
    sport = free_port()
    tls = 'my_cert = "%s"; my_key = "%s";' % (p("soon.pem"), p("soon.key"))
    with Komd(MEM + "lines = (%s);" % server_line(sport, tls)).start() as k:
        k.wait_log(r"line srv: tls: my_cert certificate /CN=soon \(.*soon\.pem\) expires in (9|10) days")
        check("WARNING: within 30 days" in k.ctl("certs")[1], "komctl certs marks it")


def test_komctl_certs_and_reload_renewed():
    port = free_port()
    d = tempfile.mkdtemp(prefix="komd-renew-")
    shutil.copy(p("server.pem"), os.path.join(d, "cur.pem"))
    shutil.copy(p("server.key"), os.path.join(d, "cur.key"))
    tls = 'my_cert = "%s/cur.pem"; my_key = "%s/cur.key";' % (d, d)
    with Komd(MEM + "lines = (%s);" % server_line(port, tls)).start() as k:
        rc, out, _ = k.ctl("certs")
        check("line srv: my_cert %s/cur.pem" % d in out and "subject /CN=server" in out and "issuer  /CN=ca" in out
              and re.search(r"expires in 82[45] days", out), out)
        certs = k.ctl("certs", json_out=True)[1]["certs"]
        check(certs[0]["days_left"] >= 824 and certs[0]["role"] == "my_cert", certs)
        old = OpenSSL("s_client", "-connect", "127.0.0.1:%d" % port, "-CAfile", p("ca.pem"))
        old.wait(r"subject=.*CN ?= ?server$")
        old.wait(r"^VAL m 0")
        # renew in place: same file names, new certificate
        shutil.copy(p("server2.pem"), os.path.join(d, "cur.pem"))
        shutil.copy(p("server2.key"), os.path.join(d, "cur.key"))
        rc, out, _ = k.ctl("reload")
        check("1 line kept" in out, out)
        new = OpenSSL("s_client", "-connect", "127.0.0.1:%d" % port, "-CAfile", p("ca.pem"))
        new.wait(r"subject=.*CN ?= ?server2$")
        check(k.line("srv")["sessions"] == 2 and old.proc.poll() is None, "the old connection is kept")
        k.ctl("set", "m", "5")
        old.wait(r"^VAL m 0 \d+ 5$")
        new.wait(r"^VAL m 0 \d+ 5$")
        check("/CN=server2" in k.ctl("certs")[1], "komctl certs shows the renewed certificate")
        old.stop()
        new.stop()
    shutil.rmtree(d)


def test_komd_to_komd_redundant_failover():
    p1, p2 = free_port(), free_port()
    srv_tls = 'my_cert = "%s"; my_key = "%s"; partner_certs = "%s";' % (p("server.pem"), p("server.key"), p("ca.pem"))
    a = Komd(MEM + "lines = (%s);" % server_line(p1, srv_tls)).start()
    b = Komd(MEM.replace("42", "43") + "lines = (%s);" % server_line(p2, srv_tls)).start()
    cli_tls = 'partner_certs = "%s"; my_cert = "%s"; my_key = "%s";' % (p("ca.pem"), p("client.pem"), p("client.key"))
    conf = """lines = ( { name = "cli"; type = "tcp-redundant"; protocol = "komtext-client"; host = "localhost";
  port = %d; connect_timeout = 2; reconnect_delay = 0.2; reconnect_max = 0.5;
  backup = { host = "127.0.0.1"; port = %d; };
  tls = { %s };
  stations = ( { name = "dev"; address = 1; tags = ( { name = "t1"; address = "m"; type = "int"; } ); } ); } );""" % (
        p1, p2, cli_tls)
    with a, b, Komd(conf).start() as c:
        c.until(lambda: c.tag("t1")["value"] == 42, 5, "data from the primary komd over TLS")
        check(c.line("cli")["paths"][0]["via"] == "primary", "via primary")
        a.stop()
        c.until(lambda: c.tag("t1")["value"] == 43 and not c.tag("t1")["invalid"], 10, "failover to the backup komd")
        check(c.line("cli")["paths"][0]["via"] == "backup", "via backup")
        check(c.line("cli")["counters"]["failovers"] == 1, "failover counted")


if __name__ == "__main__":
    tlspki.make(PKI)
    try:
        main([test_client_one_way_and_mutual, test_client_rejects_untrusted_expired_wrong_name, test_dc_accepts_untrusted,
              test_cycles_past_a_failed_handshake, test_sni, test_psk_both_ways,
              test_certificates_take_precedence_over_psk, test_server_side_and_encrypted_key,
              test_config_check_loads_certificates, test_protocol_version_and_expiry_warning,
              test_komctl_certs_and_reload_renewed,
              test_komd_to_komd_redundant_failover])
    finally:
        shutil.rmtree(PKI, ignore_errors=True)
