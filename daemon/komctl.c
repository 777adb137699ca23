/* komctl.c: the control tool. Sends one request over komd's control socket and prints the
 * answer: "OK" then the body on stdout (exit 0), "PARTIAL" then the body (a reload applied
 * with lines that could not start: exit 3), or "ERR message" on stderr (exit 1). A "WAIT
 * MS" line before the answer (a set waiting for its device) gives komd MS + 5 s more; komd
 * silent past the timeout (-T) is an error of its own (exit 1), said plainly.
 * komd may answer and close before it has read the request (too many clients): the answer
 * is read even when the write failed, and a reset after it ends it. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_SOCKET "/run/komd/komd.sock"

static void
usage(FILE *f)
{
	fprintf(f, "usage: komctl [-h] [-s SOCKET] [-T SECONDS] [--json] COMMAND [ARGS]\n"
	    "commands:\n"
	    "  status              every line and station: state, peer, counters\n"
	    "  tags [GLOB]         tags with value, quality and timestamps\n"
	    "  get TAG             one tag\n"
	    "  set TAG VALUE       write a value (routed to the acquiring station)\n"
	    "  trace LINE on|off   log each frame of a line in hex and decoded\n"
	    "  certs               TLS certificates of every line: subject, issuer, days to expiry\n"
	    "  reload              re-read the configuration\n"
	    "socket: -s, else $KOMD_SOCKET, else %s\n"
	    "-T SECONDS: how long to wait for komd's answer (default 15; a set waits for its\n"
	    "  device up to komd's write_timeout, and 5 s more)\n"
	    "-h: this help\n"
	    "exit: 0 ok, 1 error (or no answer), 2 usage, 3 reload applied but a line did not start\n",
	    DEFAULT_SOCKET);
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "socket", required_argument, NULL, 's' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *sock = getenv("KOMD_SOCKET");
	struct sockaddr_un sun;
	char req[8192], *resp = NULL;
	size_t o = 0, rlen = 0, rcap = 0;
	bool json = false;
	double timeout_s = 15;
	int64_t deadline;
	int ch, fd;
	char *end;

	while ((ch = getopt_long(argc, argv, "+s:T:jh", longopts, NULL)) != -1) {
		switch (ch) {
		case 's': sock = optarg; break;
		case 'T':
			timeout_s = strtod(optarg, &end);
			if (*end || !(timeout_s > 0 && timeout_s <= 86400)) {
				fprintf(stderr, "komctl: -T %s: give seconds, more than 0 and at most 86400\n", optarg);
				return 2;
			}
			break;
		case 'j': json = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	if (!sock || !*sock)
		sock = DEFAULT_SOCKET;
	o = (size_t)snprintf(req, sizeof(req), "%s", json ? "json" : "text");
	for (int i = optind; i < argc; i++) {
		if (strpbrk(argv[i], "\n\x1f")) {
			fprintf(stderr, "komctl: argument %d contains a newline\n", i - optind + 1);
			return 2;
		}
		if (strcmp(argv[i], "--json") == 0) {
			/* allow --json after the command too */
			memcpy(req, "json", 4);
			continue;
		}
		o += (size_t)snprintf(req + o, sizeof(req) - o, "\x1f%s", argv[i]);
		if (o >= sizeof(req) - 1) {
			fprintf(stderr, "komctl: request too long\n");
			return 2;
		}
	}
	req[o++] = '\n';

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(sock) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "komctl: socket path too long: %s\n", sock);
		return 1;
	}
	strcpy(sun.sun_path, sock);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		fprintf(stderr, "komctl: cannot connect to komd at %s: %s\n", sock, strerror(errno));
		return 1;
	}
	if (write_all(fd, req, o) != 0 && errno != EPIPE && errno != ECONNRESET) {
		fprintf(stderr, "komctl: write to %s: %s\n", sock, strerror(errno));
		return 1;
	}
	deadline = now_ms() + (int64_t)(timeout_s * 1000);
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int64_t left = deadline - now_ms();
		int pr = left > 0 ? poll(&pfd, 1, left > 3600000 ? 3600000 : (int)left) : 0;
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr == 0 && now_ms() >= deadline) {
			fprintf(stderr, "komctl: komd at %s did not answer in time (busy or stuck? its log may say; "
			    "-T gives it longer)\n", sock);
			return 1;
		}
		if (pr == 0)
			continue;
		if (rcap - rlen < 65536) {
			char *n = realloc(resp, rcap + 262144);
			if (!n) {
				fprintf(stderr, "komctl: out of memory\n");
				return 1;
			}
			resp = n;
			rcap += 262144;
		}
		ssize_t r = read(fd, resp + rlen, rcap - rlen - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == ECONNRESET && rlen > 0)
			break;
		if (r < 0) {
			fprintf(stderr, "komctl: read from %s: %s\n", sock, strerror(errno));
			return 1;
		}
		if (r == 0)
			break;
		rlen += (size_t)r;
		/* "WAIT MS": komd waits for a device up to MS; so do we, and 5 s more */
		if (rlen >= 5 && memcmp(resp, "WAIT ", 5) == 0) {
			char *nl = memchr(resp, '\n', rlen);
			if (nl) {
				long ms = strtol(resp + 5, NULL, 10);
				if (ms > 0 && ms <= 86400000 && now_ms() + ms + 5000 > deadline)
					deadline = now_ms() + ms + 5000;
				size_t skip = (size_t)(nl + 1 - resp);
				memmove(resp, nl + 1, rlen - skip);
				rlen -= skip;
			}
		}
	}
	close(fd);
	if (!resp || rlen == 0) {
		fprintf(stderr, "komctl: komd closed the connection without an answer\n");
		return 1;
	}
	resp[rlen] = '\0';
	char *body = strchr(resp, '\n');
	if (body)
		*body++ = '\0';
	if (strcmp(resp, "OK") == 0 || strcmp(resp, "PARTIAL") == 0) {
		int rc = strcmp(resp, "OK") == 0 ? 0 : 3;
		if (body)
			fputs(body, stdout);
		if (rc == 3)
			fprintf(stderr, "komctl: applied, but a line could not start (see above)\n");
		free(resp);
		return rc;
	}
	if (strncmp(resp, "ERR ", 4) == 0) {
		fprintf(stderr, "komctl: %s\n", resp + 4);
		if (body && *body)
			fputs(body, stderr);
	} else {
		fprintf(stderr, "komctl: unexpected answer: %s\n", resp);
	}
	free(resp);
	return 1;
}
