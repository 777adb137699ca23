/* iec104_server.c: the iec104-server protocol, the controlled station of IEC 60870-5-104.
 * Without `groups` every connection is a redundancy group of its own: each started
 * connection gets all data. With `groups`, clients are grouped by address; in a group one
 * connection is started, and a STARTDT on another moves the data to it. While no
 * connection is started (of a group; of the line without groups) time-tagged events wait
 * in a bounded queue, as do those a connection that stops or fails did not have
 * acknowledged, for the next started one. General interrogation (COT 20, groups), counter
 * interrogation, read, cyclic transmission (COT 1), end of initialisation, clock
 * synchronisation, reset process, test command, and commands routed to the tags'
 * acquirers with replies per cmdc; an answer goes to the connection that asked. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iec104.h"

int
iec_server_line_init(struct line *l)
{
	struct iec_line *il = lpriv(l);
	const struct iec_line_conf *c = lconf(l);

	/* without groups every connection is a redundancy group of its own (is->group NULL),
	 * and the line keeps the queue for when none is started */
	il->lineq.events.tail = &il->lineq.events.head;
	if (!c->groups || !*c->groups)
		return 0;
	/* redundancy groups by address: "a,b; c", and one more for the clients in none */
	int n = 2;
	for (const char *p = c->groups; *p; p++)
		n += *p == ';';
	if ((il->groups = calloc((size_t)n, sizeof(*il->groups))) == NULL)
		return -1;
	il->ngroups = n;
	char copy[2048], *save = NULL, err[160];
	int g = 0;
	snprintf(copy, sizeof(copy), "%s", c->groups); /* checked at load: it fits and parses */
	for (char *grp = strtok_r(copy, ";", &save); grp && g < n - 1; grp = strtok_r(NULL, ";", &save), g++)
		if (conf_parse_addrlist(grp, &il->groups[g].addrs, err, sizeof(err)) != 0) {
			free(il->groups);
			il->groups = NULL;
			il->ngroups = 0;
			return -1;
		}
	for (g = 0; g < n; g++)
		il->groups[g].events.tail = &il->groups[g].events.head;
	return 0;
}

void
iec_server_line_free(struct line *l)
{
	struct iec_line *il = lpriv(l);
	struct iec_srv_cmd *c;

	for (int g = 0; g < il->ngroups; g++)
		iec_mq_clear(&il->groups[g].events);
	free(il->groups);
	iec_mq_clear(&il->lineq.events);
	for (struct iec_select *sel; (sel = il->selects) != NULL; ) {
		il->selects = sel->next;
		free(sel);
	}
	while ((c = il->pending) != NULL) {
		il->pending = c->next;
		write_req_detach(c->req); /* its answer would find the line gone */
		free(c);
	}
}

static struct iec_group *
iec_group_of(struct session *s)
{
	struct iec_line *il = lpriv(session_line(s));

	for (int g = 0; g < il->ngroups - 1; g++)
		if (session_peer_in(s, &il->groups[g].addrs))
			return &il->groups[g];
	return &il->groups[il->ngroups - 1];
}

/* Connections started, other than s (of the line: without groups, each is its own). */
static void
iec_count_started_cb(struct session *x, void *arg)
{
	struct iec_sess *is = session_priv(x);

	if (is->state == IEC_STARTED)
		(*(int *)arg)++;
}

static int
iec_server_nstarted(struct session *s)
{
	int n = 0;

	line_foreach_session(session_line(s), iec_count_started_cb, &n);
	return n - (((struct iec_sess *)session_priv(s))->state == IEC_STARTED);
}

/* The queue for when no connection is started: the redundancy group's, or the line's. */
static struct iec_group *
iec_queue_of(struct session *s)
{
	struct iec_sess *is = session_priv(s);

	return is->group ? is->group : &lpriv(session_line(s))->lineq;
}

/* One event into a queue kept while no connection is started: bounded per group or line
 * (queue_size; the oldest go, counted and logged). */
static void
iec_queue_event(struct line *l, struct iec_group *q, struct iec_msg *m)
{
	struct iec_line *il = lpriv(l);

	if (q->events.n >= lconf(l)->queue_size) {
		free(iec_mq_pop(&q->events));
		if (q->dropped++ % 1000 == 0) {
			char which[32] = "";
			if (q != &il->lineq)
				snprintf(which, sizeof(which), " of group %d", (int)(q - il->groups) + 1);
			log_warnx("line %s: event queue%s full (%d): oldest events dropped (%llu so far); the next "
			    "interrogation gives the current image", line_name(l), which, lconf(l)->queue_size,
			    (unsigned long long)q->dropped);
		}
	}
	iec_mq_push(&q->events, m, false);
}

/* Frames of events a connection will not send, or sent and will not have acknowledged
 * (with_sent: it was displaced or lost), go back to the front of its queue, in order, for
 * the next started connection. Only time-tagged ones while none is started (untimed, the
 * next interrogation tells better; displaced: the connection taking over gets them all);
 * none when another connection of the line (without groups) got them itself. */
static void
iec_server_requeue(struct session *s, bool with_sent, bool all)
{
	struct iec_sess *is = session_priv(s);
	struct iec_group *q = iec_queue_of(s);
	struct iec_mq back = { .tail = &back.head };
	struct iec_msg *m;
	bool keep = is->group != NULL || iec_server_nstarted(s) == 0;

	/* frames sent and not acknowledged are still owed an acknowledgement within t1 */
	if (with_sent && is->sent.head) {
		if (!is->orphans)
			is->orphan_ms = is->sent.head->sent_ms;
		is->orphans = true;
		is->orphan_end = is->vs;
	}
	/* only events: answers to interrogations and commands belonged to that connection */
	while (with_sent && (m = iec_mq_pop(&is->sent)) != NULL)
		if (keep && m->event && (all || iec_has_time(m->asdu[0])))
			iec_mq_push(&back, m, false);
		else
			free(m);
	while ((m = iec_mq_pop(&is->out)) != NULL)
		if (keep && m->event && (all || iec_has_time(m->asdu[0])))
			iec_mq_push(&back, m, false);
		else
			free(m);
	/* back before what is queued already; the queue keeps its bound (the oldest go) */
	while ((m = iec_mq_pop(&q->events)) != NULL)
		iec_mq_push(&back, m, false);
	while (back.n > lconf(session_line(s))->queue_size) {
		free(iec_mq_pop(&back));
		q->dropped++;
	}
	q->events = back;
	if (!q->events.head)
		q->events.tail = &q->events.head;
	else if (back.tail == &back.head)
		q->events.tail = &q->events.head;
}

/* A connection that starts takes what its queue kept. */
static void
iec_queue_send(struct iec_group *q, struct session *s)
{
	struct iec_sess *is = session_priv(s);
	struct iec_msg *m;

	while ((m = iec_mq_pop(&q->events)) != NULL)
		iec_mq_push(&is->out, m, false);
	iec_flush(s);
}

/* The connection no longer carries its group's data (STOPDT, or closed): what it has not
 * sent goes back to the group. */
static void
iec_server_leave(struct session *s, bool with_sent)
{
	struct iec_sess *is = session_priv(s);

	if (is->group && is->group->started == s)
		is->group->started = NULL;
	iec_server_requeue(s, with_sent, false);
}

void
iec_server_startdt(struct session *s)
{
	struct iec_sess *is = session_priv(s);
	struct line *l = session_line(s);
	struct iec_group *g = is->group;

	iec_send_u(s, IEC_U_STARTDT_CON);
	if (is->state == IEC_STARTED)
		return; /* started already: confirmed again, nothing changes */
	/* from stopped, displaced, or pending stopped (the stop is called off: no STOPDT con) */
	if (g && g->started && g->started != s) {
		/* data moves to this connection; the other is stopped (104 clause 10.3): what it
		 * sent and has not acknowledged comes here, and its next I-frame closes it */
		struct iec_sess *old = session_priv(g->started);
		log_info("line %s: %s: STARTDT: data moves here from %s", line_name(l), session_peer(s),
		    session_peer(g->started));
		old->state = IEC_DISPLACED;
		snprintf(old->displaced_by, sizeof(old->displaced_by), "%s", session_peer(s));
		iec_server_requeue(g->started, true, true);
	} else {
		log_info("line %s: %s: data transfer started", line_name(l), session_peer(s));
	}
	if (g)
		g->started = s;
	is->state = IEC_STARTED;
	if (lconf(l)->end_of_init) {
		for (int i = 0; i < line_nstations(l); i++) {
			struct iec_asdu a = { .type = M_EI_NA_1, .cot = COT_INIT,
				.ca = ((struct iec_stn *)station_priv(line_station(l, i)))->ca, .nobj = 1 };
			iec_send_asdu(s, &a, NULL);
		}
	}
	iec_queue_send(iec_queue_of(s), s);
}

void
iec_server_stopdt(struct session *s)
{
	struct iec_sess *is = session_priv(s);

	switch (is->state) {
	case IEC_STOPPED:
	case IEC_STARTING:
		iec_send_u(s, IEC_U_STOPDT_CON); /* stopped already */
		return;
	case IEC_STOPPING:
		return; /* its con comes once the I-frames sent are acknowledged */
	case IEC_STARTED:
		/* nothing more is sent; what waits goes back to the group, what was sent is
		 * waited for (t1 runs on) */
		iec_server_leave(s, false);
		break;
	case IEC_DISPLACED:
		break;
	}
	if (is->unacked_in > 0)
		iec_send_s(s); /* the peer's I-frames, acknowledged before we stop */
	if (is->ack == is->vs) {
		is->state = IEC_STOPPED;
		iec_send_u(s, IEC_U_STOPDT_CON);
		log_info("line %s: %s: data transfer stopped", line_name(session_line(s)), session_peer(s));
	} else {
		/* 104 5.3 pending stopped: STOPDT con once every I-frame sent is acknowledged */
		is->state = IEC_STOPPING;
		log_info("line %s: %s: STOPDT: %u I-frames to be acknowledged first", line_name(session_line(s)),
		    session_peer(s), iec_seq_diff(is->vs, is->ack));
	}
}

static void
iec_server_connect(struct session *s)
{
	struct iec_sess *is = session_priv(s);
	struct line *l = session_line(s);

	iec_session_init(s);
	is->group = lpriv(l)->ngroups ? iec_group_of(s) : NULL;
}

static void
iec_server_close(struct session *s)
{
	struct iec_sess *is = session_priv(s);

	if (is->state == IEC_STARTED)
		is->state = IEC_STOPPED;
	iec_server_leave(s, true);
	iec_mq_clear(&is->out);
	iec_mq_clear(&is->sent);
}

/* A served tag's object of its type. A value the type cannot carry is never sent as if it
 * could: clamped with OV where the quality descriptor has it (QDS), CY for integrated
 * totals, IV where neither (SIQ, DIQ, SEP, QDP); NaN and infinities invalid; M_ME_ND_1 has
 * no quality descriptor: clamped, logged and counted. */
static void
iec_served_obj(struct stag *t, struct iec_obj *o)
{
	const struct iec_tag *it = itag(t);
	uint8_t mask = iec_quality_mask(it->type);
	enum iec_fit fit;

	memset(o, 0, sizeof(*o));
	o->ioa = it->ioa;
	o->q = iec_q_to_wire(it->type, stag_quality(t));
	fit = iec_value_fit(it->type, stag_value(t), o);
	if (fit == IEC_FIT_RANGE)
		o->q |= (mask & IEC_Q_OV) ? IEC_Q_OV : mask == 0xe0 ? IEC_Q_CY : (mask & IEC_Q_IV);
	else if (fit == IEC_FIT_NAN)
		o->q |= mask & IEC_Q_IV;
	if (fit != IEC_FIT_OK && !(mask & IEC_Q_IV)) {
		char why[200];
		snprintf(why, sizeof(why), "tag %s: value out of the range of %s, which has no quality descriptor: "
		    "sent clamped", stag_name(t), iec_type_name(it->type));
		station_note_error(stag_station(t), why);
	}
	if (iec_has_time(it->type)) {
		int64_t ts = stag_time_source(t);
		o->has_time = true;
		o->time_ms = ts ? ts : time_now_ms();
	}
}

/* The started connections of a line without groups. */
struct iec_fanout {
	const uint8_t *buf;
	size_t n;
	bool event;
	int sent;
};

static void
iec_fanout_cb(struct session *x, void *arg)
{
	struct iec_fanout *f = arg;

	if (((struct iec_sess *)session_priv(x))->state != IEC_STARTED)
		return;
	iec_send_bytes(x, f->buf, f->n, NULL, f->event);
	f->sent++;
}

/* A served tag's change (cause 3) or cyclic transmission (cause 1) to every started
 * connection: each group's, or each of the line's without groups. While none is, changes of
 * time-tagged types are queued (per group, or for the line); untimed ones are not: the
 * interrogation after STARTDT gives their current values, not stale ones as spontaneous.
 * Answers to a request never come here: they go to the connection that asked. */
static void
iec_server_event(struct stag *t, uint8_t cot)
{
	struct station *st = stag_station(t);
	struct line *l = station_line(st);
	struct iec_line *il = lpriv(l);
	const struct iec_tag *it = itag(t);
	struct iec_asdu a = { .type = it->type, .cot = cot, .ca = ((struct iec_stn *)station_priv(st))->ca, .nobj = 1 };
	uint8_t buf[IEC_MAX_ASDU];
	size_t n;
	bool queue = cot == COT_SPONT && iec_has_time(it->type);
	struct iec_msg *m;

	if (it->ignore || !iec_is_monitor(it->type))
		return;
	iec_served_obj(t, &a.obj[0]);
	struct iec_params p = iec_prm(l, a.ca);
	if ((n = iec_asdu_encode(&a, &p, buf, sizeof(buf))) == 0)
		return;
	if (il->ngroups == 0) {
		struct iec_fanout f = { .buf = buf, .n = n, .event = cot == COT_SPONT };
		line_foreach_session(l, iec_fanout_cb, &f);
		if (f.sent == 0 && queue && (m = iec_msg_new(buf, n)) != NULL) {
			m->event = true;
			iec_queue_event(l, &il->lineq, m);
		}
		return;
	}
	for (int g = 0; g < il->ngroups; g++) {
		struct iec_group *grp = &il->groups[g];

		if (grp->started)
			iec_send_bytes(grp->started, buf, n, NULL, cot == COT_SPONT);
		else if (queue && (m = iec_msg_new(buf, n)) != NULL) {
			m->event = true;
			iec_queue_event(l, grp, m);
		}
	}
}

static void
iec_server_tag_change(struct stag *t)
{
	iec_server_event(t, COT_SPONT);
}

void
iec_cyclic_cb(void *arg)
{
	struct stag *t = arg;
	const struct iec_tag_conf *tc = stag_conf(t)->pconf;

	iec_server_event(t, COT_PER_CYC);
	ptimer_start(((struct iec_tag *)stag_priv(t))->cyclic, tc->cyclic_ms);
}

/* General (or group) interrogation: the image with cause 20 (21..36), in as few ASDUs as
 * fit, to the connection that asked (s), with its originator address. */
static void
iec_server_interrogate(struct session *s, struct station *st, uint8_t qoi, bool counters, uint8_t oa)
{
	struct iec_stn *sn = station_priv(st);
	struct iec_line *il = lpriv(session_line(s));
	uint8_t cot = counters ? COT_REQCOGEN : qoi;
	struct iec_asdu *a = calloc(1, sizeof(*a));

	if (!a)
		return;
	((struct iec_sess *)session_priv(s))->hold = true;
	for (int i = 0; i < sn->nidx; i++) {
		struct stag *t = station_stag(st, sn->idx[i].tag);
		const struct iec_tag *it = itag(t);
		const struct iec_tag_conf *tc = stag_conf(t)->pconf;
		bool is_counter = it->type == M_IT_NA_1 || it->type == M_IT_TA_1 || it->type == M_IT_TB_1;

		if (!iec_is_monitor(it->type) || is_counter != counters)
			continue;
		if (!counters && qoi != 20 && (!tc || tc->group != qoi - 20))
			continue;
		/* interrogated data carries no time tag: send the type without one where there is one */
		uint8_t type = it->type;
		if (!counters && (type == M_SP_TB_1 || type == M_DP_TB_1 || type == M_ST_TB_1 || type == M_BO_TB_1 ||
		    type == M_ME_TD_1 || type == M_ME_TE_1 || type == M_ME_TF_1))
			type = (uint8_t)(type == M_SP_TB_1 ? M_SP_NA_1 : type == M_DP_TB_1 ? M_DP_NA_1 :
			    type == M_ST_TB_1 ? M_ST_NA_1 : type == M_BO_TB_1 ? M_BO_NA_1 : type == M_ME_TD_1 ? M_ME_NA_1 :
			    type == M_ME_TE_1 ? M_ME_NB_1 : M_ME_NC_1);
		if (a->nobj && (a->type != type || a->nobj >= iec_max_objs(type, false, &il->prm))) {
			iec_send_asdu(s, a, NULL);
			a->nobj = 0;
		}
		a->type = type;
		a->cot = cot;
		a->oa = oa;
		a->ca = sn->ca;
		iec_served_obj(t, &a->obj[a->nobj]);
		if (!iec_has_time(type))
			a->obj[a->nobj].has_time = false;
		a->nobj++;
	}
	if (a->nobj)
		iec_send_asdu(s, a, NULL);
	free(a);
	((struct iec_sess *)session_priv(s))->hold = false;
	iec_flush(s);
}



static void
iec_server_cmd_cb(void *arg, int status, const char *msg)
{
	struct iec_srv_cmd *c = arg;

	(void)msg;
	for (struct iec_srv_cmd **pp = &c->il->pending; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	if (c->s && ((struct iec_sess *)session_priv(c->s))->state == IEC_STARTED) {
		if (status != 0 || c->cmdc == 1 || c->cmdc == 3) {
			c->a.cot = COT_ACTCON;
			c->a.pn = status != 0;
			iec_send_asdu(c->s, &c->a, NULL);
		}
		if (status == 0 && (c->cmdc == 2 || c->cmdc == 3)) {
			c->a.cot = COT_ACTTERM;
			c->a.pn = false;
			iec_send_asdu(c->s, &c->a, NULL);
		}
	}
	free(c);
}

static void
iec_negative(struct session *s, const struct iec_asdu *a, uint8_t cot)
{
	struct iec_asdu r = *a;

	r.cot = cot;
	r.pn = true;
	iec_send_asdu(s, &r, NULL);
}

/* The select of served tag t, or where it would be linked; expired ones go first. */
static struct iec_select **
iec_select_find(struct line *l, struct stag *t)
{
	struct iec_select **pp = &lpriv(l)->selects, *sel;
	int64_t now = iec_mono_ms();

	while ((sel = *pp) != NULL) {
		if (sel->until_ms <= now) {
			*pp = sel->next;
			free(sel);
		} else if (sel->t == t)
			return pp;
		else
			pp = &sel->next;
	}
	return pp;
}

static void
iec_select_end(struct iec_select **pp)
{
	struct iec_select *sel = *pp;

	*pp = sel->next;
	free(sel);
}

/* An execute is the command selected: its value and qualifier. */
static bool
iec_same_command(const struct iec_obj *x, const struct iec_obj *y)
{
	return x->v.i == y->v.i && x->qu == y->qu;
}

static void iec_server_station_asdu(struct session *s, struct station *st, const struct iec_asdu *a);

void
iec_server_asdu(struct session *s, const struct iec_asdu *a)
{
	struct line *l = session_line(s);
	struct station *st;

	if (a->ca == (lpriv(l)->prm.ca_len == 2 ? 0xFFFF : 0xFF)) {
		/* 101 7.2.4: the global address, for interrogation, counter interrogation, clock
		 * synchronisation and reset process only; every station answers as if it were
		 * addressed, each with its own common address */
		if (a->type != C_IC_NA_1 && a->type != C_CI_NA_1 && a->type != C_CS_NA_1 && a->type != C_RP_NA_1) {
			iec_negative(s, a, COT_UNKNOWN_CA);
			return;
		}
		struct iec_asdu *r = malloc(sizeof(*r));
		if (!r) {
			session_close(s, "out of memory");
			return;
		}
		for (int i = 0; i < line_nstations(l); i++) {
			*r = *a;
			r->ca = ((struct iec_stn *)station_priv(line_station(l, i)))->ca;
			iec_server_station_asdu(s, line_station(l, i), r);
		}
		free(r);
		return;
	}
	if ((st = iec_station_by_ca(l, a->ca)) == NULL) {
		iec_negative(s, a, COT_UNKNOWN_CA);
		return;
	}
	iec_server_station_asdu(s, st, a);
}

/* A request to station st (its common address in a). */
static void
iec_server_station_asdu(struct session *s, struct station *st, const struct iec_asdu *a)
{
	struct line *l = session_line(s);
	struct iec_asdu r = *a;

	switch (a->type) {
	case C_IC_NA_1:
	case C_CI_NA_1:
		if (a->cot != COT_ACT) {
			iec_negative(s, a, COT_UNKNOWN_COT);
			return;
		}
		if (a->type == C_IC_NA_1 && (a->obj[0].qualifier < 20 || a->obj[0].qualifier > 36)) {
			/* 101 7.2.6.22: QOI 20 station, 21..36 groups; anything else is refused */
			r.cot = COT_ACTCON;
			r.pn = true;
			iec_send_asdu(s, &r, NULL);
			return;
		}
		r.cot = COT_ACTCON;
		iec_send_asdu(s, &r, NULL);
		iec_server_interrogate(s, st, a->type == C_CI_NA_1 ? 0 : a->obj[0].qualifier, a->type == C_CI_NA_1, a->oa);
		r.cot = COT_ACTTERM;
		iec_send_asdu(s, &r, NULL);
		return;
	case C_CS_NA_1:
		/* komd keeps the system's clock; the synchronisation is confirmed with our time */
		if (a->cot != COT_ACT) {
			iec_negative(s, a, COT_UNKNOWN_COT);
			return;
		}
		r.cot = COT_ACTCON;
		r.obj[0].time_ms = time_now_ms();
		iec_send_asdu(s, &r, NULL);
		return;
	case C_RP_NA_1:
	case C_TS_TA_1:
		if (a->cot != COT_ACT) {
			iec_negative(s, a, COT_UNKNOWN_COT);
			return;
		}
		r.cot = COT_ACTCON;
		iec_send_asdu(s, &r, NULL);
		return;
	case C_RD_NA_1: {
		struct iec_stn *sn = station_priv(st);
		if (a->cot != COT_REQ) {
			iec_negative(s, a, COT_UNKNOWN_COT);
			return;
		}
		int i = iec_find(sn, a->obj[0].ioa);
		if (i < 0 || !iec_is_monitor(itag(station_stag(st, sn->idx[i].tag))->type)) {
			iec_negative(s, a, COT_UNKNOWN_IOA);
			return;
		}
		/* the answer goes to the connection that asked, with its originator address */
		r.type = itag(station_stag(st, sn->idx[i].tag))->type;
		r.cot = COT_REQ;
		r.nobj = 1;
		iec_served_obj(station_stag(st, sn->idx[i].tag), &r.obj[0]);
		iec_send_asdu(s, &r, NULL);
		return;
	}
	default:
		break;
	}
	if (!iec_is_command(a->type)) {
		iec_negative(s, a, COT_UNKNOWN_TYPE);
		return;
	}
	if (a->cot != COT_ACT && a->cot != COT_DEACT) {
		iec_negative(s, a, COT_UNKNOWN_COT);
		return;
	}
	/* one command object: the tag served at that IOA as an output */
	struct iec_stn *sn = station_priv(st);
	struct stag *t = NULL;
	for (int i = iec_find(sn, a->obj[0].ioa); i >= 0 && i < sn->nidx && sn->idx[i].ioa == a->obj[0].ioa; i++) {
		struct stag *c = station_stag(st, sn->idx[i].tag);
		if (stag_conf(c)->dir != TD_IN && (itag(c)->type == a->type || !iec_is_command(itag(c)->type))) {
			t = c;
			break;
		}
	}
	if (!t) {
		iec_negative(s, a, COT_UNKNOWN_IOA);
		return;
	}
	/* a value the type may not carry (NaN, an infinity, a double command's 0 or 3) or the
	 * tag cannot hold: refused, never clamped */
	struct value v = { .type = stag_type(t) };
	if (iec_obj_to_value(a->type, &a->obj[0], &v) != IEC_FIT_OK) {
		log_warnx("line %s: %s: %s ioa %u for tag %s: a value out of the range of the type or the tag, refused",
		    line_name(l), session_peer(s), iec_type_name(a->type), a->obj[0].ioa, stag_name(t));
		r.cot = COT_ACTCON;
		r.pn = true;
		iec_send_asdu(s, &r, NULL);
		return;
	}
	/* select before operate (101 7.2.6.26, S/E): a select reserves the object for the
	 * connection that made it, until its execute, deactivation, select_timeout, or the
	 * connection's end; the execute must be the command selected */
	struct iec_select **sp = iec_select_find(l, t), *sel = *sp;
	const char *refuse = NULL;
	if (a->cot == COT_DEACT) {
		if (sel && sel->s == s)
			iec_select_end(sp);
		r.cot = COT_DEACTCON;
		iec_send_asdu(s, &r, NULL);
		return;
	}
	if (a->obj[0].select) {
		if (sel && sel->s && sel->s != s)
			refuse = "selected by another connection";
		else if (!sel && (sel = calloc(1, sizeof(*sel))) == NULL)
			refuse = "out of memory";
		else {
			if (!*sp) {
				sel->next = lpriv(l)->selects;
				lpriv(l)->selects = sel;
			}
			sel->t = t;
			sel->s = s;
			sel->type = a->type;
			sel->o = a->obj[0];
			sel->until_ms = iec_mono_ms() + sconf(st)->select_ms;
			r.cot = COT_ACTCON;
			iec_send_asdu(s, &r, NULL);
			return;
		}
	} else if (sel && sel->s == s) {
		/* the execute of this connection's select: the same command, or nothing */
		if (sel->type != a->type || !iec_same_command(&sel->o, &a->obj[0]))
			refuse = "not the command selected (the select ends)";
		iec_select_end(sp);
	} else if (sel)
		refuse = sel->s ? "selected by another connection" : "its select was cancelled when its connection closed";
	else if (stag_conf(t)->pconf && ((const struct iec_tag_conf *)stag_conf(t)->pconf)->sbo)
		refuse = "select before operate: no select";
	if (refuse) {
		log_warnx("line %s: %s: %s ioa %u (%s) refused: %s", line_name(l), session_peer(s), iec_type_name(a->type),
		    a->obj[0].ioa, a->obj[0].select ? "select" : "execute", refuse);
		r.cot = COT_ACTCON;
		r.pn = true;
		iec_send_asdu(s, &r, NULL);
		return;
	}
	struct iec_srv_cmd *c = calloc(1, sizeof(*c));
	if (!c) {
		iec_negative(s, a, COT_ACTCON);
		return;
	}
	c->il = lpriv(l);
	c->s = s;
	c->a = *a;
	c->cmdc = sconf(st)->cmdc;
	c->next = c->il->pending;
	c->il->pending = c;
	/* answered at once (a memory tag): the callback freed c already */
	struct write_req *req = stag_write(t, &v, iec_server_cmd_cb, c);
	if (req)
		c->req = req;
}

/* The connection is going: a command it sent that is still on its way to the device goes
 * on (the core logs and counts its result: nobody is left to answer), and its selects are
 * cancelled: no other connection's execute can complete them. */
static void
iec_server_close_cmds(struct session *s)
{
	struct iec_line *il = lpriv(session_line(s));
	struct iec_srv_cmd **pp = &il->pending, *c;

	while ((c = *pp) != NULL) {
		if (c->s == s) {
			*pp = c->next;
			write_req_detach(c->req);
			free(c);
		} else
			pp = &c->next;
	}
	for (struct iec_select *sel = il->selects; sel; sel = sel->next)
		if (sel->s == s) {
			sel->s = NULL;
			log_info("line %s: %s: its select of %s (%s ioa %u) is cancelled: the connection closed",
			    line_name(session_line(s)), session_peer(s), stag_name(sel->t), iec_type_name(sel->type),
			    sel->o.ioa);
		}
}

static void
iec_server_close_all(struct session *s)
{
	iec_server_close_cmds(s);
	iec_server_close(s);
}

const struct proto_ops iec104_server_ops = {
	.name = "iec104-server",
	.transport = PROTO_LISTEN,
	.line_keys = iec_server_line_keys,
	.station_keys = iec_server_station_keys,
	.tag_keys = iec_tag_keys,
	.line_conf_size = sizeof(struct iec_line_conf),
	.station_conf_size = sizeof(struct iec_station_conf),
	.tag_conf_size = sizeof(struct iec_tag_conf),
	.check_line = iec_check_line,
	.check_station = iec_check_station,
	.check_tag = iec_check_tag,
	.line_size = sizeof(struct iec_line),
	.station_size = sizeof(struct iec_stn),
	.stag_size = sizeof(struct iec_tag),
	.session_size = sizeof(struct iec_sess),
	.line_init = iec_line_init,
	.line_free = iec_line_free,
	.station_init = iec_station_init,
	.station_free = iec_station_free,
	.on_connect = iec_server_connect,
	.max_frame = IEC_MAX_APDU,
	.frame_len = iec_frame_len,
	.on_frame = iec_server_on_frame,
	.on_frames_done = iec_frames_done,
	.on_close = iec_server_close_all,
	.on_tag_change = iec_server_tag_change,
	.counters = iec_counters,
};
