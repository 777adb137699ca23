/* mqtt_serve.c: what the mqtt-client protocol serves: the publishes of served tags (on
 * change with a deadband, every period, batched as JSON arrays, and the current values
 * after a connection) and the commands to them (a write through the hub; the result on the
 * response topic, or MQTT 5's Response Topic with its Correlation Data, 4.10). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt.h"

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

void
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
void
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
		if (mqtt_log_allowed(ml, mt))
			log_warnx("line %s: tag %s: command on %s refused: %s", line_name(ml->l), stag_name(mt->t), topic,
			    err);
		mqtt_cmd_answer(ml, pathi, rtopic, (uint8_t)tc->qos, corr, corr_len, false, err);
		return;
	}
	if (ml->c->command_max_age_ms && issued && time_now_ms() - issued > ml->c->command_max_age_ms) {
		snprintf(err, sizeof(err), "command too old: issued %.1f s ago, command_max_age is %.1f s",
		    (time_now_ms() - issued) / 1000.0, ml->c->command_max_age_ms / 1000.0);
		line_counter_add(ml->l, MQC_COMMANDS_REFUSED, 1);
		if (mqtt_log_allowed(ml, mt))
			log_warnx("line %s: tag %s: command on %s refused: %s", line_name(ml->l), stag_name(mt->t), topic,
			    err);
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

/* ---- publishing served tags ---- */

static double
mqtt_number(const struct value *v)
{
	return v->type == VT_FLOAT ? v->f : (double)v->i;
}

static void
mqtt_publish_tag_on(struct mqtt_line *ml, int pathi, struct stag *t)
{
	const struct tag_conf *tc = stag_conf(t);
	const struct mqtt_tag_conf *c = tc->pconf;
	const struct station_conf *sc = station_conf(stag_station(t));
	struct mqtt_tag *mt = stag_priv(t);
	const struct value *v = stag_value(t);
	char text[4096];

	/* the deadband counts from the value last published */
	if (v->type == VT_INT || v->type == VT_FLOAT)
		mt->last = mqtt_number(v);
	mt->last_q = stag_quality(t);
	mt->have_last = true;

	if (mqtt_tag_payload_of(sc, tc) == MQTT_PAYLOAD_JSON) {
		json_t *o = stag_json(t);
		char *s = o ? value_json_dump(o) : NULL;
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
	if (!(stag_quality(t) & Q_INVALID) && (n = mqtt_value_text(v, text, sizeof(text))) < 0) {
		if (v->type == VT_STRING) {
			mqtt_enqueue(ml, pathi, c->publish, v->s, strlen(v->s), (uint8_t)c->qos, c->retain, NULL, 0, mt->src);
			return;
		}
		n = 0;
	}
	mqtt_enqueue(ml, pathi, c->publish, text, (size_t)n, (uint8_t)c->qos, c->retain, NULL, 0, mt->src);
}

/* batch_ms: the station's JSON changes, one array per topic */
void
mqtt_batch_cb(void *arg)
{
	struct mqtt_station *mst = arg;
	struct mqtt_line *ml = line_priv(station_line(mst->st));
	const char *topic;
	json_t *arr;

	if (!mst->batch_obj)
		return;
	json_object_foreach(mst->batch_obj, topic, arr) {
		char *s = value_json_dump(arr);
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

void
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
	mqtt_publish_tag(t);
}

/* period: the value again on the connected paths (a queue of repeats helps nobody) */
void
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
 * first), whose latest the broker acknowledged in the session it kept (Session
 * Present 1), or whose latest was a QoS 2 message the broker PUBREC'd before a Session
 * Present 0 (it has it: mqtt_path_reconnect marks pubrec_kept). A repeat would break QoS 2's exactly once for a subscriber. The values go
 * as the connection takes them (mqtt_current_step, from the pump), not all into the
 * queue at once: 100,000 tags would be 100,000 messages in memory. */
void
mqtt_publish_current(struct mqtt_session *ms, bool session_present)
{
	ms->cur_active = true;
	ms->cur_sp = session_present;
	ms->cur_st = ms->cur_tag = 0;
	mqtt_current_step(ms);
}

void
mqtt_current_step(struct mqtt_session *ms)
{
	struct line *l = ms->ml->l;
	int pathi = mqtt_path_index(ms->ml, ms->s);

	if (!ms->cur_active || ms->cur_busy)
		return;
	ms->cur_busy = true;
	/* while everything queued has gone out (the pump calls again when it has) */
	while (ms->cur_st < line_nstations(l) && !ms->p->next && !session_closing(ms->s)) {
		struct station *st = line_station(l, ms->cur_st);
		if (ms->cur_tag >= station_ntags(st)) {
			ms->cur_st++;
			ms->cur_tag = 0;
			continue;
		}
		struct stag *t = station_stag(st, ms->cur_tag++);
		struct mqtt_src *src = &((struct mqtt_tag *)stag_priv(t))->src[pathi];
		bool kept = src->pubrec_kept;
		src->pubrec_kept = false; /* once: the connection after the one that knew of it */
		if (!((const struct mqtt_tag_conf *)stag_conf(t)->pconf)->publish || src->inq ||
		    (ms->cur_sp && !src->need) || kept)
			continue;
		mqtt_publish_tag_on(ms->ml, pathi, t);
	}
	if (ms->cur_st >= line_nstations(l))
		ms->cur_active = false;
	ms->cur_busy = false;
}
