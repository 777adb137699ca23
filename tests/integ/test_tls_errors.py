"""TLS failures say what an operator can act on, in both directions (komd as client and as
server), against OpenSSL's s_server and s_client: a PSK mismatch or an unknown identity, a
certificate expired on a date, no client certificate, plain TCP on a TLS line, and TLS
from a plain line (which used to read as a bad frame, "MBAP length 514")."""
import os
import shutil
import socket
import tempfile

import tlspki
from komdtest import Komd, check, free_port, main, run_komd, serve
from tlspki import OpenSSL, s_server

PKI = tempfile.mkdtemp(prefix="komd-pki-")
PSK = "1a2b3c4d5e6f77889900aabbccddeeff"
OTHER = "00112233445566778899aabbccddeeff"
MEM = 'tags = ( { name = "m"; type = "int"; initial = 42; } );\n'


def p(name):
    return os.path.join(PKI, name)


def server_conf(port, tls, protocol="komtext-server", stations=None):
    st = stations or '( { name = "pub"; address = 1; tags = ( { name = "m"; address = "m"; } ); } )'
    return MEM + """lines = ( { name = "srv"; protocol = "%s"; host = "127.0.0.1"; port = %d; connect_timeout = 2;
  %s stations = %s; } );""" % (protocol, port, ("tls = { %s };" % tls) if tls else "", st)


def client_conf(port, tls, period=""):
    return """lines = ( { name = "cli"; protocol = "komtext-client"; host = "127.0.0.1"; port = %d;
  connect_timeout = 2; reconnect_delay = 0.2; reconnect_max = 0.5;
  %s stations = ( { name = "dev"; address = 1; %s tags = ( { name = "t1"; address = "a1"; type = "int"; } ); } ); } );""" % (
        port, ("tls = { %s };" % tls) if tls else "", period)


def s_client(port, *args):
    return OpenSSL("s_client", "-connect", "127.0.0.1:%d" % port, *args)


def test_psk_mismatch_and_unknown_identity():
    for ver in ("-tls1_2", "-tls1_3"):
        port = free_port()
        srv = s_server(port, "-nocert", "-psk", OTHER, ver)
        with Komd(client_conf(port, 'psk = "%s";' % PSK)).start() as k:
            k.wait_log(r"line cli: connect 127\.0\.0\.1:%d: TLS handshake failed: PSK mismatch \(or unknown identity\)" % port)
        srv.stop()
        sport = free_port()
        with Komd(server_conf(sport, 'psk = "%s";' % PSK)).start() as k:
            cli = s_client(sport, "-psk", OTHER, ver)
            k.wait_log(r"line srv: 127\.0\.0\.1:\d+: TLS handshake failed: PSK mismatch \(or unknown identity\)")
            cli.stop()
            cli = s_client(sport, "-psk", PSK, "-psk_identity", "intruder", ver)
            k.wait_log(r"line srv: 127\.0\.0\.1:\d+: TLS handshake failed: PSK mismatch .*unknown PSK identity 'intruder'")
            cli.stop()


def test_expired_certificate_names_its_date():
    port = free_port()
    srv = s_server(port, "-cert", p("old.pem"), "-key", p("old.key"))
    with Komd(client_conf(port, 'partner_certs = "%s";' % p("ca.pem"))).start() as k:
        k.wait_log(r"line cli: connect 127\.0\.0\.1:%d: TLS handshake failed: .*certificate has expired "
                   r"\(/CN=old: certificate expired on 2021-01-01 00:00 UTC\)" % port)
    srv.stop()
    sport = free_port()
    tls = 'my_cert = "%s"; my_key = "%s"; partner_certs = "%s";' % (p("server.pem"), p("server.key"), p("ca.pem"))
    with Komd(server_conf(sport, tls)).start() as k:
        cli = s_client(sport, "-cert", p("old.pem"), "-key", p("old.key"), "-CAfile", p("ca.pem"))
        k.wait_log(r"line srv: 127\.0\.0\.1:\d+: TLS handshake failed: .*\(/CN=old: certificate expired on 2021-01-01")
        cli.stop()


def test_no_client_certificate():
    sport = free_port()
    tls = 'my_cert = "%s"; my_key = "%s"; partner_certs = "%s";' % (p("server.pem"), p("server.key"), p("ca.pem"))
    with Komd(server_conf(sport, tls)).start() as k:
        for ver in ("-tls1_2", "-tls1_3"):
            mark = len(k.lines)
            cli = s_client(sport, ver, "-CAfile", p("ca.pem"))
            k.wait_log(r"line srv: 127\.0\.0\.1:\d+: TLS handshake failed: no client certificate \(partner_certs requires one\)",
                       since=mark)
            cli.stop()
    port = free_port()
    srv = s_server(port, "-tls1_2", "-cert", p("server.pem"), "-key", p("server.key"), "-Verify", "1",
                   "-CAfile", p("ca.pem"), "-verify_return_error")
    with Komd(client_conf(port, 'partner_certs = "%s";' % p("ca.pem"))).start() as k:
        k.wait_log(r"line cli: connect 127\.0\.0\.1:%d: TLS handshake failed: the server requires a client certificate"
                   % port)
    srv.stop()


def test_plain_tcp_on_a_tls_line():
    sport = free_port()
    tls = 'my_cert = "%s"; my_key = "%s";' % (p("server.pem"), p("server.key"))
    with Komd(server_conf(sport, tls)).start() as k:
        s = socket.create_connection(("127.0.0.1", sport))
        s.sendall(b"PING 1\n")
        k.wait_log(r"line srv: 127\.0\.0\.1:\d+: TLS handshake failed: plain TCP on a TLS line")
        s.close()
    # komd's TLS client meets a plain server that talks first
    def talk(c):
        try:
            c.sendall(b"VAL a1 0 0 1\n" * 20)
        except OSError:
            pass
        c.close()
    ls, port = serve(talk)
    with Komd(client_conf(port, 'partner_certs = "%s";' % p("ca.pem"))).start() as k:
        k.wait_log(r"line cli: connect 127\.0\.0\.1:%d: TLS handshake failed: the partner answered without TLS" % port)
    ls.close()


def test_tls_from_a_plain_line():
    # a TLS client on komd's plain Modbus server: named as such, not "MBAP length 514"
    sport = free_port()
    st = '( { name = "u1"; address = 1; tags = ( { name = "m"; address = "3.0"; } ); } )'
    with Komd(server_conf(sport, "", "modbus-server", st)).start() as k:
        cli = s_client(sport)
        k.wait_log(r"line srv: 127\.0\.0\.1:\d+: TLS from a plain line \(the client speaks TLS")
        check("MBAP" not in k.log(), "not called a bad MBAP header:\n%s" % k.log())
        check(k.line("srv")["counters"]["tls_failures"] == 1 and k.line("srv")["counters"]["protocol_errors"] == 0,
              "counted as a TLS failure")
        cli.stop()
    # komd's plain client polls a TLS server that answers plain bytes with a TLS alert
    # (protocol_version, record version 3.3), as TLS Modbus servers do: named, not a bad frame
    def alert(c):
        try:
            c.recv(100)
            c.sendall(bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46]))
        except OSError:
            pass
        c.close()
    ls, port = serve(alert)
    with Komd(client_conf(port, "", "period = 0.2;")).start() as k:
        k.wait_log(r"line cli: 127\.0\.0\.1:%d: the partner answered with TLS \(a TLS server on a plain line\?" % port)
    ls.close()


def test_config_check_lists_every_error():
    """komd -t: every error of the file in one run, the TLS files' too, and none that only
    follows from another (a missing type used to add "a bool tag cannot live at f3.0")."""
    conf = """lines = (
  { name = "a"; protocol = "komtext-client"; host = "127.0.0.1"; port = 1;
    tls = { my_cert = "%s"; my_key = "%s"; };
    stations = (); },
  { name = "b"; protocol = "modbus-client"; host = "127.0.0.1"; port = 70000;
    stations = ( { name = "s"; address = 1; period = 1; tags = (
      { name = "x"; address = "f3.0"; } ); } ); } );
""" % (p("server.pem"), p("client.key"))
    k = Komd(conf)
    r = run_komd("-t", "-c", k.conf)
    out = r.stdout + r.stderr
    check(r.returncode == 1, "refused: %s" % out)
    check("my_key: '%s' does not match my_cert" % p("client.key") in out, "the TLS error: %s" % out)
    check("'port' must be between 1 and 65535" in out, "the schema error: %s" % out)
    check("missing required key 'type'" in out, "the missing type: %s" % out)
    check("cannot live" not in out and "bool" not in out, "nothing that follows from the missing type: %s" % out)
    shutil.rmtree(k.dir)


if __name__ == "__main__":
    tlspki.make(PKI)
    try:
        main([test_psk_mismatch_and_unknown_identity, test_expired_certificate_names_its_date, test_no_client_certificate,
              test_plain_tcp_on_a_tls_line, test_tls_from_a_plain_line, test_config_check_lists_every_error])
    finally:
        shutil.rmtree(PKI, ignore_errors=True)
