/* fuzz_iec104.c: libFuzzer target for the IEC 104 codec: the input as a stream of APDUs
 * (104 clause 5), each I frame's ASDU decoded with two sets of field sizes (101 7.1),
 * what decodes encoded again (which must decode to the same fields), traces, and the
 * input as a tag address. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "iec104_codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW_MS 1710498600000LL  /* 2024-03-15T10:30:00Z: completes CP24Time2a */

static struct iec_asdu a1, a2;

static bool
same_value(const struct iec_obj *x, const struct iec_obj *y)
{
	/* compare the union's bytes as a double too: NaN != NaN, and a signalling NaN comes
	 * back quiet through float -> double -> float */
	if (x->v.i == y->v.i)
		return true;
	return x->v.f != x->v.f && y->v.f != y->v.f;
}

static void
roundtrip(const uint8_t *asdu, size_t len, const struct iec_params *prm)
{
	uint8_t out[IEC_MAX_ASDU];
	char err[200];
	size_t n;

	if (iec_asdu_decode(asdu, len, prm, NOW_MS, &a1, err, sizeof(err)) != 0)
		return;
	assert(a1.nobj >= 1 && a1.nobj <= IEC_MAX_OBJS);
	assert(iec_type_name(a1.type) != NULL);
	assert(a1.nobj <= iec_max_objs(a1.type, a1.sq, prm));
	n = iec_asdu_encode(&a1, prm, out, sizeof(out));
	assert(n == len);
	assert(iec_asdu_decode(out, n, prm, NOW_MS, &a2, err, sizeof(err)) == 0);
	assert(a2.type == a1.type && a2.sq == a1.sq && a2.cot == a1.cot && a2.pn == a1.pn &&
	    a2.test == a1.test && a2.oa == a1.oa && a2.ca == a1.ca && a2.nobj == a1.nobj);
	for (int k = 0; k < a1.nobj; k++) {
		const struct iec_obj *x = &a1.obj[k], *y = &a2.obj[k];

		assert(x->ioa == y->ioa && same_value(x, y) && x->q == y->q && x->transient == y->transient &&
		    x->seq == y->seq && x->select == y->select && x->qu == y->qu &&
		    x->qualifier == y->qualifier && x->elapsed_ms == y->elapsed_ms &&
		    x->has_time == y->has_time && x->time_ms == y->time_ms && x->time_invalid == y->time_invalid);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct iec_params p104 = { .cot_len = 2, .ca_len = 2, .ioa_len = 3 };
	static const struct iec_params p101 = { .cot_len = 1, .ca_len = 1, .ioa_len = 2 };
	size_t off = 0, flen;
	struct iec_apci ap;
	char err[200], buf[300];

	while (off < size) {
		int r = iec_apci_parse(data + off, size - off, &ap, &flen, err, sizeof(err));

		if (r != 1)
			break;
		assert(flen >= IEC_APCI_LEN && flen <= IEC_MAX_APDU && flen <= size - off);
		if (ap.format == IEC_I) {
			assert(ap.asdu_len == flen - IEC_APCI_LEN && ap.ns < 32768 && ap.nr < 32768);
			roundtrip(ap.asdu, ap.asdu_len, &p104);
			roundtrip(ap.asdu, ap.asdu_len, &p101);
		}
		iec_describe(data + off, flen, &p104, buf, sizeof(buf));
		assert(strlen(buf) < sizeof(buf));
		iec_describe(data + off, flen, &p101, buf, 40);
		off += flen;
	}
	iec_describe(data, size, &p104, buf, sizeof(buf));

	if (size < 64) {
		char *s = malloc(size + 1);
		uint32_t ioa;
		bool ign;

		memcpy(s, data, size);
		s[size] = '\0';
		for (uint8_t l = 1; l <= 3; l++)
			if (iec_parse_ioa(s, l, &ioa, &ign, err, sizeof(err)) == 0)
				assert(ioa <= (l == 1 ? 0xffu : l == 2 ? 0xffffu : 0xffffffu));
		free(s);
	}
	return 0;
}
