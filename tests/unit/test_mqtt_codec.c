/* test_mqtt_codec.c: the MQTT codec (protocols/mqtt_codec.c) against the byte examples of
 * the specifications, round trips of every packet type in MQTT 3.1.1 and 5.0 with every
 * property, topic matching (4.7) and the names for traces. Packets of implementations we
 * did not write: test_mqtt_codec_vectors.c; the refusals, one per rule:
 * test_mqtt_codec_rules.c.
 * `test_mqtt_codec --dump FILE` also writes every packet the round trips encode, one per
 * line, for `gen_mqtt_codec_vectors.py --check FILE` to have paho and mosquitto read. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "mqtt_codec.h"

#include "mqtt_codec_eq.h"

#define S(lit) ((struct mqtt_str){ lit, sizeof(lit) - 1 })
#define BIN(lit) ((struct mqtt_bin){ (const uint8_t *)(lit), sizeof(lit) - 1 })

static uint8_t frame[1 << 16];
static FILE *dump; /* --dump: every packet round_trip encodes, for gen_mqtt_codec_vectors.py --check */

static void
dump_hex(const void *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		fprintf(dump, "%02x", ((const uint8_t *)p)[i]);
}

/* One line: version, the frame in hex, the fields as JSON. */
static void
dump_packet(const struct mqtt_packet *p, enum mqtt_version v, const uint8_t *f, size_t len)
{
	int nprops = p->props.n_user + p->props.n_sub_id;

	for (int id = 1; id < 64; id++)
		if (MQTT_PROP_HAS(&p->props, id) && id != MQTT_P_USER_PROPERTY && id != MQTT_P_SUBSCRIPTION_ID)
			nprops++;
	fprintf(dump, "%d ", v);
	dump_hex(f, len);
	fprintf(dump, " {\"id\": %u, \"qos\": %u, \"retain\": %s, \"dup\": %s, \"rc\": %u, \"sp\": %s, "
	    "\"nsubs\": %d, \"nprops\": %d, \"topic\": \"", p->packet_id, p->qos, p->retain ? "true" : "false",
	    p->dup ? "true" : "false", p->reason_code, p->session_present ? "true" : "false", p->n_subs, nprops);
	dump_hex(p->topic.p, p->topic.len);
	fprintf(dump, "\", \"payload\": \"");
	dump_hex(p->payload.p, p->payload.len);
	fprintf(dump, "\", \"codes\": [");
	for (int i = 0; i < p->n_codes; i++)
		fprintf(dump, "%s%u", i ? ", " : "", p->codes[i]);
	fprintf(dump, "]}\n");
}

/* Encode p, measure it with mqtt_frame_len, decode it into out: the same packet. Returns
 * the length (0 on failure, reported). */
static long
round_trip(const struct mqtt_packet *p, enum mqtt_version v, struct mqtt_packet *out)
{
	char err[256] = "";
	long n = mqtt_encode(p, v, frame, sizeof(frame), err, sizeof(err));
	const char *diff;

	if (n <= 0) {
		fprintf(stderr, "encode %s v%d: %s\n", mqtt_type_name(p->type), v, err);
		CHECK(n > 0);
		return 0;
	}
	/* the size alone, without a buffer, is the same */
	CHECK_INT(mqtt_encode(p, v, NULL, 0, err, sizeof(err)), n);
	CHECK_INT(mqtt_encode(p, v, frame, (size_t)n - 1, err, sizeof(err)), n);
	CHECK_INT(mqtt_frame_len(frame, (size_t)n, (size_t)n, err, sizeof(err)), n);
	CHECK_INT(mqtt_frame_len(frame, (size_t)n - 1, (size_t)n, err, sizeof(err)), 0);
	if (dump != NULL)
		dump_packet(p, v, frame, (size_t)n);
	if (mqtt_decode(frame, (size_t)n, v, out, err, sizeof(err)) != 0) {
		fprintf(stderr, "decode %s v%d: %s\n", mqtt_type_name(p->type), v, err);
		CHECK(0);
		return 0;
	}
	diff = mqtt_packet_diff(p, out);
	if (diff != NULL)
		fprintf(stderr, "%s v%d: %s differs after the round trip\n", mqtt_type_name(p->type), v, diff);
	CHECK(diff == NULL);
	return n;
}

/* Exact bytes of an encoding. */
static bool
encodes_to(const struct mqtt_packet *p, enum mqtt_version v, const char *hex)
{
	char err[256] = "", got[2 * sizeof(frame) / 64 + 1];
	long n = mqtt_encode(p, v, frame, sizeof(frame), err, sizeof(err));

	if (n < 0 || (size_t)n * 2 >= sizeof(got)) {
		fprintf(stderr, "encode: %s\n", err);
		return false;
	}
	for (long i = 0; i < n; i++)
		snprintf(got + 2 * i, 3, "%02x", frame[i]);
	if (strcmp(got, hex) != 0) {
		fprintf(stderr, "encoded %s\n     not %s\n", got, hex);
		return false;
	}
	return true;
}

static void
test_connect(void)
{
	struct mqtt_packet p = { .type = MQTT_CONNECT }, q;

	p.connect = (struct mqtt_connect){ .client_id = S("komd-plant-1"), .clean_start = true,
	    .keepalive = 60, .has_username = true, .username = S("scada"), .has_password = true,
	    .password = BIN("s\0cret") };
	/* 3.1.1 3.1.2.10's example of the variable header: 00 04 'MQTT' 04 flags 00 3C */
	CHECK(encodes_to(&p, MQTT_V311, "102700044d515454""04""c2""003c""000c6b6f6d642d706c616e742d31"
	    "00057363616461""0006730063726574"));
	round_trip(&p, MQTT_V311, &q);

	p.connect.will = true;
	p.connect.will_qos = 1;
	p.connect.will_retain = true;
	p.connect.will_topic = S("komd/plant/status");
	p.connect.will_payload = BIN("offline");
	round_trip(&p, MQTT_V311, &q);
	p.connect.clean_start = false;
	p.connect.client_id = S("");
	round_trip(&p, MQTT_V311, &q);

	/* v5: properties of CONNECT and of the will, password without user name (3.1.2.9) */
	p.connect.has_username = false;
	p.connect.username = (struct mqtt_str){ NULL, 0 };
	p.props.session_expiry = 3600;
	MQTT_PROP_SET(&p.props, MQTT_P_SESSION_EXPIRY);
	p.props.receive_maximum = 20;
	MQTT_PROP_SET(&p.props, MQTT_P_RECEIVE_MAXIMUM);
	p.props.maximum_packet_size = 1 << 20;
	MQTT_PROP_SET(&p.props, MQTT_P_MAXIMUM_PACKET_SIZE);
	p.props.topic_alias_maximum = 10;
	MQTT_PROP_SET(&p.props, MQTT_P_TOPIC_ALIAS_MAXIMUM);
	p.props.request_problem_info = 1;
	MQTT_PROP_SET(&p.props, MQTT_P_REQUEST_PROBLEM_INFO);
	p.props.request_response_info = 0;
	MQTT_PROP_SET(&p.props, MQTT_P_REQUEST_RESPONSE_INFO);
	p.props.auth_method = S("SCRAM-SHA-1");
	MQTT_PROP_SET(&p.props, MQTT_P_AUTH_METHOD);
	p.props.auth_data = BIN("\x01\x02");
	MQTT_PROP_SET(&p.props, MQTT_P_AUTH_DATA);
	p.props.user[0] = (struct mqtt_user_prop){ S("site"), S("Plant 1") };
	p.props.user[1] = (struct mqtt_user_prop){ S("site"), S("again: pairs may repeat") };
	p.props.n_user = p.props.n_user_total = 2;
	MQTT_PROP_SET(&p.props, MQTT_P_USER_PROPERTY);
	struct mqtt_props *w = &p.connect.will_props;
	w->will_delay = 30;
	MQTT_PROP_SET(w, MQTT_P_WILL_DELAY);
	w->payload_format = 1;
	MQTT_PROP_SET(w, MQTT_P_PAYLOAD_FORMAT);
	w->message_expiry = 600;
	MQTT_PROP_SET(w, MQTT_P_MESSAGE_EXPIRY);
	w->content_type = S("text/plain");
	MQTT_PROP_SET(w, MQTT_P_CONTENT_TYPE);
	w->response_topic = S("komd/reply");
	MQTT_PROP_SET(w, MQTT_P_RESPONSE_TOPIC);
	w->correlation_data = BIN("\x00\xff");
	MQTT_PROP_SET(w, MQTT_P_CORRELATION_DATA);
	CHECK(round_trip(&p, MQTT_V5, &q) > 0);
	CHECK_INT(q.connect.will_props.will_delay, 30);
	CHECK_INT(q.props.n_user, 2);
}

static void
test_connack(void)
{
	struct mqtt_packet p = { .type = MQTT_CONNACK, .session_present = true }, q;

	/* 3.1.1 3.2: 20 02 01 00; a refusal 20 02 00 05 */
	CHECK(encodes_to(&p, MQTT_V311, "20020100"));
	round_trip(&p, MQTT_V311, &q);
	p.session_present = false;
	p.reason_code = 5;
	CHECK(encodes_to(&p, MQTT_V311, "20020005"));
	round_trip(&p, MQTT_V311, &q);
	/* v5: a property length even when empty (3.2.2.3.1) */
	p.reason_code = 0x87;
	CHECK(encodes_to(&p, MQTT_V5, "2003008700"));
	round_trip(&p, MQTT_V5, &q);
	p.reason_code = 0;
	p.props = (struct mqtt_props){ 0 };
	p.props.assigned_client_id = S("auto-1234");
	p.props.server_keepalive = 30;
	p.props.maximum_qos = 1;
	p.props.retain_available = 0;
	p.props.wildcard_sub_available = 1;
	p.props.sub_id_available = 1;
	p.props.shared_sub_available = 0;
	p.props.receive_maximum = 65535;
	p.props.topic_alias_maximum = 5;
	/* 268435460 is a legal value too, but paho 1.6 refuses more than 268435455 */
	p.props.maximum_packet_size = 268435455;
	p.props.session_expiry = 0xFFFFFFFFu;
	p.props.response_info = S("komd/resp");
	p.props.server_reference = S("broker2:1883");
	p.props.reason_string = S("welcome");
	p.props.auth_method = S("m");
	p.props.auth_data = BIN("d");
	p.props.present = (uint64_t)1 << MQTT_P_ASSIGNED_CLIENT_ID | (uint64_t)1 << MQTT_P_SERVER_KEEPALIVE |
	    (uint64_t)1 << MQTT_P_MAXIMUM_QOS | (uint64_t)1 << MQTT_P_RETAIN_AVAILABLE |
	    (uint64_t)1 << MQTT_P_WILDCARD_SUB_AVAILABLE | (uint64_t)1 << MQTT_P_SUB_ID_AVAILABLE |
	    (uint64_t)1 << MQTT_P_SHARED_SUB_AVAILABLE | (uint64_t)1 << MQTT_P_RECEIVE_MAXIMUM |
	    (uint64_t)1 << MQTT_P_TOPIC_ALIAS_MAXIMUM | (uint64_t)1 << MQTT_P_MAXIMUM_PACKET_SIZE |
	    (uint64_t)1 << MQTT_P_SESSION_EXPIRY | (uint64_t)1 << MQTT_P_RESPONSE_INFO |
	    (uint64_t)1 << MQTT_P_SERVER_REFERENCE | (uint64_t)1 << MQTT_P_REASON_STRING |
	    (uint64_t)1 << MQTT_P_AUTH_METHOD | (uint64_t)1 << MQTT_P_AUTH_DATA;
	CHECK(round_trip(&p, MQTT_V5, &q) > 0);
	CHECK_INT(q.props.maximum_packet_size, 268435455);
}

static void
test_publish(void)
{
	static uint8_t big[20000];
	struct mqtt_packet p = { .type = MQTT_PUBLISH, .topic = S("a/b"), .payload = BIN("21.5") }, q;

	/* QoS 0: 30 09 00 03 'a/b' '21.5' */
	CHECK(encodes_to(&p, MQTT_V311, "30090003612f6232312e35"));
	round_trip(&p, MQTT_V311, &q);
	p.qos = 1;
	p.packet_id = 10;
	p.retain = true;
	CHECK(encodes_to(&p, MQTT_V311, "330b0003612f62000a32312e35"));
	p.qos = 2;
	p.dup = true;
	round_trip(&p, MQTT_V311, &q);
	CHECK(q.dup && q.retain && q.qos == 2 && q.packet_id == 10);
	/* v5: the empty property length, then every PUBLISH property */
	CHECK(encodes_to(&p, MQTT_V5, "3d0c0003612f62000a0032312e35"));
	round_trip(&p, MQTT_V5, &q);
	p.props.payload_format = 1;
	p.props.message_expiry = 60;
	p.props.content_type = S("application/json");
	p.props.response_topic = S("komd/cmd/response");
	p.props.correlation_data = BIN("\x01\x02\x03");
	p.props.topic_alias = 3;
	p.props.sub_id[0] = 1;
	p.props.sub_id[1] = 268435455;
	p.props.n_sub_id = 2;
	p.props.present = (uint64_t)1 << MQTT_P_PAYLOAD_FORMAT | (uint64_t)1 << MQTT_P_MESSAGE_EXPIRY |
	    (uint64_t)1 << MQTT_P_CONTENT_TYPE | (uint64_t)1 << MQTT_P_RESPONSE_TOPIC |
	    (uint64_t)1 << MQTT_P_CORRELATION_DATA | (uint64_t)1 << MQTT_P_TOPIC_ALIAS |
	    (uint64_t)1 << MQTT_P_SUBSCRIPTION_ID;
	CHECK(round_trip(&p, MQTT_V5, &q) > 0);
	CHECK_INT(q.props.sub_id[1], 268435455);
	/* a topic alias alone names the topic (3.3.2.3.4) */
	p.topic = S("");
	CHECK(round_trip(&p, MQTT_V5, &q) > 0);
	/* a payload that needs a 3-byte Remaining Length */
	p = (struct mqtt_packet){ .type = MQTT_PUBLISH, .topic = S("t"),
	    .payload = { big, sizeof(big) } };
	CHECK_INT(round_trip(&p, MQTT_V311, &q), 1 + 3 + 3 + sizeof(big));
	CHECK(q.payload.len == sizeof(big));
}

static void
test_acks(void)
{
	static const enum mqtt_type t[] = { MQTT_PUBACK, MQTT_PUBREC, MQTT_PUBREL, MQTT_PUBCOMP };
	static const char *const short_form[] = { "4002", "5002", "6202", "7002" };
	struct mqtt_packet p, q;
	char hex[16];

	for (int i = 0; i < 4; i++) {
		p = (struct mqtt_packet){ .type = t[i], .packet_id = 0x1234 };
		snprintf(hex, sizeof(hex), "%s1234", short_form[i]);
		CHECK(encodes_to(&p, MQTT_V311, hex));
		CHECK(encodes_to(&p, MQTT_V5, hex)); /* 3.4.2.1: reason 0, no properties: 2 bytes */
		round_trip(&p, MQTT_V311, &q);
		round_trip(&p, MQTT_V5, &q);
		p.reason_code = t[i] == MQTT_PUBREL || t[i] == MQTT_PUBCOMP ? 0x92 : 0x10;
		snprintf(hex, sizeof(hex), "%c0031234%02x", "4567"[i], p.reason_code);
		if (t[i] == MQTT_PUBREL)
			hex[1] = '2';
		CHECK(encodes_to(&p, MQTT_V5, hex));
		round_trip(&p, MQTT_V5, &q);
		p.props.reason_string = S("nobody listens");
		p.props.user[0] = (struct mqtt_user_prop){ S("k"), S("v") };
		p.props.n_user = 1;
		MQTT_PROP_SET(&p.props, MQTT_P_REASON_STRING);
		MQTT_PROP_SET(&p.props, MQTT_P_USER_PROPERTY);
		round_trip(&p, MQTT_V5, &q);
		/* properties with reason 0: the reason code byte is written */
		p.reason_code = 0;
		CHECK(round_trip(&p, MQTT_V5, &q) > 4);
		/* the User Property bit without a pair is no property: the short forms, as when
		 * it is clear (a set bit once wrote an empty property length that came back one
		 * byte shorter: fuzz_mqtt) */
		p = (struct mqtt_packet){ .type = t[i], .packet_id = 0x1234 };
		MQTT_PROP_SET(&p.props, MQTT_P_USER_PROPERTY);
		snprintf(hex, sizeof(hex), "%s1234", short_form[i]);
		CHECK(encodes_to(&p, MQTT_V5, hex));
		p.reason_code = t[i] == MQTT_PUBREL || t[i] == MQTT_PUBCOMP ? 0x92 : 0x10;
		snprintf(hex, sizeof(hex), "%c0031234%02x", "4567"[i], p.reason_code);
		if (t[i] == MQTT_PUBREL)
			hex[1] = '2';
		CHECK(encodes_to(&p, MQTT_V5, hex));
	}
}

static void
test_subscribe(void)
{
	struct mqtt_packet p = { .type = MQTT_SUBSCRIBE, .packet_id = 1, .n_subs = 2 }, q;

	p.subs[0] = (struct mqtt_sub){ S("a/b"), 1 };
	p.subs[1] = (struct mqtt_sub){ S("c/#"), 2 };
	/* 3.1.1 3.8.3's example payload: 'a/b' QoS 1, 'c/d' QoS 2 */
	CHECK(encodes_to(&p, MQTT_V311, "820e0001""0003612f6201""0003632f2302"));
	round_trip(&p, MQTT_V311, &q);
	p.subs[0].options = 2 | MQTT_SUB_NO_LOCAL | MQTT_SUB_RAP | 0x20;
	p.subs[1].filter = S("$share/grp/+/x");
	p.props.sub_id[0] = 77;
	p.props.n_sub_id = 1;
	MQTT_PROP_SET(&p.props, MQTT_P_SUBSCRIPTION_ID);
	CHECK(round_trip(&p, MQTT_V5, &q) > 0);
	CHECK_INT(q.subs[0].options, 0x2E);

	p = (struct mqtt_packet){ .type = MQTT_UNSUBSCRIBE, .packet_id = 2, .n_subs = 2 };
	p.subs[0].filter = S("a/b");
	p.subs[1].filter = S("+/+/#");
	CHECK(encodes_to(&p, MQTT_V311, "a20e0002""0003612f62""00052b2f2b2f23"));
	round_trip(&p, MQTT_V311, &q);
	round_trip(&p, MQTT_V5, &q);

	p = (struct mqtt_packet){ .type = MQTT_SUBACK, .packet_id = 1, .n_codes = 4,
	    .codes = { 0, 1, 2, 0x80 } };
	CHECK(encodes_to(&p, MQTT_V311, "90060001""00010280"));
	round_trip(&p, MQTT_V311, &q);
	p.codes[3] = 0xA2;
	round_trip(&p, MQTT_V5, &q);

	p = (struct mqtt_packet){ .type = MQTT_UNSUBACK, .packet_id = 9 };
	CHECK(encodes_to(&p, MQTT_V311, "b0020009"));
	round_trip(&p, MQTT_V311, &q);
	p.n_codes = 2;
	p.codes[1] = 0x11;
	CHECK(encodes_to(&p, MQTT_V5, "b005000900""0011"));
	round_trip(&p, MQTT_V5, &q);
}

static void
test_simple(void)
{
	struct mqtt_packet p = { .type = MQTT_PINGREQ }, q;

	CHECK(encodes_to(&p, MQTT_V311, "c000"));
	CHECK(encodes_to(&p, MQTT_V5, "c000"));
	round_trip(&p, MQTT_V5, &q);
	p.type = MQTT_PINGRESP;
	CHECK(encodes_to(&p, MQTT_V311, "d000"));
	round_trip(&p, MQTT_V311, &q);
	p.type = MQTT_DISCONNECT;
	CHECK(encodes_to(&p, MQTT_V311, "e000"));
	CHECK(encodes_to(&p, MQTT_V5, "e000")); /* 3.14.2.1: 0x00 may be left out */
	round_trip(&p, MQTT_V311, &q);
	p.reason_code = 0x04;
	CHECK(encodes_to(&p, MQTT_V5, "e00104"));
	round_trip(&p, MQTT_V5, &q);
	p.reason_code = 0x8E;
	p.props.session_expiry = 0;
	p.props.server_reference = S("other:1883");
	p.props.reason_string = S("taken over");
	p.props.present = (uint64_t)1 << MQTT_P_SESSION_EXPIRY | (uint64_t)1 << MQTT_P_SERVER_REFERENCE |
	    (uint64_t)1 << MQTT_P_REASON_STRING;
	round_trip(&p, MQTT_V5, &q);
}

/* 4.7.1, 4.7.2: the examples of the specification. */
static void
test_match(void)
{
	static const struct { const char *f, *t; bool m; } v[] = {
		{ "sport/tennis/player1/#", "sport/tennis/player1", true },
		{ "sport/tennis/player1/#", "sport/tennis/player1/ranking", true },
		{ "sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true },
		{ "sport/#", "sport", true },
		{ "#", "sport/tennis", true },
		{ "sport/tennis/+", "sport/tennis/player1", true },
		{ "sport/tennis/+", "sport/tennis/player1/ranking", false },
		{ "sport/+", "sport", false },
		{ "sport/+", "sport/", true },
		{ "+/+", "/finance", true },
		{ "/+", "/finance", true },
		{ "+", "/finance", false },
		{ "+/tennis/#", "sport/tennis", true },
		{ "sport/tennis#", "sport/tennis", false }, /* not a valid filter, never matches more */
		{ "#", "$SYS/broker/load", false },
		{ "+/monitor/Clients", "$SYS/monitor/Clients", false },
		{ "$SYS/#", "$SYS/monitor/Clients", true },
		{ "$SYS/monitor/+", "$SYS/monitor/Clients", true },
		{ "a/b", "a/b", true }, { "a/b", "a/bc", false }, { "a/b", "a", false },
		{ "a/+/c", "a//c", true }, { "a", "A", false },
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		bool m = mqtt_topic_match(v[i].f, v[i].t, strlen(v[i].t));

		if (m != v[i].m)
			fprintf(stderr, "match(%s, %s) = %d\n", v[i].f, v[i].t, m);
		CHECK(m == v[i].m);
	}
}

static void
test_names(void)
{
	char buf[512];
	struct mqtt_packet p = { .type = MQTT_PUBLISH, .qos = 1, .packet_id = 7, .topic = S("a/\x01"),
	    .payload = BIN("xyz") };

	CHECK_STR(mqtt_type_name(MQTT_SUBACK), "SUBACK");
	CHECK_STR(mqtt_type_name((enum mqtt_type)0), "reserved");
	CHECK_STR(mqtt_reason_name(MQTT_V5, MQTT_CONNACK, 0x87), "Not authorized");
	CHECK_STR(mqtt_reason_name(MQTT_V311, MQTT_CONNACK, 4), "Connection Refused, bad user name or password");
	CHECK_STR(mqtt_reason_name(MQTT_V5, MQTT_DISCONNECT, 0), "Normal disconnection");
	CHECK_STR(mqtt_reason_name(MQTT_V5, MQTT_SUBACK, 1), "Granted QoS 1");
	CHECK_STR(mqtt_reason_name(MQTT_V311, MQTT_SUBACK, 0x80), "Failure");
	CHECK_STR(mqtt_reason_name(MQTT_V5, MQTT_PUBACK, 0x10), "No matching subscribers");
	CHECK_STR(mqtt_reason_name(MQTT_V5, MQTT_PUBACK, 0x7F), "reserved");
	p.props.topic_alias = 2;
	MQTT_PROP_SET(&p.props, MQTT_P_TOPIC_ALIAS);
	CHECK_INT(mqtt_describe(&p, buf, sizeof(buf)), (long long)strlen(buf));
	CHECK_STR(buf, "PUBLISH qos=1 id=7 topic=\"a/\\x01\" payload=3 B props[Topic Alias=2]");
	p = (struct mqtt_packet){ .type = MQTT_CONNACK, .reason_code = 5 };
	mqtt_describe(&p, buf, sizeof(buf));
	CHECK_STR(buf, "CONNACK session_present=0 rc=0x05 (Connection Refused, not authorized)");
	CHECK_INT(mqtt_describe(&p, buf, 8), 7);
	CHECK_STR(buf, "CONNACK");
}

int
main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--dump") == 0 && (dump = fopen(argv[2], "w")) == NULL) {
		perror(argv[2]);
		return 1;
	}
	test_connect();
	test_connack();
	test_publish();
	test_acks();
	test_subscribe();
	test_simple();
	test_match();
	test_names();
	if (dump != NULL)
		fclose(dump);
	return CHECK_DONE();
}
