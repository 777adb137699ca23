"""The demo (conf/komd.conf, what `make run` starts) works end to end, on free ports: its MQTT
line publishes the simulated pump as JSON to a real mosquitto (mosquitto_sub sees it), a
mosquitto_pub on the command topic writes pump1.setpoint (answered on .../response), and
mqtt.flow comes back from the broker and crosses to Modbus (served at f3.10, polled again
as mb.mqtt_flow): values through the gateway both ways."""
import json
import os
import re
import shutil
import subprocess
import tempfile

from komdtest import TOP, Komd, check, free_port, main, WAIT

DEMO_PORTS = (12000, 12001, 1502, 2404, 11883)


def demo_conf(ports):
    """The demo with every port replaced by a free one (as `port = N;` and in comments)."""
    text = open(os.path.join(TOP, "conf", "komd.conf")).read()
    for old, new in ports.items():
        text = re.sub(r"\bport = %d;" % old, "port = %d;" % new, text)
    text = re.sub(r'^control_socket = .*$', "", text, flags=re.M)
    return text


class Broker:
    """mosquitto on a free loopback port, as conf/demo-mosquitto.conf has it."""

    def __init__(self, port):
        self.dir = tempfile.mkdtemp(prefix="komd-demo-mosq-")
        conf = os.path.join(self.dir, "mosquitto.conf")
        src = open(os.path.join(TOP, "conf", "demo-mosquitto.conf")).read()
        with open(conf, "w") as f:
            f.write(src.replace("listener 11883 127.0.0.1", "listener %d 127.0.0.1" % port))
        self.proc = subprocess.Popen(["mosquitto", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.port = port
        WAIT.until(lambda: self.proc.poll() is not None or subprocess.run(
            ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-t", "probe", "-n"],
            capture_output=True).returncode == 0, 10, "mosquitto listening")
        check(self.proc.poll() is None, "mosquitto runs with conf/demo-mosquitto.conf")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


def sub(port, topic, count, timeout=15):
    """mosquitto_sub: the first count messages on topic (-v: topic and payload)."""
    r = subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t", topic, "-v", "-C", str(count),
                        "-W", str(timeout)], capture_output=True, text=True, timeout=timeout + 5)
    check(r.returncode == 0, "mosquitto_sub %s: %s %s" % (topic, r.stdout, r.stderr))
    return [l.split(" ", 1) for l in r.stdout.splitlines()]


def test_demo_gateway_both_ways():
    ports = {p: free_port() for p in DEMO_PORTS}
    mport = ports[11883]
    broker = Broker(mport)
    try:
        with Komd(demo_conf(ports)).start() as k:
            k.wait_log(r"line mqtt: 127\.0\.0\.1:%d: MQTT connected \(3\.1\.1, session present 0" % mport, 15)
            # published: the pump's values as JSON objects (komctl --json get's), retained
            msgs = sub(mport, "komd/demo/pump1/+", 6)
            topics = {t for t, _ in msgs}
            check("komd/demo/pump1/flow" in topics and "komd/demo/pump1/running" in topics, "published: %s" % msgs)
            flow = next(json.loads(p) for t, p in msgs if t == "komd/demo/pump1/flow")
            check(flow["name"] == "pump1.flow" and isinstance(flow["value"], float) and flow["quality"] == "good",
                  "a tag as JSON: %s" % flow)
            # floats as komctl prints them, the fewest digits that read back (0.367, not
            # 0.36699999999999999)
            raw = [p for t, p in msgs if t in ("komd/demo/pump1/flow", "komd/demo/pump1/pressure")]
            check(not any(re.search(r"\d\.\d{15,}", p) for p in raw), "shortest floats: %s" % raw)
            # a command: mosquitto_pub writes the set-point, the response says ok
            resp = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(mport), "-t",
                                     "komd/demo/pump1/setpoint/set/response", "-C", "1", "-W", "15"],
                                    stdout=subprocess.PIPE, text=True)
            # the response subscriber's SUBSCRIBE may still be in flight: send until answered
            out = None
            for _ in range(50):
                subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(mport), "-t",
                                "komd/demo/pump1/setpoint/set", "-m", "42", "-q", "1"], check=True)
                try:
                    out, _ = resp.communicate(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    continue
            check(out is not None and json.loads(out) == {"ok": True}, "command response: %r" % out)
            k.until(lambda: k.tag("pump1.setpoint")["value"] == 42.0, 10, "pump1.setpoint written by MQTT")
            # mqtt.flow: acquired back from MQTT, served over Modbus, polled again as mb.mqtt_flow
            k.until(lambda: k.tag("mqtt.flow").get("quality") == "good", 15, "mqtt.flow from the broker")
            k.until(lambda: k.tag("mb.mqtt_flow").get("quality") == "good" and
                    abs(k.tag("mb.mqtt_flow")["value"] - k.tag("mqtt.flow")["value"]) < 50, 15,
                    "mb.mqtt_flow: MQTT -> Modbus server -> Modbus client")
            st = k.line("mqtt")
            check(st["state"].startswith("connected") and st["protocol_counters"]["mqtt_commands_total"] >= 1,
                  "the MQTT line: %s" % st)
    finally:
        broker.stop()


if __name__ == "__main__":
    main([test_demo_gateway_both_ways])
