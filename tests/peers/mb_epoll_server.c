/* mb_epoll_server: the physical limit of a Modbus TCP server on this machine, for the
 * benchmarks: the least a single-threaded server can do per request with the system calls
 * komd makes (epoll_wait, one recv a readiness, one send an answer), and nothing else.
 *
 * Usage: mb_epoll_server PORT
 * Listens on 127.0.0.1:PORT and prints "listening PORT" once it does; runs until SIGTERM or
 * SIGINT (taken from a signalfd in the epoll set: under valgrind a handler's flag set just
 * before epoll_wait was seen to be missed). Accepted sockets get TCP_NODELAY, as komd's do. Level-triggered epoll over the
 * listener and every connection; a readable connection is read with one recv, every
 * complete ADU in it is answered, and the answers go out with one send. A read holding
 * registers request (FC 3, any unit, 1..125 registers) is answered from a canned image
 * (register i holds i, big-endian, made at start-up: an answer is a header and a copy), any
 * other function with exception 01; a broken MBAP header (protocol id not 0, length below 2
 * or above 254) closes the connection. What a send cannot take at once waits (EPOLLOUT)
 * and the connection is not read meanwhile. No libmodbus: the Makefile's flags for
 * tests/peers are harmless here. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_ADU 260
#define BUF 4096
#define MAX_EVENTS 256

struct conn {
	int fd;
	size_t inlen, outlen, outoff;
	uint8_t in[BUF];
	uint8_t out[BUF / 12 * MAX_ADU]; /* room for the answers of a full input buffer */
};

static uint8_t image[2 * 65536]; /* register i = i, big-endian */
static int ep;

static void
conn_close(struct conn *c)
{
	close(c->fd); /* removes it from the epoll set */
	free(c);
}

/* Send what is waiting; 0 (all sent, or the rest waits for EPOLLOUT), -1 to close. */
static int
conn_flush(struct conn *c)
{
	struct epoll_event ev = { .data.ptr = c };

	while (c->outoff < c->outlen) {
		ssize_t n = send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			ev.events = EPOLLOUT;
			return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
		}
		if (n <= 0)
			return -1;
		c->outoff += (size_t)n;
	}
	c->outoff = c->outlen = 0;
	return 0;
}

/* Answer every complete ADU of the input; 0, or -1 for a broken header. */
static int
conn_answer(struct conn *c)
{
	size_t at = 0;

	while (c->inlen - at >= 7) {
		const uint8_t *a = c->in + at;
		unsigned len = (unsigned)(a[4] << 8 | a[5]);
		uint8_t *o = c->out + c->outlen;

		if (a[2] != 0 || a[3] != 0 || len < 2 || len > 254)
			return -1;
		if (c->inlen - at < 6 + len)
			break;
		unsigned addr = (unsigned)(a[8] << 8 | a[9]), count = (unsigned)(a[10] << 8 | a[11]);
		memcpy(o, a, 4); /* transaction and protocol ids */
		o[6] = a[6];     /* unit */
		if (a[7] == 3 && len == 6 && count >= 1 && count <= 125 && addr + count <= 65536) {
			o[4] = 0;
			o[5] = (uint8_t)(3 + 2 * count);
			o[7] = 3;
			o[8] = (uint8_t)(2 * count);
			memcpy(o + 9, image + 2 * addr, 2 * count);
			c->outlen += 9 + 2 * count;
		} else {
			o[4] = 0;
			o[5] = 3;
			o[7] = (uint8_t)(a[7] | 0x80);
			o[8] = 1;
			c->outlen += 9;
		}
		at += 6 + len;
	}
	memmove(c->in, c->in + at, c->inlen - at);
	c->inlen -= at;
	return 0;
}

static void
conn_event(struct conn *c, uint32_t events)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };

	if (c->outlen > 0) {
		/* writable again: the rest of the answers, then reading resumes */
		if (conn_flush(c) != 0) {
			conn_close(c);
			return;
		}
		if (c->outlen == 0 && epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) != 0)
			conn_close(c);
		return;
	}
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	ssize_t n = recv(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0 || (c->inlen += (size_t)n, conn_answer(c) != 0) || conn_flush(c) != 0)
		conn_close(c);
}

int
main(int argc, char **argv)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	static int stop_mark;
	struct epoll_event evs[MAX_EVENTS], ev = { .events = EPOLLIN, .data.ptr = NULL };
	struct epoll_event sev = { .events = EPOLLIN, .data.ptr = &stop_mark };
	sigset_t sigs;
	int port, lfd, sfd, on = 1;
	bool stop = false;

	if (argc != 2 || (port = atoi(argv[1])) < 1 || port > 65535) {
		fprintf(stderr, "usage: mb_epoll_server PORT\n");
		return 2;
	}
	for (unsigned i = 0; i < 65536; i++) {
		image[2 * i] = (uint8_t)(i >> 8);
		image[2 * i + 1] = (uint8_t)i;
	}
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	sin.sin_port = htons((uint16_t)port);
	if ((lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0 ||
	    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
	    bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) != 0 || listen(lfd, 1024) != 0) {
		perror("mb_epoll_server: listen");
		return 1;
	}
	if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) != 0 ||
	    (sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC)) < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &sev) != 0) {
		perror("mb_epoll_server: epoll");
		return 1;
	}
	printf("listening %d\n", port);
	fflush(stdout);

	while (!stop) {
		int n = epoll_wait(ep, evs, MAX_EVENTS, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("mb_epoll_server: epoll_wait");
			return 1;
		}
		for (int i = 0; i < n; i++) {
			if (evs[i].data.ptr == &stop_mark) {
				stop = true;
				continue;
			}
			if (evs[i].data.ptr) {
				conn_event(evs[i].data.ptr, evs[i].events);
				continue;
			}
			int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
			if (fd < 0)
				continue; /* gone, or out of descriptors: tried again at the next event */
			struct conn *c = malloc(sizeof(*c));
			if (!c) {
				close(fd);
				continue;
			}
			c->fd = fd;
			c->inlen = c->outlen = c->outoff = 0;
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
			struct epoll_event cev = { .events = EPOLLIN, .data.ptr = c };
			if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev) != 0)
				conn_close(c);
		}
	}
	close(lfd);
	close(sfd);
	close(ep);
	return 0; /* the connections' descriptors close with the process */
}
