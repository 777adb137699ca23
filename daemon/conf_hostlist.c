/* conf_hostlist.c: host lists, the `host` key of lines and backups: up to 8 entries, each
 * an IPv4 or IPv6 literal (IPv6 in brackets when a port could follow), a DNS name (RFC 1123
 * labels), or, for server lines, a wildcard ("*", "ALL": every IPv4 address; "[*]",
 * "[ALL]": every IPv6 address). Pure: no DNS lookup here (client lines resolve at every
 * attempt, line.c). */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "conf.h"

static bool
conf_dns_name(const char *s)
{
	size_t len = strlen(s), label = 0;
	bool alldigits = true;

	if (len == 0 || len > 253)
		return false;
	for (size_t i = 0; i <= len; i++) {
		char ch = s[i];

		if (ch == '.' || ch == '\0') {
			if (label == 0 || label > 63 || s[i - 1] == '-')
				return false;
			if (ch == '\0')
				break;
			label = 0;
			alldigits = true;
			continue;
		}
		if (!isalnum((unsigned char)ch) && ch != '-')
			return false;
		if (ch == '-' && label == 0)
			return false;
		if (!isdigit((unsigned char)ch))
			alldigits = false;
		label++;
	}
	/* a top-level label is never all digits: "1.2.3" is a broken address, not a name */
	return !alldigits;
}

/* One entry (already trimmed, non-empty). */
static int
conf_host_entry(const char *e, bool listen, struct hostspec *h, char *err, size_t errlen)
{
	char lit[256];
	unsigned char bin[16];
	size_t len = strlen(e);

	memset(h, 0, sizeof(*h));
	if (strcmp(e, "*") == 0 || strcasecmp(e, "ALL") == 0 || strcmp(e, "[*]") == 0 || strcasecmp(e, "[ALL]") == 0) {
		if (!listen) {
			snprintf(err, errlen, "'%s': a wildcard is only for listening", e);
			return -1;
		}
		h->wildcard = true;
		h->family = e[0] == '[' ? AF_INET6 : AF_INET;
		return 0;
	}
	if (e[0] == '[' || strchr(e, ':')) {
		if (e[0] == '[') {
			if (len < 3 || e[len - 1] != ']' || len - 2 >= sizeof(lit))
				goto bad6;
			memcpy(lit, e + 1, len - 2);
			lit[len - 2] = '\0';
		} else if (len < sizeof(lit))
			strcpy(lit, e);
		else
			goto bad6;
		if (inet_pton(AF_INET6, lit, bin) != 1)
			goto bad6;
		h->family = AF_INET6;
		inet_ntop(AF_INET6, bin, h->name, sizeof(h->name));
		return 0;
bad6:
		snprintf(err, errlen, "'%s': not an IPv6 address", e);
		return -1;
	}
	if (inet_pton(AF_INET, e, bin) == 1) {
		h->family = AF_INET;
		inet_ntop(AF_INET, bin, h->name, sizeof(h->name));
		return 0;
	}
	if (listen) {
		snprintf(err, errlen, "'%s': listen address must be an IP address, * or [*]", e);
		return -1;
	}
	if (strspn(e, "0123456789.") == len) {
		snprintf(err, errlen, "'%s': not an IPv4 address", e);
		return -1;
	}
	if (!conf_dns_name(e)) {
		snprintf(err, errlen, "'%s': not a valid host name", e);
		return -1;
	}
	h->family = AF_UNSPEC;
	snprintf(h->name, sizeof(h->name), "%s", e);
	return 0;
}

int
conf_parse_hostlist(const char *s, bool listen, struct hostlist *out, char *err, size_t errlen)
{
	const char *p = s;

	memset(out, 0, sizeof(*out));
	for (;;) {
		const char *end = p + strcspn(p, ",;"), *a = p, *z = end;
		char e[300];
		struct hostspec h;

		while (a < z && isspace((unsigned char)*a))
			a++;
		while (z > a && isspace((unsigned char)z[-1]))
			z--;
		if (a == z) {
			snprintf(err, errlen, "empty entry in host list '%s'", s);
			return -1;
		}
		if (out->n == CONF_MAX_HOSTS) {
			snprintf(err, errlen, "more than %d hosts", CONF_MAX_HOSTS);
			return -1;
		}
		if ((size_t)(z - a) >= sizeof(e)) {
			snprintf(err, errlen, "host list entry too long");
			return -1;
		}
		memcpy(e, a, (size_t)(z - a));
		e[z - a] = '\0';
		if (conf_host_entry(e, listen, &h, err, errlen) != 0)
			return -1;
		for (int i = 0; i < out->n; i++)
			if (out->h[i].family == h.family && out->h[i].wildcard == h.wildcard &&
			    strcasecmp(out->h[i].name, h.name) == 0) {
				snprintf(err, errlen, "'%s' appears twice in the host list", e);
				return -1;
			}
		out->h[out->n++] = h;
		if (*end == '\0')
			return 0;
		p = end + 1;
	}
}

char *
hostspec_format(const struct hostspec *h, int port, char *buf, size_t len)
{
	if (h->wildcard)
		snprintf(buf, len, "%s:%d", h->family == AF_INET6 ? "[*]" : "*", port);
	else if (h->family == AF_INET6)
		snprintf(buf, len, "[%s]:%d", h->name, port);
	else
		snprintf(buf, len, "%s:%d", h->name, port);
	return buf;
}

/* ---- address lists ---- */

int
conf_parse_addrlist(const char *s, struct addrlist *out, char *err, size_t errlen)
{
	char copy[2048], *save = NULL;

	memset(out, 0, sizeof(*out));
	if (!s || !*s)
		return 0;
	if (strlen(s) >= sizeof(copy)) {
		snprintf(err, errlen, "the list is too long");
		return -1;
	}
	snprintf(copy, sizeof(copy), "%s", s);
	for (char *e = strtok_r(copy, ", \t", &save); e; e = strtok_r(NULL, ", \t", &save)) {
		struct addrmatch *m = &out->a[out->n];
		char *slash = strchr(e, '/'), *end;
		long bits = -1;

		if (out->n >= CONF_MAX_ADDRS) {
			snprintf(err, errlen, "more than %d addresses", CONF_MAX_ADDRS);
			return -1;
		}
		if (slash) {
			*slash = '\0';
			bits = strtol(slash + 1, &end, 10);
			if (!slash[1] || *end) {
				snprintf(err, errlen, "'%s/%s': the prefix length is not a number", e, slash + 1);
				return -1;
			}
		}
		if (*e == '[' && e[strlen(e) - 1] == ']') {
			e[strlen(e) - 1] = '\0';
			e++;
		}
		if (inet_pton(AF_INET, e, m->addr) == 1)
			m->family = AF_INET;
		else if (inet_pton(AF_INET6, e, m->addr) == 1)
			m->family = AF_INET6;
		else {
			snprintf(err, errlen, "'%s' is not an IP address", e);
			return -1;
		}
		int max = m->family == AF_INET ? 32 : 128;
		if (bits > max || bits == 0 || (slash && bits < 0)) {
			snprintf(err, errlen, "'%s/%ld': the prefix length must be 1..%d", e, bits, max);
			return -1;
		}
		m->bits = bits < 0 ? max : (int)bits;
		out->n++;
	}
	return 0;
}

static bool
addr_prefix_eq(const unsigned char *a, const unsigned char *b, int bits)
{
	int bytes = bits / 8, rest = bits % 8;

	if (memcmp(a, b, (size_t)bytes) != 0)
		return false;
	return rest == 0 || ((a[bytes] ^ b[bytes]) & (0xff << (8 - rest)) & 0xff) == 0;
}

bool
addrlist_match(const struct addrlist *l, int family, const void *addr)
{
	static const unsigned char v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	const unsigned char *a = addr;

	if (family == AF_INET6 && memcmp(a, v4mapped, sizeof(v4mapped)) == 0) {
		family = AF_INET;
		a += 12;
	}
	for (int i = 0; i < l->n; i++)
		if (l->a[i].family == family && addr_prefix_eq(l->a[i].addr, a, l->a[i].bits))
			return true;
	return false;
}
