"""mqtt-client over TLS (issue 13, "TLS for clouds"): mosquitto 2.0 with certificates (the
server verified against our CA, and a client certificate required), with PSK, a server whose
certificate names another host refused; ALPN offered as configured (`alpn` in the tls
section), seen by `openssl s_server -alpn`, since mosquitto has no ALPN. Certificates are
made at test time (tlspki.py)."""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tlspki  # noqa: E402
from komdtest import Komd, check, free_port, main  # noqa: E402
from mqttpeers import Mosquitto, SeqSubscriber, alpn_server, conf, ctl_set, mem_tag, mqtt_line  # noqa: E402

PKI = tempfile.mkdtemp(prefix="mqtt-pki-")
TAGS = mem_tag("t.n")
OUT = """{ name = "out"; address = "komd/none"; tags = (
    { name = "t.n"; address = ""; publish = "tls/n"; qos = 1; retain = false; } ); }"""
PSK = "1a2b3c4d5e6f708192a3b4c5d6e7f801"


def pki(name):
    return os.path.join(PKI, name)


def through(m, tls, sub_tls, what, version="3.1.1"):
    """komd publishes 1..20 over TLS; a paho subscriber (TLS too) gets every one."""
    s = SeqSubscriber(m.port, "tls/n", qos=1, client_id="tls-sub-%d" % m.port, tls=sub_tls)
    line = mqtt_line(m.port, OUT, version=version, extra="keepalive = 10; tls = { %s };" % tls)
    with Komd(conf([line], TAGS)).start() as k:
        k.wait_log(r"MQTT connected", 10)
        check(k.line("mq").get("tls") is not False, "the line says TLS: %s" % k.line("mq"))
        for i in range(1, 21):
            ctl_set(k.sock, "t.n", i)
        check(s.wait_for(1, 20, 10) == [], "%s: all 20 through TLS, got %s" % (what, s.numbers()))
        print("    %s: 20 of 20 delivered" % what)
    s.close()


def test_certificates():
    cert = {"cafile": pki("ca.pem"), "certfile": pki("server.pem"), "keyfile": pki("server.key")}
    sub_tls = {"ca_certs": pki("ca.pem"), "certfile": pki("client.pem"), "keyfile": pki("client.key")}
    with Mosquitto(persist=False, tls=cert) as m:
        through(m, 'partner_certs = "%s";' % pki("ca.pem"), sub_tls, "server certificate verified")
    with Mosquitto(persist=False, tls=dict(cert, require_certificate=True)) as m:
        through(m, 'partner_certs = "%s"; my_cert = "%s"; my_key = "%s";' % (
            pki("ca.pem"), pki("client.pem"), pki("client.key")), sub_tls, "client certificate required", version="5")


def test_wrong_server_refused():
    cert = {"cafile": pki("ca.pem"), "certfile": pki("wrongname.pem"), "keyfile": pki("wrongname.key")}
    with Mosquitto(persist=False, tls=cert) as m:
        line = mqtt_line(m.port, OUT, extra='keepalive = 10; tls = { partner_certs = "%s"; };' % pki("ca.pem"))
        with Komd(conf([line], TAGS)).start() as k:
            k.wait_log(r"line mq: .*(certificate|verify|hostname|host name)", 10)
            check(not [l for l in k.lines if "MQTT connected" in l], "no MQTT session with a server of another name")


def test_psk():
    with Mosquitto(persist=False, tls={"psk": {"komd": PSK, "sub": PSK}}) as m:
        # paho cannot do PSK: the subscriber is mosquitto_sub over PSK
        sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(m.port), "-t", "tls/n", "-q", "1",
                                "--psk", PSK, "--psk-identity", "sub", "-C", "21"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = mqtt_line(m.port, OUT, extra='keepalive = 10; tls = { psk = "%s"; psk_identity = "komd"; };' % PSK)
        with Komd(conf([line], TAGS)).start() as k:
            k.wait_log(r"MQTT connected", 10)
            k.until(lambda: any("sub" in l and "SUBSCRIBE" in l for l in m.lines) or
                    any("Received SUBSCRIBE from" in l for l in m.lines), 10, "mosquitto_sub subscribed")
            for i in range(1, 21):
                ctl_set(k.sock, "t.n", i)
            try:
                out, _ = sub.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                sub.kill()
                out, _ = sub.communicate()
            got = [l for l in out.splitlines() if l.strip().isdigit()]
            check([int(x) for x in got] == list(range(0, 21)), "PSK: the current value 0, then 1..20, got %s" % got)
            print("    PSK (identity komd): 20 of 20 delivered")


def test_alpn():
    port = free_port()
    srv = alpn_server(port, PKI)
    try:
        line = mqtt_line(port, OUT, extra='keepalive = 10; tls = { partner_certs = "%s"; alpn = "x-amzn-mqtt-ca"; };'
                         % pki("ca.pem"))
        with Komd(conf([line], TAGS)).start() as k:
            m = srv.wait(r"ALPN protocols advertised by the client: (.*)", 10)
            check(m.group(1).strip() == "x-amzn-mqtt-ca", "ALPN offered: %s" % m.group(1))
            k.wait_log(r"line mq: ", 5)
    finally:
        srv.stop()


if __name__ == "__main__":
    tlspki.make(PKI)
    try:
        main([test_certificates, test_wrong_server_refused, test_psk, test_alpn])
    finally:
        subprocess.run(["rm", "-rf", PKI])
