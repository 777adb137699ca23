/* komtext.c: the komtext-client and komtext-server protocols (frames in komtext_codec.c).
 * Server: sends every served tag on connect and on each change, answers SET by routing the
 * write to the tag's acquirer and PING with PONG. Client: applies VAL frames to the tags
 * of its stations (by address), polls each station with PING (period/delay), and sends
 * writes as SET, completing them on ACK/NAK. A PING unanswered within the station's
 * response_timeout puts the station into communication error. The line key `redundancy`
 * selects the policy of tcp-redundant lines, so that tests can exercise all three; with
 * dual, the values of both sessions are applied (two feeds of the same tags) while polls
 * and writes go to the active one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "komtext_codec.h"

struct kt_line_conf {
	int redundancy; /* enum redund_policy */
};

static const char *const kt_redundancy_choices[] = { "alternate", "parallel", "dual", NULL };

static const struct conf_key kt_line_keys[] = {
	{ .name = "redundancy", .type = CK_CHOICE, .def = "alternate", .choices = kt_redundancy_choices,
	  .off = offsetof(struct kt_line_conf, redundancy),
	  .help = "policy of a tcp-redundant komtext line: alternate, parallel or dual" },
	{ .name = NULL, .type = CK_END },
};

/* The server's own counters (proto_ops.counters), by index. */
enum { KT_CNT_PINGS };
static const struct proto_counter kt_server_counters[] = {
	[KT_CNT_PINGS] = { .name = "komtext_pings_total", .help = "PING frames answered with PONG" },
	{ .name = NULL },
};

/* One write in flight: SET sent (client) or routed to the tag's acquirer (server). */
struct kt_pending {
	struct kt_pending *next;
	uint32_t id;
	struct write_req *req;     /* client: the request to answer */
	struct session *s;         /* server: where to answer */
	struct kt_session *ks;
};

struct kt_session {
	struct kt_pending *pending;
	uint32_t next_id;
};

/* Client station: the poll in flight. */
struct kt_station {
	struct ptimer *resp;       /* response_timeout of the outstanding PING */
	struct session *waiting_on; /* where the PING went; NULL: none outstanding */
};

/* The longest value text a frame carries (VAL adds address, quality and time). */
#define KT_MAX_VALUE 160

static enum redund_policy
kt_line_redundancy(const struct line_conf *lc)
{
	const struct kt_line_conf *c = lc->pconf;
	return c ? (enum redund_policy)c->redundancy : REDUND_ALTERNATE;
}

static int
kt_check_tag(const struct station_conf *sc, const struct tag_conf *tc, char *err, size_t errlen)
{
	(void)sc;
	if (!tc->address)
		return 0;
	if (tc->address[0] == '\0' || strlen(tc->address) > 64 || strpbrk(tc->address, " \t\r\n")) {
		snprintf(err, errlen, "komtext address must be 1..64 characters without spaces");
		return -1;
	}
	return 0;
}

static void
kt_send(struct session *s, const struct komtext_msg *m)
{
	char buf[KOMTEXT_MAX_FRAME + 1];
	int n = komtext_format(m, buf, sizeof(buf));

	if (n < 0) {
		log_debug("line %s: %s: frame too long, not sent", line_name(session_line(s)), session_peer(s));
		return;
	}
	session_write(s, buf, (size_t)n);
	session_count_frame(s, true);
	if (session_tracing(s)) {
		/* the text without its newline; the hex shows the frame as sent */
		char text[KOMTEXT_MAX_FRAME + 1];
		memcpy(text, buf, (size_t)n - 1);
		text[n - 1] = '\0';
		session_trace(s, true, buf, (size_t)n, text);
	}
}

/* Value text safe for one frame: control characters become '?'. */
static void
kt_value_text(const struct value *v, char *buf, size_t len)
{
	value_format(v, buf, len);
	for (char *p = buf; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
}

/* ---- server ---- */

static void
kt_send_val(struct session *s, struct stag *t)
{
	struct komtext_msg m = { .kind = KT_VAL };
	const struct tag_conf *tc = stag_conf(t);

	snprintf(m.addr, sizeof(m.addr), "%s", tc->address ? tc->address : stag_name(t));
	m.quality = stag_quality(t);
	m.src_ms = stag_time_source(t);
	kt_value_text(stag_value(t), m.text, sizeof(m.text));
	if (strlen(m.text) > KT_MAX_VALUE) {
		/* does not fit a frame: send what fits, flagged invalid and overflowed */
		m.text[KT_MAX_VALUE] = '\0';
		m.quality |= Q_INVALID | Q_OVERFLOW;
		log_warnx("line %s: %s: tag %s: value longer than %d characters, sent truncated and invalid",
		    line_name(session_line(s)), session_peer(s), stag_name(t), KT_MAX_VALUE);
	}
	kt_send(s, &m);
}

static void
kt_server_connect(struct session *s)
{
	struct line *l = session_line(s);

	for (int i = 0; i < line_nstations(l); i++) {
		struct station *st = line_station(l, i);
		for (int j = 0; j < station_ntags(st); j++)
			kt_send_val(s, station_stag(st, j));
	}
}

static void
kt_send_val_cb(struct session *s, void *arg)
{
	kt_send_val(s, arg);
}

static void
kt_server_tag_change(struct stag *t)
{
	line_foreach_session(station_line(stag_station(t)), kt_send_val_cb, t);
}

static struct stag *
kt_find(struct line *l, const char *addr)
{
	for (int i = 0; i < line_nstations(l); i++) {
		struct station *st = line_station(l, i);
		for (int j = 0; j < station_ntags(st); j++) {
			struct stag *t = station_stag(st, j);
			const struct tag_conf *tc = stag_conf(t);
			if (strcmp(tc->address ? tc->address : stag_name(t), addr) == 0)
				return t;
		}
	}
	return NULL;
}

static void
kt_pending_unlink(struct kt_session *ks, struct kt_pending *p)
{
	for (struct kt_pending **pp = &ks->pending; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			return;
		}
}

static void
kt_server_write_cb(void *arg, int status, const char *msg)
{
	struct kt_pending *p = arg;
	struct komtext_msg m = { .kind = status == 0 ? KT_ACK : KT_NAK, .id = p->id };

	snprintf(m.text, sizeof(m.text), "%s", msg ? msg : "failed");
	kt_pending_unlink(p->ks, p);
	kt_send(p->s, &m);
	free(p);
}

static void
kt_nak(struct session *s, uint32_t id, const char *why)
{
	struct komtext_msg m = { .kind = KT_NAK, .id = id };

	snprintf(m.text, sizeof(m.text), "%s", why);
	kt_send(s, &m);
}

static int
kt_server_frame(struct session *s, const struct komtext_msg *m)
{
	struct kt_session *ks = session_priv(s);
	struct line *l = session_line(s);
	struct komtext_msg r = { .kind = KT_PONG, .id = m->id };
	struct stag *t;
	struct value v;
	char err[128];

	switch (m->kind) {
	case KT_PING:
		kt_send(s, &r);
		line_counter_add(l, KT_CNT_PINGS, 1);
		return 0;
	case KT_SET:
		if ((t = kt_find(l, m->addr)) == NULL) {
			kt_nak(s, m->id, "unknown address");
			return 0;
		}
		if (strlen(m->text) > KT_MAX_VALUE) {
			kt_nak(s, m->id, "value too long for komtext");
			return 0;
		}
		if (value_parse(stag_type(t), m->text, &v, err, sizeof(err)) != 0) {
			kt_nak(s, m->id, err);
			return 0;
		}
		struct kt_pending *p = calloc(1, sizeof(*p));
		if (!p) {
			value_clear(&v);
			kt_nak(s, m->id, "out of memory");
			return 0;
		}
		p->id = m->id;
		p->s = s;
		p->ks = ks;
		p->next = ks->pending;
		ks->pending = p;
		/* answered at once (memory tag, say): the callback freed p already */
		struct write_req *req = stag_write(t, &v, kt_server_write_cb, p);
		if (req)
			p->req = req;
		value_clear(&v);
		return 0;
	default:
		session_protocol_error(s, "unexpected frame from a client");
		return -1;
	}
}

/* ---- client ---- */

static void
kt_client_connect(struct session *s)
{
	struct line *l = session_line(s);

	/* parallel and dual: the first session up carries data until it fails */
	if (!line_active_session(l))
		line_set_active_session(l, s);
}

static int
kt_client_frame(struct session *s, const struct komtext_msg *m)
{
	struct kt_session *ks = session_priv(s);
	struct line *l = session_line(s);
	const struct kt_line_conf *c = line_conf(l)->pconf;
	struct kt_pending *p;

	switch (m->kind) {
	case KT_VAL:
		/* on a parallel line only the active session carries data */
		if (s != line_active_session(l) && c->redundancy != REDUND_DUAL)
			return 0;
		for (int i = 0; i < line_nstations(l); i++) {
			struct station *st = line_station(l, i);
			for (int j = 0; j < station_ntags(st); j++) {
				struct stag *t = station_stag(st, j);
				const struct tag_conf *tc = stag_conf(t);
				struct value v;
				char err[128];

				if (!tc->address || strcmp(tc->address, m->addr) != 0)
					continue;
				if (value_parse(stag_type(t), m->text, &v, err, sizeof(err)) != 0) {
					log_warnx("line %s: %s: station %s: tag %s: bad value '%s': %s", line_name(l),
					    session_peer(s), station_name(st), stag_name(t), m->text, err);
					station_count_error(st);
					continue;
				}
				stag_update(t, &v, m->quality, m->src_ms);
				value_clear(&v);
			}
		}
		return 0;
	case KT_PONG:
		if (m->id < (uint32_t)line_nstations(l)) {
			struct station *st = line_station(l, (int)m->id);
			struct kt_station *ks_st = station_priv(st);
			if (ks_st->waiting_on != s)
				return 0; /* late, or for a poll on another session: already handled */
			ks_st->waiting_on = NULL;
			ptimer_stop(ks_st->resp);
			station_set_comm(st, true, NULL);
			station_poll_done(st);
		}
		return 0;
	case KT_ACK:
	case KT_NAK:
		for (p = ks->pending; p; p = p->next)
			if (p->id == m->id)
				break;
		if (!p) {
			log_warnx("line %s: %s: answer to unknown write %u dropped", line_name(l), session_peer(s), m->id);
			return 0;
		}
		kt_pending_unlink(ks, p);
		write_done(p->req, m->kind == KT_ACK ? 0 : -1, m->kind == KT_ACK ? "ok" : m->text);
		free(p);
		return 0;
	default:
		session_protocol_error(s, "unexpected frame from a server");
		return -1;
	}
}

static void
kt_resp_timeout(void *arg)
{
	struct station *st = arg;
	struct kt_station *ks_st = station_priv(st);
	char why[80];

	ks_st->waiting_on = NULL;
	snprintf(why, sizeof(why), "no answer to a poll within %.1f s", station_conf(st)->response_timeout_ms / 1000.0);
	station_set_comm(st, false, why);
	station_poll_done(st); /* delay mode: the next poll */
}

static int
kt_station_init(struct station *st)
{
	struct kt_station *ks_st = station_priv(st);

	if ((ks_st->resp = station_timer(st, kt_resp_timeout, st)) == NULL)
		return -1;
	return 0;
}

static void
kt_client_poll(struct station *st)
{
	struct line *l = station_line(st);
	struct session *s = line_active_session(l);
	struct kt_station *ks_st = station_priv(st);
	struct komtext_msg m = { .kind = KT_PING };

	if (!s || ks_st->waiting_on)
		return; /* a poll is still outstanding (period mode): its timeout decides */
	for (int i = 0; i < line_nstations(l); i++)
		if (line_station(l, i) == st)
			m.id = (uint32_t)i;
	ks_st->waiting_on = s;
	ptimer_start(ks_st->resp, station_conf(st)->response_timeout_ms);
	kt_send(s, &m);
}

static void
kt_client_write(struct stag *t, struct write_req *req)
{
	struct line *l = station_line(stag_station(t));
	struct session *s = line_active_session(l);
	struct kt_session *ks;
	struct kt_pending *p;
	struct komtext_msg m = { .kind = KT_SET };

	if (!s) {
		write_done(req, -1, "not connected");
		return;
	}
	if ((p = calloc(1, sizeof(*p))) == NULL) {
		write_done(req, -1, "out of memory");
		return;
	}
	ks = session_priv(s);
	/* writes the core has timed out already: give up on them now, they never return */
	for (struct kt_pending **pp = &ks->pending; *pp;) {
		struct kt_pending *old = *pp;
		if (write_req_answered(old->req)) {
			*pp = old->next;
			write_done(old->req, -1, "no answer");
			free(old);
		} else
			pp = &old->next;
	}
	p->id = m.id = ks->next_id++;
	p->req = req;
	p->ks = ks;
	p->next = ks->pending;
	ks->pending = p;
	snprintf(m.addr, sizeof(m.addr), "%s", stag_conf(t)->address);
	kt_value_text(write_req_value(req), m.text, sizeof(m.text));
	kt_send(s, &m);
}

/* ---- common ---- */

static long
kt_frame_len(const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	size_t flen;
	int r = komtext_frame(buf, len, &flen);

	if (r < 0)
		snprintf(err, errlen, "not a komtext frame (control byte or over %d bytes)", KOMTEXT_MAX_FRAME);
	return r > 0 ? (long)flen : r;
}

/* One frame (with its newline), as the core's frame loop hands it over. */
static int
kt_frame(struct session *s, const uint8_t *buf, size_t flen, bool server)
{
	struct komtext_msg m;
	char err[128];

	if (session_tracing(s)) {
		char text[KOMTEXT_MAX_FRAME + 1];
		memcpy(text, buf, flen - 1);
		text[flen - 1] = '\0';
		session_trace(s, false, buf, flen, text);
	}
	if (komtext_parse((const char *)buf, flen - 1, &m, err, sizeof(err)) != 0) {
		session_protocol_error(s, "%s", err);
		return -1;
	}
	return server ? kt_server_frame(s, &m) : kt_client_frame(s, &m);
}

static int kt_server_on_frame(struct session *s, const uint8_t *f, size_t n) { return kt_frame(s, f, n, true); }
static int kt_client_on_frame(struct session *s, const uint8_t *f, size_t n) { return kt_frame(s, f, n, false); }

/* Writes in flight on a closing session: a client fails them, a server detaches them. */
static void
kt_close_pending(struct session *s)
{
	struct kt_session *ks = session_priv(s);
	struct kt_pending *p;

	while ((p = ks->pending) != NULL) {
		ks->pending = p->next;
		if (p->s)
			write_req_detach(p->req); /* server: nobody left to answer */
		else
			write_done(p->req, -1, "connection lost");
		free(p);
	}
}

static void
kt_server_close(struct session *s)
{
	kt_close_pending(s);
}

static void
kt_client_close(struct session *s)
{
	struct line *l = session_line(s);

	kt_close_pending(s);
	/* polls outstanding on this session will never be answered: poll again */
	for (int i = 0; i < line_nstations(l); i++) {
		struct station *st = line_station(l, i);
		struct kt_station *ks_st = station_priv(st);
		if (ks_st->waiting_on == s) {
			ks_st->waiting_on = NULL;
			ptimer_stop(ks_st->resp);
			station_poll_done(st);
		}
	}
	/* parallel or dual: the other session takes over at once (the core) */
}

const struct proto_ops komtext_client_ops = {
	.name = "komtext-client",
	.transport = PROTO_CONNECT,
	.redundancy = REDUND_ALTERNATE,
	.line_redundancy = kt_line_redundancy,
	.line_keys = kt_line_keys,
	.line_conf_size = sizeof(struct kt_line_conf),
	.check_tag = kt_check_tag,
	.session_size = sizeof(struct kt_session),
	.station_size = sizeof(struct kt_station),
	.station_init = kt_station_init,
	.on_connect = kt_client_connect,
	.max_frame = KOMTEXT_MAX_FRAME,
	.frame_len = kt_frame_len,
	.on_frame = kt_client_on_frame,
	.on_close = kt_client_close,
	.on_poll = kt_client_poll,
	.on_tag_write = kt_client_write,
};

const struct proto_ops komtext_server_ops = {
	.name = "komtext-server",
	.transport = PROTO_LISTEN,
	.redundancy = REDUND_ALTERNATE,
	.line_keys = kt_line_keys,
	.line_conf_size = sizeof(struct kt_line_conf),
	.check_tag = kt_check_tag,
	.session_size = sizeof(struct kt_session),
	.on_connect = kt_server_connect,
	.max_frame = KOMTEXT_MAX_FRAME,
	.frame_len = kt_frame_len,
	.on_frame = kt_server_on_frame,
	.on_close = kt_server_close,
	.on_tag_change = kt_server_tag_change,
	.counters = kt_server_counters,
};
