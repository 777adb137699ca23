/* session.c: one connection (accepted by a server line or made by a client path): its
 * buffers, timers, counters, tracing and teardown. A session is closed in one place
 * (session_close) and freed on the next loop pass, never inside its own callback. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "core.h"
#include "tls.h"

/* A peer that does not read is dropped rather than allowed to grow our memory. */
#define SESSION_MAX_OUTPUT (4u * 1024 * 1024)
#define SESSION_WRITE_TIMEOUT_S 30

static const struct timeval session_write_tv = { SESSION_WRITE_TIMEOUT_S, 0 };

static void session_read_cb(struct bufferevent *bev, void *arg);
static void session_batch_arm(struct session *s);
#define SESSION_READ_MAX 16384  /* bytes one plain read takes (session_raw_read_cb) */
static void session_event_cb(struct bufferevent *bev, short what, void *arg);
static void session_raw_read_cb(evutil_socket_t fd, short ev, void *arg);
void path_session_closed(struct path *p, const char *reason, int64_t lived_ms); /* line.c */

/* ---- timers ---- */

static void
ptimer_cb_shim(evutil_socket_t fd, short ev, void *arg)
{
	struct ptimer *t = arg;

	(void)fd; (void)ev;
	t->cb(t->arg);
}

static struct ptimer *
ptimer_new(struct ptimer_list *list, ptimer_cb cb, void *arg)
{
	struct ptimer *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	if ((t->ev = evtimer_new(komd.base, ptimer_cb_shim, t)) == NULL) {
		free(t);
		return NULL;
	}
	t->cb = cb;
	t->arg = arg;
	LIST_INSERT_HEAD(list, t, link);
	return t;
}

void
ptimer_free_list(struct ptimer_list *list)
{
	struct ptimer *t;

	while ((t = LIST_FIRST(list)) != NULL) {
		LIST_REMOVE(t, link);
		event_free(t->ev);
		free(t);
	}
}

struct ptimer *session_timer(struct session *s, ptimer_cb cb, void *arg) { return ptimer_new(&s->timers, cb, arg); }
struct ptimer *station_timer(struct station *st, ptimer_cb cb, void *arg) { return ptimer_new(&st->timers, cb, arg); }

void
ptimer_start(struct ptimer *t, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	if (t && !t->dead)
		evtimer_add(t->ev, &tv);
}

void ptimer_stop(struct ptimer *t) { if (t) evtimer_del(t->ev); }

void
ptimer_free(struct ptimer *t)
{
	if (!t)
		return;
	LIST_REMOVE(t, link);
	event_free(t->ev);
	free(t);
}
bool ptimer_pending(const struct ptimer *t) { return t && evtimer_pending(t->ev, NULL); }

/* ---- sessions ---- */

int64_t
session_loop_ms(void)
{
	struct timeval tv;

	event_base_gettimeofday_cached(komd.base, &tv);
	return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* A request (or the accept, or the end of a handshake) now: its loop time, and its place in
 * the order of all such events, which the 4 ms loop clock cannot always tell apart. */
static void
session_touch(struct session *s)
{
	static uint64_t seq;

	s->last_req_ms = session_loop_ms();
	s->last_req_seq = ++seq;
}

/* Server sessions: the TLS handshake must end within connect_timeout of the accept,
 * however slowly the bytes come (an absolute deadline, not an inactivity timeout); after
 * it, a client that sends no complete frame for idle_timeout is disconnected. */
static void
session_deadline_cb(void *arg)
{
	struct session *s = arg;
	struct line *l = s->line;
	char why[160];

	if (s->handshaking) {
		l->cnt.tls_failures++;
		snprintf(why, sizeof(why), "timeout: no complete handshake within %.1f s of the connect",
		    l->lc->connect_timeout_ms / 1000.0);
		snprintf(l->last_error, sizeof(l->last_error), "%s: TLS handshake failed: %s", s->peer, why);
		session_close(s, why);
		return;
	}
	int64_t idle = session_loop_ms() - s->last_req_ms;
	if (idle < l->lc->idle_timeout_ms) {
		ptimer_start(s->deadline, (int)(l->lc->idle_timeout_ms - idle));
		return;
	}
	snprintf(why, sizeof(why), "idle: no complete request for %.1f s (idle_timeout)", idle / 1000.0);
	session_close(s, why);
}

/* renegotiate_interval: renew the session keys (TLS 1.2 renegotiation, TLS 1.3 KeyUpdate). */
static void
session_renew_cb(void *arg)
{
	struct session *s = arg;

	int rc = tls_renew_keys(s->bev);

	if (s->closing)
		return; /* the partner refused at once: logged by the close */
	if (rc < 0)
		log_warnx("line %s: %s: TLS key renewal refused by OpenSSL; trying again in %.1f s", s->line->lc->name,
		    s->peer, s->line->tls->renegotiate_interval_ms / 1000.0);
	ptimer_start(s->renew, s->line->tls->renegotiate_interval_ms);
}

/* The session is up (after its handshake): start the idle watch of a server session, and
 * the key renewal of a TLS session. */
static void
session_watch_idle(struct session *s)
{
	int ms = s->line->lc->idle_timeout_ms;

	if (s->line->tls && s->line->tls->renegotiate_interval_ms > 0 &&
	    (s->renew = session_timer(s, session_renew_cb, s)) != NULL)
		ptimer_start(s->renew, s->line->tls->renegotiate_interval_ms);

	if (s->path || ms <= 0)
		return;
	if (!s->deadline && (s->deadline = session_timer(s, session_deadline_cb, s)) == NULL)
		return; /* out of memory: the session lives without the watch */
	if (s->line->tls)
		session_touch(s); /* after a handshake: from now */
	ptimer_start(s->deadline, ms);
}

/* ---- transports: how a session's bytes move ----
 * Plain TCP reads through an event of its own, one recv() a readiness (libevent's
 * evbuffer_read asks ioctl(FIONREAD) first, a system call a frame), and writes straight to
 * the socket when nothing is queued; TLS reads and writes through the OpenSSL bufferevent.
 * Every read, write and close goes through this, so that nothing (a watermark, a timeout)
 * applies to one kind by accident. */
struct transport {
	const char *name;
	size_t extra;                                   /* bytes after struct session */
	int (*start)(struct session *s);                /* begin reading; -1: the session fails */
	void (*stop)(struct session *s);                /* read no more */
	size_t (*send_now)(struct session *s, const void *data, size_t len); /* bytes sent at once */
	void (*shutdown)(struct session *s);            /* the orderly end (close_notify) */
};

static int
plain_start(struct session *s)
{
	s->rev = (struct event *)(s + 1); /* room after the session: no allocation a connection */
	if (event_assign(s->rev, komd.base, bufferevent_getfd(s->bev), EV_READ | EV_PERSIST, session_raw_read_cb,
	    s) != 0 || event_add(s->rev, NULL) != 0)
		return -1;
	return 0;
}

static void plain_stop(struct session *s) { event_del(s->rev); }

/* nothing waiting: straight to the socket (an answer goes out now, without a loop pass and
 * two epoll_ctl calls); what does not fit is queued by the caller */
static size_t
plain_send_now(struct session *s, const void *data, size_t len)
{
	ssize_t n = send(bufferevent_getfd(s->bev), data, len, MSG_NOSIGNAL | MSG_DONTWAIT);

	return n > 0 ? (size_t)n : 0;
}

static void plain_shutdown(struct session *s) { (void)s; }

static int
tls_start(struct session *s)
{
	return bufferevent_enable(s->bev, EV_READ);
}

static void tls_stop(struct session *s) { bufferevent_disable(s->bev, EV_READ); }

static size_t
tls_send_now(struct session *s, const void *data, size_t len)
{
	(void)s; (void)data; (void)len;
	return 0; /* records are the bufferevent's */
}

static void
tls_shutdown(struct session *s)
{
	SSL *ssl = bufferevent_openssl_get_ssl(s->bev);

	/* close_notify; with answers still queued, after them (session_linger) */
	if (ssl && !s->handshaking && evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
		SSL_shutdown(ssl);
}

static const struct transport transport_plain = {
	.name = "plain", .start = plain_start, .stop = plain_stop, .send_now = plain_send_now,
	.shutdown = plain_shutdown,
};
static const struct transport transport_tls = {
	.name = "tls", .start = tls_start, .stop = tls_stop, .send_now = tls_send_now, .shutdown = tls_shutdown,
};

struct session *
session_new(struct line *l, struct path *p, struct bufferevent *bev, const char *peer,
    const struct sockaddr *sa, enum path_kind kind, bool handshaking)
{
	const struct transport *tr = l->tls ? &transport_tls : &transport_plain;
	size_t extra = tr == &transport_plain ? event_get_struct_event_size() : 0;
	struct session *s = calloc(1, sizeof(*s) + extra);

	if (!s)
		return NULL;
	if (l->ops->session_size && (s->priv = calloc(1, l->ops->session_size)) == NULL) {
		free(s);
		return NULL;
	}
	s->line = l;
	s->path = p;
	s->kind = kind;
	s->bev = bev;
	s->since_ms = time_now_ms();
	session_touch(s); /* "without a request" counts from the accept */
	snprintf(s->peer, sizeof(s->peer), "%s", peer);
	if (sa && sa->sa_family == AF_INET) {
		s->peer_family = AF_INET;
		memcpy(s->peer_addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	} else if (sa && sa->sa_family == AF_INET6) {
		s->peer_family = AF_INET6;
		memcpy(s->peer_addr, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	}
	LIST_INIT(&s->timers);
	s->tr = tr;
	s->handshaking = handshaking;
	bufferevent_setcb(bev, session_read_cb, NULL, session_event_cb, s);
	if (tr->start(s) != 0 || bufferevent_enable(bev, EV_WRITE) != 0) {
		bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
		free(s->priv); /* the caller frees bev */
		free(s);
		return NULL;
	}
	TAILQ_INSERT_TAIL(&l->sessions, s, link);
	l->nsessions++;
	if (handshaking) {
		/* the handshake must finish within the line's connect_timeout */
		if ((s->deadline = session_timer(s, session_deadline_cb, s)) == NULL) {
			session_close(s, "out of memory");
			return s;
		}
		ptimer_start(s->deadline, l->lc->connect_timeout_ms);
		bufferevent_set_timeouts(bev, NULL, &session_write_tv);
		return s;
	}
	bufferevent_set_timeouts(bev, NULL, &session_write_tv);
	session_watch_idle(s);
	if (l->ops->on_connect)
		l->ops->on_connect(s);
	return s;
}

/* A closed session's answers still queued (a reply, then a protocol error in the same read;
 * an exception before the close) go out before the socket closes: its bufferevent lingers,
 * writing only, for at most SESSION_LINGER_S. */
#define SESSION_LINGER_S 2

struct session_linger {
	struct bufferevent *bev;
	LIST_ENTRY(session_linger) link;
};
static LIST_HEAD(, session_linger) session_lingering = LIST_HEAD_INITIALIZER(session_lingering);

static void
linger_end(struct session_linger *lg)
{
	LIST_REMOVE(lg, link);
	bufferevent_free(lg->bev);
	free(lg);
}

static void
linger_write_cb(struct bufferevent *bev, void *arg)
{
	SSL *ssl = bufferevent_openssl_get_ssl(bev);

	if (ssl)
		SSL_shutdown(ssl); /* close_notify after the last answer */
	linger_end(arg);
}
static void linger_event_cb(struct bufferevent *bev, short what, void *arg) { (void)bev; (void)what; linger_end(arg); }

static void
session_linger(struct bufferevent *bev)
{
	static const struct timeval tv = { SESSION_LINGER_S, 0 };
	struct session_linger *lg;

	if (komd.stopping || evbuffer_get_length(bufferevent_get_output(bev)) == 0 ||
	    (lg = calloc(1, sizeof(*lg))) == NULL) {
		bufferevent_free(bev);
		return;
	}
	lg->bev = bev;
	LIST_INSERT_HEAD(&session_lingering, lg, link);
	bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
	bufferevent_setcb(bev, NULL, linger_write_cb, linger_event_cb, lg);
	bufferevent_set_timeouts(bev, NULL, &tv);
	bufferevent_enable(bev, EV_WRITE);
}

void
session_linger_free_all(void)
{
	while (!LIST_EMPTY(&session_lingering))
		linger_end(LIST_FIRST(&session_lingering));
}

static void
session_free_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct session *s = arg;

	(void)fd; (void)ev;
	if (s->bev)
		session_linger(s->bev);
	ptimer_free_list(&s->timers);
	if (s->batch_ev) {
		event_free(s->batch_ev);
		close(s->batch_fd);
	}
	free(s->priv);
	free(s);
}

/* The active session of a client line has gone: on a parallel or dual line the other
 * connected session takes over at once (the protocol makes it carry data: on_takeover),
 * else the line has none. One rule for every protocol. */
static void
session_take_over(struct line *l)
{
	struct session *other = NULL, *x;

	TAILQ_FOREACH(x, &l->sessions, link)
		if (!x->closing && !x->handshaking && x->path) {
			other = x;
			break;
		}
	if (!other || l->policy == REDUND_ALTERNATE || !l->started) {
		line_set_active_session(l, NULL);
		return;
	}
	line_set_active_session(l, other);
	if (l->ops->on_takeover && l->active == other)
		l->ops->on_takeover(other);
}

void
session_close(struct session *s, const char *reason)
{
	struct line *l = s->line;

	if (s->closing)
		return;
	s->closing = true;
	if (s->handshaking)
		line_warn(l, "%s: TLS handshake failed: %s", s->peer, reason); /* clients can repeat it at will */
	else
		log_info("line %s: %s: closed: %s", l->lc->name, s->peer, reason);
	if (l->ops->on_close && !s->handshaking)
		l->ops->on_close(s);
	s->tr->shutdown(s);
	/* its timers stop now and are freed with it: the protocol may still hold them while
	 * the callback that closed the session unwinds */
	struct ptimer *t;
	LIST_FOREACH(t, &s->timers, link) {
		t->dead = true;
		evtimer_del(t->ev);
	}
	s->tr->stop(s);
	bufferevent_disable(s->bev, EV_READ | EV_WRITE);
	bufferevent_setcb(s->bev, NULL, NULL, NULL, NULL);
	TAILQ_REMOVE(&l->sessions, s, link);
	l->nsessions--;
	if (l->active == s)
		session_take_over(l);
	if (s->path)
		path_session_closed(s->path, reason, time_now_ms() - s->since_ms);
	/* freed after the callback that closed it returns */
	if (event_base_once(komd.base, -1, EV_TIMEOUT, session_free_cb, s, NULL) != 0)
		fatalx("event_base_once");
}

void
session_close_all(struct line *l, const char *reason)
{
	struct session *s;

	while ((s = TAILQ_FIRST(&l->sessions)) != NULL)
		session_close(s, reason);
}

/* The first bytes of a plain session: a TLS record (a ClientHello, or an alert) means the
 * partner speaks TLS where the line has none; say so, rather than let the protocol call it
 * a bad frame ("MBAP length 514"). The record header (type 21 or 22, version 3.1 to 3.4)
 * is no valid frame of komd's protocols: a Modbus protocol id is 0, an IEC 104 APDU starts
 * with 0x68, komtext is text. */
static bool
session_speaks_tls(struct session *s, struct evbuffer *in)
{
	uint8_t h[3];
	char why[160];

	if (evbuffer_copyout(in, h, sizeof(h)) < (ev_ssize_t)sizeof(h))
		return false; /* not yet known */
	s->peeked = true;
	if (!((h[0] == 0x16 || h[0] == 0x15) && h[1] == 0x03 && h[2] >= 0x01 && h[2] <= 0x04))
		return false;
	snprintf(why, sizeof(why), s->path ? "the partner answered with TLS (a TLS server on a plain line? add a tls "
	    "section)" : "TLS from a plain line (the client speaks TLS: add a tls section, or make the client plain)");
	s->line->cnt.tls_failures++;
	line_warn(s->line, "%s: %s", s->peer, why);
	snprintf(s->line->last_error, sizeof(s->line->last_error), "%s: %s", s->peer, why);
	session_close(s, why);
	return true;
}

/* The frame loop of every framed protocol (proto_ops.frame_len, on_frame): complete frames
 * one at a time out of the input, whatever the protocol; the closing rules in one place. */
static int
session_frames(struct session *s, struct evbuffer *in)
{
	const struct proto_ops *ops = s->line->ops;
	size_t max = s->max_frame && s->max_frame < ops->max_frame ? s->max_frame : ops->max_frame;
	int rc = 0;

	for (;;) {
		size_t len = evbuffer_get_length(in), want = len < max ? len : max;
		const uint8_t *buf;
		char err[200] = "";
		long flen;

		if (len == 0 || s->closing)
			break;
		buf = evbuffer_pullup(in, (ev_ssize_t)want);
		flen = ops->frame_len(buf, want, err, sizeof(err));
		if (flen == 0 && want < max)
			break; /* the rest of the frame is still on its way */
		if (flen <= 0 || (size_t)flen > want) {
			bool oversize = flen >= 0; /* 0 with max bytes there, or a length above them */

			if (!err[0] && flen == 0)
				snprintf(err, sizeof(err), "no frame within the %zu bytes a frame may have%s", max,
				    max < ops->max_frame ? " on this connection" : "");
			if (!err[0])
				snprintf(err, sizeof(err), "frame length out of range");
			if (ops->on_frame_error)
				ops->on_frame_error(s, oversize, err);
			if (!s->closing)
				session_protocol_error(s, "%s", err);
			rc = -1;
			break;
		}
		session_count_frame(s, false);
		if (ops->on_frame(s, buf, (size_t)flen) != 0) {
			rc = -1;
			break;
		}
		evbuffer_drain(in, (size_t)flen);
	}
	if (ops->on_frames_done && !s->closing)
		ops->on_frames_done(s);
	return rc;
}

static void
session_read_cb(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len = evbuffer_get_length(in);

	if (s->batch == SB_DUE)
		s->batch = SB_IDLE; /* what the wait let in is being read: marks again after it */
	else if (s->rcvlowat > 1)
		session_batch_arm(s); /* read with a mark set: it was reached; its wait starts again */
	/* count only what arrived since the last call: a partial frame stays in the buffer */
	s->line->cnt.bytes_in += len - s->in_left;
	if (!s->line->ops->on_frame) {
		evbuffer_drain(in, len);
		s->in_left = 0;
		return;
	}
	if (!s->peeked && !s->line->tls && session_speaks_tls(s, in))
		return;
	s->wrote = false;
	if (session_frames(s, in) < 0 && !s->closing)
		session_protocol_error(s, "frame rejected");
	s->in_left = s->closing ? 0 : evbuffer_get_length(in);
	if (s->path && !s->wrote && !s->closing) {
		/* a client that sent nothing back (the end of a poll, answers still due) acknowledges
		 * at once: a delayed ACK would hold the server's next answers for 40 ms (Nagle).
		 * A request sent carries the ACK itself: no system call then. */
		int one = 1;
		setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
	}
}

/* Plain TCP: one recv() into the bufferevent's input, then what the bufferevent would have
 * called: the read callback, or the event callback at EOF or an error. The bytes go
 * through one buffer of the (single) loop and are added to the input sized as they are:
 * reserving 16 KiB in the input made libevent allocate a 32 KiB block a read, and keep
 * it for every session holding part of a frame. */
static void
session_raw_read_cb(evutil_socket_t fd, short ev, void *arg)
{
	static uint8_t buf[SESSION_READ_MAX];
	struct session *s = arg;
	struct evbuffer *in = bufferevent_get_input(s->bev);
	ssize_t n;
	int rc = 0;

	(void)ev;
	n = recv(fd, buf, sizeof(buf), 0);
	if (n > 0) {
		/* the bufferevent keeps its input's end frozen against other writers: as its own
		 * read handler does, thaw it for the add */
		evbuffer_unfreeze(in, 0);
		rc = evbuffer_add(in, buf, (size_t)n);
		evbuffer_freeze(in, 0);
		if (rc != 0)
			session_close(s, "read failed: out of memory");
		else
			session_read_cb(s->bev, s);
	} else if (n == 0)
		session_event_cb(s->bev, BEV_EVENT_READING | BEV_EVENT_EOF, s);
	else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
		session_event_cb(s->bev, BEV_EVENT_READING | BEV_EVENT_ERROR, s);
}

/* TLS server side: the handshake is done; now the protocol may speak. */
static void
session_tls_ready(struct session *s)
{
	struct line *l = s->line;
	SSL *ssl = bufferevent_openssl_get_ssl(s->bev);
	char desc[512];

	if (!tls_check_auth(ssl, l->tls, desc, sizeof(desc))) {
		l->cnt.tls_failures++;
		snprintf(l->last_error, sizeof(l->last_error), "%s: TLS handshake failed: %s", s->peer, desc);
		session_close(s, desc);
		return;
	}
	s->handshaking = false;
	ptimer_stop(s->deadline);
	session_watch_idle(s);
	tls_log_established(ssl, l->tls, l->lc->name, s->peer);
	if (l->ops->on_connect)
		l->ops->on_connect(s);
}

static void
session_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct session *s = arg;
	char why[512];

	if (what & BEV_EVENT_CONNECTED) {
		if (s->handshaking)
			session_tls_ready(s);
		return;
	}
	if (s->handshaking) {
		s->line->cnt.tls_failures++;
		if (what & BEV_EVENT_TIMEOUT)
			snprintf(why, sizeof(why), "timeout");
		else
			tls_error_text(bev, why, sizeof(why));
		snprintf(s->line->last_error, sizeof(s->line->last_error), "%s: TLS handshake failed: %s", s->peer, why);
		session_close(s, why);
		return;
	}
	if (what & BEV_EVENT_EOF)
		snprintf(why, sizeof(why), "connection closed by peer");
	else if ((what & BEV_EVENT_ERROR) && s->line->tls) {
		char reason[400];
		/* a TLS alert after the handshake (TLS 1.3: the server refusing our certificate) */
		if (tls_error_text(bev, reason, sizeof(reason))) {
			s->line->cnt.tls_failures++;
			log_warnx("line %s: %s: TLS error: %s", s->line->lc->name, s->peer, reason);
			snprintf(s->line->last_error, sizeof(s->line->last_error), "%s: TLS error: %s", s->peer, reason);
			snprintf(why, sizeof(why), "TLS error: %s", reason);
		} else
			snprintf(why, sizeof(why), "%s", reason);
	}
	else if (what & BEV_EVENT_ERROR)
		snprintf(why, sizeof(why), "%s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	else if (what & BEV_EVENT_TIMEOUT)
		snprintf(why, sizeof(why), "peer not reading: nothing written for %d s", SESSION_WRITE_TIMEOUT_S);
	else
		return;
	session_close(s, why);
}

void
session_write(struct session *s, const void *data, size_t len)
{
	if (s->closing)
		return;
	struct evbuffer *out = bufferevent_get_output(s->bev);
	size_t queued = evbuffer_get_length(out);

	if (queued > SESSION_MAX_OUTPUT) {
		session_close(s, "peer not reading: over 4 MiB queued");
		return;
	}
	s->line->cnt.bytes_out += len;
	s->wrote = true;
	if (queued == 0 && !s->handshaking) {
		size_t n = s->tr->send_now(s, data, len);
		if (n == len)
			return;
		data = (const uint8_t *)data + n;
		len -= n;
	}
	if (bufferevent_write(s->bev, data, len) != 0)
		session_close(s, "write failed: out of memory");
}

void
session_count_frame(struct session *s, bool out)
{
	if (out) {
		s->line->cnt.frames_out++;
	} else {
		s->line->cnt.frames_in++;
		session_touch(s);
	}
}

bool session_tracing(const struct session *s) { return s->line->trace; }

void
session_trace(struct session *s, bool out, const void *frame, size_t len, const char *decoded)
{
	char hex[3 * 64 + 8];
	const uint8_t *b = frame;
	size_t n = len < 64 ? len : 64, o = 0;

	for (size_t i = 0; i < n; i++)
		o += (size_t)snprintf(hex + o, sizeof(hex) - o, "%s%02x", i ? " " : "", b[i]);
	if (n < len)
		snprintf(hex + o, sizeof(hex) - o, " ...");
	log_info("line %s: %s %s %s [%zu] %s | %s", s->line->lc->name, out ? "->" : "<-",
	    s->peer, out ? "tx" : "rx", len, hex, decoded ? decoded : "");
}

void
session_protocol_error(struct session *s, const char *fmt, ...)
{
	char msg[256], why[300];
	va_list ap;

	if (s->closing)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	s->line->cnt.proto_errors++;
	line_warn(s->line, "%s: protocol error: %s", s->peer, msg);
	snprintf(why, sizeof(why), "protocol error: %s", msg);
	snprintf(s->line->last_error, sizeof(s->line->last_error), "%s: %s", s->peer, why);
	session_close(s, why);
}

struct line *session_line(const struct session *s) { return s->line; }

bool
session_peer_in(const struct session *s, const struct addrlist *l)
{
	return s->peer_family && addrlist_match(l, s->peer_family, s->peer_addr);
}
/* SO_RCVLOWAT to bytes, if it is not that already */
static void
session_lowat(struct session *s, int bytes)
{
	int fd = bufferevent_getfd(s->bev);

	if (bytes == (s->rcvlowat ? s->rcvlowat : 1) || fd < 0)
		return;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &bytes, sizeof(bytes)) == 0)
		s->rcvlowat = bytes;
	else
		log_debug("line %s: %s: SO_RCVLOWAT %d: %s", s->line->lc->name, s->peer, bytes, strerror(errno));
}

/* session_read_batch's wait: a timerfd, since the loop's timers have the kernel's tick
 * (4 ms; libevent's coarse clock) and the wait that pays is well under a millisecond */
static void
session_batch_arm(struct session *s)
{
	struct itimerspec it = { .it_value = { s->batch_wait_us / 1000000, (long)(s->batch_wait_us % 1000000) * 1000 } };

	if (timerfd_settime(s->batch_fd, 0, &it, NULL) == 0)
		s->batch = SB_WAITING;
}

static void
session_batch_disarm(struct session *s)
{
	static const struct itimerspec zero;

	if (s->batch == SB_WAITING && timerfd_settime(s->batch_fd, 0, &zero, NULL) == 0)
		s->batch = SB_IDLE;
}

/* The wait is over: every byte again, so what came is read in this loop pass, and no new
 * mark before that read (a producer in the same pass must not hide the socket again). A
 * peer whose replies come one at a time (e.g. held back by its Nagle algorithm until we
 * acknowledge what it sent: mosquitto's default) ends every wait this way; that is the
 * point of a short one, the replies gathered meanwhile are read together. */
static void
session_batch_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	uint64_t expirations;

	(void)what;
	if (read(fd, &expirations, sizeof(expirations)) != (ssize_t)sizeof(expirations))
		return; /* set again or stopped since it ran out: nothing is due */
	if (s->batch != SB_WAITING || s->closing)
		return;
	s->batch = SB_DUE;
	session_lowat(s, 1);
}

/* The timerfd and its event, on first use; -1 when there is none (no descriptor left
 * outside KOMD_FD_RESERVE, or no memory): the session then reads every byte. */
static int
session_batch_init(struct session *s)
{
	int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);

	if (fd < 0 || komd_fd_reserved(fd)) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if ((s->batch_ev = event_new(komd.base, fd, EV_READ | EV_PERSIST, session_batch_cb, s)) == NULL ||
	    event_add(s->batch_ev, NULL) != 0) {
		if (s->batch_ev)
			event_free(s->batch_ev);
		s->batch_ev = NULL;
		close(fd);
		return -1;
	}
	s->batch_fd = fd;
	return 0;
}

void
session_read_batch(struct session *s, size_t bytes, int wait_us)
{
	if (s->closing)
		return;
	/* TLS: OpenSSL's bufferevent reads a record or two a readiness and leaves the rest in
	 * the kernel, where a mark would hide it (and the mark would count ciphertext) */
	if (bytes <= 1 || wait_us <= 0 || s->line->tls) {
		if (s->rcvlowat > 1) { /* nothing to undo otherwise: the common case, every pump */
			session_batch_disarm(s);
			session_lowat(s, 1);
		}
		return;
	}
	if (s->batch == SB_DUE || s->batch == SB_NONE)
		return;
	if (!s->batch_ev && session_batch_init(s) != 0) {
		s->batch = SB_NONE; /* not tried again on every call */
		log_debug("line %s: %s: no timerfd for reading in batches: every byte", s->line->lc->name, s->peer);
		return;
	}
	/* the wait runs from the mark's setting or the last read, however often it is asked
	 * for again (a producer asking on every message must not put it off) */
	s->batch_wait_us = wait_us > 1000000 ? 1000000 : wait_us;
	if (s->batch != SB_WAITING)
		session_batch_arm(s);
	/* no more than one read takes (session_raw_read_cb's buffer): bytes left after a read
	 * must not wait below the mark */
	if (s->batch == SB_WAITING)
		session_lowat(s, bytes > SESSION_READ_MAX ? SESSION_READ_MAX : (int)bytes);
}

bool session_closing(const struct session *s) { return s->closing; }
void session_set_max_frame(struct session *s, size_t max) { s->max_frame = max; }

size_t
session_output_pending(const struct session *s)
{
	return s->bev ? evbuffer_get_length(bufferevent_get_output(s->bev)) : 0;
}
void *session_priv(const struct session *s) { return s->priv; }
const char *session_peer(const struct session *s) { return s->peer; }
enum path_kind session_path(const struct session *s) { return s->kind; }
