/* fuzz_modbus.c: libFuzzer target for the Modbus codec. The input is read as a stream of
 * Modbus TCP ADUs (mb_frame); each PDU is decoded as a request (a valid one must encode
 * back to the same bytes, and the response the server would send must decode against it)
 * and as a response to a few requests derived from the input. The input is also parsed as
 * a tag address (which must format and parse back to the same address) and fed to the
 * register <-> value conversions. */
#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "modbus_codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Re-encode a request that decoded, and compare with what came in. */
static void
reencode(const uint8_t *adu, size_t alen, const struct mb_mbap *h, const struct mb_request *rq)
{
	uint8_t buf[MB_MAX_ADU], bits[MB_MAX_WRITE_BITS];
	uint16_t regs[MB_MAX_WRITE_REGS];
	size_t n = 0;

	switch (rq->fc) {
	case MB_FC_READ_COILS: case MB_FC_READ_DISCRETE:
	case MB_FC_READ_HOLDING: case MB_FC_READ_INPUT:
		n = mb_encode_read(buf, h->tid, h->unit, rq->fc, rq->addr, rq->count);
		break;
	case MB_FC_WRITE_COIL:
		n = mb_encode_write_coil(buf, h->tid, h->unit, rq->addr, rq->value == 0xFF00);
		break;
	case MB_FC_WRITE_REGISTER:
		n = mb_encode_write_register(buf, h->tid, h->unit, rq->addr, rq->value);
		break;
	case MB_FC_WRITE_COILS:
		for (unsigned i = 0; i < rq->count; i++)
			bits[i] = mb_get_bit(rq->data, i);
		n = mb_encode_write_coils(buf, h->tid, h->unit, rq->addr, bits, rq->count);
		/* padding bits of the last byte are not ours to keep */
		if (rq->count % 8)
			buf[n - 1] = (uint8_t)(buf[n - 1] | (adu[alen - 1] & (0xFF << (rq->count % 8))));
		break;
	case MB_FC_WRITE_REGISTERS:
		for (unsigned i = 0; i < rq->count; i++)
			regs[i] = mb_get_reg(rq->data, i);
		n = mb_encode_write_registers(buf, h->tid, h->unit, rq->addr, regs, rq->count);
		break;
	case MB_FC_MASK_WRITE:
		n = mb_encode_mask_write(buf, h->tid, h->unit, rq->addr, rq->and_mask, rq->or_mask);
		break;
	case MB_FC_READ_WRITE:
		for (unsigned i = 0; i < rq->wcount; i++)
			regs[i] = mb_get_reg(rq->data, i);
		n = mb_encode_read_write(buf, h->tid, h->unit, rq->addr, rq->count, rq->waddr, regs, rq->wcount);
		break;
	case MB_FC_REPORT_SERVER_ID:
		n = mb_encode_report_server_id_request(buf, h->tid, h->unit);
		break;
	case MB_FC_MEI:
		n = mb_encode_device_id_request(buf, h->tid, h->unit, rq->devid_code, rq->object_id);
		break;
	default:
		assert(0);
	}
	assert(n == alen && memcmp(buf, adu, n) == 0);
}

/* The response a server would give to rq must decode as an answer to it. */
static void
answer(const struct mb_request *rq)
{
	static const uint8_t ones[MB_MAX_READ_BITS] = { 1 };
	static const uint16_t regs[MB_MAX_READ_REGS] = { 0x1234 };
	struct mb_sent s = { .fc = rq->fc, .addr = rq->addr, .count = rq->count };
	struct mb_response rs;
	uint8_t buf[MB_MAX_ADU];
	char err[128];
	size_t n;

	if (rq->fc == MB_FC_REPORT_SERVER_ID || rq->fc == MB_FC_MEI) {
		/* identification: an answer, or for an object the device lacks exception 02 */
		static const char *const objs[MB_DEVID_NOBJ] = { "komd", "komd", "0.1.0", NULL, "x" };
		int ex = 0;

		if (rq->fc == MB_FC_MEI)
			ex = mb_encode_device_id(buf, &n, 1, 1, rq->devid_code, rq->object_id, objs);
		else
			n = mb_encode_report_server_id(buf, 1, 1, 1, true, "komd", 4);
		assert(ex == 0 || (ex == MB_EX_ILLEGAL_ADDRESS && rq->devid_code == MB_DEVID_INDIVIDUAL));
		if (ex == 0)
			assert(n > MB_MBAP_LEN && mb_decode_response(buf + MB_MBAP_LEN, n - MB_MBAP_LEN, &s, &rs, err,
			    sizeof(err)) == 0 && !rs.exception);
		return;
	}
	switch (rq->fc) {
	case MB_FC_READ_COILS: case MB_FC_READ_DISCRETE:
		n = mb_encode_read_bits_response(buf, 1, 1, rq->fc, ones, rq->count);
		break;
	case MB_FC_READ_HOLDING: case MB_FC_READ_INPUT: case MB_FC_READ_WRITE:
		n = mb_encode_read_regs_response(buf, 1, 1, rq->fc, regs, rq->count);
		break;
	case MB_FC_WRITE_COIL: case MB_FC_WRITE_REGISTER:
		s.value = rq->value;
		n = mb_encode_write_response(buf, 1, 1, rq->fc, rq->addr, rq->value);
		break;
	case MB_FC_WRITE_COILS: case MB_FC_WRITE_REGISTERS:
		n = mb_encode_write_response(buf, 1, 1, rq->fc, rq->addr, rq->count);
		break;
	default: /* MB_FC_MASK_WRITE */
		s.value = rq->and_mask;
		s.or_mask = rq->or_mask;
		n = mb_encode_mask_write_response(buf, 1, 1, rq->addr, rq->and_mask, rq->or_mask);
		break;
	}
	assert(n > MB_MBAP_LEN);
	assert(mb_decode_response(buf + MB_MBAP_LEN, n - MB_MBAP_LEN, &s, &rs, err, sizeof(err)) == 0);
	assert(!rs.exception && rs.fc == rq->fc);
	n = mb_encode_exception(buf, 1, 1, rq->fc, MB_EX_BUSY);
	assert(n == MB_MBAP_LEN + 2);
	assert(mb_decode_response(buf + MB_MBAP_LEN, 2, &s, &rs, err, sizeof(err)) == 0);
	assert(rs.exception && rs.excode == MB_EX_BUSY);
}

static void
responses(const uint8_t *pdu, size_t plen, const uint8_t *data, size_t size)
{
	static const uint8_t fcs[] = { 1, 2, 3, 4, 5, 6, 15, 16, 22, 23, 8 };
	struct mb_response rs;
	struct mb_sent s;
	char err[128];
	uint8_t b[8] = { 0 };

	memcpy(b, data, size < sizeof(b) ? size : sizeof(b));
	for (int k = 0; k < 3; k++) {
		s.fc = k == 0 && plen > 0 ? (uint8_t)(pdu[0] & 0x7F) : fcs[(b[0] + k) % sizeof(fcs)];
		s.addr = (uint16_t)(b[1] << 8 | b[2]);
		s.count = (uint16_t)(k == 2 ? b[3] : (b[3] << 8 | b[4]));
		s.value = (uint16_t)(b[5] << 8 | b[6]);
		s.or_mask = (uint16_t)(b[7] << 8 | b[6]);
		if (mb_decode_response(pdu, plen, &s, &rs, err, sizeof(err)) == 0 && !rs.exception &&
		    rs.data != NULL) {
			assert(rs.data >= pdu && rs.data + rs.data_len <= pdu + plen);
			for (size_t i = 0; i + 1 < rs.data_len; i += 2)
				(void)mb_get_reg(rs.data, (unsigned)(i / 2));
			if (rs.data_len > 0)
				(void)mb_get_bit(rs.data, (unsigned)(rs.data_len * 8 - 1));
		}
	}
}

static void
address(const uint8_t *data, size_t size)
{
	static const enum vtype vts[] = { VT_BOOL, VT_DPI, VT_INT, VT_FLOAT, VT_STRING, VT_TIME };
	char s[300], err[128], fmt[64];
	struct mb_addr a, b;
	size_t n = size < sizeof(s) - 1 ? size : sizeof(s) - 1;

	memcpy(s, data, n);
	s[n] = '\0';
	for (int ob = 0; ob < 2; ob++) {
		uint16_t regs[4] = { 0 };
		struct value v;

		if (mb_parse_addr(s, ob, &a, err, sizeof(err)) != 0)
			continue;
		assert(a.fn >= 1 && a.fn <= 4 && a.bit >= -1 && a.bit <= 15);
		assert(a.nregs == 0 || (uint32_t)a.addr + a.nregs <= 65536);
		mb_format_addr(&a, ob, fmt, sizeof(fmt));
		assert(mb_parse_addr(fmt, ob, &b, err, sizeof(err)) == 0);
		assert(memcmp(&a, &b, sizeof(a)) == 0);
		/* register <-> value with the input's bytes as registers, values and doubles */
		if (a.nregs == 0)
			continue;
		for (unsigned i = 0; i < 4 && 2 * i + 1 < size; i++)
			regs[i] = (uint16_t)(data[2 * i] << 8 | data[2 * i + 1]);
		for (size_t k = 0; k < sizeof(vts) / sizeof(vts[0]); k++)
			if (mb_regs_to_value(&a, regs, vts[k], &v, err, sizeof(err)) == 0) {
				uint16_t back[4];

				assert(mb_type_fits(&a, vts[k]));
				if (a.type != MB_T_BIT && mb_value_to_regs(&a, &v, back, err, sizeof(err)) == 0 &&
				    vts[k] == VT_INT && a.type != MB_T_F32 && a.type != MB_T_F32S &&
				    a.type != MB_T_F64 && a.type != MB_T_F64L)
					assert(memcmp(back, regs, a.nregs * sizeof(regs[0])) == 0);
			}
		if (size >= 8) {
			int64_t i;
			double d;

			memcpy(&i, data, sizeof(i));
			memcpy(&d, data, sizeof(d));
			v = (struct value){ .type = VT_INT, .i = i };
			(void)mb_value_to_regs(&a, &v, regs, err, sizeof(err));
			(void)mb_value_to_bit(&v, err, sizeof(err));
			v = (struct value){ .type = VT_FLOAT, .f = d };
			(void)mb_value_to_regs(&a, &v, regs, err, sizeof(err));
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t off = 0, alen;
	struct mb_mbap h;
	char err[128];
	int r;

	while (off < size && (r = mb_frame(data + off, size - off, &h, &alen, err, sizeof(err))) == 1) {
		const uint8_t *pdu = data + off + MB_MBAP_LEN;
		size_t plen = alen - MB_MBAP_LEN;
		struct mb_request rq;

		assert(alen >= MB_MBAP_LEN + 1 && alen <= MB_MAX_ADU && off + alen <= size);
		r = mb_decode_request(pdu, plen, &rq);
		assert(r == 0 || r == MB_EX_ILLEGAL_FUNCTION || r == MB_EX_ILLEGAL_ADDRESS ||
		    r == MB_EX_ILLEGAL_VALUE);
		if (r == 0) {
			if (rq.data != NULL)
				assert(rq.data >= pdu && rq.data + rq.data_len <= pdu + plen);
			reencode(data + off, alen, &h, &rq);
			answer(&rq);
		} else
			assert(mb_fc_name(rq.fc) != NULL || r == MB_EX_ILLEGAL_FUNCTION);
		(void)mb_exception_name(plen > 1 ? pdu[1] : 0);
		{
			char text[400];

			/* traces read any PDU both ways, within their buffer */
			assert(strlen(mb_describe(pdu, plen, false, text, sizeof(text))) < sizeof(text));
			assert(strlen(mb_describe(pdu, plen, true, text, sizeof(text))) < sizeof(text));
			(void)mb_describe(pdu, plen, true, text, 17);
		}
		responses(pdu, plen, data, size);
		off += alen;
	}
	address(data, size);
	return 0;
}
