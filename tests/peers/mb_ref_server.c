/* mb_ref_server: the reference Modbus TCP server for the benchmarks, written the way
 * libmodbus's own tests/bandwidth-server-many-up.c is: modbus_tcp_listen, one select()
 * over the listening socket and every client, modbus_receive and modbus_reply on the
 * readable ones. Single-threaded, like komd.
 *
 * Usage: mb_ref_server PORT [NREGS [nodelay]]
 * Listens on 127.0.0.1:PORT with NREGS holding registers (default 65536, register i holds
 * i & 0xffff), answers any unit id. Prints "listening PORT" once it listens, then runs until
 * SIGTERM or SIGINT. FD_SETSIZE (1024) bounds the clients, as in libmodbus's example.
 * Like that example (and modbus_tcp_accept), accepted sockets keep Nagle's algorithm on;
 * "nodelay" sets TCP_NODELAY on them, a diagnostic variant: with several requests in flight
 * on a connection, Nagle holds back a response until the client ACKs the previous one. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <modbus.h>

static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

int
main(int argc, char **argv)
{
	uint8_t query[MODBUS_TCP_MAX_ADU_LENGTH];
	modbus_mapping_t *map;
	modbus_t *ctx;
	fd_set refset, rdset;
	int port, nregs = 65536, server, fdmax, nodelay = 0;
	struct sigaction sa;

	if (argc < 2 || argc > 4 || (argc == 4 && strcmp(argv[3], "nodelay") != 0)) {
		fprintf(stderr, "usage: mb_ref_server PORT [NREGS [nodelay]]\n");
		return 2;
	}
	port = atoi(argv[1]);
	if (argc >= 3)
		nregs = atoi(argv[2]);
	nodelay = argc == 4;
	if (port < 1 || port > 65535 || nregs < 1 || nregs > 65536) {
		fprintf(stderr, "mb_ref_server: bad port or register count\n");
		return 2;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal; /* no SA_RESTART: select() returns EINTR */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	ctx = modbus_new_tcp("127.0.0.1", port);
	if (!ctx) {
		fprintf(stderr, "mb_ref_server: modbus_new_tcp: %s\n", modbus_strerror(errno));
		return 1;
	}
	map = modbus_mapping_new(0, 0, nregs, 0);
	if (!map) {
		fprintf(stderr, "mb_ref_server: modbus_mapping_new: %s\n", modbus_strerror(errno));
		modbus_free(ctx);
		return 1;
	}
	for (int i = 0; i < nregs; i++)
		map->tab_registers[i] = (uint16_t)i;
	server = modbus_tcp_listen(ctx, 1024);
	if (server == -1) {
		fprintf(stderr, "mb_ref_server: modbus_tcp_listen: %s\n", modbus_strerror(errno));
		modbus_mapping_free(map);
		modbus_free(ctx);
		return 1;
	}
	printf("listening %d\n", port);
	fflush(stdout);

	FD_ZERO(&refset);
	FD_SET(server, &refset);
	fdmax = server;
	while (!stop) {
		rdset = refset;
		if (select(fdmax + 1, &rdset, NULL, NULL, NULL) == -1) {
			if (errno == EINTR)
				continue;
			perror("mb_ref_server: select");
			break;
		}
		for (int fd = 0; fd <= fdmax; fd++) {
			if (!FD_ISSET(fd, &rdset))
				continue;
			if (fd == server) {
				struct sockaddr_in addr;
				socklen_t alen = sizeof(addr);
				int c = accept(server, (struct sockaddr *)&addr, &alen);
				if (c == -1) {
					perror("mb_ref_server: accept");
					continue;
				}
				if (c >= FD_SETSIZE) {
					fprintf(stderr, "mb_ref_server: fd %d over FD_SETSIZE, closed\n", c);
					close(c);
					continue;
				}
				if (nodelay)
					setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &nodelay, sizeof(nodelay));
				FD_SET(c, &refset);
				if (c > fdmax)
					fdmax = c;
			} else {
				int rc;
				modbus_set_socket(ctx, fd);
				rc = modbus_receive(ctx, query);
				if (rc > 0) {
					modbus_reply(ctx, query, rc, map);
				} else if (rc == -1) {
					/* connection closed by the client, or an error */
					close(fd);
					FD_CLR(fd, &refset);
					if (fd == fdmax)
						while (fdmax > 0 && !FD_ISSET(fdmax, &refset))
							fdmax--;
				}
			}
		}
	}
	close(server);
	for (int fd = 0; fd <= fdmax; fd++)
		if (fd != server && FD_ISSET(fd, &refset))
			close(fd);
	modbus_set_socket(ctx, -1);
	modbus_mapping_free(map);
	modbus_free(ctx);
	return 0;
}
