/* mb_load: a Modbus TCP load client on libmodbus for the benchmarks.
 *
 *   mb_load load HOST PORT UNIT NCONN SECONDS [NREGS [ADDR]]
 *     NCONN connections, one thread and one modbus_t each, every thread reading NREGS
 *     (default 125) holding registers at ADDR (default 0) in a loop, one request at a time
 *     (FC 3, modbus_read_registers), for SECONDS. A thread per connection keeps every
 *     connection busy all the time whatever the server's order of service: a single thread
 *     going round-robin over blocking requests would have one request in flight in all and
 *     measure latency, not a server's throughput over many connections.
 *   mb_load rr HOST PORT UNIT NCONN SECONDS [NREGS [ADDR]]
 *     The same requests from one thread: each round sends a read on every connection
 *     (modbus_send_raw_request), then takes every answer in turn (modbus_receive_confirmation)
 *     and checks it (transaction id, unit, function, byte count). Every connection has one
 *     request in flight, as with threads, but the client does not sleep and wake once a
 *     request: on a machine with few cores it leaves the server the CPU that a thread per
 *     connection spends on context switches, so the server, not the client, is measured.
 *   mb_load rounds HOST PORT UNIT NCONN ROUNDS [NREGS [ADDR]]
 *     rr for exactly ROUNDS rounds (NCONN x ROUNDS requests) instead of a time: a count of
 *     requests that does not depend on the machine's speed, for counting a server's
 *     instructions under callgrind.
 *   mb_load scan HOST PORT UNIT SECONDS TOTAL
 *     One connection reading holding registers 0..TOTAL-1 in requests of 125 (the last one
 *     shorter), scan after scan, for SECONDS: the plain libmodbus polling loop.
 *
 * Every connection is made (and the unit id set with modbus_set_slave) before the clock
 * starts; all threads then start together. The clock stops when the last thread has had
 * its last answer, so rates are computed from elapsed time (libmodbus's bandwidth client
 * prints a points/s figure that overflows). Prints one line of key=value pairs:
 *   load: mode=load conns=N requests=R errors=E elapsed=S req_per_s=X regs_per_s=Y
 *   (mode=rr and mode=rounds alike)
 *   scan: mode=scan requests=R scans=C registers=G errors=E elapsed=S regs_per_s=Y
 * Exit status 1 when a connection could not be made, 2 on bad usage; failed requests are
 * counted in errors (the caller decides). */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <modbus.h>

#define MAX_CONNS 4096

struct worker {
	pthread_t th;
	modbus_t *ctx;
	int nregs, addr, total; /* total > 0: scan mode */
	unsigned long long requests, errors, registers, scans;
	double t_end;
};

static pthread_barrier_t go;
static double deadline;
static unsigned long long max_rounds; /* rounds mode: the rounds to make (deadline unused) */
static const char *host;
static int port, unit;

static double
now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static modbus_t *
connect_one(void)
{
	modbus_t *ctx = modbus_new_tcp(host, port);

	if (!ctx) {
		fprintf(stderr, "mb_load: modbus_new_tcp: %s\n", modbus_strerror(errno));
		return NULL;
	}
	modbus_set_slave(ctx, unit);
	modbus_set_response_timeout(ctx, 5, 0);
	if (modbus_connect(ctx) == -1) {
		fprintf(stderr, "mb_load: connect to %s:%d: %s\n", host, port, modbus_strerror(errno));
		modbus_free(ctx);
		return NULL;
	}
	return ctx;
}

static int
read_block(struct worker *w, uint16_t *regs, int addr, int n)
{
	int rc = modbus_read_registers(w->ctx, addr, n, regs);

	w->requests++;
	if (rc != n) {
		w->errors++;
		if (w->errors <= 3)
			fprintf(stderr, "mb_load: read %d at %d: %s\n", n, addr,
			    rc == -1 ? modbus_strerror(errno) : "short answer");
		if (rc == -1 && (errno == EBADF || errno == ECONNRESET || errno == EPIPE))
			return -1; /* the connection is gone */
		modbus_flush(w->ctx);
		return 0;
	}
	w->registers += (unsigned long long)n;
	return 0;
}

static void *
run(void *arg)
{
	struct worker *w = arg;
	uint16_t regs[MODBUS_MAX_READ_REGISTERS];

	pthread_barrier_wait(&go);
	if (w->total > 0) {
		while (now() < deadline) {
			for (int a = 0; a < w->total; a += MODBUS_MAX_READ_REGISTERS) {
				int n = w->total - a < MODBUS_MAX_READ_REGISTERS ? w->total - a : MODBUS_MAX_READ_REGISTERS;
				if (read_block(w, regs, a, n) != 0)
					goto out;
			}
			w->scans++;
		}
	} else {
		while (now() < deadline)
			if (read_block(w, regs, w->addr, w->nregs) != 0)
				break;
	}
out:
	w->t_end = now();
	return NULL;
}

/* rr mode: one thread, every connection one request in flight. Returns 0, or -1 when a
 * connection failed (counted in errors). */
static int
run_rr(struct worker *ws, int n)
{
	uint8_t req[5], rsp[MODBUS_TCP_MAX_ADU_LENGTH];
	int nregs = ws[0].nregs, addr = ws[0].addr, want = 9 + 2 * nregs;

	req[0] = (uint8_t)unit;
	req[1] = 3;
	req[2] = (uint8_t)(addr >> 8);
	req[3] = (uint8_t)addr;
	req[4] = 0;
	for (unsigned long long round = 0; max_rounds ? round < max_rounds : now() < deadline; round++) {
		for (int i = 0; i < n; i++) {
			uint8_t r[6] = {req[0], req[1], req[2], req[3], (uint8_t)(nregs >> 8), (uint8_t)nregs};
			if (modbus_send_raw_request(ws[i].ctx, r, 6) == -1) {
				fprintf(stderr, "mb_load: send on connection %d: %s\n", i, modbus_strerror(errno));
				ws[i].errors++;
				return -1;
			}
		}
		for (int i = 0; i < n; i++) {
			int rc = modbus_receive_confirmation(ws[i].ctx, rsp);

			ws[i].requests++;
			if (rc == -1) {
				fprintf(stderr, "mb_load: answer on connection %d: %s\n", i, modbus_strerror(errno));
				ws[i].errors++;
				return -1;
			}
			/* libmodbus 3.1.6 sends raw requests with transaction id 0: with one request in
			 * flight on a connection the answer is the request's; its registers are checked
			 * (both servers hold register i = i) */
			if (rc != want || rsp[6] != unit || rsp[7] != 3 || rsp[8] != 2 * nregs ||
			    (rsp[9] << 8 | rsp[10]) != addr || (rsp[want - 2] << 8 | rsp[want - 1]) != addr + nregs - 1) {
				if (ws[i].errors++ == 0)
					fprintf(stderr, "mb_load: connection %d: bad answer (%d bytes, fc %u)\n", i, rc, rsp[7]);
			} else {
				ws[i].registers += (unsigned long long)nregs;
			}
		}
	}
	return 0;
}

static int
usage(void)
{
	fprintf(stderr, "usage: mb_load load|rr HOST PORT UNIT NCONN SECONDS [NREGS [ADDR]]\n"
	    "       mb_load rounds HOST PORT UNIT NCONN ROUNDS [NREGS [ADDR]]\n"
	    "       mb_load scan HOST PORT UNIT SECONDS TOTAL\n");
	return 2;
}

int
main(int argc, char **argv)
{
	struct worker *ws;
	int n, nregs = 125, addr = 0, total = 0, rc = 0;
	double seconds, t0, t_end = 0;
	unsigned long long requests = 0, errors = 0, registers = 0, scans = 0;
	bool scan, rr, rounds;

	if (argc < 2)
		return usage();
	scan = strcmp(argv[1], "scan") == 0;
	rounds = strcmp(argv[1], "rounds") == 0;
	rr = rounds || strcmp(argv[1], "rr") == 0;
	if (scan ? argc != 7 : ((!rr && strcmp(argv[1], "load") != 0) || argc < 7 || argc > 9))
		return usage();
	host = argv[2];
	port = atoi(argv[3]);
	unit = atoi(argv[4]);
	if (scan) {
		n = 1;
		seconds = atof(argv[5]);
		total = atoi(argv[6]);
		if (total < 1 || total > 65536)
			return usage();
	} else {
		n = atoi(argv[5]);
		if (rounds) {
			max_rounds = strtoull(argv[6], NULL, 10);
			seconds = max_rounds ? 1 : 0;
		} else {
			seconds = atof(argv[6]);
		}
		if (argc > 7)
			nregs = atoi(argv[7]);
		if (argc > 8)
			addr = atoi(argv[8]);
		if (nregs < 1 || nregs > MODBUS_MAX_READ_REGISTERS || addr < 0 || addr + nregs > 65536)
			return usage();
	}
	if (port < 1 || port > 65535 || unit < 0 || unit > 255 || n < 1 || n > MAX_CONNS || !(seconds > 0))
		return usage();

	ws = calloc((size_t)n, sizeof(*ws));
	if (!ws)
		return 1;
	for (int i = 0; i < n; i++) {
		ws[i].nregs = nregs;
		ws[i].addr = addr;
		ws[i].total = total;
		if ((ws[i].ctx = connect_one()) == NULL) {
			for (int j = 0; j < i; j++) {
				modbus_close(ws[j].ctx);
				modbus_free(ws[j].ctx);
			}
			free(ws);
			return 1;
		}
	}
	if (rr) {
		t0 = now();
		deadline = t0 + seconds;
		if (run_rr(ws, n) != 0)
			rc = 1;
		t_end = now();
	}
	pthread_barrier_init(&go, NULL, rr ? 1 : (unsigned)n + 1);
	for (int i = 0; !rr && i < n; i++) {
		if (pthread_create(&ws[i].th, NULL, run, &ws[i]) != 0) {
			fprintf(stderr, "mb_load: pthread_create failed\n");
			return 1; /* threads already started wait at the barrier forever: just exit */
		}
	}
	if (!rr) {
		t0 = now();
		deadline = t0 + seconds;
		pthread_barrier_wait(&go);
	}
	for (int i = 0; i < n; i++) {
		if (!rr)
			pthread_join(ws[i].th, NULL);
		requests += ws[i].requests;
		errors += ws[i].errors;
		registers += ws[i].registers;
		scans += ws[i].scans;
		if (ws[i].t_end > t_end)
			t_end = ws[i].t_end;
		modbus_close(ws[i].ctx);
		modbus_free(ws[i].ctx);
	}
	pthread_barrier_destroy(&go);
	free(ws);
	double el = t_end - t0;
	if (scan)
		printf("mode=scan requests=%llu scans=%llu registers=%llu errors=%llu elapsed=%.6f regs_per_s=%.1f\n",
		    requests, scans, registers, errors, el, (double)registers / el);
	else
		printf("mode=%s conns=%d requests=%llu errors=%llu elapsed=%.6f req_per_s=%.1f regs_per_s=%.1f\n",
		    rounds ? "rounds" : rr ? "rr" : "load", n, requests, errors, el, (double)requests / el, (double)registers / el);
	return rc;
}
