/* iec104.h: what the files of the IEC 60870-5-104 protocols share (not a core header):
 * iec104.c (configuration, values, stations), iec104_link.c (the APCI of clause 5, both
 * roles), iec104_client.c (controlling station) and iec104_server.c (controlled station). */
#ifndef KOMD_IEC104_H
#define KOMD_IEC104_H

#include "proto.h"
#include "iec104_codec.h"

/* ---- configuration ---- */

struct iec_line_conf {
	int k, w;
	int t1_ms, t2_ms, t3_ms;
	int cot_len, ca_len, ioa_len;
	char *groups;          /* server: "ip,ip; ip" */
	int queue_size;        /* server: events kept per group */
	bool end_of_init;      /* server: M_EI_NA_1 after STARTDT */
};

struct iec_station_conf {
	int time_zone;         /* 0 UTC, 1 local */
	int cmdc;              /* command confirmation mode 0..3 */
	int gi_ms;             /* client: periodic general interrogation, 0 only after STARTDT */
	int ci_ms;             /* client: counter interrogation, 0 off */
	int cs_ms;             /* client: clock synchronisation, 0 off (after STARTDT too when set) */
	int select_ms;         /* server: how long a select waits for its execute */
};

struct iec_tag_conf {
	char *iec_type;        /* "M_ME_NC_1" or a number */
	bool sbo;              /* commands: select before operate */
	int group;             /* server: interrogation group 1..16, 0 none */
	int cyclic_ms;         /* server: cyclic transmission (COT 1), 0 off */
};

/* The protocols' own counters (proto_ops.counters, iec104.c; both roles), by index: t1
 * expiries (104 clause 5: an I-frame not acknowledged, or a STARTDT/STOPDT/TESTFR act not
 * confirmed, within t1: the connection closed) and TESTFR act sent after t3 idle (both
 * counted in iec104_link.c). */
enum { IEC_CNT_T1_EXPIRIES, IEC_CNT_TESTFR_SENT };
extern const struct proto_counter iec_counters[];

extern const struct conf_key iec_client_line_keys[], iec_server_line_keys[];
extern const struct conf_key iec_client_station_keys[], iec_server_station_keys[], iec_tag_keys[];
int iec_check_line(const struct line_conf *lc, char *err, size_t errlen);
int iec_check_station(const struct station_conf *sc, char *err, size_t errlen);
int iec_check_tag(const struct station_conf *sc, const struct tag_conf *tc, char *err, size_t errlen);

/* ---- state ---- */

struct iec_cmd;
struct iec_srv_cmd;

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
	struct iec_cmd *cmd;    /* client command waiting for its confirmation, until sent */
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
	struct addrlist addrs;  /* its clients (parsed once); empty: the default group */
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

/* Client: a command waiting for its confirmation. */
struct iec_cmd {
	struct iec_cmd *next;
	struct write_req *wr;
	struct stag *tag;
	uint8_t type;
	uint32_t ioa;
	bool selecting;         /* select sent; execute follows its ActCon */
	struct iec_asdu *exec;  /* the execute ASDU of a select-before-operate */
	struct iec_msg *msg;    /* its frame while it waits for the k window */
};

/* Server: a select (S/E = 1) waiting for its execute; s NULL once its connection closed
 * (cancelled: it still keeps other connections' executes off until it expires). */
struct iec_select {
	struct iec_select *next;
	struct stag *t;
	struct session *s;
	uint8_t type;
	struct iec_obj o;       /* the command selected */
	int64_t until_ms;       /* monotonic */
};

struct iec_line {
	struct iec_params prm;
	struct iec_srv_cmd *pending;  /* server: commands routed, waiting for their answers */
	struct iec_select *selects;   /* server: selects waiting for their executes */
	struct iec_group *groups; /* server: the redundancy groups of `groups`, the last for clients in none */
	int ngroups;            /* 0 without `groups`: every connection is a group of its own */
	struct iec_group lineq; /* server without groups: the events kept while no connection is started */
};

/* Data transfer on a connection (104 clause 5.3, the state machines of both stations). */
enum iec_state {
	IEC_STOPPED,    /* no data transfer, as every connection begins: an I- or S-frame closes it */
	IEC_STARTING,   /* client: STARTDT act sent, its con not come: stopped for frames */
	IEC_STARTED,    /* data transfer */
	IEC_STOPPING,   /* server: STOPDT act came with I-frames unacknowledged ("pending stopped"):
	                 * S-frames only; STOPDT con once the last is acknowledged */
	IEC_DISPLACED,  /* server: a STARTDT on another connection of the redundancy group took the
	                 * data: S-frames (for what was sent) only; an I-frame closes it */
};

struct iec_sess {
	uint16_t vs, vr, ack;   /* next N(S) to send, next N(S) expected, oldest unacknowledged */
	int unacked_in;         /* I-frames received and not acknowledged by us */
	bool ack_due;           /* w reached: an S-frame once the frames read together are handled */
	enum iec_state state;
	char displaced_by[64];  /* server, IEC_DISPLACED: the connection that took the data */
	uint8_t u_pending;      /* U acts sent, waiting for their con (t1): 1 << IEC_UA_* */
	int64_t u_sent_ms[3];   /* when each was sent, monotonic */
	bool orphans;           /* I-frames sent and requeued elsewhere (displaced), not yet acknowledged */
	uint16_t orphan_end;    /* their N(S) are before this */
	int64_t orphan_ms;      /* the oldest's sending */
	bool hold;              /* building a burst (an interrogation): flush once at its end */
	struct ptimer *t1, *t2, *t3;
	struct iec_mq out;      /* waiting for room in the k window */
	struct iec_mq sent;     /* sent, not acknowledged */
	struct iec_group *group; /* server: its redundancy group (`groups`), NULL: a group of its own */
};

/* A station's tags by IOA (both roles). */
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

static inline const struct iec_line_conf *lconf(const struct line *l) { return line_conf(l)->pconf; }
static inline struct iec_line *lpriv(const struct line *l) { return line_priv(l); }
static inline const struct iec_tag *itag(const struct stag *t) { return stag_priv((struct stag *)t); }
static inline const struct iec_station_conf *sconf(const struct station *st) { return station_conf(st)->pconf; }
static inline bool iec_is_monitor(uint8_t t) { return (t >= 1 && t <= 21) || (t >= 30 && t <= 40); }
static inline bool iec_is_command(uint8_t t) { return (t >= 45 && t <= 51) || (t >= 58 && t <= 64); }

/* ---- iec104.c: values, stations, lines ---- */

/* komd's quality bits from a type's quality descriptor, and back (only the bits the type has). */
unsigned iec_q_from_wire(uint8_t type, uint8_t q);
uint8_t iec_q_to_wire(uint8_t type, unsigned q);
bool iec_has_time(uint8_t t);
/* A number that does not fit where it goes (issue 10: never clamped silently). */
enum iec_fit {
	IEC_FIT_OK,
	IEC_FIT_RANGE,  /* beyond the type's (or the tag's) range: the nearest end was taken */
	IEC_FIT_NAN,    /* NaN or an infinity */
};
/* An object's value as the tag's type (v->type set by the caller): IEC_FIT_NAN for a NaN or
 * infinite float, IEC_FIT_RANGE for a value the type may not carry (a double command's 0
 * and 3) or the tag cannot hold (beyond an int; a bool not 0 or 1, a dpi not 0..3); v holds
 * the nearest it can. */
enum iec_fit iec_obj_to_value(uint8_t type, const struct iec_obj *o, struct value *v);
/* A tag's value as the value of an object of type (iec_value_range): clamped to its range
 * (IEC_FIT_RANGE) and rounded to its resolution; NaN becomes 0 and an infinity the nearest
 * end (IEC_FIT_NAN). */
enum iec_fit iec_value_fit(uint8_t type, const struct value *v, struct iec_obj *o);
/* The first index entry for ioa, or -1. */
int iec_find(const struct iec_stn *sn, uint32_t ioa);
struct station *iec_station_by_ca(struct line *l, uint16_t ca);
int iec_station_init(struct station *st);
void iec_station_free(struct station *st);
int iec_line_init(struct line *l);
void iec_line_free(struct line *l);

/* ---- iec104_link.c: the APCI (104 clause 5) ---- */

void iec_mq_push(struct iec_mq *q, struct iec_msg *m, bool front);
struct iec_msg *iec_mq_pop(struct iec_mq *q);
/* Free every message (a client command's write fails). */
void iec_mq_clear(struct iec_mq *q);
struct iec_msg *iec_msg_new(const uint8_t *asdu, size_t len);
void iec_session_init(struct session *s);
int64_t iec_mono_ms(void);
/* A U frame (an act waits for its con within t1). */
void iec_send_u(struct session *s, uint8_t u);
/* An S-frame acknowledging every I-frame received. */
void iec_send_s(struct session *s);
/* Send what the k window allows from the session's queue. */
void iec_flush(struct session *s);
/* Queue encoded ASDU bytes for the session (sent at once when the window allows). */
int iec_send_bytes(struct session *s, const uint8_t *asdu, size_t n, struct write_req *wr, bool event);
int iec_send_asdu(struct session *s, const struct iec_asdu *a, struct write_req *wr);
/* Client: a command's ASDU, for write wr (cmdc 0: done when acknowledged) or command cmd
 * (confirmed later). A frame that waits for the k window is dropped when its requester was
 * answered meanwhile (the core's write timeout): never sent later. */
int iec_send_command(struct session *s, const struct iec_asdu *a, struct write_req *wr, struct iec_cmd *cmd);
/* The line's field sizes, with the time zone of the station with common address ca. */
struct iec_params iec_prm(struct line *l, uint16_t ca);
/* Framing for the core's frame loop: an APDU's length (clause 5.1), one APDU, the burst's end. */
long iec_frame_len(const uint8_t *buf, size_t len, char *err, size_t errlen);
int iec_client_on_frame(struct session *s, const uint8_t *frame, size_t len);
int iec_server_on_frame(struct session *s, const uint8_t *frame, size_t len);
void iec_frames_done(struct session *s);

/* ---- iec104_client.c ---- */

void iec_client_asdu(struct session *s, const struct iec_asdu *a);
void iec_client_started(struct session *s);
void iec_client_station_free(struct station *st);
void iec_client_cmd_unsent(struct iec_cmd *cmd);
void iec_gi_cb(void *arg);
void iec_ci_cb(void *arg);
void iec_cs_cb(void *arg);

/* ---- iec104_server.c ---- */

void iec_server_asdu(struct session *s, const struct iec_asdu *a);
/* STARTDT act and STOPDT act (104 5.3); each sends its con when it is due. */
void iec_server_startdt(struct session *s);
void iec_server_stopdt(struct session *s);
int iec_server_line_init(struct line *l);
void iec_server_line_free(struct line *l);
void iec_cyclic_cb(void *arg);

#endif
