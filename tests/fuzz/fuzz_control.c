/* fuzz_control.c: libFuzzer target for the control socket (daemon/control.c) as komctl
 * reaches it: each input is what one client sends over a real connection to the socket
 * (accept, peer credentials, the request line and its bounds, parsing, every command and its
 * output, the answer and the close), then the client shuts its side and reads the answer.
 *
 * Start-up, once: the configuration below is loaded with conf_load, its tags defined and its
 * lines started as komd_apply does (a simulated line, a client line whose device is not
 * there, so that a set is answered at once: stored, or "not connected", and a server line
 * whose protocol has counters of its own), and the control
 * socket opened in a private directory.
 *
 * Checks besides the sanitizers: komd answers and closes every connection within a bound
 * (never a hang: its own timeouts are far longer, so an answer that needs one is a bug); an
 * answer is "OK\n" or "ERR ...\n" (a set's may follow "WAIT MS\n"), and there is one whenever the input held a newline within
 * the first 8192 bytes; what the client reads is UTF-8 with no control byte but newline and
 * tab (komctl writes it to a terminal); the body of an OK answer to a "json" request is one
 * JSON text (RFC 8259) that jansson reads back, whole (strings from peers are never cut). */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <event2/event.h>
#include <jansson.h>

#include "core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#include "fuzz_core.h"


#define FUZZ_MAX_INPUT 65536
#define FUZZ_MAX_ANSWER (1 << 20)
#define FUZZ_BOUND_MS 2000

static const char fuzz_conf_text[] =
	"control_timeout = 60;\n"
	"write_timeout = 60;\n"
	"tags = (\n"
	"  { name = \"m.b\"; type = \"bool\";   initial = true; },\n"
	"  { name = \"m.d\"; type = \"dpi\";    initial = \"on\"; },\n"
	"  { name = \"m.i\"; type = \"int\";    initial = 7; },\n"
	"  { name = \"m.f\"; type = \"float\";  initial = 1.5; },\n"
	"  { name = \"m.s\"; type = \"string\"; initial = \"text\"; },\n"
	"  { name = \"m.t\"; type = \"time\"; }\n"
	");\n"
	"lines = (\n"
	"  { name = \"sim\"; protocol = \"komtext-client\"; host = \"127.0.0.1\"; port = 1;\n"
	"    stations = ( { name = \"simst\"; simulation = true; period = 3600; tags = (\n"
	"      { name = \"sim.a\"; type = \"float\"; direction = \"inout\"; },\n"
	"      { name = \"sim.s\"; type = \"string\"; direction = \"inout\"; },\n"
	"      { name = \"sim.in\"; type = \"int\"; } ); } ); },\n"
	"  { name = \"cli\"; protocol = \"komtext-client\"; host = \"127.0.0.1\"; port = 1;\n"
	"    reconnect_delay = 3600; reconnect_max = 3600;\n"
	"    stations = ( { name = \"dev\"; address = 1; tags = (\n"
	"      { name = \"cli.t\"; address = \"t\"; type = \"int\"; direction = \"out\"; } ); } ); },\n"
	/* a protocol with counters of its own (status shows them); its port may be taken:
	 * then it waits to listen, and shows them all the same */
	"  { name = \"srv\"; protocol = \"komtext-server\"; host = \"127.0.0.1\"; port = 47019;\n"
	"    stations = ( { name = \"pub\"; address = 1; tags = ( { name = \"m.i\"; address = \"i\"; } ); } ); }\n"
	");\n";

static struct sockaddr_un fuzz_sun;

/* The tag table and the lines, as komd_apply (main.c) builds them. */
static void
fuzz_apply(struct config *c)
{
	static struct confref cref;

	cref.conf = c;
	cref.refs = 1;
	for (int i = 0; i < c->ntags; i++) {
		struct tag *t = tag_create(c->tags[i].name, c->tags[i].type);
		t->memory = true;
		if (c->tags[i].has_initial)
			tag_set(t, &c->tags[i].initial, 0, time_now_ms());
		else
			tag_set_quality(t, 0);
	}
	for (int i = 0; i < c->nlines; i++)
		for (int j = 0; j < c->lines[i].nstations; j++)
			for (int k = 0; k < c->lines[i].stations[j].ntags; k++) {
				const struct tag_conf *tc = &c->lines[i].stations[j].tags[k];
				tag_set_quality(tag_create(tc->name, tc->type), Q_INVALID);
			}
	for (int i = 0; i < c->nlines; i++) {
		struct line *l = line_create(&c->lines[i], &cref);
		CHECK(l != NULL);
		TAILQ_INSERT_TAIL(&komd.lines, l, link);
		line_start(l);
	}
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct conf_errors errs = { 0 };
	char dir[64], path[96];
	struct config *c;
	FILE *f;

	(void)argc;
	(void)argv;
	signal(SIGPIPE, SIG_IGN);
	log_init(true, getenv("FUZZ_CONTROL_LOG") ? LOG_LVL_DEBUG : LOG_LVL_ERR);
	snprintf(dir, sizeof(dir), "/tmp/komd-fuzz-control-XXXXXX");
	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/komd.conf", dir);
	CHECK((f = fopen(path, "w")) != NULL);
	fprintf(f, "control_socket = \"%s/ctl.sock\";\n%s", dir, fuzz_conf_text);
	fclose(f);
	if ((c = conf_load(path, &errs)) == NULL) {
		for (int i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.msg[i]);
		abort();
	}
	CHECK((komd.base = event_base_new()) != NULL);
	TAILQ_INIT(&komd.lines);
	tags_init();
	komd.conf = c;
	fuzz_apply(c);
	CHECK(control_start(c->control_socket) == 0);
	memset(&fuzz_sun, 0, sizeof(fuzz_sun));
	fuzz_sun.sun_family = AF_UNIX;
	snprintf(fuzz_sun.sun_path, sizeof(fuzz_sun.sun_path), "%s", c->control_socket);
	return 0;
}

static int64_t
fuzz_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* What a terminal may be given: UTF-8, no control byte but newline and tab. */
static void
fuzz_check_clean(const char *p, size_t n)
{
	for (size_t i = 0, l; i < n; i += l) {
		unsigned char ch = (unsigned char)p[i];
		l = ch >= 0x80 ? utf8_len((const unsigned char *)p + i, n - i) : 1;
		CHECK(l > 0);
		CHECK(ch >= 0x20 || ch == '\n' || ch == '\t');
		CHECK(ch != 0x7f);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char ans[FUZZ_MAX_ANSWER];
	size_t sent = 0, got = 0;
	const uint8_t *nl;
	bool eof = false, shut = false;
	int64_t deadline;
	int fd;

	if (size > FUZZ_MAX_INPUT)
		return 0;
	CHECK((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) >= 0);
	CHECK(connect(fd, (struct sockaddr *)&fuzz_sun, sizeof(fuzz_sun)) == 0);
	deadline = fuzz_now_ms() + FUZZ_BOUND_MS;
	while (!eof) {
		ssize_t r;

		CHECK(fuzz_now_ms() < deadline); /* komd neither answered nor closed */
		if (sent < size) {
			r = send(fd, data + sent, size - sent, MSG_NOSIGNAL);
			if (r > 0)
				sent += (size_t)r;
			else if (errno == EPIPE || errno == ECONNRESET)
				sent = size; /* komd has answered and closed */
			else
				CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
		}
		if (sent == size && !shut) {
			shutdown(fd, SHUT_WR);
			shut = true;
		}
		event_base_loop(komd.base, EVLOOP_NONBLOCK);
		while ((r = recv(fd, ans + got, sizeof(ans) - got, 0)) > 0) {
			got += (size_t)r;
			CHECK(got < sizeof(ans));
		}
		if (r == 0 || (r < 0 && errno == ECONNRESET))
			eof = true;
		else
			CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
	}
	close(fd);

	nl = memchr(data, '\n', size < 8192 ? size : 8192);
	if (nl || size >= 8192)
		CHECK(got > 0);
	if (got > 0) {
		CHECK(ans[got - 1] == '\n');
		const char *a = ans;
		if (got > 5 && memcmp(ans, "WAIT ", 5) == 0) {
			/* a set waiting for its device says how long first */
			const char *e = memchr(ans, '\n', got);
			CHECK(e != NULL);
			a = e ? e + 1 : ans;
		}
		size_t left = got - (size_t)(a - ans);
		CHECK((left >= 3 && memcmp(a, "OK\n", 3) == 0) || (left >= 8 && memcmp(a, "PARTIAL\n", 8) == 0) ||
		    (left > 4 && memcmp(a, "ERR ", 4) == 0));
		fuzz_check_clean(ans, got);
		if (size > 5 && memcmp(data, "json\x1f", 5) == 0 && left > 3 && memcmp(a, "OK\n", 3) == 0) {
			json_error_t e;
			json_t *j = json_loadb(a + 3, left - 3, 0, &e);
			if (!j)
				fprintf(stderr, "not JSON: %s at %d: %.*s\n", e.text, e.position, (int)(left - 3), a + 3);
			CHECK(j != NULL);
			json_decref(j);
		}
	}
	return 0;
}
