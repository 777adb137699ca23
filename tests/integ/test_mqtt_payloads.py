"""mqtt-client payloads (issue 13, Station and Tag keys): text payloads parsed by the tag's
type, JSON paths (JA=a.b[1].c, arrays from 1), a JSON payload's own time (time_field,
time_format epoch_s / epoch_ms / iso8601), and payloads that do not fit (not a number, bad
JSON, a missing path, a wrong type, NaN, deep nesting, invalid UTF-8, a large payload): the
tag turns invalid with a log line naming the topic, the others stay, komd never crashes; all
sent by mosquitto_pub (3.1.1 and -V 5) through mosquitto. tshark decodes every packet of the
run without a malformed one."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from komdtest import Komd, check, main  # noqa: E402
from mqttpeers import Mosquitto, MqttCapture, conf, mqtt_line, pub  # noqa: E402

STATIONS = """
  { name = "txt"; address = "p/t/#"; tags = (
      { name = "p.i"; address = "T=p/t/i"; type = "int"; },
      { name = "p.f"; address = "T=p/t/f"; type = "float"; },
      { name = "p.b"; address = "T=p/t/b"; type = "bool"; },
      { name = "p.s"; address = "T=p/t/s"; type = "string"; } ); },
  { name = "js"; address = "p/j"; payload = "json"; tags = (
      { name = "j.c"; address = "JA=a.b[1].c"; type = "float"; },
      { name = "j.ok"; address = "JA=ok"; type = "bool"; },
      { name = "j.name"; address = "JA=name"; type = "string"; },
      { name = "j.third"; address = "JA=list[3]"; type = "int"; } ); },
  { name = "ts_s"; address = "p/ts/s"; payload = "json"; time_field = "t"; time_format = "epoch_s";
    tags = ( { name = "s.v"; address = "JA=v"; type = "float"; } ); },
  { name = "ts_ms"; address = "p/ts/ms"; payload = "json"; time_field = "t"; time_format = "epoch_ms";
    tags = ( { name = "ms.v"; address = "JA=v"; type = "float"; } ); },
  { name = "ts_iso"; address = "p/ts/iso"; payload = "json"; time_field = "meta.time";
    tags = ( { name = "iso.v"; address = "JA=v"; type = "float"; } ); }"""


def good(k, name, value):
    t = k.tag(name)
    return not t["invalid"] and t["value"] == value


def invalid_with_log(k, m, topic, payload, tags, version=4, since=None):
    """Publish a payload that does not fit: each tag invalid, a log line naming the topic."""
    n = len(k.lines) if since is None else since
    pub(m.port, topic, payload, version=version)
    for t in tags:
        k.until(lambda: k.tag(t)["invalid"], 5, "%s invalid after %r on %s" % (t, payload[:40], topic))
    k.wait_log(r"tag (%s): .*%s" % ("|".join(x.replace(".", r"\.") for x in tags), topic.replace("/", r"\/")), 5,
               since=n)


def test_payloads():
    with Mosquitto(persist=False) as m:
        cap = MqttCapture(m.port, os.path.join(m.dir, "cap.pcapng"))
        line = mqtt_line(m.port, STATIONS, extra="keepalive = 10;")
        with Komd(conf([line])).start() as k:
            k.wait_log(r"MQTT connected")
            k.wait_log(r"station ts_iso: communication ok")
            # text
            pub(m.port, "p/t/i", "-42")
            pub(m.port, "p/t/f", "2.5e3", version=5)
            pub(m.port, "p/t/b", "true")
            pub(m.port, "p/t/s", "caf\u00e9 au lait")
            k.until(lambda: good(k, "p.i", -42) and good(k, "p.f", 2500.0) and good(k, "p.b", True)
                    and good(k, "p.s", "caf\u00e9 au lait"), 5, "text values")
            # JSON paths
            doc = {"a": {"b": [{"c": 1.25}, {"c": 9}]}, "ok": False, "name": "pump 1", "list": [10, 20, 30]}
            pub(m.port, "p/j", json.dumps(doc), version=5)
            k.until(lambda: good(k, "j.c", 1.25) and good(k, "j.ok", False) and good(k, "j.name", "pump 1")
                    and good(k, "j.third", 30), 5, "JSON paths (arrays from 1)")
            # the payload's own time
            pub(m.port, "p/ts/s", json.dumps({"v": 1, "t": 1764547200}))
            pub(m.port, "p/ts/ms", json.dumps({"v": 2, "t": 1764547200123}))
            pub(m.port, "p/ts/iso", json.dumps({"v": 3, "meta": {"time": "2025-12-01T01:02:03.456Z"}}))
            k.until(lambda: good(k, "s.v", 1) and good(k, "ms.v", 2) and good(k, "iso.v", 3), 5, "timed values")
            for tag, want in (("s.v", "2025-12-01T00:00:00.000Z"), ("ms.v", "2025-12-01T00:00:00.123Z"),
                              ("iso.v", "2025-12-01T01:02:03.456Z")):
                check(k.tag(tag)["source_time"] == want, "%s source time: %s" % (tag, k.tag(tag)))
            # payloads that do not fit: that tag invalid, a log naming the topic
            invalid_with_log(k, m, "p/t/i", "forty-two", ["p.i"])
            invalid_with_log(k, m, "p/t/f", "NaN", ["p.f"])
            invalid_with_log(k, m, "p/t/b", "maybe", ["p.b"])
            invalid_with_log(k, m, "p/t/i", "99999999999999999999999", ["p.i"])
            invalid_with_log(k, m, "p/j", "{not json", ["j.c", "j.ok", "j.name", "j.third"])
            pub(m.port, "p/j", json.dumps(doc))
            k.until(lambda: good(k, "j.c", 1.25), 5, "valid again")
            invalid_with_log(k, m, "p/j", json.dumps({"a": {"b": []}, "ok": "yes", "name": 5, "list": [1]}),
                             ["j.c", "j.ok", "j.third"])
            invalid_with_log(k, m, "p/j", "[" * 5000 + "]" * 5000, ["j.c"])
            # a bad time of its own: logged with the topic (the value may be taken with the
            # receive time, or refused: the issue leaves it open; either way no made-up time)
            for topic, tag, body in (("p/ts/s", "s.v", {"v": 5, "t": "yesterday"}),
                                     ("p/ts/iso", "iso.v", {"v": 6, "meta": {"time": "2025-13-45T99:00:00Z"}})):
                n = len(k.lines)
                before = k.tag(tag)["source_time"]
                pub(m.port, topic, json.dumps(body))
                k.wait_log(r"topic %s: time_field" % topic.replace("/", r"\/"), 5, since=n)
                t = k.tag(tag)
                check(t["invalid"] or t["source_time"] != before, "%s: bad time not kept as the old one: %s" % (tag, t))
            # invalid UTF-8 in a string tag's text payload, and a large payload
            n = len(k.lines)
            with open(os.path.join(m.dir, "bad"), "wb") as f:
                f.write(b"\xff\xfe\xc3(")
            subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(m.port), "-t", "p/t/s", "-f",
                            os.path.join(m.dir, "bad")], check=True, timeout=10)
            k.until(lambda: k.tag("p.s")["invalid"] or k.tag("p.s")["value"] != "caf\u00e9 au lait", 5,
                    "the bad string taken or refused")
            t = k.tag("p.s")
            check(t["invalid"] or "\ufffd" not in t["value"], "invalid UTF-8 refused, or kept escaped: %s" % t)
            with open(os.path.join(m.dir, "big"), "w") as f:
                f.write(json.dumps({"a": {"b": [{"c": 7.5}]}, "pad": "x" * 1000000}))
            subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(m.port), "-t", "p/j", "-f",
                            os.path.join(m.dir, "big")], check=True, timeout=10)
            k.until(lambda: good(k, "j.c", 7.5), 10, "a 1 MB JSON payload read")
            # the others were never touched, and komd is alive
            check(good(k, "ms.v", 2), "a tag of another topic untouched: %s" % k.tag("ms.v"))
            c = k.line("mq")["protocol_counters"]
            check(c["mqtt_payload_errors_total"] >= 9, "payload errors counted: %s" % c)
            print("    %d messages, %d payload errors, every bad one logged with its topic" % (
                c["mqtt_received_total"], c["mqtt_payload_errors_total"]))
        cap.stop()
        bad = cap.malformed()
        n = len(cap.mqtt())
        check(n > 30, "tshark decoded the run's MQTT packets: %d" % n)
        check(not bad, "tshark: malformed MQTT packets: %s" % bad[:5])
        print("    tshark: %d MQTT packets, none malformed" % n)


if __name__ == "__main__":
    main([test_payloads])
