/* test_mqtt_queue.c: the store-and-forward queue of an MQTT session path (mqtt_queue.c):
 * packet identifiers (2.2.1: 1..65535, never two in use), the bounds (oldest unsent
 * dropped first, never a message the broker knows of), and a reconnection: Session
 * Present 1 keeps every packet id for a resend in order (4.4), Session Present 0 gives
 * the messages new ids except QoS 2 ones the broker PUBREC'd (sending them again would
 * deliver them twice, nor may the current values repeat them: pubrec_kept), and the
 * oversize guess of a broker that cannot announce its limit (mqtt_path_broker_closed). The
 * session drives it the same way (mqtt_send.c). */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "mqtt.h"

/* Put m on the wire as the pump does: a packet id, SENT. */
static void
wire(struct mqtt_path *p, struct mqtt_msg *m)
{
	if (!m->pid) {
		m->pid = mqtt_path_new_pid(p);
		m->state = MM_SENT;
	}
	m->on_wire = true;
	p->nwire++;
	p->next = TAILQ_NEXT(m, link);
}

static struct mqtt_msg *
msg(const char *payload, uint8_t qos)
{
	return mqtt_msg_new("t/x", payload, strlen(payload), qos, false, NULL, 0);
}

static void
test_ids_and_bounds(void)
{
	struct mqtt_path p;
	struct mqtt_src src = { .inq = 0, .need = true };
	struct mqtt_msg *a, *b, *c, *d;

	memset(&p, 0, sizeof(p));
	mqtt_path_init(&p, "t");
	CHECK_INT(mqtt_path_push(&p, a = msg("1", 1), 3, 1 << 20), 0);
	CHECK(p.next == a);
	CHECK_INT(mqtt_path_push(&p, b = msg("2", 2), 3, 1 << 20), 0);
	wire(&p, a);
	wire(&p, b);
	CHECK_INT(a->pid, 1);
	CHECK_INT(b->pid, 2);
	CHECK(mqtt_path_find(&p, 2) == b && mqtt_path_find(&p, 3) == NULL);
	/* full: the oldest without a packet id goes; a and b are the broker's */
	c = msg("3", 0);
	c->src = &src;
	CHECK_INT(mqtt_path_push(&p, c, 3, 1 << 20), 0);
	CHECK_INT(src.inq, 1);
	CHECK(!src.need);
	CHECK_INT(mqtt_path_push(&p, d = msg("4", 0), 3, 1 << 20), 1);
	CHECK_INT(p.nmsgs, 3);
	CHECK(TAILQ_LAST(&p.q, mqtt_msgq) == d && p.next == d);
	CHECK_INT(src.inq, 0);
	CHECK(src.need); /* its latest value was lost: republish it at the next connection */
	/* nothing without an id left to drop: the new one goes */
	wire(&p, d);
	CHECK_INT(mqtt_path_push(&p, msg("5", 1), 3, 1 << 20), 1);
	CHECK_INT(p.nmsgs, 3);
	/* bytes bound too */
	mqtt_path_remove(&p, a);
	CHECK_INT(mqtt_path_push(&p, msg("6", 1), 10, p.nbytes + 10), 1);
	/* ids: released with their message, wrapping from 65535 to 1, never 0 */
	CHECK(!mqtt_bit(p.pid_used, 1) && mqtt_bit(p.pid_used, 2));
	p.next_pid = 65535;
	CHECK_INT(mqtt_path_new_pid(&p), 65535);
	CHECK_INT(mqtt_path_new_pid(&p), 1);
	CHECK_INT(mqtt_path_new_pid(&p), 4); /* 2 and 3 are b's and d's */
	mqtt_path_free(&p);
	CHECK_INT(p.nmsgs, 0);
}

static void
test_reconnect(bool present)
{
	struct mqtt_path p;
	struct mqtt_msg *q1, *q2a, *q2b, *q0;

	memset(&p, 0, sizeof(p));
	mqtt_path_init(&p, "t");
	mqtt_path_push(&p, q1 = msg("q1", 1), 100, 1 << 20);
	mqtt_path_push(&p, q2a = msg("q2a", 2), 100, 1 << 20);
	mqtt_path_push(&p, q2b = msg("q2b", 2), 100, 1 << 20);
	mqtt_path_push(&p, q0 = msg("q0", 0), 100, 1 << 20);
	wire(&p, q1);
	wire(&p, q2a);
	wire(&p, q2b);
	q2a->state = MM_RELEASED; /* PUBREC in, PUBREL out */
	mqtt_bit_set(p.qos2_in, 77); /* an incoming QoS 2 exchange open */
	unsigned again = mqtt_path_reconnect(&p, present);
	CHECK_INT(p.nwire, 0);
	CHECK(p.next == TAILQ_FIRST(&p.q));
	if (present) {
		CHECK_INT(again, 3);
		CHECK_INT(p.nmsgs, 4);
		CHECK(q1->pid == 1 && q2a->pid == 2 && q2b->pid == 3);
		CHECK(q2a->state == MM_RELEASED && q2b->state == MM_SENT && !q1->on_wire);
		CHECK(mqtt_bit(p.qos2_in, 77)); /* the broker may still send PUBREL for it */
	} else {
		CHECK_INT(again, 2);
		CHECK_INT(p.nmsgs, 3); /* q2a is the broker's already */
		CHECK(TAILQ_FIRST(&p.q) == q1 && TAILQ_NEXT(q1, link) == q2b && TAILQ_NEXT(q2b, link) == q0);
		CHECK(q1->pid == 0 && q2b->pid == 0 && q1->state == MM_NEW && !q1->dup);
		CHECK(!mqtt_bit(p.pid_used, 1) && !mqtt_bit(p.pid_used, 2) && !mqtt_bit(p.pid_used, 3));
		CHECK(!mqtt_bit(p.qos2_in, 77));
	}
	mqtt_path_free(&p);
}

/* Session Present 0 drops a PUBREC'd QoS 2 message; when it was its tag's latest, the
 * current values after that CONNACK must not publish it again (pubrec_kept, once). */
static struct mqtt_msg *
msg_of(const char *payload, struct mqtt_src *src)
{
	struct mqtt_msg *m = msg(payload, 2);

	m->src = src;
	return m;
}

static void
test_pubrec_kept(void)
{
	struct mqtt_path p;
	struct mqtt_src a = { .need = true }, b = { .need = true };
	struct mqtt_msg *a1, *b1;

	memset(&p, 0, sizeof(p));
	mqtt_path_init(&p, "t");
	mqtt_path_push(&p, a1 = msg_of("a1", &a), 100, 1 << 20);
	mqtt_path_push(&p, b1 = msg_of("b1", &b), 100, 1 << 20);
	mqtt_path_push(&p, msg_of("b2", &b), 100, 1 << 20);
	CHECK(a.inq == 1 && b.inq == 2 && !a.need && !b.need);
	wire(&p, a1);
	wire(&p, b1);
	a1->state = b1->state = MM_RELEASED;
	CHECK_INT(mqtt_path_reconnect(&p, false), 0); /* b2 had no packet id yet */
	CHECK_INT(p.nmsgs, 1);
	CHECK(a.inq == 0 && a.pubrec_kept);   /* the broker has a's latest */
	CHECK(b.inq == 1 && !b.pubrec_kept);  /* b's latest (b2) is still queued */
	mqtt_path_push(&p, msg_of("a2", &a), 100, 1 << 20);
	CHECK(a.inq == 1 && !a.pubrec_kept);  /* a new value: the current one is queued */
	mqtt_path_free(&p);
}

/* The broker closes right after the same unacknowledged PUBLISH, larger than any it took:
 * a strike each time; at MQTT_OVERSIZE_STRIKES it is dropped and the limit learnt. A close
 * long after the send, or after a size it took, is no strike. */
static void
test_broker_closed(void)
{
	struct mqtt_path p;
	struct mqtt_msg *small, *big, *after;
	char topic[64];

	memset(&p, 0, sizeof(p));
	mqtt_path_init(&p, "t");
	CHECK(p.learned_max == MQTT_SPEC_MAX_PACKET);
	mqtt_path_push(&p, small = msg("s", 1), 100, 1 << 20);
	mqtt_path_push(&p, big = msg("bbbbbbbb", 1), 100, 1 << 20);
	mqtt_path_push(&p, after = msg("a", 1), 100, 1 << 20);
	p.max_acked = 100;
	wire(&p, big);
	wire(&p, after);
	(void)small;
	/* small was not sent: the oldest on the wire is big */
	big->wire_bytes = 500, big->sent_ms = 1000;
	after->wire_bytes = 20, after->sent_ms = 1000;
	CHECK_INT(mqtt_path_broker_closed(&p, 1000 + 20000, 10000, topic, sizeof(topic)), 0); /* long after */
	CHECK_INT(big->strikes, 0);
	mqtt_path_reconnect(&p, true);
	wire(&p, small);
	small->wire_bytes = 90, small->sent_ms = 5000;
	wire(&p, big);
	big->sent_ms = 5000;
	CHECK_INT(mqtt_path_broker_closed(&p, 5001, 10000, topic, sizeof(topic)), 0); /* small: a size it took */
	CHECK_INT(small->strikes, 0);
	mqtt_path_remove(&p, small); /* acknowledged */
	mqtt_path_reconnect(&p, true);
	wire(&p, big);
	big->sent_ms = 6000;
	CHECK_INT(mqtt_path_broker_closed(&p, 6001, 10000, topic, sizeof(topic)), 0);
	CHECK_INT(big->strikes, 1);
	mqtt_path_reconnect(&p, true);
	wire(&p, big);
	big->sent_ms = 7000;
	CHECK_INT(mqtt_path_broker_closed(&p, 7001, 10000, topic, sizeof(topic)), 500);
	CHECK(strcmp(topic, "t/x") == 0);
	CHECK_INT(p.learned_max, 499);
	CHECK_INT(p.nmsgs, 1); /* after stays, to go on */
	CHECK(TAILQ_FIRST(&p.q) == after);
	mqtt_path_free(&p);
}

int
main(void)
{
	test_ids_and_bounds();
	test_reconnect(true);
	test_reconnect(false);
	test_pubrec_kept();
	test_broker_closed();
	return CHECK_DONE();
}
