/* http.h: the read-only HTTP endpoint (libevent's evhttp, RFC 9110/9112 as evhttp speaks
 * it): / a status page for people (HTML5, daemon/status.html), /metrics in the Prometheus
 * text exposition format 0.0.4, /api/status and /api/tags with the JSON of
 * `komctl --json status` and `komctl --json tags GLOB`. Nothing served over HTTP changes
 * komd. */
#ifndef KOMD_HTTP_H
#define KOMD_HTTP_H

#include <stddef.h>

struct evbuffer;
struct http_conf;

/* Listen as hc says (nothing when hc->present is false) and read its auth_file. 0, or -1
 * (logged: an address that cannot be bound, an auth_file that cannot be read). */
int http_start(const struct http_conf *hc);
/* A reloaded configuration: the same addresses and port keep their sockets (limits and
 * users are taken from hc); others are closed and hc's opened. 0, or -1 logged (an auth
 * file that cannot be read keeps the users in force; an address that cannot be bound is
 * left closed). */
int http_reload(const struct http_conf *hc);
/* Close the listeners and every connection (shutdown). */
void http_stop(void);
/* Count a reload's result for /metrics: rc as komd_reload returns it (0 applied, 1 applied
 * with lines that could not start, -1 refused). */
void http_note_reload(int rc);
/* The whole /metrics text (Prometheus text format 0.0.4) appended to b. 0, or -1 when out
 * of memory. */
int http_metrics(struct evbuffer *b);

/* The status page served at / (daemon/status.html byte for byte, UTF-8, not
 * NUL-terminated): build/gen/status_page.c, which the Makefile makes of it. */
extern const unsigned char http_status_page[];
extern const size_t http_status_page_len;

#endif
