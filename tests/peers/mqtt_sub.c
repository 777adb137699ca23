/*
 * mqtt_sub: a small MQTT subscriber on libmosquitto (a library we did not write) that counts
 * a numbered sequence: the reference for komd's ingest rate (tests/bench/mqtt_bench.py) and
 * a counter of delivered messages.
 *
 * usage: mqtt_sub -p PORT [-h HOST] [-t FILTER] [-q QOS] [-n EXPECT] [-T TIMEOUT] [-V 311|5]
 *                 [-i CLIENT_ID] [-c]
 *   Subscribes to FILTER (default bench/#) at QOS (default 1); prints "ready" once the
 *   SUBACK came, then counts messages until EXPECT (default 10000) distinct numbers arrived
 *   or TIMEOUT seconds (default 60) passed. Each payload's leading decimal number (1 to
 *   EXPECT) is its sequence number. -c: a persistent session (clean session off; the
 *   client id is then required).
 * Prints "received N unique U duplicates D missing M elapsed S rate R cpu_us_per_msg C"
 * (elapsed from the first message to the last; rate = N / elapsed) and exits 0 when every
 * number arrived, 1 otherwise.
 */
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cnd = PTHREAD_COND_INITIALIZER;
static const char *filter = "bench/#";
static int qos = 1;
static long expect = 10000, received, unique, dups;
static unsigned char *seen;	/* one byte per number 1..expect */
static double t_first, t_last;
static int subscribed;

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double
cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	    (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void
on_connect_cb(struct mosquitto *m, void *arg, int rc)
{
	(void)arg;
	if (rc != 0) {
		fprintf(stderr, "mqtt_sub: refused: %s\n", mosquitto_connack_string(rc));
		return;
	}
	mosquitto_subscribe(m, NULL, filter, qos);
}

static void
on_subscribe_cb(struct mosquitto *m, void *arg, int mid, int n, const int *granted)
{
	(void)m; (void)arg; (void)mid; (void)n; (void)granted;
	pthread_mutex_lock(&mtx);
	if (!subscribed) {
		printf("ready\n");
		fflush(stdout);
	}
	subscribed = 1;
	pthread_mutex_unlock(&mtx);
}

static void
on_message_cb(struct mosquitto *m, void *arg, const struct mosquitto_message *msg)
{
	char buf[24];
	size_t n = msg->payloadlen < (int)sizeof(buf) - 1 ? (size_t)msg->payloadlen : sizeof(buf) - 1;
	long v;

	(void)m; (void)arg;
	memcpy(buf, msg->payload, n);
	buf[n] = '\0';
	v = strtol(buf, NULL, 10);
	pthread_mutex_lock(&mtx);
	t_last = now_s();
	if (received++ == 0)
		t_first = t_last;
	if (v >= 1 && v <= expect) {
		if (seen[v - 1]++)
			dups++;
		else
			unique++;
	}
	if (unique == expect)
		pthread_cond_broadcast(&cnd);
	pthread_mutex_unlock(&mtx);
}

int
main(int argc, char **argv)
{
	const char *host = "127.0.0.1", *id = NULL;
	int port = 0, version = 311, persistent = 0, c, rc;
	double timeout = 60;
	struct mosquitto *m;

	while ((c = getopt(argc, argv, "h:p:t:q:n:T:V:i:c")) != -1) {
		switch (c) {
		case 'h': host = optarg; break;
		case 'p': port = atoi(optarg); break;
		case 't': filter = optarg; break;
		case 'q': qos = atoi(optarg); break;
		case 'n': expect = atol(optarg); break;
		case 'T': timeout = atof(optarg); break;
		case 'V': version = atoi(optarg); break;
		case 'i': id = optarg; break;
		case 'c': persistent = 1; break;
		default:
			fprintf(stderr, "usage: mqtt_sub -p PORT [-h HOST] [-t FILTER] [-q QOS] [-n EXPECT] "
			    "[-T TIMEOUT] [-V 311|5] [-i ID] [-c]\n");
			return 2;
		}
	}
	if (port <= 0 || port > 65535 || qos < 0 || qos > 2 || expect < 1 || timeout <= 0 ||
	    (version != 311 && version != 5) || (persistent && !id)) {
		fprintf(stderr, "mqtt_sub: bad arguments\n");
		return 2;
	}
	if (!(seen = calloc((size_t)expect, 1)))
		return 1;
	mosquitto_lib_init();
	if (!(m = mosquitto_new(id, !persistent, NULL)))
		return 1;
	mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, version == 5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311);
	mosquitto_connect_callback_set(m, on_connect_cb);
	mosquitto_subscribe_callback_set(m, on_subscribe_cb);
	mosquitto_message_callback_set(m, on_message_cb);
	if ((rc = mosquitto_connect(m, host, port, 60)) != MOSQ_ERR_SUCCESS ||
	    (rc = mosquitto_loop_start(m)) != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, "mqtt_sub: connect %s:%d: %s\n", host, port, mosquitto_strerror(rc));
		return 1;
	}
	double c0 = cpu_s();
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += (time_t)timeout;
	dl.tv_nsec += (long)((timeout - (double)(long)timeout) * 1e9);
	if (dl.tv_nsec >= 1000000000) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&mtx);
	while (unique < expect && pthread_cond_timedwait(&cnd, &mtx, &dl) == 0)
		;
	double el = received > 1 ? t_last - t_first : 0, cpu = cpu_s() - c0;
	printf("received %ld unique %ld duplicates %ld missing %ld elapsed %.3f rate %.0f cpu_us_per_msg %.2f\n",
	    received, unique, dups, expect - unique, el, el > 0 ? (double)received / el : 0,
	    received ? cpu * 1e6 / (double)received : 0);
	fflush(stdout);
	rc = unique == expect ? 0 : 1;
	pthread_mutex_unlock(&mtx);
	mosquitto_disconnect(m);
	mosquitto_loop_stop(m, false);
	mosquitto_destroy(m);
	mosquitto_lib_cleanup();
	free(seen);
	return rc;
}
