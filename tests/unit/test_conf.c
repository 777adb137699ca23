/* test_conf.c: komd.conf(5) loading: schema errors with their exact "FILE:LINE: message",
 * @include and komd.conf.d/ drop-ins, defaults, tag cross-references, fingerprints, the
 * man page's coverage of the schema tables, and the text forms of value.c. */
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "conf.h"
#include "log.h"
#include "proto.h"
#include "value.h"

static char base[64];
static char dirs[32][PATH_MAX];
static int ndirs;

/* A fresh directory for one case. */
static const char *
mkcase(void)
{
	char *d = dirs[ndirs];

	snprintf(d, PATH_MAX, "%s/c%d", base, ndirs);
	ndirs++;
	if (mkdir(d, 0700) != 0)
		perror(d);
	return d;
}

/* Write text to dir/name, creating dir/komd.conf.d when name is inside it. */
static void
put(const char *dir, const char *name, const char *text)
{
	char p[PATH_MAX];
	FILE *f;

	if (strncmp(name, "komd.conf.d/", 12) == 0) {
		snprintf(p, sizeof(p), "%s/komd.conf.d", dir);
		mkdir(p, 0700);
	}
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	if (!(f = fopen(p, "w"))) {
		perror(p);
		return;
	}
	fputs(text, f);
	fclose(f);
}

/* Load dir/komd.conf; the errors joined by newlines, with dir written as "D". */
static const char *
errors_of(const char *dir)
{
	static char out[8192];
	char p[PATH_MAX];
	struct conf_errors errs = { 0 };
	struct config *c;
	size_t o = 0, dl = strlen(dir);

	snprintf(p, sizeof(p), "%s/komd.conf", dir);
	c = conf_load(p, &errs);
	out[0] = '\0';
	if (c && errs.n == 0)
		snprintf(out, sizeof(out), "OK");
	if (!c && errs.n == 0)
		snprintf(out, sizeof(out), "NULL without errors");
	o = strlen(out);
	for (int i = 0; i < errs.n && o < sizeof(out) - 1; i++) {
		if (i)
			out[o++] = '\n';
		for (const char *m = errs.msg[i]; *m && o < sizeof(out) - 1; ) {
			if (strncmp(m, dir, dl) == 0) {
				out[o++] = 'D';
				m += dl;
			} else
				out[o++] = *m++;
		}
	}
	out[o] = '\0';
	conf_free(c);
	conf_errors_clear(&errs);
	return out;
}

/* One main file, the errors expected. */
static const char *
case1(const char *text)
{
	const char *d = mkcase();

	put(d, "komd.conf", text);
	return errors_of(d);
}

#define LINE_HEAD "lines = (\n{\n"  /* the line group starts at line 2 */

static void
test_errors(void)
{
	const char *d;

	/* unknown key, wrong type, out of range: all three reported from one file */
	CHECK_STR(case1(LINE_HEAD
	    "name = \"a\";\n"                     /* 3 */
	    "protocol = \"komtext-client\";\n"    /* 4 */
	    "host = \"127.0.0.1\";\n"             /* 5 */
	    "port = 70000;\n"                     /* 6 */
	    "foo = 1;\n"                          /* 7 */
	    "line_number = \"1\";\n"              /* 8 */
	    "}\n);\n"),
	    "D/komd.conf:6: 'port' must be between 1 and 65535, not 70000\n"
	    "D/komd.conf:7: unknown key 'foo' in line 'a'\n"
	    "D/komd.conf:8: 'line_number' must be an integer");

	/* a Modbus client station with inputs but nothing that polls it: an error at the
	 * station; with a period, or with outputs only, it is fine */
	CHECK_STR(case1(LINE_HEAD "name = \"a\";\nprotocol = \"modbus-client\";\nhost = \"h\";\nport = 502;\n"
	    "stations = (\n{ name = \"s\"; address = 1;\n"           /* 8 */
	    "tags = ( { name = \"x\"; address = \"3.0\"; type = \"int\"; } ); }\n);\n}\n);\n"),
	    "D/komd.conf:8: station 's': a modbus-client station reads its device only when polled: "
	    "set 'period', 'delay' or 'continuous'");
	CHECK_STR(case1(LINE_HEAD "name = \"a\";\nprotocol = \"modbus-client\";\nhost = \"h\";\nport = 502;\n"
	    "stations = (\n{ name = \"s\"; address = 1; period = 1;\n"
	    "tags = ( { name = \"x\"; address = \"3.0\"; type = \"int\"; } ); }\n);\n}\n);\n"), "OK");
	CHECK_STR(case1(LINE_HEAD "name = \"a\";\nprotocol = \"modbus-client\";\nhost = \"h\";\nport = 502;\n"
	    "stations = (\n{ name = \"s\"; address = 1;\n"
	    "tags = ( { name = \"x\"; address = \"3.0\"; type = \"int\"; direction = \"out\"; } ); }\n);\n}\n);\n"), "OK");

	/* wrong type */
	CHECK_STR(case1(LINE_HEAD "name = \"a\";\nprotocol = \"komtext-client\";\nhost = \"h\";\nport = \"502\";\n}\n);\n"),
	    "D/komd.conf:6: 'port' must be an integer");

	/* missing required key: reported at the group */
	CHECK_STR(case1(LINE_HEAD "name = \"a\";\nprotocol = \"komtext-client\";\nhost = \"h\";\n}\n);\n"),
	    "D/komd.conf:2: missing required key 'port' in line 'a'");
	CHECK_STR(case1(LINE_HEAD "name = \"a\";\nprotocol = \"komtext-client\";\nport = 1;\n}\n);\n"),
	    "D/komd.conf:2: missing required key 'host' in line 'a'");

	/* seconds: range quoted in seconds; a float is fine */
	CHECK_STR(case1(LINE_HEAD "name = \"a\";\nprotocol = \"komtext-client\";\nhost = \"h\";\nport = 1;\n"
	    "connect_timeout = 0.05;\nreconnect_delay = true;\n}\n);\n"),
	    "D/komd.conf:7: 'connect_timeout' must be between 0.1 and 300 seconds, not 0.05\n"
	    "D/komd.conf:8: 'reconnect_delay' must be a number of seconds");
	CHECK_STR(case1(LINE_HEAD "name = \"a\";\nprotocol = \"komtext-client\";\nhost = \"h\";\nport = 1;\n"
	    "reconnect_delay = 10;\nreconnect_max = 5;\n}\n);\n"),
	    "D/komd.conf:8: 'reconnect_max' must not be less than 'reconnect_delay'");

	/* choices, the protocol's own key, unknown protocol */
	CHECK_STR(case1(LINE_HEAD "name = \"a\";\nprotocol = \"komtext-client\";\nhost = \"h\";\nport = 1;\n"
	    "type = \"udp\";\nredundancy = \"triple\";\n}\n);\nlog_level = \"loud\";\n"),
	    "D/komd.conf:7: 'type' must be one of tcp, tcp-redundant, not 'udp'\n"
	    "D/komd.conf:8: 'redundancy' must be one of alternate, parallel, dual, not 'triple'\n"
	    "D/komd.conf:11: 'log_level' must be one of error, warning, info, debug, not 'loud'");
	CHECK_STR(case1(LINE_HEAD "name = \"a\";\nprotocol = \"nope\";\nhost = \"h\";\nport = 1;\n}\n);\n"),
	    "D/komd.conf:4: unknown protocol 'nope' (known: komtext-client, komtext-server, modbus-client, modbus-server, iec104-client, iec104-server, mqtt-client)");

	/* duplicate line name, bad line name */
	CHECK_STR(case1("lines = (\n"
	    "{ name = \"a\"; protocol = \"komtext-server\"; port = 1; },\n"
	    "{ name = \"a\"; protocol = \"komtext-server\"; port = 2; },\n"
	    "{ name = \"b c\"; protocol = \"komtext-server\"; port = 3; }\n"
	    ");\n"),
	    "D/komd.conf:3: line 'a' already defined at D/komd.conf:2\n"
	    "D/komd.conf:4: line name 'b c' must be letters, digits, '_', '.' or '-'");

	/* bad host lists: client and listen */
	CHECK_STR(case1("lines = (\n"
	    "{ name = \"a\"; protocol = \"komtext-client\"; port = 1;\n"
	    "  host = \"10.0.0.1,,10.0.0.2\"; },\n"
	    "{ name = \"b\"; protocol = \"komtext-server\"; port = 1;\n"
	    "  host = \"plc.example\"; }\n"
	    ");\n"),
	    "D/komd.conf:3: 'host': empty entry in host list '10.0.0.1,,10.0.0.2'\n"
	    "D/komd.conf:5: 'host': 'plc.example': listen address must be an IP address, * or [*]");

	/* backup: only on tcp-redundant client lines */
	CHECK_STR(case1("lines = (\n"
	    "{ name = \"a\"; protocol = \"komtext-client\"; port = 1; host = \"h\";\n"
	    "  backup = { host = \"h2\"; }; },\n"
	    "{ name = \"b\"; protocol = \"komtext-server\"; port = 1; type = \"tcp-redundant\";\n"
	    "  backup = { host = \"h2\"; }; },\n"
	    "{ name = \"c\"; protocol = \"komtext-client\"; port = 1; host = \"h\"; type = \"tcp-redundant\";\n"
	    "  backup = { port = 0; bogus = 1; }; }\n"
	    ");\n"),
	    "D/komd.conf:3: 'backup' is only allowed when type is tcp-redundant\n"
	    "D/komd.conf:4: type tcp-redundant is only for client protocols\n"
	    "D/komd.conf:5: a backup is only for client protocols\n"
	    "D/komd.conf:7: unknown key 'bogus' in backup of line 'c'\n"
	    "D/komd.conf:7: 'port' must be between 1 and 65535, not 0\n"
	    "D/komd.conf:7: missing required key 'host' in backup of line 'c'");

	/* stations: period with delay, offset, missing address, simulation on a server */
	CHECK_STR(case1("lines = (\n"
	    "{ name = \"a\"; protocol = \"komtext-client\"; port = 1; host = \"h\";\n"
	    "  stations = (\n"
	    "  { name = \"s1\"; address = 1; period = 1; delay = 1; },\n"         /* 4 */
	    "  { name = \"s2\"; address = \"x\"; period = 1;\n"
	    "    offset = 1; },\n"                                                  /* 6 */
	    "  { name = \"s3\"; },\n"                                               /* 7 */
	    "  { name = \"s1\"; address = 2.5; }\n"                                 /* 8 */
	    "  ); },\n"
	    "{ name = \"b\"; protocol = \"komtext-server\"; port = 1;\n"
	    "  stations = ( { name = \"s\"; address = 1;\n"
	    "    simulation = true; } ); }\n"                                       /* 12 */
	    ");\n"),
	    "D/komd.conf:4: station 's1': 'period' and 'delay' exclude each other\n"
	    "D/komd.conf:6: 'offset' must be less than 'period'\n"
	    "D/komd.conf:7: missing required key 'address' in station 's3'\n"
	    "D/komd.conf:8: station 's1' already defined in line 'a' at D/komd.conf:4\n"
	    "D/komd.conf:8: 'address' must be an integer or a string\n"
	    "D/komd.conf:12: simulation is only for client protocols");

	/* tags: types, memory-only keys, protocol check_tag, served tags */
	CHECK_STR(case1("tags = (\n"
	    "{ name = \"m1\"; type = \"int\"; initial = 2.5; },\n"               /* 2 */
	    "{ name = \"m2\"; type = \"bool\"; address = \"x\"; },\n"            /* 3 */
	    "{ name = \"m3\"; },\n"                                               /* 4 */
	    "{ name = \"m 4\"; type = \"real\"; },\n"                             /* 5 */
	    "{ name = \"m5\"; type = \"dpi\"; initial = \"maybe\"; }\n"          /* 6 */
	    ");\n"
	    "lines = (\n"
	    "{ name = \"a\"; protocol = \"komtext-client\"; port = 1; host = \"h\";\n"
	    "  stations = ( { name = \"s\"; address = 1; tags = (\n"
	    "    { name = \"t1\"; address = \"has space\"; type = \"int\"; },\n" /* 11 */
	    "    { name = \"t2\"; address = \"a2\"; type = \"int\"; initial = 1; },\n" /* 12 */
	    "    { name = \"t3\"; address = \"a3\"; }\n"                         /* 13 */
	    "  ); } ); },\n"
	    "{ name = \"b\"; protocol = \"komtext-server\"; port = 1;\n"
	    "  stations = ( { name = \"s\"; address = 1; tags = (\n"
	    "    { name = \"nowhere\"; address = \"n\"; },\n"                    /* 17 */
	    "    { name = \"t2\"; address = \"x\"; type = \"float\"; },\n"       /* 18 */
	    "    { name = \"m1\"; address = \"m\"; type = \"int\"; direction = \"both\"; }\n" /* 19 */
	    "  ); } ); }\n"
	    ");\n"),
	    "D/komd.conf:2: 'initial' does not fit type int\n"
	    "D/komd.conf:3: 'address' is not allowed on memory tags\n"
	    "D/komd.conf:4: missing required key 'type' in tag 'm3'\n"
	    "D/komd.conf:5: tag name 'm 4' must be 1..127 letters, digits, '_', '.', ':' or '-'\n"
	    "D/komd.conf:5: 'type' must be one of bool, dpi, int, float, string, time\n"
	    "D/komd.conf:6: 'initial': 'maybe' is not a dpi (0..3, intermediate, off, on, faulty)\n"
	    "D/komd.conf:11: tag 't1': komtext address must be 1..64 characters without spaces\n"
	    "D/komd.conf:12: 'initial' is only allowed on memory tags\n"
	    "D/komd.conf:13: missing required key 'type' in tag 't3'\n"
	    "D/komd.conf:17: tag 'nowhere' is not defined\n"
	    "D/komd.conf:18: tag 't2' is int where it is defined at D/komd.conf:12, not float\n"
	    "D/komd.conf:19: 'direction' must be one of in, out, inout, not 'both'");

	/* tls: cert without key, unreadable files */
	CHECK_STR(case1("lines = (\n"
	    "{ name = \"a\"; protocol = \"komtext-client\"; port = 1; host = \"h\";\n"
	    "  tls = {\n"
	    "    my_cert = \"#APPDIR#/missing.pem\";\n"                        /* 4 */
	    "    partner_certs = 5;\n"                                          /* 5 */
	    "  }; }\n"
	    ");\n"),
	    "D/komd.conf:3: tls of line 'a': 'my_cert' and 'my_key' go together\n"
	    "D/komd.conf:4: 'my_cert': cannot read 'D/missing.pem': No such file or directory\n"
	    "D/komd.conf:5: 'partner_certs' must be a string");

	/* a syntax error in an @included file names that file */
	d = mkcase();
	put(d, "komd.conf", "log_level = \"info\";\n@include \"inc.conf\"\n");
	put(d, "inc.conf", "lines = (\n{ name = \"a\";\n  port = ; }\n);\n");
	CHECK_STR(errors_of(d), "D/inc.conf:3: syntax error");

	/* a missing main file */
	d = mkcase();
	CHECK_STR(errors_of(d), "D/komd.conf:0: cannot read: No such file or directory");

	/* drop-ins: the same tag in two files, global keys, and a syntax error of its own;
	 * the main file's errors still come too */
	d = mkcase();
	put(d, "komd.conf", "tags = (\n"
	    "{ name = \"x\"; type = \"int\"; }\n"
	    ");\n"
	    "bogus = 1;\n");
	put(d, "komd.conf.d/10-a.conf", "lines = (\n"
	    "{ name = \"a\"; protocol = \"komtext-client\"; port = 1; host = \"h\";\n"
	    "  stations = ( { name = \"s\"; simulation = true; tags = (\n"
	    "    { name = \"x\"; type = \"int\"; }\n"                             /* 4 */
	    "  ); } ); }\n"
	    ");\n"
	    "log_level = \"debug\";\n");                                        /* 7 */
	put(d, "komd.conf.d/20-b.conf", "tags = ( { name = = \"y\"; type = \"int\"; } );\n");
	put(d, "komd.conf.d/30-c.conf.txt", "garbage\n");
	put(d, "komd.conf.d/.hidden.conf", "garbage\n");
	CHECK_STR(errors_of(d),
	    "D/komd.conf:4: unknown key 'bogus'\n"
	    "D/komd.conf.d/10-a.conf:4: tag 'x' already defined at D/komd.conf:2\n"
	    "D/komd.conf.d/10-a.conf:7: 'log_level' is not allowed in komd.conf.d/ (only lines and tags)\n"
	    "D/komd.conf.d/20-b.conf:1: syntax error");

	/* served tags may come before the tag they serve, in another file */
	d = mkcase();
	put(d, "komd.conf", "lines = ( { name = \"srv\"; protocol = \"komtext-server\"; port = 1;\n"
	    "  stations = ( { name = \"s\"; address = 1; tags = ( { name = \"z\"; address = \"z\"; } ); } ); } );\n");
	put(d, "komd.conf.d/a.conf", "tags = ( { name = \"z\"; type = \"string\"; initial = \"hi\"; } );\n");
	CHECK_STR(errors_of(d), "OK");
	(void)d;
}

static const char good_main[] =
    "appdir = \"app\";\n"
    "log_level = \"debug\";\n"
    "@include \"lines.conf\"\n"
    "tags = (\n"
    "  { name = \"mem.flag\"; type = \"bool\"; initial = true; direction = \"inout\"; },\n"
    "  { name = \"mem.sp\"; type = \"float\"; initial = 5; },\n"
    "  { name = \"mem.t\"; type = \"time\"; initial = \"2026-11-23T10:00:00.123Z\"; description = \"start\"; }\n"
    ");\n";

static const char good_lines[] =
    "lines = (\n"
    "  { name = \"plc1\"; protocol = \"komtext-client\"; type = \"tcp-redundant\";\n"
    "    host = \"127.0.0.1, localhost\"; port = 5020; redundancy = \"parallel\";\n"
    "    backup = { host = \"[::1]\"; };\n"
    "    tls = { partner_certs = \"#APPDIR#/ca.pem\"; };\n"
    "    connect_timeout = 2.5;\n"
    "    stations = (\n"
    "      { name = \"s1\"; address = 7; period = 1; offset = 0.25;\n"
    "        tags = ( { name = \"p1.v\"; address = \"v1\"; type = \"float\"; } ); },\n"
    "      { name = \"sim\"; simulation = true; delay = 0.5;\n"
    "        tags = ( { name = \"p1.sim\"; type = \"int\"; direction = \"inout\"; } ); }\n"
    "    );\n"
    "  }\n"
    ");\n";

static const char good_dropin[] =
    "lines = ( { name = \"srv\"; protocol = \"komtext-server\"; port = 5021;\n"
    "  stations = ( { name = \"out\"; address = \"x\"; tags = (\n"
    "    { name = \"p1.v\"; address = \"A1\"; },\n"
    "    { name = \"mem.flag\"; address = \"F\"; type = \"bool\"; direction = \"inout\"; } ); } ); } );\n"
    "tags = ( { name = \"mem.dropin\"; type = \"string\"; initial = \"hello\"; } );\n";

static struct config *
load(const char *dir)
{
	char p[PATH_MAX];
	struct conf_errors errs = { 0 };
	struct config *c;

	snprintf(p, sizeof(p), "%s/komd.conf", dir);
	c = conf_load(p, &errs);
	for (int i = 0; i < errs.n; i++)
		fprintf(stderr, "unexpected: %s\n", errs.msg[i]);
	CHECK_INT(errs.n, 0);
	conf_errors_clear(&errs);
	return c;
}

static void
test_good(void)
{
	const char *d = mkcase();
	char app[PATH_MAX + 8], p[PATH_MAX], pem[PATH_MAX + 16], buf[64];
	struct config *c, *c2;
	const struct line_conf *l, *srv;
	const struct tag_conf *t;

	put(d, "komd.conf", good_main);
	put(d, "lines.conf", good_lines);
	put(d, "komd.conf.d/10-srv.conf", good_dropin);
	snprintf(app, sizeof(app), "%s/app", d);
	mkdir(app, 0700);
	put(d, "app/ca.pem", "not checked here\n");
	if (!(c = load(d)))
		return;
	if (!realpath(d, p))
		snprintf(p, sizeof(p), "%s", d);
	snprintf(app, sizeof(app), "%s/app", p);
	CHECK_STR(c->appdir, app);
	CHECK_STR(c->control_socket, "/run/komd/komd.sock");
	CHECK_INT(c->log_level, LOG_LVL_DEBUG);
	CHECK_INT(c->write_timeout_ms, 10000);
	CHECK_INT(c->nlines, 2);
	CHECK_INT(c->ntags, 4);

	l = conf_find_line(c, "plc1");
	CHECK(l != NULL);
	if (!l)
		goto out;
	CHECK_INT(l->type, LINE_TCP_REDUNDANT);
	CHECK_INT(l->hosts.n, 2);
	CHECK_STR(l->hosts.h[1].name, "localhost");
	CHECK_INT(l->port, 5020);
	CHECK_INT(l->line_number, 0);
	CHECK(l->enabled);
	CHECK(l->backup_present);
	CHECK(l->backup_enabled);
	CHECK_INT(l->backup_port, 5020);
	CHECK_INT(l->backup_hosts.n, 1);
	CHECK_STR(l->backup_hosts.h[0].name, "::1");
	CHECK(l->tls.present);
	snprintf(pem, sizeof(pem), "%s/ca.pem", app);
	CHECK_STR(l->tls.partner_certs, pem);
	CHECK(l->tls.my_cert == NULL);
	CHECK_INT(l->connect_timeout_ms, 2500);
	CHECK_INT(l->reconnect_delay_ms, 1000);
	CHECK_INT(l->reconnect_max_ms, 60000);
	CHECK_INT(l->max_clients, 1000);
	CHECK(l->pconf != NULL);
	if (l->pconf)
		CHECK_INT(*(int *)l->pconf, 1); /* the protocol's redundancy: parallel */
	CHECK_INT(l->nstations, 2);
	CHECK_STR(l->stations[0].address, "7");
	CHECK_INT(l->stations[0].period_ms, 1000);
	CHECK_INT(l->stations[0].offset_ms, 250);
	CHECK_INT(l->stations[0].delay_ms, 0);
	CHECK(!l->stations[0].simulation);
	CHECK(l->stations[1].simulation);
	CHECK(l->stations[1].address == NULL);
	CHECK_INT(l->stations[1].delay_ms, 500);
	CHECK_INT(l->stations[1].tags[0].dir, TD_INOUT);
	CHECK(l->stations[1].tags[0].address == NULL);

	srv = conf_find_line(c, "srv");
	CHECK(srv != NULL);
	if (srv) {
		CHECK_INT(srv->hosts.n, 1);
		CHECK(srv->hosts.h[0].wildcard);
		CHECK_INT(srv->hosts.h[0].family, AF_INET);
		CHECK(!srv->backup_present);
		CHECK_INT(srv->stations[0].ntags, 2);
		CHECK(!srv->stations[0].tags[0].has_type);
		CHECK_INT(srv->stations[0].tags[0].type, VT_FLOAT);
		CHECK(srv->stations[0].tags[1].has_type);
		CHECK_STR(srv->stations[0].tags[0].address, "A1");
		CHECK_INT(*(int *)srv->pconf, 0); /* the protocol's default: alternate */
	}
	CHECK(conf_find_line(c, "nope") == NULL);

	t = conf_find_tag(c, "p1.v");
	CHECK(t && t->address && strcmp(t->address, "v1") == 0);
	t = conf_find_tag(c, "mem.dropin");
	CHECK(t && t->has_initial && t->initial.type == VT_STRING && strcmp(t->initial.s, "hello") == 0);
	t = conf_find_tag(c, "mem.sp");
	CHECK(t && t->initial.type == VT_FLOAT && t->initial.f == 5.0 && t->dir == TD_IN);
	t = conf_find_tag(c, "mem.t");
	CHECK(t && t->initial.i == 1795428000123LL);
	CHECK(t && t->description && strcmp(t->description, "start") == 0);
	CHECK_STR(time_format(t ? t->initial.i : 0, buf, sizeof(buf)), "2026-11-23T10:00:00.123Z");
	CHECK(conf_find_tag(c, "nope") == NULL);
	CHECK_STR(t ? t->loc.file : NULL, c->files[0]);
	CHECK_INT(t ? t->loc.line : 0, 7);
	snprintf(p, sizeof(p), "%s/lines.conf", d);
	CHECK_STR(l->loc.file, p);
	CHECK_INT(l->loc.line, 2);

	/* fingerprints: equal for an unchanged line, even when it moves in its file */
	put(d, "lines.conf", "# moved down\n\n" /* and one key moved within the group */
	    "lines = (\n"
	    "  { protocol = \"komtext-client\"; name = \"plc1\"; type = \"tcp-redundant\";\n"
	    "    host = \"127.0.0.1, localhost\"; port = 5020; redundancy = \"parallel\";\n"
	    "    backup = { host = \"[::1]\"; };\n"
	    "    tls = { partner_certs = \"#APPDIR#/ca.pem\"; };\n"
	    "    connect_timeout = 2.5;\n"
	    "    stations = (\n"
	    "      { name = \"s1\"; address = 7; period = 1; offset = 0.25;\n"
	    "        tags = ( { name = \"p1.v\"; address = \"v1\"; type = \"float\"; } ); },\n"
	    "      { name = \"sim\"; simulation = true; delay = 0.5;\n"
	    "        tags = ( { name = \"p1.sim\"; type = \"int\"; direction = \"inout\"; } ); }\n"
	    "    );\n"
	    "  }\n"
	    ");\n");
	if ((c2 = load(d))) {
		CHECK_STR(conf_find_line(c2, "plc1")->fingerprint, l->fingerprint);
		CHECK_STR(conf_find_line(c2, "srv")->fingerprint, srv->fingerprint);
		conf_free(c2);
	}
	/* one change deep inside (a tag's type) changes that line's fingerprint only */
	{
		char changed[sizeof(good_lines) + 8], *q;

		snprintf(changed, sizeof(changed), "%s", good_lines);
		q = strstr(changed, "\"int\"");
		memcpy(q, "\"dpi\"", 5);
		put(d, "lines.conf", changed);
	}
	if ((c2 = load(d))) {
		CHECK(strcmp(conf_find_line(c2, "plc1")->fingerprint, l->fingerprint) != 0);
		CHECK_STR(conf_find_line(c2, "srv")->fingerprint, srv->fingerprint);
		conf_free(c2);
	}
	/* the appdir is part of the values */
	put(d, "lines.conf", good_lines);
	{
		char m[sizeof(good_main) + 8];

		snprintf(m, sizeof(m), "%s", good_main);
		memcpy(strstr(m, "\"app\""), "\"ap2\"", 5);
		put(d, "komd.conf", m);
		snprintf(app, sizeof(app), "%s/ap2", d);
		mkdir(app, 0700);
		put(d, "ap2/ca.pem", "x\n");
	}
	if ((c2 = load(d))) {
		CHECK(strcmp(conf_find_line(c2, "plc1")->fingerprint, l->fingerprint) != 0);
		conf_free(c2);
	}
out:
	conf_free(c);
}

/* Is name one of the bold words of a ".BR a ", " b" line (keys documented as a group)? */
static bool
man_group_has(const char *text, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = strstr(text, "\n.BR "); p; p = strstr(p + 1, "\n.BR ")) {
		const char *end = strchr(p + 1, '\n');
		for (const char *q = p + 5; q && q < end; q = strchr(q + 1, ' ')) {
			while (*q == ' ' || *q == '"' || *q == ',')
				q++;
			if (strncmp(q, name, n) == 0 && (q[n] == ' ' || q[n] == '\n' || q[n] == '"'))
				return true;
		}
	}
	return false;
}

/* Every key of every schema table is documented in the man page. */
static void
test_manpage(void)
{
	const struct conf_key *tabs[7 + 3 * 16] = { conf_global_keys, conf_line_keys, conf_backup_keys,
		conf_tls_keys, conf_station_keys, conf_tag_keys, conf_http_keys };
	size_t ntabs = 7;
	char terr[200];

	/* every protocol's keys too, and none of them shadows a core key */
	for (int p = 0; proto_table[p] && ntabs + 3 <= sizeof(tabs) / sizeof(tabs[0]); p++) {
		tabs[ntabs++] = proto_table[p]->line_keys;
		tabs[ntabs++] = proto_table[p]->station_keys;
		tabs[ntabs++] = proto_table[p]->tag_keys;
	}
	CHECK(conf_check_tables(terr, sizeof(terr)) == 0);
	FILE *f = fopen("man/komd.conf.5", "r");
	static char text[200000];
	size_t n;

	CHECK(f != NULL);
	if (!f)
		return;
	n = fread(text, 1, sizeof(text) - 1, f);
	text[n] = '\0';
	fclose(f);
	for (size_t i = 0; i < ntabs; i++)
		for (const struct conf_key *k = tabs[i]; k && k->name; k++) {
			char pat[128];

			/* a key of its own (".B name"), or one of a group (".BR t1 ", " t2 ", " t3") */
			snprintf(pat, sizeof(pat), "\n.B %s\n", k->name);
			if (!strstr(text, pat) && man_group_has(text, k->name))
				continue;
			if (!strstr(text, pat))
				fprintf(stderr, "man/komd.conf.5 does not document key '%s'\n", k->name);
			CHECK(strstr(text, pat) != NULL);
		}
}

/* Is name a key of any schema table, the core's or a protocol's? */
static bool
key_known(const char *name)
{
	const struct conf_key *const tabs[] = { conf_global_keys, conf_line_keys, conf_backup_keys,
		conf_tls_keys, conf_station_keys, conf_tag_keys, conf_http_keys };

	for (size_t i = 0; i < sizeof(tabs) / sizeof(tabs[0]); i++)
		for (const struct conf_key *k = tabs[i]; k->name; k++)
			if (strcmp(k->name, name) == 0)
				return true;
	for (int p = 0; proto_table[p]; p++) {
		const struct conf_key *const ptabs[] = { proto_table[p]->line_keys, proto_table[p]->station_keys,
			proto_table[p]->tag_keys };
		for (size_t i = 0; i < 3; i++)
			for (const struct conf_key *k = ptabs[i]; k && k->name; k++)
				if (strcmp(k->name, name) == 0)
					return true;
	}
	return false;
}

/* The other way round: every key the man page documents (".TP", ".B name", then its type)
 * exists, so no documented key is refused as unknown. */
static void
test_manpage_keys_exist(void)
{
	static const char *const types[] = { "Integer", "Seconds", "String", "Boolean", "Group", "List", "One of",
		".B 1.2", NULL };
	FILE *f = fopen("man/komd.conf.5", "r");
	char prev2[256] = "", prev[256] = "", line[256];
	int n = 0;

	CHECK(f != NULL);
	while (f && fgets(line, sizeof(line), f)) {
		char name[128];
		if (strcmp(prev2, ".TP\n") == 0 && sscanf(prev, ".B %127[a-z0-9_]", name) == 1 &&
		    strlen(prev) == strlen(name) + 4) {
			for (int t = 0; types[t]; t++)
				if (strncmp(line, types[t], strlen(types[t])) == 0) {
					n++;
					if (!key_known(name))
						fprintf(stderr, "man/komd.conf.5 documents key '%s', which komd does not have\n", name);
					CHECK(key_known(name));
					break;
				}
		}
		snprintf(prev2, sizeof(prev2), "%s", prev);
		snprintf(prev, sizeof(prev), "%s", line);
	}
	if (f)
		fclose(f);
	CHECK(n > 60); /* the parse found the keys at all */
}

/* v's JSON text (value_json, value_json_dump): malloc'ed. */
static char *
vjson(const struct value *v)
{
	json_t *j = value_json(v);
	char *t = value_json_dump(j);

	json_decref(j);
	return t;
}

static const char *
vfmt(enum vtype t, const char *text, bool json)
{
	static char out[300];
	char err[256];
	struct value v;

	if (value_parse(t, text, &v, err, sizeof(err)) != 0) {
		snprintf(out, sizeof(out), "ERR: %s", err);
		return out;
	}
	if (json) {
		char *j = vjson(&v);
		snprintf(out, sizeof(out), "%s", j ? j : "(null)");
		free(j);
	} else
		value_format(&v, out, sizeof(out));
	value_clear(&v);
	return out;
}

static void
test_values(void)
{
	char b[64];
	struct value a = { .type = VT_FLOAT, .f = NAN }, c;

	CHECK_STR(vfmt(VT_BOOL, " ON ", false), "true");
	CHECK_STR(vfmt(VT_BOOL, "0", false), "false");
	CHECK_STR(vfmt(VT_BOOL, "False", true), "false");
	CHECK_STR(vfmt(VT_BOOL, "2", false), "ERR: '2' is not a bool (0, 1, true, false, on, off)");
	CHECK_STR(vfmt(VT_DPI, "2", false), "on");
	CHECK_STR(vfmt(VT_DPI, "Faulty", true), "\"faulty\"");
	CHECK_STR(vfmt(VT_DPI, "4", false), "ERR: '4' is not a dpi (0..3, intermediate, off, on, faulty)");
	CHECK_STR(vfmt(VT_INT, "-9223372036854775808", false), "-9223372036854775808");
	CHECK_STR(vfmt(VT_INT, "9223372036854775808", false), "ERR: '9223372036854775808' is not a 64-bit integer");
	CHECK_STR(vfmt(VT_INT, "1.5", false), "ERR: '1.5' is not a 64-bit integer");
	CHECK_STR(vfmt(VT_FLOAT, "0.1", false), "0.1");
	CHECK_STR(vfmt(VT_FLOAT, "1e400", false), "ERR: '1e400' is not a number");
	/* no value komd takes (komctl set, memory tags' initial) is NaN or an infinity; read
	 * from a device they still print (JSON: null) */
	CHECK_STR(vfmt(VT_FLOAT, "inf", true), "ERR: 'inf' is not a finite number");
	CHECK_STR(vfmt(VT_FLOAT, "-Infinity", true), "ERR: '-Infinity' is not a finite number");
	CHECK_STR(vfmt(VT_FLOAT, "nan", true), "ERR: 'nan' is not a finite number");
	{
		struct value nanv = { .type = VT_FLOAT, .f = NAN };
		char *t = vjson(&nanv);
		CHECK_STR(t, "null");
		free(t);
	}
	CHECK_STR(vfmt(VT_STRING, "a \"q\"\\\n\x01", true), "\"a \\\"q\\\"\\\\\\n\\u0001\"");
	CHECK_STR(vfmt(VT_STRING, " kept ", false), " kept ");
	CHECK_STR(vfmt(VT_TIME, "2026-11-23T10:00:00.123Z", false), "2026-11-23T10:00:00.123Z");
	CHECK_STR(vfmt(VT_TIME, "2026-11-23T11:00:00.5+01:00", true), "\"2026-11-23T10:00:00.500Z\"");
	CHECK_STR(vfmt(VT_TIME, "1795428000123", false), "2026-11-23T10:00:00.123Z");
	CHECK_STR(vfmt(VT_TIME, "2026-02-30T00:00:00Z", false),
	    "ERR: '2026-02-30T00:00:00Z' is not a time (ms since the epoch or ISO 8601 like 2026-11-23T10:00:00.123Z)");
	/* second 60 is a leap second only at 23:59:60 UTC (then the next second), never a roll-over */
	CHECK_STR(vfmt(VT_TIME, "2016-12-31T23:59:60Z", false), "2017-01-01T00:00:00.000Z");
	CHECK_STR(vfmt(VT_TIME, "2017-01-01T00:59:60+01:00", false), "2017-01-01T00:00:00.000Z");
	CHECK_STR(vfmt(VT_TIME, "2026-11-23T12:00:60Z", false),
	    "ERR: '2026-11-23T12:00:60Z' is not a time (ms since the epoch or ISO 8601 like 2026-11-23T10:00:00.123Z)");
	{
		/* a refused number leaves no NaN (or half a number) behind */
		struct value r = { .type = VT_FLOAT, .f = 1.5 };
		CHECK(value_parse(VT_FLOAT, "nan", &r, b, sizeof(b)) == -1 && r.f == 0);
		r.f = 1.5;
		CHECK(value_parse(VT_FLOAT, "1.5x", &r, b, sizeof(b)) == -1 && r.f == 0);
	}
	CHECK_STR(time_format(0, b, sizeof(b)), "-");
	CHECK_STR(time_format(-1, b, sizeof(b)), "1969-12-31T23:59:59.999Z");
	CHECK_STR(quality_format(0, b, sizeof(b)), "good");
	CHECK_STR(quality_format(Q_INVALID | Q_NOTTOPICAL | Q_OVERFLOW, b, sizeof(b)), "IV,NT,OV");
	CHECK_STR(quality_format(0x1f, b, sizeof(b)), "IV,NT,SB,BL,OV");
	CHECK(value_equal(&a, &a));
	value_parse(VT_STRING, "x", &a, b, sizeof(b));
	value_copy(&c, &a);
	CHECK(value_equal(&a, &c) && a.s != c.s);
	value_clear(&a);
	value_clear(&c);
	CHECK(a.s == NULL);
	for (int t = VT_BOOL; t <= VT_TIME; t++) {
		enum vtype back;

		CHECK(vtype_parse(vtype_name((enum vtype)t), &back) == 0 && back == (enum vtype)t);
	}
	CHECK(time_now_ms() > 1700000000000LL);
}

static int
rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

int
main(void)
{
	snprintf(base, sizeof(base), "/tmp/komd-test-conf.XXXXXX");
	if (!mkdtemp(base)) {
		perror("mkdtemp");
		return 1;
	}
	log_init(true, LOG_LVL_ERR);
	test_errors();
	test_good();
	test_manpage();
	test_manpage_keys_exist();
	test_values();
	nftw(base, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	return CHECK_DONE();
}
