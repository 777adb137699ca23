/* modbus.c: what the modbus-client (master) and modbus-server (slave) protocols over Modbus
 * TCP share: their configuration keys and load-time checks, the tags' addresses and the
 * trace of an ADU. The client is modbus_client.c, the server modbus_server.c and the
 * register image it serves modbus_image.c; frames are modbus_codec.c's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modbus.h"

#ifndef KOMD_VERSION
#define KOMD_VERSION "unknown"
#endif

/* ---- counters ---- */

/* Exception responses by code, clause 7's table; label values are the codes in decimal. */
#define MB_EXCEPTION_COUNTER(v) { .name = "modbus_exceptions_total", \
	.help = "exception responses by exception code (client: received, server: sent)", \
	.label = "code", .label_value = (v) }
#define MB_EXCEPTION_COUNTERS \
	MB_EXCEPTION_COUNTER("1"), MB_EXCEPTION_COUNTER("2"), MB_EXCEPTION_COUNTER("3"), \
	MB_EXCEPTION_COUNTER("4"), MB_EXCEPTION_COUNTER("5"), MB_EXCEPTION_COUNTER("6"), \
	MB_EXCEPTION_COUNTER("8"), MB_EXCEPTION_COUNTER("10"), MB_EXCEPTION_COUNTER("11"), \
	MB_EXCEPTION_COUNTER("other")

const struct proto_counter mb_client_counters[] = {
	MB_EXCEPTION_COUNTERS,
	[MB_CNT_TIMEOUTS] = { .name = "modbus_response_timeouts_total",
	    .help = "requests not answered within response_timeout (each try)" },
	{ .name = NULL },
};

const struct proto_counter mb_server_counters[] = {
	MB_EXCEPTION_COUNTERS,
	{ .name = NULL },
};

void
mb_count_exception_code(struct line *l, int code)
{
	static const uint8_t codes[] = { MB_EX_ILLEGAL_FUNCTION, MB_EX_ILLEGAL_ADDRESS, MB_EX_ILLEGAL_VALUE,
		MB_EX_DEVICE_FAILURE, MB_EX_ACKNOWLEDGE, MB_EX_BUSY, MB_EX_MEMORY_PARITY, MB_EX_GATEWAY_PATH,
		MB_EX_GATEWAY_TARGET };
	size_t i = 0;

	while (i < sizeof(codes) && codes[i] != code)
		i++;
	line_counter_add(l, MB_CNT_EXCEPTIONS + (int)i, 1); /* not found: i is "other"'s */
}

/* ---- configuration ---- */

static const char *const mb_addressing_choices[] = { "zero", "one", NULL };
static const char *const mb_reg_write_choices[] = { "fc6", "fc16", NULL };
static const char *const mb_bit_write_choices[] = { "fc22", "rmw", NULL };
static const char *const mb_unknown_unit_choices[] = { "exception", "ignore", NULL };

const struct conf_key mb_client_line_keys[] = {
	{ .name = "max_outstanding", .type = CK_INT, .min = 1, .max = 64, .def = "1",
	  .off = offsetof(struct mb_line_conf, max_outstanding),
	  .help = "requests in flight at once on the connection (many devices take only 1)" },
	{ .name = NULL, .type = CK_END },
};

const struct conf_key mb_server_line_keys[] = {
	{ .name = "unknown_unit", .type = CK_CHOICE, .def = "exception", .choices = mb_unknown_unit_choices,
	  .off = offsetof(struct mb_line_conf, unknown_unit),
	  .help = "a request for a unit id no station has: exception (0x0B, gateway target failed) or ignore" },
	{ .name = NULL, .type = CK_END },
};

const struct conf_key mb_client_station_keys[] = {
	{ .name = "addressing", .type = CK_CHOICE, .def = "zero", .choices = mb_addressing_choices,
	  .off = offsetof(struct mb_station_conf, addressing),
	  .help = "tag addresses are protocol addresses from 0 (zero) or register numbers from 1 (one)" },
	{ .name = "retries", .type = CK_INT, .min = 0, .max = 10, .def = "2",
	  .off = offsetof(struct mb_station_conf, retries), .help = "times a request is sent again after response_timeout" },
	{ .name = "max_read_registers", .type = CK_INT, .min = 1, .max = MB_MAX_READ_REGS, .def = "125",
	  .off = offsetof(struct mb_station_conf, max_regs), .help = "most registers in one read request" },
	{ .name = "max_read_bits", .type = CK_INT, .min = 1, .max = MB_MAX_READ_BITS, .def = "2000",
	  .off = offsetof(struct mb_station_conf, max_bits), .help = "most coils or inputs in one read request" },
	{ .name = "max_gap", .type = CK_INT, .min = 0, .max = 124, .def = "8",
	  .off = offsetof(struct mb_station_conf, max_gap),
	  .help = "largest run of unused addresses that one read request may span" },
	{ .name = "register_write", .type = CK_CHOICE, .def = "fc6", .choices = mb_reg_write_choices,
	  .off = offsetof(struct mb_station_conf, reg_write),
	  .help = "one-register writes with FC 6, or always FC 16 (multi-register values always use FC 16)" },
	{ .name = "bit_write", .type = CK_CHOICE, .def = "fc22", .choices = mb_bit_write_choices,
	  .off = offsetof(struct mb_station_conf, bit_write),
	  .help = "a bit in a register: FC 22 mask write, or read-modify-write (FC 3 then FC 6/16)" },
	{ .name = NULL, .type = CK_END },
};

const struct conf_key mb_server_station_keys[] = {
	{ .name = "addressing", .type = CK_CHOICE, .def = "zero", .choices = mb_addressing_choices,
	  .off = offsetof(struct mb_station_conf, addressing),
	  .help = "tag addresses are protocol addresses from 0 (zero) or register numbers from 1 (one)" },
	{ .name = "inactivity_timeout", .type = CK_SECONDS, .min = 0, .max = 86400, .def = "0",
	  .off = offsetof(struct mb_station_conf, inactivity_ms),
	  .help = "no valid request for this unit within it: the station is flagged (0: off)" },
	/* the objects of read device identification (6.21), in object id order */
	{ .name = "vendor_name", .type = CK_STRING, .def = "komd", .off = offsetof(struct mb_station_conf, devid[0]),
	  .help = "FC 43 object 0 (VendorName) and FC 17: the vendor, 1 to 244 bytes" },
	{ .name = "product_code", .type = CK_STRING, .def = "komd", .off = offsetof(struct mb_station_conf, devid[1]),
	  .help = "FC 43 object 1 (ProductCode) and FC 17: the product code, 1 to 244 bytes" },
	{ .name = "revision", .type = CK_STRING, .def = KOMD_VERSION, .off = offsetof(struct mb_station_conf, devid[2]),
	  .help = "FC 43 object 2 (MajorMinorRevision) and FC 17: the revision, 1 to 244 bytes; default komd's version" },
	{ .name = "vendor_url", .type = CK_STRING, .def = "", .off = offsetof(struct mb_station_conf, devid[3]),
	  .help = "FC 43 object 3 (VendorUrl), up to 244 bytes; not set: the device has no such object" },
	{ .name = "product_name", .type = CK_STRING, .def = "", .off = offsetof(struct mb_station_conf, devid[4]),
	  .help = "FC 43 object 4 (ProductName), up to 244 bytes; not set: the device has no such object" },
	{ .name = "model_name", .type = CK_STRING, .def = "", .off = offsetof(struct mb_station_conf, devid[5]),
	  .help = "FC 43 object 5 (ModelName), up to 244 bytes; not set: the device has no such object" },
	{ .name = NULL, .type = CK_END },
};

int
mb_unit_of(const struct station_conf *sc, uint8_t *unit, char *err, size_t errlen)
{
	char *end;
	long v;

	if (!sc->address) {
		snprintf(err, errlen, "a Modbus station needs address = unit id (0..255)");
		return -1;
	}
	v = strtol(sc->address, &end, 10);
	if (*sc->address == '\0' || *end != '\0' || v < 0 || v > 255) {
		snprintf(err, errlen, "Modbus unit id must be 0..255, not '%s'", sc->address);
		return -1;
	}
	*unit = (uint8_t)v;
	return 0;
}

int
mb_check_station(const struct station_conf *sc, char *err, size_t errlen)
{
	uint8_t unit;

	if (sc->simulation && !sc->address)
		return 0;
	return mb_unit_of(sc, &unit, err, errlen);
}

/* The key of identification object id. */
static const char *
mb_devid_key(int id)
{
	for (const struct conf_key *k = mb_server_station_keys; k->name; k++)
		if (k->off == offsetof(struct mb_station_conf, devid) + (size_t)id * sizeof(char *))
			return k->name;
	return "?";
}

/* A server station: its unit id, and identification objects that fit their responses. */
int
mb_check_server_station(const struct station_conf *sc, char *err, size_t errlen)
{
	const struct mb_station_conf *c = sc->pconf;

	if (mb_check_station(sc, err, errlen) != 0)
		return -1;
	for (int id = 0; c && id < MB_DEVID_NOBJ; id++) {
		const char *v = c->devid[id] ? c->devid[id] : "";
		if (id <= 2 && v[0] == '\0') {
			snprintf(err, errlen, "%s must not be empty (a mandatory object of device identification)",
			    mb_devid_key(id));
			return -1;
		}
		if (strlen(v) > MB_DEVID_MAX_LEN) {
			snprintf(err, errlen, "%s is %zu bytes long, more than the %d of one identification object",
			    mb_devid_key(id), strlen(v), MB_DEVID_MAX_LEN);
			return -1;
		}
	}
	return 0;
}

static bool
mb_one_based(const struct station_conf *sc)
{
	const struct mb_station_conf *c = sc->pconf;
	return c && c->addressing == 1;
}

int
mb_check_tag(const struct station_conf *sc, const struct tag_conf *tc, char *err, size_t errlen)
{
	struct mb_addr a;

	if (!tc->address)
		return 0;
	if (mb_parse_addr(tc->address, mb_one_based(sc), &a, err, errlen) != 0)
		return -1;
	if (!mb_type_fits(&a, tc->type)) {
		snprintf(err, errlen, "a %s tag cannot live at Modbus address '%s'", vtype_name(tc->type), tc->address);
		return -1;
	}
	return 0;
}

/* ---- tags ---- */

void
mb_station_addrs(struct station *st)
{
	char err[160];

	for (int i = 0; i < station_ntags(st); i++) {
		struct stag *t = station_stag(st, i);
		struct mb_tag *mt = stag_priv(t);
		const struct tag_conf *tc = stag_conf(t);
		if (!tc->address || mb_parse_addr(tc->address, mb_one_based(station_conf(st)), &mt->a, err,
		    sizeof(err)) != 0)
			mt->a.ignore = true; /* simulated stations may have none; checked at load */
	}
}

/* ---- trace ---- */

/* The trace of one ADU (mb_trace_adu, once the line traces). */
void
mb_trace(struct session *s, bool out, bool response, const uint8_t *adu, size_t len)
{
	char text[400], what[360];
	struct mb_mbap h;
	size_t alen;
	char err[80];

	if (mb_frame(adu, len, &h, &alen, err, sizeof(err)) == 1 && alen > MB_MBAP_LEN)
		snprintf(text, sizeof(text), "tid %u unit %u %s", h.tid, h.unit,
		    mb_describe(adu + MB_MBAP_LEN, alen - MB_MBAP_LEN, response, what, sizeof(what)));
	else
		snprintf(text, sizeof(text), "(not a Modbus frame)");
	session_trace(s, out, adu, len, text);
}

long
mb_frame_len(const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	struct mb_mbap h;
	size_t alen;
	int r = mb_frame(buf, len, &h, &alen, err, errlen);

	return r > 0 ? (long)alen : r;
}
