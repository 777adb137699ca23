/* test_json.c: komd's own JSON output (RFC 8259) through jansson: strings from peers made
 * valid UTF-8 (RFC 3629) before jansson sees them, and never cut; values in their JSON
 * forms; floats with the fewest digits that read back as themselves; a tag's object
 * (tag_json, komctl --json get) and what a serving protocol publishes (stag_json). Expected
 * texts are written out by hand from the RFCs' rules, not produced by our own encoder. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>
#include <jansson.h>

#include "check.h"
#include "core.h"

/* j's compact text (j's reference taken), in a static buffer; "(null)" for NULL. */
static const char *
dump(json_t *j)
{
	static char out[4096];
	char *t = value_json_dump(j);

	snprintf(out, sizeof(out), "%s", t ? t : "(null)");
	free(t);
	json_decref(j);
	return out;
}

static const char *
dump_value(struct value v)
{
	return dump(value_json(&v));
}

static void
test_text(void)
{
	/* control bytes escaped by jansson (RFC 8259 clause 7); '"' and '\' escaped */
	CHECK_STR(dump(value_json_text("a\"q\\\n\t\x01")), "\"a\\\"q\\\\\\n\\t\\u0001\"");
	/* valid UTF-8 passes as it is: 2, 3 and 4 bytes (U+00E9, U+20AC, U+1F600) */
	CHECK_STR(dump(value_json_text("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80")), "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
	/* not UTF-8 (RFC 3629 clause 3), each byte as the text \xNN (in JSON "\\xNN"): a lone
	 * continuation byte, 0xff, an overlong '/', a surrogate, past U+10FFFF, a sequence cut
	 * at the end; DEL too */
	CHECK_STR(dump(value_json_text("a\x80" "b\xff")), "\"a\\\\x80b\\\\xff\"");
	CHECK_STR(dump(value_json_text("\xc0\xaf")), "\"\\\\xc0\\\\xaf\"");
	CHECK_STR(dump(value_json_text("\xed\xa0\x80")), "\"\\\\xed\\\\xa0\\\\x80\"");
	CHECK_STR(dump(value_json_text("\xf4\x90\x80\x80")), "\"\\\\xf4\\\\x90\\\\x80\\\\x80\"");
	CHECK_STR(dump(value_json_text("x\xe2\x82")), "\"x\\\\xe2\\\\x82\"");
	CHECK_STR(dump(value_json_text("\x7f")), "\"\\\\x7f\"");
	CHECK_STR(dump(value_json_text(NULL)), "\"\"");

	/* a long string with bad bytes spread through it is kept whole */
	{
		size_t n = 100000;
		char *s = malloc(n + 1);
		json_t *j;
		CHECK(s != NULL);
		for (size_t i = 0; i < n; i++)
			s[i] = i % 1000 == 999 ? (char)0xfe : 'a';
		s[n] = '\0';
		j = value_json_text(s);
		CHECK(j && json_string_length(j) == n + 3 * (n / 1000));
		CHECK(j && memcmp(json_string_value(j) + 996, "aaa\\xfeaaa", 10) == 0);
		json_decref(j);
		free(s);
	}
}

static void
test_values(void)
{
	CHECK_STR(dump_value((struct value){ .type = VT_BOOL, .i = 1 }), "true");
	CHECK_STR(dump_value((struct value){ .type = VT_BOOL, .i = 0 }), "false");
	CHECK_STR(dump_value((struct value){ .type = VT_INT, .i = INT64_MIN }), "-9223372036854775808");
	CHECK_STR(dump_value((struct value){ .type = VT_DPI, .i = 2 }), "\"on\"");
	CHECK_STR(dump_value((struct value){ .type = VT_DPI, .i = 0 }), "\"intermediate\"");
	CHECK_STR(dump_value((struct value){ .type = VT_TIME, .i = 1795428000123 }), "\"2026-11-23T10:00:00.123Z\"");
	CHECK_STR(dump_value((struct value){ .type = VT_STRING, .s = "h\xc3\xa9" "\xff" }), "\"h\xc3\xa9\\\\xff\"");
	/* JSON has no NaN or infinity (RFC 8259 clause 6) */
	CHECK_STR(dump_value((struct value){ .type = VT_FLOAT, .f = NAN }), "null");
	CHECK_STR(dump_value((struct value){ .type = VT_FLOAT, .f = -INFINITY }), "null");
	/* the fewest digits that read back: a float32's decimal as the device meant it */
	CHECK_STR(dump_value((struct value){ .type = VT_FLOAT, .f = 32.876 }), "32.876");
	CHECK_STR(dump_value((struct value){ .type = VT_FLOAT, .f = 0.1 }), "0.1");
	CHECK_STR(dump_value((struct value){ .type = VT_FLOAT, .f = 21.5 }), "21.5");
	CHECK_STR(dump_value((struct value){ .type = VT_FLOAT, .f = -3 }), "-3.0");
	CHECK_STR(dump_value((struct value){ .type = VT_FLOAT, .f = 1e300 }), "1e300");
	CHECK_STR(dump_value((struct value){ .type = VT_FLOAT, .f = 0.1 + 0.2 }), "0.30000000000000004");
	/* a document with a float that needs 17 digits: every float in it reads back */
	{
		json_t *a = json_pack("[f,{s:[f]}]", 0.1, "x", 1.0 / 3);
		char *t = value_json_dump(a);
		json_t *b = t ? json_loads(t, 0, NULL) : NULL;
		CHECK(b && json_real_value(json_array_get(b, 0)) == 0.1);
		CHECK(b && json_real_value(json_array_get(json_object_get(json_array_get(b, 1), "x"), 0)) == 1.0 / 3);
		json_decref(a);
		json_decref(b);
		free(t);
	}
	/* counts: jansson's integers are int64 */
	CHECK_STR(dump(value_json_count(UINT64_MAX)), "9223372036854775807");
	CHECK_STR(dump(value_json_count(42)), "42");
	CHECK(value_json_dump(NULL) == NULL);
	/* compact, members in the order they were set */
	CHECK_STR(dump(json_pack("{s:i,s:[s,n],s:b}", "z", 1, "a", "x", "m", 0)), "{\"z\":1,\"a\":[\"x\",null],\"m\":false}");
}

/* A tag acquired by cli/dev and served twice by srv/s, as komctl and a serving station see it. */
static void
test_tag(void)
{
	struct config conf = { .write_timeout_ms = 50 };
	struct proto_ops srv_ops = { .name = "test-server", .transport = PROTO_LISTEN };
	struct proto_ops cli_ops = { .name = "test-client", .transport = PROTO_CONNECT };
	struct line_conf lc_srv = { .name = "srv" }, lc_cli = { .name = "cli" };
	struct station_conf sc_srv = { .name = "s" }, sc_cli = { .name = "dev" };
	struct tag_conf tc_acq = { .name = "plc.temp", .address = "40001" }, tc_f = { .name = "plc.temp", .address = "f" };
	struct tag_conf tc_g = { .name = "plc.temp", .address = "g\xff" }, tc_s = { .name = "mem.s", .address = "s" };
	struct line lsrv = { .lc = &lc_srv, .ops = &srv_ops, .server = true, .started = true };
	struct line lcli = { .lc = &lc_cli, .ops = &cli_ops, .started = true };
	struct station ssrv = { .line = &lsrv, .sc = &sc_srv }, scli = { .line = &lcli, .sc = &sc_cli };
	struct stag acq = { .st = &scli, .tc = &tc_acq }, srv_f = { .st = &ssrv, .tc = &tc_f };
	struct stag srv_g = { .st = &ssrv, .tc = &tc_g }, srv_s = { .st = &ssrv, .tc = &tc_s };
	struct tag *t, *m;
	char *tj, *sj;

	komd.base = event_base_new();
	komd.conf = &conf;
	tags_init();
	t = tag_create("plc.temp", VT_FLOAT);
	m = tag_create("mem.s", VT_STRING);
	acq.tag = srv_f.tag = srv_g.tag = t;
	srv_s.tag = m;
	tags_bind(&acq, false);
	tags_bind(&srv_f, true);
	tags_bind(&srv_g, true);
	tags_bind(&srv_s, true);

	stag_update(&acq, &(struct value){ .type = VT_FLOAT, .f = 32.876 }, 0, 1795428000123);
	t->ts_recv = 1795428000200; /* the hub's loop time otherwise */
	static const char good[] = "{\"name\":\"plc.temp\",\"type\":\"float\",\"value\":32.876,\"quality\":\"good\","
	    "\"invalid\":false,\"source_time\":\"2026-11-23T10:00:00.123Z\",\"receive_time\":\"2026-11-23T10:00:00.200Z\","
	    "\"acquired_by\":\"cli/dev\",\"source\":{\"line\":\"cli\",\"station\":\"dev\",\"address\":\"40001\"},"
	    "\"served_by\":[{\"line\":\"srv\",\"station\":\"s\",\"address\":\"f\"},"
	    "{\"line\":\"srv\",\"station\":\"s\",\"address\":\"g\\\\xff\"}],\"updates\":1}";
	CHECK_STR(dump(tag_json(t)), good);
	/* what a serving station publishes is komctl's object, for both of its entries */
	CHECK_STR(dump(stag_json(&srv_f)), good);
	CHECK_STR(dump(stag_json(&srv_g)), good);

	/* communication lost: komctl keeps the last value with "invalid": true (an operator sees
	 * what it was); a subscriber gets null with the quality, never a stale value as current */
	stag_set_quality(&acq, Q_INVALID | Q_NOTTOPICAL);
	{
		json_t *a = tag_json(t), *b = stag_json(&srv_f);
		CHECK(a && json_real_value(json_object_get(a, "value")) == 32.876);
		CHECK(b && json_is_null(json_object_get(b, "value")));
		CHECK(b && strcmp(json_string_value(json_object_get(b, "quality")), "IV,NT") == 0);
		CHECK(b && json_is_true(json_object_get(b, "invalid")));
		/* and nothing else differs: the same keys in the same order */
		if (a && b)
			json_object_set_new(a, "value", json_null());
		tj = value_json_dump(a);
		sj = value_json_dump(b);
		CHECK(tj && sj && strcmp(tj, sj) == 0);
		CHECK(sj && strstr(sj, "{\"name\":\"plc.temp\",\"type\":\"float\",\"value\":null,\"quality\":\"IV,NT\","
		    "\"invalid\":true,") == sj);
		free(tj);
		free(sj);
		json_decref(a);
		json_decref(b);
	}

	/* a memory tag: no source; a long string with bytes that are not UTF-8, whole */
	{
		char v[3001];
		memset(v, 'x', sizeof(v) - 1);
		v[sizeof(v) - 1] = '\0';
		v[1500] = (char)0xc3; /* a sequence cut short */
		tag_set(m, &(struct value){ .type = VT_STRING, .s = v }, 0, 0);
		json_t *b = stag_json(&srv_s);
		const char *s = json_string_value(json_object_get(b, "value"));
		CHECK(s && strlen(s) == sizeof(v) - 1 + 3 && memcmp(s + 1499, "x\\xc3x", 6) == 0);
		CHECK(b && json_is_null(json_object_get(b, "acquired_by")) && json_is_null(json_object_get(b, "source")));
		CHECK(b && strcmp(json_string_value(json_object_get(b, "source_time")), "-") == 0);
		json_decref(b);
	}

	tags_unbind(&acq);
	tags_unbind(&srv_f);
	tags_unbind(&srv_g);
	tags_unbind(&srv_s);
	tag_destroy(t);
	tag_destroy(m);
	event_base_free(komd.base);
	komd.base = NULL;
}

int
main(void)
{
	test_text();
	test_values();
	test_tag();
	return CHECK_DONE();
}
