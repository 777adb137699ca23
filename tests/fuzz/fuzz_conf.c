/* fuzz_conf.c: libFuzzer target for the configuration loader (daemon/conf.c over
 * libconfig, with every protocol's keys and load-time checks). The input is written to
 * komd.conf in a private directory and loaded as komd would: a configuration or a list of
 * FILE:LINE errors, never a crash, a leak or a hang. Inputs naming @include are skipped:
 * an included file is any file of the machine (/dev/zero would read for ever), and
 * @include itself is covered by the unit tests. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static char dir[64], path[96];

#include "fuzz_core.h"

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	snprintf(dir, sizeof(dir), "/tmp/komd-fuzz-conf-XXXXXX");
	if (!mkdtemp(dir))
		abort();
	snprintf(path, sizeof(path), "%s/komd.conf", dir);
	log_init(true, LOG_LVL_ERR); /* quiet: warnings (check_line) would flood the output */
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conf_errors errs = { 0 };
	struct config *c;
	FILE *f;

	if (size > 65536 || memmem(data, size, "@include", 8))
		return 0;
	if ((f = fopen(path, "w")) == NULL)
		abort();
	if (size && fwrite(data, 1, size, f) != size)
		abort();
	fclose(f);
	c = conf_load(path, &errs);
	/* a configuration, or errors: never neither */
	if (!c && errs.n == 0)
		abort();
	for (int i = 0; i < errs.n; i++)
		if (!errs.msg[i] || !errs.msg[i][0])
			abort();
	conf_free(c);
	conf_errors_clear(&errs);
	return 0;
}
