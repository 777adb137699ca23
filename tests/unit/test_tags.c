/* test_tags.c: the tag table and routing: fan-out of changes to serving stations, writes
 * routed to the acquirer and answered exactly once (by the protocol, or by the write
 * timeout), memory tags, direction checks and detach. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <event2/event.h>

#include "check.h"
#include "core.h"

static int changes, writes_seen;
static struct write_req *held;

static void t_change(struct stag *t) { (void)t; changes++; }
static void t_write(struct stag *t, struct write_req *r) { (void)t; writes_seen++; held = r; }
static void t_write_sync(struct stag *t, struct write_req *r) { (void)t; write_done(r, 0, "at once"); }

static struct proto_ops srv_ops = { .name = "test-server", .transport = PROTO_LISTEN, .on_tag_change = t_change };
static struct proto_ops cli_ops = { .name = "test-client", .transport = PROTO_CONNECT, .on_tag_write = t_write };

static int answers, last_status;
static char last_msg[128];

static void
answer_cb(void *arg, int status, const char *msg)
{
	(void)arg;
	answers++;
	last_status = status;
	snprintf(last_msg, sizeof(last_msg), "%s", msg);
}

int
main(void)
{
	struct config conf = { .write_timeout_ms = 50 };
	struct line_conf lc_srv = { .name = "srv" }, lc_cli = { .name = "cli" };
	struct station_conf sc_srv = { .name = "s" }, sc_cli = { .name = "c" };
	struct tag_conf tc_out = { .name = "a", .dir = TD_INOUT }, tc_in = { .name = "b", .dir = TD_IN };
	struct line lsrv = { .lc = &lc_srv, .ops = &srv_ops, .server = true, .started = true };
	struct line lcli = { .lc = &lc_cli, .ops = &cli_ops, .started = true };
	struct station ssrv = { .line = &lsrv, .sc = &sc_srv }, scli = { .line = &lcli, .sc = &sc_cli };
	struct stag acq_a = { .st = &scli, .tc = &tc_out }, acq_b = { .st = &scli, .tc = &tc_in };
	struct stag srv_a = { .st = &ssrv, .tc = &tc_out }, srv_a2 = { .st = &ssrv, .tc = &tc_out };
	struct value v = { .type = VT_INT, .i = 5 }, vf = { .type = VT_FLOAT, .f = 1.0 };
	struct tag *a, *b, *m;

	komd.base = event_base_new();
	komd.conf = &conf;
	tags_init();
	a = tag_create("a", VT_INT);
	b = tag_create("b", VT_INT);
	m = tag_create("mem", VT_FLOAT);
	CHECK(tag_find("a") == a && tag_find("mem") == m && tag_find("zz") == NULL);
	CHECK(a->quality & Q_INVALID); /* unknown until acquired */
	acq_a.tag = a; srv_a.tag = a; srv_a2.tag = a; acq_b.tag = b;
	tags_bind(&acq_a, false);
	tags_bind(&acq_b, false);
	tags_bind(&srv_a, true);
	tags_bind(&srv_a2, true);

	/* changes fan out to both servers; an unchanged value with the same quality does not */
	stag_update(&acq_a, &v, 0, 1000);
	CHECK_INT(changes, 2);
	CHECK_INT(a->v.i, 5);
	stag_update(&acq_a, &v, 0, 1000);
	CHECK_INT(changes, 2);
	stag_update(&srv_a, &(struct value){ .type = VT_INT, .i = 9 }, 0, 0); /* servers cannot set */
	CHECK_INT(a->v.i, 5);
	/* communication lost: invalid, value kept, and so is the time it was received */
	a->ts_recv = 12345;
	stag_set_quality(&acq_a, Q_INVALID);
	CHECK_INT(changes, 4);
	CHECK_INT(a->v.i, 5);
	CHECK(a->ts_recv == 12345);

	/* a write from a server is routed to the acquirer and answered when it says so */
	struct write_req *r = stag_write(&srv_a, &(struct value){ .type = VT_INT, .i = 7 }, answer_cb, NULL);
	CHECK(r != NULL && held == r && writes_seen == 1 && answers == 0);
	CHECK_INT(write_req_value(held)->i, 7);
	write_done(held, -1, "device said no");
	CHECK_INT(answers, 1);
	CHECK_INT(last_status, -1);
	CHECK_STR(last_msg, "device said no");

	/* the acquirer does not answer: the timeout does, once; the late answer is ignored */
	r = stag_write(&srv_a, &v, answer_cb, NULL);
	CHECK(r != NULL);
	event_base_dispatch(komd.base); /* runs the 50 ms write timeout */
	CHECK_INT(answers, 2);
	CHECK_STR(last_msg, "timeout");
	write_done(held, 0, "too late");
	CHECK_INT(answers, 2);

	/* detached requester: never called back */
	r = stag_write(&srv_a, &v, answer_cb, NULL);
	write_req_detach(r);
	write_done(held, 0, "ok");
	CHECK_INT(answers, 2);

	/* synchronous answer */
	cli_ops.on_tag_write = t_write_sync;
	r = stag_write(&srv_a, &v, answer_cb, NULL);
	CHECK(r == NULL);
	CHECK_INT(answers, 3);
	CHECK_STR(last_msg, "at once");

	/* direction in: refused; wrong type: refused; memory tag: stored */
	tag_write(b, &v, answer_cb, NULL, "test");
	CHECK_INT(answers, 4);
	CHECK_INT(last_status, -1);
	tag_write(a, &vf, answer_cb, NULL, "test");
	CHECK_INT(answers, 5);
	CHECK_STR(last_msg, "wrong value type");
	tag_write(m, &vf, answer_cb, NULL, "test");
	CHECK_INT(answers, 6);
	CHECK_INT(last_status, 0);
	CHECK(m->v.f == 1.0 && m->quality == 0);
	/* NaN and infinities: refused from any requester, never stored nor sent */
	tag_write(m, &(struct value){ .type = VT_FLOAT, .f = NAN }, answer_cb, NULL, "test");
	CHECK_INT(answers, 7);
	CHECK_INT(last_status, -1);
	CHECK(m->v.f == 1.0);
	tag_write(m, &(struct value){ .type = VT_FLOAT, .f = -INFINITY }, answer_cb, NULL, "test");
	CHECK_INT(answers, 8);
	CHECK_INT(last_status, -1);
	CHECK_STR(last_msg, "not a finite number (NaN or infinity)");

	/* unbinding and a big table (rehash) */
	tags_unbind(&srv_a2);
	tags_unbind(&acq_a);
	CHECK(a->acq == NULL);
	for (int i = 0; i < 5000; i++) {
		char n[32];
		snprintf(n, sizeof(n), "t%d", i);
		tag_create(n, VT_BOOL);
	}
	CHECK_INT((long long)tag_count(), 5003);
	CHECK(tag_find("t4999") != NULL && tag_find("a") == a);
	tags_unbind(&srv_a);
	tags_unbind(&acq_b);
	struct tag *t;
	while ((t = tag_find("t0")) != NULL)
		tag_destroy(t);
	CHECK_INT((long long)tag_count(), 5002);

	/* a float from the network as an int: rounded, saturated, NaN 0 (never a plain cast) */
	CHECK_INT(value_round_i64(2.5), 3);
	CHECK_INT(value_round_i64(-2.5), -3);
	CHECK_INT(value_round_i64(-3.72265e30), INT64_MIN);
	CHECK_INT(value_round_i64(1e300), INT64_MAX);
	CHECK_INT(value_round_i64(9223372036854775807.0), INT64_MAX);
	CHECK_INT(value_round_i64(NAN), 0);
	event_base_free(komd.base);
	return CHECK_DONE();
}
