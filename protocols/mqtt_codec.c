/* mqtt_codec.c: MQTT control packets, pure (no I/O, no allocation).
 * Implements MQTT Version 3.1.1 (OASIS Standard, 29 October 2014) and MQTT Version 5.0
 * (OASIS Standard, 7 March 2019), for both directions:
 *   1.5.4 UTF-8 Encoded String (well-formed, no U+0000, no surrogates, no overlongs),
 *   1.5.5 Variable Byte Integer, 2.1 fixed header (2.1.2 types, 2.1.3 flags),
 *   2.2.1 packet identifier, 2.2.2 properties (table 2-4: where each is allowed),
 *   2.4 reason codes (table 2-6: which packet may carry which), 3.1 CONNECT .. 3.14
 *   DISCONNECT (3.15 AUTH is refused), 4.7 topic names and filters (4.7.2: '$' topics),
 *   4.8.2 shared subscriptions (the $share/ShareName/ form, v5).
 * Where 3.1.1 differs (no properties, CONNACK return codes 0..5, SUBACK return codes, no
 * reason codes in the acknowledgements) its clause is cited next to the v5 one.
 * The facts of a packet type, a property and a reason code each live in one table below.
 * Everything from the network is bounds-checked against the frame's length. */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "codec.h"
#include "mqtt_codec.h"

#define WILL 16                  /* the will properties, in a property's `where` mask */
#define B(t) (1u << (t))

/* 2.1.2 types and 2.1.3 their fixed header flags. */
static const struct {
	const char *name;
	int8_t flags;   /* the flags required; -1: PUBLISH's own DUP, QoS, RETAIN */
} mqtt_types[16] = {
	[0] = { "reserved", 0 },
	[MQTT_CONNECT] = { "CONNECT", 0 },    [MQTT_CONNACK] = { "CONNACK", 0 },
	[MQTT_PUBLISH] = { "PUBLISH", -1 },   [MQTT_PUBACK] = { "PUBACK", 0 },
	[MQTT_PUBREC] = { "PUBREC", 0 },      [MQTT_PUBREL] = { "PUBREL", 2 },
	[MQTT_PUBCOMP] = { "PUBCOMP", 0 },    [MQTT_SUBSCRIBE] = { "SUBSCRIBE", 2 },
	[MQTT_SUBACK] = { "SUBACK", 0 },      [MQTT_UNSUBSCRIBE] = { "UNSUBSCRIBE", 2 },
	[MQTT_UNSUBACK] = { "UNSUBACK", 0 },  [MQTT_PINGREQ] = { "PINGREQ", 0 },
	[MQTT_PINGRESP] = { "PINGRESP", 0 },  [MQTT_DISCONNECT] = { "DISCONNECT", 0 },
	[MQTT_AUTH] = { "AUTH", 0 },
};

/* 2.2.2.2, table 2-4: every property, its data type, where it may appear and its range. */
enum prop_kind { K_BYTE = 1, K_U16, K_U32, K_VBI, K_STR, K_BIN, K_PAIR };
#define PF_BOOL    0x01          /* a Byte that must be 0 or 1 */
#define PF_NONZERO 0x02          /* 0 is a Protocol Error */
#define PF_TOPIC   0x04          /* a topic name (no wildcards, 4.7.1) */
#define PF_MULTI   0x08          /* may be given more than once */
#define PF_MULTI_PUB 0x10        /* may be given more than once in PUBLISH */

struct prop_info {
	const char *name;
	uint8_t kind, flags;
	uint32_t where;          /* B(packet type) | B(WILL) */
	const char *clause;      /* the clause that sets the range */
	size_t off;              /* the member of struct mqtt_props */
};
#define P(id, nm, k, fl, wh, cl, mem) \
	[id] = { nm, k, fl, wh, cl, offsetof(struct mqtt_props, mem) }
#define ACKS (B(MQTT_PUBACK) | B(MQTT_PUBREC) | B(MQTT_PUBREL) | B(MQTT_PUBCOMP))
static const struct prop_info props_tab[MQTT_P_SHARED_SUB_AVAILABLE + 1] = {
	P(MQTT_P_PAYLOAD_FORMAT, "Payload Format Indicator", K_BYTE, PF_BOOL,
	    B(MQTT_PUBLISH) | B(WILL), "3.3.2.3.2", payload_format),
	P(MQTT_P_MESSAGE_EXPIRY, "Message Expiry Interval", K_U32, 0,
	    B(MQTT_PUBLISH) | B(WILL), "3.3.2.3.3", message_expiry),
	P(MQTT_P_CONTENT_TYPE, "Content Type", K_STR, 0,
	    B(MQTT_PUBLISH) | B(WILL), "3.3.2.3.9", content_type),
	P(MQTT_P_RESPONSE_TOPIC, "Response Topic", K_STR, PF_TOPIC,
	    B(MQTT_PUBLISH) | B(WILL), "3.3.2.3.5", response_topic),
	P(MQTT_P_CORRELATION_DATA, "Correlation Data", K_BIN, 0,
	    B(MQTT_PUBLISH) | B(WILL), "3.3.2.3.6", correlation_data),
	P(MQTT_P_SUBSCRIPTION_ID, "Subscription Identifier", K_VBI, PF_NONZERO | PF_MULTI_PUB,
	    B(MQTT_PUBLISH) | B(MQTT_SUBSCRIBE), "3.8.2.1.2", sub_id),
	P(MQTT_P_SESSION_EXPIRY, "Session Expiry Interval", K_U32, 0,
	    B(MQTT_CONNECT) | B(MQTT_CONNACK) | B(MQTT_DISCONNECT), "3.1.2.11.2", session_expiry),
	P(MQTT_P_ASSIGNED_CLIENT_ID, "Assigned Client Identifier", K_STR, 0,
	    B(MQTT_CONNACK), "3.2.2.3.7", assigned_client_id),
	P(MQTT_P_SERVER_KEEPALIVE, "Server Keep Alive", K_U16, 0,
	    B(MQTT_CONNACK), "3.2.2.3.14", server_keepalive),
	P(MQTT_P_AUTH_METHOD, "Authentication Method", K_STR, 0,
	    B(MQTT_CONNECT) | B(MQTT_CONNACK) | B(MQTT_AUTH), "3.1.2.11.9", auth_method),
	P(MQTT_P_AUTH_DATA, "Authentication Data", K_BIN, 0,
	    B(MQTT_CONNECT) | B(MQTT_CONNACK) | B(MQTT_AUTH), "3.1.2.11.10", auth_data),
	P(MQTT_P_REQUEST_PROBLEM_INFO, "Request Problem Information", K_BYTE, PF_BOOL,
	    B(MQTT_CONNECT), "3.1.2.11.7", request_problem_info),
	P(MQTT_P_WILL_DELAY, "Will Delay Interval", K_U32, 0, B(WILL), "3.1.3.2.2", will_delay),
	P(MQTT_P_REQUEST_RESPONSE_INFO, "Request Response Information", K_BYTE, PF_BOOL,
	    B(MQTT_CONNECT), "3.1.2.11.6", request_response_info),
	P(MQTT_P_RESPONSE_INFO, "Response Information", K_STR, 0,
	    B(MQTT_CONNACK), "3.2.2.3.15", response_info),
	P(MQTT_P_SERVER_REFERENCE, "Server Reference", K_STR, 0,
	    B(MQTT_CONNACK) | B(MQTT_DISCONNECT), "3.2.2.3.16", server_reference),
	P(MQTT_P_REASON_STRING, "Reason String", K_STR, 0,
	    B(MQTT_CONNACK) | ACKS | B(MQTT_SUBACK) | B(MQTT_UNSUBACK) | B(MQTT_DISCONNECT) |
	    B(MQTT_AUTH), "3.2.2.3.9", reason_string),
	P(MQTT_P_RECEIVE_MAXIMUM, "Receive Maximum", K_U16, PF_NONZERO,
	    B(MQTT_CONNECT) | B(MQTT_CONNACK), "3.1.2.11.3", receive_maximum),
	P(MQTT_P_TOPIC_ALIAS_MAXIMUM, "Topic Alias Maximum", K_U16, 0,
	    B(MQTT_CONNECT) | B(MQTT_CONNACK), "3.1.2.11.5", topic_alias_maximum),
	P(MQTT_P_TOPIC_ALIAS, "Topic Alias", K_U16, PF_NONZERO, B(MQTT_PUBLISH), "3.3.2.3.4",
	    topic_alias),
	P(MQTT_P_MAXIMUM_QOS, "Maximum QoS", K_BYTE, PF_BOOL, B(MQTT_CONNACK), "3.2.2.3.4",
	    maximum_qos),
	P(MQTT_P_RETAIN_AVAILABLE, "Retain Available", K_BYTE, PF_BOOL, B(MQTT_CONNACK),
	    "3.2.2.3.5", retain_available),
	P(MQTT_P_USER_PROPERTY, "User Property", K_PAIR, PF_MULTI,
	    B(MQTT_CONNECT) | B(MQTT_CONNACK) | B(MQTT_PUBLISH) | B(WILL) | ACKS |
	    B(MQTT_SUBSCRIBE) | B(MQTT_SUBACK) | B(MQTT_UNSUBSCRIBE) | B(MQTT_UNSUBACK) |
	    B(MQTT_DISCONNECT) | B(MQTT_AUTH), "3.1.2.11.8", user),
	P(MQTT_P_MAXIMUM_PACKET_SIZE, "Maximum Packet Size", K_U32, PF_NONZERO,
	    B(MQTT_CONNECT) | B(MQTT_CONNACK), "3.1.2.11.4", maximum_packet_size),
	P(MQTT_P_WILDCARD_SUB_AVAILABLE, "Wildcard Subscription Available", K_BYTE, PF_BOOL,
	    B(MQTT_CONNACK), "3.2.2.3.11", wildcard_sub_available),
	P(MQTT_P_SUB_ID_AVAILABLE, "Subscription Identifier Available", K_BYTE, PF_BOOL,
	    B(MQTT_CONNACK), "3.2.2.3.12", sub_id_available),
	P(MQTT_P_SHARED_SUB_AVAILABLE, "Shared Subscription Available", K_BYTE, PF_BOOL,
	    B(MQTT_CONNACK), "3.2.2.3.13", shared_sub_available),
};
#define N_PROPS (int)(sizeof(props_tab) / sizeof(props_tab[0]))

/* 2.4, table 2-6: the v5 reason codes and the packets that may carry each. */
static const struct {
	uint8_t code;
	uint32_t where;
	const char *name;
} reasons[] = {
	{ 0x00, B(MQTT_CONNACK) | ACKS | B(MQTT_UNSUBACK) | B(MQTT_AUTH), "Success" },
	{ 0x00, B(MQTT_DISCONNECT), "Normal disconnection" },
	{ 0x00, B(MQTT_SUBACK), "Granted QoS 0" },
	{ 0x01, B(MQTT_SUBACK), "Granted QoS 1" },
	{ 0x02, B(MQTT_SUBACK), "Granted QoS 2" },
	{ 0x04, B(MQTT_DISCONNECT), "Disconnect with Will Message" },
	{ 0x10, B(MQTT_PUBACK) | B(MQTT_PUBREC), "No matching subscribers" },
	{ 0x11, B(MQTT_UNSUBACK), "No subscription existed" },
	{ 0x18, B(MQTT_AUTH), "Continue authentication" },
	{ 0x19, B(MQTT_AUTH), "Re-authenticate" },
	{ 0x80, B(MQTT_CONNACK) | B(MQTT_PUBACK) | B(MQTT_PUBREC) | B(MQTT_SUBACK) |
	    B(MQTT_UNSUBACK) | B(MQTT_DISCONNECT), "Unspecified error" },
	{ 0x81, B(MQTT_CONNACK) | B(MQTT_DISCONNECT), "Malformed Packet" },
	{ 0x82, B(MQTT_CONNACK) | B(MQTT_DISCONNECT), "Protocol Error" },
	{ 0x83, B(MQTT_CONNACK) | B(MQTT_PUBACK) | B(MQTT_PUBREC) | B(MQTT_SUBACK) |
	    B(MQTT_UNSUBACK) | B(MQTT_DISCONNECT), "Implementation specific error" },
	{ 0x84, B(MQTT_CONNACK), "Unsupported Protocol Version" },
	{ 0x85, B(MQTT_CONNACK), "Client Identifier not valid" },
	{ 0x86, B(MQTT_CONNACK), "Bad User Name or Password" },
	{ 0x87, B(MQTT_CONNACK) | B(MQTT_PUBACK) | B(MQTT_PUBREC) | B(MQTT_SUBACK) |
	    B(MQTT_UNSUBACK) | B(MQTT_DISCONNECT), "Not authorized" },
	{ 0x88, B(MQTT_CONNACK), "Server unavailable" },
	{ 0x89, B(MQTT_CONNACK) | B(MQTT_DISCONNECT), "Server busy" },
	{ 0x8A, B(MQTT_CONNACK), "Banned" },
	{ 0x8B, B(MQTT_DISCONNECT), "Server shutting down" },
	{ 0x8C, B(MQTT_CONNACK) | B(MQTT_DISCONNECT), "Bad authentication method" },
	{ 0x8D, B(MQTT_DISCONNECT), "Keep Alive timeout" },
	{ 0x8E, B(MQTT_DISCONNECT), "Session taken over" },
	{ 0x8F, B(MQTT_SUBACK) | B(MQTT_UNSUBACK) | B(MQTT_DISCONNECT), "Topic Filter invalid" },
	{ 0x90, B(MQTT_CONNACK) | B(MQTT_PUBACK) | B(MQTT_PUBREC) | B(MQTT_DISCONNECT),
	    "Topic Name invalid" },
	{ 0x91, B(MQTT_PUBACK) | B(MQTT_PUBREC) | B(MQTT_SUBACK) | B(MQTT_UNSUBACK),
	    "Packet Identifier in use" },
	{ 0x92, B(MQTT_PUBREL) | B(MQTT_PUBCOMP), "Packet Identifier not found" },
	{ 0x93, B(MQTT_DISCONNECT), "Receive Maximum exceeded" },
	{ 0x94, B(MQTT_DISCONNECT), "Topic Alias invalid" },
	{ 0x95, B(MQTT_CONNACK) | B(MQTT_DISCONNECT), "Packet too large" },
	{ 0x96, B(MQTT_DISCONNECT), "Message rate too high" },
	{ 0x97, B(MQTT_CONNACK) | B(MQTT_PUBACK) | B(MQTT_PUBREC) | B(MQTT_SUBACK) |
	    B(MQTT_DISCONNECT), "Quota exceeded" },
	{ 0x98, B(MQTT_DISCONNECT), "Administrative action" },
	{ 0x99, B(MQTT_CONNACK) | B(MQTT_PUBACK) | B(MQTT_PUBREC) | B(MQTT_DISCONNECT),
	    "Payload format invalid" },
	{ 0x9A, B(MQTT_CONNACK) | B(MQTT_DISCONNECT), "Retain not supported" },
	{ 0x9B, B(MQTT_CONNACK) | B(MQTT_DISCONNECT), "QoS not supported" },
	{ 0x9C, B(MQTT_CONNACK) | B(MQTT_DISCONNECT), "Use another server" },
	{ 0x9D, B(MQTT_CONNACK) | B(MQTT_DISCONNECT), "Server moved" },
	{ 0x9E, B(MQTT_SUBACK) | B(MQTT_DISCONNECT), "Shared Subscriptions not supported" },
	{ 0x9F, B(MQTT_CONNACK) | B(MQTT_DISCONNECT), "Connection rate exceeded" },
	{ 0xA0, B(MQTT_DISCONNECT), "Maximum connect time" },
	{ 0xA1, B(MQTT_SUBACK) | B(MQTT_DISCONNECT), "Subscription Identifiers not supported" },
	{ 0xA2, B(MQTT_SUBACK) | B(MQTT_DISCONNECT), "Wildcard Subscriptions not supported" },
};

/* 3.1.1 3.2.2.3: the CONNACK return codes. */
static const char *const connack311[] = {
	"Connection Accepted", "Connection Refused, unacceptable protocol version",
	"Connection Refused, identifier rejected", "Connection Refused, Server unavailable",
	"Connection Refused, bad user name or password", "Connection Refused, not authorized",
};

const char *
mqtt_type_name(enum mqtt_type t)
{
	return (unsigned)t < 16 && t != 0 ? mqtt_types[t].name : "reserved";
}

/* The v5 name of code in packet type t, NULL when t may not carry it (table 2-6). */
static const char *
reason_in(enum mqtt_type t, uint8_t code)
{
	for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
		if (reasons[i].code == code && (reasons[i].where & B(t)))
			return reasons[i].name;
	return NULL;
}

/* 3.1.1 3.9.3: SUBACK return codes. */
static bool
suback311_ok(uint8_t c)
{
	return c <= 2 || c == 0x80;
}

const char *
mqtt_reason_name(enum mqtt_version v, enum mqtt_type t, uint8_t code)
{
	const char *n;

	if (v == MQTT_V311 && t == MQTT_CONNACK)
		return code < 6 ? connack311[code] : "reserved";
	if (v == MQTT_V311 && t == MQTT_SUBACK)
		return code == 0x80 ? "Failure" : code == 0 ? "Success - Maximum QoS 0" :
		    code == 1 ? "Success - Maximum QoS 1" : code == 2 ? "Success - Maximum QoS 2" :
		    "reserved";
	if ((unsigned)t < 16 && (n = reason_in(t, code)) != NULL)
		return n;
	for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
		if (reasons[i].code == code)
			return reasons[i].name;
	return "reserved";
}

/* ---- the rules of 1.5.4 and 4.7 ---- */

/* 1.5.4 (and RFC 3629 section 4): 0 or -1 with why. */
static int
utf8_why(const uint8_t *s, size_t len, char *why, size_t wlen)
{
	if (s == NULL && len > 0) {
		codec_err(why, wlen, "a length of %zu but no bytes", len);
		return -1;
	}
	for (size_t i = 0; i < len;) {
		uint8_t c = s[i];
		uint32_t cp;
		size_t k;

		if (c < 0x80) {
			if (c == 0) {
				codec_err(why, wlen, "U+0000 at byte %zu (1.5.4)", i);
				return -1;
			}
			i++;
			continue;
		}
		if (c == 0xC0 || c == 0xC1) {
			codec_err(why, wlen, "overlong UTF-8 sequence at byte %zu (1.5.4)", i);
			return -1;
		}
		if (c >= 0xC2 && c <= 0xDF)
			k = 1, cp = c & 0x1Fu;
		else if ((c & 0xF0) == 0xE0)
			k = 2, cp = c & 0x0Fu;
		else if (c >= 0xF0 && c <= 0xF4)
			k = 3, cp = c & 0x07u;
		else {
			codec_err(why, wlen, "byte 0x%02X at byte %zu cannot start a UTF-8 character (1.5.4)",
			    c, i);
			return -1;
		}
		if (len - i - 1 < k) {
			codec_err(why, wlen, "UTF-8 sequence truncated at byte %zu (1.5.4)", i);
			return -1;
		}
		for (size_t j = 1; j <= k; j++) {
			if ((s[i + j] & 0xC0) != 0x80) {
				codec_err(why, wlen, "byte %zu is not a UTF-8 continuation byte (1.5.4)", i + j);
				return -1;
			}
			cp = cp << 6 | (s[i + j] & 0x3Fu);
		}
		if ((k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000)) {
			codec_err(why, wlen, "overlong UTF-8 sequence at byte %zu (1.5.4)", i);
			return -1;
		}
		if (cp >= 0xD800 && cp <= 0xDFFF) {
			codec_err(why, wlen, "surrogate U+%04X at byte %zu (1.5.4)", (unsigned)cp, i);
			return -1;
		}
		if (cp > 0x10FFFF) {
			codec_err(why, wlen, "code point above U+10FFFF at byte %zu (1.5.4)", i);
			return -1;
		}
		i += k + 1;
	}
	return 0;
}

int
mqtt_check_utf8(const char *s, size_t len, char *err, size_t errlen)
{
	if (len > 65535) {
		codec_err(err, errlen, "string of %zu bytes, at most 65535 (1.5.4)", len);
		return -1;
	}
	return utf8_why((const uint8_t *)s, len, err, errlen);
}

/* 4.7.1, 4.7.3: what names the string ("topic name", "will topic"). */
static int
topic_name_why(const char *s, size_t len, const char *what, char *why, size_t wlen)
{
	char u[128];

	if (len == 0) {
		codec_err(why, wlen, "%s is empty (4.7.3)", what);
		return -1;
	}
	if (mqtt_check_utf8(s, len, u, sizeof(u)) < 0) {
		codec_err(why, wlen, "%s: %s", what, u);
		return -1;
	}
	for (size_t i = 0; i < len; i++)
		if (s[i] == '+' || s[i] == '#') {
			codec_err(why, wlen, "%s contains '%c' (4.7.1)", what, s[i]);
			return -1;
		}
	return 0;
}

int
mqtt_check_topic_name(const char *s, size_t len, char *err, size_t errlen)
{
	return topic_name_why(s, len, "topic name", err, errlen);
}

int
mqtt_check_topic_filter(const char *s, size_t len, char *err, size_t errlen)
{
	char u[128];

	if (len == 0) {
		codec_err(err, errlen, "topic filter is empty (4.7.3)");
		return -1;
	}
	if (mqtt_check_utf8(s, len, u, sizeof(u)) < 0) {
		codec_err(err, errlen, "topic filter: %s", u);
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '#' && (i + 1 != len || (i > 0 && s[i - 1] != '/'))) {
			codec_err(err, errlen, "topic filter: '#' at byte %zu is not alone in the last level "
			    "(4.7.1.2)", i);
			return -1;
		}
		if (s[i] == '+' && ((i > 0 && s[i - 1] != '/') || (i + 1 < len && s[i + 1] != '/'))) {
			codec_err(err, errlen, "topic filter: '+' at byte %zu is not a whole level (4.7.1.3)", i);
			return -1;
		}
	}
	return 0;
}

/* v5 4.8.2: "$share/ShareName/filter": ShareName non-empty without '+', '#' ('/' ends
 * it), then a filter. *shared tells whether it is one (a 3.1.1 filter is never shared). */
static int
shared_why(const char *s, size_t len, bool *shared, char *why, size_t wlen)
{
	size_t i;

	*shared = len >= 7 && memcmp(s, "$share/", 7) == 0;
	if (!*shared)
		return 0;
	for (i = 7; i < len && s[i] != '/'; i++)
		if (s[i] == '+' || s[i] == '#') {
			codec_err(why, wlen, "shared subscription: ShareName contains '%c' (4.8.2)", s[i]);
			return -1;
		}
	if (i == 7 || i + 1 >= len) {
		codec_err(why, wlen, "shared subscription: %s (4.8.2)",
		    i == 7 ? "empty ShareName" : "no topic filter after the ShareName");
		return -1;
	}
	return 0;
}

bool
mqtt_topic_match(const char *f, const char *t, size_t len)
{
	size_t i = 0;

	/* 4.7.2: wildcards at the start do not reach topics beginning with '$' */
	if (len > 0 && t[0] == '$' && (f[0] == '+' || f[0] == '#'))
		return false;
	for (;;) {
		if (f[0] == '#')
			return true;
		if (f[0] == '+') {
			while (i < len && t[i] != '/')
				i++;
			f++;
		} else {
			for (; *f != '\0' && *f != '/'; f++, i++)
				if (i >= len || t[i] != *f)
					return false;
		}
		if (*f == '\0')
			return i == len;
		if (i == len) /* "a/#" matches "a" too (4.7.1.2) */
			return strcmp(f, "/#") == 0;
		if (t[i] != '/')
			return false;
		f++;
		i++;
	}
}

/* ---- reading ---- */

/* The frame being decoded: bytes [off, end) are left. */
struct rd {
	const uint8_t *b;
	size_t off, end;
	enum mqtt_version v;
	const char *pkt;
	char *err;
	size_t errlen;
};

/* err = "PKT: message"; returns -1. */
static int __attribute__((format(printf, 4, 5)))
fail(char *err, size_t errlen, const char *pkt, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	codec_err(err, errlen, "%s: %s", pkt, msg);
	return -1;
}
#define RFAIL(r, ...) fail((r)->err, (r)->errlen, (r)->pkt, __VA_ARGS__)

static int
rd_need(struct rd *r, size_t n, const char *what)
{
	if (r->end - r->off < n)
		return RFAIL(r, "%s truncated: %zu bytes needed, %zu left (remaining length, 2.1.4)",
		    what, n, r->end - r->off);
	return 0;
}

static int
rd_u8(struct rd *r, const char *what, uint8_t *v)
{
	if (rd_need(r, 1, what) < 0)
		return -1;
	*v = r->b[r->off++];
	return 0;
}

static int
rd_u16(struct rd *r, const char *what, uint16_t *v)
{
	if (rd_need(r, 2, what) < 0)
		return -1;
	*v = get_be16(r->b + r->off);
	r->off += 2;
	return 0;
}

static int
rd_u32(struct rd *r, const char *what, uint32_t *v)
{
	uint16_t hi, lo;

	if (rd_need(r, 4, what) < 0 || rd_u16(r, what, &hi) < 0 || rd_u16(r, what, &lo) < 0)
		return -1;
	*v = (uint32_t)hi << 16 | lo;
	return 0;
}

/* 1.5.5: at most four bytes (a non-minimal encoding is accepted). */
static int
rd_vbi(struct rd *r, const char *what, uint32_t *v)
{
	*v = 0;
	for (int i = 0; i < 4; i++) {
		if (rd_need(r, 1, what) < 0)
			return -1;
		uint8_t c = r->b[r->off++];

		*v |= (uint32_t)(c & 0x7F) << (7 * i);
		if (!(c & 0x80))
			return 0;
	}
	return RFAIL(r, "%s: Variable Byte Integer longer than 4 bytes (1.5.5)", what);
}

/* 1.5.6 Binary Data (also the bytes of a 1.5.4 string). */
static int
rd_bin(struct rd *r, const char *what, struct mqtt_bin *b)
{
	uint16_t n;

	if (rd_u16(r, what, &n) < 0 || rd_need(r, n, what) < 0)
		return -1;
	b->p = r->b + r->off;
	b->len = n;
	r->off += n;
	return 0;
}

/* 1.5.4 UTF-8 Encoded String. */
static int
rd_str(struct rd *r, const char *what, struct mqtt_str *s)
{
	struct mqtt_bin b;
	char why[128];

	if (rd_bin(r, what, &b) < 0)
		return -1;
	if (utf8_why(b.p, b.len, why, sizeof(why)) < 0)
		return RFAIL(r, "%s: %s", what, why);
	s->p = (const char *)b.p;
	s->len = b.len;
	return 0;
}

/* 2.2.1: a non-zero packet identifier. */
static int
rd_id(struct rd *r, uint16_t *id)
{
	if (rd_u16(r, "packet identifier", id) < 0)
		return -1;
	if (*id == 0)
		return RFAIL(r, "packet identifier 0 (2.2.1)");
	return 0;
}

/* The range of a property's number (table 2-4 and the clause of each). */
static int
prop_range(const struct prop_info *pi, int id, uint32_t x, char *why, size_t wlen)
{
	if ((pi->flags & PF_BOOL) && x > 1) {
		codec_err(why, wlen, "%s (0x%02X) is %u, not 0 or 1 (%s)", pi->name, id, (unsigned)x,
		    pi->clause);
		return -1;
	}
	if ((pi->flags & PF_NONZERO) && x == 0) {
		codec_err(why, wlen, "%s (0x%02X) is 0 (%s)", pi->name, id, pi->clause);
		return -1;
	}
	return 0;
}

/* 2.2.2: the property length, then the properties of packet type `where` (or WILL). */
static int
props_get(struct rd *r, struct mqtt_props *pr, unsigned where)
{
	const char *in = where == WILL ? "the will properties" : r->pkt;
	size_t end = r->end;
	uint32_t len, id, x;
	char why[192];

	if (rd_vbi(r, "property length", &len) < 0)
		return -1;
	if (len > r->end - r->off)
		return RFAIL(r, "property length %u exceeds the %zu bytes left (2.2.2.1)", (unsigned)len,
		    r->end - r->off);
	r->end = r->off + len;
	while (r->off < r->end) {
		const struct prop_info *pi;
		char *m;

		if (rd_vbi(r, "property identifier", &id) < 0)
			return -1;
		pi = id < (uint32_t)N_PROPS ? &props_tab[id] : NULL;
		if (pi == NULL || pi->name == NULL)
			return RFAIL(r, "unknown property identifier 0x%02X (2.2.2.2)", (unsigned)id);
		if (!(pi->where & B(where)))
			return RFAIL(r, "%s (0x%02X) is not allowed in %s (2.2.2.2, table 2-4)", pi->name,
			    (unsigned)id, in);
		if (MQTT_PROP_HAS(pr, id) && !(pi->flags & PF_MULTI) &&
		    !((pi->flags & PF_MULTI_PUB) && where == MQTT_PUBLISH))
			return RFAIL(r, "%s (0x%02X) given twice (%s)", pi->name, (unsigned)id, pi->clause);
		MQTT_PROP_SET(pr, id);
		m = (char *)pr + pi->off;
		switch (pi->kind) {
		case K_BYTE: {
			uint8_t b;

			if (rd_u8(r, pi->name, &b) < 0)
				return -1;
			x = b;
			*(uint8_t *)m = b;
			break;
		}
		case K_U16: {
			uint16_t h;

			if (rd_u16(r, pi->name, &h) < 0)
				return -1;
			x = h;
			memcpy(m, &h, sizeof(h));
			break;
		}
		case K_U32:
			if (rd_u32(r, pi->name, &x) < 0)
				return -1;
			memcpy(m, &x, sizeof(x));
			break;
		case K_VBI: /* the Subscription Identifier */
			if (rd_vbi(r, pi->name, &x) < 0)
				return -1;
			if (pr->n_sub_id < MQTT_MAX_SUB_IDS)
				pr->sub_id[pr->n_sub_id++] = x;
			break;
		case K_STR:
			if (rd_str(r, pi->name, (struct mqtt_str *)(void *)m) < 0)
				return -1;
			x = 1;
			if ((pi->flags & PF_TOPIC) && topic_name_why(((struct mqtt_str *)(void *)m)->p,
			    ((struct mqtt_str *)(void *)m)->len, pi->name, why, sizeof(why)) < 0)
				return RFAIL(r, "%s", why);
			break;
		case K_BIN:
			if (rd_bin(r, pi->name, (struct mqtt_bin *)(void *)m) < 0)
				return -1;
			x = 1;
			break;
		default: { /* K_PAIR: User Property */
			struct mqtt_user_prop u;

			if (rd_str(r, "User Property name", &u.key) < 0 ||
			    rd_str(r, "User Property value", &u.val) < 0)
				return -1;
			if (pr->n_user < MQTT_MAX_USER_PROPS)
				pr->user[pr->n_user++] = u;
			pr->n_user_total++;
			x = 1;
			break;
		}
		}
		if (prop_range(pi, (int)id, x, why, sizeof(why)) < 0)
			return RFAIL(r, "%s", why);
	}
	if (MQTT_PROP_HAS(pr, MQTT_P_AUTH_DATA) && !MQTT_PROP_HAS(pr, MQTT_P_AUTH_METHOD))
		return RFAIL(r, "Authentication Data without Authentication Method (3.1.2.11.10)");
	r->end = end;
	return 0;
}

/* 2.4: is code allowed in this packet? */
static int
rd_reason(struct rd *r, enum mqtt_type t, uint8_t *code)
{
	if (rd_u8(r, "reason code", code) < 0)
		return -1;
	if (reason_in(t, *code) == NULL)
		return RFAIL(r, "reason code 0x%02X is not allowed in %s (2.4, table 2-6)", *code,
		    mqtt_types[t].name);
	return 0;
}

/* A PUBLISH or will payload with Payload Format Indicator 1 (3.3.2.3.2, 3.1.3.2.3). */
static int
payload_utf8_why(const struct mqtt_props *pr, const struct mqtt_bin *pl, const char *what,
    char *why, size_t wlen)
{
	char u[128];

	if (!MQTT_PROP_HAS(pr, MQTT_P_PAYLOAD_FORMAT) || pr->payload_format != 1)
		return 0;
	if (utf8_why(pl->p, pl->len, u, sizeof(u)) < 0) {
		codec_err(why, wlen, "%s is not UTF-8 though its Payload Format Indicator is 1 "
		    "(3.3.2.3.2): %s", what, u);
		return -1;
	}
	return 0;
}

/* 3.8.3.1: subscription options (v5: 3.8.3-4 No Local on a shared subscription). */
static int
sub_options_why(enum mqtt_version v, uint8_t o, bool shared, char *why, size_t wlen)
{
	if ((o & (v == MQTT_V311 ? 0xFC : 0xC0)) != 0)
		codec_err(why, wlen, "reserved bits set in subscription options 0x%02X (3.8.3.1)", o);
	else if ((o & 3) == 3)
		codec_err(why, wlen, "subscription QoS 3 (3.8.3.1)");
	else if ((o >> 4 & 3) == 3)
		codec_err(why, wlen, "Retain Handling 3 (3.8.3.1)");
	else if (shared && (o & MQTT_SUB_NO_LOCAL))
		codec_err(why, wlen, "No Local on a shared subscription (3.8.3.1, 4.8.2)");
	else
		return 0;
	return -1;
}

/* A topic filter of SUBSCRIBE or UNSUBSCRIBE: 4.7 and, in v5, 4.8.2. */
static int
filter_why(enum mqtt_version v, const char *s, size_t len, bool *shared, char *why, size_t wlen)
{
	*shared = false;
	if (mqtt_check_topic_filter(s, len, why, wlen) < 0)
		return -1;
	return v == MQTT_V5 ? shared_why(s, len, shared, why, wlen) : 0;
}

static int
dec_connect(struct rd *r, struct mqtt_packet *p)
{
	struct mqtt_connect *c = &p->connect;
	struct mqtt_str name;
	uint8_t level, fl;
	char why[256];

	if (rd_str(r, "protocol name", &name) < 0)
		return -1;
	if (name.len != 4 || memcmp(name.p, "MQTT", 4) != 0)
		return RFAIL(r, "protocol name is not \"MQTT\" (3.1.2.1)");
	if (rd_u8(r, "protocol level", &level) < 0)
		return -1;
	if (level != r->v)
		return RFAIL(r, "protocol level %u, expected %u (3.1.2.2)", level, r->v);
	if (rd_u8(r, "connect flags", &fl) < 0)
		return -1;
	if (fl & 0x01)
		return RFAIL(r, "reserved connect flag (bit 0) is set (3.1.2.3)");
	c->clean_start = fl & 0x02;
	c->will = fl & 0x04;
	c->will_qos = fl >> 3 & 3;
	c->will_retain = fl & 0x20;
	c->has_password = fl & 0x40;
	c->has_username = fl & 0x80;
	if (c->will_qos == 3)
		return RFAIL(r, "will QoS 3 (3.1.2.6)");
	if (!c->will && (c->will_qos != 0 || c->will_retain))
		return RFAIL(r, "will QoS or will retain set without the will flag (3.1.2.6, 3.1.2.7)");
	if (r->v == MQTT_V311 && c->has_password && !c->has_username)
		return RFAIL(r, "password flag without the user name flag (3.1.1 3.1.2.9)");
	if (rd_u16(r, "keep alive", &c->keepalive) < 0)
		return -1;
	if (r->v == MQTT_V5 && props_get(r, &p->props, MQTT_CONNECT) < 0)
		return -1;
	if (rd_str(r, "client identifier", &c->client_id) < 0)
		return -1;
	if (c->will) {
		if (r->v == MQTT_V5 && props_get(r, &c->will_props, WILL) < 0)
			return -1;
		if (rd_str(r, "will topic", &c->will_topic) < 0 || rd_bin(r, "will payload",
		    &c->will_payload) < 0)
			return -1;
		if (topic_name_why(c->will_topic.p, c->will_topic.len, "will topic", why, sizeof(why)) < 0 ||
		    payload_utf8_why(&c->will_props, &c->will_payload, "will payload", why, sizeof(why)) < 0)
			return RFAIL(r, "%s", why);
	}
	if (c->has_username && rd_str(r, "user name", &c->username) < 0)
		return -1;
	if (c->has_password && rd_bin(r, "password", &c->password) < 0)
		return -1;
	return 0;
}

static int
dec_connack(struct rd *r, struct mqtt_packet *p)
{
	uint8_t fl;

	if (rd_u8(r, "acknowledge flags", &fl) < 0)
		return -1;
	if (fl & 0xFE)
		return RFAIL(r, "reserved acknowledge flags 0x%02X (3.2.2.1)", fl);
	p->session_present = fl & 1;
	if (r->v == MQTT_V311) {
		if (rd_u8(r, "return code", &p->reason_code) < 0)
			return -1;
		if (p->reason_code > 5)
			return RFAIL(r, "return code %u is reserved (3.1.1 3.2.2.3)", p->reason_code);
	} else if (rd_reason(r, MQTT_CONNACK, &p->reason_code) < 0)
		return -1;
	if (p->reason_code != 0 && p->session_present)
		return RFAIL(r, "Session Present with a refusal (3.2.2.2)");
	return r->v == MQTT_V5 ? props_get(r, &p->props, MQTT_CONNACK) : 0;
}

static int
dec_publish(struct rd *r, struct mqtt_packet *p)
{
	char why[256];

	if (rd_str(r, "topic name", &p->topic) < 0)
		return -1;
	if (p->qos > 0 && rd_id(r, &p->packet_id) < 0)
		return -1;
	if (r->v == MQTT_V5 && props_get(r, &p->props, MQTT_PUBLISH) < 0)
		return -1;
	if (p->topic.len == 0 && MQTT_PROP_HAS(&p->props, MQTT_P_TOPIC_ALIAS))
		; /* 3.3.2.3.4: the alias names the topic */
	else if (topic_name_why(p->topic.p, p->topic.len, "topic name", why, sizeof(why)) < 0)
		return RFAIL(r, "%s", why);
	p->payload.p = r->b + r->off;
	p->payload.len = r->end - r->off;
	r->off = r->end;
	if (payload_utf8_why(&p->props, &p->payload, "payload", why, sizeof(why)) < 0)
		return RFAIL(r, "%s", why);
	return 0;
}

/* PUBACK, PUBREC, PUBREL, PUBCOMP (3.4 .. 3.7): v5 may leave out the reason code (then
 * 0x00) and the properties (3.4.2.1, 3.4.2.2.1). */
static int
dec_ack(struct rd *r, struct mqtt_packet *p)
{
	if (rd_id(r, &p->packet_id) < 0)
		return -1;
	if (r->v == MQTT_V311 || r->off == r->end)
		return 0;
	if (rd_reason(r, p->type, &p->reason_code) < 0)
		return -1;
	return r->off == r->end ? 0 : props_get(r, &p->props, p->type);
}

/* SUBSCRIBE (3.8) and UNSUBSCRIBE (3.10): at least one filter (3.8.3, 3.10.3). */
static int
dec_subscribe(struct rd *r, struct mqtt_packet *p)
{
	bool sub = p->type == MQTT_SUBSCRIBE, shared;
	char why[256];

	if (rd_id(r, &p->packet_id) < 0)
		return -1;
	if (r->v == MQTT_V5 && props_get(r, &p->props, p->type) < 0)
		return -1;
	if (r->off == r->end)
		return RFAIL(r, "no topic filter (%s)", sub ? "3.8.3" : "3.10.3");
	while (r->off < r->end) {
		struct mqtt_sub s = { { NULL, 0 }, 0 };

		if (rd_str(r, "topic filter", &s.filter) < 0)
			return -1;
		if (filter_why(r->v, s.filter.p, s.filter.len, &shared, why, sizeof(why)) < 0)
			return RFAIL(r, "%s", why);
		if (sub && (rd_u8(r, "subscription options", &s.options) < 0))
			return -1;
		if (sub && sub_options_why(r->v, s.options, shared, why, sizeof(why)) < 0)
			return RFAIL(r, "%s", why);
		if (p->n_subs < MQTT_MAX_TOPICS)
			p->subs[p->n_subs++] = s;
		p->n_subs_total++;
	}
	return 0;
}

/* SUBACK (3.9) and v5 UNSUBACK (3.11): one code per filter. */
static int
dec_suback(struct rd *r, struct mqtt_packet *p)
{
	uint8_t c;

	if (rd_id(r, &p->packet_id) < 0)
		return -1;
	if (r->v == MQTT_V311 && p->type == MQTT_UNSUBACK)
		return 0; /* 3.1.1 3.11: a packet identifier alone */
	if (r->v == MQTT_V5 && props_get(r, &p->props, p->type) < 0)
		return -1;
	if (r->off == r->end)
		return RFAIL(r, "no reason code (%s)", p->type == MQTT_SUBACK ? "3.9.3" : "3.11.3");
	while (r->off < r->end) {
		if (r->v == MQTT_V311) {
			if (rd_u8(r, "return code", &c) < 0)
				return -1;
			if (!suback311_ok(c))
				return RFAIL(r, "return code 0x%02X is reserved (3.1.1 3.9.3)", c);
		} else if (rd_reason(r, p->type, &c) < 0)
			return -1;
		if (p->n_codes < MQTT_MAX_TOPICS)
			p->codes[p->n_codes++] = c;
		p->n_codes_total++;
	}
	return 0;
}

/* DISCONNECT (3.14): v5 may leave out the reason code (then 0x00) and the properties. */
static int
dec_disconnect(struct rd *r, struct mqtt_packet *p)
{
	if (r->v == MQTT_V311 || r->off == r->end)
		return 0;
	if (rd_reason(r, MQTT_DISCONNECT, &p->reason_code) < 0)
		return -1;
	return r->off == r->end ? 0 : props_get(r, &p->props, MQTT_DISCONNECT);
}

long
mqtt_frame_len(const uint8_t *buf, size_t len, size_t max, char *err, size_t errlen)
{
	uint32_t rem = 0;
	size_t i, total;

	for (i = 1;; i++) {
		if (i > 4) {
			codec_err(err, errlen, "Remaining Length longer than 4 bytes (1.5.5, 2.1.4)");
			return -1;
		}
		if (i >= len)
			return 0;
		rem |= (uint32_t)(buf[i] & 0x7F) << (7 * (i - 1));
		if (!(buf[i] & 0x80))
			break;
	}
	total = i + 1 + rem;
	if (total > max) {
		codec_err(err, errlen, "%s packet of %zu bytes exceeds the maximum packet size %zu "
		    "(3.1.2.11.4)", mqtt_type_name((enum mqtt_type)(buf[0] >> 4)), total, max);
		return -1;
	}
	return len >= total ? (long)total : 0;
}

static int
decode(const uint8_t *buf, size_t len, enum mqtt_version v, struct mqtt_packet *p,
    char *err, size_t errlen)
{
	struct rd r = { .b = buf, .off = 1, .end = len, .v = v, .pkt = "MQTT", .err = err,
	    .errlen = errlen };
	uint32_t rem;
	unsigned t, fl;
	int rc;

	if (v != MQTT_V311 && v != MQTT_V5)
		return RFAIL(&r, "protocol version %d is not 4 (3.1.1) or 5", (int)v);
	if (len < 2)
		return RFAIL(&r, "frame of %zu bytes is shorter than a fixed header (2.1.1)", len);
	t = buf[0] >> 4;
	fl = buf[0] & 0x0F;
	r.pkt = mqtt_types[t].name;
	if (rd_vbi(&r, "Remaining Length", &rem) < 0)
		return -1;
	if (rem != len - r.off)
		return RFAIL(&r, "Remaining Length %u does not match the %zu bytes after the fixed header "
		    "(2.1.4)", (unsigned)rem, len - r.off);
	if (t == 0 || (t == MQTT_AUTH && v == MQTT_V311))
		return RFAIL(&r, "packet type %u is reserved (2.1.2)", t);
	if (t == MQTT_AUTH)
		return RFAIL(&r, "AUTH is not supported (3.15; komd uses no enhanced authentication)");
	p->type = (enum mqtt_type)t;
	if (t == MQTT_PUBLISH) {
		p->dup = fl & 8;
		p->qos = fl >> 1 & 3;
		p->retain = fl & 1;
		if (p->qos == 3)
			return RFAIL(&r, "QoS 3 (3.3.1.2)");
		if (p->dup && p->qos == 0)
			return RFAIL(&r, "DUP set with QoS 0 (3.3.1.1)");
	} else if (fl != (unsigned)mqtt_types[t].flags)
		return RFAIL(&r, "fixed header flags 0x%X, must be 0x%X (2.1.3)", fl,
		    (unsigned)mqtt_types[t].flags);

	switch (p->type) {
	case MQTT_CONNECT: rc = dec_connect(&r, p); break;
	case MQTT_CONNACK: rc = dec_connack(&r, p); break;
	case MQTT_PUBLISH: rc = dec_publish(&r, p); break;
	case MQTT_PUBACK: case MQTT_PUBREC: case MQTT_PUBREL: case MQTT_PUBCOMP:
		rc = dec_ack(&r, p);
		break;
	case MQTT_SUBSCRIBE: case MQTT_UNSUBSCRIBE: rc = dec_subscribe(&r, p); break;
	case MQTT_SUBACK: case MQTT_UNSUBACK: rc = dec_suback(&r, p); break;
	case MQTT_DISCONNECT: rc = dec_disconnect(&r, p); break;
	default: rc = 0; break; /* PINGREQ, PINGRESP: nothing (3.12, 3.13) */
	}
	if (rc == 0 && r.off != r.end)
		rc = RFAIL(&r, "%zu bytes left over after the packet (Remaining Length %u, 2.1.4)",
		    r.end - r.off, (unsigned)rem);
	return rc;
}

int
mqtt_decode(const uint8_t *buf, size_t len, enum mqtt_version v, struct mqtt_packet *p,
    char *err, size_t errlen)
{
	memset(p, 0, sizeof(*p));
	if (decode(buf, len, v, p, err, errlen) == 0)
		return 0;
	memset(p, 0, sizeof(*p)); /* nothing half-decoded */
	return -1;
}

/* ---- writing ---- */

/* Output: bytes go to b only while they fit in cap (b NULL: counting only); off counts
 * them all. */
struct wr {
	uint8_t *b;
	size_t cap, off;
	enum mqtt_version v;
	const char *pkt;
	char *err;
	size_t errlen;
};
#define WFAIL(w, ...) fail((w)->err, (w)->errlen, (w)->pkt, __VA_ARGS__)

static void
w_put(struct wr *w, const void *s, size_t n)
{
	if (w->b != NULL && n > 0 && w->off <= w->cap && n <= w->cap - w->off)
		memcpy(w->b + w->off, s, n);
	w->off += n;
}

/* An n-byte big-endian integer (1.5.2, 1.5.3). */
static void
w_be(struct wr *w, uint32_t x, int n)
{
	uint8_t b[4];

	for (int i = 0; i < n; i++)
		b[i] = (uint8_t)(x >> 8 * (n - 1 - i));
	w_put(w, b, (size_t)n);
}
#define w_u8(w, x) w_be(w, x, 1)
#define w_u16(w, x) w_be(w, x, 2)
#define w_u32(w, x) w_be(w, x, 4)

/* 1.5.5, minimal; x <= MQTT_MAX_REMAINING (the callers check). */
static void
w_vbi(struct wr *w, uint32_t x)
{
	do {
		uint8_t c = x & 0x7F;

		x >>= 7;
		w_u8(w, (uint8_t)(c | (x ? 0x80 : 0)));
	} while (x);
}

static int
w_bin(struct wr *w, const char *what, const void *p, size_t len)
{
	if (len > 65535)
		return WFAIL(w, "%s of %zu bytes, at most 65535 (1.5.6)", what, len);
	if (len > 0 && p == NULL)
		return WFAIL(w, "%s has a length but no bytes", what);
	w_u16(w, (uint16_t)len);
	w_put(w, p, len);
	return 0;
}

static int
w_str(struct wr *w, const char *what, const struct mqtt_str *s)
{
	char why[128];

	if (s->len <= 65535 && s->p != NULL && utf8_why((const uint8_t *)s->p, s->len, why,
	    sizeof(why)) < 0)
		return WFAIL(w, "%s: %s", what, why);
	return w_bin(w, what, s->p, s->len);
}

static int
w_id(struct wr *w, uint16_t id)
{
	if (id == 0)
		return WFAIL(w, "packet identifier 0 (2.2.1)");
	w_u16(w, id);
	return 0;
}

/* The properties themselves (without their length). */
static int
props_items(struct wr *w, const struct mqtt_props *pr, unsigned where)
{
	const char *in = where == WILL ? "the will properties" : w->pkt;
	char why[192];

	if ((pr->present >> N_PROPS) != 0 || (pr->present & 1) != 0)
		return WFAIL(w, "unknown property identifier set in present (2.2.2.2)");
	if (pr->n_user < 0 || pr->n_user > MQTT_MAX_USER_PROPS || pr->n_sub_id < 0 ||
	    pr->n_sub_id > MQTT_MAX_SUB_IDS)
		return WFAIL(w, "n_user or n_sub_id out of range");
	if (MQTT_PROP_HAS(pr, MQTT_P_AUTH_DATA) && !MQTT_PROP_HAS(pr, MQTT_P_AUTH_METHOD))
		return WFAIL(w, "Authentication Data without Authentication Method (3.1.2.11.10)");
	for (int id = 1; id < N_PROPS; id++) {
		const struct prop_info *pi = &props_tab[id];
		const char *m = (const char *)pr + pi->off;
		int n = 1;
		uint32_t x = 1;

		if (id == MQTT_P_USER_PROPERTY) {
			if (pr->n_user == 0)
				continue;
		} else if (!MQTT_PROP_HAS(pr, id))
			continue;
		if (pi->name == NULL)
			return WFAIL(w, "unknown property identifier 0x%02X set in present (2.2.2.2)", id);
		if (!(pi->where & B(where)))
			return WFAIL(w, "%s (0x%02X) is not allowed in %s (2.2.2.2, table 2-4)", pi->name, id,
			    in);
		if (id == MQTT_P_SUBSCRIPTION_ID && pr->n_sub_id > 1) {
			n = pr->n_sub_id;
			if (where != MQTT_PUBLISH)
				return WFAIL(w, "%s (0x%02X) given twice (%s)", pi->name, id, pi->clause);
		}
		if (id == MQTT_P_USER_PROPERTY)
			n = pr->n_user;
		for (int k = 0; k < n; k++) {
			w_vbi(w, (uint32_t)id);
			switch (pi->kind) {
			case K_BYTE: x = *(const uint8_t *)m; w_u8(w, (uint8_t)x); break;
			case K_U16: x = *(const uint16_t *)(const void *)m; w_u16(w, (uint16_t)x); break;
			case K_U32: x = *(const uint32_t *)(const void *)m; w_u32(w, x); break;
			case K_VBI:
				x = pr->sub_id[k];
				if (x > MQTT_MAX_REMAINING)
					return WFAIL(w, "%s %u exceeds 268435455 (1.5.5)", pi->name, (unsigned)x);
				w_vbi(w, x);
				break;
			case K_STR: {
				const struct mqtt_str *s = (const struct mqtt_str *)(const void *)m;

				if (w_str(w, pi->name, s) < 0)
					return -1;
				if ((pi->flags & PF_TOPIC) && topic_name_why(s->p, s->len, pi->name, why,
				    sizeof(why)) < 0)
					return WFAIL(w, "%s", why);
				break;
			}
			case K_BIN:
				if (w_bin(w, pi->name, ((const struct mqtt_bin *)(const void *)m)->p,
				    ((const struct mqtt_bin *)(const void *)m)->len) < 0)
					return -1;
				break;
			default:
				if (w_str(w, "User Property name", &pr->user[k].key) < 0 ||
				    w_str(w, "User Property value", &pr->user[k].val) < 0)
					return -1;
				break;
			}
			if (prop_range(pi, id, x, why, sizeof(why)) < 0)
				return WFAIL(w, "%s", why);
		}
	}
	return 0;
}

/* 2.2.2: v5 writes the property length and the properties; 3.1.1 has none, so any set
 * is an error. */
static int
props_put(struct wr *w, const struct mqtt_props *pr, unsigned where)
{
	struct wr c = *w;

	if (w->v == MQTT_V311) {
		if (pr->present != 0 || pr->n_user != 0)
			return WFAIL(w, "properties are MQTT 5.0 only (2.2.2)");
		return 0;
	}
	c.b = NULL;
	c.off = 0;
	if (props_items(&c, pr, where) < 0)
		return -1;
	if (c.off > MQTT_MAX_REMAINING)
		return WFAIL(w, "properties of %zu bytes (1.5.5)", c.off);
	w_vbi(w, (uint32_t)c.off);
	return props_items(w, pr, where);
}

/* No property to write: the User Property bit counts by n_user alone (props_items writes
 * n_user pairs whatever the bit says), so a set bit with no pair is no property. */
static bool
props_empty(const struct mqtt_props *pr)
{
	return (pr->present & ~((uint64_t)1 << MQTT_P_USER_PROPERTY)) == 0 && pr->n_user == 0;
}

static int
enc_connect(struct wr *w, const struct mqtt_packet *p)
{
	const struct mqtt_connect *c = &p->connect;
	static const struct mqtt_str mqtt = { "MQTT", 4 };
	char why[256];

	if (c->will_qos > 2)
		return WFAIL(w, "will QoS %u (3.1.2.6)", c->will_qos);
	if (!c->will && (c->will_qos != 0 || c->will_retain || !props_empty(&c->will_props)))
		return WFAIL(w, "will QoS, retain or properties without the will flag (3.1.2.6, 3.1.2.7)");
	if (w->v == MQTT_V311 && c->has_password && !c->has_username)
		return WFAIL(w, "password without user name (3.1.1 3.1.2.9)");
	if (c->will && (topic_name_why(c->will_topic.p, c->will_topic.len, "will topic", why,
	    sizeof(why)) < 0 || payload_utf8_why(&c->will_props, &c->will_payload, "will payload",
	    why, sizeof(why)) < 0))
		return WFAIL(w, "%s", why);
	if (w_str(w, "protocol name", &mqtt) < 0)
		return -1;
	w_u8(w, (uint8_t)w->v);
	w_u8(w, (uint8_t)((c->clean_start ? 0x02 : 0) | (c->will ? 0x04 : 0) | c->will_qos << 3 |
	    (c->will_retain ? 0x20 : 0) | (c->has_password ? 0x40 : 0) | (c->has_username ? 0x80 : 0)));
	w_u16(w, c->keepalive);
	if (props_put(w, &p->props, MQTT_CONNECT) < 0 || w_str(w, "client identifier",
	    &c->client_id) < 0)
		return -1;
	if (c->will && (props_put(w, &c->will_props, WILL) < 0 || w_str(w, "will topic",
	    &c->will_topic) < 0 || w_bin(w, "will payload", c->will_payload.p,
	    c->will_payload.len) < 0))
		return -1;
	if (c->has_username && w_str(w, "user name", &c->username) < 0)
		return -1;
	if (c->has_password && w_bin(w, "password", c->password.p, c->password.len) < 0)
		return -1;
	return 0;
}

static int
enc_reason(struct wr *w, enum mqtt_type t, uint8_t code)
{
	if (reason_in(t, code) == NULL)
		return WFAIL(w, "reason code 0x%02X is not allowed in %s (2.4, table 2-6)", code,
		    mqtt_types[t].name);
	w_u8(w, code);
	return 0;
}

static int
enc_body(struct wr *w, const struct mqtt_packet *p)
{
	bool v5 = w->v == MQTT_V5, shared;
	char why[256];

	switch (p->type) {
	case MQTT_CONNECT:
		return enc_connect(w, p);
	case MQTT_CONNACK:
		if (p->reason_code != 0 && p->session_present)
			return WFAIL(w, "Session Present with a refusal (3.2.2.2)");
		w_u8(w, p->session_present ? 1 : 0);
		if (!v5 && p->reason_code > 5)
			return WFAIL(w, "return code %u is reserved (3.1.1 3.2.2.3)", p->reason_code);
		if (!v5)
			w_u8(w, p->reason_code);
		else if (enc_reason(w, MQTT_CONNACK, p->reason_code) < 0)
			return -1;
		return props_put(w, &p->props, MQTT_CONNACK);
	case MQTT_PUBLISH:
		if (p->qos > 2)
			return WFAIL(w, "QoS %u (3.3.1.2)", p->qos);
		if (p->dup && p->qos == 0)
			return WFAIL(w, "DUP set with QoS 0 (3.3.1.1)");
		if (!(v5 && p->topic.len == 0 && MQTT_PROP_HAS(&p->props, MQTT_P_TOPIC_ALIAS)) &&
		    topic_name_why(p->topic.p, p->topic.len, "topic name", why, sizeof(why)) < 0)
			return WFAIL(w, "%s", why);
		if (payload_utf8_why(&p->props, &p->payload, "payload", why, sizeof(why)) < 0)
			return WFAIL(w, "%s", why);
		if (p->payload.len > MQTT_MAX_REMAINING || (p->payload.len > 0 && p->payload.p == NULL))
			return WFAIL(w, "payload of %zu bytes (2.1.4)", p->payload.len);
		if (w_str(w, "topic name", &p->topic) < 0 || (p->qos > 0 && w_id(w, p->packet_id) < 0) ||
		    props_put(w, &p->props, MQTT_PUBLISH) < 0)
			return -1;
		w_put(w, p->payload.p, p->payload.len);
		return 0;
	case MQTT_PUBACK: case MQTT_PUBREC: case MQTT_PUBREL: case MQTT_PUBCOMP:
		if (w_id(w, p->packet_id) < 0)
			return -1;
		if (!v5 && p->reason_code != 0)
			return WFAIL(w, "reason codes are MQTT 5.0 only (3.4.2.1)");
		if (!v5 && !props_empty(&p->props))
			return WFAIL(w, "properties are MQTT 5.0 only (2.2.2)");
		if (!v5 || (p->reason_code == 0 && props_empty(&p->props)))
			return 0; /* 3.4.2.1: the short form */
		if (enc_reason(w, p->type, p->reason_code) < 0)
			return -1;
		return props_empty(&p->props) ? 0 : props_put(w, &p->props, p->type);
	case MQTT_SUBSCRIBE: case MQTT_UNSUBSCRIBE:
		if (p->n_subs < 1 || p->n_subs > MQTT_MAX_TOPICS)
			return WFAIL(w, "%d topic filters, 1..%d (3.8.3, 3.10.3)", p->n_subs, MQTT_MAX_TOPICS);
		if (w_id(w, p->packet_id) < 0 || props_put(w, &p->props, p->type) < 0)
			return -1;
		for (int i = 0; i < p->n_subs; i++) {
			const struct mqtt_sub *s = &p->subs[i];

			if (filter_why(w->v, s->filter.p, s->filter.len, &shared,
			    why, sizeof(why)) < 0)
				return WFAIL(w, "%s", why);
			if (p->type == MQTT_SUBSCRIBE && sub_options_why(w->v, s->options, shared, why,
			    sizeof(why)) < 0)
				return WFAIL(w, "%s", why);
			if (w_str(w, "topic filter", &s->filter) < 0)
				return -1;
			if (p->type == MQTT_SUBSCRIBE)
				w_u8(w, s->options);
		}
		return 0;
	case MQTT_SUBACK: case MQTT_UNSUBACK:
		if (w_id(w, p->packet_id) < 0)
			return -1;
		if (!v5 && p->type == MQTT_UNSUBACK) {
			if (p->n_codes != 0)
				return WFAIL(w, "reason codes are MQTT 5.0 only (3.11.3)");
			return props_put(w, &p->props, p->type);
		}
		if (p->n_codes < 1 || p->n_codes > MQTT_MAX_TOPICS)
			return WFAIL(w, "%d codes, 1..%d (3.9.3, 3.11.3)", p->n_codes, MQTT_MAX_TOPICS);
		if (props_put(w, &p->props, p->type) < 0)
			return -1;
		for (int i = 0; i < p->n_codes; i++) {
			if (!v5 && !suback311_ok(p->codes[i]))
				return WFAIL(w, "return code 0x%02X is reserved (3.1.1 3.9.3)", p->codes[i]);
			if (!v5)
				w_u8(w, p->codes[i]);
			else if (enc_reason(w, p->type, p->codes[i]) < 0)
				return -1;
		}
		return 0;
	case MQTT_DISCONNECT:
		if (!v5 && p->reason_code != 0)
			return WFAIL(w, "reason codes are MQTT 5.0 only (3.14)");
		if (!v5)
			return props_put(w, &p->props, MQTT_DISCONNECT);
		if (p->reason_code == 0 && props_empty(&p->props))
			return 0; /* 3.14.2.1: the short form */
		if (enc_reason(w, MQTT_DISCONNECT, p->reason_code) < 0)
			return -1;
		return props_empty(&p->props) ? 0 : props_put(w, &p->props, MQTT_DISCONNECT);
	default: /* PINGREQ, PINGRESP */
		if (!props_empty(&p->props))
			return WFAIL(w, "properties in %s (3.12, 3.13)", w->pkt);
		return 0;
	}
}

long
mqtt_encode(const struct mqtt_packet *p, enum mqtt_version v, uint8_t *buf, size_t cap,
    char *err, size_t errlen)
{
	struct wr w = { .v = v, .pkt = mqtt_type_name(p->type), .err = err, .errlen = errlen };
	unsigned t = (unsigned)p->type;
	uint8_t first;
	size_t rem, total;

	if (v != MQTT_V311 && v != MQTT_V5)
		return WFAIL(&w, "protocol version %d is not 4 (3.1.1) or 5", (int)v);
	if (t < MQTT_CONNECT || t > MQTT_DISCONNECT)
		return WFAIL(&w, "cannot encode packet type %u (2.1.2; AUTH is not supported)", t);
	if (enc_body(&w, p) < 0)
		return -1;
	rem = w.off;
	if (rem > MQTT_MAX_REMAINING)
		return WFAIL(&w, "Remaining Length %zu exceeds 268435455 (2.1.4)", rem);
	total = 1 + (rem < 128 ? 1 : rem < 16384 ? 2 : rem < 2097152 ? 3 : 4) + rem;
	if (buf == NULL || total > cap)
		return (long)total;
	first = (uint8_t)(t << 4 | (t == MQTT_PUBLISH ? (p->dup ? 8u : 0u) | (unsigned)p->qos << 1 |
	    (p->retain ? 1u : 0u) : (unsigned)mqtt_types[t].flags));
	w.b = buf;
	w.cap = cap;
	w.off = 0;
	w_u8(&w, first);
	w_vbi(&w, (uint32_t)rem);
	if (enc_body(&w, p) < 0)
		return -1;
	return (long)total;
}

/* ---- traces ---- */

struct out {
	char *b;
	size_t cap, len;
};

static void __attribute__((format(printf, 2, 3)))
out_f(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(o->len < o->cap ? o->b + o->len : NULL, o->len < o->cap ? o->cap - o->len : 0,
	    fmt, ap);
	va_end(ap);
	if (n > 0)
		o->len += (size_t)n;
}

/* A string for a trace: printable ASCII as is, the rest \xHH, at most 64 bytes. */
static void
out_s(struct out *o, const char *s, size_t len)
{
	out_f(o, "\"");
	for (size_t i = 0; i < len && i < 64; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\')
			out_f(o, "%c", c);
		else
			out_f(o, "\\x%02X", c);
	}
	if (len > 64)
		out_f(o, "\"...(%zu B)", len);
	else
		out_f(o, "\"");
}

static void
out_props(struct out *o, const struct mqtt_props *pr, const char *label)
{
	if (props_empty(pr))
		return;
	out_f(o, " %s[", label);
	for (int id = 1, first = 1; id < N_PROPS; id++) {
		const struct prop_info *pi = &props_tab[id];
		const char *m = (const char *)pr + pi->off;

		if (pi->name == NULL || (id == MQTT_P_USER_PROPERTY ? pr->n_user == 0 :
		    !MQTT_PROP_HAS(pr, id)))
			continue;
		out_f(o, "%s%s", first ? "" : ", ", pi->name);
		first = 0;
		switch (pi->kind) {
		case K_BYTE: out_f(o, "=%u", *(const uint8_t *)m); break;
		case K_U16: out_f(o, "=%u", *(const uint16_t *)(const void *)m); break;
		case K_U32: out_f(o, "=%u", (unsigned)*(const uint32_t *)(const void *)m); break;
		case K_VBI:
			for (int k = 0; k < pr->n_sub_id; k++)
				out_f(o, "%c%u", k ? ',' : '=', (unsigned)pr->sub_id[k]);
			break;
		case K_STR:
			out_f(o, "=");
			out_s(o, ((const struct mqtt_str *)(const void *)m)->p,
			    ((const struct mqtt_str *)(const void *)m)->len);
			break;
		case K_BIN: out_f(o, "=%zu B", ((const struct mqtt_bin *)(const void *)m)->len); break;
		default:
			for (int k = 0; k < pr->n_user; k++) {
				out_f(o, " ");
				out_s(o, pr->user[k].key.p, pr->user[k].key.len);
				out_f(o, "=");
				out_s(o, pr->user[k].val.p, pr->user[k].val.len);
			}
			break;
		}
	}
	out_f(o, "]");
}

int
mqtt_describe(const struct mqtt_packet *p, char *buf, size_t len)
{
	struct out o = { buf, len, 0 };
	const struct mqtt_connect *c = &p->connect;
	/* a CONNACK code 1..5 is 3.1.1's; the v5 refusals are >= 0x80 */
	enum mqtt_version v = p->type == MQTT_CONNACK && p->reason_code > 0 &&
	    p->reason_code < 6 ? MQTT_V311 : MQTT_V5;

	if (len > 0)
		buf[0] = '\0';
	out_f(&o, "%s", mqtt_type_name(p->type));
	switch (p->type) {
	case MQTT_CONNECT:
		out_f(&o, " client_id=");
		out_s(&o, c->client_id.p, c->client_id.len);
		out_f(&o, "%s keepalive=%u", c->clean_start ? " clean" : "", c->keepalive);
		if (c->will) {
			out_f(&o, " will=");
			out_s(&o, c->will_topic.p, c->will_topic.len);
			out_f(&o, " will_qos=%u%s will_payload=%zu B", c->will_qos,
			    c->will_retain ? " will_retain" : "", c->will_payload.len);
			out_props(&o, &c->will_props, "will_props");
		}
		if (c->has_username) {
			out_f(&o, " user=");
			out_s(&o, c->username.p, c->username.len);
		}
		if (c->has_password)
			out_f(&o, " password=(%zu B)", c->password.len);
		break;
	case MQTT_CONNACK:
		out_f(&o, " session_present=%d rc=0x%02X (%s)", p->session_present, p->reason_code,
		    mqtt_reason_name(v, MQTT_CONNACK, p->reason_code));
		break;
	case MQTT_PUBLISH:
		out_f(&o, " qos=%u%s%s", p->qos, p->dup ? " dup" : "", p->retain ? " retain" : "");
		if (p->qos > 0)
			out_f(&o, " id=%u", p->packet_id);
		out_f(&o, " topic=");
		out_s(&o, p->topic.p, p->topic.len);
		out_f(&o, " payload=%zu B", p->payload.len);
		break;
	case MQTT_PUBACK: case MQTT_PUBREC: case MQTT_PUBREL: case MQTT_PUBCOMP:
		out_f(&o, " id=%u", p->packet_id);
		if (p->reason_code != 0)
			out_f(&o, " rc=0x%02X (%s)", p->reason_code,
			    mqtt_reason_name(MQTT_V5, p->type, p->reason_code));
		break;
	case MQTT_SUBSCRIBE: case MQTT_UNSUBSCRIBE:
		out_f(&o, " id=%u filters=%d:", p->packet_id, p->n_subs_total);
		for (int i = 0; i < p->n_subs; i++) {
			out_f(&o, " ");
			out_s(&o, p->subs[i].filter.p, p->subs[i].filter.len);
			if (p->type == MQTT_SUBSCRIBE)
				out_f(&o, "/0x%02X", p->subs[i].options);
		}
		break;
	case MQTT_SUBACK: case MQTT_UNSUBACK:
		out_f(&o, " id=%u codes=", p->packet_id);
		for (int i = 0; i < p->n_codes; i++)
			out_f(&o, "%s0x%02X", i ? "," : "", p->codes[i]);
		if (p->n_codes_total > p->n_codes)
			out_f(&o, ",...(%d)", p->n_codes_total);
		break;
	case MQTT_DISCONNECT:
		if (p->reason_code != 0)
			out_f(&o, " rc=0x%02X (%s)", p->reason_code,
			    mqtt_reason_name(MQTT_V5, MQTT_DISCONNECT, p->reason_code));
		break;
	default:
		break;
	}
	out_props(&o, &p->props, "props");
	return (int)(o.len < len ? o.len : len > 0 ? len - 1 : 0);
}
