/* komtext_codec.c: komtext, komd's own line-oriented text protocol, used for tests and
 * the demo until the field protocols land. Each frame is one line of printable ASCII of at
 * most 256 bytes, ended by LF or CR LF (no other control byte but TAB):
 *   VAL <addr> <quality> <src_ms> <value...>   server -> client: a tag's state
 *   SET <id> <addr> <value...>                 client -> server: write request
 *   ACK <id> | NAK <id> <reason...>            answer to SET
 *   PING <id> | PONG <id>                      poll / keep-alive
 * addr: 1..64 characters without spaces; id: 0..4294967295; quality: the Q_* bit mask. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "komtext_codec.h"

int
komtext_frame(const uint8_t *buf, size_t len, size_t *flen)
{
	size_t max = len < KOMTEXT_MAX_FRAME ? len : KOMTEXT_MAX_FRAME;

	for (size_t i = 0; i < max; i++) {
		if (buf[i] == '\n') {
			*flen = i + 1;
			return 1;
		}
		if (buf[i] == '\r' && (i + 1 == len || buf[i + 1] == '\n'))
			continue; /* CR only as part of CR LF */
		if ((buf[i] < 0x20 && buf[i] != '\t') || buf[i] == 0x7f)
			return -1;
	}
	return len >= KOMTEXT_MAX_FRAME ? -1 : 0;
}

/* Next space-separated word of s (advanced); NULL at the end. */
static const char *
word(const char **s, const char *end, size_t *wlen)
{
	const char *p = *s, *w;

	while (p < end && *p == ' ')
		p++;
	if (p == end)
		return NULL;
	w = p;
	while (p < end && *p != ' ')
		p++;
	*wlen = (size_t)(p - w);
	*s = p;
	return w;
}

static int
parse_u64(const char *w, size_t n, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (n == 0 || n > 20)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (w[i] < '0' || w[i] > '9')
			return -1;
		if (v > (UINT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (uint64_t)(w[i] - '0');
	}
	if (v > max)
		return -1;
	*out = v;
	return 0;
}

/* The rest of the line after one space: the value or the reason (may contain spaces). */
static int
rest(const char *p, const char *end, char *out, size_t outlen)
{
	if (p < end && *p == ' ')
		p++;
	if (p >= end || (size_t)(end - p) >= outlen)
		return -1;
	memcpy(out, p, (size_t)(end - p));
	out[end - p] = '\0';
	return 0;
}

int
komtext_parse(const char *frame, size_t len, struct komtext_msg *m, char *err, size_t errlen)
{
	const char *p = frame, *end = frame + len, *w;
	size_t n;
	uint64_t u;

	memset(m, 0, sizeof(*m));
	if (len > 0 && frame[len - 1] == '\r')
		end--;
	if ((w = word(&p, end, &n)) == NULL)
		return snprintf(err, errlen, "empty frame"), -1;
#define IS(s) (n == sizeof(s) - 1 && memcmp(w, s, n) == 0)
	if (IS("VAL")) m->kind = KT_VAL;
	else if (IS("SET")) m->kind = KT_SET;
	else if (IS("ACK")) m->kind = KT_ACK;
	else if (IS("NAK")) m->kind = KT_NAK;
	else if (IS("PING")) m->kind = KT_PING;
	else if (IS("PONG")) m->kind = KT_PONG;
	else
		return snprintf(err, errlen, "unknown frame '%.*s'", (int)(n > 16 ? 16 : n), w), -1;
#undef IS
	if (m->kind != KT_VAL) {
		if ((w = word(&p, end, &n)) == NULL || parse_u64(w, n, UINT32_MAX, &u) != 0)
			return snprintf(err, errlen, "bad or missing id"), -1;
		m->id = (uint32_t)u;
	}
	if (m->kind == KT_VAL || m->kind == KT_SET) {
		if ((w = word(&p, end, &n)) == NULL || n >= sizeof(m->addr))
			return snprintf(err, errlen, "bad or missing address"), -1;
		memcpy(m->addr, w, n);
	}
	if (m->kind == KT_VAL) {
		if ((w = word(&p, end, &n)) == NULL || parse_u64(w, n, 0xff, &u) != 0)
			return snprintf(err, errlen, "bad or missing quality"), -1;
		m->quality = (unsigned)u;
		if ((w = word(&p, end, &n)) == NULL || parse_u64(w, n, INT64_MAX, &u) != 0)
			return snprintf(err, errlen, "bad or missing time"), -1;
		m->src_ms = (int64_t)u;
	}
	switch (m->kind) {
	case KT_VAL:
	case KT_SET:
	case KT_NAK:
		if (rest(p, end, m->text, sizeof(m->text)) != 0)
			return snprintf(err, errlen, "missing %s", m->kind == KT_NAK ? "reason" : "value"), -1;
		break;
	default:
		if (word(&p, end, &n) != NULL)
			return snprintf(err, errlen, "trailing data"), -1;
		break;
	}
	return 0;
}

int
komtext_format(const struct komtext_msg *m, char *buf, size_t len)
{
	int n;

	switch (m->kind) {
	case KT_VAL:
		n = snprintf(buf, len, "VAL %s %u %" PRId64 " %s\n", m->addr, m->quality, m->src_ms, m->text);
		break;
	case KT_SET:
		n = snprintf(buf, len, "SET %" PRIu32 " %s %s\n", m->id, m->addr, m->text);
		break;
	case KT_ACK:
		n = snprintf(buf, len, "ACK %" PRIu32 "\n", m->id);
		break;
	case KT_NAK:
		n = snprintf(buf, len, "NAK %" PRIu32 " %s\n", m->id, m->text);
		break;
	case KT_PING:
		n = snprintf(buf, len, "PING %" PRIu32 "\n", m->id);
		break;
	case KT_PONG:
		n = snprintf(buf, len, "PONG %" PRIu32 "\n", m->id);
		break;
	default:
		return -1;
	}
	if (n < 0 || (size_t)n >= len || n > KOMTEXT_MAX_FRAME)
		return -1;
	return n;
}
