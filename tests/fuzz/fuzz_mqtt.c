/* fuzz_mqtt.c: libFuzzer target for the MQTT codec. The input is read as a stream of
 * frames (mqtt_frame_len); each frame is decoded as MQTT 3.1.1 and as 5.0, and a packet
 * that decodes must describe, encode (to exactly the size asked for) and decode again to
 * the same packet. The input is also taken as "filter NUL topic" for the topic rules and
 * mqtt_topic_match, whose answer must equal a plain level-by-level matcher's; and as the
 * fields of a packet to encode: what the encoder takes must decode, and encode again to
 * the same bytes. */
#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt_codec.h"

#include "../unit/mqtt_codec_eq.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
recode(const uint8_t *f, size_t n, enum mqtt_version v)
{
	static struct mqtt_packet p, q;
	char err[256], line[1024];
	uint8_t *buf;
	long len;
	const char *diff;

	if (mqtt_decode(f, n, v, &p, err, sizeof(err)) != 0) {
		assert(err[0] != '\0' && p.type == 0 && p.n_subs == 0 && p.props.present == 0);
		return;
	}
	assert(mqtt_describe(&p, line, sizeof(line)) == (int)strlen(line));
	len = mqtt_encode(&p, v, NULL, 0, err, sizeof(err));
	if (len < 0) {
		fprintf(stderr, "decoded %s but cannot encode it: %s\n", line, err);
		abort();
	}
	buf = malloc((size_t)len);
	assert(buf != NULL);
	assert(mqtt_encode(&p, v, buf, (size_t)len, err, sizeof(err)) == len);
	assert(mqtt_frame_len(buf, (size_t)len, (size_t)len, err, sizeof(err)) == len);
	if (mqtt_decode(buf, (size_t)len, v, &q, err, sizeof(err)) != 0) {
		fprintf(stderr, "decoded %s, encoded it, cannot decode that: %s\n", line, err);
		abort();
	}
	diff = mqtt_packet_diff(&p, &q);
	if (diff != NULL) {
		fprintf(stderr, "decoded %s, re-encoded it: %s differs\n", line, diff);
		abort();
	}
	free(buf);
}

/* Input bytes handed out in order (zeros once they run out). */
struct cur {
	const uint8_t *d;
	size_t n, off;
};

static unsigned
take(struct cur *c, int bytes)
{
	unsigned x = 0;

	for (int i = 0; i < bytes; i++)
		x = x << 8 | (c->off < c->n ? c->d[c->off++] : 0);
	return x;
}

static struct mqtt_str
take_str(struct cur *c)
{
	size_t len = take(c, 1) % 24;
	struct mqtt_str s = { (const char *)c->d + c->off, len };

	if (len > c->n - c->off)
		s.len = c->n - c->off;
	c->off += s.len;
	return s;
}

static void
take_props(struct cur *c, struct mqtt_props *pr)
{
	uint64_t raw = (uint64_t)take(c, 4) << 32 | take(c, 4);

	/* mostly the identifiers that exist, sometimes anything */
	pr->present = take(c, 1) < 240 ? raw & 0x7FE97EE0B0EULL : raw;
	pr->payload_format = (uint8_t)(take(c, 1) & 1);
	pr->message_expiry = take(c, 4);
	pr->content_type = take_str(c);
	pr->response_topic = take_str(c);
	pr->correlation_data = (struct mqtt_bin){ (const uint8_t *)pr->content_type.p, pr->content_type.len };
	pr->n_sub_id = (int)(take(c, 1) % 3);
	for (int i = 0; i < pr->n_sub_id; i++)
		pr->sub_id[i] = take(c, 4) & 0x1FFFFFFF;
	pr->session_expiry = take(c, 4);
	pr->receive_maximum = (uint16_t)take(c, 2);
	pr->topic_alias = (uint16_t)take(c, 2);
	pr->maximum_packet_size = take(c, 4);
	pr->maximum_qos = (uint8_t)(take(c, 1) % 3);
	pr->reason_string = take_str(c);
	pr->n_user = (int)(take(c, 1) % 3);
	for (int i = 0; i < pr->n_user; i++)
		pr->user[i] = (struct mqtt_user_prop){ take_str(c), take_str(c) };
}

/* A packet built from the input: when the encoder takes it, the decoder must take what it
 * wrote, and encoding that again must give the same bytes. */
static void
build(const uint8_t *data, size_t size)
{
	static struct mqtt_packet p, q;
	static uint8_t a[1 << 12], b[1 << 12];
	struct cur c = { data, size, 0 };
	enum mqtt_version v = take(&c, 1) & 1 ? MQTT_V5 : MQTT_V311;
	unsigned f = take(&c, 1);
	char err[256];
	long n, m;

	memset(&p, 0, sizeof(p));
	p.type = (enum mqtt_type)(1 + take(&c, 1) % 14);
	p.qos = f & 3;
	p.dup = f & 4;
	p.retain = f & 8;
	p.session_present = f & 16;
	p.packet_id = (uint16_t)take(&c, 2);
	p.reason_code = (uint8_t)take(&c, 1);
	p.topic = take_str(&c);
	p.n_subs = (int)(take(&c, 1) % 4);
	for (int i = 0; i < p.n_subs; i++)
		p.subs[i] = (struct mqtt_sub){ take_str(&c), (uint8_t)take(&c, 1) };
	p.n_codes = (int)(take(&c, 1) % 4);
	for (int i = 0; i < p.n_codes; i++)
		p.codes[i] = (uint8_t)take(&c, 1);
	if (p.type == MQTT_CONNECT) {
		p.connect.client_id = take_str(&c);
		p.connect.clean_start = f & 32;
		p.connect.will = f & 64;
		p.connect.will_qos = (uint8_t)(take(&c, 1) % 3);
		p.connect.will_retain = f & 128;
		p.connect.will_topic = take_str(&c);
		p.connect.has_username = take(&c, 1) & 1;
		p.connect.username = take_str(&c);
		p.connect.has_password = take(&c, 1) & 1;
		if (p.connect.will)
			take_props(&c, &p.connect.will_props);
	}
	if (take(&c, 1) & 1)
		take_props(&c, &p.props);
	p.payload = (struct mqtt_bin){ data + c.off, size - c.off };
	p.connect.will_payload = p.payload;
	p.connect.password = p.payload;

	n = mqtt_encode(&p, v, a, sizeof(a), err, sizeof(err));
	if (n < 0 || (size_t)n > sizeof(a))
		return;
	if (mqtt_decode(a, (size_t)n, v, &q, err, sizeof(err)) != 0) {
		fprintf(stderr, "encoded a %s that does not decode: %s\n", mqtt_type_name(p.type), err);
		abort();
	}
	m = mqtt_encode(&q, v, b, sizeof(b), err, sizeof(err));
	if (m != n || memcmp(a, b, (size_t)n) != 0) {
		fprintf(stderr, "%s: decoded and encoded again, the bytes differ (%ld, %ld): %s\n",
		    mqtt_type_name(p.type), n, m, m < 0 ? err : "");
		abort();
	}
}

/* The reference: split both at '/', compare level by level (4.7.1, 4.7.2). */
static bool
ref_match(const char *f, size_t flen, const char *t, size_t tlen)
{
	size_t fi = 0, ti = 0;

	if (tlen > 0 && t[0] == '$' && flen > 0 && (f[0] == '+' || f[0] == '#'))
		return false;
	for (;;) {
		size_t fe = fi, te = ti;

		while (fe < flen && f[fe] != '/')
			fe++;
		while (te < tlen && t[te] != '/')
			te++;
		if (fe - fi == 1 && f[fi] == '#')
			return true;
		if (!(fe - fi == 1 && f[fi] == '+') &&
		    (fe - fi != te - ti || memcmp(f + fi, t + ti, fe - fi) != 0))
			return false;
		if (fe == flen && te == tlen)
			return true;
		if (te == tlen) /* the topic ends: only "/#" may follow in the filter */
			return flen - fe == 2 && f[fe + 1] == '#';
		if (fe == flen)
			return false;
		fi = fe + 1;
		ti = te + 1;
	}
}

static void
topics(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, 0, size);
	char err[256], *filter;
	size_t flen;
	const char *topic;
	size_t tlen;

	(void)mqtt_check_utf8((const char *)data, size, err, sizeof(err));
	(void)mqtt_check_topic_name((const char *)data, size, err, sizeof(err));
	if (nul == NULL)
		return;
	flen = (size_t)(nul - data);
	topic = (const char *)nul + 1;
	tlen = size - flen - 1;
	if (mqtt_check_topic_filter((const char *)data, flen, err, sizeof(err)) != 0 ||
	    mqtt_check_topic_name(topic, tlen, err, sizeof(err)) != 0)
		return;
	filter = malloc(flen + 1);
	assert(filter != NULL);
	memcpy(filter, data, flen + 1);
	if (mqtt_topic_match(filter, topic, tlen) != ref_match(filter, flen, topic, tlen)) {
		fprintf(stderr, "match(\"%s\", \"%.*s\") differs from the reference\n", filter,
		    (int)tlen, topic);
		abort();
	}
	free(filter);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	size_t off = 0;

	while (off < size) {
		long n = mqtt_frame_len(data + off, size - off, 1 << 20, err, sizeof(err));

		if (n <= 0)
			break;
		assert((size_t)n <= size - off);
		recode(data + off, (size_t)n, MQTT_V311);
		recode(data + off, (size_t)n, MQTT_V5);
		off += (size_t)n;
	}
	/* a whole input that is not one frame must be refused */
	if (size > 0 && off != size) {
		struct mqtt_packet p;

		(void)mqtt_decode(data, size, MQTT_V5, &p, err, sizeof(err));
	}
	topics(data, size);
	build(data, size);
	return 0;
}
