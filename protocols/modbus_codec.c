/* modbus_codec.c: Modbus TCP frames and tag addresses, pure (no I/O, no allocation).
 * Implements the MODBUS Application Protocol Specification V1.1b3:
 *   4.1 PDU (at most 253 bytes), 4.2 data encoding (big-endian 16-bit values),
 *   6.1 FC 01 Read Coils, 6.2 FC 02 Read Discrete Inputs, 6.3 FC 03 Read Holding
 *   Registers, 6.4 FC 04 Read Input Registers, 6.5 FC 05 Write Single Coil, 6.6 FC 06
 *   Write Single Register, 6.11 FC 15 Write Multiple Coils, 6.12 FC 16 Write Multiple
 *   Registers, 6.13 FC 17 Report Server ID, 6.16 FC 22 Mask Write Register, 6.17 FC 23
 *   Read/Write Multiple Registers, 6.19 / 6.21 FC 43 MEI type 14 Read Device
 *   Identification, 7 MODBUS Exception Responses (codes 01..0B);
 * and the MBAP header of MODBUS Messaging on TCP/IP Implementation Guide V1.0b, 3.1.3
 * (transaction id, protocol id 0, length = unit id + PDU, unit id).
 * The server side checks a request in the order of the specification's state diagrams
 * (6.x figures): function code (01), then quantity and byte count (03), then address
 * range (02); every request gets one of them or an answer, whatever its function code.
 * mb_describe reads any PDU for traces. Everything from the network is bounds-checked
 * against len. */
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "codec.h"
#include "modbus_codec.h"

/* Clause 7, table of exception codes. */
const char *
mb_exception_name(int code)
{
	switch (code) {
	case MB_EX_ILLEGAL_FUNCTION: return "illegal function";
	case MB_EX_ILLEGAL_ADDRESS: return "illegal data address";
	case MB_EX_ILLEGAL_VALUE: return "illegal data value";
	case MB_EX_DEVICE_FAILURE: return "server device failure";
	case MB_EX_ACKNOWLEDGE: return "acknowledge";
	case MB_EX_BUSY: return "server device busy";
	case MB_EX_MEMORY_PARITY: return "memory parity error";
	case MB_EX_GATEWAY_PATH: return "gateway path unavailable";
	case MB_EX_GATEWAY_TARGET: return "gateway target device failed to respond";
	}
	return "unknown exception";
}

/* Clause 5.1, public function code definitions (those komd implements). */
const char *
mb_fc_name(int fc)
{
	switch (fc) {
	case MB_FC_READ_COILS: return "read coils";
	case MB_FC_READ_DISCRETE: return "read discrete inputs";
	case MB_FC_READ_HOLDING: return "read holding registers";
	case MB_FC_READ_INPUT: return "read input registers";
	case MB_FC_WRITE_COIL: return "write single coil";
	case MB_FC_WRITE_REGISTER: return "write single register";
	case MB_FC_WRITE_COILS: return "write multiple coils";
	case MB_FC_WRITE_REGISTERS: return "write multiple registers";
	case MB_FC_MASK_WRITE: return "mask write register";
	case MB_FC_READ_WRITE: return "read/write multiple registers";
	case MB_FC_REPORT_SERVER_ID: return "report server id";
	case MB_FC_MEI: return "encapsulated interface transport";
	}
	return NULL;
}

/* ---- MBAP (TCP implementation guide 3.1.3) ---- */

int
mb_frame(const uint8_t *buf, size_t len, struct mb_mbap *h, size_t *adu_len, char *err, size_t errlen)
{
	uint16_t pid, flen;

	/* Reject a bad header as soon as its bytes are in: no point waiting for more. */
	if (len >= 4 && (pid = get_be16(buf + 2)) != 0) {
		codec_err(err, errlen, "protocol id %u, not 0 (Modbus)", pid);
		return -1;
	}
	if (len < 6)
		return 0;
	flen = get_be16(buf + 4);
	/* unit id + a PDU of 1..253 bytes (application protocol 4.1) */
	if (flen < 2 || flen > MB_MAX_PDU + 1) {
		codec_err(err, errlen, "MBAP length %u out of range 2..%d", flen, MB_MAX_PDU + 1);
		return -1;
	}
	if (len < (size_t)6 + flen)
		return 0;
	if (h != NULL) {
		h->tid = get_be16(buf);
		h->pid = 0;
		h->len = flen;
		h->unit = buf[6];
	}
	if (adu_len != NULL)
		*adu_len = (size_t)6 + flen;
	return 1;
}

/* The MBAP header for a PDU of pdu_len bytes already written at buf + 7. */
static size_t
mbap(uint8_t *buf, uint16_t tid, uint8_t unit, size_t pdu_len)
{
	put_be16(buf, tid);
	put_be16(buf + 2, 0);
	put_be16(buf + 4, (uint16_t)(pdu_len + 1));
	buf[6] = unit;
	return MB_MBAP_LEN + pdu_len;
}

/* addr .. addr+count-1 within the 16-bit address space (6.x: "Starting Address + Quantity"). */
static bool
range_ok(uint16_t addr, uint16_t count)
{
	return (uint32_t)addr + count <= 65536;
}

static bool
is_bit_read(uint8_t fc)
{
	return fc == MB_FC_READ_COILS || fc == MB_FC_READ_DISCRETE;
}

static bool
is_reg_read(uint8_t fc)
{
	return fc == MB_FC_READ_HOLDING || fc == MB_FC_READ_INPUT;
}

/* Pack count bits (one byte each, nonzero = on) LSB first (6.1: the LSB of the first data
 * byte is the first coil; the last byte is padded with zeros). Returns the byte count. */
static size_t
pack_bits(uint8_t *out, const uint8_t *bits, uint16_t count)
{
	size_t n = ((size_t)count + 7) / 8;

	memset(out, 0, n);
	for (unsigned i = 0; i < count; i++)
		if (bits[i])
			out[i / 8] |= (uint8_t)(1u << (i % 8));
	return n;
}

/* ---- requests ---- */

/* 6.1 .. 6.4: FC, starting address, quantity (1..2000 bits, 1..125 registers). */
size_t
mb_encode_read(uint8_t *buf, uint16_t tid, uint8_t unit, uint8_t fc, uint16_t addr, uint16_t count)
{
	uint8_t *p = buf + MB_MBAP_LEN;

	if (is_bit_read(fc)) {
		if (count < 1 || count > MB_MAX_READ_BITS)
			return 0;
	} else if (is_reg_read(fc)) {
		if (count < 1 || count > MB_MAX_READ_REGS)
			return 0;
	} else
		return 0;
	if (!range_ok(addr, count))
		return 0;
	p[0] = fc;
	put_be16(p + 1, addr);
	put_be16(p + 3, count);
	return mbap(buf, tid, unit, 5);
}

/* 6.5: output value 0xFF00 (on) or 0x0000 (off). */
size_t
mb_encode_write_coil(uint8_t *buf, uint16_t tid, uint8_t unit, uint16_t addr, bool on)
{
	uint8_t *p = buf + MB_MBAP_LEN;

	p[0] = MB_FC_WRITE_COIL;
	put_be16(p + 1, addr);
	put_be16(p + 3, on ? 0xFF00 : 0x0000);
	return mbap(buf, tid, unit, 5);
}

/* 6.6 */
size_t
mb_encode_write_register(uint8_t *buf, uint16_t tid, uint8_t unit, uint16_t addr, uint16_t value)
{
	uint8_t *p = buf + MB_MBAP_LEN;

	p[0] = MB_FC_WRITE_REGISTER;
	put_be16(p + 1, addr);
	put_be16(p + 3, value);
	return mbap(buf, tid, unit, 5);
}

/* 6.11: quantity 1..1968 (0x07B0), byte count N = ceil(quantity / 8). */
size_t
mb_encode_write_coils(uint8_t *buf, uint16_t tid, uint8_t unit, uint16_t addr, const uint8_t *bits,
    uint16_t count)
{
	uint8_t *p = buf + MB_MBAP_LEN;
	size_t n;

	if (count < 1 || count > MB_MAX_WRITE_BITS || !range_ok(addr, count))
		return 0;
	p[0] = MB_FC_WRITE_COILS;
	put_be16(p + 1, addr);
	put_be16(p + 3, count);
	n = pack_bits(p + 6, bits, count);
	p[5] = (uint8_t)n;
	return mbap(buf, tid, unit, 6 + n);
}

/* 6.12: quantity 1..123 (0x7B), byte count 2 * quantity. */
size_t
mb_encode_write_registers(uint8_t *buf, uint16_t tid, uint8_t unit, uint16_t addr, const uint16_t *regs,
    uint16_t count)
{
	uint8_t *p = buf + MB_MBAP_LEN;

	if (count < 1 || count > MB_MAX_WRITE_REGS || !range_ok(addr, count))
		return 0;
	p[0] = MB_FC_WRITE_REGISTERS;
	put_be16(p + 1, addr);
	put_be16(p + 3, count);
	p[5] = (uint8_t)(2 * count);
	for (unsigned i = 0; i < count; i++)
		put_be16(p + 6 + 2 * i, regs[i]);
	return mbap(buf, tid, unit, 6 + 2 * (size_t)count);
}

/* 6.16: reference address, AND mask, OR mask. */
size_t
mb_encode_mask_write(uint8_t *buf, uint16_t tid, uint8_t unit, uint16_t addr, uint16_t and_mask,
    uint16_t or_mask)
{
	uint8_t *p = buf + MB_MBAP_LEN;

	p[0] = MB_FC_MASK_WRITE;
	put_be16(p + 1, addr);
	put_be16(p + 3, and_mask);
	put_be16(p + 5, or_mask);
	return mbap(buf, tid, unit, 7);
}

/* 6.17: read 1..125 (0x7D), write 1..121 (0x79) registers, write byte count 2 * wcount. */
size_t
mb_encode_read_write(uint8_t *buf, uint16_t tid, uint8_t unit, uint16_t raddr, uint16_t rcount,
    uint16_t waddr, const uint16_t *wregs, uint16_t wcount)
{
	uint8_t *p = buf + MB_MBAP_LEN;

	if (rcount < 1 || rcount > MB_MAX_RW_READ_REGS || !range_ok(raddr, rcount) ||
	    wcount < 1 || wcount > MB_MAX_RW_WRITE_REGS || !range_ok(waddr, wcount))
		return 0;
	p[0] = MB_FC_READ_WRITE;
	put_be16(p + 1, raddr);
	put_be16(p + 3, rcount);
	put_be16(p + 5, waddr);
	put_be16(p + 7, wcount);
	p[9] = (uint8_t)(2 * wcount);
	for (unsigned i = 0; i < wcount; i++)
		put_be16(p + 10 + 2 * i, wregs[i]);
	return mbap(buf, tid, unit, 10 + 2 * (size_t)wcount);
}

/* 6.13 */
size_t
mb_encode_report_server_id_request(uint8_t *buf, uint16_t tid, uint8_t unit)
{
	buf[MB_MBAP_LEN] = MB_FC_REPORT_SERVER_ID;
	return mbap(buf, tid, unit, 1);
}

/* 6.21: FC 43, MEI type 0x0E, Read Device ID code, Object Id. */
size_t
mb_encode_device_id_request(uint8_t *buf, uint16_t tid, uint8_t unit, uint8_t code, uint8_t object_id)
{
	uint8_t *p = buf + MB_MBAP_LEN;

	if (code < MB_DEVID_BASIC || code > MB_DEVID_INDIVIDUAL)
		return 0;
	p[0] = MB_FC_MEI;
	p[1] = MB_MEI_DEVICE_ID;
	p[2] = code;
	p[3] = object_id;
	return mbap(buf, tid, unit, 4);
}

/* The server's view, following the state diagrams of 6.1 .. 6.17: a PDU of the wrong
 * length is an "illegal data value" (its quantity / byte count cannot be right). */
int
mb_decode_request(const uint8_t *pdu, size_t len, struct mb_request *rq)
{
	unsigned bc;

	memset(rq, 0, sizeof(*rq));
	if (len == 0)
		return -1;
	rq->fc = pdu[0];
	switch (rq->fc) {
	case MB_FC_READ_COILS:
	case MB_FC_READ_DISCRETE:
	case MB_FC_READ_HOLDING:
	case MB_FC_READ_INPUT:
		/* 6.1 .. 6.4: FC, address, quantity */
		if (len != 5)
			return MB_EX_ILLEGAL_VALUE;
		rq->addr = get_be16(pdu + 1);
		rq->count = get_be16(pdu + 3);
		if (rq->count < 1 ||
		    rq->count > (is_bit_read(rq->fc) ? MB_MAX_READ_BITS : MB_MAX_READ_REGS))
			return MB_EX_ILLEGAL_VALUE;
		if (!range_ok(rq->addr, rq->count))
			return MB_EX_ILLEGAL_ADDRESS;
		return 0;
	case MB_FC_WRITE_COIL:
		/* 6.5: output value 0x0000 or 0xFF00, else exception 03 */
		if (len != 5)
			return MB_EX_ILLEGAL_VALUE;
		rq->addr = get_be16(pdu + 1);
		rq->value = get_be16(pdu + 3);
		rq->count = 1;
		if (rq->value != 0xFF00 && rq->value != 0x0000)
			return MB_EX_ILLEGAL_VALUE;
		return 0;
	case MB_FC_WRITE_REGISTER:
		/* 6.6: any register value */
		if (len != 5)
			return MB_EX_ILLEGAL_VALUE;
		rq->addr = get_be16(pdu + 1);
		rq->value = get_be16(pdu + 3);
		rq->count = 1;
		return 0;
	case MB_FC_WRITE_COILS:
	case MB_FC_WRITE_REGISTERS:
		/* 6.11, 6.12: FC, address, quantity, byte count, data */
		if (len < 6)
			return MB_EX_ILLEGAL_VALUE;
		rq->addr = get_be16(pdu + 1);
		rq->count = get_be16(pdu + 3);
		bc = pdu[5];
		if (rq->fc == MB_FC_WRITE_COILS) {
			if (rq->count < 1 || rq->count > MB_MAX_WRITE_BITS ||
			    bc != ((unsigned)rq->count + 7) / 8)
				return MB_EX_ILLEGAL_VALUE;
		} else if (rq->count < 1 || rq->count > MB_MAX_WRITE_REGS || bc != 2u * rq->count)
			return MB_EX_ILLEGAL_VALUE;
		if (len != 6 + (size_t)bc)
			return MB_EX_ILLEGAL_VALUE;
		if (!range_ok(rq->addr, rq->count))
			return MB_EX_ILLEGAL_ADDRESS;
		rq->data = pdu + 6;
		rq->data_len = bc;
		return 0;
	case MB_FC_MASK_WRITE:
		/* 6.16: FC, reference address, AND mask, OR mask */
		if (len != 7)
			return MB_EX_ILLEGAL_VALUE;
		rq->addr = get_be16(pdu + 1);
		rq->and_mask = get_be16(pdu + 3);
		rq->or_mask = get_be16(pdu + 5);
		rq->count = 1;
		return 0;
	case MB_FC_READ_WRITE:
		/* 6.17: FC, read address, read quantity, write address, write quantity, byte
		 * count, data */
		if (len < 10)
			return MB_EX_ILLEGAL_VALUE;
		rq->addr = get_be16(pdu + 1);
		rq->count = get_be16(pdu + 3);
		rq->waddr = get_be16(pdu + 5);
		rq->wcount = get_be16(pdu + 7);
		bc = pdu[9];
		if (rq->count < 1 || rq->count > MB_MAX_RW_READ_REGS ||
		    rq->wcount < 1 || rq->wcount > MB_MAX_RW_WRITE_REGS || bc != 2u * rq->wcount ||
		    len != 10 + (size_t)bc)
			return MB_EX_ILLEGAL_VALUE;
		if (!range_ok(rq->addr, rq->count) || !range_ok(rq->waddr, rq->wcount))
			return MB_EX_ILLEGAL_ADDRESS;
		rq->data = pdu + 10;
		rq->data_len = bc;
		return 0;
	case MB_FC_REPORT_SERVER_ID:
		/* 6.13: the function code alone */
		return len == 1 ? 0 : MB_EX_ILLEGAL_VALUE;
	case MB_FC_MEI:
		/* 6.19: MEI type; 6.21, type 14: Read Device ID code 01..04, Object Id (whether the
		 * device has that object is the answer's business: mb_encode_device_id) */
		if (len < 2)
			return MB_EX_ILLEGAL_VALUE;
		rq->mei = pdu[1];
		if (rq->mei != MB_MEI_DEVICE_ID)
			return MB_EX_ILLEGAL_FUNCTION;
		if (len != 4)
			return MB_EX_ILLEGAL_VALUE;
		rq->devid_code = pdu[2];
		rq->object_id = pdu[3];
		if (rq->devid_code < MB_DEVID_BASIC || rq->devid_code > MB_DEVID_INDIVIDUAL)
			return MB_EX_ILLEGAL_VALUE;
		return 0;
	}
	/* 0, 0x80..0xFF and every code komd does not implement */
	return MB_EX_ILLEGAL_FUNCTION;
}

/* ---- responses ---- */

/* Clause 7: function code + 0x80, exception code. A request whose function code is 0 or
 * has the high bit set is answered all the same (illegal function): 0x80 | fc. */
size_t
mb_encode_exception(uint8_t *buf, uint16_t tid, uint8_t unit, uint8_t fc, uint8_t code)
{
	uint8_t *p = buf + MB_MBAP_LEN;

	if (code == 0)
		return 0;
	p[0] = (uint8_t)(fc | 0x80);
	p[1] = code;
	return mbap(buf, tid, unit, 2);
}

/* 6.1, 6.2: FC, byte count, packed bits. */
size_t
mb_encode_read_bits_response(uint8_t *buf, uint16_t tid, uint8_t unit, uint8_t fc, const uint8_t *bits,
    uint16_t count)
{
	uint8_t *p = buf + MB_MBAP_LEN;
	size_t n;

	if (!is_bit_read(fc) || count < 1 || count > MB_MAX_READ_BITS)
		return 0;
	p[0] = fc;
	n = pack_bits(p + 2, bits, count);
	p[1] = (uint8_t)n;
	return mbap(buf, tid, unit, 2 + n);
}

/* 6.3, 6.4, 6.17: FC, byte count (2 * N), registers. */
size_t
mb_encode_read_regs_response(uint8_t *buf, uint16_t tid, uint8_t unit, uint8_t fc, const uint16_t *regs,
    uint16_t count)
{
	uint8_t *p = buf + MB_MBAP_LEN;

	if (!(is_reg_read(fc) || fc == MB_FC_READ_WRITE) || count < 1 || count > MB_MAX_READ_REGS)
		return 0;
	p[0] = fc;
	p[1] = (uint8_t)(2 * count);
	for (unsigned i = 0; i < count; i++)
		put_be16(p + 2 + 2 * i, regs[i]);
	return mbap(buf, tid, unit, 2 + 2 * (size_t)count);
}

/* 6.5, 6.6 (echo of the request), 6.11, 6.12 (address and quantity). */
size_t
mb_encode_write_response(uint8_t *buf, uint16_t tid, uint8_t unit, uint8_t fc, uint16_t addr,
    uint16_t value_or_count)
{
	uint8_t *p = buf + MB_MBAP_LEN;

	switch (fc) {
	case MB_FC_WRITE_COIL:
		if (value_or_count != 0xFF00 && value_or_count != 0x0000)
			return 0;
		break;
	case MB_FC_WRITE_REGISTER:
		break;
	case MB_FC_WRITE_COILS:
		if (value_or_count < 1 || value_or_count > MB_MAX_WRITE_BITS || !range_ok(addr, value_or_count))
			return 0;
		break;
	case MB_FC_WRITE_REGISTERS:
		if (value_or_count < 1 || value_or_count > MB_MAX_WRITE_REGS || !range_ok(addr, value_or_count))
			return 0;
		break;
	default:
		return 0;
	}
	p[0] = fc;
	put_be16(p + 1, addr);
	put_be16(p + 3, value_or_count);
	return mbap(buf, tid, unit, 5);
}

/* 6.16: the response is an echo of the request. */
size_t
mb_encode_mask_write_response(uint8_t *buf, uint16_t tid, uint8_t unit, uint16_t addr, uint16_t and_mask,
    uint16_t or_mask)
{
	return mb_encode_mask_write(buf, tid, unit, addr, and_mask, or_mask);
}

/* 6.13: FC 17, byte count, server id, run indicator status, additional data. */
size_t
mb_encode_report_server_id(uint8_t *buf, uint16_t tid, uint8_t unit, uint8_t server_id, bool run,
    const void *data, size_t len)
{
	uint8_t *p = buf + MB_MBAP_LEN;

	if (len > MB_SERVER_ID_MAX_DATA)
		len = MB_SERVER_ID_MAX_DATA;
	p[0] = MB_FC_REPORT_SERVER_ID;
	p[1] = (uint8_t)(2 + len);
	p[2] = server_id;
	p[3] = run ? 0xFF : 0x00;
	if (len)
		memcpy(p + 4, data, len);
	return mbap(buf, tid, unit, 4 + len);
}

static size_t
devid_len(const char *const objs[MB_DEVID_NOBJ], unsigned id)
{
	return id < MB_DEVID_NOBJ && objs[id] ? strlen(objs[id]) : 0;
}

/* 6.21: FC 43, MEI type 0x0E, Read Device ID code, Conformity Level, More Follows, Next
 * Object Id, Number Of Objects, then each object: Object Id, Object Length, Object Value. */
int
mb_encode_device_id(uint8_t *buf, size_t *adulen, uint16_t tid, uint8_t unit, uint8_t code, uint8_t object_id,
    const char *const objs[MB_DEVID_NOBJ])
{
	uint8_t *p = buf + MB_MBAP_LEN;
	size_t n = 7;
	unsigned first, last, nobj = 0;
	bool regular = false;

	*adulen = 0;
	if (code < MB_DEVID_BASIC || code > MB_DEVID_INDIVIDUAL)
		return MB_EX_ILLEGAL_VALUE;
	for (unsigned id = 0; id < MB_DEVID_NOBJ; id++) {
		size_t l = devid_len(objs, id);
		if (l > MB_DEVID_MAX_LEN || (id <= 2 && l == 0))
			return MB_EX_DEVICE_FAILURE;
		if (id > 2 && l > 0)
			regular = true;
	}
	p[0] = MB_FC_MEI;
	p[1] = MB_MEI_DEVICE_ID;
	p[2] = code;
	p[3] = regular ? 0x82 : 0x81; /* basic or regular identification, individual access too */
	p[4] = 0x00;                  /* More Follows: no */
	p[5] = 0x00;                  /* Next Object Id: 0 when none follows */
	if (code == MB_DEVID_INDIVIDUAL) {
		/* one object, which must exist */
		if (devid_len(objs, object_id) == 0)
			return MB_EX_ILLEGAL_ADDRESS;
		first = last = object_id;
	} else {
		/* the basic category is 0..2; regular (and extended, which komd answers as
		 * regular) 0..0x7F, of which komd has 0..5 */
		last = code == MB_DEVID_BASIC ? 2 : MB_DEVID_NOBJ - 1;
		first = object_id <= last && devid_len(objs, object_id) > 0 ? object_id : 0;
	}
	for (unsigned id = first; id <= last; id++) {
		size_t l = devid_len(objs, id);
		if (l == 0)
			continue;
		if (n + 2 + l > MB_MAX_PDU) {
			/* the rest in the next transaction, from this object */
			p[4] = 0xFF;
			p[5] = (uint8_t)id;
			break;
		}
		p[n] = (uint8_t)id;
		p[n + 1] = (uint8_t)l;
		memcpy(p + n + 2, objs[id], l);
		n += 2 + l;
		nobj++;
	}
	p[6] = (uint8_t)nobj;
	*adulen = mbap(buf, tid, unit, n);
	return 0;
}

int
mb_decode_response(const uint8_t *pdu, size_t len, const struct mb_sent *s, struct mb_response *rs,
    char *err, size_t errlen)
{
	const char *name = mb_fc_name(s->fc);
	size_t want;

	memset(rs, 0, sizeof(*rs));
	if (name == NULL) {
		codec_err(err, errlen, "function %u not supported", s->fc);
		return -1;
	}
	if (len == 0) {
		codec_err(err, errlen, "%s: empty response", name);
		return -1;
	}
	rs->fc = pdu[0] & 0x7f;
	if (rs->fc != s->fc) {
		codec_err(err, errlen, "%s: response has function code 0x%02x", name, pdu[0]);
		return -1;
	}
	if (pdu[0] & 0x80) {
		/* clause 7: exception function code, exception code */
		if (len != 2) {
			codec_err(err, errlen, "%s: exception response of %zu bytes, not 2", name, len);
			return -1;
		}
		if (pdu[1] == 0) {
			codec_err(err, errlen, "%s: exception code 0", name);
			return -1;
		}
		rs->exception = true;
		rs->excode = pdu[1];
		return 0;
	}
	switch (s->fc) {
	case MB_FC_READ_COILS:
	case MB_FC_READ_DISCRETE:
	case MB_FC_READ_HOLDING:
	case MB_FC_READ_INPUT:
	case MB_FC_READ_WRITE:
		/* 6.1 .. 6.4, 6.17: FC, byte count, data */
		want = is_bit_read(s->fc) ? ((size_t)s->count + 7) / 8 : 2 * (size_t)s->count;
		if (len < 2) {
			codec_err(err, errlen, "%s: response without byte count", name);
			return -1;
		}
		if (want == 0) {
			codec_err(err, errlen, "%s: a quantity of 0 has no valid response", name);
			return -1;
		}
		if (pdu[1] != want) {
			codec_err(err, errlen, "%s: byte count %u for a quantity of %u (expected %zu)", name,
			    pdu[1], s->count, want);
			return -1;
		}
		if (len != 2 + want) {
			codec_err(err, errlen, "%s: %zu data bytes, byte count says %zu", name, len - 2, want);
			return -1;
		}
		rs->data = pdu + 2;
		rs->data_len = want;
		return 0;
	case MB_FC_WRITE_COIL:
	case MB_FC_WRITE_REGISTER:
	case MB_FC_WRITE_COILS:
	case MB_FC_WRITE_REGISTERS:
		/* 6.5, 6.6: echo of address and value; 6.11, 6.12: address and quantity */
		if (len != 5) {
			codec_err(err, errlen, "%s: response of %zu bytes, not 5", name, len);
			return -1;
		}
		if (get_be16(pdu + 1) != s->addr) {
			codec_err(err, errlen, "%s: response for address %u, not %u", name, get_be16(pdu + 1), s->addr);
			return -1;
		}
		want = s->fc == MB_FC_WRITE_COIL || s->fc == MB_FC_WRITE_REGISTER ? s->value : s->count;
		if (get_be16(pdu + 3) != want) {
			codec_err(err, errlen, "%s: response echoes %s %u, not %zu", name,
			    s->fc <= MB_FC_WRITE_REGISTER ? "value" : "quantity", get_be16(pdu + 3), want);
			return -1;
		}
		return 0;
	case MB_FC_MASK_WRITE:
		/* 6.16: echo of the request */
		if (len != 7) {
			codec_err(err, errlen, "%s: response of %zu bytes, not 7", name, len);
			return -1;
		}
		if (get_be16(pdu + 1) != s->addr || get_be16(pdu + 3) != s->value || get_be16(pdu + 5) != s->or_mask) {
			codec_err(err, errlen, "%s: response does not echo the request", name);
			return -1;
		}
		return 0;
	case MB_FC_REPORT_SERVER_ID:
		/* 6.13: byte count, server id, run indicator status, additional data */
		if (len < 4 || pdu[1] < 2 || len != 2 + (size_t)pdu[1]) {
			codec_err(err, errlen, "%s: response of %zu bytes with byte count %u", name, len, len > 1 ? pdu[1] : 0);
			return -1;
		}
		rs->data = pdu + 2;
		rs->data_len = pdu[1];
		return 0;
	case MB_FC_MEI: {
		/* 6.21: MEI type 14, code, conformity level, More Follows, Next Object Id, Number
		 * Of Objects, then the objects, filling the PDU */
		size_t o = 7;
		unsigned i = 0;

		if (len < 7 || pdu[1] != MB_MEI_DEVICE_ID) {
			codec_err(err, errlen, "%s: not a read device identification response", name);
			return -1;
		}
		for (; i < pdu[6] && o + 2 <= len; i++)
			o += 2 + (size_t)pdu[o + 1];
		if (i != pdu[6] || o != len) {
			codec_err(err, errlen, "%s: %u objects do not fill %zu bytes", name, pdu[6], len);
			return -1;
		}
		rs->data = pdu + 1;
		rs->data_len = len - 1;
		return 0;
	}
	}
	codec_err(err, errlen, "function %u not supported", s->fc); /* not reached */
	return -1;
}

/* ---- traces ---- */

/* Text appended to a caller's buffer, cut (never overrun) when it is full. */
struct mb_text {
	char *buf;
	size_t size, off;
};

static void __attribute__((format(printf, 2, 3)))
text_add(struct mb_text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->off + 1 >= t->size)
		return;
	va_start(ap, fmt);
	n = vsnprintf(t->buf + t->off, t->size - t->off, fmt, ap);
	va_end(ap);
	if (n > 0)
		t->off = (size_t)n >= t->size - t->off ? t->size - 1 : t->off + (size_t)n;
}

/* At most 16 bytes in hex, then "...". */
static void
text_hex(struct mb_text *t, const uint8_t *d, size_t n)
{
	for (size_t i = 0; i < n && i < 16; i++)
		text_add(t, " %02x", d[i]);
	if (n > 16)
		text_add(t, " ...");
}

/* At most 16 big-endian registers in decimal, then "...". */
static void
text_regs(struct mb_text *t, const uint8_t *d, size_t nregs)
{
	for (size_t i = 0; i < nregs && i < 16; i++)
		text_add(t, " %u", get_be16(d + 2 * i));
	if (nregs > 16)
		text_add(t, " ...");
}

/* Bytes from the frame as a quoted string: printable ASCII as it is (but " and \), the rest
 * as \xNN, at most 48 of them. */
static void
text_quoted(struct mb_text *t, const uint8_t *d, size_t n)
{
	text_add(t, " \"");
	for (size_t i = 0; i < n && i < 48; i++) {
		if (d[i] >= 0x20 && d[i] < 0x7f && d[i] != '"' && d[i] != '\\')
			text_add(t, "%c", d[i]);
		else
			text_add(t, "\\x%02x", d[i]);
	}
	text_add(t, n > 48 ? "\"..." : "\"");
}

static const char *
devid_code_name(uint8_t code)
{
	static const char *const names[] = { NULL, "basic", "regular", "extended", "individual" };

	return code >= MB_DEVID_BASIC && code <= MB_DEVID_INDIVIDUAL ? names[code] : NULL;
}

/* The length a request PDU must have: its function's fixed part and its own byte count;
 * 0 when the PDU is too short to say (or the function has no fixed layout). */
static size_t
request_len(const uint8_t *pdu, size_t len)
{
	switch (pdu[0]) {
	case MB_FC_READ_COILS: case MB_FC_READ_DISCRETE: case MB_FC_READ_HOLDING: case MB_FC_READ_INPUT:
	case MB_FC_WRITE_COIL: case MB_FC_WRITE_REGISTER:
		return 5;
	case MB_FC_WRITE_COILS: case MB_FC_WRITE_REGISTERS:
		return len >= 6 ? 6 + (size_t)pdu[5] : 0;
	case MB_FC_MASK_WRITE:
		return 7;
	case MB_FC_READ_WRITE:
		return len >= 10 ? 10 + (size_t)pdu[9] : 0;
	case MB_FC_REPORT_SERVER_ID:
		return 1;
	case MB_FC_MEI:
		/* 6.21: MEI type 14, code, object id; other MEI types have layouts of their own */
		return len >= 2 && pdu[1] != MB_MEI_DEVICE_ID ? len : 4;
	}
	return len;
}

static void
describe_request(struct mb_text *t, const uint8_t *pdu, size_t len)
{
	const char *name = mb_fc_name(pdu[0]);
	uint16_t a = len >= 3 ? get_be16(pdu + 1) : 0, b = len >= 5 ? get_be16(pdu + 3) : 0;

	if (name == NULL) {
		text_add(t, "function %u", pdu[0]);
		if (len > 1) {
			text_add(t, " data");
			text_hex(t, pdu + 1, len - 1);
		}
		return;
	}
	if (pdu[0] == MB_FC_MEI && len >= 2 && pdu[1] != MB_MEI_DEVICE_ID) {
		text_add(t, "%s MEI %u", name, pdu[1]);
		return;
	}
	if (request_len(pdu, len) != len) {
		text_add(t, "%s (malformed, %zu bytes)", pdu[0] == MB_FC_MEI ? "read device identification" : name, len);
		return;
	}
	switch (pdu[0]) {
	case MB_FC_READ_COILS: case MB_FC_READ_DISCRETE: case MB_FC_READ_HOLDING: case MB_FC_READ_INPUT:
		text_add(t, "%s addr %u count %u", name, a, b);
		break;
	case MB_FC_WRITE_COIL:
		if (b == 0xFF00 || b == 0x0000)
			text_add(t, "%s addr %u %s", name, a, b ? "on" : "off");
		else
			text_add(t, "%s addr %u value 0x%04x", name, a, b);
		break;
	case MB_FC_WRITE_REGISTER:
		text_add(t, "%s addr %u value %u", name, a, b);
		break;
	case MB_FC_WRITE_COILS:
		text_add(t, "%s addr %u count %u:", name, a, b);
		text_hex(t, pdu + 6, len - 6);
		break;
	case MB_FC_WRITE_REGISTERS:
		text_add(t, "%s addr %u count %u:", name, a, b);
		text_regs(t, pdu + 6, (len - 6) / 2);
		break;
	case MB_FC_MASK_WRITE:
		text_add(t, "%s addr %u and 0x%04x or 0x%04x", name, a, b, get_be16(pdu + 5));
		break;
	case MB_FC_READ_WRITE:
		text_add(t, "%s read addr %u count %u write addr %u count %u:", name, a, b, get_be16(pdu + 5),
		    get_be16(pdu + 7));
		text_regs(t, pdu + 10, (len - 10) / 2);
		break;
	case MB_FC_REPORT_SERVER_ID:
		text_add(t, "%s", name);
		break;
	case MB_FC_MEI:
		if (devid_code_name(pdu[2]))
			text_add(t, "read device identification %s object %u", devid_code_name(pdu[2]), pdu[3]);
		else
			text_add(t, "read device identification code %u object %u", pdu[2], pdu[3]);
		break;
	}
}

/* 6.21: the objects of a device identification response (from its 8th byte); false when
 * they do not fill the PDU exactly as its Number Of Objects says. */
static bool
describe_objects(struct mb_text *t, const uint8_t *pdu, size_t len)
{
	size_t o = 7;

	for (unsigned i = 0; i < pdu[6]; i++) {
		if (o + 2 > len || o + 2 + pdu[o + 1] > len)
			return false;
		o += 2 + (size_t)pdu[o + 1];
	}
	if (o != len)
		return false;
	text_add(t, " objects %u:", pdu[6]);
	for (o = 7; o < len; o += 2 + (size_t)pdu[o + 1]) {
		text_add(t, " %u", pdu[o]);
		text_quoted(t, pdu + o + 2, pdu[o + 1]);
	}
	return true;
}

static void
describe_response(struct mb_text *t, const uint8_t *pdu, size_t len)
{
	uint8_t fc = pdu[0] & 0x7f;
	const char *name = mb_fc_name(fc);
	char unknown[16];
	size_t want = len;

	if (name == NULL) {
		snprintf(unknown, sizeof(unknown), "function %u", fc);
		name = unknown;
	}
	if (pdu[0] & 0x80) {
		/* clause 7 */
		if (len != 2)
			text_add(t, "%s exception (malformed, %zu bytes)", name, len);
		else
			text_add(t, "%s exception %u (%s)", name, pdu[1], mb_exception_name(pdu[1]));
		return;
	}
	switch (fc) {
	case MB_FC_READ_COILS: case MB_FC_READ_DISCRETE: case MB_FC_READ_HOLDING: case MB_FC_READ_INPUT:
	case MB_FC_READ_WRITE: case MB_FC_REPORT_SERVER_ID:
		want = len >= 2 ? 2 + (size_t)pdu[1] : 0;
		break;
	case MB_FC_WRITE_COIL: case MB_FC_WRITE_REGISTER: case MB_FC_WRITE_COILS: case MB_FC_WRITE_REGISTERS:
		want = 5;
		break;
	case MB_FC_MASK_WRITE:
		want = 7;
		break;
	case MB_FC_MEI:
		if (len < 2)
			want = 0;
		else if (pdu[1] == MB_MEI_DEVICE_ID) {
			name = "read device identification";
			want = len >= 7 ? len : 0;
		}
		break;
	}
	if (want != len || ((is_reg_read(fc) || fc == MB_FC_READ_WRITE) && pdu[1] % 2) ||
	    (fc == MB_FC_REPORT_SERVER_ID && pdu[1] < 2)) {
		text_add(t, "%s reply (malformed, %zu bytes)", name, len);
		return;
	}
	switch (fc) {
	case MB_FC_READ_COILS: case MB_FC_READ_DISCRETE:
		text_add(t, "%s reply: %u byte%s", name, pdu[1], pdu[1] == 1 ? "" : "s");
		text_hex(t, pdu + 2, pdu[1]);
		break;
	case MB_FC_READ_HOLDING: case MB_FC_READ_INPUT: case MB_FC_READ_WRITE:
		text_add(t, "%s reply:", name);
		text_regs(t, pdu + 2, pdu[1] / 2u);
		break;
	case MB_FC_WRITE_COIL:
		if (get_be16(pdu + 3) == 0xFF00 || get_be16(pdu + 3) == 0)
			text_add(t, "%s reply addr %u %s", name, get_be16(pdu + 1), get_be16(pdu + 3) ? "on" : "off");
		else
			text_add(t, "%s reply addr %u value 0x%04x", name, get_be16(pdu + 1), get_be16(pdu + 3));
		break;
	case MB_FC_WRITE_REGISTER:
		text_add(t, "%s reply addr %u value %u", name, get_be16(pdu + 1), get_be16(pdu + 3));
		break;
	case MB_FC_WRITE_COILS: case MB_FC_WRITE_REGISTERS:
		text_add(t, "%s reply addr %u count %u", name, get_be16(pdu + 1), get_be16(pdu + 3));
		break;
	case MB_FC_MASK_WRITE:
		text_add(t, "%s reply addr %u and 0x%04x or 0x%04x", name, get_be16(pdu + 1), get_be16(pdu + 3),
		    get_be16(pdu + 5));
		break;
	case MB_FC_REPORT_SERVER_ID:
		/* 6.13: server id, run indicator status (0x00 off, 0xFF on), additional data */
		text_add(t, "%s reply: server id %u run ", name, pdu[2]);
		if (pdu[3] == 0xFF || pdu[3] == 0x00)
			text_add(t, "%s", pdu[3] ? "on" : "off");
		else
			text_add(t, "0x%02x", pdu[3]);
		if (len > 4)
			text_quoted(t, pdu + 4, len - 4);
		break;
	case MB_FC_MEI:
		if (pdu[1] != MB_MEI_DEVICE_ID) {
			text_add(t, "%s reply: MEI %u", name, pdu[1]);
			text_hex(t, pdu + 2, len - 2);
			break;
		}
		/* 6.21: code, conformity level, More Follows, Next Object Id, then the objects */
		text_add(t, "%s reply: ", name);
		if (devid_code_name(pdu[2]))
			text_add(t, "%s", devid_code_name(pdu[2]));
		else
			text_add(t, "code %u", pdu[2]);
		text_add(t, " conformity 0x%02x more 0x%02x next %u", pdu[3], pdu[4], pdu[5]);
		if (!describe_objects(t, pdu, len))
			text_add(t, " (malformed objects, %zu bytes)", len);
		break;
	default:
		text_add(t, "%s reply:", name);
		text_hex(t, pdu + 1, len - 1);
	}
}

char *
mb_describe(const uint8_t *pdu, size_t len, bool response, char *buf, size_t buflen)
{
	struct mb_text t = { .buf = buf, .size = buflen, .off = 0 };

	if (buflen == 0)
		return buf;
	buf[0] = '\0';
	if (len == 0)
		text_add(&t, "(empty PDU)");
	else if (response)
		describe_response(&t, pdu, len);
	else
		describe_request(&t, pdu, len);
	return buf;
}

bool
mb_get_bit(const uint8_t *packed, unsigned i)
{
	return packed[i / 8] >> (i % 8) & 1;
}

uint16_t
mb_get_reg(const uint8_t *data, unsigned i)
{
	return get_be16(data + 2 * (size_t)i);
}

/* ---- tag addresses ---- */

/* Type prefixes, longest first where one is the start of another. */
static const struct {
	const char *prefix;
	enum mb_type type;
	uint8_t nregs;
} mb_types[] = {
	{ "U", MB_T_U16, 1 }, { "I", MB_T_I16, 1 },
	{ "Ll", MB_T_U32L, 2 }, { "L", MB_T_U32, 2 },
	{ "Sl", MB_T_I32L, 2 }, { "S", MB_T_I32, 2 },
	{ "f", MB_T_F32, 2 }, { "F", MB_T_F32S, 2 },
	{ "Ql", MB_T_I64L, 4 }, { "Q", MB_T_I64, 4 },
	{ "Dl", MB_T_F64L, 4 }, { "D", MB_T_F64, 4 },
};
#define NTYPES (sizeof(mb_types) / sizeof(mb_types[0]))

/* Decimal digits at *p, capped so that a long run cannot overflow. -1 if none. */
static long
parse_dec(const char **p)
{
	const char *s = *p;
	long v = 0;

	if (*s < '0' || *s > '9')
		return -1;
	while (*s >= '0' && *s <= '9') {
		if (v < 10000000)
			v = v * 10 + (*s - '0');
		s++;
	}
	*p = s;
	return v;
}

int
mb_parse_addr(const char *s, bool one_based, struct mb_addr *a, char *err, size_t errlen)
{
	const char *p = s, *digits;
	long n, lo = one_based ? 1 : 0, hi = one_based ? 65536 : 65535;
	bool typed = false;

	memset(a, 0, sizeof(*a));
	a->bit = -1;
	a->type = MB_T_U16;
	a->nregs = 1;
	if (strncmp(p, "%IGNORE", 7) == 0) {
		a->ignore = true;
		p += 7;
	}
	if (*p == '\0') {
		codec_err(err, errlen, "empty address");
		return -1;
	}
	if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')) {
		size_t i;

		for (i = 0; i < NTYPES; i++) {
			size_t l = strlen(mb_types[i].prefix);

			if (strncmp(p, mb_types[i].prefix, l) == 0) {
				a->type = mb_types[i].type;
				a->nregs = mb_types[i].nregs;
				p += l;
				break;
			}
		}
		if (i == NTYPES) {
			codec_err(err, errlen, "unknown type '%c'", *p);
			return -1;
		}
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')) {
			codec_err(err, errlen, "unknown type '%.*s%c'", (int)strlen(mb_types[i].prefix),
			    mb_types[i].prefix, *p);
			return -1;
		}
		typed = true;
	}
	if (*p < '1' || *p > '4' || p[1] != '.') {
		codec_err(err, errlen, "function must be 1..4");
		return -1;
	}
	a->fn = (uint8_t)(*p - '0');
	p += 2;
	digits = p;
	if ((n = parse_dec(&p)) < 0) {
		codec_err(err, errlen, "missing address");
		return -1;
	}
	if (n < lo || n > hi) {
		/* quote the digits as written: a long run was capped while parsing */
		codec_err(err, errlen, "address %.*s out of range %ld..%ld", (int)(p - digits > 20 ? 20 : p - digits), digits, lo, hi);
		return -1;
	}
	a->addr = (uint16_t)(n - lo);
	if (*p == '.') {
		digits = ++p;
		if ((n = parse_dec(&p)) < 0) {
			codec_err(err, errlen, "missing bit");
			return -1;
		}
		if (n > 15) {
			codec_err(err, errlen, "bit %.*s out of range 0..15", (int)(p - digits > 20 ? 20 : p - digits), digits);
			return -1;
		}
		a->bit = (int)n;
	}
	if (*p != '\0') {
		codec_err(err, errlen, "unexpected '%c' in address", *p);
		return -1;
	}
	if (a->fn <= 2) {
		if (a->bit >= 0) {
			codec_err(err, errlen, "a bit needs function 3 or 4");
			return -1;
		}
		if (typed) {
			codec_err(err, errlen, "a type needs function 3 or 4");
			return -1;
		}
		a->type = MB_T_BIT;
		a->nregs = 0;
		return 0;
	}
	if (a->bit >= 0) {
		if (a->type != MB_T_U16) {
			codec_err(err, errlen, "a bit of a register allows no type but U");
			return -1;
		}
		a->type = MB_T_BIT;
		return 0;
	}
	if ((uint32_t)a->addr + a->nregs - 1 > 65535) {
		codec_err(err, errlen, "value spans past register %ld", hi);
		return -1;
	}
	return 0;
}

char *
mb_format_addr(const struct mb_addr *a, bool one_based, char *buf, size_t len)
{
	const char *prefix = "";
	unsigned long addr = (unsigned long)a->addr + (one_based ? 1 : 0);

	if (a->fn >= 3 && a->type != MB_T_BIT && a->type != MB_T_U16)
		for (size_t i = 0; i < NTYPES; i++)
			if (mb_types[i].type == a->type)
				prefix = mb_types[i].prefix;
	if (a->bit >= 0)
		snprintf(buf, len, "%s%s%u.%lu.%d", a->ignore ? "%IGNORE" : "", prefix, a->fn, addr, a->bit);
	else
		snprintf(buf, len, "%s%s%u.%lu", a->ignore ? "%IGNORE" : "", prefix, a->fn, addr);
	return buf;
}

static bool
type_is_float(enum mb_type t)
{
	return t == MB_T_F32 || t == MB_T_F32S || t == MB_T_F64 || t == MB_T_F64L;
}

bool
mb_type_fits(const struct mb_addr *a, enum vtype vt)
{
	if (a->type == MB_T_BIT)
		return vt == VT_BOOL || vt == VT_INT;
	if (vt == VT_INT || vt == VT_FLOAT)
		return true;
	/* an integer register as a bool: nonzero is true */
	return vt == VT_BOOL && !type_is_float(a->type);
}

/* Registers to a raw 64-bit pattern: big word order puts the most significant word first
 * (4.2 applied to several registers, the de facto convention); the "l" types and F
 * have the least significant word first. */
static uint64_t
regs_to_raw(const uint16_t *regs, unsigned n, bool little)
{
	uint64_t raw = 0;

	for (unsigned i = 0; i < n; i++)
		raw = raw << 16 | regs[little ? n - 1 - i : i];
	return raw;
}

static void
raw_to_regs(uint64_t raw, uint16_t *regs, unsigned n, bool little)
{
	for (unsigned i = 0; i < n; i++)
		regs[little ? i : n - 1 - i] = (uint16_t)(raw >> (16 * i));
}

static bool
type_is_little(enum mb_type t)
{
	return t == MB_T_U32L || t == MB_T_I32L || t == MB_T_F32S || t == MB_T_I64L || t == MB_T_F64L;
}

static const char *
vt_name(enum vtype vt)
{
	static const char *const names[] = { VTYPE_NAME_LIST };

	return (unsigned)vt < sizeof(names) / sizeof(names[0]) ? names[vt] : "?";
}

static const char *
type_name(enum mb_type t)
{
	static const char *const names[] = {
		[MB_T_BIT] = "bit", [MB_T_U16] = "uint16", [MB_T_I16] = "int16",
		[MB_T_U32] = "uint32", [MB_T_U32L] = "uint32", [MB_T_I32] = "int32",
		[MB_T_I32L] = "int32", [MB_T_F32] = "float32", [MB_T_F32S] = "float32",
		[MB_T_I64] = "int64", [MB_T_I64L] = "int64", [MB_T_F64] = "float64",
		[MB_T_F64L] = "float64",
	};

	return (unsigned)t < sizeof(names) / sizeof(names[0]) ? names[t] : "?";
}

int
mb_regs_to_value(const struct mb_addr *a, const uint16_t *regs, enum vtype vt, struct value *v, char *err,
    size_t errlen)
{
	uint64_t raw;
	double d;
	int64_t i;
	bool isf = false;

	if (!mb_type_fits(a, vt)) {
		codec_err(err, errlen, "a %s register cannot be a %s", type_name(a->type), vt_name(vt));
		return -1;
	}
	if (a->type == MB_T_BIT) {
		if (a->nregs != 1 || a->bit < 0 || a->bit > 15) {
			codec_err(err, errlen, "a coil or discrete input has no register");
			return -1;
		}
		v->type = vt;
		v->i = regs[0] >> a->bit & 1;
		return 0;
	}
	raw = regs_to_raw(regs, a->nregs, type_is_little(a->type));
	switch (a->type) {
	case MB_T_U16: i = (int64_t)raw; break;
	case MB_T_I16: i = (int16_t)raw; break;
	case MB_T_U32: case MB_T_U32L: i = (int64_t)raw; break;
	case MB_T_I32: case MB_T_I32L: i = (int32_t)(uint32_t)raw; break;
	case MB_T_I64: case MB_T_I64L:
		/* two's complement without implementation-defined conversion */
		i = raw <= INT64_MAX ? (int64_t)raw : -(int64_t)(~raw) - 1;
		break;
	case MB_T_F32: case MB_T_F32S: {
		uint32_t u = (uint32_t)raw;
		float f;

		memcpy(&f, &u, sizeof(f));
		d = f;
		isf = true;
		i = 0;
		break;
	}
	default: /* MB_T_F64, MB_T_F64L */
		memcpy(&d, &raw, sizeof(d));
		isf = true;
		i = 0;
		break;
	}
	v->type = vt;
	if (vt == VT_FLOAT) {
		v->f = isf ? d : (double)i;
		return 0;
	}
	if (vt == VT_BOOL) {
		v->i = i != 0;
		return 0;
	}
	if (isf) {
		if (isnan(d)) {
			codec_err(err, errlen, "NaN is not an int");
			return -1;
		}
		d = round(d);
		/* -2^63 is exact in a double; 2^63 is the first value past INT64_MAX */
		if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0)) {
			codec_err(err, errlen, "%g out of range for an int", d);
			return -1;
		}
		i = (int64_t)d;
	}
	v->i = i;
	return 0;
}

int
mb_value_to_regs(const struct mb_addr *a, const struct value *v, uint16_t *regs, char *err, size_t errlen)
{
	int64_t i = 0, lo, hi;
	double d = 0;
	uint64_t raw;

	if (a->type == MB_T_BIT) {
		codec_err(err, errlen, "a bit is not written as registers");
		return -1;
	}
	if (!mb_type_fits(a, v->type)) {
		codec_err(err, errlen, "a %s register cannot be a %s", type_name(a->type), vt_name(v->type));
		return -1;
	}
	if (type_is_float(a->type)) {
		d = v->type == VT_FLOAT ? v->f : (double)v->i;
		if (a->type == MB_T_F32 || a->type == MB_T_F32S) {
			float f;
			uint32_t u;

			/* NaN and the infinities carry over; a finite value must stay finite */
			if (isfinite(d) && (d > FLT_MAX || d < -FLT_MAX)) {
				codec_err(err, errlen, "%g out of range for float32", d);
				return -1;
			}
			f = (float)d;
			memcpy(&u, &f, sizeof(u));
			raw = u;
		} else
			memcpy(&raw, &d, sizeof(raw));
		raw_to_regs(raw, regs, a->nregs, type_is_little(a->type));
		return 0;
	}
	switch (a->type) {
	case MB_T_U16: lo = 0; hi = UINT16_MAX; break;
	case MB_T_I16: lo = INT16_MIN; hi = INT16_MAX; break;
	case MB_T_U32: case MB_T_U32L: lo = 0; hi = UINT32_MAX; break;
	case MB_T_I32: case MB_T_I32L: lo = INT32_MIN; hi = INT32_MAX; break;
	default: lo = INT64_MIN; hi = INT64_MAX; break;
	}
	if (v->type == VT_FLOAT) {
		if (isnan(v->f)) {
			codec_err(err, errlen, "NaN does not fit %s", type_name(a->type));
			return -1;
		}
		d = round(v->f);
		/* compare in double; (double)hi may round up, hence < for int64 */
		if (d < (double)lo || (hi == INT64_MAX ? d >= 9223372036854775808.0 : d > (double)hi)) {
			codec_err(err, errlen, "%g out of range for %s", v->f, type_name(a->type));
			return -1;
		}
		i = (int64_t)d;
	} else {
		i = v->i;
		if (i < lo || i > hi) {
			codec_err(err, errlen, "%lld out of range for %s", (long long)i, type_name(a->type));
			return -1;
		}
	}
	raw = (uint64_t)i;
	raw_to_regs(raw, regs, a->nregs, type_is_little(a->type));
	return 0;
}

int
mb_value_to_bit(const struct value *v, char *err, size_t errlen)
{
	if ((v->type == VT_BOOL || v->type == VT_INT) && (v->i == 0 || v->i == 1))
		return (int)v->i;
	if (v->type == VT_INT)
		codec_err(err, errlen, "%lld is not a bit (0 or 1)", (long long)v->i);
	else
		codec_err(err, errlen, "a %s is not a bit", vt_name(v->type));
	return -1;
}
