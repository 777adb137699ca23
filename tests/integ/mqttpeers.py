"""mqttpeers: MQTT peers (and tshark) for komd's tests: test_mqtt_*.py, tests/bench/mqtt_bench.py.

Mosquitto       (mqttbrokers.py, imported here) mosquitto 2.0 on a free loopback port with a store that survives SIGKILL
                (persistence true, autosave_interval 1, autosave_on_changes true, a
                persistence directory it can write), max_queued_messages 0 (no silent drops
                of a slow subscriber), optional max_packet_size, max_inflight_messages,
                max_keepalive, and a TLS listener (certificates from tlspki.py, or PSK).
                start() polls until it accepts; kill() is SIGKILL; start() again restarts it
                on the same port with the same store; pause()/resume() are SIGSTOP/SIGCONT.
SeqSubscriber   paho-mqtt with a persistent session counting a numbered sequence (payloads
                that carry a number): duplicates, gaps, order; pause()/resume() leave and
                take up the session again.
Sub, pub()      mosquitto_sub / mosquitto_pub, MQTT 3.1.1 or -V 5.
ActiveMQ        (mqttbrokers.py) ActiveMQ 5.17 (Debian's activemq) with only an MQTT transport and a KahaDB
                store that syncs every journal write; same interface as Mosquitto.
MqttCapture     mbpeers.Capture for MQTT on any port: malformed packets and MQTT expert errors.
ledger(), deliveries()  what a publisher handed over to a broker, what a broker delivered.
ScriptedBroker  tests/peers/node/broker.js (npm mqtt-packet): sends topic aliases, announces
                Receive Maximum, Maximum QoS, Maximum Packet Size, Server Keep Alive, says
                Session Present 1, holds acknowledgements, reports every packet komd sends.
alpn_server()   openssl s_server -alpn: the ALPN protocols a client offers.
ctl_set()       komctl set over the control socket without a process per value.
and the komd configuration pieces the MQTT tests share (mqtt_line, ...).
test_mqtt_peers.py checks the peers themselves.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from komdtest import BUILD, TOP, WAIT, TestFailure, check, free_port  # noqa: E402
from mbpeers import Capture, _Proc  # noqa: E402

NODE_DIR = os.path.join(TOP, "tests", "peers", "node")
PEERS_BIN = os.path.join(BUILD, "peers")


from mqttbrokers import AMQ_HOME, AMQ_JARS, ActiveMQ, Mosquitto, accepts  # noqa: E402,F401


def number(payload):
    """The sequence number in a payload: a text number ("17", "17.0") or a JSON object's
    "value" (komd's JSON payload), or the number before the first space (tests/peers/mqtt_pub);
    None when there is none."""
    text = payload.decode(errors="replace").strip()
    try:
        # mqtt_pub's payloads: the number, a space, padding
        return int(float(text.split(" ", 1)[0]))
    except ValueError:
        pass
    try:
        v = json.loads(text)
    except ValueError:
        return None
    if isinstance(v, dict) and isinstance(v.get("value"), (int, float)):
        return int(v["value"])
    return None


class SeqSubscriber:
    """paho-mqtt subscriber with a persistent session (clean_session false, or v5 with a
    session expiry) that records every number it receives, in order, and reconnects by
    itself after a broker restart."""

    def __init__(self, port, topic, qos=1, client_id=None, version=4, parse=number, tls=None, resubscribe=True):
        import paho.mqtt.client as paho
        self.paho = paho
        self.got = []               # numbers in arrival order (None: a payload without one)
        self.raw = []               # (topic, payload, qos, retain, dup, properties)
        self.connacks = []          # session present flags
        self.subacks = 0
        self.lock = threading.Lock()
        self.parse = parse
        self.topic, self.qos = topic, qos
        self.resubscribe = resubscribe
        cid = client_id or "seqsub-%d-%d" % (os.getpid(), free_port())
        if version == 5:
            self.c = paho.Client(client_id=cid, protocol=paho.MQTTv5)
        else:
            self.c = paho.Client(client_id=cid, clean_session=False, protocol=paho.MQTTv311)
        self.version = version
        if tls:
            self.c.tls_set(**tls)
        self.c.reconnect_delay_set(min_delay=1, max_delay=1)
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.on_subscribe = lambda *a: self._suback()
        if version == 5:
            from paho.mqtt.properties import Properties
            from paho.mqtt.packettypes import PacketTypes
            p = Properties(PacketTypes.CONNECT)
            p.SessionExpiryInterval = 3600
            self.c.connect("127.0.0.1", port, keepalive=5, clean_start=False, properties=p)
        else:
            self.c.connect("127.0.0.1", port, keepalive=5)
        self.c.loop_start()
        WAIT.until(lambda: self.subacks > 0, 10, "subscriber's SUBACK")

    def _suback(self):
        self.subacks += 1
        WAIT.kick()

    def _on_connect(self, c, userdata, flags, rc, properties=None):
        self.connacks.append(flags.get("session present", 0))
        # subscribe again each time (a restarted broker without a store has forgotten it),
        # unless told not to (ActiveMQ: see ActiveMQ.resubscribe)
        if self.resubscribe or len(self.connacks) == 1:
            c.subscribe(self.topic, self.qos)
        WAIT.kick()

    def _on_message(self, c, userdata, m):
        with self.lock:
            self.got.append(self.parse(m.payload))
            self.raw.append((m.topic, m.payload, m.qos, m.retain, m.dup, getattr(m, "properties", None)))
        WAIT.kick()

    def numbers(self):
        with self.lock:
            return [n for n in self.got if n is not None]

    def missing(self, first, last):
        """Numbers first..last never received."""
        s = set(self.numbers())
        return [n for n in range(first, last + 1) if n not in s]

    def duplicates(self):
        """{number: times received} for every number received more than once."""
        counts = {}
        for n in self.numbers():
            counts[n] = counts.get(n, 0) + 1
        return {n: k for n, k in counts.items() if k > 1}

    def wait_for(self, first, last, timeout):
        """Wait until every number first..last arrived; returns those still missing."""
        try:
            WAIT.until(lambda: not self.missing(first, last), timeout, "numbers %d..%d" % (first, last))
        except TestFailure:
            pass
        return self.missing(first, last)

    def pause(self):
        """Disconnect (DISCONNECT: the broker keeps the session and queues what it gets for
        it) and stay away until resume()."""
        self.close()

    def resume(self, timeout=10):
        """Connect again with the same session (paho keeps its QoS 2 state: a PUBREL for a
        message received before pause() still hands it on) and wait for the CONNACK."""
        n = len(self.connacks)
        self.c.reconnect()
        self.c.loop_start()
        WAIT.until(lambda: len(self.connacks) > n, timeout, "subscriber's CONNACK")

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def _client_args(port, version, qos, extra):
    return ["-h", "127.0.0.1", "-p", str(port), "-q", str(qos), "-V", "mqttv5" if version == 5 else "mqttv311"] + list(
        extra)


def pub(port, topic, message, qos=1, version=4, retain=False, extra=(), timeout=10):
    """One message with mosquitto_pub (-V mqttv311 or mqttv5); extra: e.g. ["-D", "publish",
    "response-topic", "r/t"]."""
    args = ["mosquitto_pub"] + _client_args(port, version, qos, extra) + ["-t", topic, "-m", message]
    if retain:
        args.append("-r")
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise TestFailure("mosquitto_pub failed (%d): %s" % (r.returncode, r.stderr))


def pub_lines(port, topic, lines, qos=1, version=4, extra=(), timeout=60):
    """Many messages in one mosquitto_pub -l run (at most 65,535 at QoS 1/2: PEERS.md)."""
    check(qos == 0 or len(lines) < 65535, "mosquitto_pub -l stops after 65,535 messages at QoS %d" % qos)
    args = ["mosquitto_pub"] + _client_args(port, version, qos, extra) + ["-t", topic, "-l"]
    r = subprocess.run(args, input="".join(l + "\n" for l in lines), capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise TestFailure("mosquitto_pub -l failed (%d): %s" % (r.returncode, r.stderr))


class Sub(_Proc):
    """mosquitto_sub -v (topic, space, payload per line); with version 5 and props, the
    properties too (-F with %P)."""

    def __init__(self, port, topic, qos=1, version=4, extra=(), fmt=None):
        args = ["stdbuf", "-oL", "mosquitto_sub"] + _client_args(port, version, qos, extra) + ["-t", topic]
        args += ["-F", fmt] if fmt else ["-v"]
        # -d prints CONNACK and SUBACK: the subscription is in place once SUBACK is seen
        super().__init__(args + ["-d"])
        WAIT.until(lambda: self.lines("Client") and any("SUBACK" in l for l in self.out)
                   or self.proc.poll() is not None, 10, "mosquitto_sub's SUBACK")
        check(self.proc.poll() is None, "mosquitto_sub exited: %s" % self.out)

    def messages(self, prefix=""):
        """Lines that are messages (not -d's protocol lines)."""
        return [l for l in list(self.out) if not l.startswith("Client ") and l.startswith(prefix)]


class MqttCapture(Capture):
    """tshark on the loopback for MQTT on ports other than 1883 (decode-as), from before the
    traffic until stop(); ports: one port or several (all captured and decoded)."""

    def __init__(self, ports, path):
        self.ports = [ports] if isinstance(ports, int) else list(ports)
        super().__init__(self.ports[0], path, " or ".join("tcp port %d" % p for p in self.ports))

    def _probe(self, since=0):
        # at most one probe connection every 0.2 s: a probe to a running broker makes it log,
        # each log line wakes WAIT, and an unpaced probe would flood the loopback
        if any(str(self.port) in l and "TCP" in l for l in self.p.out[since:]):
            return True
        now = time.monotonic()
        if now - getattr(self, "_last_probe", 0) >= 0.2:
            self._last_probe = now
            return super()._probe(len(self.p.out))
        return False

    def _decode(self):
        out = []
        for p in self.ports:
            out += ["-d", "tcp.port==%d,mqtt" % p]
        return out

    def read(self, display_filter, fields=("frame.number",)):
        args = ["tshark", "-r", self.path] + self._decode() + ["-Y", display_filter, "-T", "fields"]
        for f in fields:
            args += ["-e", f]
        r = subprocess.run(args, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise TestFailure("tshark -r failed: %s" % r.stderr)
        return [l for l in r.stdout.splitlines() if l.strip()]

    def malformed(self):
        """Frames tshark calls malformed, or with an MQTT expert error."""
        return self.read("_ws.malformed || (mqtt && _ws.expert.severity == error)",
                         ("frame.number", "_ws.col.Info"))

    def mqtt(self, fields=("mqtt.msgtype",), display_filter="mqtt"):
        return self.read(display_filter, fields)

    def packets(self):
        """Every MQTT control packet tshark decoded, in capture order: dicts with frame,
        stream (tcp.stream), src, dst (ports), type (1 CONNECT .. 14 DISCONNECT), qos, dup,
        msgid, topic, payload (bytes) where the packet has them."""
        args = ["tshark", "-r", self.path] + self._decode() + ["-Y", "mqtt", "-T", "json", "--no-duplicate-keys", "-J", "tcp mqtt"]
        r = subprocess.run(args, capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise TestFailure("tshark -r failed: %s" % r.stderr)
        out = []
        for fr in json.loads(r.stdout or "[]"):
            layers = fr["_source"]["layers"]
            tcp = layers["tcp"]
            ms = layers.get("mqtt", [])
            for m in ms if isinstance(ms, list) else [ms]:
                h = m.get("mqtt.hdrflags_tree", {})
                out.append({"stream": int(tcp["tcp.stream"]), "src": int(tcp["tcp.srcport"]),
                            "dst": int(tcp["tcp.dstport"]), "type": int(h.get("mqtt.msgtype", 0)),
                            "qos": int(h.get("mqtt.qos", 0)), "dup": h.get("mqtt.dupflag") == "1",
                            "msgid": int(m["mqtt.msgid"]) if "mqtt.msgid" in m else None,
                            "topic": m.get("mqtt.topic"),
                            "payload": bytes.fromhex(m["mqtt.msg"].replace(":", "")) if "mqtt.msg" in m else None})
        return out


def ledger(packets, broker_port, topic, parse=None):
    """What a client published to the broker on broker_port (a port, or several: the brokers
    of one session that moves, an `alternate` line) on topic, from a capture: per number,
    the PUBLISH packets that carried it ((stream, msgid, dup) in order) and whether a broker
    took it over: a PUBACK for it (QoS 1), or a PUBREC for it and then the client's PUBREL
    with that packet id to that broker (QoS 2: mosquitto hands a message on at PUBREL; one
    PUBREC'd and never released stays with the broker unseen). A number lost though a
    broker took it over is the broker's loss; one lost without that is the publisher's.
    Returns (sends, taken, again): again holds the numbers published as a new message
    (DUP 0, to any of the brokers) after one had PUBACK'd or PUBREC'd them: a duplicate of
    the publisher's making (at QoS 1 allowed, at QoS 2 a fault)."""
    parse = parse or number
    ports = {broker_port} if isinstance(broker_port, int) else set(broker_port)
    sends, taken, pending, again, recd, acked = {}, set(), {}, set(), {}, set()
    for p in packets:
        if p["type"] == 3 and p["dst"] in ports and p["topic"] == topic:
            n = parse(p["payload"] or b"")
            sends.setdefault(n, []).append((p["stream"], p["msgid"], p["dup"]))
            if n in acked and not p["dup"]:
                again.add(n)
            if p["qos"] == 0:
                taken.add(n)
            else:
                pending[(p["stream"], p["msgid"])] = (n, p["qos"])
        elif p["type"] in (4, 5) and p["src"] in ports:
            n, qos = pending.pop((p["stream"], p["msgid"]), (None, 0))
            if n is None:
                continue
            acked.add(n)
            if qos == 1:
                taken.add(n)
            else:
                recd[(p["src"], p["msgid"])] = n
        elif p["type"] == 6 and (p["dst"], p["msgid"]) in recd:
            taken.add(recd.pop((p["dst"], p["msgid"])))
    return sends, taken, again


def deliveries(packets, broker_port, topic, parse=None):
    """What the broker on broker_port delivered on topic, from a capture: per number, the
    PUBLISH packets that carried it to a client ((stream, msgid, dup, done) in order). done:
    the client answered it with PUBACK (QoS 1), or the broker sent PUBREL for it (QoS 2: the
    client has it then, paho hands it on at PUBREL, and the broker must not send that PUBLISH
    again, MQTT 3.1.1 4.3.3). A PUBLISH of a number after a done one is a repeat of the
    broker's making."""
    parse = parse or number
    out, pending = {}, {}
    for p in packets:
        if p["type"] == 3 and p["src"] == broker_port and p["topic"] == topic:
            n = parse(p["payload"] or b"")
            out.setdefault(n, []).append([p["stream"], p["msgid"], p["dup"], p["qos"] == 0])
            if p["qos"]:
                pending[(p["stream"], p["msgid"])] = (out[n][-1], p["qos"])
        elif (p["type"] == 4 and p["dst"] == broker_port) or (p["type"] == 6 and p["src"] == broker_port):
            d, qos = pending.get((p["stream"], p["msgid"]), (None, 0))
            if d is not None and qos == (1 if p["type"] == 4 else 2):
                d[3] = True
                del pending[(p["stream"], p["msgid"])]
    return {n: [tuple(d) for d in v] for n, v in out.items()}


class ScriptedBroker(_Proc):
    """tests/peers/node/broker.js on a free port (see that file for the options)."""

    def __init__(self, port=None, **opts):
        node = shutil.which("node") or "/usr/bin/node"
        check(os.path.isdir(os.path.join(NODE_DIR, "node_modules", "mqtt-packet")),
              "npm package mqtt-packet missing: run make (its deps step runs npm ci in tests/peers/node)")
        self.port = port or free_port()
        super().__init__([node, os.path.join(NODE_DIR, "broker.js"), str(self.port), json.dumps(opts)], stdin=True)
        WAIT.until(lambda: self.events("listening") or self.proc.poll() is not None, 10, "scripted broker listening")
        check(self.events("listening"), "scripted broker did not start: %s" % self.out)

    def events(self, ev=None):
        out = []
        for l in list(self.out):
            try:
                e = json.loads(l)
            except ValueError:
                continue
            if ev is None or e.get("ev") == ev:
                out.append(e)
        return out

    def packets(self, cmd=None, conn=None):
        """Packets komd sent ({"cmd", ..., "_conn", "_bytes"}), in order."""
        out = []
        for e in self.events("packet"):
            p = e["packet"]
            if (cmd is None or p["cmd"] == cmd) and (conn is None or e["conn"] == conn):
                p = dict(p)
                p["_conn"], p["_bytes"] = e["conn"], e["bytes"]
                out.append(p)
        return out

    def errors(self):
        return self.events("error")

    def conns(self):
        return len(self.events("connect"))

    def cmd(self, **kw):
        n = len(self.events("done"))
        self.proc.stdin.write(json.dumps(kw) + "\n")
        self.proc.stdin.flush()
        WAIT.until(lambda: len(self.events("done")) > n, 5, "scripted broker command %s" % kw.get("cmd"))

    def send(self, packet):
        self.cmd(cmd="send", packet=packet)

    def send_raw(self, hexbytes):
        """Raw bytes (a broken packet)."""
        self.cmd(cmd="send", hex=hexbytes)

    def send_together(self, packets):
        """Several packets in one write."""
        self.cmd(cmd="send", packets=packets)

    def publish(self, topic, payload, qos=0, mid=None, **props):
        p = {"cmd": "publish", "topic": topic, "payload": payload, "qos": qos, "retain": False, "dup": False}
        if qos:
            p["messageId"] = mid or 1
        if props:
            p["properties"] = props
        self.send(p)

    def ack(self, n=None):
        """Send the held acknowledgements (the first n of them)."""
        if n is None:
            self.cmd(cmd="ack")
        else:
            self.cmd(cmd="ack", n=n)

    def set(self, **options):
        self.cmd(cmd="set", options=options)

    def close_conns(self):
        self.cmd(cmd="close")

    def wait_packet(self, cmd, n=1, timeout=10, conn=None):
        WAIT.until(lambda: len(self.packets(cmd, conn)) >= n, timeout, "%d %s packet(s) from the client" % (n, cmd))
        return self.packets(cmd, conn)


def alpn_server(port, pki, protocols="x-amzn-mqtt-ca"):
    """openssl s_server with -alpn on port, with the server certificate of tlspki.make(pki);
    srv.wait(r"ALPN protocols advertised by the client: (.*)") gives what a client offered."""
    from tlspki import s_server
    return s_server(port, "-cert", os.path.join(pki, "server.pem"), "-key", os.path.join(pki, "server.key"),
                    "-alpn", protocols)


def ctl_set(sock, tag, value, timeout=10):
    """komctl set TAG VALUE over the control socket (komctl's own request format, without
    starting a process for each value); returns komd's answer text."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(sock)
    s.sendall(("text\x1fset\x1f%s\x1f%s\n" % (tag, value)).encode())
    buf = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        buf += d
    s.close()
    return buf.decode(errors="replace")


class Publisher:
    """Set a memory tag to 1, 2, 3, ... (komd publishes each change) in a thread, at most
    rate values a second, until count or stop()."""

    def __init__(self, sock, tag, count, rate=200.0, first=1):
        self.sock, self.tag, self.count, self.rate = sock, tag, count, rate
        self.first, self.last = first, first - 1
        self.stopped = False
        self.errors = []
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        t0 = time.monotonic()
        for i in range(self.count):
            if self.stopped:
                break
            n = self.first + i
            try:
                ans = ctl_set(self.sock, self.tag, n)
            except OSError as e:
                self.errors.append("set %d: %s" % (n, e))
                break
            if "error" in ans.lower() or "refused" in ans.lower():
                self.errors.append("set %d: %s" % (n, ans.strip()))
            self.last = n
            WAIT.kick()
            ahead = t0 + (i + 1) / self.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)       # pacing the load, not synchronisation
        WAIT.kick()

    def done(self):
        return not self.t.is_alive()

    def stop(self):
        self.stopped = True
        self.t.join(10)


# ---- komd configuration pieces shared by the MQTT tests (names from /work/mqtt-spec.md) ----

def mqtt_line(port, stations, name="mq", extra="", backup_port=None, redundancy=None, version="3.1.1"):
    """An mqtt-client line to 127.0.0.1:port (tcp-redundant with backup_port)."""
    typ = ""
    if backup_port:
        typ = 'type = "tcp-redundant"; backup = { host = "127.0.0.1"; port = %d; };' % backup_port
        if redundancy:
            typ += ' redundancy = "%s";' % redundancy
    return """{ name = "%s"; protocol = "mqtt-client"; host = "127.0.0.1"; port = %d; %s
      mqtt_version = "%s"; connect_timeout = 1; reconnect_delay = 0.2; reconnect_max = 0.5; %s
      stations = ( %s ); }""" % (name, port, typ, version, extra, stations)


def conf(lines, tags=""):
    return ("tags = ( %s );\n" % tags if tags else "") + "lines = ( %s );\n" % ", ".join(lines)


def mem_tag(name, typ="int", initial=0):
    return '{ name = "%s"; type = "%s"; initial = %s; direction = "inout"; }' % (name, typ, initial)
