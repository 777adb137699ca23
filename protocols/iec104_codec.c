/* iec104_codec.c: IEC 60870-5-104 frames, pure (no I/O, no allocation).
 * Implements
 *   IEC 60870-5-104 clause 5: APCI (5.1 control field, I format 5.1, S format 5.2,
 *     U format 5.3; start 0x68, length 4..253), and sequence numbers modulo 32768 (5.1);
 *   IEC 60870-5-101 clause 7.1 (ASDU structure) and 7.2 (data unit identifier: type 7.2.1,
 *     variable structure qualifier 7.2.2, cause of transmission 7.2.3, common address
 *     7.2.4, information object address 7.2.5), with the field sizes of struct iec_params;
 *   the information elements of 101 7.2.6: SIQ 7.2.6.1, DIQ 7.2.6.2, QDS 7.2.6.3,
 *     QDP 7.2.6.4, VTI 7.2.6.5, NVA 7.2.6.6, SVA 7.2.6.7, R32 (IEEE STD 754) 7.2.6.8,
 *     BCR 7.2.6.9, SEP 7.2.6.10, SPE 7.2.6.11, OCI 7.2.6.12, BSI 7.2.6.13, SCO 7.2.6.15,
 *     DCO 7.2.6.16, RCO 7.2.6.17, CP56Time2a 7.2.6.18, CP24Time2a 7.2.6.19,
 *     CP16Time2a 7.2.6.20, COI 7.2.6.21, QOI 7.2.6.22, QCC 7.2.6.23, QOC 7.2.6.26,
 *     QRP 7.2.6.27, QOS 7.2.6.39, SCD 7.2.6.40, and TSC (104 8.8);
 *   the information objects of 101 7.3 and 104 clause 8 for the types of enum iec_type.
 * All multi-octet values are little-endian (101 7.2.6, IEC 60870-5-4). Bit strings (BSI,
 * SCD) are read as 32-bit little-endian integers: bit 1 of the standard is bit 0 of v.u
 * (as lib60870 does; Wireshark and scapy show BSI octet 1 as the most significant).
 * Everything from the network is bounds-checked against len. */
#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "codec.h"
#include "iec104_codec.h"

static uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void
put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

/* ---- APCI (104 clause 5) ---- */

static bool
u_known(uint8_t u)
{
	return u == IEC_U_STARTDT_ACT || u == IEC_U_STARTDT_CON || u == IEC_U_STOPDT_ACT ||
	    u == IEC_U_STOPDT_CON || u == IEC_U_TESTFR_ACT || u == IEC_U_TESTFR_CON;
}

int
iec_apci_parse(const uint8_t *buf, size_t len, struct iec_apci *a, size_t *flen, char *err, size_t errlen)
{
	uint8_t l, c1, c2, c3, c4, fn;

	/* Reject a bad header as soon as its bytes are in. */
	if (len < 1)
		return 0;
	if (buf[0] != IEC_START) {
		codec_err(err, errlen, "start octet 0x%02x, not 0x68 (104 5)", buf[0]);
		return -1;
	}
	if (len < 2)
		return 0;
	l = buf[1];
	if (l < 4 || l > IEC_MAX_APDU - 2) {
		codec_err(err, errlen, "APDU length %u out of range 4..253 (104 5)", l);
		return -1;
	}
	if (len < (size_t)l + 2)
		return 0;
	c1 = buf[2], c2 = buf[3], c3 = buf[4], c4 = buf[5];
	memset(a, 0, sizeof(*a));
	if ((c1 & 0x01) == 0) {
		/* 5.1 I format: N(S) in octets 1-2, N(R) in octets 3-4, bit 1 of octet 3 is 0 */
		if (c3 & 0x01) {
			codec_err(err, errlen, "I frame with bit 1 of control octet 3 set (104 5.1)");
			return -1;
		}
		if (l == 4) {
			codec_err(err, errlen, "I frame without an ASDU (104 5.1)");
			return -1;
		}
		a->format = IEC_I;
		a->ns = (uint16_t)(get_le16(buf + 2) >> 1);
		a->nr = (uint16_t)(get_le16(buf + 4) >> 1);
		a->asdu = buf + IEC_APCI_LEN;
		a->asdu_len = (size_t)l - 4;
	} else if ((c1 & 0x03) == 0x01) {
		/* 5.2 S format: octet 1 = 0000 0001, octet 2 = 0, N(R) in octets 3-4 */
		if (l != 4) {
			codec_err(err, errlen, "S frame with length %u, not 4 (104 5.2)", l);
			return -1;
		}
		if (c1 != 0x01 || c2 != 0 || (c3 & 0x01)) {
			codec_err(err, errlen, "S frame with control octets %02x %02x %02x, not 01 00 xx with bit 1 clear (104 5.2)",
			    c1, c2, c3);
			return -1;
		}
		a->format = IEC_S;
		a->nr = (uint16_t)(get_le16(buf + 4) >> 1);
	} else {
		/* 5.3 U format: exactly one of STARTDT, STOPDT, TESTFR act/con; octets 2-4 are 0 */
		if (l != 4) {
			codec_err(err, errlen, "U frame with length %u, not 4 (104 5.3)", l);
			return -1;
		}
		fn = c1 & 0xfc;
		if (fn != 0 && (fn & (fn - 1)) != 0) {
			codec_err(err, errlen, "U frame 0x%02x with more than one function (104 5.3)", c1);
			return -1;
		}
		if (!u_known(c1) || c2 != 0 || c3 != 0 || c4 != 0) {
			codec_err(err, errlen, "unknown U frame %02x %02x %02x %02x (104 5.3)", c1, c2, c3, c4);
			return -1;
		}
		a->format = IEC_U;
		a->u = c1;
	}
	if (flen != NULL)
		*flen = (size_t)l + 2;
	return 1;
}

size_t
iec_encode_u(uint8_t *out, uint8_t u)
{
	if (!u_known(u))
		return 0;
	out[0] = IEC_START;
	out[1] = 4;
	out[2] = u;
	out[3] = out[4] = out[5] = 0;
	return IEC_APCI_LEN;
}

size_t
iec_encode_s(uint8_t *out, uint16_t nr)
{
	out[0] = IEC_START;
	out[1] = 4;
	out[2] = 0x01;
	out[3] = 0;
	put_le16(out + 4, (uint16_t)((nr & 0x7fff) << 1));
	return IEC_APCI_LEN;
}

size_t
iec_encode_i(uint8_t *out, uint16_t ns, uint16_t nr, const uint8_t *asdu, size_t asdu_len)
{
	if (asdu_len < 1 || asdu_len > IEC_MAX_ASDU)
		return 0;
	out[0] = IEC_START;
	out[1] = (uint8_t)(asdu_len + 4);
	put_le16(out + 2, (uint16_t)((ns & 0x7fff) << 1));
	put_le16(out + 4, (uint16_t)((nr & 0x7fff) << 1));
	memmove(out + IEC_APCI_LEN, asdu, asdu_len);
	return IEC_APCI_LEN + asdu_len;
}

/* ---- the types: one table entry each (101 7.3, 104 clause 8) ---- */

/* What an object holds before its time tag. */
enum elem {
	E_SIQ = 1,      /* 7.2.6.1 */
	E_DIQ,          /* 7.2.6.2 */
	E_VTI_QDS,      /* 7.2.6.5 + 7.2.6.3 */
	E_BSI_QDS,      /* 7.2.6.13 + QDS */
	E_NVA_QDS,      /* 7.2.6.6 + QDS */
	E_SVA_QDS,      /* 7.2.6.7 + QDS */
	E_R32_QDS,      /* 7.2.6.8 + QDS */
	E_BCR,          /* 7.2.6.9 */
	E_SEP_CP16,     /* 7.2.6.10 + 7.2.6.20 */
	E_SPE_QDP_CP16, /* 7.2.6.11 + 7.2.6.4 + CP16 */
	E_OCI_QDP_CP16, /* 7.2.6.12 + QDP + CP16 */
	E_SCD_QDS,      /* 7.2.6.40 + QDS */
	E_NVA,          /* 7.2.6.6 without quality (type 21) */
	E_SCO,          /* 7.2.6.15 */
	E_DCO,          /* 7.2.6.16 */
	E_RCO,          /* 7.2.6.17 */
	E_NVA_QOS,      /* NVA + 7.2.6.39 */
	E_SVA_QOS,      /* SVA + QOS */
	E_R32_QOS,      /* R32 + QOS */
	E_BSI,          /* BSI alone (commands 51, 64) */
	E_QUAL,         /* one qualifier octet: COI 7.2.6.21, QOI 7.2.6.22, QCC 7.2.6.23, QRP 7.2.6.27 */
	E_NONE,         /* read command: the IOA alone; clock sync: the time alone */
	E_TSC,          /* 104 8.8 */
};

enum tag { T_NONE, T_CP24, T_CP56 };

struct type_info {
	const char *name;
	uint8_t elem;           /* enum elem */
	uint8_t vsize;          /* octets before the time tag */
	uint8_t tag;            /* enum tag */
};

#define TI(t, e, vs, tg) [t] = { .name = #t, .elem = (e), .vsize = (vs), .tag = (tg) }

static const struct type_info types[256] = {
	TI(M_SP_NA_1, E_SIQ, 1, T_NONE),
	TI(M_SP_TA_1, E_SIQ, 1, T_CP24),
	TI(M_DP_NA_1, E_DIQ, 1, T_NONE),
	TI(M_DP_TA_1, E_DIQ, 1, T_CP24),
	TI(M_ST_NA_1, E_VTI_QDS, 2, T_NONE),
	TI(M_ST_TA_1, E_VTI_QDS, 2, T_CP24),
	TI(M_BO_NA_1, E_BSI_QDS, 5, T_NONE),
	TI(M_BO_TA_1, E_BSI_QDS, 5, T_CP24),
	TI(M_ME_NA_1, E_NVA_QDS, 3, T_NONE),
	TI(M_ME_TA_1, E_NVA_QDS, 3, T_CP24),
	TI(M_ME_NB_1, E_SVA_QDS, 3, T_NONE),
	TI(M_ME_TB_1, E_SVA_QDS, 3, T_CP24),
	TI(M_ME_NC_1, E_R32_QDS, 5, T_NONE),
	TI(M_ME_TC_1, E_R32_QDS, 5, T_CP24),
	TI(M_IT_NA_1, E_BCR, 5, T_NONE),
	TI(M_IT_TA_1, E_BCR, 5, T_CP24),
	TI(M_EP_TA_1, E_SEP_CP16, 3, T_CP24),
	TI(M_EP_TB_1, E_SPE_QDP_CP16, 4, T_CP24),
	TI(M_EP_TC_1, E_OCI_QDP_CP16, 4, T_CP24),
	TI(M_PS_NA_1, E_SCD_QDS, 5, T_NONE),
	TI(M_ME_ND_1, E_NVA, 2, T_NONE),
	TI(M_SP_TB_1, E_SIQ, 1, T_CP56),
	TI(M_DP_TB_1, E_DIQ, 1, T_CP56),
	TI(M_ST_TB_1, E_VTI_QDS, 2, T_CP56),
	TI(M_BO_TB_1, E_BSI_QDS, 5, T_CP56),
	TI(M_ME_TD_1, E_NVA_QDS, 3, T_CP56),
	TI(M_ME_TE_1, E_SVA_QDS, 3, T_CP56),
	TI(M_ME_TF_1, E_R32_QDS, 5, T_CP56),
	TI(M_IT_TB_1, E_BCR, 5, T_CP56),
	TI(M_EP_TD_1, E_SEP_CP16, 3, T_CP56),
	TI(M_EP_TE_1, E_SPE_QDP_CP16, 4, T_CP56),
	TI(M_EP_TF_1, E_OCI_QDP_CP16, 4, T_CP56),
	TI(C_SC_NA_1, E_SCO, 1, T_NONE),
	TI(C_DC_NA_1, E_DCO, 1, T_NONE),
	TI(C_RC_NA_1, E_RCO, 1, T_NONE),
	TI(C_SE_NA_1, E_NVA_QOS, 3, T_NONE),
	TI(C_SE_NB_1, E_SVA_QOS, 3, T_NONE),
	TI(C_SE_NC_1, E_R32_QOS, 5, T_NONE),
	TI(C_BO_NA_1, E_BSI, 4, T_NONE),
	TI(C_SC_TA_1, E_SCO, 1, T_CP56),
	TI(C_DC_TA_1, E_DCO, 1, T_CP56),
	TI(C_RC_TA_1, E_RCO, 1, T_CP56),
	TI(C_SE_TA_1, E_NVA_QOS, 3, T_CP56),
	TI(C_SE_TB_1, E_SVA_QOS, 3, T_CP56),
	TI(C_SE_TC_1, E_R32_QOS, 5, T_CP56),
	TI(C_BO_TA_1, E_BSI, 4, T_CP56),
	TI(M_EI_NA_1, E_QUAL, 1, T_NONE),
	TI(C_IC_NA_1, E_QUAL, 1, T_NONE),
	TI(C_CI_NA_1, E_QUAL, 1, T_NONE),
	TI(C_RD_NA_1, E_NONE, 0, T_NONE),
	TI(C_CS_NA_1, E_NONE, 0, T_CP56),
	TI(C_RP_NA_1, E_QUAL, 1, T_NONE),
	TI(C_TS_TA_1, E_TSC, 2, T_CP56),
};

static size_t
tag_size(uint8_t tag)
{
	return tag == T_CP24 ? 3 : tag == T_CP56 ? 7 : 0;
}

size_t
iec_elem_size(uint8_t type)
{
	const struct type_info *ti = &types[type];

	return ti->elem == 0 ? 0 : ti->vsize + tag_size(ti->tag);
}

const char *
iec_type_name(uint8_t type)
{
	return types[type].name;
}

static bool
params_ok(const struct iec_params *prm)
{
	return prm != NULL && (prm->cot_len == 1 || prm->cot_len == 2) &&
	    (prm->ca_len == 1 || prm->ca_len == 2) && prm->ioa_len >= 1 && prm->ioa_len <= 3;
}

/* type, VSQ, COT (+ originator), CA (101 7.1, figure 11) */
static size_t
dui_size(const struct iec_params *prm)
{
	return 2 + (size_t)prm->cot_len + prm->ca_len;
}

int
iec_max_objs(uint8_t type, bool sq, const struct iec_params *prm)
{
	size_t room, esize = iec_elem_size(type), n;

	if (types[type].elem == 0 || !params_ok(prm))
		return 0;
	room = IEC_MAX_ASDU - dui_size(prm);
	if (sq) {
		room -= prm->ioa_len;
		n = esize == 0 ? IEC_MAX_OBJS : room / esize;
	} else
		n = room / (prm->ioa_len + esize);
	return n > IEC_MAX_OBJS ? IEC_MAX_OBJS : (int)n;
}

bool
iec_value_range(uint8_t type, double *min, double *max, double *step)
{
	double lo, hi, st = 1;

	switch (types[type].elem) {
	case E_SIQ: case E_SCO: lo = 0, hi = 1; break;                       /* 7.2.6.1, 7.2.6.15 */
	case E_DIQ: case E_SEP_CP16: lo = 0, hi = 3; break;                  /* 7.2.6.2, 7.2.6.10 */
	case E_DCO: case E_RCO: lo = 1, hi = 2; break;                       /* 0, 3 not permitted */
	case E_VTI_QDS: lo = -64, hi = 63; break;                            /* 7.2.6.5: I7 */
	case E_BSI_QDS: case E_SCD_QDS: case E_BSI: lo = 0, hi = 4294967295.0; break; /* 32 bits */
	case E_SPE_QDP_CP16: lo = 0, hi = 63; break;                         /* 7.2.6.11: 6 bits */
	case E_OCI_QDP_CP16: lo = 0, hi = 15; break;                         /* 7.2.6.12: 4 bits */
	case E_SVA_QDS: case E_SVA_QOS: lo = -32768, hi = 32767; break;      /* 7.2.6.7: I16 */
	case E_BCR: lo = -2147483648.0, hi = 2147483647.0; break;            /* 7.2.6.9: I32 */
	case E_NVA_QDS: case E_NVA: case E_NVA_QOS:                          /* 7.2.6.6: F16 */
		lo = -1, hi = 32767 / 32768.0, st = 1 / 32768.0;
		break;
	case E_R32_QDS: case E_R32_QOS:                                      /* 7.2.6.8: IEEE 754 single */
		lo = -FLT_MAX, hi = FLT_MAX, st = 0;
		break;
	default:
		return false;
	}
	*min = lo, *max = hi, *step = st;
	return true;
}

uint8_t
iec_quality_mask(uint8_t type)
{
	switch (types[type].elem) {
	case E_SIQ: case E_DIQ: return 0xf0;
	case E_VTI_QDS: case E_BSI_QDS: case E_NVA_QDS: case E_SVA_QDS: case E_R32_QDS: case E_SCD_QDS: return 0xf1;
	case E_BCR: return 0xe0;
	case E_SEP_CP16: case E_SPE_QDP_CP16: case E_OCI_QDP_CP16: return 0xf8;
	default: return 0;
	}
}

/* ---- time tags ---- */

/* floor(a / b) for b > 0 */
static int64_t
floordiv(int64_t a, int64_t b)
{
	return a / b - (a % b != 0 && a < 0);
}

static bool
split_time(int64_t ms, bool local_time, struct tm *tm, int *msec)
{
	int64_t s = floordiv(ms, 1000);
	time_t t = (time_t)s;

	*msec = (int)(ms - s * 1000);
	if ((int64_t)t != s)
		return false;
	return (local_time ? localtime_r(&t, tm) : gmtime_r(&t, tm)) != NULL;
}

/* 7.2.6.18: ms 0..59999 (2 octets), IV|RES1|minutes, SU|RES2|hours, day of week|day of
 * month, RES3|month, RES4|year 0..99. Times outside 2000..2099 cannot be said: they are
 * clamped to its ends and marked invalid. */
void
iec_cp56_encode(uint8_t out[7], int64_t ms, bool local_time, bool invalid)
{
	struct tm tm;
	int msec, year, wday;

	if (!split_time(ms, local_time, &tm, &msec)) {
		memset(&tm, 0, sizeof(tm));
		tm.tm_year = 100;
		tm.tm_mday = 1;
		msec = 0;
		invalid = true;
	}
	year = tm.tm_year + 1900;
	if (year < 2000 || year > 2099) {
		bool low = year < 2000;

		memset(&tm, 0, sizeof(tm));
		tm.tm_year = low ? 100 : 199;
		tm.tm_mon = low ? 0 : 11;
		tm.tm_mday = low ? 1 : 31;
		if (!low) {
			tm.tm_hour = 23;
			tm.tm_min = 59;
			tm.tm_sec = 59;
			msec = 999;
		}
		tm.tm_isdst = 0;
		tm.tm_wday = low ? 6 : 4;       /* 2000-01-01 Saturday, 2099-12-31 Thursday */
		invalid = true;
	}
	wday = tm.tm_wday == 0 ? 7 : tm.tm_wday;        /* 1 Monday .. 7 Sunday */
	put_le16(out, (uint16_t)(tm.tm_sec * 1000 + msec));
	out[2] = (uint8_t)(tm.tm_min | (invalid ? 0x80 : 0));
	out[3] = (uint8_t)(tm.tm_hour | (local_time && tm.tm_isdst > 0 ? 0x80 : 0));
	out[4] = (uint8_t)(tm.tm_mday | wday << 5);
	out[5] = (uint8_t)(tm.tm_mon + 1);
	out[6] = (uint8_t)(tm.tm_year - 100);
}

int
iec_cp56_decode(const uint8_t in[7], bool local_time, int64_t *ms, bool *invalid)
{
	unsigned msec = get_le16(in), min = in[2] & 0x3f, hour = in[3] & 0x1f, su = in[3] & 0x80;
	unsigned mday = in[4] & 0x1f, mon = in[5] & 0x0f, year = in[6] & 0x7f;
	struct tm tm, back;
	time_t t;

	if (msec > 59999 || min > 59 || hour > 23 || mday < 1 || mon < 1 || mon > 12 || year > 99)
		return -1;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = (int)year + 100;
	tm.tm_mon = (int)mon - 1;
	tm.tm_mday = (int)mday;
	tm.tm_hour = (int)hour;
	tm.tm_min = (int)min;
	tm.tm_sec = (int)(msec / 1000);
	if (local_time) {
		struct tm try = tm;

		/* Let mktime find the offset; in the hour that occurs twice when summer time
		 * ends, SU says which of the two is meant. */
		tm.tm_isdst = -1;
		t = mktime(&tm);
		if (t != (time_t)-1 && (tm.tm_isdst > 0) != (su != 0)) {
			time_t t2;

			try.tm_isdst = su ? 1 : 0;
			t2 = mktime(&try);
			if (t2 != (time_t)-1 && localtime_r(&t2, &back) != NULL &&
			    back.tm_hour == (int)hour && back.tm_mday == (int)mday && (back.tm_isdst > 0) == (su != 0))
				t = t2;
		}
	} else
		t = timegm(&tm);
	/* a day that the month does not have (31 April) comes back as another date */
	if (t == (time_t)-1 || (local_time ? localtime_r(&t, &back) : gmtime_r(&t, &back)) == NULL ||
	    back.tm_mday != (int)mday || back.tm_mon != (int)mon - 1)
		return -1;
	*ms = (int64_t)t * 1000 + msec % 1000;
	if (invalid != NULL)
		*invalid = (in[2] & 0x80) != 0;
	return 0;
}

/* 7.2.6.19 CP24Time2a: ms (2), IV|RES1|minutes. The hour comes from now_ms: the hour of
 * now, or the one before when that would put the time more than a few minutes ahead. */
#define CP24_AHEAD_MS (5 * 60 * 1000)

static int
cp24_decode(const uint8_t *in, bool local_time, int64_t now_ms, int64_t *ms, bool *invalid)
{
	unsigned msec = get_le16(in), min = in[2] & 0x3f;
	struct tm tm;
	int nmsec;
	int64_t hour_start, t;

	if (msec > 59999 || min > 59)
		return -1;
	if (!split_time(now_ms, local_time, &tm, &nmsec))
		return -1;
	hour_start = now_ms - ((int64_t)tm.tm_min * 60000 + (int64_t)tm.tm_sec * 1000 + nmsec);
	t = hour_start + (int64_t)min * 60000 + msec;
	if (t > now_ms + CP24_AHEAD_MS)
		t -= 3600 * 1000;
	*ms = t;
	*invalid = (in[2] & 0x80) != 0;
	return 0;
}

static void
cp24_encode(uint8_t *out, int64_t ms, bool local_time, bool invalid)
{
	struct tm tm;
	int msec;

	if (!split_time(ms, local_time, &tm, &msec)) {
		tm.tm_min = tm.tm_sec = 0;
		msec = 0;
		invalid = true;
	}
	put_le16(out, (uint16_t)(tm.tm_sec * 1000 + msec));
	out[2] = (uint8_t)(tm.tm_min | (invalid ? 0x80 : 0));
}

/* ---- ASDU (101 7.1, 7.2) ---- */

/* 7.2.6.6 NVA: F16 fixed point, -1 .. +1-2^-15 */
static double
nva_get(const uint8_t *p)
{
	return (int16_t)get_le16(p) / 32768.0;
}

static void
nva_put(uint8_t *p, double f)
{
	double x = f * 32768.0;

	if (!(x >= -32768.0))           /* also NaN */
		x = x != x ? 0 : -32768.0;
	if (x > 32767.0)
		x = 32767.0;
	put_le16(p, (uint16_t)(int16_t)lrint(x));
}

static int16_t
clamp16(int64_t v)
{
	return (int16_t)(v < INT16_MIN ? INT16_MIN : v > INT16_MAX ? INT16_MAX : v);
}

static float
r32_get(const uint8_t *p)
{
	uint32_t u = get32(p);
	float f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

static void
r32_put(uint8_t *p, double d)
{
	float f = (float)d;
	uint32_t u;

	memcpy(&u, &f, sizeof(u));
	put32(p, u);
}

static int
decode_elem(const struct type_info *ti, const uint8_t *p, const struct iec_params *prm, int64_t now_ms,
    struct iec_obj *o, char *err, size_t errlen)
{
	const uint8_t *tp = p + ti->vsize;

	switch (ti->elem) {
	case E_SIQ:
		o->v.i = p[0] & 0x01;
		o->q = p[0] & 0xf0;
		break;
	case E_DIQ:
		o->v.i = p[0] & 0x03;
		o->q = p[0] & 0xf0;
		break;
	case E_VTI_QDS:
		/* VTI: I7 two's complement in bits 1-7, T in bit 8 */
		o->v.i = (p[0] & 0x40) ? (int)(p[0] & 0x7f) - 128 : (p[0] & 0x7f);
		o->transient = (p[0] & 0x80) != 0;
		o->q = p[1] & 0xf1;
		break;
	case E_BSI_QDS:
		o->v.u = get32(p);
		o->q = p[4] & 0xf1;
		break;
	case E_NVA_QDS:
		o->v.f = nva_get(p);
		o->q = p[2] & 0xf1;
		break;
	case E_SVA_QDS:
		o->v.i = (int16_t)get_le16(p);
		o->q = p[2] & 0xf1;
		break;
	case E_R32_QDS:
		o->v.f = r32_get(p);
		o->q = p[4] & 0xf1;
		break;
	case E_BCR:
		o->v.i = (int32_t)get32(p);
		o->seq = p[4] & 0x1f;
		o->q = p[4] & 0xe0;
		break;
	case E_SEP_CP16:
		o->v.i = p[0] & 0x03;
		o->q = p[0] & 0xf8;
		o->elapsed_ms = get_le16(p + 1);
		break;
	case E_SPE_QDP_CP16:
	case E_OCI_QDP_CP16:
		o->v.u = p[0] & (ti->elem == E_SPE_QDP_CP16 ? 0x3f : 0x0f);
		o->q = p[1] & 0xf8;
		o->elapsed_ms = get_le16(p + 2);
		break;
	case E_SCD_QDS:
		o->v.u = get32(p);
		o->q = p[4] & 0xf1;
		break;
	case E_NVA:
		o->v.f = nva_get(p);
		break;
	case E_SCO:
	case E_DCO:
	case E_RCO:
		o->v.i = p[0] & (ti->elem == E_SCO ? 0x01 : 0x03);
		o->qu = (p[0] >> 2) & 0x1f;
		o->select = (p[0] & 0x80) != 0;
		break;
	case E_NVA_QOS:
		o->v.f = nva_get(p);
		goto qos;
	case E_SVA_QOS:
		o->v.i = (int16_t)get_le16(p);
		goto qos;
	case E_R32_QOS:
		o->v.f = r32_get(p);
		p += 2;
	qos:
		o->qu = p[2] & 0x7f;
		o->select = (p[2] & 0x80) != 0;
		break;
	case E_BSI:
		o->v.u = get32(p);
		break;
	case E_QUAL:
		o->qualifier = p[0];
		break;
	case E_TSC:
		o->v.i = get_le16(p);
		break;
	case E_NONE:
		break;
	}
	if (ti->tag == T_CP24) {
		o->has_time = true;
		if (cp24_decode(tp, prm->local_time, now_ms, &o->time_ms, &o->time_invalid) == -1) {
			codec_err(err, errlen, "IOA %" PRIu32 ": bad CP24Time2a %02x %02x %02x (101 7.2.6.19)",
			    o->ioa, tp[0], tp[1], tp[2]);
			return -1;
		}
	} else if (ti->tag == T_CP56) {
		o->has_time = true;
		if (iec_cp56_decode(tp, prm->local_time, &o->time_ms, &o->time_invalid) == -1) {
			codec_err(err, errlen, "IOA %" PRIu32 ": bad CP56Time2a %02x %02x %02x %02x %02x %02x %02x (101 7.2.6.18)",
			    o->ioa, tp[0], tp[1], tp[2], tp[3], tp[4], tp[5], tp[6]);
			return -1;
		}
	}
	return 0;
}

static uint32_t
get_ioa(const uint8_t *p, uint8_t n)
{
	uint32_t v = 0;

	for (uint8_t i = 0; i < n; i++)
		v |= (uint32_t)p[i] << (8 * i);
	return v;
}

static uint32_t
ioa_max(uint8_t n)
{
	return n >= 3 ? 0xffffff : n == 2 ? 0xffff : 0xff;
}

int
iec_asdu_decode(const uint8_t *p, size_t len, const struct iec_params *prm, int64_t now_ms,
    struct iec_asdu *a, char *err, size_t errlen)
{
	const struct type_info *ti;
	size_t hdr, esize, want, off;
	int n;

	if (!params_ok(prm)) {
		codec_err(err, errlen, "bad field sizes (COT 1-2, CA 1-2, IOA 1-3)");
		return -1;
	}
	hdr = dui_size(prm);
	if (len < hdr) {
		codec_err(err, errlen, "ASDU of %zu octets, shorter than its %zu-octet header (101 7.1)", len, hdr);
		return -1;
	}
	memset(a, 0, offsetof(struct iec_asdu, obj));
	a->type = p[0];
	ti = &types[a->type];
	if (ti->elem == 0) {
		codec_err(err, errlen, "unknown type %u", a->type);
		return -1;
	}
	/* 7.2.2 VSQ: SQ in bit 8, number 0..127 (0: no object) */
	a->sq = (p[1] & 0x80) != 0;
	n = p[1] & 0x7f;
	if (n == 0) {
		codec_err(err, errlen, "%s: VSQ number 0 (101 7.2.2)", ti->name);
		return -1;
	}
	/* 7.2.3 COT: cause in bits 1-6, P/N bit 7, T bit 8; originator address with 2 octets */
	a->cot = p[2] & 0x3f;
	a->pn = (p[2] & 0x40) != 0;
	a->test = (p[2] & 0x80) != 0;
	a->oa = prm->cot_len == 2 ? p[3] : 0;
	/* 7.2.4 common address */
	a->ca = prm->ca_len == 2 ? get_le16(p + 2 + prm->cot_len) : p[2 + prm->cot_len];
	esize = ti->vsize + tag_size(ti->tag);
	want = a->sq ? hdr + prm->ioa_len + (size_t)n * esize : hdr + (size_t)n * (prm->ioa_len + esize);
	if (len != want) {
		codec_err(err, errlen, "%s: %zu octets for %d object%s (SQ=%d), expected %zu (101 7.2.2)",
		    ti->name, len, n, n == 1 ? "" : "s", a->sq, want);
		return -1;
	}
	a->nobj = n;
	off = hdr;
	for (int k = 0; k < n; k++) {
		struct iec_obj *o = &a->obj[k];

		memset(o, 0, sizeof(*o));
		/* 7.2.5: with SQ=1 one address, the others follow it */
		if (!a->sq || k == 0) {
			o->ioa = get_ioa(p + off, prm->ioa_len);
			off += prm->ioa_len;
		} else
			o->ioa = a->obj[0].ioa + (uint32_t)k;
		if (o->ioa > ioa_max(prm->ioa_len)) {
			codec_err(err, errlen, "%s: SQ=1 addresses %" PRIu32 "+%d beyond %u octets (101 7.2.2.1)",
			    ti->name, a->obj[0].ioa, n - 1, prm->ioa_len);
			return -1;
		}
		if (decode_elem(ti, p + off, prm, now_ms, o, err, errlen) == -1)
			return -1;
		off += esize;
	}
	return 0;
}

static void
encode_elem(const struct type_info *ti, const struct iec_obj *o, const struct iec_params *prm, uint8_t *p)
{
	uint8_t *tp = p + ti->vsize;
	uint8_t se = o->select ? 0x80 : 0;

	switch (ti->elem) {
	case E_SIQ:
		p[0] = (uint8_t)((o->v.i & 0x01) | (o->q & 0xf0));
		break;
	case E_DIQ:
		p[0] = (uint8_t)((o->v.i & 0x03) | (o->q & 0xf0));
		break;
	case E_VTI_QDS: {
		int64_t v = o->v.i < -64 ? -64 : o->v.i > 63 ? 63 : o->v.i;

		p[0] = (uint8_t)((v & 0x7f) | (o->transient ? 0x80 : 0));
		p[1] = o->q & 0xf1;
		break;
	}
	case E_BSI_QDS:
	case E_SCD_QDS:
		put32(p, o->v.u);
		p[4] = o->q & 0xf1;
		break;
	case E_NVA_QDS:
		nva_put(p, o->v.f);
		p[2] = o->q & 0xf1;
		break;
	case E_SVA_QDS:
		put_le16(p, (uint16_t)clamp16(o->v.i));
		p[2] = o->q & 0xf1;
		break;
	case E_R32_QDS:
		r32_put(p, o->v.f);
		p[4] = o->q & 0xf1;
		break;
	case E_BCR: {
		int64_t v = o->v.i < INT32_MIN ? INT32_MIN : o->v.i > INT32_MAX ? INT32_MAX : o->v.i;

		put32(p, (uint32_t)(int32_t)v);
		p[4] = (uint8_t)((o->seq & 0x1f) | (o->q & 0xe0));
		break;
	}
	case E_SEP_CP16:
		p[0] = (uint8_t)((o->v.i & 0x03) | (o->q & 0xf8));
		put_le16(p + 1, o->elapsed_ms);
		break;
	case E_SPE_QDP_CP16:
	case E_OCI_QDP_CP16:
		p[0] = (uint8_t)(o->v.u & (ti->elem == E_SPE_QDP_CP16 ? 0x3f : 0x0f));
		p[1] = o->q & 0xf8;
		put_le16(p + 2, o->elapsed_ms);
		break;
	case E_NVA:
		nva_put(p, o->v.f);
		break;
	case E_SCO:
	case E_DCO:
	case E_RCO:
		p[0] = (uint8_t)(se | (o->qu & 0x1f) << 2 | (o->v.i & (ti->elem == E_SCO ? 0x01 : 0x03)));
		break;
	case E_NVA_QOS:
		nva_put(p, o->v.f);
		p[2] = (uint8_t)(se | (o->qu & 0x7f));
		break;
	case E_SVA_QOS:
		put_le16(p, (uint16_t)clamp16(o->v.i));
		p[2] = (uint8_t)(se | (o->qu & 0x7f));
		break;
	case E_R32_QOS:
		r32_put(p, o->v.f);
		p[4] = (uint8_t)(se | (o->qu & 0x7f));
		break;
	case E_BSI:
		put32(p, o->v.u);
		break;
	case E_QUAL:
		p[0] = o->qualifier;
		break;
	case E_TSC:
		put_le16(p, (uint16_t)o->v.i);
		break;
	case E_NONE:
		break;
	}
	if (ti->tag == T_CP24)
		cp24_encode(tp, o->time_ms, prm->local_time, o->time_invalid);
	else if (ti->tag == T_CP56)
		iec_cp56_encode(tp, o->time_ms, prm->local_time, o->time_invalid);
}

static void
put_ioa(uint8_t *p, uint32_t ioa, uint8_t n)
{
	for (uint8_t i = 0; i < n; i++)
		p[i] = (uint8_t)(ioa >> (8 * i));
}

size_t
iec_asdu_encode(const struct iec_asdu *a, const struct iec_params *prm, uint8_t *out, size_t cap)
{
	const struct type_info *ti;
	size_t hdr, esize, need, off;

	if (!params_ok(prm))
		return 0;
	ti = &types[a->type];
	if (ti->elem == 0 || a->nobj < 1 || a->nobj > IEC_MAX_OBJS || a->cot > 0x3f)
		return 0;
	if (prm->ca_len == 1 && a->ca > 0xff)
		return 0;
	hdr = dui_size(prm);
	esize = ti->vsize + tag_size(ti->tag);
	need = a->sq ? hdr + prm->ioa_len + (size_t)a->nobj * esize :
	    hdr + (size_t)a->nobj * (prm->ioa_len + esize);
	if (need > IEC_MAX_ASDU || need > cap)
		return 0;
	if (a->sq) {
		if (a->obj[0].ioa > ioa_max(prm->ioa_len) ||
		    ioa_max(prm->ioa_len) - a->obj[0].ioa < (uint32_t)a->nobj - 1)
			return 0;
	} else {
		for (int k = 0; k < a->nobj; k++)
			if (a->obj[k].ioa > ioa_max(prm->ioa_len))
				return 0;
	}
	out[0] = a->type;
	out[1] = (uint8_t)((a->sq ? 0x80 : 0) | a->nobj);
	out[2] = (uint8_t)(a->cot | (a->pn ? 0x40 : 0) | (a->test ? 0x80 : 0));
	if (prm->cot_len == 2)
		out[3] = a->oa;
	if (prm->ca_len == 2)
		put_le16(out + 2 + prm->cot_len, a->ca);
	else
		out[2 + prm->cot_len] = (uint8_t)a->ca;
	off = hdr;
	for (int k = 0; k < a->nobj; k++) {
		if (!a->sq || k == 0) {
			put_ioa(out + off, a->obj[k].ioa, prm->ioa_len);
			off += prm->ioa_len;
		}
		encode_elem(ti, &a->obj[k], prm, out + off);
		off += esize;
	}
	return off;
}

/* ---- traces ---- */

/* 101 7.2.3, the short names of table 14 */
static const char *
cot_name(uint8_t cot, char *buf, size_t len)
{
	static const char *const names[] = {
		[COT_PER_CYC] = "per/cyc", [COT_BACK] = "back", [COT_SPONT] = "spont", [COT_INIT] = "init",
		[COT_REQ] = "req", [COT_ACT] = "act", [COT_ACTCON] = "actcon", [COT_DEACT] = "deact",
		[COT_DEACTCON] = "deactcon", [COT_ACTTERM] = "actterm", [COT_RETREM] = "retrem",
		[COT_RETLOC] = "retloc", [13] = "file", [COT_INROGEN] = "inrogen", [COT_REQCOGEN] = "reqcogen",
		[COT_UNKNOWN_TYPE] = "unknown-type", [COT_UNKNOWN_COT] = "unknown-cot",
		[COT_UNKNOWN_CA] = "unknown-ca", [COT_UNKNOWN_IOA] = "unknown-ioa",
	};

	if (cot > COT_INROGEN && cot <= 36)
		snprintf(buf, len, "inro%u", cot - COT_INROGEN);
	else if (cot > COT_REQCOGEN && cot <= 41)
		snprintf(buf, len, "reqco%u", cot - COT_REQCOGEN);
	else if (cot < sizeof(names) / sizeof(names[0]) && names[cot] != NULL)
		snprintf(buf, len, "%s", names[cot]);
	else
		snprintf(buf, len, "cot%u", cot);
	return buf;
}

static const char *
u_name(uint8_t u)
{
	switch (u) {
	case IEC_U_STARTDT_ACT: return "STARTDT act";
	case IEC_U_STARTDT_CON: return "STARTDT con";
	case IEC_U_STOPDT_ACT: return "STOPDT act";
	case IEC_U_STOPDT_CON: return "STOPDT con";
	case IEC_U_TESTFR_ACT: return "TESTFR act";
	case IEC_U_TESTFR_CON: return "TESTFR con";
	}
	return "?";
}

/* Append to buf (size len) at *pos, never past its end. */
static void
app(char *buf, size_t len, size_t *pos, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
app(char *buf, size_t len, size_t *pos, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (*pos >= len)
		return;
	va_start(ap, fmt);
	n = vsnprintf(buf + *pos, len - *pos, fmt, ap);
	va_end(ap);
	if (n > 0)
		*pos = *pos + (size_t)n >= len ? len - 1 : *pos + (size_t)n;
}

static void
describe_obj(const struct type_info *ti, const struct iec_obj *o, bool local_time, char *buf, size_t len, size_t *pos)
{
	app(buf, len, pos, " ioa=%" PRIu32, o->ioa);
	switch (ti->elem) {
	case E_NVA_QDS: case E_R32_QDS: case E_NVA:
		app(buf, len, pos, " %.7g", o->v.f);
		break;
	case E_NVA_QOS: case E_R32_QOS:
		app(buf, len, pos, " %.7g %s ql=%u", o->v.f, o->select ? "select" : "exec", o->qu);
		break;
	case E_SVA_QOS:
		app(buf, len, pos, " %" PRId64 " %s ql=%u", o->v.i, o->select ? "select" : "exec", o->qu);
		break;
	case E_SCO: case E_DCO: case E_RCO:
		app(buf, len, pos, " %" PRId64 " %s qu=%u", o->v.i, o->select ? "select" : "exec", o->qu);
		break;
	case E_BSI_QDS: case E_SCD_QDS: case E_BSI: case E_SPE_QDP_CP16: case E_OCI_QDP_CP16:
		app(buf, len, pos, " 0x%08" PRIx32, o->v.u);
		break;
	case E_QUAL:
		app(buf, len, pos, " qualifier=%u", o->qualifier);
		break;
	case E_BCR:
		app(buf, len, pos, " %" PRId64 " seq=%u", o->v.i, o->seq);
		break;
	case E_VTI_QDS:
		app(buf, len, pos, " %" PRId64 "%s", o->v.i, o->transient ? " transient" : "");
		break;
	case E_NONE:
		break;
	default:
		app(buf, len, pos, " %" PRId64, o->v.i);
		break;
	}
	if (ti->elem != E_NVA && ti->elem != E_QUAL && ti->elem != E_NONE && ti->elem != E_TSC &&
	    ti->elem != E_BSI && ti->elem != E_SCO && ti->elem != E_DCO && ti->elem != E_RCO &&
	    ti->elem != E_NVA_QOS && ti->elem != E_SVA_QOS && ti->elem != E_R32_QOS)
		app(buf, len, pos, " q=%02x", o->q);
	if (ti->elem == E_SEP_CP16 || ti->elem == E_SPE_QDP_CP16 || ti->elem == E_OCI_QDP_CP16)
		app(buf, len, pos, " elapsed=%ums", o->elapsed_ms);
	if (ti->tag != T_NONE) {
		struct tm tm;
		int msec;

		if (!split_time(o->time_ms, local_time, &tm, &msec))
			app(buf, len, pos, " t=?");
		else if (ti->tag == T_CP24)
			app(buf, len, pos, " t=xx:%02d:%02d.%03d", tm.tm_min, tm.tm_sec, msec);
		else
			app(buf, len, pos, " t=%04d-%02d-%02dT%02d:%02d:%02d.%03d%s", tm.tm_year + 1900,
			    tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, msec, local_time ? "" : "Z");
		if (o->time_invalid)
			app(buf, len, pos, " iv");
	}
}

char *
iec_describe(const uint8_t *apdu, size_t len, const struct iec_params *prm, char *buf, size_t buflen)
{
	struct iec_apci ap;
	struct iec_asdu a;
	char err[160], cb[16];
	size_t flen, pos = 0;
	int r;

	if (buf == NULL || buflen == 0)
		return buf;
	buf[0] = '\0';
	r = iec_apci_parse(apdu, len, &ap, &flen, err, sizeof(err));
	if (r == 0) {
		app(buf, buflen, &pos, "truncated APDU (%zu octets)", len);
		return buf;
	}
	if (r == -1) {
		app(buf, buflen, &pos, "bad APDU: %s", err);
		return buf;
	}
	if (ap.format == IEC_U) {
		app(buf, buflen, &pos, "U(%s)", u_name(ap.u));
		return buf;
	}
	if (ap.format == IEC_S) {
		app(buf, buflen, &pos, "S(nr=%u)", ap.nr);
		return buf;
	}
	app(buf, buflen, &pos, "I(ns=%u,nr=%u)", ap.ns, ap.nr);
	if (iec_asdu_decode(ap.asdu, ap.asdu_len, prm, 0, &a, err, sizeof(err)) == -1) {
		app(buf, buflen, &pos, " bad ASDU: %s", err);
		return buf;
	}
	app(buf, buflen, &pos, " %s%s %s%s%s", types[a.type].name, a.sq ? " sq" : "",
	    cot_name(a.cot, cb, sizeof(cb)), a.pn ? " neg" : "", a.test ? " test" : "");
	if (prm->cot_len == 2 && a.oa != 0)
		app(buf, buflen, &pos, " oa=%u", a.oa);
	app(buf, buflen, &pos, " ca=%u", a.ca);
	for (int k = 0; k < a.nobj && pos + 1 < buflen; k++)
		describe_obj(&types[a.type], &a.obj[k], prm->local_time, buf, buflen, &pos);
	return buf;
}

/* ---- information object addresses in tag addresses ---- */

/* An unsigned decimal or hex number that fills [s, end) exactly, at most max. */
static int
parse_num(const char *s, const char *end, int base, uint32_t max, uint32_t *v)
{
	uint32_t x = 0;

	if (s == end)
		return -1;
	for (; s < end; s++) {
		int d;

		if (*s >= '0' && *s <= '9')
			d = *s - '0';
		else if (base == 16 && *s >= 'a' && *s <= 'f')
			d = *s - 'a' + 10;
		else if (base == 16 && *s >= 'A' && *s <= 'F')
			d = *s - 'A' + 10;
		else
			return -1;
		if (x > (max - (uint32_t)d) / (uint32_t)base)
			return -1;
		x = x * (uint32_t)base + (uint32_t)d;
	}
	*v = x;
	return 0;
}

int
iec_parse_ioa(const char *s, uint8_t ioa_len, uint32_t *ioa, bool *ignore, char *err, size_t errlen)
{
	static const char ign[] = "%IGNORE";
	const char *p = s, *end;
	uint32_t max;

	if (ioa_len < 1 || ioa_len > 3) {
		codec_err(err, errlen, "IOA length %u, not 1..3", ioa_len);
		return -1;
	}
	max = ioa_max(ioa_len);
	if (ignore != NULL)
		*ignore = false;
	if (strncasecmp(p, ign, sizeof(ign) - 1) == 0) {
		p += sizeof(ign) - 1;
		if (ignore != NULL)
			*ignore = true;
	}
	while (*p == ' ' || *p == '\t')
		p++;
	end = p + strlen(p);
	while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	if (p == end) {
		codec_err(err, errlen, "\"%s\": no information object address", s);
		return -1;
	}
	if (*p == '#') {
		if (parse_num(p + 1, end, 16, max, ioa) == -1) {
			codec_err(err, errlen, "\"%s\": not a hex IOA of at most %u octet%s", s, ioa_len,
			    ioa_len == 1 ? "" : "s");
			return -1;
		}
		return 0;
	}
	if (memchr(p, ',', (size_t)(end - p)) != NULL) {
		/* "Hi,Mid,Lo": exactly ioa_len octets, most significant first */
		uint32_t v = 0, b;
		unsigned parts = 0;

		for (const char *q = p; q <= end; ) {
			const char *c = memchr(q, ',', (size_t)(end - q)), *pe = c != NULL ? c : end, *ps = q;

			while (ps < pe && (*ps == ' ' || *ps == '\t'))
				ps++;
			while (pe > ps && (pe[-1] == ' ' || pe[-1] == '\t'))
				pe--;
			if (++parts > ioa_len || parse_num(ps, pe, 10, 255, &b) == -1)
				goto bad_octets;
			v = v << 8 | b;
			if (c == NULL)
				break;
			q = c + 1;
		}
		if (parts != ioa_len)
			goto bad_octets;
		*ioa = v;
		return 0;
	bad_octets:
		codec_err(err, errlen, "\"%s\": not %u comma-separated octets 0..255 (most significant first)",
		    s, ioa_len);
		return -1;
	}
	if (parse_num(p, end, 10, max, ioa) == -1) {
		codec_err(err, errlen, "\"%s\": not an IOA 0..%" PRIu32 " (decimal, #hex or octets)", s, max);
		return -1;
	}
	return 0;
}
