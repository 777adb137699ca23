/* test_iec104_codec.c: the IEC 104 codec against APDUs built by an independent encoder
 * (scapy's IEC 104 layer; iec104_vectors.h, made by gen_iec104_vectors.py): each is
 * decoded and its fields checked, then encoded again and compared octet for octet. Then
 * APCI framing errors (104 clause 5), sequence numbers, the field sizes of 101 7.1 (COT,
 * CA, IOA 1/2/3 octets), every error of iec_asdu_decode, CP56Time2a/CP24Time2a, iec_describe
 * and iec_parse_ioa.
 * `test_iec104_codec --dump FILE` writes APDUs that komd encoded, one per line (hex, then
 * the fields as JSON), for `gen_iec104_vectors.py --check FILE` to dissect with scapy. */
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "iec104_codec.h"
#include "iec104_vectors.h"

static const struct iec_params P104 = { .cot_len = 2, .ca_len = 2, .ioa_len = 3 };

/* Which member of v a type uses ('n': none), and its quality bits (101 7.2.6). */
static char
vkind(uint8_t t)
{
	switch (t) {
	case 7: case 8: case 18: case 19: case 20: case 33: case 39: case 40: case 51: case 64:
		return 'u';
	case 9: case 10: case 13: case 14: case 21: case 34: case 36: case 48: case 50: case 61: case 63:
		return 'f';
	case 70: case 100: case 101: case 102: case 103: case 105:
		return 'n';
	}
	return 'i';
}

static uint8_t
qmask(uint8_t t)
{
	switch (t) {
	case 1: case 2: case 3: case 4: case 30: case 31: return 0xf0;                /* SIQ, DIQ */
	case 15: case 16: case 37: return 0xe0;                                        /* BCR */
	case 17: case 18: case 19: case 38: case 39: case 40: return 0xf8;             /* SEP, QDP */
	case 5: case 6: case 7: case 8: case 9: case 10: case 11: case 12: case 13: case 14: case 20:
	case 32: case 33: case 34: case 35: case 36: return 0xf1;                     /* QDS */
	}
	return 0;
}

static bool
obj_eq(const struct iec_obj *a, const struct iec_obj *b, char vk)
{
	bool v = vk == 'i' ? a->v.i == b->v.i : vk == 'u' ? a->v.u == b->v.u :
	    vk == 'f' ? (a->v.f == b->v.f || (a->v.f != a->v.f && b->v.f != b->v.f)) : true;

	return v && a->ioa == b->ioa && a->q == b->q && a->transient == b->transient && a->seq == b->seq &&
	    a->select == b->select && a->qu == b->qu && a->qualifier == b->qualifier &&
	    a->elapsed_ms == b->elapsed_ms && a->has_time == b->has_time && a->time_ms == b->time_ms &&
	    a->time_invalid == b->time_invalid;
}

static void
print_obj(const char *who, const struct iec_obj *o)
{
	fprintf(stderr, "  %s: ioa=%" PRIu32 " i=%" PRId64 " u=%08" PRIx32 " f=%a q=%02x T=%d seq=%u S/E=%d qu=%u "
	    "qual=%u el=%u t=%d %" PRId64 " iv=%d\n", who, o->ioa, o->v.i, o->v.u, o->v.f, o->q, o->transient,
	    o->seq, o->select, o->qu, o->qualifier, o->elapsed_ms, o->has_time, o->time_ms, o->time_invalid);
}

/* ---- the scapy vectors, both ways ---- */

static struct iec_asdu A, B;    /* 127 objects each: not on the stack */

static void
test_vectors(void)
{
	uint8_t out[IEC_MAX_APDU], asdu[IEC_MAX_ASDU];
	char err[200];
	int ntypes = 0;
	bool seen[256] = { false };

	setenv("TZ", IEC_VEC_TZ, 1);
	tzset();
	for (size_t k = 0; k < sizeof(iec_vecs) / sizeof(iec_vecs[0]); k++) {
		const struct iec_vec *v = &iec_vecs[k];
		struct iec_params prm = P104;
		struct iec_apci ap;
		size_t flen = 0, n;
		int before = check_failures;

		prm.local_time = v->local_time;
		CHECK_INT(iec_apci_parse(v->bytes, v->len, &ap, &flen, err, sizeof(err)), 1);
		CHECK_INT(flen, v->len);
		/* every shorter prefix asks for more */
		for (size_t l = 0; l < v->len; l++)
			CHECK_INT(iec_apci_parse(v->bytes, l, &ap, &flen, err, sizeof(err)), 0);
		iec_apci_parse(v->bytes, v->len, &ap, &flen, err, sizeof(err));
		if (v->format == 'U') {
			CHECK_INT(ap.format, IEC_U);
			CHECK_INT(ap.u, v->u);
			CHECK_INT(iec_encode_u(out, v->u), v->len);
			CHECK(memcmp(out, v->bytes, v->len) == 0);
		} else if (v->format == 'S') {
			CHECK_INT(ap.format, IEC_S);
			CHECK_INT(ap.nr, v->nr);
			CHECK_INT(iec_encode_s(out, v->nr), v->len);
			CHECK(memcmp(out, v->bytes, v->len) == 0);
		} else {
			CHECK_INT(ap.format, IEC_I);
			CHECK_INT(ap.ns, v->ns);
			CHECK_INT(ap.nr, v->nr);
			CHECK_INT(ap.asdu_len, v->len - IEC_APCI_LEN);
			if (iec_asdu_decode(ap.asdu, ap.asdu_len, &prm, IEC_VEC_NOW_MS, &A, err, sizeof(err)) != 0) {
				CHECK(!"decode");
				fprintf(stderr, "  %s: %s\n", v->name, err);
				continue;
			}
			CHECK_INT(A.type, v->type);
			CHECK_INT(A.sq, v->sq);
			CHECK_INT(A.cot, v->cot);
			CHECK_INT(A.pn, v->pn);
			CHECK_INT(A.test, v->test);
			CHECK_INT(A.oa, v->oa);
			CHECK_INT(A.ca, v->ca);
			CHECK_INT(A.nobj, v->nobj);
			CHECK_INT(vkind(A.type), v->vkind);
			for (int i = 0; i < A.nobj && i < v->nobj; i++) {
				struct iec_obj want = v->obj[i];

				if (iec_elem_size(A.type) > 0 && !obj_eq(&A.obj[i], &want, v->vkind)) {
					CHECK(!"object fields");
					print_obj("komd ", &A.obj[i]);
					print_obj("scapy", &want);
				}
			}
			/* and back: the same octets */
			n = iec_asdu_encode(&A, &prm, asdu, sizeof(asdu));
			CHECK_INT(n, ap.asdu_len);
			CHECK(n == ap.asdu_len && memcmp(asdu, ap.asdu, n) == 0);
			CHECK_INT(iec_encode_i(out, v->ns, v->nr, asdu, n), v->len);
			CHECK(memcmp(out, v->bytes, v->len) == 0);
			if (!seen[A.type]) {
				seen[A.type] = true;
				ntypes++;
			}
		}
		if (check_failures != before)
			fprintf(stderr, "  ^ vector %s\n", v->name);
	}
	/* the 53 types of the header's enum, every one from scapy */
	CHECK_INT(ntypes, 53);
	setenv("TZ", "UTC", 1);
	tzset();
}

/* ---- APCI (104 clause 5) ---- */

static void
test_apci(void)
{
	static const struct {
		const char *what;
		uint8_t b[8];
		size_t len;
		int want;
	} v[] = {
		{ "start octet", { 0x69, 4, 7, 0, 0, 0 }, 6, -1 },
		{ "start octet alone", { 0x00 }, 1, -1 },
		{ "length 3", { 0x68, 3, 7, 0, 0 }, 5, -1 },
		{ "length 0", { 0x68, 0 }, 2, -1 },
		{ "length 254", { 0x68, 254 }, 2, -1 },
		{ "length 255", { 0x68, 255 }, 2, -1 },
		{ "S with octet 2", { 0x68, 4, 0x01, 0x01, 0, 0 }, 6, -1 },
		{ "S with octet 1 bits", { 0x68, 4, 0x05, 0, 0, 0 }, 6, -1 },
		{ "S with octet 3 bit 1", { 0x68, 4, 0x01, 0, 0x01, 0 }, 6, -1 },
		{ "S with length 5", { 0x68, 5, 0x01, 0, 0, 0, 0 }, 7, -1 },
		{ "U with two functions", { 0x68, 4, 0x0F, 0, 0, 0 }, 6, -1 },
		{ "U STARTDT act+TESTFR con", { 0x68, 4, 0x87, 0, 0, 0 }, 6, -1 },
		{ "U with no function", { 0x68, 4, 0x03, 0, 0, 0 }, 6, -1 },
		{ "U with octet 3", { 0x68, 4, 0x07, 0, 1, 0 }, 6, -1 },
		{ "U with octet 2", { 0x68, 4, 0x43, 1, 0, 0 }, 6, -1 },
		{ "U with length 5", { 0x68, 5, 0x07, 0, 0, 0, 0 }, 7, -1 },
		{ "I without ASDU", { 0x68, 4, 0x00, 0, 0, 0 }, 6, -1 },
		{ "I with octet 3 bit 1", { 0x68, 5, 0x00, 0, 0x01, 0, 0x64 }, 7, -1 },
		{ "truncated header", { 0x68 }, 1, 0 },
		{ "truncated control", { 0x68, 4, 0x07, 0 }, 4, 0 },
		{ "truncated I", { 0x68, 14, 0x00, 0, 0, 0, 0x64 }, 7, 0 },
		{ "empty", { 0 }, 0, 0 },
		{ "TESTFR con", { 0x68, 4, 0x83, 0, 0, 0 }, 6, 1 },
		{ "two APDUs in the buffer", { 0x68, 4, 0x0B, 0, 0, 0, 0x68, 4 }, 8, 1 },
	};
	struct iec_apci a;
	size_t flen;
	char err[160];
	uint8_t out[IEC_MAX_APDU], asdu[IEC_MAX_ASDU + 1];

	for (size_t k = 0; k < sizeof(v) / sizeof(v[0]); k++) {
		int r;

		err[0] = '\0';
		r = iec_apci_parse(v[k].b, v[k].len, &a, &flen, err, sizeof(err));
		CHECK_INT(r, v[k].want);
		if (r != v[k].want)
			fprintf(stderr, "  ^ %s\n", v[k].what);
		if (v[k].want == -1)
			CHECK(err[0] != '\0');
	}
	CHECK_INT(iec_apci_parse(v[23].b, 8, &a, &flen, NULL, 0), 1);
	CHECK_INT(flen, 6);
	CHECK_INT(a.u, IEC_U_STARTDT_CON);

	/* encoders: bad U, ASDU sizes 0 and 250, the biggest APDU */
	CHECK_INT(iec_encode_u(out, 0x03), 0);
	CHECK_INT(iec_encode_u(out, 0x0F), 0);
	memset(asdu, 0x55, sizeof(asdu));
	CHECK_INT(iec_encode_i(out, 0, 0, asdu, 0), 0);
	CHECK_INT(iec_encode_i(out, 0, 0, asdu, IEC_MAX_ASDU + 1), 0);
	CHECK_INT(iec_encode_i(out, 1, 2, asdu, IEC_MAX_ASDU), IEC_MAX_APDU);
	CHECK_INT(out[1], 253);
	CHECK_INT(iec_apci_parse(out, IEC_MAX_APDU, &a, &flen, err, sizeof(err)), 1);
	CHECK_INT(flen, 255);
	CHECK_INT(a.asdu_len, IEC_MAX_ASDU);
	/* 15-bit numbers: 32768 wraps to 0 */
	iec_encode_i(out, 32768 + 5, 65535, asdu, 1);
	iec_apci_parse(out, 7, &a, &flen, NULL, 0);
	CHECK_INT(a.ns, 5);
	CHECK_INT(a.nr, 32767);
	iec_encode_s(out, 32768);
	CHECK_INT(out[4], 0);
	CHECK_INT(out[5], 0);
}

static void
test_seq(void)
{
	CHECK_INT(iec_seq_add(32767, 1), 0);
	CHECK_INT(iec_seq_add(32760, 10), 2);
	CHECK_INT(iec_seq_add(0, 0), 0);
	CHECK_INT(iec_seq_add(5, 32767), 4);
	CHECK_INT(iec_seq_diff(2, 32760), 10);
	CHECK_INT(iec_seq_diff(0, 32767), 1);
	CHECK_INT(iec_seq_diff(7, 7), 0);
	CHECK_INT(iec_seq_diff(32767, 0), 32767);
	CHECK_INT(iec_seq_diff(100, 101), 32767);
}

/* ---- field sizes (101 7.1, 7.2.3 .. 7.2.5) ---- */

static void
test_sizes(void)
{
	/* M_ME_NB_1, SQ=0, two objects, cause 3 with P/N and T, originator 9, CA 0x0102 */
	struct iec_asdu a;
	uint8_t out[IEC_MAX_ASDU];
	char err[160];

	memset(&a, 0, sizeof(a));
	a.type = M_ME_NB_1;
	a.cot = COT_SPONT;
	a.pn = a.test = true;
	a.oa = 9;
	a.ca = 0x0102;
	a.nobj = 2;
	a.obj[0].ioa = 0x030201;
	a.obj[0].v.i = -2;
	a.obj[0].q = IEC_Q_IV | IEC_Q_OV;
	a.obj[1].ioa = 0x0a;
	a.obj[1].v.i = 300;
	for (int cot = 1; cot <= 2; cot++)
		for (int ca = 1; ca <= 2; ca++)
			for (int ioa = 1; ioa <= 3; ioa++) {
				struct iec_params prm = { .cot_len = (uint8_t)cot, .ca_len = (uint8_t)ca, .ioa_len = (uint8_t)ioa };
				uint8_t want[64];
				size_t w = 0, n;

				a.ca = ca == 1 ? 0x02 : 0x0102;
				a.obj[0].ioa = ioa == 1 ? 0x01 : ioa == 2 ? 0x0201 : 0x030201;
				want[w++] = M_ME_NB_1;
				want[w++] = 2;
				want[w++] = 0xC3;
				if (cot == 2)
					want[w++] = 9;
				want[w++] = 0x02;
				if (ca == 2)
					want[w++] = 0x01;
				for (int i = 0; i < ioa; i++)
					want[w++] = (uint8_t)(i + 1);
				want[w++] = 0xFE, want[w++] = 0xFF, want[w++] = 0x81;
				want[w++] = 0x0a;
				for (int i = 1; i < ioa; i++)
					want[w++] = 0;
				want[w++] = 0x2C, want[w++] = 0x01, want[w++] = 0x00;
				n = iec_asdu_encode(&a, &prm, out, sizeof(out));
				CHECK_INT(n, w);
				CHECK(n == w && memcmp(out, want, w) == 0);
				CHECK_INT(iec_asdu_decode(want, w, &prm, 0, &B, err, sizeof(err)), 0);
				CHECK_INT(B.oa, cot == 2 ? 9 : 0);
				CHECK_INT(B.ca, a.ca);
				CHECK_INT(B.obj[0].ioa, a.obj[0].ioa);
				CHECK_INT(B.obj[0].v.i, -2);
				CHECK_INT(B.obj[0].q, 0x81);
				CHECK_INT(B.obj[1].ioa, 10);
				CHECK_INT(B.obj[1].v.i, 300);
				CHECK(B.pn && B.test);
				/* the largest address that fits, and one more */
				a.obj[1].ioa = ioa == 1 ? 0xff : ioa == 2 ? 0xffff : 0xffffff;
				CHECK(iec_asdu_encode(&a, &prm, out, sizeof(out)) > 0);
				a.obj[1].ioa++;
				CHECK_INT(iec_asdu_encode(&a, &prm, out, sizeof(out)), 0);
				a.obj[1].ioa = 0x0a;
				/* CA 256 does not fit one octet */
				a.ca = 0x100;
				CHECK_INT(iec_asdu_encode(&a, &prm, out, sizeof(out)) == 0, ca == 1);
				/* how many fit: the header, then the objects */
				CHECK_INT(iec_max_objs(M_ME_NB_1, false, &prm), (int)((249 - 2 - cot - ca) / (ioa + 3)));
				CHECK_INT(iec_max_objs(M_ME_NB_1, true, &prm), (int)((249 - 2 - cot - ca - ioa) / 3));
			}
}

static void
test_encode_limits(void)
{
	struct iec_params prm = P104;
	uint8_t out[IEC_MAX_ASDU];
	int m;

	memset(&A, 0, sizeof(A));
	A.type = M_SP_NA_1;
	A.cot = COT_SPONT;
	A.nobj = 1;
	CHECK_INT(iec_asdu_encode(&A, &prm, out, sizeof(out)), 10);
	CHECK_INT(iec_asdu_encode(&A, &prm, out, 9), 0);         /* cap */
	A.type = 77;
	CHECK_INT(iec_asdu_encode(&A, &prm, out, sizeof(out)), 0);
	A.type = M_SP_NA_1;
	A.nobj = 0;
	CHECK_INT(iec_asdu_encode(&A, &prm, out, sizeof(out)), 0);
	A.nobj = 128;
	CHECK_INT(iec_asdu_encode(&A, &prm, out, sizeof(out)), 0);
	A.nobj = 1;
	A.cot = 64;
	CHECK_INT(iec_asdu_encode(&A, &prm, out, sizeof(out)), 0);
	A.cot = 3;
	prm.ioa_len = 4;
	CHECK_INT(iec_asdu_encode(&A, &prm, out, sizeof(out)), 0);
	prm = P104;
	/* as many as iec_max_objs says fit; one more does not */
	A.type = M_ME_TF_1;
	m = iec_max_objs(M_ME_TF_1, false, &prm);
	CHECK_INT(m, (249 - 6) / 15);
	A.nobj = m;
	for (int k = 0; k < m; k++) {
		A.obj[k].ioa = (uint32_t)k;
		A.obj[k].time_ms = 1700000000000LL;
	}
	CHECK(iec_asdu_encode(&A, &prm, out, sizeof(out)) > 0);
	A.nobj = m + 1;
	CHECK_INT(iec_asdu_encode(&A, &prm, out, sizeof(out)), 0);
	CHECK_INT(iec_max_objs(M_SP_NA_1, true, &prm), 127);
	CHECK_INT(iec_max_objs(C_RD_NA_1, true, &prm), 127);
	CHECK_INT(iec_max_objs(C_RD_NA_1, false, &prm), 81);
	CHECK_INT(iec_max_objs(77, false, &prm), 0);
	/* SQ=1 addresses must not run past the IOA size */
	A.type = M_SP_NA_1;
	A.sq = true;
	A.nobj = 3;
	A.obj[0].ioa = 0xfffffe;
	CHECK_INT(iec_asdu_encode(&A, &prm, out, sizeof(out)), 0);
	A.obj[0].ioa = 0xfffffd;
	CHECK_INT(iec_asdu_encode(&A, &prm, out, sizeof(out)), 12);
	A.sq = false;
	/* out-of-range values are clamped, not wrapped: NVA, SVA, VTI */
	A.type = M_ME_NA_1;
	A.nobj = 1;
	A.obj[0].ioa = 1;
	A.obj[0].v.f = 2.0;
	iec_asdu_encode(&A, &prm, out, sizeof(out));
	CHECK_INT(out[9], 0xff);
	CHECK_INT(out[10], 0x7f);
	A.obj[0].v.f = -7.0;
	iec_asdu_encode(&A, &prm, out, sizeof(out));
	CHECK_INT(out[9], 0x00);
	CHECK_INT(out[10], 0x80);
	A.type = M_ME_NB_1;
	A.obj[0].v.i = 40000;
	iec_asdu_encode(&A, &prm, out, sizeof(out));
	CHECK_INT(out[10], 0x7f);
	A.type = M_ST_NA_1;
	A.obj[0].v.i = -100;
	iec_asdu_encode(&A, &prm, out, sizeof(out));
	CHECK_INT(out[9], 0x40);
	/* names and sizes */
	CHECK_STR(iec_type_name(M_ME_NC_1), "M_ME_NC_1");
	CHECK_STR(iec_type_name(C_TS_TA_1), "C_TS_TA_1");
	CHECK(iec_type_name(0) == NULL);
	CHECK(iec_type_name(104) == NULL);
	CHECK_INT(iec_elem_size(M_SP_NA_1), 1);
	CHECK_INT(iec_elem_size(M_EP_TB_1), 7);
	CHECK_INT(iec_elem_size(M_EP_TF_1), 11);
	CHECK_INT(iec_elem_size(C_CS_NA_1), 7);
	CHECK_INT(iec_elem_size(C_RD_NA_1), 0);
	CHECK_INT(iec_elem_size(22), 0);
}

/* ---- every error of iec_asdu_decode ---- */

static void
test_decode_errors(void)
{
	static const struct {
		const char *what, *errpart;
		uint8_t b[24];
		size_t len;
	} v[] = {
		{ "short header", "shorter", { 1, 1, 3, 0, 1 }, 5 },
		{ "unknown type", "unknown type 77", { 77, 1, 3, 0, 1, 0, 1, 0, 0, 0 }, 10 },
		{ "type 0", "unknown type 0", { 0, 1, 3, 0, 1, 0, 1, 0, 0, 0 }, 10 },
		{ "VSQ 0", "VSQ number 0", { 1, 0, 3, 0, 1, 0 }, 6 },
		{ "VSQ 0 with SQ", "VSQ number 0", { 1, 0x80, 3, 0, 1, 0 }, 6 },
		{ "too short", "expected 10", { 1, 1, 3, 0, 1, 0, 1, 0, 0 }, 9 },
		{ "too long", "expected 10", { 1, 1, 3, 0, 1, 0, 1, 0, 0, 0, 0 }, 11 },
		{ "SQ too short", "expected 11", { 1, 0x82, 3, 0, 1, 0, 1, 0, 0, 0 }, 10 },
		{ "number above objects", "expected", { 13, 2, 3, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0 }, 13 },
		{ "SQ beyond the IOA size", "beyond", { 1, 0x82, 3, 0, 1, 0, 0xff, 0xff, 0xff, 0, 0 }, 11 },
		{ "CP24 ms 60000", "CP24Time2a", { 2, 1, 3, 0, 1, 0, 1, 0, 0, 1, 0x60, 0xea, 0 }, 13 },
		{ "CP24 minute 60", "CP24Time2a", { 2, 1, 3, 0, 1, 0, 1, 0, 0, 1, 0, 0, 60 }, 13 },
		{ "CP56 minute 60", "CP56Time2a", { 30, 1, 3, 0, 1, 0, 1, 0, 0, 1, 0, 0, 60, 0, 1, 1, 24 }, 17 },
		{ "CP56 hour 24", "CP56Time2a", { 30, 1, 3, 0, 1, 0, 1, 0, 0, 1, 0, 0, 0, 24, 1, 1, 24 }, 17 },
		{ "CP56 day 0", "CP56Time2a", { 30, 1, 3, 0, 1, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1, 24 }, 17 },
		{ "CP56 month 0", "CP56Time2a", { 30, 1, 3, 0, 1, 0, 1, 0, 0, 1, 0, 0, 0, 0, 1, 0, 24 }, 17 },
		{ "CP56 month 13", "CP56Time2a", { 30, 1, 3, 0, 1, 0, 1, 0, 0, 1, 0, 0, 0, 0, 1, 13, 24 }, 17 },
		{ "CP56 year 100", "CP56Time2a", { 30, 1, 3, 0, 1, 0, 1, 0, 0, 1, 0, 0, 0, 0, 1, 1, 100 }, 17 },
		{ "CP56 31 April", "CP56Time2a", { 30, 1, 3, 0, 1, 0, 1, 0, 0, 1, 0, 0, 0, 0, 31, 4, 24 }, 17 },
		{ "CP56 29 Feb 2023", "CP56Time2a", { 30, 1, 3, 0, 1, 0, 1, 0, 0, 1, 0, 0, 0, 0, 29, 2, 23 }, 17 },
		{ "CP56 ms 60000", "CP56Time2a", { 103, 1, 6, 0, 1, 0, 0, 0, 0, 0x60, 0xea, 0, 0, 1, 1, 24 }, 16 },
	};
	struct iec_params prm = P104;
	char err[200];

	for (size_t k = 0; k < sizeof(v) / sizeof(v[0]); k++) {
		err[0] = '\0';
		CHECK_INT(iec_asdu_decode(v[k].b, v[k].len, &prm, 0, &A, err, sizeof(err)), -1);
		CHECK(strstr(err, v[k].errpart) != NULL);
		if (strstr(err, v[k].errpart) == NULL)
			fprintf(stderr, "  ^ %s: \"%s\"\n", v[k].what, err);
		/* and every truncation of it fails too (but "too long"), without reading past len (ASan) */
		for (size_t l = 0; l < v[k].len; l++) {
			uint8_t *cp = malloc(l ? l : 1);

			memcpy(cp, v[k].b, l);
			CHECK_INT(iec_asdu_decode(cp, l, &prm, 0, &A, NULL, 0), l == 10 && k == 6 ? 0 : -1);
			free(cp);
		}
	}
	CHECK_INT(iec_asdu_decode(v[1].b, 10, &prm, 0, &A, err, 8), -1);      /* short err buffer */
	CHECK_INT(strlen(err), 7);
	/* bad field sizes */
	for (int k = 0; k < 4; k++) {
		struct iec_params bad = P104;
		uint8_t ok[] = { 1, 1, 3, 0, 1, 0, 1, 0, 0, 0 };

		if (k == 0) bad.cot_len = 3;
		if (k == 1) bad.ca_len = 0;
		if (k == 2) bad.ioa_len = 0;
		if (k == 3) bad.ioa_len = 4;
		CHECK_INT(iec_asdu_decode(ok, sizeof(ok), &bad, 0, &A, err, sizeof(err)), -1);
		CHECK(strstr(err, "field sizes") != NULL);
		CHECK_INT(iec_asdu_decode(ok, sizeof(ok), &prm, 0, &A, err, sizeof(err)), 0);
		CHECK_INT(iec_max_objs(M_SP_NA_1, false, &bad), 0);
	}
	CHECK_INT(iec_asdu_decode(v[0].b, 5, NULL, 0, &A, err, sizeof(err)), -1);
}

/* ---- time tags ---- */

static int64_t
utc_ms(int y, int mo, int d, int h, int mi, int s, int ms)
{
	struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi, .tm_sec = s };

	return (int64_t)timegm(&tm) * 1000 + ms;
}

static void
test_cp56(void)
{
	uint8_t b[7];
	int64_t ms;
	bool iv;
	/* 2024-02-29 23:59:59.999 UTC, a Thursday */
	static const uint8_t leap[7] = { 0x5f, 0xea, 59, 23, 29 | 4 << 5, 2, 24 };
	static const int64_t samples[] = {
		946684800000LL,                 /* 2000-01-01 00:00:00.000 */
		4102400000000LL,                /* 2099-12-31 00:00:00.000 (still 2099 in Berlin and India) */
		1709251199999LL, 1719835200005LL, 1729990800000LL, 1729994400000LL, 1711846800000LL,
	};

	iec_cp56_encode(b, utc_ms(2024, 2, 29, 23, 59, 59, 999), false, false);
	CHECK(memcmp(b, leap, 7) == 0);
	CHECK_INT(iec_cp56_decode(leap, false, &ms, &iv), 0);
	CHECK_INT(ms, utc_ms(2024, 2, 29, 23, 59, 59, 999));
	CHECK(!iv);
	iec_cp56_encode(b, ms, false, true);
	CHECK_INT(b[2], 59 | 0x80);
	CHECK_INT(iec_cp56_decode(b, false, &ms, &iv), 0);
	CHECK(iv);
	/* before 2000 and after 2099: clamped and marked invalid */
	iec_cp56_encode(b, 0, false, false);
	CHECK_INT(iec_cp56_decode(b, false, &ms, &iv), 0);
	CHECK(iv);
	CHECK_INT(ms, 946684800000LL);
	iec_cp56_encode(b, 4102444800000LL, false, false);
	CHECK_INT(iec_cp56_decode(b, false, &ms, &iv), 0);
	CHECK(iv);
	CHECK_INT(ms, 4102444799999LL);
	/* round trips in UTC, and in two local zones (one with a half-hour offset) */
	for (int z = 0; z < 3; z++) {
		static const char *const zones[] = { "UTC", "Europe/Berlin", "Asia/Kolkata" };

		setenv("TZ", zones[z], 1);
		tzset();
		for (size_t k = 0; k < sizeof(samples) / sizeof(samples[0]); k++)
			for (int local = 0; local <= 1; local++) {
				iec_cp56_encode(b, samples[k], local, false);
				CHECK_INT(iec_cp56_decode(b, local, &ms, &iv), 0);
				CHECK_INT(ms, samples[k]);
				CHECK(!iv);
			}
		/* every 17 minutes through 2024, both ways */
		for (int64_t t = 1704067200000LL; t < 1735689600000LL; t += 17 * 60000 + 123) {
			iec_cp56_encode(b, t, z > 0, false);
			if (iec_cp56_decode(b, z > 0, &ms, &iv) != 0 || ms != t) {
				CHECK(!"CP56 round trip");
				fprintf(stderr, "  %s %" PRId64 " -> %" PRId64 "\n", zones[z], t, ms);
				break;
			}
		}
	}
	/* Berlin: 12:00 local in July is 10:00 UTC, SU set; 08:30 in January is 07:30 UTC */
	setenv("TZ", "Europe/Berlin", 1);
	tzset();
	iec_cp56_encode(b, utc_ms(2024, 7, 1, 10, 0, 0, 0), true, false);
	CHECK_INT(b[3], 12 | 0x80);
	iec_cp56_encode(b, utc_ms(2024, 1, 15, 7, 30, 0, 0), true, false);
	CHECK_INT(b[3], 8);
	/* 2024-10-27 02:30 happens twice: SU picks the first (00:30 UTC), no SU the second */
	{
		uint8_t su[7] = { 0, 0, 30, 2 | 0x80, 27 | 7 << 5, 10, 24 }, nosu[7] = { 0, 0, 30, 2, 27 | 7 << 5, 10, 24 };

		CHECK_INT(iec_cp56_decode(su, true, &ms, &iv), 0);
		CHECK_INT(ms, utc_ms(2024, 10, 27, 0, 30, 0, 0));
		CHECK_INT(iec_cp56_decode(nosu, true, &ms, &iv), 0);
		CHECK_INT(ms, utc_ms(2024, 10, 27, 1, 30, 0, 0));
	}
	setenv("TZ", "UTC", 1);
	tzset();
}

/* CP24Time2a: the hour comes from now; minutes more than 5 ahead of now belong to the hour before */
static void
test_cp24(void)
{
	struct iec_params prm = P104;
	uint8_t asdu[] = { M_SP_TA_1, 1, 3, 0, 1, 0, 1, 0, 0, 1, 0x10, 0x27, 34 };  /* mm:ss 34:10.000 */
	int64_t now = utc_ms(2024, 3, 15, 10, 30, 0, 0);
	char err[160];

	CHECK_INT(iec_asdu_decode(asdu, sizeof(asdu), &prm, now, &A, err, sizeof(err)), 0);
	CHECK_INT(A.obj[0].time_ms, utc_ms(2024, 3, 15, 10, 34, 10, 0));       /* 4:10 ahead: still this hour */
	asdu[11] = 0x2f;        /* 34:12.048 */
	asdu[12] = 35;          /* 35:12.048: 5:12 ahead, the hour before */
	CHECK_INT(iec_asdu_decode(asdu, sizeof(asdu), &prm, now, &A, err, sizeof(err)), 0);
	CHECK_INT(A.obj[0].time_ms, utc_ms(2024, 3, 15, 9, 35, 12, 48));
	asdu[12] = 29 | 0x80;
	CHECK_INT(iec_asdu_decode(asdu, sizeof(asdu), &prm, now, &A, err, sizeof(err)), 0);
	CHECK_INT(A.obj[0].time_ms, utc_ms(2024, 3, 15, 10, 29, 12, 48));
	CHECK(A.obj[0].time_invalid && A.obj[0].has_time);
	/* just after midnight, 58 minutes is yesterday */
	asdu[12] = 58;
	CHECK_INT(iec_asdu_decode(asdu, sizeof(asdu), &prm, utc_ms(2024, 1, 1, 0, 1, 0, 0), &A, err, sizeof(err)), 0);
	CHECK_INT(A.obj[0].time_ms, utc_ms(2023, 12, 31, 23, 58, 12, 48));
	/* in India local time the hour starts at :30 UTC */
	setenv("TZ", "Asia/Kolkata", 1);
	tzset();
	prm.local_time = true;
	asdu[12] = 0;           /* 16:00:12.048 IST */
	CHECK_INT(iec_asdu_decode(asdu, sizeof(asdu), &prm, now, &A, err, sizeof(err)), 0);
	CHECK_INT(A.obj[0].time_ms, utc_ms(2024, 3, 15, 10, 30, 12, 48));
	asdu[12] = 59;          /* 16:59: the hour before, 15:59 IST */
	CHECK_INT(iec_asdu_decode(asdu, sizeof(asdu), &prm, now, &A, err, sizeof(err)), 0);
	CHECK_INT(A.obj[0].time_ms, utc_ms(2024, 3, 15, 10, 29, 12, 48));
	setenv("TZ", "UTC", 1);
	tzset();
}

/* ---- traces ---- */

static void
test_describe(void)
{
	struct iec_params prm = P104;
	char buf[512], small[16];
	/* I(3,7) M_ME_NC_1 spont CA 1, IOA 1001 = 21.5 */
	static const uint8_t nc[] = { 0x68, 0x12, 0x06, 0x00, 0x0e, 0x00, 13, 1, 3, 0, 1, 0, 0xe9, 0x03, 0,
		0, 0, 0xac, 0x41, 0 };
	static const uint8_t u[] = { 0x68, 4, 0x43, 0, 0, 0 }, s[] = { 0x68, 4, 1, 0, 0x0a, 0 };
	static const uint8_t bad[] = { 0x68, 4, 0x0f, 0, 0, 0 }, badasdu[] = { 0x68, 14, 0, 0, 0, 0, 77, 1, 3, 0, 1, 0, 1, 0, 0, 0 };

	CHECK_STR(iec_describe(nc, sizeof(nc), &prm, buf, sizeof(buf)), "I(ns=3,nr=7) M_ME_NC_1 spont ca=1 ioa=1001 21.5 q=00");
	CHECK_STR(iec_describe(u, sizeof(u), &prm, buf, sizeof(buf)), "U(TESTFR act)");
	CHECK_STR(iec_describe(s, sizeof(s), &prm, buf, sizeof(buf)), "S(nr=5)");
	CHECK(strncmp(iec_describe(bad, sizeof(bad), &prm, buf, sizeof(buf)), "bad APDU: ", 10) == 0);
	CHECK(strstr(iec_describe(badasdu, sizeof(badasdu), &prm, buf, sizeof(buf)), "unknown type 77") != NULL);
	CHECK(strncmp(iec_describe(nc, 10, &prm, buf, sizeof(buf)), "truncated", 9) == 0);
	iec_describe(nc, sizeof(nc), &prm, small, sizeof(small));
	CHECK_INT(strlen(small), 15);
	/* every vector describes without trouble, into any size */
	for (size_t k = 0; k < sizeof(iec_vecs) / sizeof(iec_vecs[0]); k++) {
		iec_describe(iec_vecs[k].bytes, iec_vecs[k].len, &prm, buf, sizeof(buf));
		CHECK(strlen(buf) > 0 && strlen(buf) < sizeof(buf));
		iec_describe(iec_vecs[k].bytes, iec_vecs[k].len, &prm, buf, 1);
		CHECK_INT(buf[0], 0);
	}
}

/* ---- IOAs in tag addresses ---- */

static void
test_parse_ioa(void)
{
	static const struct {
		const char *s;
		uint8_t len;
		int ret;
		uint32_t ioa;
		bool ignore;
	} v[] = {
		{ "1001", 3, 0, 1001, false },
		{ "0", 3, 0, 0, false },
		{ "16777215", 3, 0, 16777215, false },
		{ "16777216", 3, -1, 0, false },
		{ "65535", 2, 0, 65535, false },
		{ "65536", 2, -1, 0, false },
		{ "255", 1, 0, 255, false },
		{ "256", 1, -1, 0, false },
		{ "#3E9", 3, 0, 1001, false },
		{ "#3e9", 3, 0, 1001, false },
		{ "#FFFFFF", 3, 0, 0xffffff, false },
		{ "#1000000", 3, -1, 0, false },
		{ "#FFFF", 2, 0, 0xffff, false },
		{ "#100", 1, -1, 0, false },
		{ "#", 3, -1, 0, false },
		{ "#xyz", 3, -1, 0, false },
		{ "0,3,233", 3, 0, 1001, false },
		{ "0, 3, 233", 3, 0, 1001, false },
		{ "255,255,255", 3, 0, 0xffffff, false },
		{ "3,233", 2, 0, 1001, false },
		{ "3,233", 3, -1, 0, false },
		{ "0,3,233", 2, -1, 0, false },
		{ "1,2", 1, -1, 0, false },
		{ "0,256,1", 3, -1, 0, false },
		{ "0,,1", 3, -1, 0, false },
		{ "0,3,", 3, -1, 0, false },
		{ ",0,3", 3, -1, 0, false },
		{ "%IGNORE1001", 3, 0, 1001, true },
		{ "%IGNORE 0,3,233", 3, 0, 1001, true },
		{ "%ignore #10", 3, 0, 16, true },
		{ "%IGNORE", 3, -1, 0, true },
		{ "", 3, -1, 0, false },
		{ " 42 ", 3, 0, 42, false },
		{ "-1", 3, -1, 0, false },
		{ "+1", 3, -1, 0, false },
		{ "12a", 3, -1, 0, false },
		{ "99999999999999999999", 3, -1, 0, false },
		{ "1001", 0, -1, 0, false },
		{ "1001", 4, -1, 0, false },
	};
	char err[160];

	for (size_t k = 0; k < sizeof(v) / sizeof(v[0]); k++) {
		uint32_t ioa = 12345;
		bool ign = !v[k].ignore;
		int r;

		err[0] = '\0';
		r = iec_parse_ioa(v[k].s, v[k].len, &ioa, &ign, err, sizeof(err));
		CHECK_INT(r, v[k].ret);
		if (r != v[k].ret)
			fprintf(stderr, "  ^ \"%s\" (%u): %s\n", v[k].s, v[k].len, err);
		if (r == 0) {
			CHECK_INT(ioa, v[k].ioa);
			CHECK_INT(ign, v[k].ignore);
		} else
			CHECK(err[0] != '\0');
	}
}

/* ---- --dump: komd-encoded APDUs for scapy to dissect ---- */

/* Values for object k of type t: every field the type has, in range, varied. */
static void
fill_obj(uint8_t t, int k, struct iec_obj *o)
{
	char vk = vkind(t);

	memset(o, 0, sizeof(*o));
	o->ioa = 100000u + (uint32_t)k * 3;
	if (vk == 'f')
		o->v.f = (t == 13 || t == 14 || t == 36 || t == 50 || t == 63) ? -1500.375 * (k + 1) + 0.5 :
		    ((k * 9001) % 65536 - 32768) / 32768.0;
	else if (vk == 'u')
		o->v.u = (t == 18 || t == 39) ? (uint32_t)(k * 11 + 1) & 0x3f : (t == 19 || t == 40) ?
		    (uint32_t)(k * 5 + 3) & 0x0f : 0x01020304u * (uint32_t)(k + 1) ^ 0x80000000u;
	else if (vk == 'i') {
		switch (t) {
		case 1: case 2: case 30: case 45: case 58: o->v.i = (k + 1) % 2; break;
		case 3: case 4: case 31: case 17: case 38: case 46: case 59: case 47: case 60: o->v.i = (k + 1) % 4; break;
		case 5: case 6: case 32: o->v.i = (k * 37) % 128 - 64; break;
		case 11: case 12: case 35: case 49: case 62: o->v.i = -32768 + k * 12345; break;
		case 15: case 16: case 37: o->v.i = -2147483647 - 1 + (int64_t)k * 987654321; break;
		case 107: o->v.i = 0xABCD + k; break;
		}
	}
	o->q = (uint8_t)((0x91 << (k % 4) | 0x20 >> (k % 3)) & qmask(t));
	if (t == 15 || t == 16 || t == 37)
		o->seq = (uint8_t)((k * 7) % 32);
	if (vk == 'i' && t >= 45 && t <= 60) {
		o->qu = (uint8_t)((k * 5 + 1) % 32);
		o->select = k % 2;
	}
	if (t == 48 || t == 49 || t == 50 || t == 61 || t == 62 || t == 63) {
		o->qu = (uint8_t)((k * 29 + 3) % 128);
		o->select = (k + 1) % 2;
	}
	if (t == 5 || t == 6 || t == 32)
		o->transient = k % 2;
	if ((t >= 17 && t <= 19) || (t >= 38 && t <= 40))
		o->elapsed_ms = (uint16_t)(1000 * k + 7);
	o->qualifier = t == 70 ? (uint8_t)(0x80 | 2) : t == 100 ? (uint8_t)(20 + k) : t == 101 ? 0x45 : t == 105 ? 1 : 0;
	o->has_time = iec_elem_size(t) > 0 && (t == 2 || t == 4 || t == 6 || t == 8 || t == 10 || t == 12 ||
	    t == 14 || t == 16 || (t >= 17 && t <= 19) || (t >= 30 && t <= 40) || (t >= 58 && t <= 64) ||
	    t == 103 || t == 107);
	o->time_ms = 1688128496789LL + (int64_t)k * 86400123LL;  /* 2023-06-30T12:34:56.789Z onwards */
	o->time_invalid = k % 3 == 2;
}

static void
dump_apdu(FILE *f, const uint8_t *b, size_t n, const struct iec_asdu *a, const struct iec_apci *ap)
{
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%02x", b[i]);
	if (ap->format == IEC_U) {
		fprintf(f, " {\"format\": \"U\", \"u\": %u}\n", ap->u);
		return;
	}
	if (ap->format == IEC_S) {
		fprintf(f, " {\"format\": \"S\", \"nr\": %u}\n", ap->nr);
		return;
	}
	fprintf(f, " {\"format\": \"I\", \"ns\": %u, \"nr\": %u, \"type\": %u, \"sq\": %d, \"cot\": %u, \"pn\": %d, "
	    "\"test\": %d, \"oa\": %u, \"ca\": %u, \"objs\": [", ap->ns, ap->nr, a->type, a->sq, a->cot, a->pn,
	    a->test, a->oa, a->ca);
	for (int k = 0; k < a->nobj; k++) {
		const struct iec_obj *o = &a->obj[k];
		char vk = vkind(a->type);

		fprintf(f, "%s{\"ioa\": %" PRIu32, k ? ", " : "", o->ioa);
		if (vk == 'i')
			fprintf(f, ", \"i\": %" PRId64, o->v.i);
		else if (vk == 'u')
			fprintf(f, ", \"u\": %" PRIu32, o->v.u);
		else if (vk == 'f')
			fprintf(f, ", \"f\": %.17g", o->v.f);
		fprintf(f, ", \"q\": %u, \"seq\": %u, \"qu\": %u, \"qualifier\": %u, \"elapsed_ms\": %u, "
		    "\"transient\": %d, \"select\": %d, \"time_ms\": %" PRId64 ", \"time_invalid\": %d}",
		    o->q, o->seq, o->qu, o->qualifier, o->elapsed_ms, o->transient, o->select,
		    o->time_ms, o->time_invalid);
	}
	fprintf(f, "]}\n");
}

static int
dump(const char *path)
{
	static const uint8_t all[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21,
		30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 45, 46, 47, 48, 49, 50, 51, 58, 59, 60, 61, 62, 63,
		64, 70, 100, 101, 102, 103, 105, 107 };
	static const uint8_t us[] = { IEC_U_STARTDT_ACT, IEC_U_STARTDT_CON, IEC_U_STOPDT_ACT, IEC_U_STOPDT_CON,
		IEC_U_TESTFR_ACT, IEC_U_TESTFR_CON };
	FILE *f = strcmp(path, "-") == 0 ? stdout : fopen(path, "w");
	uint8_t asdu[IEC_MAX_ASDU], apdu[IEC_MAX_APDU];
	struct iec_apci ap;
	size_t n, flen;
	int lines = 0;

	if (f == NULL) {
		perror(path);
		return 1;
	}
	for (size_t i = 0; i < sizeof(all); i++)
		for (int sq = 0; sq <= 1; sq++) {
			uint8_t t = all[i];

			if (sq && t >= 45)      /* commands and system types: one object, SQ=0 */
				continue;
			memset(&A, 0, sizeof(A));
			A.type = t;
			A.sq = sq;
			A.cot = t >= 45 ? COT_ACTCON : sq ? COT_INROGEN : COT_SPONT;
			A.pn = t == 46;
			A.test = t == 60;
			A.oa = (uint8_t)t;
			A.ca = (uint16_t)(0x0100 + t);
			A.nobj = t >= 45 ? 1 : sq ? 5 : 3;
			for (int k = 0; k < A.nobj; k++)
				fill_obj(t, k, &A.obj[k]);
			if (t == 100 || t == 101 || t == 103 || t == 105 || t == 107 || t == 70)
				A.obj[0].ioa = 0;
			n = iec_asdu_encode(&A, &P104, asdu, sizeof(asdu));
			if (n == 0) {
				fprintf(stderr, "dump: type %u does not encode\n", t);
				return 1;
			}
			n = iec_encode_i(apdu, (uint16_t)(32760 + i), (uint16_t)(32767 - i), asdu, n);
			iec_apci_parse(apdu, n, &ap, &flen, NULL, 0);
			/* what komd itself reads back is what scapy must read */
			if (iec_asdu_decode(ap.asdu, ap.asdu_len, &P104, A.obj[0].time_ms, &B, NULL, 0) != 0) {
				fprintf(stderr, "dump: type %u does not decode\n", t);
				return 1;
			}
			dump_apdu(f, apdu, n, &B, &ap);
			lines++;
		}
	for (size_t i = 0; i < sizeof(us); i++) {
		n = iec_encode_u(apdu, us[i]);
		iec_apci_parse(apdu, n, &ap, &flen, NULL, 0);
		dump_apdu(f, apdu, n, NULL, &ap);
		lines++;
	}
	for (int nr = 0; nr < 32768; nr += 4681) {
		n = iec_encode_s(apdu, (uint16_t)(nr == 32767 - 4681 * 7 ? 32767 : nr));
		iec_apci_parse(apdu, n, &ap, &flen, NULL, 0);
		dump_apdu(f, apdu, n, NULL, &ap);
		lines++;
	}
	n = iec_encode_s(apdu, 32767);
	iec_apci_parse(apdu, n, &ap, &flen, NULL, 0);
	dump_apdu(f, apdu, n, NULL, &ap);
	lines++;
	if (f != stdout && fclose(f) != 0) {
		perror(path);
		return 1;
	}
	fprintf(stderr, "%s: %d APDUs\n", path, lines);
	return 0;
}

/* 101 7.2.6: what a value of each type can be, and its quality bits. */
static void
test_value_range(void)
{
	static const struct { uint8_t type; double min, max, step; } r[] = {
		{ 1, 0, 1, 1 }, { 30, 0, 1, 1 }, { 45, 0, 1, 1 },                       /* SIQ, SCO */
		{ 3, 0, 3, 1 }, { 31, 0, 3, 1 }, { 17, 0, 3, 1 },                       /* DIQ, SEP */
		{ 46, 1, 2, 1 }, { 47, 1, 2, 1 }, { 59, 1, 2, 1 },                      /* DCO, RCO: 0, 3 not permitted */
		{ 5, -64, 63, 1 }, { 18, 0, 63, 1 }, { 19, 0, 15, 1 },                  /* VTI, SPE, OCI */
		{ 7, 0, 4294967295.0, 1 }, { 20, 0, 4294967295.0, 1 }, { 51, 0, 4294967295.0, 1 },
		{ 11, -32768, 32767, 1 }, { 49, -32768, 32767, 1 },                     /* SVA */
		{ 15, -2147483648.0, 2147483647.0, 1 }, { 37, -2147483648.0, 2147483647.0, 1 }, /* BCR */
		{ 9, -1, 32767 / 32768.0, 1 / 32768.0 }, { 21, -1, 32767 / 32768.0, 1 / 32768.0 },
		{ 48, -1, 32767 / 32768.0, 1 / 32768.0 },                               /* NVA */
	};
	double min, max, step;

	for (size_t i = 0; i < sizeof(r) / sizeof(r[0]); i++) {
		CHECK(iec_value_range(r[i].type, &min, &max, &step));
		if (min != r[i].min || max != r[i].max || step != r[i].step)
			fprintf(stderr, "type %u: %g..%g step %g\n", r[i].type, min, max, step);
		CHECK(min == r[i].min && max == r[i].max && step == r[i].step);
	}
	/* R32: any real a float32 holds */
	CHECK(iec_value_range(13, &min, &max, &step) && max == 3.4028234663852886e38 && min == -max && step == 0);
	CHECK(iec_value_range(63, &min, &max, &step) && max == 3.4028234663852886e38 && step == 0);
	static const uint8_t novalue[] = { 70, 100, 101, 102, 103, 105, 107, 99, 0 };
	for (size_t i = 0; i < sizeof(novalue); i++)
		CHECK(!iec_value_range(novalue[i], &min, &max, &step));
	/* the quality bits of every monitor type, from the table above (qmask) */
	for (int t = 1; t < 128; t++)
		if (iec_type_name((uint8_t)t) != NULL && ((t >= 1 && t <= 21) || (t >= 30 && t <= 40)))
			CHECK_INT(iec_quality_mask((uint8_t)t), qmask((uint8_t)t));
	CHECK_INT(iec_quality_mask(21), 0);     /* M_ME_ND_1: none */
	CHECK_INT(iec_quality_mask(45), 0);
	CHECK_INT(iec_quality_mask(100), 0);
}

int
main(int argc, char **argv)
{
	setenv("TZ", "UTC", 1);
	tzset();
	if (argc == 3 && strcmp(argv[1], "--dump") == 0)
		return dump(argv[2]);
	test_vectors();
	test_apci();
	test_seq();
	test_sizes();
	test_encode_limits();
	test_decode_errors();
	test_cp56();
	test_cp24();
	test_describe();
	test_parse_ioa();
	test_value_range();
	return CHECK_DONE();
}
