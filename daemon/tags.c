/* tags.c: the tag table, the hub between acquiring and serving stations.
 * A tag is acquired by at most one station (none: a memory tag) and served by any number.
 * Value changes fan out to every server; writes are routed back to the acquirer, and every
 * write is answered exactly once: by the acquirer, or by the core's write timeout. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>
#include <jansson.h>

#include "core.h"

#define TAG_HASH_MIN 1024

static struct tag **tag_hash;
static size_t tag_hash_size, tag_n;


void
tags_init(void)
{
	if (tag_hash)
		return;
	tag_hash_size = TAG_HASH_MIN;
	tag_hash = calloc(tag_hash_size, sizeof(*tag_hash));
	if (!tag_hash)
		fatal("tags");
}

static void
tag_rehash(void)
{
	size_t nsize = tag_hash_size * 2;
	struct tag **nh = calloc(nsize, sizeof(*nh));

	if (!nh)
		return; /* keep the longer chains */
	for (size_t i = 0; i < tag_hash_size; i++) {
		struct tag *t = tag_hash[i], *next;
		for (; t; t = next) {
			next = t->hnext;
			uint32_t b = str_hash(t->name) & (nsize - 1);
			t->hnext = nh[b];
			nh[b] = t;
		}
	}
	free(tag_hash);
	tag_hash = nh;
	tag_hash_size = nsize;
}

struct tag *
tag_find(const char *name)
{
	if (!tag_hash)
		return NULL;
	for (struct tag *t = tag_hash[str_hash(name) & (tag_hash_size - 1)]; t; t = t->hnext)
		if (strcmp(t->name, name) == 0)
			return t;
	return NULL;
}

struct tag *
tag_create(const char *name, enum vtype type)
{
	struct tag *t;
	uint32_t b;

	tags_init();
	if (tag_n + 1 > tag_hash_size)
		tag_rehash();
	if ((t = calloc(1, sizeof(*t))) == NULL || (t->name = strdup(name)) == NULL)
		fatal("tag_create");
	t->type = type;
	t->v.type = type;
	if (type == VT_STRING && (t->v.s = strdup("")) == NULL)
		fatal("tag_create");
	t->quality = Q_INVALID; /* nothing known yet */
	TAILQ_INIT(&t->servers);
	b = str_hash(name) & (tag_hash_size - 1);
	t->hnext = tag_hash[b];
	tag_hash[b] = t;
	tag_n++;
	return t;
}

void
tag_destroy(struct tag *t)
{
	struct tag **pp = &tag_hash[str_hash(t->name) & (tag_hash_size - 1)];

	while (*pp && *pp != t)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = t->hnext;
	tag_n--;
	value_clear(&t->v);
	free(t->name);
	free(t);
}

size_t tag_count(void) { return tag_n; }

void
tag_foreach(void (*fn)(struct tag *t, void *arg), void *arg)
{
	for (size_t i = 0; i < tag_hash_size; i++) {
		struct tag *t = tag_hash[i], *next;
		for (; t; t = next) {
			next = t->hnext;
			fn(t, arg);
		}
	}
}

void
tags_bind(struct stag *e, bool serving)
{
	e->serving = serving;
	if (serving)
		TAILQ_INSERT_TAIL(&e->tag->servers, e, slink);
	else
		e->tag->acq = e;
}

void
tags_unbind(struct stag *e)
{
	if (!e->tag)
		return;
	if (e->serving)
		TAILQ_REMOVE(&e->tag->servers, e, slink);
	else if (e->tag->acq == e)
		e->tag->acq = NULL;
}

/* ---- the JSON form (komctl --json, and what protocols publish: stag_json) ---- */

/* {"line":L,"station":S,"address":A}: a station's entry of a tag, the address as the
 * protocol reads it (a register, an IOA, a komtext name). */
static json_t *
stag_where_json(const struct stag *e)
{
	return json_pack("{s:o,s:o,s:o}", "line", value_json_text(e->st->line->lc->name),
	    "station", value_json_text(e->st->sc->name), "address", value_json_text(e->tc->address));
}

json_t *
tag_json(const struct tag *t)
{
	char q[64], ts[40], tr[40], *who = NULL;
	const struct stag *e;
	json_t *served = json_array(), *j;

	TAILQ_FOREACH(e, &t->servers, slink)
		if (!served || json_array_append_new(served, stag_where_json(e)) != 0) {
			json_decref(served);
			served = NULL;
			break;
		}
	if (t->acq && asprintf(&who, "%s/%s", t->acq->st->line->lc->name, t->acq->st->sc->name) < 0)
		who = NULL;
	/* json_pack takes every "o" reference, and gives NULL if one of them is NULL */
	j = json_pack("{s:o,s:s,s:o,s:s,s:b,s:o,s:o,s:o,s:o,s:o,s:o}",
	    "name", value_json_text(t->name),
	    "type", vtype_name(t->type),
	    "value", value_json(&t->v),
	    "quality", quality_format(t->quality, q, sizeof(q)),
	    "invalid", (t->quality & Q_INVALID) != 0,
	    "source_time", json_string(time_format(t->ts_src, ts, sizeof(ts))),
	    "receive_time", json_string(time_format(t->ts_recv, tr, sizeof(tr))),
	    "acquired_by", !t->acq ? json_null() : who ? value_json_text(who) : NULL,
	    "source", t->acq ? stag_where_json(t->acq) : json_null(),
	    "served_by", served,
	    "updates", value_json_count(t->updates));
	free(who);
	return j;
}

json_t *
stag_json(const struct stag *t)
{
	json_t *j = tag_json(t->tag);

	/* a subscriber that reads only "value" must not take a stale one for the truth */
	if (j && (t->tag->quality & Q_INVALID) && json_object_set_new(j, "value", json_null()) != 0) {
		json_decref(j);
		return NULL;
	}
	return j;
}

static void
tag_notify(struct tag *t)
{
	struct stag *e, *next;

	TAILQ_FOREACH_SAFE(e, &t->servers, slink, next) {
		const struct proto_ops *ops = e->st->line->ops;
		if (ops->on_tag_change && e->st->line->started)
			ops->on_tag_change(e);
	}
}

/* The loop's cached time: one clock read per loop pass, not per frame (at millions of
 * frames a second, clock_gettime was a fifth of komd's time). */
static int64_t
tags_now_ms(void)
{
	struct timeval tv;

	if (komd.base && event_base_gettimeofday_cached(komd.base, &tv) == 0)
		return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
	return time_now_ms();
}

void
tag_set(struct tag *t, const struct value *v, unsigned quality, int64_t src_ms)
{
	int64_t now = tags_now_ms();
	bool changed = quality != t->quality || src_ms != t->ts_src;

	if (v && v->type == t->type && !value_equal(v, &t->v)) {
		value_clear(&t->v);
		value_copy(&t->v, v);
		changed = true;
	}
	t->quality = quality;
	t->ts_src = src_ms;
	t->ts_recv = now;
	t->updates++;
	if (changed)
		tag_notify(t);
}

void
tag_set_quality(struct tag *t, unsigned quality)
{
	if (t->quality == quality)
		return;
	/* ts_recv stays: it is when the value was received, and the value stays too (issue 11) */
	t->quality = quality;
	tag_notify(t);
}

/* ---- writes ---- */

static void
write_req_free(struct write_req *r)
{
	if (r->timeout)
		event_free(r->timeout);
	value_clear(&r->v);
	free(r);
}

/* Answer the requester (once). */
static void
write_answer(struct write_req *r, int status, const char *msg)
{
	write_cb cb = r->cb;

	if (r->answered)
		return;
	r->answered = true;
	r->cb = NULL;
	if (r->timeout)
		event_del(r->timeout);
	if (r->detached) {
		/* nobody to tell: the operator is */
		if (r->tag && r->tag->acq)
			r->tag->acq->st->writes_orphaned++;
		log_info("tag %s: write from %s (who has disconnected since): %s%s", r->tag ? r->tag->name : "?",
		    r->what, status ? "failed: " : "", msg);
		return;
	}
	if (status != 0)
		log_warnx("tag %s: write from %s failed: %s", r->tag ? r->tag->name : "?", r->what, msg);
	else
		log_debug("tag %s: write from %s done", r->tag ? r->tag->name : "?", r->what);
	if (cb)
		cb(r->arg, status, msg);
}

static void
write_timeout_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct write_req *r = arg;

	(void)fd; (void)ev;
	write_answer(r, -1, "timeout");	/* the acquirer still answers later, and frees */
}

struct write_req *
tag_write(struct tag *t, const struct value *v, write_cb cb, void *arg, const char *who)
{
	struct write_req *r;
	struct stag *acq = t->acq;
	struct timeval tv;

	if (v->type != t->type) {
		cb(arg, -1, "wrong value type");
		return NULL;
	}
	if (v->type == VT_FLOAT && !isfinite(v->f)) {
		/* from any serving protocol (a Modbus master's float registers, an IEC 104
		 * set-point): never to a device, never stored */
		log_warnx("tag %s: write from %s refused: %s is not a finite number", t->name, who, isnan(v->f) ? "NaN" :
		    "an infinity");
		cb(arg, -1, "not a finite number (NaN or infinity)");
		return NULL;
	}
	if (!acq) {
		/* a memory tag: the write is the value */
		tag_set(t, v, 0, time_now_ms());
		cb(arg, 0, "stored");
		return NULL;
	}
	if (acq->tc->dir == TD_IN) {
		cb(arg, -1, "tag is an input (direction in)");
		return NULL;
	}
	if (acq->st->sc->simulation) {
		tag_set(t, v, 0, time_now_ms());
		cb(arg, 0, "stored (simulated station)");
		return NULL;
	}
	if (!acq->st->line->ops->on_tag_write) {
		cb(arg, -1, "protocol does not support writes");
		return NULL;
	}
	if ((r = calloc(1, sizeof(*r))) == NULL) {
		cb(arg, -1, "out of memory");
		return NULL;
	}
	r->tag = t;
	value_copy(&r->v, v);
	r->cb = cb;
	r->arg = arg;
	r->with_acquirer = true;
	snprintf(r->what, sizeof(r->what), "%s", who);
	if ((r->timeout = evtimer_new(komd.base, write_timeout_cb, r)) == NULL) {
		write_req_free(r);
		cb(arg, -1, "out of memory");
		return NULL;
	}
	tv.tv_sec = komd.conf->write_timeout_ms / 1000;
	tv.tv_usec = (komd.conf->write_timeout_ms % 1000) * 1000;
	evtimer_add(r->timeout, &tv);
	acq->st->writes++;
	r->in_call = true;
	acq->st->line->ops->on_tag_write(acq, r);
	r->in_call = false;
	/* the protocol may have answered already */
	if (!r->with_acquirer) {
		write_req_free(r);
		return NULL;
	}
	return r->cb ? r : NULL;
}

void
write_req_detach(struct write_req *r)
{
	/* the write goes on to the device (unless write_timeout passes first); its result is
	 * logged instead of answered */
	if (r) {
		r->cb = NULL;
		r->detached = true;
	}
}

const struct value *write_req_value(const struct write_req *r) { return &r->v; }
bool write_req_answered(const struct write_req *r) { return r->answered; }

void
write_done(struct write_req *r, int status, const char *msg)
{
	if (!r->answered)
		write_answer(r, status, msg ? msg : (status ? "failed" : "ok"));
	r->with_acquirer = false;
	if (!r->in_call)
		write_req_free(r);
}
