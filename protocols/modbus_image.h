/* modbus_image.h: the register image a Modbus server station serves (modbus_image.c): which
 * served tag covers which addresses of the four tables of the MODBUS Application Protocol
 * Specification V1.1b3 (clause 4.3: coils, discrete inputs, holding registers, input
 * registers; functions 1..4 of a tag address), and their values kept encoded as the tags
 * change, so that a read is a copy. Pure: no session, no station, no I/O; the tags are the
 * caller's (void *), their values read through a callback. tests/unit/test_modbus_image.c
 * drives it without sockets. */
#ifndef KOMD_MODBUS_IMAGE_H
#define KOMD_MODBUS_IMAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "modbus_codec.h"

/* What a served tag covers: len registers (or one coil/input) from addr. */
struct mb_span {
	uint16_t addr;
	uint8_t len;
	bool bad;                 /* its value cannot be encoded (the table's nbad counts it) */
	bool writable;            /* an output (not input-only): requests may write it */
	enum vtype type;          /* the tag's type: what a write converts to */
	uint32_t off;             /* where its first register is in the cached table */
	const struct mb_addr *a;  /* the tag's address (the caller's, kept) */
	void *tag;                /* the caller's tag */
};

/* A run of contiguous served addresses of one table, in the cached registers from off. */
struct mb_run {
	uint32_t addr, len, off;
};

/* One table (function 1..4): its spans sorted by address, and its cache: registers (or
 * bits, one a word) kept encoded as the tags change. Not cached when spans overlap (two
 * tags on one register or bit: the tags are then read every time), nor used while a value
 * cannot be encoded (nbad: the slow path names the tag). */
struct mb_table {
	struct mb_span *sp;
	int nsp;
	bool cacheable;
	struct mb_run *runs;
	int nruns;
	uint16_t *w;              /* the registers or bits of every run */
	int nbad;
};

struct mb_image {
	struct mb_table t[5];     /* per function 1..4 (t[0] unused) */
	/* rebuilt at the next read: after planning, and while the tags' changes are not
	 * notified (a server line that stops) */
	bool stale;
	const struct value *(*value)(void *tag); /* a tag's current value */
	char why[120];            /* why mb_image_read found a value it cannot encode */
};

/* Zero im; value gives a tag's current value. */
void mb_image_init(struct mb_image *im, const struct value *(*value)(void *tag));
/* Add a served tag at address a (kept by pointer), of type type; 0, or -1 (no memory). */
int mb_image_add(struct mb_image *im, const struct mb_addr *a, enum vtype type, bool writable, void *tag);
/* Once every tag is added: sort the spans (t[fn].sp[i].tag gives each tag its index for
 * mb_image_changed) and plan the caches. 0, or -1 (no memory; mb_image_free then). */
int mb_image_plan(struct mb_image *im);
void mb_image_free(struct mb_image *im);
/* Tag i of table fn has a new value. */
void mb_image_changed(struct mb_image *im, int fn, int i);
/* Changes stop being notified: rebuild the cache at the next read. */
void mb_image_invalidate(struct mb_image *im);

/* [addr, addr + count) of table fn (count at most MB_MAX_READ_BITS): registers (fn 3, 4)
 * into regs, or bits (fn 1, 2, one a byte) into bits. 0; MB_EX_ILLEGAL_ADDRESS when an
 * address is not served; MB_EX_DEVICE_FAILURE when a value in it cannot be encoded, with
 * the tag in *bad and why in im->why. */
int mb_image_read(struct mb_image *im, int fn, uint16_t addr, uint16_t count, uint16_t *regs, uint8_t *bits,
    void **bad);
/* Does a served tag cover every address of [addr, addr + count) of fn (count at most
 * MB_MAX_READ_BITS)? */
bool mb_image_covers(const struct mb_image *im, int fn, uint16_t addr, uint16_t count);

/* A value a write request gives a tag. */
struct mb_put {
	void *tag;
	struct value v;
};
/* The values a write of registers regs[0..count) from addr (fn 3) or of bits (fn 1) gives
 * the tags: every address must be covered by writable tags, a multi-register value written
 * whole, every value converted, before anything is written (a request is written whole or
 * not at all). 0 with *puts (allocated, *nputs of them, in address order), or the
 * exception code: 02 for an address, 03 for a value that does not convert, 04 (no
 * memory). */
int mb_image_write(const struct mb_image *im, int fn, uint16_t addr, uint16_t count, const uint16_t *regs,
    const uint8_t *bits, struct mb_put **puts, int *nputs);

#endif
