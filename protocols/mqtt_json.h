/* mqtt_json.h: the payloads of the mqtt-client protocol, pure (no sessions, no I/O): tag
 * addresses in the original's `key=value;key=value` form, text payloads parsed by the
 * tag's type, JSON payloads (RFC 8259, through jansson) read along a JSON path, a JSON
 * payload's own timestamp, command messages and their responses. mqtt.c uses it; the
 * unit test and the fuzzer drive it alone. */
#ifndef KOMD_MQTT_JSON_H
#define KOMD_MQTT_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "../daemon/value.h"

/* A JSON path "a.b[1].c": object keys separated by dots, array indexes from 1 in brackets
 * (the original's JA= form; "[1].a" starts at an array); "" or "." is the whole document.
 * In a key, '\' escapes . [ ] \ and ; (a key "a.b" is written a\.b). */
struct mqtt_jstep {
	char *key;      /* object member, or NULL for an array index */
	size_t index;   /* array index from 1 */
};
struct mqtt_jpath {
	struct mqtt_jstep *step;
	int n;
	char *text;     /* as configured, for messages */
};

/* A tag's address: "T=topic;JA=a.b[1].c" (either part may be left out; keys as the
 * original spells them, case-sensitive; spaces around ';' and '=' are not allowed). */
struct mqtt_tag_addr {
	char *topic;            /* T=: an absolute topic name (no wildcard); NULL: the station's */
	struct mqtt_jpath ja;   /* JA=: n 0 and text NULL when not given */
	bool has_ja;
};

/* Parse an address; 0, or -1 with err naming the part ("JA=a..b: empty key at 3";
 * positions count bytes from 1). The topic is checked as an MQTT topic name
 * (mqtt_check_topic_name) and cannot hold ';'; a JA path can (as \;). "" is neither part. */
int mqtt_tag_addr_parse(const char *s, struct mqtt_tag_addr *out, char *err, size_t errlen);
void mqtt_tag_addr_free(struct mqtt_tag_addr *a);
int mqtt_jpath_parse(const char *s, struct mqtt_jpath *out, char *err, size_t errlen);
void mqtt_jpath_free(struct mqtt_jpath *p);

/* A received payload as JSON (any JSON value, not only an object or array): a new
 * reference, or NULL with err (jansson's message with line and column). Refused: an empty
 * payload, one over MQTT_JSON_MAX_PAYLOAD bytes (its tree would take ~50x that in memory),
 * bytes that are not UTF-8 (RFC 8259 8.1), duplicate object members (RFC 8259 4 leaves
 * their meaning open), "\u0000", integers outside int64, nesting deeper than jansson's
 * JSON_PARSER_MAX_DEPTH (2048). */
#define MQTT_JSON_MAX_PAYLOAD (1024 * 1024)
json_t *mqtt_json_load(const uint8_t *payload, size_t len, char *err, size_t errlen);

/* The value at path in root (path NULL: root), as type t: bool from true/false or 0/1;
 * dpi from 0..3 (or true/false as on/off); int from an integer (or a float with no
 * fraction, within int64); float from any number; string from a string (other JSON values
 * as their compact JSON text); time from a number (ms since the epoch, rounded) or an ISO
 * 8601 string (value_parse_iso8601), years 0000..9999. No other JSON type converts (a string
 * "21.5" is not a float). 0, or -1 with err ("JA=a.b[2]: no element 2 (array of 1)",
 * "JA=x: string \"on\", not a number") and v cleared to type t. v->s is allocated for
 * strings. */
int mqtt_json_value(json_t *root, const struct mqtt_jpath *path, enum vtype t, struct value *v,
    char *err, size_t errlen);

/* A text payload as type t (value_parse: "1"/"true", numbers, strings as they are; not
 * NaN or infinities; time: ms since the epoch or value_parse_iso8601's form). No NUL byte,
 * valid UTF-8 (RFC 3629), whatever the type. 0, or -1 with err and v cleared to type t. */
int mqtt_text_value(enum vtype t, const uint8_t *payload, size_t len, struct value *v,
    char *err, size_t errlen);

/* A payload's own timestamp (station keys time_field, time_format). */
enum mqtt_time_format { MQTT_TIME_EPOCH_S, MQTT_TIME_EPOCH_MS, MQTT_TIME_ISO8601 };
#define MQTT_TIME_FORMAT_CHOICES "epoch_s", "epoch_ms", "iso8601"
/* ms since the epoch (UTC) from the member at path as fmt says: a number (epoch_s:
 * seconds, fractions allowed; epoch_ms: ms) or, for iso8601, a string
 * ("2026-11-30T12:00:00Z", ".123", "+01:00" offsets); the other JSON type is an error.
 * Years 0000..9999 only. 0, or -1 with err ("time_field=ts: no member 'ts'"). */
int mqtt_json_time(json_t *root, const struct mqtt_jpath *path, enum mqtt_time_format fmt,
    int64_t *ms, char *err, size_t errlen);
/* A command message for a tag of type t. Text: the payload is the value. JSON: a bare
 * JSON value, or an object {"value": V, "time": T} where the optional T (ISO 8601, or ms
 * since the epoch) is when the command was issued (*issued_ms, else 0); other members
 * are refused (a typo like "tme" must not pass). V converts as mqtt_json_value says. 0,
 * or -1 with err ("command value: string \"x\", not a number"). */
int mqtt_command_parse(enum vtype t, bool json, const uint8_t *payload, size_t len,
    struct value *v, int64_t *issued_ms, char *err, size_t errlen);
/* {"ok":true} or {"ok":false,"error":"..."} (msg's bytes that are not UTF-8 escaped as
 * U+FFFD; msg NULL: "failed"): a malloc'ed NUL-terminated string (free()), NULL when
 * out of memory. */
char *mqtt_command_response(bool ok, const char *msg);

/* A served tag's value as a text payload (value_format; strings as they are). Returns
 * the length written (NUL-terminated), or -1 when it does not fit in len. */
int mqtt_value_text(const struct value *v, char *buf, size_t len);

#endif
