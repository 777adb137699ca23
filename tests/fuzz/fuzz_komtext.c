/* fuzz_komtext.c: libFuzzer target for the komtext codec: framing, parsing, and formatting
 * what was parsed (which must parse again to the same message). */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "komtext_codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t off = 0, flen;

	while (off < size && komtext_frame(data + off, size - off, &flen) == 1) {
		struct komtext_msg m, m2;
		char err[128], buf[KOMTEXT_MAX_FRAME + 1];
		int n;

		if (komtext_parse((const char *)data + off, flen - 1, &m, err, sizeof(err)) == 0 &&
		    (n = komtext_format(&m, buf, sizeof(buf))) > 0) {
			assert(komtext_parse(buf, (size_t)n - 1, &m2, err, sizeof(err)) == 0);
			assert(m2.kind == m.kind && m2.id == m.id && strcmp(m2.addr, m.addr) == 0);
		}
		off += flen;
	}
	return 0;
}
