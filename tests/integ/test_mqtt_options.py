"""mqtt-client options (issue 13, Configuration; names from mqtt-spec.md), each seen from a
peer: the CONNECT fields in the scripted broker (client_id and its default, username,
password and password_file, clean_session, session_expiry, keepalive, receive_maximum,
topic_alias_maximum, max_packet_size, komd's own will), and through mosquitto with a paho
subscriber: deadband, period, retain, batch_ms (one JSON array), a station's stale_timeout
and the device's will (station will_topic / will_payload)."""
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from komdtest import WAIT, Komd, check, main  # noqa: E402
from mqttpeers import Mosquitto, ScriptedBroker, SeqSubscriber, conf, ctl_set, mem_tag, mqtt_line, pub  # noqa: E402

OUT = """{ name = "out"; address = "komd/none"; tags = (
    { name = "o.n"; address = ""; publish = "opt/n"; qos = 1; retain = false; } ); }"""


def connect_of(extra, version="3.1.1"):
    b = ScriptedBroker()
    with Komd(conf([mqtt_line(b.port, OUT, version=version, extra=extra)], mem_tag("o.n"))).start() as k:
        k.wait_log(r"MQTT connected")
        c = b.wait_packet("connect")[0]
    b.stop()
    return c, k


def test_connect_fields():
    c, _ = connect_of("")
    check(c["clientId"] == "komd-%s-mq" % socket.gethostname(), "default client_id komd-HOSTNAME-LINE: %s" % c)
    check(c["clean"] is False and c["keepalive"] == 60 and c["protocolVersion"] == 4,
          "3.1.1 defaults: persistent session, keepalive 60: %s" % c)
    check(not c.get("username") and not c.get("will"), "no user name, no will by default: %s" % c)
    c, _ = connect_of('client_id = "plant-1"; username = "op"; password = "s3cret"; clean_session = true; '
                      'keepalive = 7; will_topic = "komd/plant/status"; will_payload = "offline"; will_qos = 2; '
                      'will_retain = false;')
    check(c["clientId"] == "plant-1" and c["username"] == "op" and c["password"] == "s3cret", "credentials: %s" % c)
    check(c["clean"] is True and c["keepalive"] == 7, "clean_session, keepalive: %s" % c)
    w = c.get("will") or {}
    check(w.get("topic") == "komd/plant/status" and w.get("payload") == "offline" and w.get("qos") == 2
          and w.get("retain") is False, "komd's will: %s" % w)
    # password_file: the first line of the file
    b = ScriptedBroker()
    k = Komd("")
    with open(os.path.join(k.dir, "pw"), "w") as f:
        f.write("from-file\nsecond line\n")
    k.write_conf(conf([mqtt_line(b.port, OUT, extra='username = "op"; password_file = "%s";'
                                 % os.path.join(k.dir, "pw"))], mem_tag("o.n")))
    with k.start():
        k.wait_log(r"MQTT connected")
        c = b.wait_packet("connect")[0]
        check(c.get("password") == "from-file", "password_file's first line: %s" % c.get("password"))
    b.stop()
    print("    client_id default, credentials, clean_session, keepalive, will, password_file")


def test_connect_v5_properties():
    c, _ = connect_of("", version="5")
    p = c.get("properties") or {}
    check(c["protocolVersion"] == 5 and c["clean"] is False, "v5 CONNECT, Clean Start 0: %s" % c)
    check(p.get("sessionExpiryInterval") == 3600, "session_expiry default 3600 with clean_session false: %s" % p)
    check(p.get("receiveMaximum") in (None, 65535) and not p.get("topicAliasMaximum"),
          "defaults: Receive Maximum 65535 (may be left out), no topic aliases: %s" % p)
    c, _ = connect_of("session_expiry = 120; receive_maximum = 10; topic_alias_maximum = 4; max_packet_size = 4096;",
                      version="5")
    p = c.get("properties") or {}
    check(p.get("sessionExpiryInterval") == 120 and p.get("receiveMaximum") == 10 and p.get("topicAliasMaximum") == 4
          and p.get("maximumPacketSize") == 4096, "CONNECT properties from the line keys: %s" % p)
    c, _ = connect_of("clean_session = true;", version="5")
    check(c["clean"] is True and not (c.get("properties") or {}).get("sessionExpiryInterval"),
          "clean_session true: Clean Start 1, session expiry 0: %s" % c)


def test_deadband_period_retain_batch():
    with Mosquitto(persist=False) as m:
        s = SeqSubscriber(m.port, "opt/#", qos=1, client_id="opt-sub", parse=lambda p: p)
        tags = ", ".join([mem_tag("o.f", "float", 0), mem_tag("o.p"), mem_tag("o.b1"), mem_tag("o.b2")])
        st = """{ name = "out"; address = "komd/none"; tags = (
            { name = "o.f"; address = ""; publish = "opt/f"; deadband = 1.0; retain = false; },
            { name = "o.p"; address = ""; publish = "opt/p"; period = 1; retain = true; } ); },
          { name = "batch"; address = "komd/none2"; payload = "json"; batch_ms = 500; tags = (
            { name = "o.b1"; address = ""; publish = "opt/batch"; retain = false; },
            { name = "o.b2"; address = ""; publish = "opt/batch"; retain = false; } ); }"""
        with Komd(conf([mqtt_line(m.port, st, extra="keepalive = 10;")], tags)).start() as k:
            k.wait_log(r"MQTT connected")

            def on(topic):
                return [r for r in s.raw if r[0] == topic]
            WAIT.until(lambda: on("opt/f") and on("opt/p"), 5, "current values")
            for v in ("0.5", "0.9", "1.2", "1.7", "2.3", "0.2"):
                ctl_set(k.sock, "o.f", v)
            WAIT.until(lambda: len(on("opt/f")) >= 4, 5, "changes beyond the deadband")
            got = [float(r[1]) for r in on("opt/f")]
            # checked at the end, so that period, retain and batch_ms are seen either way
            deadband_ok = got == [0.0, 1.2, 2.3, 0.2]
            # period 1: published again without a change, retained
            n = len(on("opt/p"))
            t0 = time.monotonic()
            WAIT.until(lambda: len(on("opt/p")) >= n + 2, 4, "two periodic publishes")
            check(time.monotonic() - t0 >= 1.0, "not faster than the period")
            late = SeqSubscriber(m.port, "opt/#", qos=1, client_id="opt-late", parse=lambda p: p)
            WAIT.until(lambda: late.raw, 5, "retained values for a late subscriber")
            check({r[0] for r in late.raw if r[3]} == {"opt/p"}, "only retain = true tags retained: %s"
                  % [(r[0], r[3]) for r in late.raw])
            late.close()
            # batch_ms: changes of one station within 500 ms as one JSON array per topic
            n = len(on("opt/batch"))
            ctl_set(k.sock, "o.b1", 11)
            ctl_set(k.sock, "o.b2", 22)
            ctl_set(k.sock, "o.b1", 12)
            WAIT.until(lambda: len(on("opt/batch")) > n, 5, "the batch")
            t = time.monotonic()
            WAIT.until(lambda: time.monotonic() - t > 0.7, 1, "")  # nothing else may follow
            msgs = on("opt/batch")[n:]
            check(len(msgs) == 1, "one message for the batch: %s" % msgs)
            arr = json.loads(msgs[0][1])
            check(isinstance(arr, list) and [(o["name"], o["value"]) for o in arr] == [("o.b1", 11), ("o.b2", 22),
                                                                                      ("o.b1", 12)],
                  "a JSON array of the changes in order: %s" % arr)
            check(deadband_ok, "deadband 1.0 from the last published value (0.0 at the connection), "
                  "0.5 0.9 1.2 1.7 2.3 0.2 set: expected 0.0 1.2 2.3 0.2, published %s" % got)
        s.close()


def test_stale_timeout_and_device_will():
    with Mosquitto(persist=False) as m:
        st = """{ name = "dev"; address = "dev/1/#"; stale_timeout = 1; will_topic = "dev/1/status";
                  will_payload = "offline"; tags = ( { name = "d.v"; address = "T=dev/1/v"; type = "int"; } ); }"""
        with Komd(conf([mqtt_line(m.port, st, extra="keepalive = 10;")])).start() as k:
            k.wait_log(r"station dev: communication ok")
            pub(m.port, "dev/1/v", "5")
            k.until(lambda: k.tag("d.v")["value"] == 5 and not k.tag("d.v")["invalid"], 5, "value")
            t0 = time.monotonic()
            k.until(lambda: k.tag("d.v")["invalid"], 4, "invalid after stale_timeout 1 s")
            check(time.monotonic() - t0 >= 0.5, "not long before the stale timeout")
            pub(m.port, "dev/1/v", "6")
            k.until(lambda: k.tag("d.v")["value"] == 6 and not k.tag("d.v")["invalid"], 5, "valid again")
            pub(m.port, "dev/1/status", "online")
            pub(m.port, "dev/1/status", "offline")
            k.until(lambda: k.tag("d.v")["invalid"], 3, "the device's will makes its tags invalid")
            k.until(lambda: [s for s in k.line("mq")["stations"] if s["name"] == "dev"][0]["state"] == "error", 3,
                    "station in communication error")
            pub(m.port, "dev/1/v", "7")
            k.until(lambda: k.tag("d.v")["value"] == 7 and not k.tag("d.v")["invalid"], 5, "the next message heals")


if __name__ == "__main__":
    main([test_connect_fields, test_connect_v5_properties, test_deadband_period_retain_batch,
          test_stale_timeout_and_device_will])
