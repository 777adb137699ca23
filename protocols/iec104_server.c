/* iec104_server.c: the iec104-server protocol, the controlled station of IEC 60870-5-104.
 * Clients are grouped (by address; one group for all by default); in a group one
 * connection is started, a STARTDT on another moves data to it. Each group has a bounded
 * event queue: spontaneous changes wait there while no connection of the group is started,
 * and I-frames not acknowledged when a connection stops or fails are sent again on the
 * next started one. General interrogation (COT 20, groups), cyclic transmission (COT 1),
 * end of initialisation, clock synchronisation, and commands routed to the tags' acquirers
 * with replies per cmdc. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iec104.h"

int
iec_server_line_init(struct line *l)
{
	struct iec_line *il = lpriv(l);
	const struct iec_line_conf *c = lconf(l);

	/* redundancy groups: "a,b; c" and the default group last */
	int n = 1;
	for (const char *p = c->groups; p && *p; p++)
		n += *p == ';';
	if (c->groups && *c->groups)
		n++;
	if ((il->groups = calloc((size_t)n, sizeof(*il->groups))) == NULL)
		return -1;
	il->ngroups = n;
	if (c->groups && *c->groups) {
		char *copy = strdup(c->groups), *save = NULL;
		int g = 0;
		if (!copy)
			return -1;
		for (char *grp = strtok_r(copy, ";", &save); grp && g < n - 1; grp = strtok_r(NULL, ";", &save), g++) {
			char *s2 = NULL;
			size_t o = 0;
			il->groups[g].addrs[o++] = ',';
			for (char *a = strtok_r(grp, ", ", &s2); a; a = strtok_r(NULL, ", ", &s2))
				o += (size_t)snprintf(il->groups[g].addrs + o, sizeof(il->groups[g].addrs) - o, "%s,", a);
		}
		free(copy);
	}
	for (int g = 0; g < n; g++)
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
	while ((c = il->pending) != NULL) {
		il->pending = c->next;
		write_req_detach(c->req); /* its answer would find the line gone */
		free(c);
	}
}

/* "10.0.0.5:2404" or "[::1]:2404" -> ",10.0.0.5," */
static void
iec_peer_ip(const char *peer, char *out, size_t len)
{
	const char *end;

	if (*peer == '[') {
		end = strchr(peer, ']');
		snprintf(out, len, ",%.*s,", end ? (int)(end - peer - 1) : 0, peer + 1);
	} else {
		end = strrchr(peer, ':');
		snprintf(out, len, ",%.*s,", end ? (int)(end - peer) : (int)strlen(peer), peer);
	}
}

static struct iec_group *
iec_group_of(struct line *l, const char *peer)
{
	struct iec_line *il = lpriv(l);
	char ip[80];

	iec_peer_ip(peer, ip, sizeof(ip));
	for (int g = 0; g < il->ngroups - 1; g++)
		if (strstr(il->groups[g].addrs, ip))
			return &il->groups[g];
	return &il->groups[il->ngroups - 1];
}

/* Frames of events a connection will not send, or sent and will not have acknowledged
 * (with_sent: it was displaced or lost), go back to the front of its group's queue, in
 * order, for the next started connection. */
static void
iec_server_requeue(struct session *s, bool with_sent)
{
	struct iec_sess *is = session_priv(s);
	struct iec_group *g = is->group;
	struct iec_mq back = { .tail = &back.head };
	struct iec_msg *m;

	/* frames sent and not acknowledged are still owed an acknowledgement within t1 */
	if (with_sent && is->sent.head) {
		if (!is->orphans)
			is->orphan_ms = is->sent.head->sent_ms;
		is->orphans = true;
		is->orphan_end = is->vs;
	}
	/* only events: answers to interrogations and commands belonged to that connection */
	while (with_sent && (m = iec_mq_pop(&is->sent)) != NULL)
		if (m->event)
			iec_mq_push(&back, m, false);
		else
			free(m);
	while ((m = iec_mq_pop(&is->out)) != NULL)
		if (m->event)
			iec_mq_push(&back, m, false);
		else
			free(m);
	if (!g) {
		iec_mq_clear(&back);
		return;
	}
	/* back before what is queued already; the queue keeps its bound (the oldest go) */
	while ((m = iec_mq_pop(&g->events)) != NULL)
		iec_mq_push(&back, m, false);
	while (back.n > lconf(session_line(s))->queue_size) {
		free(iec_mq_pop(&back));
		g->dropped++;
	}
	g->events = back;
	if (!g->events.head)
		g->events.tail = &g->events.head;
	else if (back.tail == &back.head)
		g->events.tail = &g->events.head;
}

static void
iec_group_send(struct iec_group *g)
{
	struct session *s = g->started;
	struct iec_sess *is;
	struct iec_msg *m;

	if (!s)
		return;
	is = session_priv(s);
	while ((m = iec_mq_pop(&g->events)) != NULL)
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
	iec_server_requeue(s, with_sent);
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
	if (g->started && g->started != s) {
		/* data moves to this connection; the other is stopped (104 clause 10.3): what it
		 * sent and has not acknowledged comes here, and its next I-frame closes it */
		struct iec_sess *old = session_priv(g->started);
		log_info("line %s: %s: STARTDT: data moves here from %s", line_name(l), session_peer(s),
		    session_peer(g->started));
		old->state = IEC_DISPLACED;
		snprintf(old->displaced_by, sizeof(old->displaced_by), "%s", session_peer(s));
		iec_server_requeue(g->started, true);
	} else {
		log_info("line %s: %s: data transfer started", line_name(l), session_peer(s));
	}
	g->started = s;
	is->state = IEC_STARTED;
	if (lconf(l)->end_of_init) {
		for (int i = 0; i < line_nstations(l); i++) {
			struct iec_asdu a = { .type = M_EI_NA_1, .cot = COT_INIT,
				.ca = ((struct iec_stn *)station_priv(line_station(l, i)))->ca, .nobj = 1 };
			iec_send_asdu(s, &a, NULL);
		}
	}
	iec_group_send(g);
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

static bool
iec_allowed(struct line *l, const char *peer)
{
	const char *allow = lconf(l)->allow;
	char ip[80], list[600];

	if (!allow || !*allow)
		return true;
	iec_peer_ip(peer, ip, sizeof(ip));
	snprintf(list, sizeof(list), ",%s,", allow);
	for (char *p = list; *p; p++)
		if (*p == ' ')
			*p = ',';
	return strstr(list, ip) != NULL;
}

static void
iec_server_connect(struct session *s)
{
	struct iec_sess *is = session_priv(s);
	struct line *l = session_line(s);

	iec_session_init(s);
	if (!iec_allowed(l, session_peer(s))) {
		log_warnx("line %s: %s: refused: not in the allow list", line_name(l), session_peer(s));
		session_close(s, "not in the allow list");
		return;
	}
	is->group = iec_group_of(l, session_peer(s));
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

/* A served tag's change (cause 3) or cyclic transmission (cause 1) to every group's
 * started connection (changes queued where none is). Answers to a request never come
 * here: they go to the connection that asked. */
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

	if (it->ignore || !iec_is_monitor(it->type))
		return;
	iec_served_obj(t, &a.obj[0]);
	struct iec_params p = iec_prm(l, a.ca);
	if ((n = iec_asdu_encode(&a, &p, buf, sizeof(buf))) == 0)
		return;
	for (int g = 0; g < il->ngroups; g++) {
		struct iec_group *grp = &il->groups[g];
		struct iec_msg *m;

		if (grp->started) {
			iec_send_bytes(grp->started, buf, n, NULL, cot == COT_SPONT);
			continue;
		}
		if (cot != COT_SPONT)
			continue; /* cyclic data is not queued */
		if (grp->events.n >= lconf(l)->queue_size) {
			free(iec_mq_pop(&grp->events));
			if (grp->dropped++ % 1000 == 0)
				log_warnx("line %s: event queue of group %d full (%d): oldest events dropped (%llu so far); "
				    "the next interrogation gives the current image", line_name(l), g + 1,
				    lconf(l)->queue_size, (unsigned long long)grp->dropped);
		}
		if ((m = iec_msg_new(buf, n)) != NULL) {
			m->event = true;
			iec_mq_push(&grp->events, m, false);
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
	if (a->cot == COT_DEACT || a->obj[0].select) {
		/* select (or its cancellation): confirmed, nothing written yet */
		r.cot = a->cot == COT_DEACT ? COT_DEACTCON : COT_ACTCON;
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

static void
iec_server_close_cmds(struct session *s)
{
	for (struct iec_srv_cmd *c = lpriv(session_line(s))->pending; c; c = c->next)
		if (c->s == s)
			c->s = NULL; /* the routed write goes on; its answer has nowhere to go */
}

static void
iec_server_close_all(struct session *s)
{
	iec_server_close_cmds(s);
	iec_server_close(s);
}

const struct proto_ops iec104_server_ops = {
	.name = "iec104-server",
	.role = ROLE_SERVER,
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
	.on_read = iec_server_read,
	.on_close = iec_server_close_all,
	.on_tag_change = iec_server_tag_change,
};
