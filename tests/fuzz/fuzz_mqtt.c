/* fuzz_mqtt.c: libFuzzer target for the MQTT codec. The input is read as a stream of
 * frames (mqtt_frame_len); each frame is decoded as MQTT 3.1.1 and as 5.0, and a packet
 * that decodes must describe, encode (to exactly the size asked for) and decode again to
 * the same packet. The input is also taken as "filter NUL topic" for the topic rules and
 * mqtt_topic_match, whose answer must equal a plain level-by-level matcher's. */
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
		assert(err[0] != '\0');
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
	return 0;
}
