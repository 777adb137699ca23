/* mbpeer: a Modbus TCP peer built on libmodbus (the reference library), for komd's tests.
 *
 *   mbpeer server PORT [TABLE:ADDR=VALUE ...]
 *       Listen on 127.0.0.1:PORT and answer every unit id from a modbus_mapping_new map
 *       (200 coils, discrete inputs, holding and input registers). TABLE is co, di, hr or
 *       ir; VALUE is decimal or 0x hex. Prints "listening PORT" once, then
 *       "req unit=U fc=F addr=A" for each request, and "hr ADDR=VALUE" for every holding
 *       register a request changed. Serves one connection after another until killed.
 *
 *   mbpeer client PORT UNIT OP ...
 *       Connect to 127.0.0.1:PORT and run each OP, printing one line each:
 *       r1:A:N r2:A:N  read coils / discrete inputs   -> "r1 A b b ..."
 *       r3:A:N r4:A:N  read holding / input registers  -> "r3 A v v ..."
 *       w5:A:B         write one coil (0 or 1)          -> "w5 A ok"
 *       w6:A:V         write one register               -> "w6 A ok"
 *       w16:A:V,V,...  write registers                  -> "w16 A ok"
 *       m22:A:AND:OR   mask write register              -> "m22 A ok"
 *       rw23:RA:N:WA:V,V,...  write then read registers -> "rw23 RA v v ..."
 *       id17           report server id (modbus_report_slave_id) -> "id17 HEX" (its data:
 *                      server id, run indicator, additional data)
 *       raw:HEX        a request PDU (function code first) sent as it is with
 *                      modbus_send_raw_request and read with modbus_receive_confirmation
 *                      -> "raw HEX" (the response PDU). libmodbus 3.1.6 reads only the first
 *                      bytes of an answer whose length it cannot compute (FC 43, unknown
 *                      functions): the rest, up to the MBAP length, is read from its socket.
 *       A failure prints "OPNAME A error ERRNO MESSAGE" (e.g. "Illegal data address");
 *       id17 and raw print "OPNAME error ERRNO MESSAGE".
 */
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <modbus.h>

#define NMAP 200

static int
parse_regs(const char *s, uint16_t *regs, int max)
{
	int n = 0;
	char *end;

	while (*s && n < max) {
		regs[n++] = (uint16_t)strtoul(s, &end, 0);
		if (*end != ',')
			break;
		s = end + 1;
	}
	return n;
}

static int
server(int port, int argc, char **argv)
{
	modbus_t *ctx = modbus_new_tcp("127.0.0.1", port);
	modbus_mapping_t *m = modbus_mapping_new(NMAP, NMAP, NMAP, NMAP);
	uint8_t q[MODBUS_TCP_MAX_ADU_LENGTH];
	uint16_t before[NMAP];
	int ls;

	if (!ctx || !m) {
		fprintf(stderr, "mbpeer: out of memory\n");
		return 1;
	}
	for (int i = 0; i < argc; i++) {
		char table[3] = { 0 };
		unsigned addr;
		char *eq = strchr(argv[i], '=');
		if (sscanf(argv[i], "%2[a-z]:%u=", table, &addr) != 2 || !eq || addr >= NMAP) {
			fprintf(stderr, "mbpeer: bad value %s\n", argv[i]);
			return 2;
		}
		unsigned long v = strtoul(eq + 1, NULL, 0);
		if (!strcmp(table, "co"))
			m->tab_bits[addr] = v != 0;
		else if (!strcmp(table, "di"))
			m->tab_input_bits[addr] = v != 0;
		else if (!strcmp(table, "hr"))
			m->tab_registers[addr] = (uint16_t)v;
		else if (!strcmp(table, "ir"))
			m->tab_input_registers[addr] = (uint16_t)v;
		else {
			fprintf(stderr, "mbpeer: bad table %s\n", table);
			return 2;
		}
	}
	if ((ls = modbus_tcp_listen(ctx, 4)) < 0) {
		fprintf(stderr, "mbpeer: listen: %s\n", modbus_strerror(errno));
		return 1;
	}
	printf("listening %d\n", port);
	fflush(stdout);
	for (;;) {
		if (modbus_tcp_accept(ctx, &ls) < 0) {
			fprintf(stderr, "mbpeer: accept: %s\n", modbus_strerror(errno));
			return 1;
		}
		printf("accepted\n");
		fflush(stdout);
		for (;;) {
			int rc = modbus_receive(ctx, q);
			if (rc == 0)
				continue; /* not for us */
			if (rc < 0)
				break;
			int hl = modbus_get_header_length(ctx);
			printf("req unit=%d fc=%d addr=%d\n", q[hl - 1], q[hl], (q[hl + 1] << 8) | q[hl + 2]);
			memcpy(before, m->tab_registers, sizeof(before));
			if (modbus_reply(ctx, q, rc, m) < 0)
				break;
			for (int i = 0; i < NMAP; i++)
				if (before[i] != m->tab_registers[i])
					printf("hr %d=%d\n", i, m->tab_registers[i]);
			fflush(stdout);
		}
		modbus_close(ctx);
		printf("closed\n");
		fflush(stdout);
	}
}

static void
print_regs(const char *op, int addr, const uint16_t *r, int n)
{
	printf("%s %d", op, addr);
	for (int i = 0; i < n; i++)
		printf(" %u", r[i]);
	printf("\n");
}

static void
print_hex(const char *op, const uint8_t *b, int n)
{
	printf("%s ", op);
	for (int i = 0; i < n; i++)
		printf("%02X", b[i]);
	printf("\n");
}

/* raw:HEX: send the PDU HEX to the unit, print the response PDU. 0, or -1 with errno. */
static int
raw_request(modbus_t *ctx, int unit, const char *hex)
{
	uint8_t req[MODBUS_TCP_MAX_ADU_LENGTH], rsp[MODBUS_TCP_MAX_ADU_LENGTH];
	int n = 1, got, total;

	req[0] = (uint8_t)unit;
	for (; hex[0] && hex[1] && n < (int)sizeof(req); hex += 2) {
		unsigned v;
		if (sscanf(hex, "%2x", &v) != 1) {
			errno = EINVAL;
			return -1;
		}
		req[n++] = (uint8_t)v;
	}
	if (modbus_send_raw_request(ctx, req, n) < 0)
		return -1;
	if ((got = modbus_receive_confirmation(ctx, rsp)) < 0)
		return -1;
	if (got < 7) {
		errno = EMBBADDATA;
		return -1;
	}
	total = 6 + (rsp[4] << 8 | rsp[5]);
	if (total > (int)sizeof(rsp)) {
		errno = EMBBADDATA;
		return -1;
	}
	while (got < total) {
		struct pollfd pfd = { .fd = modbus_get_socket(ctx), .events = POLLIN };
		ssize_t r;
		if (poll(&pfd, 1, 3000) != 1) {
			errno = ETIMEDOUT;
			return -1;
		}
		if ((r = recv(pfd.fd, rsp + got, (size_t)(total - got), 0)) <= 0) {
			errno = r == 0 ? ECONNRESET : errno;
			return -1;
		}
		got += (int)r;
	}
	print_hex("raw", rsp + 7, total - 7);
	return 0;
}

static int
client(int port, int unit, int argc, char **argv)
{
	modbus_t *ctx = modbus_new_tcp("127.0.0.1", port);
	uint16_t regs[125], wregs[123];
	uint8_t bits[2000];

	if (!ctx || modbus_set_slave(ctx, unit) != 0 || modbus_connect(ctx) != 0) {
		fprintf(stderr, "mbpeer: connect: %s\n", modbus_strerror(errno));
		return 1;
	}
	modbus_set_response_timeout(ctx, 3, 0);
	for (int i = 0; i < argc; i++) {
		char op[8] = { 0 };
		int a = 0, n = 0, wa = 0, rc = 0;
		unsigned and_m = 0, or_m = 0;
		char rest[1024] = { 0 };

		if (!strcmp(argv[i], "id17")) {
			uint8_t id[MODBUS_MAX_PDU_LENGTH];
			if ((rc = modbus_report_slave_id(ctx, (int)sizeof(id), id)) >= 0)
				print_hex("id17", id, rc < (int)sizeof(id) ? rc : (int)sizeof(id));
			else
				printf("id17 error %d %s\n", errno, modbus_strerror(errno));
			fflush(stdout);
			continue;
		}
		if (!strncmp(argv[i], "raw:", 4)) {
			if (raw_request(ctx, unit, argv[i] + 4) != 0)
				printf("raw error %d %s\n", errno, modbus_strerror(errno));
			fflush(stdout);
			continue;
		}
		if (sscanf(argv[i], "%7[a-z0-9]:%d:%1023s", op, &a, rest) < 2) {
			fprintf(stderr, "mbpeer: bad op %s\n", argv[i]);
			return 2;
		}
		if (!strcmp(op, "r1") || !strcmp(op, "r2")) {
			n = atoi(rest);
			rc = op[1] == '1' ? modbus_read_bits(ctx, a, n, bits) : modbus_read_input_bits(ctx, a, n, bits);
			if (rc >= 0) {
				printf("%s %d", op, a);
				for (int k = 0; k < rc; k++)
					printf(" %u", bits[k]);
				printf("\n");
			}
		} else if (!strcmp(op, "r3") || !strcmp(op, "r4")) {
			n = atoi(rest);
			rc = op[1] == '3' ? modbus_read_registers(ctx, a, n, regs) : modbus_read_input_registers(ctx, a, n, regs);
			if (rc >= 0)
				print_regs(op, a, regs, rc);
		} else if (!strcmp(op, "w5")) {
			if ((rc = modbus_write_bit(ctx, a, atoi(rest))) >= 0)
				printf("%s %d ok\n", op, a);
		} else if (!strcmp(op, "w6")) {
			if ((rc = modbus_write_register(ctx, a, (uint16_t)strtoul(rest, NULL, 0))) >= 0)
				printf("%s %d ok\n", op, a);
		} else if (!strcmp(op, "w16")) {
			n = parse_regs(rest, wregs, 123);
			if ((rc = modbus_write_registers(ctx, a, n, wregs)) >= 0)
				printf("%s %d ok\n", op, a);
		} else if (!strcmp(op, "m22")) {
			if (sscanf(rest, "%i:%i", (int *)&and_m, (int *)&or_m) != 2) {
				fprintf(stderr, "mbpeer: bad op %s\n", argv[i]);
				return 2;
			}
			if ((rc = modbus_mask_write_register(ctx, a, (uint16_t)and_m, (uint16_t)or_m)) >= 0)
				printf("%s %d ok\n", op, a);
		} else if (!strcmp(op, "rw23")) {
			char *p;
			n = (int)strtol(rest, &p, 10);
			if (*p != ':' || sscanf(p + 1, "%d:", &wa) != 1 || !(p = strchr(p + 1, ':'))) {
				fprintf(stderr, "mbpeer: bad op %s\n", argv[i]);
				return 2;
			}
			int wn = parse_regs(p + 1, wregs, 121);
			if ((rc = modbus_write_and_read_registers(ctx, wa, wn, wregs, a, n, regs)) >= 0)
				print_regs(op, a, regs, rc);
		} else {
			fprintf(stderr, "mbpeer: unknown op %s\n", op);
			return 2;
		}
		if (rc < 0)
			printf("%s %d error %d %s\n", op, a, errno, modbus_strerror(errno));
		fflush(stdout);
	}
	modbus_close(ctx);
	modbus_free(ctx);
	return 0;
}

int
main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 3 && !strcmp(argv[1], "server"))
		return server(atoi(argv[2]), argc - 3, argv + 3);
	if (argc >= 4 && !strcmp(argv[1], "client"))
		return client(atoi(argv[2]), atoi(argv[3]), argc - 4, argv + 4);
	fprintf(stderr, "usage: mbpeer server PORT [TABLE:ADDR=VALUE ...] | mbpeer client PORT UNIT OP ...\n");
	return 2;
}
