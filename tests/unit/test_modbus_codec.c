/* test_modbus_codec.c: the Modbus codec against the byte vectors of the MODBUS Application
 * Protocol Specification V1.1b3 (the examples of clauses 6.1 .. 6.17 and 7), MBAP framing
 * (TCP implementation guide 3.1.3), request and response checks, tag addresses and
 * register <-> value conversions. Identification and traces: test_modbus_id.c. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "modbus_codec.h"

#include "mb_adu.h"

/* Unpack count bits of packed data into one byte each (to feed the encoders). */
static void
unpack(const uint8_t *packed, unsigned count, uint8_t *bits)
{
	for (unsigned i = 0; i < count; i++)
		bits[i] = mb_get_bit(packed, i);
}

static void
test_names(void)
{
	CHECK_STR(mb_exception_name(2), "illegal data address");
	CHECK_STR(mb_exception_name(0x0B), "gateway target device failed to respond");
	CHECK_STR(mb_exception_name(7), "unknown exception");
	CHECK_STR(mb_fc_name(3), "read holding registers");
	CHECK_STR(mb_fc_name(23), "read/write multiple registers");
	CHECK(mb_fc_name(7) == NULL);
	CHECK(mb_fc_name(0) == NULL);
}

/* 6.1 .. 6.4: the read examples, request and response, both ways. */
static void
test_reads(void)
{
	static const struct {
		uint8_t fc;
		uint16_t addr, count;
		uint8_t req[5];
		uint8_t rsp[9];
		size_t rsp_len;
	} v[] = {
		/* 6.1: coils 20..38 */
		{ 1, 0x13, 0x13, { 0x01, 0x00, 0x13, 0x00, 0x13 }, { 0x01, 0x03, 0xCD, 0x6B, 0x05 }, 5 },
		/* 6.2: discrete inputs 197..218 */
		{ 2, 0xC4, 0x16, { 0x02, 0x00, 0xC4, 0x00, 0x16 }, { 0x02, 0x03, 0xAC, 0xDB, 0x35 }, 5 },
		/* 6.3: registers 108..110 */
		{ 3, 0x6B, 3, { 0x03, 0x00, 0x6B, 0x00, 0x03 },
		  { 0x03, 0x06, 0x02, 0x2B, 0x00, 0x00, 0x00, 0x64 }, 8 },
		/* 6.4: input register 9 */
		{ 4, 0x08, 1, { 0x04, 0x00, 0x08, 0x00, 0x01 }, { 0x04, 0x02, 0x00, 0x0A }, 4 },
	};
	uint8_t buf[MB_MAX_ADU], bits[64];
	uint16_t regs[8];
	struct mb_request rq;
	struct mb_response rs;
	struct mb_sent s;
	char err[128];

	for (size_t k = 0; k < sizeof(v) / sizeof(v[0]); k++) {
		size_t n = mb_encode_read(buf, TID, UNIT, v[k].fc, v[k].addr, v[k].count);

		CHECK(adu_is(buf, n, v[k].req, 5));
		CHECK_INT(mb_decode_request(v[k].req, 5, &rq), 0);
		CHECK_INT(rq.fc, v[k].fc);
		CHECK_INT(rq.addr, v[k].addr);
		CHECK_INT(rq.count, v[k].count);

		s = (struct mb_sent){ .fc = v[k].fc, .addr = v[k].addr, .count = v[k].count };
		CHECK_INT(mb_decode_response(v[k].rsp, v[k].rsp_len, &s, &rs, err, sizeof(err)), 0);
		CHECK_INT(rs.fc, v[k].fc);
		CHECK(!rs.exception);
		CHECK(rs.data == v[k].rsp + 2);
		CHECK_INT(rs.data_len, v[k].rsp_len - 2);

		if (v[k].fc <= 2) {
			unpack(rs.data, v[k].count, bits);
			n = mb_encode_read_bits_response(buf, TID, UNIT, v[k].fc, bits, v[k].count);
		} else {
			for (unsigned i = 0; i < v[k].count; i++)
				regs[i] = mb_get_reg(rs.data, i);
			n = mb_encode_read_regs_response(buf, TID, UNIT, v[k].fc, regs, v[k].count);
		}
		CHECK(adu_is(buf, n, v[k].rsp, v[k].rsp_len));
	}
	/* 6.1 text: coils 27..20 are ON-ON-OFF-OFF-ON-ON-OFF-ON (0xCD) */
	{
		static const uint8_t d[] = { 0xCD, 0x6B, 0x05 };

		CHECK(mb_get_bit(d, 0) && !mb_get_bit(d, 1) && mb_get_bit(d, 2) && mb_get_bit(d, 7));
		CHECK(mb_get_bit(d, 16) && !mb_get_bit(d, 17) && mb_get_bit(d, 18));
	}
	/* 6.3 text: register 108 = 0x022B (555), 109 = 0, 110 = 0x64 (100) */
	{
		static const uint8_t d[] = { 0x02, 0x2B, 0x00, 0x00, 0x00, 0x64 };

		CHECK_INT(mb_get_reg(d, 0), 555);
		CHECK_INT(mb_get_reg(d, 2), 100);
	}
	/* encoder limits */
	CHECK_INT(mb_encode_read(buf, TID, UNIT, 1, 0, 2000), 12);
	CHECK_INT(mb_encode_read(buf, TID, UNIT, 1, 0, 2001), 0);
	CHECK_INT(mb_encode_read(buf, TID, UNIT, 3, 0, 125), 12);
	CHECK_INT(mb_encode_read(buf, TID, UNIT, 3, 0, 126), 0);
	CHECK_INT(mb_encode_read(buf, TID, UNIT, 4, 0, 0), 0);
	CHECK_INT(mb_encode_read(buf, TID, UNIT, 5, 0, 1), 0);
	CHECK_INT(mb_encode_read(buf, TID, UNIT, 3, 65535, 1), 12);
	CHECK_INT(mb_encode_read(buf, TID, UNIT, 3, 65535, 2), 0);
	CHECK_INT(mb_encode_read_regs_response(buf, TID, UNIT, 3, regs, 0), 0);
	CHECK_INT(mb_encode_read_regs_response(buf, TID, UNIT, 5, regs, 1), 0);
	CHECK_INT(mb_encode_read_bits_response(buf, TID, UNIT, 3, bits, 1), 0);
	/* the largest responses fit the ADU: 2000 bits (250 bytes), 125 registers */
	{
		uint8_t many[2000];
		uint16_t r[125];

		memset(many, 1, sizeof(many));
		memset(r, 0xAB, sizeof(r));
		CHECK_INT(mb_encode_read_bits_response(buf, TID, UNIT, 1, many, 2000), 7 + 2 + 250);
		CHECK_INT(buf[8], 250);
		CHECK_INT(buf[7 + 2 + 249], 0xFF);
		CHECK_INT(mb_encode_read_regs_response(buf, TID, UNIT, 4, r, 125), MB_MAX_ADU - 1);
		/* a partly filled last byte is padded with zeros (6.1) */
		CHECK_INT(mb_encode_read_bits_response(buf, TID, UNIT, 2, many, 9), 7 + 2 + 2);
		CHECK_INT(buf[10], 0x01);
	}
}

/* 6.5, 6.6, 6.11, 6.12, 6.16, 6.17: the write examples. */
static void
test_writes(void)
{
	static const uint8_t fc5[] = { 0x05, 0x00, 0xAC, 0xFF, 0x00 };
	static const uint8_t fc6[] = { 0x06, 0x00, 0x01, 0x00, 0x03 };
	static const uint8_t fc15[] = { 0x0F, 0x00, 0x13, 0x00, 0x0A, 0x02, 0xCD, 0x01 };
	static const uint8_t fc15r[] = { 0x0F, 0x00, 0x13, 0x00, 0x0A };
	static const uint8_t fc16[] = { 0x10, 0x00, 0x01, 0x00, 0x02, 0x04, 0x00, 0x0A, 0x01, 0x02 };
	static const uint8_t fc16r[] = { 0x10, 0x00, 0x01, 0x00, 0x02 };
	static const uint8_t fc22[] = { 0x16, 0x00, 0x04, 0x00, 0xF2, 0x00, 0x25 };
	static const uint8_t fc23[] = { 0x17, 0x00, 0x03, 0x00, 0x06, 0x00, 0x0E, 0x00, 0x03, 0x06,
		0x00, 0xFF, 0x00, 0xFF, 0x00, 0xFF };
	static const uint8_t fc23r[] = { 0x17, 0x0C, 0x00, 0xFE, 0x0A, 0xCD, 0x00, 0x01, 0x00, 0x03,
		0x00, 0x0D, 0x00, 0xFF };
	uint8_t buf[MB_MAX_ADU], bits[16];
	uint16_t regs[8];
	struct mb_request rq;
	struct mb_response rs;
	struct mb_sent s;
	char err[128];
	size_t n;

	/* 6.5: coil 173 ON; the response is an echo */
	n = mb_encode_write_coil(buf, TID, UNIT, 0xAC, true);
	CHECK(adu_is(buf, n, fc5, sizeof(fc5)));
	CHECK_INT(mb_decode_request(fc5, sizeof(fc5), &rq), 0);
	CHECK(rq.fc == 5 && rq.addr == 0xAC && rq.value == 0xFF00 && rq.count == 1);
	n = mb_encode_write_response(buf, TID, UNIT, 5, 0xAC, 0xFF00);
	CHECK(adu_is(buf, n, fc5, sizeof(fc5)));
	s = (struct mb_sent){ .fc = 5, .addr = 0xAC, .value = 0xFF00 };
	CHECK_INT(mb_decode_response(fc5, sizeof(fc5), &s, &rs, err, sizeof(err)), 0);
	CHECK(rs.data == NULL && rs.data_len == 0);
	n = mb_encode_write_coil(buf, TID, UNIT, 0xAC, false);
	CHECK_INT(n, 12);
	CHECK(buf[10] == 0 && buf[11] == 0);
	CHECK_INT(mb_encode_write_response(buf, TID, UNIT, 5, 0xAC, 0x0001), 0);

	/* 6.6: register 2 = 3 */
	n = mb_encode_write_register(buf, TID, UNIT, 1, 3);
	CHECK(adu_is(buf, n, fc6, sizeof(fc6)));
	CHECK_INT(mb_decode_request(fc6, sizeof(fc6), &rq), 0);
	CHECK(rq.fc == 6 && rq.addr == 1 && rq.value == 3 && rq.count == 1);
	n = mb_encode_write_response(buf, TID, UNIT, 6, 1, 3);
	CHECK(adu_is(buf, n, fc6, sizeof(fc6)));
	s = (struct mb_sent){ .fc = 6, .addr = 1, .value = 3 };
	CHECK_INT(mb_decode_response(fc6, sizeof(fc6), &s, &rs, err, sizeof(err)), 0);

	/* 6.11: 10 coils from 20: CD 01 */
	unpack(fc15 + 6, 10, bits);
	n = mb_encode_write_coils(buf, TID, UNIT, 0x13, bits, 10);
	CHECK(adu_is(buf, n, fc15, sizeof(fc15)));
	CHECK_INT(mb_decode_request(fc15, sizeof(fc15), &rq), 0);
	CHECK(rq.fc == 15 && rq.addr == 0x13 && rq.count == 10);
	CHECK(rq.data == fc15 + 6 && rq.data_len == 2);
	n = mb_encode_write_response(buf, TID, UNIT, 15, 0x13, 10);
	CHECK(adu_is(buf, n, fc15r, sizeof(fc15r)));
	s = (struct mb_sent){ .fc = 15, .addr = 0x13, .count = 10 };
	CHECK_INT(mb_decode_response(fc15r, sizeof(fc15r), &s, &rs, err, sizeof(err)), 0);
	CHECK_INT(mb_encode_write_coils(buf, TID, UNIT, 0, bits, 0), 0);
	CHECK_INT(mb_encode_write_coils(buf, TID, UNIT, 0, NULL, 1969), 0);
	CHECK_INT(mb_encode_write_coils(buf, TID, UNIT, 65530, bits, 7), 0);

	/* 6.12: registers 2, 3 = 0x000A, 0x0102 */
	regs[0] = 0x000A;
	regs[1] = 0x0102;
	n = mb_encode_write_registers(buf, TID, UNIT, 1, regs, 2);
	CHECK(adu_is(buf, n, fc16, sizeof(fc16)));
	CHECK_INT(mb_decode_request(fc16, sizeof(fc16), &rq), 0);
	CHECK(rq.fc == 16 && rq.addr == 1 && rq.count == 2 && rq.data == fc16 + 6 && rq.data_len == 4);
	CHECK_INT(mb_get_reg(rq.data, 1), 0x0102);
	n = mb_encode_write_response(buf, TID, UNIT, 16, 1, 2);
	CHECK(adu_is(buf, n, fc16r, sizeof(fc16r)));
	s = (struct mb_sent){ .fc = 16, .addr = 1, .count = 2 };
	CHECK_INT(mb_decode_response(fc16r, sizeof(fc16r), &s, &rs, err, sizeof(err)), 0);
	CHECK_INT(mb_encode_write_registers(buf, TID, UNIT, 0, regs, 124), 0);
	CHECK_INT(mb_encode_write_registers(buf, TID, UNIT, 0, regs, 0), 0);
	CHECK_INT(mb_encode_write_response(buf, TID, UNIT, 16, 0, 124), 0);
	CHECK_INT(mb_encode_write_response(buf, TID, UNIT, 3, 0, 1), 0);

	/* 6.16: register 5, AND 0x00F2, OR 0x0025; the response is an echo */
	n = mb_encode_mask_write(buf, TID, UNIT, 4, 0xF2, 0x25);
	CHECK(adu_is(buf, n, fc22, sizeof(fc22)));
	CHECK_INT(mb_decode_request(fc22, sizeof(fc22), &rq), 0);
	CHECK(rq.fc == 22 && rq.addr == 4 && rq.and_mask == 0xF2 && rq.or_mask == 0x25);
	n = mb_encode_mask_write_response(buf, TID, UNIT, 4, 0xF2, 0x25);
	CHECK(adu_is(buf, n, fc22, sizeof(fc22)));
	s = (struct mb_sent){ .fc = 22, .addr = 4, .value = 0xF2, .or_mask = 0x25 };
	CHECK_INT(mb_decode_response(fc22, sizeof(fc22), &s, &rs, err, sizeof(err)), 0);

	/* 6.17: read 6 from 4, write 3 (0x00FF each) from 15 */
	regs[0] = regs[1] = regs[2] = 0x00FF;
	n = mb_encode_read_write(buf, TID, UNIT, 3, 6, 0x0E, regs, 3);
	CHECK(adu_is(buf, n, fc23, sizeof(fc23)));
	CHECK_INT(mb_decode_request(fc23, sizeof(fc23), &rq), 0);
	CHECK(rq.fc == 23 && rq.addr == 3 && rq.count == 6 && rq.waddr == 0x0E && rq.wcount == 3);
	CHECK(rq.data == fc23 + 10 && rq.data_len == 6);
	s = (struct mb_sent){ .fc = 23, .addr = 3, .count = 6 };
	CHECK_INT(mb_decode_response(fc23r, sizeof(fc23r), &s, &rs, err, sizeof(err)), 0);
	CHECK(rs.data == fc23r + 2 && rs.data_len == 12);
	for (unsigned i = 0; i < 6; i++)
		regs[i] = mb_get_reg(rs.data, i);
	CHECK(regs[0] == 0x00FE && regs[1] == 0x0ACD && regs[5] == 0x00FF);
	n = mb_encode_read_regs_response(buf, TID, UNIT, 23, regs, 6);
	CHECK(adu_is(buf, n, fc23r, sizeof(fc23r)));
	CHECK_INT(mb_encode_read_write(buf, TID, UNIT, 0, 126, 0, regs, 1), 0);
	CHECK_INT(mb_encode_read_write(buf, TID, UNIT, 0, 1, 0, regs, 122), 0);
	CHECK_INT(mb_encode_read_write(buf, TID, UNIT, 0, 0, 0, regs, 1), 0);
	CHECK_INT(mb_encode_read_write(buf, TID, UNIT, 0, 1, 65535, regs, 2), 0);
}

/* Clause 7: request 01 04 A1 00 01 (coil 1186, beyond the device) -> 81 02. */
static void
test_exception(void)
{
	static const uint8_t req[] = { 0x01, 0x04, 0xA1, 0x00, 0x01 };
	static const uint8_t rsp[] = { 0x81, 0x02 };
	uint8_t buf[MB_MAX_ADU];
	struct mb_request rq;
	struct mb_response rs;
	struct mb_sent s = { .fc = 1, .addr = 0x04A1, .count = 1 };
	char err[128];
	size_t n;

	CHECK_INT(mb_decode_request(req, sizeof(req), &rq), 0); /* the address is the device's business */
	n = mb_encode_exception(buf, TID, UNIT, 1, MB_EX_ILLEGAL_ADDRESS);
	CHECK(adu_is(buf, n, rsp, sizeof(rsp)));
	CHECK_INT(mb_decode_response(rsp, sizeof(rsp), &s, &rs, err, sizeof(err)), 0);
	CHECK(rs.exception && rs.excode == 2 && rs.fc == 1);
	CHECK_INT(mb_encode_exception(buf, TID, UNIT, 1, 0), 0);
	/* a request with function code 0 or 0x80..0xFF is answered too: 0x80 | fc */
	CHECK_INT(mb_encode_exception(buf, TID, UNIT, 0x81, 1), 9);
	CHECK(buf[7] == 0x81 && buf[8] == 1);
	CHECK_INT(mb_encode_exception(buf, TID, UNIT, 0, 1), 9);
	CHECK(buf[7] == 0x80 && buf[8] == 1);
	CHECK_INT(mb_encode_exception(buf, TID, UNIT, 0xFF, 1), 9);
	CHECK(buf[7] == 0xFF && buf[8] == 1);
	n = mb_encode_exception(buf, TID, UNIT, 0x2B, MB_EX_ILLEGAL_FUNCTION);
	CHECK_INT(n, 9);
	CHECK(buf[7] == 0xAB && buf[8] == 1);
}

/* TCP implementation guide 3.1.3: MBAP header, length = unit id + PDU. */
static void
test_frame(void)
{
	uint8_t buf[2 * MB_MAX_ADU + 10];
	struct mb_mbap h;
	size_t alen;
	char err[128];
	static const uint8_t adu[] = { 0x00, 0x01, 0x00, 0x00, 0x00, 0x06, 0xFF,
		0x03, 0x00, 0x6B, 0x00, 0x03 };

	for (size_t i = 0; i < sizeof(adu); i++)
		CHECK_INT(mb_frame(adu, i, &h, &alen, err, sizeof(err)), 0);
	CHECK_INT(mb_frame(adu, sizeof(adu), &h, &alen, err, sizeof(err)), 1);
	CHECK(h.tid == 1 && h.pid == 0 && h.len == 6 && h.unit == 0xFF && alen == sizeof(adu));

	/* two ADUs back to back: the first is framed alone */
	memcpy(buf, adu, sizeof(adu));
	memcpy(buf + sizeof(adu), adu, sizeof(adu));
	buf[sizeof(adu) + 1] = 2;
	CHECK_INT(mb_frame(buf, 2 * sizeof(adu), &h, &alen, err, sizeof(err)), 1);
	CHECK_INT(alen, sizeof(adu));
	CHECK_INT(mb_frame(buf + alen, sizeof(adu) - 1, &h, &alen, err, sizeof(err)), 0);
	CHECK_INT(mb_frame(buf + sizeof(adu), sizeof(adu), &h, &alen, err, sizeof(err)), 1);
	CHECK_INT(h.tid, 2);

	/* protocol id 1: refused as soon as it is in */
	memcpy(buf, adu, sizeof(adu));
	buf[3] = 1;
	CHECK_INT(mb_frame(buf, 3, &h, &alen, err, sizeof(err)), 0);
	CHECK_INT(mb_frame(buf, 4, &h, &alen, err, sizeof(err)), -1);
	CHECK_STR(err, "protocol id 1, not 0 (Modbus)");
	CHECK_INT(mb_frame(buf, sizeof(adu), &h, &alen, err, sizeof(err)), -1);

	/* length 0, 1 (no PDU), 255 (ADU of 261) */
	memcpy(buf, adu, sizeof(adu));
	buf[5] = 0;
	CHECK_INT(mb_frame(buf, 6, &h, &alen, err, sizeof(err)), -1);
	CHECK_STR(err, "MBAP length 0 out of range 2..254");
	buf[5] = 1;
	CHECK_INT(mb_frame(buf, sizeof(adu), &h, &alen, err, sizeof(err)), -1);
	CHECK_STR(err, "MBAP length 1 out of range 2..254");
	buf[5] = 255;
	CHECK_INT(mb_frame(buf, 6, &h, &alen, err, sizeof(err)), -1);
	CHECK_STR(err, "MBAP length 255 out of range 2..254");
	buf[4] = 0xFF;
	buf[5] = 0xFF;
	CHECK_INT(mb_frame(buf, 6, &h, &alen, err, sizeof(err)), -1);

	/* exactly 260 bytes: length 254 */
	memset(buf, 0, sizeof(buf));
	buf[5] = 254;
	CHECK_INT(mb_frame(buf, 259, &h, &alen, err, sizeof(err)), 0);
	CHECK_INT(mb_frame(buf, 260, &h, &alen, err, sizeof(err)), 1);
	CHECK_INT(alen, MB_MAX_ADU);
	CHECK_INT(mb_frame(buf, sizeof(buf), &h, &alen, err, sizeof(err)), 1);
	CHECK_INT(alen, MB_MAX_ADU);
	/* length 2: unit id and a one-byte PDU */
	buf[5] = 2;
	CHECK_INT(mb_frame(buf, 8, &h, &alen, err, sizeof(err)), 1);
	CHECK_INT(alen, 8);

	/* what the encoders write frames again */
	{
		uint16_t r[123] = { 0 };
		size_t n = mb_encode_write_registers(buf, 7, 9, 0, r, 123);

		CHECK_INT(n, 7 + 6 + 246);
		CHECK_INT(mb_frame(buf, n, &h, &alen, err, sizeof(err)), 1);
		CHECK(alen == n && h.tid == 7 && h.unit == 9 && h.len == n - 6);
	}
}

/* Every exception path of the server side (state diagrams of clause 6). */
static void
test_request_errors(void)
{
	struct mb_request rq;
	uint8_t p[MB_MAX_PDU + 10] = { 0 };

#define RQ(expect, ...) do { static const uint8_t pdu_[] = { __VA_ARGS__ }; \
	CHECK_INT(mb_decode_request(pdu_, sizeof(pdu_), &rq), expect); } while (0)

	CHECK_INT(mb_decode_request(p, 0, &rq), -1);
	/* unknown function codes: 01 */
	RQ(MB_EX_ILLEGAL_FUNCTION, 0x07);
	CHECK_INT(rq.fc, 7);
	RQ(MB_EX_ILLEGAL_FUNCTION, 0x00, 0x00, 0x00, 0x00, 0x01);
	RQ(MB_EX_ILLEGAL_FUNCTION, 0x00);
	RQ(MB_EX_ILLEGAL_FUNCTION, 0x80);
	RQ(MB_EX_ILLEGAL_FUNCTION, 0x81, 0x00, 0x00, 0x00, 0x01);
	RQ(MB_EX_ILLEGAL_FUNCTION, 0x83, 0x00);
	RQ(MB_EX_ILLEGAL_FUNCTION, 0xFF);
	RQ(MB_EX_ILLEGAL_FUNCTION, 0x18, 0x00, 0x00);
	RQ(MB_EX_ILLEGAL_FUNCTION, 0x08, 0x00, 0x00, 0x12, 0x34);
	RQ(MB_EX_ILLEGAL_FUNCTION, 0x2B, 0x0D, 0x00, 0x00);   /* FC 43, MEI 13 (CANopen) */
	RQ(MB_EX_ILLEGAL_FUNCTION, 0x2B, 0x0D);

	/* the FC 3 of 3 bytes; every function komd has, cut short: 03 */
	RQ(MB_EX_ILLEGAL_VALUE, 0x03, 0x01, 0x60);
	RQ(MB_EX_ILLEGAL_VALUE, 0x01);
	RQ(MB_EX_ILLEGAL_VALUE, 0x02, 0x00, 0x00, 0x00);
	RQ(MB_EX_ILLEGAL_VALUE, 0x05, 0x00);
	RQ(MB_EX_ILLEGAL_VALUE, 0x06, 0x00, 0x01, 0x00);
	RQ(MB_EX_ILLEGAL_VALUE, 0x0F, 0x00, 0x00, 0x00, 0x02, 0x01);
	RQ(MB_EX_ILLEGAL_VALUE, 0x10, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00);
	RQ(MB_EX_ILLEGAL_VALUE, 0x16, 0x00, 0x00, 0xFF, 0xFF, 0x00);
	RQ(MB_EX_ILLEGAL_VALUE, 0x17, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00);

	/* 6.13 FC 17: the function code alone */
	RQ(0, 0x11);
	CHECK_INT(rq.fc, 17);
	RQ(MB_EX_ILLEGAL_VALUE, 0x11, 0x00);
	/* 6.21 FC 43 / MEI 14: code 01..04, object id; length 4 */
	RQ(0, 0x2B, 0x0E, 0x01, 0x00);
	CHECK(rq.fc == 43 && rq.mei == 14 && rq.devid_code == 1 && rq.object_id == 0);
	RQ(0, 0x2B, 0x0E, 0x04, 0x80);
	CHECK(rq.devid_code == 4 && rq.object_id == 0x80);
	RQ(0, 0x2B, 0x0E, 0x03, 0xFF);
	RQ(MB_EX_ILLEGAL_VALUE, 0x2B, 0x0E, 0x00, 0x00);
	RQ(MB_EX_ILLEGAL_VALUE, 0x2B, 0x0E, 0x05, 0x00);
	RQ(MB_EX_ILLEGAL_VALUE, 0x2B, 0x0E, 0x01);
	RQ(MB_EX_ILLEGAL_VALUE, 0x2B, 0x0E, 0x01, 0x00, 0x00);
	RQ(MB_EX_ILLEGAL_VALUE, 0x2B, 0x0E);
	RQ(MB_EX_ILLEGAL_VALUE, 0x2B);

	/* the kind: whatever the function code and whatever follows it, a PDU of 1..253 bytes
	 * is valid or names an exception that encodes (an answer), never "nothing to answer" */
	for (unsigned fc = 0; fc < 256; fc++)
		for (size_t len = 1; len <= MB_MAX_PDU; len++) {
			uint8_t buf[MB_MAX_ADU];
			int r;

			memset(p, fc & 1 ? 0xFF : 0x00, sizeof(p));
			p[0] = (uint8_t)fc;
			r = mb_decode_request(p, len, &rq);
			if (r < 0 || rq.fc != fc || (r > 0 && mb_encode_exception(buf, TID, UNIT, rq.fc, (uint8_t)r) != 9)) {
				fprintf(stderr, "function %u, %zu bytes: %d\n", fc, len, r);
				CHECK(0);
			}
			if (mb_fc_name((int)fc) == NULL)
				CHECK_INT(r, MB_EX_ILLEGAL_FUNCTION);
		}

	/* reads: quantity 0, over the limit; the limit itself; wrong lengths */
	RQ(MB_EX_ILLEGAL_VALUE, 0x01, 0x00, 0x00, 0x00, 0x00);
	RQ(0, 0x01, 0x00, 0x00, 0x07, 0xD0);
	RQ(MB_EX_ILLEGAL_VALUE, 0x01, 0x00, 0x00, 0x07, 0xD1);
	RQ(MB_EX_ILLEGAL_VALUE, 0x02, 0x00, 0x00, 0x07, 0xD1);
	RQ(0, 0x03, 0x00, 0x00, 0x00, 0x7D);
	RQ(MB_EX_ILLEGAL_VALUE, 0x03, 0x00, 0x00, 0x00, 0x7E);
	RQ(MB_EX_ILLEGAL_VALUE, 0x04, 0x00, 0x00, 0x00, 0x00);
	CHECK_INT(rq.fc, 4);
	RQ(MB_EX_ILLEGAL_VALUE, 0x03, 0x00, 0x00, 0x00);
	RQ(MB_EX_ILLEGAL_VALUE, 0x03, 0x00, 0x00, 0x00, 0x01, 0x00);
	RQ(MB_EX_ILLEGAL_VALUE, 0x03);
	/* reads: address + quantity > 65536: 02; = 65536 is fine; quantity first */
	RQ(MB_EX_ILLEGAL_ADDRESS, 0x03, 0xFF, 0xFF, 0x00, 0x02);
	RQ(0, 0x03, 0xFF, 0xFF, 0x00, 0x01);
	RQ(0, 0x01, 0xF8, 0x30, 0x07, 0xD0);
	RQ(MB_EX_ILLEGAL_ADDRESS, 0x01, 0xF8, 0x31, 0x07, 0xD0);
	RQ(MB_EX_ILLEGAL_VALUE, 0x03, 0xFF, 0xFF, 0x00, 0x7E);

	/* FC 5: value other than FF00 / 0000; length */
	RQ(0, 0x05, 0x00, 0x01, 0x00, 0x00);
	RQ(MB_EX_ILLEGAL_VALUE, 0x05, 0x00, 0x01, 0x00, 0x01);
	RQ(MB_EX_ILLEGAL_VALUE, 0x05, 0x00, 0x01, 0xFF, 0x01);
	RQ(MB_EX_ILLEGAL_VALUE, 0x05, 0x00, 0x01, 0x01, 0x00);
	RQ(MB_EX_ILLEGAL_VALUE, 0x05, 0x00, 0x01, 0xFF);
	RQ(MB_EX_ILLEGAL_VALUE, 0x05, 0x00, 0x01, 0xFF, 0x00, 0x00);
	/* FC 6: any value; length */
	RQ(0, 0x06, 0xFF, 0xFF, 0xFF, 0xFF);
	RQ(MB_EX_ILLEGAL_VALUE, 0x06, 0x00, 0x01, 0x00);
	RQ(MB_EX_ILLEGAL_VALUE, 0x06, 0x00, 0x01, 0x00, 0x03, 0x00);

	/* FC 15: byte count = ceil(N / 8); quantity 1..1968; data length; address */
	RQ(MB_EX_ILLEGAL_VALUE, 0x0F, 0x00, 0x13, 0x00, 0x0A, 0x01, 0xCD);
	RQ(MB_EX_ILLEGAL_VALUE, 0x0F, 0x00, 0x13, 0x00, 0x0A, 0x03, 0xCD, 0x01, 0x00);
	RQ(MB_EX_ILLEGAL_VALUE, 0x0F, 0x00, 0x13, 0x00, 0x0A, 0x02, 0xCD);
	RQ(MB_EX_ILLEGAL_VALUE, 0x0F, 0x00, 0x13, 0x00, 0x0A, 0x02, 0xCD, 0x01, 0x00);
	RQ(MB_EX_ILLEGAL_VALUE, 0x0F, 0x00, 0x13, 0x00, 0x00, 0x00);
	RQ(MB_EX_ILLEGAL_VALUE, 0x0F, 0x00, 0x13, 0x00, 0x0A);
	RQ(0, 0x0F, 0x00, 0x13, 0x00, 0x08, 0x01, 0xFF);
	RQ(MB_EX_ILLEGAL_VALUE, 0x0F, 0x00, 0x13, 0x00, 0x09, 0x01, 0xFF);
	RQ(MB_EX_ILLEGAL_ADDRESS, 0x0F, 0xFF, 0xFF, 0x00, 0x02, 0x01, 0x03);
	memset(p, 0, sizeof(p));
	p[0] = 0x0F; p[3] = 0x07; p[4] = 0xB0; p[5] = 246; /* 1968 coils */
	CHECK_INT(mb_decode_request(p, 6 + 246, &rq), 0);
	p[4] = 0xB1; p[5] = 247;
	CHECK_INT(mb_decode_request(p, 6 + 247, &rq), MB_EX_ILLEGAL_VALUE);

	/* FC 16: byte count = 2N; quantity 1..123; data length; address */
	RQ(MB_EX_ILLEGAL_VALUE, 0x10, 0x00, 0x01, 0x00, 0x02, 0x03, 0x00, 0x0A, 0x01);
	RQ(MB_EX_ILLEGAL_VALUE, 0x10, 0x00, 0x01, 0x00, 0x02, 0x04, 0x00, 0x0A, 0x01);
	RQ(MB_EX_ILLEGAL_VALUE, 0x10, 0x00, 0x01, 0x00, 0x02, 0x04, 0x00, 0x0A, 0x01, 0x02, 0x03);
	RQ(MB_EX_ILLEGAL_VALUE, 0x10, 0x00, 0x01, 0x00, 0x00, 0x00);
	RQ(MB_EX_ILLEGAL_VALUE, 0x10, 0x00, 0x01, 0x00, 0x02);
	RQ(MB_EX_ILLEGAL_ADDRESS, 0x10, 0xFF, 0xFF, 0x00, 0x02, 0x04, 0x00, 0x0A, 0x01, 0x02);
	memset(p, 0, sizeof(p));
	p[0] = 0x10; p[4] = 123; p[5] = 246;
	CHECK_INT(mb_decode_request(p, 6 + 246, &rq), 0);
	p[4] = 124; p[5] = 248;
	CHECK_INT(mb_decode_request(p, 6 + 248, &rq), MB_EX_ILLEGAL_VALUE);

	/* FC 22: fixed length 7 */
	RQ(MB_EX_ILLEGAL_VALUE, 0x16, 0x00, 0x04, 0x00, 0xF2, 0x00);
	RQ(MB_EX_ILLEGAL_VALUE, 0x16, 0x00, 0x04, 0x00, 0xF2, 0x00, 0x25, 0x00);
	RQ(0, 0x16, 0xFF, 0xFF, 0x00, 0xF2, 0x00, 0x25);

	/* FC 23: read 1..125, write 1..121, byte count 2 * write, length, both address ranges */
	RQ(MB_EX_ILLEGAL_VALUE, 0x17, 0x00, 0x03, 0x00, 0x00, 0x00, 0x0E, 0x00, 0x01, 0x02, 0x00, 0xFF);
	RQ(MB_EX_ILLEGAL_VALUE, 0x17, 0x00, 0x03, 0x00, 0x7E, 0x00, 0x0E, 0x00, 0x01, 0x02, 0x00, 0xFF);
	RQ(0, 0x17, 0x00, 0x03, 0x00, 0x7D, 0x00, 0x0E, 0x00, 0x01, 0x02, 0x00, 0xFF);
	RQ(MB_EX_ILLEGAL_VALUE, 0x17, 0x00, 0x03, 0x00, 0x01, 0x00, 0x0E, 0x00, 0x00, 0x00);
	RQ(MB_EX_ILLEGAL_VALUE, 0x17, 0x00, 0x03, 0x00, 0x01, 0x00, 0x0E, 0x00, 0x01, 0x03, 0x00, 0xFF, 0x00);
	RQ(MB_EX_ILLEGAL_VALUE, 0x17, 0x00, 0x03, 0x00, 0x01, 0x00, 0x0E, 0x00, 0x01, 0x02, 0x00);
	RQ(MB_EX_ILLEGAL_VALUE, 0x17, 0x00, 0x03, 0x00, 0x01, 0x00, 0x0E, 0x00, 0x01);
	RQ(MB_EX_ILLEGAL_ADDRESS, 0x17, 0xFF, 0xFF, 0x00, 0x02, 0x00, 0x0E, 0x00, 0x01, 0x02, 0x00, 0xFF);
	RQ(MB_EX_ILLEGAL_ADDRESS, 0x17, 0x00, 0x00, 0x00, 0x01, 0xFF, 0xFF, 0x00, 0x02, 0x04, 0, 0, 0, 0);
	memset(p, 0, sizeof(p));
	p[0] = 0x17; p[4] = 1; p[8] = 121; p[9] = 242;
	CHECK_INT(mb_decode_request(p, 10 + 242, &rq), 0);
	CHECK_INT(rq.data_len, 242);
	p[8] = 122; p[9] = 244;
	CHECK_INT(mb_decode_request(p, 10 + 244, &rq), MB_EX_ILLEGAL_VALUE);
#undef RQ
}

/* The client side: a response that does not answer what was sent. */
static void
test_response_errors(void)
{
	struct mb_response rs;
	struct mb_sent s;
	char err[128];

#define RS(expect, ...) do { static const uint8_t pdu_[] = { __VA_ARGS__ }; \
	err[0] = '\0'; CHECK_INT(mb_decode_response(pdu_, sizeof(pdu_), &s, &rs, err, sizeof(err)), expect); } while (0)

	s = (struct mb_sent){ .fc = 3, .addr = 0x6B, .count = 3 };
	CHECK_INT(mb_decode_response((const uint8_t *)"", 0, &s, &rs, err, sizeof(err)), -1);
	CHECK_STR(err, "read holding registers: empty response");
	RS(-1, 0x04, 0x06, 0x02, 0x2B, 0x00, 0x00, 0x00, 0x64);
	CHECK_STR(err, "read holding registers: response has function code 0x04");
	RS(-1, 0x84, 0x02);
	CHECK_STR(err, "read holding registers: response has function code 0x84");
	RS(-1, 0x03, 0x04, 0x02, 0x2B, 0x00, 0x00);
	CHECK_STR(err, "read holding registers: byte count 4 for a quantity of 3 (expected 6)");
	RS(-1, 0x03, 0x06, 0x02, 0x2B, 0x00, 0x00, 0x00);
	CHECK_STR(err, "read holding registers: 5 data bytes, byte count says 6");
	RS(-1, 0x03, 0x06, 0x02, 0x2B, 0x00, 0x00, 0x00, 0x64, 0x00);
	RS(-1, 0x03);
	CHECK_STR(err, "read holding registers: response without byte count");
	RS(-1, 0x83);
	CHECK_STR(err, "read holding registers: exception response of 1 bytes, not 2");
	RS(-1, 0x83, 0x02, 0x00);
	RS(-1, 0x83, 0x00);
	CHECK_STR(err, "read holding registers: exception code 0");
	RS(0, 0x83, 0x0B);
	CHECK(rs.exception && rs.excode == 0x0B && rs.fc == 3 && rs.data == NULL);

	/* coils: byte count ceil(N / 8) */
	s = (struct mb_sent){ .fc = 1, .addr = 0x13, .count = 0x13 };
	RS(0, 0x01, 0x03, 0xCD, 0x6B, 0x05);
	RS(-1, 0x01, 0x02, 0xCD, 0x6B);
	CHECK_STR(err, "read coils: byte count 2 for a quantity of 19 (expected 3)");
	RS(-1, 0x01, 0x04, 0xCD, 0x6B, 0x05, 0x00);
	s.count = 24;
	RS(0, 0x01, 0x03, 0xCD, 0x6B, 0x05);
	s.count = 25;
	RS(-1, 0x01, 0x03, 0xCD, 0x6B, 0x05);

	/* a quantity of 0 was never a valid request: no response matches it */
	s = (struct mb_sent){ .fc = 4, .addr = 0, .count = 0 };
	RS(-1, 0x04, 0x00);
	CHECK_STR(err, "read input registers: a quantity of 0 has no valid response");

	/* FC 23 answers with 2 * quantity read */
	s = (struct mb_sent){ .fc = 23, .addr = 3, .count = 2 };
	RS(0, 0x17, 0x04, 0x00, 0xFE, 0x0A, 0xCD);
	RS(-1, 0x17, 0x06, 0x00, 0xFE, 0x0A, 0xCD, 0x00, 0x01);
	RS(-1, 0x03, 0x04, 0x00, 0xFE, 0x0A, 0xCD);

	/* writes: the echo */
	s = (struct mb_sent){ .fc = 5, .addr = 0xAC, .value = 0xFF00 };
	RS(-1, 0x05, 0x00, 0xAD, 0xFF, 0x00);
	CHECK_STR(err, "write single coil: response for address 173, not 172");
	RS(-1, 0x05, 0x00, 0xAC, 0x00, 0x00);
	CHECK_STR(err, "write single coil: response echoes value 0, not 65280");
	RS(-1, 0x05, 0x00, 0xAC, 0xFF);
	CHECK_STR(err, "write single coil: response of 4 bytes, not 5");
	RS(-1, 0x05, 0x00, 0xAC, 0xFF, 0x00, 0x00);
	s = (struct mb_sent){ .fc = 6, .addr = 1, .value = 3 };
	RS(-1, 0x06, 0x00, 0x01, 0x00, 0x04);
	RS(-1, 0x10, 0x00, 0x01, 0x00, 0x03);
	s = (struct mb_sent){ .fc = 15, .addr = 0x13, .count = 10 };
	RS(-1, 0x0F, 0x00, 0x13, 0x00, 0x0B);
	CHECK_STR(err, "write multiple coils: response echoes quantity 11, not 10");
	RS(-1, 0x0F, 0x00, 0x13, 0x00, 0x0A, 0x02, 0xCD, 0x01);
	s = (struct mb_sent){ .fc = 16, .addr = 1, .count = 2 };
	RS(0, 0x10, 0x00, 0x01, 0x00, 0x02);
	RS(-1, 0x10, 0x00, 0x02, 0x00, 0x02);
	RS(0, 0x90, 0x04);
	CHECK(rs.exception && rs.excode == 4 && rs.fc == 16);
	s = (struct mb_sent){ .fc = 22, .addr = 4, .value = 0xF2, .or_mask = 0x25 };
	RS(-1, 0x16, 0x00, 0x04, 0x00, 0xF2, 0x00, 0x26);
	CHECK_STR(err, "mask write register: response does not echo the request");
	RS(-1, 0x16, 0x00, 0x04, 0x00, 0xF3, 0x00, 0x25);
	RS(-1, 0x16, 0x00, 0x04, 0x00, 0xF2, 0x00);
	CHECK_STR(err, "mask write register: response of 6 bytes, not 7");

	/* a request komd never sends */
	s = (struct mb_sent){ .fc = 8 };
	RS(-1, 0x08, 0x00, 0x00, 0x12, 0x34);
	CHECK_STR(err, "function 8 not supported");
#undef RS
}

static void
test_addr(void)
{
	struct mb_addr a;
	char err[128], buf[64];

#define GOOD(s, ob, fn_, addr_, bit_, type_, nregs_, ign_) do { \
	err[0] = '\0'; CHECK_INT(mb_parse_addr(s, ob, &a, err, sizeof(err)), 0); \
	if (err[0]) fprintf(stderr, "  %s: %s\n", s, err); \
	CHECK_INT(a.fn, fn_); CHECK_INT(a.addr, addr_); CHECK_INT(a.bit, bit_); \
	CHECK_INT(a.type, type_); CHECK_INT(a.nregs, nregs_); CHECK_INT(a.ignore, ign_); } while (0)
#define BAD(s, ob, msg) do { err[0] = '\0'; \
	CHECK_INT(mb_parse_addr(s, ob, &a, err, sizeof(err)), -1); CHECK_STR(err, msg); } while (0)

	GOOD("3.100", false, 3, 100, -1, MB_T_U16, 1, false);
	GOOD("U3.100", false, 3, 100, -1, MB_T_U16, 1, false);
	GOOD("I4.0", false, 4, 0, -1, MB_T_I16, 1, false);
	GOOD("L3.10", false, 3, 10, -1, MB_T_U32, 2, false);
	GOOD("Ll3.10", false, 3, 10, -1, MB_T_U32L, 2, false);
	GOOD("S3.10", false, 3, 10, -1, MB_T_I32, 2, false);
	GOOD("Sl3.10", false, 3, 10, -1, MB_T_I32L, 2, false);
	GOOD("f3.100", false, 3, 100, -1, MB_T_F32, 2, false);
	GOOD("F4.100", false, 4, 100, -1, MB_T_F32S, 2, false);
	GOOD("Q3.1", false, 3, 1, -1, MB_T_I64, 4, false);
	GOOD("Ql3.1", false, 3, 1, -1, MB_T_I64L, 4, false);
	GOOD("D3.65532", false, 3, 65532, -1, MB_T_F64, 4, false);
	GOOD("Dl3.2", false, 3, 2, -1, MB_T_F64L, 4, false);
	GOOD("1.20", false, 1, 20, -1, MB_T_BIT, 0, false);
	GOOD("2.65535", false, 2, 65535, -1, MB_T_BIT, 0, false);
	GOOD("3.7.2", false, 3, 7, 2, MB_T_BIT, 1, false);
	GOOD("U4.7.15", false, 4, 7, 15, MB_T_BIT, 1, false);
	GOOD("3.65535.0", false, 3, 65535, 0, MB_T_BIT, 1, false);
	GOOD("3.65535", false, 3, 65535, -1, MB_T_U16, 1, false);
	GOOD("f3.65534", false, 3, 65534, -1, MB_T_F32, 2, false);
	GOOD("%IGNOREf3.100", false, 3, 100, -1, MB_T_F32, 2, true);
	GOOD("%IGNORE1.5", false, 1, 5, -1, MB_T_BIT, 0, true);
	GOOD("3.0100", false, 3, 100, -1, MB_T_U16, 1, false);
	/* one-based: register numbers 1..65536 */
	GOOD("3.1", true, 3, 0, -1, MB_T_U16, 1, false);
	GOOD("3.65536", true, 3, 65535, -1, MB_T_U16, 1, false);
	GOOD("f3.65535", true, 3, 65534, -1, MB_T_F32, 2, false);
	GOOD("1.20", true, 1, 19, -1, MB_T_BIT, 0, false);

	BAD("", false, "empty address");
	BAD("%IGNORE", false, "empty address");
	BAD("X3.1", false, "unknown type 'X'");
	BAD("u3.1", false, "unknown type 'u'");
	BAD("Lx3.1", false, "unknown type 'Lx'");
	BAD("Il3.1", false, "unknown type 'Il'");
	BAD("fl3.1", false, "unknown type 'fl'");
	BAD("LL3.1", false, "unknown type 'LL'");
	BAD("%ignore3.1", false, "function must be 1..4");
	BAD("%IGNOREX3.1", false, "unknown type 'X'");
	BAD("0.1", false, "function must be 1..4");
	BAD("5.1", false, "function must be 1..4");
	BAD("31.5", false, "function must be 1..4");
	BAD("3", false, "function must be 1..4");
	BAD(".3.1", false, "function must be 1..4");
	BAD("f", false, "function must be 1..4");
	BAD("3.", false, "missing address");
	BAD("3.-1", false, "missing address");
	BAD("3.+1", false, "missing address");
	BAD("3.70000", false, "address 70000 out of range 0..65535");
	BAD("3.65536", false, "address 65536 out of range 0..65535");
	BAD("3.99999999999999999999", false, "address 99999999999999999999 out of range 0..65535");
	BAD("3.0", true, "address 0 out of range 1..65536");
	BAD("3.65537", true, "address 65537 out of range 1..65536");
	BAD("3.1.", false, "missing bit");
	BAD("3.1.16", false, "bit 16 out of range 0..15");
	BAD("3.1.99999999999", false, "bit 99999999999 out of range 0..15");
	BAD("3.070000", false, "address 070000 out of range 0..65535");
	BAD("3.1.2.3", false, "unexpected '.' in address");
	BAD("3.1x", false, "unexpected 'x' in address");
	BAD("3.1 ", false, "unexpected ' ' in address");
	BAD(" 3.1", false, "function must be 1..4");
	BAD("1.5.1", false, "a bit needs function 3 or 4");
	BAD("2.5.0", false, "a bit needs function 3 or 4");
	BAD("f1.5", false, "a type needs function 3 or 4");
	BAD("U2.5", false, "a type needs function 3 or 4");
	BAD("I3.5.1", false, "a bit of a register allows no type but U");
	BAD("f3.5.1", false, "a bit of a register allows no type but U");
	BAD("f3.65535", false, "value spans past register 65535");
	BAD("D3.65533", false, "value spans past register 65535");
	BAD("L4.65535", false, "value spans past register 65535");
	BAD("f3.65536", true, "value spans past register 65536");
	BAD("Q3.65534", true, "value spans past register 65536");

	/* formatting back, and parsing what was formatted */
	{
		static const char *const forms[] = { "f3.100", "3.7.2", "1.20", "2.1", "4.65535", "I3.1",
			"Ll3.1", "Sl4.9", "F3.8", "Ql3.1", "Dl4.10", "D3.65532", "%IGNORES3.5", "%IGNORE3.5.15" };
		struct mb_addr b;

		for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
			CHECK_INT(mb_parse_addr(forms[i], false, &a, err, sizeof(err)), 0);
			CHECK_STR(mb_format_addr(&a, false, buf, sizeof(buf)), forms[i]);
			CHECK_INT(mb_parse_addr(forms[i], true, &a, err, sizeof(err)), 0);
			CHECK_INT(mb_parse_addr(mb_format_addr(&a, true, buf, sizeof(buf)), true, &b, err,
			    sizeof(err)), 0);
			CHECK(memcmp(&a, &b, sizeof(a)) == 0);
		}
		CHECK_INT(mb_parse_addr("U3.7", false, &a, err, sizeof(err)), 0);
		CHECK_STR(mb_format_addr(&a, false, buf, sizeof(buf)), "3.7");
		CHECK_INT(mb_parse_addr("U3.7.1", false, &a, err, sizeof(err)), 0);
		CHECK_STR(mb_format_addr(&a, false, buf, sizeof(buf)), "3.7.1");
		CHECK_INT(mb_parse_addr("f3.100", true, &a, err, sizeof(err)), 0);
		CHECK_INT(a.addr, 99);
		CHECK_STR(mb_format_addr(&a, true, buf, sizeof(buf)), "f3.100");
		CHECK_STR(mb_format_addr(&a, false, buf, sizeof(buf)), "f3.99");
	}

	/* which value types each kind of address carries */
	CHECK_INT(mb_parse_addr("1.1", false, &a, err, sizeof(err)), 0);
	CHECK(mb_type_fits(&a, VT_BOOL) && mb_type_fits(&a, VT_INT));
	CHECK(!mb_type_fits(&a, VT_FLOAT) && !mb_type_fits(&a, VT_DPI) && !mb_type_fits(&a, VT_STRING) &&
	    !mb_type_fits(&a, VT_TIME));
	CHECK_INT(mb_parse_addr("3.1.4", false, &a, err, sizeof(err)), 0);
	CHECK(mb_type_fits(&a, VT_BOOL) && !mb_type_fits(&a, VT_FLOAT));
	CHECK_INT(mb_parse_addr("3.1", false, &a, err, sizeof(err)), 0);
	CHECK(mb_type_fits(&a, VT_BOOL) && mb_type_fits(&a, VT_INT) && mb_type_fits(&a, VT_FLOAT));
	CHECK(!mb_type_fits(&a, VT_DPI) && !mb_type_fits(&a, VT_STRING) && !mb_type_fits(&a, VT_TIME));
	CHECK_INT(mb_parse_addr("I3.1", false, &a, err, sizeof(err)), 0);
	CHECK(mb_type_fits(&a, VT_BOOL));
	CHECK_INT(mb_parse_addr("f3.1", false, &a, err, sizeof(err)), 0);
	CHECK(!mb_type_fits(&a, VT_BOOL) && mb_type_fits(&a, VT_INT) && mb_type_fits(&a, VT_FLOAT));
	CHECK(!mb_type_fits(&a, VT_DPI));
	CHECK_INT(mb_parse_addr("Dl3.1", false, &a, err, sizeof(err)), 0);
	CHECK(mb_type_fits(&a, VT_FLOAT) && !mb_type_fits(&a, VT_TIME));
#undef GOOD
#undef BAD
}

/* One type: the value v written gives regs[0..n-1], and (back_same) reading them back as
 * v's type gives v. */
static void
conv(const char *addr, struct value v, const uint16_t *want, unsigned n, bool back_same, int line)
{
	struct mb_addr a;
	struct value back;
	uint16_t regs[4] = { 0xEEEE, 0xEEEE, 0xEEEE, 0xEEEE };
	char err[128] = "";

	CHECK_INT(mb_parse_addr(addr, false, &a, err, sizeof(err)), 0);
	CHECK_INT(a.nregs, n);
	if (mb_value_to_regs(&a, &v, regs, err, sizeof(err)) != 0) {
		fprintf(stderr, "line %d: %s: %s\n", line, addr, err);
		CHECK(0);
		return;
	}
	for (unsigned i = 0; i < n; i++)
		if (regs[i] != want[i]) {
			fprintf(stderr, "line %d: %s: register %u = 0x%04x, expected 0x%04x\n", line, addr, i,
			    regs[i], want[i]);
			CHECK(0);
		}
	if (n < 4)
		CHECK_INT(regs[n], 0xEEEE);
	if (!back_same)
		return;
	CHECK_INT(mb_regs_to_value(&a, want, v.type, &back, err, sizeof(err)), 0);
	CHECK_INT(back.type, v.type);
	if (v.type == VT_FLOAT) {
		if (isnan(v.f))
			CHECK(isnan(back.f));
		else
			CHECK(back.f == v.f || (fprintf(stderr, "line %d: %.17g != %.17g\n", line, back.f, v.f), 0));
	} else if (back.i != v.i) {
		fprintf(stderr, "line %d: %s: read back %lld, expected %lld\n", line, addr, (long long)back.i,
		    (long long)v.i);
		CHECK(0);
	}
}

#define I(x) ((struct value){ .type = VT_INT, .i = (x) })
#define F(x) ((struct value){ .type = VT_FLOAT, .f = (x) })
#define B(x) ((struct value){ .type = VT_BOOL, .i = (x) })
#define CONV(addr, v, ...) do { static const uint16_t w_[] = { __VA_ARGS__ }; \
	conv(addr, v, w_, sizeof(w_) / sizeof(w_[0]), true, __LINE__); } while (0)
#define CONVW(addr, v, ...) do { static const uint16_t w_[] = { __VA_ARGS__ }; \
	conv(addr, v, w_, sizeof(w_) / sizeof(w_[0]), false, __LINE__); } while (0)

static void
test_values(void)
{
	struct mb_addr a;
	struct value v;
	uint16_t regs[4];
	char err[128];

	CONV("3.0", I(0), 0x0000);
	CONV("3.0", I(65535), 0xFFFF);
	CONV("3.0", I(0x1234), 0x1234);
	CONV("3.0", B(1), 0x0001);
	CONV("3.0", F(555.0), 0x022B);
	CONV("I3.0", I(-1), 0xFFFF);
	CONV("I3.0", I(-32768), 0x8000);
	CONV("I3.0", I(32767), 0x7FFF);
	CONV("I3.0", F(-2.0), 0xFFFE);
	CONV("L3.0", I(0x12345678), 0x1234, 0x5678);
	CONV("Ll3.0", I(0x12345678), 0x5678, 0x1234);
	CONV("L3.0", I(4294967295), 0xFFFF, 0xFFFF);
	CONV("S3.0", I(-2), 0xFFFF, 0xFFFE);
	CONV("Sl3.0", I(-2), 0xFFFE, 0xFFFF);
	CONV("S3.0", I(-2147483648), 0x8000, 0x0000);
	CONV("Sl3.0", I(0x12345678), 0x5678, 0x1234);
	CONV("f3.0", F(1.0), 0x3F80, 0x0000);
	CONV("F3.0", F(1.0), 0x0000, 0x3F80);
	CONV("f3.0", F(-2.5), 0xC020, 0x0000);
	CONV("f3.0", F((double)3.14159265f), 0x4049, 0x0FDB);
	CONV("F3.0", F((double)3.14159265f), 0x0FDB, 0x4049);
	CONV("f3.0", F(NAN), 0x7FC0, 0x0000);
	CONV("f3.0", F(INFINITY), 0x7F80, 0x0000);
	CONV("f3.0", I(2), 0x4000, 0x0000);
	CONV("Q3.0", I(0x0102030405060708), 0x0102, 0x0304, 0x0506, 0x0708);
	CONV("Ql3.0", I(0x0102030405060708), 0x0708, 0x0506, 0x0304, 0x0102);
	CONV("Q3.0", I(-1), 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF);
	CONV("Q3.0", I(INT64_MIN), 0x8000, 0x0000, 0x0000, 0x0000);
	CONV("Ql3.0", I(INT64_MAX), 0xFFFF, 0xFFFF, 0xFFFF, 0x7FFF);
	CONV("D3.0", F(1.0), 0x3FF0, 0x0000, 0x0000, 0x0000);
	CONV("Dl3.0", F(1.0), 0x0000, 0x0000, 0x0000, 0x3FF0);
	CONV("D3.0", F(-2.0), 0xC000, 0x0000, 0x0000, 0x0000);
	CONV("D3.0", F(0.1), 0x3FB9, 0x9999, 0x9999, 0x999A);
	CONV("Dl3.0", F(0.1), 0x999A, 0x9999, 0x9999, 0x3FB9);
	CONV("D3.0", I(3), 0x4008, 0x0000, 0x0000, 0x0000);

	/* reading a float type as int rounds; an int type as float converts; as bool nonzero */
	CHECK_INT(mb_parse_addr("f3.0", false, &a, err, sizeof(err)), 0);
	regs[0] = 0x4020; regs[1] = 0x0000; /* 2.5 */
	CHECK_INT(mb_regs_to_value(&a, regs, VT_INT, &v, err, sizeof(err)), 0);
	CHECK_INT(v.i, 3);
	regs[0] = 0xC020; /* -2.5 */
	CHECK_INT(mb_regs_to_value(&a, regs, VT_INT, &v, err, sizeof(err)), 0);
	CHECK_INT(v.i, -3);
	regs[0] = 0x7FC0; /* NaN */
	CHECK_INT(mb_regs_to_value(&a, regs, VT_INT, &v, err, sizeof(err)), -1);
	CHECK_STR(err, "NaN is not an int");
	regs[0] = 0x7F80; /* +inf */
	CHECK_INT(mb_regs_to_value(&a, regs, VT_INT, &v, err, sizeof(err)), -1);
	CHECK_STR(err, "inf out of range for an int");
	regs[0] = 0x5F00; /* 2^63 */
	CHECK_INT(mb_regs_to_value(&a, regs, VT_INT, &v, err, sizeof(err)), -1);
	regs[0] = 0xDF00; /* -2^63 */
	CHECK_INT(mb_regs_to_value(&a, regs, VT_INT, &v, err, sizeof(err)), 0);
	CHECK(v.i == INT64_MIN);
	CHECK_INT(mb_regs_to_value(&a, regs, VT_BOOL, &v, err, sizeof(err)), -1);
	CHECK_STR(err, "a float32 register cannot be a bool");
	CHECK_INT(mb_regs_to_value(&a, regs, VT_DPI, &v, err, sizeof(err)), -1);
	CHECK_STR(err, "a float32 register cannot be a dpi");
	CHECK_INT(mb_parse_addr("S3.0", false, &a, err, sizeof(err)), 0);
	regs[0] = 0xFFFF; regs[1] = 0xFFFF;
	CHECK_INT(mb_regs_to_value(&a, regs, VT_FLOAT, &v, err, sizeof(err)), 0);
	CHECK(v.type == VT_FLOAT && v.f == -1.0);
	CHECK_INT(mb_regs_to_value(&a, regs, VT_BOOL, &v, err, sizeof(err)), 0);
	CHECK(v.type == VT_BOOL && v.i == 1);
	regs[0] = regs[1] = 0;
	CHECK_INT(mb_regs_to_value(&a, regs, VT_BOOL, &v, err, sizeof(err)), 0);
	CHECK_INT(v.i, 0);
	CHECK_INT(mb_parse_addr("U3.0", false, &a, err, sizeof(err)), 0);
	regs[0] = 0x8000;
	CHECK_INT(mb_regs_to_value(&a, regs, VT_INT, &v, err, sizeof(err)), 0);
	CHECK_INT(v.i, 32768);
	CHECK_INT(mb_regs_to_value(&a, regs, VT_STRING, &v, err, sizeof(err)), -1);
	CHECK_INT(mb_parse_addr("L3.0", false, &a, err, sizeof(err)), 0);
	regs[0] = 0xFFFF; regs[1] = 0xFFFF;
	CHECK_INT(mb_regs_to_value(&a, regs, VT_INT, &v, err, sizeof(err)), 0);
	CHECK_INT(v.i, 4294967295LL);
	CHECK_INT(mb_parse_addr("D3.0", false, &a, err, sizeof(err)), 0);
	regs[0] = 0x7FF8; regs[1] = regs[2] = regs[3] = 0; /* NaN */
	CHECK_INT(mb_regs_to_value(&a, regs, VT_INT, &v, err, sizeof(err)), -1);
	CHECK_INT(mb_regs_to_value(&a, regs, VT_FLOAT, &v, err, sizeof(err)), 0);
	CHECK(isnan(v.f));

	/* a bit of a register */
	CHECK_INT(mb_parse_addr("3.7.2", false, &a, err, sizeof(err)), 0);
	regs[0] = 0x0004;
	CHECK_INT(mb_regs_to_value(&a, regs, VT_BOOL, &v, err, sizeof(err)), 0);
	CHECK(v.type == VT_BOOL && v.i == 1);
	regs[0] = 0xFFFB;
	CHECK_INT(mb_regs_to_value(&a, regs, VT_INT, &v, err, sizeof(err)), 0);
	CHECK(v.type == VT_INT && v.i == 0);
	CHECK_INT(mb_parse_addr("3.7.15", false, &a, err, sizeof(err)), 0);
	regs[0] = 0x8000;
	CHECK_INT(mb_regs_to_value(&a, regs, VT_BOOL, &v, err, sizeof(err)), 0);
	CHECK_INT(v.i, 1);
	v = B(1);
	CHECK_INT(mb_value_to_regs(&a, &v, regs, err, sizeof(err)), -1);
	CHECK_STR(err, "a bit is not written as registers");
	CHECK_INT(mb_parse_addr("1.7", false, &a, err, sizeof(err)), 0);
	CHECK_INT(mb_regs_to_value(&a, regs, VT_BOOL, &v, err, sizeof(err)), -1);
	CHECK_STR(err, "a coil or discrete input has no register");

	/* refusals */
#define REFUSE(addr, val, msg) do { struct value rv_ = val; \
	CHECK_INT(mb_parse_addr(addr, false, &a, err, sizeof(err)), 0); \
	CHECK_INT(mb_value_to_regs(&a, &rv_, regs, err, sizeof(err)), -1); CHECK_STR(err, msg); } while (0)
	REFUSE("U3.0", I(70000), "70000 out of range for uint16");
	REFUSE("U3.0", I(-1), "-1 out of range for uint16");
	REFUSE("U3.0", F(65535.5), "65535.5 out of range for uint16");
	REFUSE("I3.0", I(32768), "32768 out of range for int16");
	REFUSE("I3.0", I(-32769), "-32769 out of range for int16");
	REFUSE("L3.0", I(-1), "-1 out of range for uint32");
	REFUSE("Ll3.0", I(4294967296LL), "4294967296 out of range for uint32");
	REFUSE("S3.0", I(2147483648LL), "2147483648 out of range for int32");
	REFUSE("Sl3.0", F(-2147483649.0), "-2.14748e+09 out of range for int32");
	REFUSE("Q3.0", F(9223372036854775808.0), "9.22337e+18 out of range for int64");
	REFUSE("U3.0", F(NAN), "NaN does not fit uint16");
	REFUSE("Q3.0", F(NAN), "NaN does not fit int64");
	REFUSE("I3.0", F(INFINITY), "inf out of range for int16");
	REFUSE("f3.0", F(1e39), "1e+39 out of range for float32");
	REFUSE("F3.0", F(-1e39), "-1e+39 out of range for float32");
	REFUSE("f3.0", B(1), "a float32 register cannot be a bool");
	REFUSE("3.0", ((struct value){ .type = VT_DPI, .i = 2 }), "a uint16 register cannot be a dpi");
	REFUSE("D3.0", ((struct value){ .type = VT_TIME, .i = 2 }), "a float64 register cannot be a time");
#undef REFUSE
	/* fractions into integer types are rounded, not refused */
	CONVW("U3.0", F(65534.6), 0xFFFF);
	CONVW("U3.0", F(-0.4), 0x0000);
	CONVW("S3.0", F(-1.5), 0xFFFF, 0xFFFE);
	CONV("Q3.0", F(-9223372036854775808.0), 0x8000, 0x0000, 0x0000, 0x0000);
	CHECK_INT(mb_parse_addr("U3.0", false, &a, err, sizeof(err)), 0);
	v = F(2.5);
	CHECK_INT(mb_value_to_regs(&a, &v, regs, err, sizeof(err)), 0);
	CHECK_INT(regs[0], 3);

	/* bits */
	v = B(1);
	CHECK_INT(mb_value_to_bit(&v, err, sizeof(err)), 1);
	v = B(0);
	CHECK_INT(mb_value_to_bit(&v, err, sizeof(err)), 0);
	v = I(1);
	CHECK_INT(mb_value_to_bit(&v, err, sizeof(err)), 1);
	v = I(2);
	CHECK_INT(mb_value_to_bit(&v, err, sizeof(err)), -1);
	CHECK_STR(err, "2 is not a bit (0 or 1)");
	v = I(-1);
	CHECK_INT(mb_value_to_bit(&v, err, sizeof(err)), -1);
	v = F(1.0);
	CHECK_INT(mb_value_to_bit(&v, err, sizeof(err)), -1);
	CHECK_STR(err, "a float is not a bit");
	v = (struct value){ .type = VT_DPI, .i = 1 };
	CHECK_INT(mb_value_to_bit(&v, err, sizeof(err)), -1);
	CHECK_STR(err, "a dpi is not a bit");
}

int
main(void)
{
	test_names();
	test_reads();
	test_writes();
	test_exception();
	test_frame();
	test_request_errors();
	test_response_errors();
	test_addr();
	test_values();
	return CHECK_DONE();
}
