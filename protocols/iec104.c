/* iec104.c: the iec104-client (controlling station) and iec104-server (controlled
 * station) protocols of IEC 60870-5-104 (frames in iec104_codec.c).
 *
 * Both: the APCI rules of clause 5: I-frames numbered modulo 32768 and checked on both
 * sides (a wrong N(S) or N(R) closes the connection), at most k unacknowledged I-frames
 * sent (more wait), an acknowledgement at the latest after w received I-frames or t2,
 * t1 for an acknowledgement or a confirmation, t3 idle before TESTFR; STARTDT, STOPDT,
 * TESTFR.
 *
 * Client: STARTDT, then a general interrogation of every station (common address);
 * periodic interrogation, counter interrogation and clock synchronisation per station.
 * Values map to tags by IOA (and the tag's type); quality and CP56Time2a come along.
 * Commands go out as the tag's command type, confirmed per the station's cmdc (0 APCI
 * acknowledgement, 1 activation confirmation, 2 activation termination, 3 the first of
 * them). On tcp-redundant lines (parallel policy) one connection is started and carries
 * data, the other is kept alive with TESTFR; when the started one fails the other is
 * started at once and interrogated.
 *
 * Server: clients are grouped (by address; one group for all by default); in a group one
 * connection is started, a STARTDT on another moves data to it. Each group has a bounded
 * event queue: spontaneous changes wait there while no connection of the group is
 * started, and I-frames not acknowledged when a connection stops or fails are sent again
 * on the next started one. General interrogation (COT 20, groups), cyclic transmission
 * (COT 1), end of initialisation, clock synchronisation, and commands routed to the
 * tags' acquirers with replies per cmdc. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "proto.h"
#include "iec104_codec.h"

/* ---- configuration ---- */

static const char *const iec_tz_choices[] = { "utc", "local", NULL };

struct iec_line_conf {
	int k, w;
	int t1_ms, t2_ms, t3_ms;
	int cot_len, ca_len, ioa_len;
	char *groups;          /* server: "ip,ip; ip" */
	char *allow;           /* server: "ip, ip" */
	int queue_size;        /* server: events kept per group */
	bool end_of_init;      /* server: M_EI_NA_1 after STARTDT */
};

struct iec_station_conf {
	int time_zone;         /* 0 UTC, 1 local */
	int cmdc;              /* command confirmation mode 0..3 */
	int gi_ms;             /* client: periodic general interrogation, 0 only after STARTDT */
	int ci_ms;             /* client: counter interrogation, 0 off */
	int cs_ms;             /* client: clock synchronisation, 0 off (after STARTDT too when set) */
};

struct iec_tag_conf {
	char *iec_type;        /* "M_ME_NC_1" or a number */
	bool sbo;              /* commands: select before operate */
	int group;             /* server: interrogation group 1..16, 0 none */
	int cyclic_ms;         /* server: cyclic transmission (COT 1), 0 off */
};

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

static const struct conf_key iec_client_line_keys[] = {
	IEC_COMMON_LINE_KEYS,
	{ .name = NULL, .type = CK_END },
};

static const struct conf_key iec_server_line_keys[] = {
	IEC_COMMON_LINE_KEYS,
	{ .name = "groups", .type = CK_STRING, .def = "", .off = offsetof(struct iec_line_conf, groups),
	  .help = "redundancy groups of clients: addresses separated by ',' within a group and ';' between groups; "
	  "clients in no group share one (empty: one group for all)" },
	{ .name = "allow", .type = CK_STRING, .def = "", .off = offsetof(struct iec_line_conf, allow),
	  .help = "client addresses allowed to connect, separated by ','; empty: all" },
	{ .name = "queue_size", .type = CK_INT, .min = 1, .max = 10000000, .def = "100000",
	  .off = offsetof(struct iec_line_conf, queue_size),
	  .help = "events kept per group while no connection of it is started; on overflow the oldest go" },
	{ .name = "end_of_init", .type = CK_BOOL, .def = "true", .off = offsetof(struct iec_line_conf, end_of_init),
	  .help = "send end of initialisation (M_EI_NA_1) after STARTDT" },
	{ .name = NULL, .type = CK_END },
};

static const struct conf_key iec_client_station_keys[] = {
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

static const struct conf_key iec_server_station_keys[] = {
	{ .name = "time_zone", .type = CK_CHOICE, .def = "utc", .choices = iec_tz_choices,
	  .off = offsetof(struct iec_station_conf, time_zone), .help = "time tags in UTC or local time" },
	{ .name = "cmdc", .type = CK_INT, .min = 0, .max = 3, .def = "3", .off = offsetof(struct iec_station_conf, cmdc),
	  .help = "command replies: 0 none, 1 activation confirmation, 2 activation termination, 3 both" },
	{ .name = NULL, .type = CK_END },
};

static const struct conf_key iec_tag_keys[] = {
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

static bool iec_is_monitor(uint8_t t) { return (t >= 1 && t <= 21) || (t >= 30 && t <= 40); }
static bool iec_is_command(uint8_t t) { return (t >= 45 && t <= 51) || (t >= 58 && t <= 64); }

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

/* "a, b; c": addresses separated by ',' (and ';' between groups), each an IP literal. */
static int
iec_check_addrs(const char *key, const char *list, char *err, size_t errlen)
{
	char copy[600], *save = NULL;

	if (!list || !*list)
		return 0;
	if (strlen(list) >= sizeof(copy)) {
		snprintf(err, errlen, "'%s' is too long", key);
		return -1;
	}
	snprintf(copy, sizeof(copy), "%s", list);
	for (char *a = strtok_r(copy, ",; ", &save); a; a = strtok_r(NULL, ",; ", &save)) {
		struct hostlist hl;
		char herr[160];
		if (conf_parse_hostlist(a, true, &hl, herr, sizeof(herr)) != 0 || hl.h[0].wildcard) {
			snprintf(err, errlen, "'%s': '%s' is not an IP address", key, a);
			return -1;
		}
	}
	return 0;
}

static int
iec_check_line(const struct line_conf *lc, char *err, size_t errlen)
{
	const struct iec_line_conf *c = lc->pconf;

	/* addresses must be addresses; w over 2k/3 and t2 >= t1 go against the standard's
	 * advice (5.5 of IEC 60870-5-104) but stay possible, with a warning (odd peers, tests) */
	if (!c)
		return 0;
	if (lc->ops->role == ROLE_SERVER &&
	    (iec_check_addrs("groups", c->groups, err, errlen) != 0 || iec_check_addrs("allow", c->allow, err, errlen) != 0))
		return -1;
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

static int
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

static int
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

/* ---- state ---- */

struct iec_tag {
	uint32_t ioa;
	uint8_t type;           /* 0: any monitor type (client inputs) */
	bool ignore;
	struct ptimer *cyclic;  /* server */
};

/* An ASDU waiting to be sent, or sent and not yet acknowledged. */
struct iec_msg {
	struct iec_msg *next;
	uint16_t ns;            /* when sent */
	int64_t sent_ms;        /* when sent, monotonic: t1 runs from here */
	bool event;             /* server: a spontaneous event (requeued if unacknowledged) */
	struct write_req *wr;   /* client command with cmdc 0: done when acknowledged */
	size_t len;
	uint8_t asdu[];
};

struct iec_mq {
	struct iec_msg *head, **tail;
	int n;
};

/* A redundancy group of the server: its started connection and its event queue. */
struct iec_group {
	struct session *started;
	struct iec_mq events;
	uint64_t dropped;
	char addrs[512];        /* ",a,b," for lookup; "" the default group */
};

/* A command's reply (cmdc decides which) after the routed write's answer. */
struct iec_srv_cmd {
	struct iec_line *il;
	struct write_req *req;  /* the routed write, until its answer */
	struct session *s;      /* NULL when the session went */
	struct iec_asdu a;      /* the command, to mirror */
	int cmdc;
	struct iec_srv_cmd *next;
};

struct iec_line {
	struct iec_params prm;
	struct iec_srv_cmd *pending;  /* server: commands routed, waiting for their answers */
	struct iec_group *groups;
	int ngroups;            /* the last is the default group */
};

struct iec_sess {
	uint16_t vs, vr, ack;   /* next N(S) to send, next N(S) expected, oldest unacknowledged */
	int unacked_in;         /* I-frames received and not acknowledged by us */
	bool ack_due;           /* w reached: an S-frame once the frames read together are handled */
	bool started;           /* data transfer started */
	bool startdt_sent;      /* client: waiting for STARTDT con */
	uint8_t u_pending;      /* U acts sent, waiting for their con (t1): 1 << IEC_UA_* */
	int64_t u_sent_ms[3];   /* when each was sent, monotonic */
	bool orphans;           /* I-frames sent and requeued elsewhere (STOPDT), not yet acknowledged */
	uint16_t orphan_end;    /* their N(S) are before this */
	int64_t orphan_ms;      /* the oldest's sending */
	bool hold;              /* building a burst (an interrogation): flush once at its end */
	struct ptimer *t1, *t2, *t3;
	struct iec_mq out;      /* waiting for room in the k window */
	struct iec_mq sent;     /* sent, not acknowledged */
	struct iec_group *group;
};

/* A client command waiting for its confirmation. */
struct iec_cmd {
	struct iec_cmd *next;
	struct write_req *wr;
	struct stag *tag;
	uint8_t type;
	uint32_t ioa;
	bool selecting;         /* select sent; execute follows its ActCon */
	struct iec_asdu *exec;  /* the execute ASDU of a select-before-operate */
};

static const struct iec_line_conf *lconf(const struct line *l) { return line_conf(l)->pconf; }
static struct iec_line *lpriv(const struct line *l) { return line_priv(l); }
static const struct iec_tag *itag(const struct stag *t) { return stag_priv((struct stag *)t); }
static const struct iec_station_conf *sconf(const struct station *st) { return station_conf(st)->pconf; }

static void
mq_push(struct iec_mq *q, struct iec_msg *m, bool front)
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

static struct iec_msg *
mq_pop(struct iec_mq *q)
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

static void
mq_clear(struct iec_mq *q)
{
	struct iec_msg *m;

	while ((m = mq_pop(q)) != NULL) {
		if (m->wr)
			write_done(m->wr, -1, "connection lost");
		free(m);
	}
}

static struct iec_msg *
msg_new(const uint8_t *asdu, size_t len)
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

static int64_t
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

static void
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

static void
iec_send_s(struct session *s)
{
	struct iec_sess *is = session_priv(s);
	uint8_t apdu[IEC_APCI_LEN];

	iec_send_raw(s, apdu, iec_encode_s(apdu, is->vr));
	is->unacked_in = 0;
	ptimer_stop(is->t2);
}

/* Send what the k window allows from the session's queue. */
static void
iec_flush(struct session *s)
{
	struct iec_sess *is = session_priv(s);
	const struct iec_line_conf *c = lconf(session_line(s));
	struct iec_msg *m;

	/* the frames the window allows go out in one write, not one send() each */
	uint8_t batch[64 * IEC_MAX_APDU];
	size_t used = 0;
	int64_t now = 0;

	if (is->hold)
		return;
	while (is->out.head && iec_seq_diff(is->vs, is->ack) < c->k) {
		uint8_t *apdu = batch + used;
		size_t n;

		m = mq_pop(&is->out);
		m->ns = is->vs;
		m->sent_ms = now ? now : (now = iec_mono_ms());
		n = iec_encode_i(apdu, is->vs, is->vr, m->asdu, m->len);
		is->vs = iec_seq_add(is->vs, 1);
		is->unacked_in = 0; /* the I-frame carries our acknowledgement */
		ptimer_stop(is->t2);
		mq_push(&is->sent, m, false);
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

/* Queue encoded ASDU bytes for the session (sent at once when the window allows). */
static int
iec_send_bytes(struct session *s, const uint8_t *asdu, size_t n, struct write_req *wr, bool event)
{
	struct iec_sess *is = session_priv(s);
	struct iec_msg *m;

	if (n == 0 || (m = msg_new(asdu, n)) == NULL)
		return -1;
	if (is->out.n >= IEC_MAX_OUT) {
		/* the peer does not acknowledge (or keeps asking): close rather than grow */
		free(m);
		session_protocol_error(s, "over %d frames waiting for the k window: the peer does not acknowledge",
		    IEC_MAX_OUT);
		return -1;
	}
	m->wr = wr;
	m->event = event;
	mq_push(&is->out, m, false);
	iec_flush(s);
	return 0;
}

static struct station *iec_station_by_ca(struct line *l, uint16_t ca);

/* The line's field sizes, with the time zone of the station with common address ca. */
static struct iec_params
iec_prm(struct line *l, uint16_t ca)
{
	struct iec_params p = lpriv(l)->prm;
	struct station *st = iec_station_by_ca(l, ca);

	if (st && station_conf(st)->pconf)
		p.local_time = ((const struct iec_station_conf *)station_conf(st)->pconf)->time_zone == 1;
	return p;
}

static int
iec_send_asdu(struct session *s, const struct iec_asdu *a, struct write_req *wr)
{
	uint8_t buf[IEC_MAX_ASDU];
	struct iec_params p = iec_prm(session_line(s), a->ca);

	return iec_send_bytes(s, buf, iec_asdu_encode(a, &p, buf, sizeof(buf)), wr, false);
}

static void iec_server_requeue(struct session *s);

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
		m = mq_pop(&is->sent);
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
	iec_flush(s);
	return 0;
}

static void
iec_t1_cb(void *arg)
{
	struct session *s = arg;
	struct iec_sess *is = session_priv(s);
	const char *what;

	iec_t1_due(is, lconf(session_line(s))->t1_ms, &what);
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
	else
		iec_send_u(s, IEC_U_TESTFR_ACT);
}

static void
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

static void iec_client_asdu(struct session *s, const struct iec_asdu *a);
static void iec_server_asdu(struct session *s, const struct iec_asdu *a);
static void iec_client_started(struct session *s);
static void iec_server_startdt(struct session *s);
static void iec_server_stopdt(struct session *s);

/* One APDU from the peer. */
static int
iec_frame(struct session *s, const struct iec_apci *ap, bool server)
{
	struct iec_sess *is = session_priv(s);
	const struct iec_line_conf *c = lconf(session_line(s));
	struct iec_line *il = lpriv(session_line(s));

	switch (ap->format) {
	case IEC_S:
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
				is->started = true;
				is->startdt_sent = false;
				iec_client_started(s);
			}
			return 0;
		case IEC_U_STARTDT_ACT:
			if (!server) {
				session_protocol_error(s, "STARTDT act from a controlled station");
				return -1;
			}
			iec_send_u(s, IEC_U_STARTDT_CON);
			iec_server_startdt(s);
			return 0;
		case IEC_U_STOPDT_ACT:
			if (!server) {
				session_protocol_error(s, "STOPDT act from a controlled station");
				return -1;
			}
			iec_server_stopdt(s);
			iec_send_u(s, IEC_U_STOPDT_CON);
			return 0;
		default:
			session_protocol_error(s, "unknown U frame 0x%02x", ap->u);
			return -1;
		}
	case IEC_I:
		if (ap->ns != is->vr) {
			session_protocol_error(s, "wrong N(S) %u, expected %u", ap->ns, is->vr);
			return -1;
		}
		if (!is->started) {
			session_protocol_error(s, server ? "I-frame before STARTDT" : "I-frame before STARTDT con");
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
static int
iec_read_done(struct session *s)
{
	struct iec_sess *is = session_priv(s);

	if (is->ack_due && is->unacked_in > 0 && !session_closing(s))
		iec_send_s(s);
	is->ack_due = false;
	return 0;
}

static int
iec_read(struct session *s, struct evbuffer *in, bool server)
{
	for (;;) {
		size_t len = evbuffer_get_length(in), flen;
		size_t want = len < IEC_MAX_APDU ? len : IEC_MAX_APDU;
		uint8_t *buf;
		struct iec_apci ap;
		char err[160];
		int r;

		if (len == 0 || session_closing(s))
			return iec_read_done(s); /* a write may have closed it: no more frames */
		buf = evbuffer_pullup(in, (ev_ssize_t)want);
		if ((r = iec_apci_parse(buf, want, &ap, &flen, err, sizeof(err))) == 0)
			return iec_read_done(s);
		if (r < 0) {
			session_protocol_error(s, "%s", err);
			return -1;
		}
		session_count_frame(s, false);
		iec_trace(s, false, buf, flen);
		ptimer_start(((struct iec_sess *)session_priv(s))->t3, lconf(session_line(s))->t3_ms);
		if (iec_frame(s, &ap, server) != 0)
			return -1;
		evbuffer_drain(in, flen);
	}
}

static int iec_client_read(struct session *s, struct evbuffer *in) { return iec_read(s, in, false); }
static int iec_server_read(struct session *s, struct evbuffer *in) { return iec_read(s, in, true); }

/* ---- values ---- */

static unsigned
iec_q_from_wire(uint8_t q)
{
	return ((q & IEC_Q_IV) ? Q_INVALID : 0) | ((q & IEC_Q_NT) ? Q_NOTTOPICAL : 0) |
	    ((q & IEC_Q_SB) ? Q_SUBSTITUTED : 0) | ((q & IEC_Q_BL) ? Q_BLOCKED : 0) | ((q & IEC_Q_OV) ? Q_OVERFLOW : 0);
}

static uint8_t
iec_q_to_wire(unsigned q)
{
	return (uint8_t)(((q & Q_INVALID) ? IEC_Q_IV : 0) | ((q & Q_NOTTOPICAL) ? IEC_Q_NT : 0) |
	    ((q & Q_SUBSTITUTED) ? IEC_Q_SB : 0) | ((q & Q_BLOCKED) ? IEC_Q_BL : 0) | ((q & Q_OVERFLOW) ? IEC_Q_OV : 0));
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

static bool
iec_has_time(uint8_t t)
{
	return t == M_SP_TA_1 || t == M_DP_TA_1 || t == M_ST_TA_1 || t == M_BO_TA_1 || t == M_ME_TA_1 ||
	    t == M_ME_TB_1 || t == M_ME_TC_1 || t == M_IT_TA_1 || (t >= M_EP_TA_1 && t <= M_EP_TC_1) ||
	    (t >= 30 && t <= 40) || (t >= 58 && t <= 64);
}

static void
iec_obj_to_value(uint8_t type, const struct iec_obj *o, struct value *v)
{
	switch (iec_family(type)) {
	case F_FLOAT:
		if (v->type == VT_FLOAT)
			v->f = (type == M_ME_NC_1 || type == M_ME_TC_1 || type == M_ME_TF_1 || type == C_SE_NC_1 ||
			    type == C_SE_TC_1) ? value_float32_decimal(o->v.f) : o->v.f;
		else
			v->i = value_round_i64(o->v.f);
		return;
	case F_UINT:
		v->i = (int64_t)o->v.u;
		break;
	default:
		v->i = o->v.i;
		break;
	}
	if (v->type == VT_FLOAT)
		v->f = (double)v->i;
}

static void
iec_value_to_obj(uint8_t type, const struct value *v, struct iec_obj *o)
{
	double f = v->type == VT_FLOAT ? v->f : (double)v->i;
	int64_t i = v->type == VT_FLOAT ? value_round_i64(v->f) : v->i;

	switch (iec_family(type)) {
	case F_FLOAT:
		o->v.f = f;
		break;
	case F_UINT:
		o->v.u = (uint32_t)i;
		break;
	case F_SP:
		o->v.i = i != 0;
		break;
	default:
		o->v.i = i;
		break;
	}
}

/* ---- per-station index of tags by IOA ---- */

struct iec_idx {
	uint32_t ioa;
	int tag;
};

struct iec_stn {            /* both roles */
	uint16_t ca;
	struct iec_idx *idx;
	int nidx;
	struct ptimer *gi, *ci, *cs;   /* client */
	struct iec_cmd *cmds;          /* client */
};

static int
iec_idx_cmp(const void *x, const void *y)
{
	const struct iec_idx *a = x, *b = y;
	return a->ioa < b->ioa ? -1 : a->ioa > b->ioa;
}

/* The first index entry for ioa, or -1. */
static int
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

static struct station *
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

static void iec_gi_cb(void *arg);
static void iec_ci_cb(void *arg);
static void iec_cs_cb(void *arg);
static void iec_cyclic_cb(void *arg);

static int
iec_station_init(struct station *st)
{
	struct iec_stn *sn = station_priv(st);
	struct line *l = station_line(st);
	bool server = proto_find(line_conf(l)->protocol)->role == ROLE_SERVER;
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
				return -1;
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
			return -1;
	}
	return 0;
}

static void
iec_station_free(struct station *st)
{
	struct iec_stn *sn = station_priv(st);
	struct iec_cmd *c;

	while ((c = sn->cmds) != NULL) {
		sn->cmds = c->next;
		write_done(c->wr, -1, "station stopped");
		free(c->exec);
		free(c);
	}
	free(sn->idx);
}

static int
iec_line_init(struct line *l)
{
	struct iec_line *il = lpriv(l);
	const struct iec_line_conf *c = lconf(l);

	il->prm = (struct iec_params){ .cot_len = (uint8_t)c->cot_len, .ca_len = (uint8_t)c->ca_len,
		.ioa_len = (uint8_t)c->ioa_len };
	if (proto_find(line_conf(l)->protocol)->role != ROLE_SERVER)
		return 0;
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

static void
iec_line_free(struct line *l)
{
	struct iec_line *il = lpriv(l);

	struct iec_srv_cmd *c;

	for (int g = 0; g < il->ngroups; g++)
		mq_clear(&il->groups[g].events);
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

/* ---- client ---- */

static struct session *
iec_client_session(struct station *st)
{
	struct session *s = line_active_session(station_line(st));

	return s && ((struct iec_sess *)session_priv(s))->started ? s : NULL;
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

static void
iec_gi_cb(void *arg)
{
	struct station *st = arg;
	const struct iec_station_conf *c = sconf(st);

	iec_send_system(st, C_IC_NA_1, 20);
	if (c->gi_ms)
		ptimer_start(((struct iec_stn *)station_priv(st))->gi, c->gi_ms);
}

static void
iec_ci_cb(void *arg)
{
	struct station *st = arg;
	const struct iec_station_conf *c = sconf(st);

	iec_send_system(st, C_CI_NA_1, 5); /* QCC: general counter request, RQT 5 */
	if (c->ci_ms)
		ptimer_start(((struct iec_stn *)station_priv(st))->ci, c->ci_ms);
}

static void
iec_cs_cb(void *arg)
{
	struct station *st = arg;
	const struct iec_station_conf *c = sconf(st);

	iec_send_system(st, C_CS_NA_1, 0);
	if (c->cs_ms)
		ptimer_start(((struct iec_stn *)station_priv(st))->cs, c->cs_ms);
}

/* STARTDT confirmed: interrogate every station, synchronise clocks, start the periods. */
static void
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

	if (is->started || is->startdt_sent)
		return;
	is->startdt_sent = true;
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
iec_other_cb(struct session *s, void *arg)
{
	struct session **found = arg;
	if (!*found)
		*found = s;
}

static void
iec_client_close(struct session *s)
{
	struct iec_sess *is = session_priv(s);
	struct line *l = session_line(s);

	mq_clear(&is->out);
	mq_clear(&is->sent);
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
	/* parallel: the standby is started at once and interrogated */
	if (line_active_session(l) == s && line_running(l)) {
		struct session *other = NULL;
		line_foreach_session(l, iec_other_cb, &other);
		if (other == s)
			other = NULL;
		if (other) {
			line_set_active_session(l, other);
			iec_client_start(other);
		}
	}
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
			if (cmd->type == a->type && cmd->ioa == o->ioa)
				break;
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
			/* the select is confirmed: now execute */
			cmd->selecting = false;
			iec_send_asdu(s, cmd->exec, c->cmdc == 0 ? cmd->wr : NULL);
			if (c->cmdc == 0) {
				*pp = cmd->next;
				free(cmd->exec);
				free(cmd);
			}
			continue;
		}
		bool done = (c->cmdc == 1 && a->cot == COT_ACTCON) || (c->cmdc == 2 && a->cot == COT_ACTTERM) ||
		    c->cmdc == 3;
		if (a->cot == COT_ACTCON) {
			/* the value the device confirms goes to the tag */
			struct value v = { .type = stag_type(cmd->tag) };
			iec_obj_to_value(a->type, o, &v);
			stag_update(cmd->tag, &v, 0, o->has_time ? o->time_ms : 0);
		}
		if (done) {
			*pp = cmd->next;
			write_done(cmd->wr, 0, a->cot == COT_ACTCON ? "activation confirmed" : "activation terminated");
			free(cmd->exec);
			free(cmd);
		}
	}
}

static void
iec_client_asdu(struct session *s, const struct iec_asdu *a)
{
	struct line *l = session_line(s);
	struct station *st = iec_station_by_ca(l, a->ca);

	if (s != line_active_session(l))
		return; /* the standby carries no data */
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
			iec_obj_to_value(a->type, o, &v);
			stag_update(t, &v, iec_q_from_wire(o->q) | (o->time_invalid ? Q_INVALID : 0),
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
	iec_value_to_obj(it->type, write_req_value(req), &a.obj[0]);
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
		iec_send_asdu(s, &a, req);
		return;
	}
	/* commands the core timed out (the station never confirmed) go; the new one joins the
	 * end, so that confirmations match the oldest command of their type and address */
	struct iec_cmd **pp = &sn->cmds;
	while (*pp) {
		struct iec_cmd *old = *pp;
		if (write_req_answered(old->wr)) {
			*pp = old->next;
			write_done(old->wr, -1, "no confirmation");
			free(old->exec);
			free(old);
		} else {
			pp = &old->next;
		}
	}
	*pp = cmd;
	iec_send_asdu(s, &a, NULL);
}

/* ---- server ---- */

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

/* Frames of events a stopped or lost connection did not get acknowledged go back to the
 * front of its group's queue, in order, for the next started connection. */
static void
iec_server_requeue(struct session *s)
{
	struct iec_sess *is = session_priv(s);
	struct iec_group *g = is->group;
	struct iec_mq back = { .tail = &back.head };
	struct iec_msg *m;

	/* frames sent and not acknowledged are still owed an acknowledgement within t1 */
	if (is->sent.head) {
		if (!is->orphans)
			is->orphan_ms = is->sent.head->sent_ms;
		is->orphans = true;
		is->orphan_end = is->vs;
	}
	/* only events: answers to interrogations and commands belonged to that connection */
	while ((m = mq_pop(&is->sent)) != NULL)
		if (m->event)
			mq_push(&back, m, false);
		else
			free(m);
	while ((m = mq_pop(&is->out)) != NULL)
		if (m->event)
			mq_push(&back, m, false);
		else
			free(m);
	if (!g) {
		mq_clear(&back);
		return;
	}
	/* back before what is queued already; the queue keeps its bound (the oldest go) */
	while ((m = mq_pop(&g->events)) != NULL)
		mq_push(&back, m, false);
	while (back.n > lconf(session_line(s))->queue_size) {
		free(mq_pop(&back));
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
	while ((m = mq_pop(&g->events)) != NULL)
		mq_push(&is->out, m, false);
	iec_flush(s);
}

static void
iec_server_startdt(struct session *s)
{
	struct iec_sess *is = session_priv(s);
	struct line *l = session_line(s);
	struct iec_group *g = is->group;

	if (g->started && g->started != s) {
		/* data moves to this connection; the other stays connected and stopped */
		struct iec_sess *old = session_priv(g->started);
		log_info("line %s: %s: STARTDT: data moves here from %s", line_name(l), session_peer(s),
		    session_peer(g->started));
		old->started = false;
		iec_server_requeue(g->started);
	} else {
		log_info("line %s: %s: data transfer started", line_name(l), session_peer(s));
	}
	g->started = s;
	is->started = true;
	if (lconf(l)->end_of_init) {
		for (int i = 0; i < line_nstations(l); i++) {
			struct iec_asdu a = { .type = M_EI_NA_1, .cot = COT_INIT,
				.ca = ((struct iec_stn *)station_priv(line_station(l, i)))->ca, .nobj = 1 };
			iec_send_asdu(s, &a, NULL);
		}
	}
	iec_group_send(g);
}

static void
iec_server_stopdt(struct session *s)
{
	struct iec_sess *is = session_priv(s);

	if (is->group && is->group->started == s)
		is->group->started = NULL;
	if (is->started) {
		is->started = false;
		iec_server_requeue(s);
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

	iec_server_stopdt(s);
	mq_clear(&is->out);
	mq_clear(&is->sent);
}

/* A served tag's object of its type. */
static void
iec_served_obj(struct stag *t, struct iec_obj *o)
{
	const struct iec_tag *it = itag(t);

	memset(o, 0, sizeof(*o));
	o->ioa = it->ioa;
	iec_value_to_obj(it->type, stag_value(t), o);
	o->q = iec_q_to_wire(stag_quality(t));
	if (iec_has_time(it->type)) {
		int64_t ts = stag_time_source(t);
		o->has_time = true;
		o->time_ms = ts ? ts : time_now_ms();
	}
}

/* Send (or queue, per group) one object of a served tag with a cause. */
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
			free(mq_pop(&grp->events));
			if (grp->dropped++ % 1000 == 0)
				log_warnx("line %s: event queue of group %d full (%d): oldest events dropped (%llu so far); "
				    "the next interrogation gives the current image", line_name(l), g + 1,
				    lconf(l)->queue_size, (unsigned long long)grp->dropped);
		}
		if ((m = msg_new(buf, n)) != NULL) {
			m->event = true;
			mq_push(&grp->events, m, false);
		}
	}
}

static void
iec_server_tag_change(struct stag *t)
{
	iec_server_event(t, COT_SPONT);
}

static void
iec_cyclic_cb(void *arg)
{
	struct stag *t = arg;
	const struct iec_tag_conf *tc = stag_conf(t)->pconf;

	iec_server_event(t, COT_PER_CYC);
	ptimer_start(((struct iec_tag *)stag_priv(t))->cyclic, tc->cyclic_ms);
}

/* General (or group) interrogation: the image with cause 20 (21..36), in as few ASDUs as
 * fit, then the activation termination. */
static void
iec_server_interrogate(struct session *s, struct station *st, uint8_t qoi, bool counters)
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
	if (c->s && ((struct iec_sess *)session_priv(c->s))->started) {
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

static void
iec_server_asdu(struct session *s, const struct iec_asdu *a)
{
	struct line *l = session_line(s);
	struct station *st = iec_station_by_ca(l, a->ca);
	struct iec_asdu r = *a;

	if (!st && !(a->ca == 0xFFFF && (a->type == C_IC_NA_1 || a->type == C_CS_NA_1 || a->type == C_CI_NA_1))) {
		iec_negative(s, a, COT_UNKNOWN_CA);
		return;
	}
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
		for (int i = 0; i < line_nstations(l); i++) {
			struct station *sti = line_station(l, i);
			if (st && sti != st)
				continue;
			r.ca = ((struct iec_stn *)station_priv(sti))->ca;
			r.cot = COT_ACTCON;
			iec_send_asdu(s, &r, NULL);
			iec_server_interrogate(s, sti, a->type == C_CI_NA_1 ? 0 : a->obj[0].qualifier, a->type == C_CI_NA_1);
			r.cot = COT_ACTTERM;
			iec_send_asdu(s, &r, NULL);
		}
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
		iec_server_event(station_stag(st, sn->idx[i].tag), COT_REQ);
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
	if (a->cot == COT_DEACT || a->obj[0].select) {
		/* select (or its cancellation): confirmed, nothing written yet */
		r.cot = a->cot == COT_DEACT ? COT_DEACTCON : COT_ACTCON;
		iec_send_asdu(s, &r, NULL);
		return;
	}
	struct iec_srv_cmd *c = calloc(1, sizeof(*c));
	struct value v = { .type = stag_type(t) };
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
	iec_obj_to_value(a->type, &a->obj[0], &v);
	/* answered at once (a memory tag): the callback freed c already */
	struct write_req *req = stag_write(t, &v, iec_server_cmd_cb, c);
	if (req)
		c->req = req;
}

/* ---- the two protocols ---- */

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

const struct proto_ops iec104_client_ops = {
	.name = "iec104-client",
	.role = ROLE_CLIENT,
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
	.on_read = iec_client_read,
	.on_close = iec_client_close,
	.on_tag_write = iec_client_write,
};

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
