"""mqtt-client, zero loss, counted (issue 13, "Delivery guarantees", last bullet): a numbered
sequence published by komd at QoS 1 and at QoS 2 (memory tags set 1, 2, 3, ... through the
control socket; komd publishes each change) while mosquitto is killed with SIGKILL and
restarted several times; paho subscribers with persistent sessions must see every number
(QoS 1 may repeat, QoS 2 never). The same across a switch from the primary to the backup
broker of an `alternate` line, and across a restart of one broker of a `dual` line.

mosquitto runs with persistence true, autosave_interval 1, autosave_on_changes true and a
store it can write (mqttpeers.Mosquitto): without them mosquitto itself loses acknowledged
messages. Even with them mosquitto 2.0.11 writes PUBACK/PUBREC before it saves its store
(src/loop.c: mux__handle(), then persist__backup()), so a SIGKILL in between loses messages
it acknowledged: the mosquitto tests fail on a number komd never handed over and report
the broker's losses. test_activemq_killed_and_restarted shows the literal count: ActiveMQ
acknowledges only what KahaDB has synced, and there every number must arrive (its QoS 2
repeats, all of its own making, are sorted and counted). Each test prints the counts it
proves."""
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from komdtest import BUILD, WAIT, Komd, TestFailure, check, main  # noqa: E402
from mqttpeers import (ActiveMQ, Mosquitto, MqttCapture, Publisher, SeqSubscriber, conf, deliveries,  # noqa: E402
                       ledger, mem_tag, mqtt_line)

N = 600          # numbers per sequence
RATE = 150.0     # values set per second (per sequence)
KILLS = 3

TAGS = ", ".join([mem_tag("seq.q1"), mem_tag("seq.q2")])


def station(extra=""):
    return """{ name = "out"; address = "komd/none"; tags = (
        { name = "seq.q1"; address = ""; publish = "seq/q1"; qos = 1; retain = false; %s },
        { name = "seq.q2"; address = ""; publish = "seq/q2"; qos = 2; retain = false; %s } ); }""" % (extra, extra)


LINE_KEYS = "keepalive = 5; reply_timeout = 2; max_inflight = 20;"


def connected(k, port, since=0):
    return len([l for l in k.lines[since:] if "127.0.0.1:%d: MQTT connected" % port in l])


def publishers(k, rate=RATE):
    return Publisher(k.sock, "seq.q1", N, rate), Publisher(k.sock, "seq.q2", N, rate)


def finish(k, cap, pubs, subs_by_qos, ports, what, timeout=15, literal=False):
    """Wait for the publishers, then for every number; check and print the counts. A number
    lost after the broker took it over (PUBACK; PUBREC and komd's PUBREL: tshark's view of the
    capture, mqttpeers.ledger) is the broker's loss, reported; one lost without that is
    komd's, and fails the test. literal: every number must arrive (a number the broker lost
    fails too), and every QoS 2 repeat must have a cause in the broker (broker_repeats())."""
    for p in pubs:
        WAIT.until(p.done, 30, "publisher of %s done" % p.tag)
        check(not p.errors, "komctl set failed: %s" % p.errors[:3])
    def union_missing(subs):
        got = set()
        for s in subs:
            got |= set(s.numbers())
        return [n for n in range(1, N + 1) if n not in got]
    deadline = time.monotonic() + timeout
    for subs in subs_by_qos.values():
        try:
            WAIT.until(lambda: not union_missing(subs), max(0.1, deadline - time.monotonic()), "every number")
        except TestFailure:
            pass
    cap.stop()
    packets = cap.packets()
    bad = cap.malformed()
    check(not bad, "%s: tshark: malformed MQTT packets: %s" % (what, bad[:5]))
    report, faults = [], []
    for qos, subs in sorted(subs_by_qos.items()):
        got = set()
        dups = {}
        for s in subs:
            got |= set(s.numbers())
            dups.update(s.duplicates())
        taken, again = set(), set()
        for port in ports:
            _, t, a = ledger(packets, port, "seq/q%d" % qos)
            taken |= t
            again |= a
        missing = [n for n in range(1, N + 1) if n not in got]
        komd_lost = [n for n in missing if n not in taken]
        broker_lost = [n for n in missing if n in taken]
        report.append("QoS %d: %d of %d numbers received, %d repeated; lost after the broker took them "
                      "over (the broker's loss): %s" % (
                          qos, N - len(missing), N, sum(v - 1 for v in dups.values()), broker_lost or "none"))
        if komd_lost:
            faults.append("QoS %d: numbers lost that komd never handed over to a broker (no PUBACK, or no "
                          "PUBREC and PUBREL): %s" % (qos, komd_lost[:20]))
        if qos == 2 and again:
            faults.append("QoS 2: numbers komd published again as new messages after the broker's PUBREC: %s"
                          % sorted(again)[:20])
        if qos == 2 and dups and not again and not literal:
            report.append("QoS 2 repeats of the broker's making: %s" % dict(list(dups.items())[:10]))
        if literal and broker_lost:
            faults.append("QoS %d: numbers the broker acknowledged and then lost: %s" % (qos, broker_lost[:20]))
        if literal and qos == 2 and dups:
            resent, redelivered, other = broker_repeats(packets, ports, dups)
            report.append("QoS 2 repeats of the broker's making: %d sent again by komd after a CONNACK with "
                          "Session Present 0 and no PUBREC for the first (the broker had stored the first) %s, "
                          "%d delivered again by the broker after its PUBREL for them %s" % (
                              len(resent), resent[:10], len(redelivered), redelivered[:10]))
            if other:
                faults.append("QoS 2: numbers received more than once, neither sent again by komd before a PUBREC "
                              "nor delivered again by the broker after its PUBREL: %s" % other[:20])
    print("    %s: %s" % (what, "; ".join(report)), flush=True)
    if faults:
        keep = os.path.join(BUILD, "test-logs", "mqtt_loss-%d.pcapng" % os.getpid())
        os.makedirs(os.path.dirname(keep), exist_ok=True)
        shutil.copy(cap.path, keep)
        faults.append("capture kept in %s" % keep)
    check(not faults, "%s: %s" % (what, "; ".join(faults)))


def broker_repeats(packets, ports, dups):
    """Sort the QoS 2 numbers a subscriber received more than once (dups) by their cause, from
    the capture: (resent, redelivered, other). resent: komd published the number again as a
    new message after a reconnection with Session Present 0, with no PUBREC for the first
    (what komd must do: a broker without the session has not got it), though the broker had
    stored the first. redelivered: the broker sent the number to the subscriber again (on the
    same connection or a later one) after its PUBREL for it (mqttpeers.deliveries: the
    subscriber had it; 4.3.3 forbids that PUBLISH again). other: neither."""
    resent, redelivered, other = [], [], []
    for n in sorted(dups):
        sends, outs = [], []
        for port in ports:
            sends += ledger(packets, port, "seq/q2")[0].get(n, [])
            outs += deliveries(packets, port, "seq/q2").get(n, [])
        first = next((i for i, d in enumerate(outs) if d[3]), None)     # first completed delivery
        if len(set(x[0] for x in sends)) > 1:
            resent.append(n)
        elif first is not None and first < len(outs) - 1:
            redelivered.append(n)
        else:
            other.append(n)
    return resent, redelivered, other


class _Stopped:
    """A capture already stopped (read again for the second broker of a dual line)."""

    def __init__(self, cap):
        self.cap, self.path = cap, cap.path

    def stop(self):
        pass

    def packets(self):
        return self.cap.packets()

    def malformed(self):
        return self.cap.malformed()


def killed_and_restarted(broker, name, literal=False, rate=RATE):
    """komd publishes N numbers at QoS 1 and 2 while the broker is SIGKILLed KILLS times and
    restarted on the same port with the same store; rate: values set per second (a broker
    that takes seconds to start needs a longer sequence). literal: see finish()."""
    with broker() as m:
        again = getattr(m, "resubscribe", True)
        s1 = SeqSubscriber(m.port, "seq/q1", qos=1, client_id="loss-sub-q1", resubscribe=again)
        s2 = SeqSubscriber(m.port, "seq/q2", qos=2, client_id="loss-sub-q2", resubscribe=again)
        m.wait_saved()
        with Komd(conf([mqtt_line(m.port, station(), extra=LINE_KEYS)], TAGS)).start() as k:
            k.wait_log(r"MQTT connected \(3\.1\.1")
            cap = MqttCapture(m.port, os.path.join(k.dir, "cap.pcapng"))
            pubs = publishers(k, rate)
            back = 0
            for i in range(KILLS):
                # kill while komd publishes (and at least 20 values after the last restart),
                # stay down while it goes on setting values (they wait in komd's queue), start
                # again on the same port with the same store
                WAIT.until(lambda: pubs[0].last >= max((i + 1) * N // (KILLS + 2), back + 20), 30, "publisher progress")
                m.kill()
                last = pubs[0].last
                WAIT.until(lambda: pubs[0].last >= last + 40, 10, "values set while the broker is down")
                n = len(k.lines)
                m.start()
                k.wait_log(r"127\.0\.0\.1:%d: MQTT connected" % m.port, 10, since=n)
                back = pubs[0].last
            check(not pubs[0].done(), "the publishers finished before the last restart: the rate is too high "
                  "for this broker's restart time")
            finish(k, cap, pubs, {1: [s1], 2: [s2]}, [m.port], "%d SIGKILLs of %s" % (KILLS, name), literal=literal)
            check(connected(k, m.port) == KILLS + 1, "komd connected %d times, not %d" % (connected(k, m.port), KILLS + 1))
        s1.close()
        s2.close()


def test_broker_killed_and_restarted():
    killed_and_restarted(Mosquitto, "mosquitto")


def test_activemq_killed_and_restarted():
    """The literal count: the same with ActiveMQ 5.17 (mqttpeers.ActiveMQ), which answers PUBACK
    and PUBREC only once KahaDB has synced the message to its journal, so nothing it
    acknowledged is lost to SIGKILL: every number must arrive, at QoS 1 and at QoS 2.

    Its quirks (seen in the captures of this test, and in its source):
    - CONNACK always says Session Present 0, also to a client whose persistent session it
      kept (MQTT 3.1.1 3.2.2.2 wants 1). So komd sends again, with new packet ids, what the
      broker had not acknowledged before the kill; a QoS 2 message the broker had stored but
      not yet answered with PUBREC then arrives twice (ActiveMQ hands a QoS 2 message on at
      PUBLISH, not at PUBREL, and keeps no QoS 2 state across a restart).
    - It delivers again messages the subscriber had (PUBACK'd; at QoS 2 after its own PUBREL,
      which 4.3.3 forbids): one or two acknowledged just before a kill, and in about one run
      of three a block of up to 100 on the connection after a restart, from the numbers
      around that kill.
    So "QoS 2 never repeats" cannot hold with it: each QoS 2 repeat must be one of those
    (from the capture: broker_repeats()), else the test fails; the counts are printed.
    - It needs a JVM: 1.0 to 2.5 s from start to accepting here (2 cores, busy), so the
      sequence goes at 20 values a second (30 s), to fit three kills and restarts with room
      to spare; the test takes about 35 s.
    - Debian's activemq leaves the MQTT transport's libraries out of its dependencies
      (libmqtt-client-java, libhawtdispatch-java): the deps step installs them."""
    killed_and_restarted(ActiveMQ, "activemq", literal=True, rate=20.0)


def test_alternate_switch_to_backup():
    """Primary killed for good halfway: komd goes on with the backup broker; the numbers
    acknowledged by the primary reach its subscribers once it is back at the end."""
    with Mosquitto() as a, Mosquitto() as b:
        subs = {q: [SeqSubscriber(x.port, "seq/q%d" % q, qos=q, client_id="alt-%s-q%d" % (n, q))
                    for n, x in (("a", a), ("b", b))] for q in (1, 2)}
        a.wait_saved()
        b.wait_saved()
        line = mqtt_line(a.port, station(), extra=LINE_KEYS, backup_port=b.port, redundancy="alternate")
        with Komd(conf([line], TAGS)).start() as k:
            k.wait_log(r"127\.0\.0\.1:%d: MQTT connected" % a.port)
            cap = MqttCapture([a.port, b.port], os.path.join(k.dir, "cap.pcapng"))
            pubs = publishers(k)
            WAIT.until(lambda: pubs[0].last >= N // 3, 30, "publisher progress")
            a.kill()
            k.wait_log(r"127\.0\.0\.1:%d: MQTT connected" % b.port, 15)
            for p in pubs:
                WAIT.until(p.done, 30, "publisher of %s done" % p.tag)
            a.start()       # its subscribers get what it had acknowledged before the kill
            finish(k, cap, pubs, subs, [a.port, b.port], "alternate line, primary killed")
            for q in (1, 2):
                check(subs[q][1].numbers(), "the backup broker got messages at QoS %d" % q)
        for q in subs:
            for s in subs[q]:
                s.close()


def test_dual_one_broker_restarted():
    """Both brokers get every number; broker b is killed and restarted meanwhile."""
    with Mosquitto() as a, Mosquitto() as b:
        subs = {(q, n): SeqSubscriber(x.port, "seq/q%d" % q, qos=q, client_id="dual-%s-q%d" % (n, q))
                for q in (1, 2) for n, x in (("a", a), ("b", b))}
        a.wait_saved()
        b.wait_saved()
        line = mqtt_line(a.port, station(), extra=LINE_KEYS, backup_port=b.port, redundancy="dual")
        with Komd(conf([line], TAGS)).start() as k:
            k.wait_log(r"127\.0\.0\.1:%d: MQTT connected" % a.port)
            k.wait_log(r"127\.0\.0\.1:%d: MQTT connected" % b.port)
            cap = MqttCapture([a.port, b.port], os.path.join(k.dir, "cap.pcapng"))
            pubs = publishers(k)
            for i in range(2):
                WAIT.until(lambda: pubs[0].last >= (i + 1) * N // 4, 30, "publisher progress")
                b.kill()
                last = pubs[0].last
                WAIT.until(lambda: pubs[0].last >= last + 40, 10, "values set while broker b is down")
                n = len(k.lines)
                b.start()
                k.wait_log(r"127\.0\.0\.1:%d: MQTT connected" % b.port, 10, since=n)
            cap_b = cap
            for n, x in (("a", a), ("b", b)):
                finish(k, cap_b, pubs, {q: [subs[(q, n)]] for q in (1, 2)}, [x.port],
                       "dual line, broker %s (b killed twice)" % n)
                cap_b = _Stopped(cap)
            check(connected(k, a.port) == 1, "the session to broker a was never interrupted")
        for s in subs.values():
            s.close()


if __name__ == "__main__":
    main([test_broker_killed_and_restarted, test_activemq_killed_and_restarted, test_alternate_switch_to_backup,
          test_dual_one_broker_restarted])
