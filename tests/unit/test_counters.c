/* test_counters.c: a protocol's own counters (proto_ops.counters): every protocol's table
 * follows the naming rule proto.h gives (lower case and '_', "_total" for a count and only
 * for a count, a help line, no name twice) and is documented in komctl(1); a line gets one
 * zeroed slot per entry when it is created, line_counter_add / line_counter_set reach only
 * those, and an index out of the table is ignored. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>

#include "check.h"
#include "core.h"

static bool
ends_with(const char *s, const char *end)
{
	size_t n = strlen(s), m = strlen(end);

	return n >= m && strcmp(s + n - m, end) == 0;
}

static void
test_tables(void)
{
	static char man[200000];
	FILE *f = fopen("man/komctl.1", "r");
	size_t n = f ? fread(man, 1, sizeof(man) - 1, f) : 0;

	CHECK(f != NULL);
	if (f)
		fclose(f);
	man[n] = '\0';
	for (int p = 0; proto_table[p]; p++)
		for (const struct proto_counter *k = proto_table[p]->counters; k && k->name; k++) {
			char pat[160];
			CHECK(k->name[0] && strspn(k->name, "abcdefghijklmnopqrstuvwxyz0123456789_") == strlen(k->name));
			CHECK(k->gauge != ends_with(k->name, "_total"));
			CHECK(k->help && k->help[0]);
			for (const struct proto_counter *o = proto_table[p]->counters; o != k; o++)
				CHECK(strcmp(o->name, k->name) != 0);
			/* documented: ".TP\n.B name\n" in PROTOCOL COUNTERS */
			snprintf(pat, sizeof(pat), "\n.TP\n.B %s\n", k->name);
			if (!strstr(man, pat))
				fprintf(stderr, "man/komctl.1 does not document counter '%s' (%s)\n", k->name,
				    proto_table[p]->name);
			CHECK(strstr(man, pat) != NULL);
		}
}

static const struct proto_counter t_counters[] = {
	{ .name = "t_events_total", .help = "events" },
	{ .name = "t_queue_depth", .gauge = true, .help = "queued" },
	{ .name = NULL },
};
static const struct proto_ops t_ops = { .name = "test-client", .transport = PROTO_CONNECT, .counters = t_counters };
static const struct proto_ops t_plain = { .name = "test-plain", .transport = PROTO_CONNECT };

static void
test_line(void)
{
	struct config conf = { .write_timeout_ms = 50 };
	struct line_conf lc = { .name = "l", .ops = &t_ops, .enabled = true }, lp = { .name = "p", .ops = &t_plain };
	struct confref *cref = calloc(1, sizeof(*cref));
	struct line *l, *pl;

	komd.base = event_base_new();
	komd.conf = &conf;
	CHECK(cref != NULL);
	if (!cref)
		return;
	cref->refs = 1; /* ours: the lines' references come and go */
	l = line_create(&lc, cref);
	pl = line_create(&lp, cref);
	CHECK(l && l->npcnt == 2 && l->pcnt && l->pcnt[0] == 0 && l->pcnt[1] == 0);
	CHECK(pl && pl->npcnt == 0 && pl->pcnt == NULL);
	if (!l || !pl)
		return;
	line_counter_add(l, 0, 1);
	line_counter_add(l, 0, 41);
	line_counter_set(l, 1, 7);
	line_counter_set(l, 1, 3);
	CHECK(l->pcnt[0] == 42 && l->pcnt[1] == 3);
	/* out of the table: ignored, nothing written past it */
	line_counter_add(l, 2, 5);
	line_counter_add(l, -1, 5);
	line_counter_set(l, 99, 5);
	line_counter_add(pl, 0, 1);
	CHECK(l->pcnt[0] == 42 && l->pcnt[1] == 3);
	line_counter_add(l, 0, UINT64_MAX - 42);
	CHECK(l->pcnt[0] == UINT64_MAX);
	line_free(l);
	line_free(pl);
	CHECK(cref->refs == 1);
	free(cref);
	event_base_free(komd.base);
}

int
main(void)
{
	test_tables();
	test_line();
	return CHECK_DONE();
}
