/* modbus_codec.h: Modbus TCP frames and tag addresses, pure (no I/O, no libevent).
 * Implements the MODBUS Application Protocol Specification V1.1b3 (function codes 1, 2,
 * 3, 4, 5, 6, 15, 16, 22, 23, 17 and 43 / MEI 14 and exception responses, clauses 6 and
 * 7) and the MBAP header of MODBUS Messaging on TCP/IP Implementation Guide V1.0b (clause
 * 3.1.3). */
#ifndef KOMD_MODBUS_CODEC_H
#define KOMD_MODBUS_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../daemon/value.h"

#define MB_MBAP_LEN 7          /* transaction id, protocol id, length, unit id */
#define MB_MAX_ADU 260         /* MBAP + 253-byte PDU */
#define MB_MAX_PDU 253
#define MB_MAX_READ_REGS 125   /* FC 3, 4 */
#define MB_MAX_READ_BITS 2000  /* FC 1, 2 */
#define MB_MAX_WRITE_REGS 123  /* FC 16 */
#define MB_MAX_WRITE_BITS 1968 /* FC 15 */
#define MB_MAX_RW_READ_REGS 125  /* FC 23 */
#define MB_MAX_RW_WRITE_REGS 121 /* FC 23 */

enum mb_fc {
	MB_FC_READ_COILS = 1,
	MB_FC_READ_DISCRETE = 2,
	MB_FC_READ_HOLDING = 3,
	MB_FC_READ_INPUT = 4,
	MB_FC_WRITE_COIL = 5,
	MB_FC_WRITE_REGISTER = 6,
	MB_FC_WRITE_COILS = 15,
	MB_FC_WRITE_REGISTERS = 16,
	MB_FC_MASK_WRITE = 22,
	MB_FC_READ_WRITE = 23,
	MB_FC_REPORT_SERVER_ID = 17,
	MB_FC_MEI = 43,           /* encapsulated interface transport */
};

#define MB_MEI_DEVICE_ID 0x0E  /* FC 43 MEI type 14: read device identification (6.21) */

/* 6.21: Read Device ID codes: stream access to a category, or one object. */
enum mb_devid_code {
	MB_DEVID_BASIC = 1,
	MB_DEVID_REGULAR = 2,
	MB_DEVID_EXTENDED = 3,
	MB_DEVID_INDIVIDUAL = 4,
};

/* 6.21 objects komd has: 0 VendorName, 1 ProductCode, 2 MajorMinorRevision (basic,
 * mandatory), 3 VendorUrl, 4 ProductName, 5 ModelName (regular, optional). */
#define MB_DEVID_NOBJ 6
/* The longest object that fits a response alone (253 - 7 header bytes - id - length). */
#define MB_DEVID_MAX_LEN 244
/* 6.13: the additional data that fits a report server id response (253 - FC, byte count,
 * server id, run indicator). */
#define MB_SERVER_ID_MAX_DATA 249

enum mb_exception {
	MB_EX_ILLEGAL_FUNCTION = 0x01,
	MB_EX_ILLEGAL_ADDRESS = 0x02,
	MB_EX_ILLEGAL_VALUE = 0x03,
	MB_EX_DEVICE_FAILURE = 0x04,
	MB_EX_ACKNOWLEDGE = 0x05,
	MB_EX_BUSY = 0x06,
	MB_EX_MEMORY_PARITY = 0x08,
	MB_EX_GATEWAY_PATH = 0x0A,
	MB_EX_GATEWAY_TARGET = 0x0B,
};

/* "illegal data address" etc.; "unknown exception" for unknown codes (constant strings). */
const char *mb_exception_name(int code);
/* "read holding registers" etc. (FC 43: "encapsulated interface transport"); "function N"
 * is not returned: NULL for unknown codes. */
const char *mb_fc_name(int fc);

struct mb_mbap {
	uint16_t tid;   /* transaction identifier */
	uint16_t pid;   /* protocol identifier, 0 for Modbus */
	uint16_t len;   /* bytes that follow: unit id + PDU */
	uint8_t unit;   /* unit identifier */
};

/* Is there a complete ADU at buf (len bytes available)? 1 with *adu_len (MBAP + PDU)
 * and *h filled, 0 when more bytes are needed, -1 when the header is malformed (protocol
 * id not 0, length field below 2 or above 254, i.e. an ADU over 260 bytes) with a
 * message in err. */
int mb_frame(const uint8_t *buf, size_t len, struct mb_mbap *h, size_t *adu_len, char *err, size_t errlen);

/* ---- requests (client encodes, server decodes) ---- */

/* Each encoder writes a whole ADU (MBAP included) into buf (at least MB_MAX_ADU bytes)
 * and returns its length, or 0 if the arguments break the specification's limits. */
size_t mb_encode_read(uint8_t *buf, uint16_t tid, uint8_t unit, uint8_t fc, uint16_t addr, uint16_t count);
size_t mb_encode_write_coil(uint8_t *buf, uint16_t tid, uint8_t unit, uint16_t addr, bool on);
size_t mb_encode_write_register(uint8_t *buf, uint16_t tid, uint8_t unit, uint16_t addr, uint16_t value);
/* bits: one byte per coil (0 or 1) */
size_t mb_encode_write_coils(uint8_t *buf, uint16_t tid, uint8_t unit, uint16_t addr, const uint8_t *bits,
    uint16_t count);
size_t mb_encode_write_registers(uint8_t *buf, uint16_t tid, uint8_t unit, uint16_t addr, const uint16_t *regs,
    uint16_t count);
size_t mb_encode_mask_write(uint8_t *buf, uint16_t tid, uint8_t unit, uint16_t addr, uint16_t and_mask,
    uint16_t or_mask);
size_t mb_encode_read_write(uint8_t *buf, uint16_t tid, uint8_t unit, uint16_t raddr, uint16_t rcount,
    uint16_t waddr, const uint16_t *wregs, uint16_t wcount);
/* 6.13: the function code alone. */
size_t mb_encode_report_server_id_request(uint8_t *buf, uint16_t tid, uint8_t unit);
/* 6.21: MEI type 14, Read Device ID code 1..4 (0 for another), Object Id. */
size_t mb_encode_device_id_request(uint8_t *buf, uint16_t tid, uint8_t unit, uint8_t code, uint8_t object_id);

/* A request PDU as the server sees it. */
struct mb_request {
	uint8_t fc;
	uint16_t addr;        /* starting address (FC 23: read starting address) */
	uint16_t count;       /* quantity (FC 23: quantity to read); FC 5, 6, 22: 1 */
	uint16_t value;       /* FC 5: 0xFF00 or 0x0000; FC 6: the register value */
	uint16_t and_mask;    /* FC 22 */
	uint16_t or_mask;
	uint16_t waddr;       /* FC 23: write starting address */
	uint16_t wcount;      /* FC 23: quantity to write */
	const uint8_t *data;  /* FC 15: packed coils; FC 16, 23: registers, big-endian; in pdu */
	size_t data_len;
	uint8_t mei;          /* FC 43: MEI type */
	uint8_t devid_code;   /* FC 43 / 14: Read Device ID code (enum mb_devid_code) */
	uint8_t object_id;    /* FC 43 / 14: Object Id */
};

/* Decode a request PDU (the bytes after the MBAP header, function code first).
 * 0: valid, rq filled. A positive value: the exception code the specification asks the
 * server to answer with (MB_EX_ILLEGAL_FUNCTION for a function code komd does not
 * implement, any of 0 and 0x80..0xFF included, and FC 43 with an MEI type other than 14;
 * MB_EX_ILLEGAL_VALUE for a PDU shorter or longer than its function needs, a quantity out
 * of range or a byte count that does not match it, a coil value other than 0xFF00/0x0000,
 * a Read Device ID code other than 1..4); rq->fc is set in both cases.
 * -1: empty PDU (nothing to answer). Address range checks (addr + count > 65536) give
 * MB_EX_ILLEGAL_ADDRESS. */
int mb_decode_request(const uint8_t *pdu, size_t len, struct mb_request *rq);

/* ---- responses (server encodes, client decodes) ---- */

/* Clause 7: the request's function code with its high bit set (a request with function
 * code 0 or 0x80..0xFF is answered too: 0x80 | fc), then the code (not 0). */
size_t mb_encode_exception(uint8_t *buf, uint16_t tid, uint8_t unit, uint8_t fc, uint8_t code);
/* FC 1, 2: bits one byte per bit (0/1), count of them */
size_t mb_encode_read_bits_response(uint8_t *buf, uint16_t tid, uint8_t unit, uint8_t fc, const uint8_t *bits,
    uint16_t count);
/* FC 3, 4, 23: count registers */
size_t mb_encode_read_regs_response(uint8_t *buf, uint16_t tid, uint8_t unit, uint8_t fc, const uint16_t *regs,
    uint16_t count);
/* FC 5, 6, 15, 16: the echo (address and value, or address and quantity) */
size_t mb_encode_write_response(uint8_t *buf, uint16_t tid, uint8_t unit, uint8_t fc, uint16_t addr,
    uint16_t value_or_count);
/* FC 22: the echo of the request */
size_t mb_encode_mask_write_response(uint8_t *buf, uint16_t tid, uint8_t unit, uint16_t addr, uint16_t and_mask,
    uint16_t or_mask);

/* 6.13 FC 17: byte count, server id, run indicator (0xFF on, 0x00 off), then the additional
 * data (len bytes; cut at MB_SERVER_ID_MAX_DATA). */
size_t mb_encode_report_server_id(uint8_t *buf, uint16_t tid, uint8_t unit, uint8_t server_id, bool run,
    const void *data, size_t len);
/* 6.21 FC 43 / MEI 14: the answer to Read Device ID code `code` from object `object_id`,
 * with the objects objs[0..MB_DEVID_NOBJ) (NULL or "" for an object the device does not
 * have; 0..2 must be there, none longer than MB_DEVID_MAX_LEN). Conformity level 0x81
 * (basic) or, when it has a regular object, 0x82 (regular), both with individual access.
 * Stream access (codes 1..3) sends the objects of the category (extended is answered as
 * regular, regular by a basic device as basic) from object_id on, or from object 0 when
 * object_id is not one the device has in that category; what does not fit the PDU is left
 * for the next transaction (More Follows 0xFF, Next Object Id). Individual access (code
 * 4) sends that one object. 0 with the ADU in buf and its length in *adulen, or the
 * exception code: 03 for a code other than 1..4, 02 for an individual object the device
 * does not have, 04 when objs breaks the rules above. */
int mb_encode_device_id(uint8_t *buf, size_t *adulen, uint16_t tid, uint8_t unit, uint8_t code, uint8_t object_id,
    const char *const objs[MB_DEVID_NOBJ]);

/* A PDU (function code first) in one line for a trace, as its sender meant it: a request
 * (response false: "read holding registers addr 10 count 2") or a response ("read holding
 * registers reply: 16320 0", "read coils exception 2 (illegal data address)"), every
 * function code above and exceptions; text from the frame is quoted and escaped. A PDU
 * whose length does not fit its function is "... (malformed, N bytes)". Returns buf. */
char *mb_describe(const uint8_t *pdu, size_t len, bool response, char *buf, size_t buflen);

/* What the client asked, to check the response against. */
struct mb_sent {
	uint8_t fc;
	uint16_t addr;
	uint16_t count;     /* reads: quantity; FC 15/16: quantity written; FC 23: quantity read */
	uint16_t value;     /* FC 5, 6: the value written; FC 22: and mask */
	uint16_t or_mask;   /* FC 22 */
};

struct mb_response {
	uint8_t fc;           /* without the exception bit */
	bool exception;
	uint8_t excode;
	/* reads: the byte_count data bytes (packed bits or big-endian registers); FC 17: the
	 * byte_count bytes (server id, run indicator, additional data); FC 43: from the MEI
	 * type to the end; in pdu */
	const uint8_t *data;
	size_t data_len;
};

/* Decode a response PDU to request s: 0 with rs filled (an exception response is valid),
 * -1 when it is malformed or does not answer s (other function code, byte count not
 * matching the quantity asked, echo not matching the write; FC 17: a byte count below 2
 * or not the length; FC 43: an MEI type other than 14, objects that do not fill the PDU
 * as their number says), with a message in err. */
int mb_decode_response(const uint8_t *pdu, size_t len, const struct mb_sent *s, struct mb_response *rs,
    char *err, size_t errlen);

/* Coil or discrete input i of packed data (LSB of the first byte is the first bit). */
bool mb_get_bit(const uint8_t *packed, unsigned i);
/* Register i of big-endian register data. */
uint16_t mb_get_reg(const uint8_t *data, unsigned i);

/* ---- tag addresses: [type]Fn.Address[.Bit] (the original's syntax) ----
 * Fn: 1 coils, 2 discrete inputs, 3 holding registers, 4 input registers.
 * Address: 0..65535 (protocol address), or 1..65536 with one-based addressing (register
 * numbers; the protocol address is one less). Bit: 0..15, a bit of a register (Fn 3, 4).
 * Types (registers only): U uint16 (default), I int16, L / Ll uint32 big / little word
 * order, S / Sl int32, f float big-endian, F float word-swapped, Q / Ql int64, D / Dl
 * double (big / little word order). "%IGNORE" before an address: the tag is ignored. */
enum mb_type {
	MB_T_BIT,    /* a coil, a discrete input, or a bit of a register */
	MB_T_U16, MB_T_I16,
	MB_T_U32, MB_T_U32L, MB_T_I32, MB_T_I32L,
	MB_T_F32, MB_T_F32S,
	MB_T_I64, MB_T_I64L,
	MB_T_F64, MB_T_F64L,
};

struct mb_addr {
	bool ignore;          /* "%IGNORE...": configured but never polled or served */
	uint8_t fn;           /* 1..4 */
	uint16_t addr;        /* protocol address */
	int bit;              /* 0..15, or -1 */
	enum mb_type type;
	uint8_t nregs;        /* registers the value spans: 1, 2 or 4; 0 for coils/discrete inputs */
};

/* Parse a tag address; 0, or -1 with a message in err ("unknown type 'X'", "function must
 * be 1..4", "address 70000 out of range 0..65535", "a bit needs function 3 or 4", "value
 * spans past register 65535", ...). */
int mb_parse_addr(const char *s, bool one_based, struct mb_addr *a, char *err, size_t errlen);
/* Format back: "f3.100", "3.7.2", "1.20" (protocol addresses, or register numbers). */
char *mb_format_addr(const struct mb_addr *a, bool one_based, char *buf, size_t len);
/* Which komd value types a Modbus type can carry (bool for bits; int/float for numbers;
 * dpi is not allowed). */
bool mb_type_fits(const struct mb_addr *a, enum vtype vt);

/* Registers (a->nregs of them, in protocol order) to a value of type vt (bool, int,
 * float; int from a float type rounds, float from an int type converts; a bit of a
 * register gives 0/1; coils and discrete inputs are refused). 0, or -1 with err (e.g. NaN
 * into an int). */
int mb_regs_to_value(const struct mb_addr *a, const uint16_t *regs, enum vtype vt, struct value *v, char *err,
    size_t errlen);
/* A value to a->nregs registers; -1 with err when it does not fit the type (70000 into
 * U, -1 into L, a fraction into an integer type is rounded, not refused). For a bit in a
 * register (a->bit >= 0) use mb_value_to_bit. */
int mb_value_to_regs(const struct mb_addr *a, const struct value *v, uint16_t *regs, char *err, size_t errlen);
/* A bool (or int 0/1) value to a bit: 0 or 1, -1 with err for anything else. */
int mb_value_to_bit(const struct value *v, char *err, size_t errlen);

#endif
