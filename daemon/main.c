/* main.c: komd's start-up (no core dumps, descriptors for the configuration), the
 * configuration's life cycle (load, check, apply, reload as a difference), signals and
 * shutdown. komd never forks: systemd supervises it. */
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <event2/dns.h>
#include <event2/event.h>

#include "core.h"
#include "http.h"
#include "tls.h"

#define DEFAULT_CONF SYSCONFDIR "/komd/komd.conf"
/* Descriptors for komd itself beyond its connections and KOMD_FD_RESERVE: the event loop,
 * DNS, standard streams, files read at a reload. */
#define FD_MARGIN 64

static const char *conf_path = DEFAULT_CONF;

static void
usage(FILE *f)
{
	fprintf(f, "usage: komd [-f] [-c FILE] [-t] [-d] [-V] [-h] [/DC | --no-peer-verify] [--core-dumps]\n"
	    "  -f                 foreground: timestamped logs on the terminal\n"
	    "  -c FILE            configuration file (default %s)\n"
	    "  -t                 check the configuration and exit\n"
	    "  -d                 debug logging\n"
	    "  -V                 print the version and exit\n"
	    "  -h                 this help\n"
	    "  /DC, --no-peer-verify\n"
	    "                     do not verify partners' TLS certificates\n"
	    "  --core-dumps       allow core dumps (they hold TLS keys and PSKs; off by default)\n"
	    "Control: komctl(1); configuration: komd.conf(5); more: komd(8).\n", DEFAULT_CONF);
}

/* No core dumps unless --core-dumps: a core holds TLS keys and PSKs. A process that is not
 * dumpable cannot be ptraced by other processes of its user either, and its /proc files
 * (environ, mem, fd) belong to root. */
static void
komd_no_core_dumps(void)
{
	struct rlimit rl;

	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
		log_warn("prctl(PR_SET_DUMPABLE, 0)");
	/* LimitCORE=0 in the unit has done it already: no call needed */
	if (getrlimit(RLIMIT_CORE, &rl) == 0 && (rl.rlim_cur != 0 || rl.rlim_max != 0)) {
		rl.rlim_cur = rl.rlim_max = 0;
		if (setrlimit(RLIMIT_CORE, &rl) != 0)
			log_warn("setrlimit(RLIMIT_CORE, 0)");
	}
}

/* Raise RLIMIT_NOFILE's soft limit to what configuration c may hold at once (every server
 * line's max_clients and listeners, every client connection, the control socket's clients,
 * the descriptors lines leave free, a margin), up to the hard limit; warn, with the
 * numbers, when the hard limit is lower. Never lowers it. komd.fd_limit: the soft limit. */
static void
komd_fd_limit(const struct config *c)
{
	struct rlimit rl;
	rlim_t need, old;
	long servers = 0, clients = 0;

	for (int i = 0; i < c->nlines; i++) {
		const struct line_conf *lc = &c->lines[i];
		if (!lc->enabled)
			continue;
		if (lc->ops->transport == PROTO_LISTEN)
			servers += lc->max_clients + lc->hosts.n;
		else
			/* a connection, and a timerfd if its protocol reads in batches (session_read_batch;
			 * MQTT; counted for every client line, which is at most a few too many) */
			clients += 2 * (lc->type == LINE_TCP_REDUNDANT ? 2 : 1);
	}
	/* the HTTP endpoint's connections and listeners in the margin's part */
	need = (rlim_t)(servers + clients + c->control_max_clients + KOMD_FD_RESERVE + FD_MARGIN +
	    (c->http.present ? c->http.max_clients + c->http.hosts.n : 0));
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
		log_warn("descriptors: getrlimit(RLIMIT_NOFILE)");
		return;
	}
	if (rl.rlim_cur < need && rl.rlim_cur < rl.rlim_max) {
		old = rl.rlim_cur;
		rl.rlim_cur = need < rl.rlim_max ? need : rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
			log_warn("descriptors: cannot raise RLIMIT_NOFILE's soft limit from %llu to %llu",
			    (unsigned long long)old, (unsigned long long)rl.rlim_cur);
			rl.rlim_cur = old;
		} else
			log_info("descriptors: RLIMIT_NOFILE soft limit raised from %llu to %llu",
			    (unsigned long long)old, (unsigned long long)rl.rlim_cur);
	}
	if (rl.rlim_max < need)
		log_warnx("descriptors: the configuration needs %llu (server lines %ld, client connections and their timers %ld, "
		    "control clients %d, reserve %d, margin %d), but the hard limit of RLIMIT_NOFILE is %llu: "
		    "server lines will refuse clients below max_clients (raise LimitNOFILE= or ulimit -Hn)",
		    (unsigned long long)need, servers, clients, c->control_max_clients, KOMD_FD_RESERVE, FD_MARGIN,
		    (unsigned long long)rl.rlim_max);
	/* and each server line that could not have its max_clients even alone */
	long room = (long)(rl.rlim_max > need ? need : rl.rlim_max) - (long)(need - (rlim_t)servers);
	for (int i = 0; rl.rlim_max < need && i < c->nlines; i++) {
		const struct line_conf *lc = &c->lines[i];
		if (lc->enabled && lc->ops->transport == PROTO_LISTEN && lc->max_clients > room)
			log_warnx("%s:%d: line '%s': max_clients %d cannot be had: about %ld descriptors are left for "
			    "server lines", lc->loc.file, lc->loc.line, lc->name, lc->max_clients, room > 0 ? room : 0);
	}
	komd.fd_limit = rl.rlim_cur > INT_MAX ? INT_MAX : (int)rl.rlim_cur;
}

/* The whole check of a configuration: the schema (conf.c), then every TLS certificate and
 * key it names. NULL with every error in errs. A certificate out of its validity dates is an
 * error for komd -t (dates) but not at start or reload, where it fails its own line only. */
static struct config *
komd_load(const char *path, struct conf_errors *errs, bool dates)
{
	int n0 = errs->n;
	struct config *c = conf_load_keep(path, errs);

	/* the TLS files of every sound tls section, even when other keys have errors: komd -t
	 * lists every error in one run */
	if (c && c->http.tls_line.tls.present && c->http.tls_line.tls.valid) {
		struct tls_error e;
		struct line_tls *t = tls_setup(&c->http.tls_line, false, &e);
		char *msg;

		if (!t && (!e.dates || dates) && asprintf(&msg, "%s:%d: http: tls: %s", e.where.file, e.where.line, e.msg) >= 0) {
			errs->msg = realloc(errs->msg, (size_t)(errs->n + 1) * sizeof(*errs->msg));
			if (!errs->msg)
				fatal("realloc");
			errs->msg[errs->n++] = msg;
		}
		tls_free(t);
	}
	if (c && (tls_check_config(c, errs, dates) > 0 || errs->n != n0)) {
		conf_free(c);
		return NULL;
	}
	return c;
}

/* komd's resolver (evdns) from the files the configuration names (resolv_conf, hosts_file:
 * /etc's by default; appliances and tests give their own). Read at start-up. A missing or
 * unreadable resolv.conf leaves libevent's default, a name server on 127.0.0.1. */
static void
komd_resolver(const struct config *c)
{
	int rc = evdns_base_resolv_conf_parse(komd.dns, DNS_OPTIONS_ALL & ~DNS_OPTION_HOSTSFILE, c->resolv_conf);

	if (rc != 0)
		log_warnx("resolv_conf: cannot use '%s' (%s): asking a name server on 127.0.0.1", c->resolv_conf,
		    rc == 1 ? "cannot open it" : rc == 2 ? "cannot read it" : rc == 6 ? "it names no name server" :
		    "error reading it");
	if (rc != 0 && rc != 6 && evdns_base_count_nameservers(komd.dns) == 0)
		evdns_base_nameserver_ip_add(komd.dns, "127.0.0.1");
	if (evdns_base_load_hosts(komd.dns, c->hosts_file) != 0)
		log_warnx("hosts_file: cannot read '%s': names are asked of the name server only", c->hosts_file);
}

/* Once a day: warn about certificates that expire within 30 days. */
static void
tls_expiry_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct line *l;

	(void)fd; (void)ev; (void)arg;
	TAILQ_FOREACH(l, &komd.lines, link)
		tls_warn_expiry(l->tls, l->lc->name, 30);
}

int
komd_reload(char *msg, size_t msglen)
{
	struct conf_errors errs = { 0 };
	struct config *nc;
	size_t o;

	notify_reloading();
	log_info("reloading %s", conf_path);
	if ((nc = komd_load(conf_path, &errs, false)) == NULL) {
		for (int i = 0; i < errs.n; i++)
			log_err("%s", errs.msg[i]);
		o = (size_t)snprintf(msg, msglen, "reload refused, nothing changed: %d error%s", errs.n,
		    errs.n == 1 ? "" : "s");
		for (int i = 0; i < errs.n && o < msglen; i++)
			o += (size_t)snprintf(msg + o, msglen - o, "\n%s", errs.msg[i]);
		log_warnx("reload refused, nothing changed: %d error%s", errs.n, errs.n == 1 ? "" : "s");
		conf_errors_clear(&errs);
		http_note_reload(-1);
		notify_ready();
		return -1;
	}
	/* against the socket open now: one that could not be moved is tried again next time */
	if (control_path() && strcmp(nc->control_socket, control_path()) != 0) {
		const char *was = control_path();
		char old[128]; /* a sun_path: 108 */

		snprintf(old, sizeof(old), "%s", was);
		int rc = control_reopen(nc->control_socket);
		if (rc == 0)
			log_info("control socket moved from %s to %s", old, nc->control_socket);
		else if (rc == 1)
			log_info("control socket %s is the same socket as %s: kept", nc->control_socket, old);
		else
			log_warnx("control_socket %s cannot be opened: %s still serves", nc->control_socket, old);
	}
	komd_fd_limit(nc);
	reload_apply(nc, msg, msglen);
	log_info("%s", msg);
	http_reload(&komd.conf->http);
	malloc_trim(0); /* the parse tree of a big file is freed: give its pages back */
	notify_ready();
	struct line *l;
	TAILQ_FOREACH(l, &komd.lines, link)
		if (l->start_failed) {
			http_note_reload(1);
			return 1;
		}
	http_note_reload(0);
	return 0;
}

static void
sighup_cb(evutil_socket_t sig, short ev, void *arg)
{
	char msg[4096];

	(void)sig; (void)ev; (void)arg;
	komd_reload(msg, sizeof(msg));
}

static void
sigterm_cb(evutil_socket_t sig, short ev, void *arg)
{
	struct line *l;

	(void)ev; (void)arg;
	if (komd.stopping)
		return;
	komd.stopping = true;
	log_info("%s: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
	notify_stopping();
	TAILQ_FOREACH(l, &komd.lines, link)
		line_stop(l);
	control_stop();
	http_stop();
	/* one more pass so that deferred frees run, then out */
	event_base_loopexit(komd.base, NULL);
}

static void
tag_free_cb(struct tag *t, void *arg)
{
	(void)arg;
	tag_destroy(t);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "no-peer-verify", no_argument, NULL, 'N' },
		{ "core-dumps", no_argument, NULL, 'C' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	bool foreground = false, check = false, core_dumps = false;
	struct conf_errors errs = { 0 };
	struct config *conf;
	struct event *ev_hup, *ev_term, *ev_int, *ev_expiry;
	struct timeval day = { 86400, 0 };
	char msg[512];
	int ch;

	/* the original's spelling: /DC */
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "/DC") == 0 || strcasecmp(argv[i], "/dc") == 0)
			argv[i] = "--no-peer-verify";
	while ((ch = getopt_long(argc, argv, "fc:tdVh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'f': foreground = true; break;
		case 'c': conf_path = optarg; break;
		case 't': check = true; break;
		case 'd': komd.debug = true; break;
		case 'N': komd.no_peer_verify = true; break;
		case 'C': core_dumps = true; break;
		case 'V': printf("komd %s\n", KOMD_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "komd: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	log_init(foreground || check, komd.debug ? LOG_LVL_DEBUG : LOG_LVL_INFO);
	char terr[200];
	if (conf_check_tables(terr, sizeof(terr)) != 0)
		fatalx("%s", terr); /* a protocol's table is broken: no configuration could use it */
	if (!core_dumps)
		komd_no_core_dumps(); /* before any key is read */

	if ((conf = komd_load(conf_path, &errs, check)) == NULL) {
		for (int i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.msg[i]);
		if (!check)
			fprintf(stderr, "komd: %d configuration error%s, not starting\n", errs.n, errs.n == 1 ? "" : "s");
		conf_errors_clear(&errs);
		return 1;
	}
	if (check) {
		printf("configuration OK\n");
		conf_free(conf);
		return 0;
	}

	signal(SIGPIPE, SIG_IGN);
	srandom((unsigned)time(NULL) ^ (unsigned)getpid());
	/* libevent's default clock, CLOCK_MONOTONIC_COARSE: timers fire to within one kernel
	 * tick (4 ms at HZ 250). EVENT_BASE_FLAG_PRECISE_TIMER would make it exact, but libevent
	 * 2.1 then re-arms a timerfd with one more system call on every loop pass (a quarter of
	 * komd's calls under MQTT QoS 1 load); polls that must follow at once use 'continuous'
	 * (a 0 ms timer, which needs no clock). */
	if ((komd.base = event_base_new()) == NULL)
		fatalx("event_base_new");
	if ((komd.dns = evdns_base_new(komd.base, 0)) == NULL)
		fatalx("evdns_base_new");
	komd_resolver(conf);
	TAILQ_INIT(&komd.lines);
	tags_init();
	log_info("komd %s starting with %s", KOMD_VERSION, conf_path);
	if (komd.no_peer_verify)
		log_warnx("partners' certificates will NOT be verified (/DC, --no-peer-verify)");
	if (core_dumps)
		log_warnx("core dumps are allowed (--core-dumps): a core holds TLS keys and PSKs");
	komd_fd_limit(conf);

	komd.conf = conf;
	if (control_start(conf->control_socket) != 0)
		fatalx("cannot open the control socket %s", conf->control_socket);
	if (http_start(&conf->http) != 0)
		fatalx("cannot start the HTTP endpoint (http section, %s:%d)", conf->http.loc.file, conf->http.loc.line);
	reload_apply(conf, msg, sizeof(msg));
	log_info("%s", msg);
	malloc_trim(0);

	ev_hup = evsignal_new(komd.base, SIGHUP, sighup_cb, NULL);
	ev_term = evsignal_new(komd.base, SIGTERM, sigterm_cb, NULL);
	ev_int = evsignal_new(komd.base, SIGINT, sigterm_cb, NULL);
	ev_expiry = event_new(komd.base, -1, EV_PERSIST, tls_expiry_cb, NULL);
	if (!ev_hup || !ev_term || !ev_int || !ev_expiry || event_add(ev_hup, NULL) || event_add(ev_term, NULL) ||
	    event_add(ev_int, NULL) || event_add(ev_expiry, &day))
		fatalx("signal events");
	notify_watchdog_start();
	notify_ready();

	event_base_dispatch(komd.base);

	/* tidy up so that leak checkers see nothing */
	struct line *l;
	while ((l = TAILQ_FIRST(&komd.lines)) != NULL) {
		TAILQ_REMOVE(&komd.lines, l, link);
		line_free(l);
	}
	event_base_loop(komd.base, EVLOOP_NONBLOCK); /* run deferred session frees */
	session_linger_free_all();
	tag_foreach(tag_free_cb, NULL);
	reload_release();
	event_free(ev_hup);
	event_free(ev_term);
	event_free(ev_int);
	event_free(ev_expiry);
	notify_watchdog_stop();
	evdns_base_free(komd.dns, 1);
	event_base_free(komd.base);
	log_info("stopped");
	return 0;
}
