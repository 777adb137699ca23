/* log.h: the daemon's four log calls, plus fatal for start-up and broken invariants. */
#ifndef KOMD_LOG_H
#define KOMD_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

enum log_level { LOG_LVL_ERR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* foreground: timestamps on stderr; otherwise journal style (<N> prefixes) when
 * JOURNAL_STREAM is set, timestamps when it is not. */
void log_init(bool foreground, enum log_level level);
/* The length of the valid UTF-8 sequence at p (of at most n bytes), or 0 (not UTF-8).
 * Text from peers is written as \xNN where it is not UTF-8 (log lines, komctl output). */
size_t utf8_len(const unsigned char *p, size_t n);
void log_setlevel(enum log_level level);
enum log_level log_getlevel(void);
int log_level_parse(const char *s); /* "error".."debug" -> level, -1 if unknown */
const char *log_level_name(enum log_level level);

void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));  /* appends strerror(errno) */
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));  /* error priority, no strerror */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
