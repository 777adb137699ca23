/* komd.h: the process-wide state the core modules share (one event loop, its resolver, the
 * running configuration, the lines), in one place rather than in main.c's globals. */
#ifndef KOMD_KOMD_H
#define KOMD_KOMD_H

#include <stdbool.h>
#include <sys/queue.h>

struct event_base;
struct evdns_base;
struct config;
struct line;

/* The process-wide state the core modules share. */
struct komd {
	struct event_base *base;
	struct evdns_base *dns;
	struct config *conf;       /* the running configuration */
	bool no_peer_verify;
	bool debug;                /* -d: debug logging, whatever log_level says */
	bool stopping;
	int fd_limit;              /* RLIMIT_NOFILE in force (main.c); 0 unknown */
	TAILQ_HEAD(, line) lines;
};
/* Descriptors kept free for the control socket, logs and reloads: lines refuse new
 * connections rather than take them (line.c). */
#define KOMD_FD_RESERVE 32

/* Is descriptor fd among the last KOMD_FD_RESERVE of komd.fd_limit (lines then refuse the
 * connection, so that the control socket keeps some)? */
bool komd_fd_reserved(int fd);

#endif
