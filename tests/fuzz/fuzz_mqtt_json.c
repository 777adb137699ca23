/* fuzz_mqtt_json.c: libFuzzer target for the mqtt-client payload module (mqtt_json.c).
 * The first byte picks what the rest is:
 *   0  a tag address ("T=...;JA=..."); a parsed path, written back with escapes, must
 *      parse again to the same steps
 *   1  "PATH\nJSON": the JSON payload read at PATH as every type and as every time
 *      format; a value must keep its type's invariants and survive its text form
 *   2  a command (second byte: type and text/JSON) and a response carrying the bytes
 *   3  an ISO 8601 date-time, cross-checked with value_parse and time_format
 *   4  a text payload as every type
 * Inputs are not NUL-terminated: each mode copies what it needs. */
#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TIME_MIN_MS (-62167219200000LL - 86400000LL) /* years 0000..9999, with an offset */
#define TIME_MAX_MS (253402300799999LL + 86400000LL)

static bool
utf8_ok(const char *s)
{
	json_t *j = json_string(s); /* jansson checks UTF-8 on its own */
	bool ok = j != NULL;

	json_decref(j);
	return ok;
}

/* A value's invariants, and its text form read back as the same value. */
static void
check_value(const struct value *v, enum vtype t)
{
	char buf[128], err[256];
	struct value w;
	int n;

	assert(v->type == t);
	switch (t) {
	case VT_BOOL:
		assert(v->i == 0 || v->i == 1);
		break;
	case VT_DPI:
		assert(v->i >= 0 && v->i <= 3);
		break;
	case VT_FLOAT:
		assert(isfinite(v->f));
		break;
	case VT_STRING:
		assert(v->s && utf8_ok(v->s));
		break;
	case VT_TIME:
		assert(v->i >= TIME_MIN_MS && v->i <= TIME_MAX_MS);
		break;
	default:
		break;
	}
	if (t == VT_STRING)
		return;
	n = mqtt_value_text(v, buf, sizeof(buf));
	assert(n > 0 && (size_t)n == strlen(buf));
	if (t == VT_TIME && (v->i < -62167219200000LL || v->i > 253402300799999LL))
		return; /* the text form would be outside 0000..9999 */
	assert(mqtt_text_value(t, (const uint8_t *)buf, (size_t)n, &w, err, sizeof(err)) == 0);
	assert(value_equal(v, &w) || (t == VT_FLOAT && v->f == 0.0 && w.f == 0.0));
	value_clear(&w);
}

/* p written back as text, keys escaped. */
static char *
jpath_text(const struct mqtt_jpath *p)
{
	size_t cap = 16, o = 0;
	char *s = malloc(cap);

	for (int k = 0; k < p->n; k++) {
		const char *key = p->step[k].key;
		size_t need = key ? 2 * strlen(key) + 2 : 24;

		if (o + need + 1 > cap) {
			cap = 2 * (o + need + 1);
			s = realloc(s, cap);
		}
		if (!key) {
			o += (size_t)snprintf(s + o, cap - o, "[%zu]", p->step[k].index);
			continue;
		}
		if (k)
			s[o++] = '.';
		for (; *key; key++) {
			if (strchr(".[]\\;", *key))
				s[o++] = '\\';
			s[o++] = *key;
		}
	}
	s[o] = '\0';
	return s;
}

static void
fuzz_addr(const char *s)
{
	struct mqtt_tag_addr a;
	struct mqtt_jpath p;
	char err[256];

	if (mqtt_tag_addr_parse(s, &a, err, sizeof(err)) != 0) {
		assert(err[0] && utf8_ok(err) && a.topic == NULL && a.ja.step == NULL);
		return;
	}
	assert(!a.topic || (a.topic[0] && !strpbrk(a.topic, "+#;")));
	assert(a.has_ja == (a.ja.text != NULL));
	for (int k = 0; k < a.ja.n; k++)
		assert(a.ja.step[k].key ? a.ja.step[k].key[0] != '\0' : a.ja.step[k].index >= 1);
	if (a.has_ja) {
		char *t = jpath_text(&a.ja);

		assert(mqtt_jpath_parse(t, &p, err, sizeof(err)) == 0);
		assert(p.n == a.ja.n);
		for (int k = 0; k < p.n; k++) {
			assert(!p.step[k].key == !a.ja.step[k].key);
			assert(p.step[k].key ? strcmp(p.step[k].key, a.ja.step[k].key) == 0 :
			    p.step[k].index == a.ja.step[k].index);
		}
		mqtt_jpath_free(&p);
		free(t);
	}
	mqtt_tag_addr_free(&a);
	assert(a.topic == NULL && a.ja.step == NULL && a.ja.text == NULL);
}

static void
fuzz_json(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	size_t plen = nl ? (size_t)(nl - data) : 0;
	char *path = strndup((const char *)data, plen), err[256];
	struct mqtt_jpath p;
	json_t *root;

	if (mqtt_jpath_parse(path, &p, err, sizeof(err)) != 0) {
		free(path);
		return;
	}
	root = mqtt_json_load(data + plen + (nl != NULL), size - plen - (nl != NULL), err, sizeof(err));
	assert(root || (err[0] && utf8_ok(err)));
	if (root) {
		for (int t = VT_BOOL; t <= VT_TIME; t++) {
			struct value v;

			if (mqtt_json_value(root, &p, (enum vtype)t, &v, err, sizeof(err)) == 0) {
				check_value(&v, (enum vtype)t);
				value_clear(&v);
			} else {
				assert(err[0] && utf8_ok(err) && (t != VT_STRING || v.s == NULL));
			}
		}
		for (int f = MQTT_TIME_EPOCH_S; f <= MQTT_TIME_ISO8601; f++) {
			int64_t ms;

			if (mqtt_json_time(root, &p, (enum mqtt_time_format)f, &ms, err, sizeof(err)) == 0)
				assert(ms >= TIME_MIN_MS && ms <= TIME_MAX_MS);
			else
				assert(err[0] && utf8_ok(err));
		}
		json_decref(root);
	}
	mqtt_jpath_free(&p);
	free(path);
}

static void
fuzz_command(const uint8_t *data, size_t size)
{
	enum vtype t;
	struct value v;
	int64_t at;
	char err[256], *s, *r;
	json_t *j;

	if (size < 1)
		return;
	t = (enum vtype)((data[0] & 0x7f) % 6);
	if (mqtt_command_parse(t, data[0] & 0x80, data + 1, size - 1, &v, &at, err, sizeof(err)) == 0) {
		check_value(&v, t);
		assert(at == 0 || (at >= TIME_MIN_MS && at <= TIME_MAX_MS));
		value_clear(&v);
	} else {
		assert(err[0] && utf8_ok(err) && at == 0);
	}
	/* the response carries any bytes (up to a NUL) as valid JSON */
	s = strndup((const char *)data + 1, size - 1);
	r = mqtt_command_response(false, s);
	assert(r && (j = json_loads(r, 0, NULL)));
	assert(json_is_false(json_object_get(j, "ok")));
	assert(json_string_length(json_object_get(j, "error")) >= strlen(s));
	json_decref(j);
	free(r);
	free(s);
}

static void
fuzz_iso(const char *s)
{
	int64_t ms;
	struct value v;
	char err[256], buf[64];

	if (value_parse_iso8601(s, &ms, NULL, 0) != 0)
		return;
	assert(ms >= TIME_MIN_MS && ms <= TIME_MAX_MS);
	/* value.c's own reader takes the same text to the same time (but for its looser
	 * second 60) */
	if (!strstr(s, ":60") && value_parse(VT_TIME, s, &v, err, sizeof(err)) == 0)
		assert(v.i == ms);
	/* time_format's text reads back, to the millisecond */
	if (ms >= -62167219200000LL && ms <= 253402300799999LL && ms != 0) {
		int64_t back;

		time_format(ms, buf, sizeof(buf));
		assert(value_parse_iso8601(buf, &back, NULL, 0) == 0 && back == ms);
	}
}

static void
fuzz_text(const uint8_t *data, size_t size)
{
	for (int t = VT_BOOL; t <= VT_TIME; t++) {
		struct value v;
		char err[256];

		if (mqtt_text_value((enum vtype)t, data, size, &v, err, sizeof(err)) == 0) {
			check_value(&v, (enum vtype)t);
			if (t == VT_STRING)
				assert(strlen(v.s) == size && memcmp(v.s, data, size) == 0);
			value_clear(&v);
		} else {
			assert(err[0] && utf8_ok(err));
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s;

	if (size < 1)
		return 0;
	switch (data[0] % 5) {
	case 0:
	case 3:
		s = strndup((const char *)data + 1, size - 1);
		if (data[0] % 5 == 0)
			fuzz_addr(s);
		else
			fuzz_iso(s);
		free(s);
		break;
	case 1:
		fuzz_json(data + 1, size - 1);
		break;
	case 2:
		fuzz_command(data + 1, size - 1);
		break;
	case 4:
		fuzz_text(data + 1, size - 1);
		break;
	}
	return 0;
}
