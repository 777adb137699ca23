"""mqtt-client against a real broker (mosquitto 2.0) and an independent client (paho-mqtt):
values acquired from text and JSON payloads, a served tag published (text and JSON, QoS 1
and 2), a command round trip (3.1.1 and v5 Response Topic / Correlation Data, a command too
old), a refused CONNACK, and a scripted broker that stops answering (keep alive and
reply_timeout). The big suite (broker kills, redundancy, loss counts, aliases) is
test_mqtt_*.py's."""
import json
import os
import re
import socket
import subprocess
import tempfile
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from komdtest import WAIT, Komd, check, free_port, main, run_komd


BROKERS = []


class Broker:
    """A private mosquitto on a free loopback port (stopped at the end of its test, whatever
    happened: cleaned_up)."""

    def __init__(self, anonymous=True, extra=""):
        self.dir = tempfile.mkdtemp(prefix="mosq-")
        self.port = free_port()
        conf = os.path.join(self.dir, "m.conf")
        with open(conf, "w") as f:
            f.write("listener %d 127.0.0.1\nallow_anonymous %s\nmax_queued_messages 0\n%s" % (
                self.port, "true" if anonymous else "false", extra))
        self.proc = subprocess.Popen(["mosquitto", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        BROKERS.append(self)
        WAIT.until(self._up, 10, "mosquitto listening")

    def _up(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def close(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None
            subprocess.run(["rm", "-rf", self.dir])


def cleaned_up(test):
    """test, then every broker it started stopped, even when it failed."""
    def run():
        try:
            test()
        finally:
            while BROKERS:
                BROKERS.pop().close()
    run.__name__ = test.__name__
    return run


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
        k.ctl("trace", "mq", "on")
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
        k.wait_log(r"line mq: <- 127\.0\.0\.1:%d rx \[\d+\] 3\S .*\| PUBLISH qos=1 id=\d+ topic=\"komd/cmd/sp\"" % b.port)
        k.wait_log(r"line mq: -> 127\.0\.0\.1:%d tx \[\d+\] .*\| PUBACK id=\d+" % b.port)
        k.ctl("trace", "mq", "off")
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


def test_refused_connack_and_password_file():
    pwdir = tempfile.mkdtemp(prefix="mosq-pw-")
    os.chmod(pwdir, 0o755)  # mosquitto started as root reads it as user mosquitto
    pw = os.path.join(pwdir, "passwd")
    subprocess.run(["mosquitto_passwd", "-b", "-c", pw, "komd", "s3cret"], check=True, capture_output=True)
    b = Broker(anonymous=False, extra="password_file %s\n" % pw)
    kconf = line_conf(b.port, """{ name = "s"; address = "a/b"; tags = ( { name = "a.b"; address = ""; type = "int"; } ); }""",
                      extra='username = "komd"; password_file = "#APPDIR#/pw";')
    with Komd(kconf, files={"pw": "wrong\n"}).start() as k:
        k.wait_log(r"MQTT connection refused: .*(not authori[sz]ed|bad user name or password)", 10)
        k.wait_log(r"closed: refused: ")
        k.until(lambda: k.line("mq")["stations"][0]["state"] == "error", 5, "station in error")
        with open(os.path.join(k.dir, "pw"), "w") as f:
            f.write("s3cret\n")
        n = len(k.lines)
        k.ctl("reload")  # the file's content is part of the line: it restarts
        k.wait_log(r"MQTT connected \(3\.1\.1", 10, since=n)
        k.wait_log(r"station s: communication ok", 5, since=n)
    b.close()
    subprocess.run(["rm", "-rf", pwdir])


def test_wills_and_stale_timeout():
    b = Broker()
    c = Client(b.port, subs=("komd/#",))
    conf = line_conf(b.port, """
        { name = "dev"; address = "dev/+"; stale_timeout = 0.8; will_topic = "dev/status"; will_payload = "offline";
          tags = ( { name = "d.v"; address = "T=dev/v"; type = "int"; } ); }""",
                     extra='will_topic = "komd/status"; will_payload = "offline"; will_online_payload = "online"; '
                     'client_id = "komd-basic";')
    with Komd(conf).start() as k:
        k.wait_log(r"station dev: communication ok")
        c.publish("dev/v", "5")
        k.until(lambda: k.tag("d.v")["value"] == 5 and not k.tag("d.v")["invalid"], 5, "d.v")
        # the device's will: station in error, its tags invalid, until its next message
        c.publish("dev/status", "online")
        c.publish("dev/status", "offline")
        k.wait_log(r"station dev: communication lost: the device's last will arrived on dev/status")
        check(k.tag("d.v")["invalid"], "tags invalid")
        c.publish("dev/v", "6")
        k.until(lambda: k.tag("d.v")["value"] == 6 and not k.tag("d.v")["invalid"], 5, "back with a message")
        # silence for stale_timeout: the same
        k.wait_log(r"station dev: communication lost: no message for 0\.[89] s \(stale_timeout\)", 5)
        check(k.tag("d.v")["invalid"], "stale: invalid")
        n = len(k.lines)
        c.publish("dev/v", "7")
        k.until(lambda: not k.tag("d.v")["invalid"], 5, "fresh again")
        k.wait_log(r"station dev: communication lost: no message for 0\.[89] s", 5, since=n)  # and watched again
        # komd's own will: published by the broker when komd vanishes
        check([m.payload for m in c.on("komd/status")] == [b"online"], "online after the connection")
        k.proc.kill()
        k.proc.wait()
        k.until(lambda: len(c.on("komd/status")) == 2, 10, "komd's will")
        m = c.on("komd/status")[1]
        check(m.payload == b"offline" and m.qos == 1, "the will: %r qos %d" % (m.payload, m.qos))
        late = Client(b.port, subs=("komd/status",))
        k.until(lambda: late.on("komd/status"), 5, "the will is retained")
        check(late.on("komd/status")[0].payload == b"offline", "retained: offline")
        late.close()
        k.proc = None
    c.close()
    b.close()


def test_deadband_period_batch():
    b = Broker()
    c = Client(b.port, subs=("komd/#",))
    conf = line_conf(b.port, """
        { name = "out"; address = "komd/none";
          tags = ( { name = "mem.sp"; address = ""; publish = "komd/sp"; deadband = 1.0; retain = false; },
                   { name = "mem.n"; address = ""; publish = "komd/n"; period = 0.3; retain = false; } ); },
        { name = "batch"; address = "komd/none2"; payload = "json"; batch_ms = 300;
          tags = ( { name = "mem.sp"; address = ""; publish = "komd/b"; retain = false; },
                   { name = "mem.n"; address = ""; publish = "komd/b"; retain = false; } ); }""")
    with Komd(conf).start() as k:
        k.until(lambda: c.on("komd/sp") and c.on("komd/b"), 5, "current values")
        for v in ("1.9", "2.4", "2.6", "2.0", "0.5"):
            k.ctl("set", "mem.sp", v)
        k.until(lambda: len(c.on("komd/sp")) >= 3, 5, "changes past the deadband")
        vals = [float(m.payload) for m in c.on("komd/sp")]
        check(vals == [1.5, 2.6, 0.5], "deadband 1.0 from the last published: %s" % vals)
        # period: published again without a change
        n0 = len(c.on("komd/n"))
        k.until(lambda: len(c.on("komd/n")) >= n0 + 3, 5, "period 0.3 s")
        check(set(m.payload for m in c.on("komd/n")) == {b"0"}, "the same value again")
        # batch: the JSON changes of 300 ms in one array per topic
        nb = len(c.on("komd/b"))
        k.ctl("set", "mem.n", "1")
        k.ctl("set", "mem.n", "2")
        k.until(lambda: len(c.on("komd/b")) > nb, 5, "a batch")
        arr = json.loads(c.on("komd/b")[nb].payload)
        check(isinstance(arr, list) and [o["value"] for o in arr] == [1, 2] and arr[0]["name"] == "mem.n",
              "one array, in order: %s" % arr)
    c.close()
    b.close()


def test_qos2_received_once():
    """A QoS 2 PUBLISH sent again with DUP before PUBREL is acknowledged, not delivered
    again (4.3.3); after PUBREL its packet identifier is a new message's."""
    s = Scripted()
    conf = line_conf(s.port, """{ name = "s"; address = "a/b"; qos = 2; tags = ( { name = "a.b"; address = ""; type = "int"; } ); }""")

    def publish(pid, value, dup=False):
        body = b"\x00\x03a/b" + pid.to_bytes(2, "big") + value
        return bytes([0x3C if dup else 0x34, len(body)]) + body

    with Komd(conf).start() as k:
        k.wait_log(r"station s: communication ok")
        s.send(publish(7, b"41"))
        k.until(lambda: (5, b"\x00\x07") in s.packets, 5, "PUBREC 7")
        s.send(publish(7, b"41", dup=True))
        k.until(lambda: s.packets.count((5, b"\x00\x07")) == 2, 5, "PUBREC 7 again")
        check(k.tag("a.b")["value"] == 41 and k.tag("a.b")["updates"] == 1, "delivered once: %s" % k.tag("a.b"))
        s.send(b"\x62\x02\x00\x07")  # PUBREL 7
        k.until(lambda: (7, b"\x00\x07") in s.packets, 5, "PUBCOMP 7")
        s.send(publish(7, b"42"))
        k.until(lambda: k.tag("a.b")["value"] == 42, 5, "id 7 free again: a new message")
        check(k.tag("a.b")["updates"] == 2, "two deliveries in all")
    s.close()


def test_config_checks():
    """komd -t refuses what MQTT's rules forbid, each error with file:line."""
    st = """{ name = "s"; address = "dev/#"; tags = ( { name = "a.b"; address = "T=dev/x"; type = "int"; } ); }"""
    cases = [
        ('client_id = ""; clean_session = false;', st, r":\d+: line 'mq': an empty client_id needs clean_session"),
        ('topic_alias_maximum = 5;', st, r"'topic_alias_maximum' is MQTT 5 only"),
        ('password = "x";', st, r"a password needs a username with MQTT 3.1.1 \(3\.1\.2\.9\)"),
        ('password_file = "/nonexistent/pw"; username = "u";', st, r"password_file '/nonexistent/pw': No such file"),
        ('password_file = "/dev/stdin"; username = "u";', st, r"password_file '/dev/stdin': not a regular file"),
        ('will_topic = "a/+";', st, r"will_topic 'a/\+' is not an MQTT topic name"),
        ("", st.replace('"dev/#"', '"dev/#/x"'), r"station 's': address 'dev/#/x' is not an MQTT topic filter"),
        ("", st.replace("T=dev/x", "JA=a"), r"tag 'a.b': address needs T=topic: the station's filter 'dev/#' has a wildcard"),
        ("", st.replace("T=dev/x", "T=other/x"), r"T=other/x is not matched by the station's filter"),
        ("", st.replace("T=dev/x", "T=dev/x;JA=a"), r'JA= needs the station\'s payload = "json"'),
        ("", st.replace('type = "int";', 'type = "int"; deadband = 1;'), r"'deadband' is for published tags"),
        ("", """{ name = "p"; address = "x"; tags = ( { name = "mem.n"; address = ""; publish = "k/n";
              command = "k/c"; } ); }""", r"'command' needs direction"),
        ("", """{ name = "p"; address = "x"; tags = ( { name = "mem.n"; address = ""; publish = "k/#"; } ); }""",
         r"publish 'k/#' is not an MQTT topic name"),
        ("", """{ name = "p"; address = "x"; tags = ( { name = "mem.n"; address = "T=k/n"; publish = "k/n"; } ); }""",
         r"a published tag has no address"),
    ]
    for extra, stations, err in cases:
        with Komd(line_conf(1883, stations, extra)) as k:
            r = run_komd("-t", "-c", k.conf)
            check(r.returncode != 0 and re.search(err, r.stderr) and re.search(r"komd\.conf:\d+: ", r.stderr),
                  "komd -t refuses (%s): %s" % (err, r.stderr))
    with Komd(line_conf(1883, st, 'redundancy = "alternate";')) as k:
        r = run_komd("-t", "-c", k.conf)
        check(r.returncode == 0 and "redundancy = \"alternate\" is for tcp-redundant lines" in r.stderr,
              "a warning only: %s" % r.stderr)


class Scripted:
    """A broker of a few lines: CONNACK, then PINGRESP while `answer` is set; it records the
    packet types it receives (and the packets, in `packets`); `send` writes to the last
    connection."""

    def __init__(self):
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(4)
        self.port = self.ls.getsockname()[1]
        self.types = []
        self.packets = []
        self.conn = None
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
            self.conn = c
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
                self.packets.append((t, body))
                WAIT.kick()
                if t == 1 and self.connack:
                    c.sendall(b"\x20\x02\x00\x00")
                elif t == 8 and self.answer:  # SUBACK: its packet id, QoS 1 granted
                    c.sendall(b"\x90\x03" + body[:2] + b"\x01")
                elif t == 12 and self.answer:
                    c.sendall(b"\xd0\x00")
        c.close()
        WAIT.kick()

    def send(self, data):
        self.conn.sendall(data)

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
    main([cleaned_up(t) for t in (test_acquire_text_and_json, test_publish_served_tag_qos1_qos2, test_command_round_trip,
          test_wills_and_stale_timeout, test_deadband_period_batch, test_refused_connack_and_password_file,
          test_keepalive_and_reply_timeout, test_qos2_received_once, test_config_checks)])
