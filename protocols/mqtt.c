/* mqtt.c: the mqtt-client protocol (MQTT 3.1.1, OASIS 29 October 2014; MQTT 5.0, OASIS
 * 7 March 2019): one client session per broker. It connects (CONNECT/CONNACK, 3.1, 3.2),
 * subscribes each station's topic filter (3.8) and routes what arrives (PUBLISH 3.3, QoS
 * 0/1/2 receiver side 4.3) to the acquired tags by topic, publishes served tags (QoS 0/1/2
 * sender side, with a bounded store-and-forward queue per session path, mqtt_queue.c),
 * carries commands to the hub as writes, keeps the connection alive (PINGREQ 3.12) and
 * closes it when the broker does not answer within reply_timeout, so that the core tries
 * the next broker. A dual line (tcp-redundant) runs two independent sessions, each with
 * its own queue and packet identifiers; subscribed values come from the primary while it
 * is connected, else from the backup. Here: the connection, subscriptions and what
 * arrives; what komd sends is mqtt_send.c's, served tags and commands mqtt_serve.c's, the
 * queue mqtt_queue.c's, the configuration mqtt_conf.c's. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mqtt.h"

const struct proto_counter mqtt_counters[] = {
	[MQC_QUEUED_MSGS] = { .name = "mqtt_queued_messages", .gauge = true,
	    .help = "messages waiting or unacknowledged (all session paths)" },
	[MQC_QUEUED_BYTES] = { .name = "mqtt_queued_bytes", .gauge = true, .help = "bytes of the queued messages" },
	[MQC_QUEUE_DROPPED] = { .name = "mqtt_queue_dropped_total",
	    .help = "messages dropped from a full queue (oldest first)" },
	[MQC_OVERSIZE_DROPPED] = { .name = "mqtt_oversize_dropped_total",
	    .help = "messages larger than the broker's Maximum Packet Size, dropped" },
	[MQC_PUBLISHED] = { .name = "mqtt_published_total", .help = "PUBLISH packets sent (first sends)" },
	[MQC_RECEIVED] = { .name = "mqtt_received_total",
	    .help = "messages received (duplicates of QoS 2 not counted)" },
	[MQC_PAYLOAD_ERRORS] = { .name = "mqtt_payload_errors_total",
	    .help = "received payloads a tag could not take" },
	[MQC_COMMANDS] = { .name = "mqtt_commands_total", .help = "command messages received" },
	[MQC_COMMANDS_REFUSED] = { .name = "mqtt_commands_refused_total", .help = "commands refused (bad, too old)" },
	[MQC_REDELIVERED] = { .name = "mqtt_redelivered_total", .help = "messages sent again after a reconnection" },
	{ .name = NULL },
};

static const char *
mqtt_vname(enum mqtt_version v)
{
	return v == MQTT_V5 ? "5" : "3.1.1";
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

/* A payload a tag cannot take: the tag invalid, the error counted and logged with its
 * topic. A publisher can send them (and refused commands) as fast as it likes: at most
 * MQTT_PERR_BURST a tag in MQTT_DROP_LOG_MS (and a payload error the same as the station's
 * last only once), the rest summed in one line. */
bool
mqtt_log_allowed(struct mqtt_line *ml, struct mqtt_tag *mt)
{
	int64_t now = mqtt_now();

	if (now - mt->perr_window >= MQTT_DROP_LOG_MS) {
		mt->perr_window = now;
		mt->perr_burst = 0;
	}
	if (mt->perr_burst >= MQTT_PERR_BURST) {
		if (ml->perr_more++ == 0 && ml->drop_timer && !ptimer_pending(ml->drop_timer))
			ptimer_start(ml->drop_timer, MQTT_DROP_LOG_MS);
		return false;
	}
	mt->perr_burst++;
	return true;
}

static void
mqtt_tag_invalid(struct mqtt_line *ml, struct stag *t, const char *topic, const char *why)
{
	char msg[400];

	stag_set_quality(t, stag_quality(t) | Q_INVALID);
	line_counter_add(ml->l, MQC_PAYLOAD_ERRORS, 1);
	if (!mqtt_log_allowed(ml, stag_priv(t))) {
		station_count_error(stag_station(t));
		return;
	}
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


/* stale_timeout watches the station from now. */
static void
mqtt_stale_start(struct mqtt_station *mst)
{
	const struct mqtt_station_conf *c = station_conf(mst->st)->pconf;

	if (c->stale_timeout_ms && mst->subscribes) {
		mst->last_msg_ms = mqtt_now();
		ptimer_start(mst->stale, c->stale_timeout_ms);
	}
}

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
			mqtt_stale_start(mst); /* watching again */
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
			mqtt_proto_error(ms, 0x94, "PUBLISH: topic alias %u over the Topic Alias Maximum %d komd sent "
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
			/* Topic Alias invalid (0x94, 2.4): the alias names no topic here */
			mqtt_proto_error(ms, 0x94, "PUBLISH: topic alias %u not set on this connection (3.3.2.3.4)", a);
			return -1;
		} else {
			pk->topic.p = ms->alias_in[a];
			tlen = strlen(ms->alias_in[a]);
		}
	} else if (tlen == 0) {
		mqtt_proto_error(ms, 0x82, "PUBLISH: empty topic name without a topic alias (3.3.2.1)");
		return -1;
	}
	memcpy(topic, pk->topic.p, tlen);
	topic[tlen] = '\0';
	/* v5 3.3.4: the broker sends at most komd's Receive Maximum QoS 1 and 2 PUBLISH not yet
	 * answered by PUBACK or PUBCOMP (komd's PUBACK goes at once: the QoS 2 ones count) */
	if (ms->v == MQTT_V5 && pk->qos > 0 && !(pk->qos == 2 && mqtt_bit(ms->p->qos2_in, pk->packet_id)) &&
	    ms->p->nqos2_in >= c->receive_maximum) {
		mqtt_proto_error(ms, 0x93, "PUBLISH: packet id %u over the Receive Maximum %d komd sent, %d QoS 2 "
		    "messages awaiting PUBREL (3.3.4)", pk->packet_id, c->receive_maximum, ms->p->nqos2_in);
		return -1;
	}
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
			ms->p->nqos2_in++;
			mqtt_deliver(ms, pk, topic, tlen);
		}
		mqtt_send_ack(ms, MQTT_PUBREC, pk->packet_id, 0);
		break;
	}
	return 0;
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
	pk->n_subs_total = pk->n_subs;
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
			if (sc->address)
				mqtt_sub_entry(ms, &pk, i, sc->address, (uint8_t)c->qos);
			if (c->will_topic && (!sc->address || !mqtt_topic_match(sc->address, c->will_topic, strlen(c->will_topic))))
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

static int
mqtt_on_suback(struct mqtt_session *ms, const struct mqtt_packet *pk)
{
	struct line *l = ms->ml->l;
	int k, station;
	bool more = false;

	for (k = 0; k < ms->nsubs && ms->subs[k].pid != pk->packet_id; k++)
		;
	if (k == ms->nsubs) {
		mqtt_proto_error(ms, 0x82, "SUBACK for packet id %u, which no SUBSCRIBE had (3.9.2)", pk->packet_id);
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
		mqtt_proto_error(ms, 0x82, "CONNACK: Session Present 1 after a CONNECT with Clean Session (3.2.2.2)");
		return -1;
	}
	ms->window = c->max_inflight;
	ms->max_out = (uint32_t)c->broker_max_packet_size;
	ms->max_qos = 2;
	ms->retain_ok = true;
	if (ms->v == MQTT_V5) {
		if (MQTT_PROP_HAS(pr, MQTT_P_RECEIVE_MAXIMUM) && pr->receive_maximum < ms->window)
			ms->window = pr->receive_maximum;
		if (MQTT_PROP_HAS(pr, MQTT_P_MAXIMUM_PACKET_SIZE) && pr->maximum_packet_size < ms->max_out)
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
	if (c->will_online_payload) /* the counterpart of the will: komd is here */
		mqtt_enqueue(ml, mqtt_path_index(ml, ms->s), c->will_topic, c->will_online_payload,
		    strlen(c->will_online_payload), (uint8_t)c->will_qos, c->will_retain, NULL, 0, NULL);
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
	    (ms->tick = session_timer(s, mqtt_tick_cb, ms)) == NULL ||
	    (ms->flush = session_timer(s, mqtt_flush_cb, ms)) == NULL) {
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
	/* the Maximum Packet Size komd announces (3.1.2.11.4) bounds what the core buffers: a
	 * broker cannot make komd hold 256 MiB; a larger packet closes the connection there,
	 * with DISCONNECT 0x95 first on v5 (mqtt_on_frame_error) */
	session_set_max_frame(s, (size_t)ml->c->max_packet_size);
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
	if (ms->state == MSS_UP && !ms->why[0]) {
		/* the broker closed (or the network): right after a PUBLISH larger than any it took,
		 * twice? Its packet size limit, which 3.1.1 cannot announce: dropped, never a loop */
		char topic[256];
		uint32_t size = mqtt_path_broker_closed(ms->p, mqtt_now(), ms->ml->c->reply_timeout_ms, topic,
		    sizeof(topic));
		if (size) {
			line_counter_add(ms->ml->l, MQC_OVERSIZE_DROPPED, 1);
			log_warnx("line %s: %s: message to %s dropped: %u bytes; the broker closed the connection right "
			    "after it %d times without acknowledging it: over its packet size limit (larger messages "
			    "are dropped from now on)", line_name(l), session_peer(s), topic, size, MQTT_OVERSIZE_STRIKES);
			mqtt_gauges(ms->ml);
		}
	}
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
	free(ms->out);
	ms->out = NULL;
	ms->out_len = 0;
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

/* The frames of a read are handled: what they made komd send goes out in one write. */
static void
mqtt_frames_done(struct session *s)
{
	struct mqtt_session *ms = session_priv(s);

	if (!ms->inited)
		return;
	ms->in_read = false;
	mqtt_flush(ms);
	/* Two PUBLISH packets or more in one read: the broker has a backlog for us (a flood
	 * of subscribed messages, its Nagle algorithm gathering them meanwhile). Read as many
	 * at a time as it just sent together, up to eight, rather than waking up for each (at
	 * most 0.5 ms later, so never more than that late): a broker that may send only a few
	 * before our PUBACKs (its in-flight window; our Receive Maximum) sent no more than
	 * that, so the mark stays within its reach. One or none: every byte again. */
	ms->rx_mark = ms->rx_publishes >= 2 ?
	    (ms->rx_publishes < 8 ? ms->rx_publishes : 8) * (ms->rx_publish_bytes / ms->rx_publishes) : 0;
	ms->rx_publishes = 0;
	ms->rx_publish_bytes = 0;
	if (!session_closing(s))
		mqtt_read_mark(ms);
}

/* The core found no packet where one should be: with v5, DISCONNECT with the reason first
 * (4.13): 0x95 Packet too large for one above the Maximum Packet Size komd announced
 * (3.1.2.11.4), else 0x81 Malformed Packet (a Remaining Length of more than four bytes,
 * 1.5.5). */
static void
mqtt_on_frame_error(struct session *s, bool oversize, const char *err)
{
	struct mqtt_session *ms = session_priv(s);

	if (ms->inited)
		mqtt_proto_error(ms, oversize ? 0x95 : 0x81, "%s", err);
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
	ms->in_read = true;
	ms->last_rx = mqtt_now();
	if (mqtt_decode(frame, len, ms->v, &pk, err, sizeof(err)) != 0) {
		mqtt_proto_error(ms, 0x81, "%s", err);
		return -1;
	}
	if (session_tracing(s)) {
		char text[600];
		mqtt_describe(&pk, text, sizeof(text));
		session_trace(s, false, frame, len, text);
	}
	if (ms->state == MSS_CONNECTING && pk.type != MQTT_CONNACK) {
		mqtt_proto_error(ms, 0x82, "%s before CONNACK (3.2: the first packet from the server is CONNACK)",
		    mqtt_type_name(pk.type));
		return -1;
	}
	switch (pk.type) {
	case MQTT_CONNACK:
		if (ms->state != MSS_CONNECTING) {
			mqtt_proto_error(ms, 0x82, "a second CONNACK (3.2)");
			return -1;
		}
		return mqtt_on_connack(ms, &pk) == 0 || session_closing(s) ? 0 : -1;
	case MQTT_PUBLISH:
		ms->rx_publishes++;
		ms->rx_publish_bytes += len;
		return mqtt_on_publish(ms, &pk);
	case MQTT_PUBACK:
	case MQTT_PUBREC:
	case MQTT_PUBCOMP:
		return mqtt_on_ack(ms, &pk);
	case MQTT_PUBREL: {
		/* PUBCOMP either way (4.3.3); v5 says when the id was not open: 0x92 */
		bool open = mqtt_bit(ms->p->qos2_in, pk.packet_id);
		if (open)
			ms->p->nqos2_in--;
		mqtt_bit_clr(ms->p->qos2_in, pk.packet_id);
		mqtt_send_ack(ms, MQTT_PUBCOMP, pk.packet_id, open || ms->v != MQTT_V5 ? 0 : 0x92);
		return 0;
	}
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
		mqtt_proto_error(ms, 0x82, "%s from a server (2.1.2)", mqtt_type_name(pk.type));
		return -1;
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
	struct mqtt_cmd *cmd;

	mqtt_drop_timer_cb(ml); /* drops not yet logged: now */
	while ((cmd = LIST_FIRST(&ml->cmds)) != NULL) {
		if (cmd->req)
			write_req_detach(cmd->req); /* the write goes on; its result is logged */
		mqtt_cmd_free(cmd);
	}
	for (int i = 0; i < ml->npaths; i++)
		if (ml->path[i].nmsgs) /* the queue lives with the line: a restart of the line loses it */
			log_warnx("line %s: %s session: %zu queued message%s dropped with the line", line_name(l),
			    ml->path[i].name, ml->path[i].nmsgs, ml->path[i].nmsgs == 1 ? "" : "s");
	for (int i = 0; i < 2; i++)
		mqtt_path_free(&ml->path[i]);
	free(ml->route);
	free(ml->client_id);
	/* the password (a .secret key, password_file's line too) is the core's to wipe when
	 * the configuration that holds it is freed */
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
		if (sc->simulation)
			continue;
		/* no address: the whole payload of the station's filter (a topic, checked at load) */
		if (mqtt_tag_addr_parse(tc->address ? tc->address : "", &mt->addr, err, sizeof(err)) != 0)
			continue; /* refused at load already */
		mt->rkey = mt->addr.topic ? mt->addr.topic : sc->address;
	}
	return 0;
}

const struct proto_ops mqtt_client_ops = {
	.name = "mqtt-client",
	.transport = PROTO_CONNECT,
	.tag_serves = mqtt_tag_serves,
	.address_optional = true, /* a station that only publishes has no filter; a published tag no address */
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
	.on_frames_done = mqtt_frames_done,
	.on_frame_error = mqtt_on_frame_error,
	.on_close = mqtt_on_close,
	.on_takeover = mqtt_on_takeover,
	.on_tag_change = mqtt_tag_change,
};
