"""mqtt-client delivery guarantees (issue 13, "Delivery guarantees"), each with the count it
proves, against a scripted broker (tests/peers/node/broker.js on npm mqtt-packet: it holds
acknowledgements, says Session Present 1 or 0, announces Receive Maximum) and mosquitto 2.0:
QoS 0/1/2 both ways with exact packet-id state, the in-flight window, the broker's Receive
Maximum at every CONNACK, Session Present 1 (PUBLISH again with DUP, PUBREL again, in order)
and 0 (the queue again with new packet ids, except QoS 2 messages already PUBREC'd), a
stopped broker found within keepalive + reply_timeout while komd publishes QoS 0, and the
bounded queue with its drops counted."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from komdtest import WAIT, Komd, check, free_port, main  # noqa: E402
from mqttpeers import (Mosquitto, Publisher, ScriptedBroker, SeqSubscriber, conf, ctl_set, mem_tag,  # noqa: E402
                       mqtt_line)

TAGS = ", ".join([mem_tag("d.q0"), mem_tag("d.q1"), mem_tag("d.q2")])


def out_station(extra=""):
    return """{ name = "out"; address = "komd/none"; tags = (
        { name = "d.q0"; address = ""; publish = "out/q0"; qos = 0; retain = false; %s },
        { name = "d.q1"; address = ""; publish = "out/q1"; qos = 1; retain = false; %s },
        { name = "d.q2"; address = ""; publish = "out/q2"; qos = 2; retain = false; %s } ); }""" % (extra, extra, extra)


def counters(k):
    return k.line("mq").get("protocol_counters") or {}


def publishes(b, topic, conn=None):
    return [p for p in b.packets("publish", conn) if p["topic"] == topic]


def test_qos_both_ways_exact_ids():
    """Published at QoS 0, 1 and 2 with the acknowledgement flow of each; received at QoS 0,
    1 and 2 with PUBACK / PUBREC-PUBCOMP from komd, a QoS 2 message sent again with DUP
    before PUBREL taken once."""
    b = ScriptedBroker()
    st = out_station() + """, { name = "in"; address = "in/#"; qos = 2; tags = (
        { name = "d.in"; address = "T=in/v"; type = "int"; } ); }"""
    with Komd(conf([mqtt_line(b.port, st, extra="keepalive = 30; reply_timeout = 5;")], TAGS)).start() as k:
        k.wait_log(r"MQTT connected \(3\.1\.1, session present 0")
        sub = b.wait_packet("subscribe")[0]
        check([(x["topic"], x["qos"]) for x in sub["subscriptions"]] == [("in/#", 2)],
              "SUBSCRIBE of the station's filter at its QoS: %s" % sub["subscriptions"])
        for tag in ("d.q0", "d.q1", "d.q2"):
            ctl_set(k.sock, tag, 7)
        WAIT.until(lambda: all(any(p["payload"] == "7" for p in publishes(b, "out/q%d" % q)) for q in (0, 1, 2)),
                   5, "the three publishes")
        for q in (0, 1, 2):
            p = [x for x in publishes(b, "out/q%d" % q) if x["payload"] == "7"][0]
            check(p["qos"] == q and not p["retain"] and not p["dup"], "QoS %d publish: %s" % (q, p))
            check((p.get("messageId") is None) == (q == 0), "packet id only at QoS 1/2: %s" % p)
        q2 = [x for x in publishes(b, "out/q2") if x["payload"] == "7"][0]
        WAIT.until(lambda: any(r["messageId"] == q2["messageId"] for r in b.packets("pubrel")), 5,
                   "PUBREL with the PUBLISH's packet id")
        # into komd: QoS 1 -> PUBACK; QoS 2 -> PUBREC, DUP again before PUBREL: once
        b.publish("in/v", "11", qos=1, mid=300)
        WAIT.until(lambda: any(p["messageId"] == 300 for p in b.packets("puback")), 5, "PUBACK 300")
        k.until(lambda: k.tag("d.in")["value"] == 11, 5, "QoS 1 value")
        b.set(ack=False)          # hold our PUBCOMP answers; PUBREL is ours to send
        b.publish("in/v", "12", qos=2, mid=301)
        WAIT.until(lambda: any(p["messageId"] == 301 for p in b.packets("pubrec")), 5, "PUBREC 301")
        # delivered at PUBLISH (method A of 4.3.3) or at PUBREL (method B): either way once;
        # a second delivery would show as a later receive time of the same value
        first = k.tag("d.in")
        t0 = time.monotonic()
        WAIT.until(lambda: time.monotonic() - t0 > 0.05, 1, "")  # receive times are in ms
        b.send({"cmd": "publish", "topic": "in/v", "payload": "12", "qos": 2, "messageId": 301, "dup": True,
                "retain": False})
        WAIT.until(lambda: len([p for p in b.packets("pubrec") if p["messageId"] == 301]) >= 2, 5, "PUBREC again")
        b.send({"cmd": "pubrel", "messageId": 301})
        WAIT.until(lambda: any(p["messageId"] == 301 for p in b.packets("pubcomp")), 5, "PUBCOMP 301")
        k.until(lambda: k.tag("d.in")["value"] == 12, 5, "QoS 2 value")
        if first["value"] == 12:
            check(k.tag("d.in")["receive_time"] == first["receive_time"],
                  "a QoS 2 message sent again with DUP before PUBREL delivered twice: receive time %s, then %s"
                  % (first["receive_time"], k.tag("d.in")["receive_time"]))
        b.publish("in/v", "13", qos=0)
        k.until(lambda: k.tag("d.in")["value"] == 13, 5, "QoS 0 value")
        check(not b.errors(), "packets mqtt-packet could not parse: %s" % b.errors())
        print("    published QoS 0/1/2 with their flows; received QoS 1, QoS 2 (DUP before PUBREL: once, %s), "
              "QoS 0" % ("delivered at PUBLISH" if first["value"] == 12 else "delivered at PUBREL"))
    b.stop()


def _hold_and_count(b, k, tag, count, conn, window):
    """Set tag count times while the broker holds its acknowledgements; release them each
    time the window is full; return the most PUBLISH packets seen in flight at once."""
    first = len(publishes(b, "out/q1", conn))
    for i in range(count):
        ctl_set(k.sock, tag, 1000 + i)
    most, acked = 0, first
    deadline = time.monotonic() + 20
    while len(publishes(b, "out/q1", conn)) < first + count and time.monotonic() < deadline:
        # the window is full when no further PUBLISH comes: wait for exactly `window` in flight
        WAIT.until(lambda: len(publishes(b, "out/q1", conn)) - acked >= min(window, first + count - acked), 5,
                   "%d messages in flight" % window)
        try:
            # nothing beyond the window may come while the acknowledgements are held
            WAIT.until(lambda: len(publishes(b, "out/q1", conn)) - acked > window, 0.3, "")
        except AssertionError:
            pass
        sent = len(publishes(b, "out/q1", conn))
        most = max(most, sent - acked)
        b.ack()
        acked = sent
    return most, len(publishes(b, "out/q1", conn)) - first


def _current_values_then_hold(b, k):
    """The current values after CONNACK acknowledged (the QoS 2 one's PUBCOMP too: a message
    still in flight would take a place of the window the test measures); then the broker
    holds its acknowledgements."""
    WAIT.until(lambda: len(b.packets("publish")) >= 3, 5, "current values")
    k.until(lambda: counters(k).get("mqtt_queued_messages", 1) == 0, 5, "current values acknowledged")
    b.set(ack=False)


def test_inflight_window_and_receive_maximum():
    """max_inflight = 5 on 3.1.1: at most 5 QoS 1 messages unacknowledged; on v5 the broker's
    Receive Maximum 2 and then 3 (at the next CONNACK) lower it."""
    b = ScriptedBroker()
    with Komd(conf([mqtt_line(b.port, out_station(), extra="max_inflight = 5; keepalive = 30; reply_timeout = 30;")],
                   TAGS)).start() as k:
        k.wait_log(r"MQTT connected")
        _current_values_then_hold(b, k)
        most, n = _hold_and_count(b, k, "d.q1", 23, 1, 5)
        check(n == 23, "all 23 delivered, got %d" % n)
        check(most == 5, "in flight at most max_inflight = 5, and the window used: %d" % most)
        print("    3.1.1: 23 messages, at most %d in flight (max_inflight 5)" % most)
    b.stop()
    b = ScriptedBroker(connack=[{"properties": {"receiveMaximum": 2}}, {"properties": {"receiveMaximum": 3}}])
    with Komd(conf([mqtt_line(b.port, out_station(), version="5",
                              extra="max_inflight = 20; keepalive = 30; reply_timeout = 30;")], TAGS)).start() as k:
        k.wait_log(r"MQTT connected \(5")
        _current_values_then_hold(b, k)
        most, n = _hold_and_count(b, k, "d.q1", 12, 1, 2)
        check(n == 12 and most == 2, "Receive Maximum 2: %d delivered, at most %d in flight" % (n, most))
        b.ack()
        nl = len(k.lines)
        b.set(ack=True)
        b.close_conns()
        k.wait_log(r"MQTT connected \(5", 10, since=nl)
        WAIT.until(lambda: b.conns() >= 2 and len(b.packets("publish", 2)) >= 1, 5, "second connection")
        _current_values_then_hold(b, k)
        most, n = _hold_and_count(b, k, "d.q1", 12, 2, 3)
        check(n == 12 and most == 3, "Receive Maximum 3 at the next CONNACK: %d delivered, at most %d in flight"
              % (n, most))
        print("    v5: Receive Maximum 2 then 3 (new CONNACK): at most 2, then 3 in flight")
    b.stop()


def test_acknowledgements_one_at_a_time():
    """A full window of QoS 1 messages makes komd wait for half a window of PUBACKs before it
    reads (SO_RCVLOWAT; what there is after 0.5 ms without a read, a timerfd): a broker that
    sends one PUBACK at a time must still get the next PUBLISH for each at once (the mark's
    timer ends each wait), and every message in the end."""
    b = ScriptedBroker()
    with Komd(conf([mqtt_line(b.port, out_station(), extra="max_inflight = 20; keepalive = 30; reply_timeout = 30;")],
                   TAGS)).start() as k:
        k.wait_log(r"MQTT connected")
        _current_values_then_hold(b, k)
        first = len(publishes(b, "out/q1"))
        for i in range(40):
            ctl_set(k.sock, "d.q1", 2000 + i)
        WAIT.until(lambda: len(publishes(b, "out/q1")) == first + 20, 5, "a full window of 20")
        worst = 0.0
        for i in range(6):
            n = len(publishes(b, "out/q1"))
            t0 = time.monotonic()
            b.ack(n=1)
            WAIT.until(lambda: len(publishes(b, "out/q1")) >= n + 1, 5,
                       "the next PUBLISH after PUBACK %d of one" % (i + 1))
            worst = max(worst, time.monotonic() - t0)
            check(len(publishes(b, "out/q1")) == n + 1, "one PUBACK frees one place: %d -> %d"
                  % (n, len(publishes(b, "out/q1"))))
        b.set(ack=True)
        b.ack()
        WAIT.until(lambda: len(publishes(b, "out/q1")) == first + 40, 10, "all 40 delivered")
        k.until(lambda: counters(k).get("mqtt_queued_messages", 1) == 0, 5, "all acknowledged")
        vals = [int(p["payload"]) for p in publishes(b, "out/q1")[first:]]
        check(vals == list(range(2000, 2040)), "in order, each once: %s" % vals)
        # the wait is 0.5 ms; a quarter of a second leaves room for a loaded machine and
        # still fails a wait taken in the wrong unit (500 ms) or the 1 s clamp
        check(worst < 0.25, "the next PUBLISH after a single PUBACK took %.0f ms" % (worst * 1000))
        print("    6 single PUBACKs on a full window: the next PUBLISH within %.0f ms each" % (worst * 1000))
    b.stop()


def test_subscribed_burst_then_one():
    """Two PUBLISH packets or more in one read make komd read the next ones about eight at a
    time (SO_RCVLOWAT, at most 0.5 ms later): a burst of 50 in one segment, then a single
    message far below that mark must still be taken at once (the wait's timer), and every
    message of both acknowledged in order and delivered."""
    b = ScriptedBroker()
    st = out_station() + """, { name = "in"; address = "in/#"; qos = 1; tags = (
        { name = "d.in"; address = "T=in/v"; type = "int"; } ); }"""
    with Komd(conf([mqtt_line(b.port, st, extra="keepalive = 30; reply_timeout = 30;")], TAGS)).start() as k:
        k.wait_log(r"MQTT connected")
        b.wait_packet("subscribe")
        for rnd in range(3):
            base = 1000 * (rnd + 1)
            b.send_together([{"cmd": "publish", "topic": "in/v", "payload": str(base + i), "qos": 1,
                              "messageId": base + i, "retain": False, "dup": False} for i in range(50)])
            k.until(lambda: k.tag("d.in")["value"] == base + 49, 5, "the burst's last value")
            t0 = time.monotonic()
            b.publish("in/v", str(base + 50), qos=1, mid=base + 50)
            k.until(lambda: k.tag("d.in")["value"] == base + 50, 5, "the single message after the burst")
            took = time.monotonic() - t0
            check(took < 0.25, "the single message after the burst took %.0f ms (the wait is 0.5 ms)" % (took * 1000))
            WAIT.until(lambda: any(p["messageId"] == base + 50 for p in b.packets("puback")), 5, "its PUBACK")
            ids = [p["messageId"] for p in b.packets("puback") if base <= p["messageId"] <= base + 50]
            check(ids == list(range(base, base + 51)), "PUBACKs in order, each once: %s" % ids)
        print("    3 bursts of 50 PUBLISH in one segment, each followed by one alone: all acknowledged in "
              "order; the last one in %.0f ms" % (took * 1000))
    b.stop()


def _unfinished(b, k):
    """Leave a QoS 2 message PUBREC'd (PUBCOMP held) and then a QoS 1 message unacknowledged;
    returns (q2 PUBLISH, q1 PUBLISH)."""
    k.wait_log(r"MQTT connected")
    WAIT.until(lambda: len(b.packets("publish")) >= 3 and len(b.packets("pubrel")) >= 1, 5, "current values done")
    b.set(ack=False)
    ctl_set(k.sock, "d.q2", 21)
    WAIT.until(lambda: [p for p in publishes(b, "out/q2") if p["payload"] == "21"], 5, "QoS 2 publish")
    b.ack()                                   # PUBREC: komd answers PUBREL, its PUBCOMP is held
    WAIT.until(lambda: len(b.packets("pubrel")) >= 2, 5, "PUBREL")
    ctl_set(k.sock, "d.q1", 22)
    WAIT.until(lambda: [p for p in publishes(b, "out/q1") if p["payload"] == "22"], 5, "QoS 1 publish")
    q2 = [p for p in publishes(b, "out/q2") if p["payload"] == "21"][0]
    q1 = [p for p in publishes(b, "out/q1") if p["payload"] == "22"][0]
    b.set(ack=True, connack={"sessionPresent": b.next_present})
    nl = len(k.lines)
    b.close_conns()
    return q2, q1, nl


def test_session_present_1_and_0():
    b = ScriptedBroker()
    b.next_present = True
    with Komd(conf([mqtt_line(b.port, out_station(), extra="keepalive = 30; reply_timeout = 30;")], TAGS)).start() as k:
        q2, q1, nl = _unfinished(b, k)
        k.wait_log(r"MQTT connected \(3\.1\.1, session present 1", since=nl)
        WAIT.until(lambda: b.conns() >= 2 and b.packets("pubrel", 2) and publishes(b, "out/q1", 2), 5,
                   "PUBREL and PUBLISH again")
        again = [p for p in b.packets(None, 2) if p["cmd"] in ("publish", "pubrel")]
        check(again[0]["cmd"] == "pubrel" and again[0]["messageId"] == q2["messageId"],
              "Session Present 1: PUBREL of the PUBREC'd QoS 2 message first: %s" % again[:3])
        p1 = [p for p in again if p["cmd"] == "publish" and p["topic"] == "out/q1"][0]
        check(p1["dup"] and p1["messageId"] == q1["messageId"] and p1["payload"] == "22",
              "Session Present 1: the unacknowledged PUBLISH again with DUP and its packet id: %s" % p1)
        check(not [p for p in publishes(b, "out/q2", 2) if p["payload"] == "21"], "the PUBREC'd message not again")
        print("    session present 1: PUBREL %d again, then PUBLISH %d with DUP" % (q2["messageId"], q1["messageId"]))
    b.stop()
    b = ScriptedBroker()
    b.next_present = False
    with Komd(conf([mqtt_line(b.port, out_station(), extra="keepalive = 30; reply_timeout = 30;")], TAGS)).start() as k:
        q2, q1, nl = _unfinished(b, k)
        k.wait_log(r"MQTT connected \(3\.1\.1, session present 0", since=nl)
        WAIT.until(lambda: b.conns() >= 2 and [p for p in publishes(b, "out/q1", 2) if p["payload"] == "22"], 5,
                   "the QoS 1 message again")
        p1 = [p for p in publishes(b, "out/q1", 2) if p["payload"] == "22"][0]
        check(not p1["dup"], "Session Present 0: a new message (DUP 0): %s" % p1)
        check(not b.packets("pubrel", 2), "Session Present 0: no PUBREL of the old session")
        WAIT.until(lambda: counters(k).get("mqtt_queued_messages", 1) == 0, 5, "queue empty")
        # the current values go out in tag order in one write: out/q0's there, out/q2's
        # (if komd sent it again) came with it
        WAIT.until(lambda: publishes(b, "out/q0", 2), 5, "the current values after CONNACK")
        again = [p for p in publishes(b, "out/q2", 2) if p["payload"] == "21"]
        check(not again, "Session Present 0: the QoS 2 message the broker PUBREC'd (id %s) is not sent again (it "
              "would be a duplicate); sent: %s; komd: %s" % (q2["messageId"], again, [
                  l for l in k.lines if "MQTT connected" in l or "sent again" in l]))
        print("    session present 0: QoS 1 again as a new message (id %s), PUBREC'd QoS 2 not again" % p1["messageId"])
    b.stop()


def test_stopped_broker_found_while_publishing_qos0():
    """mosquitto SIGSTOPped while komd publishes QoS 0 all the time: the connection is closed
    within keepalive + reply_timeout (2 + 1 s) and the station shows it; SIGCONT: back."""
    with Mosquitto(persist=False) as m:
        line = mqtt_line(m.port, out_station(), extra="keepalive = 2; reply_timeout = 1;")
        with Komd(conf([line], TAGS)).start() as k:
            k.wait_log(r"MQTT connected")
            k.until(lambda: k.line("mq")["stations"][0]["state"] == "ok", 5, "station ok")
            p = Publisher(k.sock, "d.q0", 100000, rate=50)
            WAIT.until(lambda: p.last > 50, 5, "publishing")
            n = len(k.lines)
            m.pause()
            t0 = time.monotonic()
            k.wait_log(r"no answer within 1(\.0)? s", 8, since=n)
            dt = time.monotonic() - t0
            check(dt <= 2 + 1 + 0.8, "found after %.1f s, more than keepalive + reply_timeout" % dt)
            k.until(lambda: k.line("mq")["stations"][0]["state"] != "ok", 5, "station no longer ok")
            m.resume()
            k.wait_log(r"MQTT connected", 10, since=n)
            p.stop()
            print("    a stopped broker found after %.2f s (keepalive 2 + reply_timeout 1)" % dt)


def test_queue_bounds_and_drops():
    """No broker: queue_messages = 50 keeps the newest 50 of 200 QoS 1 changes; the 150
    dropped are counted and logged; when the broker comes, the subscriber
    gets exactly the newest 50, in order."""
    with Mosquitto() as m:
        s = SeqSubscriber(m.port, "out/q1", qos=1, client_id="queue-sub")
        m.wait_saved()
        m.kill()
        st = """{ name = "out"; address = "komd/none"; tags = (
            { name = "d.q1"; address = ""; publish = "out/q1"; qos = 1; retain = false; } ); }"""
        line = mqtt_line(m.port, st, extra="queue_messages = 50; keepalive = 5;")
        with Komd(conf([line], TAGS)).start() as k:
            for i in range(1, 201):
                ctl_set(k.sock, "d.q1", i)
            k.wait_log(r"queue full: dropped", 10)
            c = counters(k)
            dropped = c.get("mqtt_queue_dropped_total", 0)
            check(c.get("mqtt_queued_messages") == 50 and dropped == 150, "50 queued, 150 dropped: %s" % c)
            m.start()
            k.wait_log(r"MQTT connected", 10)
            try:
                k.until(lambda: counters(k).get("mqtt_queued_messages", 1) == 0, 10, "")
            except AssertionError:
                check(False, "the queue is not sent after the connection: %s" % counters(k))
            s.wait_for(151, 200, 15)
            got = [n for n in s.numbers() if n > 0]
            check(got[-50:] == list(range(151, 201)), "the newest 50 in order: %s (komd: %s)" % (got[-55:], counters(k)))
            check(not [n for n in got if 0 < n < 151], "none of the dropped ones: %s" % [n for n in got if n < 151][:10])
            print("    queue_messages 50: %d dropped and counted, the newest 50 delivered in order" % dropped)
        s.close()


def test_queue_bytes_bound():
    port = free_port()
    line = mqtt_line(port, out_station(), extra="queue_bytes = 1024; keepalive = 5;")
    with Komd(conf([line], TAGS)).start() as k:
        for i in range(1, 301):
            ctl_set(k.sock, "d.q1", 1000000 + i)
        k.wait_log(r"queue full: dropped", 10)
        c = counters(k)
        check(0 < c.get("mqtt_queued_bytes", 0) <= 1024, "queue_bytes bound: %s" % c)
        check(c.get("mqtt_queue_dropped_total", 0) > 0, "drops counted: %s" % c)
        print("    queue_bytes 1024: %d bytes queued, %d dropped" % (c["mqtt_queued_bytes"], c["mqtt_queue_dropped_total"]))


def test_oversize_on_311_no_reconnect_loop():
    """mosquitto with max_packet_size 200 on 3.1.1 (where the broker cannot tell its limit): a
    500-byte message must not make komd reconnect again and again; a small one after it
    arrives."""
    with Mosquitto(persist=False, max_packet_size=200) as m:
        s = SeqSubscriber(m.port, "big/#", qos=1, client_id="big-sub")
        tags = mem_tag("d.s", "string", '""') + ", " + mem_tag("d.n")
        st = """{ name = "out"; address = "komd/none"; tags = (
            { name = "d.s"; address = ""; publish = "big/s"; qos = 1; retain = false; },
            { name = "d.n"; address = ""; publish = "big/n"; qos = 1; retain = false; } ); }"""
        with Komd(conf([mqtt_line(m.port, st, extra="keepalive = 5;")], tags)).start() as k:
            k.wait_log(r"MQTT connected")
            ctl_set(k.sock, "d.s", "x" * 500)
            ctl_set(k.sock, "d.n", 5)

            def connects():
                return len([l for l in k.lines if "MQTT connected" in l])
            k.wait_log(r"message to big/s dropped: 5\d\d bytes; the broker closed the connection", 10)
            s.wait_for(5, 5, 10)
            check(5 in s.numbers(), "the small message after the big one arrives")
            check(connects() <= 3, "no reconnect loop over one oversize message: %d connections" % connects())
            k.until(lambda: counters(k).get("mqtt_oversize_dropped_total") == 1, 5, "the drop counted: %s" % counters(k))
            n = connects()
            # learnt: a message as large or larger is dropped at once, without a close
            ctl_set(k.sock, "d.s", "y" * 600)
            ctl_set(k.sock, "d.n", 6)
            s.wait_for(6, 6, 10)
            k.until(lambda: counters(k).get("mqtt_oversize_dropped_total") == 2, 5, "the second drop counted")
            check(connects() == n, "the second large message dropped locally: %d connections, were %d" % (connects(), n))
            print("    3.1.1, broker limit 200 bytes, a 500-byte message: %d connection(s), dropped, counted; "
                  "a 600-byte one then dropped at once" % n)
        # the operator knows the limit: broker_max_packet_size = 200, not a single close
        line = mqtt_line(m.port, st, extra="keepalive = 5; broker_max_packet_size = 200; client_id = \"big2\";")
        with Komd(conf([line], tags)).start() as k:
            k.wait_log(r"MQTT connected")
            ctl_set(k.sock, "d.s", "z" * 500)
            ctl_set(k.sock, "d.n", 7)
            s.wait_for(7, 7, 10)
            k.wait_log(r"message to big/s dropped: 5\d\d bytes, more than the broker's Maximum Packet Size 200", 5)
            c = counters(k)
            check(c.get("mqtt_oversize_dropped_total") == 1, "dropped before sending, counted: %s" % c)
            check(len([l for l in k.lines if "MQTT connected" in l]) == 1, "broker_max_packet_size: no close")
            print("    broker_max_packet_size 200: the 500-byte message dropped before sending, one connection")
        s.close()


if __name__ == "__main__":
    main([test_qos_both_ways_exact_ids, test_inflight_window_and_receive_maximum, test_session_present_1_and_0,
          test_stopped_broker_found_while_publishing_qos0, test_queue_bounds_and_drops, test_queue_bytes_bound,
          test_oversize_on_311_no_reconnect_loop, test_acknowledgements_one_at_a_time,
          test_subscribed_burst_then_one])
