/* mqtt.c: the mqtt-client protocol (MQTT 3.1.1, OASIS 29 October 2014; MQTT 5.0, OASIS
 * 7 March 2019): one client session per broker. It connects (CONNECT/CONNACK, 3.1, 3.2),
 * subscribes each station's topic filter (3.8) and routes what arrives (PUBLISH 3.3, QoS
 * 0/1/2 receiver side 4.3) to the acquired tags by topic, publishes served tags (QoS 0/1/2
 * sender side, with a bounded store-and-forward queue per session path, mqtt_queue.c),
 * carries commands to the hub as writes, keeps the connection alive (PINGREQ 3.12) and
 * closes it when the broker does not answer within reply_timeout, so that the core tries
 * the next broker. A dual line (tcp-redundant) runs two independent sessions, each with
 * its own queue and packet identifiers; subscribed values come from the primary while it
 * is connected, else from the backup. Configuration: mqtt_conf.c. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mqtt.h"

const struct proto_counter mqtt_counters[] = {
	[MQC_QUEUED_MSGS] = { "mqtt_queued_messages", true, "messages waiting or unacknowledged (all session paths)" },
	[MQC_QUEUED_BYTES] = { "mqtt_queued_bytes", true, "bytes of the queued messages" },
	[MQC_QUEUE_DROPPED] = { "mqtt_queue_dropped_total", false, "messages dropped from a full queue (oldest first)" },
	[MQC_OVERSIZE_DROPPED] = { "mqtt_oversize_dropped_total", false,
	    "messages larger than the broker's Maximum Packet Size, dropped" },
	[MQC_PUBLISHED] = { "mqtt_published_total", false, "PUBLISH packets sent (first sends)" },
	[MQC_RECEIVED] = { "mqtt_received_total", false, "messages received (duplicates of QoS 2 not counted)" },
	[MQC_PAYLOAD_ERRORS] = { "mqtt_payload_errors_total", false, "received payloads a tag could not take" },
	[MQC_COMMANDS] = { "mqtt_commands_total", false, "command messages received" },
	[MQC_COMMANDS_REFUSED] = { "mqtt_commands_refused_total", false, "commands refused (bad, too old)" },
	[MQC_REDELIVERED] = { "mqtt_redelivered_total", false, "messages sent again after a reconnection" },
	{ NULL, false, NULL },
};

/* Bytes sent without a PINGRESP confirming that the broker read them: beyond it the
 * sender waits (a PINGREQ is answered after the packets before it, 4.6), so that a burst
 * (a reconnection's queue, 100,000 current values) never fills the connection's output. */
#define MQTT_FLOW_WINDOW (1024 * 1024)
/* Topic aliases komd assigns at most per connection (bounded memory), 3.3.2.3.4. */
#define MQTT_MAX_ALIASES_OUT 1024
/* A queue overflow is logged at most this often (the count in between summed). */
#define MQTT_DROP_LOG_MS 10000

struct mqtt_tag;

struct mqtt_line {
	struct line *l;
	const struct mqtt_line_conf *c;
	enum mqtt_version v;
	struct mqtt_path path[2];
	int npaths;                 /* 2: a dual tcp-redundant line */
	char *client_id;
	/* acquired tags by topic, served tags by command topic (built at the first connect) */
	struct mqtt_tag **route;
	size_t nroute;              /* buckets, a power of 2; 0 not built */
	LIST_HEAD(, mqtt_cmd) cmds; /* commands waiting for their write's result */
	struct ptimer *drop_timer;  /* the overflow summary */
};

/* A topic alias komd uses for its own publishes (per connection). */
struct mqtt_alias { char *topic; uint16_t alias; };

/* The state of one connection. */
enum mqtt_sess_state {
	MSS_CONNECTING,  /* CONNECT sent, CONNACK due */
	MSS_UP,          /* CONNACK 0: publishing and subscribing */
};

/* A SUBSCRIBE waiting for its SUBACK. */
struct mqtt_subreq {
	uint16_t pid;
	int station;
	int64_t sent_ms;
};

struct mqtt_session {
	struct session *s;
	struct mqtt_line *ml;
	struct mqtt_path *p;
	enum mqtt_sess_state state;
	enum mqtt_version v;
	bool inited;
	int window;                 /* QoS 1/2 in flight: min(max_inflight, Receive Maximum) */
	uint32_t max_out;           /* the broker's Maximum Packet Size */
	uint8_t max_qos;            /* the broker's Maximum QoS */
	bool retain_ok;
	int keepalive_ms;           /* 0: none (the broker's Server Keep Alive 0) */
	int64_t connect_ms, last_tx, last_rx, ping_ms;
	uint64_t tx_total, ping_mark, confirmed; /* flow control by PINGREQ */
	struct ptimer *tick;
	struct mqtt_subreq *subs;
	int nsubs;
	bool *subscribed;           /* per station: SUBACK received, every filter granted */
	char **alias_in;            /* topics of the aliases the broker set (1..topic_alias_maximum) */
	int alias_in_max;
	struct mqtt_alias *alias_out; /* open addressing by topic hash */
	int alias_out_cap, alias_out_n, alias_out_max;
	char why[200];              /* the reason of a close komd decided */
};

struct mqtt_station {
	struct station *st;
	int idx;
	bool subscribes;
	bool has_time;
	struct mqtt_jpath time_path;
	struct ptimer *stale;
	int64_t last_msg_ms;
	bool stale_lost, will_lost; /* in error for want of messages, or by the device's will */
	struct ptimer *batch;
	json_t *batch_obj;          /* topic -> array of the batch's objects */
};

struct mqtt_tag {
	struct stag *t;
	struct mqtt_tag *rnext;     /* route chain */
	const char *rkey;           /* topic (acquired) or command topic (served) */
	bool is_cmd;
	struct mqtt_tag_addr addr;  /* acquired */
	struct mqtt_src src[2];     /* served: its messages in each path's queue */
	bool have_last;             /* served: the last published value, for the deadband */
	double last;
	unsigned last_q;
	struct ptimer *period;
};

/* A command whose write the hub carries; answered on its response topic. */
struct mqtt_cmd {
	LIST_ENTRY(mqtt_cmd) link;
	struct mqtt_line *ml;
	int pathi;
	struct write_req *req;
	uint8_t qos;
	char *topic;
	uint8_t *corr;
	size_t corr_len;
	char tag[128];
};

static void mqtt_pump(struct mqtt_session *ms);
static void mqtt_publish_current(struct mqtt_session *ms, bool session_present);

/* Monotonic ms, for the intervals (keep alive, reply_timeout): a step of the wall clock
 * must not close a connection. Commands' ages are wall-clock (time_now_ms). */
static int64_t
mqtt_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *
mqtt_vname(enum mqtt_version v)
{
	return v == MQTT_V5 ? "5" : "3.1.1";
}

/* The session path of s: the backup's own on a dual line, else the one path. */
static int
mqtt_path_index(const struct mqtt_line *ml, const struct session *s)
{
	return ml->npaths == 2 && session_path(s) == PATH_BACKUP ? 1 : 0;
}

static void
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

static void
mqtt_write(struct mqtt_session *ms, const struct mqtt_packet *p, size_t n)
{
	session_write(ms->s, mqtt_obuf, n);
	session_count_frame(ms->s, true);
	ms->last_tx = mqtt_now();
	ms->tx_total += n;
	if (session_tracing(ms->s)) {
		char text[600];
		mqtt_describe(p, text, sizeof(text));
		session_trace(ms->s, true, mqtt_obuf, n, text);
	}
}

static int
mqtt_send(struct mqtt_session *ms, const struct mqtt_packet *p)
{
	long n = mqtt_encode_buf(ms, p);

	if (n < 0)
		return -1;
	mqtt_write(ms, p, (size_t)n);
	return 0;
}

/* Close for a reason komd found (kept for on_close). */
static void
mqtt_close(struct mqtt_session *ms, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void
mqtt_close(struct mqtt_session *ms, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(ms->why, sizeof(ms->why), fmt, ap);
	va_end(ap);
	session_close(ms->s, ms->why);
}

static void
mqtt_send_ack(struct mqtt_session *ms, enum mqtt_type t, uint16_t pid, uint8_t reason)
{
	struct mqtt_packet p;

	memset(&p, 0, sizeof(p));
	p.type = t;
	p.packet_id = pid;
	p.reason_code = reason;
	mqtt_send(ms, &p);
}

static void
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

static int
mqtt_alias_out(struct mqtt_session *ms, const char *topic, bool *known)
{
	uint32_t h;
	int i;

	*known = false;
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
	if (ms->alias_out_n >= ms->alias_out_max || (ms->alias_out[i].topic = strdup(topic)) == NULL)
		return 0;
	ms->alias_out[i].alias = (uint16_t)++ms->alias_out_n;
	return ms->alias_out[i].alias;
}

static void
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
	if (!p->dropped)
		return;
	log_warnx("line %s: %s session: queue full: dropped %llu message%s, oldest first (queue_messages %d, "
	    "queue_bytes %d)", line_name(ml->l), p->name, (unsigned long long)p->dropped, p->dropped == 1 ? "" : "s",
	    ml->c->queue_messages, ml->c->queue_bytes);
	p->dropped = 0;
	p->drop_logged_ms = mqtt_now();
}

static void
mqtt_drop_timer_cb(void *arg)
{
	struct mqtt_line *ml = arg;

	for (int i = 0; i < ml->npaths; i++)
		mqtt_drop_log(ml, &ml->path[i]);
}

/* Queue a message on path i (or every path, i < 0), and send what the window allows. */
static void
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
		int a = mqtt_alias_out(ms, m->topic, &known);
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
	if (n < 0 || (uint32_t)n > ms->max_out) {
		/* too large for this broker (or not encodable): dropped here, never a reconnect loop */
		if (n >= 0) {
			line_counter_add(ms->ml->l, MQC_OVERSIZE_DROPPED, 1);
			log_warnx("line %s: %s: message to %s dropped: %ld bytes, more than the broker's Maximum Packet "
			    "Size %u", line_name(ms->ml->l), session_peer(ms->s), m->topic, n, ms->max_out);
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
	if (pk.qos == 0) {
		mqtt_path_remove(p, m);
		return 0;
	}
	m->dup = true; /* a later send with this packet id is a redelivery */
	mqtt_on_wire(p, m);
	return 0;
}

/* Send queued messages in order while the in-flight window and the flow window allow. */
static void
mqtt_pump(struct mqtt_session *ms)
{
	struct mqtt_path *p = ms->p;
	struct mqtt_msg *m;

	if (ms->state != MSS_UP || session_closing(ms->s))
		return;
	while ((m = p->next) != NULL) {
		bool acked = m->state != MM_NEW || (m->qos > 0 && ms->max_qos > 0);
		if (ms->tx_total - ms->confirmed > MQTT_FLOW_WINDOW) {
			mqtt_ping(ms); /* its PINGRESP says the broker has read up to here */
			break;
		}
		if (acked && p->nwire >= ms->window)
			break;
		p->next = TAILQ_NEXT(m, link);
		if (mqtt_send_msg(ms, m) != 0) {
			p->next = m;
			break;
		}
		if (session_closing(ms->s))
			break;
	}
	mqtt_gauges(ms->ml);
}

/* ---- acknowledgements of our publishes (4.3.2, 4.3.3) ---- */

static int
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
	switch (pk->type) {
	case MQTT_PUBACK:
		if (m->qos != 1 || m->state != MM_SENT) {
			session_protocol_error(ms->s, "PUBACK for packet id %u, a QoS %u message (4.3.2)", pk->packet_id, m->qos);
			return -1;
		}
		mqtt_path_remove(p, m);
		break;
	case MQTT_PUBREC:
		if (m->qos != 2) {
			session_protocol_error(ms->s, "PUBREC for packet id %u, a QoS %u message (4.3.3)", pk->packet_id, m->qos);
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
			session_protocol_error(ms->s, "PUBCOMP for packet id %u before its PUBREC (4.3.3)", pk->packet_id);
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

/* ---- routing of received messages ---- */

static size_t
mqtt_route_bucket(const struct mqtt_line *ml, const char *key)
{
	return str_hash(key) & (ml->nroute - 1);
}

/* Build the routes: every acquired tag by its topic, every served tag with a command by
 * its command topic. */
static int
mqtt_route_build(struct mqtt_line *ml)
{
	size_t n = 0, cap = 16;
	struct line *l = ml->l;

	for (int i = 0; i < line_nstations(l); i++)
		n += (size_t)station_ntags(line_station(l, i));
	while (cap < 2 * n)
		cap <<= 1;
	if ((ml->route = calloc(cap, sizeof(*ml->route))) == NULL)
		return -1;
	ml->nroute = cap;
	for (int i = 0; i < line_nstations(l); i++) {
		struct station *st = line_station(l, i);
		for (int j = 0; j < station_ntags(st); j++) {
			struct mqtt_tag *mt = stag_priv(station_stag(st, j));
			size_t b;
			if (!mt->rkey)
				continue;
			b = mqtt_route_bucket(ml, mt->rkey);
			mt->rnext = ml->route[b];
			ml->route[b] = mt;
		}
	}
	return 0;
}

static void
mqtt_tag_invalid(struct mqtt_line *ml, struct stag *t, const char *topic, const char *why)
{
	char msg[400];

	stag_set_quality(t, stag_quality(t) | Q_INVALID);
	line_counter_add(ml->l, MQC_PAYLOAD_ERRORS, 1);
	snprintf(msg, sizeof(msg), "tag %s: topic %s: %s", stag_name(t), topic, why);
	station_note_error(stag_station(t), msg); /* logged when it differs from the last */
}

/* One received message, for the acquired tags of data session s. */
struct mqtt_rx {
	const char *topic;
	const uint8_t *payload;
	size_t len;
	json_t *root;           /* loaded at the first JSON tag */
	bool loaded;
	char jerr[200];
};

static void
mqtt_rx_tag(struct mqtt_line *ml, struct mqtt_tag *mt, struct mqtt_rx *rx)
{
	struct stag *t = mt->t;
	struct station *st = stag_station(t);
	const struct mqtt_station_conf *sc = station_conf(st)->pconf;
	struct mqtt_station *mst = station_priv(st);
	struct value v;
	char err[200];
	int64_t src = 0;

	if (sc->payload == MQTT_PAYLOAD_JSON) {
		static const struct mqtt_jpath whole = { NULL, 0, NULL };
		if (!rx->loaded) {
			rx->loaded = true;
			rx->root = mqtt_json_load(rx->payload, rx->len, rx->jerr, sizeof(rx->jerr));
		}
		if (!rx->root) {
			mqtt_tag_invalid(ml, t, rx->topic, rx->jerr);
			return;
		}
		if (mqtt_json_value(rx->root, mt->addr.has_ja ? &mt->addr.ja : &whole, stag_type(t), &v, err,
		    sizeof(err)) != 0) {
			mqtt_tag_invalid(ml, t, rx->topic, err);
			return;
		}
		if (mst->has_time && mqtt_json_time(rx->root, &mst->time_path, (enum mqtt_time_format)sc->time_format,
		    &src, err, sizeof(err)) != 0) {
			char msg[300];
			snprintf(msg, sizeof(msg), "topic %s: time_field: %s", rx->topic, err);
			station_note_error(st, msg);
			src = 0;
		}
	} else if (mqtt_text_value(stag_type(t), rx->payload, rx->len, &v, err, sizeof(err)) != 0) {
		mqtt_tag_invalid(ml, t, rx->topic, err);
		return;
	}
	stag_update(t, &v, 0, src);
	value_clear(&v);
}

static void mqtt_command(struct mqtt_session *ms, struct mqtt_tag *mt, const struct mqtt_packet *pk,
    const char *topic);

/* Stations whose filter takes the topic: the message is a sign of life (stale_timeout),
 * or the device's last will (the station in error until its next ordinary message). */
static void
mqtt_rx_stations(struct mqtt_line *ml, const char *topic, size_t tlen, const struct mqtt_packet *pk)
{
	struct line *l = ml->l;

	for (int i = 0; i < line_nstations(l); i++) {
		struct station *st = line_station(l, i);
		struct mqtt_station *mst = station_priv(st);
		const struct mqtt_station_conf *sc = station_conf(st)->pconf;
		const struct station_conf *stc = station_conf(st);

		if (!mst->subscribes)
			continue;
		if (sc->will_topic && strcmp(sc->will_topic, topic) == 0 && (!sc->will_payload ||
		    (strlen(sc->will_payload) == pk->payload.len &&
		    memcmp(sc->will_payload, pk->payload.p, pk->payload.len) == 0))) {
			char why[300];
			snprintf(why, sizeof(why), "the device's last will arrived on %s", topic);
			mst->will_lost = true;
			station_set_comm(st, false, why);
			continue;
		}
		if (!stc->address || !mqtt_topic_match(stc->address, topic, tlen))
			continue;
		mst->last_msg_ms = mqtt_now();
		if (mst->will_lost || mst->stale_lost) {
			mst->will_lost = mst->stale_lost = false;
			station_set_comm(st, true, NULL);
		}
	}
}

static void
mqtt_deliver(struct mqtt_session *ms, const struct mqtt_packet *pk, const char *topic, size_t tlen)
{
	struct mqtt_line *ml = ms->ml;
	bool data = ms->s == line_active_session(ml->l);
	struct mqtt_rx rx = { .topic = topic, .payload = pk->payload.p, .len = pk->payload.len };

	line_counter_add(ml->l, MQC_RECEIVED, 1);
	if (!ml->nroute && mqtt_route_build(ml) != 0) {
		mqtt_close(ms, "out of memory");
		return;
	}
	if (data)
		mqtt_rx_stations(ml, topic, tlen, pk);
	for (struct mqtt_tag *mt = ml->route[mqtt_route_bucket(ml, topic)]; mt; mt = mt->rnext) {
		if (strcmp(mt->rkey, topic) != 0)
			continue;
		if (mt->is_cmd)
			mqtt_command(ms, mt, pk, topic); /* from either broker: each is one commander's */
		else if (data && !((struct mqtt_station *)station_priv(stag_station(mt->t)))->will_lost)
			mqtt_rx_tag(ml, mt, &rx);
		if (session_closing(ms->s))
			break;
	}
	if (rx.root)
		json_decref(rx.root);
}

/* PUBLISH received (3.3, 4.3): topic alias, QoS acknowledgement, no QoS 2 duplicate. */
static int
mqtt_on_publish(struct mqtt_session *ms, struct mqtt_packet *pk)
{
	static char topic[65536];
	const struct mqtt_line_conf *c = ms->ml->c;
	size_t tlen = pk->topic.len;

	if (ms->v == MQTT_V5 && MQTT_PROP_HAS(&pk->props, MQTT_P_TOPIC_ALIAS)) {
		uint16_t a = pk->props.topic_alias;
		if (a == 0 || a > c->topic_alias_maximum) {
			session_protocol_error(ms->s, "PUBLISH: topic alias %u over the Topic Alias Maximum %d komd sent "
			    "(3.3.2.3.4)", a, c->topic_alias_maximum);
			return -1;
		}
		if (tlen) {
			char *t = strndup(pk->topic.p, tlen);
			if (!t) {
				mqtt_close(ms, "out of memory");
				return -1;
			}
			free(ms->alias_in[a]);
			ms->alias_in[a] = t;
		} else if (!ms->alias_in[a]) {
			session_protocol_error(ms->s, "PUBLISH: topic alias %u not set on this connection (3.3.2.3.4)", a);
			return -1;
		} else {
			pk->topic.p = ms->alias_in[a];
			tlen = strlen(ms->alias_in[a]);
		}
	} else if (tlen == 0) {
		session_protocol_error(ms->s, "PUBLISH: empty topic name without a topic alias (3.3.2.1)");
		return -1;
	}
	memcpy(topic, pk->topic.p, tlen);
	topic[tlen] = '\0';
	switch (pk->qos) {
	case 0:
		mqtt_deliver(ms, pk, topic, tlen);
		break;
	case 1:
		mqtt_deliver(ms, pk, topic, tlen);
		mqtt_send_ack(ms, MQTT_PUBACK, pk->packet_id, 0);
		break;
	case 2:
		/* delivered once, at its first PUBLISH; the id stays taken until PUBREL (4.3.3) */
		if (!mqtt_bit(ms->p->qos2_in, pk->packet_id)) {
			mqtt_bit_set(ms->p->qos2_in, pk->packet_id);
			mqtt_deliver(ms, pk, topic, tlen);
		}
		mqtt_send_ack(ms, MQTT_PUBREC, pk->packet_id, 0);
		break;
	}
	return 0;
}

/* ---- commands ---- */

static void
mqtt_cmd_answer(struct mqtt_line *ml, int pathi, const char *topic, uint8_t qos, const void *corr, size_t corr_len,
    bool ok, const char *msg)
{
	char *text = mqtt_command_response(ok, msg);

	if (!text) {
		log_warnx("line %s: response to %s: out of memory", line_name(ml->l), topic);
		return;
	}
	mqtt_enqueue(ml, pathi, topic, text, strlen(text), qos, false, corr, corr_len, NULL);
	free(text);
}

static void
mqtt_cmd_free(struct mqtt_cmd *cmd)
{
	LIST_REMOVE(cmd, link);
	free(cmd);
}

static void
mqtt_cmd_done_cb(void *arg, int status, const char *msg)
{
	struct mqtt_cmd *cmd = arg;

	mqtt_cmd_answer(cmd->ml, cmd->pathi, cmd->topic, cmd->qos, cmd->corr, cmd->corr_len, status == 0,
	    status == 0 ? NULL : msg);
	mqtt_cmd_free(cmd);
}

/* A message on a served tag's command topic: a write through the hub, its result on the
 * response topic (TOPIC/response, or the v5 Response Topic with its Correlation Data). */
static void
mqtt_command(struct mqtt_session *ms, struct mqtt_tag *mt, const struct mqtt_packet *pk, const char *topic)
{
	struct mqtt_line *ml = ms->ml;
	const struct mqtt_tag_conf *tc = stag_conf(mt->t)->pconf;
	const struct station_conf *sc = station_conf(stag_station(mt->t));
	int pathi = mqtt_path_index(ml, ms->s);
	char rtopic_buf[65536];
	const char *rtopic = rtopic_buf;
	const void *corr = NULL;
	size_t corr_len = 0;
	struct value v;
	int64_t issued = 0;
	char err[200];

	line_counter_add(ml->l, MQC_COMMANDS, 1);
	if (ms->v == MQTT_V5 && MQTT_PROP_HAS(&pk->props, MQTT_P_RESPONSE_TOPIC)) {
		snprintf(rtopic_buf, sizeof(rtopic_buf), "%.*s", (int)pk->props.response_topic.len,
		    pk->props.response_topic.p);
	} else
		snprintf(rtopic_buf, sizeof(rtopic_buf), "%s/response", topic);
	if (ms->v == MQTT_V5 && MQTT_PROP_HAS(&pk->props, MQTT_P_CORRELATION_DATA)) {
		corr = pk->props.correlation_data.p;
		corr_len = pk->props.correlation_data.len;
	}
	if (mqtt_command_parse(stag_type(mt->t), mqtt_tag_payload_of(sc, stag_conf(mt->t)) == MQTT_PAYLOAD_JSON,
	    pk->payload.p, pk->payload.len, &v, &issued, err, sizeof(err)) != 0) {
		line_counter_add(ml->l, MQC_COMMANDS_REFUSED, 1);
		log_warnx("line %s: tag %s: command on %s refused: %s", line_name(ml->l), stag_name(mt->t), topic, err);
		mqtt_cmd_answer(ml, pathi, rtopic, (uint8_t)tc->qos, corr, corr_len, false, err);
		return;
	}
	if (ml->c->command_max_age_ms && issued && time_now_ms() - issued > ml->c->command_max_age_ms) {
		snprintf(err, sizeof(err), "command too old: issued %.1f s ago, command_max_age is %.1f s",
		    (time_now_ms() - issued) / 1000.0, ml->c->command_max_age_ms / 1000.0);
		line_counter_add(ml->l, MQC_COMMANDS_REFUSED, 1);
		log_warnx("line %s: tag %s: command on %s refused: %s", line_name(ml->l), stag_name(mt->t), topic, err);
		mqtt_cmd_answer(ml, pathi, rtopic, (uint8_t)tc->qos, corr, corr_len, false, err);
		value_clear(&v);
		return;
	}
	size_t tl = strlen(rtopic) + 1;
	struct mqtt_cmd *cmd = calloc(1, sizeof(*cmd) + tl + corr_len);
	if (!cmd) {
		mqtt_cmd_answer(ml, pathi, rtopic, (uint8_t)tc->qos, corr, corr_len, false, "out of memory");
		value_clear(&v);
		return;
	}
	cmd->ml = ml;
	cmd->pathi = pathi;
	cmd->qos = (uint8_t)tc->qos;
	cmd->topic = (char *)(cmd + 1);
	memcpy(cmd->topic, rtopic, tl);
	if (corr) {
		cmd->corr = (uint8_t *)cmd->topic + tl;
		memcpy(cmd->corr, corr, corr_len);
		cmd->corr_len = corr_len;
	}
	snprintf(cmd->tag, sizeof(cmd->tag), "%s", stag_name(mt->t));
	LIST_INSERT_HEAD(&ml->cmds, cmd, link);
	/* answered at once (a memory tag): the callback freed cmd already */
	struct write_req *req = stag_write(mt->t, &v, mqtt_cmd_done_cb, cmd);
	if (req)
		cmd->req = req;
	value_clear(&v);
}

/* ---- subscriptions (3.8, 3.9) ---- */

static int
mqtt_sub_add(struct mqtt_session *ms, uint16_t pid, int station)
{
	struct mqtt_subreq *n = realloc(ms->subs, (size_t)(ms->nsubs + 1) * sizeof(*n));

	if (!n)
		return -1;
	ms->subs = n;
	n[ms->nsubs].pid = pid;
	n[ms->nsubs].station = station;
	n[ms->nsubs].sent_ms = mqtt_now();
	ms->nsubs++;
	return 0;
}

/* Packet ids of SUBSCRIBE: from the path's pool, as a PUBLISH's (2.2.1: in use until
 * SUBACK); the pool is the path's, so the id never collides with a queued message's. */
static void
mqtt_subscribe_flush(struct mqtt_session *ms, struct mqtt_packet *pk, int station)
{
	if (pk->n_subs == 0)
		return;
	pk->type = MQTT_SUBSCRIBE;
	if ((pk->packet_id = mqtt_path_new_pid(ms->p)) == 0 || mqtt_sub_add(ms, pk->packet_id, station) != 0) {
		mqtt_close(ms, "no packet identifier or memory left for SUBSCRIBE");
		return;
	}
	mqtt_send(ms, pk);
	memset(pk, 0, sizeof(*pk));
}

static void
mqtt_sub_entry(struct mqtt_session *ms, struct mqtt_packet *pk, int station, const char *filter, uint8_t options)
{
	if (pk->n_subs == MQTT_MAX_TOPICS)
		mqtt_subscribe_flush(ms, pk, station);
	pk->subs[pk->n_subs].filter.p = filter;
	pk->subs[pk->n_subs].filter.len = strlen(filter);
	pk->subs[pk->n_subs].options = options;
	pk->n_subs++;
}

/* Each station: its filter (acquired tags), its device's will topic, the command topics
 * of its served tags (No Local with v5, so that komd never hears its own responses). */
static void
mqtt_subscribe(struct mqtt_session *ms)
{
	struct line *l = ms->ml->l;
	struct mqtt_packet pk;

	for (int i = 0; i < line_nstations(l) && !session_closing(ms->s); i++) {
		struct station *st = line_station(l, i);
		const struct station_conf *sc = station_conf(st);
		const struct mqtt_station_conf *c = sc->pconf;
		struct mqtt_station *mst = station_priv(st);
		int before = ms->nsubs;

		if (sc->simulation)
			continue;
		memset(&pk, 0, sizeof(pk));
		if (mst->subscribes) {
			mqtt_sub_entry(ms, &pk, i, sc->address, (uint8_t)c->qos);
			if (c->will_topic && !mqtt_topic_match(sc->address, c->will_topic, strlen(c->will_topic)))
				mqtt_sub_entry(ms, &pk, i, c->will_topic, (uint8_t)c->qos);
		}
		for (int j = 0; j < station_ntags(st); j++) {
			const struct mqtt_tag_conf *tc = stag_conf(station_stag(st, j))->pconf;
			if (tc->publish && tc->command)
				mqtt_sub_entry(ms, &pk, i, tc->command,
				    (uint8_t)(tc->qos | (ms->v == MQTT_V5 ? MQTT_SUB_NO_LOCAL : 0)));
		}
		mqtt_subscribe_flush(ms, &pk, i);
		if (ms->nsubs == before) {
			/* nothing to subscribe: connected is all this station needs */
			ms->subscribed[i] = true;
			if (ms->s == line_active_session(l))
				station_set_comm(st, true, NULL);
		}
	}
}

static void
mqtt_stale_start(struct mqtt_station *mst)
{
	const struct mqtt_station_conf *c = station_conf(mst->st)->pconf;

	if (c->stale_timeout_ms && mst->subscribes) {
		mst->last_msg_ms = mqtt_now();
		ptimer_start(mst->stale, c->stale_timeout_ms);
	}
}

static int
mqtt_on_suback(struct mqtt_session *ms, const struct mqtt_packet *pk)
{
	struct line *l = ms->ml->l;
	int k, station;
	bool more = false;

	for (k = 0; k < ms->nsubs && ms->subs[k].pid != pk->packet_id; k++)
		;
	if (k == ms->nsubs) {
		session_protocol_error(ms->s, "SUBACK for packet id %u, which no SUBSCRIBE had (3.9.2)", pk->packet_id);
		return -1;
	}
	station = ms->subs[k].station;
	mqtt_bit_clr(ms->p->pid_used, pk->packet_id);
	ms->subs[k] = ms->subs[--ms->nsubs];
	struct station *st = line_station(l, station);
	for (int i = 0; i < pk->n_codes; i++)
		if (pk->codes[i] >= 0x80) {
			char why[200];
			snprintf(why, sizeof(why), "subscription refused by the broker: %s",
			    mqtt_reason_name(ms->v, MQTT_SUBACK, pk->codes[i]));
			log_warnx("line %s: %s: station %s: %s", line_name(l), session_peer(ms->s), station_name(st), why);
			if (ms->s == line_active_session(l))
				station_set_comm(st, false, why);
			return 0;
		}
	for (k = 0; k < ms->nsubs; k++)
		more = more || ms->subs[k].station == station;
	if (more)
		return 0;
	ms->subscribed[station] = true;
	if (ms->s == line_active_session(l)) {
		station_set_comm(st, true, NULL);
		mqtt_stale_start(station_priv(st));
	}
	return 0;
}

/* ---- connection ---- */

/* The session that carries the subscribed values: the primary's once it is up, else the
 * backup's (dual); the core's choice otherwise. */
static void
mqtt_choose_active(struct mqtt_session *ms)
{
	struct line *l = ms->ml->l;
	struct session *cur = line_active_session(l);

	if (ms->ml->npaths < 2)
		return;
	if (!cur || (session_path(ms->s) == PATH_PRIMARY && cur != ms->s))
		line_set_active_session(l, ms->s);
}

static int
mqtt_on_connack(struct mqtt_session *ms, const struct mqtt_packet *pk)
{
	struct mqtt_line *ml = ms->ml;
	const struct mqtt_line_conf *c = ml->c;
	const struct mqtt_props *pr = &pk->props;
	struct line *l = ml->l;
	char extra[300] = "";
	size_t o = 0;
	unsigned again;

	if (pk->reason_code != 0) {
		const char *name = mqtt_reason_name(ms->v, MQTT_CONNACK, pk->reason_code);
		log_warnx("line %s: %s: MQTT connection refused: %s%s%.*s", line_name(l), session_peer(ms->s), name,
		    pr->reason_string.len ? ": " : "", (int)pr->reason_string.len, pr->reason_string.p ? pr->reason_string.p : "");
		mqtt_close(ms, "refused: %s", name);
		return -1;
	}
	if (pk->session_present && c->clean_session) {
		session_protocol_error(ms->s, "CONNACK: Session Present 1 after a CONNECT with Clean Session (3.2.2.2)");
		return -1;
	}
	ms->window = c->max_inflight;
	ms->max_out = MQTT_SPEC_MAX_PACKET;
	ms->max_qos = 2;
	ms->retain_ok = true;
	if (ms->v == MQTT_V5) {
		if (MQTT_PROP_HAS(pr, MQTT_P_RECEIVE_MAXIMUM) && pr->receive_maximum < ms->window)
			ms->window = pr->receive_maximum;
		if (MQTT_PROP_HAS(pr, MQTT_P_MAXIMUM_PACKET_SIZE))
			ms->max_out = pr->maximum_packet_size;
		if (MQTT_PROP_HAS(pr, MQTT_P_MAXIMUM_QOS))
			ms->max_qos = pr->maximum_qos;
		if (MQTT_PROP_HAS(pr, MQTT_P_RETAIN_AVAILABLE))
			ms->retain_ok = pr->retain_available != 0;
		if (MQTT_PROP_HAS(pr, MQTT_P_SERVER_KEEPALIVE)) {
			ms->keepalive_ms = pr->server_keepalive * 1000;
			o += (size_t)snprintf(extra + o, sizeof(extra) - o, ", server keep alive %u s", pr->server_keepalive);
		}
		if (MQTT_PROP_HAS(pr, MQTT_P_TOPIC_ALIAS_MAXIMUM)) {
			ms->alias_out_max = pr->topic_alias_maximum < MQTT_MAX_ALIASES_OUT ? pr->topic_alias_maximum :
			    MQTT_MAX_ALIASES_OUT;
		}
		if (MQTT_PROP_HAS(pr, MQTT_P_ASSIGNED_CLIENT_ID))
			o += (size_t)snprintf(extra + o, sizeof(extra) - o, ", assigned client id %.*s",
			    (int)pr->assigned_client_id.len, pr->assigned_client_id.p);
		if (o < sizeof(extra) && (ms->window != c->max_inflight || ms->max_qos < 2 || !ms->retain_ok ||
		    ms->max_out < MQTT_SPEC_MAX_PACKET || ms->alias_out_max))
			o += (size_t)snprintf(extra + o, sizeof(extra) - o, ", in flight %d, maximum QoS %u, retain %s, "
			    "maximum packet %u, topic aliases %d", ms->window, ms->max_qos, ms->retain_ok ? "yes" : "no",
			    ms->max_out, ms->alias_out_max);
	}
	log_info("line %s: %s: MQTT connected (%s, session present %d%s)", line_name(l), session_peer(ms->s),
	    mqtt_vname(ms->v), pk->session_present ? 1 : 0, extra);
	ms->state = MSS_UP;
	ms->p->s = ms->s;
	ms->confirmed = ms->tx_total;
	again = mqtt_path_reconnect(ms->p, pk->session_present);
	if (again)
		log_info("line %s: %s: %u message%s sent again (%s)", line_name(l), session_peer(ms->s), again,
		    again == 1 ? "" : "s", pk->session_present ? "PUBLISH with DUP, PUBREL" : "a new session: new packet ids");
	mqtt_choose_active(ms);
	mqtt_subscribe(ms);
	if (session_closing(ms->s))
		return -1;
	mqtt_pump(ms);
	mqtt_publish_current(ms, pk->session_present);
	return 0;
}

static void
mqtt_send_connect(struct mqtt_session *ms)
{
	const struct mqtt_line_conf *c = ms->ml->c;
	struct mqtt_packet pk;
	struct mqtt_connect *cn = &pk.connect;

	memset(&pk, 0, sizeof(pk));
	pk.type = MQTT_CONNECT;
	cn->client_id.p = ms->ml->client_id;
	cn->client_id.len = strlen(ms->ml->client_id);
	cn->clean_start = c->clean_session;
	cn->keepalive = (uint16_t)c->keepalive;
	if (c->will_topic) {
		cn->will = true;
		cn->will_qos = (uint8_t)c->will_qos;
		cn->will_retain = c->will_retain;
		cn->will_topic.p = c->will_topic;
		cn->will_topic.len = strlen(c->will_topic);
		cn->will_payload.p = (const uint8_t *)(c->will_payload ? c->will_payload : "");
		cn->will_payload.len = c->will_payload ? strlen(c->will_payload) : 0;
	}
	if (c->username) {
		cn->has_username = true;
		cn->username.p = c->username;
		cn->username.len = strlen(c->username);
	}
	if (c->password) {
		cn->has_password = true;
		cn->password.p = (const uint8_t *)c->password;
		cn->password.len = strlen(c->password);
	}
	if (ms->v == MQTT_V5) {
		uint32_t exp = mqtt_conf_session_expiry(c);
		if (exp) {
			MQTT_PROP_SET(&pk.props, MQTT_P_SESSION_EXPIRY);
			pk.props.session_expiry = exp;
		}
		if (c->receive_maximum != 65535) {
			MQTT_PROP_SET(&pk.props, MQTT_P_RECEIVE_MAXIMUM);
			pk.props.receive_maximum = (uint16_t)c->receive_maximum;
		}
		if (c->topic_alias_maximum) {
			MQTT_PROP_SET(&pk.props, MQTT_P_TOPIC_ALIAS_MAXIMUM);
			pk.props.topic_alias_maximum = (uint16_t)c->topic_alias_maximum;
		}
		if ((uint32_t)c->max_packet_size < MQTT_SPEC_MAX_PACKET) {
			MQTT_PROP_SET(&pk.props, MQTT_P_MAXIMUM_PACKET_SIZE);
			pk.props.maximum_packet_size = (uint32_t)c->max_packet_size;
		}
	}
	if (mqtt_send(ms, &pk) != 0)
		mqtt_close(ms, "CONNECT cannot be encoded");
}

/* Keep alive (3.1.2.10), and the answers due within reply_timeout. */
static void
mqtt_tick_cb(void *arg)
{
	struct mqtt_session *ms = arg;
	const struct mqtt_line_conf *c = ms->ml->c;
	int64_t now = mqtt_now();
	int rt = c->reply_timeout_ms;
	double rts = rt / 1000.0;

	if (ms->state == MSS_CONNECTING) {
		if (now - ms->connect_ms >= rt) {
			mqtt_close(ms, "no answer within %.1f s (reply_timeout): CONNACK", rts);
			return;
		}
	} else {
		if (ms->ping_ms && now - ms->ping_ms >= rt) {
			mqtt_close(ms, "no answer within %.1f s (reply_timeout): PINGRESP", rts);
			return;
		}
		for (struct mqtt_msg *m = TAILQ_FIRST(&ms->p->q); m && m != ms->p->next; m = TAILQ_NEXT(m, link))
			if (m->on_wire && now - m->sent_ms >= rt) {
				mqtt_close(ms, "no answer within %.1f s (reply_timeout): %s for packet id %u", rts,
				    m->state == MM_RELEASED ? "PUBCOMP" : m->qos == 1 ? "PUBACK" : "PUBREC", m->pid);
				return;
			}
		for (int i = 0; i < ms->nsubs; i++)
			if (now - ms->subs[i].sent_ms >= rt) {
				mqtt_close(ms, "no answer within %.1f s (reply_timeout): SUBACK for packet id %u", rts,
				    ms->subs[i].pid);
				return;
			}
		if (ms->keepalive_ms && (now - ms->last_tx >= ms->keepalive_ms || now - ms->last_rx >= ms->keepalive_ms))
			mqtt_ping(ms);
	}
	int next = rt / 4;
	if (ms->keepalive_ms && ms->keepalive_ms / 4 < next)
		next = ms->keepalive_ms / 4;
	ptimer_start(ms->tick, next < 20 ? 20 : next > 1000 ? 1000 : next);
}

static void
mqtt_on_connect(struct session *s)
{
	struct mqtt_session *ms = session_priv(s);
	struct mqtt_line *ml = line_priv(session_line(s));
	struct line *l = session_line(s);
	int64_t now = mqtt_now();

	ms->s = s;
	ms->ml = ml;
	ms->p = &ml->path[mqtt_path_index(ml, s)];
	ms->v = ml->v;
	ms->state = MSS_CONNECTING;
	ms->keepalive_ms = ml->c->keepalive * 1000;
	ms->connect_ms = ms->last_rx = ms->last_tx = now;
	ms->inited = true;
	if ((ms->subscribed = calloc((size_t)line_nstations(l) + 1, sizeof(bool))) == NULL ||
	    (ms->tick = session_timer(s, mqtt_tick_cb, ms)) == NULL) {
		mqtt_close(ms, "out of memory");
		return;
	}
	if (ms->v == MQTT_V5 && ml->c->topic_alias_maximum) {
		ms->alias_in_max = ml->c->topic_alias_maximum;
		if ((ms->alias_in = calloc((size_t)ms->alias_in_max + 1, sizeof(char *))) == NULL) {
			mqtt_close(ms, "out of memory");
			return;
		}
	}
	if (ms->p->s && ms->p->s != s)
		ms->p->s = NULL; /* an older session of this path, closing */
	mqtt_send_connect(ms);
	ptimer_start(ms->tick, 20);
}

static void
mqtt_on_close(struct session *s)
{
	struct mqtt_session *ms = session_priv(s);
	struct line *l = session_line(s);

	if (!ms->inited)
		return;
	if (ms->p->s == s)
		ms->p->s = NULL;
	/* the messages on the wire go again on the next connection (mqtt_path_reconnect) */
	for (int i = 0; i < ms->nsubs; i++)
		mqtt_bit_clr(ms->p->pid_used, ms->subs[i].pid);
	if (ms->why[0] && s == line_active_session(l)) {
		bool other = false;
		for (int k = 0; k < ms->ml->npaths; k++)
			other = other || (ms->ml->path[k].s && ms->ml->path[k].s != s);
		if (!other)
			for (int i = 0; i < line_nstations(l); i++)
				if (!station_conf(line_station(l, i))->simulation)
					station_set_comm(line_station(l, i), false, ms->why);
	}
	free(ms->subs);
	ms->subs = NULL;
	ms->nsubs = 0;
	free(ms->subscribed);
	ms->subscribed = NULL;
	mqtt_alias_free(ms);
	ms->inited = false;
}

/* Dual: the other session carries the values now. */
static void
mqtt_on_takeover(struct session *s)
{
	struct mqtt_session *ms = session_priv(s);
	struct line *l = session_line(s);

	if (!ms->inited || ms->state != MSS_UP)
		return; /* its CONNACK and SUBACKs will say */
	for (int i = 0; i < line_nstations(l); i++)
		if (ms->subscribed[i] && !station_conf(line_station(l, i))->simulation) {
			station_set_comm(line_station(l, i), true, NULL);
			mqtt_stale_start(station_priv(line_station(l, i)));
		}
}

static long
mqtt_frame_len_cb(const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	return mqtt_frame_len(buf, len, MQTT_SPEC_MAX_PACKET, err, errlen);
}

static int
mqtt_on_frame(struct session *s, const uint8_t *frame, size_t len)
{
	struct mqtt_session *ms = session_priv(s);
	struct mqtt_packet pk;
	char err[200];

	if (!ms->inited)
		return -1;
	ms->last_rx = mqtt_now();
	if (len > (size_t)ms->ml->c->max_packet_size) {
		session_protocol_error(s, "%zu-byte packet over the Maximum Packet Size %d (3.1.2.11.4)", len,
		    ms->ml->c->max_packet_size);
		return -1;
	}
	if (mqtt_decode(frame, len, ms->v, &pk, err, sizeof(err)) != 0) {
		session_protocol_error(s, "%s", err);
		return -1;
	}
	if (session_tracing(s)) {
		char text[600];
		mqtt_describe(&pk, text, sizeof(text));
		session_trace(s, false, frame, len, text);
	}
	if (ms->state == MSS_CONNECTING && pk.type != MQTT_CONNACK) {
		session_protocol_error(s, "%s before CONNACK (3.2: the first packet from the server is CONNACK)",
		    mqtt_type_name(pk.type));
		return -1;
	}
	switch (pk.type) {
	case MQTT_CONNACK:
		if (ms->state != MSS_CONNECTING) {
			session_protocol_error(s, "a second CONNACK (3.2)");
			return -1;
		}
		return mqtt_on_connack(ms, &pk) == 0 || session_closing(s) ? 0 : -1;
	case MQTT_PUBLISH:
		return mqtt_on_publish(ms, &pk);
	case MQTT_PUBACK:
	case MQTT_PUBREC:
	case MQTT_PUBCOMP:
		return mqtt_on_ack(ms, &pk);
	case MQTT_PUBREL:
		mqtt_bit_clr(ms->p->qos2_in, pk.packet_id);
		mqtt_send_ack(ms, MQTT_PUBCOMP, pk.packet_id, 0);
		return 0;
	case MQTT_SUBACK:
		return mqtt_on_suback(ms, &pk);
	case MQTT_UNSUBACK:
		return 0;
	case MQTT_PINGRESP:
		if (ms->ping_ms) {
			ms->ping_ms = 0;
			ms->confirmed = ms->ping_mark;
			mqtt_pump(ms);
		}
		return 0;
	case MQTT_DISCONNECT:
		mqtt_close(ms, "the broker disconnected: %s%s%.*s", mqtt_reason_name(ms->v, MQTT_DISCONNECT, pk.reason_code),
		    pk.props.reason_string.len ? ": " : "", (int)pk.props.reason_string.len,
		    pk.props.reason_string.p ? pk.props.reason_string.p : "");
		return 0;
	default:
		session_protocol_error(s, "%s from a server (2.1.2)", mqtt_type_name(pk.type));
		return -1;
	}
}

/* ---- publishing served tags ---- */

static void
mqtt_publish_tag_on(struct mqtt_line *ml, int pathi, struct stag *t)
{
	const struct tag_conf *tc = stag_conf(t);
	const struct mqtt_tag_conf *c = tc->pconf;
	const struct station_conf *sc = station_conf(stag_station(t));
	struct mqtt_tag *mt = stag_priv(t);
	char text[4096];

	if (mqtt_tag_payload_of(sc, tc) == MQTT_PAYLOAD_JSON) {
		json_t *o = stag_json(t);
		char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
		if (!s) {
			log_warnx("line %s: tag %s: out of memory for its JSON", line_name(ml->l), stag_name(t));
			json_decref(o);
			return;
		}
		mqtt_enqueue(ml, pathi, c->publish, s, strlen(s), (uint8_t)c->qos, c->retain, NULL, 0, mt->src);
		free(s);
		json_decref(o);
		return;
	}
	/* text: the value; an invalid one as an empty payload (no value known; retained, it
	 * clears the broker's retained message) */
	int n = 0;
	if (!(stag_quality(t) & Q_INVALID) && (n = mqtt_value_text(stag_value(t), text, sizeof(text))) < 0) {
		const struct value *v = stag_value(t);
		if (v->type == VT_STRING) {
			mqtt_enqueue(ml, pathi, c->publish, v->s, strlen(v->s), (uint8_t)c->qos, c->retain, NULL, 0, mt->src);
			return;
		}
		n = 0;
	}
	mqtt_enqueue(ml, pathi, c->publish, text, (size_t)n, (uint8_t)c->qos, c->retain, NULL, 0, mt->src);
}

/* batch_ms: the station's JSON changes, one array per topic */
static void
mqtt_batch_cb(void *arg)
{
	struct mqtt_station *mst = arg;
	struct mqtt_line *ml = line_priv(station_line(mst->st));
	const char *topic;
	json_t *arr;

	if (!mst->batch_obj)
		return;
	json_object_foreach(mst->batch_obj, topic, arr) {
		char *s = json_dumps(arr, JSON_COMPACT);
		if (!s)
			continue;
		/* the tags of one topic share its qos and retain: the first tag's */
		for (int i = 0; i < station_ntags(mst->st); i++) {
			const struct mqtt_tag_conf *c = stag_conf(station_stag(mst->st, i))->pconf;
			if (c->publish && strcmp(c->publish, topic) == 0) {
				mqtt_enqueue(ml, -1, topic, s, strlen(s), (uint8_t)c->qos, c->retain, NULL, 0, NULL);
				break;
			}
		}
		free(s);
	}
	json_decref(mst->batch_obj);
	mst->batch_obj = NULL;
}

static bool
mqtt_batch_add(struct mqtt_station *mst, struct stag *t)
{
	const struct mqtt_tag_conf *c = stag_conf(t)->pconf;
	json_t *arr, *o;

	if (!mst->batch_obj && (mst->batch_obj = json_object()) == NULL)
		return false;
	if ((arr = json_object_get(mst->batch_obj, c->publish)) == NULL) {
		if ((arr = json_array()) == NULL || json_object_set_new(mst->batch_obj, c->publish, arr) != 0)
			return false;
	}
	if ((o = stag_json(t)) == NULL || json_array_append_new(arr, o) != 0)
		return false;
	if (!ptimer_pending(mst->batch))
		ptimer_start(mst->batch, ((const struct mqtt_station_conf *)station_conf(mst->st)->pconf)->batch_ms);
	return true;
}

static void
mqtt_publish_tag(struct stag *t)
{
	struct station *st = stag_station(t);
	struct mqtt_station *mst = station_priv(st);
	const struct mqtt_station_conf *sc = station_conf(st)->pconf;

	if (sc->batch_ms && mqtt_tag_payload_of(station_conf(st), stag_conf(t)) == MQTT_PAYLOAD_JSON &&
	    mqtt_batch_add(mst, t))
		return;
	mqtt_publish_tag_on(line_priv(station_line(st)), -1, t);
}

static double
mqtt_number(const struct value *v)
{
	return v->type == VT_FLOAT ? v->f : (double)v->i;
}

static void
mqtt_tag_change(struct stag *t)
{
	struct mqtt_tag *mt = stag_priv(t);
	const struct mqtt_tag_conf *c = stag_conf(t)->pconf;
	const struct value *v = stag_value(t);
	unsigned q = stag_quality(t);

	if (!c->publish)
		return;
	if (c->deadband_milli && mt->have_last && q == mt->last_q && (v->type == VT_INT || v->type == VT_FLOAT) &&
	    fabs(mqtt_number(v) - mt->last) < c->deadband_milli / 1000.0)
		return;
	if (v->type == VT_INT || v->type == VT_FLOAT)
		mt->last = mqtt_number(v);
	mt->last_q = q;
	mt->have_last = true;
	mqtt_publish_tag(t);
}

/* period: the value again on the connected paths (a queue of repeats helps nobody) */
static void
mqtt_period_cb(void *arg)
{
	struct mqtt_tag *mt = arg;
	struct mqtt_line *ml = line_priv(station_line(stag_station(mt->t)));
	const struct mqtt_tag_conf *c = stag_conf(mt->t)->pconf;

	for (int i = 0; i < ml->npaths; i++)
		if (ml->path[i].s)
			mqtt_publish_tag_on(ml, i, mt->t);
	ptimer_start(mt->period, c->period_ms);
}

/* After a (re)connection, every served tag's current value once on this path, so that a
 * new subscriber is never left without state; but not where that would only repeat it:
 * a tag with messages still queued (its latest is among them: the oldest are dropped
 * first), or whose latest the broker acknowledged in the session it kept (Session
 * Present 1). A repeat would break QoS 2's exactly once for a subscriber. */
static void
mqtt_publish_current(struct mqtt_session *ms, bool session_present)
{
	struct line *l = ms->ml->l;
	int pathi = mqtt_path_index(ms->ml, ms->s);

	for (int i = 0; i < line_nstations(l); i++) {
		struct station *st = line_station(l, i);
		for (int j = 0; j < station_ntags(st) && !session_closing(ms->s); j++) {
			struct stag *t = station_stag(st, j);
			struct mqtt_src *src = &((struct mqtt_tag *)stag_priv(t))->src[pathi];
			if (!((const struct mqtt_tag_conf *)stag_conf(t)->pconf)->publish || src->inq ||
			    (session_present && !src->need))
				continue;
			mqtt_publish_tag_on(ms->ml, pathi, t);
		}
	}
}

/* ---- life cycle ---- */

static int
mqtt_line_init(struct line *l)
{
	struct mqtt_line *ml = line_priv(l);
	const struct line_conf *lc = line_conf(l);
	char host[256];

	ml->l = l;
	ml->c = lc->pconf;
	ml->v = mqtt_conf_version(ml->c);
	ml->npaths = lc->type == LINE_TCP_REDUNDANT && lc->backup_present && lc->backup_enabled &&
	    ml->c->redundancy == MQTT_DUAL ? 2 : 1;
	mqtt_path_init(&ml->path[0], "primary");
	mqtt_path_init(&ml->path[1], "backup");
	if (ml->npaths == 1)
		ml->path[0].name = "the";
	LIST_INIT(&ml->cmds);
	if (ml->c->client_id)
		ml->client_id = strdup(ml->c->client_id);
	else {
		if (gethostname(host, sizeof(host)) != 0)
			snprintf(host, sizeof(host), "localhost");
		host[sizeof(host) - 1] = '\0';
		if (asprintf(&ml->client_id, "komd-%s-%s", host, lc->name) < 0)
			ml->client_id = NULL;
	}
	return ml->client_id ? 0 : -1;
}

static void
mqtt_line_free(struct line *l)
{
	struct mqtt_line *ml = line_priv(l);
	struct mqtt_line_conf *c = line_conf(l)->pconf;
	struct mqtt_cmd *cmd;

	while ((cmd = LIST_FIRST(&ml->cmds)) != NULL) {
		if (cmd->req)
			write_req_detach(cmd->req); /* the write goes on; its result is logged */
		mqtt_cmd_free(cmd);
	}
	for (int i = 0; i < 2; i++)
		mqtt_path_free(&ml->path[i]);
	free(ml->route);
	free(ml->client_id);
	if (c && c->password)
		memset(c->password, 0, strlen(c->password)); /* a secret: wiped with its line */
}

/* stale_timeout: no message for the station this long */
static void
mqtt_stale_cb(void *arg)
{
	struct mqtt_station *mst = arg;
	const struct mqtt_station_conf *c = station_conf(mst->st)->pconf;
	int64_t idle = mqtt_now() - mst->last_msg_ms;
	char why[120];

	if (!line_active_session(station_line(mst->st)) || mst->stale_lost)
		return;
	if (idle < c->stale_timeout_ms) {
		ptimer_start(mst->stale, (int)(c->stale_timeout_ms - idle));
		return;
	}
	snprintf(why, sizeof(why), "no message for %.1f s (stale_timeout)", idle / 1000.0);
	mst->stale_lost = true;
	station_set_comm(mst->st, false, why);
}

static void
mqtt_station_free(struct station *st)
{
	struct mqtt_station *mst = station_priv(st);

	if (mst->has_time)
		mqtt_jpath_free(&mst->time_path);
	mst->has_time = false;
	if (mst->batch_obj)
		json_decref(mst->batch_obj);
	mst->batch_obj = NULL;
	for (int i = 0; i < station_ntags(st); i++)
		mqtt_tag_addr_free(&((struct mqtt_tag *)stag_priv(station_stag(st, i)))->addr);
}

static int
mqtt_station_init(struct station *st)
{
	struct mqtt_station *mst = station_priv(st);
	const struct station_conf *sc = station_conf(st);
	const struct mqtt_station_conf *c = sc->pconf;
	struct mqtt_line *ml = line_priv(station_line(st));
	char err[200];

	mst->st = st;
	mst->subscribes = !sc->simulation && mqtt_station_subscribes(sc);
	if (!ml->drop_timer && (ml->drop_timer = station_timer(st, mqtt_drop_timer_cb, ml)) == NULL)
		return -1;
	if ((mst->stale = station_timer(st, mqtt_stale_cb, mst)) == NULL ||
	    (mst->batch = station_timer(st, mqtt_batch_cb, mst)) == NULL)
		return -1;
	if (c->time_field) {
		if (mqtt_jpath_parse(c->time_field, &mst->time_path, err, sizeof(err)) != 0) {
			log_warnx("line %s: station %s: time_field: %s", line_name(ml->l), station_name(st), err);
			return -1;
		}
		mst->has_time = true;
	}
	for (int i = 0; i < station_ntags(st); i++) {
		struct stag *t = station_stag(st, i);
		struct mqtt_tag *mt = stag_priv(t);
		const struct tag_conf *tc = stag_conf(t);
		const struct mqtt_tag_conf *tcc = tc->pconf;

		mt->t = t;
		mt->src[0].need = mt->src[1].need = true;
		if (tcc->publish) {
			if (tcc->command) {
				mt->rkey = tcc->command;
				mt->is_cmd = true;
			}
			if (tcc->period_ms) {
				if ((mt->period = station_timer(st, mqtt_period_cb, mt)) == NULL) {
					mqtt_station_free(st);
					return -1;
				}
				ptimer_start(mt->period, tcc->period_ms);
			}
			continue;
		}
		if (sc->simulation || !tc->address)
			continue;
		if (mqtt_tag_addr_parse(tc->address, &mt->addr, err, sizeof(err)) != 0)
			continue; /* refused at load already */
		mt->rkey = mt->addr.topic ? mt->addr.topic : sc->address;
	}
	return 0;
}

const struct proto_ops mqtt_client_ops = {
	.name = "mqtt-client",
	.transport = PROTO_CONNECT,
	.tag_serves = mqtt_tag_serves,
	.redundancy = REDUND_DUAL,
	.line_redundancy = mqtt_line_redundancy,
	.line_keys = mqtt_line_keys,
	.station_keys = mqtt_station_keys,
	.tag_keys = mqtt_tag_keys,
	.line_conf_size = sizeof(struct mqtt_line_conf),
	.station_conf_size = sizeof(struct mqtt_station_conf),
	.tag_conf_size = sizeof(struct mqtt_tag_conf),
	.check_line = mqtt_check_line,
	.check_station = mqtt_check_station,
	.check_tag = mqtt_check_tag,
	.counters = mqtt_counters,
	.line_size = sizeof(struct mqtt_line),
	.station_size = sizeof(struct mqtt_station),
	.stag_size = sizeof(struct mqtt_tag),
	.session_size = sizeof(struct mqtt_session),
	.line_init = mqtt_line_init,
	.line_free = mqtt_line_free,
	.station_init = mqtt_station_init,
	.station_free = mqtt_station_free,
	.on_connect = mqtt_on_connect,
	.max_frame = MQTT_SPEC_MAX_PACKET,
	.frame_len = mqtt_frame_len_cb,
	.on_frame = mqtt_on_frame,
	.on_close = mqtt_on_close,
	.on_takeover = mqtt_on_takeover,
	.on_tag_change = mqtt_tag_change,
};
