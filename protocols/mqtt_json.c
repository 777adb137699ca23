/* mqtt_json.c: the payloads of the mqtt-client protocol (mqtt_json.h), pure: tag addresses
 * "T=topic;JA=a.b[1].c" (the original's form), JSON paths, text and JSON (RFC 8259, read
 * through jansson) payloads converted by the tag's type, a payload's own timestamp (ISO
 * 8601-1:2019 extended format in the RFC 3339 section 5.6 profile, or epoch numbers),
 * command messages and their responses.
 *
 * Decisions (see the header): a JSON payload is UTF-8 (RFC 8259 section 8.1) checked here
 * before jansson sees it, so the error names the byte; duplicate object members are refused
 * (RFC 8259 section 4 leaves their meaning open: komd never picks one silently); "\u0000"
 * is refused (jansson without JSON_ALLOW_NUL), so no value carries a NUL; integers must fit
 * in int64 (jansson's json_int_t) or the payload is refused. Every error names the place
 * ("JA=a.b[2]: no element 2 (array of 1)"); a missing member, a wrong JSON type, a
 * fraction for an int or an out-of-range number is an error, never a zero. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt_codec.h"
#include "mqtt_json.h"

/* Times komd accepts: years 0000 to 9999 (ISO 8601's four-digit years), in ms. */
#define TIME_MIN_MS (-62167219200000LL)  /* 0000-01-01T00:00:00Z */
#define TIME_MAX_MS 253402300799999LL    /* 9999-12-31T23:59:59.999Z */

/* Length of the well-formed UTF-8 sequence at s (RFC 3629 section 4: no overlong forms,
 * no surrogates, nothing past U+10FFFF), 1..4; 0 when the bytes are not one. */
static size_t
utf8_seq(const uint8_t *s, size_t len)
{
	uint8_t c = s[0];

#define CONT(k) (len > (k) && (s[k] & 0xc0) == 0x80)
	if (c < 0x80)
		return 1;
	if (c < 0xc2) /* a continuation byte, or an overlong two-byte form */
		return 0;
	if (c < 0xe0)
		return CONT(1) ? 2 : 0;
	if (c < 0xf0) {
		if (!CONT(1) || !CONT(2) || (c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] >= 0xa0))
			return 0;
		return 3;
	}
	if (c < 0xf5) {
		if (!CONT(1) || !CONT(2) || !CONT(3) || (c == 0xf0 && s[1] < 0x90) ||
		    (c == 0xf4 && s[1] >= 0x90))
			return 0;
		return 4;
	}
	return 0;
#undef CONT
}

/* Offset of the first byte that is not well-formed UTF-8; len when all are. */
static size_t
utf8_bad(const uint8_t *s, size_t len)
{
	size_t i = 0, n;

	while (i < len && (n = utf8_seq(s + i, len - i)) > 0)
		i += n;
	return i;
}

/* s for a message: at most max bytes, control characters as '?', "..." when cut (never in
 * the middle of a UTF-8 sequence). */
static void
excerpt(const char *s, size_t len, size_t max, char *buf, size_t buflen)
{
	size_t o = 0, i = 0;

	while (i < len && o + 8 < buflen && i < max) {
		size_t n = utf8_seq((const uint8_t *)s + i, len - i);

		if (n <= 1) {
			buf[o++] = n == 1 && (unsigned char)s[i] >= 0x20 && s[i] != 0x7f ? s[i] : '?';
			i++;
		} else {
			if (i + n > max)
				break;
			memcpy(buf + o, s + i, n);
			o += n;
			i += n;
		}
	}
	if (i < len && o + 3 < buflen) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	if (buflen)
		buf[o < buflen ? o : buflen - 1] = '\0';
}

/* --- JSON paths --- */

static int
jpath_add(struct mqtt_jpath *p, int *cap, char *key, size_t index)
{
	if (p->n == *cap) {
		int ncap = *cap ? *cap * 2 : 4;
		struct mqtt_jstep *ns = realloc(p->step, (size_t)ncap * sizeof(*ns));

		if (!ns)
			return -1;
		p->step = ns;
		*cap = ncap;
	}
	p->step[p->n].key = key;
	p->step[p->n].index = index;
	p->n++;
	return 0;
}

static int
jpath_parse(const char *s, struct mqtt_jpath *out, char *err, size_t errlen)
{
	size_t len = strlen(s), i = 0, bad;
	int cap = 0;
	char ex[120]; /* messages start with the path */

	memset(out, 0, sizeof(*out));
	excerpt(s, len, 100, ex, sizeof(ex));
	if ((bad = utf8_bad((const uint8_t *)s, len)) < len) {
		snprintf(err, errlen, "%s: not UTF-8: byte 0x%02x at %zu", ex, (unsigned char)s[bad], bad + 1);
		return -1;
	}
	if (!(out->text = strdup(s)))
		goto oom;
	if (len == 0 || strcmp(s, ".") == 0)
		return 0; /* the whole document */
	while (i < len) {
		if (s[i] == '[') {
			size_t index = 0, start = ++i;

			for (; i < len && isdigit((unsigned char)s[i]); i++) {
				if (index > (SIZE_MAX - 9) / 10) {
					snprintf(err, errlen, "%s: index too large at %zu", ex, start + 1);
					goto fail;
				}
				index = index * 10 + (size_t)(s[i] - '0');
			}
			if (i == start) {
				snprintf(err, errlen, "%s: expected an index (1, 2, ...) at %zu", ex, i + 1);
				goto fail;
			}
			if (i == len || s[i] != ']') {
				snprintf(err, errlen, "%s: expected ']' at %zu", ex, i + 1);
				goto fail;
			}
			if (index == 0) {
				snprintf(err, errlen, "%s: index 0 at %zu (indexes start at 1)", ex, start + 1);
				goto fail;
			}
			i++;
			if (jpath_add(out, &cap, NULL, index) != 0)
				goto oom;
			continue;
		}
		if (out->n > 0) {
			if (s[i] != '.') {
				snprintf(err, errlen, "%s: expected '.' or '[' at %zu", ex, i + 1);
				goto fail;
			}
			i++;
		}
		/* a key: up to an unescaped '.' or '['; '\' escapes . [ ] \ ; */
		char *key = malloc(len - i + 1);
		size_t k = 0, start = i;

		if (!key)
			goto oom;
		while (i < len && s[i] != '.' && s[i] != '[') {
			if (s[i] == ']') {
				snprintf(err, errlen, "%s: unexpected ']' at %zu (write \\] in a key)", ex, i + 1);
				free(key);
				goto fail;
			}
			if (s[i] == '\\') {
				if (i + 1 == len || !strchr(".[]\\;", s[i + 1])) {
					snprintf(err, errlen, "%s: bad escape at %zu (\\. \\[ \\] \\\\ \\;)", ex, i + 1);
					free(key);
					goto fail;
				}
				i++;
			}
			key[k++] = s[i++];
		}
		key[k] = '\0';
		if (i == start) {
			snprintf(err, errlen, "%s: empty key at %zu", ex, start + 1);
			free(key);
			goto fail;
		}
		if (jpath_add(out, &cap, key, 0) != 0) {
			free(key);
			goto oom;
		}
	}
	return 0;
oom:
	snprintf(err, errlen, "%s: out of memory", ex);
fail:
	mqtt_jpath_free(out);
	return -1;
}

void
mqtt_jpath_free(struct mqtt_jpath *p)
{
	for (int k = 0; k < p->n; k++)
		free(p->step[k].key);
	free(p->step);
	free(p->text);
	memset(p, 0, sizeof(*p));
}

/* The first n steps of p as text ("a.b[2]"), for messages: keys through excerpt, "..."
 * when it would not fit. */
static void
jpath_prefix(const struct mqtt_jpath *p, int n, char *buf, size_t len)
{
	size_t o = 0;

	buf[0] = '\0';
	for (int k = 0; k < n; k++) {
		char t[100];

		if (p->step[k].key) {
			excerpt(p->step[k].key, strlen(p->step[k].key), 40, t + 1, sizeof(t) - 1);
			t[0] = '.';
		} else {
			snprintf(t, sizeof(t), "[%zu]", p->step[k].index);
		}
		const char *add = t + (k == 0 && t[0] == '.');
		size_t w = strlen(add);

		if (o + w + 4 > len) {
			snprintf(buf + o, len - o, "...");
			return;
		}
		memcpy(buf + o, add, w + 1);
		o += w;
	}
}

/* --- addresses --- */

static int
addr_parse(const char *s, struct mqtt_tag_addr *out, char *err, size_t errlen)
{
	const char *p = s;
	char e[200];

	memset(out, 0, sizeof(*out));
	if (*s == '\0')
		return 0; /* the station's topic, the whole payload */
	for (;;) {
		const char *eq = p, *v, *end;

		while (*eq && *eq != '=' && *eq != ';')
			eq++;
		if (*eq != '=') {
			excerpt(p, (size_t)(eq - p), 40, e, sizeof(e));
			snprintf(err, errlen, "'%s' at %zu: expected KEY=VALUE (T=topic, JA=path)", e,
			    (size_t)(p - s) + 1);
			goto fail;
		}
		v = end = eq + 1;
		if (eq - p == 2 && strncmp(p, "JA", 2) == 0) {
			/* a path may escape ';' as "\;" */
			while (*end && *end != ';')
				end += end[0] == '\\' && end[1] ? 2 : 1;
			if (out->has_ja) {
				snprintf(err, errlen, "JA= given twice");
				goto fail;
			}
			char *text = strndup(v, (size_t)(end - v));

			if (!text)
				goto oom;
			if (jpath_parse(text, &out->ja, e, sizeof(e)) != 0) {
				snprintf(err, errlen, "JA=%s", e); /* e names the path first */
				free(text);
				goto fail;
			}
			free(text);
			out->has_ja = true;
		} else if (eq - p == 1 && *p == 'T') {
			while (*end && *end != ';')
				end++;
			if (out->topic) {
				snprintf(err, errlen, "T= given twice");
				goto fail;
			}
			if (mqtt_check_topic_name(v, (size_t)(end - v), e, sizeof(e)) != 0) {
				char ex[120];

				excerpt(v, (size_t)(end - v), 100, ex, sizeof(ex));
				snprintf(err, errlen, "T=%s: %s", ex, e);
				goto fail;
			}
			if (!(out->topic = strndup(v, (size_t)(end - v))))
				goto oom;
		} else {
			excerpt(p, (size_t)(eq - p), 40, e, sizeof(e));
			snprintf(err, errlen, "unknown key '%s' at %zu (T, JA; case matters)", e, (size_t)(p - s) + 1);
			goto fail;
		}
		if (*end == '\0')
			return 0;
		p = end + 1;
		if (*p == '\0' || *p == ';') {
			snprintf(err, errlen, "empty part at %zu", (size_t)(p - s) + 1);
			goto fail;
		}
	}
oom:
	snprintf(err, errlen, "out of memory");
fail:
	mqtt_tag_addr_free(out);
	return -1;
}

void
mqtt_tag_addr_free(struct mqtt_tag_addr *a)
{
	free(a->topic);
	mqtt_jpath_free(&a->ja);
	memset(a, 0, sizeof(*a));
}

/* --- JSON payloads --- */

static json_t *
payload_load(const uint8_t *payload, size_t len, char *err, size_t errlen)
{
	json_error_t je;
	json_t *j;
	size_t bad;

	if (len == 0) {
		snprintf(err, errlen, "payload is empty, not JSON");
		return NULL;
	}
	if (len > MQTT_JSON_MAX_PAYLOAD) {
		snprintf(err, errlen, "JSON payload of %zu bytes, over the limit of %d", len,
		    MQTT_JSON_MAX_PAYLOAD);
		return NULL;
	}
	if ((bad = utf8_bad(payload, len)) < len) {
		snprintf(err, errlen, "payload is not UTF-8: byte 0x%02x at %zu", payload[bad], bad + 1);
		return NULL;
	}
	if (!(j = json_loadb((const char *)payload, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je))) {
		snprintf(err, errlen, "payload is not JSON: line %d column %d: %s", je.line, je.column, je.text);
		return NULL;
	}
	return j;
}

/* j for a message: 'string "abc"', '1.5', 'true', 'object', 'array of 3'. */
static void
jdesc(const json_t *j, char *buf, size_t len)
{
	char t[80];

	switch (json_typeof(j)) {
	case JSON_OBJECT:
		snprintf(buf, len, "object");
		break;
	case JSON_ARRAY:
		snprintf(buf, len, "array of %zu", json_array_size(j));
		break;
	case JSON_STRING:
		excerpt(json_string_value(j), json_string_length(j), 40, t, sizeof(t));
		snprintf(buf, len, "string \"%s\"", t);
		break;
	case JSON_INTEGER:
		snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(j));
		break;
	case JSON_REAL:
		snprintf(buf, len, "%.17g", json_real_value(j));
		break;
	case JSON_TRUE:
		snprintf(buf, len, "true");
		break;
	case JSON_FALSE:
		snprintf(buf, len, "false");
		break;
	default:
		snprintf(buf, len, "null");
		break;
	}
}

/* The value at path in root (NULL path: root), or NULL with err naming the step. */
static json_t *
jpath_walk(json_t *root, const struct mqtt_jpath *p, const char *what, char *err, size_t errlen)
{
	json_t *j = root;
	char at[128], d[80];

	for (int k = 0; p && k < p->n; k++) {
		const struct mqtt_jstep *st = &p->step[k];

		jpath_prefix(p, k, at, sizeof(at));
		if (st->key ? !json_is_object(j) : !json_is_array(j)) {
			jdesc(j, d, sizeof(d));
			snprintf(err, errlen, "%s: %s is %s, not %s", what, k ? at : "the payload", d,
			    st->key ? "an object" : "an array");
			return NULL;
		}
		if (st->key) {
			if (!(j = json_object_get(j, st->key))) {
				excerpt(st->key, strlen(st->key), 40, d, sizeof(d));
				snprintf(err, errlen, "%s: no member '%s'%s%s", what, d, k ? " in " : "", k ? at : "");
				return NULL;
			}
		} else {
			if (st->index > json_array_size(j)) {
				snprintf(err, errlen, "%s: no element %zu (array of %zu)", what, st->index,
				    json_array_size(j));
				return NULL;
			}
			j = json_array_get(j, st->index - 1);
		}
	}
	return j;
}

/* A JSON number as ms, in TIME_MIN_MS..TIME_MAX_MS; scale 1000 for seconds. */
static int
jnumber_ms(const json_t *j, int64_t scale, const char *what, int64_t *ms, char *err, size_t errlen)
{
	char d[80];

	if (json_is_integer(j)) {
		json_int_t i = json_integer_value(j);

		if (i >= TIME_MIN_MS / scale && i <= TIME_MAX_MS / scale) {
			*ms = (int64_t)i * scale;
			return 0;
		}
	} else {
		double f = json_number_value(j) * (double)scale;

		if (f >= (double)TIME_MIN_MS && f <= (double)TIME_MAX_MS) {
			*ms = value_round_i64(f);
			return 0;
		}
	}
	jdesc(j, d, sizeof(d));
	snprintf(err, errlen, "%s: %s %s is outside the years 0000 to 9999", what, d, scale == 1 ? "ms" : "s");
	return -1;
}


/* An ISO 8601 string j as ms, or -1 with err. */
static int
jiso_ms(const json_t *j, const char *what, int64_t *ms, char *err, size_t errlen)
{
	char why[100], t[80];

	if (value_parse_iso8601(json_string_value(j), ms, why, sizeof(why)) == 0)
		return 0;
	excerpt(json_string_value(j), json_string_length(j), 40, t, sizeof(t));
	snprintf(err, errlen, "%s: \"%s\" is not an ISO 8601 date-time: %s", what, t, why);
	return -1;
}

/* j as type t (the header's conversions); what names the place for messages. */
static int
jconvert(json_t *j, enum vtype t, struct value *v, const char *what, char *err, size_t errlen)
{
	char d[80];
	const char *want = "";

	memset(v, 0, sizeof(*v));
	v->type = t;
	switch (t) {
	case VT_BOOL:
		if (json_is_boolean(j)) {
			v->i = json_is_true(j);
			return 0;
		}
		if (json_is_number(j) && (json_number_value(j) == 0.0 || json_number_value(j) == 1.0)) {
			v->i = json_number_value(j) == 1.0;
			return 0;
		}
		want = "a bool (true, false, 0 or 1)";
		break;
	case VT_DPI:
		if (json_is_boolean(j)) {
			v->i = json_is_true(j) ? 2 : 1; /* on, off */
			return 0;
		}
		if (json_is_integer(j) && json_integer_value(j) >= 0 && json_integer_value(j) <= 3) {
			v->i = json_integer_value(j);
			return 0;
		}
		want = "a dpi (0 intermediate, 1 off, 2 on, 3 faulty, or false/true)";
		break;
	case VT_INT:
		if (json_is_integer(j)) {
			v->i = json_integer_value(j);
			return 0;
		}
		if (json_is_real(j)) {
			double f = json_real_value(j);

			jdesc(j, d, sizeof(d));
			if (f != floor(f)) {
				snprintf(err, errlen, "%s: %s has a fraction, not an integer", what, d);
				return -1;
			}
			/* -2^63 is exact in a double; 2^63 is the first value past INT64_MAX */
			if (f < -9223372036854775808.0 || f >= 9223372036854775808.0) {
				snprintf(err, errlen, "%s: %s is outside the 64-bit integer range", what, d);
				return -1;
			}
			v->i = (int64_t)f;
			return 0;
		}
		want = "an integer";
		break;
	case VT_FLOAT:
		if (json_is_number(j)) {
			v->f = json_number_value(j);
			return 0;
		}
		want = "a number";
		break;
	case VT_STRING:
		if (json_is_string(j)) {
			/* jansson refuses \u0000 without JSON_ALLOW_NUL; a json_t made otherwise may hold one */
			if (strlen(json_string_value(j)) != json_string_length(j)) {
				snprintf(err, errlen, "%s: string with a NUL character", what);
				return -1;
			}
			v->s = strdup(json_string_value(j));
		} else {
			v->s = value_json_dump(j);
		}
		if (!v->s) {
			snprintf(err, errlen, "%s: out of memory", what);
			return -1;
		}
		return 0;
	case VT_TIME:
		if (json_is_number(j))
			return jnumber_ms(j, 1, what, &v->i, err, errlen);
		if (json_is_string(j))
			return jiso_ms(j, what, &v->i, err, errlen);
		want = "a time (ms since the epoch, or an ISO 8601 string)";
		break;
	default:
		snprintf(err, errlen, "%s: unknown type %d", what, (int)t);
		return -1;
	}
	jdesc(j, d, sizeof(d));
	snprintf(err, errlen, "%s: %s, not %s", what, d, want);
	return -1;
}

/* "JA=a.b" or "payload" (the whole document). */
static void
jpath_label(const char *key, const struct mqtt_jpath *p, char *buf, size_t len)
{
	char t[100];

	if (!p || !p->text || (p->n == 0 && key == NULL)) {
		snprintf(buf, len, "payload");
		return;
	}
	excerpt(p->text, strlen(p->text), 80, t, sizeof(t));
	snprintf(buf, len, "%s%s", key ? key : "JA=", t);
}

static int
value_at(json_t *root, const struct mqtt_jpath *path, enum vtype t, struct value *v,
    char *err, size_t errlen)
{
	char what[120];
	json_t *j;

	memset(v, 0, sizeof(*v));
	v->type = t;
	jpath_label(NULL, path, what, sizeof(what));
	if (!(j = jpath_walk(root, path, what, err, errlen)))
		return -1;
	return jconvert(j, t, v, what, err, errlen);
}

/* --- text payloads --- */

/* Is s (NUL-terminated) a decimal integer (optional sign, no spaces)? */
static int
parse_i64(const char *s, int64_t *out)
{
	char *end;
	long long v;

	if (!isdigit((unsigned char)s[*s == '-' || *s == '+']))
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	*out = v;
	return 0;
}

static int
text_parse(enum vtype t, const uint8_t *payload, size_t len, struct value *v,
    char *err, size_t errlen)
{
	const uint8_t *nul;
	char *s, ex[80], why[100];
	size_t bad, a, b;
	int rc;

	memset(v, 0, sizeof(*v));
	v->type = t;
	if ((nul = memchr(payload, '\0', len))) {
		snprintf(err, errlen, "payload has a NUL byte at %zu", (size_t)(nul - payload) + 1);
		return -1;
	}
	if ((bad = utf8_bad(payload, len)) < len) {
		snprintf(err, errlen, "payload is not UTF-8: byte 0x%02x at %zu", payload[bad], bad + 1);
		return -1;
	}
	if (t != VT_TIME) {
		if (!(s = strndup((const char *)payload, len))) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		rc = value_parse(t, s, v, err, errlen); /* a refused value is left cleared */
		free(s);
		return rc;
	}
	/* time: ms since the epoch or ISO 8601, through the same parser as JSON payloads */
	for (a = 0; a < len && isspace(payload[a]); a++)
		;
	for (b = len; b > a && isspace(payload[b - 1]); b--)
		;
	if (!(s = strndup((const char *)payload + a, b - a))) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	excerpt(s, b - a, 40, ex, sizeof(ex));
	if (parse_i64(s, &v->i) == 0) {
		rc = 0;
		if (v->i < TIME_MIN_MS || v->i > TIME_MAX_MS) {
			snprintf(err, errlen, "'%s' ms is outside the years 0000 to 9999", ex);
			rc = -1;
		}
	} else if ((rc = value_parse_iso8601(s, &v->i, why, sizeof(why))) != 0) {
		snprintf(err, errlen, "'%s' is not a time (ms since the epoch, or ISO 8601 like "
		    "2026-11-30T12:00:00.123Z): %s", ex, why);
	}
	if (rc != 0)
		v->i = 0;
	free(s);
	return rc;
}

/* --- times --- */

static int
time_at(json_t *root, const struct mqtt_jpath *path, enum mqtt_time_format fmt,
    int64_t *ms, char *err, size_t errlen)
{
	static const char *const fmts[] = { MQTT_TIME_FORMAT_CHOICES };
	char what[120], d[80];
	json_t *j;

	*ms = 0;
	jpath_label("time_field=", path, what, sizeof(what));
	if (!(j = jpath_walk(root, path, what, err, errlen)))
		return -1;
	if (fmt == MQTT_TIME_ISO8601 ? json_is_string(j) : json_is_number(j)) {
		if (fmt == MQTT_TIME_ISO8601)
			return jiso_ms(j, what, ms, err, errlen);
		return jnumber_ms(j, fmt == MQTT_TIME_EPOCH_S ? 1000 : 1, what, ms, err, errlen);
	}
	jdesc(j, d, sizeof(d));
	snprintf(err, errlen, "%s: %s, not %s (time_format %s)", what, d,
	    fmt == MQTT_TIME_ISO8601 ? "an ISO 8601 string" : "a number",
	    (unsigned)fmt < sizeof(fmts) / sizeof(fmts[0]) ? fmts[fmt] : "?");
	return -1;
}

/* --- commands --- */

static int
command_parse(enum vtype t, bool json, const uint8_t *payload, size_t len,
    struct value *v, int64_t *issued_ms, char *err, size_t errlen)
{
	json_t *root, *jv, *jt;
	const char *key;
	int rc = -1;

	*issued_ms = 0;
	memset(v, 0, sizeof(*v));
	v->type = t;
	if (!json)
		return text_parse(t, payload, len, v, err, errlen);
	if (!(root = payload_load(payload, len, err, errlen)))
		return -1;
	if (!json_is_object(root)) {
		rc = jconvert(root, t, v, "command", err, errlen);
		json_decref(root);
		return rc;
	}
	json_object_foreach(root, key, jv) {
		if (strcmp(key, "value") != 0 && strcmp(key, "time") != 0) {
			char ex[80];

			excerpt(key, strlen(key), 40, ex, sizeof(ex));
			snprintf(err, errlen, "command: unknown member '%s' (value, time)", ex);
			goto done;
		}
	}
	if (!(jv = json_object_get(root, "value"))) {
		snprintf(err, errlen, "command: object without member 'value' (a bare value, or "
		    "{\"value\": V, \"time\": T})");
		goto done;
	}
	if ((jt = json_object_get(root, "time"))) {
		char d[80];

		if (json_is_number(jt))
			rc = jnumber_ms(jt, 1, "command time", issued_ms, err, errlen);
		else if (json_is_string(jt))
			rc = jiso_ms(jt, "command time", issued_ms, err, errlen);
		else {
			jdesc(jt, d, sizeof(d));
			snprintf(err, errlen, "command time: %s, not ms since the epoch or an ISO 8601 string", d);
		}
		if (rc != 0) {
			*issued_ms = 0;
			goto done;
		}
	}
	rc = jconvert(jv, t, v, "command value", err, errlen);
	if (rc != 0)
		*issued_ms = 0;
done:
	json_decref(root);
	return rc;
}

char *
mqtt_command_response(bool ok, const char *msg)
{
	json_t *o;
	char *out = NULL, *clean = NULL;

	if (!(o = json_object()) || json_object_set_new(o, "ok", json_boolean(ok)) != 0)
		goto done;
	if (!ok) {
		const uint8_t *m = (const uint8_t *)(msg ? msg : "failed");
		size_t len = strlen((const char *)m), o2 = 0, n;

		/* each byte that does not start a well-formed sequence becomes U+FFFD (3 bytes) */
		if (!(clean = malloc(len * 3 + 1)))
			goto done;
		for (size_t i = 0; i < len; i += n ? n : 1) {
			if ((n = utf8_seq(m + i, len - i)) > 0) {
				memcpy(clean + o2, m + i, n);
				o2 += n;
			} else {
				memcpy(clean + o2, "\xef\xbf\xbd", 3);
				o2 += 3;
			}
		}
		clean[o2] = '\0';
		if (json_object_set_new(o, "error", json_stringn(clean, o2)) != 0)
			goto done;
	}
	out = json_dumps(o, JSON_COMPACT);
done:
	free(clean);
	json_decref(o);
	return out;
}

int
mqtt_value_text(const struct value *v, char *buf, size_t len)
{
	char t[64];
	const char *s = v->type == VT_STRING ? (v->s ? v->s : "") : value_format(v, t, sizeof(t));
	size_t n = strlen(s);

	if (n >= len)
		return -1;
	memcpy(buf, s, n + 1);
	return (int)n;
}

/* --- the entry points: each message, however errlen cuts it, stays UTF-8 --- */

/* rc, after cutting err before a sequence that snprintf cut in half (every byte from the
 * input went through excerpt or a UTF-8 check, so only the end can be broken). */
static int
err_utf8(int rc, char *err, size_t errlen)
{
	if (rc != 0 && errlen > 0) {
		size_t n = strlen(err);

		err[utf8_bad((const uint8_t *)err, n)] = '\0';
	}
	return rc;
}

int
mqtt_jpath_parse(const char *s, struct mqtt_jpath *out, char *err, size_t errlen)
{
	return err_utf8(jpath_parse(s, out, err, errlen), err, errlen);
}

int
mqtt_tag_addr_parse(const char *s, struct mqtt_tag_addr *out, char *err, size_t errlen)
{
	return err_utf8(addr_parse(s, out, err, errlen), err, errlen);
}

json_t *
mqtt_json_load(const uint8_t *payload, size_t len, char *err, size_t errlen)
{
	json_t *j = payload_load(payload, len, err, errlen);

	err_utf8(j == NULL, err, errlen);
	return j;
}

int
mqtt_json_value(json_t *root, const struct mqtt_jpath *path, enum vtype t, struct value *v,
    char *err, size_t errlen)
{
	return err_utf8(value_at(root, path, t, v, err, errlen), err, errlen);
}

int
mqtt_text_value(enum vtype t, const uint8_t *payload, size_t len, struct value *v,
    char *err, size_t errlen)
{
	return err_utf8(text_parse(t, payload, len, v, err, errlen), err, errlen);
}

int
mqtt_json_time(json_t *root, const struct mqtt_jpath *path, enum mqtt_time_format fmt,
    int64_t *ms, char *err, size_t errlen)
{
	return err_utf8(time_at(root, path, fmt, ms, err, errlen), err, errlen);
}

int
mqtt_command_parse(enum vtype t, bool json, const uint8_t *payload, size_t len,
    struct value *v, int64_t *issued_ms, char *err, size_t errlen)
{
	return err_utf8(command_parse(t, json, payload, len, v, issued_ms, err, errlen), err, errlen);
}
