/* modbus_server.c: the modbus-server (slave) protocol over Modbus TCP (frames in
 * modbus_codec.c; configuration and tag addresses in modbus.c; the register image each
 * station serves in modbus_image.c).
 *
 * Stations are unit ids; the register image is made from the tags each station serves,
 * with the same address syntax. FC 1, 2, 3, 4, 5, 6, 15, 16, 22, 23, and FC 17 and 43 /
 * MEI 14 (identification: the station's vendor_name, product_code, revision, ...).
 * Addresses no served tag covers give "illegal data address"; writes become tag writes
 * routed to the tags' acquirers, and the answer waits for their result. Every request in a
 * well-formed ADU is answered (an exception for what komd does not implement or cannot
 * parse); only a broken MBAP header closes the connection. Pipelined requests on one
 * connection are answered in order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modbus.h"
#include "modbus_image.h"

struct mb_sstation {
	uint8_t unit;
	struct mb_image img;      /* what its served tags cover, and their registers */
	struct ptimer *idle;      /* inactivity_timeout */
};

struct mb_reply;

/* One write routed for a reply: the handle, until its answer comes. */
struct mb_wctx {
	struct mb_reply *r;
	struct write_req *req;
};

/* A request's answer, sent in order once ready (and its writes answered). */
struct mb_reply {
	struct mb_reply *next;
	struct session *s;
	struct station *st;
	struct mb_request rq;
	uint8_t rdata[MB_MAX_PDU]; /* the request's data, kept for FC 23 */
	struct mb_mbap h;
	int waiting;               /* writes not answered yet */
	bool failed;
	char why[160];
	struct mb_wctx *w;
	int nw;
	bool ready;
	uint8_t adu[MB_MAX_ADU];
	size_t len;
};

struct mb_ssession {
	struct mb_reply *head, **tail;
	int n;                    /* answers queued */
};

/* Requests a client may have waiting for answers (its writes routed, say); more are
 * answered "server device busy" (06), up to MB_MAX_BUSY_REPLIES more: past that the
 * client does not read its answers, and the connection closes. */
#define MB_MAX_PENDING_REPLIES 256
#define MB_MAX_BUSY_REPLIES 256

static void
mb_idle_cb(void *arg)
{
	struct station *st = arg;
	char why[120];

	snprintf(why, sizeof(why), "no request from any client within %.0f s",
	    ((const struct mb_station_conf *)station_conf(st)->pconf)->inactivity_ms / 1000.0);
	station_set_comm(st, false, why);
}

static const struct value *
mb_served_value(void *tag)
{
	return stag_value(tag);
}

static void
mb_server_tag_change(struct stag *t)
{
	struct mb_sstation *ss = station_priv(stag_station(t));
	const struct mb_tag *mt = mb_tag(t);

	if (!mt->a.ignore)
		mb_image_changed(&ss->img, mt->a.fn, mt->span);
}

static int
mb_server_station_setup(struct station *st)
{
	struct mb_sstation *ss = station_priv(st);
	const struct mb_station_conf *c = station_conf(st)->pconf;
	char err[160];

	mb_image_init(&ss->img, mb_served_value);
	mb_station_addrs(st);
	if (mb_unit_of(station_conf(st), &ss->unit, err, sizeof(err)) != 0)
		return -1;
	for (int i = 0; i < station_ntags(st); i++) {
		struct stag *t = station_stag(st, i);
		const struct mb_addr *a = &mb_tag(t)->a;
		if (!a->ignore && mb_image_add(&ss->img, a, stag_type(t), stag_conf(t)->dir != TD_IN, t) != 0)
			return -1;
	}
	if (mb_image_plan(&ss->img) != 0)
		return -1;
	for (int fn = 1; fn <= 4; fn++)
		for (int i = 0; i < ss->img.t[fn].nsp; i++)
			((struct mb_tag *)stag_priv(ss->img.t[fn].sp[i].tag))->span = i;
	if (c->inactivity_ms) {
		if ((ss->idle = station_timer(st, mb_idle_cb, st)) == NULL)
			return -1;
		ptimer_start(ss->idle, c->inactivity_ms);
	}
	return 0;
}

static void
mb_server_station_free(struct station *st)
{
	struct mb_sstation *ss = station_priv(st);

	mb_image_free(&ss->img);
}

static int
mb_server_station_init(struct station *st)
{
	/* the core frees only stations whose init succeeded */
	if (mb_server_station_setup(st) != 0) {
		mb_server_station_free(st);
		return -1;
	}
	return 0;
}

/* A served value that cannot be encoded: the station's error. */
static void
mb_server_bad_value(struct station *st, const struct stag *t, const char *err)
{
	char why[200];

	snprintf(why, sizeof(why), "tag %s: value cannot be served at %s: %s", stag_name(t), stag_conf(t)->address,
	    err);
	station_note_error(st, why);
}

/* [addr, addr + count) of the station's table fn (see mb_image_read). 0, or the exception
 * code. Inline: every read request comes here. */
static inline int
mb_server_image_read(struct station *st, int fn, uint16_t addr, uint16_t count, uint16_t *regs, uint8_t *bits)
{
	struct mb_sstation *ss = station_priv(st);
	void *bad = NULL;
	int ex = mb_image_read(&ss->img, fn, addr, count, regs, bits, &bad);

	if (ex == MB_EX_DEVICE_FAILURE && bad)
		mb_server_bad_value(st, bad, ss->img.why);
	return ex;
}

static void mb_reply_flush(struct session *s);

static void
mb_reply_write_cb(void *arg, int status, const char *msg)
{
	struct mb_wctx *w = arg;
	struct mb_reply *r = w->r;

	w->req = NULL;
	if (status != 0 && !r->failed) {
		r->failed = true;
		snprintf(r->why, sizeof(r->why), "%s", msg ? msg : "write failed");
	}
	if (--r->waiting == 0 && r->s)
		mb_reply_flush(r->s);
}

/* Route a write of v to the served tag t for reply r. */
static void
mb_route_write(struct mb_reply *r, struct stag *t, const struct value *v)
{
	struct mb_wctx *w = &r->w[r->nw++];

	w->r = r;
	r->waiting++;
	w->req = stag_write(t, v, mb_reply_write_cb, w);
}


/* The writes of a request: registers regs[0..count) from addr (fn 3), or bits (fn 1).
 * Every address must be covered by tags the station serves as outputs; a multi-register
 * value must be written whole. 0 (writes routed), or the exception code. */
static int
mb_server_write(struct mb_reply *r, int fn, uint16_t addr, uint16_t count, const uint16_t *regs,
    const uint8_t *bits)
{
	const struct mb_sstation *ss = station_priv(r->st);
	struct mb_put *puts;
	int n, ex = mb_image_write(&ss->img, fn, addr, count, regs, bits, &puts, &n);

	if (ex)
		return ex;
	if ((r->w = calloc((size_t)n, sizeof(*r->w))) == NULL) {
		free(puts);
		return MB_EX_DEVICE_FAILURE;
	}
	for (int i = 0; i < n; i++)
		mb_route_write(r, puts[i].tag, &puts[i].v);
	free(puts);
	return 0;
}

static struct station *
mb_station_for_unit(struct line *l, uint8_t unit)
{
	for (int i = 0; i < line_nstations(l); i++) {
		struct station *st = line_station(l, i);
		const struct mb_sstation *ss = station_priv(st);
		if (ss->unit == unit)
			return st;
	}
	return NULL;
}

/* 6.13 report server id: the unit id as server id, run indicator on, and as additional
 * data the identification: "vendor_name product_code revision". */
static size_t
mb_server_id_reply(struct mb_reply *r)
{
	const struct mb_station_conf *c = station_conf(r->st)->pconf;
	char data[3 * (MB_DEVID_MAX_LEN + 1)];
	int n = snprintf(data, sizeof(data), "%s %s %s", c->devid[0], c->devid[1], c->devid[2]);

	if (n < 0)
		return 0;
	return mb_encode_report_server_id(r->adu, r->h.tid, r->h.unit, r->h.unit, true, data,
	    (size_t)n < sizeof(data) ? (size_t)n : sizeof(data) - 1);
}

/* Build the answer of r once its writes are done (or at once for reads). */
static void
mb_reply_build(struct mb_reply *r)
{
	const struct mb_request *q = &r->rq;
	uint16_t regs[MB_MAX_READ_REGS];
	uint8_t bits[MB_MAX_READ_BITS];
	int ex = 0;

	if (r->failed) {
		char why[240];
		snprintf(why, sizeof(why), "write for %s at %u failed: %s", mb_fc_name(q->fc), q->fc == MB_FC_READ_WRITE ?
		    q->waddr : q->addr, r->why);
		station_note_error(r->st, why);
		ex = MB_EX_DEVICE_FAILURE;
	}
	if (!ex) {
		switch (q->fc) {
		case MB_FC_READ_COILS:
		case MB_FC_READ_DISCRETE:
			if ((ex = mb_server_image_read(r->st, q->fc, q->addr, q->count, NULL, bits)) == 0)
				r->len = mb_encode_read_bits_response(r->adu, r->h.tid, r->h.unit, q->fc, bits, q->count);
			break;
		case MB_FC_READ_HOLDING:
		case MB_FC_READ_INPUT:
		case MB_FC_READ_WRITE:
			if ((ex = mb_server_image_read(r->st, q->fc == MB_FC_READ_INPUT ? 4 : 3, q->addr, q->count, regs,
			    NULL)) == 0)
				r->len = mb_encode_read_regs_response(r->adu, r->h.tid, r->h.unit, q->fc, regs, q->count);
			break;
		case MB_FC_WRITE_COIL:
		case MB_FC_WRITE_REGISTER:
			r->len = mb_encode_write_response(r->adu, r->h.tid, r->h.unit, q->fc, q->addr, q->value);
			break;
		case MB_FC_WRITE_COILS:
		case MB_FC_WRITE_REGISTERS:
			r->len = mb_encode_write_response(r->adu, r->h.tid, r->h.unit, q->fc, q->addr, q->count);
			break;
		case MB_FC_MASK_WRITE:
			r->len = mb_encode_mask_write_response(r->adu, r->h.tid, r->h.unit, q->addr, q->and_mask, q->or_mask);
			break;
		case MB_FC_REPORT_SERVER_ID:
			r->len = mb_server_id_reply(r);
			break;
		case MB_FC_MEI:
			ex = mb_encode_device_id(r->adu, &r->len, r->h.tid, r->h.unit, q->devid_code, q->object_id,
			    (const char *const *)((const struct mb_station_conf *)station_conf(r->st)->pconf)->devid);
			break;
		default:
			ex = MB_EX_ILLEGAL_FUNCTION;
		}
		if (!ex && r->len == 0)
			ex = MB_EX_DEVICE_FAILURE; /* an answer that cannot be encoded is still an answer */
	}
	if (ex)
		r->len = mb_encode_exception(r->adu, r->h.tid, r->h.unit, q->fc, (uint8_t)ex);
	r->ready = true;
}

static void
mb_reply_free(struct mb_reply *r)
{
	for (int i = 0; i < r->nw; i++)
		write_req_detach(r->w[i].req);
	free(r->w);
	free(r);
}

/* Send one answer (an ADU of len bytes), counted as a frame and, an exception response
 * (clause 7: the function code with its high bit set), by its exception code; not counted
 * when the session is closing (the write dropped it, or it was the write that closed it). */
static void
mb_server_send(struct session *s, const uint8_t *adu, size_t len)
{
	session_write(s, adu, len);
	if (session_closing(s))
		return;
	session_count_frame(s, true);
	if (len > MB_MBAP_LEN + 1 && adu[MB_MBAP_LEN] & 0x80)
		mb_count_exception_code(session_line(s), adu[MB_MBAP_LEN + 1]);
	mb_trace_adu(s, true, true, adu, len);
}

/* Send the answers that are ready, in the order of the requests. */
static void
mb_reply_flush(struct session *s)
{
	struct mb_ssession *ss = session_priv(s);
	struct mb_reply *r;

	while ((r = ss->head) != NULL) {
		if (!r->ready) {
			if (r->waiting > 0)
				return;
			mb_reply_build(r);
		}
		ss->head = r->next;
		if (!ss->head)
			ss->tail = &ss->head;
		ss->n--;
		mb_server_send(s, r->adu, r->len);
		mb_reply_free(r);
	}
}

/* Does a request with function code fc write (and so wait for its writes' results)? */
static bool
mb_request_writes(uint8_t fc)
{
	switch (fc) {
	case MB_FC_WRITE_COIL:
	case MB_FC_WRITE_REGISTER:
	case MB_FC_WRITE_COILS:
	case MB_FC_WRITE_REGISTERS:
	case MB_FC_MASK_WRITE:
	case MB_FC_READ_WRITE:
		return true;
	default:
		return false;
	}
}

/* Count an exception ex to a request for station st, unless it is the client's mistake or
 * komd's choice (02, 01, 06). */
static void
mb_count_exception(struct station *st, int ex)
{
	if (st && ex != MB_EX_ILLEGAL_ADDRESS && ex != MB_EX_ILLEGAL_FUNCTION && ex != MB_EX_BUSY)
		station_count_error(st);
}

/* A request that waits for nothing, with no answer before it waiting: answered now from an
 * answer on the stack (most requests are reads: no allocation), with exception ex if not
 * 0. The same answer as through the queue. */
static void
mb_server_answer_now(struct session *s, struct station *st, const struct mb_mbap *h, const struct mb_request *rq,
    int ex)
{
	struct mb_reply now; /* only what mb_reply_build reads is set */

	now.st = st;
	now.h = *h;
	now.rq = *rq;
	now.failed = false;
	now.len = 0;
	if (ex) {
		mb_count_exception(st, ex);
		now.len = mb_encode_exception(now.adu, h->tid, h->unit, rq->fc, (uint8_t)ex);
	} else {
		mb_reply_build(&now);
	}
	if (session_closing(s))
		return;
	mb_server_send(s, now.adu, now.len);
}

/* One request: decode, route its writes, queue its answer. */
static void
mb_server_request(struct session *s, const struct mb_mbap *h, const uint8_t *pdu, size_t plen)
{
	struct line *l = session_line(s);
	struct mb_ssession *ss = session_priv(s);
	const struct mb_line_conf *lc = line_conf(l)->pconf;
	struct station *st = mb_station_for_unit(l, h->unit);
	struct mb_request rq;
	struct mb_reply *r;
	int ex;

	if (!st && lc->unknown_unit == 1)
		return; /* configured to stay silent, like a serial gateway with no such unit */
	if (ss->n >= MB_MAX_PENDING_REPLIES + MB_MAX_BUSY_REPLIES) {
		session_protocol_error(s, "over %d requests waiting for their answers (it does not read them)",
		    MB_MAX_PENDING_REPLIES + MB_MAX_BUSY_REPLIES);
		return;
	}
	/* the request itself first (function code 01, length, quantities and byte counts 03,
	 * address range 02): a malformed request is malformed whichever unit it names */
	if ((ex = mb_decode_request(pdu, plen, &rq)) < 0)
		return; /* not reached: mb_frame leaves at least the function code */
	if (ex == 0 && !st)
		ex = MB_EX_GATEWAY_TARGET; /* no such unit behind this gateway */
	else if (ex == 0 && ss->n >= MB_MAX_PENDING_REPLIES)
		ex = MB_EX_BUSY; /* its earlier requests still wait for their writes */
	if (ex == 0) {
		struct mb_sstation *sst = station_priv(st);
		const struct mb_station_conf *c = station_conf(st)->pconf;
		if (sst->idle) {
			ptimer_start(sst->idle, c->inactivity_ms);
			station_set_comm(st, true, NULL);
		}
	}
	if (!ss->head && (ex || !mb_request_writes(rq.fc))) {
		mb_server_answer_now(s, st, h, &rq, ex);
		return;
	}
	if ((r = calloc(1, sizeof(*r))) == NULL) {
		session_close(s, "out of memory");
		return;
	}
	r->s = s;
	r->st = st;
	r->h = *h;
	r->rq = rq;
	if (ex == 0 && r->rq.data_len > 0 && r->rq.data_len <= sizeof(r->rdata)) {
		/* keep the request's data: the pdu goes with the input buffer */
		memcpy(r->rdata, r->rq.data, r->rq.data_len);
		r->rq.data = r->rdata;
	}
	if (ex == 0) {
		const struct mb_request *q = &r->rq;
		uint16_t regs[MB_MAX_WRITE_REGS], cur;
		uint8_t bits[MB_MAX_WRITE_BITS];

		switch (q->fc) {
		case MB_FC_WRITE_COIL:
			bits[0] = q->value == 0xFF00;
			ex = mb_server_write(r, 1, q->addr, 1, NULL, bits);
			break;
		case MB_FC_WRITE_REGISTER:
			regs[0] = q->value;
			ex = mb_server_write(r, 3, q->addr, 1, regs, NULL);
			break;
		case MB_FC_WRITE_COILS:
			for (unsigned i = 0; i < q->count; i++)
				bits[i] = mb_get_bit(q->data, i);
			ex = mb_server_write(r, 1, q->addr, q->count, NULL, bits);
			break;
		case MB_FC_WRITE_REGISTERS:
			for (unsigned i = 0; i < q->count; i++)
				regs[i] = mb_get_reg(q->data, i);
			ex = mb_server_write(r, 3, q->addr, q->count, regs, NULL);
			break;
		case MB_FC_MASK_WRITE:
			/* clause 6.16: result = (current AND and_mask) OR (or_mask AND NOT and_mask) */
			if ((ex = mb_server_image_read(st, 3, q->addr, 1, &cur, NULL)) == 0) {
				regs[0] = (uint16_t)((cur & q->and_mask) | (q->or_mask & (uint16_t)~q->and_mask));
				ex = mb_server_write(r, 3, q->addr, 1, regs, NULL);
			}
			break;
		case MB_FC_READ_WRITE:
			/* clause 6.17: both address ranges are checked before anything is done (02),
			 * then the write is performed before the read */
			if (!mb_image_covers(&((struct mb_sstation *)station_priv(st))->img, 3, q->addr, q->count)) {
				ex = MB_EX_ILLEGAL_ADDRESS;
				break;
			}
			for (unsigned i = 0; i < q->wcount; i++)
				regs[i] = mb_get_reg(q->data, i);
			ex = mb_server_write(r, 3, q->waddr, q->wcount, regs, NULL);
			break;
		default:
			break;
		}
	}
	if (ex) {
		mb_count_exception(st, ex);
		r->len = mb_encode_exception(r->adu, h->tid, h->unit, r->rq.fc, (uint8_t)ex);
		r->ready = true;
	}
	if (session_closing(s)) {
		/* closed while its writes were routed (on_close has run): they go on, detached */
		mb_reply_free(r);
		return;
	}
	r->next = NULL;
	*ss->tail = r;
	ss->tail = &r->next;
	ss->n++;
	mb_reply_flush(s);
}

/* One request ADU, as the core's frame loop hands it over. A PDU too short for its
 * function is answered (exception 03), not closed on: only a broken MBAP header (mb_frame,
 * in mb_frame_len) closes the connection. */
static int
mb_server_frame(struct session *s, const uint8_t *buf, size_t len)
{
	struct mb_mbap h;
	size_t alen;
	char err[160];

	if (mb_frame(buf, len, &h, &alen, err, sizeof(err)) <= 0) {
		session_protocol_error(s, "%s", err); /* mb_frame_len took it: cannot happen */
		return -1;
	}
	mb_trace_adu(s, false, false, buf, alen);
	mb_server_request(s, &h, buf + MB_MBAP_LEN, alen - MB_MBAP_LEN);
	return 0;
}

static void
mb_server_connect(struct session *s)
{
	struct mb_ssession *ss = session_priv(s);

	ss->tail = &ss->head;
}

static void
mb_server_close(struct session *s)
{
	struct mb_ssession *ss = session_priv(s);
	struct line *l = session_line(s);
	struct mb_reply *r;

	/* a line that stops closes its sessions, and tag changes are not notified while it is
	 * stopped: its images are rebuilt at the next read. A client that merely goes (some
	 * masters connect for every poll) costs nothing. */
	if (!line_running(l))
		for (int i = 0; i < line_nstations(l); i++)
			mb_image_invalidate(&((struct mb_sstation *)station_priv(line_station(l, i)))->img);
	/* answers nobody will read: their writes go on, unanswered */
	while ((r = ss->head) != NULL) {
		ss->head = r->next;
		mb_reply_free(r);
	}
	ss->tail = &ss->head;
	ss->n = 0;
}

const struct proto_ops modbus_server_ops = {
	.name = "modbus-server",
	.transport = PROTO_LISTEN,
	.line_keys = mb_server_line_keys,
	.station_keys = mb_server_station_keys,
	.line_conf_size = sizeof(struct mb_line_conf),
	.station_conf_size = sizeof(struct mb_station_conf),
	.check_station = mb_check_server_station,
	.check_tag = mb_check_tag,
	.station_size = sizeof(struct mb_sstation),
	.stag_size = sizeof(struct mb_tag),
	.session_size = sizeof(struct mb_ssession),
	.station_init = mb_server_station_init,
	.station_free = mb_server_station_free,
	.on_connect = mb_server_connect,
	.max_frame = MB_MAX_ADU,
	.frame_len = mb_frame_len,
	.on_frame = mb_server_frame,
	.on_close = mb_server_close,
	.on_tag_change = mb_server_tag_change,
	.counters = mb_server_counters,
};
