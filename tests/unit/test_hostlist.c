/* test_hostlist.c: host list syntax of komd.conf(5) (conf_parse_hostlist, hostspec_format). */
#include <stdbool.h>
#include <sys/socket.h>

#include "check.h"
#include "conf.h"

static char err[256];

/* Parse s and return the formatted list joined by spaces, or "ERR: message". */
static const char *
hl(const char *s, bool listen)
{
	static char out[1024];
	struct hostlist l;
	size_t o = 0;

	if (conf_parse_hostlist(s, listen, &l, err, sizeof(err)) != 0) {
		snprintf(out, sizeof(out), "ERR: %s", err);
		return out;
	}
	out[0] = '\0';
	for (int i = 0; i < l.n; i++) {
		char b[300];

		o += (size_t)snprintf(out + o, sizeof(out) - o, "%s%s", i ? " " : "", hostspec_format(&l.h[i], 502, b, sizeof(b)));
	}
	return out;
}

int
main(void)
{
	struct hostlist l;

	/* client mode */
	CHECK_STR(hl("10.0.0.5", false), "10.0.0.5:502");
	CHECK_STR(hl(" 10.0.0.5 , plc-2.example.org;[::1] ;fe80::1", false),
	    "10.0.0.5:502 plc-2.example.org:502 [::1]:502 [fe80::1]:502");
	CHECK_STR(hl("[0:0::1]", false), "[::1]:502");
	CHECK_STR(hl("localhost", false), "localhost:502");
	CHECK(conf_parse_hostlist("a,b,c,d,e,f,g,h", false, &l, err, sizeof(err)) == 0);
	CHECK_INT(l.n, 8);
	CHECK_INT(l.h[0].family, AF_UNSPEC);
	CHECK(!l.h[0].wildcard);
	CHECK(conf_parse_hostlist("1.2.3.4, ::1", false, &l, err, sizeof(err)) == 0);
	CHECK_INT(l.h[0].family, AF_INET);
	CHECK_INT(l.h[1].family, AF_INET6);
	CHECK_STR(l.h[1].name, "::1");
	CHECK_STR(hl("a,b,c,d,e,f,g,h,i", false), "ERR: more than 8 hosts");
	CHECK_STR(hl("a,,b", false), "ERR: empty entry in host list 'a,,b'");
	CHECK_STR(hl("", false), "ERR: empty entry in host list ''");
	CHECK_STR(hl("a, ", false), "ERR: empty entry in host list 'a, '");
	CHECK_STR(hl("1.2.3", false), "ERR: '1.2.3': not an IPv4 address");
	CHECK_STR(hl("300.1.1.1", false), "ERR: '300.1.1.1': not an IPv4 address");
	CHECK_STR(hl("[1.2.3.4]", false), "ERR: '[1.2.3.4]': not an IPv6 address");
	CHECK_STR(hl("fe80::1::2", false), "ERR: 'fe80::1::2': not an IPv6 address");
	CHECK_STR(hl("[::1", false), "ERR: '[::1': not an IPv6 address");
	CHECK_STR(hl("bad_name", false), "ERR: 'bad_name': not a valid host name");
	CHECK_STR(hl("-a.example", false), "ERR: '-a.example': not a valid host name");
	CHECK_STR(hl("a..example", false), "ERR: 'a..example': not a valid host name");
	CHECK_STR(hl("a234567890123456789012345678901234567890123456789012345678901234.x", false),
	    "ERR: 'a234567890123456789012345678901234567890123456789012345678901234.x': not a valid host name");
	CHECK_STR(hl("*", false), "ERR: '*': a wildcard is only for listening");
	CHECK_STR(hl("[*]", false), "ERR: '[*]': a wildcard is only for listening");
	CHECK_STR(hl("10.0.0.1, 10.0.0.1", false), "ERR: '10.0.0.1' appears twice in the host list");
	CHECK_STR(hl("::1, [0::1]", false), "ERR: '[0::1]' appears twice in the host list");
	CHECK_STR(hl("Plc, plc", false), "ERR: 'plc' appears twice in the host list");

	/* listen mode */
	CHECK_STR(hl("*", true), "*:502");
	CHECK_STR(hl("all; [ALL]", true), "*:502 [*]:502");
	CHECK_STR(hl("[*], 127.0.0.1, ::1", true), "[*]:502 127.0.0.1:502 [::1]:502");
	CHECK(conf_parse_hostlist("[*]", true, &l, err, sizeof(err)) == 0);
	CHECK(l.h[0].wildcard);
	CHECK_INT(l.h[0].family, AF_INET6);
	CHECK_STR(l.h[0].name, "");
	CHECK_STR(hl("localhost", true), "ERR: 'localhost': listen address must be an IP address, * or [*]");
	CHECK_STR(hl("*, ALL", true), "ERR: 'ALL' appears twice in the host list");
	CHECK_STR(hl("1.2.3", true), "ERR: '1.2.3': listen address must be an IP address, * or [*]");
	return CHECK_DONE();
}
