/* test_modbus_id.c: Modbus identification, FC 17 (report server id, 6.13) and FC 43 / MEI 14
 * (read device identification, 6.21 of the MODBUS Application Protocol Specification
 * V1.1b3), with the specification's example as byte vectors; mb_describe, the trace's
 * reading of every PDU as a request or as a response. (Every protocol's keys in komd.conf(5):
 * test_conf's test_manpage.) */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "modbus_codec.h"
#include "proto.h"

#include "mb_adu.h"

/* 6.13 FC 17 and 6.21 FC 43 / MEI 14, after the specification's example (basic
 * identification in one response: "Company identification", "Product code XX", "V2.11"). */
static void
test_identification(void)
{
	static const char *const spec[MB_DEVID_NOBJ] = { "Company identification", "Product code XX", "V2.11" };
	static const uint8_t basic[] = { 0x2B, 0x0E, 0x01, 0x81, 0x00, 0x00, 0x03,
		0x00, 0x16, 'C', 'o', 'm', 'p', 'a', 'n', 'y', ' ', 'i', 'd', 'e', 'n', 't', 'i', 'f', 'i', 'c', 'a',
		't', 'i', 'o', 'n',
		0x01, 0x0F, 'P', 'r', 'o', 'd', 'u', 'c', 't', ' ', 'c', 'o', 'd', 'e', ' ', 'X', 'X',
		0x02, 0x05, 'V', '2', '.', '1', '1' };
	static const uint8_t one[] = { 0x2B, 0x0E, 0x04, 0x81, 0x00, 0x00, 0x01, 0x02, 0x05, 'V', '2', '.', '1', '1' };
	static const uint8_t from2[] = { 0x2B, 0x0E, 0x02, 0x81, 0x00, 0x00, 0x01, 0x02, 0x05, 'V', '2', '.', '1', '1' };
	static const uint8_t fc17[] = { 0x11, 0x07, 0x11, 0xFF, 'k', 'o', 'm', 'd', '!' };
	const char *objs[MB_DEVID_NOBJ] = { "Company identification", "Product code XX", "V2.11" };
	char big[3][MB_DEVID_MAX_LEN + 2];
	uint8_t buf[MB_MAX_ADU], data[300];
	size_t n;

	/* stream access, basic, from object 0: the three objects, conformity 0x81 */
	CHECK_INT(mb_encode_device_id(buf, &n, TID, UNIT, 1, 0, spec), 0);
	CHECK(adu_is(buf, n, basic, sizeof(basic)));
	/* regular, extended asked of a basic device: the same objects (its level) */
	CHECK_INT(mb_encode_device_id(buf, &n, TID, UNIT, 2, 0, spec), 0);
	CHECK(n == 7 + sizeof(basic) && buf[9] == 2 && memcmp(buf + 10, basic + 3, sizeof(basic) - 3) == 0);
	CHECK_INT(mb_encode_device_id(buf, &n, TID, UNIT, 3, 0, spec), 0);
	CHECK(n == 7 + sizeof(basic) && buf[9] == 3);
	/* from an object it has: that one on; from one it has not (in the category): from 0 */
	CHECK_INT(mb_encode_device_id(buf, &n, TID, UNIT, 2, 2, spec), 0);
	CHECK(adu_is(buf, n, from2, sizeof(from2)));
	CHECK_INT(mb_encode_device_id(buf, &n, TID, UNIT, 1, 3, spec), 0);
	CHECK(n == 7 + sizeof(basic) && buf[13] == 3);
	CHECK_INT(mb_encode_device_id(buf, &n, TID, UNIT, 2, 0x80, spec), 0);
	CHECK(n == 7 + sizeof(basic));
	/* individual access: the object, or 02 */
	CHECK_INT(mb_encode_device_id(buf, &n, TID, UNIT, 4, 2, spec), 0);
	CHECK(adu_is(buf, n, one, sizeof(one)));
	CHECK_INT(mb_encode_device_id(buf, &n, TID, UNIT, 4, 3, spec), MB_EX_ILLEGAL_ADDRESS);
	CHECK_INT(n, 0);
	CHECK_INT(mb_encode_device_id(buf, &n, TID, UNIT, 4, 0xFF, spec), MB_EX_ILLEGAL_ADDRESS);
	CHECK_INT(mb_encode_device_id(buf, &n, TID, UNIT, 0, 0, spec), MB_EX_ILLEGAL_VALUE);
	CHECK_INT(mb_encode_device_id(buf, &n, TID, UNIT, 5, 0, spec), MB_EX_ILLEGAL_VALUE);

	/* a regular object: conformity 0x82; basic access still sends 0..2 only */
	objs[4] = "komd";
	CHECK_INT(mb_encode_device_id(buf, &n, TID, UNIT, 2, 0, objs), 0);
	CHECK(buf[10] == 0x82 && buf[13] == 4 && n == 7 + sizeof(basic) + 6 && buf[n - 6] == 4 && buf[n - 5] == 4);
	CHECK_INT(mb_encode_device_id(buf, &n, TID, UNIT, 1, 0, objs), 0);
	CHECK(buf[10] == 0x82 && buf[13] == 3 && n == 7 + sizeof(basic));
	CHECK_INT(mb_encode_device_id(buf, &n, TID, UNIT, 2, 4, objs), 0);
	CHECK(buf[13] == 1 && buf[14] == 4 && n == 7 + 7 + 2 + 4);

	/* objects of 244 bytes: one response holds one of them; More Follows, Next Object Id */
	for (int i = 0; i < 3; i++) {
		memset(big[i], 'a' + i, MB_DEVID_MAX_LEN);
		big[i][MB_DEVID_MAX_LEN] = '\0';
		objs[3 + i] = big[i];
	}
	CHECK_INT(mb_encode_device_id(buf, &n, TID, UNIT, 2, 0, objs), 0);
	CHECK(buf[11] == 0xFF && buf[12] == 3 && buf[13] == 3 && n <= MB_MAX_ADU);
	CHECK_INT(mb_encode_device_id(buf, &n, TID, UNIT, 2, 3, objs), 0);
	CHECK(buf[11] == 0xFF && buf[12] == 4 && buf[13] == 1 && n == MB_MAX_ADU && buf[14] == 3 && buf[15] == 244);
	CHECK_INT(mb_encode_device_id(buf, &n, TID, UNIT, 2, 5, objs), 0);
	CHECK(buf[11] == 0x00 && buf[12] == 0 && buf[13] == 1 && buf[14] == 5);
	CHECK_INT(mb_encode_device_id(buf, &n, TID, UNIT, 4, 4, objs), 0);
	CHECK(n == MB_MAX_ADU && buf[14] == 4);
	/* what breaks the rules is refused (04), never sent cut */
	big[0][MB_DEVID_MAX_LEN] = 'x';
	big[0][MB_DEVID_MAX_LEN + 1] = '\0';
	CHECK_INT(mb_encode_device_id(buf, &n, TID, UNIT, 2, 0, objs), MB_EX_DEVICE_FAILURE);
	objs[3] = NULL;
	objs[1] = "";
	CHECK_INT(mb_encode_device_id(buf, &n, TID, UNIT, 1, 0, objs), MB_EX_DEVICE_FAILURE);

	/* the requests, and the responses as a client decodes them */
	{
		static const uint8_t req17[] = { 0x11 };
		static const uint8_t req43[] = { 0x2B, 0x0E, 0x01, 0x00 };
		struct mb_sent sent = { .fc = 43 };
		struct mb_response rs;
		struct mb_request rq;
		char err[128];

		n = mb_encode_report_server_id_request(buf, TID, UNIT);
		CHECK(adu_is(buf, n, req17, sizeof(req17)));
		n = mb_encode_device_id_request(buf, TID, UNIT, 1, 0);
		CHECK(adu_is(buf, n, req43, sizeof(req43)));
		CHECK_INT(mb_decode_request(buf + 7, n - 7, &rq), 0);
		CHECK_INT(mb_encode_device_id_request(buf, TID, UNIT, 5, 0), 0);
		CHECK_INT(mb_decode_response(basic, sizeof(basic), &sent, &rs, err, sizeof(err)), 0);
		CHECK(rs.data == basic + 1 && rs.data_len == sizeof(basic) - 1);
		CHECK_INT(mb_decode_response(basic, sizeof(basic) - 1, &sent, &rs, err, sizeof(err)), -1);
		CHECK_STR(err, "encapsulated interface transport: 3 objects do not fill 54 bytes");
		CHECK_INT(mb_decode_response(basic, 7 + 2 + 0x16, &sent, &rs, err, sizeof(err)), -1);
		CHECK_INT(mb_decode_response(req43, sizeof(req43), &sent, &rs, err, sizeof(err)), -1);
		CHECK_STR(err, "encapsulated interface transport: not a read device identification response");
		sent.fc = 17;
		CHECK_INT(mb_decode_response(fc17, sizeof(fc17), &sent, &rs, err, sizeof(err)), 0);
		CHECK(rs.data == fc17 + 2 && rs.data_len == 7);
		CHECK_INT(mb_decode_response(fc17, sizeof(fc17) - 1, &sent, &rs, err, sizeof(err)), -1);
		CHECK_STR(err, "report server id: response of 8 bytes with byte count 7");
		CHECK_INT(mb_decode_response(req17, sizeof(req17), &sent, &rs, err, sizeof(err)), -1);
	}

	/* FC 17: byte count, server id, run indicator, data; the data cut to fit 253 */
	n = mb_encode_report_server_id(buf, TID, UNIT, 0x11, true, "komd!", 5);
	CHECK(adu_is(buf, n, fc17, sizeof(fc17)));
	n = mb_encode_report_server_id(buf, TID, UNIT, 1, false, NULL, 0);
	CHECK(n == 11 && buf[8] == 2 && buf[10] == 0x00);
	memset(data, 'z', sizeof(data));
	n = mb_encode_report_server_id(buf, TID, UNIT, 1, true, data, sizeof(data));
	CHECK(n == MB_MAX_ADU && buf[8] == 251);
}

/* Traces: requests as requests, responses as responses, every function code. */
static void
test_describe(void)
{
	char b[400];

#define DQ(want, ...) do { static const uint8_t pdu_[] = { __VA_ARGS__ }; \
	CHECK_STR(mb_describe(pdu_, sizeof(pdu_), false, b, sizeof(b)), want); } while (0)
#define DR(want, ...) do { static const uint8_t pdu_[] = { __VA_ARGS__ }; \
	CHECK_STR(mb_describe(pdu_, sizeof(pdu_), true, b, sizeof(b)), want); } while (0)
	/* 6.1 .. 6.4 */
	DQ("read coils addr 19 count 19", 0x01, 0x00, 0x13, 0x00, 0x13);
	DR("read coils reply: 3 bytes cd 6b 05", 0x01, 0x03, 0xCD, 0x6B, 0x05);
	DQ("read discrete inputs addr 196 count 22", 0x02, 0x00, 0xC4, 0x00, 0x16);
	DR("read discrete inputs reply: 3 bytes ac db 35", 0x02, 0x03, 0xAC, 0xDB, 0x35);
	DQ("read holding registers addr 107 count 3", 0x03, 0x00, 0x6B, 0x00, 0x03);
	DR("read holding registers reply: 555 0 100", 0x03, 0x06, 0x02, 0x2B, 0x00, 0x00, 0x00, 0x64);
	/* the issue: a reply read as a request gave "addr 1485 27570" */
	DR("read holding registers reply: 1485 27570", 0x03, 0x04, 0x05, 0xCD, 0x6B, 0xB2);
	DQ("read input registers addr 8 count 1", 0x04, 0x00, 0x08, 0x00, 0x01);
	DR("read input registers reply: 10", 0x04, 0x02, 0x00, 0x0A);
	/* 6.5, 6.6, 6.11, 6.12, 6.16, 6.17 */
	DQ("write single coil addr 172 on", 0x05, 0x00, 0xAC, 0xFF, 0x00);
	DR("write single coil reply addr 172 on", 0x05, 0x00, 0xAC, 0xFF, 0x00);
	DQ("write single coil addr 172 value 0x0001", 0x05, 0x00, 0xAC, 0x00, 0x01);
	DQ("write single register addr 1 value 3", 0x06, 0x00, 0x01, 0x00, 0x03);
	DR("write single register reply addr 1 value 3", 0x06, 0x00, 0x01, 0x00, 0x03);
	DQ("write multiple coils addr 19 count 10: cd 01", 0x0F, 0x00, 0x13, 0x00, 0x0A, 0x02, 0xCD, 0x01);
	DR("write multiple coils reply addr 19 count 10", 0x0F, 0x00, 0x13, 0x00, 0x0A);
	DQ("write multiple registers addr 1 count 2: 10 258", 0x10, 0x00, 0x01, 0x00, 0x02, 0x04, 0x00, 0x0A, 0x01, 0x02);
	DR("write multiple registers reply addr 1 count 2", 0x10, 0x00, 0x01, 0x00, 0x02);
	DQ("mask write register addr 4 and 0x00f2 or 0x0025", 0x16, 0x00, 0x04, 0x00, 0xF2, 0x00, 0x25);
	DR("mask write register reply addr 4 and 0x00f2 or 0x0025", 0x16, 0x00, 0x04, 0x00, 0xF2, 0x00, 0x25);
	DQ("read/write multiple registers read addr 3 count 6 write addr 14 count 3: 255 255 255", 0x17, 0x00, 0x03,
	    0x00, 0x06, 0x00, 0x0E, 0x00, 0x03, 0x06, 0x00, 0xFF, 0x00, 0xFF, 0x00, 0xFF);
	DR("read/write multiple registers reply: 254 2765 1 3 13 255", 0x17, 0x0C, 0x00, 0xFE, 0x0A, 0xCD, 0x00, 0x01,
	    0x00, 0x03, 0x00, 0x0D, 0x00, 0xFF);
	/* 6.13, 6.21 */
	DQ("report server id", 0x11);
	DR("report server id reply: server id 1 run on \"komd\"", 0x11, 0x06, 0x01, 0xFF, 'k', 'o', 'm', 'd');
	DR("report server id reply: server id 180 run off \"LMB\\x22\\x5c\\x0a\"", 0x11, 0x08, 0xB4, 0x00, 'L', 'M',
	    'B', '"', '\\', '\n');
	DR("report server id reply: server id 2 run 0x01", 0x11, 0x02, 0x02, 0x01);
	DQ("read device identification basic object 0", 0x2B, 0x0E, 0x01, 0x00);
	DQ("read device identification individual object 128", 0x2B, 0x0E, 0x04, 0x80);
	DQ("read device identification code 9 object 0", 0x2B, 0x0E, 0x09, 0x00);
	DR("read device identification reply: basic conformity 0x81 more 0x00 next 0 objects 2: 0 \"komd\" 2 \"1\"",
	    0x2B, 0x0E, 0x01, 0x81, 0x00, 0x00, 0x02, 0x00, 0x04, 'k', 'o', 'm', 'd', 0x02, 0x01, '1');
	DR("read device identification reply: regular conformity 0x82 more 0xff next 4 objects 0:", 0x2B, 0x0E, 0x02,
	    0x82, 0xFF, 0x04, 0x00);
	DR("read device identification reply: basic conformity 0x81 more 0x00 next 0 (malformed objects, 12 bytes)",
	    0x2B, 0x0E, 0x01, 0x81, 0x00, 0x00, 0x02, 0x00, 0x04, 'k', 'o', 'm');
	DQ("encapsulated interface transport MEI 13", 0x2B, 0x0D, 0x00, 0x00);
	/* exceptions: of the function code the response names */
	DR("read coils exception 2 (illegal data address)", 0x81, 0x02);
	DR("function 0 exception 1 (illegal function)", 0x80, 0x01);
	DR("function 127 exception 1 (illegal function)", 0xFF, 0x01);
	DR("encapsulated interface transport exception 3 (illegal data value)", 0xAB, 0x03);
	DR("report server id exception 11 (gateway target device failed to respond)", 0x91, 0x0B);
	DR("read holding registers exception (malformed, 3 bytes)", 0x83, 0x02, 0x00);
	/* unknown functions; what does not fit its function */
	DQ("function 0", 0x00);
	DQ("function 8 data 00 00 12 34", 0x08, 0x00, 0x00, 0x12, 0x34);
	DR("function 8 reply: 00 00 12 34", 0x08, 0x00, 0x00, 0x12, 0x34);
	DQ("read holding registers (malformed, 3 bytes)", 0x03, 0x01, 0x60);
	DQ("write multiple registers (malformed, 5 bytes)", 0x10, 0x00, 0x01, 0x00, 0x02);
	DQ("read device identification (malformed, 1 bytes)", 0x2B);
	DQ("report server id (malformed, 2 bytes)", 0x11, 0x00);
	DR("read holding registers reply (malformed, 7 bytes)", 0x03, 0x06, 0x02, 0x2B, 0x00, 0x00, 0x00);
	DR("read holding registers reply (malformed, 5 bytes)", 0x03, 0x03, 0x02, 0x2B, 0x00);
	DR("write single coil reply (malformed, 4 bytes)", 0x05, 0x00, 0xAC, 0xFF);
	DR("report server id reply (malformed, 3 bytes)", 0x11, 0x01, 0x01);
	DR("encapsulated interface transport reply (malformed, 1 bytes)", 0x2B);
	DR("read device identification reply (malformed, 6 bytes)", 0x2B, 0x0E, 0x01, 0x81, 0x00, 0x00);
	CHECK_STR(mb_describe(NULL, 0, true, b, sizeof(b)), "(empty PDU)");
	/* long ones are cut, never overrun */
	{
		uint8_t rsp[2 + 250];
		char small[24];

		rsp[0] = 0x03;
		rsp[1] = 250;
		memset(rsp + 2, 0, 250);
		CHECK_STR(mb_describe(rsp, sizeof(rsp), true, b, sizeof(b)),
		    "read holding registers reply: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 ...");
		CHECK_STR(mb_describe(rsp, sizeof(rsp), true, small, sizeof(small)), "read holding registers ");
		CHECK_INT(strlen(mb_describe(rsp, 4, false, small, 1)), 0);
	}
#undef DQ
#undef DR
}

int
main(void)
{
	test_identification();
	test_describe();
	return CHECK_DONE();
}
