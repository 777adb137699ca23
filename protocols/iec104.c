/* iec104.c: the configuration of the iec104-client and iec104-server protocols of
 * IEC 60870-5-104, their tag values and quality as the types carry them, and the stations'
 * tags by information object address. The APCI of clause 5 is iec104_link.c, the
 * controlling station iec104_client.c, the controlled station iec104_server.c, the frames
 * iec104_codec.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "iec104.h"

/* ---- counters ---- */

const struct proto_counter iec_counters[] = {
	[IEC_CNT_T1_EXPIRIES] = { .name = "iec104_t1_expiries_total",
	    .help = "connections closed because t1 expired (a sent I-frame not acknowledged, a U act not confirmed)" },
	[IEC_CNT_TESTFR_SENT] = { .name = "iec104_testfr_sent_total", .help = "TESTFR act sent after t3 without traffic" },
	{ .name = NULL },
};

/* ---- configuration ---- */

static const char *const iec_tz_choices[] = { "utc", "local", NULL };


#define IEC_COMMON_LINE_KEYS \
	{ .name = "k", .type = CK_INT, .min = 1, .max = 32767, .def = "12", .off = offsetof(struct iec_line_conf, k), \
	  .help = "most unacknowledged I-frames sent" }, \
	{ .name = "w", .type = CK_INT, .min = 1, .max = 32767, .def = "8", .off = offsetof(struct iec_line_conf, w), \
	  .help = "acknowledge at the latest after w I-frames received" }, \
	{ .name = "t1", .type = CK_SECONDS, .min = 1, .max = 255, .def = "15", .off = offsetof(struct iec_line_conf, t1_ms), \
	  .help = "time for an acknowledgement or confirmation before the connection closes" }, \
	{ .name = "t2", .type = CK_SECONDS, .min = 1, .max = 255, .def = "10", .off = offsetof(struct iec_line_conf, t2_ms), \
	  .help = "acknowledge received I-frames at the latest after t2 (less than t1)" }, \
	{ .name = "t3", .type = CK_SECONDS, .min = 1, .max = 172800, .def = "20", .off = offsetof(struct iec_line_conf, t3_ms), \
	  .help = "idle time before a TESTFR" }, \
	{ .name = "cot_size", .type = CK_INT, .min = 1, .max = 2, .def = "2", .off = offsetof(struct iec_line_conf, cot_len), \
	  .help = "octets of the cause of transmission (2: with originator address)" }, \
	{ .name = "ca_size", .type = CK_INT, .min = 1, .max = 2, .def = "2", .off = offsetof(struct iec_line_conf, ca_len), \
	  .help = "octets of the common address" }, \
	{ .name = "ioa_size", .type = CK_INT, .min = 1, .max = 3, .def = "3", .off = offsetof(struct iec_line_conf, ioa_len), \
	  .help = "octets of the information object address" }

const struct conf_key iec_client_line_keys[] = {
	IEC_COMMON_LINE_KEYS,
	{ .name = NULL, .type = CK_END },
};

const struct conf_key iec_server_line_keys[] = {
	IEC_COMMON_LINE_KEYS,
	{ .name = "groups", .type = CK_STRING, .def = "", .off = offsetof(struct iec_line_conf, groups),
	  .help = "redundancy groups of clients: addresses separated by ',' within a group and ';' between groups; "
	  "clients in no group share one (empty: every connection is a group of its own)" },
	{ .name = "queue_size", .type = CK_INT, .min = 1, .max = 10000000, .def = "100000",
	  .off = offsetof(struct iec_line_conf, queue_size),
	  .help = "time-tagged events kept per group (per line without groups) while no connection of it is started; "
	  "on overflow the oldest go" },
	{ .name = "end_of_init", .type = CK_BOOL, .def = "true", .off = offsetof(struct iec_line_conf, end_of_init),
	  .help = "send end of initialisation (M_EI_NA_1) after STARTDT" },
	{ .name = NULL, .type = CK_END },
};

const struct conf_key iec_client_station_keys[] = {
	{ .name = "time_zone", .type = CK_CHOICE, .def = "utc", .choices = iec_tz_choices,
	  .off = offsetof(struct iec_station_conf, time_zone), .help = "time tags in UTC or local time" },
	{ .name = "cmdc", .type = CK_INT, .min = 0, .max = 3, .def = "1", .off = offsetof(struct iec_station_conf, cmdc),
	  .help = "command confirmation: 0 APCI acknowledgement, 1 activation confirmation, 2 activation "
	  "termination, 3 the first of them" },
	{ .name = "gi_period", .type = CK_SECONDS, .min = 0, .max = 86400, .def = "0",
	  .off = offsetof(struct iec_station_conf, gi_ms), .help = "general interrogation every so often (0: only after STARTDT)" },
	{ .name = "ci_period", .type = CK_SECONDS, .min = 0, .max = 86400, .def = "0",
	  .off = offsetof(struct iec_station_conf, ci_ms), .help = "counter interrogation every so often (0: never)" },
	{ .name = "clock_sync_period", .type = CK_SECONDS, .min = 0, .max = 86400, .def = "0",
	  .off = offsetof(struct iec_station_conf, cs_ms),
	  .help = "clock synchronisation after STARTDT and every so often (0: never)" },
	{ .name = NULL, .type = CK_END },
};

const struct conf_key iec_server_station_keys[] = {
	{ .name = "time_zone", .type = CK_CHOICE, .def = "utc", .choices = iec_tz_choices,
	  .off = offsetof(struct iec_station_conf, time_zone), .help = "time tags in UTC or local time" },
	{ .name = "cmdc", .type = CK_INT, .min = 0, .max = 3, .def = "3", .off = offsetof(struct iec_station_conf, cmdc),
	  .help = "command replies: 0 none, 1 activation confirmation, 2 activation termination, 3 both" },
	{ .name = "select_timeout", .type = CK_SECONDS, .min = 0.1, .max = 3600, .def = "10",
	  .off = offsetof(struct iec_station_conf, select_ms),
	  .help = "how long a select (select before operate) waits for its execute" },
	{ .name = NULL, .type = CK_END },
};

const struct conf_key iec_tag_keys[] = {
	{ .name = "iec_type", .type = CK_STRING, .def = "", .off = offsetof(struct iec_tag_conf, iec_type),
	  .help = "the ASDU type: a name such as M_ME_NC_1 or C_SC_NA_1, or its number" },
	{ .name = "sbo", .type = CK_BOOL, .def = "false", .off = offsetof(struct iec_tag_conf, sbo),
	  .help = "commands: select before operate" },
	{ .name = "group", .type = CK_INT, .min = 0, .max = 16, .def = "0", .off = offsetof(struct iec_tag_conf, group),
	  .help = "server: interrogation group 1..16 (0: station interrogation only)" },
	{ .name = "cyclic", .type = CK_SECONDS, .min = 0, .max = 86400, .def = "0",
	  .off = offsetof(struct iec_tag_conf, cyclic_ms), .help = "server: send cyclically (COT 1) this often (0: never)" },
	{ .name = NULL, .type = CK_END },
};

static int
iec_parse_type(const char *s, uint8_t *type)
{
	char *end;
	long v;

	if (!s || !*s)
		return -1;
	v = strtol(s, &end, 10);
	if (*end == '\0') {
		if (v < 1 || v > 127 || !iec_type_name((uint8_t)v))
			return -1;
		*type = (uint8_t)v;
		return 0;
	}
	for (int t = 1; t < 128; t++) {
		const char *n = iec_type_name((uint8_t)t);
		if (n && strcasecmp(n, s) == 0) {
			*type = (uint8_t)t;
			return 0;
		}
	}
	return -1;
}


/* Which komd value types a type carries. */
static bool
iec_type_fits(uint8_t t, enum vtype vt)
{
	switch (t) {
	case M_SP_NA_1: case M_SP_TA_1: case M_SP_TB_1: case C_SC_NA_1: case C_SC_TA_1:
		return vt == VT_BOOL || vt == VT_INT;
	case M_DP_NA_1: case M_DP_TA_1: case M_DP_TB_1: case C_DC_NA_1: case C_DC_TA_1:
		return vt == VT_DPI || vt == VT_INT;
	case M_ME_NA_1: case M_ME_TA_1: case M_ME_ND_1: case M_ME_TD_1: case C_SE_NA_1: case C_SE_TA_1:
	case M_ME_NC_1: case M_ME_TC_1: case M_ME_TF_1: case C_SE_NC_1: case C_SE_TC_1:
		return vt == VT_FLOAT || vt == VT_INT;
	default:
		return vt == VT_INT || vt == VT_FLOAT || vt == VT_BOOL;
	}
}

/* "a, b; c": address lists (conf.h: literals, optional prefix lengths) separated by ';',
 * one a redundancy group. 0, or -1 with err. */
static int
iec_check_groups(const char *list, char *err, size_t errlen)
{
	char copy[2048], *save = NULL, aerr[160];
	struct addrlist al;

	if (!list || !*list)
		return 0;
	if (strlen(list) >= sizeof(copy)) {
		snprintf(err, errlen, "'groups' is too long");
		return -1;
	}
	snprintf(copy, sizeof(copy), "%s", list);
	for (char *g = strtok_r(copy, ";", &save); g; g = strtok_r(NULL, ";", &save))
		if (conf_parse_addrlist(g, &al, aerr, sizeof(aerr)) != 0) {
			snprintf(err, errlen, "'groups': %s", aerr);
			return -1;
		}
	return 0;
}

int
iec_check_line(const struct line_conf *lc, char *err, size_t errlen)
{
	const struct iec_line_conf *c = lc->pconf;

	/* groups must be addresses (the core checks the line's allow list); w over 2k/3 and t2 >= t1 go against the standard's
	 * advice (5.5 of IEC 60870-5-104) but stay possible, with a warning (odd peers, tests) */
	if (!c)
		return 0;
	if (lc->ops->transport == PROTO_LISTEN && iec_check_groups(c->groups, err, errlen) != 0)
		return -1;
	/* 101 7.2.4: a common address fits ca_size octets, and its highest value is the global
	 * address (a broadcast), no station's */
	long top = c->ca_len == 2 ? 0xFFFF : 0xFF;
	for (int i = 0; i < lc->nstations; i++) {
		const struct station_conf *sc = &lc->stations[i];
		long ca = sc->address ? strtol(sc->address, NULL, 10) : 0;
		if (ca >= top) {
			snprintf(err, errlen, "station '%s': common address %ld %s (ca_size %d: 1..%ld)", sc->name ? sc->name : "",
			    ca, ca == top ? "is the global address" : "does not fit", c->ca_len, top - 1);
			return -1;
		}
	}
	int n = 0;
	if (3 * c->w > 2 * c->k)
		n += snprintf(err, errlen, "w %d is more than two thirds of k %d (the standard's advice): a peer with "
		    "the same k may stop sending and wait for our acknowledgement until t2", c->w, c->k);
	if (c->t2_ms >= c->t1_ms && (size_t)n < errlen)
		n += snprintf(err + n, errlen - (size_t)n, "%st2 (%g s) is not less than t1 (%g s): a peer with the "
		    "same t1 may close the connection before we acknowledge", n ? "; " : "", c->t2_ms / 1000.0,
		    c->t1_ms / 1000.0);
	return n > 0 ? 1 : 0;
}

int
iec_check_station(const struct station_conf *sc, char *err, size_t errlen)
{
	char *end;
	long v;

	if (sc->simulation && !sc->address)
		return 0;
	v = sc->address ? strtol(sc->address, &end, 10) : -1;
	if (!sc->address || *end != '\0' || v < 1 || v > 65535) {
		snprintf(err, errlen, "an IEC 104 station's address is its common address, 1..65535");
		return -1;
	}
	return 0;
}

int
iec_check_tag(const struct station_conf *sc, const struct tag_conf *tc, char *err, size_t errlen)
{
	const struct iec_tag_conf *c = tc->pconf;
	uint32_t ioa;
	bool ignore;
	uint8_t type = 0;

	(void)sc;
	if (!tc->address)
		return 0;
	if (iec_parse_ioa(tc->address, 3, &ioa, &ignore, err, errlen) != 0)
		return -1;
	if (c && c->iec_type && *c->iec_type) {
		if (iec_parse_type(c->iec_type, &type) != 0) {
			snprintf(err, errlen, "unknown iec_type '%s'", c->iec_type);
			return -1;
		}
		if (!iec_is_monitor(type) && !iec_is_command(type)) {
			snprintf(err, errlen, "iec_type %s is not a monitor or command type", c->iec_type);
			return -1;
		}
		if (!iec_type_fits(type, tc->type)) {
			snprintf(err, errlen, "a %s tag cannot be iec_type %s", vtype_name(tc->type), iec_type_name(type));
			return -1;
		}
	}
	return 0;
}

/* ---- values ---- */

/* komd's quality bits and a type's quality descriptor (iec_quality_mask). Integrated totals
 * (BCR) have their own: CY (carry) is komd's overflow, CA (counter adjusted) its
 * substituted. */
unsigned
iec_q_from_wire(uint8_t type, uint8_t q)
{
	if (iec_quality_mask(type) == 0xe0)
		return ((q & IEC_Q_IV) ? Q_INVALID : 0) | ((q & IEC_Q_CY) ? Q_OVERFLOW : 0) |
		    ((q & IEC_Q_CA) ? Q_SUBSTITUTED : 0);
	return ((q & IEC_Q_IV) ? Q_INVALID : 0) | ((q & IEC_Q_NT) ? Q_NOTTOPICAL : 0) |
	    ((q & IEC_Q_SB) ? Q_SUBSTITUTED : 0) | ((q & IEC_Q_BL) ? Q_BLOCKED : 0) | ((q & IEC_Q_OV) ? Q_OVERFLOW : 0);
}

uint8_t
iec_q_to_wire(uint8_t type, unsigned q)
{
	uint8_t mask = iec_quality_mask(type);

	if (mask == 0xe0)
		return (uint8_t)(((q & Q_INVALID) ? IEC_Q_IV : 0) | ((q & Q_OVERFLOW) ? IEC_Q_CY : 0) |
		    ((q & Q_SUBSTITUTED) ? IEC_Q_CA : 0));
	return (uint8_t)((((q & Q_INVALID) ? IEC_Q_IV : 0) | ((q & Q_NOTTOPICAL) ? IEC_Q_NT : 0) |
	    ((q & Q_SUBSTITUTED) ? IEC_Q_SB : 0) | ((q & Q_BLOCKED) ? IEC_Q_BL : 0) | ((q & Q_OVERFLOW) ? IEC_Q_OV : 0)) & mask);
}

/* Which value family a type carries. */
enum iec_family { F_SP, F_DP, F_INT, F_UINT, F_FLOAT, F_OTHER };

static enum iec_family
iec_family(uint8_t t)
{
	switch (t) {
	case M_SP_NA_1: case M_SP_TA_1: case M_SP_TB_1: case C_SC_NA_1: case C_SC_TA_1:
		return F_SP;
	case M_DP_NA_1: case M_DP_TA_1: case M_DP_TB_1: case C_DC_NA_1: case C_DC_TA_1:
		return F_DP;
	case M_ME_NA_1: case M_ME_TA_1: case M_ME_ND_1: case M_ME_TD_1: case C_SE_NA_1: case C_SE_TA_1:
	case M_ME_NC_1: case M_ME_TC_1: case M_ME_TF_1: case C_SE_NC_1: case C_SE_TC_1:
		return F_FLOAT;
	case M_BO_NA_1: case M_BO_TA_1: case M_BO_TB_1: case C_BO_NA_1: case C_BO_TA_1: case M_PS_NA_1:
	case M_EP_TB_1: case M_EP_TC_1: case M_EP_TE_1: case M_EP_TF_1:
		return F_UINT;
	case M_ST_NA_1: case M_ST_TA_1: case M_ST_TB_1: case M_ME_NB_1: case M_ME_TB_1: case M_ME_TE_1:
	case C_SE_NB_1: case C_SE_TB_1: case M_IT_NA_1: case M_IT_TA_1: case M_IT_TB_1: case C_RC_NA_1: case C_RC_TA_1:
	case M_EP_TA_1: case M_EP_TD_1:
		return F_INT;
	default:
		return F_OTHER;
	}
}

bool
iec_has_time(uint8_t t)
{
	return t == M_SP_TA_1 || t == M_DP_TA_1 || t == M_ST_TA_1 || t == M_BO_TA_1 || t == M_ME_TA_1 ||
	    t == M_ME_TB_1 || t == M_ME_TC_1 || t == M_IT_TA_1 || (t >= M_EP_TA_1 && t <= M_EP_TC_1) ||
	    (t >= 30 && t <= 40) || (t >= 58 && t <= 64);
}

static bool
iec_is_r32(uint8_t t)
{
	return t == M_ME_NC_1 || t == M_ME_TC_1 || t == M_ME_TF_1 || t == C_SE_NC_1 || t == C_SE_TC_1;
}

enum iec_fit
iec_obj_to_value(uint8_t type, const struct iec_obj *o, struct value *v)
{
	enum iec_fit r = IEC_FIT_OK;
	double min, max, step, x;
	int64_t i;

	switch (iec_family(type)) {
	case F_FLOAT:
		x = o->v.f;
		break;
	case F_UINT:
		x = o->v.u;
		break;
	default:
		x = (double)o->v.i;
		break;
	}
	/* what the type may carry: NaN and infinities (R32), a double command's 0 and 3 */
	if (isnan(x) || isinf(x))
		r = IEC_FIT_NAN;
	else if (iec_value_range(type, &min, &max, &step) && (x < min || x > max))
		r = IEC_FIT_RANGE;
	if (v->type == VT_FLOAT) {
		v->f = iec_is_r32(type) ? value_float32_decimal(x) : x;
		return r;
	}
	/* what the tag may hold */
	i = iec_family(type) == F_FLOAT ? value_round_i64(x) : iec_family(type) == F_UINT ? (int64_t)o->v.u : o->v.i;
	if (r == IEC_FIT_OK && (x < -9223372036854775808.0 || x >= 9223372036854775808.0 ||
	    (v->type == VT_BOOL && i != 0 && i != 1) || (v->type == VT_DPI && (i < 0 || i > 3))))
		r = IEC_FIT_RANGE;
	if (v->type == VT_BOOL)
		i = i != 0;
	else if (v->type == VT_DPI)
		i = i < 0 ? 0 : i > 3 ? 3 : i;
	v->i = i;
	return r;
}

enum iec_fit
iec_value_fit(uint8_t type, const struct value *v, struct iec_obj *o)
{
	enum iec_fit r = IEC_FIT_OK;
	double min, max, step, x = v->type == VT_FLOAT ? v->f : (double)v->i;

	if (!iec_value_range(type, &min, &max, &step))
		return IEC_FIT_OK; /* no value */
	if (isnan(x)) {
		x = min > 0 ? min : 0;
		r = IEC_FIT_NAN;
	} else if (isinf(x)) {
		x = x > 0 ? max : min;
		r = IEC_FIT_NAN;
	} else {
		if (step > 0)
			x = round(x / step) * step; /* to the type's resolution (halves away from zero) */
		if (x < min || x > max) {
			x = x < min ? min : max;
			r = IEC_FIT_RANGE;
		}
	}
	switch (iec_family(type)) {
	case F_FLOAT:
		o->v.f = x;
		break;
	case F_UINT:
		o->v.u = (uint32_t)x;
		break;
	default:
		o->v.i = (int64_t)x;
		break;
	}
	return r;
}

/* ---- per-station index of tags by IOA ---- */

static int
iec_idx_cmp(const void *x, const void *y)
{
	const struct iec_idx *a = x, *b = y;
	return a->ioa < b->ioa ? -1 : a->ioa > b->ioa;
}

int
iec_find(const struct iec_stn *sn, uint32_t ioa)
{
	int lo = 0, hi = sn->nidx;

	while (lo < hi) {
		int mid = (lo + hi) / 2;
		if (sn->idx[mid].ioa < ioa)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < sn->nidx && sn->idx[lo].ioa == ioa ? lo : -1;
}

struct station *
iec_station_by_ca(struct line *l, uint16_t ca)
{
	for (int i = 0; i < line_nstations(l); i++) {
		struct station *st = line_station(l, i);
		if (((struct iec_stn *)station_priv(st))->ca == ca)
			return st;
	}
	return NULL;
}

/* ---- stations (both roles) ---- */

int
iec_station_init(struct station *st)
{
	struct iec_stn *sn = station_priv(st);
	struct line *l = station_line(st);
	bool server = line_listens(l);
	const struct station_conf *sc = station_conf(st);
	int n = station_ntags(st);

	sn->ca = sc->address ? (uint16_t)strtoul(sc->address, NULL, 10) : 0;
	if ((sn->idx = calloc((size_t)(n ? n : 1), sizeof(*sn->idx))) == NULL)
		return -1;
	for (int i = 0; i < n; i++) {
		struct stag *t = station_stag(st, i);
		struct iec_tag *it = stag_priv(t);
		const struct iec_tag_conf *tc = stag_conf(t)->pconf;
		char err[120];

		if (!stag_conf(t)->address ||
		    iec_parse_ioa(stag_conf(t)->address, lpriv(l)->prm.ioa_len, &it->ioa, &it->ignore, err, sizeof(err)) != 0) {
			it->ignore = true;
			continue;
		}
		if (tc && tc->iec_type && *tc->iec_type)
			iec_parse_type(tc->iec_type, &it->type);
		if (it->ignore)
			continue;
		sn->idx[sn->nidx++] = (struct iec_idx){ it->ioa, i };
		if (server && tc && tc->cyclic_ms) {
			if ((it->cyclic = station_timer(st, iec_cyclic_cb, t)) == NULL)
				goto fail;
			ptimer_start(it->cyclic, tc->cyclic_ms);
		}
	}
	if (sn->nidx > 1)
		qsort(sn->idx, (size_t)sn->nidx, sizeof(*sn->idx), iec_idx_cmp);
	if (!server) {
		sn->gi = station_timer(st, iec_gi_cb, st);
		sn->ci = station_timer(st, iec_ci_cb, st);
		sn->cs = station_timer(st, iec_cs_cb, st);
		if (!sn->gi || !sn->ci || !sn->cs)
			goto fail;
	}
	return 0;
fail:
	/* station_free is not called after a failed init (proto.h): undo what was made here;
	 * the station's timers go with the station (the core's) */
	free(sn->idx);
	sn->idx = NULL;
	sn->nidx = 0;
	return -1;
}

void
iec_station_free(struct station *st)
{
	iec_client_station_free(st);
	free(((struct iec_stn *)station_priv(st))->idx);
}

int
iec_line_init(struct line *l)
{
	struct iec_line *il = lpriv(l);
	const struct iec_line_conf *c = lconf(l);

	il->prm = (struct iec_params){ .cot_len = (uint8_t)c->cot_len, .ca_len = (uint8_t)c->ca_len,
		.ioa_len = (uint8_t)c->ioa_len };
	if (!line_listens(l))
		return 0;
	return iec_server_line_init(l);
}

void
iec_line_free(struct line *l)
{
	if (line_listens(l))
		iec_server_line_free(l);
}
