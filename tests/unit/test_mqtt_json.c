/* test_mqtt_json.c: the mqtt-client payload module (mqtt_json.h): addresses, JSON paths,
 * conversions by type with every error, ISO 8601 times (dates checked against `date -u -d`
 * by hand and against days counted from the epoch), commands and their responses. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mqtt_json.h"

static char err[256];

#define P(s) s, sizeof(s) - 1 /* a payload and its length */

/* The value at path in the JSON text js as type t; 0 or -1 (err). */
static int
jv(const char *js, const char *path, enum vtype t, struct value *v)
{
	struct mqtt_jpath p;
	json_t *root;
	int rc;

	memset(v, 0, sizeof(*v));
	err[0] = '\0';
	if (!(root = mqtt_json_load((const uint8_t *)js, strlen(js), err, sizeof(err))))
		return -2;
	if (mqtt_jpath_parse(path, &p, err, sizeof(err)) != 0) {
		json_decref(root);
		return -3;
	}
	rc = mqtt_json_value(root, &p, t, v, err, sizeof(err));
	mqtt_jpath_free(&p);
	json_decref(root);
	return rc;
}

static int64_t
jvi(const char *js, const char *path, enum vtype t)
{
	struct value v;

	return jv(js, path, t, &v) == 0 ? v.i : -999;
}

/* The error of a conversion that must fail. */
static struct value last; /* jerr's value, cleared by the failed conversion */

static const char *
jerr(const char *js, const char *path, enum vtype t)
{
	if (jv(js, path, t, &last) == 0) {
		value_clear(&last);
		return "(no error)";
	}
	return err;
}

static const char *
jstr(const char *js, const char *path)
{
	static char buf[256];
	struct value v;

	if (jv(js, path, VT_STRING, &v) != 0)
		return err;
	snprintf(buf, sizeof(buf), "%s", v.s);
	value_clear(&v);
	return buf;
}

static const char *
addr_err(const char *s)
{
	struct mqtt_tag_addr a;

	if (mqtt_tag_addr_parse(s, &a, err, sizeof(err)) == 0) {
		mqtt_tag_addr_free(&a);
		return "(no error)";
	}
	return err;
}

static int64_t
iso(const char *s)
{
	int64_t ms;

	return value_parse_iso8601(s, &ms, NULL, 0) == 0 ? ms : -1;
}

static int64_t
jtime(const char *js, const char *path, enum mqtt_time_format f)
{
	struct mqtt_jpath p;
	json_t *root = mqtt_json_load((const uint8_t *)js, strlen(js), err, sizeof(err));
	int64_t ms = -1;

	if (!root || mqtt_jpath_parse(path, &p, err, sizeof(err)) != 0) {
		json_decref(root);
		return -2;
	}
	if (mqtt_json_time(root, &p, f, &ms, err, sizeof(err)) != 0)
		ms = -1;
	mqtt_jpath_free(&p);
	json_decref(root);
	return ms;
}

static int
cmd(enum vtype t, bool json, const char *s, struct value *v, int64_t *issued)
{
	return mqtt_command_parse(t, json, (const uint8_t *)s, strlen(s), v, issued, err, sizeof(err));
}

static int
text(enum vtype t, const char *s, size_t len, struct value *v)
{
	return mqtt_text_value(t, (const uint8_t *)s, len, v, err, sizeof(err));
}

static void
test_paths(void)
{
	struct mqtt_jpath p;
	struct mqtt_tag_addr a;

	CHECK_INT(mqtt_jpath_parse("a.b[1].c", &p, err, sizeof(err)), 0);
	CHECK_INT(p.n, 4);
	CHECK_STR(p.step[0].key, "a");
	CHECK_STR(p.step[1].key, "b");
	CHECK(p.step[2].key == NULL && p.step[2].index == 1);
	CHECK_STR(p.step[3].key, "c");
	CHECK_STR(p.text, "a.b[1].c");
	mqtt_jpath_free(&p);
	CHECK_INT(mqtt_jpath_parse("[1].a[2][3]", &p, err, sizeof(err)), 0);
	CHECK(p.n == 4 && !p.step[0].key && p.step[0].index == 1 && p.step[3].index == 3);
	mqtt_jpath_free(&p);
	/* keys with special characters: spaces, UTF-8, '$', and the escapes */
	CHECK_INT(mqtt_jpath_parse("$sys.temp °C.a\\.b\\[x\\]\\\\\\;", &p, err, sizeof(err)), 0);
	CHECK_INT(p.n, 3);
	CHECK_STR(p.step[0].key, "$sys");
	CHECK_STR(p.step[1].key, "temp °C");
	CHECK_STR(p.step[2].key, "a.b[x]\\;");
	mqtt_jpath_free(&p);
	CHECK_INT(mqtt_jpath_parse("", &p, err, sizeof(err)), 0);
	CHECK_INT(p.n, 0);
	mqtt_jpath_free(&p);
	CHECK_INT(mqtt_jpath_parse(".", &p, err, sizeof(err)), 0);
	CHECK_INT(p.n, 0);
	mqtt_jpath_free(&p);

	/* path errors name the path and the character (from 1) */
	static const char *const perr[][2] = {
		{ "a..b", "a..b: empty key at 3" }, { ".a", ".a: empty key at 1" },
		{ "a.", "a.: empty key at 3" }, { "a.[1]", "a.[1]: empty key at 3" },
		{ "a[0]", "a[0]: index 0 at 3 (indexes start at 1)" },
		{ "a[]", "a[]: expected an index (1, 2, ...) at 3" },
		{ "a[-1]", "a[-1]: expected an index (1, 2, ...) at 3" },
		{ "a[1", "a[1: expected ']' at 4" }, { "a[1x]", "a[1x]: expected ']' at 4" },
		{ "a[1]b", "a[1]b: expected '.' or '[' at 5" },
		{ "a]", "a]: unexpected ']' at 2 (write \\] in a key)" },
		{ "a\\x", "a\\x: bad escape at 2 (\\. \\[ \\] \\\\ \\;)" },
		{ "a\\", "a\\: bad escape at 2 (\\. \\[ \\] \\\\ \\;)" },
		{ "a[99999999999999999999999]", "a[99999999999999999999999]: index too large at 3" },
		{ "a\xff", "a?: not UTF-8: byte 0xff at 2" },
	};
	for (size_t k = 0; k < sizeof(perr) / sizeof(perr[0]); k++) {
		p.n = 9;
		CHECK_INT(mqtt_jpath_parse(perr[k][0], &p, err, sizeof(err)), -1);
		CHECK_STR(err, perr[k][1]);
		CHECK(p.n == 0 && p.step == NULL && p.text == NULL);
	}

	/* addresses */
	CHECK_INT(mqtt_tag_addr_parse("T=plant/boiler/1;JA=a.b[1].c", &a, err, sizeof(err)), 0);
	CHECK_STR(a.topic, "plant/boiler/1");
	CHECK(a.has_ja && a.ja.n == 4);
	CHECK_STR(a.ja.text, "a.b[1].c");
	mqtt_tag_addr_free(&a);
	CHECK_INT(mqtt_tag_addr_parse("JA=x\\;y;T=a b/c", &a, err, sizeof(err)), 0);
	CHECK_STR(a.topic, "a b/c");
	CHECK_STR(a.ja.step[0].key, "x;y");
	mqtt_tag_addr_free(&a);
	CHECK_INT(mqtt_tag_addr_parse("T=/", &a, err, sizeof(err)), 0);
	CHECK(!a.has_ja && a.ja.n == 0 && a.ja.text == NULL);
	CHECK_STR(a.topic, "/");
	mqtt_tag_addr_free(&a);
	CHECK_INT(mqtt_tag_addr_parse("JA=[2]", &a, err, sizeof(err)), 0);
	CHECK(a.topic == NULL && a.has_ja && a.ja.step[0].index == 2);
	mqtt_tag_addr_free(&a);
	CHECK_INT(mqtt_tag_addr_parse("JA=", &a, err, sizeof(err)), 0);
	CHECK(a.has_ja && a.ja.n == 0);
	mqtt_tag_addr_free(&a);
	CHECK_INT(mqtt_tag_addr_parse("", &a, err, sizeof(err)), 0);
	CHECK(a.topic == NULL && !a.has_ja);
	mqtt_tag_addr_free(&a);

	static const char *const aerr[][2] = {
		{ "JA=a..b", "JA=a..b: empty key at 3" },
		{ "T=a;JA=b[0]", "JA=b[0]: index 0 at 3 (indexes start at 1)" },
		{ "t=a", "unknown key 't' at 1 (T, JA; case matters)" },
		{ "T=a;X=1", "unknown key 'X' at 5 (T, JA; case matters)" },
		{ "T=a; JA=b", "unknown key ' JA' at 5 (T, JA; case matters)" },
		{ "plant/1", "'plant/1' at 1: expected KEY=VALUE (T=topic, JA=path)" },
		{ "T=a;", "empty part at 5" }, { "T=a;;JA=b", "empty part at 5" },
		{ "T=a;T=b", "T= given twice" }, { "JA=a;JA=b", "JA= given twice" },
		{ "T=a;x\xff=1", "unknown key 'x?' at 5 (T, JA; case matters)" },
		{ "JA=a;0123456789012345678901234567890123456789XYZ", "'0123456789012345678901234567890123456789..."
		    "' at 6: expected KEY=VALUE (T=topic, JA=path)" },
	};
	for (size_t k = 0; k < sizeof(aerr) / sizeof(aerr[0]); k++)
		CHECK_STR(addr_err(aerr[k][0]), aerr[k][1]);
	/* the topic is an MQTT topic name (4.7): no wildcards, not empty */
	CHECK_STR(addr_err("T=a/+/b"), "T=a/+/b: topic name contains '+' (4.7.1)");
	CHECK_STR(addr_err("T=a/#"), "T=a/#: topic name contains '#' (4.7.1)");
	CHECK_STR(addr_err("T=;JA=a"), "T=: topic name is empty (4.7.3)");
	CHECK_STR(addr_err("T=a\xff" "b"),
	    "T=a?b: topic name: byte 0xFF at byte 1 cannot start a UTF-8 character (1.5.4)");
}

static void
test_values(void)
{
	struct value v;
	const char *doc = "{\"a\":{\"b\":[{\"c\":21.5}]},\"n\":null,\"s\":\"x\",\"l\":[1,2,3]}";
	const char *dpi = "not a dpi (0 intermediate, 1 off, 2 on, 3 faulty, or false/true)";
	/* conversions that hold: the JSON, the path, the type, v.i */
	static const struct { const char *js, *path; enum vtype t; int64_t i; } ok[] = {
		{ "[[5,6],[7,{\"k\":8}]]", "[2][2].k", VT_INT, 8 }, { "[{\"a\":3}]", "[1].a", VT_INT, 3 },
		{ "42", "", VT_INT, 42 }, { "42", ".", VT_INT, 42 }, /* a bare value, the whole document */
		{ "{\"a.b\":{\"[1]\":{\"\\\\\":7}}}", "a\\.b.\\[1\\].\\\\", VT_INT, 7 },
		{ "{\"t°\":{\"x y\":1}}", "t°.x y", VT_INT, 1 },
		/* bool: true/false, 0/1 */
		{ "true", "", VT_BOOL, 1 }, { "false", "", VT_BOOL, 0 }, { "1", "", VT_BOOL, 1 },
		{ "0", "", VT_BOOL, 0 }, { "1.0", "", VT_BOOL, 1 },
		/* dpi: 0..3, or false/true as off/on */
		{ "3", "", VT_DPI, 3 }, { "0", "", VT_DPI, 0 }, { "true", "", VT_DPI, 2 }, { "false", "", VT_DPI, 1 },
		/* int: integers; floats without a fraction within int64 */
		{ "-9223372036854775808", "", VT_INT, INT64_MIN }, { "9223372036854775807", "", VT_INT, INT64_MAX },
		{ "1e3", "", VT_INT, 1000 }, { "-2.0", "", VT_INT, -2 },
		{ "-9223372036854775808.0", "", VT_INT, INT64_MIN },
		/* time: ms since the epoch (fractions rounded), or ISO 8601 */
		{ "1764504000123", "", VT_TIME, 1764504000123LL }, { "1764504000123.6", "", VT_TIME, 1764504000124LL },
		{ "\"2025-11-30T12:00:00.123Z\"", "", VT_TIME, 1764504000123LL },
		{ "253402300799999", "", VT_TIME, 253402300799999LL },
	};
	/* conversions that fail, and their messages */
	static const struct { const char *js, *path; enum vtype t; const char *err; } bad[] = {
		{ "{\"a\":{\"b\":[{}]}}", "a.b[2].c", VT_FLOAT, "JA=a.b[2].c: no element 2 (array of 1)" },
		{ "{\"a\":{}}", "a.x", VT_FLOAT, "JA=a.x: no member 'x' in a" },
		{ "{}", "x", VT_FLOAT, "JA=x: no member 'x'" },
		{ "{\"a\":{\"b\":[1]}}", "a.b.c", VT_FLOAT, "JA=a.b.c: a.b is array of 1, not an object" },
		{ "{\"s\":\"x\"}", "s[1]", VT_FLOAT, "JA=s[1]: s is string \"x\", not an array" },
		{ "{}", "[1]", VT_FLOAT, "JA=[1]: the payload is object, not an array" },
		{ "{\"a\":[{\"c\":21.5}]}", "a[1].c.d", VT_FLOAT, "JA=a[1].c.d: a[1].c is 21.5, not an object" },
		{ "\"x\"", "", VT_INT, "payload: string \"x\", not an integer" },
		{ "2", "", VT_BOOL, "payload: 2, not a bool (true, false, 0 or 1)" },
		{ "{\"x\":\"true\"}", "x", VT_BOOL, "JA=x: string \"true\", not a bool (true, false, 0 or 1)" },
		{ "{\"x\":null}", "x", VT_BOOL, "JA=x: null, not a bool (true, false, 0 or 1)" },
		{ "4", "", VT_DPI, "payload: 4, " }, { "-1", "", VT_DPI, "payload: -1, " },
		{ "1.5", "", VT_DPI, "payload: 1.5, " },
		{ "1.5", "", VT_INT, "payload: 1.5 has a fraction, not an integer" },
		{ "9223372036854775808.0", "", VT_INT,
		    "payload: 9.2233720368547758e+18 is outside the 64-bit integer range" },
		{ "1e300", "", VT_INT, "payload: 1.0000000000000001e+300 is outside the 64-bit integer range" },
		{ "true", "", VT_INT, "payload: true, not an integer" },
		{ "[1]", "", VT_INT, "payload: array of 1, not an integer" },
		{ "{\"v\":\"21.5\"}", "v", VT_FLOAT, "JA=v: string \"21.5\", not a number" },
		{ "{\"v\":{}}", "v", VT_FLOAT, "JA=v: object, not a number" },
		{ "\"2026-02-30T00:00:00Z\"", "", VT_TIME,
		    "payload: \"2026-02-30T00:00:00Z\" is not an ISO 8601 date-time: no day 30 in 2026-02" },
		{ "1e20", "", VT_TIME, "payload: 1e+20 ms is outside the years 0000 to 9999" },
		{ "253402300800000", "", VT_TIME, "payload: 253402300800000 ms is outside the years 0000 to 9999" },
		{ "true", "", VT_TIME, "payload: true, not a time (ms since the epoch, or an ISO 8601 string)" },
		{ "{\"s\":\"" "0123456789012345678901234567890123456789X\"}", "", VT_INT,
		    "payload: object, not an integer" },
		{ "[\"\\u00e9\\n0123456789012345678901234567890123456789\"]", "[1]", VT_INT,
		    "JA=[1]: string \"\xc3\xa9?0123456789012345678901234567890123456...\", not an integer" },
	};
	for (size_t k = 0; k < sizeof(ok) / sizeof(ok[0]); k++) {
		CHECK_INT(jvi(ok[k].js, ok[k].path, ok[k].t), ok[k].i);
		if (jvi(ok[k].js, ok[k].path, ok[k].t) != ok[k].i)
			fprintf(stderr, "  ok[%zu]: %s\n", k, err);
	}
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		char want[200];

		snprintf(want, sizeof(want), "%s%s", bad[k].err, bad[k].t == VT_DPI ? dpi : "");
		CHECK_STR(jerr(bad[k].js, bad[k].path, bad[k].t), want);
		CHECK(last.type == bad[k].t && last.i == 0); /* a failed conversion leaves a cleared value */
	}

	CHECK_INT(jv(doc, "a.b[1].c", VT_FLOAT, &v), 0);
	CHECK(v.type == VT_FLOAT && v.f == 21.5);
	/* deep nesting: 200 levels of objects and arrays */
	char js[2000], path[2000];
	size_t o = 0, q = 0;

	for (int k = 0; k < 100; k++) {
		o += (size_t)snprintf(js + o, sizeof(js) - o, "{\"k\":[");
		q += (size_t)snprintf(path + q, sizeof(path) - q, "%sk[1]", k ? "." : "");
	}
	o += (size_t)snprintf(js + o, sizeof(js) - o, "-9");
	for (int k = 0; k < 100; k++)
		o += (size_t)snprintf(js + o, sizeof(js) - o, "]}");
	CHECK_INT(jvi(js, path, VT_INT), -9);
	/* float: any number */
	CHECK_INT(jv("-7", "", VT_FLOAT, &v), 0);
	CHECK(v.f == -7.0);
	CHECK_INT(jv("1.7976931348623157e308", "", VT_FLOAT, &v), 0);
	CHECK(v.f == 1.7976931348623157e308);
	/* string: strings as they are, other values as compact JSON */
	CHECK_STR(jstr("{\"s\":\"a\\nb \\u00e9\\ud83d\\ude00\"}", "s"), "a\nb \xc3\xa9\xf0\x9f\x98\x80");
	CHECK_STR(jstr("{\"s\": {\"b\": [1, 2.5, null] , \"a\":true}}", "s"), "{\"b\":[1,2.5,null],\"a\":true}");
	CHECK_STR(jstr("12", ""), "12");
	CHECK_STR(jstr("null", ""), "null");
	CHECK_STR(jstr("\"\"", ""), "");
	CHECK_STR(jstr(doc, "x"), "JA=x: no member 'x'");
	/* a message cut by a short err never ends in half a UTF-8 sequence */
	struct mqtt_jpath p;
	json_t *r = json_object();

	CHECK_INT(mqtt_jpath_parse("\xc3\xa9", &p, err, sizeof(err)), 0);
	CHECK_INT(mqtt_json_value(r, &p, VT_INT, &v, err, 5), -1);
	CHECK_STR(err, "JA=");
	CHECK_INT(mqtt_json_value(r, &p, VT_INT, &v, err, 6), -1);
	CHECK_STR(err, "JA=\xc3\xa9");
	mqtt_jpath_free(&p);
	json_decref(r);
	/* long keys: the path so far is cut with "..." */
	CHECK_STR(jerr("{\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\":{\"b\":{\"c\":{\"d\":1}}}}",
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.b.c.d.e.f", VT_INT),
	    "JA=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.b.c.d.e.f: "
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa....b.c.d is 1, not an object");
	/* a string with a NUL character inside is refused (a json_t the loader never makes) */
	json_t *j = json_stringn("a\0b", 3);

	CHECK_INT(mqtt_json_value(j, NULL, VT_STRING, &v, err, sizeof(err)), -1);
	CHECK_STR(err, "payload: string with a NUL character");
	CHECK(v.type == VT_STRING && v.s == NULL);
	json_decref(j);
}

static void
test_load(void)
{
	static const struct { const char *s; size_t len; const char *err; } bad[] = {
		{ P(""), "payload is empty, not JSON" },
		{ P("{\"a\":"), "payload is not JSON: line 1 column 5: unexpected token near end of file" },
		{ P("{\"a\":1}x"), "payload is not JSON: line 1 column 8: end of file expected near 'x'" },
		{ P("{\"a\":1,\"a\":2}"), "payload is not JSON: line 1 column 10: duplicate object key near '\"a\"'" },
		{ P("\"\\u0000\""), "payload is not JSON: line 1 column 8: \\u0000 is not allowed without "
		    "JSON_ALLOW_NUL near '\"\\u0000\"'" },
		{ P("NaN"), "payload is not JSON: line 1 column 3: invalid token near 'NaN'" },
		{ P("[1e400]"), "payload is not JSON: line 1 column 6: real number overflow near '1e400'" },
		{ P("9223372036854775808"),
		    "payload is not JSON: line 1 column 19: too big integer near '9223372036854775808'" },
		{ P("{\"a\":\"\xc3\x28\"}"), "payload is not UTF-8: byte 0xc3 at 7" },
		{ P("\"\xed\xa0\x80\""), "payload is not UTF-8: byte 0xed at 2" },     /* a surrogate */
		{ P("\"\xc0\xaf\""), "payload is not UTF-8: byte 0xc0 at 2" },         /* overlong '/' */
		{ P("\"\xf4\x90\x80\x80\""), "payload is not UTF-8: byte 0xf4 at 2" }, /* past U+10FFFF */
		{ P("\xef\xbb\xbf{}"), "payload is not JSON: line 1 column 1: invalid token near '\xef\xbb\xbf'" },
	};
	uint8_t *huge = malloc(MQTT_JSON_MAX_PAYLOAD + 1);
	json_t *j;

	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		CHECK(mqtt_json_load((const uint8_t *)bad[k].s, bad[k].len, err, sizeof(err)) == NULL);
		CHECK_STR(err, bad[k].err);
	}
	/* nesting: jansson's limit is 2048 levels */
	for (int d = 2048; d <= 2049; d++) {
		memset(huge, '[', (size_t)d);
		memset(huge + d, ']', (size_t)d);
		j = mqtt_json_load(huge, 2 * (size_t)d, err, sizeof(err));
		CHECK((j != NULL) == (d == 2048));
		json_decref(j);
	}
	CHECK_STR(err, "payload is not JSON: line 1 column 2049: maximum parsing depth reached near '['");
	/* size: up to 1 MiB */
	memset(huge, ' ', MQTT_JSON_MAX_PAYLOAD + 1);
	huge[0] = '1';
	j = mqtt_json_load(huge, MQTT_JSON_MAX_PAYLOAD, err, sizeof(err));
	CHECK(j != NULL && json_integer_value(j) == 1);
	json_decref(j);
	CHECK(mqtt_json_load(huge, MQTT_JSON_MAX_PAYLOAD + 1, err, sizeof(err)) == NULL);
	CHECK_STR(err, "JSON payload of 1048577 bytes, over the limit of 1048576");
	free(huge);
}

static void
test_times(void)
{
	/* 2025-11-30T12:00:00Z = 1764504000 s (date -u -d 2025-11-30T12:00:00Z +%s) */
	static const struct { const char *s; int64_t ms; } good[] = {
		{ "2025-11-30T12:00:00Z", 1764504000000LL }, { "2025-11-30t12:00:00z", 1764504000000LL },
		{ "2025-11-30 12:00:00Z", 1764504000000LL },
		{ "2025-11-30T12:00:00", 1764504000000LL }, /* no offset: UTC */
		{ "2025-11-30T12:00:00.1Z", 1764504000100LL }, { "2025-11-30T12:00:00,25Z", 1764504000250LL },
		{ "2025-11-30T12:00:00.123456789Z", 1764504000123LL }, /* cut, not rounded */
		{ "2025-11-30T13:00:00+01:00", 1764504000000LL }, { "2025-11-30T13:00:00+0100", 1764504000000LL },
		{ "2025-11-30T13:00:00+01", 1764504000000LL }, { "2025-11-30T06:30:00.5-05:30", 1764504000500LL },
		{ "2025-11-30T12:00:00-00:00", 1764504000000LL }, { "2025-12-01T11:45:00+23:45", 1764504000000LL },
		{ "1970-01-01T00:00:00Z", 0 }, { "1969-12-31T23:59:59.999Z", -1 },
		{ "0000-01-01T00:00:00Z", -62167219200000LL }, { "9999-12-31T23:59:59.999Z", 253402300799999LL },
		/* leap years: 2024 and 2000 are, 2100 and 1900 are not */
		{ "2024-02-29T00:00:00Z", 1709164800000LL }, { "2024-03-01T00:00:00Z", 1709251200000LL },
		{ "2000-02-29T00:00:00Z", 951782400000LL }, { "2026-12-31T23:59:59Z", 1798761599000LL },
		/* the leap second 2016-12-31T23:59:60Z, as the next second */
		{ "2016-12-31T23:59:60Z", 1483228800000LL }, { "2017-01-01T00:59:60+01:00", 1483228800000LL },
	};
	for (size_t k = 0; k < sizeof(good) / sizeof(good[0]); k++) {
		CHECK_INT(iso(good[k].s), good[k].ms);
		if (iso(good[k].s) != good[k].ms)
			fprintf(stderr, "  '%s'\n", good[k].s);
	}
	/* not date-times */
	const char *bad[] = { "", "2026", "2026-11-30", "2026-11-30T12:00Z", "2026-11-30T12:00:00.Z",
		"2100-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "2026-02-29T00:00:00Z", "2026-02-30T00:00:00Z",
		"2026-04-31T00:00:00Z", "2016-12-31T12:00:60Z", "2016-12-31T23:59:60+01:00",
		"2026-13-01T00:00:00Z", "2026-00-01T00:00:00Z", "2026-11-00T00:00:00Z",
		"2026-11-30T24:00:00Z", "2026-11-30T12:60:00Z", "2026-11-30T12:00:61Z",
		"2026-11-30T12:00:00+24:00", "2026-11-30T12:00:00+01:60", "2026-11-30T12:00:00+1",
		"2026-11-30T12:00:00+01:0", "2026-11-30T12:00:00+010", "2026-11-30T12:00:00ZZ",
		" 2026-11-30T12:00:00Z", "2026-11-30T12:00:00Z ", "2026-11-30X12:00:00Z",
		"+2026-11-30T12:00:00Z", "2026-1-30T12:00:00Z", "2026/11/30T12:00:00Z", "1764504000000" };
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		int64_t ms = 5;

		CHECK_INT(value_parse_iso8601(bad[k], &ms, NULL, 0), -1);
		CHECK_INT(ms, 5); /* untouched */
		if (value_parse_iso8601(bad[k], &ms, NULL, 0) == 0)
			fprintf(stderr, "  accepted '%s'\n", bad[k]);
	}

	/* a payload's own timestamp */
	const char *doc = "{\"ts\":1764504000,\"tms\":1764504000123,\"f\":1764504000.1234,"
	    "\"iso\":\"2025-11-30T13:00:00.5+01:00\",\"m\":{\"t\":[\"2025-11-30T12:00:00Z\"]}}";
	CHECK_INT(jtime(doc, "ts", MQTT_TIME_EPOCH_S), 1764504000000LL);
	CHECK_INT(jtime(doc, "f", MQTT_TIME_EPOCH_S), 1764504000123LL);
	CHECK_INT(jtime(doc, "tms", MQTT_TIME_EPOCH_MS), 1764504000123LL);
	CHECK_INT(jtime(doc, "iso", MQTT_TIME_ISO8601), 1764504000500LL);
	CHECK_INT(jtime(doc, "m.t[1]", MQTT_TIME_ISO8601), 1764504000000LL);
	CHECK_INT(jtime(doc, "iso", MQTT_TIME_EPOCH_MS), -1);
	CHECK_STR(err, "time_field=iso: string \"2025-11-30T13:00:00.5+01:00\", not a number (time_format epoch_ms)");
	CHECK_INT(jtime(doc, "ts", MQTT_TIME_ISO8601), -1);
	CHECK_STR(err, "time_field=ts: 1764504000, not an ISO 8601 string (time_format iso8601)");
	CHECK_INT(jtime(doc, "x", MQTT_TIME_EPOCH_S), -1);
	CHECK_STR(err, "time_field=x: no member 'x'");
	CHECK_INT(jtime(doc, "m.t[2]", MQTT_TIME_ISO8601), -1);
	CHECK_STR(err, "time_field=m.t[2]: no element 2 (array of 1)");
	CHECK_INT(jtime("{\"t\":\"2026-02-30T00:00:00Z\"}", "t", MQTT_TIME_ISO8601), -1);
	CHECK_STR(err, "time_field=t: \"2026-02-30T00:00:00Z\" is not an ISO 8601 date-time: no day 30 in 2026-02");
	CHECK_INT(jtime("{\"t\":\"2026-11-30T12:00:00+01:60\"}", "t", MQTT_TIME_ISO8601), -1);
	CHECK_STR(err, "time_field=t: \"2026-11-30T12:00:00+01:60\" is not an ISO 8601 date-time: offset 01:60 out of range");
	CHECK_INT(jtime("{\"t\":1e13}", "t", MQTT_TIME_EPOCH_S), -1);
	CHECK_STR(err, "time_field=t: 10000000000000 s is outside the years 0000 to 9999");
	CHECK_INT(jtime("{\"t\":-62167219200}", "t", MQTT_TIME_EPOCH_S), -62167219200000LL);
	CHECK_INT(jtime("{\"t\":-62167219201}", "t", MQTT_TIME_EPOCH_S), -1);
	CHECK_INT(jtime("{\"t\":null}", "t", MQTT_TIME_EPOCH_MS), -1);
	CHECK_STR(err, "time_field=t: null, not a number (time_format epoch_ms)");
}

static void
test_text(void)
{
	struct value v;
	char buf[64];

#define TMSG "is not a time (ms since the epoch, or ISO 8601 like 2026-11-30T12:00:00.123Z): "
	static const struct { enum vtype t; const char *s; size_t len; int64_t i; const char *err; } tv[] = {
		{ VT_BOOL, P("true"), 1, NULL }, { VT_BOOL, P("0"), 0, NULL }, { VT_DPI, P("on"), 2, NULL },
		{ VT_INT, P("-12"), -12, NULL }, { VT_TIME, P("1764504000123"), 1764504000123LL, NULL },
		{ VT_TIME, P("2025-11-30T12:00:00Z\r\n"), 1764504000000LL, NULL }, { VT_TIME, P("-5"), -5, NULL },
		{ VT_FLOAT, P("nan"), 0, "'nan' is not a finite number" },
		{ VT_FLOAT, P("-inf"), 0, "'-inf' is not a finite number" },
		{ VT_FLOAT, P("1e999"), 0, "'1e999' is not a number" }, { VT_FLOAT, P(""), 0, "'' is not a number" },
		{ VT_FLOAT, P("21,5"), 0, "'21,5' is not a number" },
		{ VT_BOOL, P("2"), 0, "'2' is not a bool (0, 1, true, false, on, off)" },
		{ VT_INT, P("9223372036854775808"), 0, "'9223372036854775808' is not a 64-bit integer" },
		{ VT_INT, P("1.0"), 0, "'1.0' is not a 64-bit integer" },
		{ VT_STRING, P("a\0b"), 0, "payload has a NUL byte at 2" },
		{ VT_STRING, P("ab\xe2\x82"), 0, "payload is not UTF-8: byte 0xe2 at 3" },
		{ VT_INT, P("1\xff"), 0, "payload is not UTF-8: byte 0xff at 2" },
		{ VT_TIME, P("2026-02-30T00:00:00Z"), 0, "'2026-02-30T00:00:00Z' " TMSG "no day 30 in 2026-02" },
		{ VT_TIME, P("99999999999999999"), 0, "'99999999999999999' ms is outside the years 0000 to 9999" },
		{ VT_TIME, P("12:00"), 0, "'12:00' " TMSG "expected YYYY-MM-DD" },
	};
	for (size_t k = 0; k < sizeof(tv) / sizeof(tv[0]); k++) {
		CHECK_INT(text(tv[k].t, tv[k].s, tv[k].len, &v), tv[k].err ? -1 : 0);
		CHECK(v.type == tv[k].t && v.i == tv[k].i);
		if (v.i != tv[k].i)
			fprintf(stderr, "  tv[%zu]: %lld\n", k, (long long)v.i);
		if (tv[k].err)
			CHECK_STR(err, tv[k].err);
	}
	CHECK_INT(text(VT_FLOAT, P(" 21.5\n"), &v), 0);
	CHECK(v.f == 21.5);
	CHECK_INT(text(VT_STRING, P(" two words "), &v), 0);
	CHECK_STR(v.s, " two words ");
	value_clear(&v);
	CHECK_INT(text(VT_STRING, P(""), &v), 0);
	CHECK_STR(v.s, "");
	value_clear(&v);

	/* a served tag's value as a text payload, and back */
	struct value w = { .type = VT_FLOAT, .f = 21.5 };
	CHECK_INT(mqtt_value_text(&w, buf, sizeof(buf)), 4);
	CHECK_STR(buf, "21.5");
	CHECK_INT(mqtt_value_text(&w, buf, 4), -1);
	CHECK_INT(mqtt_value_text(&w, buf, 5), 4);
	w.f = 0.1;
	mqtt_value_text(&w, buf, sizeof(buf));
	CHECK_STR(buf, "0.1");
	w = (struct value){ .type = VT_INT, .i = INT64_MIN };
	CHECK_INT(mqtt_value_text(&w, buf, sizeof(buf)), 20);
	CHECK_STR(buf, "-9223372036854775808");
	w = (struct value){ .type = VT_BOOL, .i = 1 };
	mqtt_value_text(&w, buf, sizeof(buf));
	CHECK_STR(buf, "true");
	w = (struct value){ .type = VT_DPI, .i = 1 };
	mqtt_value_text(&w, buf, sizeof(buf));
	CHECK_STR(buf, "off");
	CHECK_INT(text(VT_DPI, buf, strlen(buf), &v), 0);
	CHECK_INT(v.i, 1);
	w = (struct value){ .type = VT_TIME, .i = 1764504000123LL };
	mqtt_value_text(&w, buf, sizeof(buf));
	CHECK_STR(buf, "2025-11-30T12:00:00.123Z");
	CHECK_INT(text(VT_TIME, buf, strlen(buf), &v), 0);
	CHECK_INT(v.i, 1764504000123LL);
	w = (struct value){ .type = VT_STRING, .s = "as it is " };
	CHECK_INT(mqtt_value_text(&w, buf, sizeof(buf)), 9);
	CHECK_STR(buf, "as it is ");
	CHECK_INT(mqtt_value_text(&w, buf, 9), -1);
	w.s = NULL;
	CHECK_INT(mqtt_value_text(&w, buf, 1), 0);
	CHECK_INT(mqtt_value_text(&w, buf, 0), -1);
}

static void
test_commands(void)
{
	struct value v;
	int64_t at;
	char *r;

	/* the type, JSON or text, the payload; v.i and the time issued, or the error */
	static const struct { enum vtype t; bool json; const char *s; int64_t i, at; const char *err; } c[] = {
		{ VT_INT, false, "-3", -3, 0, NULL }, { VT_INT, true, "-3", -3, 0, NULL },
		{ VT_INT, true, "{\"value\":-3}", -3, 0, NULL },
		{ VT_INT, true, "{\"time\":\"2025-11-30T12:00:00Z\",\"value\":-3}", -3, 1764504000000LL, NULL },
		{ VT_BOOL, true, "{\"value\":true,\"time\":1764504000123}", 1, 1764504000123LL, NULL },
		{ VT_INT, false, "{\"value\":1}", 0, 0, "'{\"value\":1}' is not a 64-bit integer" },
		{ VT_INT, true, "{\"value\":1.5}", 0, 0, "command value: 1.5 has a fraction, not an integer" },
		{ VT_INT, true, "\"7\"", 0, 0, "command: string \"7\", not an integer" },
		{ VT_INT, true, "{\"value\":1,\"tme\":5}", 0, 0, "command: unknown member 'tme' (value, time)" },
		{ VT_INT, true, "{\"time\":5}", 0, 0,
		    "command: object without member 'value' (a bare value, or {\"value\": V, \"time\": T})" },
		{ VT_INT, true, "{\"value\":1,\"time\":\"yesterday\"}", 0, 0,
		    "command time: \"yesterday\" is not an ISO 8601 date-time: expected YYYY-MM-DD" },
		{ VT_INT, true, "{\"value\":1,\"time\":null}", 0, 0,
		    "command time: null, not ms since the epoch or an ISO 8601 string" },
		{ VT_INT, true, "{\"value\":\"x\",\"time\":5}", 0, 0, "command value: string \"x\", not an integer" },
		{ VT_INT, true, "{\"value\":1,\"time\":1e300}", 0, 0,
		    "command time: 1.0000000000000001e+300 ms is outside the years 0000 to 9999" },
		{ VT_INT, true, "{\"value\":1,\"value\":2}", 0, 0,
		    "payload is not JSON: line 1 column 18: duplicate object key near '\"value\"'" },
		{ VT_INT, true, "", 0, 0, "payload is empty, not JSON" },
	};
	for (size_t k = 0; k < sizeof(c) / sizeof(c[0]); k++) {
		at = 77;
		CHECK_INT(cmd(c[k].t, c[k].json, c[k].s, &v, &at), c[k].err ? -1 : 0);
		CHECK(v.type == c[k].t && v.i == c[k].i && at == c[k].at);
		if (c[k].err)
			CHECK_STR(err, c[k].err);
	}
	CHECK_INT(cmd(VT_FLOAT, true, "{\"value\":12.5}", &v, &at), 0);
	CHECK(v.f == 12.5 && at == 0);
	CHECK_INT(cmd(VT_FLOAT, false, " 12.5", &v, &at), 0);
	CHECK(v.f == 12.5 && at == 0);
	CHECK_INT(cmd(VT_STRING, true, "{\"value\":{\"x\":1}}", &v, &at), 0);
	CHECK_STR(v.s, "{\"x\":1}");
	value_clear(&v);
	CHECK_INT(cmd(VT_STRING, true, "\"hi\"", &v, &at), 0);
	CHECK_STR(v.s, "hi");
	value_clear(&v);

	CHECK_STR((r = mqtt_command_response(true, NULL)), "{\"ok\":true}");
	free(r);
	CHECK_STR((r = mqtt_command_response(false, "tag \"x\": timeout\n")),
	    "{\"ok\":false,\"error\":\"tag \\\"x\\\": timeout\\n\"}");
	free(r);
	CHECK_STR((r = mqtt_command_response(false, "bad \xff\xc3 \xc3\xa9 \xed\xa0\x80!")),
	    "{\"ok\":false,\"error\":\"bad \xef\xbf\xbd\xef\xbf\xbd \xc3\xa9 \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd!\"}");
	free(r);
	CHECK_STR((r = mqtt_command_response(false, NULL)), "{\"ok\":false,\"error\":\"failed\"}");
	free(r);
	/* the response is JSON an independent reader takes */
	r = mqtt_command_response(false, "\x80\x01");
	json_t *j = json_loads(r, 0, NULL);
	CHECK(j && json_is_false(json_object_get(j, "ok")));
	CHECK_STR(json_string_value(json_object_get(j, "error")), "\xef\xbf\xbd\x01");
	json_decref(j);
	free(r);
}

int
main(void)
{
	test_paths();
	test_values();
	test_load();
	test_times();
	test_text();
	test_commands();
	return CHECK_DONE();
}
