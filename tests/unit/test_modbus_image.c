/* test_modbus_image.c: the register image a Modbus server station serves (modbus_image.c),
 * driven without sockets or a daemon: the tags are the test's own values. The reads of the
 * MODBUS Application Protocol Specification V1.1b3 (the examples of 6.1 .. 6.4) are
 * answered from images whose tags hold the examples' values, and the answers compared
 * with the specification's bytes; then the cache (changes, invalidation, overlapping tags,
 * values that cannot be encoded), coverage, and what a write gives each tag. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "modbus_codec.h"
#include "modbus_image.h"

#define TID 0x1234
#define UNIT 0x11

/* One served tag of the test: its address (as in komd.conf), value, and direction. */
struct tag {
	const char *addr;
	struct value v;
	bool out;                 /* writable */
	struct mb_addr a;
};

static const struct value *
tag_value(void *t)
{
	return &((struct tag *)t)->v;
}

/* An image of the n tags, planned. */
static void
image_of(struct mb_image *im, struct tag *tags, int n)
{
	char err[120];

	mb_image_init(im, tag_value);
	for (int i = 0; i < n; i++) {
		CHECK_INT(mb_parse_addr(tags[i].addr, false, &tags[i].a, err, sizeof(err)), 0);
		CHECK_INT(mb_image_add(im, &tags[i].a, tags[i].v.type, tags[i].out, &tags[i]), 0);
	}
	CHECK_INT(mb_image_plan(im), 0);
}

/* The index of tag t in its table (what the server keeps for mb_image_changed). */
static int
span_of(const struct mb_image *im, const struct tag *t)
{
	const struct mb_table *tb = &im->t[t->a.fn];

	for (int i = 0; i < tb->nsp; i++)
		if (tb->sp[i].tag == t)
			return i;
	return -1;
}

static void
set_int(struct mb_image *im, struct tag *t, int64_t i)
{
	t->v.i = i;
	mb_image_changed(im, t->a.fn, span_of(im, t));
}

#define INT(n) { .type = VT_INT, .i = (n) }
#define BOOL(n) { .type = VT_BOOL, .i = (n) }
#define FLOAT(x) { .type = VT_FLOAT, .f = (x) }

/* Does the ADU (len bytes) hold MBAP(TID, UNIT) followed by exactly the PDU? */
static int
adu_is(const uint8_t *adu, size_t len, const uint8_t *pdu, size_t plen)
{
	uint8_t hdr[7] = { TID >> 8, TID & 0xff, 0, 0, (uint8_t)((plen + 1) >> 8), (uint8_t)(plen + 1), UNIT };

	return len == 7 + plen && memcmp(adu, hdr, 7) == 0 && memcmp(adu + 7, pdu, plen) == 0;
}

/* 6.1 .. 6.4: each example's response, from an image of tags holding its values. */
static void
test_spec_reads(void)
{
	/* 6.1: coils 20..38 (addresses 19..37) are CD 6B 05, least significant bit first;
	 * 6.2: discrete inputs 197..218 (196..217) are AC DB 35 */
	static const uint8_t coils[] = { 0xCD, 0x6B, 0x05 }, inputs[] = { 0xAC, 0xDB, 0x35 };
	static const uint8_t rsp1[] = { 0x01, 0x03, 0xCD, 0x6B, 0x05 }, rsp2[] = { 0x02, 0x03, 0xAC, 0xDB, 0x35 };
	/* 6.3: registers 108..110 (107..109) hold 555, 0, 100; 6.4: input register 9 (8) holds 10 */
	static const uint8_t rsp3[] = { 0x03, 0x06, 0x02, 0x2B, 0x00, 0x00, 0x00, 0x64 };
	static const uint8_t rsp4[] = { 0x04, 0x02, 0x00, 0x0A };
	static char names[19 + 22][8];
	struct tag tags[19 + 22 + 4] = {
		{ .addr = "3.107", .v = INT(555) }, { .addr = "3.108", .v = INT(0) }, { .addr = "3.109", .v = INT(100) },
		{ .addr = "4.8", .v = INT(10) },
	};
	uint8_t buf[MB_MAX_ADU], bits[32];
	uint16_t regs[8];
	struct mb_image im;
	void *bad = NULL;
	int n = 4;

	for (int i = 0; i < 19; i++, n++) {
		snprintf(names[i], sizeof(names[i]), "1.%d", 19 + i);
		tags[n] = (struct tag){ .addr = names[i], .v = BOOL(mb_get_bit(coils, (unsigned)i)) };
	}
	for (int i = 0; i < 22; i++, n++) {
		snprintf(names[19 + i], sizeof(names[19 + i]), "2.%d", 196 + i);
		tags[n] = (struct tag){ .addr = names[19 + i], .v = BOOL(mb_get_bit(inputs, (unsigned)i)) };
	}
	image_of(&im, tags, n);
	for (int fn = 1; fn <= 4; fn++)
		CHECK(im.t[fn].cacheable);
	CHECK_INT(mb_image_read(&im, 1, 19, 19, NULL, bits, &bad), 0);
	CHECK(adu_is(buf, mb_encode_read_bits_response(buf, TID, UNIT, 1, bits, 19), rsp1, sizeof(rsp1)));
	CHECK_INT(mb_image_read(&im, 2, 196, 22, NULL, bits, &bad), 0);
	CHECK(adu_is(buf, mb_encode_read_bits_response(buf, TID, UNIT, 2, bits, 22), rsp2, sizeof(rsp2)));
	CHECK_INT(mb_image_read(&im, 3, 107, 3, regs, NULL, &bad), 0);
	CHECK(adu_is(buf, mb_encode_read_regs_response(buf, TID, UNIT, 3, regs, 3), rsp3, sizeof(rsp3)));
	CHECK_INT(mb_image_read(&im, 4, 8, 1, regs, NULL, &bad), 0);
	CHECK(adu_is(buf, mb_encode_read_regs_response(buf, TID, UNIT, 4, regs, 1), rsp4, sizeof(rsp4)));
	/* one past either end, or a table with nothing served: 02 */
	CHECK_INT(mb_image_read(&im, 1, 18, 2, NULL, bits, &bad), MB_EX_ILLEGAL_ADDRESS);
	CHECK_INT(mb_image_read(&im, 1, 37, 2, NULL, bits, &bad), MB_EX_ILLEGAL_ADDRESS);
	CHECK_INT(mb_image_read(&im, 3, 106, 1, regs, NULL, &bad), MB_EX_ILLEGAL_ADDRESS);
	CHECK_INT(mb_image_read(&im, 3, 109, 2, regs, NULL, &bad), MB_EX_ILLEGAL_ADDRESS);
	CHECK(bad == NULL);
	mb_image_free(&im);
	mb_image_init(&im, tag_value);
	CHECK_INT(mb_image_plan(&im), 0);
	CHECK(!im.t[3].cacheable);
	CHECK_INT(mb_image_read(&im, 3, 0, 1, regs, NULL, &bad), MB_EX_ILLEGAL_ADDRESS);
	CHECK(!mb_image_covers(&im, 3, 0, 1));
	mb_image_free(&im);
}

/* Runs, gaps, types, bits of a register; a change is a copy into the cache. */
static void
test_cache(void)
{
	struct tag tags[] = {
		{ .addr = "3.0", .v = INT(1), .out = true },
		{ .addr = "f3.1", .v = FLOAT(1.5), .out = true },          /* 3.1, 3.2: 0x3FC0 0x0000 */
		{ .addr = "3.5.3", .v = BOOL(1), .out = true },
		{ .addr = "3.5.0", .v = BOOL(1), .out = true },
		{ .addr = "I3.10", .v = INT(-2) },                          /* input only */
		{ .addr = "Ll3.11", .v = INT(0x12345678), .out = true },   /* low word first */
	};
	struct mb_image im;
	uint16_t regs[16];
	void *bad = NULL;

	image_of(&im, tags, 6);
	CHECK(im.t[3].cacheable);
	CHECK_INT(im.t[3].nruns, 3); /* 0..2, 5, 10..12 */
	CHECK_INT(mb_image_read(&im, 3, 0, 3, regs, NULL, &bad), 0);
	CHECK(regs[0] == 1 && regs[1] == 0x3FC0 && regs[2] == 0);
	CHECK_INT(mb_image_read(&im, 3, 5, 1, regs, NULL, &bad), 0);
	CHECK_INT(regs[0], 0x0009);
	CHECK_INT(mb_image_read(&im, 3, 10, 3, regs, NULL, &bad), 0);
	CHECK(regs[0] == 0xFFFE && regs[1] == 0x5678 && regs[2] == 0x1234);
	/* half a value is served (a read may start or end inside one); a gap is not */
	CHECK_INT(mb_image_read(&im, 3, 2, 1, regs, NULL, &bad), 0);
	CHECK_INT(mb_image_read(&im, 3, 0, 4, regs, NULL, &bad), MB_EX_ILLEGAL_ADDRESS);
	CHECK_INT(mb_image_read(&im, 3, 4, 2, regs, NULL, &bad), MB_EX_ILLEGAL_ADDRESS);
	CHECK_INT(mb_image_read(&im, 3, 13, 1, regs, NULL, &bad), MB_EX_ILLEGAL_ADDRESS);
	/* a change notified is served; one not notified is not (the cache), until invalidated */
	set_int(&im, &tags[0], 7);
	tags[3].v.i = 0;
	mb_image_changed(&im, 3, span_of(&im, &tags[3]));
	CHECK_INT(mb_image_read(&im, 3, 0, 1, regs, NULL, &bad), 0);
	CHECK_INT(regs[0], 7);
	CHECK_INT(mb_image_read(&im, 3, 5, 1, regs, NULL, &bad), 0);
	CHECK_INT(regs[0], 0x0008);
	tags[0].v.i = 8;
	CHECK_INT(mb_image_read(&im, 3, 0, 1, regs, NULL, &bad), 0);
	CHECK_INT(regs[0], 7);
	mb_image_invalidate(&im);
	set_int(&im, &tags[0], 9); /* not copied while stale: the next read rebuilds */
	CHECK_INT(mb_image_read(&im, 3, 0, 1, regs, NULL, &bad), 0);
	CHECK_INT(regs[0], 9);
	/* coverage (FC 23 checks its read range first): input-only tags count */
	CHECK(mb_image_covers(&im, 3, 0, 3));
	CHECK(mb_image_covers(&im, 3, 10, 3));
	CHECK(!mb_image_covers(&im, 3, 0, 4));
	CHECK(!mb_image_covers(&im, 4, 10, 1));
	mb_image_free(&im);
}

/* Tags sharing a register are read from the tags every time; a value a register cannot
 * hold makes the read that includes it fail (04), naming the tag, and no other. */
static void
test_uncached(void)
{
	struct tag tags[] = {
		{ .addr = "3.20", .v = INT(0x0102) },
		{ .addr = "3.21", .v = INT(0x0304) },
		{ .addr = "3.21.0", .v = BOOL(0) },   /* shares 3.21 with a word */
		{ .addr = "3.30", .v = INT(5) },
		{ .addr = "3.31", .v = INT(70000) },  /* does not fit U16 */
	};
	struct mb_image im;
	uint16_t regs[4];
	void *bad = NULL;

	image_of(&im, tags, 5);
	CHECK(!im.t[3].cacheable);
	CHECK_INT(mb_image_read(&im, 3, 20, 1, regs, NULL, &bad), 0);
	CHECK_INT(regs[0], 0x0102);
	CHECK_INT(mb_image_read(&im, 3, 30, 1, regs, NULL, &bad), 0);
	CHECK(bad == NULL);
	CHECK_INT(mb_image_read(&im, 3, 30, 2, regs, NULL, &bad), MB_EX_DEVICE_FAILURE);
	CHECK(bad == &tags[4]);
	CHECK(im.why[0] != '\0');
	mb_image_free(&im);

	/* the same in a cached table: the cache is bypassed while a value is bad */
	struct tag ok[] = { { .addr = "3.30", .v = INT(5) }, { .addr = "3.31", .v = INT(70000) } };
	image_of(&im, ok, 2);
	CHECK(im.t[3].cacheable);
	bad = NULL;
	CHECK_INT(mb_image_read(&im, 3, 30, 1, regs, NULL, &bad), 0);
	CHECK_INT(regs[0], 5);
	CHECK_INT(im.t[3].nbad, 1);
	CHECK_INT(mb_image_read(&im, 3, 30, 2, regs, NULL, &bad), MB_EX_DEVICE_FAILURE);
	CHECK(bad == &ok[1]);
	set_int(&im, &ok[1], 6);
	CHECK_INT(im.t[3].nbad, 0);
	CHECK_INT(mb_image_read(&im, 3, 30, 2, regs, NULL, &bad), 0);
	CHECK(regs[0] == 5 && regs[1] == 6);
	mb_image_free(&im);
}

/* The value (of tag t) among the n puts, or NULL. */
static const struct value *
put_of(const struct mb_put *p, int n, const struct tag *t)
{
	for (int i = 0; i < n; i++)
		if (p[i].tag == t)
			return &p[i].v;
	return NULL;
}

/* What a write gives each tag: whole values of writable tags only, all or nothing. */
static void
test_writes(void)
{
	struct tag tags[] = {
		{ .addr = "3.0", .v = INT(1), .out = true },
		{ .addr = "f3.1", .v = FLOAT(1.5), .out = true },
		{ .addr = "3.5.3", .v = BOOL(1), .out = true },
		{ .addr = "3.5.0", .v = BOOL(1), .out = true },
		{ .addr = "3.10", .v = INT(0) },                  /* input only */
		{ .addr = "f3.20", .v = INT(0), .out = true },    /* an int tag on a float */
		{ .addr = "1.0", .v = BOOL(0), .out = true },
		{ .addr = "1.1", .v = FLOAT(0), .out = true },
	};
	static const uint16_t pi[] = { 0x4049, 0x0FDB }, nan[] = { 0x7FC0, 0x0000 };
	uint16_t regs[4] = { 9 };
	uint8_t bits[2] = { 1, 1 };
	const struct value *v;
	struct mb_put *p = NULL, none;
	struct mb_image im;
	int n = -1;

	image_of(&im, tags, 8);
	CHECK_INT(mb_image_write(&im, 3, 0, 1, regs, NULL, &p, &n), 0);
	CHECK(n == 1 && p[0].tag == &tags[0] && p[0].v.type == VT_INT && p[0].v.i == 9);
	free(p);
	CHECK_INT(mb_image_write(&im, 3, 1, 2, pi, NULL, &p, &n), 0);
	CHECK(n == 1 && p[0].tag == &tags[1] && p[0].v.type == VT_FLOAT && fabs(p[0].v.f - 3.14159274) < 1e-6);
	free(p);
	/* FC 6 on a register of bit tags sets each bit tag */
	regs[0] = 0x0001;
	CHECK_INT(mb_image_write(&im, 3, 5, 1, regs, NULL, &p, &n), 0);
	CHECK_INT(n, 2);
	CHECK((v = put_of(p, n, &tags[3])) != NULL && v->type == VT_BOOL && v->i == 1);
	CHECK((v = put_of(p, n, &tags[2])) != NULL && v->i == 0);
	free(p);
	/* coils: a float tag takes 1.0 */
	CHECK_INT(mb_image_write(&im, 1, 0, 2, NULL, bits, &p, &n), 0);
	CHECK_INT(n, 2);
	CHECK((v = put_of(p, n, &tags[6])) != NULL && v->i == 1);
	CHECK((v = put_of(p, n, &tags[7])) != NULL && v->type == VT_FLOAT && v->f == 1.0);
	free(p);
	/* refused, nothing given: half a value, an input, a gap, past the end, no conversion */
	p = &none;
	CHECK_INT(mb_image_write(&im, 3, 1, 1, regs, NULL, &p, &n), MB_EX_ILLEGAL_ADDRESS);
	CHECK(p == NULL && n == 0);
	CHECK_INT(mb_image_write(&im, 3, 0, 2, regs, NULL, &p, &n), MB_EX_ILLEGAL_ADDRESS);
	CHECK_INT(mb_image_write(&im, 3, 10, 1, regs, NULL, &p, &n), MB_EX_ILLEGAL_ADDRESS);
	CHECK_INT(mb_image_write(&im, 3, 3, 1, regs, NULL, &p, &n), MB_EX_ILLEGAL_ADDRESS);
	CHECK_INT(mb_image_write(&im, 3, 0, 4, regs, NULL, &p, &n), MB_EX_ILLEGAL_ADDRESS);
	CHECK_INT(mb_image_write(&im, 1, 1, 2, NULL, bits, &p, &n), MB_EX_ILLEGAL_ADDRESS);
	CHECK_INT(mb_image_write(&im, 3, 20, 2, nan, NULL, &p, &n), MB_EX_ILLEGAL_VALUE);
	CHECK(p == NULL);
	CHECK_INT(mb_image_write(&im, 3, 20, 2, pi, NULL, &p, &n), 0);
	CHECK(n == 1 && p[0].v.type == VT_INT && p[0].v.i == 3);
	free(p);
	mb_image_free(&im);
}

int
main(void)
{
	test_spec_reads();
	test_cache();
	test_uncached();
	test_writes();
	return CHECK_DONE();
}
