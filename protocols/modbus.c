/* modbus.c: the modbus-client (master) and modbus-server (slave) protocols over Modbus TCP
 * (frames in modbus_codec.c).
 *
 * Client: each station is a unit id. Its tags are merged into as few read requests as
 * possible (same function, addresses within max_gap, up to max_read_registers /
 * max_read_bits); a poll queues them all. Up to max_outstanding requests are in flight on
 * the connection, matched to responses by transaction id; a late or stray response is
 * dropped and never shifts later transactions out of step. A unit that does not answer
 * (after its retries) or answers "device failure" / "gateway" exceptions is in
 * communication error (its tags invalid) and its remaining requests of that poll are
 * dropped, so it does not stall the other units; other exceptions invalidate the tags of
 * that request only. Writes: FC 5 for coils, FC 6 or 16 for registers (16 always for
 * multi-register types), FC 22 for a bit in a register (or read-modify-write).
 *
 * Server: stations are unit ids; the register image is made from the tags each station
 * serves, with the same address syntax. FC 1, 2, 3, 4, 5, 6, 15, 16, 22, 23, and FC 17 and
 * 43 / MEI 14 (identification: the station's vendor_name, product_code, revision, ...).
 * Addresses no served tag covers give "illegal data address"; writes become tag writes
 * routed to the tags' acquirers, and the answer waits for their result. Every request in a
 * well-formed ADU is answered (an exception for what komd does not implement or cannot
 * parse); only a broken MBAP header closes the connection. Pipelined requests on one
 * connection are answered in order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "modbus_codec.h"

#ifndef KOMD_VERSION
#define KOMD_VERSION "unknown"
#endif

/* ---- configuration ---- */

static const char *const mb_addressing_choices[] = { "zero", "one", NULL };
static const char *const mb_reg_write_choices[] = { "fc6", "fc16", NULL };
static const char *const mb_bit_write_choices[] = { "fc22", "rmw", NULL };
static const char *const mb_unknown_unit_choices[] = { "exception", "ignore", NULL };

struct mb_line_conf {
	int max_outstanding;
	int unknown_unit;      /* 0 answer exception 0x0B, 1 ignore */
};

struct mb_station_conf {
	int addressing;        /* 0 protocol addresses, 1 register numbers */
	int retries;
	int max_regs;
	int max_bits;
	int max_gap;
	int reg_write;         /* 0 FC 6 for one register, 1 always FC 16 */
	int bit_write;         /* 0 FC 22, 1 read-modify-write */
	int inactivity_ms;     /* server: no request within it flags the station; 0 off */
	/* server: identification (FC 17, FC 43 / MEI 14 objects 0..5), "" when not set */
	char *devid[MB_DEVID_NOBJ];
};

static const struct conf_key mb_client_line_keys[] = {
	{ .name = "max_outstanding", .type = CK_INT, .min = 1, .max = 64, .def = "1",
	  .off = offsetof(struct mb_line_conf, max_outstanding),
	  .help = "requests in flight at once on the connection (many devices take only 1)" },
	{ .name = NULL, .type = CK_END },
};

static const struct conf_key mb_server_line_keys[] = {
	{ .name = "unknown_unit", .type = CK_CHOICE, .def = "exception", .choices = mb_unknown_unit_choices,
	  .off = offsetof(struct mb_line_conf, unknown_unit),
	  .help = "a request for a unit id no station has: exception (0x0B, gateway target failed) or ignore" },
	{ .name = NULL, .type = CK_END },
};

static const struct conf_key mb_client_station_keys[] = {
	{ .name = "addressing", .type = CK_CHOICE, .def = "zero", .choices = mb_addressing_choices,
	  .off = offsetof(struct mb_station_conf, addressing),
	  .help = "tag addresses are protocol addresses from 0 (zero) or register numbers from 1 (one)" },
	{ .name = "retries", .type = CK_INT, .min = 0, .max = 10, .def = "2",
	  .off = offsetof(struct mb_station_conf, retries), .help = "times a request is sent again after response_timeout" },
	{ .name = "max_read_registers", .type = CK_INT, .min = 1, .max = MB_MAX_READ_REGS, .def = "125",
	  .off = offsetof(struct mb_station_conf, max_regs), .help = "most registers in one read request" },
	{ .name = "max_read_bits", .type = CK_INT, .min = 1, .max = MB_MAX_READ_BITS, .def = "2000",
	  .off = offsetof(struct mb_station_conf, max_bits), .help = "most coils or inputs in one read request" },
	{ .name = "max_gap", .type = CK_INT, .min = 0, .max = 124, .def = "8",
	  .off = offsetof(struct mb_station_conf, max_gap),
	  .help = "largest run of unused addresses that one read request may span" },
	{ .name = "register_write", .type = CK_CHOICE, .def = "fc6", .choices = mb_reg_write_choices,
	  .off = offsetof(struct mb_station_conf, reg_write),
	  .help = "one-register writes with FC 6, or always FC 16 (multi-register values always use FC 16)" },
	{ .name = "bit_write", .type = CK_CHOICE, .def = "fc22", .choices = mb_bit_write_choices,
	  .off = offsetof(struct mb_station_conf, bit_write),
	  .help = "a bit in a register: FC 22 mask write, or read-modify-write (FC 3 then FC 6/16)" },
	{ .name = NULL, .type = CK_END },
};

static const struct conf_key mb_server_station_keys[] = {
	{ .name = "addressing", .type = CK_CHOICE, .def = "zero", .choices = mb_addressing_choices,
	  .off = offsetof(struct mb_station_conf, addressing),
	  .help = "tag addresses are protocol addresses from 0 (zero) or register numbers from 1 (one)" },
	{ .name = "inactivity_timeout", .type = CK_SECONDS, .min = 0, .max = 86400, .def = "0",
	  .off = offsetof(struct mb_station_conf, inactivity_ms),
	  .help = "no valid request for this unit within it: the station is flagged (0: off)" },
	/* the objects of read device identification (6.21), in object id order */
	{ .name = "vendor_name", .type = CK_STRING, .def = "komd", .off = offsetof(struct mb_station_conf, devid[0]),
	  .help = "FC 43 object 0 (VendorName) and FC 17: the vendor, 1 to 244 bytes" },
	{ .name = "product_code", .type = CK_STRING, .def = "komd", .off = offsetof(struct mb_station_conf, devid[1]),
	  .help = "FC 43 object 1 (ProductCode) and FC 17: the product code, 1 to 244 bytes" },
	{ .name = "revision", .type = CK_STRING, .def = KOMD_VERSION, .off = offsetof(struct mb_station_conf, devid[2]),
	  .help = "FC 43 object 2 (MajorMinorRevision) and FC 17: the revision, 1 to 244 bytes; default komd's version" },
	{ .name = "vendor_url", .type = CK_STRING, .def = "", .off = offsetof(struct mb_station_conf, devid[3]),
	  .help = "FC 43 object 3 (VendorUrl), up to 244 bytes; not set: the device has no such object" },
	{ .name = "product_name", .type = CK_STRING, .def = "", .off = offsetof(struct mb_station_conf, devid[4]),
	  .help = "FC 43 object 4 (ProductName), up to 244 bytes; not set: the device has no such object" },
	{ .name = "model_name", .type = CK_STRING, .def = "", .off = offsetof(struct mb_station_conf, devid[5]),
	  .help = "FC 43 object 5 (ModelName), up to 244 bytes; not set: the device has no such object" },
	{ .name = NULL, .type = CK_END },
};

static int
mb_unit_of(const struct station_conf *sc, uint8_t *unit, char *err, size_t errlen)
{
	char *end;
	long v;

	if (!sc->address) {
		snprintf(err, errlen, "a Modbus station needs address = unit id (0..255)");
		return -1;
	}
	v = strtol(sc->address, &end, 10);
	if (*sc->address == '\0' || *end != '\0' || v < 0 || v > 255) {
		snprintf(err, errlen, "Modbus unit id must be 0..255, not '%s'", sc->address);
		return -1;
	}
	*unit = (uint8_t)v;
	return 0;
}

static int
mb_check_station(const struct station_conf *sc, char *err, size_t errlen)
{
	uint8_t unit;

	if (sc->simulation && !sc->address)
		return 0;
	return mb_unit_of(sc, &unit, err, errlen);
}

/* The key of identification object id. */
static const char *
mb_devid_key(int id)
{
	for (const struct conf_key *k = mb_server_station_keys; k->name; k++)
		if (k->off == offsetof(struct mb_station_conf, devid) + (size_t)id * sizeof(char *))
			return k->name;
	return "?";
}

/* A server station: its unit id, and identification objects that fit their responses. */
static int
mb_check_server_station(const struct station_conf *sc, char *err, size_t errlen)
{
	const struct mb_station_conf *c = sc->pconf;

	if (mb_check_station(sc, err, errlen) != 0)
		return -1;
	for (int id = 0; c && id < MB_DEVID_NOBJ; id++) {
		const char *v = c->devid[id] ? c->devid[id] : "";
		if (id <= 2 && v[0] == '\0') {
			snprintf(err, errlen, "%s must not be empty (a mandatory object of device identification)",
			    mb_devid_key(id));
			return -1;
		}
		if (strlen(v) > MB_DEVID_MAX_LEN) {
			snprintf(err, errlen, "%s is %zu bytes long, more than the %d of one identification object",
			    mb_devid_key(id), strlen(v), MB_DEVID_MAX_LEN);
			return -1;
		}
	}
	return 0;
}

static bool
mb_one_based(const struct station_conf *sc)
{
	const struct mb_station_conf *c = sc->pconf;
	return c && c->addressing == 1;
}

static int
mb_check_tag(const struct station_conf *sc, const struct tag_conf *tc, char *err, size_t errlen)
{
	struct mb_addr a;

	if (!tc->address)
		return 0;
	if (mb_parse_addr(tc->address, mb_one_based(sc), &a, err, errlen) != 0)
		return -1;
	if (!mb_type_fits(&a, tc->type)) {
		snprintf(err, errlen, "a %s tag cannot live at Modbus address '%s'", vtype_name(tc->type), tc->address);
		return -1;
	}
	return 0;
}

/* ---- shared state ---- */

struct mb_tag {
	struct mb_addr a;
	int span;                 /* server: its span in mb_sstation.sp[a.fn] */
};

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

/* ---- client: planning ---- */

static const struct mb_tag *
mb_tag(const struct stag *t)
{
	return stag_priv((struct stag *)t);
}

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

static int mb_server_station_init(struct station *st);
static void mb_server_station_free(struct station *st);

static int
mb_station_init(struct station *st)
{
	struct line *l = station_line(st);
	bool server = proto_find(line_conf(l)->protocol)->role == ROLE_SERVER;
	char err[160];

	for (int i = 0; i < station_ntags(st); i++) {
		struct stag *t = station_stag(st, i);
		struct mb_tag *mt = stag_priv(t);
		const struct tag_conf *tc = stag_conf(t);
		if (!tc->address || mb_parse_addr(tc->address, mb_one_based(station_conf(st)), &mt->a, err,
		    sizeof(err)) != 0)
			mt->a.ignore = true; /* simulated stations may have none; checked at load */
	}
	if (server) {
		/* the core frees only stations whose init succeeded */
		if (mb_server_station_init(st) != 0) {
			mb_server_station_free(st);
			return -1;
		}
		return 0;
	}
	struct mb_cstation *cs = station_priv(st);
	if (!station_conf(st)->simulation && mb_unit_of(station_conf(st), &cs->unit, err, sizeof(err)) != 0)
		return -1;
	return mb_plan_station(st);
}

static void
mb_station_free(struct station *st)
{
	struct line *l = station_line(st);

	struct mb_cstation *cs = station_priv(st);

	if (proto_find(line_conf(l)->protocol)->role == ROLE_SERVER)
		return;
	free(cs->order);
	free(cs->plan);
}

static int
mb_line_init(struct line *l)
{
	struct mb_cline *cl = line_priv(l);

	if (proto_find(line_conf(l)->protocol)->role == ROLE_CLIENT)
		cl->qtail = &cl->queue;
	return 0;
}

/* ---- client: transactions ---- */

static void mb_pump(struct line *l);
static void mb_txn_timeout(void *arg);

/* Trace one ADU decoded as what it is: a request (a client's out, a server's in) or a
 * response (the other way round). */
static void
mb_trace_adu(struct session *s, bool out, bool response, const uint8_t *adu, size_t len)
{
	char text[400], what[360];
	struct mb_mbap h;
	size_t alen;
	char err[80];

	if (!session_tracing(s))
		return;
	if (mb_frame(adu, len, &h, &alen, err, sizeof(err)) == 1 && alen > MB_MBAP_LEN)
		snprintf(text, sizeof(text), "tid %u unit %u %s", h.tid, h.unit,
		    mb_describe(adu + MB_MBAP_LEN, alen - MB_MBAP_LEN, response, what, sizeof(what)));
	else
		snprintf(text, sizeof(text), "(not a Modbus frame)");
	session_trace(s, out, adu, len, text);
}

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

static int
mb_client_read(struct session *s, struct evbuffer *in)
{
	struct line *l = session_line(s);
	struct mb_csession *ss = session_priv(s);

	for (;;) {
		size_t len = evbuffer_get_length(in), alen;
		uint8_t *buf = evbuffer_pullup(in, (ev_ssize_t)(len < MB_MAX_ADU ? len : MB_MAX_ADU));
		struct mb_mbap h;
		struct mb_response rs;
		struct mb_txn *t;
		char err[160];
		int r;

		if (len == 0 || session_closing(s))
			return 0; /* a write may have closed it: no more frames */
		if ((r = mb_frame(buf, len < MB_MAX_ADU ? len : MB_MAX_ADU, &h, &alen, err, sizeof(err))) == 0)
			return 0;
		if (r < 0) {
			session_protocol_error(s, "%s", err);
			return -1;
		}
		session_count_frame(s, false);
		mb_trace_adu(s, false, true, buf, alen);
		for (t = ss->inflight; t && t->tid != h.tid; t = t->next)
			;
		if (!t) {
			/* late (timed out and sent again) or never asked: drop it, stay in step */
			log_warnx("line %s: %s: response with transaction id %u matches no request, dropped",
			    line_name(l), session_peer(s), h.tid);
			evbuffer_drain(in, alen);
			continue;
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
		evbuffer_drain(in, alen);
		mb_pump(l);
		if (!line_active_session(l))
			return 0;
	}
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

/* ---- server ---- */

/* What a served tag covers: len registers (or one coil/input) from addr. */
struct mb_span {
	uint16_t addr;
	uint8_t len;
	bool bad;                 /* its value cannot be encoded (the image's nbad counts it) */
	uint32_t off;             /* where its first register is in the cached image */
	struct stag *t;
};

/* A run of contiguous served addresses of one function, in the cached image from off. */
struct mb_run {
	uint32_t addr, len, off;
};

/* The served image of one function (1..4), cached: registers (or bits, one a word) kept
 * encoded as the tags change (on_tag_change), so that a read is a copy. Not cached when
 * spans overlap (two tags on one register or bit: then the tags are read every time, as
 * they always were), nor used while a value cannot be encoded (nbad: the slow path names
 * the tag in the station's error). Stale (rebuilt at the next read) from station_init and
 * when the line stops (its sessions close then): changes are not notified while the line
 * is stopped. */
struct mb_image {
	bool cacheable;
	struct mb_run *runs;
	int nruns;
	uint16_t *w;              /* the registers or bits of every run */
	int nbad;
};

struct mb_sstation {
	uint8_t unit;
	struct mb_span *sp[5];    /* per function 1..4, sorted by address */
	int nsp[5];
	struct mb_image img[5];
	bool stale;
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

static int
mb_span_cmp(const void *x, const void *y)
{
	const struct mb_span *a = x, *b = y;
	return (int)a->addr - (int)b->addr;
}

static void
mb_idle_cb(void *arg)
{
	struct station *st = arg;
	char why[120];

	snprintf(why, sizeof(why), "no request from any client within %.0f s",
	    ((const struct mb_station_conf *)station_conf(st)->pconf)->inactivity_ms / 1000.0);
	station_set_comm(st, false, why);
}

/* Does the span at i share a register (or coil) with an earlier one? Word spans may not
 * share; bits in a register may, if each has its own bit. */
static bool
mb_span_overlaps(const struct mb_span *sp, int i, unsigned word_end, int bit_reg, unsigned bit_mask)
{
	const struct mb_addr *a = &mb_tag(sp[i].t)->a;

	if (sp[i].addr < word_end)
		return true;
	if (a->fn >= 3 && a->bit >= 0)
		return (int)sp[i].addr == bit_reg && (bit_mask >> a->bit & 1);
	return (int)sp[i].addr == bit_reg;
}

/* The runs of the cached image of fn, and whether it can be cached at all. 0, or -1 (no
 * memory). */
static int
mb_image_plan(struct mb_sstation *ss, int fn)
{
	struct mb_image *im = &ss->img[fn];
	const struct mb_span *sp = ss->sp[fn];
	unsigned word_end = 0, bit_mask = 0, total = 0;
	int bit_reg = -1;

	im->cacheable = ss->nsp[fn] > 0;
	for (int i = 0; i < ss->nsp[fn] && im->cacheable; i++) {
		const struct mb_addr *a = &mb_tag(sp[i].t)->a;
		if (mb_span_overlaps(sp, i, word_end, bit_reg, bit_mask))
			im->cacheable = false;
		else if (fn >= 3 && a->bit >= 0) {
			if ((int)sp[i].addr != bit_reg)
				bit_mask = 0;
			bit_reg = sp[i].addr;
			bit_mask |= 1u << a->bit;
		} else
			word_end = (unsigned)sp[i].addr + sp[i].len;
	}
	if (!im->cacheable)
		return 0;
	for (int i = 0; i < ss->nsp[fn]; i++) {
		struct mb_span *x = &ss->sp[fn][i];
		struct mb_run *r = im->nruns ? &im->runs[im->nruns - 1] : NULL;

		if (r && x->addr < r->addr + r->len) {
			/* another bit of the run's last register */
		} else if (r && x->addr == r->addr + r->len) {
			r->len += x->len;
			total += x->len;
		} else {
			struct mb_run *n = realloc(im->runs, (size_t)(im->nruns + 1) * sizeof(*n));
			if (!n)
				return -1;
			im->runs = n;
			n[im->nruns++] = (struct mb_run){ .addr = x->addr, .len = x->len, .off = total };
			total += x->len;
		}
		r = &im->runs[im->nruns - 1];
		x->off = r->off + (x->addr - r->addr);
	}
	if ((im->w = calloc(total, sizeof(*im->w))) == NULL)
		return -1;
	return 0;
}

/* A served value as a coil or bit: nonzero is on. */
static int
mb_value_bit(const struct value *v)
{
	return v->type == VT_FLOAT ? v->f != 0.0 : v->type == VT_STRING ? 0 : v->i != 0;
}

/* Encode span x's value into the cached image of fn. */
static void
mb_image_refresh(struct mb_image *im, int fn, struct mb_span *x)
{
	const struct mb_addr *a = &mb_tag(x->t)->a;
	const struct value *v = stag_value(x->t);
	uint16_t vr[4];
	char err[120];
	bool bad = false;

	if (fn <= 2)
		im->w[x->off] = (uint16_t)mb_value_bit(v);
	else if (a->bit >= 0)
		im->w[x->off] = (uint16_t)((im->w[x->off] & ~(1u << a->bit)) | (unsigned)mb_value_bit(v) << a->bit);
	else if (mb_value_to_regs(a, v, vr, err, sizeof(err)) == 0)
		memcpy(&im->w[x->off], vr, x->len * sizeof(*vr));
	else
		bad = true;
	im->nbad += (int)bad - (int)x->bad;
	x->bad = bad;
}

static void
mb_image_rebuild(struct mb_sstation *ss)
{
	for (int fn = 1; fn <= 4; fn++) {
		struct mb_image *im = &ss->img[fn];
		if (!im->cacheable)
			continue;
		im->nbad = 0;
		for (int i = 0; i < ss->nsp[fn]; i++) {
			ss->sp[fn][i].bad = false;
			mb_image_refresh(im, fn, &ss->sp[fn][i]);
		}
	}
	ss->stale = false;
}

static void
mb_server_tag_change(struct stag *t)
{
	struct mb_sstation *ss = station_priv(stag_station(t));
	const struct mb_tag *mt = mb_tag(t);
	int fn = mt->a.fn;

	if (mt->a.ignore || ss->stale || !ss->img[fn].cacheable)
		return;
	mb_image_refresh(&ss->img[fn], fn, &ss->sp[fn][mt->span]);
}

static int
mb_server_station_init(struct station *st)
{
	struct mb_sstation *ss = station_priv(st);
	const struct mb_station_conf *c = station_conf(st)->pconf;
	char err[160];

	if (mb_unit_of(station_conf(st), &ss->unit, err, sizeof(err)) != 0)
		return -1;
	for (int i = 0; i < station_ntags(st); i++) {
		struct stag *t = station_stag(st, i);
		const struct mb_addr *a = &mb_tag(t)->a;
		if (a->ignore)
			continue;
		struct mb_span *n = realloc(ss->sp[a->fn], (size_t)(ss->nsp[a->fn] + 1) * sizeof(*n));
		if (!n)
			return -1;
		ss->sp[a->fn] = n;
		n[ss->nsp[a->fn]++] = (struct mb_span){ .addr = a->addr, .len = a->nregs ? a->nregs : 1, .t = t };
	}
	for (int fn = 1; fn <= 4; fn++) {
		if (ss->nsp[fn] > 1)
			qsort(ss->sp[fn], (size_t)ss->nsp[fn], sizeof(struct mb_span), mb_span_cmp);
		for (int i = 0; i < ss->nsp[fn]; i++)
			((struct mb_tag *)stag_priv(ss->sp[fn][i].t))->span = i;
		if (mb_image_plan(ss, fn) != 0)
			return -1;
	}
	ss->stale = true;
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

	for (int fn = 1; fn <= 4; fn++) {
		free(ss->sp[fn]);
		free(ss->img[fn].runs);
		free(ss->img[fn].w);
	}
}

/* First span that may overlap addr (spans are at most 4 long). */
static int
mb_span_first(const struct mb_sstation *ss, int fn, uint16_t addr)
{
	int lo = 0, hi = ss->nsp[fn];
	unsigned from = addr >= 3 ? addr - 3u : 0;

	while (lo < hi) {
		int mid = (lo + hi) / 2;
		if (ss->sp[fn][mid].addr < from)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The image of [addr, addr + count) from the tags themselves (the image is not cached, or
 * a value cannot be encoded). */
static int
mb_image_read_tags(struct station *st, int fn, uint16_t addr, uint16_t count, uint16_t *regs, uint8_t *bits)
{
	const struct mb_sstation *ss = station_priv(st);
	uint8_t covered[MB_MAX_READ_BITS];
	unsigned end = (unsigned)addr + count;

	memset(covered, 0, count);
	if (regs)
		memset(regs, 0, count * sizeof(*regs));
	for (int i = mb_span_first(ss, fn, addr); i < ss->nsp[fn] && ss->sp[fn][i].addr < end; i++) {
		const struct mb_span *sp = &ss->sp[fn][i];
		const struct mb_addr *a = &mb_tag(sp->t)->a;
		const struct value *v = stag_value(sp->t);
		uint16_t vr[4];
		char err[120];

		if ((unsigned)sp->addr + sp->len <= addr)
			continue;
		if (fn <= 2 || a->bit >= 0) {
			int b = mb_value_bit(v);
			unsigned off = (unsigned)(sp->addr - addr);
			if (fn <= 2)
				bits[off] = (uint8_t)b;
			else
				regs[off] |= (uint16_t)(b << a->bit);
			covered[off] = 1;
			continue;
		}
		if (mb_value_to_regs(a, v, vr, err, sizeof(err)) != 0) {
			char why[200];
			snprintf(why, sizeof(why), "tag %s: value cannot be served at %s: %s", stag_name(sp->t),
			    stag_conf(sp->t)->address, err);
			station_note_error(st, why);
			return MB_EX_DEVICE_FAILURE;
		}
		for (unsigned r = 0; r < sp->len; r++) {
			unsigned at = (unsigned)sp->addr + r;
			if (at >= addr && at < end) {
				regs[at - addr] = vr[r];
				covered[at - addr] = 1;
			}
		}
	}
	for (unsigned i = 0; i < count; i++)
		if (!covered[i])
			return MB_EX_ILLEGAL_ADDRESS;
	return 0;
}

/* The image of [addr, addr + count): registers (fn 3, 4) or bits (fn 1, 2, one a byte).
 * 0, or the exception code. */
static int
mb_image_read(struct station *st, int fn, uint16_t addr, uint16_t count, uint16_t *regs, uint8_t *bits)
{
	struct mb_sstation *ss = station_priv(st);
	const struct mb_image *im = &ss->img[fn];
	int lo = 0, hi;

	if (ss->stale)
		mb_image_rebuild(ss);
	if (!im->cacheable || im->nbad)
		return mb_image_read_tags(st, fn, addr, count, regs, bits);
	/* the last run starting at or before addr */
	hi = im->nruns;
	while (lo < hi) {
		int mid = (lo + hi) / 2;
		if (im->runs[mid].addr <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return MB_EX_ILLEGAL_ADDRESS;
	const struct mb_run *r = &im->runs[lo - 1];
	if ((unsigned)addr + count > r->addr + r->len)
		return MB_EX_ILLEGAL_ADDRESS;
	const uint16_t *w = &im->w[r->off + (addr - r->addr)];
	if (regs)
		memcpy(regs, w, count * sizeof(*regs));
	else
		for (unsigned i = 0; i < count; i++)
			bits[i] = (uint8_t)w[i];
	return 0;
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
mb_image_write(struct mb_reply *r, int fn, uint16_t addr, uint16_t count, const uint16_t *regs, const uint8_t *bits)
{
	struct station *st = r->st;
	const struct mb_sstation *ss = station_priv(st);
	uint8_t covered[MB_MAX_WRITE_BITS];
	unsigned end = (unsigned)addr + count;
	int first = mb_span_first(ss, fn, addr), n = 0;

	memset(covered, 0, count);
	/* check everything before routing anything */
	for (int i = first; i < ss->nsp[fn] && ss->sp[fn][i].addr < end; i++) {
		const struct mb_span *sp = &ss->sp[fn][i];
		if ((unsigned)sp->addr + sp->len <= addr)
			continue;
		if (stag_conf(sp->t)->dir == TD_IN || sp->addr < addr || (unsigned)sp->addr + sp->len > end)
			return MB_EX_ILLEGAL_ADDRESS;
		for (unsigned k = 0; k < sp->len; k++)
			covered[sp->addr - addr + k] = 1;
		n++;
	}
	for (unsigned i = 0; i < count; i++)
		if (!covered[i])
			return MB_EX_ILLEGAL_ADDRESS;
	/* every value converted before any is routed: a request is written whole or not at all */
	struct value *vals = calloc((size_t)n, sizeof(*vals));
	struct stag **tags = calloc((size_t)n, sizeof(*tags));
	int k = 0, ex = 0;
	if (!vals || !tags) {
		ex = MB_EX_DEVICE_FAILURE;
		goto out;
	}
	for (int i = first; i < ss->nsp[fn] && ss->sp[fn][i].addr < end; i++) {
		const struct mb_span *sp = &ss->sp[fn][i];
		const struct mb_addr *a = &mb_tag(sp->t)->a;
		struct value *v = &vals[k];
		char err[120];
		unsigned off = (unsigned)(sp->addr - addr);

		if ((unsigned)sp->addr + sp->len <= addr)
			continue;
		v->type = stag_type(sp->t);
		if (fn == 1 || a->bit >= 0) {
			int b = fn == 1 ? bits[off] : (regs[off] >> a->bit) & 1;
			if (v->type == VT_FLOAT)
				v->f = b;
			else
				v->i = b;
		} else if (mb_regs_to_value(a, regs + off, v->type, v, err, sizeof(err)) != 0) {
			ex = MB_EX_ILLEGAL_VALUE;
			goto out;
		}
		tags[k++] = sp->t;
	}
	if ((r->w = calloc((size_t)n, sizeof(*r->w))) == NULL) {
		ex = MB_EX_DEVICE_FAILURE;
		goto out;
	}
	for (int i = 0; i < k; i++)
		mb_route_write(r, tags[i], &vals[i]);
out:
	free(vals);
	free(tags);
	return ex;
}

/* Does a served tag cover every address of [addr, addr + count) of fn (count at most
 * MB_MAX_READ_BITS)? Checked before a request does anything (FC 23 writes first). */
static bool
mb_image_covers(const struct mb_sstation *ss, int fn, uint16_t addr, uint16_t count)
{
	uint8_t covered[MB_MAX_READ_BITS];
	unsigned end = (unsigned)addr + count;

	memset(covered, 0, count);
	for (int i = mb_span_first(ss, fn, addr); i < ss->nsp[fn] && ss->sp[fn][i].addr < end; i++) {
		const struct mb_span *sp = &ss->sp[fn][i];
		for (unsigned k = 0; k < sp->len; k++) {
			unsigned at = (unsigned)sp->addr + k;
			if (at >= addr && at < end)
				covered[at - addr] = 1;
		}
	}
	for (unsigned i = 0; i < count; i++)
		if (!covered[i])
			return false;
	return true;
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
			if ((ex = mb_image_read(r->st, q->fc, q->addr, q->count, NULL, bits)) == 0)
				r->len = mb_encode_read_bits_response(r->adu, r->h.tid, r->h.unit, q->fc, bits, q->count);
			break;
		case MB_FC_READ_HOLDING:
		case MB_FC_READ_INPUT:
		case MB_FC_READ_WRITE:
			if ((ex = mb_image_read(r->st, q->fc == MB_FC_READ_INPUT ? 4 : 3, q->addr, q->count, regs, NULL)) == 0)
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
		session_write(s, r->adu, r->len);
		session_count_frame(s, true);
		mb_trace_adu(s, true, true, r->adu, r->len);
		mb_reply_free(r);
	}
}

/* One request: decode, route its writes, queue its answer. */
static void
mb_server_request(struct session *s, const struct mb_mbap *h, const uint8_t *pdu, size_t plen)
{
	struct line *l = session_line(s);
	struct mb_ssession *ss = session_priv(s);
	const struct mb_line_conf *lc = line_conf(l)->pconf;
	struct station *st = mb_station_for_unit(l, h->unit);
	struct mb_reply *r;
	int ex;

	if (!st && lc->unknown_unit == 1)
		return; /* configured to stay silent, like a serial gateway with no such unit */
	if (ss->n >= MB_MAX_PENDING_REPLIES + MB_MAX_BUSY_REPLIES) {
		session_protocol_error(s, "over %d requests waiting for their answers (it does not read them)",
		    MB_MAX_PENDING_REPLIES + MB_MAX_BUSY_REPLIES);
		return;
	}
	if ((r = calloc(1, sizeof(*r))) == NULL) {
		session_close(s, "out of memory");
		return;
	}
	r->s = s;
	r->st = st;
	r->h = *h;
	/* the request itself first (function code 01, length, quantities and byte counts 03,
	 * address range 02): a malformed request is malformed whichever unit it names */
	if ((ex = mb_decode_request(pdu, plen, &r->rq)) < 0) {
		free(r); /* not reached: mb_frame leaves at least the function code */
		return;
	}
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
			ex = mb_image_write(r, 1, q->addr, 1, NULL, bits);
			break;
		case MB_FC_WRITE_REGISTER:
			regs[0] = q->value;
			ex = mb_image_write(r, 3, q->addr, 1, regs, NULL);
			break;
		case MB_FC_WRITE_COILS:
			for (unsigned i = 0; i < q->count; i++)
				bits[i] = mb_get_bit(q->data, i);
			ex = mb_image_write(r, 1, q->addr, q->count, NULL, bits);
			break;
		case MB_FC_WRITE_REGISTERS:
			for (unsigned i = 0; i < q->count; i++)
				regs[i] = mb_get_reg(q->data, i);
			ex = mb_image_write(r, 3, q->addr, q->count, regs, NULL);
			break;
		case MB_FC_MASK_WRITE:
			/* clause 6.16: result = (current AND and_mask) OR (or_mask AND NOT and_mask) */
			if ((ex = mb_image_read(st, 3, q->addr, 1, &cur, NULL)) == 0) {
				regs[0] = (uint16_t)((cur & q->and_mask) | (q->or_mask & (uint16_t)~q->and_mask));
				ex = mb_image_write(r, 3, q->addr, 1, regs, NULL);
			}
			break;
		case MB_FC_READ_WRITE:
			/* clause 6.17: both address ranges are checked before anything is done (02),
			 * then the write is performed before the read */
			if (!mb_image_covers(station_priv(st), 3, q->addr, q->count)) {
				ex = MB_EX_ILLEGAL_ADDRESS;
				break;
			}
			for (unsigned i = 0; i < q->wcount; i++)
				regs[i] = mb_get_reg(q->data, i);
			ex = mb_image_write(r, 3, q->waddr, q->wcount, regs, NULL);
			break;
		default:
			break;
		}
	}
	if (ex) {
		if (st && ex != MB_EX_ILLEGAL_ADDRESS && ex != MB_EX_ILLEGAL_FUNCTION && ex != MB_EX_BUSY)
			station_count_error(st);
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

static int
mb_server_read(struct session *s, struct evbuffer *in)
{
	for (;;) {
		size_t len = evbuffer_get_length(in), alen;
		size_t want = len < MB_MAX_ADU ? len : MB_MAX_ADU;
		uint8_t *buf;
		struct mb_mbap h;
		char err[160];
		int r;

		if (len == 0 || session_closing(s))
			return 0; /* a write may have closed it: no more frames */
		buf = evbuffer_pullup(in, (ev_ssize_t)want);
		if ((r = mb_frame(buf, want, &h, &alen, err, sizeof(err))) == 0)
			return 0;
		if (r < 0) {
			session_protocol_error(s, "%s", err);
			return -1;
		}
		session_count_frame(s, false);
		mb_trace_adu(s, false, false, buf, alen);
		/* a PDU too short for its function is answered (exception 03), not closed on:
		 * only a broken MBAP header (mb_frame) closes the connection */
		mb_server_request(s, &h, buf + MB_MBAP_LEN, alen - MB_MBAP_LEN);
		if (evbuffer_drain(in, alen) != 0)
			return -1;
	}
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
			((struct mb_sstation *)station_priv(line_station(l, i)))->stale = true;
	/* answers nobody will read: their writes go on, unanswered */
	while ((r = ss->head) != NULL) {
		ss->head = r->next;
		mb_reply_free(r);
	}
	ss->tail = &ss->head;
	ss->n = 0;
}

/* ---- the two protocols ---- */

const struct proto_ops modbus_client_ops = {
	.name = "modbus-client",
	.role = ROLE_CLIENT,
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
	.line_init = mb_line_init,
	.line_free = mb_client_line_free,
	.station_init = mb_station_init,
	.station_free = mb_station_free,
	.on_read = mb_client_read,
	.on_close = mb_client_close,
	.on_poll = mb_client_poll,
	.station_needs_trigger = true,
	.on_tag_write = mb_client_write,
};

const struct proto_ops modbus_server_ops = {
	.name = "modbus-server",
	.role = ROLE_SERVER,
	.line_keys = mb_server_line_keys,
	.station_keys = mb_server_station_keys,
	.line_conf_size = sizeof(struct mb_line_conf),
	.station_conf_size = sizeof(struct mb_station_conf),
	.check_station = mb_check_server_station,
	.check_tag = mb_check_tag,
	.station_size = sizeof(struct mb_sstation),
	.stag_size = sizeof(struct mb_tag),
	.session_size = sizeof(struct mb_ssession),
	.station_init = mb_station_init,
	.station_free = mb_server_station_free,
	.on_connect = mb_server_connect,
	.on_read = mb_server_read,
	.on_close = mb_server_close,
	.on_tag_change = mb_server_tag_change,
};
