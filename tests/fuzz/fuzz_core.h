/* fuzz_core.h: what every fuzz target linked with the whole core needs: the reload that
 * control.c would ask main.c for (main.c is not linked), and CHECK, an assertion that
 * survives NDEBUG and says where it failed. Include once, in the target's .c file. */
#ifndef KOMD_FUZZ_CORE_H
#define KOMD_FUZZ_CORE_H

#include <stdio.h>
#include <stdlib.h>

int komd_reload(char *msg, size_t msglen);
int
komd_reload(char *msg, size_t msglen)
{
	snprintf(msg, msglen, "not in the fuzzer");
	return -1;
}

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #c); abort(); } } while (0)

#endif
