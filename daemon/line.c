/* line.c: lines and their endpoints. Server lines listen and accept up to max_clients;
 * client lines run one or two paths, each cycling through its hosts in order with a
 * connect timeout, resolving names with evdns at every attempt, and backing off
 * (doubling, with jitter, up to reconnect_max) after a full cycle fails. tcp-redundant
 * lines use the policy the protocol chooses: alternate (one path: primary hosts, then
 * backup hosts), parallel (two paths; the protocol picks the one carrying data) or dual
 * (two independent sessions). */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "core.h"
#include "tls.h"

#define LINE_WARN_WINDOW_MS 1000
#define LINE_WARN_BURST 5        /* logged in full per window, before the counting starts */

static void
line_warn_summary(struct line *l, struct warn_limit *w)
{
	if (w->dropped)
		log_warnx("line %s: %u more like this in the last %.1f s, the last: %s", l->lc->name, w->dropped,
		    LINE_WARN_WINDOW_MS / 1000.0, w->last);
	w->dropped = 0;
}

static void
line_warn_timer_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct line *l = arg;
	int64_t now = session_loop_ms(), next = 0;

	(void)fd; (void)ev;
	for (int i = 0; i < LINE_WARN_KINDS; i++) {
		struct warn_limit *w = &l->warns[i];
		if (w->dropped && now >= w->until_ms)
			line_warn_summary(l, w);
		else if (w->dropped && (!next || w->until_ms < next))
			next = w->until_ms;
	}
	if (next) {
		struct timeval tv = { 0, (suseconds_t)((next - now) * 1000) };
		evtimer_add(l->warn_timer, &tv);
	}
}

void
line_warn(struct line *l, const char *fmt, ...)
{
	struct warn_limit *w = NULL;
	int64_t now = session_loop_ms();
	char msg[240];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	for (int i = 0; i < LINE_WARN_KINDS && !w; i++)
		if (l->warns[i].fmt == fmt)
			w = &l->warns[i];
	for (int i = 0; i < LINE_WARN_KINDS && !w; i++)
		if (!l->warns[i].fmt || (!l->warns[i].dropped && now >= l->warns[i].until_ms))
			w = &l->warns[i];
	if (!w) {
		log_warnx("line %s: %s", l->lc->name, msg); /* more kinds at once than slots: unlimited */
		return;
	}
	if (w->fmt != fmt) {
		memset(w, 0, sizeof(*w));
		w->fmt = fmt;
	}
	if (now >= w->until_ms) {
		line_warn_summary(l, w);
		w->until_ms = now + LINE_WARN_WINDOW_MS;
		w->burst = 0;
	}
	if (w->burst < LINE_WARN_BURST) {
		w->burst++;
		log_warnx("line %s: %s", l->lc->name, msg);
		return;
	}
	w->dropped++;
	snprintf(w->last, sizeof(w->last), "%s", msg);
	if (l->warn_timer && !evtimer_pending(l->warn_timer, NULL)) {
		struct timeval tv = { 0, (suseconds_t)((w->until_ms - now) * 1000) };
		evtimer_add(l->warn_timer, &tv);
	}
}

/* TCP keepalive as the line says (tcp_keepalive_*), not the kernel's 2 hours. */
static void
line_keepalive(const struct line *l, int fd)
{
	int on = l->lc->keepalive_idle_ms > 0, idle = l->lc->keepalive_idle_ms / 1000;
	int intvl = l->lc->keepalive_interval_ms / 1000, cnt = l->lc->keepalive_count;

	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
	if (!on)
		return;
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}


void path_session_closed(struct path *p, const char *reason, int64_t lived_ms);
static void path_attempt(struct path *p);

static void path_connect(struct path *p, const struct sockaddr *sa, socklen_t salen);

/* A session that lived less than this did not prove the peer healthy: keep backing off. */
#define PATH_STABLE_MS 10000

/* A DNS request's link to its path: the path may move on (or be freed by a reload) before
 * evdns answers, so the answer goes through this and finds p == NULL then. */
struct dns_ctx {
	struct path *p;
};

static void
path_free_ai(struct path *p)
{
	if (p->ai)
		evutil_freeaddrinfo(p->ai);
	p->ai = p->ai_next = NULL;
}

const char *
conn_state_name(enum conn_state s)
{
	static const char *const names[] = { "stopped", "simulated", "waiting", "resolving",
		"connecting", "handshaking", "connected", "listening" };
	return names[s];
}

static const char *
kind_name(enum path_kind k)
{
	return k == PATH_BACKUP ? "backup" : "primary";
}

static void
ms_to_tv(int ms, struct timeval *tv)
{
	tv->tv_sec = ms / 1000;
	tv->tv_usec = (ms % 1000) * 1000;
}

/* ---- client paths ---- */

static void
path_timer_start(struct path *p, int ms)
{
	struct timeval tv;

	ms_to_tv(ms, &tv);
	evtimer_add(p->timer, &tv);
}

/* Abandon whatever attempt is in progress (DNS or connect). */
static void
path_abort_attempt(struct path *p)
{
	evtimer_del(p->timer);
	if (p->dns_ctx) {
		struct evdns_getaddrinfo_request *r = p->dns;
		p->dns_ctx->p = NULL; /* a late answer finds no path */
		p->dns_ctx = NULL;
		p->dns = NULL;
		if (r)
			evdns_getaddrinfo_cancel(r);
	}
	if (p->bev) {
		bufferevent_free(p->bev);
		p->bev = NULL;
	}
}

/* The delay before the next attempt (ms), and the one after it doubled, up to
 * reconnect_max: one rule for client paths and for server lines that cannot listen. */
static int
path_backoff(struct path *p)
{
	int max = p->line->lc->reconnect_max_ms, delay = p->backoff_ms;

	p->backoff_ms = delay > max / 2 ? max : delay * 2;
	return delay;
}

/* The current endpoint failed: try the next one, or back off after a full cycle. */
static void
path_failed(struct path *p, const char *err)
{
	struct line *l = p->line;
	char ep[300];

	path_abort_attempt(p);
	hostspec_format(p->ep[p->cur].host, p->ep[p->cur].port, ep, sizeof(ep));
	snprintf(p->last_error, sizeof(p->last_error), "%s (%s): %s", ep, kind_name(p->ep[p->cur].kind), err);
	log_warnx("line %s: connect %s: %s", l->lc->name, p->ai ? p->peer : ep, err);
	/* the name's next address first */
	if (p->ai_next) {
		struct evutil_addrinfo *a = p->ai_next;
		p->ai_next = a->ai_next;
		path_timer_start(p, l->lc->connect_timeout_ms);
		path_connect(p, a->ai_addr, a->ai_addrlen);
		return;
	}
	path_free_ai(p);
	if (++p->cur < p->nep) {
		path_attempt(p);
		return;
	}
	/* a full cycle failed: back off with +-20 % jitter */
	int delay = path_backoff(p);
	int jitter = delay / 5;
	if (jitter > 0)
		delay += (int)(random() % (2 * jitter + 1)) - jitter;
	if (delay < 1)
		delay = 1;
	p->cur = 0;
	p->state = CS_WAITING;
	log_info("line %s: all %d host%s failed, next attempt in %.1f s", l->lc->name, p->nep,
	    p->nep > 1 ? "s" : "", delay / 1000.0);
	path_timer_start(p, delay);
}

static void
path_connect_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct path *p = arg;
	struct line *l = p->line;
	struct session *s;
	int fd, on = 1;

	if (!(what & BEV_EVENT_CONNECTED)) {
		int err = EVUTIL_SOCKET_ERROR();
		char why[512];

		if (p->state == CS_HANDSHAKE) {
			l->cnt.tls_failures++;
			char reason[300];
			tls_error_text(bev, reason, sizeof(reason));
			snprintf(why, sizeof(why), "TLS handshake failed: %s", reason);
			path_failed(p, why);
			return;
		}
		path_failed(p, err ? evutil_socket_error_to_string(err) : "connection failed");
		return;
	}
	evtimer_del(p->timer);
	if (l->tls && p->state == CS_CONNECTING) {
		/* TCP is up: the TLS handshake follows on the same socket, within connect_timeout */
		SSL *ssl = tls_ssl_new(l->tls, p->ep[p->cur].host);
		fd = bufferevent_getfd(bev);
		bufferevent_setfd(bev, -1); /* keep the socket when the plain bufferevent goes */
		bufferevent_free(bev);
		p->bev = ssl ? bufferevent_openssl_socket_new(komd.base, fd, ssl, BUFFEREVENT_SSL_CONNECTING,
		    BEV_OPT_CLOSE_ON_FREE) : NULL;
		if (!p->bev) {
			if (ssl)
				SSL_free(ssl);
			evutil_closesocket(fd);
			path_failed(p, "cannot start TLS: out of memory");
			return;
		}
		bufferevent_openssl_set_allow_dirty_shutdown(p->bev, 1);
		bufferevent_setcb(p->bev, NULL, NULL, path_connect_event_cb, p);
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
		p->state = CS_HANDSHAKE;
		path_timer_start(p, l->lc->connect_timeout_ms);
		return;
	}
	if (l->tls) {
		char why[300], reason[400];
		if (!tls_check_auth(bufferevent_openssl_get_ssl(bev), l->tls, why, sizeof(why))) {
			l->cnt.tls_failures++;
			snprintf(reason, sizeof(reason), "TLS handshake failed: %s", why);
			path_failed(p, reason);
			return;
		}
	}
	p->bev = NULL;
	path_free_ai(p);
	fd = bufferevent_getfd(bev);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	line_keepalive(l, fd);
	if (l->tls)
		tls_log_established(bufferevent_openssl_get_ssl(bev), l->tls, l->lc->name, p->peer);
	p->state = CS_CONNECTED;
	l->cnt.connects++;
	/* a failover: a change between primary and backup, or the backup from the start */
	if (l->npaths == 1 && (p->ever_connected ? p->last_kind != p->ep[p->cur].kind :
	    p->ep[p->cur].kind == PATH_BACKUP))
		l->cnt.failovers++;
	p->ever_connected = true;
	p->last_kind = p->ep[p->cur].kind;
	p->last_error[0] = '\0';
	log_info("line %s: connected to %s via %s", l->lc->name, p->peer, kind_name(p->last_kind));
	if ((s = session_new(l, p, bev, p->peer, NULL, p->last_kind, false)) == NULL) {
		bufferevent_free(bev);
		path_failed(p, "out of memory");
		return;
	}
	if (s->closing)
		return; /* the protocol refused it in on_connect; the path is already waiting */
	p->sess = s;
	if ((l->policy == REDUND_ALTERNATE || l->npaths == 1) && !l->active)
		line_set_active_session(l, s);
	notify_status();
}

static void
path_connect(struct path *p, const struct sockaddr *sa, socklen_t salen)
{
	struct line *l = p->line;
	char addr[INET6_ADDRSTRLEN];
	const struct endpoint *ep = &p->ep[p->cur];

	if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, addr, sizeof(addr));
	else
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, addr, sizeof(addr));
	if (ep->host->family == AF_UNSPEC)
		snprintf(p->peer, sizeof(p->peer), "%s(%s%s%s):%d", ep->host->name,
		    sa->sa_family == AF_INET6 ? "[" : "", addr, sa->sa_family == AF_INET6 ? "]" : "", ep->port);
	else
		snprintf(p->peer, sizeof(p->peer), "%s%s%s:%d", sa->sa_family == AF_INET6 ? "[" : "",
		    addr, sa->sa_family == AF_INET6 ? "]" : "", ep->port);
	p->bev = bufferevent_socket_new(komd.base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!p->bev) {
		path_failed(p, "out of memory");
		return;
	}
	bufferevent_setcb(p->bev, NULL, NULL, path_connect_event_cb, p);
	p->state = CS_CONNECTING;
	log_debug("line %s: connecting to %s", l->lc->name, p->peer);
	if (bufferevent_socket_connect(p->bev, sa, (int)salen) != 0) {
		int err = EVUTIL_SOCKET_ERROR();
		path_failed(p, err ? evutil_socket_error_to_string(err) : "connect failed");
	} else if (komd_fd_reserved(bufferevent_getfd(p->bev))) {
		path_failed(p, "out of descriptors: the rest is kept for the control socket (raise LimitNOFILE)");
	}
}

static void
path_dns_cb(int result, struct evutil_addrinfo *res, void *arg)
{
	struct dns_ctx *ctx = arg;
	struct path *p = ctx->p;

	free(ctx);
	if (!p || result == EVUTIL_EAI_CANCEL) {
		if (res)
			evutil_freeaddrinfo(res);
		return; /* path_abort_attempt gave up on this request */
	}
	p->dns = NULL;
	p->dns_ctx = NULL;
	if (result != 0 || !res) {
		char err[160];
		snprintf(err, sizeof(err), "cannot resolve: %s", evutil_gai_strerror(result));
		if (res)
			evutil_freeaddrinfo(res);
		path_failed(p, err);
		return;
	}
	/* every address of the name is tried before the next host (path_failed) */
	p->ai = res;
	p->ai_next = res->ai_next;
	path_connect(p, res->ai_addr, res->ai_addrlen);
}

static void
path_attempt(struct path *p)
{
	const struct endpoint *ep = &p->ep[p->cur];
	struct line *l = p->line;

	path_timer_start(p, l->lc->connect_timeout_ms);
	if (ep->host->family == AF_UNSPEC) {
		struct evutil_addrinfo hints;
		struct evdns_getaddrinfo_request *r;
		char port[8];

		memset(&hints, 0, sizeof(hints));
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_protocol = IPPROTO_TCP;
		snprintf(port, sizeof(port), "%d", ep->port);
		p->state = CS_RESOLVING;
		snprintf(p->peer, sizeof(p->peer), "%s:%d", ep->host->name, ep->port);
		struct dns_ctx *ctx = calloc(1, sizeof(*ctx));
		if (!ctx) {
			path_failed(p, "out of memory");
			return;
		}
		ctx->p = p;
		p->dns_ctx = ctx;
		r = evdns_getaddrinfo(komd.dns, ep->host->name, port, &hints, path_dns_cb, ctx);
		/* answered at once (the callback ran and freed ctx): r is NULL */
		if (r && p->dns_ctx == ctx)
			p->dns = r;
		return;
	}
	if (ep->host->family == AF_INET6) {
		struct sockaddr_in6 sin6;
		memset(&sin6, 0, sizeof(sin6));
		sin6.sin6_family = AF_INET6;
		sin6.sin6_port = htons((uint16_t)ep->port);
		inet_pton(AF_INET6, ep->host->name, &sin6.sin6_addr);
		path_connect(p, (struct sockaddr *)&sin6, sizeof(sin6));
	} else {
		struct sockaddr_in sin;
		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		sin.sin_port = htons((uint16_t)ep->port);
		inet_pton(AF_INET, ep->host->name, &sin.sin_addr);
		path_connect(p, (struct sockaddr *)&sin, sizeof(sin));
	}
}

static void
path_timer_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct path *p = arg;

	(void)fd; (void)ev;
	switch (p->state) {
	case CS_WAITING:
		path_attempt(p);
		break;
	case CS_RESOLVING:
		path_failed(p, "timeout resolving the name");
		break;
	case CS_CONNECTING:
		path_failed(p, "connect timeout");
		break;
	case CS_HANDSHAKE:
		p->line->cnt.tls_failures++;
		path_failed(p, "TLS handshake failed: timeout");
		break;
	default:
		break;
	}
}

void
path_session_closed(struct path *p, const char *reason, int64_t lived_ms)
{
	struct line *l = p->line;
	int delay;

	p->sess = NULL;
	snprintf(p->last_error, sizeof(p->last_error), "%s: %s", p->peer, reason);
	if (!l->started)
		return;
	/* a session that ended soon (the peer dropped it, or the protocol found it did not
	 * answer: an MQTT broker that accepts TCP and never sends CONNACK) did not prove its
	 * host: the next host of the list, as after a failed connect */
	if (lived_ms < PATH_STABLE_MS && p->cur + 1 < p->nep) {
		p->cur++;
		p->state = CS_WAITING;
		path_timer_start(p, l->lc->reconnect_delay_ms);
		notify_status();
		return;
	}
	/* else start again from the first host: soon after a session that lasted, with growing
	 * delays after sessions that a peer accepted and dropped at once */
	if (lived_ms >= PATH_STABLE_MS)
		p->backoff_ms = l->lc->reconnect_delay_ms;
	delay = path_backoff(p);
	p->cur = 0;
	p->state = CS_WAITING;
	if (delay > l->lc->reconnect_delay_ms)
		log_info("line %s: next attempt in %.1f s", l->lc->name, delay / 1000.0);
	path_timer_start(p, delay);
	notify_status();
}

static void
path_add(struct path *p, const struct hostlist *hl, int port, enum path_kind kind)
{
	for (int i = 0; i < hl->n && p->nep < MAX_ENDPOINTS; i++) {
		p->ep[p->nep].host = &hl->h[i];
		p->ep[p->nep].port = port;
		p->ep[p->nep].kind = kind;
		p->nep++;
	}
}

/* ---- server lines ---- */

/* Sessions of l whose peer is at address addr (the peer text without its port). */
static int
line_clients_from(const struct line *l, const char *addr)
{
	const struct session *s;
	size_t n = strlen(addr);
	int count = 0;

	TAILQ_FOREACH(s, &l->sessions, link) {
		const char *a = s->peer[0] == '[' ? s->peer + 1 : s->peer;
		if (strncmp(a, addr, n) == 0 && (a[n] == ':' || a[n] == ']'))
			count++;
	}
	return count;
}

static void line_accept_pause(struct line *l, const char *why);

/* max_clients reached: close the session that has gone longest without a request (from its
 * accept if it never sent one) to make room for peer (Modbus Messaging on TCP/IP
 * Implementation Guide, clause 4.2.1). false when none can go. */
static bool
line_evict_idlest(struct line *l, const char *peer)
{
	struct session *s, *old = NULL;
	char why[200];

	TAILQ_FOREACH(s, &l->sessions, link)
		if (!s->closing && (!old || s->last_req_seq < old->last_req_seq))
			old = s;
	if (!old)
		return false;
	l->cnt.rejected++;
	snprintf(why, sizeof(why), "max_clients %d reached: room made for %s (no request for %.1f s, the longest)",
	    l->lc->max_clients, peer, (session_loop_ms() - old->last_req_ms) / 1000.0);
	session_close(old, why);
	return true;
}

static void
line_accept_cb(struct evconnlistener *lst, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	struct line *l = arg;
	struct bufferevent *bev;
	char addr[INET6_ADDRSTRLEN], peer[128];
	int on = 1;

	(void)lst; (void)salen;
	if (sa->sa_family == AF_INET6) {
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, addr, sizeof(addr));
		snprintf(peer, sizeof(peer), "[%s]:%d", addr, ntohs(((struct sockaddr_in6 *)sa)->sin6_port));
	} else {
		inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, addr, sizeof(addr));
		snprintf(peer, sizeof(peer), "%s:%d", addr, ntohs(((struct sockaddr_in *)sa)->sin_port));
	}
	if (l->lc->allow.n && !addrlist_match(&l->lc->allow, sa->sa_family, sa->sa_family == AF_INET6 ?
	    (const void *)&((struct sockaddr_in6 *)sa)->sin6_addr : (const void *)&((struct sockaddr_in *)sa)->sin_addr)) {
		l->cnt.rejected++;
		line_warn(l, "%s: refused: not in the line's allow list", peer);
		evutil_closesocket(fd);
		return;
	}
	if (l->nsessions >= l->lc->max_clients && !line_evict_idlest(l, peer)) {
		l->cnt.rejected++;
		line_warn(l, "%s: refused: max_clients %d reached", peer, l->lc->max_clients);
		evutil_closesocket(fd);
		return;
	}
	if (l->lc->max_clients_per_address > 0 && line_clients_from(l, addr) >= l->lc->max_clients_per_address) {
		l->cnt.rejected++;
		line_warn(l, "%s: refused: max_clients_per_address %d reached for %s", peer,
		    l->lc->max_clients_per_address, addr);
		evutil_closesocket(fd);
		return;
	}
	if (komd_fd_reserved(fd)) {
		/* the last descriptors are the control socket's: pause as for EMFILE */
		l->cnt.rejected++;
		evutil_closesocket(fd);
		line_accept_pause(l, "descriptors: the rest is kept for the control socket (raise LimitNOFILE)");
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	line_keepalive(l, fd);
	if (l->tls) {
		SSL *ssl = tls_ssl_new(l->tls, NULL);
		bev = ssl ? bufferevent_openssl_socket_new(komd.base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
		    BEV_OPT_CLOSE_ON_FREE) : NULL;
		if (!bev && ssl)
			SSL_free(ssl);
		if (bev)
			bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	} else {
		bev = bufferevent_socket_new(komd.base, fd, BEV_OPT_CLOSE_ON_FREE);
	}
	if (!bev) {
		log_warnx("line %s: %s: refused: out of memory", l->lc->name, peer);
		evutil_closesocket(fd);
		return;
	}
	l->cnt.connects++;
	log_info("line %s: %s: accepted%s", l->lc->name, peer, l->tls ? ", TLS handshake" : "");
	if (session_new(l, NULL, bev, peer, sa, PATH_PRIMARY, l->tls != NULL) == NULL) {
		log_warnx("line %s: %s: refused: out of memory", l->lc->name, peer);
		bufferevent_free(bev);
	}
}

static void
line_accept_resume_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct line *l = arg;

	(void)fd; (void)ev;
	log_info("line %s: accepting again", l->lc->name);
	for (int i = 0; i < l->nlst; i++)
		evconnlistener_enable(l->lst[i]);
}

/* Stop accepting for 1 s (out of descriptors or memory) instead of spinning. */
static void
line_accept_pause(struct line *l, const char *why)
{
	struct timeval tv = { 1, 0 };

	if (evtimer_pending(l->accept_pause, NULL))
		return;
	log_warnx("line %s: accept: %s; pausing for 1 s", l->lc->name, why);
	for (int i = 0; i < l->nlst; i++)
		evconnlistener_disable(l->lst[i]);
	evtimer_add(l->accept_pause, &tv);
}

/* accept() failed: with EMFILE/ENFILE pause on a timer instead of spinning. */
static void
line_accept_error_cb(struct evconnlistener *lst, void *arg)
{
	struct line *l = arg;
	int err = EVUTIL_SOCKET_ERROR();

	(void)lst;
	if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
		line_accept_pause(l, evutil_socket_error_to_string(err));
	} else {
		log_warnx("line %s: accept: %s", l->lc->name, evutil_socket_error_to_string(err));
	}
}

int
listen_socket(const struct hostspec *h, int port, int backlog, char *name, size_t namelen)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	int fd, on = 1, err;
	int family = h->family == AF_INET6 ? AF_INET6 : AF_INET;

	hostspec_format(h, port, name, namelen);
	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		s6->sin6_addr = in6addr_any;
		sslen = sizeof(*s6);
		if (!h->wildcard && inet_pton(AF_INET6, h->name, &s6->sin6_addr) != 1)
			goto bad_address;
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		s4->sin_addr.s_addr = htonl(INADDR_ANY);
		sslen = sizeof(*s4);
		if (!h->wildcard && inet_pton(AF_INET, h->name, &s4->sin_addr) != 1)
			goto bad_address;
	}
	if ((fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	if (family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
	if (bind(fd, (struct sockaddr *)&ss, sslen) != 0 || listen(fd, backlog) != 0) {
		err = errno;
		close(fd);
		errno = err;
		return -1;
	}
	return fd;
bad_address:
	errno = EINVAL;
	return -1;
}

static int
line_listen_one(struct line *l, const struct hostspec *h)
{
	int fd;
	char name[300];

	if ((fd = listen_socket(h, l->lc->port, 511, name, sizeof(name))) < 0) {
		snprintf(l->last_error, sizeof(l->last_error), "listen %s: %s", name, strerror(errno));
		log_warn("line %s: listen %s", l->lc->name, name);
		return -1;
	}
	/* backlog 0: the socket listens already (with 511; -1 would set 128 again) */
	l->lst[l->nlst] = evconnlistener_new(komd.base, line_accept_cb, l, LEV_OPT_CLOSE_ON_FREE, 0, fd);
	if (!l->lst[l->nlst]) {
		close(fd);
		return -1;
	}
	evconnlistener_set_error_cb(l->lst[l->nlst], line_accept_error_cb);
	snprintf(l->lst_name[l->nlst], sizeof(l->lst_name[0]), "%s", name);
	l->nlst++;
	log_info("line %s: listening on %s", l->lc->name, name);
	return 0;
}

static void
line_close_listeners(struct line *l)
{
	for (int i = 0; i < l->nlst; i++)
		evconnlistener_free(l->lst[i]);
	l->nlst = 0;
}

/* Binding failed (address in use, say): try again later, with the client back-off. */
static void
line_listen_retry_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct path *p = arg;
	struct line *l = p->line;
	int i;

	(void)fd; (void)ev;
	for (i = 0; i < l->lc->hosts.n; i++)
		if (line_listen_one(l, &l->lc->hosts.h[i]) != 0)
			break;
	if (i == l->lc->hosts.n) {
		p->state = CS_LISTENING;
		l->last_error[0] = '\0';
		l->start_failed = false;
		log_info("line %s: listening at last", l->lc->name);
		return;
	}
	line_close_listeners(l);
	p->state = CS_WAITING;
	int delay = path_backoff(p);
	path_timer_start(p, delay);
	log_info("line %s: listening again in %.1f s", l->lc->name, delay / 1000.0);
}

/* ---- lines ---- */

struct line *
line_create(struct line_conf *lc, struct confref *cref)
{
	struct line *l = calloc(1, sizeof(*l));
	int i;

	if (!l)
		fatal("line_create");
	l->lc = lc;
	l->cref = cref;
	cref->refs++;
	l->ops = lc->ops;
	l->server = l->ops->transport == PROTO_LISTEN;
	l->policy = l->ops->line_redundancy ? l->ops->line_redundancy(lc) : l->ops->redundancy;
	TAILQ_INIT(&l->sessions);
	if (l->ops->line_size && (l->priv = calloc(1, l->ops->line_size)) == NULL)
		fatal("line_create");
	/* the protocol's counters start at zero with the line (a reload that restarts a line
	 * creates it anew; a kept line keeps them, as it keeps the core's) */
	for (const struct proto_counter *k = l->ops->counters; k && k->name; k++)
		l->npcnt++;
	if (l->npcnt && (l->pcnt = calloc((size_t)l->npcnt, sizeof(*l->pcnt))) == NULL)
		fatal("line_create");
	if ((l->accept_pause = evtimer_new(komd.base, line_accept_resume_cb, l)) == NULL ||
	    (l->warn_timer = evtimer_new(komd.base, line_warn_timer_cb, l)) == NULL)
		fatal("line_create");

	/* paths: the shape the redundancy policy asks for */
	bool redundant = lc->type == LINE_TCP_REDUNDANT && lc->backup_present && lc->backup_enabled;
	l->npaths = 1;
	path_add(&l->paths[0], &lc->hosts, lc->port, PATH_PRIMARY);
	if (redundant && l->policy == REDUND_ALTERNATE) {
		path_add(&l->paths[0], &lc->backup_hosts, lc->backup_port, PATH_BACKUP);
	} else if (redundant) {
		l->npaths = 2;
		path_add(&l->paths[1], &lc->backup_hosts, lc->backup_port, PATH_BACKUP);
	}
	for (i = 0; i < l->npaths; i++) {
		struct path *p = &l->paths[i];
		p->line = l;
		p->idx = i;
		p->backoff_ms = lc->reconnect_delay_ms;
		if ((p->timer = evtimer_new(komd.base, l->server ? line_listen_retry_cb : path_timer_cb, p)) == NULL)
			fatal("line_create");
	}

	if (lc->tls.present) {
		struct tls_error e;
		if ((l->tls = tls_setup(lc, komd.no_peer_verify, &e)) == NULL) {
			log_err("%s:%d: line %s: tls: %s%s", e.where.file, e.where.line, lc->name, e.msg,
			    e.dates ? "; the line stays stopped until a reload brings a valid certificate" : "");
			if (!e.dates)
				goto fail;
			/* dates: this line fails alone, the others run (and a reload tries again) */
			snprintf(l->tls_error, sizeof(l->tls_error), "%s", e.msg);
			snprintf(l->last_error, sizeof(l->last_error), "tls: %s", e.msg);
		} else {
			tls_warn_expiry(l->tls, lc->name, 30);
		}
	}
	if (l->ops->line_init && l->ops->line_init(l) != 0)
		goto fail;
	l->inited = true;
	if (lc->nstations && (l->stations = calloc((size_t)lc->nstations, sizeof(*l->stations))) == NULL)
		fatal("line_create");
	l->simulated = !l->server && lc->nstations > 0;
	for (i = 0; i < lc->nstations; i++) {
		if (station_setup(&l->stations[i], l, &lc->stations[i]) != 0)
			goto fail;
		l->nstations++;
		if (!lc->stations[i].simulation)
			l->simulated = false;
	}
	return l;
fail:
	log_warnx("line %s: cannot be set up", lc->name);
	line_free(l);
	return NULL;
}

int
line_start(struct line *l)
{
	int i;

	if (l->started || !l->lc->enabled)
		return 0;
	if (l->tls_error[0]) {
		log_warnx("line %s: not started: tls: %s", l->lc->name, l->tls_error);
		return 0;
	}
	l->started = true;
	for (i = 0; i < l->nstations; i++)
		station_start(&l->stations[i]);
	if (l->server) {
		for (i = 0; i < l->lc->hosts.n; i++)
			if (line_listen_one(l, &l->lc->hosts.h[i]) != 0)
				break;
		if (i < l->lc->hosts.n) {
			line_close_listeners(l);
			l->paths[0].state = CS_WAITING;
			path_timer_start(&l->paths[0], l->paths[0].backoff_ms);
			return -1;
		}
		l->paths[0].state = CS_LISTENING;
		return 0;
	}
	if (l->simulated) {
		l->paths[0].state = CS_SIMULATED;
		return 0;
	}
	for (i = 0; i < l->npaths; i++) {
		l->paths[i].cur = 0;
		path_attempt(&l->paths[i]);
	}
	return 0;
}

void
line_stop(struct line *l)
{
	if (!l->started)
		return;
	l->started = false;
	for (int i = 0; i < l->npaths; i++) {
		path_abort_attempt(&l->paths[i]);
		path_free_ai(&l->paths[i]);
		l->paths[i].state = CS_STOPPED;
	}
	evtimer_del(l->accept_pause);
	line_close_listeners(l);
	session_close_all(l, "line stopped");
	for (int i = 0; i < l->nstations; i++)
		station_stop(&l->stations[i]);
}

void
line_free(struct line *l)
{
	line_stop(l);
	for (int i = 0; i < l->nstations; i++)
		station_teardown(&l->stations[i]);
	free(l->stations);
	if (l->inited && l->ops->line_free)
		l->ops->line_free(l);
	for (int i = 0; i < 2; i++)
		if (l->paths[i].timer)
			event_free(l->paths[i].timer);
	event_free(l->accept_pause);
	for (int i = 0; i < LINE_WARN_KINDS; i++)
		line_warn_summary(l, &l->warns[i]);
	event_free(l->warn_timer);
	tls_free(l->tls);
	free(l->priv);
	free(l->pcnt);
	if (--l->cref->refs == 0) {
		conf_free(l->cref->conf);
		free(l->cref);
	}
	free(l);
}

struct line *
line_find(const char *name)
{
	struct line *l;

	TAILQ_FOREACH(l, &komd.lines, link)
		if (strcmp(l->lc->name, name) == 0)
			return l;
	return NULL;
}

void
line_tls_reload(struct line *l)
{
	struct line_tls *t;
	struct tls_error e;

	if (!l->lc->tls.present)
		return;
	if ((t = tls_setup(l->lc, komd.no_peer_verify, &e)) == NULL) {
		log_err("%s:%d: line %s: tls: %s; %s", e.where.file, e.where.line, l->lc->name, e.msg,
		    l->tls ? "keeping the certificates loaded before" : "the line stays stopped");
		if (!l->tls) {
			snprintf(l->tls_error, sizeof(l->tls_error), "%s", e.msg);
			snprintf(l->last_error, sizeof(l->last_error), "tls: %s", e.msg);
		}
		return;
	}
	/* SSL objects of existing connections hold their own reference to the old context */
	tls_free(l->tls);
	l->tls = t;
	tls_warn_expiry(l->tls, l->lc->name, 30);
	if (l->tls_error[0]) {
		l->tls_error[0] = l->last_error[0] = '\0';
		log_info("line %s: tls: certificates valid again: starting", l->lc->name);
		line_start(l);
	}
}

bool
line_uses_tag(const struct line *l, const char *name)
{
	for (int i = 0; i < l->nstations; i++)
		for (int j = 0; j < l->stations[i].ntags; j++)
			if (strcmp(l->stations[i].tags[j].tc->name, name) == 0)
				return true;
	return false;
}

/* One line of text: what the line is doing now. */
const char *
line_state_text(const struct line *l, char *buf, size_t len)
{
	size_t o = 0;

	if (!l->lc->enabled)
		return snprintf(buf, len, "disabled"), buf;
	if (l->tls_error[0])
		return snprintf(buf, len, "not started: tls: %s (renew, then reload)", l->tls_error), buf;
	if (!l->started)
		return snprintf(buf, len, "stopped"), buf;
	if (l->server) {
		if (l->paths[0].state != CS_LISTENING)
			return snprintf(buf, len, "waiting to listen (%s)", l->last_error), buf;
		o += (size_t)snprintf(buf + o, len - o, "listening on");
		for (int i = 0; i < l->nlst && o < len; i++)
			o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? ", " : " ", l->lst_name[i]);
		if (o < len)
			snprintf(buf + o, len - o, "; %d client%s", l->nsessions, l->nsessions == 1 ? "" : "s");
		return buf;
	}
	if (l->simulated)
		return snprintf(buf, len, "simulated"), buf;
	for (int i = 0; i < l->npaths && o < len; i++) {
		const struct path *p = &l->paths[i];
		const char *sep = i ? "; " : "";
		switch (p->state) {
		case CS_CONNECTED:
			o += (size_t)snprintf(buf + o, len - o, "%sconnected to %s via %s%s", sep, p->peer,
			    kind_name(p->last_kind), l->npaths > 1 && l->active == p->sess ? " (active)" : "");
			break;
		case CS_RESOLVING:
		case CS_CONNECTING:
		case CS_HANDSHAKE:
			o += (size_t)snprintf(buf + o, len - o, "%s%s %s", sep, conn_state_name(p->state), p->peer);
			break;
		default:
			o += (size_t)snprintf(buf + o, len - o, "%sdisconnected%s%s", sep,
			    p->last_error[0] ? ": " : "", p->last_error);
			break;
		}
	}
	return buf;
}

/* ---- the protocol's view ---- */

const struct line_conf *line_conf(const struct line *l) { return l->lc; }
void *line_priv(const struct line *l) { return l->priv; }
const char *line_name(const struct line *l) { return l->lc->name; }
int line_nstations(const struct line *l) { return l->nstations; }
struct station *line_station(const struct line *l, int i) { return &l->stations[i]; }
struct session *line_active_session(const struct line *l) { return l->active; }
bool line_running(const struct line *l) { return l->started; }
bool line_listens(const struct line *l) { return l->server; }

void
line_foreach_session(struct line *l, session_fn fn, void *arg)
{
	struct session *s, *next;

	TAILQ_FOREACH_SAFE(s, &l->sessions, link, next)
		if (!s->closing && !s->handshaking)
			fn(s, arg);
}

void
line_counter_add(struct line *l, int idx, uint64_t n)
{
	if (idx >= 0 && idx < l->npcnt)
		l->pcnt[idx] += n;
}

void
line_counter_set(struct line *l, int idx, uint64_t v)
{
	if (idx >= 0 && idx < l->npcnt)
		l->pcnt[idx] = v;
}

void
line_set_active_session(struct line *l, struct session *s)
{
	struct session *old = l->active;

	if (s == old || (s && (s->closing || !l->started)))
		return; /* a line being stopped does not fail over to a session about to close */
	l->active = s;
	if (s && old && old->kind != s->kind)
		l->cnt.failovers++;
	if (s && l->npaths > 1)
		log_info("line %s: data via %s %s", l->lc->name, kind_name(s->kind), s->peer);
	if (s && !old) {
		for (int i = 0; i < l->nstations; i++)
			station_line_up(&l->stations[i]);
	} else if (!s) {
		char why[200];
		snprintf(why, sizeof(why), "connection to %s lost", old ? old->peer : "?");
		for (int i = 0; i < l->nstations; i++)
			station_line_down(&l->stations[i], why);
	}
}
