/* komd.c: the process-wide state (komd.h). */
#include "komd.h"

struct komd komd;

/* The kernel hands out the lowest free number, so fd is about the count in use: the rest
 * stays for the control socket, reloads and logs. */
bool
komd_fd_reserved(int fd)
{
	return komd.fd_limit > 0 && fd >= komd.fd_limit - KOMD_FD_RESERVE;
}
