"""mqtt-client against a real broker (mosquitto 2.0) and an independent client (paho-mqtt):
values acquired from text and JSON payloads, a served tag published (text and JSON, QoS 1
and 2), a command round trip (3.1.1 and v5 Response Topic / Correlation Data, a command too
old), a refused CONNACK, and a scripted broker that stops answering (keep alive and
reply_timeout). The big suite (broker kills, redundancy, loss counts, aliases) is
test_mqtt_*.py's."""
import json
import os
import socket
import subprocess
import tempfile
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from komdtest import WAIT, Komd, check, free_port, main


class Broker:
    """A private mosquitto on a free loopback port."""

    def __init__(self, anonymous=True):
        self.dir = tempfile.mkdtemp(prefix="mosq-")
        self.port = free_port()
        conf = os.path.join(self.dir, "m.conf")
        with open(conf, "w") as f:
            f.write("listener %d 127.0.0.1\nallow_anonymous %s\nmax_queued_messages 0\n" % (
                self.port, "true" if anonymous else "false"))
        self.proc = subprocess.Popen(["mosquitto", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        WAIT.until(self._up, 10, "mosquitto listening")

    def _up(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def close(self):
        self.proc.terminate()
        self.proc.wait(10)
        subprocess.run(["rm", "-rf", self.dir])


class Client:
    """A paho-mqtt client that keeps every message it receives."""

    def __init__(self, port, subs=(), v5=False, qos=2):
        self.msgs = []
        self.lock = threading.Lock()
        self.c = mqtt.Client(client_id="", protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311)
        self.c.on_message = self._on_message
        self.subscribed = threading.Event()
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        for t in subs:
            self.subscribed.clear()
            self.c.subscribe(t, qos)
            check(self.subscribed.wait(5), "SUBACK for %s" % t)

    def _on_message(self, c, u, m):
        with self.lock:
            self.msgs.append(m)
        WAIT.kick()

    def on(self, topic):
        with self.lock:
            return [m for m in self.msgs if m.topic == topic]

    def publish(self, topic, payload, qos=1, props=None):
        info = self.c.publish(topic, payload, qos, properties=props)
        info.wait_for_publish()

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def counters(k):
    return k.line("mq")["protocol_counters"]


def line_conf(port, stations, extra=""):
    return """tags = ( { name = "mem.sp"; type = "float"; initial = 1.5; },
                  { name = "mem.n"; type = "int"; initial = 0; } );
lines = ( { name = "mq"; protocol = "mqtt-client"; host = "127.0.0.1"; port = %d; keepalive = 5;
            reply_timeout = 3; %s
            stations = ( %s ); } );""" % (port, extra, stations)


def test_acquire_text_and_json():
    b = Broker()
    conf = line_conf(b.port, """
        { name = "txt"; address = "dev/txt/#"; qos = 2;
          tags = ( { name = "t.f"; address = "T=dev/txt/f"; type = "float"; },
                   { name = "t.s"; address = "T=dev/txt/s"; type = "string"; },
                   { name = "t.b"; address = "T=dev/txt/b"; type = "bool"; } ); },
        { name = "js"; address = "dev/js"; payload = "json"; time_field = "ts"; time_format = "epoch_ms";
          tags = ( { name = "j.v"; address = "JA=data.v"; type = "float"; },
                   { name = "j.a"; address = "JA=arr[2]"; type = "int"; } ); }""")
    with Komd(conf).start() as k:
        k.wait_log(r"line mq: 127\.0\.0\.1:%d: MQTT connected \(3\.1\.1, session present 0" % b.port)
        k.wait_log(r"station js: communication ok")
        c = Client(b.port)
        c.publish("dev/txt/f", "21.5", qos=0)
        c.publish("dev/txt/s", "hello world", qos=1)
        c.publish("dev/txt/b", "true", qos=2)
        c.publish("dev/js", json.dumps({"data": {"v": 3.25}, "arr": [1, 42], "ts": 1764547200123}))
        k.until(lambda: k.tag("t.f")["value"] == 21.5, 5, "text float")
        k.until(lambda: k.tag("t.s")["value"] == "hello world", 5, "text string")
        k.until(lambda: k.tag("t.b")["value"] is True, 5, "text bool (QoS 2)")
        k.until(lambda: k.tag("j.a")["value"] == 42, 5, "JSON array element 2")
        j = k.tag("j.v")
        check(j["value"] == 3.25 and not j["invalid"], "JSON path: %s" % j)
        check(j["source_time"] == "2025-12-01T00:00:00.123Z", "time_field as the source time: %s" % j)
        # a payload that does not fit: that tag invalid, named with its topic; the others stay
        c.publish("dev/js", json.dumps({"data": {"v": "warm"}, "arr": [1, 43], "ts": 1764547200123}))
        k.until(lambda: k.tag("j.v")["invalid"], 5, "j.v invalid")
        k.wait_log(r"station js: tag j\.v: topic dev/js: .*")
        k.until(lambda: k.tag("j.a")["value"] == 43, 5, "j.a still taken")
        c.publish("dev/txt/f", "NaN", qos=1)
        k.until(lambda: k.tag("t.f")["invalid"], 5, "NaN is not a value")
        check(k.tag("t.f")["value"] == 21.5, "the last value stays, invalid")
        c.publish("dev/js", "{not json")
        k.wait_log(r"tag j\.(v|a): topic dev/js: ")
        k.until(lambda: k.tag("j.a")["invalid"], 5, "bad JSON: every tag of the topic invalid")
        n = counters(k)
        check(n["mqtt_received_total"] == 7 and n["mqtt_payload_errors_total"] == 4, "counted: %s" % n)
        c.close()
    b.close()


def test_publish_served_tag_qos1_qos2():
    b = Broker()
    c = Client(b.port, subs=("komd/#",), qos=2)
    conf = line_conf(b.port, """
        { name = "out"; address = "komd/none";
          tags = ( { name = "mem.sp"; address = ""; publish = "komd/sp"; payload = "json"; qos = 2; },
                   { name = "mem.n"; address = ""; publish = "komd/n"; qos = 1; retain = false; } ); }""")
    with Komd(conf).start() as k:
        # after the connection: the current values, once
        k.until(lambda: c.on("komd/sp") and c.on("komd/n"), 5, "current values published")
        o = json.loads(c.on("komd/sp")[0].payload)
        check(o["name"] == "mem.sp" and o["value"] == 1.5 and o["quality"] == "good", "JSON payload: %s" % o)
        check(c.on("komd/n")[0].payload == b"0", "text payload: %r" % c.on("komd/n")[0].payload)
        # a numbered sequence at QoS 1 and at QoS 2: each exactly once, in order
        for i in range(1, 201):
            k.ctl("set", "mem.n", str(i))
            k.ctl("set", "mem.sp", "%d.5" % i)
        k.until(lambda: len(c.on("komd/n")) >= 201 and len(c.on("komd/sp")) >= 201, 20, "200 of each")
        ns = [int(m.payload) for m in c.on("komd/n")]
        sps = [json.loads(m.payload)["value"] for m in c.on("komd/sp")]
        check(ns == list(range(0, 201)), "QoS 1 sequence in order, none lost: %s" % ns[:10])
        check(sps == [1.5] + [i + 0.5 for i in range(1, 201)], "QoS 2 sequence exactly once, in order")
        check(all(m.qos == 2 for m in c.on("komd/sp")) and all(m.qos == 1 for m in c.on("komd/n")[1:]),
              "QoS as configured")
        n = counters(k)
        check(n["mqtt_published_total"] == 402 and n["mqtt_queued_messages"] == 0 and n["mqtt_redelivered_total"] == 0,
              "counted: %s" % n)
        # retained: a late subscriber gets the last value of the retained topic only
        late = Client(b.port, subs=("komd/#",))
        k.until(lambda: late.on("komd/sp"), 5, "retained value")
        check(json.loads(late.on("komd/sp")[0].payload)["value"] == 200.5, "retained is the last")
        check(not late.on("komd/n"), "retain = false: nothing retained")
        late.close()
    c.close()
    b.close()


def test_command_round_trip():
    b = Broker()
    conf = line_conf(b.port, """
        { name = "out"; address = "komd/none"; payload = "json";
          tags = ( { name = "mem.sp"; address = ""; publish = "komd/sp"; command = "komd/cmd/sp";
                     direction = "inout"; qos = 1; } ); }""", extra='mqtt_version = "5"; command_max_age = 30;')
    with Komd(conf).start() as k:
        k.wait_log(r"MQTT connected \(5, session present 0")
        k.wait_log(r"station out: communication ok")  # after the SUBACK of the command topic
        c = Client(b.port, subs=("komd/#", "app/#"), v5=True, qos=1)
        c.publish("komd/cmd/sp", json.dumps({"value": 42.5}))
        k.until(lambda: c.on("komd/cmd/sp/response"), 5, "response")
        check(json.loads(c.on("komd/cmd/sp/response")[0].payload) == {"ok": True}, "ok")
        k.until(lambda: k.tag("mem.sp")["value"] == 42.5, 5, "the write reached the memory tag")
        k.until(lambda: any(json.loads(m.payload)["value"] == 42.5 for m in c.on("komd/sp")), 5, "published back")
        # v5: Response Topic and Correlation Data
        p = Properties(PacketTypes.PUBLISH)
        p.ResponseTopic = "app/replies"
        p.CorrelationData = b"\x01req-7"
        c.publish("komd/cmd/sp", "7.25", props=p)
        k.until(lambda: c.on("app/replies"), 5, "reply on the Response Topic")
        m = c.on("app/replies")[0]
        check(json.loads(m.payload) == {"ok": True} and m.properties.CorrelationData == b"\x01req-7",
              "correlation data returned: %r" % m.properties)
        check(len(c.on("komd/cmd/sp/response")) == 1, "not on the default response topic too")
        # bad values and old commands are refused with their response, not executed
        c.publish("komd/cmd/sp", json.dumps({"value": "hot"}))
        c.publish("komd/cmd/sp", json.dumps({"value": 1.0, "time": "2020-01-01T00:00:00Z"}))
        k.until(lambda: len(c.on("komd/cmd/sp/response")) == 3, 5, "two refusals")
        r = [json.loads(m.payload) for m in c.on("komd/cmd/sp/response")[1:]]
        check(all(x["ok"] is False for x in r) and "too old" in r[1]["error"], "refused: %s" % r)
        check(k.tag("mem.sp")["value"] == 7.25, "neither was executed")
        n = counters(k)
        check(n["mqtt_commands_total"] == 4 and n["mqtt_commands_refused_total"] == 2, "counted: %s" % n)
        # No Local: komd's own responses never come back to it as commands
        check(not [l for l in k.lines if "command on komd/cmd/sp/response" in l], "no echo")
        c.close()
    b.close()


def test_refused_connack():
    b = Broker(anonymous=False)
    kconf = line_conf(b.port, """{ name = "s"; address = "a/b"; tags = ( { name = "a.b"; address = ""; type = "int"; } ); }""")
    with Komd(kconf).start() as k:
        k.wait_log(r"MQTT connection refused: .*not authori[sz]ed", 10)
        k.wait_log(r"closed: refused: ")
        k.until(lambda: k.line("mq")["stations"][0]["state"] == "error", 5, "station in error")
    b.close()


class Scripted:
    """A broker of a few lines: CONNACK, then PINGRESP while `answer` is set; it records the
    packet types it receives."""

    def __init__(self):
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(4)
        self.port = self.ls.getsockname()[1]
        self.types = []
        self.answer = True
        self.connack = True
        self.conns = 0
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            self.conns += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()
            WAIT.kick()

    def _serve(self, c):
        buf = b""
        while True:
            try:
                d = c.recv(4096)
            except OSError:
                d = b""
            if not d:
                break
            buf += d
            while len(buf) >= 2 and len(buf) >= 2 + buf[1]:  # small packets only (< 128 bytes)
                t, body = buf[0] >> 4, buf[2:2 + buf[1]]
                buf = buf[2 + buf[1]:]
                self.types.append(t)
                WAIT.kick()
                if t == 1 and self.connack:
                    c.sendall(b"\x20\x02\x00\x00")
                elif t == 8 and self.answer:  # SUBACK: its packet id, QoS 1 granted
                    c.sendall(b"\x90\x03" + body[:2] + b"\x01")
                elif t == 12 and self.answer:
                    c.sendall(b"\xd0\x00")
        c.close()
        WAIT.kick()

    def close(self):
        self.ls.close()


def test_keepalive_and_reply_timeout():
    s = Scripted()
    conf = line_conf(s.port, """{ name = "s"; address = "a/b"; tags = ( { name = "a.b"; address = ""; type = "int"; } ); }""")
    conf = conf.replace("keepalive = 5;", "keepalive = 1;").replace("reply_timeout = 3;", "reply_timeout = 0.5;")
    with Komd(conf).start() as k:
        k.wait_log(r"MQTT connected \(3\.1\.1")
        t0 = time.monotonic()
        k.until(lambda: s.types.count(12) >= 2, 5, "PINGREQ every keepalive")
        check(time.monotonic() - t0 >= 0.9, "not before keepalive")
        # answer nothing from now on: closed within keepalive + reply_timeout
        n = len(k.lines)
        s.answer = False
        t0 = time.monotonic()
        k.wait_log(r"closed: no answer within 0\.5 s \(reply_timeout\)", 5, since=n)
        check(time.monotonic() - t0 < 1 + 0.5 + 0.6, "found within keepalive + reply_timeout")
        s.connack = False
        n = len(k.lines)
        k.wait_log(r"closed: no answer within 0\.5 s \(reply_timeout\): CONNACK", 10, since=n)
        check(s.conns >= 2, "the next attempt")
    s.close()


if __name__ == "__main__":
    main([test_acquire_text_and_json, test_publish_served_tag_qos1_qos2, test_command_round_trip,
          test_refused_connack, test_keepalive_and_reply_timeout])
