/* station.c: stations (devices on a line): their tags, communication state, polling
 * schedule (period + offset aligned to the wall clock, or a delay after the previous
 * request ends) and simulation (analogue values follow a sine between 0 and 100, binary
 * values toggle at random, as the original does). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

#define SIM_DEFAULT_MS 1000
#define SIM_SINE_PERIOD_MS 60000.0

const char *
station_state_name(enum station_state s)
{
	static const char *const names[] = { "stopped", "waiting", "ok", "error", "simulated", "serving" };
	return names[s];
}

int
station_setup(struct station *st, struct line *l, const struct station_conf *sc)
{
	const struct proto_ops *ops = l->ops;

	st->line = l;
	st->sc = sc;
	LIST_INIT(&st->timers);
	if (ops->station_size && (st->priv = calloc(1, ops->station_size)) == NULL)
		fatal("station_setup");
	if (sc->ntags && (st->tags = calloc((size_t)sc->ntags, sizeof(*st->tags))) == NULL)
		fatal("station_setup");
	for (int i = 0; i < sc->ntags; i++) {
		struct stag *e = &st->tags[i];
		e->st = st;
		e->tc = &sc->tags[i];
		if ((e->tag = tag_find(e->tc->name)) == NULL)
			fatalx("station %s: tag %s missing from the table", sc->name, e->tc->name);
		if (ops->stag_size && (e->priv = calloc(1, ops->stag_size)) == NULL)
			fatal("station_setup");
		tags_bind(e, conf_tag_serves(l->lc, e->tc));
		st->ntags++;
	}
	if (ops->station_init && ops->station_init(st) != 0) {
		log_warnx("line %s: station %s: cannot be set up", l->lc->name, sc->name);
		station_teardown(st); /* unbind its tags: nothing may point into it */
		return -1;
	}
	st->inited = true;
	return 0;
}

void
station_teardown(struct station *st)
{
	if (st->inited && st->line->ops->station_free)
		st->line->ops->station_free(st);
	st->inited = false;
	ptimer_free_list(&st->timers);
	for (int i = 0; i < st->ntags; i++) {
		tags_unbind(&st->tags[i]);
		free(st->tags[i].priv);
	}
	free(st->tags);
	free(st->priv);
	st->tags = NULL;
	st->priv = NULL;
	st->ntags = 0;
}

static void
station_invalidate(struct station *st)
{
	for (int i = 0; i < st->ntags; i++) /* only what the station acquires */
		if (!st->tags[i].serving)
			tag_set_quality(st->tags[i].tag, st->tags[i].tag->quality | Q_INVALID);
}

/* ---- simulation ---- */

static void
station_sim_cb(void *arg)
{
	struct station *st = arg;
	int64_t now = time_now_ms();
	int period = st->sc->period_ms ? st->sc->period_ms : SIM_DEFAULT_MS;

	for (int i = 0; i < st->ntags; i++) {
		struct tag *t = st->tags[i].tag;
		struct value v = { .type = t->type };
		double phase = (double)(now % (int64_t)SIM_SINE_PERIOD_MS) / SIM_SINE_PERIOD_MS +
		    (double)i / (st->ntags ? st->ntags : 1);
		double sine = 50.0 + 50.0 * sin(2.0 * M_PI * phase);
		char text[64];

		switch (t->type) {
		case VT_FLOAT:
			v.f = round(sine * 1000.0) / 1000.0;
			break;
		case VT_INT:
			v.i = (int64_t)lround(sine);
			break;
		case VT_BOOL:
			v.i = (random() % 4 == 0) ? !t->v.i : t->v.i;
			break;
		case VT_DPI:
			v.i = (random() % 4 == 0) ? (t->v.i == 2 ? 1 : 2) : (t->v.i == 2 ? 2 : 1);
			break;
		case VT_TIME:
			v.i = now;
			break;
		case VT_STRING:
			snprintf(text, sizeof(text), "simulated %.1f", sine);
			v.s = text;
			break;
		}
		/* outputs hold what was written to them; only inputs move */
		if (t->acq == &st->tags[i] && (st->tags[i].tc->dir == TD_IN || t->updates == 0))
			tag_set(t, &v, 0, now);
	}
	ptimer_start(st->sim_timer, period);
}

/* ---- polling ---- */

/* How early a timer may fire by libevent's coarse clock (one kernel tick, 4 ms at HZ 250,
 * with room for HZ 100), in ms. */
#define STATION_EARLY_MS 12

static void
station_poll_schedule(struct station *st)
{
	const struct station_conf *sc = st->sc;

	if (sc->period_ms) {
		int64_t now = time_now_ms();
		/* from the boundary just polled at the earliest, never the same one twice (a poll a
		 * few ms early, by the coarse clock); a wall clock set back is simply followed */
		int64_t from = st->due_ms > now && st->due_ms - now <= STATION_EARLY_MS ? st->due_ms : now;
		int64_t next = ((from - sc->offset_ms) / sc->period_ms + 1) * sc->period_ms + sc->offset_ms;
		st->due_ms = next;
		ptimer_start(st->poll_timer, (int)(next - now));
	} else if (sc->delay_ms || sc->continuous) {
		ptimer_start(st->poll_timer, sc->delay_ms); /* continuous: the next loop pass */
	}
}

static void
station_poll_cb(void *arg)
{
	struct station *st = arg;

	if (!st->polling)
		return;
	if (st->sc->period_ms) {
		/* libevent's timers follow the kernel's coarse clock and may fire up to one tick
		 * (4 ms) before the boundary: wait for the rest rather than poll early (not when the
		 * wall clock was set back: then the boundary is far ahead, and the poll is due) */
		int64_t now = time_now_ms();
		if (now < st->due_ms && st->due_ms - now <= STATION_EARLY_MS) {
			ptimer_start(st->poll_timer, (int)(st->due_ms - now));
			return;
		}
	}
	st->polls++;
	st->line->ops->on_poll(st);
	if (st->sc->period_ms && st->polling)
		station_poll_schedule(st);
}

void
station_poll_done(struct station *st)
{
	if (st->polling && (st->sc->delay_ms || st->sc->continuous) && !st->sc->period_ms)
		station_poll_schedule(st);
}

void
station_start(struct station *st)
{
	if (st->sc->simulation) {
		st->state = ST_SIMULATED;
		if (!st->sim_timer)
			st->sim_timer = station_timer(st, station_sim_cb, st);
		station_sim_cb(st);
		return;
	}
	st->state = st->line->server ? ST_SERVING : ST_WAITING;
	st->comm_lost = false;
}

void
station_stop(struct station *st)
{
	st->polling = false;
	ptimer_stop(st->poll_timer);
	ptimer_stop(st->sim_timer);
	station_invalidate(st);
	st->state = ST_STOPPED;
}

void
station_line_up(struct station *st)
{
	if (st->sc->simulation || st->line->server)
		return;
	/* connected, but "ok" only once the device has answered (station_set_comm): a TCP
	 * connect proves nothing about it (issue 11) */
	if (st->state != ST_ERROR)
		st->state = ST_WAITING;
	if (st->line->ops->on_poll && (st->sc->period_ms || st->sc->delay_ms || st->sc->continuous)) {
		if (!st->poll_timer)
			st->poll_timer = station_timer(st, station_poll_cb, st);
		st->polling = true;
		if (st->sc->period_ms)
			station_poll_schedule(st);
		else
			ptimer_start(st->poll_timer, 0); /* first poll at once, then delay after each */
	}
}

/* "communication lost" and "communication restored" come in pairs, each once, with the
 * reason and the outage's length. */
static void
station_comm_lost(struct station *st, const char *why)
{
	if (st->comm_lost)
		return;
	st->comm_lost = true;
	st->lost_ms = time_now_ms();
	log_warnx("line %s: station %s: communication lost: %s", st->line->lc->name, st->sc->name, why ? why : "?");
}

void
station_line_down(struct station *st, const char *why)
{
	if (st->sc->simulation || st->line->server)
		return;
	st->polling = false;
	ptimer_stop(st->poll_timer);
	if (st->line->started) /* a line being stopped says so itself */
		station_comm_lost(st, why);
	st->state = ST_ERROR;
	snprintf(st->last_error, sizeof(st->last_error), "%s", why);
	station_invalidate(st);
}

/* ---- the protocol's view ---- */

const struct station_conf *station_conf(const struct station *st) { return st->sc; }
void *station_priv(const struct station *st) { return st->priv; }
struct line *station_line(const struct station *st) { return st->line; }
const char *station_name(const struct station *st) { return st->sc->name; }
int station_ntags(const struct station *st) { return st->ntags; }
struct stag *station_stag(const struct station *st, int i) { return &st->tags[i]; }
void station_count_error(struct station *st) { st->errors++; }

void
station_note_error(struct station *st, const char *why)
{
	st->errors++;
	if (strcmp(st->last_error, why) != 0)
		log_warnx("line %s: station %s: %s", st->line->lc->name, st->sc->name, why);
	snprintf(st->last_error, sizeof(st->last_error), "%s", why);
}

void
station_set_comm(struct station *st, bool ok, const char *why)
{
	if (ok) {
		enum station_state good = st->line->server ? ST_SERVING : ST_OK;
		if (st->comm_lost)
			log_info("line %s: station %s: communication restored after %.1f s", st->line->lc->name,
			    st->sc->name, (time_now_ms() - st->lost_ms) / 1000.0);
		else if (st->state != good)
			log_info("line %s: station %s: communication ok", st->line->lc->name, st->sc->name);
		st->comm_lost = false;
		st->state = good;
		/* last_error stays: errors of single requests (station_note_error) outlive the poll */
		return;
	}
	st->errors++;
	station_comm_lost(st, why);
	st->state = ST_ERROR;
	snprintf(st->last_error, sizeof(st->last_error), "%s", why ? why : "");
	station_invalidate(st);
}

/* ---- tags as a station sees them ---- */

const struct tag_conf *stag_conf(const struct stag *t) { return t->tc; }
void *stag_priv(const struct stag *t) { return t->priv; }
struct station *stag_station(const struct stag *t) { return t->st; }
const char *stag_name(const struct stag *t) { return t->tag->name; }
enum vtype stag_type(const struct stag *t) { return t->tag->type; }
const struct value *stag_value(const struct stag *t) { return &t->tag->v; }
unsigned stag_quality(const struct stag *t) { return t->tag->quality; }
int64_t stag_time_source(const struct stag *t) { return t->tag->ts_src; }

void
stag_update(struct stag *t, const struct value *v, unsigned quality, int64_t src_ms)
{
	if (t->serving || t->tag->acq != t)
		return; /* only the acquirer sets values */
	tag_set(t->tag, v, quality, src_ms);
}

void
stag_set_quality(struct stag *t, unsigned quality)
{
	if (!t->serving && t->tag->acq == t)
		tag_set_quality(t->tag, quality);
}

struct write_req *
stag_write(struct stag *t, const struct value *v, write_cb cb, void *arg)
{
	char who[160];

	if (t->tc->dir == TD_IN) {
		cb(arg, -1, "tag is not writable here (direction in)");
		return NULL;
	}
	snprintf(who, sizeof(who), "line %s station %s", t->st->line->lc->name, t->st->sc->name);
	return tag_write(t->tag, v, cb, arg, who);
}
