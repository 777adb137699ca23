/* mqtt_queue.c: the store-and-forward queue of an MQTT session path and the sender's
 * packet identifier state (MQTT 3.1.1 / 5.0 clauses 2.2.1 packet identifiers, 4.3.2 QoS 1
 * and 4.3.3 QoS 2 sender, 4.4 message delivery retry, 4.6 ordering). A message stays
 * queued from its publish until its acknowledgement (PUBACK, or PUBCOMP), across
 * connections; the queue is bounded (queue_messages, queue_bytes), the oldest unsent
 * messages dropped first. Pure bookkeeping: no I/O. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt.h"

void
mqtt_path_init(struct mqtt_path *p, const char *name)
{
	TAILQ_INIT(&p->q);
	p->next = NULL;
	p->next_pid = 1;
	p->name = name;
	p->learned_max = MQTT_SPEC_MAX_PACKET;
}

void
mqtt_path_free(struct mqtt_path *p)
{
	struct mqtt_msg *m;

	while ((m = TAILQ_FIRST(&p->q)) != NULL) {
		TAILQ_REMOVE(&p->q, m, link);
		free(m);
	}
	p->next = NULL;
	p->nmsgs = p->nbytes = 0;
	p->nwire = 0;
}

/* Bookkeeping per message, besides its bytes: what a queued message costs in memory. */
#define MQTT_MSG_OVERHEAD 64

struct mqtt_msg *
mqtt_msg_new(const char *topic, const void *payload, size_t len, uint8_t qos, bool retain,
    const void *corr, size_t corr_len)
{
	size_t tlen = strlen(topic) + 1;
	struct mqtt_msg *m = malloc(sizeof(*m) + tlen + len + corr_len);

	if (!m)
		return NULL;
	memset(m, 0, sizeof(*m));
	m->topic = (char *)(m + 1);
	memcpy(m->topic, topic, tlen);
	m->payload = (uint8_t *)m->topic + tlen;
	if (len)
		memcpy(m->payload, payload, len);
	m->len = len;
	if (corr) {
		m->corr = m->payload + len;
		memcpy(m->corr, corr, corr_len);
		m->corr_len = corr_len;
	}
	m->qos = qos;
	m->retain = retain;
	m->bytes = tlen + len + corr_len + MQTT_MSG_OVERHEAD;
	return m;
}

void
mqtt_path_remove(struct mqtt_path *p, struct mqtt_msg *m)
{
	if (p->next == m)
		p->next = TAILQ_NEXT(m, link);
	if (m->on_wire && m->qos > 0)
		p->nwire--;
	if (m->pid)
		mqtt_bit_clr(p->pid_used, m->pid);
	if (m->src)
		m->src->inq--;
	TAILQ_REMOVE(&p->q, m, link);
	p->nmsgs--;
	p->nbytes -= m->bytes;
	free(m);
}

/* The oldest message that the broker does not know of yet (no packet id): the one to
 * drop on overflow. */
static struct mqtt_msg *
mqtt_path_victim(struct mqtt_path *p)
{
	for (struct mqtt_msg *m = p->next ? p->next : NULL; m; m = TAILQ_NEXT(m, link))
		if (!m->pid && !m->on_wire)
			return m;
	return NULL;
}

unsigned
mqtt_path_push(struct mqtt_path *p, struct mqtt_msg *m, size_t max_msgs, size_t max_bytes)
{
	unsigned dropped = 0;

	while (p->nmsgs && (p->nmsgs + 1 > max_msgs || p->nbytes + m->bytes > max_bytes)) {
		struct mqtt_msg *v = mqtt_path_victim(p);
		if (!v) {
			if (m->src)
				m->src->need = true;
			free(m); /* everything queued is the broker's already: the new one goes */
			return dropped + 1;
		}
		if (v->src)
			v->src->need = true;
		mqtt_path_remove(p, v);
		dropped++;
	}
	TAILQ_INSERT_TAIL(&p->q, m, link);
	if (m->src) {
		m->src->inq++;
		m->src->need = false;
		m->src->pubrec_kept = false;
	}
	p->nmsgs++;
	p->nbytes += m->bytes;
	if (!p->next)
		p->next = m;
	return dropped;
}

uint16_t
mqtt_path_new_pid(struct mqtt_path *p)
{
	for (unsigned n = 0; n < 65535; n++) {
		uint16_t id = p->next_pid;
		p->next_pid = (uint16_t)(id == 65535 ? 1 : id + 1);
		if (!mqtt_bit(p->pid_used, id)) {
			mqtt_bit_set(p->pid_used, id);
			return id;
		}
	}
	return 0;
}

struct mqtt_msg *
mqtt_path_find(struct mqtt_path *p, uint16_t pid)
{
	/* acknowledgements come mostly in order: the oldest first */
	for (struct mqtt_msg *m = TAILQ_FIRST(&p->q); m && m != p->next; m = TAILQ_NEXT(m, link))
		if (m->pid == pid && m->on_wire)
			return m;
	return NULL;
}

unsigned
mqtt_path_reconnect(struct mqtt_path *p, bool session_present)
{
	struct mqtt_msg *m, *next;
	unsigned again = 0;

	for (m = TAILQ_FIRST(&p->q); m; m = next) {
		next = TAILQ_NEXT(m, link);
		m->on_wire = false;
		if (!m->pid)
			continue;
		if (session_present) {
			again++;
			continue; /* same packet id: PUBLISH with DUP, or PUBREL (4.4) */
		}
		if (m->state == MM_RELEASED) {
			/* the broker had it (PUBREC): sending it again would deliver it twice; nor
			 * may the current values repeat it when it was its tag's latest */
			struct mqtt_src *src = m->src;
			mqtt_path_remove(p, m);
			if (src && src->inq == 0)
				src->pubrec_kept = true;
			continue;
		}
		mqtt_bit_clr(p->pid_used, m->pid);
		m->pid = 0;
		m->dup = false;
		m->state = MM_NEW;
		again++;
	}
	p->nwire = 0;
	p->next = TAILQ_FIRST(&p->q);
	if (!session_present) {
		memset(p->qos2_in, 0, sizeof(p->qos2_in)); /* a new session: no QoS 2 exchange is open */
		p->nqos2_in = 0;
	}
	return again;
}

uint32_t
mqtt_path_broker_closed(struct mqtt_path *p, int64_t now_ms, int reply_ms, char *topic, size_t topiclen)
{
	struct mqtt_msg *m;
	uint32_t size;

	/* the broker acknowledges in order (4.6): the oldest PUBLISH without its answer is the
	 * one it was reading when it closed */
	for (m = TAILQ_FIRST(&p->q); m && m != p->next; m = TAILQ_NEXT(m, link))
		if (m->on_wire && m->state == MM_SENT)
			break;
	if (!m || m == p->next)
		return 0;
	if (m->wire_bytes <= p->max_acked || now_ms - m->sent_ms > reply_ms) {
		m->strikes = 0; /* a size the broker takes, or a close long after: not this one */
		return 0;
	}
	if (++m->strikes < MQTT_OVERSIZE_STRIKES)
		return 0;
	size = m->wire_bytes;
	if (size - 1 < p->learned_max)
		p->learned_max = size - 1;
	snprintf(topic, topiclen, "%s", m->topic);
	/* src->need stays: its current value again would only be dropped again */
	mqtt_path_remove(p, m);
	return size;
}
