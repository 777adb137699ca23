/* fuzz_engine.c: libFuzzer target for the protocol engines (modbus.c, iec104.c, komtext.c,
 * the mqtt-client's mqtt*.c) as the core runs them: sessions (session.c), stations and
 * polling (station.c), the tag hub and its writes (tags.c), and a TLS server handshake
 * (tls.c). No network: as tmux's
 * fuzzers drive their parser through a pair of buffers, each input is one connection over
 * a socketpair, the peer's side written by the fuzzer.
 *
 * Start-up, once: the configuration below (every engine, client and server, with stations
 * and tags; servers serve what the clients acquire) is loaded with conf_load. Each input
 * then builds the tag table and every line afresh (line_create, marked started, but with
 * no listener and no connect), so that sequence numbers and transaction ids start from
 * zero every time and an input replays the same way.
 *
 * The first byte selects:
 *   bits 0-3  the line (index into the configuration's lines, modulo their number)
 *   bits 4-5  time advances after each chunk: 0, 1, 2 or 4 (see fuzz_advance)
 *   bit 6     after the first chunk: writes to the line's writable tags (client lines), or
 *             new values and qualities for the tags it serves (server lines)
 *   bit 7     the rest in three chunks, then end of file; else one chunk, and the line
 *             closes the session when it is freed
 * The rest is what the peer sends. A client line's peer is a device answering komd's
 * requests (which are deterministic: the first poll, STARTDT or PING goes out before the
 * first chunk is written); a server line's peer is a client. A few lines get a second
 * connection that the fuzzer does not drive (fuzz_extra): an IEC 104 group's started
 * connection, a client's standby or second feed, so that data moves and takeovers run.
 * komd's answers are read and dropped (FUZZ_ENGINE_DUMP=1 prints them in hex, to write
 * seeds with; FUZZ_ENGINE_LOG=1 turns komd's log on).
 *
 * Time: a bounded number of advances, each firing the timers (t1/t2/t3, response, poll,
 * write and inactivity timeouts) that would expire first, at once, without waiting.
 * Checks besides the sanitizers: every write the fuzzer asks for is answered exactly once,
 * and nothing is left in the event base once the lines are freed. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "core.h"
#include "tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#include "fuzz_core.h"


/* Reconnect delays of an hour: a client line whose session ends schedules its next
 * attempt, which must never come (the fuzzer's advances skip those timers too). */
static const char fuzz_conf_text[] =
	"control_socket = \"/nonexistent/komd-fuzz.sock\";\n"
	"write_timeout = 3;\n"
	"tags = (\n"
	"  { name = \"m.f\"; type = \"float\";  initial = 1.5; },\n"
	"  { name = \"m.i\"; type = \"int\";    initial = 7; },\n"
	"  { name = \"m.b\"; type = \"bool\";   initial = true; },\n"
	"  { name = \"m.d\"; type = \"dpi\";    initial = \"on\"; },\n"
	"  { name = \"m.s\"; type = \"string\"; initial = \"text\"; },\n"
	"  { name = \"m.t\"; type = \"time\"; }\n"
	");\n"
	"lines = (\n"
	/* 0: Modbus client, one request in flight; two units with different options */
	"  { name = \"mbc\"; protocol = \"modbus-client\"; host = \"127.0.0.1\"; port = 502;\n"
	"    reconnect_delay = 3600; reconnect_max = 3600; max_outstanding = 1;\n"
	"    stations = (\n"
	"      { name = \"u1\"; address = 1; delay = 2; response_timeout = 0.5; retries = 1;\n"
	"        tags = (\n"
	"          { name = \"mbc.f\";    address = \"f3.0\";   type = \"float\"; direction = \"inout\"; },\n"
	"          { name = \"mbc.u\";    address = \"3.2\";    type = \"int\";   direction = \"inout\"; },\n"
	"          { name = \"mbc.bit\";  address = \"3.3.4\";  type = \"bool\";  direction = \"inout\"; },\n"
	"          { name = \"mbc.coil\"; address = \"1.0\";    type = \"bool\";  direction = \"inout\"; },\n"
	"          { name = \"mbc.di\";   address = \"2.5\";    type = \"bool\"; },\n"
	"          { name = \"mbc.ir\";   address = \"I4.10\";  type = \"int\"; },\n"
	"          { name = \"mbc.q\";    address = \"Q3.20\";  type = \"int\";   direction = \"inout\"; },\n"
	"          { name = \"mbc.dl\";   address = \"Dl3.30\"; type = \"float\"; },\n"
	"          { name = \"mbc.ign\";  address = \"%IGNORE3.40\"; type = \"int\"; direction = \"inout\"; }\n"
	"        ); },\n"
	"      { name = \"u2\"; address = 2; delay = 2; response_timeout = 0.5; retries = 0; addressing = \"one\";\n"
	"        bit_write = \"rmw\"; register_write = \"fc16\"; max_read_registers = 2; max_gap = 0;\n"
	"        tags = (\n"
	"          { name = \"mbc2.bit\"; address = \"3.1.0\"; type = \"bool\"; direction = \"inout\"; },\n"
	"          { name = \"mbc2.u\";   address = \"3.5\";   type = \"int\";  direction = \"inout\"; },\n"
	"          { name = \"mbc2.l\";   address = \"Ll3.6\"; type = \"int\"; },\n"
	"          { name = \"mbc2.F\";   address = \"F4.1\";  type = \"float\"; }\n"
	"        ); }\n"
	"    ); },\n"
	/* 1: Modbus server; unit 2 has overlapping spans (no cached image) */
	"  { name = \"mbs\"; protocol = \"modbus-server\"; host = \"127.0.0.1\"; port = 502;\n"
	"    stations = (\n"
	"      { name = \"u1\"; address = 1;\n"
	"        tags = (\n"
	"          { name = \"m.f\";      address = \"f3.0\";  direction = \"inout\"; },\n"
	"          { name = \"m.i\";      address = \"3.2\";   direction = \"inout\"; },\n"
	"          { name = \"m.b\";      address = \"3.3.0\"; direction = \"inout\"; },\n"
	"          { name = \"mbc.bit\";  address = \"3.3.1\"; direction = \"inout\"; },\n"
	"          { name = \"m.b\";      address = \"1.0\";   direction = \"inout\"; },\n"
	"          { name = \"mbc.coil\"; address = \"1.1\";   direction = \"inout\"; },\n"
	"          { name = \"mbc.di\";   address = \"2.0\"; },\n"
	"          { name = \"mbc.ir\";   address = \"4.0\"; },\n"
	"          { name = \"mbc.f\";    address = \"F3.4\";  direction = \"inout\"; },\n"
	"          { name = \"mbc.q\";    address = \"Q3.6\";  direction = \"inout\"; },\n"
	"          { name = \"iecc.it\";  address = \"L4.2\"; }\n"
	"        ); },\n"
	"      { name = \"u2\"; address = 2; addressing = \"one\"; inactivity_timeout = 5;\n"
	"        tags = (\n"
	"          { name = \"m.i\";   address = \"3.1\";   direction = \"inout\"; },\n"
	"          { name = \"m.f\";   address = \"3.1\"; },\n"
	"          { name = \"m.b\";   address = \"3.2.3\"; direction = \"inout\"; },\n"
	"          { name = \"ktc.f\"; address = \"Dl3.3\"; direction = \"inout\"; }\n"
	"        ); }\n"
	"    ); },\n"
	/* 2: IEC 104 client, default sizes; periodic interrogations and clock sync; commands */
	"  { name = \"iecc\"; protocol = \"iec104-client\"; host = \"127.0.0.1\"; port = 2404; line_number = 3;\n"
	"    reconnect_delay = 3600; reconnect_max = 3600;\n"
	"    stations = (\n"
	"      { name = \"ca1\"; address = 1; cmdc = 1; gi_period = 60; ci_period = 25; clock_sync_period = 120;\n"
	"        tags = (\n"
	"          { name = \"iecc.sp\";  address = \"1001\"; type = \"bool\";  iec_type = \"M_SP_TB_1\"; },\n"
	"          { name = \"iecc.dp\";  address = \"1002\"; type = \"dpi\";   iec_type = \"M_DP_NA_1\"; },\n"
	"          { name = \"iecc.nva\"; address = \"1003\"; type = \"float\"; iec_type = \"M_ME_NA_1\"; },\n"
	"          { name = \"iecc.sva\"; address = \"1004\"; type = \"int\";   iec_type = \"M_ME_NB_1\"; },\n"
	"          { name = \"iecc.flt\"; address = \"1005\"; type = \"float\"; iec_type = \"M_ME_NC_1\"; },\n"
	"          { name = \"iecc.any\"; address = \"1006\"; type = \"int\"; },\n"
	"          { name = \"iecc.it\";  address = \"1007\"; type = \"int\";   iec_type = \"M_IT_NA_1\"; },\n"
	"          { name = \"iecc.bo\";  address = \"1008\"; type = \"int\";   iec_type = \"M_BO_NA_1\"; },\n"
	"          { name = \"iecc.st\";  address = \"1009\"; type = \"int\";   iec_type = \"M_ST_NA_1\"; },\n"
	"          { name = \"iecc.sc\";  address = \"2001\"; type = \"bool\";  iec_type = \"C_SC_NA_1\"; direction = \"out\"; },\n"
	"          { name = \"iecc.dc\";  address = \"2002\"; type = \"dpi\";   iec_type = \"C_DC_TA_1\"; direction = \"out\"; sbo = true; },\n"
	"          { name = \"iecc.se\";  address = \"2003\"; type = \"float\"; iec_type = \"C_SE_NC_1\"; direction = \"inout\"; },\n"
	"          { name = \"iecc.bc\";  address = \"2004\"; type = \"int\";   iec_type = \"C_BO_NA_1\"; direction = \"out\"; }\n"
	"        ); },\n"
	"      { name = \"ca2\"; address = 2; cmdc = 2; time_zone = \"local\";\n"
	"        tags = (\n"
	"          { name = \"iecc2.f\";  address = \"1001\"; type = \"float\"; iec_type = \"M_ME_TF_1\"; },\n"
	"          { name = \"iecc2.se\"; address = \"2001\"; type = \"int\";   iec_type = \"C_SE_NB_1\"; direction = \"out\"; sbo = true; }\n"
	"        ); }\n"
	"    ); },\n"
	/* 3: IEC 104 server, redundancy groups; commands routed to memory, client and simulated tags */
	"  { name = \"iecs\"; protocol = \"iec104-server\"; host = \"127.0.0.1\"; port = 2404;\n"
	"    groups = \"127.0.0.1; 10.0.0.2, 10.0.0.3\";\n"
	"    stations = (\n"
	"      { name = \"ca1\"; address = 1; cmdc = 3;\n"
	"        tags = (\n"
	"          { name = \"m.b\";     address = \"1001\"; iec_type = \"M_SP_TB_1\"; group = 1; },\n"
	"          { name = \"m.d\";     address = \"1002\"; iec_type = \"M_DP_NA_1\"; group = 2; },\n"
	"          { name = \"m.f\";     address = \"1003\"; iec_type = \"M_ME_NC_1\"; },\n"
	"          { name = \"m.i\";     address = \"1004\"; iec_type = \"M_ME_NB_1\"; cyclic = 30; },\n"
	"          { name = \"iecc.it\"; address = \"1005\"; iec_type = \"M_IT_TB_1\"; },\n"
	"          { name = \"mbc.f\";   address = \"1006\"; iec_type = \"M_ME_TF_1\"; },\n"
	"          { name = \"m.b\";     address = \"2001\"; iec_type = \"C_SC_NA_1\"; direction = \"inout\"; },\n"
	"          { name = \"m.f\";     address = \"2002\"; iec_type = \"C_SE_NC_1\"; direction = \"inout\"; sbo = true; },\n"
	"          { name = \"mbc.u\";   address = \"2003\"; iec_type = \"C_SE_NB_1\"; direction = \"inout\"; },\n"
	"          { name = \"ktc.b\";   address = \"2004\"; iec_type = \"C_SC_TA_1\"; direction = \"inout\"; },\n"
	"          { name = \"sim.i\";   address = \"2005\"; iec_type = \"C_SE_NB_1\"; direction = \"inout\"; }\n"
	"        ); },\n"
	"      { name = \"ca2\"; address = 2; cmdc = 0; time_zone = \"local\";\n"
	"        tags = (\n"
	"          { name = \"iecc.bo\"; address = \"1001\"; iec_type = \"M_BO_NA_1\"; },\n"
	"          { name = \"m.d\";     address = \"2001\"; iec_type = \"C_DC_NA_1\"; direction = \"inout\"; }\n"
	"        ); }\n"
	"    ); },\n"
	/* 4: komtext client, and a simulated station */
	"  { name = \"ktc\"; protocol = \"komtext-client\"; host = \"127.0.0.1\"; port = 12000;\n"
	"    reconnect_delay = 3600; reconnect_max = 3600;\n"
	"    stations = (\n"
	"      { name = \"r1\"; address = 1; delay = 2; response_timeout = 0.5;\n"
	"        tags = (\n"
	"          { name = \"ktc.f\"; address = \"flow\";    type = \"float\";  direction = \"inout\"; },\n"
	"          { name = \"ktc.i\"; address = \"speed\";   type = \"int\";    direction = \"inout\"; },\n"
	"          { name = \"ktc.b\"; address = \"running\"; type = \"bool\";   direction = \"inout\"; },\n"
	"          { name = \"ktc.d\"; address = \"valve\";   type = \"dpi\"; },\n"
	"          { name = \"ktc.s\"; address = \"note\";    type = \"string\"; direction = \"inout\"; },\n"
	"          { name = \"ktc.t\"; address = \"when\";    type = \"time\"; }\n"
	"        ); },\n"
	"      { name = \"sim\"; simulation = true; period = 86400;\n"
	"        tags = (\n"
	"          { name = \"sim.i\"; type = \"int\"; direction = \"inout\"; },\n"
	"          { name = \"sim.s\"; type = \"string\"; }\n"
	"        ); }\n"
	"    ); },\n"
	/* 5: komtext server */
	"  { name = \"kts\"; protocol = \"komtext-server\"; host = \"127.0.0.1\"; port = 12000; idle_timeout = 12;\n"
	"    stations = (\n"
	"      { name = \"served\"; address = 1;\n"
	"        tags = (\n"
	"          { name = \"m.f\";     address = \"flow\";    direction = \"inout\"; },\n"
	"          { name = \"m.i\";     address = \"speed\";   direction = \"inout\"; },\n"
	"          { name = \"m.b\";     address = \"running\"; direction = \"inout\"; },\n"
	"          { name = \"m.d\";     address = \"valve\";   direction = \"inout\"; },\n"
	"          { name = \"m.s\";     address = \"note\";    direction = \"inout\"; },\n"
	"          { name = \"m.t\";     address = \"when\";    direction = \"inout\"; },\n"
	"          { name = \"mbc.f\";   address = \"mbf\";     direction = \"inout\"; },\n"
	"          { name = \"iecc.se\"; address = \"iecse\";   direction = \"inout\"; },\n"
	"          { name = \"ktc.s\";   address = \"kts\";     direction = \"inout\"; },\n"
	"          { name = \"sim.i\";   address = \"simi\";    direction = \"inout\"; },\n"
	"          { name = \"sim.s\";   address = \"sims\"; },\n"
	"          { name = \"mbc.di\";  address = \"di\"; }\n"
	"        ); }\n"
	"    ); },\n"
	/* 6: komtext server over TLS (PSK: no files), the handshake */
	"  { name = \"ktls\"; protocol = \"komtext-server\"; host = \"127.0.0.1\"; port = 12001;\n"
	"    tls = { psk = \"00112233445566778899aabbccddeeff\"; psk_identity = \"fuzz\"; plain_psk = true;\n"
	"            min_version = \"1.2\"; max_version = \"1.3\"; };\n"
	"    stations = (\n"
	"      { name = \"served\"; address = 1;\n"
	"        tags = ( { name = \"m.s\"; address = \"note\"; direction = \"inout\"; } ); }\n"
	"    ); },\n"
	/* 7: Modbus client, pipelined (four in flight), continuous and periodic polls, retries */
	"  { name = \"mbp\"; protocol = \"modbus-client\"; host = \"127.0.0.1\"; port = 503;\n"
	"    reconnect_delay = 3600; reconnect_max = 3600; max_outstanding = 4;\n"
	"    stations = (\n"
	"      { name = \"u7\"; address = 7; continuous = true; response_timeout = 0.25; retries = 2;\n"
	"        max_read_registers = 4; max_read_bits = 8; max_gap = 1;\n"
	"        tags = (\n"
	"          { name = \"mbp.a\"; address = \"3.0\";    type = \"int\"; },\n"
	"          { name = \"mbp.b\"; address = \"S3.2\";   type = \"int\"; },\n"
	"          { name = \"mbp.c\"; address = \"D3.8\";   type = \"float\"; direction = \"inout\"; },\n"
	"          { name = \"mbp.d\"; address = \"1.3\";    type = \"bool\"; },\n"
	"          { name = \"mbp.e\"; address = \"1.12\";   type = \"bool\"; direction = \"inout\"; },\n"
	"          { name = \"mbp.f\"; address = \"2.0\";    type = \"int\"; },\n"
	"          { name = \"mbp.g\"; address = \"4.7.15\"; type = \"bool\"; }\n"
	"        ); },\n"
	"      { name = \"u0\"; address = 0; period = 7; offset = 1; response_timeout = 0.25;\n"
	"        tags = ( { name = \"mbp.h\"; address = \"4.0\"; type = \"int\"; } ); }\n"
	"    ); },\n"
	/* 8: IEC 104 client with short fields (COT 1, CA 1, IOA 2 octets), small k and w */
	"  { name = \"iecx\"; protocol = \"iec104-client\"; host = \"127.0.0.1\"; port = 2405; line_number = 9;\n"
	"    reconnect_delay = 3600; reconnect_max = 3600;\n"
	"    k = 3; w = 2; t1 = 5; t2 = 2; t3 = 8; cot_size = 1; ca_size = 1; ioa_size = 2;\n"
	"    stations = (\n"
	"      { name = \"ca5\"; address = 5; cmdc = 0;\n"
	"        tags = (\n"
	"          { name = \"iecx.sp\"; address = \"11\"; type = \"int\";  iec_type = \"M_SP_NA_1\"; },\n"
	"          { name = \"iecx.me\"; address = \"12\"; type = \"int\"; },\n"
	"          { name = \"iecx.sc\"; address = \"21\"; type = \"bool\"; iec_type = \"C_SC_NA_1\"; direction = \"out\"; }\n"
	"        ); },\n"
	"      { name = \"ca6\"; address = 6; cmdc = 3; clock_sync_period = 30;\n"
	"        tags = (\n"
	"          { name = \"iecx.rc\"; address = \"31\"; type = \"int\";   iec_type = \"C_RC_NA_1\"; direction = \"out\"; },\n"
	"          { name = \"iecx.se\"; address = \"32\"; type = \"float\"; iec_type = \"C_SE_NA_1\"; direction = \"out\"; sbo = true; }\n"
	"        ); }\n"
	"    ); },\n"
	/* 9: IEC 104 server with short fields, k 2, w 1, an allow list and a tiny event queue */
	"  { name = \"iecy\"; protocol = \"iec104-server\"; host = \"127.0.0.1\"; port = 2405;\n"
	"    k = 2; w = 1; t1 = 5; t2 = 2; t3 = 8; cot_size = 1; ca_size = 1; ioa_size = 2;\n"
	"    allow = \"127.0.0.1, 10.0.0.9\"; queue_size = 3; end_of_init = false; idle_timeout = 6;\n"
	"    stations = (\n"
	"      { name = \"ca5\"; address = 5; cmdc = 1;\n"
	"        tags = (\n"
	"          { name = \"m.i\";     address = \"11\"; iec_type = \"M_ME_NA_1\"; group = 16; },\n"
	"          { name = \"iecx.sp\"; address = \"12\"; iec_type = \"M_SP_NA_1\"; },\n"
	"          { name = \"m.i\";     address = \"21\"; iec_type = \"C_SE_NA_1\"; direction = \"inout\"; },\n"
	"          { name = \"iecx.sc\"; address = \"22\"; iec_type = \"C_SC_NA_1\"; direction = \"inout\"; }\n"
	"        ); }\n"
	"    ); },\n"
	/* 10: Modbus server that ignores unknown units, register numbers from 1 */
	"  { name = \"mbi\"; protocol = \"modbus-server\"; host = \"127.0.0.1\"; port = 503; unknown_unit = \"ignore\";\n"
	"    stations = (\n"
	"      { name = \"u9\"; address = 9; addressing = \"one\";\n"
	"        tags = (\n"
	"          { name = \"mbp.c\"; address = \"D3.1\"; direction = \"inout\"; },\n"
	"          { name = \"mbp.e\"; address = \"1.1\";  direction = \"inout\"; },\n"
	"          { name = \"mbp.a\"; address = \"3.9\"; }\n"
	"        ); }\n"
	"    ); },\n"
	/* 11: IEC 104 server whose group has a started connection already (fuzz_extra) */
	"  { name = \"iecg\"; protocol = \"iec104-server\"; host = \"127.0.0.1\"; port = 2406;\n"
	"    groups = \"127.0.0.1\"; queue_size = 5; k = 4; w = 2;\n"
	"    stations = (\n"
	"      { name = \"ca1\"; address = 1;\n"
	"        tags = (\n"
	"          { name = \"m.i\";    address = \"1\"; iec_type = \"M_ME_NB_1\"; },\n"
	"          { name = \"m.b\";    address = \"2\"; iec_type = \"M_SP_NA_1\"; },\n"
	"          { name = \"iecr.f\"; address = \"3\"; iec_type = \"M_ME_NC_1\"; },\n"
	"          { name = \"m.b\";    address = \"9\"; iec_type = \"C_SC_NA_1\"; direction = \"inout\"; }\n"
	"        ); }\n"
	"    ); },\n"
	/* 12: IEC 104 client on two paths (parallel): a standby connection (fuzz_extra) */
	"  { name = \"iecr\"; type = \"tcp-redundant\"; protocol = \"iec104-client\"; host = \"127.0.0.1\"; port = 2406;\n"
	"    backup = { host = \"127.0.0.2\"; }; reconnect_delay = 3600; reconnect_max = 3600;\n"
	"    stations = (\n"
	"      { name = \"ca1\"; address = 1; cmdc = 3;\n"
	"        tags = (\n"
	"          { name = \"iecr.f\";  address = \"3\"; type = \"float\"; },\n"
	"          { name = \"iecr.sc\"; address = \"9\"; type = \"bool\"; iec_type = \"C_SC_NA_1\"; direction = \"out\"; }\n"
	"        ); }\n"
	"    ); },\n"
	/* 13: komtext client on two paths, both feeding the tags (dual): a second session (fuzz_extra) */
	"  { name = \"ktr\"; type = \"tcp-redundant\"; protocol = \"komtext-client\"; host = \"127.0.0.1\"; port = 12000;\n"
	"    redundancy = \"dual\"; backup = { host = \"127.0.0.2\"; port = 12002; }; reconnect_delay = 3600; reconnect_max = 3600;\n"
	"    stations = (\n"
	"      { name = \"r1\"; address = 1; period = 5; response_timeout = 1;\n"
	"        tags = (\n"
	"          { name = \"ktr.f\"; address = \"flow\"; type = \"float\"; direction = \"inout\"; },\n"
	"          { name = \"ktr.s\"; address = \"note\"; type = \"string\"; }\n"
	"        ); }\n"
	"    ); },\n"
	/* 14: MQTT 5 client: the peer is a broker (its first bytes a CONNACK, with properties:
	 * Receive Maximum, Topic Alias Maximum, Maximum Packet Size); subscribed text and JSON
	 * tags, the device's will, published tags (QoS 0/1/2, JSON batches, a period) with
	 * commands; a small in-flight window and queue */
	"  { name = \"mq5\"; protocol = \"mqtt-client\"; host = \"127.0.0.1\"; port = 1883; mqtt_version = \"5\";\n"
	"    client_id = \"fz5\"; keepalive = 5; reply_timeout = 2; receive_maximum = 3; topic_alias_maximum = 4;\n"
	"    max_packet_size = 4096; max_inflight = 3; queue_messages = 20; will_topic = \"fz/will\";\n"
	"    will_payload = \"gone\"; will_online_payload = \"up\"; command_max_age = 60;\n"
	"    reconnect_delay = 3600; reconnect_max = 3600;\n"
	"    stations = (\n"
	"      { name = \"in\"; address = \"fz/in/#\"; qos = 2; stale_timeout = 3; will_topic = \"fz/dev/will\";\n"
	"        tags = (\n"
	"          { name = \"mq.i\"; address = \"T=fz/in/i\"; type = \"int\"; },\n"
	"          { name = \"mq.s\"; address = \"T=fz/in/s\"; type = \"string\"; },\n"
	"          { name = \"mq.b\"; address = \"T=fz/in/b\"; type = \"bool\"; }\n"
	"        ); },\n"
	"      { name = \"js\"; address = \"fz/js\"; payload = \"json\"; time_field = \"t\"; time_format = \"epoch_ms\";\n"
	"        tags = (\n"
	"          { name = \"mq.f\"; address = \"JA=a.b[2]\"; type = \"float\"; },\n"
	"          { name = \"mq.ok\"; address = \"JA=ok\"; type = \"bool\"; }\n"
	"        ); },\n"
	"      { name = \"out\"; payload = \"json\"; batch_ms = 100;\n"
	"        tags = (\n"
	"          { name = \"m.f\"; publish = \"fz/out/f\"; qos = 2; command = \"fz/cmd/f\"; direction = \"inout\"; },\n"
	"          { name = \"m.i\"; publish = \"fz/out/i\"; qos = 1; payload = \"text\"; command = \"fz/cmd/i\"; direction = \"inout\"; },\n"
	"          { name = \"m.b\"; publish = \"fz/out/b\"; qos = 0; retain = true; period = 2; }\n"
	"        ); }\n"
	"    ); },\n"
	/* 15: MQTT 3.1.1 client, a persistent session; published text (QoS 2) and a command */
	"  { name = \"mq3\"; protocol = \"mqtt-client\"; host = \"127.0.0.1\"; port = 1884; client_id = \"fz3\";\n"
	"    keepalive = 5; reply_timeout = 2; max_inflight = 2; queue_bytes = 4096;\n"
	"    reconnect_delay = 3600; reconnect_max = 3600;\n"
	"    stations = (\n"
	"      { name = \"in\"; address = \"fz3/+/v\"; qos = 1;\n"
	"        tags = (\n"
	"          { name = \"mq3.i\"; address = \"T=fz3/a/v\"; type = \"int\"; },\n"
	"          { name = \"mq3.f\"; address = \"T=fz3/b/v\"; type = \"float\"; }\n"
	"        ); },\n"
	"      { name = \"out\";\n"
	"        tags = (\n"
	"          { name = \"m.s\"; publish = \"fz3/out/s\"; qos = 2; command = \"fz3/cmd/s\"; direction = \"inout\"; },\n"
	"          { name = \"m.d\"; publish = \"fz3/out/d\"; qos = 1; deadband = 0; }\n"
	"        ); }\n"
	"    ); }\n"
	");\n";

#define SEL_LINE(b)     ((b) & 0x0f)
#define SEL_ADVANCES(b) (((b) >> 4) & 3)
#define SEL_WRITES      0x40
#define SEL_CHUNKS      0x80

static const int fuzz_advances[4] = { 0, 1, 2, 4 };

/* Lines that get a second connection, which the fuzzer does not drive: it sends its
 * greeting and then only reads. Server lines: it connects first (from the same address,
 * so in the same IEC 104 group). Client lines: on the backup path, after the fuzzed one. */
static const struct {
	const char *line;
	const char *greeting;
	size_t len;
} fuzz_extra[] = {
	{ "iecg", "\x68\x04\x07\x00\x00\x00", 6 }, /* STARTDT act: the group's started connection */
	{ "iecr", NULL, 0 },                       /* the standby, started when the fuzzed one goes */
	{ "ktr", NULL, 0 },                        /* a second feed of the same tags */
};

#define FUZZ_MAX_INPUT 65536
#define FUZZ_MAX_PASSES 64 /* loop passes of one pump */
#define FUZZ_MAX_TIMERS 512
#define FUZZ_SLACK_MS 50   /* timers due this close together fire together */
#define FUZZ_PEERS 2

/* One connection: the fuzzer's end of a socketpair, and komd's end (closed by komd). */
struct peer {
	int fd, komd_fd;
};

static struct config *conf;
static struct confref cref; /* holds conf: freeing the lines never frees it */
static struct peer peers[FUZZ_PEERS];
static struct peer *fuzzed;  /* the one the input drives */
static int npeers;
static bool dump;
static unsigned writes_asked, writes_answered;

/* ---- start-up ---- */

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char dir[64], path[96];
	struct conf_errors errs = { 0 };
	struct event_config *ecfg;
	FILE *f;

	(void)argc;
	(void)argv;
	/* quiet: every frame would log (FUZZ_ENGINE_LOG=1 shows it all, to follow one input) */
	log_init(true, getenv("FUZZ_ENGINE_LOG") ? LOG_LVL_DEBUG : LOG_LVL_ERR);
	signal(SIGPIPE, SIG_IGN);
	dump = getenv("FUZZ_ENGINE_DUMP") != NULL;
	snprintf(dir, sizeof(dir), "/tmp/komd-fuzz-engine-XXXXXX");
	if (!mkdtemp(dir))
		abort();
	snprintf(path, sizeof(path), "%s/komd.conf", dir);
	if ((f = fopen(path, "w")) == NULL || fputs(fuzz_conf_text, f) < 0 || fclose(f) != 0)
		abort();
	conf = conf_load(path, &errs);
	for (int i = 0; i < errs.n; i++)
		fprintf(stderr, "fuzz_engine: %s\n", errs.msg[i]);
	CHECK(conf != NULL && conf->nlines <= 16);
	conf_errors_clear(&errs);
	unlink(path);
	rmdir(dir);
	cref.conf = conf;
	cref.refs = 1;

	/* as main.c: precise timers, no DNS (no line ever connects) */
	if ((ecfg = event_config_new()) == NULL || event_config_set_flag(ecfg, EVENT_BASE_FLAG_PRECISE_TIMER) != 0 ||
	    (komd.base = event_base_new_with_config(ecfg)) == NULL)
		abort();
	event_config_free(ecfg);
	TAILQ_INIT(&komd.lines);
	tags_init();
	komd.conf = conf;
	return 0;
}

/* The tag table as main.c's komd_apply makes it: memory tags with their initial values,
 * acquired tags invalid until a device says otherwise. */
static void
fuzz_tags(void)
{
	for (int i = 0; i < conf->ntags; i++) {
		const struct tag_conf *tc = &conf->tags[i];
		struct tag *t = tag_create(tc->name, tc->type);
		t->memory = true;
		if (tc->has_initial)
			tag_set(t, &tc->initial, 0, time_now_ms());
		else
			tag_set_quality(t, 0);
	}
	for (int i = 0; i < conf->nlines; i++) {
		const struct line_conf *lc = &conf->lines[i];
		if (lc->ops->transport != PROTO_CONNECT)
			continue;
		for (int j = 0; j < lc->nstations; j++)
			for (int k = 0; k < lc->stations[j].ntags; k++)
				if (!tag_find(lc->stations[j].tags[k].name))
					tag_create(lc->stations[j].tags[k].name, lc->stations[j].tags[k].type);
	}
}

static void
fuzz_tag_free(struct tag *t, void *arg)
{
	(void)arg;
	tag_destroy(t);
}

/* Every line, as line_start leaves it but without listening or connecting; a TLS line
 * only when it is the one fuzzed (its context is most of a run's time). Returns the line
 * to fuzz. */
static struct line *
fuzz_lines(int which)
{
	struct line *sel = NULL;

	for (int i = 0; i < conf->nlines; i++) {
		if (conf->lines[i].tls.present && i != which)
			continue;
		struct line *l = line_create(&conf->lines[i], &cref);
		CHECK(l != NULL);
		if (i == which)
			sel = l;
		TAILQ_INSERT_TAIL(&komd.lines, l, link);
		l->trace = true; /* the protocols' frame decoders for the trace run too */
		l->started = true;
		for (int j = 0; j < l->nstations; j++)
			station_start(&l->stations[j]);
		for (int j = 0; j < l->npaths; j++)
			l->paths[j].state = l->server ? CS_LISTENING : l->simulated ? CS_SIMULATED : CS_WAITING;
	}
	return sel;
}

/* ---- the peers' side ---- */

/* Read and drop what komd sent; the number of bytes. */
static size_t
fuzz_drain(void)
{
	uint8_t buf[65536];
	size_t total = 0;
	ssize_t n;

	for (int i = 0; i < npeers; i++)
		while ((n = read(peers[i].fd, buf, sizeof(buf))) > 0) {
			if (dump) {
				fprintf(stderr, "komd%s:", &peers[i] == fuzzed ? "" : " (other connection)");
				for (ssize_t j = 0; j < n; j++)
					fprintf(stderr, " %02x", buf[j]);
				fprintf(stderr, "\n");
			}
			total += (size_t)n;
		}
	return total;
}

/* Bytes komd has not read yet, on every connection (its end may be closed already). */
static int
fuzz_unread(void)
{
	int total = 0;

	for (int i = 0; i < npeers; i++) {
		int n = 0;
		if (ioctl(peers[i].komd_fd, FIONREAD, &n) == 0)
			total += n;
	}
	return total;
}

/* Run the loop until komd has nothing more to do: two passes in a row that read nothing,
 * sent nothing and left nothing active (a zero-delay timer armed in one pass fires in the
 * next). One batch of callbacks a pass: a protocol polling continuously never ends the loop. */
static void
fuzz_pump(void)
{
	int idle = 0;

	for (int i = 0; i < FUZZ_MAX_PASSES && idle < 2; i++) {
		event_base_loop(komd.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		if (fuzz_drain() > 0 || fuzz_unread() > 0 ||
		    event_base_get_num_events(komd.base, EVENT_BASE_COUNT_ACTIVE) > 0)
			idle = 0;
		else
			idle++;
	}
}

/* Write one chunk from a peer; false once komd has closed its end. */
static bool
fuzz_send(struct peer *p, const uint8_t *data, size_t n)
{
	for (int tries = 0; n > 0 && tries < 64; tries++) {
		ssize_t w = write(p->fd, data, n);
		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return false;
		if (w > 0) {
			data += w;
			n -= (size_t)w;
		}
		fuzz_pump();
	}
	return true;
}

/* ---- time ---- */

struct timers {
	struct event *ev[FUZZ_MAX_TIMERS];
	struct timeval when[FUZZ_MAX_TIMERS];
	int n;
};

/* Timers a line keeps for connecting and listening: firing them would connect or listen. */
static bool
fuzz_line_timer(const struct event *ev)
{
	struct line *l;

	TAILQ_FOREACH(l, &komd.lines, link)
		if (ev == l->paths[0].timer || ev == l->paths[1].timer || ev == l->accept_pause)
			return true;
	return false;
}

static int
fuzz_timer_cb(const struct event_base *base, const struct event *ev, void *arg)
{
	struct timers *t = arg;
	struct timeval tv;

	(void)base;
	if (t->n < FUZZ_MAX_TIMERS && !fuzz_line_timer(ev) && event_pending(ev, EV_TIMEOUT, &tv)) {
		t->ev[t->n] = (struct event *)ev;
		t->when[t->n++] = tv;
	}
	return 0;
}

static int64_t
tv_ms(const struct timeval *tv)
{
	return (int64_t)tv->tv_sec * 1000 + tv->tv_usec / 1000;
}

/* Advance time to the next timeout: the timers due first (within FUZZ_SLACK_MS of each
 * other) fire now, as if that much time had passed, without waiting for it. Other timers
 * keep their real due times, and code that reads the clock (an idle timeout measured from
 * the last request) sees that no time has passed. */
static void
fuzz_advance(void)
{
	struct timers t = { .n = 0 };
	int64_t first = INT64_MAX;

	event_base_foreach_event(komd.base, fuzz_timer_cb, &t);
	for (int i = 0; i < t.n; i++)
		if (tv_ms(&t.when[i]) < first)
			first = tv_ms(&t.when[i]);
	for (int i = 0; i < t.n; i++)
		if (tv_ms(&t.when[i]) <= first + FUZZ_SLACK_MS)
			event_active(t.ev[i], EV_TIMEOUT, 1);
	fuzz_pump();
}

/* ---- writes and changes ---- */

static void
fuzz_write_cb(void *arg, int status, const char *msg)
{
	(void)arg;
	CHECK(status == 0 || status == -1);
	CHECK(msg != NULL);
	writes_answered++;
}

/* Another value of t's type, from a counter. */
static void
fuzz_value(const struct tag *t, unsigned k, struct value *v, char *text, size_t len)
{
	*v = (struct value){ .type = t->type };
	switch (t->type) {
	case VT_BOOL: v->i = !t->v.i; break;
	case VT_DPI: v->i = t->v.i == 1 ? 2 : 1; break;
	case VT_INT: v->i = k % 4 == 3 ? -(int64_t)k : (int64_t)k * 37; break;
	case VT_FLOAT: v->f = 0.25 + k * 12.5; break;
	case VT_TIME: v->i = 1700000000000 + k; break;
	case VT_STRING:
		snprintf(text, len, "fuzz %u", k);
		v->s = text;
		break;
	}
}

/* Client line: write to each of its writable tags (the device must answer). Server line:
 * new values and qualities for the tags it serves (spontaneous data to the client). */
static void
fuzz_writes(struct line *l)
{
	unsigned k = 0;

	for (int i = 0; i < l->nstations; i++)
		for (int j = 0; j < l->stations[i].ntags; j++) {
			struct stag *e = &l->stations[i].tags[j];
			struct value v;
			char text[32];

			fuzz_value(e->tag, ++k, &v, text, sizeof(text));
			if (l->server) {
				tag_set(e->tag, &v, k % 3 == 0 ? Q_INVALID | Q_NOTTOPICAL : 0, k % 2 ? 1700000000123 : 0);
			} else if (e->tc->dir != TD_IN) {
				writes_asked++;
				tag_write(e->tag, &v, fuzz_write_cb, NULL, "fuzz");
			}
		}
}

/* ---- connections ---- */

static int
fuzz_count_cb(const struct event_base *base, const struct event *ev, void *arg)
{
	(void)base;
	(void)ev;
	(*(int *)arg)++;
	return 0;
}

/* A session on line l over a new socketpair, as line_accept_cb (server lines) or
 * path_connect_event_cb (client lines, on path pi) makes one. */
static struct peer *
fuzz_connect(struct line *l, int pi, const char *from)
{
	struct peer *p = &peers[npeers++];
	struct bufferevent *bev;
	struct session *s;
	int sv[2];

	CHECK(npeers <= FUZZ_PEERS);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
	p->komd_fd = sv[0];
	p->fd = sv[1];
	if (l->tls) {
		SSL *ssl = tls_ssl_new(l->tls, NULL);
		CHECK(ssl != NULL);
		bev = bufferevent_openssl_socket_new(komd.base, sv[0], ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
		CHECK(bev != NULL);
		bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	} else {
		bev = bufferevent_socket_new(komd.base, sv[0], BEV_OPT_CLOSE_ON_FREE);
		CHECK(bev != NULL);
	}
	l->cnt.connects++;
	if (l->server) {
		s = session_new(l, NULL, bev, from, NULL, PATH_PRIMARY, l->tls != NULL);
		CHECK(s != NULL);
		return p;
	}
	struct path *path = &l->paths[pi];
	path->cur = 0;
	snprintf(path->peer, sizeof(path->peer), "%s", from);
	path->state = CS_CONNECTED;
	path->ever_connected = true;
	path->last_kind = path->ep[0].kind;
	s = session_new(l, path, bev, path->peer, NULL, path->last_kind, false);
	CHECK(s != NULL);
	if (s->closing)
		return p; /* refused in on_connect */
	path->sess = s;
	if ((l->policy == REDUND_ALTERNATE || l->npaths == 1) && !l->active)
		line_set_active_session(l, s);
	return p;
}

/* The fuzzed connection, and the second one fuzz_extra asks for. */
static struct peer *
fuzz_connections(struct line *l)
{
	size_t i;

	for (i = 0; i < sizeof(fuzz_extra) / sizeof(fuzz_extra[0]); i++)
		if (strcmp(fuzz_extra[i].line, l->lc->name) == 0)
			break;
	if (i == sizeof(fuzz_extra) / sizeof(fuzz_extra[0]))
		return fuzzed = fuzz_connect(l, 0, "127.0.0.1:40000");
	if (l->server) {
		struct peer *other = fuzz_connect(l, 0, "127.0.0.1:40001");
		fuzz_pump();
		fuzz_send(other, (const uint8_t *)fuzz_extra[i].greeting, fuzz_extra[i].len);
		fuzz_pump();
		return fuzzed = fuzz_connect(l, 0, "127.0.0.1:40000");
	}
	CHECK(l->npaths == 2);
	fuzzed = fuzz_connect(l, 0, "127.0.0.1:40000");
	fuzz_pump();
	fuzz_send(fuzz_connect(l, 1, "127.0.0.2:40000"), (const uint8_t *)fuzz_extra[i].greeting, fuzz_extra[i].len);
	return fuzzed;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct line *l;
	struct peer *p;
	int nchunks, left = 0;
	uint8_t sel;

	if (size < 1 || size > FUZZ_MAX_INPUT)
		return 0;
	sel = data[0];
	data++;
	size--;
	writes_asked = writes_answered = 0;
	if (dump)
		fprintf(stderr, "input: line %d, %zu bytes\n", SEL_LINE(sel) % conf->nlines, size);

	fuzz_tags();
	l = fuzz_lines(SEL_LINE(sel) % conf->nlines);
	fuzzed = NULL;
	p = fuzz_connections(l);
	fuzz_pump(); /* what komd says first (STARTDT, the first poll, a server's image) */
	nchunks = sel & SEL_CHUNKS ? 3 : 1;
	for (int c = 0; c < nchunks; c++) {
		size_t from = size * (size_t)c / (size_t)nchunks, to = size * (size_t)(c + 1) / (size_t)nchunks;

		if (!fuzz_send(p, data + from, to - from))
			break;
		fuzz_pump();
		if (c == 0 && (sel & SEL_WRITES)) {
			fuzz_writes(l);
			fuzz_pump();
		}
		for (int a = 0; a < fuzz_advances[SEL_ADVANCES(sel)]; a++)
			fuzz_advance();
	}
	if (sel & SEL_CHUNKS) {
		shutdown(p->fd, SHUT_WR); /* the peer hangs up */
		fuzz_pump();
	}

	/* teardown as main.c's: the lines (their sessions close), the deferred frees, the tags */
	while ((l = TAILQ_FIRST(&komd.lines)) != NULL) {
		TAILQ_REMOVE(&komd.lines, l, link);
		line_free(l);
	}
	fuzz_pump();
	for (int i = 0; i < npeers; i++)
		close(peers[i].fd);
	npeers = 0;
	tag_foreach(fuzz_tag_free, NULL);
	CHECK(tag_count() == 0);
	/* every write answered once; no timer or descriptor left behind */
	if (writes_answered != writes_asked) {
		fprintf(stderr, "fuzz_engine: %u writes asked, %u answered\n", writes_asked, writes_answered);
		abort();
	}
	event_base_foreach_event(komd.base, fuzz_count_cb, &left);
	if (left) {
		fprintf(stderr, "fuzz_engine: %d events left in the base after the lines were freed\n", left);
		abort();
	}
	return 0;
}
