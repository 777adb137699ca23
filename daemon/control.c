/* control.c: the control socket (a Unix stream socket, mode 0660) that komctl talks to.
 * A request is one line: fields separated by 0x1f (the first is "json" or "text", then the
 * command and its arguments). The answer is "OK\n" or "ERR message\n", then the body; komd
 * closes the connection after it. `set` answers when the acquiring station has. */
#include <errno.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>

#include "core.h"
#include "tls.h"

#define CTL_MAX_REQUEST 8192
#define CTL_MAX_ARGS 8

struct ctl_conn {
	struct bufferevent *bev;
	struct write_req *req;   /* a set in progress */
	bool json;
	bool done;
};

static struct evconnlistener *ctl_lst;
static char ctl_path[sizeof(((struct sockaddr_un *)0)->sun_path)];

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

static void
json_str(struct evbuffer *b, const char *s)
{
	size_t n = s ? strlen(s) : 0, l;

	evbuffer_add(b, "\"", 1);
	for (size_t i = 0; i < n; i += l) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			evbuffer_add_printf(b, "\\%c", c);
			l = 1;
		} else if (c < 0x20) {
			evbuffer_add_printf(b, "\\u%04x", c);
			l = 1;
		} else if (ctl_bad_byte(s + i, n - i, "", &l)) {
			evbuffer_add_printf(b, "\\\\x%02x", c); /* the text \xNN */
			l = 1;
		} else
			evbuffer_add(b, s + i, l);
	}
	evbuffer_add(b, "\"", 1);
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

static void
ctl_finish(struct ctl_conn *c, struct evbuffer *body, const char *err)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);

	if (err) {
		evbuffer_add(out, "ERR ", 4);
		ctl_add_clean(out, err, strlen(err));
		evbuffer_add(out, "\n", 1);
	} else
		evbuffer_add_printf(out, "OK\n");
	if (body && c->json)
		evbuffer_add_buffer(out, body); /* every string went through json_str */
	else if (body && evbuffer_get_length(body)) {
		size_t n = evbuffer_get_length(body);
		ctl_add_clean(out, (const char *)evbuffer_pullup(body, (ev_ssize_t)n), n);
		evbuffer_drain(body, n);
	}
	c->done = true;
	bufferevent_disable(c->bev, EV_READ);
}

static void
counters_json(struct evbuffer *b, const struct counters *k)
{
	evbuffer_add_printf(b, "{\"bytes_in\":%" PRIu64 ",\"bytes_out\":%" PRIu64 ",\"frames_in\":%" PRIu64
	    ",\"frames_out\":%" PRIu64 ",\"connects\":%" PRIu64 ",\"failovers\":%" PRIu64
	    ",\"protocol_errors\":%" PRIu64 ",\"rejected\":%" PRIu64 ",\"tls_failures\":%" PRIu64 "}",
	    k->bytes_in, k->bytes_out, k->frames_in, k->frames_out, k->connects, k->failovers,
	    k->proto_errors, k->rejected, k->tls_failures);
}

static const char *
line_type_name(const struct line *l)
{
	return l->lc->type == LINE_TCP_REDUNDANT ? "tcp-redundant" : "tcp";
}

static const char *
tls_mode(const struct line *l)
{
	return !l->tls ? "" : l->tls->psk_mode ? ", TLS PSK" : ", TLS";
}

/* Every certificate of every TLS line: subject, issuer, days to expiry. */
static void
ctl_certs(struct ctl_conn *c, struct evbuffer *b)
{
	struct line *l;
	bool first = true;

	if (c->json)
		evbuffer_add_printf(b, "{\"certs\":[");
	TAILQ_FOREACH(l, &komd.lines, link) {
		if (!l->tls)
			continue;
		if (!c->json && l->tls->psk_mode)
			evbuffer_add_printf(b, "line %s: PSK, identity %s, no certificates\n", l->lc->name, l->tls->identity);
		for (int i = 0; i < l->tls->ncerts; i++) {
			const struct tls_cert_info *ci = &l->tls->certs[i];
			int days = tls_days_left(ci->not_after);
			if (!c->json) {
				evbuffer_add_printf(b, "line %s: %s %s\n  subject %s\n  issuer  %s\n  expires in %d day%s%s\n",
				    l->lc->name, ci->role, ci->file, ci->subject, ci->issuer, days, days == 1 ? "" : "s",
				    days <= 30 ? " (WARNING: within 30 days)" : "");
				continue;
			}
			evbuffer_add_printf(b, "%s{\"line\":", first ? "" : ",");
			first = false;
			json_str(b, l->lc->name);
			evbuffer_add_printf(b, ",\"role\":\"%s\",\"file\":", ci->role);
			json_str(b, ci->file);
			evbuffer_add_printf(b, ",\"subject\":");
			json_str(b, ci->subject);
			evbuffer_add_printf(b, ",\"issuer\":");
			json_str(b, ci->issuer);
			evbuffer_add_printf(b, ",\"days_left\":%d}", days);
		}
	}
	if (c->json)
		evbuffer_add_printf(b, "]}\n");
}

static const char *
policy_name(enum redund_policy p)
{
	return p == REDUND_PARALLEL ? "parallel" : p == REDUND_DUAL ? "dual" : "alternate";
}

/* ---- commands ---- */

static void
ctl_status(struct ctl_conn *c, struct evbuffer *b)
{
	struct line *l;
	char state[1024];
	bool first = true;

	if (c->json)
		evbuffer_add_printf(b, "{\"lines\":[");
	TAILQ_FOREACH(l, &komd.lines, link) {
		const struct counters *k = &l->cnt;
		line_state_text(l, state, sizeof(state));
		if (!c->json) {
			evbuffer_add_printf(b, "line %s (%s, %s%s%s%s): %s\n", l->lc->name, l->lc->protocol,
			    line_type_name(l), l->lc->type == LINE_TCP_REDUNDANT ? " " : "",
			    l->lc->type == LINE_TCP_REDUNDANT ? policy_name(l->policy) : "", tls_mode(l), state);
			evbuffer_add_printf(b, "  bytes in %" PRIu64 " out %" PRIu64 ", frames in %" PRIu64 " out %" PRIu64
			    ", connects %" PRIu64 ", failovers %" PRIu64 ", protocol errors %" PRIu64 ", rejected %" PRIu64
			    ", tls failures %" PRIu64 "\n",
			    k->bytes_in, k->bytes_out, k->frames_in, k->frames_out, k->connects, k->failovers,
			    k->proto_errors, k->rejected, k->tls_failures);
			if (l->last_error[0])
				evbuffer_add_printf(b, "  last error: %s\n", l->last_error);
			for (int i = 0; i < l->nstations; i++) {
				const struct station *st = &l->stations[i];
				evbuffer_add_printf(b, "  station %s [%s]: %s%s%s%s; %d tags, polls %" PRIu64
				    ", errors %" PRIu64 ", writes %" PRIu64 "\n", st->sc->name,
				    st->sc->address ? st->sc->address : "-", station_state_name(st->state),
				    !st->last_error[0] ? "" : st->state == ST_ERROR ? ": " : " (last error: ", st->last_error,
				    st->last_error[0] && st->state != ST_ERROR ? ")" : "", st->ntags, st->polls, st->errors,
				    st->writes);
			}
			continue;
		}
		evbuffer_add_printf(b, "%s{\"name\":", first ? "" : ",");
		first = false;
		json_str(b, l->lc->name);
		evbuffer_add_printf(b, ",\"protocol\":");
		json_str(b, l->lc->protocol);
		evbuffer_add_printf(b, ",\"type\":\"%s\",\"policy\":\"%s\",\"tls\":\"%s\",\"started\":%s,\"state\":",
		    line_type_name(l), policy_name(l->policy), l->tls ? (l->tls->psk_mode ? "psk" : "certificate") : "",
		    l->started ? "true" : "false");
		json_str(b, state);
		evbuffer_add_printf(b, ",\"sessions\":%d,\"paths\":[", l->nsessions);
		for (int i = 0; i < (l->server ? 0 : l->npaths); i++) {
			const struct path *p = &l->paths[i];
			evbuffer_add_printf(b, "%s{\"state\":\"%s\",\"peer\":", i ? "," : "", conn_state_name(p->state));
			json_str(b, p->state == CS_CONNECTED || p->state == CS_CONNECTING ? p->peer : "");
			evbuffer_add_printf(b, ",\"via\":\"%s\",\"active\":%s,\"last_error\":",
			    p->state == CS_CONNECTED ? (p->last_kind == PATH_BACKUP ? "backup" : "primary") : "",
			    p->sess && p->sess == l->active ? "true" : "false");
			json_str(b, p->last_error);
			evbuffer_add_printf(b, "}");
		}
		evbuffer_add_printf(b, "],\"listeners\":[");
		for (int i = 0; i < l->nlst; i++) {
			if (i)
				evbuffer_add(b, ",", 1);
			json_str(b, l->lst_name[i]);
		}
		evbuffer_add_printf(b, "],\"last_error\":");
		json_str(b, l->last_error);
		evbuffer_add_printf(b, ",\"counters\":");
		counters_json(b, k);
		evbuffer_add_printf(b, ",\"stations\":[");
		for (int i = 0; i < l->nstations; i++) {
			const struct station *st = &l->stations[i];
			evbuffer_add_printf(b, "%s{\"name\":", i ? "," : "");
			json_str(b, st->sc->name);
			evbuffer_add_printf(b, ",\"address\":");
			json_str(b, st->sc->address ? st->sc->address : "");
			evbuffer_add_printf(b, ",\"state\":\"%s\",\"last_error\":", station_state_name(st->state));
			json_str(b, st->last_error);
			evbuffer_add_printf(b, ",\"tags\":%d,\"polls\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"writes\":%" PRIu64 "}",
			    st->ntags, st->polls, st->errors, st->writes);
		}
		evbuffer_add_printf(b, "]}");
	}
	if (c->json)
		evbuffer_add_printf(b, "]}\n");
}

static void
tag_text(struct evbuffer *b, const struct tag *t)
{
	char v[512], q[64], ts[40], tr[40];

	evbuffer_add_printf(b, "%-24s %-6s %-20s %-8s src %s recv %s%s%s\n", t->name, vtype_name(t->type),
	    value_format(&t->v, v, sizeof(v)), quality_format(t->quality, q, sizeof(q)),
	    time_format(t->ts_src, ts, sizeof(ts)), time_format(t->ts_recv, tr, sizeof(tr)),
	    t->acq ? "" : " (memory)", "");
}

static void
tag_json(struct evbuffer *b, const struct tag *t)
{
	char v[512], q[64], ts[40], tr[40];

	evbuffer_add_printf(b, "{\"name\":");
	json_str(b, t->name);
	evbuffer_add_printf(b, ",\"type\":\"%s\",\"value\":%s,\"quality\":\"%s\",\"invalid\":%s,\"source_time\":",
	    vtype_name(t->type), value_format_json(&t->v, v, sizeof(v)), quality_format(t->quality, q, sizeof(q)),
	    (t->quality & Q_INVALID) ? "true" : "false");
	json_str(b, time_format(t->ts_src, ts, sizeof(ts)));
	evbuffer_add_printf(b, ",\"receive_time\":");
	json_str(b, time_format(t->ts_recv, tr, sizeof(tr)));
	evbuffer_add_printf(b, ",\"acquired_by\":");
	if (t->acq) {
		char who[300];
		snprintf(who, sizeof(who), "%s/%s", t->acq->st->line->lc->name, t->acq->st->sc->name);
		json_str(b, who);
	} else {
		evbuffer_add_printf(b, "null");
	}
	evbuffer_add_printf(b, ",\"updates\":%" PRIu64 "}", t->updates);
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

static void
ctl_tags(struct ctl_conn *c, struct evbuffer *b, const char *glob)
{
	struct tag_list tl = { .glob = glob };

	tag_foreach(tag_collect, &tl);
	if (tl.n > 1)
		qsort(tl.v, tl.n, sizeof(*tl.v), tag_cmp);
	if (c->json)
		evbuffer_add_printf(b, "{\"tags\":[");
	for (size_t i = 0; i < tl.n; i++) {
		if (c->json) {
			if (i)
				evbuffer_add(b, ",", 1);
			tag_json(b, tl.v[i]);
		} else {
			tag_text(b, tl.v[i]);
		}
	}
	if (c->json)
		evbuffer_add_printf(b, "]}\n");
	free(tl.v);
}

static void
ctl_set_cb(void *arg, int status, const char *msg)
{
	struct ctl_conn *c = arg;
	struct evbuffer *b = evbuffer_new();

	c->req = NULL;
	if (c->json && b) {
		evbuffer_add_printf(b, "{\"ok\":%s,\"message\":", status == 0 ? "true" : "false");
		json_str(b, msg);
		evbuffer_add_printf(b, "}\n");
	} else if (b && status == 0) {
		evbuffer_add_printf(b, "%s\n", msg);
	}
	ctl_finish(c, b, status == 0 ? NULL : msg);
	if (b)
		evbuffer_free(b);
}

static void ctl_free(struct ctl_conn *c);

/* Run one request; returns with the answer queued, or with c->req pending. */
static void
ctl_run(struct ctl_conn *c, char **av, int ac)
{
	struct evbuffer *b = evbuffer_new();
	char err[4096];
	const char *cmd = ac > 0 ? av[0] : "";
	struct tag *t;
	struct line *l;

	if (!b) {
		ctl_finish(c, NULL, "out of memory");
		return;
	}
	err[0] = '\0';
	if (strcmp(cmd, "status") == 0 && ac == 1) {
		ctl_status(c, b);
	} else if (strcmp(cmd, "tags") == 0 && ac <= 2) {
		ctl_tags(c, b, ac == 2 ? av[1] : NULL);
	} else if (strcmp(cmd, "get") == 0 && ac == 2) {
		if ((t = tag_find(av[1])) == NULL)
			snprintf(err, sizeof(err), "no tag '%s'", av[1]);
		else if (c->json) {
			tag_json(b, t);
			evbuffer_add(b, "\n", 1);
		} else
			tag_text(b, t);
	} else if (strcmp(cmd, "set") == 0 && ac == 3) {
		struct value v;
		char perr[200];
		if ((t = tag_find(av[1])) == NULL)
			snprintf(err, sizeof(err), "no tag '%s'", av[1]);
		else if (value_parse(t->type, av[2], &v, perr, sizeof(perr)) != 0)
			snprintf(err, sizeof(err), "tag %s (%s): %s", t->name, vtype_name(t->type), perr);
		else {
			evbuffer_free(b);
			c->req = tag_write(t, &v, ctl_set_cb, c, "komctl");
			value_clear(&v);
			return;
		}
	} else if (strcmp(cmd, "trace") == 0 && ac == 3) {
		if ((l = line_find(av[1])) == NULL)
			snprintf(err, sizeof(err), "no line '%s'", av[1]);
		else if (strcmp(av[2], "on") != 0 && strcmp(av[2], "off") != 0)
			snprintf(err, sizeof(err), "trace: say on or off");
		else {
			l->trace = strcmp(av[2], "on") == 0;
			log_info("line %s: trace %s", l->lc->name, av[2]);
			if (c->json)
				evbuffer_add_printf(b, "{\"line\":\"%s\",\"trace\":%s}\n", l->lc->name, l->trace ? "true" : "false");
			else
				evbuffer_add_printf(b, "line %s: trace %s\n", l->lc->name, av[2]);
		}
	} else if (strcmp(cmd, "certs") == 0 && ac == 1) {
		ctl_certs(c, b);
	} else if (strcmp(cmd, "reload") == 0 && ac == 1) {
		char msg[1024];
		if (komd_reload(msg, sizeof(msg)) != 0)
			snprintf(err, sizeof(err), "%s", msg);
		else if (c->json) {
			evbuffer_add_printf(b, "{\"reloaded\":true,\"message\":");
			json_str(b, msg);
			evbuffer_add_printf(b, "}\n");
		} else
			evbuffer_add_printf(b, "%s\n", msg);
	} else {
		snprintf(err, sizeof(err), "unknown command or wrong arguments: '%s' "
		    "(status, tags [GLOB], get TAG, set TAG VALUE, trace LINE on|off, certs, reload)", cmd);
	}
	ctl_finish(c, b, err[0] ? err : NULL);
	evbuffer_free(b);
}

static void
ctl_free(struct ctl_conn *c)
{
	write_req_detach(c->req);
	bufferevent_free(c->bev);
	free(c);
}

static void
ctl_write_cb(struct bufferevent *bev, void *arg)
{
	struct ctl_conn *c = arg;

	(void)bev;
	if (c->done && evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		ctl_free(c);
}

static void
ctl_event_cb(struct bufferevent *bev, short what, void *arg)
{
	(void)bev; (void)what;
	ctl_free(arg);
}

static void
ctl_read_cb(struct bufferevent *bev, void *arg)
{
	struct ctl_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char *line, *av[CTL_MAX_ARGS];
	size_t n;
	int ac = 0;

	if (c->done || c->req)
		return;
	if ((line = evbuffer_readln(in, &n, EVBUFFER_EOL_LF)) == NULL) {
		if (evbuffer_get_length(in) > CTL_MAX_REQUEST) {
			ctl_finish(c, NULL, "request too long");
		}
		return;
	}
	for (char *p = line, *f; ac < CTL_MAX_ARGS && (f = strsep(&p, "\x1f")) != NULL;)
		av[ac++] = f;
	if (ac < 1 || (strcmp(av[0], "json") != 0 && strcmp(av[0], "text") != 0)) {
		ctl_finish(c, NULL, "bad request");
	} else {
		c->json = strcmp(av[0], "json") == 0;
		ctl_run(c, av + 1, ac - 1);
	}
	free(line);
}

static void
ctl_accept_cb(struct evconnlistener *lst, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	struct ctl_conn *c;

	(void)lst; (void)sa; (void)salen; (void)arg;
	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->bev = bufferevent_socket_new(komd.base, fd, BEV_OPT_CLOSE_ON_FREE)) == NULL) {
		free(c);
		evutil_closesocket(fd);
		return;
	}
	bufferevent_setcb(c->bev, ctl_read_cb, ctl_write_cb, ctl_event_cb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void
ctl_resume_cb(evutil_socket_t fd, short ev, void *arg)
{
	(void)fd; (void)ev; (void)arg;
	if (ctl_lst)
		evconnlistener_enable(ctl_lst);
}

/* accept() failed (EMFILE, say): pause for a second instead of spinning. */
static void
ctl_accept_error_cb(struct evconnlistener *lst, void *arg)
{
	struct timeval tv = { 1, 0 };

	(void)arg;
	log_warnx("control socket: accept: %s; pausing for 1 s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	evconnlistener_disable(lst);
	event_base_once(komd.base, -1, EV_TIMEOUT, ctl_resume_cb, NULL, &tv);
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
	old = umask(0117);
	ctl_lst = evconnlistener_new_bind(komd.base, ctl_accept_cb, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 16, (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (!ctl_lst) {
		log_warn("control socket %s", path);
		return -1;
	}
	evconnlistener_set_error_cb(ctl_lst, ctl_accept_error_cb);
	chmod(path, 0660);
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

void
control_stop(void)
{
	if (!ctl_lst)
		return;
	evconnlistener_free(ctl_lst);
	ctl_lst = NULL;
	unlink(ctl_path);
}
