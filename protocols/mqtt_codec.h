/* mqtt_codec.h: MQTT control packets, pure (bytes <-> packets; no I/O, no libevent).
 * Implements MQTT Version 3.1.1 (OASIS Standard, 29 October 2014, clauses 1.5, 2 and 3)
 * and MQTT Version 5.0 (OASIS Standard, 7 March 2019, clauses 1.5, 2, 3 and 4.7): every
 * packet a client sends or receives (CONNECT to DISCONNECT; not AUTH), every v5 property
 * (2.2.2.2) and reason code (2.4), the variable byte integer (1.5.5), UTF-8 strings
 * (1.5.4) and the topic name and filter rules (4.7).
 *
 * Decoding gives views into the caller's buffer (struct mqtt_str, mqtt_bin): they live as
 * long as the frame does. Encoding takes the same views. Nothing here allocates. */
#ifndef KOMD_MQTT_CODEC_H
#define KOMD_MQTT_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Protocol Level of CONNECT (3.1.2.2). */
enum mqtt_version { MQTT_V311 = 4, MQTT_V5 = 5 };

/* Control packet types (2.1.2). */
enum mqtt_type {
	MQTT_CONNECT = 1, MQTT_CONNACK, MQTT_PUBLISH, MQTT_PUBACK, MQTT_PUBREC, MQTT_PUBREL,
	MQTT_PUBCOMP, MQTT_SUBSCRIBE, MQTT_SUBACK, MQTT_UNSUBSCRIBE, MQTT_UNSUBACK,
	MQTT_PINGREQ, MQTT_PINGRESP, MQTT_DISCONNECT, MQTT_AUTH,
};

/* The largest packet the protocol can carry: fixed header (1 + 4) + 268,435,455 (1.5.5). */
#define MQTT_MAX_REMAINING 268435455u
/* Limits of the decoded form (a packet with more is decoded with the first ones and the
 * count of all in n_*_total, so nothing is refused for this reason alone). */
#define MQTT_MAX_TOPICS 32        /* SUBSCRIBE/UNSUBSCRIBE entries, SUBACK/UNSUBACK codes */
#define MQTT_MAX_USER_PROPS 16    /* User Property (0x26) pairs */
#define MQTT_MAX_SUB_IDS 8        /* Subscription Identifier (0x0B) in one PUBLISH */

/* A byte string inside a frame (not NUL-terminated); p NULL with len 0: absent. */
struct mqtt_str { const char *p; size_t len; };
struct mqtt_bin { const uint8_t *p; size_t len; };
struct mqtt_user_prop { struct mqtt_str key, val; };

/* v5 property identifiers (2.2.2.2, table 2-4). */
enum mqtt_prop_id {
	MQTT_P_PAYLOAD_FORMAT = 0x01, MQTT_P_MESSAGE_EXPIRY = 0x02, MQTT_P_CONTENT_TYPE = 0x03,
	MQTT_P_RESPONSE_TOPIC = 0x08, MQTT_P_CORRELATION_DATA = 0x09, MQTT_P_SUBSCRIPTION_ID = 0x0B,
	MQTT_P_SESSION_EXPIRY = 0x11, MQTT_P_ASSIGNED_CLIENT_ID = 0x12, MQTT_P_SERVER_KEEPALIVE = 0x13,
	MQTT_P_AUTH_METHOD = 0x15, MQTT_P_AUTH_DATA = 0x16, MQTT_P_REQUEST_PROBLEM_INFO = 0x17,
	MQTT_P_WILL_DELAY = 0x18, MQTT_P_REQUEST_RESPONSE_INFO = 0x19, MQTT_P_RESPONSE_INFO = 0x1A,
	MQTT_P_SERVER_REFERENCE = 0x1C, MQTT_P_REASON_STRING = 0x1F, MQTT_P_RECEIVE_MAXIMUM = 0x21,
	MQTT_P_TOPIC_ALIAS_MAXIMUM = 0x22, MQTT_P_TOPIC_ALIAS = 0x23, MQTT_P_MAXIMUM_QOS = 0x24,
	MQTT_P_RETAIN_AVAILABLE = 0x25, MQTT_P_USER_PROPERTY = 0x26, MQTT_P_MAXIMUM_PACKET_SIZE = 0x27,
	MQTT_P_WILDCARD_SUB_AVAILABLE = 0x28, MQTT_P_SUB_ID_AVAILABLE = 0x29,
	MQTT_P_SHARED_SUB_AVAILABLE = 0x2A,
};

/* The v5 properties of one packet (or of a CONNECT's will). A property is present when
 * its bit (1 << id) is set in `present`; encoding writes exactly the present ones (and
 * the user properties), decoding sets them. Decoding refuses a property not allowed in
 * that packet (table 2-4), one given twice where that is a protocol error, and values out
 * of range (payload format > 1, receive maximum 0, maximum packet size 0, maximum QoS > 1,
 * the byte properties > 1, topic alias 0 in PUBLISH, subscription identifier 0). */
struct mqtt_props {
	uint64_t present;
	uint8_t payload_format;          /* 0x01: 0 bytes, 1 UTF-8 (then the payload is checked) */
	uint32_t message_expiry;         /* 0x02, s */
	struct mqtt_str content_type;    /* 0x03 */
	struct mqtt_str response_topic;  /* 0x08: a topic name */
	struct mqtt_bin correlation_data;/* 0x09 */
	uint32_t sub_id[MQTT_MAX_SUB_IDS]; /* 0x0B, 1..268,435,455 */
	int n_sub_id;
	uint32_t session_expiry;         /* 0x11, s; 0xFFFFFFFF never */
	struct mqtt_str assigned_client_id; /* 0x12 */
	uint16_t server_keepalive;       /* 0x13, s */
	struct mqtt_str auth_method;     /* 0x15 */
	struct mqtt_bin auth_data;       /* 0x16 */
	uint8_t request_problem_info;    /* 0x17 */
	uint32_t will_delay;             /* 0x18, s */
	uint8_t request_response_info;   /* 0x19 */
	struct mqtt_str response_info;   /* 0x1A */
	struct mqtt_str server_reference;/* 0x1C */
	struct mqtt_str reason_string;   /* 0x1F */
	uint16_t receive_maximum;        /* 0x21, 1..65535 */
	uint16_t topic_alias_maximum;    /* 0x22 */
	uint16_t topic_alias;            /* 0x23, 1..65535 */
	uint8_t maximum_qos;             /* 0x24, 0 or 1 (absent: 2) */
	uint8_t retain_available;        /* 0x25 */
	struct mqtt_user_prop user[MQTT_MAX_USER_PROPS]; /* 0x26, in packet order */
	int n_user, n_user_total;
	uint32_t maximum_packet_size;    /* 0x27, bytes, >= 1 */
	uint8_t wildcard_sub_available;  /* 0x28 */
	uint8_t sub_id_available;        /* 0x29 */
	uint8_t shared_sub_available;    /* 0x2A */
};
#define MQTT_PROP_HAS(pr, id) ((((pr)->present) >> (id)) & 1u)
#define MQTT_PROP_SET(pr, id) ((pr)->present |= (uint64_t)1 << (id))

/* Subscription options (3.8.3.1): QoS in bits 0-1; v5 adds No Local (bit 2), Retain As
 * Published (bit 3) and Retain Handling (bits 4-5). */
#define MQTT_SUB_NO_LOCAL 0x04
#define MQTT_SUB_RAP      0x08
struct mqtt_sub { struct mqtt_str filter; uint8_t options; };

struct mqtt_connect {
	struct mqtt_str client_id;       /* may be empty (3.1.3.1) */
	bool clean_start;                /* 3.1.1: Clean Session */
	uint16_t keepalive;              /* s; 0 off (komd never sends 0) */
	bool will;                       /* will flag; then will_topic, will_payload, will_qos, will_retain */
	uint8_t will_qos;
	bool will_retain;
	struct mqtt_str will_topic;
	struct mqtt_bin will_payload;
	struct mqtt_props will_props;    /* v5 */
	bool has_username, has_password;
	struct mqtt_str username;
	struct mqtt_bin password;
};

/* One control packet. Which fields count depends on type; the rest are zero. */
struct mqtt_packet {
	enum mqtt_type type;
	/* PUBLISH (3.3): the fixed header's flags, topic (may be empty in v5 with a topic
	 * alias), packet identifier (QoS 1, 2; 1..65535) and payload. */
	uint8_t qos;
	bool dup, retain;
	struct mqtt_str topic;
	struct mqtt_bin payload;
	/* PUBLISH QoS > 0, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, SUBACK, UNSUBSCRIBE,
	 * UNSUBACK: 1..65535 (0 is a protocol error, 2.2.1). */
	uint16_t packet_id;
	/* CONNACK (3.2): Session Present and the return code (3.1.1, 0..5) or reason code
	 * (v5). PUBACK..PUBCOMP, DISCONNECT (v5): the reason code (0 when the packet ends
	 * before it, 3.4.2.1). */
	bool session_present;
	uint8_t reason_code;
	/* SUBSCRIBE, UNSUBSCRIBE (options unused): the topic filters. */
	struct mqtt_sub subs[MQTT_MAX_TOPICS];
	int n_subs, n_subs_total;
	/* SUBACK, UNSUBACK (v5; 3.1.1 UNSUBACK has none): one code per filter. */
	uint8_t codes[MQTT_MAX_TOPICS];
	int n_codes, n_codes_total;
	/* CONNECT */
	struct mqtt_connect connect;
	/* v5: the packet's properties (PINGREQ/PINGRESP have none). */
	struct mqtt_props props;
};

/* Frame length at buf (len bytes there): the whole packet's length (fixed header
 * included) once the Remaining Length (1.5.5, at most 4 bytes) is known and that many
 * bytes are there; 0 while not; -1 when the Remaining Length is malformed (a fifth byte;
 * a non-minimal encoding is accepted: MQTT-1.5.5-1 binds the sender) or the packet would exceed
 * max bytes (the Maximum Packet Size komd announces; err names the rule and the size). */
long mqtt_frame_len(const uint8_t *buf, size_t len, size_t max, char *err, size_t errlen);

/* Decode one whole frame (as mqtt_frame_len measured it) of protocol version v. Checks
 * the fixed header flags (2.1.3: reserved bits; PUBLISH QoS 3 and DUP with QoS 0 are
 * malformed), that every length fits the frame and nothing is left over, strings (1.5.4:
 * well-formed UTF-8, no U+0000, no surrogates), topic names (no wildcards, 4.7.1;
 * non-empty unless v5 with a topic alias, 3.3.2.1) and filters (4.7.1.2/4.7.1.3),
 * packet identifiers non-zero, reason codes allowed for that packet (2.4), properties as
 * struct mqtt_props says, the payload of a PUBLISH with Payload Format 1 UTF-8. Returns
 * 0, or -1 with err naming the rule (e.g. "PUBLISH: topic name contains '+' (4.7.1)").
 * Both directions are decoded (a client's packets too: test peers, the fuzzer). */
int mqtt_decode(const uint8_t *buf, size_t len, enum mqtt_version v, struct mqtt_packet *p,
    char *err, size_t errlen);

/* Encode p for version v into buf (cap bytes). Returns the packet's length; when that is
 * more than cap nothing useful is in buf (call again with a buffer that large). -1 with
 * err when p breaks a rule the receiver would close for (the same checks as decoding:
 * a string over 65,535 bytes, bad UTF-8, a wildcard in a topic name, packet id 0, more
 * than MQTT_MAX_REMAINING, a v5-only field set for 3.1.1). v5 properties not allowed in
 * the packet type are an error too. */
long mqtt_encode(const struct mqtt_packet *p, enum mqtt_version v, uint8_t *buf, size_t cap,
    char *err, size_t errlen);

/* The rules alone, for configuration checks (komd -t) and the session logic. 0, or -1
 * with err naming the rule. */
int mqtt_check_utf8(const char *s, size_t len, char *err, size_t errlen);          /* 1.5.4 */
int mqtt_check_topic_name(const char *s, size_t len, char *err, size_t errlen);    /* 4.7.1, 4.7.3 */
int mqtt_check_topic_filter(const char *s, size_t len, char *err, size_t errlen);  /* 4.7.1.2, 4.7.1.3, 4.7.3 */
/* Does topic name (len bytes) match filter (NUL-terminated, already checked)? '#' and
 * '+' as 4.7.1 says; a filter starting with a wildcard does not match a topic starting
 * with '$' (4.7.2). */
bool mqtt_topic_match(const char *filter, const char *topic, size_t len);

/* Names for logs and traces (constant strings). */
const char *mqtt_type_name(enum mqtt_type t);                 /* "PUBLISH"; "reserved" */
/* A reason code (v5, 2.4) in packet type t, e.g. 0x87 "Not authorized"; CONNACK of 3.1.1
 * gives the return codes of 3.2.2.3 ("Connection Refused, bad user name or password"). */
const char *mqtt_reason_name(enum mqtt_version v, enum mqtt_type t, uint8_t code);
/* One line for a trace: type, flags, ids, topic, payload length, reason, properties
 * (strings escaped, at most 64 bytes of each). Returns the length written, the line cut
 * to fit len - 1 bytes (0 when len is 0). */
int mqtt_describe(const struct mqtt_packet *p, char *buf, size_t len);

#endif
