/* http.c: the read-only HTTP endpoint (komd.conf's http section) on libevent's evhttp:
 * GET / (the status page, daemon/status.html built in, under a Content-Security-Policy
 * that allows its one inline style and script by their hashes), GET /metrics (Prometheus
 * text exposition format 0.0.4), GET /api/status and GET /api/tags?glob=PATTERN (the JSON
 * of komctl --json, built by control.c).
 *
 * What a client may cost is bounded here, since libevent 2.1 bounds nothing of its own:
 * max_clients connections at once (counted from the bufferevent http_bev_cb makes for each
 * to evhttp's close callback, or to the deadline of one that never sent a request; more
 * are answered 503 and closed),
 * max_request bytes of request line and headers (and of a body: 413), and timeout for a
 * whole request from the connection's start or the last answer (a client sending a byte
 * now and then is cut there, not only after timeout of silence). Answers are built whole
 * in memory and written by the bufferevent: a slow reader never holds the loop.
 * Basic authentication (RFC 7617) against SHA-512-crypt hashes: the last credential that
 * verified for each user is kept as a SHA-256 digest, so crypt(3) runs once per new
 * password, not on every scrape. TLS (a line's tls keys) is tls.c's server context; the
 * connection's authentication is checked as a line's (tls_check_auth) before a request is
 * served. */
#include <crypt.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "core.h"
#include "http.h"
#include "tls.h"

#define HTTP_MAX_USERS 64
#define HTTP_MAX_AUTH 512            /* bytes of an Authorization header we look at */

/* One user of the auth_file, and the last password that verified (its digest). */
struct http_user {
	char name[64];
	char hash[160];              /* "$6$salt$..." */
	bool cached;
	unsigned char ok[SHA256_DIGEST_LENGTH];
};

/* One connection, counted from its bufferevent's making (http_bev_cb) to evhttp's close
 * callback, or to its deadline when no request came (a reference on the bufferevent keeps
 * it valid until then, whoever frees it first). */
struct http_conn {
	struct bufferevent *bev;     /* the one evhttp holds; one reference is ours */
	struct event *deadline;      /* timeout for a request; 0 s for one refused at once */
	bool refused;                /* over max_clients: answered 503 and closed */
	bool closecb;                /* evhttp's close callback is set: it counts us out */
	TAILQ_ENTRY(http_conn) link;
};

static struct {
	struct evhttp *http;
	struct evhttp_bound_socket *bound[CONF_MAX_HOSTS];
	char bound_name[CONF_MAX_HOSTS][80];
	int nbound;
	struct hostlist hosts;       /* what is bound, to compare at a reload */
	int port;
	int max_clients, timeout_ms, max_request;
	struct http_user users[HTTP_MAX_USERS];
	int nusers;
	bool auth;                   /* an auth_file is configured */
	struct line_tls *tls;        /* HTTPS: the context (tls.c), rebuilt at each reload */
	TAILQ_HEAD(, http_conn) conns;
	int nconns;
	struct event *accept_pause;  /* descriptors ran out: accept again after a second */
	uint64_t requests, refused, timed_out, auth_failures, auth_hashes;
	uint64_t reloads[3];         /* applied, partial, refused */
	int last_reload;             /* -2: none yet */
} H = { .last_reload = -2 };

static void http_sweep(void);

/* ---- users (auth_file) ---- */

/* Read "user:$6$..." lines ('#' comments and blank lines skipped) into users. 0, or -1
 * logged with the file's line: nothing is taken from a file with an error. */
static int
http_users_load(const char *file, struct http_user *users, int *nusers)
{
	FILE *f = fopen(file, "r");
	char line[512];
	int n = 0, lineno = 0;

	if (!f) {
		log_warn("http: auth_file %s", file);
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		char *colon, *end = line + strcspn(line, "\r\n");

		lineno++;
		*end = '\0';
		if (line[0] == '#' || line[0] == '\0')
			continue;
		colon = strchr(line, ':');
		if (!colon || colon == line || (size_t)(colon - line) >= sizeof(users[0].name) ||
		    strncmp(colon + 1, "$6$", 3) != 0 || strlen(colon + 1) >= sizeof(users[0].hash) || n == HTTP_MAX_USERS) {
			log_warnx("http: %s:%d: not \"user:$6$salt$hash\" (SHA-512-crypt), or more than %d users", file,
			    lineno, HTTP_MAX_USERS);
			fclose(f);
			explicit_bzero(line, sizeof(line));
			return -1;
		}
		memset(&users[n], 0, sizeof(users[n]));
		memcpy(users[n].name, line, (size_t)(colon - line));
		snprintf(users[n].hash, sizeof(users[n].hash), "%s", colon + 1);
		n++;
	}
	fclose(f);
	explicit_bzero(line, sizeof(line));
	*nusers = n;
	return 0;
}

/* Does the request carry "Authorization: Basic base64(user:password)" (RFC 7617 clause 2)
 * of a user of the auth_file? A password seen to verify is kept as a digest. */
static bool
http_authorized(struct evhttp_request *req)
{
	const char *a = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
	unsigned char raw[HTTP_MAX_AUTH], digest[SHA256_DIGEST_LENGTH];
	size_t alen;
	int n;
	bool ok = false;

	if (!a || strncasecmp(a, "Basic ", 6) != 0)
		return false;
	a += 6;
	while (*a == ' ')
		a++;
	alen = strlen(a);
	if (alen == 0 || alen % 4 != 0 || alen / 4 * 3 >= sizeof(raw))
		return false;
	if ((n = EVP_DecodeBlock(raw, (const unsigned char *)a, (int)alen)) < 0)
		return false;
	for (int pad = 0; pad < 2 && alen > 0 && a[alen - 1 - (size_t)pad] == '='; pad++)
		n--;
	raw[n] = '\0';
	char *colon = memchr(raw, ':', (size_t)n);
	if (!colon || memchr(raw, '\0', (size_t)n))
		goto out;
	*colon = '\0';
	SHA256(raw, (size_t)n, digest); /* "user\0password": a digest of both */
	for (int i = 0; i < H.nusers; i++) {
		struct http_user *u = &H.users[i];
		struct crypt_data cd;
		const char *h;

		if (strcmp(u->name, (char *)raw) != 0)
			continue;
		if (u->cached && CRYPTO_memcmp(u->ok, digest, sizeof(digest)) == 0) {
			ok = true;
			break;
		}
		memset(&cd, 0, sizeof(cd));
		H.auth_hashes++;
		h = crypt_r(colon + 1, u->hash, &cd);
		ok = h && strlen(h) == strlen(u->hash) && CRYPTO_memcmp(h, u->hash, strlen(h)) == 0;
		explicit_bzero(&cd, sizeof(cd));
		if (ok) {
			memcpy(u->ok, digest, sizeof(digest));
			u->cached = true;
		}
		break;
	}
out:
	explicit_bzero(raw, sizeof(raw));
	return ok;
}

/* ---- metrics (Prometheus text exposition format 0.0.4) ---- */

/* A label value: '\\', '"' and newline escaped, as the format requires. */
static void
m_escape(struct evbuffer *b, const char *s)
{
	for (; s && *s; s++) {
		if (*s == '\\' || *s == '"')
			evbuffer_add_printf(b, "\\%c", *s);
		else if (*s == '\n')
			evbuffer_add(b, "\\n", 2);
		else
			evbuffer_add(b, s, 1);
	}
}

static void
m_head(struct evbuffer *b, const char *name, bool gauge, const char *help)
{
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, gauge ? "gauge" : "counter");
}

/* name{k1="v1",k2="v2",...} value: labels as NULL-terminated key, value pairs. */
static void
m_sample(struct evbuffer *b, const char *name, const char *const *labels, const char *value)
{
	evbuffer_add_printf(b, "%s", name);
	for (int i = 0; labels && labels[i]; i += 2) {
		evbuffer_add_printf(b, "%s%s=\"", i ? "," : "{", labels[i]);
		m_escape(b, labels[i + 1]);
		evbuffer_add(b, "\"", 1);
	}
	evbuffer_add_printf(b, "%s %s\n", labels && labels[0] ? "}" : "", value);
}

static void
m_u64(struct evbuffer *b, const char *name, const char *const *labels, uint64_t v)
{
	char t[32];

	snprintf(t, sizeof(t), "%" PRIu64, v);
	m_sample(b, name, labels, t);
}

static void
m_dbl(struct evbuffer *b, const char *name, const char *const *labels, double v)
{
	char t[48];

	snprintf(t, sizeof(t), "%.17g", v);
	m_sample(b, name, labels, t);
}

/* The core's counters of a line (struct counters), as Prometheus counters. */
static const struct {
	const char *name, *help;
	size_t off;
} m_line_counters[] = {
	{ "komd_line_received_bytes_total", "bytes received on the line's connections", offsetof(struct counters, bytes_in) },
	{ "komd_line_sent_bytes_total", "bytes sent on the line's connections", offsetof(struct counters, bytes_out) },
	{ "komd_line_received_frames_total", "protocol frames received", offsetof(struct counters, frames_in) },
	{ "komd_line_sent_frames_total", "protocol frames sent", offsetof(struct counters, frames_out) },
	{ "komd_line_connects_total", "connections established (or accepted)", offsetof(struct counters, connects) },
	{ "komd_line_failovers_total", "switches between the primary and the backup path", offsetof(struct counters, failovers) },
	{ "komd_line_protocol_errors_total", "frames that broke the protocol's rules", offsetof(struct counters, proto_errors) },
	{ "komd_line_rejected_connections_total", "connections refused (limits, allow list)", offsetof(struct counters, rejected) },
	{ "komd_line_tls_failures_total", "TLS handshakes or authentications that failed", offsetof(struct counters, tls_failures) },
};

static const char *
m_path_name(const struct path *p)
{
	return p->idx == 0 ? "primary" : "backup";
}

static void
m_lines(struct evbuffer *b)
{
	static const enum conn_state cstates[] = { CS_STOPPED, CS_SIMULATED, CS_WAITING, CS_RESOLVING, CS_CONNECTING,
		CS_HANDSHAKE, CS_CONNECTED, CS_LISTENING };
	static const enum station_state sstates[] = { ST_STOPPED, ST_WAITING, ST_OK, ST_ERROR, ST_SIMULATED, ST_SERVING };
	struct line *l;

	m_head(b, "komd_line_info", true, "a configured line (value 1), with its protocol and type");
	TAILQ_FOREACH(l, &komd.lines, link)
		m_sample(b, "komd_line_info", (const char *[]){ "line", l->lc->name, "protocol", l->lc->protocol, "type",
		    l->lc->type == LINE_TCP_REDUNDANT ? "tcp-redundant" : "tcp", NULL }, "1");
	m_head(b, "komd_line_started", true, "1 when the line runs, 0 when it is disabled or could not start");
	TAILQ_FOREACH(l, &komd.lines, link)
		m_u64(b, "komd_line_started", (const char *[]){ "line", l->lc->name, NULL }, l->started);
	m_head(b, "komd_line_sessions", true, "connections the line has now");
	TAILQ_FOREACH(l, &komd.lines, link)
		m_u64(b, "komd_line_sessions", (const char *[]){ "line", l->lc->name, NULL }, (uint64_t)l->nsessions);
	for (size_t i = 0; i < sizeof(m_line_counters) / sizeof(m_line_counters[0]); i++) {
		m_head(b, m_line_counters[i].name, false, m_line_counters[i].help);
		TAILQ_FOREACH(l, &komd.lines, link)
			m_u64(b, m_line_counters[i].name, (const char *[]){ "line", l->lc->name, NULL },
			    *(const uint64_t *)(const void *)((const char *)&l->cnt + m_line_counters[i].off));
	}
	m_head(b, "komd_path_state", true, "a client line's path: 1 for the state it is in, 0 for the others");
	TAILQ_FOREACH(l, &komd.lines, link)
		for (int p = 0; !l->server && p < l->npaths; p++)
			for (size_t s = 0; s < sizeof(cstates) / sizeof(cstates[0]); s++)
				m_u64(b, "komd_path_state", (const char *[]){ "line", l->lc->name, "path",
				    m_path_name(&l->paths[p]), "state", conn_state_name(cstates[s]), NULL },
				    l->paths[p].state == cstates[s]);
	m_head(b, "komd_path_active", true, "1 for the path whose session carries the line's data");
	TAILQ_FOREACH(l, &komd.lines, link)
		for (int p = 0; !l->server && p < l->npaths; p++)
			m_u64(b, "komd_path_active", (const char *[]){ "line", l->lc->name, "path", m_path_name(&l->paths[p]),
			    NULL }, l->paths[p].sess && l->paths[p].sess == l->active);
	m_head(b, "komd_station_state", true, "a station: 1 for the state it is in, 0 for the others");
	TAILQ_FOREACH(l, &komd.lines, link)
		for (int i = 0; i < l->nstations; i++)
			for (size_t s = 0; s < sizeof(sstates) / sizeof(sstates[0]); s++)
				m_u64(b, "komd_station_state", (const char *[]){ "line", l->lc->name, "station",
				    l->stations[i].sc->name, "state", station_state_name(sstates[s]), NULL },
				    l->stations[i].state == sstates[s]);
	static const struct {
		const char *name, *help;
		size_t off;
		bool gauge;
	} sc[] = {
		{ "komd_station_tags", "tags of the station", 0, true },
		{ "komd_station_polls_total", "polls (requests) of the station", offsetof(struct station, polls), false },
		{ "komd_station_errors_total", "communication errors of the station", offsetof(struct station, errors), false },
		{ "komd_station_writes_total", "writes routed to the station", offsetof(struct station, writes), false },
		{ "komd_station_orphaned_writes_total", "writes whose requester left before the result",
		  offsetof(struct station, writes_orphaned), false },
	};
	for (size_t k = 0; k < sizeof(sc) / sizeof(sc[0]); k++) {
		m_head(b, sc[k].name, sc[k].gauge, sc[k].help);
		TAILQ_FOREACH(l, &komd.lines, link)
			for (int i = 0; i < l->nstations; i++) {
				const struct station *st = &l->stations[i];
				m_u64(b, sc[k].name, (const char *[]){ "line", l->lc->name, "station", st->sc->name, NULL },
				    sc[k].gauge ? (uint64_t)st->ntags : *(const uint64_t *)(const void *)((const char *)st + sc[k].off));
			}
	}
}

/* Every protocol's own counters (proto_ops.counters), by name: a family's samples are
 * together, whichever protocols' lines declare it; a labelled counter's entries are one
 * family, each sample with its label beside "line". */
static void
m_protocols(struct evbuffer *b)
{
	for (int p = 0; proto_table[p]; p++)
		for (int i = 0; proto_table[p]->counters && proto_table[p]->counters[i].name; i++) {
			const struct proto_counter *pc = &proto_table[p]->counters[i];
			char name[160];
			bool seen = false, head = false;
			struct line *l;

			/* first declared by an earlier protocol, or earlier in this one: written there */
			for (int q = 0; q <= p && !seen; q++)
				for (int j = 0; proto_table[q]->counters && proto_table[q]->counters[j].name && !seen &&
				    (q < p || j < i); j++)
					seen = strcmp(proto_table[q]->counters[j].name, pc->name) == 0;
			if (seen)
				continue;
			snprintf(name, sizeof(name), "komd_%s", pc->name);
			TAILQ_FOREACH(l, &komd.lines, link)
				for (int j = 0; l->pcnt && j < l->npcnt; j++) {
					if (strcmp(l->ops->counters[j].name, pc->name) != 0)
						continue;
					if (!head)
						m_head(b, name, pc->gauge, pc->help ? pc->help : pc->name);
					head = true;
					const struct proto_counter *k = &l->ops->counters[j];
					m_u64(b, name, (const char *[]){ "line", l->lc->name, k->label, k->label_value, NULL },
					    l->pcnt[j]);
				}
		}
}

struct m_quality {
	uint64_t n[6];                /* good, then one per flag */
};

static void
m_quality_cb(struct tag *t, void *arg)
{
	struct m_quality *q = arg;
	static const unsigned flags[] = { Q_INVALID, Q_NOTTOPICAL, Q_SUBSTITUTED, Q_BLOCKED, Q_OVERFLOW };

	if (t->quality == 0)
		q->n[0]++;
	for (int i = 0; i < 5; i++)
		if (t->quality & flags[i])
			q->n[i + 1]++;
}

static void
m_tags(struct evbuffer *b)
{
	static const char *const names[] = { "good", "invalid", "not_topical", "substituted", "blocked", "overflow" };
	struct m_quality q = { { 0 } };

	tag_foreach(m_quality_cb, &q);
	m_head(b, "komd_tags", true, "tags by quality: good (no flag), or with the flag named (a tag may have several)");
	for (int i = 0; i < 6; i++)
		m_u64(b, "komd_tags", (const char *[]){ "quality", names[i], NULL }, q.n[i]);
}

static void
m_tls(struct evbuffer *b)
{
	struct line *l;

	m_head(b, "komd_tls_cert_not_after_seconds", true,
	    "end of a certificate's validity (seconds since the epoch): our own (my_cert) and those we trust");
	TAILQ_FOREACH(l, &komd.lines, link)
		for (int i = 0; l->tls && i < l->tls->ncerts; i++) {
			const struct tls_cert_info *ci = &l->tls->certs[i];
			bool dup = false;

			for (int j = 0; j < i && !dup; j++) /* the same certificate twice in a file */
				dup = strcmp(l->tls->certs[j].file, ci->file) == 0 && strcmp(l->tls->certs[j].role, ci->role) == 0 &&
				    strcmp(l->tls->certs[j].subject, ci->subject) == 0;
			if (!dup)
				m_dbl(b, "komd_tls_cert_not_after_seconds", (const char *[]){ "line", l->lc->name, "role", ci->role,
				    "file", ci->file, "subject", ci->subject, NULL }, (double)ci->not_after);
		}
	for (int i = 0; H.tls && i < H.tls->ncerts; i++) /* the HTTP endpoint's own: no line */
		m_dbl(b, "komd_tls_cert_not_after_seconds", (const char *[]){ "role", H.tls->certs[i].role, "file",
		    H.tls->certs[i].file, "subject", H.tls->certs[i].subject, NULL }, (double)H.tls->certs[i].not_after);
}

/* process_* as Prometheus's client libraries name them, from /proc. */
static void
m_process(struct evbuffer *b)
{
	long tck = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	unsigned long utime = 0, stime = 0, vsize = 0;
	unsigned long long start = 0, btime = 0;
	long rss = 0;
	char buf[1024], *p;
	FILE *f;
	int fds = 0;
	struct rlimit rl;
	DIR *d;

	if ((f = fopen("/proc/self/stat", "r"))) {
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);
		buf[n] = '\0';
		fclose(f);
		/* after "(comm)": state is field 3; utime 14, stime 15, starttime 22, vsize 23, rss 24 */
		if ((p = strrchr(buf, ')')) && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d "
		    "%*d %*d %*d %*d %llu %lu %ld", &utime, &stime, &start, &vsize, &rss) != 5)
			utime = stime = 0;
	}
	if ((f = fopen("/proc/stat", "r"))) {
		while (fgets(buf, sizeof(buf), f))
			if (sscanf(buf, "btime %llu", &btime) == 1)
				break;
		fclose(f);
	}
	if ((d = opendir("/proc/self/fd"))) {
		struct dirent *e;
		while ((e = readdir(d)))
			fds += e->d_name[0] != '.';
		closedir(d);
	}
	m_head(b, "process_cpu_seconds_total", false, "user and system CPU time spent, in seconds");
	m_dbl(b, "process_cpu_seconds_total", NULL, tck > 0 ? (double)(utime + stime) / (double)tck : 0);
	m_head(b, "process_resident_memory_bytes", true, "resident memory size in bytes");
	m_u64(b, "process_resident_memory_bytes", NULL, (uint64_t)rss * (uint64_t)(page > 0 ? page : 4096));
	m_head(b, "process_virtual_memory_bytes", true, "virtual memory size in bytes");
	m_u64(b, "process_virtual_memory_bytes", NULL, vsize);
	m_head(b, "process_open_fds", true, "open file descriptors");
	m_u64(b, "process_open_fds", NULL, (uint64_t)fds);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		m_head(b, "process_max_fds", true, "the most file descriptors the process may open");
		m_u64(b, "process_max_fds", NULL, (uint64_t)rl.rlim_cur);
	}
	m_head(b, "process_start_time_seconds", true, "start time of the process since the epoch, in seconds");
	m_dbl(b, "process_start_time_seconds", NULL, tck > 0 ? (double)btime + (double)start / (double)tck : 0);
}

int
http_metrics(struct evbuffer *b)
{
	static const char *const results[] = { "applied", "partial", "refused" };

	m_head(b, "komd_build_info", true, "komd's version (value 1)");
	m_sample(b, "komd_build_info", (const char *[]){ "version", KOMD_VERSION, NULL }, "1");
	m_lines(b);
	m_protocols(b);
	m_tags(b);
	m_tls(b);
	m_head(b, "komd_reloads_total", false, "configuration reloads by result: applied, partial (some lines could "
	    "not start), refused (errors: nothing changed)");
	for (int i = 0; i < 3; i++)
		m_u64(b, "komd_reloads_total", (const char *[]){ "result", results[i], NULL }, H.reloads[i]);
	m_head(b, "komd_config_last_reload_successful", true, "1 unless the last reload was refused");
	m_u64(b, "komd_config_last_reload_successful", NULL, H.last_reload != -1);
	http_sweep();
	m_head(b, "komd_http_connections", true, "HTTP connections open now");
	m_u64(b, "komd_http_connections", NULL, (uint64_t)H.nconns);
	m_head(b, "komd_http_requests_total", false, "HTTP requests answered");
	m_u64(b, "komd_http_requests_total", NULL, H.requests);
	m_head(b, "komd_http_refused_connections_total", false, "HTTP connections refused (max_clients, descriptors)");
	m_u64(b, "komd_http_refused_connections_total", NULL, H.refused);
	m_head(b, "komd_http_timeouts_total", false, "HTTP connections closed for a request not complete within timeout");
	m_u64(b, "komd_http_timeouts_total", NULL, H.timed_out);
	m_head(b, "komd_http_auth_failures_total", false, "HTTP requests refused for missing or wrong credentials");
	m_u64(b, "komd_http_auth_failures_total", NULL, H.auth_failures);
	m_head(b, "komd_http_auth_hashes_total", false, "passwords hashed to check them (a password that verified is "
	    "remembered and not hashed again)");
	m_u64(b, "komd_http_auth_hashes_total", NULL, H.auth_hashes);
	m_process(b);
	/* evbuffer_add_printf's failures show as a short buffer: out of memory is all it can be */
	return evbuffer_get_length(b) > 0 ? 0 : -1;
}

void
http_note_reload(int rc)
{
	H.reloads[rc == 0 ? 0 : rc == 1 ? 1 : 2]++;
	H.last_reload = rc < 0 ? -1 : rc;
}

/* ---- connections ---- */

static struct http_conn *
http_conn_of(struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
	struct http_conn *c;

	TAILQ_FOREACH(c, &H.conns, link)
		if (c->bev == bev)
			return c;
	return NULL;
}

/* Count c out and drop our reference on its bufferevent. */
static void
http_conn_free(struct http_conn *c)
{
	TAILQ_REMOVE(&H.conns, c, link);
	H.nconns--;
	event_free(c->deadline);
	bufferevent_decref(c->bev);
	free(c);
}

/* Has evhttp let go of c's connection (bufferevent_free clears the callbacks; our reference
 * keeps the rest)? */
static bool
http_conn_gone(struct http_conn *c)
{
	bufferevent_data_cb rcb = NULL;

	bufferevent_getcb(c->bev, &rcb, NULL, NULL, NULL);
	return rcb == NULL || bufferevent_getfd(c->bev) < 0;
}

/* Count out the connections evhttp closed before any request (a request line it could not
 * parse, a client that left): they have no close callback to do it. */
static void
http_sweep(void)
{
	struct http_conn *c, *tmp;

	TAILQ_FOREACH_SAFE(c, &H.conns, link, tmp)
		if (!c->closecb && http_conn_gone(c))
			http_conn_free(c);
}

static void
http_arm(struct http_conn *c, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	evtimer_add(c->deadline, &tv);
}

/* The deadline: a request not complete in time, or a connection over max_clients (answered
 * 503 here when no request came yet). Shutting the socket down makes evhttp see its end and
 * free the connection in its own callback. */
static void
http_deadline_cb(evutil_socket_t fd0, short ev, void *arg)
{
#define HTTP_BUSY_TEXT "komd: too many HTTP connections\n"
	static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
	    "Content-Length: 32\r\nConnection: close\r\n\r\n" HTTP_BUSY_TEXT;
	_Static_assert(sizeof(HTTP_BUSY_TEXT) - 1 == 32, "Content-Length of the 503 answer");
	struct http_conn *c = arg;
	evutil_socket_t fd = bufferevent_getfd(c->bev);

	(void)fd0; (void)ev;
	if (http_conn_gone(c)) {
		if (!c->closecb)
			http_conn_free(c);
		return;
	}
	if (c->refused) {
		ssize_t w = send(fd, busy, sizeof(busy) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
		(void)w; /* a client that cannot take 150 bytes gets the close alone */
	} else {
		H.timed_out++;
		log_debug("http: a connection did not complete its request within %d ms: closed", H.timeout_ms);
	}
	shutdown(fd, SHUT_RDWR); /* evhttp sees the end and frees its part */
	if (!c->closecb)
		http_conn_free(c);
}

/* evhttp closes a connection that had a request. */
static void
http_close_cb(struct evhttp_connection *evcon, void *arg)
{
	(void)evcon;
	http_conn_free(arg);
}

/* evhttp's new connection (its socket comes right after): a bufferevent we can count. */
static struct bufferevent *
http_bev_cb(struct event_base *base, void *arg)
{
	struct http_conn *c = calloc(1, sizeof(*c));

	SSL *ssl = NULL;

	(void)arg;
	if (!c)
		return NULL; /* evhttp makes its own: uncounted, but komd is out of memory anyway */
	if (H.tls && !(ssl = tls_ssl_new(H.tls, NULL)))
		c->bev = NULL;
	else if (H.tls)
		c->bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	else
		c->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!c->bev && ssl)
		SSL_free(ssl);
	if (!c->bev ||
	    !(c->deadline = evtimer_new(base, http_deadline_cb, c))) {
		if (c->bev)
			bufferevent_free(c->bev);
		free(c);
		return NULL;
	}
	bufferevent_incref(c->bev);
	if (H.nconns >= H.max_clients)
		http_sweep();
	TAILQ_INSERT_TAIL(&H.conns, c, link);
	H.nconns++;
	if (H.nconns > H.max_clients) {
		c->refused = true;
		H.refused++;
		log_debug("http: more than max_clients %d connections: refused", H.max_clients);
		http_arm(c, 0);
	} else
		http_arm(c, H.timeout_ms);
	return c->bev;
}

/* accept() failed: out of descriptors pauses the listeners for a second (no spinning). */
static void
http_accept_resume_cb(evutil_socket_t fd, short ev, void *arg)
{
	(void)fd; (void)ev; (void)arg;
	for (int i = 0; i < H.nbound; i++)
		evconnlistener_enable(evhttp_bound_socket_get_listener(H.bound[i]));
}

static void
http_accept_error_cb(struct evconnlistener *lst, void *arg)
{
	int err = EVUTIL_SOCKET_ERROR();
	struct timeval sec = { 1, 0 };

	(void)lst; (void)arg;
	if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM) {
		log_warnx("http: accept: %s", evutil_socket_error_to_string(err));
		return;
	}
	log_warnx("http: accept: %s: not accepting for a second", evutil_socket_error_to_string(err));
	for (int i = 0; i < H.nbound; i++)
		evconnlistener_disable(evhttp_bound_socket_get_listener(H.bound[i]));
	evtimer_add(H.accept_pause, &sec);
}

/* ---- requests ---- */

static void
http_reply(struct evhttp_request *req, int code, const char *reason, const char *type, struct evbuffer *body)
{
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);

	evhttp_add_header(out, "Content-Type", type);
	evhttp_add_header(out, "Cache-Control", "no-store");
	evhttp_add_header(out, "X-Content-Type-Options", "nosniff");
	H.requests++;
	evhttp_send_reply(req, code, reason, body);
}

static void
http_error(struct evhttp_request *req, int code, const char *reason, const char *why)
{
	struct evbuffer *b = evbuffer_new();

	if (b)
		evbuffer_add_printf(b, "komd: %s\n", why);
	http_reply(req, code, reason, "text/plain; charset=utf-8", b);
	if (b)
		evbuffer_free(b);
}

/* ---- the status page ---- */

static char page_csp[640];

/* "'sha256-BASE64'" (a hash-source of Content Security Policy Level 3, clause 2.3.1) of
 * the bytes between open and the next close in the page; false unless the page has open
 * exactly once (an element whose text the policy would not match must not go unnoticed). */
static bool
http_page_hash(const char *open, const char *close, char *out, size_t outlen)
{
	const char *page = (const char *)http_status_page, *end = page + http_status_page_len, *a, *z;
	unsigned char md[SHA256_DIGEST_LENGTH], b64[4 * ((SHA256_DIGEST_LENGTH + 2) / 3) + 1];

	if (!(a = memmem(page, http_status_page_len, open, strlen(open))))
		return false;
	a += strlen(open);
	if (memmem(a, (size_t)(end - a), open, strlen(open)) ||
	    !(z = memmem(a, (size_t)(end - a), close, strlen(close))))
		return false;
	SHA256((const unsigned char *)a, (size_t)(z - a), md);
	EVP_EncodeBlock(b64, md, sizeof(md));
	snprintf(out, outlen, "'sha256-%s'", b64);
	return true;
}

/* The page's policy: its one <style> and one <script> by hash, fetch() to komd alone,
 * nothing else (no eval, no inline handler or style attribute, no frame, no form). */
static void
http_page_init(void)
{
	char style[80], script[80];

	if (page_csp[0])
		return;
	if (!http_page_hash("<style>", "</style>", style, sizeof(style)) ||
	    !http_page_hash("<script>", "</script>", script, sizeof(script)))
		fatalx("http: the built-in status page needs one <style> and one <script> element");
	snprintf(page_csp, sizeof(page_csp), "default-src 'none'; script-src %s; style-src %s; connect-src 'self'; "
	    "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'", script, style);
}

/* The page, with its policy. 0, or -1 when out of memory (nothing sent). */
static int
http_page(struct evhttp_request *req, struct evbuffer *b)
{
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);

	if (evbuffer_add_reference(b, http_status_page, http_status_page_len, NULL, NULL) != 0)
		return -1;
	evhttp_add_header(out, "Content-Security-Policy", page_csp);
	evhttp_add_header(out, "Referrer-Policy", "no-referrer");
	evhttp_add_header(out, "X-Frame-Options", "DENY");
	http_reply(req, 200, "OK", "text/html; charset=utf-8", b);
	return 0;
}

/* ---- the request callback ---- */

static void
http_request_cb(struct evhttp_request *req, void *arg)
{
	struct http_conn *c = http_conn_of(req);
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	struct evbuffer *b;
	int rc = -1;

	(void)arg;
	if (c && c->refused) {
		evtimer_del(c->deadline);
		if (!c->closecb) {
			evhttp_connection_set_closecb(evhttp_request_get_connection(req), http_close_cb, c);
			c->closecb = true;
		}
		evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
		http_error(req, 503, "Service Unavailable", "too many HTTP connections");
		return;
	}
	if (c && !c->closecb) {
		int on = 1;

		evhttp_connection_set_closecb(evhttp_request_get_connection(req), http_close_cb, c);
		c->closecb = true;
		/* evhttp writes the head and the body apart: without this a keep-alive client's
		 * delayed ACK holds each answer 40 ms (Nagle) */
		setsockopt(bufferevent_getfd(c->bev), IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	}
	if (c)
		http_arm(c, H.timeout_ms); /* for the answer to leave and the next request to come */
	if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
		http_error(req, 405, "Method Not Allowed", "read-only: GET and HEAD only");
		return;
	}
	if (H.tls && c) {
		char why[256];
		SSL *ssl = bufferevent_openssl_get_ssl(c->bev);

		if (!ssl || !tls_check_auth(ssl, H.tls, why, sizeof(why))) {
			log_warnx("http: TLS: %s", ssl ? why : "no TLS session");
			evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
			http_error(req, 403, "Forbidden", "TLS authentication as configured is required");
			return;
		}
	}
	if (H.auth && !http_authorized(req)) {
		H.auth_failures++;
		evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
		    "Basic realm=\"komd\", charset=\"UTF-8\"");
		http_error(req, 401, "Unauthorized", "authentication required");
		return;
	}
	if (!path || !(b = evbuffer_new())) {
		http_error(req, 400, "Bad Request", "no path");
		return;
	}
	if (strcmp(path, "/") == 0) {
		rc = http_page(req, b);
	} else if (strcmp(path, "/metrics") == 0) {
		if ((rc = http_metrics(b)) == 0)
			http_reply(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", b);
	} else if (strcmp(path, "/api/status") == 0) {
		if ((rc = control_status_json(b)) == 0)
			http_reply(req, 200, "OK", "application/json", b);
	} else if (strcmp(path, "/api/tags") == 0) {
		struct evkeyvalq q;
		const char *query = evhttp_uri_get_query(uri);

		TAILQ_INIT(&q);
		if (query && evhttp_parse_query_str(query, &q) != 0) {
			evbuffer_free(b);
			http_error(req, 400, "Bad Request", "the query string cannot be parsed");
			return;
		}
		if ((rc = control_tags_json(b, evhttp_find_header(&q, "glob"))) == 0)
			http_reply(req, 200, "OK", "application/json", b);
		evhttp_clear_headers(&q);
	} else {
		rc = 0;
		http_error(req, 404, "Not Found", "no such page: /, /metrics, /api/status, /api/tags?glob=PATTERN");
	}
	if (rc != 0)
		http_error(req, 500, "Internal Server Error", "out of memory");
	evbuffer_free(b);
}

/* ---- listeners ---- */

static int
http_listen_one(const struct hostspec *h, int port)
{
	int fd;
	char name[300];

	if ((fd = listen_socket(h, port, 128, name, sizeof(name))) < 0) {
		log_warn("http: listen %s", name);
		return -1;
	}
	if (!(H.bound[H.nbound] = evhttp_accept_socket_with_handle(H.http, fd))) {
		log_warnx("http: listen %s: evhttp refused the socket", name);
		close(fd);
		return -1;
	}
	evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(H.bound[H.nbound]), http_accept_error_cb);
	snprintf(H.bound_name[H.nbound], sizeof(H.bound_name[0]), "%s", name);
	H.nbound++;
	log_info("http: listening on %s", name);
	if (!H.auth && (h->wildcard || (strncmp(h->name, "127.", 4) != 0 && strcmp(h->name, "::1") != 0)))
		log_warnx("http: %s is not a loopback address and no auth_file is set: whoever reaches it reads "
		    "every tag and status", name);
	return 0;
}

/* The settings of hc that need no new socket, and its users. */
static int
http_settings(const struct http_conf *hc)
{
	struct timeval tv = { hc->timeout_ms / 1000, (hc->timeout_ms % 1000) * 1000 };
	struct http_user users[HTTP_MAX_USERS];
	int nusers = 0, rc = 0;

	H.max_clients = hc->max_clients;
	H.timeout_ms = hc->timeout_ms;
	H.max_request = hc->max_request;
	evhttp_set_timeout_tv(H.http, &tv);
	evhttp_set_max_headers_size(H.http, (ev_ssize_t)hc->max_request);
	evhttp_set_max_body_size(H.http, (ev_ssize_t)hc->max_request);
	/* every method reaches http_request_cb, which answers 405 (evhttp would say 501) */
	evhttp_set_allowed_methods(H.http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
	    EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	if (hc->tls_line.tls.present) {
		struct tls_error e;
		struct line_tls *t = tls_setup(&hc->tls_line, komd.no_peer_verify, &e);

		if (t) {
			tls_free(H.tls); /* SSL objects of open connections keep the old context */
			H.tls = t;
			tls_warn_expiry(H.tls, "http", 30);
		} else {
			log_err("%s:%d: http: tls: %s%s", e.where.file, e.where.line, e.msg,
			    H.tls ? "; keeping the certificates loaded before" : "");
			rc = -1;
		}
	} else if (H.tls) {
		tls_free(H.tls);
		H.tls = NULL;
	}
	if (!hc->auth_file) {
		H.auth = false;
		H.nusers = 0;
	} else if (http_users_load(hc->auth_file, users, &nusers) == 0) {
		H.auth = true;
		/* a user whose hash did not change keeps the credential seen to verify */
		for (int i = 0; i < nusers; i++)
			for (int j = 0; j < H.nusers; j++)
				if (strcmp(users[i].name, H.users[j].name) == 0 && strcmp(users[i].hash, H.users[j].hash) == 0)
					users[i] = H.users[j];
		memcpy(H.users, users, sizeof(users));
		H.nusers = nusers;
	} else {
		rc = -1;
		if (!H.auth) { /* never serve without the authentication asked for */
			H.auth = true;
			H.nusers = 0;
		}
	}
	explicit_bzero(users, sizeof(users));
	return rc;
}

int
http_start(const struct http_conf *hc)
{
	if (!hc->present)
		return 0;
	if (!H.conns.tqh_last)
		TAILQ_INIT(&H.conns);
	if (!(H.http = evhttp_new(komd.base)) ||
	    (!H.accept_pause && !(H.accept_pause = evtimer_new(komd.base, http_accept_resume_cb, NULL))))
		fatalx("http: evhttp_new");
	http_page_init();
	evhttp_set_gencb(H.http, http_request_cb, NULL);
	evhttp_set_bevcb(H.http, http_bev_cb, NULL);
	H.hosts = hc->hosts;
	H.port = hc->port;
	int rc = http_settings(hc);
	if (hc->tls_line.tls.present && !H.tls)
		return -1; /* never plain HTTP where HTTPS was asked for */
	for (int i = 0; i < hc->hosts.n; i++)
		if (http_listen_one(&hc->hosts.h[i], hc->port) != 0)
			rc = -1;
	return rc;
}

static bool
http_same_addresses(const struct http_conf *hc)
{
	if (!H.http || !hc->present || hc->port != H.port || hc->hosts.n != H.hosts.n)
		return false;
	for (int i = 0; i < hc->hosts.n; i++)
		if (strcmp(hc->hosts.h[i].name, H.hosts.h[i].name) != 0 || hc->hosts.h[i].family != H.hosts.h[i].family ||
		    hc->hosts.h[i].wildcard != H.hosts.h[i].wildcard)
			return false;
	return true;
}

int
http_reload(const struct http_conf *hc)
{
	if (http_same_addresses(hc))
		return http_settings(hc);
	http_stop();
	if (hc->present)
		log_info("http: listening anew (host or port changed)");
	return http_start(hc);
}

void
http_stop(void)
{
	if (!H.http)
		return;
	for (int i = 0; i < H.nbound; i++)
		log_info("http: %s closed", H.bound_name[i]);
	/* frees every connection: close callbacks count out those that had a request */
	evhttp_free(H.http);
	H.http = NULL;
	while (!TAILQ_EMPTY(&H.conns))
		http_conn_free(TAILQ_FIRST(&H.conns));
	H.nbound = 0;
	if (H.accept_pause) {
		event_free(H.accept_pause);
		H.accept_pause = NULL;
	}
	explicit_bzero(H.users, sizeof(H.users));
	H.nusers = 0;
	tls_free(H.tls);
	H.tls = NULL;
}
