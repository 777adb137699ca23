/* mqtt_send.c: what the mqtt-client protocol sends (MQTT 3.1.1 / 5.0): packets encoded by
 * mqtt_codec.c and written to the session, topic aliases for komd's publishes (5.0
 * 3.3.2.3.4), the pump that moves each session path's queue onto the connection within
 * the in-flight window (4.9 flow control) and the flow window, and the sender's side of
 * QoS 1 and 2 (4.3.2, 4.3.3: PUBACK, PUBREC/PUBREL, PUBCOMP). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt.h"

void
mqtt_gauges(struct mqtt_line *ml)
{
	size_t n = 0, b = 0;

	for (int i = 0; i < ml->npaths; i++) {
		n += ml->path[i].nmsgs;
		b += ml->path[i].nbytes;
	}
	line_counter_set(ml->l, MQC_QUEUED_MSGS, n);
	line_counter_set(ml->l, MQC_QUEUED_BYTES, b);
}

/* ---- sending ---- */

static uint8_t *mqtt_obuf;
static size_t mqtt_ocap;

/* Encode p into the shared output buffer: its length, or -1 (logged). */
static long
mqtt_encode_buf(struct mqtt_session *ms, const struct mqtt_packet *p)
{
	char err[200];
	long n = mqtt_encode(p, ms->v, mqtt_obuf, mqtt_ocap, err, sizeof(err));

	if (n > (long)mqtt_ocap) {
		size_t cap = (size_t)n + 256;
		uint8_t *b = realloc(mqtt_obuf, cap);
		if (!b) {
			log_warnx("line %s: %s: out of memory encoding %s", line_name(ms->ml->l), session_peer(ms->s),
			    mqtt_type_name(p->type));
			return -1;
		}
		mqtt_obuf = b;
		mqtt_ocap = cap;
		n = mqtt_encode(p, ms->v, mqtt_obuf, mqtt_ocap, err, sizeof(err));
	}
	if (n < 0)
		log_warnx("line %s: %s: %s not sent: %s", line_name(ms->ml->l), session_peer(ms->s),
		    mqtt_type_name(p->type), err);
	return n;
}

/* What a read's packets make komd send (acknowledgements, the next publishes of the
 * window) goes out as one write when they are handled (on_frames_done); what one loop
 * pass sends otherwise (the changes of a poll) at the end of the pass (a 0 ms timer):
 * one system call rather than one a packet. */
#define MQTT_BATCH_MAX (64 * 1024)
/* Longest wait for half a full window's acknowledgements before reading what there is
 * (microseconds). mosquitto answers a packet in 30 to 50 us when busy, so half a window of
 * 20 takes about this long: long enough to gather them, short enough that the broker never
 * runs out of work (2 ms cost QoS 2 40 % of its rate in the benchmark, 0.3 to 1 ms nothing). */
#define MQTT_ACK_BATCH_US 500

void
mqtt_flush(struct mqtt_session *ms)
{
	if (ms->out_len && !session_closing(ms->s))
		session_write(ms->s, ms->out, ms->out_len);
	ms->out_len = 0;
}

void
mqtt_flush_cb(void *arg)
{
	mqtt_flush(arg);
}

static void
mqtt_write(struct mqtt_session *ms, const struct mqtt_packet *p, size_t n)
{
	if (ms->out_len + n > MQTT_BATCH_MAX)
		mqtt_flush(ms);
	if (n >= MQTT_BATCH_MAX || !ms->flush) {
		session_write(ms->s, mqtt_obuf, n);
	} else {
		if (!ms->out && (ms->out = malloc(MQTT_BATCH_MAX)) == NULL) {
			mqtt_close(ms, "out of memory");
			return;
		}
		memcpy(ms->out + ms->out_len, mqtt_obuf, n);
		ms->out_len += n;
		/* reading: on_frames_done writes them; else the end of this loop pass */
		if (!ms->in_read && !ptimer_pending(ms->flush))
			ptimer_start(ms->flush, 0);
	}
	session_count_frame(ms->s, true);
	ms->last_tx = mqtt_now();
	ms->tx_total += n;
	if (session_tracing(ms->s)) {
		char text[600];
		mqtt_describe(p, text, sizeof(text));
		session_trace(ms->s, true, mqtt_obuf, n, text);
	}
}

int
mqtt_send(struct mqtt_session *ms, const struct mqtt_packet *p)
{
	long n = mqtt_encode_buf(ms, p);

	if (n < 0)
		return -1;
	mqtt_write(ms, p, (size_t)n);
	return 0;
}

/* Close for a reason komd found (kept for on_close). */
void
mqtt_close(struct mqtt_session *ms, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(ms->why, sizeof(ms->why), fmt, ap);
	va_end(ap);
	mqtt_flush(ms);
	session_close(ms->s, ms->why);
}

void
mqtt_send_ack(struct mqtt_session *ms, enum mqtt_type t, uint16_t pid, uint8_t reason)
{
	struct mqtt_packet p;

	memset(&p, 0, sizeof(p));
	p.type = t;
	p.packet_id = pid;
	p.reason_code = reason;
	mqtt_send(ms, &p);
}

/* A protocol error komd found: with MQTT 5, DISCONNECT with its reason code first (4.13.1),
 * then the core's close (logged, counted). */
void
mqtt_proto_error(struct mqtt_session *ms, uint8_t reason, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (ms->v == MQTT_V5 && !session_closing(ms->s))
		mqtt_send_ack(ms, MQTT_DISCONNECT, 0, reason);
	mqtt_flush(ms);
	snprintf(ms->why, sizeof(ms->why), "protocol error: %s", msg); /* komd's decision (on_close) */
	session_protocol_error(ms->s, "%s", msg);
}

void
mqtt_ping(struct mqtt_session *ms)
{
	struct mqtt_packet p;

	if (ms->ping_ms)
		return;
	memset(&p, 0, sizeof(p));
	p.type = MQTT_PINGREQ;
	if (mqtt_send(ms, &p) == 0) {
		ms->ping_ms = mqtt_now();
		ms->ping_mark = ms->tx_total;
	}
}

/* ---- topic aliases komd sends (3.3.2.3.4): per connection, up to the broker's maximum ---- */

/* The alias of topic on this connection (*known), or the one it gets if the PUBLISH that
 * sets it goes out (*slot, for mqtt_alias_commit), or 0: no alias (none left, none
 * allowed). A PUBLISH that is not sent (too large) must not leave an alias behind that
 * the broker never learnt. */
static int
mqtt_alias_out(struct mqtt_session *ms, const char *topic, bool *known, int *slot)
{
	uint32_t h;
	int i;

	*known = false;
	*slot = -1;
	if (ms->alias_out_max == 0)
		return 0;
	if (!ms->alias_out) {
		ms->alias_out_cap = 2;
		while (ms->alias_out_cap < 2 * ms->alias_out_max)
			ms->alias_out_cap <<= 1;
		if ((ms->alias_out = calloc((size_t)ms->alias_out_cap, sizeof(*ms->alias_out))) == NULL) {
			ms->alias_out_max = 0;
			return 0;
		}
	}
	h = str_hash(topic);
	for (i = (int)(h & (uint32_t)(ms->alias_out_cap - 1)); ms->alias_out[i].topic;
	    i = (i + 1) & (ms->alias_out_cap - 1))
		if (strcmp(ms->alias_out[i].topic, topic) == 0) {
			*known = true;
			return ms->alias_out[i].alias;
		}
	if (ms->alias_out_n >= ms->alias_out_max)
		return 0;
	*slot = i;
	return ms->alias_out_n + 1;
}

static void
mqtt_alias_commit(struct mqtt_session *ms, int slot, const char *topic)
{
	/* out of memory: the broker has the alias, komd sends the topic again (a new mapping) */
	if ((ms->alias_out[slot].topic = strdup(topic)) != NULL)
		ms->alias_out[slot].alias = (uint16_t)++ms->alias_out_n;
}

void
mqtt_alias_free(struct mqtt_session *ms)
{
	for (int i = 0; ms->alias_out && i < ms->alias_out_cap; i++)
		free(ms->alias_out[i].topic);
	free(ms->alias_out);
	ms->alias_out = NULL;
	for (int i = 0; ms->alias_in && i <= ms->alias_in_max; i++)
		free(ms->alias_in[i]);
	free(ms->alias_in);
	ms->alias_in = NULL;
}

/* ---- the outgoing queue ---- */

static void
mqtt_drop_log(struct mqtt_line *ml, struct mqtt_path *p)
{
	if (p->oversize) {
		log_warnx("line %s: %s session: %llu more message%s over the broker's Maximum Packet Size dropped",
		    line_name(ml->l), p->name, (unsigned long long)p->oversize, p->oversize == 1 ? "" : "s");
		p->oversize = 0;
		p->oversize_logged_ms = mqtt_now();
	}
	if (!p->dropped)
		return;
	log_warnx("line %s: %s session: queue full: dropped %llu message%s, oldest first (queue_messages %d, "
	    "queue_bytes %d)", line_name(ml->l), p->name, (unsigned long long)p->dropped, p->dropped == 1 ? "" : "s",
	    ml->c->queue_messages, ml->c->queue_bytes);
	p->dropped = 0;
	p->drop_logged_ms = mqtt_now();
}

void
mqtt_drop_timer_cb(void *arg)
{
	struct mqtt_line *ml = arg;

	for (int i = 0; i < ml->npaths; i++)
		mqtt_drop_log(ml, &ml->path[i]);
	if (ml->perr_more) {
		log_warnx("line %s: %llu more payload error%s and refused commands not logged (at most %d a tag in "
		    "%d s)", line_name(ml->l), (unsigned long long)ml->perr_more, ml->perr_more == 1 ? "" : "s",
		    MQTT_PERR_BURST, MQTT_DROP_LOG_MS / 1000);
		ml->perr_more = 0;
	}
}

/* Queue a message on path i (or every path, i < 0), and send what the window allows. */
void
mqtt_enqueue(struct mqtt_line *ml, int i, const char *topic, const void *payload, size_t len, uint8_t qos,
    bool retain, const void *corr, size_t corr_len, struct mqtt_src *src)
{
	for (int k = 0; k < ml->npaths; k++) {
		struct mqtt_path *p = &ml->path[k];
		struct mqtt_msg *m;
		unsigned dropped;

		if (i >= 0 && k != i)
			continue;
		if ((m = mqtt_msg_new(topic, payload, len, qos, retain, corr, corr_len)) == NULL) {
			dropped = 1;
			if (src)
				src[k].need = true;
		} else {
			m->src = src ? &src[k] : NULL;
			dropped = mqtt_path_push(p, m, (size_t)ml->c->queue_messages, (size_t)ml->c->queue_bytes);
		}
		if (dropped) {
			line_counter_add(ml->l, MQC_QUEUE_DROPPED, dropped);
			p->dropped += dropped;
			if (mqtt_now() - p->drop_logged_ms >= MQTT_DROP_LOG_MS)
				mqtt_drop_log(ml, p);
			else if (ml->drop_timer && !ptimer_pending(ml->drop_timer))
				ptimer_start(ml->drop_timer, MQTT_DROP_LOG_MS);
		}
		if (p->s)
			mqtt_pump(session_priv(p->s));
	}
	mqtt_gauges(ml);
}

static void
mqtt_on_wire(struct mqtt_path *p, struct mqtt_msg *m)
{
	m->on_wire = true;
	m->sent_ms = mqtt_now();
	p->nwire++;
}

/* Send one queued message (first send, or again after a reconnection). 0 sent (or
 * dropped as oversize), -1 the connection cannot take it now. */
static int
mqtt_send_msg(struct mqtt_session *ms, struct mqtt_msg *m)
{
	struct mqtt_path *p = ms->p;
	struct mqtt_packet pk;
	bool known = false;
	int slot = -1;
	long n;

	memset(&pk, 0, sizeof(pk));
	if (m->state == MM_RELEASED) {
		pk.type = MQTT_PUBREL;
		pk.packet_id = m->pid;
		if (mqtt_send(ms, &pk) != 0)
			return -1;
		line_counter_add(ms->ml->l, MQC_REDELIVERED, 1);
		mqtt_on_wire(p, m);
		return 0;
	}
	pk.type = MQTT_PUBLISH;
	pk.qos = m->pid ? m->qos : (m->qos > ms->max_qos ? ms->max_qos : m->qos);
	pk.retain = m->retain && ms->retain_ok;
	pk.dup = m->dup;
	pk.topic.p = m->topic;
	pk.topic.len = strlen(m->topic);
	pk.payload.p = m->payload;
	pk.payload.len = m->len;
	if (ms->v == MQTT_V5) {
		int a = mqtt_alias_out(ms, m->topic, &known, &slot);
		if (a) {
			MQTT_PROP_SET(&pk.props, MQTT_P_TOPIC_ALIAS);
			pk.props.topic_alias = (uint16_t)a;
			if (known)
				pk.topic.len = 0, pk.topic.p = "";
		}
		if (m->corr) {
			MQTT_PROP_SET(&pk.props, MQTT_P_CORRELATION_DATA);
			pk.props.correlation_data.p = m->corr;
			pk.props.correlation_data.len = m->corr_len;
		}
	}
	if (pk.qos && !m->pid) {
		if ((m->pid = mqtt_path_new_pid(p)) == 0)
			return -1; /* 65,535 in flight: wait */
		m->qos = pk.qos;
		m->state = MM_SENT;
	}
	pk.packet_id = m->pid;
	n = mqtt_encode_buf(ms, &pk);
	uint32_t limit = ms->max_out < p->learned_max ? ms->max_out : p->learned_max;
	if (n < 0 || (uint32_t)n > limit) {
		/* too large for this broker (or not encodable): dropped here, never a reconnect loop */
		if (n >= 0) {
			line_counter_add(ms->ml->l, MQC_OVERSIZE_DROPPED, 1);
			if (mqtt_now() - p->oversize_logged_ms >= MQTT_DROP_LOG_MS) {
				log_warnx("line %s: %s: message to %s dropped: %ld bytes, more than the broker's %s %u",
				    line_name(ms->ml->l), session_peer(ms->s), m->topic, n, limit == ms->max_out ?
				    "Maximum Packet Size" : "packet size limit learnt from its closes, at most", limit);
				p->oversize_logged_ms = mqtt_now();
			} else {
				p->oversize++;
				if (ms->ml->drop_timer && !ptimer_pending(ms->ml->drop_timer))
					ptimer_start(ms->ml->drop_timer, MQTT_DROP_LOG_MS);
			}
		}
		if (m->src)
			m->src->need = true;
		mqtt_path_remove(p, m);
		return 0;
	}
	if (m->dup)
		line_counter_add(ms->ml->l, MQC_REDELIVERED, 1);
	else
		line_counter_add(ms->ml->l, MQC_PUBLISHED, 1);
	mqtt_write(ms, &pk, (size_t)n);
	if (slot >= 0)
		mqtt_alias_commit(ms, slot, m->topic);
	if (pk.qos == 0) {
		mqtt_path_remove(p, m);
		return 0;
	}
	m->dup = true; /* a later send with this packet id is a redelivery */
	m->wire_bytes = (uint32_t)n;
	mqtt_on_wire(p, m);
	return 0;
}

/* Send queued messages in order while the in-flight window and the flow window allow. */
void
mqtt_pump(struct mqtt_session *ms)
{
	struct mqtt_path *p = ms->p;
	struct mqtt_msg *m;

	bool window_full = false;

	if (ms->state != MSS_UP || session_closing(ms->s))
		return;
	while ((m = p->next) != NULL) {
		bool acked = m->state != MM_NEW || (m->qos > 0 && ms->max_qos > 0);
		/* a PINGREQ at half the flow window (its PINGRESP says the broker has read up to
		 * there), so that the broker has the other half to read while it comes back */
		if (ms->tx_total - ms->confirmed > MQTT_FLOW_WINDOW / 2)
			mqtt_ping(ms);
		if (ms->tx_total - ms->confirmed > MQTT_FLOW_WINDOW)
			break;
		if (acked && p->nwire >= ms->window) {
			window_full = true;
			break;
		}
		p->next = TAILQ_NEXT(m, link);
		if (mqtt_send_msg(ms, m) != 0) {
			p->next = m;
			break;
		}
		if (session_closing(ms->s))
			break;
	}
	if (!p->next && ms->cur_active)
		mqtt_current_step(ms); /* all sent: the next current values */
	/* A full in-flight window with more waiting: the broker's acknowledgements (PUBACK,
	 * PUBREC, PUBCOMP: 4 bytes or more each, 3.4, 3.5, 3.7; each message on the wire owes
	 * one) read half a window at a time, in one loop pass rather than a wake-up each, while
	 * the broker works on the other half; MQTT_ACK_BATCH_US at most in any case (a slow
	 * broker, or a PINGRESP alone). A broker with Nagle's algorithm (mosquitto's default)
	 * sends one acknowledgement and holds the rest until the TCP acknowledgement of what
	 * we sent, so with it every wait ends by the timer: it is short for that reason, and
	 * what the broker gathered meanwhile comes in one segment after our next write. */
	ms->ack_mark = window_full && ms->window >= 4 ? 4 * (size_t)(ms->window / 2) : 0;
	mqtt_read_mark(ms);
	mqtt_gauges(ms->ml);
}

void
mqtt_read_mark(struct mqtt_session *ms)
{
	size_t bytes = ms->ack_mark > ms->rx_mark ? ms->ack_mark : ms->rx_mark;

	if (!session_closing(ms->s))
		session_read_batch(ms->s, bytes, bytes > 1 ? MQTT_ACK_BATCH_US : 0);
}

/* ---- acknowledgements of our publishes (4.3.2, 4.3.3) ---- */

int
mqtt_on_ack(struct mqtt_session *ms, const struct mqtt_packet *pk)
{
	struct mqtt_path *p = ms->p;
	struct mqtt_msg *m = mqtt_path_find(p, pk->packet_id);
	struct line *l = ms->ml->l;

	if (!m) {
		if (pk->type == MQTT_PUBREC) {
			/* not ours (any more): release it so the broker can forget it (v5: not found) */
			log_debug("line %s: %s: PUBREC for unknown packet id %u", line_name(l), session_peer(ms->s),
			    pk->packet_id);
			mqtt_send_ack(ms, MQTT_PUBREL, pk->packet_id, ms->v == MQTT_V5 ? 0x92 : 0);
		} else
			log_debug("line %s: %s: %s for unknown packet id %u ignored", line_name(l), session_peer(ms->s),
			    mqtt_type_name(pk->type), pk->packet_id);
		return 0;
	}
	if (pk->reason_code >= 0x80)
		log_warnx("line %s: %s: message to %s refused by the broker: %s", line_name(l), session_peer(ms->s),
		    m->topic, mqtt_reason_name(ms->v, pk->type, pk->reason_code));
	if (pk->type != MQTT_PUBCOMP && m->wire_bytes > p->max_acked)
		p->max_acked = m->wire_bytes; /* the broker read a packet this large */
	switch (pk->type) {
	case MQTT_PUBACK:
		if (m->qos != 1 || m->state != MM_SENT) {
			mqtt_proto_error(ms, 0x82, "PUBACK for packet id %u, a QoS %u message (4.3.2)", pk->packet_id, m->qos);
			return -1;
		}
		mqtt_path_remove(p, m);
		break;
	case MQTT_PUBREC:
		if (m->qos != 2) {
			mqtt_proto_error(ms, 0x82, "PUBREC for packet id %u, a QoS %u message (4.3.3)", pk->packet_id, m->qos);
			return -1;
		}
		if (pk->reason_code >= 0x80) {
			mqtt_path_remove(p, m); /* refused: the exchange ends here (v5 4.3.3) */
			break;
		}
		m->state = MM_RELEASED;
		m->sent_ms = mqtt_now();
		mqtt_send_ack(ms, MQTT_PUBREL, m->pid, 0);
		break;
	case MQTT_PUBCOMP:
		if (m->state != MM_RELEASED) {
			mqtt_proto_error(ms, 0x82, "PUBCOMP for packet id %u before its PUBREC (4.3.3)", pk->packet_id);
			return -1;
		}
		mqtt_path_remove(p, m);
		break;
	default:
		break;
	}
	mqtt_pump(ms);
	return 0;
}
