/* core.h: the daemon's runtime objects (lines, paths, sessions, stations, tags) as the
 * core modules share them. Protocols never include this; they use protocols/proto.h. */
#ifndef KOMD_CORE_H
#define KOMD_CORE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <event2/event.h>

struct sockaddr;

#include "conf.h"
#include "log.h"
#include "value.h"
#include "proto.h"
#include "komd.h"

#ifndef TAILQ_FOREACH_SAFE
#define TAILQ_FOREACH_SAFE(var, head, field, tvar) \
	for ((var) = TAILQ_FIRST(head); (var) && ((tvar) = TAILQ_NEXT(var, field), 1); (var) = (tvar))
#endif

#define MAX_ENDPOINTS (2 * CONF_MAX_HOSTS)

struct counters {
	uint64_t bytes_in, bytes_out, frames_in, frames_out;
	uint64_t connects, failovers, proto_errors, rejected, tls_failures;
};


extern struct komd komd;

struct ptimer {
	struct event *ev;
	ptimer_cb cb;
	void *arg;
	bool dead;                   /* its session is closing: starting it does nothing */
	LIST_ENTRY(ptimer) link;
};
LIST_HEAD(ptimer_list, ptimer);

/* A configuration shared by the lines that were built from it (kept lines outlive reloads). */
struct confref {
	struct config *conf;
	int refs;
};

/* ---- tags (tags.c) ---- */
struct tag {
	char *name;
	enum vtype type;
	struct value v;
	unsigned quality;
	int64_t ts_src, ts_recv;     /* ms since the epoch; 0 unknown */
	uint64_t updates;
	struct stag *acq;            /* acquiring station's entry; NULL: memory tag */
	TAILQ_HEAD(, stag) servers;  /* serving stations' entries */
	bool mark;                   /* reload bookkeeping */
	bool memory;                 /* defined as a memory tag (no acquiring station) */
	struct tag *hnext;           /* hash chain */
};

struct stag {
	struct tag *tag;
	struct station *st;
	const struct tag_conf *tc;
	void *priv;
	bool serving;
	TAILQ_ENTRY(stag) slink;
};

struct write_req {
	struct tag *tag;
	struct value v;
	write_cb cb;                 /* NULL once answered or detached */
	void *arg;
	struct event *timeout;
	bool with_acquirer;          /* the acquiring protocol still holds it */
	bool answered;               /* result given (or timed out): never sent after that */
	bool detached;               /* the requester is gone: the result is only logged */
	bool in_call;                /* inside on_tag_write */
	char what[160];              /* for the log: who asked */
};

void tags_init(void);
struct tag *tag_find(const char *name);
struct tag *tag_create(const char *name, enum vtype type);
void tag_destroy(struct tag *t);
void tag_foreach(void (*fn)(struct tag *t, void *arg), void *arg);
size_t tag_count(void);
/* A new value/quality from the acquirer (or komctl for memory tags); notifies servers. */
void tag_set(struct tag *t, const struct value *v, unsigned quality, int64_t src_ms);
void tag_set_quality(struct tag *t, unsigned quality);
/* Route a write to the acquirer (or store it for a memory tag). */
struct write_req *tag_write(struct tag *t, const struct value *v, write_cb cb, void *arg, const char *who);
/* The tag as `komctl --json get` gives it: name, type, value (value_json; an invalid tag
 * keeps its last value, with "invalid": true), quality, invalid, source_time and
 * receive_time (ISO 8601 UTC with ms, "-" unknown), acquired_by ("line/station" or null),
 * source ({line, station, address} or null), served_by (such objects), updates. Every
 * string through value_json_text. A new reference; NULL: out of memory. stag_json
 * (proto.h) is this object with an invalid tag's value null. */
json_t *tag_json(const struct tag *t);
void tags_bind(struct stag *e, bool serving);
void tags_unbind(struct stag *e);

/* ---- lines, paths, sessions, stations (line.c, session.c, station.c) ---- */
enum conn_state {
	CS_STOPPED,      /* not started, or stopped */
	CS_SIMULATED,    /* all stations simulated: nothing to connect */
	CS_WAITING,      /* waiting before the next attempt (backoff) */
	CS_RESOLVING,    /* asking DNS for the current host */
	CS_CONNECTING,   /* TCP connect in progress */
	CS_HANDSHAKE,    /* TLS handshake in progress */
	CS_CONNECTED,    /* a session is up */
	CS_LISTENING,    /* server line: accepting */
};
const char *conn_state_name(enum conn_state s);

/* One endpoint a client path can try. */
struct endpoint {
	const struct hostspec *host;
	int port;
	enum path_kind kind;
};

/* A client connection slot: cycles through its endpoints and holds at most one session. */
struct path {
	struct line *line;
	int idx;                     /* 0 primary (or the only one), 1 backup */
	struct endpoint ep[MAX_ENDPOINTS];
	int nep;
	int cur;                     /* endpoint being tried */
	int backoff_ms;
	enum conn_state state;
	struct event *timer;         /* connect timeout, or the wait before the next attempt */
	struct evdns_getaddrinfo_request *dns;
	struct dns_ctx *dns_ctx;     /* the pending DNS request's link back to us */
	struct evutil_addrinfo *ai;  /* the current name's addresses, and the next to try */
	struct evutil_addrinfo *ai_next;
	struct bufferevent *bev;     /* connecting */
	struct session *sess;        /* connected */
	enum path_kind last_kind;
	bool ever_connected;
	char last_error[192];
	char peer[128];
};

/* ST_WAITING: not connected yet, or connected and waiting for the device's first answer */
enum station_state { ST_STOPPED, ST_WAITING, ST_OK, ST_ERROR, ST_SIMULATED, ST_SERVING };

struct station {
	struct line *line;
	const struct station_conf *sc;
	void *priv;
	struct stag *tags;
	int ntags;
	enum station_state state;
	char last_error[192];
	uint64_t polls, errors, writes;
	uint64_t writes_orphaned;    /* writes whose requester left before the result */
	struct ptimer *poll_timer;
	int64_t due_ms;              /* period polls: the boundary poll_timer is set for (wall ms) */
	struct ptimer *sim_timer;
	struct ptimer_list timers;
	bool polling;
	bool inited;                 /* the protocol's station_init succeeded */
	bool comm_lost;              /* "communication lost" logged; "restored" is due */
	int64_t lost_ms;             /* since when */
};

struct session {
	struct line *line;
	struct path *path;           /* client sessions */
	enum path_kind kind;
	struct bufferevent *bev;
	const struct transport *tr;  /* plain or TLS (session.c) */
	struct event *rev;           /* plain TCP: our own read event (bufferevent writes only) */
	char peer[128];
	int peer_family;             /* the peer's address, for address lists (0: unknown) */
	unsigned char peer_addr[16];
	void *priv;
	struct ptimer_list timers;
	bool closing;
	bool wrote;                  /* something was sent during the current read callback */
	bool handshaking;            /* TLS server side: on_connect waits for the handshake */
	bool peeked;                 /* plain: the first bytes were checked for TLS */
	size_t in_left;              /* input left unread by the protocol (counted already) */
	size_t max_frame;            /* this session's largest frame (session_set_max_frame); 0: the protocol's */
	int64_t since_ms;
	struct ptimer *deadline;     /* server sessions: the handshake's deadline, then idle_timeout */
	int64_t last_req_ms;         /* loop time of the last complete frame received */
	uint64_t last_req_seq;       /* its order among all sessions' (line_evict_idlest) */
	struct ptimer *renew;        /* TLS: renegotiate_interval */
	int rcvlowat;                /* SO_RCVLOWAT set (session_read_batch); 0: the kernel's 1 */
	struct event *batch_ev;      /* session_read_batch's wait: a timerfd's event (us precision); NULL until first asked */
	int batch_fd;                /* that timerfd */
	enum {
		SB_IDLE,             /* no wait running */
		SB_WAITING,          /* a mark set, its wait running */
		SB_DUE,              /* the wait ran out: no mark again before the next read */
		SB_NONE,             /* no timerfd to be had: every byte, always */
	} batch;
	int batch_wait_us;           /* the wait, from the mark's setting or the last read */
	TAILQ_ENTRY(session) link;
};

/* A warning of one kind (its format) on one line: the first of a burst are logged, the rest
 * counted and summed up once the burst has lasted a second (line_warn). */
struct warn_limit {
	const char *fmt;
	int64_t until_ms;
	unsigned dropped;
	int burst;                   /* logged in this window */
	char last[240];
};
#define LINE_WARN_KINDS 8

struct line {
	struct line_conf *lc;
	struct confref *cref;
	const struct proto_ops *ops;
	struct line_tls *tls;        /* NULL: plain TCP (or tls_error) */
	char tls_error[256];         /* its certificates are out of their dates: not started */
	void *priv;
	enum redund_policy policy;
	bool server;
	bool simulated;              /* every station simulated: no connection */
	struct path paths[2];
	int npaths;
	struct evconnlistener *lst[CONF_MAX_HOSTS];
	char lst_name[CONF_MAX_HOSTS][80];
	int nlst;
	struct event *accept_pause;
	TAILQ_HEAD(, session) sessions;
	int nsessions;
	struct session *active;
	struct station *stations;
	int nstations;
	struct counters cnt;
	uint64_t *pcnt;              /* the protocol's own counters, by index in ops->counters */
	int npcnt;
	bool trace;
	bool started;
	bool inited;                 /* the protocol's line_init succeeded */
	bool start_failed;           /* line_start could not listen at the last (re)load */
	char last_error[192];
	struct warn_limit warns[LINE_WARN_KINDS];
	struct event *warn_timer;    /* the summaries of warns */
	TAILQ_ENTRY(line) link;
};

struct line *line_create(struct line_conf *lc, struct confref *cref);
int line_start(struct line *l);
void line_stop(struct line *l);      /* closes everything, keeps the object */
void line_free(struct line *l);      /* stop first */
struct line *line_find(const char *name);
const char *line_state_text(const struct line *l, char *buf, size_t len);
bool line_uses_tag(const struct line *l, const char *name);
/* A warning about line l that a peer can repeat at will (a refused client, a failed
 * handshake, a bad frame): the first five of each kind (fmt) in a second are logged, the
 * others counted and summed up ("N more like this") at the end of that second. */
void line_warn(struct line *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Reload kept this line: load its certificates and keys again (new connections use them). */
void line_tls_reload(struct line *l);

/* handshaking: a TLS server session whose handshake is still running (on_connect later) */
struct session *session_new(struct line *l, struct path *p, struct bufferevent *bev,
    const char *peer, const struct sockaddr *sa, enum path_kind kind, bool handshaking);
void session_close_all(struct line *l, const char *reason);
/* Free the bufferevents of closed sessions still writing their last answers (shutdown). */
void session_linger_free_all(void);
/* The event loop's cached time, ms (no system call): for per-frame bookkeeping. */
int64_t session_loop_ms(void);
/* A TCP socket bound to h:port (h wildcard: every address of its family; IPv6 sockets are
 * IPV6_V6ONLY) and listening with backlog, non-blocking, SO_REUSEADDR. name gets
 * "host:port" for messages. The descriptor, or -1 with errno (EINVAL: h is not an address). */
int listen_socket(const struct hostspec *h, int port, int backlog, char *name, size_t namelen);
void ptimer_free_list(struct ptimer_list *list);

int station_setup(struct station *st, struct line *l, const struct station_conf *sc);
void station_start(struct station *st);
void station_stop(struct station *st);
void station_teardown(struct station *st);
/* The line's data session came or went: start or stop polling, comm state. */
void station_line_up(struct station *st);
void station_line_down(struct station *st, const char *why);
const char *station_state_name(enum station_state s);

/* control.c, notify.c */
int control_start(const char *path);
int control_reopen(const char *path);
const char *control_path(void);
void control_stop(void);
/* The bodies of `komctl --json status` and `komctl --json tags [GLOB]` (glob: fnmatch(3)
 * pattern, NULL for every tag), a newline after the JSON, appended to b: shared with the
 * HTTP endpoint's /api (http.c). 0, or -1 when out of memory (b may hold part of it). */
struct evbuffer;
int control_status_json(struct evbuffer *b);
int control_tags_json(struct evbuffer *b, const char *glob);
void notify_ready(void);
void notify_reloading(void);
void notify_stopping(void);
void notify_status(void);
void notify_watchdog_start(void);
void notify_watchdog_stop(void);

/* reload.c: apply a checked configuration as a difference (kept, restarted, stopped,
 * started lines; a summary, and the lines that could not start, in msg); release the
 * running one at exit. */
void reload_apply(struct config *nc, char *msg, size_t msglen);
void reload_release(void);

/* main.c: reload the configuration; 0 applied, 1 applied but some lines could not start
 * (named in msg), -1 refused (errors logged, into msg). */
int komd_reload(char *msg, size_t msglen);

#endif
