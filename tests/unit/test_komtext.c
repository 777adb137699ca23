/* test_komtext.c: the komtext codec against hand-written frames (komtext_codec.c's grammar). */
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "komtext_codec.h"

static int
parse(const char *s, struct komtext_msg *m, char *err)
{
	return komtext_parse(s, strlen(s), m, err, 128);
}

int
main(void)
{
	struct komtext_msg m;
	char err[128], buf[300];
	size_t flen;
	uint8_t big[300];

	/* framing */
	CHECK_INT(komtext_frame((const uint8_t *)"PING 1\nPO", 9, &flen), 1);
	CHECK_INT((long long)flen, 7);
	CHECK_INT(komtext_frame((const uint8_t *)"PING 1", 6, &flen), 0);
	CHECK_INT(komtext_frame((const uint8_t *)"PI\x01NG\n", 6, &flen), -1);
	CHECK_INT(komtext_frame((const uint8_t *)"NAK 2 \r\r\n", 9, &flen), -1); /* found by fuzzing */
	CHECK_INT(komtext_frame((const uint8_t *)"ACK 2\r\n", 7, &flen), 1);
	CHECK_INT(komtext_frame((const uint8_t *)"ACK 2\r", 6, &flen), 0);
	memset(big, 'A', sizeof(big));
	CHECK_INT(komtext_frame(big, 255, &flen), 0);
	CHECK_INT(komtext_frame(big, 256, &flen), -1);
	big[255] = '\n';
	CHECK_INT(komtext_frame(big, 256, &flen), 1);

	/* frames */
	CHECK_INT(parse("VAL flow 0 1700000000123 21.5", &m, err), 0);
	CHECK(m.kind == KT_VAL && m.quality == 0 && m.src_ms == 1700000000123LL);
	CHECK_STR(m.addr, "flow");
	CHECK_STR(m.text, "21.5");
	CHECK_INT(parse("VAL note 1 0 two words\r", &m, err), 0);
	CHECK_STR(m.text, "two words");
	CHECK_INT(m.quality, 1);
	CHECK_INT(parse("SET 4294967295 cmd 17", &m, err), 0);
	CHECK(m.kind == KT_SET && m.id == 4294967295u);
	CHECK_INT(parse("NAK 3 interlock active", &m, err), 0);
	CHECK_STR(m.text, "interlock active");
	CHECK_INT(parse("ACK 3", &m, err), 0);
	CHECK_INT(parse("PONG 0", &m, err), 0);

	/* errors */
	CHECK_INT(parse("", &m, err), -1);
	CHECK_STR(err, "empty frame");
	CHECK_INT(parse("HELLO", &m, err), -1);
	CHECK_STR(err, "unknown frame 'HELLO'");
	CHECK_INT(parse("SET 4294967296 cmd 1", &m, err), -1);
	CHECK_STR(err, "bad or missing id");
	CHECK_INT(parse("SET 1 cmd", &m, err), -1);
	CHECK_STR(err, "missing value");
	CHECK_INT(parse("VAL a 256 0 1", &m, err), -1);
	CHECK_STR(err, "bad or missing quality");
	CHECK_INT(parse("VAL a 0 -5 1", &m, err), -1);
	CHECK_INT(parse("ACK 1 2", &m, err), -1);
	CHECK_STR(err, "trailing data");
	CHECK_INT(parse("VAL aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa 0 0 1", &m, err), -1);

	/* format, and parse back */
	struct komtext_msg o = { .kind = KT_VAL, .quality = 3, .src_ms = 42 };
	strcpy(o.addr, "x");
	strcpy(o.text, "1.5");
	CHECK_INT(komtext_format(&o, buf, sizeof(buf)), 15);
	CHECK_STR(buf, "VAL x 3 42 1.5\n");
	o.kind = KT_NAK;
	o.id = 7;
	strcpy(o.text, "no");
	komtext_format(&o, buf, sizeof(buf));
	CHECK_STR(buf, "NAK 7 no\n");
	memset(o.text, 'v', 250);
	o.text[250] = '\0';
	o.kind = KT_SET;
	CHECK_INT(komtext_format(&o, buf, sizeof(buf)), -1); /* over 256 bytes */
	return CHECK_DONE();
}
