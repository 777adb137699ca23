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
the broker's losses. With every broker, a QoS 2 number received twice fails unless the
capture shows the broker's cause (broker_repeats()). The test_activemq_* variants of the same three scenarios show the
literal count: ActiveMQ acknowledges only what KahaDB has synced, and there every number
must arrive (SIGKILLs: at its subscribers; alternate line: at the subscribers of both
brokers together, those of the primary away from before its kill until it is started
again at the end, so that part of the sequence reaches them only from its store; dual
line: at each broker's subscribers). Each test prints the counts it proves."""
import collections
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
# ActiveMQ: a JVM takes seconds to start, and each message is an fsync
ALT_RATE = 100.0
DUAL_RATE = 30.0

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


def subscribers(brokers, prefix):
    """{qos: [a SeqSubscriber with a persistent session on each broker, in order]} for QoS 1
    and 2, once every broker's store holds their subscriptions."""
    subs = {q: [SeqSubscriber(m.port, "seq/q%d" % q, qos=q, client_id="%s-%d-q%d" % (prefix, i, q),
                              resubscribe=getattr(m, "resubscribe", True)) for i, m in enumerate(brokers)]
            for q in (1, 2)}
    for m in brokers:
        m.wait_saved()
    return subs


def close(subs):
    for q in subs:
        for s in subs[q]:
            s.close()


def kill_and_restart(k, pubs, m, kills):
    """SIGKILL the broker m kills times while komd publishes: the i-th time (from 0) once
    (i + 1) / (kills + 2) of the sequence is set and at least 20 values after the last
    restart; keep it down while 40 more values are set (they wait in komd's queue), start it
    again on the same port with the same store, wait until komd is connected to it again.
    Fails when the publishers finished before the last restart."""
    back = 0
    for i in range(kills):
        WAIT.until(lambda: pubs[0].last >= max((i + 1) * N // (kills + 2), back + 20), 30, "publisher progress")
        m.kill()
        last = pubs[0].last
        WAIT.until(lambda: pubs[0].last >= last + 40, 10, "values set while the broker is down")
        n = len(k.lines)
        m.start()
        k.wait_log(r"127\.0\.0\.1:%d: MQTT connected" % m.port, 10, since=n)
        back = pubs[0].last
    check(not pubs[0].done(), "the publishers finished before the last restart: the rate is too high "
          "for this broker's restart time")


def finish(k, cap, pubs, groups, what, timeout=15, literal=False):
    """Wait for the publishers, then for every number; check and print the counts. groups:
    [(name, {qos: [subscribers]}, [broker ports])]: the subscribers of a group together must
    see every number that komd published to those brokers (one group per broker of a dual
    line, one for both brokers of an alternate line). A number lost after a broker took it
    over (PUBACK; PUBREC and komd's PUBREL: tshark's view of the capture, mqttpeers.ledger)
    is the broker's loss, reported; one lost without that is komd's, and fails the test, as
    does a QoS 2 number komd published again after a broker's PUBREC, and a QoS 2 number
    received twice without a cause in the broker (broker_repeats()). literal: every number
    must arrive (a number the broker lost fails too)."""
    for p in pubs:
        WAIT.until(p.done, 30, "publisher of %s done" % p.tag)
        check(not p.errors, "komctl set failed: %s" % p.errors[:3])
    def union_missing(subs):
        got = set()
        for s in subs:
            got |= set(s.numbers())
        return [n for n in range(1, N + 1) if n not in got]
    deadline = time.monotonic() + timeout
    for _, subs_by_qos, _ in groups:
        for subs in subs_by_qos.values():
            try:
                WAIT.until(lambda: not union_missing(subs), max(0.1, deadline - time.monotonic()), "every number")
            except TestFailure:
                pass
    cap.stop()
    packets = cap.packets()
    bad = cap.malformed()
    check(not bad, "%s: tshark: malformed MQTT packets: %s" % (what, bad[:5]))
    faults = []
    for name, subs_by_qos, ports in groups:
        report, f = counts(packets, subs_by_qos, ports, literal)
        print("    %s%s: %s" % (what, name, "; ".join(report)), flush=True)
        faults += ["%s%s" % (name and name.strip(", ") + ": ", x) for x in f]
    if faults:
        keep = os.path.join(BUILD, "test-logs", "mqtt_loss-%d.pcapng" % os.getpid())
        os.makedirs(os.path.dirname(keep), exist_ok=True)
        shutil.copy(cap.path, keep)
        faults.append("capture kept in %s" % keep)
    check(not faults, "%s: %s" % (what, "; ".join(faults)))


def counts(packets, subs_by_qos, ports, literal):
    """finish()'s counts for one group: (report lines, faults)."""
    report, faults = [], []
    for qos, subs in sorted(subs_by_qos.items()):
        times = collections.Counter(n for s in subs for n in s.numbers())     # over the brokers of the group
        got = set(times)
        dups = {n: c for n, c in times.items() if c > 1}
        _, taken, again = ledger(packets, ports, "seq/q%d" % qos)
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
        if literal and broker_lost:
            faults.append("QoS %d: numbers the broker acknowledged and then lost: %s" % (qos, broker_lost[:20]))
        if qos == 2 and dups:       # whatever the broker: each repeat must have its cause there
            resent, redelivered, other = broker_repeats(packets, ports, dups)
            report.append("QoS 2 repeats of the broker's making: %d sent again by komd in a new session (Session "
                          "Present 0, or the backup broker) with no PUBREC for the first (the broker had stored "
                          "the first) %s, %d delivered again by the broker after its PUBREL for them %s" % (
                              len(resent), resent[:10], len(redelivered), redelivered[:10]))
            if other:
                faults.append("QoS 2: numbers received more than once, neither sent again by komd before a PUBREC "
                              "nor delivered again by the broker after its PUBREL: %s" % other[:20])
    return report, faults


def broker_repeats(packets, ports, dups):
    """Sort the QoS 2 numbers the subscribers received more than once (dups) by their cause,
    from the capture: (resent, redelivered, other). resent: komd published the number again
    as a new message in a new session (after a CONNACK with Session Present 0, or to the
    backup broker of an alternate line) with no PUBREC for the first (what komd must do: a
    broker without the session has not got it; ledger()'s again, a fault, holds those sent
    again after a PUBREC), though the broker had stored the first. redelivered: a broker
    sent the number to a subscriber again (on the same connection or a later one) after its
    PUBREL for it (mqttpeers.deliveries: the subscriber had it; 4.3.3 forbids that PUBLISH
    again). other: neither."""
    sends = ledger(packets, ports, "seq/q2")[0]
    outs = [deliveries(packets, port, "seq/q2") for port in ports]
    resent, redelivered, other = [], [], []
    for n in sorted(dups):
        if len(set(x[0] for x in sends.get(n, []))) > 1:
            resent.append(n)
        elif any(any(d[3] for d in o.get(n, [])[:-1]) for o in outs):    # a completed delivery, then another
            redelivered.append(n)
        else:
            other.append(n)
    return resent, redelivered, other


def killed_and_restarted(broker, name, literal=False, rate=RATE):
    """komd publishes N numbers at QoS 1 and 2 while the broker is SIGKILLed KILLS times and
    restarted on the same port with the same store; rate: values set per second (a broker
    that takes seconds to start needs a longer sequence). literal: see finish()."""
    with broker() as m:
        subs = subscribers([m], "loss")
        with Komd(conf([mqtt_line(m.port, station(), extra=LINE_KEYS)], TAGS)).start() as k:
            k.wait_log(r"MQTT connected \(3\.1\.1")
            cap = MqttCapture(m.port, os.path.join(k.dir, "cap.pcapng"))
            pubs = publishers(k, rate)
            kill_and_restart(k, pubs, m, KILLS)
            finish(k, cap, pubs, [("", subs, [m.port])], "%d SIGKILLs of %s" % (KILLS, name), literal=literal)
            check(connected(k, m.port) == KILLS + 1, "komd connected %d times, not %d" % (connected(k, m.port), KILLS + 1))
        close(subs)


def switched_to_backup(broker, name, literal=False, rate=RATE):
    """An alternate line: the primary is SIGKILLed for good a third of the way through, komd
    goes on with the backup; the primary is started again once the publishers are done, so
    that its subscribers get what it had acknowledged (they were away from a quarter of the
    way through until then: numbers about N/4 to N/3 reach them only from its store). The
    subscribers of both brokers together must see every number. literal: see finish()."""
    with broker() as a, broker() as b:
        subs = subscribers([a, b], "alt")
        line = mqtt_line(a.port, station(), extra=LINE_KEYS, backup_port=b.port, redundancy="alternate")
        with Komd(conf([line], TAGS)).start() as k:
            k.wait_log(r"127\.0\.0\.1:%d: MQTT connected" % a.port)
            cap = MqttCapture([a.port, b.port], os.path.join(k.dir, "cap.pcapng"))
            pubs = publishers(k, rate)
            # the primary's subscribers go away for a while before the kill: what the primary
            # takes meanwhile they can get only from its store, after its restart
            WAIT.until(lambda: pubs[0].last >= N // 4, 30, "publisher progress")
            for q in subs:
                subs[q][0].pause()
            WAIT.until(lambda: pubs[0].last >= N // 3, 30, "publisher progress")
            a.kill()
            k.wait_log(r"127\.0\.0\.1:%d: MQTT connected" % b.port, 15)
            for p in pubs:
                WAIT.until(p.done, 60, "publisher of %s done" % p.tag)
            a.start()
            away = {q: len(subs[q][0].numbers()) for q in subs}
            for q in subs:
                subs[q][0].resume()
            finish(k, cap, pubs, [("", subs, [a.port, b.port])], "alternate line of %s, primary killed" % name,
                   literal=literal)
            for q in (1, 2):
                check(subs[q][1].numbers(), "the backup broker got messages at QoS %d" % q)
                check(len(subs[q][0].numbers()) > away[q], "the primary's store held no messages at QoS %d" % q)
        close(subs)


def dual_restarted(broker, name, literal=False, rate=RATE):
    """A dual line: both brokers get every number; broker b is SIGKILLed and restarted twice
    meanwhile, the session to broker a goes on. literal: see finish()."""
    with broker() as a, broker() as b:
        subs = subscribers([a, b], "dual")
        line = mqtt_line(a.port, station(), extra=LINE_KEYS, backup_port=b.port, redundancy="dual")
        with Komd(conf([line], TAGS)).start() as k:
            k.wait_log(r"127\.0\.0\.1:%d: MQTT connected" % a.port)
            k.wait_log(r"127\.0\.0\.1:%d: MQTT connected" % b.port)
            cap = MqttCapture([a.port, b.port], os.path.join(k.dir, "cap.pcapng"))
            pubs = publishers(k, rate)
            kill_and_restart(k, pubs, b, 2)
            finish(k, cap, pubs, [(", broker %s" % n, {q: [subs[q][i]] for q in (1, 2)}, [x.port])
                                  for i, (n, x) in enumerate((("a", a), ("b", b)))],
                   "dual line of %s (b killed twice)" % name, literal=literal)
            check(connected(k, a.port) == 1, "the session to broker a was never interrupted")
            check(connected(k, b.port) == 3, "komd connected to broker b %d times, not 3" % connected(k, b.port))
        close(subs)


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
    switched_to_backup(Mosquitto, "mosquitto")


def test_dual_one_broker_restarted():
    dual_restarted(Mosquitto, "mosquitto")


def test_activemq_alternate_switch_to_backup():
    """The literal count across a switch (see test_activemq_killed_and_restarted): what the
    primary acknowledged is in its journal and reaches its subscribers after its restart,
    the rest the backup's; every number must arrive. ActiveMQ hands a QoS 2 message on at
    PUBLISH, so one the primary stored but had not answered before the kill, which komd
    must send to the backup in its new session, would arrive twice (once through each
    broker): broker_repeats() counts it as the broker's (not seen in 10 runs here). 100
    values a second (6 s); the test takes about 15 s."""
    switched_to_backup(ActiveMQ, "activemq", literal=True, rate=ALT_RATE)


def test_activemq_dual_one_broker_restarted():
    """The literal count on a dual line: each broker's subscribers see every number, while
    broker b is SIGKILLed and restarted twice. 30 values a second (20 s), room for two JVM
    restarts; the test takes about 30 s. Broker b's QoS 2 repeats are those of
    test_activemq_killed_and_restarted."""
    dual_restarted(ActiveMQ, "activemq", literal=True, rate=DUAL_RATE)


if __name__ == "__main__":
    main([test_broker_killed_and_restarted, test_activemq_killed_and_restarted, test_alternate_switch_to_backup,
          test_dual_one_broker_restarted, test_activemq_alternate_switch_to_backup,
          test_activemq_dual_one_broker_restarted])
