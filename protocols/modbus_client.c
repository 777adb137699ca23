/* modbus_client.c: the modbus-client (master) protocol over Modbus TCP (frames in
 * modbus_codec.c; configuration and tag addresses in modbus.c).
 *
 * Each station is a unit id. Its tags are merged into as few read requests as possible
 * (same function, addresses within max_gap, up to max_read_registers / max_read_bits); a
 * poll queues them all. Up to max_outstanding requests are in flight on the connection,
 * matched to responses by transaction id; a late or stray response is dropped and never
 * shifts later transactions out of step. A unit that does not answer (after its retries)
 * or answers "device failure" / "gateway" exceptions is in communication error (its tags
 * invalid) and its remaining requests of that poll are dropped, so it does not stall the
 * other units; other exceptions invalidate the tags of that request only. Writes: FC 5 for
 * coils, FC 6 or 16 for registers (16 always for multi-register types), FC 22 for a bit in
 * a register (or read-modify-write). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modbus.h"

/* One client request: a planned read, or a write (possibly read-modify-write). */
struct mb_txn {
	struct mb_txn *next;
	struct station *st;
	int plan;                 /* index of the planned read, or -1 for a write */
	struct stag *wtag;        /* writes */
	struct write_req *wr;
	bool rmw_read;            /* the read half of a read-modify-write */
	bool counted;             /* a new write in the queue (MB_MAX_QUEUED_WRITES) */
	struct mb_sent sent;
	uint16_t wregs[4];        /* FC 16: the registers to write */
	uint8_t adu[MB_MAX_ADU];
	size_t adulen;
	uint16_t tid;
	int tries;
	struct ptimer *timer;
	struct session *on;       /* in flight on this session */
};

/* A planned read: one request covering tags [first, first + n) of the station's order. */
struct mb_plan {
	uint8_t fc;
	uint16_t addr;
	uint16_t count;
	int first, n;
};

struct mb_cstation {
	uint8_t unit;
	struct mb_plan *plan;
	int nplan;
	int *order;               /* polled stag indices, sorted by function and address */
	int norder;
	int queued;               /* this poll's requests not yet answered */
	bool failed;              /* this poll lost the unit */
	bool lost;                /* the unit is not answering: polls send one probe, no retries */
};

struct mb_cline {
	struct mb_txn *queue, **qtail; /* waiting to be sent, in order */
	struct mb_txn **wtail;         /* the end of the writes at the queue's head */
	int nwrites;                   /* writes queued */
	int inflight;
	uint16_t next_tid;
};

/* Writes queued at once on a line; more are refused ("busy") rather than kept for ever. */
#define MB_MAX_QUEUED_WRITES 1000

struct mb_csession {
	struct mb_txn *inflight;  /* sent, waiting for their answers */
};

/* ---- planning ---- */

static uint8_t
mb_read_fc(uint8_t fn)
{
	return fn; /* Fn 1..4 are the read function codes */
}

static struct station *mb_sort_station;

static int
mb_order_cmp(const void *x, const void *y)
{
	const struct mb_addr *a = &mb_tag(station_stag(mb_sort_station, *(const int *)x))->a;
	const struct mb_addr *b = &mb_tag(station_stag(mb_sort_station, *(const int *)y))->a;

	if (a->fn != b->fn)
		return a->fn - b->fn;
	return (int)a->addr - (int)b->addr;
}

/* Merge the station's tags into read requests. */
static int
mb_plan_station(struct station *st)
{
	struct mb_cstation *cs = station_priv(st);
	const struct mb_station_conf *c = station_conf(st)->pconf;
	int n = station_ntags(st);

	cs->order = calloc((size_t)(n ? n : 1), sizeof(*cs->order));
	cs->plan = calloc((size_t)(n ? n : 1), sizeof(*cs->plan));
	if (!cs->order || !cs->plan)
		return -1;
	for (int i = 0; i < n; i++) {
		struct stag *t = station_stag(st, i);
		const struct mb_tag *mt = mb_tag(t);
		if (mt->a.ignore || stag_conf(t)->dir == TD_OUT)
			continue; /* ignored, or output only: never polled */
		cs->order[cs->norder++] = i;
	}
	mb_sort_station = st;
	qsort(cs->order, (size_t)cs->norder, sizeof(int), mb_order_cmp);
	for (int i = 0; i < cs->norder; i++) {
		const struct mb_addr *a = &mb_tag(station_stag(st, cs->order[i]))->a;
		unsigned span = a->nregs ? a->nregs : 1;
		unsigned max = a->fn <= 2 ? (unsigned)c->max_bits : (unsigned)c->max_regs;
		struct mb_plan *p = cs->nplan ? &cs->plan[cs->nplan - 1] : NULL;

		if (p && p->fc == mb_read_fc(a->fn)) {
			unsigned end = (unsigned)p->addr + p->count; /* one past the last */
			unsigned nend = (unsigned)a->addr + span;
			if (a->addr < end) { /* overlaps (bits of one register, or shared addresses) */
				if (nend > end && nend - p->addr <= max)
					p->count = (uint16_t)(nend - p->addr);
				if (nend <= end || nend - p->addr <= max) {
					p->n++;
					continue;
				}
			} else if ((unsigned)a->addr - end <= (unsigned)c->max_gap && nend - p->addr <= max) {
				p->count = (uint16_t)(nend - p->addr);
				p->n++;
				continue;
			}
		}
		p = &cs->plan[cs->nplan++];
		p->fc = mb_read_fc(a->fn);
		p->addr = a->addr;
		p->count = (uint16_t)span;
		p->first = i;
		p->n = 1;
	}
	return 0;
}

static int
mb_client_station_init(struct station *st)
{
	struct mb_cstation *cs = station_priv(st);
	char err[160];

	mb_station_addrs(st);
	if (!station_conf(st)->simulation && mb_unit_of(station_conf(st), &cs->unit, err, sizeof(err)) != 0)
		return -1;
	if (mb_plan_station(st) != 0) {
		/* the core frees only stations whose init succeeded */
		free(cs->order);
		free(cs->plan);
		return -1;
	}
	return 0;
}

static void
mb_client_station_free(struct station *st)
{
	struct mb_cstation *cs = station_priv(st);

	free(cs->order);
	free(cs->plan);
}

static int
mb_client_line_init(struct line *l)
{
	struct mb_cline *cl = line_priv(l);

	cl->qtail = &cl->queue;
	return 0;
}

/* ---- transactions ---- */

static void mb_pump(struct line *l);
static void mb_txn_timeout(void *arg);


static struct mb_txn *
mb_txn_new(struct station *st, int plan)
{
	struct mb_txn *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->st = st;
	t->plan = plan;
	if ((t->timer = station_timer(st, mb_txn_timeout, t)) == NULL) {
		free(t);
		return NULL;
	}
	return t;
}

static void
mb_txn_free(struct mb_txn *t)
{
	ptimer_free(t->timer);
	free(t);
}

static void
mb_enqueue(struct line *l, struct mb_txn *t, bool front)
{
	struct mb_cline *cl = line_priv(l);

	if (front) {
		/* writes (and retries) go before the polls, in the order they came */
		if (!cl->wtail)
			cl->wtail = &cl->queue;
		t->next = *cl->wtail;
		*cl->wtail = t;
		if (cl->qtail == cl->wtail)
			cl->qtail = &t->next;
		cl->wtail = &t->next;
	} else {
		t->next = NULL;
		*cl->qtail = t;
		cl->qtail = &t->next;
	}
}

/* Encode t's request with a fresh transaction id. */
static int
mb_encode(struct line *l, struct mb_txn *t)
{
	struct mb_cline *cl = line_priv(l);
	struct mb_cstation *cs = station_priv(t->st);
	const struct mb_sent *s = &t->sent;
	uint16_t regs[4];
	uint8_t bit;

	t->tid = cl->next_tid++;
	switch (s->fc) {
	case MB_FC_READ_COILS:
	case MB_FC_READ_DISCRETE:
	case MB_FC_READ_HOLDING:
	case MB_FC_READ_INPUT:
		t->adulen = mb_encode_read(t->adu, t->tid, cs->unit, s->fc, s->addr, s->count);
		break;
	case MB_FC_WRITE_COIL:
		t->adulen = mb_encode_write_coil(t->adu, t->tid, cs->unit, s->addr, s->value != 0);
		break;
	case MB_FC_WRITE_REGISTER:
		t->adulen = mb_encode_write_register(t->adu, t->tid, cs->unit, s->addr, s->value);
		break;
	case MB_FC_WRITE_REGISTERS:
		/* the registers were kept in the ADU of the previous encoding: rebuild from sent */
		for (unsigned i = 0; i < s->count && i < 4; i++)
			regs[i] = t->wregs[i];
		t->adulen = mb_encode_write_registers(t->adu, t->tid, cs->unit, s->addr, regs, s->count);
		break;
	case MB_FC_MASK_WRITE:
		t->adulen = mb_encode_mask_write(t->adu, t->tid, cs->unit, s->addr, s->value, s->or_mask);
		break;
	case MB_FC_WRITE_COILS:
		bit = s->value != 0;
		t->adulen = mb_encode_write_coils(t->adu, t->tid, cs->unit, s->addr, &bit, 1);
		break;
	default:
		t->adulen = 0;
	}
	return t->adulen ? 0 : -1;
}

/* Send what the queue holds, up to max_outstanding in flight. */
static void
mb_pump(struct line *l)
{
	struct mb_cline *cl = line_priv(l);
	const struct mb_line_conf *c = line_conf(l)->pconf;
	struct session *s = line_active_session(l);
	struct mb_txn *t;

	while (s && cl->queue && cl->inflight < c->max_outstanding) {
		struct mb_csession *ss = session_priv(s);
		t = cl->queue;
		cl->queue = t->next;
		if (!cl->queue)
			cl->qtail = &cl->queue;
		if (cl->wtail == &t->next || !cl->queue)
			cl->wtail = NULL; /* the writes segment is empty again */
		if (t->counted) {
			t->counted = false;
			cl->nwrites--;
		}
		if (t->plan < 0 && write_req_answered(t->wr)) {
			/* the requester was told it timed out: do not write it to the device now */
			write_done(t->wr, -1, "timed out in the queue");
			mb_txn_free(t);
			continue;
		}
		if (mb_encode(l, t) != 0) {
			log_warnx("line %s: station %s: request cannot be encoded, dropped", line_name(l), station_name(t->st));
			mb_txn_free(t);
			continue;
		}
		t->tries++;
		t->on = s;
		t->next = ss->inflight;
		ss->inflight = t;
		cl->inflight++;
		ptimer_start(t->timer, station_conf(t->st)->response_timeout_ms);
		session_write(s, t->adu, t->adulen);
		session_count_frame(s, true);
		mb_trace_adu(s, true, false, t->adu, t->adulen);
	}
}

static void
mb_unlink_inflight(struct mb_txn *t)
{
	struct line *l = station_line(t->st);
	struct mb_cline *cl = line_priv(l);
	struct mb_csession *ss = session_priv(t->on);

	for (struct mb_txn **pp = &ss->inflight; *pp; pp = &(*pp)->next)
		if (*pp == t) {
			*pp = t->next;
			cl->inflight--;
			break;
		}
	t->on = NULL;
	ptimer_stop(t->timer);
}

/* The end of one of a poll's requests. */
static void
mb_poll_step(struct station *st)
{
	struct mb_cstation *cs = station_priv(st);

	if (cs->queued > 0 && --cs->queued == 0) {
		if (!cs->failed)
			station_set_comm(st, true, NULL);
		cs->failed = false;
		station_poll_done(st);
	}
}

/* The unit is lost for this poll: drop its other queued reads, so it stalls nobody. */
static void
mb_station_lost(struct station *st, const char *why)
{
	struct line *l = station_line(st);
	struct mb_cline *cl = line_priv(l);
	struct mb_cstation *cs = station_priv(st);

	cs->failed = true;
	cs->lost = true;
	station_set_comm(st, false, why);
	for (struct mb_txn **pp = &cl->queue; *pp;) {
		struct mb_txn *t = *pp;
		if (t->st == st && t->plan >= 0) {
			*pp = t->next;
			mb_txn_free(t);
			cs->queued--;
		} else {
			pp = &t->next;
		}
	}
	cl->qtail = &cl->queue;
	while (*cl->qtail)
		cl->qtail = &(*cl->qtail)->next;
}

static void
mb_txn_fail(struct mb_txn *t, const char *why, bool unit_lost)
{
	struct station *st = t->st;

	if (t->plan >= 0) {
		struct mb_cstation *cs = station_priv(st);
		const struct mb_plan *p = &cs->plan[t->plan];
		if (unit_lost) {
			mb_station_lost(st, why);
		} else {
			for (int i = 0; i < p->n; i++) {
				struct stag *tag = station_stag(st, cs->order[p->first + i]);
				stag_set_quality(tag, stag_quality(tag) | Q_INVALID);
			}
			station_note_error(st, why);
		}
		mb_poll_step(st);
	} else {
		if (unit_lost)
			station_note_error(st, why);
		write_done(t->wr, -1, why);
	}
	mb_txn_free(t);
}

static void
mb_txn_timeout(void *arg)
{
	struct mb_txn *t = arg;
	struct line *l = station_line(t->st);
	const struct mb_station_conf *c = station_conf(t->st)->pconf;
	struct mb_cstation *cs = station_priv(t->st);
	char why[160];

	mb_unlink_inflight(t);
	line_counter_add(l, MB_CNT_TIMEOUTS, 1);
	if (t->tries <= c->retries && !cs->lost) {
		/* again, with a new transaction id: a late answer to the old one is then stray */
		mb_enqueue(l, t, true);
		mb_pump(l);
		return;
	}
	snprintf(why, sizeof(why), "unit %u: no answer to %s at %u within %.1f s (%d tr%s)", cs->unit,
	    mb_fc_name(t->sent.fc) ? mb_fc_name(t->sent.fc) : "request", t->sent.addr,
	    station_conf(t->st)->response_timeout_ms / 1000.0, t->tries, t->tries == 1 ? "y" : "ies");
	mb_txn_fail(t, why, true);
	mb_pump(l);
}

/* A read answered: the values of the request's tags. */
static void
mb_apply_read(struct mb_txn *t, const struct mb_response *rs)
{
	struct mb_cstation *cs = station_priv(t->st);
	const struct mb_plan *p = &cs->plan[t->plan];
	int64_t now = 0; /* Modbus carries no source time */

	for (int i = 0; i < p->n; i++) {
		struct stag *tag = station_stag(t->st, cs->order[p->first + i]);
		const struct mb_addr *a = &mb_tag(tag)->a;
		unsigned off = (unsigned)(a->addr - p->addr);
		struct value v = { .type = stag_type(tag) };
		char err[120];

		if (a->fn <= 2) {
			v.i = mb_get_bit(rs->data, off);
			if (v.type == VT_FLOAT)
				v.f = (double)v.i;
		} else if (a->bit >= 0) {
			v.i = (mb_get_reg(rs->data, off) >> a->bit) & 1;
			if (v.type == VT_FLOAT)
				v.f = (double)v.i;
		} else {
			uint16_t regs[4];
			for (unsigned r = 0; r < a->nregs; r++)
				regs[r] = mb_get_reg(rs->data, off + r);
			if (mb_regs_to_value(a, regs, v.type, &v, err, sizeof(err)) != 0) {
				stag_set_quality(tag, Q_INVALID);
				continue;
			}
			if (v.type == VT_FLOAT && (a->type == MB_T_F32 || a->type == MB_T_F32S))
				v.f = value_float32_decimal(v.f);
		}
		stag_update(tag, &v, 0, now);
	}
}

/* A read-modify-write: the register is read; now write it back with the bit changed. */
static int
mb_rmw_write(struct line *l, struct mb_txn *t, const struct mb_response *rs)
{
	const struct mb_addr *a = &mb_tag(t->wtag)->a;
	const struct mb_station_conf *c = station_conf(t->st)->pconf;
	uint16_t reg = mb_get_reg(rs->data, 0);
	char err[80];
	int bit = mb_value_to_bit(write_req_value(t->wr), err, sizeof(err));

	if (bit < 0)
		return -1;
	reg = (uint16_t)((reg & ~(1u << a->bit)) | ((unsigned)bit << a->bit));
	t->rmw_read = false;
	t->tries = 0;
	if (c->reg_write == 0) {
		t->sent = (struct mb_sent){ .fc = MB_FC_WRITE_REGISTER, .addr = a->addr, .count = 1, .value = reg };
	} else {
		t->sent = (struct mb_sent){ .fc = MB_FC_WRITE_REGISTERS, .addr = a->addr, .count = 1 };
		t->wregs[0] = reg;
	}
	mb_enqueue(l, t, true);
	return 0;
}

/* One response ADU, as the core's frame loop hands it over: matched to its request by
 * transaction id (a late or stray one is dropped without losing step). */
static int
mb_client_frame(struct session *s, const uint8_t *buf, size_t len)
{
	struct line *l = session_line(s);
	struct mb_csession *ss = session_priv(s);
	struct mb_mbap h;
	struct mb_response rs;
	struct mb_txn *t;
	size_t alen;
	char err[160];
	int r;

	if (mb_frame(buf, len, &h, &alen, err, sizeof(err)) <= 0) {
		session_protocol_error(s, "%s", err); /* mb_frame_len took it: cannot happen */
		return -1;
	}
	mb_trace_adu(s, false, true, buf, alen);
	for (t = ss->inflight; t && t->tid != h.tid; t = t->next)
		;
	if (!t) {
		/* late (timed out and sent again) or never asked: drop it, stay in step */
		log_warnx("line %s: %s: response with transaction id %u matches no request, dropped",
		    line_name(l), session_peer(s), h.tid);
		return 0;
	}
	struct mb_cstation *cs = station_priv(t->st);
	mb_unlink_inflight(t);
	if (h.unit != cs->unit) {
		snprintf(err, sizeof(err), "response from unit %u to a request for unit %u", h.unit, cs->unit);
		r = -1;
	} else {
		r = mb_decode_response(buf + MB_MBAP_LEN, alen - MB_MBAP_LEN, &t->sent, &rs, err, sizeof(err));
	}
	if (r != 0) {
		char why[240];
		snprintf(why, sizeof(why), "unit %u: malformed response: %s", cs->unit, err);
		mb_txn_fail(t, why, false);
	} else if (rs.exception) {
		char why[240];
		bool lost = rs.excode == MB_EX_DEVICE_FAILURE || rs.excode == MB_EX_GATEWAY_PATH ||
		    rs.excode == MB_EX_GATEWAY_TARGET;
		mb_count_exception_code(l, rs.excode);
		snprintf(why, sizeof(why), "unit %u: %s at %u: exception %u, %s", cs->unit,
		    mb_fc_name(t->sent.fc) ? mb_fc_name(t->sent.fc) : "request", t->sent.addr, rs.excode,
		    mb_exception_name(rs.excode));
		if (t->plan < 0)
			lost = false;
		mb_txn_fail(t, why, lost);
	} else if (t->plan >= 0) {
		cs->lost = false;
		/* the next request first: the device works on it while we update the tags */
		mb_pump(l);
		mb_apply_read(t, &rs);
		mb_poll_step(t->st);
		mb_txn_free(t);
	} else if (t->rmw_read) {
		if (mb_rmw_write(l, t, &rs) != 0)
			mb_txn_fail(t, "value is not a bit", false);
	} else {
		write_done(t->wr, 0, "ok");
		mb_txn_free(t);
	}
	mb_pump(l);
	return 0;
}

static void
mb_client_poll(struct station *st)
{
	struct line *l = station_line(st);
	struct mb_cstation *cs = station_priv(st);

	if (cs->queued > 0)
		return; /* the previous poll is still running: it decides */
	if (cs->nplan == 0) {
		station_set_comm(st, true, NULL);
		station_poll_done(st);
		return;
	}
	/* a unit that stopped answering gets one probe a poll, so that it cannot stall the
	 * other units of the line for its whole poll; once it answers, it is polled in full */
	for (int i = 0; i < (cs->lost ? 1 : cs->nplan); i++) {
		struct mb_txn *t = mb_txn_new(st, i);
		if (!t)
			break;
		t->sent = (struct mb_sent){ .fc = cs->plan[i].fc, .addr = cs->plan[i].addr, .count = cs->plan[i].count };
		mb_enqueue(l, t, false);
		cs->queued++;
	}
	mb_pump(l);
}

static void
mb_client_write(struct stag *tag, struct write_req *req)
{
	struct station *st = stag_station(tag);
	struct line *l = station_line(st);
	const struct mb_addr *a = &mb_tag(tag)->a;
	const struct mb_station_conf *c = station_conf(st)->pconf;
	struct mb_txn *t;
	char err[120];
	int bit;

	if (a->ignore) {
		write_done(req, -1, "tag is %IGNOREd");
		return;
	}
	if (a->fn == 2 || a->fn == 4) {
		write_done(req, -1, "discrete inputs and input registers are read-only");
		return;
	}
	if (!line_active_session(l)) {
		write_done(req, -1, "not connected");
		return;
	}
	if (((struct mb_cline *)line_priv(l))->nwrites >= MB_MAX_QUEUED_WRITES) {
		write_done(req, -1, "busy: too many writes queued for this line");
		return;
	}
	if ((t = mb_txn_new(st, -1)) == NULL) {
		write_done(req, -1, "out of memory");
		return;
	}
	t->wtag = tag;
	t->wr = req;
	if (a->fn == 1) {
		if ((bit = mb_value_to_bit(write_req_value(req), err, sizeof(err))) < 0)
			goto refuse;
		t->sent = (struct mb_sent){ .fc = MB_FC_WRITE_COIL, .addr = a->addr, .count = 1,
			.value = bit ? 0xFF00 : 0x0000 };
	} else if (a->bit >= 0) {
		if ((bit = mb_value_to_bit(write_req_value(req), err, sizeof(err))) < 0)
			goto refuse;
		if (c->bit_write == 0) {
			uint16_t mask = (uint16_t)(1u << a->bit);
			t->sent = (struct mb_sent){ .fc = MB_FC_MASK_WRITE, .addr = a->addr, .count = 1,
				.value = (uint16_t)~mask, .or_mask = bit ? mask : 0 };
		} else {
			t->rmw_read = true;
			t->sent = (struct mb_sent){ .fc = MB_FC_READ_HOLDING, .addr = a->addr, .count = 1 };
		}
	} else {
		if (mb_value_to_regs(a, write_req_value(req), t->wregs, err, sizeof(err)) != 0)
			goto refuse;
		if (a->nregs == 1 && c->reg_write == 0)
			t->sent = (struct mb_sent){ .fc = MB_FC_WRITE_REGISTER, .addr = a->addr, .count = 1,
				.value = t->wregs[0] };
		else
			t->sent = (struct mb_sent){ .fc = MB_FC_WRITE_REGISTERS, .addr = a->addr, .count = a->nregs };
	}
	t->counted = true;
	((struct mb_cline *)line_priv(l))->nwrites++;
	mb_enqueue(l, t, true); /* writes go before polls */
	mb_pump(l);
	return;
refuse:
	mb_txn_free(t);
	write_done(req, -1, err);
}

/* The data session is gone: what waits in the queue goes too. */
static void
mb_flush_queue(struct line *l)
{
	struct mb_cline *cl = line_priv(l);
	struct mb_txn *t;

	while ((t = cl->queue) != NULL) {
		cl->queue = t->next;
		if (t->plan < 0)
			write_done(t->wr, -1, "connection lost");
		else
			mb_poll_step(t->st);
		mb_txn_free(t);
	}
	cl->qtail = &cl->queue;
	cl->wtail = NULL;
	cl->nwrites = 0;
}

static void
mb_client_close(struct session *s)
{
	struct line *l = session_line(s);
	struct mb_csession *ss = session_priv(s);
	struct mb_txn *t;

	/* requests in flight or queued are lost with the connection: polls end (they start
	 * again when the line is up), writes fail */
	while ((t = ss->inflight) != NULL) {
		mb_unlink_inflight(t);
		if (t->plan >= 0)
			mb_poll_step(t->st);
		else
			write_done(t->wr, -1, "connection lost");
		mb_txn_free(t);
	}
	if (line_active_session(l) == s)
		mb_flush_queue(l);
}

/* The line goes. Its sessions closed first (mb_client_close emptied the queue); the
 * stations and their timers are gone already, so only memory is left to free here. */
static void
mb_client_line_free(struct line *l)
{
	struct mb_cline *cl = line_priv(l);
	struct mb_txn *t;

	while ((t = cl->queue) != NULL) {
		cl->queue = t->next;
		if (t->plan < 0)
			write_done(t->wr, -1, "line stopped");
		free(t);
	}
	cl->qtail = &cl->queue;
	cl->wtail = NULL;
	cl->nwrites = 0;
}

const struct proto_ops modbus_client_ops = {
	.name = "modbus-client",
	.transport = PROTO_CONNECT,
	.redundancy = REDUND_ALTERNATE,
	.line_keys = mb_client_line_keys,
	.station_keys = mb_client_station_keys,
	.line_conf_size = sizeof(struct mb_line_conf),
	.station_conf_size = sizeof(struct mb_station_conf),
	.check_station = mb_check_station,
	.check_tag = mb_check_tag,
	.line_size = sizeof(struct mb_cline),
	.station_size = sizeof(struct mb_cstation),
	.stag_size = sizeof(struct mb_tag),
	.session_size = sizeof(struct mb_csession),
	.line_init = mb_client_line_init,
	.line_free = mb_client_line_free,
	.station_init = mb_client_station_init,
	.station_free = mb_client_station_free,
	.max_frame = MB_MAX_ADU,
	.frame_len = mb_frame_len,
	.on_frame = mb_client_frame,
	.on_close = mb_client_close,
	.on_poll = mb_client_poll,
	.station_needs_trigger = true,
	.on_tag_write = mb_client_write,
	.counters = mb_client_counters,
};
