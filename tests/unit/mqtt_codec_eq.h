/* mqtt_codec_eq.h: are two decoded MQTT packets the same? Strings and binaries compare by
 * content (the views point into different frames). The counts beyond the decoded form's
 * limits (n_*_total) are not compared: re-encoding keeps only what was decoded. Shared by
 * tests/unit/test_mqtt_codec.c and tests/fuzz/fuzz_mqtt.c. Returns NULL when equal, else
 * the name of the first field that differs. */
#ifndef KOMD_MQTT_CODEC_EQ_H
#define KOMD_MQTT_CODEC_EQ_H

#include <string.h>

#include "mqtt_codec.h"

static int
mqtt_eq_bytes(const void *a, size_t alen, const void *b, size_t blen)
{
	return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}
#define MQTT_EQ_S(x, y) mqtt_eq_bytes((x).p, (x).len, (y).p, (y).len)

static const char *
mqtt_props_diff(const struct mqtt_props *a, const struct mqtt_props *b)
{
	if (a->present != b->present)
		return "props.present";
#define SCALAR(f) if (a->f != b->f) return "props." #f
	SCALAR(payload_format); SCALAR(message_expiry); SCALAR(session_expiry);
	SCALAR(server_keepalive); SCALAR(request_problem_info); SCALAR(will_delay);
	SCALAR(request_response_info); SCALAR(receive_maximum); SCALAR(topic_alias_maximum);
	SCALAR(topic_alias); SCALAR(maximum_qos); SCALAR(retain_available);
	SCALAR(maximum_packet_size); SCALAR(wildcard_sub_available); SCALAR(sub_id_available);
	SCALAR(shared_sub_available); SCALAR(n_sub_id); SCALAR(n_user);
#undef SCALAR
#define STR(f) if (!MQTT_EQ_S(a->f, b->f)) return "props." #f
	STR(content_type); STR(response_topic); STR(correlation_data); STR(assigned_client_id);
	STR(auth_method); STR(auth_data); STR(response_info); STR(server_reference);
	STR(reason_string);
#undef STR
	for (int i = 0; i < a->n_sub_id; i++)
		if (a->sub_id[i] != b->sub_id[i])
			return "props.sub_id";
	for (int i = 0; i < a->n_user; i++)
		if (!MQTT_EQ_S(a->user[i].key, b->user[i].key) || !MQTT_EQ_S(a->user[i].val, b->user[i].val))
			return "props.user";
	return NULL;
}

static const char *
mqtt_packet_diff(const struct mqtt_packet *a, const struct mqtt_packet *b)
{
	const struct mqtt_connect *ca = &a->connect, *cb = &b->connect;

#define SCALAR(f) if (a->f != b->f) return #f
	SCALAR(type); SCALAR(qos); SCALAR(dup); SCALAR(retain); SCALAR(packet_id);
	SCALAR(session_present); SCALAR(reason_code); SCALAR(n_subs); SCALAR(n_codes);
	SCALAR(connect.clean_start); SCALAR(connect.keepalive); SCALAR(connect.will);
	SCALAR(connect.will_qos); SCALAR(connect.will_retain); SCALAR(connect.has_username);
	SCALAR(connect.has_password);
#undef SCALAR
	if (!MQTT_EQ_S(a->topic, b->topic))
		return "topic";
	if (!MQTT_EQ_S(a->payload, b->payload))
		return "payload";
	for (int i = 0; i < a->n_subs; i++)
		if (!MQTT_EQ_S(a->subs[i].filter, b->subs[i].filter) || a->subs[i].options != b->subs[i].options)
			return "subs";
	if (a->n_codes > 0 && memcmp(a->codes, b->codes, (size_t)a->n_codes) != 0)
		return "codes";
	if (!MQTT_EQ_S(ca->client_id, cb->client_id) || !MQTT_EQ_S(ca->will_topic, cb->will_topic) ||
	    !MQTT_EQ_S(ca->will_payload, cb->will_payload) || !MQTT_EQ_S(ca->username, cb->username) ||
	    !MQTT_EQ_S(ca->password, cb->password))
		return "connect strings";
	if (mqtt_props_diff(&ca->will_props, &cb->will_props) != NULL)
		return "connect.will_props";
	return mqtt_props_diff(&a->props, &b->props);
}

#endif
