/* modbus_image.c: the register image a Modbus server station serves (see modbus_image.h):
 * the served tags of each of the four tables (MODBUS Application Protocol Specification
 * V1.1b3, clause 4.3) as spans sorted by address, and a cache of their encoded values, so
 * that a read (6.1 to 6.4, and the read of 6.17) is a copy; what a write (6.5, 6.6, 6.11,
 * 6.12, 6.16, 6.17) gives each tag. Pure: the caller routes the writes and names the tags. */
#include <stdlib.h>
#include <string.h>

#include "modbus_image.h"

void
mb_image_init(struct mb_image *im, const struct value *(*value)(void *tag))
{
	memset(im, 0, sizeof(*im));
	im->value = value;
}

int
mb_image_add(struct mb_image *im, const struct mb_addr *a, enum vtype type, bool writable, void *tag)
{
	struct mb_table *tb = &im->t[a->fn];
	struct mb_span *n = realloc(tb->sp, (size_t)(tb->nsp + 1) * sizeof(*n));

	if (!n)
		return -1;
	tb->sp = n;
	n[tb->nsp++] = (struct mb_span){ .addr = a->addr, .len = a->nregs ? a->nregs : 1, .writable = writable,
		.type = type, .a = a, .tag = tag };
	return 0;
}

static int
mb_span_cmp(const void *x, const void *y)
{
	const struct mb_span *a = x, *b = y;
	return (int)a->addr - (int)b->addr;
}

/* Does the span at i share a register (or coil) with an earlier one? Word spans may not
 * share; bits in a register may, if each has its own bit. */
static bool
mb_span_overlaps(const struct mb_span *sp, int i, unsigned word_end, int bit_reg, unsigned bit_mask)
{
	const struct mb_addr *a = sp[i].a;

	if (sp[i].addr < word_end)
		return true;
	if (a->fn >= 3 && a->bit >= 0)
		return (int)sp[i].addr == bit_reg && (bit_mask >> a->bit & 1);
	return (int)sp[i].addr == bit_reg;
}

/* The runs of the cached table fn, and whether it can be cached at all. 0, or -1 (no
 * memory). */
static int
mb_table_plan(struct mb_table *tb, int fn)
{
	const struct mb_span *sp = tb->sp;
	unsigned word_end = 0, bit_mask = 0, total = 0;
	int bit_reg = -1;

	tb->cacheable = tb->nsp > 0;
	for (int i = 0; i < tb->nsp && tb->cacheable; i++) {
		const struct mb_addr *a = sp[i].a;
		if (mb_span_overlaps(sp, i, word_end, bit_reg, bit_mask))
			tb->cacheable = false;
		else if (fn >= 3 && a->bit >= 0) {
			if ((int)sp[i].addr != bit_reg)
				bit_mask = 0;
			bit_reg = sp[i].addr;
			bit_mask |= 1u << a->bit;
		} else
			word_end = (unsigned)sp[i].addr + sp[i].len;
	}
	if (!tb->cacheable)
		return 0;
	for (int i = 0; i < tb->nsp; i++) {
		struct mb_span *x = &tb->sp[i];
		struct mb_run *r = tb->nruns ? &tb->runs[tb->nruns - 1] : NULL;

		if (r && x->addr < r->addr + r->len) {
			/* another bit of the run's last register */
		} else if (r && x->addr == r->addr + r->len) {
			r->len += x->len;
			total += x->len;
		} else {
			struct mb_run *n = realloc(tb->runs, (size_t)(tb->nruns + 1) * sizeof(*n));
			if (!n)
				return -1;
			tb->runs = n;
			n[tb->nruns++] = (struct mb_run){ .addr = x->addr, .len = x->len, .off = total };
			total += x->len;
		}
		r = &tb->runs[tb->nruns - 1];
		x->off = r->off + (x->addr - r->addr);
	}
	if ((tb->w = calloc(total, sizeof(*tb->w))) == NULL)
		return -1;
	return 0;
}

int
mb_image_plan(struct mb_image *im)
{
	for (int fn = 1; fn <= 4; fn++) {
		struct mb_table *tb = &im->t[fn];
		if (tb->nsp > 1)
			qsort(tb->sp, (size_t)tb->nsp, sizeof(struct mb_span), mb_span_cmp);
		if (mb_table_plan(tb, fn) != 0)
			return -1;
	}
	im->stale = true;
	return 0;
}

void
mb_image_free(struct mb_image *im)
{
	for (int fn = 1; fn <= 4; fn++) {
		free(im->t[fn].sp);
		free(im->t[fn].runs);
		free(im->t[fn].w);
	}
}

/* A served value as a coil or bit: nonzero is on. */
static int
mb_value_bit(const struct value *v)
{
	return v->type == VT_FLOAT ? v->f != 0.0 : v->type == VT_STRING ? 0 : v->i != 0;
}

/* Encode span x's value into the cached table fn. */
static void
mb_table_refresh(const struct mb_image *im, struct mb_table *tb, int fn, struct mb_span *x)
{
	const struct mb_addr *a = x->a;
	const struct value *v = im->value(x->tag);
	uint16_t vr[4];
	char err[120];
	bool bad = false;

	if (fn <= 2)
		tb->w[x->off] = (uint16_t)mb_value_bit(v);
	else if (a->bit >= 0)
		tb->w[x->off] = (uint16_t)((tb->w[x->off] & ~(1u << a->bit)) | (unsigned)mb_value_bit(v) << a->bit);
	else if (mb_value_to_regs(a, v, vr, err, sizeof(err)) == 0)
		memcpy(&tb->w[x->off], vr, x->len * sizeof(*vr));
	else
		bad = true;
	tb->nbad += (int)bad - (int)x->bad;
	x->bad = bad;
}

static void
mb_image_rebuild(struct mb_image *im)
{
	for (int fn = 1; fn <= 4; fn++) {
		struct mb_table *tb = &im->t[fn];
		if (!tb->cacheable)
			continue;
		tb->nbad = 0;
		for (int i = 0; i < tb->nsp; i++) {
			tb->sp[i].bad = false;
			mb_table_refresh(im, tb, fn, &tb->sp[i]);
		}
	}
	im->stale = false;
}

void
mb_image_changed(struct mb_image *im, int fn, int i)
{
	struct mb_table *tb = &im->t[fn];

	if (im->stale || !tb->cacheable)
		return;
	mb_table_refresh(im, tb, fn, &tb->sp[i]);
}

void
mb_image_invalidate(struct mb_image *im)
{
	im->stale = true;
}

/* First span that may overlap addr (spans are at most 4 long). */
static int
mb_span_first(const struct mb_table *tb, uint16_t addr)
{
	int lo = 0, hi = tb->nsp;
	unsigned from = addr >= 3 ? addr - 3u : 0;

	while (lo < hi) {
		int mid = (lo + hi) / 2;
		if (tb->sp[mid].addr < from)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* [addr, addr + count) of table fn from the tags themselves (the table is not cached, or a
 * value cannot be encoded). */
static int
mb_table_read_tags(struct mb_image *im, int fn, uint16_t addr, uint16_t count, uint16_t *regs, uint8_t *bits,
    void **bad)
{
	const struct mb_table *tb = &im->t[fn];
	uint8_t covered[MB_MAX_READ_BITS];
	unsigned end = (unsigned)addr + count;

	memset(covered, 0, count);
	if (regs)
		memset(regs, 0, count * sizeof(*regs));
	for (int i = mb_span_first(tb, addr); i < tb->nsp && tb->sp[i].addr < end; i++) {
		const struct mb_span *sp = &tb->sp[i];
		const struct mb_addr *a = sp->a;
		const struct value *v = im->value(sp->tag);
		uint16_t vr[4];

		if ((unsigned)sp->addr + sp->len <= addr)
			continue;
		if (fn <= 2 || a->bit >= 0) {
			int b = mb_value_bit(v);
			unsigned off = (unsigned)(sp->addr - addr);
			if (fn <= 2)
				bits[off] = (uint8_t)b;
			else
				regs[off] |= (uint16_t)(b << a->bit);
			covered[off] = 1;
			continue;
		}
		if (mb_value_to_regs(a, v, vr, im->why, sizeof(im->why)) != 0) {
			*bad = sp->tag;
			return MB_EX_DEVICE_FAILURE;
		}
		for (unsigned r = 0; r < sp->len; r++) {
			unsigned at = (unsigned)sp->addr + r;
			if (at >= addr && at < end) {
				regs[at - addr] = vr[r];
				covered[at - addr] = 1;
			}
		}
	}
	for (unsigned i = 0; i < count; i++)
		if (!covered[i])
			return MB_EX_ILLEGAL_ADDRESS;
	return 0;
}

int
mb_image_read(struct mb_image *im, int fn, uint16_t addr, uint16_t count, uint16_t *regs, uint8_t *bits,
    void **bad)
{
	const struct mb_table *tb = &im->t[fn];
	int lo = 0, hi;

	if (im->stale)
		mb_image_rebuild(im);
	if (!tb->cacheable || tb->nbad)
		return mb_table_read_tags(im, fn, addr, count, regs, bits, bad);
	/* the last run starting at or before addr */
	hi = tb->nruns;
	while (lo < hi) {
		int mid = (lo + hi) / 2;
		if (tb->runs[mid].addr <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return MB_EX_ILLEGAL_ADDRESS;
	const struct mb_run *r = &tb->runs[lo - 1];
	if ((unsigned)addr + count > r->addr + r->len)
		return MB_EX_ILLEGAL_ADDRESS;
	const uint16_t *w = &tb->w[r->off + (addr - r->addr)];
	if (regs)
		memcpy(regs, w, count * sizeof(*regs));
	else
		for (unsigned i = 0; i < count; i++)
			bits[i] = (uint8_t)w[i];
	return 0;
}

bool
mb_image_covers(const struct mb_image *im, int fn, uint16_t addr, uint16_t count)
{
	const struct mb_table *tb = &im->t[fn];
	uint8_t covered[MB_MAX_READ_BITS];
	unsigned end = (unsigned)addr + count;

	memset(covered, 0, count);
	for (int i = mb_span_first(tb, addr); i < tb->nsp && tb->sp[i].addr < end; i++) {
		const struct mb_span *sp = &tb->sp[i];
		for (unsigned k = 0; k < sp->len; k++) {
			unsigned at = (unsigned)sp->addr + k;
			if (at >= addr && at < end)
				covered[at - addr] = 1;
		}
	}
	for (unsigned i = 0; i < count; i++)
		if (!covered[i])
			return false;
	return true;
}

int
mb_image_write(const struct mb_image *im, int fn, uint16_t addr, uint16_t count, const uint16_t *regs,
    const uint8_t *bits, struct mb_put **puts, int *nputs)
{
	const struct mb_table *tb = &im->t[fn];
	uint8_t covered[MB_MAX_WRITE_BITS];
	unsigned end = (unsigned)addr + count;
	int first = mb_span_first(tb, addr), n = 0, k = 0;
	struct mb_put *p;

	*puts = NULL;
	*nputs = 0;
	memset(covered, 0, count);
	/* check everything before converting anything */
	for (int i = first; i < tb->nsp && tb->sp[i].addr < end; i++) {
		const struct mb_span *sp = &tb->sp[i];
		if ((unsigned)sp->addr + sp->len <= addr)
			continue;
		if (!sp->writable || sp->addr < addr || (unsigned)sp->addr + sp->len > end)
			return MB_EX_ILLEGAL_ADDRESS;
		for (unsigned j = 0; j < sp->len; j++)
			covered[sp->addr - addr + j] = 1;
		n++;
	}
	for (unsigned i = 0; i < count; i++)
		if (!covered[i])
			return MB_EX_ILLEGAL_ADDRESS;
	/* every value converted before any is given: a request is written whole or not at all */
	if ((p = calloc((size_t)n, sizeof(*p))) == NULL)
		return MB_EX_DEVICE_FAILURE;
	for (int i = first; i < tb->nsp && tb->sp[i].addr < end; i++) {
		const struct mb_span *sp = &tb->sp[i];
		const struct mb_addr *a = sp->a;
		struct value *v = &p[k].v;
		char err[120];
		unsigned off = (unsigned)(sp->addr - addr);

		if ((unsigned)sp->addr + sp->len <= addr)
			continue;
		v->type = sp->type;
		if (fn == 1 || a->bit >= 0) {
			int b = fn == 1 ? bits[off] : (regs[off] >> a->bit) & 1;
			if (v->type == VT_FLOAT)
				v->f = b;
			else
				v->i = b;
		} else if (mb_regs_to_value(a, regs + off, v->type, v, err, sizeof(err)) != 0) {
			free(p);
			return MB_EX_ILLEGAL_VALUE;
		}
		p[k++].tag = sp->tag;
	}
	*puts = p;
	*nputs = k;
	return 0;
}
