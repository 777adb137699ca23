/* notify.c: systemd service notifications (sd_notify): READY=1 once listeners are bound,
 * RELOADING=1/READY=1 around reloads, STOPPING=1, STATUS= with a one-line summary, and
 * WATCHDOG=1 from the event loop at half the watchdog interval. */
#include <stdio.h>
#include <string.h>
#include <stdint.h>
#include <time.h>
#include <systemd/sd-daemon.h>
#include <event2/event.h>

#include "core.h"

static struct event *wd_ev;
static char last_status[256];

static void
notify_send(const char *msg)
{
	int r = sd_notify(0, msg);

	if (r < 0)
		log_debug("sd_notify: %s", strerror(-r));
}

void
notify_status(void)
{
	char buf[300];
	int lines = 0, up = 0, clients = 0;
	struct line *l;

	TAILQ_FOREACH(l, &komd.lines, link) {
		lines++;
		if (l->server) {
			clients += l->nsessions;
			up += l->nlst > 0;
		} else if (l->simulated || l->nsessions > 0) {
			up++;
		}
	}
	snprintf(buf, sizeof(buf), "STATUS=%d/%d lines up, %d clients, %zu tags", up, lines, clients, tag_count());
	if (strcmp(buf, last_status) != 0) {
		snprintf(last_status, sizeof(last_status), "%s", buf);
		notify_send(buf);
	}
}

void
notify_ready(void)
{
	notify_status();
	notify_send("READY=1");
}

void
notify_reloading(void)
{
	char buf[64];
	struct timespec ts;

	/* systemd >= 253 wants MONOTONIC_USEC with RELOADING=1; older ones ignore it */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(buf, sizeof(buf), "RELOADING=1\nMONOTONIC_USEC=%lld",
	    (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000);
	notify_send(buf);
}

void
notify_stopping(void)
{
	notify_send("STOPPING=1");
}

static void
notify_wd_cb(evutil_socket_t fd, short ev, void *arg)
{
	(void)fd; (void)ev; (void)arg;
	notify_send("WATCHDOG=1");
	notify_status();
}

void
notify_watchdog_start(void)
{
	uint64_t usec = 0;
	struct timeval tv;

	if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) {
		/* no watchdog: still refresh STATUS= every 10 s */
		usec = 20 * 1000000ULL;
	}
	usec /= 2;
	tv.tv_sec = (time_t)(usec / 1000000);
	tv.tv_usec = (suseconds_t)(usec % 1000000);
	if ((wd_ev = event_new(komd.base, -1, EV_PERSIST, notify_wd_cb, NULL)) == NULL)
		fatalx("watchdog event");
	event_add(wd_ev, &tv);
	notify_send("WATCHDOG=1");
}

void
notify_watchdog_stop(void)
{
	if (wd_ev)
		event_free(wd_ev);
	wd_ev = NULL;
}
