/* test_counters.c: a protocol's own counters (proto_ops.counters): every protocol's table
 * follows the naming rule proto.h gives (lower case and '_', "_total" for a count and only
 * for a count, a help line, no name twice but in a labelled family: consecutive, one label,
 * distinct label values, the same family in every protocol that declares it) and is
 * documented in komctl(1), a labelled one with its label; a line gets one
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
			/* a name twice only in a labelled family: consecutive entries of one label,
			 * gauge and help, each with its own label value */
			for (const struct proto_counter *o = proto_table[p]->counters; o != k; o++)
				if (strcmp(o->name, k->name) == 0) {
					CHECK(k->label && o->label && strcmp(o->label, k->label) == 0);
					CHECK(strcmp((k - 1)->name, k->name) == 0);
					CHECK(o->gauge == k->gauge && strcmp(o->help, k->help) == 0);
					CHECK(!o->label_value || !k->label_value || strcmp(o->label_value, k->label_value) != 0);
				}
			CHECK(!k->label == !k->label_value);
			if (k->label) {
				CHECK(k->label[0] && strspn(k->label, "abcdefghijklmnopqrstuvwxyz_") == strlen(k->label));
				CHECK(strcmp(k->label, "line") != 0);
				CHECK(k->label_value && k->label_value[0]);
			}
			/* one family whichever protocols declare it (/metrics writes it once) */
			for (int q = 0; q < p; q++)
				for (const struct proto_counter *o = proto_table[q]->counters; o && o->name; o++)
					if (strcmp(o->name, k->name) == 0)
						CHECK(o->gauge == k->gauge && !o->label == !k->label &&
						    (!k->label || strcmp(o->label, k->label) == 0));
			/* documented: ".TP\n.B name\n" in PROTOCOL COUNTERS, a labelled one with
			 * "label\n.BR name" in its entry */
			snprintf(pat, sizeof(pat), "\n.TP\n.B %s\n", k->name);
			const char *doc = strstr(man, pat);
			if (!doc)
				fprintf(stderr, "man/komctl.1 does not document counter '%s' (%s)\n", k->name,
				    proto_table[p]->name);
			CHECK(doc != NULL);
			if (doc && k->label) {
				const char *end = strstr(doc + strlen(pat), "\n.TP\n"), *lab;
				snprintf(pat, sizeof(pat), "label\n.BR %s ", k->label);
				lab = strstr(doc, pat);
				if (!lab || (end && lab > end))
					fprintf(stderr, "man/komctl.1: counter '%s' without its label '%s'\n", k->name, k->label);
				CHECK(lab && (!end || lab < end));
			}
		}
}

/* A labelled family: one slot per entry, counted by index like any other. */
static const struct proto_counter t_labelled[] = {
	{ .name = "t_events_total", .help = "events" },
	{ .name = "t_errors_total", .help = "errors by code", .label = "code", .label_value = "1" },
	{ .name = "t_errors_total", .help = "errors by code", .label = "code", .label_value = "2" },
	{ .name = NULL },
};

static const struct proto_counter t_counters[] = {
	{ .name = "t_events_total", .help = "events" },
	{ .name = "t_queue_depth", .gauge = true, .help = "queued" },
	{ .name = NULL },
};
static const struct proto_ops t_ops = { .name = "test-client", .transport = PROTO_CONNECT, .counters = t_counters };
static const struct proto_ops t_plain = { .name = "test-plain", .transport = PROTO_CONNECT };
static const struct proto_ops t_lab = { .name = "test-lab", .transport = PROTO_CONNECT, .counters = t_labelled };

static void
test_line(void)
{
	struct config conf = { .write_timeout_ms = 50 };
	struct line_conf lc = { .name = "l", .ops = &t_ops, .enabled = true }, lp = { .name = "p", .ops = &t_plain };
	struct confref *cref = calloc(1, sizeof(*cref));
	struct line *l, *pl, *ll;
	struct line_conf llc = { .name = "ll", .ops = &t_lab };

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
	ll = line_create(&llc, cref);
	CHECK(ll && ll->npcnt == 3);
	if (ll) {
		line_counter_add(ll, 2, 5);
		CHECK(ll->pcnt[0] == 0 && ll->pcnt[1] == 0 && ll->pcnt[2] == 5);
		line_free(ll);
	}
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
