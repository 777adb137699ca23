/* proto.h: the interface between the core and a protocol; the only header a protocol
 * includes. A protocol is one `struct proto_ops` entry in protocols/registry.c plus a
 * pure codec. It sees sessions, input buffers, timers, stations and tags; the core
 * owns sockets, TLS, DNS, host cycling and failover, and never names a protocol. */
#ifndef KOMD_PROTO_H
#define KOMD_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <event2/buffer.h>
#include <jansson.h>

#include "../daemon/conf.h"
#include "../daemon/log.h"
#include "../daemon/value.h"

struct session;  /* one connection */
struct line;     /* one configured line */
struct station;  /* one device on a line */
struct stag;     /* one tag as a station sees it (acquired or served) */
struct write_req;
struct ptimer;

/* The transport of a protocol's lines: they connect out (client lines) or listen (server
 * lines). What a station does with each of its tags, acquire it or serve it, is another
 * matter (proto_ops.tag_serves): an MQTT client connects out, acquires what it subscribes to
 * and serves what it publishes. */
enum proto_transport { PROTO_CONNECT, PROTO_LISTEN };

/* How a tcp-redundant line uses its backup (the core implements all three). */
enum redund_policy {
	REDUND_ALTERNATE, /* one connection: primary hosts, then backup hosts */
	REDUND_PARALLEL,  /* two connections; the protocol chooses the one that carries data */
	REDUND_DUAL,      /* two independent sessions, one per device */
};

enum path_kind { PATH_PRIMARY, PATH_BACKUP };

/* One counter of a protocol (proto_ops.counters). name: lower case with '_', a counter's
 * ending in "_total" (Prometheus's convention: it only goes up), a gauge's not.
 * A labelled counter is one value of a family: consecutive entries of one name, gauge and
 * help that differ by label_value (Modbus exceptions by code: name
 * "modbus_exceptions_total", label "code", label_value "2"). /metrics writes them as one
 * metric with that label beside "line"; komctl status as "name by label: value n, ..." and
 * --json as an object of label_value and count under the name. */
struct proto_counter {
	const char *name;
	bool gauge;          /* a level (queue depth) rather than a count of events */
	const char *help;    /* one line for komctl and metrics (a family's: the same in each) */
	const char *label;   /* NULL, or the name of the label ([a-z_]+; not "line") */
	const char *label_value;     /* with label: this entry's value of it, unique in the family */
};

struct proto_ops {
	const char *name;
	enum proto_transport transport;
	/* Optional: does a station of line lc serve tag tc (publish it, take writes for it)
	 * rather than acquire it? NULL: the tags of listening lines are served, those of
	 * connecting lines acquired. Stateless: it may see only the configuration. */
	bool (*tag_serves)(const struct line_conf *lc, const struct tag_conf *tc);
	enum redund_policy redundancy;
	/* Stations and tags may leave `address` out (station_conf/tag_conf address NULL; the
	 * check hooks decide): an MQTT station without a topic filter, a published tag. */
	bool address_optional;
	/* Optional: the policy from the line's own settings (overrides .redundancy). */
	enum redund_policy (*line_redundancy)(const struct line_conf *lc);

	/* Protocol keys of each section (CK_END-terminated) and the sizes of the structs they
	 * fill (line_conf->pconf, station_conf->pconf, tag_conf->pconf). */
	const struct conf_key *line_keys, *station_keys, *tag_keys;
	size_t line_conf_size, station_conf_size, tag_conf_size;

	/* Load-time checks, stateless: 0, or -1 with a message (the core adds file:line).
	 * check_line may also return 1: a warning in err, logged with file:line, and the
	 * configuration is still taken. */
	int (*check_line)(const struct line_conf *lc, char *err, size_t errlen);
	int (*check_station)(const struct station_conf *sc, char *err, size_t errlen);
	int (*check_tag)(const struct station_conf *sc, const struct tag_conf *tc, char *err, size_t errlen);

	/* Client: a station acquires only when it is polled (no spontaneous data): one of
	 * period, delay or continuous is required for a station with inputs (komd -t refuses
	 * it otherwise, rather than run it as "ok; polls 0"). */
	bool station_needs_trigger;

	/* Optional: the protocol's own counters of a line (e.g. MQTT's queue depth and
	 * drops), terminated by a NULL name; shown by `komctl status` (text and --json, beside
	 * the core's counters) and kept across nothing (a line's restart zeroes them). Counted
	 * with line_counter_add, gauges set with line_counter_set, by index in this table. */
	const struct proto_counter *counters;

	/* Private state, zeroed by the core: protocol_priv() of each object. */
	size_t line_size, station_size, stag_size, session_size;

	/* Life cycle; every hook is optional. *_init return 0 or -1 (start-up of that line fails).
	 * A failed line_init or station_init undoes everything it did itself: the core calls
	 * line_free / station_free only for objects whose init succeeded (the private struct the
	 * core allocated is freed by the core either way). */
	int (*line_init)(struct line *l);
	void (*line_free)(struct line *l);
	int (*station_init)(struct station *st);
	void (*station_free)(struct station *st);

	void (*on_connect)(struct session *s);
	/* Framing, the core's frame loop (session.c): it asks frame_len how long the frame at
	 * buf is (len bytes there, at most max_frame): the length once the whole frame is
	 * there, 0 while that is not known yet or the frame not complete (a variable-length
	 * header, as MQTT's), -1 when it is not a frame (err says which rule it breaks); then
	 * hands each complete frame to on_frame (0, or -1 after session_protocol_error()), and
	 * calls on_frames_done, if set, once the frames read together are handled (IEC 104
	 * acknowledges them in one S-frame). The core counts frames and closes the session on
	 * a bad one. */
	size_t max_frame;
	long (*frame_len)(const uint8_t *buf, size_t len, char *err, size_t errlen);
	int (*on_frame)(struct session *s, const uint8_t *frame, size_t len);
	void (*on_frames_done)(struct session *s);
	/* Optional: the input breaks the framing (err says how; oversize: no frame fits in the
	 * max_frame bytes this connection allows, session_set_max_frame). The protocol may send
	 * its last word before the core closes (MQTT 5: DISCONNECT 0x95 Packet too large,
	 * 3.1.2.11.4, or 0x81 Malformed Packet, 4.13) and close with session_protocol_error;
	 * if the session is still open afterwards, the core closes it with err. */
	void (*on_frame_error)(struct session *s, bool oversize, const char *err);
	/* The session is going away (any reason); release what refers to it. */
	void (*on_close)(struct session *s);
	/* Client lines, parallel or dual: s takes over as the active session because the active
	 * one closed (the core chooses it); e.g. IEC 104 starts it (STARTDT) and interrogates. */
	void (*on_takeover)(struct session *s);
	/* Client: time for station st to poll (period/offset or delay, see station_poll_done). */
	void (*on_poll)(struct station *st);
	/* Server: a tag this station serves has a new value or quality. */
	void (*on_tag_change)(struct stag *t);
	/* Client: write a value to the device; call write_done(req) exactly once, now or later. */
	void (*on_tag_write)(struct stag *t, struct write_req *req);
};

/* Registry (protocols/registry.c). */
const struct proto_ops *proto_find(const char *name);
extern const struct proto_ops *const proto_table[];

/* --- sessions --- */
struct line *session_line(const struct session *s);
void *session_priv(const struct session *s);
const char *session_peer(const struct session *s);   /* "10.0.0.5:502" */
enum path_kind session_path(const struct session *s);
void session_write(struct session *s, const void *data, size_t len);
/* Count one frame in or out (bytes are counted by the core). */
void session_count_frame(struct session *s, bool out);
/* Trace on for this session's line? Then log one frame: hex and the decoded text. */
bool session_tracing(const struct session *s);
void session_trace(struct session *s, bool out, const void *frame, size_t len, const char *decoded);
/* Log "line L: PEER: protocol error: ...", count it, and close the session. */
void session_protocol_error(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Close after the current callback returns; on_close is called. */
void session_close(struct session *s, const char *reason);
/* This connection's largest frame, in bytes, below proto_ops.max_frame (e.g. the Maximum
 * Packet Size an MQTT client announced in its CONNECT); 0: the protocol's. A frame that is
 * not complete within max bytes is a protocol error: komd never buffers more for it. */
void session_set_max_frame(struct session *s, size_t max);
/* Bytes queued for the peer and not yet written to the socket (TLS: before encryption). A
 * protocol that can produce faster than the peer reads throttles on it; the core closes a
 * session whose peer leaves more than 4 MiB unread. */
size_t session_output_pending(const struct session *s);
/* Report this connection readable only once at least bytes (1 to 16384; more counts as
 * 16384) are queued by the kernel (SO_RCVLOWAT, socket(7)), waiting at most wait_us
 * (microseconds, 1 to 1,000,000; a timerfd, not the loop's 4 ms timers) from the mark's
 * first setting or from the last read, however often it is asked for again; then, or with
 * bytes <= 1 or wait_us <= 0, every byte again. For a protocol that waits for many small
 * replies at once (MQTT: the acknowledgements of a full in-flight window) and would
 * otherwise spend a loop pass, and a wake-up, on each: a wait shorter than the peer's work
 * on what is in flight gathers its replies without slowing it. A peer that sends one reply
 * at a time until we answer (Nagle's algorithm waiting for our TCP acknowledgement) ends
 * every wait by the timer; what it sent meanwhile is then read at once, and no mark is
 * set again before that read. The end of the stream and errors are reported at once
 * whatever the mark. A setsockopt call only when the mark changes, a timerfd_settime per
 * wait; the timerfd is made on first use (one descriptor per such session, counted in
 * komd's RLIMIT_NOFILE need). TLS sessions read every byte whatever is asked (OpenSSL's
 * bufferevent leaves records in the kernel that a mark would hide); if the timerfd or
 * the mark cannot be had, every byte as well (no error). */
void session_read_batch(struct session *s, size_t bytes, int wait_us);
/* Closed (by us, the peer, or a write that found the peer not reading): stop reading
 * frames and sending; the session is freed after the current callback. */
bool session_closing(const struct session *s);

/* Timers belong to a session (freed with it) or to a station (freed with it). */
typedef void (*ptimer_cb)(void *arg);
struct ptimer *session_timer(struct session *s, ptimer_cb cb, void *arg);
struct ptimer *station_timer(struct station *st, ptimer_cb cb, void *arg);
void ptimer_start(struct ptimer *t, int ms);
/* Free a timer before its session or station goes (for short-lived work, e.g. one request). */
void ptimer_free(struct ptimer *t);
void ptimer_stop(struct ptimer *t);
bool ptimer_pending(const struct ptimer *t);

/* --- lines --- */
const struct line_conf *line_conf(const struct line *l);
void *line_priv(const struct line *l);
const char *line_name(const struct line *l);
int line_nstations(const struct line *l);
struct station *line_station(const struct line *l, int i);
/* Sessions currently connected (server: accepted clients; client: one or two). */
typedef void (*session_fn)(struct session *s, void *arg);
void line_foreach_session(struct line *l, session_fn fn, void *arg);
/* Client lines: the session that carries data. The core sets it for alternate lines;
 * on parallel lines the protocol sets it. NULL when none. */
struct session *line_active_session(const struct line *l);
void line_set_active_session(struct line *l, struct session *s);

/* The line's protocol counters (proto_ops.counters, by index): add to a count, set a
 * gauge. An index out of the table is ignored. */
void line_counter_add(struct line *l, int idx, uint64_t n);
void line_counter_set(struct line *l, int idx, uint64_t v);

/* --- stations --- */
const struct station_conf *station_conf(const struct station *st);
void *station_priv(const struct station *st);
struct line *station_line(const struct station *st);
const char *station_name(const struct station *st);
int station_ntags(const struct station *st);
struct stag *station_stag(const struct station *st, int i);
/* Client stations: communication ok or lost. Lost makes its acquired tags invalid. */
void station_set_comm(struct station *st, bool ok, const char *why);
/* Polling in delay mode: the request has ended; schedule the next poll. */
void station_poll_done(struct station *st);
void station_count_error(struct station *st);
/* An error that concerns only some of the station's tags (the protocol invalidates them):
 * logged, counted and shown as the station's last error; its state does not change. */
void station_note_error(struct station *st, const char *why);

/* --- tags, as a station sees them --- */
const struct tag_conf *stag_conf(const struct stag *t);
void *stag_priv(const struct stag *t);
struct station *stag_station(const struct stag *t);
const char *stag_name(const struct stag *t);
enum vtype stag_type(const struct stag *t);
/* Acquiring station: a new value from the device (src_ms 0: no source time). */
void stag_update(struct stag *t, const struct value *v, unsigned quality, int64_t src_ms);
/* Acquiring station: only the quality changed (e.g. invalid). */
void stag_set_quality(struct stag *t, unsigned quality);
/* Serving station: the tag's current state. */
const struct value *stag_value(const struct stag *t);
unsigned stag_quality(const struct stag *t);
int64_t stag_time_source(const struct stag *t);
/* Serving station: the tag behind t as the JSON object `komctl --json get` gives for it
 * (name, value, quality, source, times in ISO 8601 UTC with ms; an invalid value is null
 * with its quality). A new reference; NULL when out of memory. */
json_t *stag_json(const struct stag *t);

/* Writes. A serving station (or komctl) asks; the acquiring station answers. */
typedef void (*write_cb)(void *arg, int status, const char *msg); /* status 0 ok, -1 failed */
/* Route a write of v to the tag behind served stag t; cb is called exactly once, unless
 * detached first. Returns a handle for write_req_detach (NULL when already answered). */
struct write_req *stag_write(struct stag *t, const struct value *v, write_cb cb, void *arg);
/* The requester is gone (its connection closed): cb is never called, but the write still
 * goes to the device unless write_timeout has passed, and its result is logged and counted
 * (writes_orphaned). Issue 10: an accepted write is never lost silently. */
void write_req_detach(struct write_req *r);
const struct value *write_req_value(const struct write_req *r);
/* The acquiring protocol's answer: status 0 ok, -1 failed with msg. */
void write_done(struct write_req *r, int status, const char *msg);
/* Was the requester answered already (the core's write timeout)? The acquirer must then
 * give up on it (a write reported as failed is never sent later): write_done is still
 * required, and frees it. A detached write is not answered: it goes on. */
bool write_req_answered(const struct write_req *r);
/* Is the line running (false while it is being stopped)? */
bool line_running(const struct line *l);
/* Does line l listen (server lines) rather than connect out? The core's answer: protocols
 * that serve both kinds of line ask it, rather than look themselves up by name. */
bool line_listens(const struct line *l);
/* Is the session's peer (a server session's client) in address list l (conf.h)? */
bool session_peer_in(const struct session *s, const struct addrlist *l);
/* Does the station of line lc serve tag tc (proto_ops.tag_serves, or the line's transport)? */
bool conf_tag_serves(const struct line_conf *lc, const struct tag_conf *tc);

#endif
