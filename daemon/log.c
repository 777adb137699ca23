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

static void __attribute__((format(printf, 3, 0)))
log_vemit(enum log_level level, const char *errstr, const char *fmt, va_list ap)
{
	char msg[2048];
	int n;

	if (level > log_lvl)
		return;
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (n < 0)
		return;
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
