"""TLS accepts only what the line is configured for: komd as client and as server, with a
certificate, a PSK, or a certificate whose key is encrypted with psk as its password, over
TLS 1.2 and 1.3, against OpenSSL's s_server and s_client offering the right kind of
authentication, the wrong kind, or none. A PSK line must never settle for a certificate
(TLS 1.3 falls back to one when the server does not know the PSK), and a certificate line
never for a PSK or for nothing. Where komd accepts, the log says what was negotiated."""
import os
import shutil
import tempfile

import tlspki
from komdtest import Komd, check, free_port, main
from tlspki import OpenSSL, s_server

PKI = tempfile.mkdtemp(prefix="komd-pki-")
PSK = "1a2b3c4d5e6f77889900aabbccddeeff"
PW = "s3cret"  # the key password of the certificate+PSK configuration
VERSIONS = ("1.2", "1.3")


def p(name):
    return os.path.join(PKI, name)


# komd's tls sections, per role and configuration
CLIENT_TLS = {
    "cert": 'partner_certs = "%s"; my_cert = "%s"; my_key = "%s";' % (p("ca.pem"), p("client.pem"), p("client.key")),
    "psk": 'psk = "%s";' % PSK,
    "cert+psk": 'partner_certs = "%s"; my_cert = "%s"; my_key = "%s"; psk = "%s";'
                % (p("ca.pem"), p("client.pem"), p("client.enc.key"), PW),
}
SERVER_TLS = {
    "cert": 'partner_certs = "%s"; my_cert = "%s"; my_key = "%s";' % (p("ca.pem"), p("server.pem"), p("server.key")),
    "psk": 'psk = "%s";' % PSK,
    "cert+psk": 'partner_certs = "%s"; my_cert = "%s"; my_key = "%s"; psk = "%s";'
                % (p("ca.pem"), p("server.pem"), p("server.enc.key"), PW),
}


def vflag(ver):
    return "-tls1_2" if ver == "1.2" else "-tls1_3"


def server_partner(offer, ver, cert_kind):
    """s_server arguments for a partner offering the right kind for cert_kind ('cert' or
    'psk'), the wrong kind, or nothing."""
    cert = ["-cert", p("server.pem"), "-key", p("server.key")]
    # the wrong kind for a certificate line: a PSK alone; here even the line's own psk value
    psk = ["-nocert", "-psk", PSK if cert_kind == "psk" else PW.encode().hex()]
    if offer == "nothing":
        # no certificate, no PSK: anonymous suites (TLS 1.2 only; 1.3 has none)
        return ["-nocert", "-cipher", "aNULL:@SECLEVEL=0"] if ver == "1.2" else ["-nocert"]
    if cert_kind == "psk":
        # the impostor of the issue: does not know the PSK but has a certificate that even
        # chains to a CA the operator trusts elsewhere
        return psk if offer == "right" else cert
    return cert + ["-Verify", "1", "-CAfile", p("ca.pem")] if offer == "right" else psk


def client_partner(offer, cert_kind):
    if offer == "nothing":
        return []
    cert = ["-cert", p("client.pem"), "-key", p("client.key"), "-CAfile", p("ca.pem")]
    psk = ["-psk", PSK if cert_kind == "psk" else PW.encode().hex()]
    if cert_kind == "psk":
        return psk if offer == "right" else cert
    return cert if offer == "right" else psk


def client_conf(port, tls):
    return """lines = ( { name = "cli"; protocol = "komtext-client"; host = "127.0.0.1"; port = %d;
  connect_timeout = 2; reconnect_delay = 0.1; reconnect_max = 0.2;
  tls = { %s };
  stations = ( { name = "dev"; address = 1; tags = ( { name = "t1"; address = "a1"; type = "int"; } ); } ); } );""" % (
        port, tls)


def server_conf(port, tls):
    return """tags = ( { name = "m"; type = "int"; initial = 42; } );
lines = ( { name = "srv"; protocol = "komtext-server"; host = "127.0.0.1"; port = %d; connect_timeout = 2;
  tls = { %s };
  stations = ( { name = "pub"; address = 1; tags = ( { name = "m"; address = "m"; } ); } ); } );""" % (port, tls)


def negotiated(cert_kind, ver, who):
    """What komd must log for an accepted session: version, suite, and how the partner
    was authenticated."""
    auth = r"PSK identity Client_identity" if cert_kind == "psk" else r"peer /CN=%s \(verified\)" % who
    return r"TLS established: TLSv%s \S+, %s" % (ver.replace(".", r"\."), auth)


def test_komd_client():
    n = 0
    for conf, tls in CLIENT_TLS.items():
        kind = "psk" if conf == "psk" else "cert"
        port = free_port()
        with Komd(client_conf(port, tls)).start() as k:
            for ver in VERSIONS:
                for offer in ("right", "wrong", "nothing"):
                    n += 1
                    case = "client %s TLS %s partner offers %s" % (conf, ver, offer)
                    mark = len(k.lines)
                    fails = k.line("cli")["counters"]["tls_failures"]
                    srv = s_server(port, vflag(ver), *server_partner(offer, ver, kind))
                    if offer == "right":
                        k.wait_log(negotiated(kind, ver, "server"), since=mark)
                        srv.send("VAL a1 0 0 %d\n" % n)
                        k.until(lambda: k.tag("t1")["value"] == n, 5, "%s: data flows" % case)
                    else:
                        # refused during the handshake, twice (once is no accident)
                        k.until(lambda: k.line("cli")["counters"]["tls_failures"] >= fails + 2, 10,
                                "%s: refused and counted" % case)
                        srv.send("VAL a1 0 0 %d\n" % (1000 + n))
                        text = "\n".join(k.lines[mark:])
                        check("TLS established" not in text, "%s: no session:\n%s" % (case, text))
                        check(k.tag("t1")["value"] != 1000 + n, "%s: no value from the partner" % case)
                    srv.stop()
                    # the next partner starts on a quiet line: wait for komd to notice this one went
                    k.until(lambda: k.line("cli")["paths"][0]["state"] != "connected", 5, "%s: closed" % case)


def test_komd_server():
    for conf, tls in SERVER_TLS.items():
        kind = "psk" if conf == "psk" else "cert"
        port = free_port()
        with Komd(server_conf(port, tls)).start() as k:
            for ver in VERSIONS:
                for offer in ("right", "wrong", "nothing"):
                    case = "server %s TLS %s partner offers %s" % (conf, ver, offer)
                    mark = len(k.lines)
                    fails = k.line("srv")["counters"]["tls_failures"]
                    cli = OpenSSL("s_client", "-connect", "127.0.0.1:%d" % port, vflag(ver),
                                  *client_partner(offer, kind))
                    if offer == "right":
                        cli.wait(r"^VAL m 0 \d+ 42$")
                        k.wait_log(negotiated(kind, ver, "client"), since=mark)
                    else:
                        k.until(lambda: k.line("srv")["counters"]["tls_failures"] >= fails + 1, 10,
                                "%s: refused and counted" % case)
                        cli.proc.wait(5)
                        text = "\n".join(k.lines[mark:])
                        check("TLS established" not in text, "%s: no session:\n%s" % (case, text))
                        check(not any(l.startswith("VAL m") for l in cli.lines), "%s: no data:\n%s" % (case, cli.text()))
                    cli.stop()
                    k.until(lambda: k.line("srv")["sessions"] == 0, 5, "%s: closed" % case)


if __name__ == "__main__":
    tlspki.make(PKI)
    try:
        main([test_komd_client, test_komd_server])
    finally:
        shutil.rmtree(PKI, ignore_errors=True)
