/* modbus.h: what the Modbus TCP client (modbus_client.c) and server (modbus_server.c) share:
 * their configuration (keys and load-time checks, in modbus.c), each tag's address, and the
 * trace of an ADU. Frames are modbus_codec.c's, the served register image modbus_image.c's.
 *
 * Names: mb_ is the Modbus prefix in every modbus file (the codec's API has always used it);
 * what a file exports adds the file's part: mb_client_*, mb_server_*, mb_image_*. */
#ifndef KOMD_MODBUS_H
#define KOMD_MODBUS_H

#include "proto.h"
#include "modbus_codec.h"

struct mb_line_conf {
	int max_outstanding;   /* client */
	int unknown_unit;      /* server: 0 answer exception 0x0B, 1 ignore */
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

/* A tag's private state (stag_priv), client and server alike. */
struct mb_tag {
	struct mb_addr a;
	int span;                 /* server: its span in the image's table of a.fn */
};

/* The protocols' own counters (proto_ops.counters, modbus.c), by index: exception
 * responses by exception code (MODBUS Application Protocol v1.1b3, clause 7: the client's
 * received from its devices, the server's sent), then the client's response timeouts. */
enum {
	MB_CNT_EXCEPTIONS,                        /* codes 01..06, 08, 0A, 0B, then "other" */
	MB_CNT_TIMEOUTS = MB_CNT_EXCEPTIONS + 10, /* client only */
};
extern const struct proto_counter mb_client_counters[], mb_server_counters[];
/* Count one exception response of line l with exception code code (0..255; any code but
 * those of clause 7 counts as "other"). */
void mb_count_exception_code(struct line *l, int code);

/* The keys of each protocol's sections (modbus.c). */
extern const struct conf_key mb_client_line_keys[], mb_server_line_keys[];
extern const struct conf_key mb_client_station_keys[], mb_server_station_keys[];

/* A station's unit id from its address; 0, or -1 with a message. */
int mb_unit_of(const struct station_conf *sc, uint8_t *unit, char *err, size_t errlen);
/* check_station of the client and of the server (which also checks the identification). */
int mb_check_station(const struct station_conf *sc, char *err, size_t errlen);
int mb_check_server_station(const struct station_conf *sc, char *err, size_t errlen);
int mb_check_tag(const struct station_conf *sc, const struct tag_conf *tc, char *err, size_t errlen);
/* Parse the address of each of the station's tags into its mb_tag; a tag without one (a
 * simulated station's) is ignored, a bad one cannot get past the load-time checks. */
void mb_station_addrs(struct station *st);
void mb_trace(struct session *s, bool out, bool response, const uint8_t *adu, size_t len);

/* Trace one ADU decoded as what it is, if the line traces: a request (a client's out, a
 * server's in) or a response (the other way round). Inline: twice a request otherwise. */
static inline void
mb_trace_adu(struct session *s, bool out, bool response, const uint8_t *adu, size_t len)
{
	if (session_tracing(s))
		mb_trace(s, out, response, adu, len);
}

static inline const struct mb_tag *
mb_tag(const struct stag *t)
{
	return stag_priv((struct stag *)t);
}

/* Framing for the core's frame loop: an ADU's length from its MBAP header (Modbus
 * Messaging on TCP/IP Implementation Guide, clause 3.1.3): 0 until 7 bytes and the whole
 * ADU are there, -1 for a broken header (protocol id, length). */
long mb_frame_len(const uint8_t *buf, size_t len, char *err, size_t errlen);

#endif
