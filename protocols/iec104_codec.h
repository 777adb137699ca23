/* iec104_codec.h: IEC 60870-5-104 frames, pure (no I/O, no libevent).
 * APCI (IEC 60870-5-104 clause 5: start 0x68, length, four control octets; I, S and U
 * formats) and ASDU (IEC 60870-5-101 clause 7: data unit identifier, information objects
 * and their elements, 7.2.6 and 7.3), with the field sizes 104 uses by default (cause of
 * transmission 2 octets, common address 2, information object address 3) and the sizes
 * other peers use (COT 1, CA 1, IOA 1 or 2). */
#ifndef KOMD_IEC104_CODEC_H
#define KOMD_IEC104_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IEC_START 0x68
#define IEC_APCI_LEN 6           /* start, length, 4 control octets */
#define IEC_MAX_APDU 255         /* length field at most 253 */
#define IEC_MAX_ASDU 249         /* 253 - 4 control octets */
#define IEC_MAX_OBJS 127         /* VSQ number */

/* ---- APCI (104 clause 5) ---- */

enum iec_format { IEC_I, IEC_S, IEC_U };

/* U-format functions (the control octet 1 values) */
#define IEC_U_STARTDT_ACT 0x07
#define IEC_U_STARTDT_CON 0x0B
#define IEC_U_STOPDT_ACT  0x13
#define IEC_U_STOPDT_CON  0x23
#define IEC_U_TESTFR_ACT  0x43
#define IEC_U_TESTFR_CON  0x83

struct iec_apci {
	enum iec_format format;
	uint16_t ns;            /* I: send sequence number N(S), 0..32767 */
	uint16_t nr;            /* I, S: receive sequence number N(R) */
	uint8_t u;              /* U: one of IEC_U_* */
	const uint8_t *asdu;    /* I: the ASDU (inside the buffer) */
	size_t asdu_len;
};

/* Is there a complete APDU at buf? 1 with *flen and a filled, 0 when more bytes are
 * needed, -1 when it breaks a rule of clause 5 (start octet not 0x68, length below 4 or
 * above 253, an S frame with control octet 2 not 0, a U frame with more than one function
 * or an unknown one, an S or U frame with a length other than 4, an I frame without an
 * ASDU) with the rule in err. */
int iec_apci_parse(const uint8_t *buf, size_t len, struct iec_apci *a, size_t *flen, char *err, size_t errlen);
/* Encoders write a whole APDU into out (at least IEC_MAX_APDU bytes); return its length,
 * or 0 when it would not fit. */
size_t iec_encode_u(uint8_t *out, uint8_t u);
size_t iec_encode_s(uint8_t *out, uint16_t nr);
size_t iec_encode_i(uint8_t *out, uint16_t ns, uint16_t nr, const uint8_t *asdu, size_t asdu_len);
/* Sequence numbers are modulo 32768 (15 bits). */
static inline uint16_t iec_seq_add(uint16_t a, uint16_t b) { return (uint16_t)((a + b) & 0x7fff); }
/* How many frames from a to b, modulo 32768 (b "after" a). */
static inline uint16_t iec_seq_diff(uint16_t b, uint16_t a) { return (uint16_t)((b - a) & 0x7fff); }

/* ---- ASDU (101 clause 7) ---- */

/* Type identifications (101 7.2.1.1 and 104 clause 8). */
enum iec_type {
	M_SP_NA_1 = 1, M_SP_TA_1 = 2, M_DP_NA_1 = 3, M_DP_TA_1 = 4, M_ST_NA_1 = 5, M_ST_TA_1 = 6,
	M_BO_NA_1 = 7, M_BO_TA_1 = 8, M_ME_NA_1 = 9, M_ME_TA_1 = 10, M_ME_NB_1 = 11, M_ME_TB_1 = 12,
	M_ME_NC_1 = 13, M_ME_TC_1 = 14, M_IT_NA_1 = 15, M_IT_TA_1 = 16, M_EP_TA_1 = 17, M_EP_TB_1 = 18,
	M_EP_TC_1 = 19, M_PS_NA_1 = 20, M_ME_ND_1 = 21,
	M_SP_TB_1 = 30, M_DP_TB_1 = 31, M_ST_TB_1 = 32, M_BO_TB_1 = 33, M_ME_TD_1 = 34, M_ME_TE_1 = 35,
	M_ME_TF_1 = 36, M_IT_TB_1 = 37, M_EP_TD_1 = 38, M_EP_TE_1 = 39, M_EP_TF_1 = 40,
	C_SC_NA_1 = 45, C_DC_NA_1 = 46, C_RC_NA_1 = 47, C_SE_NA_1 = 48, C_SE_NB_1 = 49, C_SE_NC_1 = 50,
	C_BO_NA_1 = 51,
	C_SC_TA_1 = 58, C_DC_TA_1 = 59, C_RC_TA_1 = 60, C_SE_TA_1 = 61, C_SE_TB_1 = 62, C_SE_TC_1 = 63,
	C_BO_TA_1 = 64,
	M_EI_NA_1 = 70,
	C_IC_NA_1 = 100, C_CI_NA_1 = 101, C_RD_NA_1 = 102, C_CS_NA_1 = 103, C_RP_NA_1 = 105, C_TS_TA_1 = 107,
};

/* Causes of transmission (101 7.2.3). */
enum iec_cot {
	COT_PER_CYC = 1, COT_BACK = 2, COT_SPONT = 3, COT_INIT = 4, COT_REQ = 5, COT_ACT = 6,
	COT_ACTCON = 7, COT_DEACT = 8, COT_DEACTCON = 9, COT_ACTTERM = 10, COT_RETREM = 11, COT_RETLOC = 12,
	COT_INROGEN = 20, /* 21..36: interrogated by group 1..16 */
	COT_REQCOGEN = 37, /* 38..41: counter group 1..4 */
	COT_UNKNOWN_TYPE = 44, COT_UNKNOWN_COT = 45, COT_UNKNOWN_CA = 46, COT_UNKNOWN_IOA = 47,
};

/* Quality descriptor bits as they are on the wire (101 7.2.6.3 QDS, 7.2.6.1 SIQ, 7.2.6.2
 * DIQ, 7.2.6.4 QDP): IV 0x80, NT 0x40, SB 0x20, BL 0x10, OV 0x01 (QDS), EI 0x08 (QDP). */
#define IEC_Q_IV 0x80
#define IEC_Q_NT 0x40
#define IEC_Q_SB 0x20
#define IEC_Q_BL 0x10
#define IEC_Q_OV 0x01
#define IEC_Q_EI 0x08
/* Integrated totals (101 7.2.6.9 BCR): IV 0x80, CA (counter adjusted) 0x40, CY (carry) 0x20. */
#define IEC_Q_CA 0x40
#define IEC_Q_CY 0x20

/* Field sizes of a link (a line's settings). */
struct iec_params {
	uint8_t cot_len;        /* 1 or 2 (2: with originator address) */
	uint8_t ca_len;         /* 1 or 2 */
	uint8_t ioa_len;        /* 1, 2 or 3 */
	bool local_time;        /* CP56Time2a in local time instead of UTC */
};

/* One information object, decoded. Which fields mean something depends on the type:
 *  single point (1, 2, 30): v.i 0/1, q (IV NT SB BL)
 *  double point (3, 4, 31): v.i 0..3, q
 *  step position (5, 6, 32): v.i -64..63, transient, q
 *  bitstring (7, 8, 33, 51, 64): v.u 32 bits, q
 *  normalised (9, 10, 21, 34, 48, 61): v.f -1..+1-2^-15 (NVA), q (21: none)
 *  scaled (11, 12, 35, 49, 62): v.i -32768..32767, q
 *  float (13, 14, 36, 50, 63): v.f, q
 *  integrated totals (15, 16, 37): v.i counter (int32), seq 0..31, q (IV 0x80, CA 0x40, CY 0x20)
 *  protection events (17, 38): es (0..3 event state), q, elapsed_ms (CP16)
 *  packed start events (18, 39): spe bits, q (QDP), elapsed_ms
 *  packed output circuit (19, 40): oci bits, q (QDP), elapsed_ms
 *  packed single points (20): v.u = SCD (status 16 bits | change detection 16 bits << 16), q
 *  commands (45..51, 58..64): value as above; select (S/E bit), qu (qualifier of command
 *   0..31, 101 7.2.6.26; for set points the QOS ql 0..127)
 *  end of initialisation (70): qualifier = COI
 *  interrogation (100): qualifier = QOI (20 station, 21..36 groups)
 *  counter interrogation (101): qualifier = QCC
 *  read (102): nothing
 *  clock synchronisation (103): the time
 *  reset process (105): qualifier = QRP
 *  test with time tag (107): v.i = TSC (16 bits), the time */
struct iec_obj {
	uint32_t ioa;
	union {
		int64_t i;
		uint32_t u;
		double f;
	} v;
	uint8_t q;              /* quality as on the wire (see IEC_Q_*) */
	bool transient;         /* step position: T bit */
	uint8_t seq;            /* integrated totals: sequence number */
	bool select;            /* commands: S/E (1 select, 0 execute) */
	uint8_t qu;             /* commands: QU / QL */
	uint8_t qualifier;      /* COI, QOI, QCC, QRP */
	uint16_t elapsed_ms;    /* protection: CP16Time2a */
	bool has_time;          /* a CP24 or CP56 time tag came (or is to be sent) */
	int64_t time_ms;        /* ms since the epoch (UTC), from CP56Time2a; CP24: minutes and ms of the current hour filled from now_ms given to the decoder */
	bool time_invalid;      /* the IV bit of the time tag */
};

struct iec_asdu {
	uint8_t type;
	bool sq;                /* SQ: one IOA, consecutive objects */
	uint8_t cot;            /* cause, 6 bits */
	bool pn;                /* P/N: negative confirmation */
	bool test;              /* T */
	uint8_t oa;             /* originator address (cot_len 2) */
	uint16_t ca;            /* common address */
	int nobj;
	struct iec_obj obj[IEC_MAX_OBJS];
};

/* Element size of a type (the object without its IOA), 0 for unknown types. */
size_t iec_elem_size(uint8_t type);
/* "M_SP_NA_1" and so on; NULL for unknown types. */
const char *iec_type_name(uint8_t type);
/* Decode an ASDU; now_ms completes CP24Time2a time tags. 0, or -1 with err (unknown type
 * "unknown type 77", VSQ number 0, length not matching number x element size, bad
 * values such as a CP56 with minutes over 59). */
int iec_asdu_decode(const uint8_t *p, size_t len, const struct iec_params *prm, int64_t now_ms,
    struct iec_asdu *a, char *err, size_t errlen);
/* Encode; returns the ASDU length, 0 when it does not fit IEC_MAX_ASDU (or an unknown
 * type). With sq, obj[0].ioa is the first address and the others follow it. */
size_t iec_asdu_encode(const struct iec_asdu *a, const struct iec_params *prm, uint8_t *out, size_t cap);
/* How many objects of type fit one ASDU (with or without SQ) for the field sizes. */
int iec_max_objs(uint8_t type, bool sq, const struct iec_params *prm);
/* What the value of an object of type can be (101 7.2.6): *min..*max in steps of *step (0:
 * any real between them, R32 7.2.6.8). Commands: only what may be sent, so a double or
 * regulating step command is 1..2 (0 and 3 "not permitted", 7.2.6.16, 7.2.6.17). False for
 * types without a value (the system types). */
bool iec_value_range(uint8_t type, double *min, double *max, double *step);
/* The quality bits an object of type carries, as on the wire: 0xf0 (SIQ, DIQ), 0xf1 (QDS),
 * 0xe0 (BCR: IV CA CY), 0xf8 (SEP, QDP), 0 (M_ME_ND_1, commands, system types). */
uint8_t iec_quality_mask(uint8_t type);

/* CP56Time2a (101 7.2.6.18) <-> ms since the epoch (UTC, or the local time zone). */
void iec_cp56_encode(uint8_t out[7], int64_t ms, bool local_time, bool invalid);
int iec_cp56_decode(const uint8_t in[7], bool local_time, int64_t *ms, bool *invalid);

/* One-line text of an APDU for traces: "I(ns=3,nr=7) M_ME_NC_1 spont ca=1 ioa=1001
 * 21.5 q=00 ...". Returns buf. */
char *iec_describe(const uint8_t *apdu, size_t len, const struct iec_params *prm, char *buf, size_t buflen);

/* ---- information object addresses in tag addresses ----
 * decimal ("1001"), "#hex" ("#3E9") or "Hi,Mid,Lo" bytes ("0,3,233"); a "%IGNORE" prefix
 * marks the tag ignored. 0, or -1 with err; the address must fit ioa_len octets. */
int iec_parse_ioa(const char *s, uint8_t ioa_len, uint32_t *ioa, bool *ignore, char *err, size_t errlen);

#endif
