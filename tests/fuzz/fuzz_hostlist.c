/* fuzz_hostlist.c: libFuzzer target for the host lists of komd.conf(5) (HOST LISTS):
 * conf_parse_hostlist in client and listen mode, and hostspec_format on what it returns.
 * The input is the text of one list (up to its first NUL). Each accepted list must keep
 * the rules of the man page: 1..CONF_MAX_HOSTS entries, names NUL-terminated, literals
 * that inet_pton reads back, DNS names in client mode only, wildcards in listen mode only,
 * no duplicates; a list made again from the formatted entries must parse to the same list.
 * A refused list must say why. The formatter is called with a buffer of every small size
 * (exactly that big on the heap, for AddressSanitizer) and must always terminate it. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#include "fuzz_core.h"


/* The longest formatted entry: "[" name "]:" port. */
#define FMT_MAX (sizeof(((struct hostspec *)0)->name) + 16)

static bool
entry_char_ok(char c)
{
	return c != ',' && c != ';' && c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != '\v' && c != '\f';
}

/* The rules of one accepted entry. */
static void
check_entry(const struct hostspec *h, bool listen)
{
	unsigned char bin[16];
	size_t n = strnlen(h->name, sizeof(h->name));

	CHECK(n < sizeof(h->name));
	if (h->wildcard) {
		CHECK(listen);
		CHECK(n == 0);
		CHECK(h->family == AF_INET || h->family == AF_INET6);
		return;
	}
	CHECK(n > 0);
	switch (h->family) {
	case AF_INET:
		CHECK(inet_pton(AF_INET, h->name, bin) == 1);
		break;
	case AF_INET6:
		CHECK(inet_pton(AF_INET6, h->name, bin) == 1);
		break;
	case AF_UNSPEC:
		CHECK(!listen);
		CHECK(n <= 253);
		CHECK(inet_pton(AF_INET, h->name, bin) != 1);
		CHECK(h->name[0] != '[' && strchr(h->name, ':') == NULL);
		for (size_t i = 0; i < n; i++)
			CHECK(entry_char_ok(h->name[i]));
		break;
	default:
		CHECK(!"unknown family");
	}
}

static bool
same_entry(const struct hostspec *a, const struct hostspec *b)
{
	return a->family == b->family && a->wildcard == b->wildcard && strcmp(a->name, b->name) == 0;
}

/* hostspec_format into a buffer of exactly len bytes: always terminated, a prefix of the
 * full text. */
static void
check_format(const struct hostspec *h, int port, const char *full, size_t len)
{
	char *b = malloc(len);

	CHECK(b != NULL);
	CHECK(hostspec_format(h, port, b, len) == b);
	CHECK(strnlen(b, len) < len);
	CHECK(strncmp(b, full, strlen(b)) == 0);
	CHECK(strlen(b) == (strlen(full) < len ? strlen(full) : len - 1));
	free(b);
}

/* Parse s in one mode; returns whether it was accepted, the list in *out. */
static bool
parse(const char *s, bool listen, struct hostlist *out, int port, size_t fmtlen)
{
	char err[256];
	int rc;

	memset(err, 0x55, sizeof(err));
	rc = conf_parse_hostlist(s, listen, out, err, sizeof(err));
	CHECK(rc == 0 || rc == -1);
	if (rc != 0) {
		CHECK(memchr(err, '\0', sizeof(err)) != NULL);
		CHECK(err[0] != '\0');
		return false;
	}
	CHECK(out->n >= 1 && out->n <= CONF_MAX_HOSTS);
	for (int i = 0; i < out->n; i++) {
		check_entry(&out->h[i], listen);
		for (int j = 0; j < i; j++)
			CHECK(!(out->h[i].family == out->h[j].family && out->h[i].wildcard == out->h[j].wildcard &&
			    strcasecmp(out->h[i].name, out->h[j].name) == 0));
	}

	/* the formatted entries, ports cut off, make the same list again */
	char again[CONF_MAX_HOSTS * (FMT_MAX + 2) + 1];
	size_t o = 0;
	for (int i = 0; i < out->n; i++) {
		char f[FMT_MAX], *colon;

		hostspec_format(&out->h[i], port, f, sizeof(f));
		CHECK(strlen(f) < sizeof(f) - 1); /* never cut short with a buffer this big */
		if (fmtlen)
			check_format(&out->h[i], port, f, fmtlen);
		colon = strrchr(f, ':');
		CHECK(colon != NULL);
		CHECK(atoi(colon + 1) == port);
		*colon = '\0';
		if (out->h[i].family == AF_INET6 && !out->h[i].wildcard)
			CHECK(f[0] == '[' && colon[-1] == ']');
		o += (size_t)snprintf(again + o, sizeof(again) - o, "%s%s", i ? (i % 2 ? ", " : ";") : "", f);
	}
	CHECK(o < sizeof(again));
	struct hostlist back;
	CHECK(conf_parse_hostlist(again, listen, &back, err, sizeof(err)) == 0);
	CHECK(back.n == out->n);
	for (int i = 0; i < out->n; i++)
		CHECK(same_entry(&back.h[i], &out->h[i]));
	return true;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hostlist client, listen;
	char *s;
	int port;
	size_t fmtlen;
	bool c_ok, l_ok;

	if (size > 4096)
		return 0;
	if ((s = malloc(size + 1)) == NULL)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	/* a port and a formatting buffer size from the input's length: every size is seen */
	port = (int)(size * 2654435761u % 65536);
	fmtlen = size % 40;
	c_ok = parse(s, false, &client, port, fmtlen);
	l_ok = parse(s, true, &listen, port, fmtlen);
	if (c_ok && l_ok) {
		/* both: every entry is an address literal, read the same way by both modes */
		CHECK(client.n == listen.n);
		for (int i = 0; i < client.n; i++) {
			CHECK(client.h[i].family != AF_UNSPEC && !listen.h[i].wildcard);
			CHECK(same_entry(&client.h[i], &listen.h[i]));
		}
	}
	if (l_ok && !c_ok) {
		/* listen accepts what the client form refuses only through a wildcard */
		bool wild = false;
		for (int i = 0; i < listen.n; i++)
			wild |= listen.h[i].wildcard;
		CHECK(wild);
	}
	free(s);
	return 0;
}
