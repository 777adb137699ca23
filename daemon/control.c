/* control.c: the control socket (a Unix stream socket, mode 0660) that komctl talks to.
 * A request is one line: fields separated by 0x1f (the first is "json" or "text", then the
 * command and its arguments). The answer is "OK\n" or "ERR message\n", then the body; komd
 * closes the connection after it. `set` answers when the acquiring station has.
 *
 * What a client may cost is bounded: control_max_clients connections, control_timeout to
 * send the request (and, idle, to take the answer), CTL_MAX_REQUEST bytes of it, and not
 * a byte more is read while the request is served. The peer's credentials (SO_PEERCRED)
 * name who changed what in the log, and decide control_readonly_group. A spare descriptor
 * lets the socket answer when the lines have used up every other one. */
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <jansson.h>

#include "core.h"
#include "tls.h"

#define CTL_MAX_REQUEST 8192     /* a request line, its newline included (komctl's limit too) */
#define CTL_MAX_ARGS 8
#define CTL_LOG_EVERY_MS 10000   /* what a client can repeat at will is logged this seldom */

/* Who is at the other end (SO_PEERCRED when the connection was accepted). */
struct ctl_peer {
	bool known;
	pid_t pid;
	uid_t uid;
	gid_t gid;
	char desc[96];               /* "uid 1000 (alice) pid 4242", made when first logged */
};

/* A connection's life: READING -> RUNNING -> ANSWERING -> closed. */
enum ctl_state {
	CTL_READING,    /* waiting for the request line, until the deadline */
	CTL_RUNNING,    /* the request is served (a set waits for its device): nothing is read */
	CTL_ANSWERING,  /* the answer is written; the connection closes when it has gone */
};

struct ctl_conn {
	struct bufferevent *bev;
	struct event *deadline;      /* control_timeout for the request */
	struct write_req *req;       /* a set in progress */
	struct ctl_peer peer;
	enum ctl_state state;
	bool json;
	bool partial;                /* a reload applied, but some lines did not start */
	TAILQ_ENTRY(ctl_conn) link;
};

/* Events a client can cause at will, logged once per CTL_LOG_EVERY_MS with a count. */
struct ctl_lograte {
	int64_t last_ms;
	unsigned long skipped;
};

static struct evconnlistener *ctl_lst;
static char ctl_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
static TAILQ_HEAD(, ctl_conn) ctl_conns = TAILQ_HEAD_INITIALIZER(ctl_conns);
static int ctl_nconns;
static int ctl_spare = -1;      /* /dev/null, closed to accept when descriptors run out */
static struct ctl_lograte ctl_rate_refused, ctl_rate_timeout, ctl_rate_fds;

/* ---- output helpers ---- */

/* Is c at p[0..n) a byte to write as \xNN: a control byte (but keep), DEL, or a byte
 * that does not start valid UTF-8? Else *len is the sequence's length. Text from peers
 * (a device's error, a string tag's value) may hold anything. */
static bool
ctl_bad_byte(const char *p, size_t n, const char *keep, size_t *len)
{
	unsigned char c = (unsigned char)*p;

	*len = c >= 0x80 ? utf8_len((const unsigned char *)p, n) : 1;
	return (c < 0x20 && (c == 0 || !strchr(keep, c))) || c == 0x7f || *len == 0;
}

/* Text output, made safe for a terminal: runs of good bytes as they are, others \xNN. */
static void
ctl_add_clean(struct evbuffer *out, const char *s, size_t n)
{
	size_t start = 0, l;

	for (size_t i = 0; i < n; i += l) {
		if (!ctl_bad_byte(s + i, n - i, "\n\t", &l))
			continue;
		evbuffer_add(out, s + start, i - start);
		evbuffer_add_printf(out, "\\x%02x", (unsigned char)s[i]);
		l = 1;
		start = i + 1;
	}
	evbuffer_add(out, s + start, n - start);
}

/* Queue the answer (err, or OK and body; PARTIAL and body for a reload that applied but
 * could not start every line); the connection closes once it has been written, or when the
 * client has not taken any of it for control_timeout. */
static void
ctl_finish(struct ctl_conn *c, struct evbuffer *body, const char *err)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct timeval tv = { komd.conf->control_timeout_ms / 1000, (komd.conf->control_timeout_ms % 1000) * 1000 };

	if (c->state == CTL_ANSWERING)
		return;
	if (err) {
		evbuffer_add(out, "ERR ", 4);
		ctl_add_clean(out, err, strlen(err));
		evbuffer_add(out, "\n", 1);
	} else
		evbuffer_add_printf(out, "%s\n", c->partial ? "PARTIAL" : "OK");
	if (body && c->json)
		evbuffer_add_buffer(out, body); /* valid UTF-8: every string went through value_json_text */
	else if (body && evbuffer_get_length(body)) {
		size_t n = evbuffer_get_length(body);
		ctl_add_clean(out, (const char *)evbuffer_pullup(body, (ev_ssize_t)n), n);
		evbuffer_drain(body, n);
	}
	c->state = CTL_ANSWERING;
	evtimer_del(c->deadline);
	bufferevent_disable(c->bev, EV_READ);
	evbuffer_drain(in, evbuffer_get_length(in));
	bufferevent_set_timeouts(c->bev, NULL, &tv);
	bufferevent_enable(c->bev, EV_WRITE);
}

/* j written into b in value_json_dump's form (j's reference is taken): through a buffer
 * on the stack when it fits (one evbuffer_add, not one per token as json_dump_callback
 * would make). 0; -1 when j is NULL or out of memory. */
static int
ctl_json_add(struct evbuffer *b, json_t *j)
{
	char buf[4096], *text = buf;
	size_t flags = j ? value_json_flags(j) : 0, n = j ? json_dumpb(j, buf, sizeof(buf), flags) : 0;
	int rc = -1;

	if (n > sizeof(buf) && (text = malloc(n)) != NULL && json_dumpb(j, text, n, flags) != n) {
		free(text);
		text = NULL;
	}
	if (n > 0 && text)
		rc = evbuffer_add(b, text, n);
	if (text != buf)
		free(text);
	json_decref(j);
	return rc;
}

/* The answer's body: j and a newline (j's reference is taken); a NULL j, or one that
 * cannot be written, fails the command with "out of memory". */
static void
ctl_json_body(struct evbuffer *b, json_t *j, char *err, size_t errlen)
{
	if (ctl_json_add(b, j) != 0 || evbuffer_add(b, "\n", 1) != 0)
		snprintf(err, errlen, "out of memory");
}

/* arr, or NULL (arr freed) when filling it failed: json_pack then fails as a whole. */
static json_t *
ctl_json_ok(json_t *arr, bool ok)
{
	if (ok && arr)
		return arr;
	json_decref(arr);
	return NULL;
}

static json_t *
counters_json(const struct counters *k)
{
	return json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "bytes_in", value_json_count(k->bytes_in),
	    "bytes_out", value_json_count(k->bytes_out), "frames_in", value_json_count(k->frames_in),
	    "frames_out", value_json_count(k->frames_out), "connects", value_json_count(k->connects),
	    "failovers", value_json_count(k->failovers), "protocol_errors", value_json_count(k->proto_errors),
	    "rejected", value_json_count(k->rejected), "tls_failures", value_json_count(k->tls_failures));
}

static const char *
line_type_name(const struct line *l)
{
	return l->lc->type == LINE_TCP_REDUNDANT ? "tcp-redundant" : "tcp";
}

/* Does /DC switch off the verification of this line's partners? (Client certificate lines
 * verify the server; server lines verify clients only with partner_certs.) */
static bool
tls_unverified(const struct line *l)
{
	const struct tls_conf *t = &l->lc->tls;

	return komd.no_peer_verify && t->present && (t->my_cert || t->partner_certs) && (t->partner_certs || !l->server);
}

static const char *
tls_mode(const struct line *l)
{
	const struct tls_conf *t = &l->lc->tls;

	if (!t->present)
		return "";
	if (!t->my_cert && !t->partner_certs)
		return ", TLS PSK";
	return tls_unverified(l) ? ", TLS, partners NOT verified (/DC)" : ", TLS";
}

/* JSON: "psk", "certificate" or "" (plain) */
static const char *
tls_kind(const struct line *l)
{
	const struct tls_conf *t = &l->lc->tls;

	return !t->present ? "" : !t->my_cert && !t->partner_certs ? "psk" : "certificate";
}

/* Every certificate of every TLS line: subject, issuer, days to expiry. */
static void
ctl_certs(struct evbuffer *b)
{
	struct line *l;

	TAILQ_FOREACH(l, &komd.lines, link) {
		if (!l->tls)
			continue;
		if (l->tls->psk_mode)
			evbuffer_add_printf(b, "line %s: PSK, identity %s, no certificates\n", l->lc->name, l->tls->identity);
		for (int i = 0; i < l->tls->ncerts; i++) {
			const struct tls_cert_info *ci = &l->tls->certs[i];
			int days = tls_days_left(ci->not_after);
			evbuffer_add_printf(b, "line %s: %s %s\n  subject %s\n  issuer  %s\n  expires in %d day%s%s\n",
			    l->lc->name, ci->role, ci->file, ci->subject, ci->issuer, days, days == 1 ? "" : "s",
			    days <= 30 ? " (WARNING: within 30 days)" : "");
		}
	}
}

static json_t *
ctl_certs_json(void)
{
	json_t *certs = json_array();
	struct line *l;
	bool ok = true;

	TAILQ_FOREACH(l, &komd.lines, link)
		for (int i = 0; ok && l->tls && i < l->tls->ncerts; i++) {
			const struct tls_cert_info *ci = &l->tls->certs[i];
			ok = json_array_append_new(certs, json_pack("{s:o,s:o,s:o,s:o,s:o,s:i}",
			    "line", value_json_text(l->lc->name), "role", value_json_text(ci->role),
			    "file", value_json_text(ci->file), "subject", value_json_text(ci->subject),
			    "issuer", value_json_text(ci->issuer), "days_left", tls_days_left(ci->not_after))) == 0;
		}
	return json_pack("{s:o}", "certs", ctl_json_ok(certs, ok));
}

static const char *
policy_name(enum redund_policy p)
{
	return p == REDUND_PARALLEL ? "parallel" : p == REDUND_DUAL ? "dual" : "alternate";
}

/* ---- commands ---- */

/* A line's protocol counters: the plain ones on one line ("  name n, name n"), then each
 * labelled family on a line of its own ("  name by label: value n, value n"). */
static void
ctl_status_pcnt(struct evbuffer *b, const struct line *l)
{
	const struct proto_counter *k = l->ops->counters;
	bool first = true;

	for (int i = 0; i < l->npcnt; i++)
		if (!k[i].label) {
			evbuffer_add_printf(b, "%s%s %" PRIu64, first ? "  " : ", ", k[i].name, l->pcnt[i]);
			first = false;
		}
	if (!first)
		evbuffer_add(b, "\n", 1);
	for (int i = 0; i < l->npcnt; i++) {
		if (!k[i].label)
			continue;
		if (i == 0 || !k[i - 1].label || strcmp(k[i - 1].name, k[i].name) != 0)
			evbuffer_add_printf(b, "  %s by %s: ", k[i].name, k[i].label);
		else
			evbuffer_add(b, ", ", 2);
		evbuffer_add_printf(b, "%s %" PRIu64, k[i].label_value, l->pcnt[i]);
		if (i == l->npcnt - 1 || !k[i + 1].label || strcmp(k[i + 1].name, k[i].name) != 0)
			evbuffer_add(b, "\n", 1);
	}
}

/* A line's protocol counters as JSON: name and count, a labelled family as an object of
 * label value and count under its name. NULL when out of memory. */
static json_t *
ctl_pcnt_json(const struct line *l)
{
	const struct proto_counter *k = l->ops->counters;
	json_t *o = json_object();

	for (int i = 0; o && i < l->npcnt; i++) {
		json_t *fam = o, *v = value_json_count(l->pcnt[i]);
		const char *key = k[i].name;

		if (k[i].label) {
			if ((fam = json_object_get(o, k[i].name)) == NULL &&
			    json_object_set_new(o, k[i].name, fam = json_object()) != 0)
				fam = NULL;
			key = k[i].label_value;
		}
		if (!fam)
			json_decref(v);
		if (!fam || json_object_set_new(fam, key, v) != 0) {
			json_decref(o);
			o = NULL;
		}
	}
	return o;
}

static void
ctl_status(struct evbuffer *b)
{
	struct line *l;
	char state[1024];

	TAILQ_FOREACH(l, &komd.lines, link) {
		const struct counters *k = &l->cnt;
		line_state_text(l, state, sizeof(state));
		evbuffer_add_printf(b, "line %s (%s, %s%s%s%s): %s\n", l->lc->name, l->lc->protocol,
		    line_type_name(l), l->lc->type == LINE_TCP_REDUNDANT ? " " : "",
		    l->lc->type == LINE_TCP_REDUNDANT ? policy_name(l->policy) : "", tls_mode(l), state);
		evbuffer_add_printf(b, "  bytes in %" PRIu64 " out %" PRIu64 ", frames in %" PRIu64 " out %" PRIu64
		    ", connects %" PRIu64 ", failovers %" PRIu64 ", protocol errors %" PRIu64 ", rejected %" PRIu64
		    ", tls failures %" PRIu64 "\n",
		    k->bytes_in, k->bytes_out, k->frames_in, k->frames_out, k->connects, k->failovers,
		    k->proto_errors, k->rejected, k->tls_failures);
		ctl_status_pcnt(b, l);
		if (l->last_error[0])
			evbuffer_add_printf(b, "  last error: %s\n", l->last_error);
		for (int i = 0; i < l->nstations; i++) {
			const struct station *st = &l->stations[i];
			evbuffer_add_printf(b, "  station %s [%s]: %s%s%s%s; %d tags, polls %" PRIu64
			    ", errors %" PRIu64 ", writes %" PRIu64 " (%" PRIu64 " orphaned)\n", st->sc->name,
			    st->sc->address ? st->sc->address : "-", station_state_name(st->state),
			    !st->last_error[0] ? "" : st->state == ST_ERROR ? ": " : " (last error: ", st->last_error,
			    st->last_error[0] && st->state != ST_ERROR ? ")" : "", st->ntags, st->polls, st->errors,
			    st->writes, st->writes_orphaned);
		}
	}
}

static json_t *
ctl_station_json(const struct station *st)
{
	return json_pack("{s:o,s:o,s:s,s:o,s:i,s:o,s:o,s:o,s:o}", "name", value_json_text(st->sc->name),
	    "address", value_json_text(st->sc->address), "state", station_state_name(st->state),
	    "last_error", value_json_text(st->last_error), "tags", st->ntags, "polls", value_json_count(st->polls),
	    "errors", value_json_count(st->errors), "writes", value_json_count(st->writes),
	    "writes_orphaned", value_json_count(st->writes_orphaned));
}

static json_t *
ctl_line_json(const struct line *l)
{
	json_t *paths = json_array(), *lst = json_array(), *sts = json_array(), *pcnt = ctl_pcnt_json(l);
	char state[1024];
	bool ok = paths && lst && sts && pcnt;

	for (int i = 0; ok && i < (l->server ? 0 : l->npaths); i++) {
		const struct path *p = &l->paths[i];
		ok = json_array_append_new(paths, json_pack("{s:s,s:o,s:s,s:b,s:o}",
		    "state", conn_state_name(p->state),
		    "peer", value_json_text(p->state == CS_CONNECTED || p->state == CS_CONNECTING ? p->peer : ""),
		    "via", p->state == CS_CONNECTED ? (p->last_kind == PATH_BACKUP ? "backup" : "primary") : "",
		    "active", p->sess && p->sess == l->active,
		    "last_error", value_json_text(p->last_error))) == 0;
	}
	for (int i = 0; ok && i < l->nlst; i++)
		ok = json_array_append_new(lst, value_json_text(l->lst_name[i])) == 0;
	for (int i = 0; ok && i < l->nstations; i++)
		ok = json_array_append_new(sts, ctl_station_json(&l->stations[i])) == 0;
	line_state_text(l, state, sizeof(state));
	return json_pack("{s:o,s:o,s:s,s:s,s:s,s:o,s:b,s:o,s:i,s:o,s:o,s:o,s:o,s:o,s:o}",
	    "name", value_json_text(l->lc->name),
	    "protocol", value_json_text(l->lc->protocol),
	    "type", line_type_name(l),
	    "policy", policy_name(l->policy),
	    "tls", tls_kind(l),
	    "tls_verify", !l->lc->tls.present ? json_null() : json_boolean(!tls_unverified(l)),
	    "started", l->started,
	    "state", value_json_text(state),
	    "sessions", l->nsessions,
	    "paths", ctl_json_ok(paths, ok),
	    "listeners", ctl_json_ok(lst, ok),
	    "last_error", value_json_text(l->last_error),
	    "counters", counters_json(&l->cnt),
	    "protocol_counters", ctl_json_ok(pcnt, ok),
	    "stations", ctl_json_ok(sts, ok));
}

static json_t *
ctl_status_json(void)
{
	json_t *lines = json_array();
	struct line *l;
	bool ok = true;

	TAILQ_FOREACH(l, &komd.lines, link)
		if (!(ok = json_array_append_new(lines, ctl_line_json(l)) == 0))
			break;
	return json_pack("{s:o}", "lines", ctl_json_ok(lines, ok));
}

/* "line/station@address": a station's entry of a tag (the address as the protocol reads it:
 * a register, an IOA, a komtext name); tag_json has it as an object */
static void
stag_where(struct evbuffer *b, const struct stag *e)
{
	const char *addr = e->tc->address ? e->tc->address : "";

	evbuffer_add_printf(b, "%s/%s@", e->st->line->lc->name, e->st->sc->name);
	ctl_add_clean(b, addr, strlen(addr));
}

/* A value on one line of text: control bytes (a newline could fake lines of output) as
 * \xNN here, the rest cleaned by ctl_finish. */
static void
ctl_add_oneline(struct evbuffer *b, const char *s)
{
	for (; *s; s++) {
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			evbuffer_add_printf(b, "\\x%02x", (unsigned char)*s);
		else
			evbuffer_add(b, s, 1);
	}
}

/* A string tag's value is shown whole (value_format would cut it at the buffer, perhaps
 * within a UTF-8 sequence), on its line; ctl_finish cleans the rest of the text. */
static void
tag_text(struct evbuffer *b, const struct tag *t)
{
	char v[512], q[64], ts[40], tr[40];
	const struct stag *e;
	bool first = true;

	evbuffer_add_printf(b, "%-24s %-6s ", t->name, vtype_name(t->type));
	size_t at = evbuffer_get_length(b);
	ctl_add_oneline(b, t->v.type == VT_STRING && t->v.s ? t->v.s : value_format(&t->v, v, sizeof(v)));
	for (size_t w = evbuffer_get_length(b) - at; w < 20; w++)
		evbuffer_add(b, " ", 1); /* the value's column, as %-20s did */
	evbuffer_add_printf(b, " %-8s src %s recv %s", quality_format(t->quality, q, sizeof(q)),
	    time_format(t->ts_src, ts, sizeof(ts)), time_format(t->ts_recv, tr, sizeof(tr)));
	if (t->acq) {
		evbuffer_add_printf(b, " from ");
		stag_where(b, t->acq);
	} else {
		evbuffer_add_printf(b, " (memory)");
	}
	TAILQ_FOREACH(e, &t->servers, slink) {
		evbuffer_add_printf(b, "%s", first ? " served by " : ", ");
		stag_where(b, e);
		first = false;
	}
	evbuffer_add_printf(b, "\n");
}

struct tag_list {
	const struct tag **v;
	size_t n, cap;
	const char *glob;
};

static void
tag_collect(struct tag *t, void *arg)
{
	struct tag_list *tl = arg;

	if (tl->glob && fnmatch(tl->glob, t->name, 0) != 0)
		return;
	if (tl->n == tl->cap) {
		size_t ncap = tl->cap ? tl->cap * 2 : 64;
		const struct tag **nv = realloc(tl->v, ncap * sizeof(*nv));
		if (!nv)
			return;
		tl->v = nv;
		tl->cap = ncap;
	}
	tl->v[tl->n++] = t;
}

static int
tag_cmp(const void *a, const void *b)
{
	return strcmp((*(const struct tag *const *)a)->name, (*(const struct tag *const *)b)->name);
}

/* Every tag (or those whose name matches glob), sorted by name: as text into b, or as
 * JSON into b (err: out of memory). */
static void
ctl_tags(bool json, struct evbuffer *b, const char *glob, char *err, size_t errlen)
{
	struct tag_list tl = { .glob = glob };
	bool ok = true;

	tag_foreach(tag_collect, &tl);
	if (tl.n > 1)
		qsort(tl.v, tl.n, sizeof(*tl.v), tag_cmp);
	/* JSON {"tags":[...]}: a tag's object at a time, so that 100,000 tags never need
	 * their whole tree at once (it took 190 MB more than the text it makes) */
	if (json)
		ok = evbuffer_add(b, "{\"tags\":[", 9) == 0;
	for (size_t i = 0; i < tl.n && ok; i++) {
		if (!json)
			tag_text(b, tl.v[i]);
		else
			ok = (i == 0 || evbuffer_add(b, ",", 1) == 0) && ctl_json_add(b, tag_json(tl.v[i])) == 0;
	}
	if (json && (!ok || evbuffer_add(b, "]}\n", 3) != 0))
		snprintf(err, errlen, "out of memory");
	free(tl.v);
}

int
control_status_json(struct evbuffer *b)
{
	char err[64] = "";

	ctl_json_body(b, ctl_status_json(), err, sizeof(err));
	return err[0] ? -1 : 0;
}

int
control_tags_json(struct evbuffer *b, const char *glob)
{
	char err[64] = "";

	ctl_tags(true, b, glob, err, sizeof(err));
	return err[0] ? -1 : 0;
}

/* ---- peers ---- */

static int64_t
ctl_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Log now? *skipped: the events of this kind not logged since the last line. */
static bool
ctl_lograte(struct ctl_lograte *r, unsigned long *skipped)
{
	int64_t now = ctl_now_ms();

	if (r->last_ms && now - r->last_ms < CTL_LOG_EVERY_MS) {
		r->skipped++;
		return false;
	}
	r->last_ms = now;
	*skipped = r->skipped;
	r->skipped = 0;
	return true;
}

static void
ctl_peer_get(int fd, struct ctl_peer *p)
{
	struct ucred uc;
	socklen_t len = sizeof(uc);

	memset(p, 0, sizeof(*p));
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) == 0 && len == sizeof(uc)) {
		p->known = true;
		p->pid = uc.pid;
		p->uid = uc.uid;
		p->gid = uc.gid;
	}
}

/* "uid 1000 (alice) pid 4242": the user's name when the database has it. */
static const char *
ctl_peer_name(struct ctl_peer *p)
{
	struct passwd *pw;

	if (p->desc[0])
		return p->desc;
	if (!p->known)
		snprintf(p->desc, sizeof(p->desc), "unknown peer");
	else if ((pw = getpwuid(p->uid)) != NULL)
		snprintf(p->desc, sizeof(p->desc), "uid %u (%s) pid %d", (unsigned)p->uid, pw->pw_name, (int)p->pid);
	else
		snprintf(p->desc, sizeof(p->desc), "uid %u pid %d", (unsigned)p->uid, (int)p->pid);
	return p->desc;
}

static bool
gid_in(gid_t g, const gid_t *v, int n)
{
	for (int i = 0; i < n; i++)
		if (v[i] == g)
			return true;
	return false;
}

/* The peer's supplementary groups as the kernel saw them when it connected; NULL if unknown. */
static gid_t *
ctl_peer_groups(int fd, int *n)
{
	gid_t *v = NULL;
#ifdef SO_PEERGROUPS
	socklen_t len = 64 * sizeof(gid_t);

	for (int tries = 0; tries < 3; tries++) {
		gid_t *nv = realloc(v, len ? len : sizeof(gid_t));
		if (!nv)
			break;
		v = nv;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, v, &len) == 0) {
			*n = (int)(len / sizeof(gid_t));
			return v;
		}
		if (errno != ERANGE)
			break;
	}
#else
	(void)fd;
#endif
	free(v);
	*n = 0;
	return NULL;
}

/* The groups of the peer's user in the group database (getgrouplist); NULL if unknown. */
static gid_t *
ctl_user_groups(uid_t uid, int *n)
{
	struct passwd *pw = getpwuid(uid);
	int cap = 64;
	gid_t *v = NULL;

	if (!pw)
		return NULL;
	for (int tries = 0; tries < 3; tries++) {
		gid_t *nv = realloc(v, (size_t)cap * sizeof(gid_t));
		int got = cap;
		if (!nv)
			break;
		v = nv;
		if (getgrouplist(pw->pw_name, pw->pw_gid, v, &got) >= 0) {
			*n = got;
			return v;
		}
		cap = got > cap ? got : cap * 2;
	}
	free(v);
	return NULL;
}

/* May this peer only read (control_readonly_group)? false: it may change things too; true:
 * why it may not, in why. The group counts when the kernel's view of the peer (its primary
 * and supplementary groups when it connected) or the group database's view of its user
 * has it: either makes it read-only. Root never is. A group that does not exist refuses
 * everyone but root: a misspelt name must not hand out full control. */
static bool
ctl_readonly(struct ctl_conn *c, const char *ro_cmds, char *why, size_t whylen)
{
	const char *name = komd.conf->control_readonly_group;
	struct group *gr;
	gid_t gid, *v;
	int n = 0;
	bool in;

	if (!name || !*name)
		return false;
	if (!c->peer.known) {
		snprintf(why, whylen, "peer credentials unknown, and control_readonly_group is set");
		return true;
	}
	if (c->peer.uid == 0)
		return false;
	errno = 0;
	if ((gr = getgrnam(name)) == NULL) {
		snprintf(why, whylen, "control_readonly_group %s does not exist (%s): only root may change anything",
		    name, errno ? strerror(errno) : "no such group");
		return true;
	}
	gid = gr->gr_gid;
	in = c->peer.gid == gid;
	if (!in && (v = ctl_peer_groups(bufferevent_getfd(c->bev), &n)) != NULL) {
		in = gid_in(gid, v, n);
		free(v);
	}
	if (!in && (v = ctl_user_groups(c->peer.uid, &n)) != NULL) {
		in = gid_in(gid, v, n);
		free(v);
	}
	if (in)
		snprintf(why, whylen, "in control_readonly_group %s (read-only: %s)", name, ro_cmds);
	return in;
}

/* ---- commands ---- */

/* A command fills b (the body) or err and returns 0; or it returns 1 when its answer comes
 * later, or has come already (a set). */
typedef int (*ctl_cmd_fn)(struct ctl_conn *c, char **av, struct evbuffer *b, char *err, size_t errlen);

struct ctl_cmd {
	const char *name;
	const char *args;            /* for the list of commands in an error */
	int min_args, max_args;
	bool changes;                /* changes komd: logged with the peer, refused to the read-only group */
	ctl_cmd_fn run;
};

static int
ctl_cmd_status(struct ctl_conn *c, char **av, struct evbuffer *b, char *err, size_t errlen)
{
	(void)av;
	if (c->json)
		ctl_json_body(b, ctl_status_json(), err, errlen);
	else
		ctl_status(b);
	return 0;
}

static int
ctl_cmd_tags(struct ctl_conn *c, char **av, struct evbuffer *b, char *err, size_t errlen)
{
	ctl_tags(c->json, b, av[1], err, errlen);
	return 0;
}

static int
ctl_cmd_get(struct ctl_conn *c, char **av, struct evbuffer *b, char *err, size_t errlen)
{
	struct tag *t;

	if ((t = tag_find(av[1])) == NULL)
		snprintf(err, errlen, "no tag '%s'", av[1]);
	else if (c->json)
		ctl_json_body(b, tag_json(t), err, errlen);
	else
		tag_text(b, t);
	return 0;
}

static void
ctl_set_cb(void *arg, int status, const char *msg)
{
	struct ctl_conn *c = arg;
	struct evbuffer *b = evbuffer_new();
	char err[32] = "";

	c->req = NULL;
	/* JSON: the object follows an ERR line too (komctl writes it to stderr) */
	if (c->json && b)
		ctl_json_body(b, json_pack("{s:b,s:o}", "ok", status == 0, "message", value_json_text(msg)), err,
		    sizeof(err));
	else if (b && status == 0)
		evbuffer_add_printf(b, "%s\n", msg);
	ctl_finish(c, b, status != 0 ? msg : err[0] ? err : NULL);
	if (b)
		evbuffer_free(b);
}

static int
ctl_cmd_set(struct ctl_conn *c, char **av, struct evbuffer *b, char *err, size_t errlen)
{
	struct tag *t;
	struct value v;
	char perr[200];

	(void)b;
	if ((t = tag_find(av[1])) == NULL)
		snprintf(err, errlen, "no tag '%s'", av[1]);
	else if (value_parse(t->type, av[2], &v, perr, sizeof(perr)) != 0)
		snprintf(err, errlen, "tag %s (%s): %s", t->name, vtype_name(t->type), perr);
	else {
		/* ctl_set_cb answers, perhaps before tag_write returns */
		c->req = tag_write(t, &v, ctl_set_cb, c, "komctl");
		value_clear(&v);
		if (c->req && c->state != CTL_ANSWERING)
			/* the device answers within write_timeout: komctl waits that long, and more */
			evbuffer_add_printf(bufferevent_get_output(c->bev), "WAIT %d\n", komd.conf->write_timeout_ms);
		return 1;
	}
	return 0;
}

static int
ctl_cmd_trace(struct ctl_conn *c, char **av, struct evbuffer *b, char *err, size_t errlen)
{
	struct line *l;

	if ((l = line_find(av[1])) == NULL)
		snprintf(err, errlen, "no line '%s'", av[1]);
	else if (strcmp(av[2], "on") != 0 && strcmp(av[2], "off") != 0)
		snprintf(err, errlen, "trace: say on or off");
	else {
		l->trace = strcmp(av[2], "on") == 0;
		log_info("line %s: trace %s", l->lc->name, av[2]);
		if (c->json)
			ctl_json_body(b, json_pack("{s:o,s:b}", "line", value_json_text(l->lc->name), "trace", l->trace),
			    err, errlen);
		else
			evbuffer_add_printf(b, "line %s: trace %s\n", l->lc->name, av[2]);
	}
	return 0;
}

static int
ctl_cmd_certs(struct ctl_conn *c, char **av, struct evbuffer *b, char *err, size_t errlen)
{
	(void)av;
	if (c->json)
		ctl_json_body(b, ctl_certs_json(), err, errlen);
	else
		ctl_certs(b);
	return 0;
}

static int
ctl_cmd_reload(struct ctl_conn *c, char **av, struct evbuffer *b, char *err, size_t errlen)
{
	char msg[1024];

	int rc;

	(void)av;
	msg[0] = '\0';
	if ((rc = komd_reload(msg, sizeof(msg))) < 0) {
		snprintf(err, errlen, "%s", msg);
		return 0;
	}
	c->partial = rc > 0;
	if (c->json) {
		json_t *failed = json_array();
		struct line *l;
		bool ok = true;
		TAILQ_FOREACH(l, &komd.lines, link)
			if (l->start_failed && !(ok = json_array_append_new(failed, value_json_text(l->lc->name)) == 0))
				break;
		ctl_json_body(b, json_pack("{s:b,s:o,s:o}", "reloaded", 1, "message", value_json_text(msg),
		    "failed_lines", ctl_json_ok(failed, ok)), err, errlen);
	} else
		evbuffer_add_printf(b, "%s\n", msg);
	return 0;
}

static const struct ctl_cmd ctl_cmds[] = {
	{ .name = "status", .run = ctl_cmd_status },
	{ .name = "tags", .args = " [GLOB]", .max_args = 1, .run = ctl_cmd_tags },
	{ .name = "get", .args = " TAG", .min_args = 1, .max_args = 1, .run = ctl_cmd_get },
	{ .name = "set", .args = " TAG VALUE", .min_args = 2, .max_args = 2, .changes = true, .run = ctl_cmd_set },
	{ .name = "trace", .args = " LINE on|off", .min_args = 2, .max_args = 2, .changes = true, .run = ctl_cmd_trace },
	{ .name = "certs", .run = ctl_cmd_certs },
	{ .name = "reload", .changes = true, .run = ctl_cmd_reload },
	{ .name = NULL },
};

/* The commands, for errors: every one with its arguments, or the read-only ones. */
static const char *
ctl_cmd_list(bool readonly)
{
	static char all[256], ro[128];
	char *buf = readonly ? ro : all;
	size_t len = readonly ? sizeof(ro) : sizeof(all), o = 0;

	if (buf[0])
		return buf;
	for (const struct ctl_cmd *k = ctl_cmds; k->name && o < len; k++)
		if (!readonly || !k->changes)
			o += (size_t)snprintf(buf + o, len - o, "%s%s%s", o ? ", " : "", k->name,
			    readonly || !k->args ? "" : k->args);
	return buf;
}

/* Split a request line into its fields (0x1f between them). The number of fields, or -1
 * when there are more than CTL_MAX_ARGS. */
static int
ctl_parse(char *line, char **av)
{
	int ac = 0;
	char *p = line;

	while (p) {
		if (ac == CTL_MAX_ARGS)
			return -1;
		av[ac++] = strsep(&p, "\x1f");
	}
	return ac;
}

/* For the log: the command and its arguments, space-separated. */
static void
ctl_join(char **av, int ac, char *buf, size_t len)
{
	size_t o = 0;

	buf[0] = '\0';
	for (int i = 0; i < ac && o < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? " " : "", av[i]);
}

/* Run one request (av[0] the command); returns with the answer queued, or with c->req pending. */
static void
ctl_run(struct ctl_conn *c, char **av, int ac)
{
	const struct ctl_cmd *k;
	struct evbuffer *b;
	char err[4096], what[CTL_MAX_REQUEST];

	for (k = ctl_cmds; k->name; k++)
		if (strcmp(k->name, av[0]) == 0 && ac - 1 >= k->min_args && ac - 1 <= k->max_args)
			break;
	if (!k->name) {
		snprintf(err, sizeof(err), "unknown command or wrong arguments: '%s' (%s)", av[0], ctl_cmd_list(false));
		ctl_finish(c, NULL, err);
		return;
	}
	if (k->changes) {
		char why[512];
		if (ctl_readonly(c, ctl_cmd_list(true), why, sizeof(why))) {
			log_warnx("control socket: %s: %s refused: %s", ctl_peer_name(&c->peer), k->name, why);
			snprintf(err, sizeof(err), "%s refused: %s", k->name, why);
			ctl_finish(c, NULL, err);
			return;
		}
		ctl_join(av, ac, what, sizeof(what));
		log_info("control socket: %s: %s", ctl_peer_name(&c->peer), what);
	}
	if ((b = evbuffer_new()) == NULL) {
		ctl_finish(c, NULL, "out of memory");
		return;
	}
	err[0] = '\0';
	if (k->run(c, av, b, err, sizeof(err)) == 0)
		ctl_finish(c, b, err[0] ? err : NULL);
	evbuffer_free(b);
}

/* ---- connections ---- */

static void
ctl_spare_open(void)
{
	if (ctl_spare < 0)
		ctl_spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* The one teardown. The descriptor is closed here, not when libevent finalizes the
 * bufferevent, so that the spare can take its place at once if it was given up. */
static void
ctl_close(struct ctl_conn *c)
{
	evutil_socket_t fd = bufferevent_getfd(c->bev);

	TAILQ_REMOVE(&ctl_conns, c, link);
	ctl_nconns--;
	write_req_detach(c->req);
	event_free(c->deadline);
	bufferevent_setfd(c->bev, -1); /* its events are deleted now */
	bufferevent_free(c->bev);
	if (fd >= 0)
		close(fd);
	free(c);
	ctl_spare_open();
}

static void
ctl_write_cb(struct bufferevent *bev, void *arg)
{
	struct ctl_conn *c = arg;

	if (c->state == CTL_ANSWERING && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		ctl_close(c);
}

static void
ctl_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct ctl_conn *c = arg;
	unsigned long skipped;

	(void)bev;
	if ((what & BEV_EVENT_TIMEOUT) && ctl_lograte(&ctl_rate_timeout, &skipped))
		log_warnx("control socket: %s: took none of its answer within %g s: dropped%s", ctl_peer_name(&c->peer),
		    komd.conf->control_timeout_ms / 1000.0, skipped ? " (and others since the last message)" : "");
	else if (c->state == CTL_READING && (what & BEV_EVENT_EOF))
		log_debug("control socket: %s: closed before a complete request", ctl_peer_name(&c->peer));
	ctl_close(c);
}

static void
ctl_deadline_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct ctl_conn *c = arg;
	unsigned long skipped;
	char err[80];

	(void)fd; (void)ev;
	if (c->state != CTL_READING)
		return;
	snprintf(err, sizeof(err), "no complete request within %g s", komd.conf->control_timeout_ms / 1000.0);
	if (ctl_lograte(&ctl_rate_timeout, &skipped))
		log_warnx("control socket: %s: %s: dropped%s", ctl_peer_name(&c->peer), err,
		    skipped ? " (and others since the last message)" : "");
	ctl_finish(c, NULL, err);
}

/* Reads no more than the request line (the watermark), then nothing until it is answered. */
static void
ctl_read_cb(struct bufferevent *bev, void *arg)
{
	struct ctl_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char *line, *av[CTL_MAX_ARGS + 1], err[64];
	size_t n;
	int ac;

	if (c->state != CTL_READING)
		return;
	if ((line = evbuffer_readln(in, &n, EVBUFFER_EOL_LF)) == NULL) {
		if (evbuffer_get_length(in) >= CTL_MAX_REQUEST) {
			snprintf(err, sizeof(err), "request too long: more than %d bytes", CTL_MAX_REQUEST - 1);
			ctl_finish(c, NULL, err);
		}
		return;
	}
	c->state = CTL_RUNNING;
	evtimer_del(c->deadline);
	bufferevent_disable(bev, EV_READ);
	if ((ac = ctl_parse(line, av)) < 2 || (strcmp(av[0], "json") != 0 && strcmp(av[0], "text") != 0)) {
		ctl_finish(c, NULL, "bad request");
	} else {
		av[ac] = NULL;
		c->json = strcmp(av[0], "json") == 0;
		ctl_run(c, av + 1, ac - 1);
	}
	free(line);
}

/* Over control_max_clients: one error line and close, without a bufferevent. What the
 * client sent already is read first, so that it gets the line rather than a reset. */
static void
ctl_refuse(evutil_socket_t fd, struct ctl_peer *p)
{
	char buf[CTL_MAX_REQUEST], msg[128];
	unsigned long skipped;
	int n;

	for (int i = 0; i < 8 && recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0; i++)
		;
	n = snprintf(msg, sizeof(msg), "ERR too many control clients: control_max_clients %d reached\n",
	    komd.conf->control_max_clients);
	if (send(fd, msg, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		log_debug("control socket: refusing %s: %s", ctl_peer_name(p), strerror(errno));
	close(fd);
	if (ctl_lograte(&ctl_rate_refused, &skipped))
		log_warnx("control socket: %s: refused: control_max_clients %d reached%s", ctl_peer_name(p),
		    komd.conf->control_max_clients, skipped ? " (and others since the last message)" : "");
}

static void
ctl_conn_new(evutil_socket_t fd)
{
	struct ctl_conn *c;
	struct ctl_peer peer;
	struct timeval tv = { komd.conf->control_timeout_ms / 1000, (komd.conf->control_timeout_ms % 1000) * 1000 };

	ctl_peer_get(fd, &peer);
	if (ctl_nconns >= komd.conf->control_max_clients) {
		ctl_refuse(fd, &peer);
		ctl_spare_open();
		return;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->bev = bufferevent_socket_new(komd.base, fd, 0)) == NULL ||
	    (c->deadline = evtimer_new(komd.base, ctl_deadline_cb, c)) == NULL) {
		log_warnx("control socket: %s: refused: out of memory", ctl_peer_name(&peer));
		if (c && c->bev)
			bufferevent_free(c->bev);
		free(c);
		close(fd);
		ctl_spare_open();
		return;
	}
	c->peer = peer;
	c->state = CTL_READING;
	TAILQ_INSERT_TAIL(&ctl_conns, c, link);
	ctl_nconns++;
	bufferevent_setwatermark(c->bev, EV_READ, 0, CTL_MAX_REQUEST);
	bufferevent_setcb(c->bev, ctl_read_cb, ctl_write_cb, ctl_event_cb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	evtimer_add(c->deadline, &tv);
	ctl_spare_open();
}

static void
ctl_accept_cb(struct evconnlistener *lst, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	(void)lst; (void)sa; (void)salen; (void)arg;
	ctl_conn_new(fd);
}

static void
ctl_resume_cb(evutil_socket_t fd, short ev, void *arg)
{
	(void)fd; (void)ev; (void)arg;
	ctl_spare_open();
	if (ctl_lst)
		evconnlistener_enable(ctl_lst);
}

/* accept() failed. Out of descriptors (the lines have them all): give up the spare one to
 * take this client, which is served as any other; the spare is opened again as soon as a
 * descriptor is free (when a control client leaves). Otherwise, or with the spare in
 * use, pause for a second instead of spinning. */
static void
ctl_accept_error_cb(struct evconnlistener *lst, void *arg)
{
	int err = EVUTIL_SOCKET_ERROR(), fd;
	struct timeval tv = { 1, 0 };
	unsigned long skipped;

	(void)arg;
	if ((err == EMFILE || err == ENFILE) && ctl_spare >= 0) {
		close(ctl_spare);
		ctl_spare = -1;
		fd = accept4(evconnlistener_get_fd(lst), NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			if (ctl_lograte(&ctl_rate_fds, &skipped))
				log_warnx("control socket: out of descriptors (%s): serving with the spare one%s",
				    strerror(err), skipped ? " (and others since the last message)" : "");
			ctl_conn_new(fd);
			return;
		}
		err = errno;
		ctl_spare_open();
		if (err == EAGAIN || err == EWOULDBLOCK || err == ECONNABORTED || err == EINTR)
			return;
	}
	if (ctl_lograte(&ctl_rate_fds, &skipped))
		log_warnx("control socket: accept: %s; pausing for 1 s%s", evutil_socket_error_to_string(err),
		    skipped ? " (and others since the last message)" : "");
	evconnlistener_disable(lst);
	event_base_once(komd.base, -1, EV_TIMEOUT, ctl_resume_cb, NULL, &tv);
}

/* The socket's directory, when it does not exist (komd run by hand, no RuntimeDirectory=):
 * made, with its parents, 0755 (the socket itself is 0660). Failing that, the bind says why. */
static void
control_mkdir(const char *path)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct stat st;
	char *p;

	snprintf(dir, sizeof(dir), "%s", path);
	if ((p = strrchr(dir, '/')) == NULL || p == dir)
		return;
	*p = '\0';
	if (stat(dir, &st) == 0)
		return;
	for (p = dir + 1; ; p++) {
		if (*p == '/' || *p == '\0') {
			char c = *p;
			*p = '\0';
			if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
				log_warn("control socket %s: cannot create its directory %s", path, dir);
				return;
			}
			*p = c;
			if (c == '\0')
				break;
		}
	}
	log_info("control socket %s: created its directory %s", path, dir);
}

int
control_start(const char *path)
{
	struct sockaddr_un sun;
	mode_t old;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		log_warnx("control socket %s: path too long (max %zu)", path, sizeof(sun.sun_path) - 1);
		return -1;
	}
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	snprintf(ctl_path, sizeof(ctl_path), "%s", path);
	if (unlink(path) != 0 && errno != ENOENT) {
		log_warn("control socket %s: unlink", path);
		return -1;
	}
	control_mkdir(path);
	/* bound with no more than 0660 whatever the process umask (UMask=0077 in the unit),
	 * then set to exactly 0660: the group may connect */
	old = umask(0117);
	ctl_lst = evconnlistener_new_bind(komd.base, ctl_accept_cb, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 16, (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (!ctl_lst) {
		log_warn("control socket %s", path);
		return -1;
	}
	evconnlistener_set_error_cb(ctl_lst, ctl_accept_error_cb);
	if (chmod(path, 0660) != 0)
		log_warn("control socket %s: chmod 0660", path);
	ctl_spare_open();
	if (ctl_spare < 0)
		log_warn("control socket: /dev/null (the spare descriptor)");
	log_info("control socket %s", path);
	return 0;
}

const char *
control_path(void)
{
	return ctl_lst ? ctl_path : NULL;
}

/* Move the control socket to path (a reload changed control_socket): the new one is
 * opened first, and only then the old one closed; connections already accepted go on.
 * 0; 1 when path names the socket open now (only the name changes); -1 (logged): the old
 * one still serves. */
int
control_reopen(const char *path)
{
	struct evconnlistener *old = ctl_lst;
	char oldpath[sizeof(ctl_path)];
	struct stat so, sn;

	/* another name of the same socket (a symbolic link, "//"): nothing to open; binding
	 * there would unlink the socket, and closing the old one would remove the new */
	if (old && stat(ctl_path, &so) == 0 && stat(path, &sn) == 0 && so.st_dev == sn.st_dev &&
	    so.st_ino == sn.st_ino) {
		snprintf(ctl_path, sizeof(ctl_path), "%s", path);
		return 1;
	}
	snprintf(oldpath, sizeof(oldpath), "%s", ctl_path);
	ctl_lst = NULL;
	if (control_start(path) != 0) {
		ctl_lst = old;
		snprintf(ctl_path, sizeof(ctl_path), "%s", oldpath);
		return -1;
	}
	if (old) {
		evconnlistener_free(old);
		/* only if the old name is still the old socket, not the new one */
		if (stat(path, &sn) != 0 || stat(oldpath, &so) != 0 || so.st_dev != sn.st_dev || so.st_ino != sn.st_ino)
			unlink(oldpath);
	}
	return 0;
}

/* Shutdown: the socket, every connection (a pending set is forgotten) and the spare. */
void
control_stop(void)
{
	struct ctl_conn *c;

	if (ctl_lst) {
		evconnlistener_free(ctl_lst);
		ctl_lst = NULL;
		unlink(ctl_path);
	}
	while ((c = TAILQ_FIRST(&ctl_conns)) != NULL)
		ctl_close(c);
	if (ctl_spare >= 0)
		close(ctl_spare);
	ctl_spare = -1;
}
