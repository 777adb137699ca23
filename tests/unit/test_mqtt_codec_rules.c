/* test_mqtt_codec_rules.c: every rule of protocols/mqtt_codec.c refused with a test, each
 * with the clause its error must name: framing (1.5.5, 2.1.4), fixed header flags (2.1.3),
 * packet identifiers (2.2.1), UTF-8 (1.5.4, each kind of bad sequence), topic names and
 * filters (4.7, 4.8.2), properties (2.2.2.2: not allowed, twice, out of range), reason
 * codes (2.4), and the per-packet rules of clause 3; then the same rules on the encoding
 * side. The frames are written out in hex from the specification's layouts. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "mqtt_codec.h"

#define S(lit) ((struct mqtt_str){ lit, sizeof(lit) - 1 })

static uint8_t frame[1 << 12];

/* Hex (spaces allowed) into frame; returns the length. */
static size_t
unhex(const char *hex, uint8_t *out)
{
	size_t n = 0;
	unsigned x;

	for (; *hex != '\0'; hex++) {
		if (*hex == ' ')
			continue;
		sscanf(hex, "%2x", &x);
		out[n++] = (uint8_t)x;
		hex++;
	}
	return n;
}

/* A packet from its first byte and its body (the Remaining Length is computed). */
static size_t
pkt(uint8_t first, const char *body)
{
	uint8_t b[1 << 11];
	size_t n = unhex(body, b), h = 1;

	frame[0] = first;
	for (size_t x = n; ; ) {
		frame[h++] = (uint8_t)((x & 0x7F) | (x > 0x7F ? 0x80 : 0));
		x >>= 7;
		if (x == 0)
			break;
	}
	memcpy(frame + h, b, n);
	return h + n;
}

static bool
refused_frame(size_t len, enum mqtt_version v, const char *why, int line)
{
	struct mqtt_packet p;
	char err[256] = "";

	if (mqtt_decode(frame, len, v, &p, err, sizeof(err)) == 0) {
		fprintf(stderr, "line %d: decoded, should be refused for %s\n", line, why);
		return false;
	}
	if (strstr(err, why) == NULL) {
		fprintf(stderr, "line %d: error \"%s\" does not say \"%s\"\n", line, err, why);
		return false;
	}
	return p.type == 0; /* nothing half-decoded is left */
}
#define REFUSED(first, body, v, why) CHECK(refused_frame(pkt(first, body), v, why, __LINE__))
#define REFUSED_RAW(hex, v, why) CHECK(refused_frame(unhex(hex, frame), v, why, __LINE__))
static bool
accepted(size_t len, enum mqtt_version v, int line)
{
	struct mqtt_packet p;
	char err[256] = "";

	if (mqtt_decode(frame, len, v, &p, err, sizeof(err)) == 0)
		return true;
	fprintf(stderr, "line %d: %s\n", line, err);
	return false;
}
#define ACCEPTED(first, body, v) CHECK(accepted(pkt(first, body), v, __LINE__))

static void
test_framing(void)
{
	char err[256];

	/* 1.5.5: a fifth byte; the size over the maximum; not yet complete */
	CHECK_INT(mqtt_frame_len(frame, unhex("30 ff ff ff ff 01", frame), 1 << 20, err, sizeof(err)), -1);
	CHECK(strstr(err, "longer than 4 bytes (1.5.5") != NULL);
	CHECK_INT(mqtt_frame_len(frame, unhex("30 ff ff ff 7f", frame), 1000, err, sizeof(err)), -1);
	CHECK(strstr(err, "268435460 bytes exceeds the maximum packet size 1000") != NULL);
	CHECK_INT(mqtt_frame_len(frame, unhex("30 ff ff ff 7f", frame), (size_t)-1, err, sizeof(err)), 0);
	CHECK_INT(mqtt_frame_len(frame, unhex("30", frame), 100, err, sizeof(err)), 0);
	CHECK_INT(mqtt_frame_len(frame, unhex("30 80", frame), 100, err, sizeof(err)), 0);
	CHECK_INT(mqtt_frame_len(frame, unhex("30 05 00", frame), 100, err, sizeof(err)), 0);
	/* a non-minimal Remaining Length is measured (and decoded) all the same */
	CHECK_INT(mqtt_frame_len(frame, unhex("c0 80 00", frame), 100, err, sizeof(err)), 3);
	CHECK_INT(mqtt_frame_len(frame, unhex("c0 00 c0 00", frame), 100, err, sizeof(err)), 2);

	REFUSED_RAW("c0 00 00", MQTT_V311, "Remaining Length 0 does not match the 1 bytes");
	REFUSED_RAW("c0 01", MQTT_V311, "Remaining Length 1 does not match the 0 bytes");
	REFUSED_RAW("c0 ff ff ff ff 01", MQTT_V5, "longer than 4 bytes (1.5.5)");
	REFUSED_RAW("c0", MQTT_V5, "shorter than a fixed header");
	REFUSED_RAW("00 00", MQTT_V5, "packet type 0 is reserved (2.1.2)");
	REFUSED_RAW("f0 00", MQTT_V311, "packet type 15 is reserved (2.1.2)");
	REFUSED_RAW("f0 00", MQTT_V5, "AUTH is not supported");
	/* bytes left over (3.1.1 acknowledgements are 2 bytes; PINGREQ none) */
	REFUSED(0x40, "0001 00", MQTT_V311, "1 bytes left over after the packet");
	REFUSED(0xC0, "00", MQTT_V5, "left over");
	REFUSED(0xE0, "00", MQTT_V311, "left over");
	REFUSED(0xB0, "0001 00", MQTT_V311, "left over");
	/* truncated fields */
	REFUSED(0x30, "0005 6162", MQTT_V311, "topic name truncated: 5 bytes needed, 2 left");
	REFUSED(0x32, "0001 61 00", MQTT_V311, "packet identifier truncated");
	REFUSED(0x40, "00", MQTT_V5, "packet identifier truncated");
	REFUSED(0x20, "00", MQTT_V311, "return code truncated");
	REFUSED(0x10, "0004 4d515454 04 02 003c 000a 616263", MQTT_V311, "client identifier truncated");
	REFUSED(0x10, "0004 4d515454 04 c2 003c 0001 61 0001 75 0005 7071", MQTT_V311, "password truncated");
}

static void
test_flags(void)
{
	/* 2.1.3: every type's reserved flags */
	REFUSED(0x11, "0004 4d515454 04 02 003c 0000", MQTT_V311, "fixed header flags 0x1, must be 0x0 (2.1.3)");
	REFUSED(0x28, "0000", MQTT_V311, "flags 0x8, must be 0x0");
	REFUSED(0x42, "0001", MQTT_V311, "flags 0x2, must be 0x0");
	REFUSED(0x60, "0001", MQTT_V311, "flags 0x0, must be 0x2");
	REFUSED(0x80, "0001 0001 61 00", MQTT_V311, "flags 0x0, must be 0x2");
	REFUSED(0xA3, "0001 0001 61", MQTT_V5, "flags 0x3, must be 0x2");
	REFUSED(0xC1, "", MQTT_V5, "flags 0x1, must be 0x0");
	REFUSED(0xD8, "", MQTT_V5, "flags 0x8");
	REFUSED(0xE4, "", MQTT_V5, "flags 0x4");
	/* PUBLISH: QoS 3 (3.3.1.2), DUP with QoS 0 (3.3.1.1) */
	REFUSED(0x36, "0001 61 0001", MQTT_V311, "QoS 3 (3.3.1.2)");
	REFUSED(0x38, "0001 61", MQTT_V311, "DUP set with QoS 0 (3.3.1.1)");
	ACCEPTED(0x3B, "0001 61 0001", MQTT_V311);
	/* 2.2.1: packet identifier 0 */
	REFUSED(0x32, "0001 61 0000", MQTT_V311, "packet identifier 0 (2.2.1)");
	REFUSED(0x40, "0000", MQTT_V5, "packet identifier 0 (2.2.1)");
	REFUSED(0x62, "0000", MQTT_V311, "packet identifier 0");
	REFUSED(0x82, "0000 0001 61 00", MQTT_V311, "packet identifier 0");
	REFUSED(0x90, "0000 00", MQTT_V311, "packet identifier 0");
	REFUSED(0xA2, "0000 00 0001 61", MQTT_V5, "packet identifier 0");
	REFUSED(0xB0, "0000", MQTT_V311, "packet identifier 0");
}

/* 1.5.4, each kind, in a topic name, a client identifier and a user property. */
static void
test_utf8(void)
{
	static const struct { const char *hex, *why; } v[] = {
		{ "c080", "overlong UTF-8 sequence at byte 0" },
		{ "61c1bf", "overlong UTF-8 sequence at byte 1" },
		{ "e08080", "overlong" },
		{ "e09fbf", "overlong" },
		{ "f08fbfbf", "overlong" },
		{ "eda080", "surrogate U+D800 at byte 0" },
		{ "61edbfbf", "surrogate U+DFFF at byte 1" },
		{ "6100", "U+0000 at byte 1 (1.5.4)" },
		{ "f4908080", "above U+10FFFF" },
		{ "e282", "truncated at byte 0" },
		{ "c328", "byte 1 is not a UTF-8 continuation byte" },
		{ "ff", "byte 0xFF at byte 0 cannot start" },
		{ "80", "byte 0x80 at byte 0 cannot start" },
		{ "f8888080", "cannot start" },
	};
	char body[256], err[256];
	uint8_t s[16];

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		size_t n = strlen(v[i].hex) / 2;

		snprintf(body, sizeof(body), "%04zx %s", n, v[i].hex);
		REFUSED(0x30, body, MQTT_V311, v[i].why);
		snprintf(body, sizeof(body), "0004 4d515454 04 02 003c %04zx %s", n, v[i].hex);
		REFUSED(0x10, body, MQTT_V311, v[i].why);
		snprintf(body, sizeof(body), "0001 61 0001 %02zx 26 0001 6b %04zx %s", n + 6, n, v[i].hex);
		REFUSED(0x32, body, MQTT_V5, v[i].why);
		CHECK_INT(mqtt_check_utf8((const char *)s, unhex(v[i].hex, s), err, sizeof(err)), -1);
		CHECK(strstr(err, v[i].why) != NULL);
	}
	/* the edges that are fine: U+007F, U+0080, U+07FF, U+0800, U+FFFF, U+10000, U+10FFFF */
	CHECK_INT(mqtt_check_utf8("\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf",
	    19, err, sizeof(err)), 0);
	CHECK_INT(mqtt_check_utf8("\xed\x9f\xbf\xee\x80\x80", 6, err, sizeof(err)), 0); /* around the surrogates */
}

static void
test_topics(void)
{
	static const struct { const char *f, *why; } bad[] = {
		{ "a/#/b", "'#' at byte 2 is not alone in the last level (4.7.1.2)" },
		{ "a#", "'#' at byte 1" }, { "#/a", "'#' at byte 0" }, { "a/b#", "'#' at byte 3" },
		{ "a+", "'+' at byte 1 is not a whole level (4.7.1.3)" }, { "+a", "'+' at byte 0" },
		{ "a/+b/c", "'+' at byte 2" }, { "++", "'+' at byte 0" }, { "", "topic filter is empty (4.7.3)" },
	};
	static const char *const good[] = { "#", "+", "a/#", "+/+", "/", "a//b", "+/#", "$SYS/#", "/+/" };
	char err[256], body[128];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t n = strlen(bad[i].f);
		int k;

		CHECK_INT(mqtt_check_topic_filter(bad[i].f, n, err, sizeof(err)), -1);
		CHECK(strstr(err, bad[i].why) != NULL);
		k = snprintf(body, sizeof(body), "0001 %04zx ", n);
		for (size_t j = 0; j < n; j++)
			k += snprintf(body + k, sizeof(body) - (size_t)k, "%02x", (unsigned char)bad[i].f[j]);
		snprintf(body + k, sizeof(body) - (size_t)k, " 01");
		REFUSED(0x82, body, MQTT_V311, bad[i].why);
		body[k] = '\0';
		REFUSED(0xA2, body, MQTT_V311, bad[i].why);
	}
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		CHECK_INT(mqtt_check_topic_filter(good[i], strlen(good[i]), err, sizeof(err)), 0);
	/* topic names: no wildcards (4.7.1), not empty (4.7.3) */
	CHECK_INT(mqtt_check_topic_name("a/+", 3, err, sizeof(err)), -1);
	CHECK_STR(err, "topic name contains '+' (4.7.1)");
	CHECK_INT(mqtt_check_topic_name("#", 1, err, sizeof(err)), -1);
	CHECK_INT(mqtt_check_topic_name("", 0, err, sizeof(err)), -1);
	CHECK_INT(mqtt_check_topic_name("$SYS/a b/ä", 11, err, sizeof(err)), 0);
	REFUSED(0x30, "0003 612f2b", MQTT_V311, "PUBLISH: topic name contains '+' (4.7.1)");
	REFUSED(0x30, "0003 612f23 00", MQTT_V5, "topic name contains '#' (4.7.1)");
	REFUSED(0x30, "0000", MQTT_V311, "topic name is empty (4.7.3)");
	REFUSED(0x30, "0000 00", MQTT_V5, "topic name is empty");
	ACCEPTED(0x30, "0000 03 230001", MQTT_V5); /* with a Topic Alias */
	REFUSED(0x10, "0004 4d515454 04 0e 003c 0001 61 0001 2b 0000", MQTT_V311, "will topic contains '+'");
	/* no filter at all (3.8.3, 3.10.3), a string over 65,535 bytes */
	REFUSED(0x82, "0001", MQTT_V311, "no topic filter (3.8.3)");
	REFUSED(0xA2, "0001 00", MQTT_V5, "no topic filter (3.10.3)");
	CHECK_INT(mqtt_check_topic_name((const char *)frame, 65536, err, sizeof(err)), -1);
	CHECK(strstr(err, "at most 65535") != NULL);
	/* v5 shared subscriptions (4.8.2) and No Local on them (3.8.3.1) */
	REFUSED(0x82, "0001 00 0009 2473686172652f2f78 01", MQTT_V5, "empty ShareName (4.8.2)");
	REFUSED(0x82, "0001 00 0008 2473686172652f61 01", MQTT_V5, "no topic filter after the ShareName");
	REFUSED(0x82, "0001 00 000a 2473686172652f2b2f78 01", MQTT_V5, "ShareName contains '+'");
	REFUSED(0x82, "0001 00 000a 2473686172652f672f78 05", MQTT_V5, "No Local on a shared subscription");
	ACCEPTED(0x82, "0001 0009 2473686172652f2f78 01", MQTT_V311); /* an ordinary filter in 3.1.1 */
	/* subscription options (3.8.3.1) */
	REFUSED(0x82, "0001 0001 61 04", MQTT_V311, "reserved bits set in subscription options 0x04");
	REFUSED(0x82, "0001 0001 61 03", MQTT_V311, "subscription QoS 3");
	REFUSED(0x82, "0001 00 0001 61 40", MQTT_V5, "reserved bits set in subscription options 0x40");
	REFUSED(0x82, "0001 00 0001 61 30", MQTT_V5, "Retain Handling 3");
	ACCEPTED(0x82, "0001 00 0001 61 2e", MQTT_V5);
}

static void
test_properties(void)
{
	/* 2.2.2.2, table 2-4: not allowed in this packet */
	REFUSED(0x10, "0004 4d515454 05 02 003c 03 230001 0000", MQTT_V5,
	    "Topic Alias (0x23) is not allowed in CONNECT (2.2.2.2");
	REFUSED(0x10, "0004 4d515454 05 06 003c 05 1800000001 0001 61 00 0001 74 0000", MQTT_V5,
	    "CONNECT: Will Delay Interval (0x18) is not allowed in CONNECT");
	REFUSED(0x10, "0004 4d515454 05 06 003c 00 0001 61 03 230001 0001 74 0000", MQTT_V5,
	    "Topic Alias (0x23) is not allowed in the will properties");
	REFUSED(0x30, "0001 61 05 1800000001", MQTT_V5, "Will Delay Interval (0x18) is not allowed in PUBLISH");
	REFUSED(0x30, "0001 61 05 1100000001", MQTT_V5, "Session Expiry Interval (0x11) is not allowed");
	REFUSED(0x20, "0000 02 0b01", MQTT_V5, "Subscription Identifier (0x0B) is not allowed in CONNACK");
	REFUSED(0x40, "0001 00 04 1f000161", MQTT_V311, "left over"); /* no properties in 3.1.1 */
	REFUSED(0xE0, "00 02 2101", MQTT_V5, "Receive Maximum (0x21) is not allowed in DISCONNECT");
	REFUSED(0x10, "0004 4d515454 05 02 003c 04 1f000161 0000", MQTT_V5, "Reason String (0x1F) is not allowed");
	REFUSED(0x20, "0000 04 16000178", MQTT_V5, "Authentication Data without Authentication Method");
	REFUSED(0x30, "0001 61 01 05", MQTT_V5, "unknown property identifier 0x05 (2.2.2.2)");
	REFUSED(0x30, "0001 61 02 8001", MQTT_V5, "unknown property identifier 0x80");
	/* twice */
	REFUSED(0x10, "0004 4d515454 05 02 003c 06 21000a 21000b 0000", MQTT_V5,
	    "Receive Maximum (0x21) given twice");
	REFUSED(0x30, "0001 61 06 230001 230002", MQTT_V5, "Topic Alias (0x23) given twice");
	REFUSED(0x82, "0001 04 0b01 0b02 0001 61 00", MQTT_V5, "Subscription Identifier (0x0B) given twice");
	REFUSED(0x20, "0000 04 1f0000 1f0000", MQTT_V5, "Reason String (0x1F) given twice");
	ACCEPTED(0x30, "0001 61 04 0b01 0b02", MQTT_V5); /* PUBLISH may carry several (3.3.2.3.8) */
	ACCEPTED(0x30, "0001 61 0e 2600016b00017626 00016b000177", MQTT_V5); /* user properties repeat */
	/* out of range */
	REFUSED(0x10, "0004 4d515454 05 02 003c 03 210000 0000", MQTT_V5, "Receive Maximum (0x21) is 0");
	REFUSED(0x20, "0000 03 210000", MQTT_V5, "Receive Maximum (0x21) is 0 (3.1.2.11.3)");
	REFUSED(0x20, "0000 05 2700000000", MQTT_V5, "Maximum Packet Size (0x27) is 0");
	REFUSED(0x20, "0000 02 2402", MQTT_V5, "Maximum QoS (0x24) is 2, not 0 or 1");
	REFUSED(0x20, "0000 02 2502", MQTT_V5, "Retain Available (0x25) is 2");
	REFUSED(0x20, "0000 02 2803", MQTT_V5, "Wildcard Subscription Available (0x28) is 3");
	REFUSED(0x10, "0004 4d515454 05 02 003c 02 1702 0000", MQTT_V5, "Request Problem Information (0x17) is 2");
	REFUSED(0x30, "0001 61 02 0102", MQTT_V5, "Payload Format Indicator (0x01) is 2");
	REFUSED(0x30, "0001 61 03 230000", MQTT_V5, "Topic Alias (0x23) is 0");
	REFUSED(0x30, "0001 61 02 0b00", MQTT_V5, "Subscription Identifier (0x0B) is 0");
	REFUSED(0x30, "0001 61 06 0800032b2f61", MQTT_V5, "Response Topic contains '+'");
	/* lengths: the property length beyond the packet, a value cut by it, a long VBI */
	REFUSED(0x30, "0001 61 09 230001", MQTT_V5, "property length 9 exceeds the 3 bytes left");
	REFUSED(0x30, "0001 61 02 2300 01", MQTT_V5, "Topic Alias truncated");
	REFUSED(0x30, "0001 61 ffffffff7f", MQTT_V5, "property length: Variable Byte Integer longer than 4 bytes");
	REFUSED(0x30, "0001 61 05 0bffffffff", MQTT_V5, "Subscription Identifier: Variable Byte Integer longer");
	/* Payload Format Indicator 1: the payload must be UTF-8 */
	REFUSED(0x30, "0001 61 02 0101 61ff", MQTT_V5, "payload is not UTF-8 though its Payload Format Indicator is 1");
	ACCEPTED(0x30, "0001 61 02 0100 61ff", MQTT_V5);
	REFUSED(0x10, "0004 4d515454 05 06 003c 00 0001 61 02 0101 0001 74 0001 ff", MQTT_V5,
	    "will payload is not UTF-8");
}

static void
test_packets(void)
{
	/* CONNECT (3.1.2) */
	REFUSED(0x10, "0006 4d5149736470 03 02 003c 0000", MQTT_V311, "protocol name is not \"MQTT\" (3.1.2.1)");
	REFUSED(0x10, "0004 4d515454 05 02 003c 00 0000", MQTT_V311, "protocol level 5, expected 4 (3.1.2.2)");
	REFUSED(0x10, "0004 4d515454 04 02 003c 0000", MQTT_V5, "protocol level 4, expected 5");
	REFUSED(0x10, "0004 4d515454 04 03 003c 0000", MQTT_V311, "reserved connect flag (bit 0) is set (3.1.2.3)");
	REFUSED(0x10, "0004 4d515454 04 1e 003c 0000 0001 74 0000", MQTT_V311, "will QoS 3 (3.1.2.6)");
	REFUSED(0x10, "0004 4d515454 04 22 003c 0000", MQTT_V311, "will retain set without the will flag");
	REFUSED(0x10, "0004 4d515454 04 0a 003c 0000", MQTT_V311, "will QoS or will retain set without");
	REFUSED(0x10, "0004 4d515454 04 42 003c 0000 0001 70", MQTT_V311, "password flag without the user name flag");
	ACCEPTED(0x10, "0004 4d515454 05 42 003c 00 0000 0001 70", MQTT_V5); /* v5 allows it (3.1.2.9) */
	/* CONNACK (3.2.2) */
	REFUSED(0x20, "0200", MQTT_V311, "reserved acknowledge flags 0x02 (3.2.2.1)");
	REFUSED(0x20, "0006", MQTT_V311, "return code 6 is reserved");
	REFUSED(0x20, "0105", MQTT_V311, "Session Present with a refusal (3.2.2.2)");
	REFUSED(0x20, "0104 00", MQTT_V5, "reason code 0x04 is not allowed in CONNACK (2.4");
	REFUSED(0x20, "0100", MQTT_V5, "property length truncated");
	/* reason codes of the other packets (2.4, table 2-6) */
	REFUSED(0x40, "0001 92", MQTT_V5, "reason code 0x92 is not allowed in PUBACK");
	REFUSED(0x50, "0001 04", MQTT_V5, "reason code 0x04 is not allowed in PUBREC");
	REFUSED(0x62, "0001 10", MQTT_V5, "reason code 0x10 is not allowed in PUBREL");
	REFUSED(0x70, "0001 80", MQTT_V5, "reason code 0x80 is not allowed in PUBCOMP");
	REFUSED(0x90, "0001 00 11", MQTT_V5, "reason code 0x11 is not allowed in SUBACK");
	REFUSED(0xB0, "0001 00 01", MQTT_V5, "reason code 0x01 is not allowed in UNSUBACK");
	REFUSED(0xE0, "10", MQTT_V5, "reason code 0x10 is not allowed in DISCONNECT");
	REFUSED(0x90, "0001 03", MQTT_V311, "return code 0x03 is reserved (3.1.1 3.9.3)");
	REFUSED(0x90, "0001", MQTT_V311, "no reason code (3.9.3)");
	REFUSED(0xB0, "0001 00", MQTT_V5, "no reason code (3.11.3)");
	ACCEPTED(0x40, "0001 10", MQTT_V5);
	ACCEPTED(0x40, "0001 10 00", MQTT_V5);
	ACCEPTED(0xE0, "8e", MQTT_V5);
}

/* The encoder refuses what the decoder would (mqtt_encode's contract). */
static bool
enc_refused(const struct mqtt_packet *p, enum mqtt_version v, const char *why, int line)
{
	char err[256] = "";

	if (mqtt_encode(p, v, frame, sizeof(frame), err, sizeof(err)) >= 0) {
		fprintf(stderr, "line %d: encoded, should be refused for %s\n", line, why);
		return false;
	}
	if (strstr(err, why) == NULL) {
		fprintf(stderr, "line %d: error \"%s\" does not say \"%s\"\n", line, err, why);
		return false;
	}
	return true;
}
#define ENC_REFUSED(p, v, why) CHECK(enc_refused(p, v, why, __LINE__))

static void
test_encode(void)
{
	static char big[70000];
	struct mqtt_packet p = { .type = MQTT_PUBLISH, .topic = S("a/+") };

	ENC_REFUSED(&p, MQTT_V311, "PUBLISH: topic name contains '+' (4.7.1)");
	p.topic = S("");
	ENC_REFUSED(&p, MQTT_V5, "topic name is empty");
	p.topic = S("a\xc0\x80");
	ENC_REFUSED(&p, MQTT_V5, "overlong");
	p.topic = (struct mqtt_str){ big, sizeof(big) };
	memset(big, 'a', sizeof(big));
	ENC_REFUSED(&p, MQTT_V311, "at most 65535");
	p.topic = S("t");
	p.qos = 1;
	ENC_REFUSED(&p, MQTT_V311, "packet identifier 0 (2.2.1)");
	p.qos = 3;
	p.packet_id = 1;
	ENC_REFUSED(&p, MQTT_V311, "QoS 3");
	p.qos = 0;
	p.dup = true;
	ENC_REFUSED(&p, MQTT_V311, "DUP set with QoS 0");
	p.dup = false;
	p.payload = (struct mqtt_bin){ (const uint8_t *)big, MQTT_MAX_REMAINING };
	ENC_REFUSED(&p, MQTT_V311, "Remaining Length 268435458 exceeds 268435455");
	p.payload = (struct mqtt_bin){ NULL, 0 };
	p.props.topic_alias = 1;
	MQTT_PROP_SET(&p.props, MQTT_P_TOPIC_ALIAS);
	ENC_REFUSED(&p, MQTT_V311, "properties are MQTT 5.0 only");
	p.props.topic_alias = 0;
	ENC_REFUSED(&p, MQTT_V5, "Topic Alias (0x23) is 0");
	p.props = (struct mqtt_props){ .present = (uint64_t)1 << MQTT_P_SESSION_EXPIRY };
	ENC_REFUSED(&p, MQTT_V5, "Session Expiry Interval (0x11) is not allowed in PUBLISH");
	p.props = (struct mqtt_props){ .present = (uint64_t)1 << 5 };
	ENC_REFUSED(&p, MQTT_V5, "unknown property identifier 0x05");
	p.props = (struct mqtt_props){ .present = (uint64_t)1 << MQTT_P_SUBSCRIPTION_ID, .n_sub_id = 1,
	    .sub_id = { MQTT_MAX_REMAINING + 1 } };
	ENC_REFUSED(&p, MQTT_V5, "exceeds 268435455");
	p.props = (struct mqtt_props){ .present = (uint64_t)1 << MQTT_P_PAYLOAD_FORMAT, .payload_format = 1 };
	p.payload = (struct mqtt_bin){ (const uint8_t *)"\xff", 1 };
	ENC_REFUSED(&p, MQTT_V5, "payload is not UTF-8");

	p = (struct mqtt_packet){ .type = MQTT_CONNECT };
	p.connect.has_password = true;
	ENC_REFUSED(&p, MQTT_V311, "password without user name");
	p.connect.has_password = false;
	p.connect.will_qos = 1;
	ENC_REFUSED(&p, MQTT_V311, "without the will flag");
	p.connect.will = true;
	p.connect.will_topic = S("x/#");
	ENC_REFUSED(&p, MQTT_V5, "will topic contains '#'");
	p.connect.will_topic = S("x");
	p.props.receive_maximum = 0;
	MQTT_PROP_SET(&p.props, MQTT_P_RECEIVE_MAXIMUM);
	ENC_REFUSED(&p, MQTT_V5, "Receive Maximum (0x21) is 0");
	p.props = (struct mqtt_props){ .present = (uint64_t)1 << MQTT_P_AUTH_DATA };
	ENC_REFUSED(&p, MQTT_V5, "Authentication Data without Authentication Method");
	p.props = (struct mqtt_props){ 0 };
	MQTT_PROP_SET(&p.connect.will_props, MQTT_P_TOPIC_ALIAS);
	ENC_REFUSED(&p, MQTT_V5, "Topic Alias (0x23) is not allowed in the will properties");
	ENC_REFUSED(&p, MQTT_V311, "properties are MQTT 5.0 only");

	p = (struct mqtt_packet){ .type = MQTT_CONNACK, .reason_code = 6 };
	ENC_REFUSED(&p, MQTT_V311, "return code 6 is reserved");
	ENC_REFUSED(&p, MQTT_V5, "reason code 0x06 is not allowed in CONNACK");
	p.reason_code = 0x80;
	p.session_present = true;
	ENC_REFUSED(&p, MQTT_V5, "Session Present with a refusal");
	p = (struct mqtt_packet){ .type = MQTT_PUBACK, .packet_id = 1, .reason_code = 0x10 };
	ENC_REFUSED(&p, MQTT_V311, "reason codes are MQTT 5.0 only");
	p.reason_code = 0x92;
	ENC_REFUSED(&p, MQTT_V5, "reason code 0x92 is not allowed in PUBACK");
	p = (struct mqtt_packet){ .type = MQTT_SUBSCRIBE, .packet_id = 1 };
	ENC_REFUSED(&p, MQTT_V311, "0 topic filters");
	p.n_subs = 1;
	p.subs[0] = (struct mqtt_sub){ S("a/#/b"), 0 };
	ENC_REFUSED(&p, MQTT_V311, "'#' at byte 2");
	p.subs[0] = (struct mqtt_sub){ S("a"), MQTT_SUB_NO_LOCAL };
	ENC_REFUSED(&p, MQTT_V311, "reserved bits set in subscription options 0x04");
	p.subs[0] = (struct mqtt_sub){ S("$share/g/a"), MQTT_SUB_NO_LOCAL };
	ENC_REFUSED(&p, MQTT_V5, "No Local on a shared subscription");
	p.props = (struct mqtt_props){ .present = (uint64_t)1 << MQTT_P_SUBSCRIPTION_ID, .n_sub_id = 2 };
	ENC_REFUSED(&p, MQTT_V5, "given twice");
	p = (struct mqtt_packet){ .type = MQTT_SUBACK, .packet_id = 1, .n_codes = 1, .codes = { 0x83 } };
	ENC_REFUSED(&p, MQTT_V311, "return code 0x83 is reserved");
	p.type = MQTT_UNSUBACK;
	ENC_REFUSED(&p, MQTT_V311, "reason codes are MQTT 5.0 only");
	p.codes[0] = 0x97;
	ENC_REFUSED(&p, MQTT_V5, "reason code 0x97 is not allowed in UNSUBACK");
	p = (struct mqtt_packet){ .type = MQTT_DISCONNECT, .reason_code = 0x8E };
	ENC_REFUSED(&p, MQTT_V311, "reason codes are MQTT 5.0 only");
	p = (struct mqtt_packet){ .type = MQTT_PINGREQ, .props.present = (uint64_t)1 << MQTT_P_REASON_STRING };
	ENC_REFUSED(&p, MQTT_V5, "properties in PINGREQ");
	p = (struct mqtt_packet){ .type = MQTT_AUTH };
	ENC_REFUSED(&p, MQTT_V5, "cannot encode packet type 15");
	p.type = MQTT_PINGREQ;
	ENC_REFUSED(&p, (enum mqtt_version)3, "protocol version 3");
}

int
main(void)
{
	test_framing();
	test_flags();
	test_utf8();
	test_topics();
	test_properties();
	test_packets();
	test_encode();
	return CHECK_DONE();
}
