/* log.c: logging to stderr. Under systemd (JOURNAL_STREAM set and not -f) each line
 * carries a <N> priority prefix for the journal and no timestamp; otherwise lines carry a
 * local timestamp with milliseconds. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

#include "log.h"

static bool log_journal;
static enum log_level log_lvl = LOG_LVL_INFO;

static const char *const level_names[] = { "error", "warning", "info", "debug" };
static const int level_prio[] = { 3, 4, 6, 7 }; /* syslog priorities */

void
log_init(bool foreground, enum log_level level)
{
	log_journal = !foreground && getenv("JOURNAL_STREAM") != NULL;
	log_lvl = level;
}

void log_setlevel(enum log_level level) { log_lvl = level; }
enum log_level log_getlevel(void) { return log_lvl; }
const char *log_level_name(enum log_level level) { return level_names[level]; }

int
log_level_parse(const char *s)
{
	for (int i = 0; i < 4; i++)
		if (strcasecmp(s, level_names[i]) == 0)
			return i;
	return -1;
}

size_t
utf8_len(const unsigned char *p, size_t n)
{
	size_t len = p[0] >= 0xf0 && p[0] <= 0xf4 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc2 && p[0] <= 0xdf ? 2 : 0;

	if (p[0] >= 0xf5 || len == 0 || len > n)
		return 0;
	for (size_t i = 1; i < len; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	/* overlong three- and four-byte forms, surrogates, past U+10FFFF */
	if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] >= 0xa0) || (p[0] == 0xf0 && p[1] < 0x90) ||
	    (p[0] == 0xf4 && p[1] >= 0x90))
		return 0;
	return len;
}

/* A message as one safe line: text from peers (a frame quoted in an error, a name) may hold
 * anything, and a newline or an escape sequence in the log would forge lines or mislead a
 * terminal. Control bytes and bytes that are not UTF-8 become \xNN. */
static void
log_clean(const char *in, char *out, size_t outlen)
{
	const unsigned char *p = (const unsigned char *)in;
	size_t o = 0, n = strlen(in);

	for (size_t i = 0; i < n && o + 5 < outlen; ) {
		size_t l = p[i] >= 0x80 ? utf8_len(p + i, n - i) : 1;
		if (p[i] < 0x20 || p[i] == 0x7f || l == 0) {
			o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", p[i]);
			i++;
		} else {
			if (o + l >= outlen)
				break;
			memcpy(out + o, p + i, l);
			o += l;
			i += l;
		}
	}
	out[o] = '\0';
}

static void __attribute__((format(printf, 3, 0)))
log_vemit(enum log_level level, const char *errstr, const char *fmt, va_list ap)
{
	char raw[2048], msg[2048 * 4];
	int n;

	if (level > log_lvl)
		return;
	n = vsnprintf(raw, sizeof(raw), fmt, ap);
	if (n < 0)
		return;
	log_clean(raw, msg, sizeof(msg));
	if (log_journal) {
		fprintf(stderr, "<%d>%s%s%s\n", level_prio[level], msg, errstr ? ": " : "",
		    errstr ? errstr : "");
	} else {
		struct timeval tv;
		struct tm tm;
		char ts[32];

		gettimeofday(&tv, NULL);
		localtime_r(&tv.tv_sec, &tm);
		strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%S", &tm);
		fprintf(stderr, "%s.%03d %-7s %s%s%s\n", ts, (int)(tv.tv_usec / 1000),
		    level_names[level], msg, errstr ? ": " : "", errstr ? errstr : "");
	}
	fflush(stderr);
}

#define LOG_BODY(level, errstr) do { va_list ap; va_start(ap, fmt); \
	log_vemit(level, errstr, fmt, ap); va_end(ap); } while (0)

void log_warn(const char *fmt, ...) { const char *e = strerror(errno); LOG_BODY(LOG_LVL_WARN, e); }
void log_warnx(const char *fmt, ...) { LOG_BODY(LOG_LVL_WARN, NULL); }
void log_info(const char *fmt, ...) { LOG_BODY(LOG_LVL_INFO, NULL); }
void log_debug(const char *fmt, ...) { LOG_BODY(LOG_LVL_DEBUG, NULL); }
void log_err(const char *fmt, ...) { LOG_BODY(LOG_LVL_ERR, NULL); }

void
fatal(const char *fmt, ...)
{
	const char *e = strerror(errno);
	LOG_BODY(LOG_LVL_ERR, e);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	LOG_BODY(LOG_LVL_ERR, NULL);
	exit(1);
}
