/* value.h: typed tag values (the six value types of a tag) and their text form. */
#ifndef KOMD_VALUE_H
#define KOMD_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum vtype { VT_BOOL, VT_DPI, VT_INT, VT_FLOAT, VT_STRING, VT_TIME };
/* Their names, in that order: the one list (value.c's vtype_names; the pure codecs, which
 * do not link value.c, spell their table with it too). */
#define VTYPE_NAME_LIST "bool", "dpi", "int", "float", "string", "time"

/* bool: i 0/1; dpi (double point): i 0 intermediate, 1 off, 2 on, 3 faulty;
 * int: i; float: f; string: s (owned, NUL-terminated); time: i, ms since the epoch (UTC). */
struct value {
	enum vtype type;
	union {
		int64_t i;
		double f;
		char *s;
	};
};

/* Quality bits, as IEC 60870-5-101 7.2.6.3 names them. */
#define Q_INVALID     0x01 /* IV */
#define Q_NOTTOPICAL  0x02 /* NT */
#define Q_SUBSTITUTED 0x04 /* SB */
#define Q_BLOCKED     0x08 /* BL */
#define Q_OVERFLOW    0x10 /* OV */

const char *vtype_name(enum vtype t);
/* The type names in enum vtype's order, NULL-terminated (a schema's choices). */
extern const char *const vtype_names[];
/* FNV-1a of a string: the hash of komd's name tables (tags, the configuration's index). */
uint32_t str_hash(const char *s);
int vtype_parse(const char *s, enum vtype *out); /* 0 / -1 */

/* Parse text as type t into v (v->s allocated for strings). 0, or -1 with err. */
int value_parse(enum vtype t, const char *text, struct value *v, char *err, size_t errlen);
/* An ISO 8601 date-time to ms since the epoch (UTC): "YYYY-MM-DDTHH:MM:SS[.f](Z|+hh:mm|+hhmm|
 * +hh|-...)", the extended format of ISO 8601-1:2019 5.4.2 with RFC 3339 5.6's options ('t'
 * or ' ' for 'T', 'z', ',' as the decimal sign); no offset means UTC; fractions beyond ms
 * are cut; years 0000..9999; dates that do not exist (2026-02-30) are refused; second 60
 * only at 23:59:60 UTC (a leap second, RFC 3339 5.7), counted as the next second. 0, or -1
 * with why (may be NULL with whylen 0) saying what is wrong. komd's one parser of times
 * (value_parse, MQTT payloads). */
int value_parse_iso8601(const char *s, int64_t *ms, char *why, size_t whylen);
/* Format v as text (strings as they are, cut at len). Returns buf. */
char *value_format(const struct value *v, char *buf, size_t len);

/* JSON (RFC 8259) through jansson. Every string komd puts in its JSON output goes through
 * value_json_text: jansson takes only valid UTF-8, and text from a peer may hold anything. */
struct json_t;
/* s (NULL: "") as a JSON string, whole: bytes that are not UTF-8 (RFC 3629 clause 3) and
 * DEL as the text \xNN, as komctl's text shows them. A new reference; NULL: out of memory. */
struct json_t *value_json_text(const char *s);
/* v's JSON form: bool true/false, int and float numbers (a float that is NaN or an infinity,
 * which JSON cannot say, null), dpi its name, time ISO 8601 UTC with ms, string as
 * value_json_text. A new reference; NULL: out of memory. */
struct json_t *value_json(const struct value *v);
/* A count (a counter of komd or a protocol) as a JSON integer; jansson's are int64, so
 * past INT64_MAX (never reached: 2^63 bytes) it says INT64_MAX. NULL: out of memory. */
struct json_t *value_json_count(uint64_t n);
/* j (any JSON value) as compact JSON text (no spaces; members in the order they were set),
 * every float with the fewest digits (15..17, the same for the whole document) that read
 * back as itself: 32.876, not 32.875999999999998. malloc'ed, NUL-terminated; NULL when j
 * is NULL or out of memory. */
char *value_json_dump(const struct json_t *j);
/* The flags of value_json_dump's form, for jansson's other json_dump* calls (to a callback,
 * a file): compact, any value, the float precision j needs. */
size_t value_json_flags(const struct json_t *j);
void value_copy(struct value *dst, const struct value *src); /* dst must be cleared */
void value_clear(struct value *v);
bool value_equal(const struct value *a, const struct value *b);
/* Quality as text: "good" or a list like "IV,NT". */
char *quality_format(unsigned q, char *buf, size_t len);
/* Milliseconds since the epoch as ISO 8601 UTC with milliseconds; "-" for 0. */
char *time_format(int64_t ms, char *buf, size_t len);
int64_t time_now_ms(void);
/* A float32 as the shortest decimal that is the same float32 (32.876, not the double
 * 32.875999450683594 it widens to): what the device meant, as an operator reads it. */
double value_float32_decimal(double f);
/* f rounded to the nearest integer (halves away from zero), saturated to int64; NaN is 0.
 * A float from the network may be anything: a plain cast of 1e30 is undefined. */
int64_t value_round_i64(double f);

#endif
