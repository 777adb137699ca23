/* komtext_codec.h: the komtext protocol's frames (see komtext_codec.c). Pure: no I/O. */
#ifndef KOMD_KOMTEXT_CODEC_H
#define KOMD_KOMTEXT_CODEC_H

#include <stddef.h>
#include <stdint.h>

#define KOMTEXT_MAX_FRAME 256

enum komtext_kind { KT_VAL, KT_SET, KT_ACK, KT_NAK, KT_PING, KT_PONG };

struct komtext_msg {
	enum komtext_kind kind;
	uint32_t id;          /* SET, ACK, NAK, PING, PONG */
	char addr[65];        /* VAL, SET */
	unsigned quality;     /* VAL */
	int64_t src_ms;       /* VAL */
	char text[KOMTEXT_MAX_FRAME]; /* VAL, SET: the value; NAK: the reason */
};

/* Is there a complete frame at buf? 1 with *flen (including the newline), 0 need more,
 * -1 not a valid frame start (too long or a control byte). */
int komtext_frame(const uint8_t *buf, size_t len, size_t *flen);
/* Parse one frame (without its newline; a trailing CR is ignored). 0, or -1 with err. */
int komtext_parse(const char *frame, size_t len, struct komtext_msg *m, char *err, size_t errlen);
/* Format m with its newline into buf; returns the length, or -1 if it does not fit. */
int komtext_format(const struct komtext_msg *m, char *buf, size_t len);

#endif
