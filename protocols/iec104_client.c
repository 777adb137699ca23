/* iec104_client.c: the iec104-client protocol, the controlling station of IEC 60870-5-104.
 * STARTDT, then a general interrogation of every station (common address); periodic
 * interrogation, counter interrogation and clock synchronisation per station. Values map
 * to tags by IOA (and the tag's type); quality and CP56Time2a come along. Commands go out
 * as the tag's command type, confirmed per the station's cmdc (0 APCI acknowledgement, 1
 * activation confirmation, 2 activation termination, 3 the first of them). On
 * tcp-redundant lines (parallel policy) one connection is started and carries data, the
 * other is kept alive with TESTFR; when the started one fails the other is started at once
 * and interrogated. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iec104.h"

/* The quality a value that did not fit the tag gets: NaN and infinities invalid, a value
 * beyond the tag's range (saturated) overflow. */
static unsigned
iec_fit_quality(enum iec_fit fit)
{
	return fit == IEC_FIT_NAN ? Q_INVALID : fit == IEC_FIT_RANGE ? Q_OVERFLOW : 0;
}

void
iec_client_station_free(struct station *st)
{
	struct iec_stn *sn = station_priv(st);
	struct iec_cmd *c;

	while ((c = sn->cmds) != NULL) {
		sn->cmds = c->next;
		if (c->msg)
			c->msg->cmd = NULL; /* its frame, still waiting for the k window, goes with its session */
		write_done(c->wr, -1, "station stopped");
		free(c->exec);
		free(c);
	}
}

static struct session *
iec_client_session(struct station *st)
{
	struct session *s = line_active_session(station_line(st));

	return s && ((struct iec_sess *)session_priv(s))->state == IEC_STARTED ? s : NULL;
}

static void
iec_send_system(struct station *st, uint8_t type, uint8_t qualifier)
{
	struct session *s = iec_client_session(st);
	struct iec_stn *sn = station_priv(st);
	struct iec_asdu a = { .type = type, .cot = COT_ACT, .oa = (uint8_t)line_conf(station_line(st))->line_number,
		.ca = sn->ca, .nobj = 1 };

	if (!s)
		return;
	a.obj[0].qualifier = qualifier;
	if (type == C_CS_NA_1) {
		a.obj[0].has_time = true;
		a.obj[0].time_ms = time_now_ms();
	}
	iec_send_asdu(s, &a, NULL);
}

void
iec_gi_cb(void *arg)
{
	struct station *st = arg;
	const struct iec_station_conf *c = sconf(st);

	iec_send_system(st, C_IC_NA_1, 20);
	if (c->gi_ms)
		ptimer_start(((struct iec_stn *)station_priv(st))->gi, c->gi_ms);
}

void
iec_ci_cb(void *arg)
{
	struct station *st = arg;
	const struct iec_station_conf *c = sconf(st);

	iec_send_system(st, C_CI_NA_1, 5); /* QCC: general counter request, RQT 5 */
	if (c->ci_ms)
		ptimer_start(((struct iec_stn *)station_priv(st))->ci, c->ci_ms);
}

void
iec_cs_cb(void *arg)
{
	struct station *st = arg;
	const struct iec_station_conf *c = sconf(st);

	iec_send_system(st, C_CS_NA_1, 0);
	if (c->cs_ms)
		ptimer_start(((struct iec_stn *)station_priv(st))->cs, c->cs_ms);
}

/* STARTDT confirmed: interrogate every station, synchronise clocks, start the periods. */
void
iec_client_started(struct session *s)
{
	struct line *l = session_line(s);

	log_info("line %s: %s: data transfer started", line_name(l), session_peer(s));
	for (int i = 0; i < line_nstations(l); i++) {
		struct station *st = line_station(l, i);
		struct iec_stn *sn = station_priv(st);
		const struct iec_station_conf *c = sconf(st);
		if (station_conf(st)->simulation)
			continue;
		if (c->cs_ms)
			iec_cs_cb(st);
		iec_gi_cb(st);
		if (c->ci_ms)
			ptimer_start(sn->ci, c->ci_ms);
	}
}

static void
iec_client_start(struct session *s)
{
	struct iec_sess *is = session_priv(s);

	if (is->state != IEC_STOPPED)
		return;
	is->state = IEC_STARTING;
	iec_send_u(s, IEC_U_STARTDT_ACT);
}

static void
iec_client_connect(struct session *s)
{
	struct line *l = session_line(s);

	iec_session_init(s);
	/* the first connection up carries data; a second (parallel) one stays stopped */
	if (!line_active_session(l))
		line_set_active_session(l, s);
	if (line_active_session(l) == s)
		iec_client_start(s);
}

static void
iec_client_close(struct session *s)
{
	struct iec_sess *is = session_priv(s);
	struct line *l = session_line(s);

	iec_mq_clear(&is->out);
	iec_mq_clear(&is->sent);
	/* commands waiting on this connection fail */
	for (int i = 0; i < line_nstations(l); i++) {
		struct iec_stn *sn = station_priv(line_station(l, i));
		struct iec_cmd *c;
		while (line_active_session(l) == s && (c = sn->cmds) != NULL) {
			sn->cmds = c->next;
			write_done(c->wr, -1, "connection lost");
			free(c->exec);
			free(c);
		}
	}
	/* parallel: the standby takes over (the core chooses it; iec_client_start starts it) */
}

/* A command's confirmation: ActCon (7) or ActTerm (10), positive or negative. */
static void
iec_client_confirm(struct session *s, struct station *st, const struct iec_asdu *a)
{
	struct iec_stn *sn = station_priv(st);
	const struct iec_station_conf *c = sconf(st);

	for (int k = 0; k < a->nobj; k++) {
		const struct iec_obj *o = &a->obj[k];
		struct iec_cmd **pp, *cmd;

		for (pp = &sn->cmds; (cmd = *pp) != NULL; pp = &cmd->next)
			if (cmd->type == a->type && cmd->ioa == o->ioa && !cmd->msg)
				break; /* (one still waiting for the k window was not sent: not this one) */
		if (!cmd) {
			/* an ActTerm after the ActCon that completed it (cmdc 1) is normal */
			if (a->cot == COT_ACTTERM && !a->pn)
				log_debug("line %s: station %s: %s ioa %u terminated", line_name(session_line(s)),
				    station_name(st), iec_type_name(a->type), o->ioa);
			else
				log_warnx("line %s: station %s: confirmation of a command not sent (%s ioa %u cot %u), ignored",
				    line_name(session_line(s)), station_name(st), iec_type_name(a->type), o->ioa, a->cot);
			continue;
		}
		if (a->pn || (a->cot >= COT_UNKNOWN_TYPE && a->cot <= COT_UNKNOWN_IOA)) {
			char why[80];
			*pp = cmd->next;
			if (a->cot >= COT_UNKNOWN_TYPE && a->cot <= COT_UNKNOWN_IOA)
				snprintf(why, sizeof(why), "negative: %s", a->cot == COT_UNKNOWN_TYPE ? "unknown type" :
				    a->cot == COT_UNKNOWN_COT ? "unknown cause" : a->cot == COT_UNKNOWN_CA ?
				    "unknown common address" : "unknown information object address");
			else
				snprintf(why, sizeof(why), "%s", a->cot == COT_ACTTERM ? "negative activation termination" :
				    "negative activation confirmation");
			write_done(cmd->wr, -1, why);
			free(cmd->exec);
			free(cmd);
			continue;
		}
		if (cmd->selecting && a->cot == COT_ACTCON) {
			/* the select is confirmed: now execute, unless the requester had its answer
			 * meanwhile (the core's write timeout): a write reported failed never goes */
			if (write_req_answered(cmd->wr)) {
				log_warnx("line %s: station %s: %s ioa %u: select confirmed after the write timed out: not "
				    "executed", line_name(session_line(s)), station_name(st), iec_type_name(a->type), o->ioa);
				*pp = cmd->next;
				write_done(cmd->wr, -1, "select confirmed too late");
				free(cmd->exec);
				free(cmd);
				continue;
			}
			cmd->selecting = false;
			if (c->cmdc == 0) {
				/* done when the execute is acknowledged: the frame holds the write */
				struct iec_asdu *exec = cmd->exec;
				struct write_req *wr = cmd->wr;
				*pp = cmd->next;
				free(cmd);
				iec_send_command(s, exec, wr, NULL);
				free(exec);
			} else
				iec_send_command(s, cmd->exec, NULL, cmd);
			continue;
		}
		bool done = (c->cmdc == 1 && a->cot == COT_ACTCON) || (c->cmdc == 2 && a->cot == COT_ACTTERM) ||
		    c->cmdc == 3;
		if (a->cot == COT_ACTCON) {
			/* the value the device confirms goes to the tag */
			struct value v = { .type = stag_type(cmd->tag) };
			stag_update(cmd->tag, &v, iec_fit_quality(iec_obj_to_value(a->type, o, &v)),
			    o->has_time ? o->time_ms : 0);
		}
		if (done) {
			*pp = cmd->next;
			write_done(cmd->wr, 0, a->cot == COT_ACTCON ? "activation confirmed" : "activation terminated");
			free(cmd->exec);
			free(cmd);
		}
	}
}

void
iec_client_asdu(struct session *s, const struct iec_asdu *a)
{
	struct line *l = session_line(s);
	struct station *st = iec_station_by_ca(l, a->ca);

	if (s != line_active_session(l))
		return; /* the standby carries no data */
	if (!iec_is_monitor(a->type) && lpriv(l)->prm.cot_len == 2 && a->oa != 0 &&
	    a->oa != (uint8_t)line_conf(l)->line_number) {
		/* 101 7.2.3: a confirmation for another controlling station (its originator address);
		 * 0 is taken too, as many stations send it whoever asked */
		log_debug("line %s: %s: %s cause %u for originator address %u, not ours (%u), ignored", line_name(l),
		    session_peer(s), iec_type_name(a->type), a->cot, a->oa, (uint8_t)line_conf(l)->line_number);
		return;
	}
	if (!st) {
		log_warnx("line %s: %s: %s for unknown common address %u, ignored", line_name(l), session_peer(s),
		    iec_type_name(a->type), a->ca);
		return;
	}
	if (iec_is_command(a->type) && (a->cot == COT_ACTCON || a->cot == COT_ACTTERM || a->cot >= COT_UNKNOWN_TYPE)) {
		iec_client_confirm(s, st, a);
		return;
	}
	if (a->cot >= COT_UNKNOWN_TYPE && a->cot <= COT_UNKNOWN_IOA) {
		char why[160];
		snprintf(why, sizeof(why), "%s refused by the station: cause %u", iec_type_name(a->type), a->cot);
		station_note_error(st, why);
		return;
	}
	if (!iec_is_monitor(a->type)) {
		if (a->type == C_IC_NA_1 && a->cot == COT_ACTTERM)
			log_debug("line %s: station %s: interrogation done", line_name(l), station_name(st));
		else if (a->type == M_EI_NA_1)
			log_info("line %s: station %s: end of initialisation", line_name(l), station_name(st));
		if (a->pn) {
			char why[160];
			snprintf(why, sizeof(why), "%s: negative confirmation (cause %u)", iec_type_name(a->type), a->cot);
			station_note_error(st, why);
		}
		return;
	}
	struct iec_stn *sn = station_priv(st);
	int next = -1; /* objects mostly come in address order: try the entry after the last */
	for (int k = 0; k < a->nobj; k++) {
		const struct iec_obj *o = &a->obj[k];
		int first = next >= 0 && next < sn->nidx && sn->idx[next].ioa == o->ioa &&
		    (next == 0 || sn->idx[next - 1].ioa != o->ioa) ? next : iec_find(sn, o->ioa);
		for (int i = first; i >= 0 && i < sn->nidx && sn->idx[i].ioa == o->ioa; i++) {
			next = i + 1;
			struct stag *t = station_stag(st, sn->idx[i].tag);
			const struct iec_tag *it = itag(t);
			struct value v = { .type = stag_type(t) };

			if (stag_conf(t)->dir == TD_OUT || (it->type && iec_is_command(it->type)))
				continue; /* an output sharing the IOA */
			if (v.type != VT_BOOL && v.type != VT_DPI && v.type != VT_INT && v.type != VT_FLOAT)
				continue; /* a string or time tag takes no IEC 104 value */
			unsigned q = iec_fit_quality(iec_obj_to_value(a->type, o, &v));
			stag_update(t, &v, q | iec_q_from_wire(a->type, o->q) | (o->time_invalid ? Q_INVALID : 0),
			    o->has_time ? o->time_ms : 0);
		}
	}
	station_set_comm(st, true, NULL);
}

static void
iec_client_write(struct stag *t, struct write_req *req)
{
	struct station *st = stag_station(t);
	struct iec_stn *sn = station_priv(st);
	const struct iec_tag *it = itag(t);
	const struct iec_tag_conf *tc = stag_conf(t)->pconf;
	struct session *s = iec_client_session(st);
	struct iec_asdu a = { .type = it->type, .cot = COT_ACT, .oa = (uint8_t)line_conf(station_line(st))->line_number,
		.ca = sn->ca, .nobj = 1 };
	struct iec_cmd *cmd;

	if (!iec_is_command(it->type)) {
		write_done(req, -1, "the tag's iec_type is not a command type");
		return;
	}
	if (!s) {
		write_done(req, -1, "not connected (no started connection)");
		return;
	}
	a.obj[0].ioa = it->ioa;
	if (iec_value_fit(it->type, write_req_value(req), &a.obj[0]) != IEC_FIT_OK) {
		/* never a clamped command: the device would do what nobody asked */
		double min = 0, max = 0, step;
		char val[64], why[160];
		iec_value_range(it->type, &min, &max, &step);
		value_format(write_req_value(req), val, sizeof(val));
		snprintf(why, sizeof(why), "value %s out of the range of %s (%.10g..%.10g)", val, iec_type_name(it->type),
		    min, max);
		write_done(req, -1, why);
		return;
	}
	if (iec_has_time(it->type)) {
		a.obj[0].has_time = true;
		a.obj[0].time_ms = time_now_ms();
	}
	if ((cmd = calloc(1, sizeof(*cmd))) == NULL) {
		write_done(req, -1, "out of memory");
		return;
	}
	cmd->wr = req;
	cmd->tag = t;
	cmd->type = it->type;
	cmd->ioa = it->ioa;
	if (tc && tc->sbo) {
		if ((cmd->exec = malloc(sizeof(*cmd->exec))) == NULL) {
			free(cmd);
			write_done(req, -1, "out of memory");
			return;
		}
		*cmd->exec = a;
		cmd->selecting = true;
		a.obj[0].select = true;
	}
	if (sconf(st)->cmdc == 0 && !cmd->selecting) {
		/* done when the station acknowledges the I-frame */
		free(cmd);
		iec_send_command(s, &a, req, NULL);
		return;
	}
	/* commands the core timed out (the station never confirmed) go; the new one joins the
	 * end, so that confirmations match the oldest command of their type and address */
	struct iec_cmd **pp = &sn->cmds;
	while (*pp) {
		struct iec_cmd *old = *pp;
		if (write_req_answered(old->wr) && !old->msg) {
			*pp = old->next;
			write_done(old->wr, -1, "no confirmation");
			free(old->exec);
			free(old);
		} else {
			pp = &old->next;
		}
	}
	*pp = cmd;
	iec_send_command(s, &a, NULL, cmd);
}

/* Command cmd was not sent: its requester was answered while it waited for the k window. */
void
iec_client_cmd_unsent(struct iec_cmd *cmd)
{
	struct iec_stn *sn = station_priv(stag_station(cmd->tag));

	for (struct iec_cmd **pp = &sn->cmds; *pp; pp = &(*pp)->next)
		if (*pp == cmd) {
			*pp = cmd->next;
			break;
		}
	write_done(cmd->wr, -1, "not sent: answered before the k window let it go");
	free(cmd->exec);
	free(cmd);
}


const struct proto_ops iec104_client_ops = {
	.name = "iec104-client",
	.transport = PROTO_CONNECT,
	.redundancy = REDUND_PARALLEL,
	.line_keys = iec_client_line_keys,
	.station_keys = iec_client_station_keys,
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
	.on_connect = iec_client_connect,
	.max_frame = IEC_MAX_APDU,
	.frame_len = iec_frame_len,
	.on_frame = iec_client_on_frame,
	.on_frames_done = iec_frames_done,
	.on_close = iec_client_close,
	.on_takeover = iec_client_start,
	.on_tag_write = iec_client_write,
	.counters = iec_counters,
};

