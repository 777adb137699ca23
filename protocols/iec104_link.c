/* iec104_link.c: the APCI of IEC 60870-5-104 (clause 5) for both roles, over a session of
 * the core: I-frames numbered modulo 32768 and checked on both sides (a wrong N(S) or N(R)
 * closes the connection), at most k unacknowledged I-frames sent (more wait), an
 * acknowledgement at the latest after w received I-frames or t2, t1 for an acknowledgement
 * or a confirmation (each frame's own, from its sending), t3 idle before TESTFR; STARTDT,
 * STOPDT, TESTFR. ASDUs go to iec104_client.c or iec104_server.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "iec104.h"

/* ---- message queues ---- */

void
iec_mq_push(struct iec_mq *q, struct iec_msg *m, bool front)
{
	if (!q->tail)
		q->tail = &q->head;
	if (front) {
		m->next = q->head;
		q->head = m;
		if (q->tail == &q->head)
			q->tail = &m->next;
	} else {
		m->next = NULL;
		*q->tail = m;
		q->tail = &m->next;
	}
	q->n++;
}

struct iec_msg *
iec_mq_pop(struct iec_mq *q)
{
	struct iec_msg *m = q->head;

	if (!m)
		return NULL;
	q->head = m->next;
	if (!q->head)
		q->tail = &q->head;
	q->n--;
	m->next = NULL;
	return m;
}

void
iec_mq_clear(struct iec_mq *q)
{
	struct iec_msg *m;

	while ((m = iec_mq_pop(q)) != NULL) {
		if (m->cmd)
			m->cmd->msg = NULL;
		if (m->wr)
			write_done(m->wr, -1, "connection lost");
		free(m);
	}
}

struct iec_msg *
iec_msg_new(const uint8_t *asdu, size_t len)
{
	struct iec_msg *m = malloc(sizeof(*m) + len);

	if (!m)
		return NULL;
	memset(m, 0, sizeof(*m));
	m->len = len;
	memcpy(m->asdu, asdu, len);
	return m;
}


/* ---- APCI (104 clause 5) ---- */

static void
iec_trace(struct session *s, bool out, const uint8_t *apdu, size_t len)
{
	char text[300];

	if (!session_tracing(s))
		return;
	iec_describe(apdu, len, &lpriv(session_line(s))->prm, text, sizeof(text));
	session_trace(s, out, apdu, len, text);
}

static void
iec_send_raw(struct session *s, const uint8_t *apdu, size_t len)
{
	struct iec_sess *is = session_priv(s);

	session_write(s, apdu, len);
	session_count_frame(s, true);
	iec_trace(s, true, apdu, len);
	ptimer_start(is->t3, lconf(session_line(s))->t3_ms);
}

int64_t
iec_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The U acts komd sends, each confirmed on its own. */
enum { IEC_UA_STARTDT, IEC_UA_STOPDT, IEC_UA_TESTFR };

static int
iec_u_act_index(uint8_t u)
{
	switch (u) {
	case IEC_U_STARTDT_ACT: case IEC_U_STARTDT_CON: return IEC_UA_STARTDT;
	case IEC_U_STOPDT_ACT: case IEC_U_STOPDT_CON: return IEC_UA_STOPDT;
	case IEC_U_TESTFR_ACT: case IEC_U_TESTFR_CON: return IEC_UA_TESTFR;
	default: return -1;
	}
}

static const char *const iec_ua_names[] = { "STARTDT", "STOPDT", "TESTFR" };

/* The earliest confirmation due: the oldest unacknowledged I-frame's, or a U act's, each t1
 * after it was sent (5.2 of IEC 60870-5-104: a frame's own, not from the last progress).
 * INT64_MAX when nothing waits; *what names it. */
static int64_t
iec_t1_due(struct iec_sess *is, int64_t t1, const char **what)
{
	int64_t due = INT64_MAX;

	*what = "I-frames";
	if (is->sent.head)
		due = is->sent.head->sent_ms + t1;
	if (is->orphans) {
		if (iec_seq_diff(is->orphan_end, is->ack) > 0 && iec_seq_diff(is->orphan_end, is->ack) <= iec_seq_diff(is->vs, is->ack)) {
			if (is->orphan_ms + t1 < due)
				due = is->orphan_ms + t1;
		} else
			is->orphans = false; /* acknowledged */
	}
	for (int i = 0; i < 3; i++)
		if ((is->u_pending >> i & 1) && is->u_sent_ms[i] + t1 < due) {
			due = is->u_sent_ms[i] + t1;
			*what = iec_ua_names[i];
		}
	return due;
}

static void
iec_t1_arm(struct session *s)
{
	struct iec_sess *is = session_priv(s);
	const char *what;
	int64_t due = iec_t1_due(is, lconf(session_line(s))->t1_ms, &what);

	if (due == INT64_MAX) {
		ptimer_stop(is->t1);
		return;
	}
	due -= iec_mono_ms();
	ptimer_start(is->t1, due > 0 ? (int)due : 0);
}

void
iec_send_u(struct session *s, uint8_t u)
{
	struct iec_sess *is = session_priv(s);
	uint8_t apdu[IEC_APCI_LEN];

	iec_send_raw(s, apdu, iec_encode_u(apdu, u));
	if (u == IEC_U_STARTDT_ACT || u == IEC_U_STOPDT_ACT || u == IEC_U_TESTFR_ACT) {
		int i = iec_u_act_index(u);
		is->u_pending |= (uint8_t)(1u << i);
		is->u_sent_ms[i] = iec_mono_ms();
		if (!ptimer_pending(is->t1))
			ptimer_start(is->t1, lconf(session_line(s))->t1_ms);
	}
}

void
iec_send_s(struct session *s)
{
	struct iec_sess *is = session_priv(s);
	uint8_t apdu[IEC_APCI_LEN];

	iec_send_raw(s, apdu, iec_encode_s(apdu, is->vr));
	is->unacked_in = 0;
	ptimer_stop(is->t2);
}

void
iec_flush(struct session *s)
{
	struct iec_sess *is = session_priv(s);
	const struct iec_line_conf *c = lconf(session_line(s));
	struct iec_msg *m;

	/* the frames the window allows go out in one write, not one send() each */
	uint8_t batch[64 * IEC_MAX_APDU];
	size_t used = 0;
	int64_t now = 0;

	if (is->hold || is->state != IEC_STARTED)
		return; /* a stopped connection sends no I-frame (104 5.3) */
	while (is->out.head && iec_seq_diff(is->vs, is->ack) < c->k) {
		uint8_t *apdu = batch + used;
		size_t n;

		m = iec_mq_pop(&is->out);
		if ((m->cmd && write_req_answered(m->cmd->wr)) || (m->wr && write_req_answered(m->wr))) {
			/* a command whose requester had its answer (the core's write timeout) while it
			 * waited for the window: a write reported failed is never sent later */
			if (m->cmd)
				iec_client_cmd_unsent(m->cmd);
			else
				write_done(m->wr, -1, "not sent: answered before the k window let it go");
			free(m);
			continue;
		}
		if (m->cmd) {
			m->cmd->msg = NULL; /* sent: its confirmation completes it */
			m->cmd = NULL;
		}
		m->ns = is->vs;
		m->sent_ms = now ? now : (now = iec_mono_ms());
		n = iec_encode_i(apdu, is->vs, is->vr, m->asdu, m->len);
		is->vs = iec_seq_add(is->vs, 1);
		is->unacked_in = 0; /* the I-frame carries our acknowledgement */
		ptimer_stop(is->t2);
		iec_mq_push(&is->sent, m, false);
		session_count_frame(s, true);
		iec_trace(s, true, apdu, n);
		used += n;
		if (used + IEC_MAX_APDU > sizeof(batch)) {
			session_write(s, batch, used);
			used = 0;
		}
		if (!ptimer_pending(is->t1))
			ptimer_start(is->t1, c->t1_ms);
	}
	if (used) {
		session_write(s, batch, used);
		ptimer_start(is->t3, c->t3_ms);
	}
}

/* Frames a session may hold waiting for the k window (a general interrogation of 100,000
 * objects is about 3,400). */
#define IEC_MAX_OUT 200000

static int
iec_queue(struct session *s, const uint8_t *asdu, size_t n, struct write_req *wr, bool event, struct iec_cmd *cmd)
{
	struct iec_sess *is = session_priv(s);
	struct iec_msg *m;

	if (n == 0 || (m = iec_msg_new(asdu, n)) == NULL) {
		if (wr)
			write_done(wr, -1, n == 0 ? "the command does not encode" : "out of memory");
		return -1;
	}
	if (is->out.n >= IEC_MAX_OUT) {
		/* the peer does not acknowledge (or keeps asking): close rather than grow */
		free(m);
		if (wr)
			write_done(wr, -1, "connection lost");
		session_protocol_error(s, "over %d frames waiting for the k window: the peer does not acknowledge",
		    IEC_MAX_OUT);
		return -1;
	}
	m->wr = wr;
	m->event = event;
	m->cmd = cmd;
	if (cmd)
		cmd->msg = m;
	iec_mq_push(&is->out, m, false);
	iec_flush(s);
	return 0;
}

int
iec_send_bytes(struct session *s, const uint8_t *asdu, size_t n, struct write_req *wr, bool event)
{
	return iec_queue(s, asdu, n, wr, event, NULL);
}

struct iec_params
iec_prm(struct line *l, uint16_t ca)
{
	struct iec_params p = lpriv(l)->prm;
	struct station *st = iec_station_by_ca(l, ca);

	if (st && station_conf(st)->pconf)
		p.local_time = ((const struct iec_station_conf *)station_conf(st)->pconf)->time_zone == 1;
	return p;
}

int
iec_send_asdu(struct session *s, const struct iec_asdu *a, struct write_req *wr)
{
	uint8_t buf[IEC_MAX_ASDU];
	struct iec_params p = iec_prm(session_line(s), a->ca);

	return iec_send_bytes(s, buf, iec_asdu_encode(a, &p, buf, sizeof(buf)), wr, false);
}

int
iec_send_command(struct session *s, const struct iec_asdu *a, struct write_req *wr, struct iec_cmd *cmd)
{
	uint8_t buf[IEC_MAX_ASDU];
	struct iec_params p = iec_prm(session_line(s), a->ca);

	return iec_queue(s, buf, iec_asdu_encode(a, &p, buf, sizeof(buf)), wr, false, cmd);
}

/* N(R) from the peer: everything before it is acknowledged. */
static int
iec_ack(struct session *s, uint16_t nr)
{
	struct iec_sess *is = session_priv(s);
	struct iec_msg *m;

	if (iec_seq_diff(nr, is->ack) > iec_seq_diff(is->vs, is->ack)) {
		session_protocol_error(s, "wrong N(R) %u: acknowledges frames not sent (next N(S) %u, oldest unacknowledged %u)",
		    nr, is->vs, is->ack);
		return -1;
	}
	while (is->sent.head && iec_seq_diff(nr, is->sent.head->ns) > 0 &&
	    iec_seq_diff(nr, is->sent.head->ns) <= iec_seq_diff(is->vs, is->ack)) {
		m = iec_mq_pop(&is->sent);
		if (m->wr)
			write_done(m->wr, 0, "acknowledged"); /* cmdc 0 */
		free(m);
	}
	/* when N(R) moves, t1 runs to the next frame's due time (a repeated old N(R) changes
	 * nothing; nor does a slow peer acknowledging one frame a t1 keep old frames alive) */
	if (nr != is->ack) {
		is->ack = nr;
		iec_t1_arm(s);
	}
	if (is->state == IEC_STOPPING && is->ack == is->vs) {
		/* pending stopped: the last I-frame sent is acknowledged (104 5.3) */
		is->state = IEC_STOPPED;
		iec_send_u(s, IEC_U_STOPDT_CON);
		log_info("line %s: %s: data transfer stopped", line_name(session_line(s)), session_peer(s));
	}
	iec_flush(s);
	return 0;
}

/* 104 5.3: an I-frame outside the started state, or an S-frame on a connection stopped (or
 * never started), is closed actively: the peer's state machine is not ours. -1 when it is. */
static int
iec_check_state(struct session *s, bool iframe)
{
	struct iec_sess *is = session_priv(s);
	const char *what = iframe ? "I-frame" : "S-frame";

	switch (is->state) {
	case IEC_STARTED:
		return 0;
	case IEC_STOPPING:
		if (!iframe)
			return 0;
		session_protocol_error(s, "I-frame while data transfer is stopping (STOPDT act received)");
		return -1;
	case IEC_DISPLACED:
		if (!iframe)
			return 0;
		session_protocol_error(s, "I-frame while data transfer is stopped (%s of its redundancy group took the data)",
		    is->displaced_by);
		return -1;
	case IEC_STARTING:
		session_protocol_error(s, "%s while data transfer is stopped (before STARTDT con)", what);
		return -1;
	case IEC_STOPPED:
		break;
	}
	session_protocol_error(s, "%s while data transfer is stopped", what);
	return -1;
}

static void
iec_t1_cb(void *arg)
{
	struct session *s = arg;
	struct iec_sess *is = session_priv(s);
	const char *what;

	iec_t1_due(is, lconf(session_line(s))->t1_ms, &what);
	line_counter_add(session_line(s), IEC_CNT_T1_EXPIRIES, 1);
	session_protocol_error(s, "t1 expired: %s not confirmed within %d s", what, lconf(session_line(s))->t1_ms / 1000);
}

static void
iec_t2_cb(void *arg)
{
	struct session *s = arg;
	struct iec_sess *is = session_priv(s);

	if (is->unacked_in > 0)
		iec_send_s(s);
}

static void
iec_t3_cb(void *arg)
{
	struct session *s = arg;
	struct iec_sess *is = session_priv(s);

	/* one TESTFR at a time: t1 closes the connection if the one sent is not confirmed */
	if (is->u_pending >> IEC_UA_TESTFR & 1)
		ptimer_start(is->t3, lconf(session_line(s))->t3_ms);
	else {
		line_counter_add(session_line(s), IEC_CNT_TESTFR_SENT, 1);
		iec_send_u(s, IEC_U_TESTFR_ACT);
	}
}

void
iec_session_init(struct session *s)
{
	struct iec_sess *is = session_priv(s);

	is->out.tail = &is->out.head;
	is->sent.tail = &is->sent.head;
	is->t1 = session_timer(s, iec_t1_cb, s);
	is->t2 = session_timer(s, iec_t2_cb, s);
	is->t3 = session_timer(s, iec_t3_cb, s);
	ptimer_start(is->t3, lconf(session_line(s))->t3_ms);
}

/* One APDU from the peer. */
static int
iec_frame(struct session *s, const struct iec_apci *ap, bool server)
{
	struct iec_sess *is = session_priv(s);
	const struct iec_line_conf *c = lconf(session_line(s));
	struct iec_line *il = lpriv(session_line(s));

	switch (ap->format) {
	case IEC_S:
		if (iec_check_state(s, false) != 0)
			return -1;
		return iec_ack(s, ap->nr);
	case IEC_U:
		switch (ap->u) {
		case IEC_U_TESTFR_ACT:
			iec_send_u(s, IEC_U_TESTFR_CON);
			return 0;
		case IEC_U_TESTFR_CON:
		case IEC_U_STARTDT_CON:
		case IEC_U_STOPDT_CON:
			if (!(is->u_pending >> iec_u_act_index(ap->u) & 1)) {
				session_protocol_error(s, "unexpected %s con: no %s act was sent", iec_ua_names[iec_u_act_index(ap->u)],
				    iec_ua_names[iec_u_act_index(ap->u)]);
				return -1;
			}
			is->u_pending &= (uint8_t)~(1u << iec_u_act_index(ap->u));
			iec_t1_arm(s);
			if (ap->u == IEC_U_STARTDT_CON && !server) {
				is->state = IEC_STARTED;
				iec_client_started(s);
			}
			return 0;
		case IEC_U_STARTDT_ACT:
			if (!server) {
				session_protocol_error(s, "STARTDT act from a controlled station");
				return -1;
			}
			iec_server_startdt(s);
			return 0;
		case IEC_U_STOPDT_ACT:
			if (!server) {
				session_protocol_error(s, "STOPDT act from a controlled station");
				return -1;
			}
			iec_server_stopdt(s);
			return 0;
		default:
			session_protocol_error(s, "unknown U frame 0x%02x", ap->u);
			return -1;
		}
	case IEC_I:
		if (iec_check_state(s, true) != 0)
			return -1;
		if (ap->ns != is->vr) {
			session_protocol_error(s, "wrong N(S) %u, expected %u", ap->ns, is->vr);
			return -1;
		}
		is->vr = iec_seq_add(is->vr, 1);
		if (iec_ack(s, ap->nr) != 0)
			return -1;
		if (++is->unacked_in > c->k) {
			session_protocol_error(s, "more than k=%d unacknowledged I-frames received", c->k);
			return -1;
		}
		if (is->unacked_in >= c->w)
			is->ack_due = true; /* sent after the frames that came with this one */
		else if (!ptimer_pending(is->t2))
			ptimer_start(is->t2, c->t2_ms);
		{
			struct iec_asdu a;
			char err[160];
			/* the common address first: its station's time zone reads the time tags */
			uint16_t ca = 0;
			size_t at = 2 + il->prm.cot_len;
			if (ap->asdu_len >= at + il->prm.ca_len)
				ca = il->prm.ca_len == 2 ? (uint16_t)(ap->asdu[at] | ap->asdu[at + 1] << 8) : ap->asdu[at];
			struct iec_params p = iec_prm(session_line(s), ca);
			if (iec_asdu_decode(ap->asdu, ap->asdu_len, &p, time_now_ms(), &a, err, sizeof(err)) != 0) {
				/* a valid APCI with an ASDU we cannot read: answer it when we can, else log */
				log_warnx("line %s: %s: ASDU not understood: %s", line_name(session_line(s)), session_peer(s), err);
				if (server && ap->asdu_len >= 3 && iec_type_name(ap->asdu[0]) == NULL) {
					/* the same ASDU back, negative, cause 44 unknown type identification */
					uint8_t neg[IEC_MAX_ASDU];
					memcpy(neg, ap->asdu, ap->asdu_len);
					neg[2] = (uint8_t)((neg[2] & 0x80) | 0x40 | COT_UNKNOWN_TYPE);
					iec_send_bytes(s, neg, ap->asdu_len, NULL, false);
				}
				return 0;
			}
			if (server)
				iec_server_asdu(s, &a);
			else
				iec_client_asdu(s, &a);
		}
		return 0;
	}
	return 0;
}

/* The frames read together are handled: the acknowledgement w asked for, if no I-frame of
 * ours carried it meanwhile. One S-frame for a burst, not one every w frames of it: the
 * peer gets it at the same moment either way. */
void
iec_frames_done(struct session *s)
{
	struct iec_sess *is = session_priv(s);

	if (is->ack_due && is->unacked_in > 0 && !session_closing(s))
		iec_send_s(s);
	is->ack_due = false;
}

long
iec_frame_len(const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	struct iec_apci ap;
	size_t flen;
	int r = iec_apci_parse(buf, len, &ap, &flen, err, errlen);

	return r > 0 ? (long)flen : r;
}

/* One APDU, as the core's frame loop hands it over (clause 5: the APCI, then the ASDU). */
static int
iec_on_frame(struct session *s, const uint8_t *buf, size_t len, bool server)
{
	struct iec_apci ap;
	size_t flen;
	char err[160];

	if (iec_apci_parse(buf, len, &ap, &flen, err, sizeof(err)) <= 0) {
		session_protocol_error(s, "%s", err); /* frame_len took it: cannot happen */
		return -1;
	}
	iec_trace(s, false, buf, flen);
	ptimer_start(((struct iec_sess *)session_priv(s))->t3, lconf(session_line(s))->t3_ms);
	return iec_frame(s, &ap, server);
}

int iec_client_on_frame(struct session *s, const uint8_t *f, size_t n) { return iec_on_frame(s, f, n, false); }
int iec_server_on_frame(struct session *s, const uint8_t *f, size_t n) { return iec_on_frame(s, f, n, true); }

