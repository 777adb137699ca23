/* reload.c: a configuration applied as a difference to the running daemon: lines whose
 * section is unchanged (the same fingerprint, the same tag types) are kept with their
 * connections, changed ones restart, removed ones stop, new ones start; memory tags keep
 * their values; tags no line uses any more go. Used at start-up (everything is new) and at
 * every reload, after the new configuration has been checked completely (main.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

static struct confref *reload_cref; /* the running configuration */

/* Does line l still stand unchanged in the new configuration nc? */
static bool
line_unchanged(const struct line *l, const struct config *nc)
{
	const struct line_conf *nlc = conf_find_line(nc, l->lc->name);

	if (!nlc || strcmp(nlc->fingerprint, l->lc->fingerprint) != 0)
		return false;
	for (int i = 0; i < l->nstations; i++)
		for (int j = 0; j < l->stations[i].ntags; j++) {
			const struct tag *t = l->stations[i].tags[j].tag;
			const struct tag_conf *tc = conf_find_tag(nc, t->name);
			if (!tc || tc->type != t->type)
				return false;
		}
	return true;
}

static void
tag_define(const struct tag_conf *tc, bool memory)
{
	struct tag *t = tag_find(tc->name);

	if (t && t->type != tc->type) {
		/* the type changed: every line that used it has been stopped and freed */
		tag_destroy(t);
		t = NULL;
	}
	if (!t)
		t = tag_create(tc->name, tc->type);
	else if (t->memory == memory)
		goto keep; /* same role: the value stays */
	if (memory && tc->has_initial)
		tag_set(t, &tc->initial, 0, time_now_ms());
	else if (memory)
		tag_set_quality(t, 0); /* a memory tag without an initial value: zero, good */
	else
		tag_set_quality(t, t->quality | Q_INVALID); /* now acquired: nothing known until the device says */
	t->memory = memory;
keep:
	t->mark = true;
}

static void
tag_sweep(struct tag *t, void *arg)
{
	(void)arg;
	if (!t->mark && !t->acq && TAILQ_EMPTY(&t->servers))
		tag_destroy(t);
	else
		t->mark = false;
}

/* Apply a validated configuration: keep unchanged lines, stop removed and changed ones,
 * start new and changed ones. Returns a one-line summary in msg. */
void
reload_apply(struct config *nc, char *msg, size_t msglen)
{
	struct confref *cref = calloc(1, sizeof(*cref));
	struct line *l, *next;
	TAILQ_HEAD(, line) kept;
	int nkept = 0, nstopped = 0, nstarted = 0;

	if (!cref)
		fatal("apply");
	cref->conf = nc;
	cref->refs = 1;
	TAILQ_INIT(&kept);
	TAILQ_FOREACH_SAFE(l, &komd.lines, link, next) {
		TAILQ_REMOVE(&komd.lines, l, link);
		if (line_unchanged(l, nc)) {
			TAILQ_INSERT_TAIL(&kept, l, link);
			line_tls_reload(l); /* certificates may have been renewed in place */
			nkept++;
		} else {
			log_info("line %s: %s", l->lc->name, conf_find_line(nc, l->lc->name) ? "changed: restarting" : "removed: stopping");
			line_free(l);
			nstopped++;
		}
	}

	/* the tag table: memory tags and tags of acquiring stations */
	for (int i = 0; i < nc->ntags; i++)
		tag_define(&nc->tags[i], true);
	for (int i = 0; i < nc->nlines; i++) {
		const struct line_conf *lc = &nc->lines[i];
		for (int j = 0; j < lc->nstations; j++)
			for (int k = 0; k < lc->stations[j].ntags; k++)
				if (!conf_tag_serves(lc, &lc->stations[j].tags[k]))
					tag_define(&lc->stations[j].tags[k], false);
	}
	tag_foreach(tag_sweep, NULL);

	komd.conf = nc;
	if (!komd.debug) /* -d keeps debug logging whatever the file says */
		log_setlevel((enum log_level)nc->log_level);

	/* lines in the order of the file; kept ones as they are */
	for (int i = 0; i < nc->nlines; i++) {
		struct line_conf *lc = &nc->lines[i];
		TAILQ_FOREACH(l, &kept, link)
			if (strcmp(l->lc->name, lc->name) == 0)
				break;
		if (l) {
			TAILQ_REMOVE(&kept, l, link);
			TAILQ_INSERT_TAIL(&komd.lines, l, link);
			continue;
		}
		if ((l = line_create(lc, cref)) == NULL)
			continue;
		TAILQ_INSERT_TAIL(&komd.lines, l, link);
		l->start_failed = line_start(l) != 0; /* a port in use: it tries again, and says so */
		nstarted++;
	}
	if (reload_cref && --reload_cref->refs == 0) {
		conf_free(reload_cref->conf);
		free(reload_cref);
	}
	reload_cref = cref;
	size_t o = (size_t)snprintf(msg, msglen, "configuration applied: %d line%s kept, %d stopped, %d started",
	    nkept, nkept == 1 ? "" : "s", nstopped, nstarted);
	TAILQ_FOREACH(l, &komd.lines, link)
		if (l->start_failed && o < msglen)
			o += (size_t)snprintf(msg + o, msglen - o, "\nline %s could not start: %s (retrying)", l->lc->name,
			    l->last_error[0] ? l->last_error : "see the log");
}

void
reload_release(void)
{
	if (reload_cref && --reload_cref->refs == 0) {
		conf_free(reload_cref->conf);
		free(reload_cref);
	}
	reload_cref = NULL;
}
