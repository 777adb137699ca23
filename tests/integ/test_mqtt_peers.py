"""The MQTT test peers themselves, without komd (mqttpeers.py): mosquitto's store survives
SIGKILL with a persistent subscriber's queued messages, mosquitto_pub/sub -V 5, the scripted
broker on npm mqtt-packet (topic alias, CONNACK properties, held acknowledgements) read by
paho, and tshark decoding MQTT on a free port. If these fail, the test_mqtt_* results say
nothing about komd."""
import os
import sys

import paho.mqtt.client as paho

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from komdtest import WAIT, check, main  # noqa: E402
from mqttpeers import MqttCapture, Mosquitto, ScriptedBroker, SeqSubscriber, Sub, pub, pub_lines  # noqa: E402


def test_peers():
    # mosquitto: SIGKILL and restart keep a persistent subscriber's queued QoS 1 messages
    with Mosquitto() as m:
        s = SeqSubscriber(m.port, "t/seq", qos=1, client_id="selftest-sub")
        pub(m.port, "t/seq", "1")
        check(s.wait_for(1, 1, 5) == [], "message 1 delivered")
        s.close()
        pub_lines(m.port, "t/seq", [str(i) for i in range(2, 12)], qos=1)
        m.wait_saved()
        m.kill()
        m.start()
        s2 = SeqSubscriber(m.port, "t/seq", qos=1, client_id="selftest-sub")
        check(s2.wait_for(2, 11, 10) == [], "queued messages 2..11 survive SIGKILL: got %s" % s2.numbers())
        s2.close()
        sub = Sub(m.port, "t/v5", version=5)
        pub(m.port, "t/v5", "hello", version=5, extra=["-D", "publish", "response-topic", "r/t"])
        WAIT.until(lambda: sub.messages("t/v5 hello"), 5, "mosquitto_sub -V 5 gets the message")
        sub.stop()
    print("mosquitto, paho, mosquitto_pub/sub: ok")
    # the scripted broker: CONNACK properties, a topic alias, acknowledgements held
    b = ScriptedBroker(connack={"sessionPresent": True, "properties": {"topicAliasMaximum": 5, "receiveMaximum": 2}},
                       ack=False)
    got = []
    c = paho.Client(client_id="selftest", protocol=paho.MQTTv5)
    c.on_message = lambda cl, u, msg: (got.append((msg.topic, msg.payload)), WAIT.kick())
    c.connect("127.0.0.1", b.port, keepalive=5)
    c.loop_start()
    b.wait_packet("connect")
    c.subscribe("a/#", 1)
    b.wait_packet("subscribe")
    b.publish("a/b", "1", qos=0, topicAlias=3)
    b.publish("", "2", qos=0, topicAlias=3)
    WAIT.until(lambda: len(got) == 2, 5, "paho gets both messages")
    # paho 1.6 hands an aliased message over with an empty topic (it does not map aliases)
    check(got == [("a/b", b"1"), ("", b"2")], "the second message by topic alias only: %s" % got)
    c.publish("x/y", "p", qos=1)
    b.wait_packet("publish")
    check(not b.packets("puback"), "no PUBACK sent while held")
    c.disconnect()      # before loop_stop: paho's loop waits for unacknowledged messages
    c.loop_stop()
    b.stop()
    check(not b.errors(), "broker parse errors: %s" % b.errors())
    print("scripted broker: ok")
    # tshark sees MQTT on any port
    with Mosquitto(persist=False) as m:
        path = os.path.join(m.dir, "cap.pcapng")
        cap = MqttCapture(m.port, path)
        pub(m.port, "t/cap", "x", qos=2)
        cap.stop()
        types = cap.mqtt(("mqtt.msgtype",))
        check("3" in types and "7" in types, "tshark decodes PUBLISH and PUBCOMP: %s" % types)
        check(cap.malformed() == [], "mosquitto_pub: no malformed packets")
    print("tshark: ok")


if __name__ == "__main__":
    main([test_peers])
