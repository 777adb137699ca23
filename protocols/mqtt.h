/* mqtt.h: what the files of the mqtt-client protocol share (not a core header): the
 * configuration structs (mqtt_conf.c), the store-and-forward queue of each session path
 * with its packet identifiers (mqtt_queue.c), the runtime objects, what is sent
 * (mqtt_send.c), served tags and commands (mqtt_serve.c) and the session (mqtt.c). MQTT 3.1.1
 * (OASIS, 29 October 2014) and MQTT 5.0 (OASIS, 7 March 2019); packets are mqtt_codec.c's,
 * payloads mqtt_json.c's. */
#ifndef KOMD_MQTT_H
#define KOMD_MQTT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <time.h>

#include "proto.h"
#include "mqtt_codec.h"
#include "mqtt_json.h"

/* ---- configuration (mqtt_conf.c) ---- */

enum mqtt_redundancy { MQTT_DUAL, MQTT_ALTERNATE };
enum mqtt_payload { MQTT_PAYLOAD_TEXT, MQTT_PAYLOAD_JSON };
/* a published tag's payload: the station's, or its own */
enum mqtt_tag_payload { MQTT_TP_STATION, MQTT_TP_TEXT, MQTT_TP_JSON };

/* The largest packet MQTT can carry (1.5.5: 4-byte Remaining Length, plus the fixed header). */
#define MQTT_SPEC_MAX_PACKET 268435460u

struct mqtt_line_conf {
	int redundancy;          /* enum mqtt_redundancy */
	int version;             /* 0: 3.1.1, 1: 5 */
	char *client_id;         /* NULL: komd-HOSTNAME-LINE */
	char *username;
	char *password;          /* or, with password_file, its first line (read at load) */
	char *password_file;
	bool password_read;      /* password holds password_file's line (not a key) */
	bool clean_session;
	int session_expiry;      /* s; -1: 3600 without clean_session, else 0 */
	int keepalive;           /* s, 1..65535 */
	int reply_timeout_ms;
	int receive_maximum;     /* v5: what komd announces */
	int topic_alias_maximum; /* v5: aliases komd accepts */
	int max_packet_size;     /* bytes komd accepts (v5 announces it) */
	int broker_max_packet_size; /* bytes the broker takes, as the operator knows it (3.1.1
	                          * has no Maximum Packet Size; with v5 the lower of the two) */
	char *will_topic, *will_payload;
	int will_qos;
	bool will_retain;
	char *will_online_payload; /* published on will_topic after each CONNACK */
	int max_inflight;
	int queue_messages;
	int queue_bytes;
	int command_max_age_ms;  /* 0: off */
};

struct mqtt_station_conf {
	int qos;                 /* subscription QoS */
	int payload;             /* enum mqtt_payload */
	char *time_field;        /* JSON path of the payload's own time */
	int time_format;         /* enum mqtt_time_format */
	int stale_timeout_ms;    /* 0: off */
	char *will_topic, *will_payload; /* the device's last will */
	int batch_ms;
};

struct mqtt_tag_conf {
	char *publish;           /* served: the topic its value goes to */
	int qos;
	bool retain;
	int payload;             /* enum mqtt_tag_payload */
	int deadband_milli;      /* absolute deadband x 1000 (read as a number of "seconds") */
	int period_ms;           /* publish again this often; 0 off */
	char *command;           /* served: the topic of writes */
};

extern const struct conf_key mqtt_line_keys[], mqtt_station_keys[], mqtt_tag_keys[];
enum mqtt_version mqtt_conf_version(const struct mqtt_line_conf *c);
bool mqtt_tag_serves(const struct line_conf *lc, const struct tag_conf *tc);
enum redund_policy mqtt_line_redundancy(const struct line_conf *lc);
int mqtt_check_line(const struct line_conf *lc, char *err, size_t errlen);
int mqtt_check_station(const struct station_conf *sc, char *err, size_t errlen);
int mqtt_check_tag(const struct station_conf *sc, const struct tag_conf *tc, char *err, size_t errlen);
/* Does the station subscribe its filter (it has acquired tags or a will topic)? */
bool mqtt_station_subscribes(const struct station_conf *sc);
/* The payload a published tag uses. */
enum mqtt_payload mqtt_tag_payload_of(const struct station_conf *sc, const struct tag_conf *tc);
/* The v5 Session Expiry Interval (s) komd asks for. */
uint32_t mqtt_conf_session_expiry(const struct mqtt_line_conf *c);

/* ---- the outgoing queue of one session path (mqtt_queue.c) ---- */

/* The sender's state of one message (4.3.2, 4.3.3). */
enum mqtt_msg_state {
	MM_NEW,       /* no packet identifier yet on this broker session */
	MM_SENT,      /* PUBLISH sent (QoS 1, 2): PUBACK or PUBREC due */
	MM_RELEASED,  /* QoS 2: PUBREC received, PUBREL sent: PUBCOMP due */
};

/* A published tag's messages on one path: how many are queued, and whether the broker may
 * lack its latest state (never sent, or a message of it dropped). */
struct mqtt_src {
	uint32_t inq;
	bool need;
	bool pubrec_kept;  /* its latest was a QoS 2 message the broker PUBREC'd in a session
	                    * that ended (Session Present 0): the broker has it; the current
	                    * values after that CONNACK must not publish it again (4.3.3) */
};

struct mqtt_msg {
	TAILQ_ENTRY(mqtt_msg) link;
	struct mqtt_src *src;    /* the published tag's bookkeeping; NULL for other messages */
	char *topic;
	uint8_t *payload;
	size_t len;
	uint8_t *corr;           /* v5 Correlation Data (command responses); NULL none */
	size_t corr_len;
	size_t bytes;            /* counted against queue_bytes */
	uint8_t qos;
	bool retain;
	bool dup;                /* sent before with this packet id: DUP on a resend */
	uint16_t pid;            /* 0: none */
	enum mqtt_msg_state state;
	bool on_wire;            /* sent on the current connection, acknowledgement due */
	int64_t sent_ms;         /* when (loop time), for reply_timeout */
	uint32_t wire_bytes;     /* the PUBLISH packet's size when last sent */
	uint8_t strikes;         /* connections the broker closed right after it (oversize?) */
};
TAILQ_HEAD(mqtt_msgq, mqtt_msg);

/* One session path (the only one, or the primary and the backup of a dual line): its
 * queue and packet identifiers outlive connections, as the broker's session does. */
struct mqtt_path {
	struct mqtt_msgq q;      /* in order: acknowledgements due first, then unsent */
	struct mqtt_msg *next;   /* the first message not on the wire; NULL: none */
	size_t nmsgs, nbytes;
	int nwire;               /* QoS 1/2 messages on the wire, unacknowledged */
	uint16_t next_pid;
	uint8_t pid_used[65536 / 8];  /* our packet ids in use (outgoing QoS 1, 2) */
	uint8_t qos2_in[65536 / 8];   /* incoming QoS 2 ids PUBREC'd, PUBREL due (4.3.3) */
	int nqos2_in;                 /* how many: against komd's Receive Maximum (v5 3.3.4) */
	struct session *s;       /* after CONNACK: the session that carries this path */
	const char *name;        /* "primary", "backup" */
	uint64_t dropped;        /* queue overflow, not yet logged */
	int64_t drop_logged_ms;
	uint64_t oversize;       /* dropped as too large for the broker, not yet logged */
	int64_t oversize_logged_ms;
	uint32_t max_acked;      /* the largest PUBLISH the broker acknowledged (bytes) */
	uint32_t learned_max;    /* the broker's packet size limit as komd learned it: below the
	                          * smallest PUBLISH after which it closed twice (MQTT 3.1.1 has
	                          * no Maximum Packet Size, 4.8.1 / 5.0 3.2.2.3.6); else the
	                          * MQTT maximum */
};

/* Flags of the packet id bitmaps. */
static inline bool mqtt_bit(const uint8_t *m, uint16_t id) { return (m[id >> 3] >> (id & 7)) & 1; }
static inline void mqtt_bit_set(uint8_t *m, uint16_t id) { m[id >> 3] |= (uint8_t)(1u << (id & 7)); }
static inline void mqtt_bit_clr(uint8_t *m, uint16_t id) { m[id >> 3] &= (uint8_t)~(1u << (id & 7)); }

void mqtt_path_init(struct mqtt_path *p, const char *name);
void mqtt_path_free(struct mqtt_path *p);
/* A new message (copies of topic, payload and corr), or NULL when out of memory. */
struct mqtt_msg *mqtt_msg_new(const char *topic, const void *payload, size_t len, uint8_t qos,
    bool retain, const void *corr, size_t corr_len);
/* Append m; when queue_messages or queue_bytes would be exceeded, the oldest messages
 * without a packet id are dropped first (or m itself when every queued message has one).
 * Returns the number of messages dropped. */
unsigned mqtt_path_push(struct mqtt_path *p, struct mqtt_msg *m, size_t max_msgs, size_t max_bytes);
/* Remove m (acknowledged, delivered at QoS 0, or dropped) and free it, releasing its id. */
void mqtt_path_remove(struct mqtt_path *p, struct mqtt_msg *m);
/* A free packet identifier (1..65535, 2.2.1), marked used; 0 when all are taken. */
uint16_t mqtt_path_new_pid(struct mqtt_path *p);
/* The message on the wire with packet id pid, or NULL. */
struct mqtt_msg *mqtt_path_find(struct mqtt_path *p, uint16_t pid);
/* A new connection: nothing is on the wire. Session Present 0 (4.4, the broker has no
 * state of ours): QoS 2 messages PUBREC'd already are done (the broker has them), the
 * others lose their packet ids and are sent again as new. Session Present 1: unacknowledged
 * PUBLISH go again with DUP, PUBREL again, in order. Returns the messages to redeliver. */
unsigned mqtt_path_reconnect(struct mqtt_path *p, bool session_present);
/* Times the broker must close the connection right after the same unacknowledged PUBLISH
 * (within reply_timeout of sending it, larger than any it acknowledged) before komd takes
 * it as over the broker's packet size limit: a broker of MQTT 3.1.1 cannot say its limit
 * and closes the connection at an oversize packet (mosquitto's max_packet_size). */
#define MQTT_OVERSIZE_STRIKES 2
/* The connection of path p closed without komd deciding it (the broker, or the network),
 * reply_ms after now_ms's reply_timeout window: the oldest unacknowledged PUBLISH gets a
 * strike if it may be the cause; at MQTT_OVERSIZE_STRIKES it is removed from the queue and
 * learned_max lowered below its size. Returns that message's size (its topic copied to
 * topic, of topiclen bytes) when it was dropped, else 0. */
uint32_t mqtt_path_broker_closed(struct mqtt_path *p, int64_t now_ms, int reply_ms, char *topic, size_t topiclen);

/* ---- the runtime objects (private to the mqtt_*.c files) ---- */

/* Bytes sent without a PINGRESP confirming that the broker read them: beyond it the
 * sender waits (a PINGREQ is answered after the packets before it, 4.6), so that a burst
 * (a reconnection's queue, 100,000 current values) never fills the connection's output. */
#define MQTT_FLOW_WINDOW (3 * 1024 * 1024) /* under the core's 4 MiB output limit (session.c) */
/* Topic aliases komd assigns at most per connection (bounded memory), 3.3.2.3.4. */
#define MQTT_MAX_ALIASES_OUT 1024
/* A queue overflow is logged at most this often (the count in between summed). */
#define MQTT_DROP_LOG_MS 10000

struct mqtt_tag;

struct mqtt_line {
	struct line *l;
	const struct mqtt_line_conf *c;
	enum mqtt_version v;
	struct mqtt_path path[2];
	int npaths;                 /* 2: a dual tcp-redundant line */
	char *client_id;
	/* acquired tags by topic, served tags by command topic (built at the first connect) */
	struct mqtt_tag **route;
	size_t nroute;              /* buckets, a power of 2; 0 not built */
	LIST_HEAD(, mqtt_cmd) cmds; /* commands waiting for their write's result */
	struct ptimer *drop_timer;  /* the overflow summary */
	uint64_t perr_more;         /* payload errors and refused commands not logged (summed) */
};

/* A topic alias komd uses for its own publishes (per connection). */
struct mqtt_alias { char *topic; uint16_t alias; };

/* The state of one connection. */
enum mqtt_sess_state {
	MSS_CONNECTING,  /* CONNECT sent, CONNACK due */
	MSS_UP,          /* CONNACK 0: publishing and subscribing */
};

/* A SUBSCRIBE waiting for its SUBACK. */
struct mqtt_subreq {
	uint16_t pid;
	int station;
	int64_t sent_ms;
};

struct mqtt_session {
	struct session *s;
	struct mqtt_line *ml;
	struct mqtt_path *p;
	enum mqtt_sess_state state;
	enum mqtt_version v;
	bool inited;
	int window;                 /* QoS 1/2 in flight: min(max_inflight, Receive Maximum) */
	uint32_t max_out;           /* the broker's Maximum Packet Size */
	uint8_t max_qos;            /* the broker's Maximum QoS */
	bool retain_ok;
	int keepalive_ms;           /* 0: none (the broker's Server Keep Alive 0) */
	int64_t connect_ms, last_tx, last_rx, ping_ms;
	uint64_t tx_total, ping_mark, confirmed; /* flow control by PINGREQ */
	struct ptimer *tick;
	struct mqtt_subreq *subs;
	int nsubs;
	bool *subscribed;           /* per station: SUBACK received, every filter granted */
	char **alias_in;            /* topics of the aliases the broker set (1..topic_alias_maximum) */
	int alias_in_max;
	struct mqtt_alias *alias_out; /* open addressing by topic hash */
	int alias_out_cap, alias_out_n, alias_out_max;
	char why[200];              /* the reason of a close komd decided */
	uint8_t *out;               /* packets of this loop pass, written together (mqtt_flush) */
	size_t out_len;
	struct ptimer *flush;
	bool in_read;               /* handling the frames of a read: on_frames_done flushes */
	unsigned rx_publishes;      /* PUBLISH packets in the frames of this read */
	size_t rx_publish_bytes;    /* and their bytes */
	size_t ack_mark, rx_mark;   /* bytes to read at once: acknowledgements of a full window;
	                             * a stream of PUBLISH (mqtt_read_mark); 0: none */
	bool cur_active, cur_sp, cur_busy; /* the current values after CONNACK: where they are */
	int cur_st, cur_tag;
};

struct mqtt_station {
	struct station *st;
	int idx;
	bool subscribes;
	bool has_time;
	struct mqtt_jpath time_path;
	struct ptimer *stale;
	int64_t last_msg_ms;
	bool stale_lost, will_lost; /* in error for want of messages, or by the device's will */
	struct ptimer *batch;
	json_t *batch_obj;          /* topic -> array of the batch's objects */
};

struct mqtt_tag {
	struct stag *t;
	struct mqtt_tag *rnext;     /* route chain */
	const char *rkey;           /* topic (acquired) or command topic (served) */
	bool is_cmd;
	struct mqtt_tag_addr addr;  /* acquired */
	struct mqtt_src src[2];     /* served: its messages in each path's queue */
	bool have_last;             /* served: the last published value, for the deadband */
	double last;
	unsigned last_q;
	struct ptimer *period;
	int64_t perr_window;        /* its payload errors (refused commands) logged since then */
	int perr_burst;
};

/* A command whose write the hub carries; answered on its response topic. */
struct mqtt_cmd {
	LIST_ENTRY(mqtt_cmd) link;
	struct mqtt_line *ml;
	int pathi;
	struct write_req *req;
	uint8_t qos;
	char *topic;
	uint8_t *corr;
	size_t corr_len;
	char tag[128];
};

/* Monotonic ms, for the intervals (keep alive, reply_timeout): a step of the wall clock
 * must not close a connection. Commands' ages are wall-clock (time_now_ms). */
static inline int64_t
mqtt_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The session path of s: the backup's own on a dual line, else the one path. */
static inline int
mqtt_path_index(const struct mqtt_line *ml, const struct session *s)
{
	return ml->npaths == 2 && session_path(s) == PATH_BACKUP ? 1 : 0;
}

/* A warning a peer can cause at any rate (payload errors, refused commands) about tag mt
 * may be logged now (mqtt.c): at most MQTT_PERR_BURST in MQTT_DROP_LOG_MS per tag, so that
 * a flood on one topic never hides another tag's error; the rest counted in perr_more and
 * summed in one line (mqtt_drop_timer_cb) at most every MQTT_DROP_LOG_MS. */
#define MQTT_PERR_BURST 10
bool mqtt_log_allowed(struct mqtt_line *ml, struct mqtt_tag *mt);

/* ---- sending (mqtt_send.c) ---- */
/* The queue gauges of the line (komctl status). */
void mqtt_gauges(struct mqtt_line *ml);
/* Encode p (mqtt_encode) and write it to ms's session: 0, or -1 (logged) when it cannot
 * be encoded. */
int mqtt_send(struct mqtt_session *ms, const struct mqtt_packet *p);
/* PUBACK, PUBREC, PUBREL, PUBCOMP (pid) or DISCONNECT with reason (v5; 3.1.1 sends none). */
void mqtt_send_ack(struct mqtt_session *ms, enum mqtt_type t, uint16_t pid, uint8_t reason);
/* Write the packets batched in this loop pass; the 0 ms timer that does it. */
void mqtt_flush(struct mqtt_session *ms);
void mqtt_flush_cb(void *arg);
/* PINGREQ, unless one is outstanding. */
void mqtt_ping(struct mqtt_session *ms);
/* Close for a reason komd found (logged by the core, kept for on_close). */
void mqtt_close(struct mqtt_session *ms, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A protocol error: v5 DISCONNECT with reason (2.4: the specific code where there is one,
 * 0x81 malformed, 0x93 Receive Maximum exceeded, 0x94 Topic Alias invalid, 0x95 packet too
 * large, else 0x82), then the core's close; kept in why as komd's decision. */
void mqtt_proto_error(struct mqtt_session *ms, uint8_t reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void mqtt_alias_free(struct mqtt_session *ms);
/* Station timer: the summary of queue overflows and oversize drops. */
void mqtt_drop_timer_cb(void *arg);
/* Queue a message on path i (every path when i < 0) and send what the windows allow.
 * src: the published tag's bookkeeping (2 entries, one per path), or NULL. */
void mqtt_enqueue(struct mqtt_line *ml, int i, const char *topic, const void *payload, size_t len, uint8_t qos,
    bool retain, const void *corr, size_t corr_len, struct mqtt_src *src);
/* Send queued messages in order within the in-flight and flow windows. */
void mqtt_pump(struct mqtt_session *ms);
/* Ask the core to report the connection readable only once max(ack_mark, rx_mark) bytes
 * are there, or MQTT_ACK_BATCH_US (0.5 ms) after the mark was set or the last read
 * (session_read_batch); every byte when both are 0. */
void mqtt_read_mark(struct mqtt_session *ms);
/* PUBACK, PUBREC or PUBCOMP received: 0, or -1 after a protocol error. */
int mqtt_on_ack(struct mqtt_session *ms, const struct mqtt_packet *pk);

/* ---- served tags and commands (mqtt_serve.c) ---- */
/* A message on served tag mt's command topic, received by ms. */
void mqtt_command(struct mqtt_session *ms, struct mqtt_tag *mt, const struct mqtt_packet *pk, const char *topic);
void mqtt_cmd_free(struct mqtt_cmd *cmd);
/* Station timers: batch_ms, and a tag's period (arg: struct mqtt_tag). */
void mqtt_batch_cb(void *arg);
void mqtt_period_cb(void *arg);
/* proto_ops.on_tag_change. */
void mqtt_tag_change(struct stag *t);
/* After CONNACK: the current values the broker may lack, on ms's path, as the connection
 * takes them; mqtt_current_step goes on (the pump calls it when its queue is sent). */
void mqtt_publish_current(struct mqtt_session *ms, bool session_present);
void mqtt_current_step(struct mqtt_session *ms);

/* ---- mqtt.c ---- */
extern const struct proto_counter mqtt_counters[];
enum {
	MQC_QUEUED_MSGS, MQC_QUEUED_BYTES, MQC_QUEUE_DROPPED, MQC_OVERSIZE_DROPPED, MQC_PUBLISHED,
	MQC_RECEIVED, MQC_PAYLOAD_ERRORS, MQC_COMMANDS, MQC_COMMANDS_REFUSED, MQC_REDELIVERED,
};

#endif
