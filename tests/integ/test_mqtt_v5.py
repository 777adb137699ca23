"""mqtt-client, MQTT 5 features that mosquitto 2.0 cannot show, against the scripted broker
(tests/peers/node/broker.js on npm mqtt-packet) and against mosquitto: topic aliases both ways
(kept per connection, never across one), the broker's Maximum Packet Size (an oversize message
dropped, counted, logged, no reconnect), Maximum QoS, Server Keep Alive (scripted, and
mosquitto's max_keepalive 10), No Local, Response Topic and Correlation Data on commands."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from komdtest import WAIT, Komd, check, main  # noqa: E402
from mqttpeers import Mosquitto, ScriptedBroker, SeqSubscriber, conf, ctl_set, mem_tag, mqtt_line  # noqa: E402

TAGS = ", ".join([mem_tag("v.a"), mem_tag("v.b"), mem_tag("v.q2"), mem_tag("v.s", "string", '""')])
OUT = """{ name = "out"; address = "komd/none"; tags = (
    { name = "v.a"; address = ""; publish = "out/a"; qos = 1; retain = false; },
    { name = "v.b"; address = ""; publish = "out/b"; qos = 1; retain = false; },
    { name = "v.q2"; address = ""; publish = "out/q2"; qos = 2; retain = false; },
    { name = "v.s"; address = ""; publish = "out/s"; qos = 1; retain = false; } ); }"""
IN = """{ name = "in"; address = "in/#"; qos = 1; tags = (
    { name = "v.in"; address = "T=in/v"; type = "int"; } ); }"""


def counters(k):
    return k.line("mq").get("protocol_counters") or {}


def line(b, extra=""):
    return mqtt_line(b.port, OUT + ", " + IN, version="5", extra="keepalive = 30; reply_timeout = 5; " + extra)


def test_aliases_komd_receives():
    b = ScriptedBroker()
    with Komd(conf([line(b, "topic_alias_maximum = 5;")], TAGS)).start() as k:
        k.wait_log(r"MQTT connected \(5")
        c = b.wait_packet("connect")[0]
        check(c["properties"].get("topicAliasMaximum") == 5, "CONNECT announces Topic Alias Maximum 5: %s" % c)
        b.wait_packet("subscribe")
        b.publish("in/v", "1", qos=1, mid=10, topicAlias=3)
        k.until(lambda: k.tag("v.in")["value"] == 1, 5, "value with topic and alias 3")
        b.publish("", "2", qos=1, mid=11, topicAlias=3)
        k.until(lambda: k.tag("v.in")["value"] == 2, 5, "value by alias 3 alone")
        # a new connection: alias 3 is unknown there (never across connections)
        n = len(k.lines)
        b.close_conns()
        k.wait_log(r"MQTT connected \(5", 10, since=n)
        WAIT.until(lambda: b.conns() >= 2 and b.packets("subscribe", 2), 5, "second SUBSCRIBE")
        b.publish("", "3", qos=1, mid=12, topicAlias=3)
        k.wait_log(r"protocol error: PUBLISH: topic alias 3 ", 5, since=n)
        check(k.tag("v.in")["value"] == 2, "an alias of the old connection is not used: %s" % k.tag("v.in"))
        # komd closes (4.13.1) after a DISCONNECT saying Topic Alias invalid (0x94)
        WAIT.until(lambda: [e for e in b.events("close") if e["conn"] == 2], 5, "connection 2 closed")
        d = b.packets("disconnect", 2)
        check(d and d[0].get("reasonCode") == 0x94, "DISCONNECT with Topic Alias invalid (0x94): %s" % d)
        # an alias above the maximum is a protocol error too
        WAIT.until(lambda: b.conns() >= 3 and b.packets("subscribe", 3), 10, "third connection")
        n = len(k.lines)
        b.publish("in/v", "4", qos=1, mid=13, topicAlias=6)
        k.wait_log(r"protocol error: PUBLISH: .*alias", 5, since=n)
        WAIT.until(lambda: [e for e in b.events("close") if e["conn"] == 3], 5, "connection 3 closed")
        d3 = b.packets("disconnect", 3)
        check(d3 and d3[0].get("reasonCode") == 0x94, "alias 6 > 5: DISCONNECT 0x94: %s" % d3)
        check(k.tag("v.in")["value"] == 2, "alias 6 > topic_alias_maximum 5 not taken")
        print("    alias 3 used on its connection; unknown there after a reconnection and alias 6 > 5: "
              "DISCONNECT 0x94, then the close")
    b.stop()


def test_receive_maximum_komd_announces():
    """receive_maximum = 2: two QoS 2 messages awaiting PUBREL are the most the broker may
    send; a third QoS 1/2 PUBLISH is answered with DISCONNECT Receive Maximum exceeded (0x93)
    before the close (3.3.4); a QoS 2 PUBLISH again with DUP of an open id is no new one."""
    b = ScriptedBroker()
    with Komd(conf([line(b, "receive_maximum = 2;")], TAGS)).start() as k:
        k.wait_log(r"MQTT connected \(5")
        c = b.wait_packet("connect")[0]
        check(c["properties"].get("receiveMaximum") == 2, "CONNECT announces Receive Maximum 2: %s" % c)
        b.wait_packet("subscribe")
        b.set(ack=False)          # our PUBREL held: the two QoS 2 exchanges stay open
        b.publish("in/v", "1", qos=2, mid=20)
        b.publish("in/v", "2", qos=2, mid=21)
        WAIT.until(lambda: len(b.packets("pubrec")) >= 2, 5, "PUBREC 20 and 21")
        b.send({"cmd": "publish", "topic": "in/v", "payload": "2", "qos": 2, "messageId": 21, "dup": True,
                "retain": False})
        WAIT.until(lambda: len(b.packets("pubrec")) >= 3, 5, "PUBREC 21 again (a duplicate is not a new one)")
        check(not b.packets("disconnect", 1), "no DISCONNECT for a duplicate: %s" % b.packets("disconnect", 1))
        n = len(k.lines)
        b.publish("in/v", "3", qos=1, mid=22)
        k.wait_log(r"protocol error: PUBLISH: packet id 22 over the Receive Maximum 2", 5, since=n)
        WAIT.until(lambda: [e for e in b.events("close") if e["conn"] == 1], 5, "connection 1 closed")
        d = b.packets("disconnect", 1)
        check(d and d[0].get("reasonCode") == 0x93, "DISCONNECT with Receive Maximum exceeded (0x93): %s" % d)
        check(k.tag("v.in")["value"] == 2, "the third message not taken: %s" % k.tag("v.in"))
        print("    receive_maximum 2: a third unanswered PUBLISH -> DISCONNECT 0x93")
    b.stop()


def test_max_packet_size_komd_announces():
    """max_packet_size = 200: a packet within it is taken; a 5000-byte PUBLISH closes the
    connection after at most 200 bytes buffered (3.1.2.11.4), its value not taken, after a
    DISCONNECT 0x95 (a broken Remaining Length: 0x81); MQTT 3.1.1 closes without one."""
    b = ScriptedBroker()
    with Komd(conf([line(b, "max_packet_size = 200;")], TAGS)).start() as k:
        k.wait_log(r"MQTT connected \(5")
        b.wait_packet("subscribe")
        b.publish("in/v", "5", qos=1, mid=30, userProperties={"pad": "x" * 150})
        k.until(lambda: k.tag("v.in")["value"] == 5, 5, "a 160-byte PUBLISH taken")
        n = len(k.lines)
        b.publish("in/v", "6", qos=1, mid=31, userProperties={"pad": "x" * 5000})
        k.wait_log(r"protocol error: no frame within the 200 bytes a frame may have on this connection", 5, since=n)
        WAIT.until(lambda: [e for e in b.events("close") if e["conn"] == 1], 5, "connection 1 closed")
        check(not [p for p in b.packets("puback", 1) if p["messageId"] == 31], "the oversize PUBLISH not acknowledged")
        check(k.tag("v.in")["value"] == 5, "the oversize value not taken: %s" % k.tag("v.in"))
        d = b.packets("disconnect", 1)
        check([x.get("reasonCode") for x in d] == [0x95], "DISCONNECT 0x95 Packet too large before the close "
              "(3.1.2.11.4): %s" % d)
        # a Remaining Length of five bytes (1.5.5: four at most): DISCONNECT 0x81 Malformed Packet
        WAIT.until(lambda: b.conns() >= 2 and b.packets("subscribe", 2), 10, "second connection")
        n = len(k.lines)
        b.send_raw("30ffffffff7f")
        k.wait_log(r"protocol error: .*[Rr]emaining [Ll]ength", 5, since=n)
        WAIT.until(lambda: [e for e in b.events("close") if e["conn"] == 2], 5, "connection 2 closed")
        d = b.packets("disconnect", 2)
        check([x.get("reasonCode") for x in d] == [0x81], "DISCONNECT 0x81 Malformed Packet: %s" % d)
    b.stop()
    # MQTT 3.1.1 has no reason codes: the same packets close the connection without a DISCONNECT
    b = ScriptedBroker()
    l311 = mqtt_line(b.port, OUT + ", " + IN, extra="keepalive = 30; reply_timeout = 5; max_packet_size = 200;")
    with Komd(conf([l311], TAGS)).start() as k:
        k.wait_log(r"MQTT connected \(3\.1\.1")
        b.wait_packet("subscribe")
        n = len(k.lines)
        b.send({"cmd": "publish", "topic": "in/v", "payload": "7" * 5000, "qos": 1, "messageId": 32,
                "retain": False, "dup": False})
        k.wait_log(r"protocol error: no frame within the 200 bytes", 5, since=n)
        WAIT.until(lambda: [e for e in b.events("close") if e["conn"] == 1], 5, "3.1.1 connection 1 closed")
        WAIT.until(lambda: b.conns() >= 2 and b.packets("subscribe", 2), 10, "3.1.1 second connection")
        n = len(k.lines)
        b.send_raw("30ffffffff7f")
        k.wait_log(r"protocol error: .*[Rr]emaining [Ll]ength", 5, since=n)
        WAIT.until(lambda: [e for e in b.events("close") if e["conn"] == 2], 5, "3.1.1 connection 2 closed")
        check(not b.packets("disconnect"), "3.1.1: no DISCONNECT from a client for a protocol error: %s"
              % b.packets("disconnect"))
    b.stop()
    print("    max_packet_size 200: 160 bytes taken, 5000 bytes: DISCONNECT 0x95 and closed; a 5-byte "
          "Remaining Length: DISCONNECT 0x81; with 3.1.1 both closed without a DISCONNECT")


def test_aliases_komd_sends():
    b = ScriptedBroker(connack={"properties": {"topicAliasMaximum": 2}})
    with Komd(conf([line(b)], TAGS)).start() as k:
        k.wait_log(r"MQTT connected \(5")
        for i in range(1, 6):
            ctl_set(k.sock, "v.a", i)
            ctl_set(k.sock, "v.b", i)
            ctl_set(k.sock, "v.q2", i)
        WAIT.until(lambda: len([p for p in b.packets("publish") if p["payload"] == "5"]) >= 3, 5, "the publishes")
        known, used = {}, 0
        for p in b.packets("publish", 1):
            a = (p.get("properties") or {}).get("topicAlias")
            check(a is None or 1 <= a <= 2, "alias within the broker's maximum 2: %s" % p)
            if a and p["topic"]:
                known[a] = p["topic"]
            elif a:
                check(a in known, "alias %d used before it was set on this connection" % a)
                used += 1
            else:
                check(p["topic"], "a PUBLISH without topic and alias")
        check(used > 0, "komd used the broker's topic aliases (none used)")
        n = len(k.lines)
        b.close_conns()
        k.wait_log(r"MQTT connected \(5", 10, since=n)
        ctl_set(k.sock, "v.a", 99)
        WAIT.until(lambda: [p for p in b.packets("publish", 2) if p["payload"] == "99"], 5, "publish on conn 2")
        first = [p for p in b.packets("publish", 2) if (p.get("properties") or {}).get("topicAlias")]
        check(not first or first[0]["topic"], "the first aliased PUBLISH of a new connection names its topic")
        print("    %d publishes by alias alone; aliases set again on the new connection" % used)
    b.stop()
    # against mosquitto (topic_alias_maximum 10 by default): the subscriber sees the topics
    with Mosquitto(persist=False) as m:
        s = SeqSubscriber(m.port, "out/a", qos=1, client_id="alias-sub")
        with Komd(conf([mqtt_line(m.port, OUT, version="5", extra="keepalive = 30;")], TAGS)).start() as k:
            k.wait_log(r"MQTT connected \(5")
            for i in range(1, 51):
                ctl_set(k.sock, "v.a", i)
            check(s.wait_for(1, 50, 10) == [], "mosquitto delivers all 50 on out/a")
            check(all(r[0] == "out/a" for r in s.raw), "topics intact")
        s.close()


def test_maximum_packet_size():
    b = ScriptedBroker(connack={"properties": {"maximumPacketSize": 100}})
    with Komd(conf([line(b)], TAGS)).start() as k:
        k.wait_log(r"MQTT connected \(5")
        ctl_set(k.sock, "v.s", "x" * 300)
        ctl_set(k.sock, "v.a", 77)
        WAIT.until(lambda: [p for p in b.packets("publish") if p["payload"] == "77"], 5, "the small message")
        big = [p for p in b.packets() if p["_bytes"] > 100]
        check(not big, "no packet over the broker's Maximum Packet Size: %s" % [(p["cmd"], p["_bytes"]) for p in big])
        k.wait_log(r"Maximum Packet", 5)
        check(counters(k).get("mqtt_oversize_dropped_total") == 1, "counted: %s" % counters(k))
        check(b.conns() == 1, "no reconnection: %d" % b.conns())
    b.stop()


def test_maximum_qos_and_server_keepalive():
    b = ScriptedBroker(connack={"properties": {"maximumQoS": 1, "serverKeepAlive": 1}})
    with Komd(conf([line(b)], TAGS)).start() as k:
        k.wait_log(r"MQTT connected \(5")
        t0 = time.monotonic()
        ctl_set(k.sock, "v.q2", 5)
        WAIT.until(lambda: [p for p in b.packets("publish") if p["topic"] == "out/q2" and p["payload"] == "5"], 5, "q2")
        check(all(p["qos"] <= 1 for p in b.packets("publish")), "QoS capped at the broker's Maximum QoS 1: %s"
              % [(p["topic"], p["qos"]) for p in b.packets("publish")])
        b.wait_packet("pingreq", 2, 4)
        check(time.monotonic() - t0 < 3.5, "PINGREQ every Server Keep Alive (1 s), not keepalive (30 s)")
    b.stop()


def test_mosquitto_max_keepalive():
    """mosquitto with max_keepalive 10 (its least) answers komd's keepalive 60 (v5) with
    Server Keep Alive 10: komd's first PINGREQ comes within 10 s, not 60."""
    with Mosquitto(persist=False, max_keepalive=10) as m:
        with Komd(conf([mqtt_line(m.port, OUT, version="5", extra="keepalive = 60;")], TAGS)).start() as k:
            k.wait_log(r"MQTT connected \(5")
            t0 = time.monotonic()
            WAIT.until(lambda: [l for l in m.lines if "Received PINGREQ from komd" in l], 12,
                       "a PINGREQ from komd in mosquitto's log")
            dt = time.monotonic() - t0
            check(dt <= 10.5, "first PINGREQ after %.1f s: keepalive 60 overridden by Server Keep Alive 10" % dt)
            print("    mosquitto max_keepalive 10: komd's first PINGREQ after %.1f s" % dt)


def test_command_no_local():
    b = ScriptedBroker()
    st = """{ name = "out"; address = "komd/none"; tags = (
        { name = "v.a"; address = ""; publish = "out/a"; command = "cmd/a"; direction = "inout"; } ); }"""
    with Komd(conf([mqtt_line(b.port, st, version="5", extra="keepalive = 30;")], TAGS)).start() as k:
        k.wait_log(r"MQTT connected \(5")
        subs = [s for p in b.wait_packet("subscribe") for s in p["subscriptions"]]
        c = [s for s in subs if s["topic"] == "cmd/a"]
        check(c and c[0]["nl"], "command subscription with No Local: %s" % subs)
        b.publish("cmd/a", "8", qos=1, mid=40, responseTopic="app/r", correlationData="c-1")
        WAIT.until(lambda: [p for p in b.packets("publish") if p["topic"] == "app/r"], 5, "response")
        r = [p for p in b.packets("publish") if p["topic"] == "app/r"][0]
        check(r["properties"].get("correlationData") == "c-1", "Correlation Data returned: %s" % r)
        k.until(lambda: k.tag("v.a")["value"] == 8, 5, "written")
    b.stop()


if __name__ == "__main__":
    main([test_aliases_komd_receives, test_receive_maximum_komd_announces,
          test_max_packet_size_komd_announces, test_aliases_komd_sends, test_maximum_packet_size,
          test_maximum_qos_and_server_keepalive, test_mosquitto_max_keepalive, test_command_no_local])
