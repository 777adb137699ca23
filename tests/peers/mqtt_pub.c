/*
 * mqtt_pub: a small MQTT publisher on libmosquitto (a library we did not write), the
 * reference that komd's MQTT publishing is measured against (tests/bench/mqtt_bench.py).
 *
 * usage: mqtt_pub -p PORT [-h HOST] [-t TOPIC] [-q QOS] [-n COUNT] [-s SIZE] [-r RATE]
 *                 [-w WINDOW] [-V 311|5] [-i CLIENT_ID] [-c]
 *   COUNT messages (default 10000) of SIZE bytes (default 100) to TOPIC (default bench/pub)
 *   at QoS 0, 1 or 2; each payload begins with its number (from 1) in decimal followed by
 *   a space, padded with 'x'. RATE: at most that many messages a second (0: as fast as
 *   the broker takes them). WINDOW: QoS 1/2 messages in flight (libmosquitto's
 *   max_inflight_messages, default 20); at QoS 0 at most WINDOW*50 messages are queued in
 *   libmosquitto before the publisher waits for them to be written. -c: a persistent session
 *   (clean session off; needs -i), so that QoS 2 messages the broker has PUBREC'd survive a
 *   reconnection.
 * While the broker is away libmosquitto reconnects (every second); QoS 1/2 messages wait in
 * its queue, QoS 0 messages are lost and counted.
 * Prints one line when every message is acknowledged (QoS 1/2) or written (QoS 0):
 *   "published N elapsed S rate R cpu_us_per_msg C not_connected L" (seconds, messages/s,
 *   CPU microseconds user+system of this process per message, QoS 0 messages not sent for
 *   want of a connection), and exits 0; exits 1 on an error.
 */
#include <errno.h>
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
static long done_count;		/* messages acknowledged (or written, QoS 0) */
static int connected = -1;	/* -1 waiting, 0 CONNACK accepted, else the refusal */

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
	(void)m; (void)arg;
	pthread_mutex_lock(&mtx);
	connected = rc;
	pthread_cond_broadcast(&cnd);
	pthread_mutex_unlock(&mtx);
}

static void
on_publish_cb(struct mosquitto *m, void *arg, int mid)
{
	(void)m; (void)arg; (void)mid;
	pthread_mutex_lock(&mtx);
	done_count++;
	pthread_cond_broadcast(&cnd);
	pthread_mutex_unlock(&mtx);
}

int
main(int argc, char **argv)
{
	const char *host = "127.0.0.1", *topic = "bench/pub", *id = NULL;
	int port = 0, qos = 0, size = 100, window = 20, version = 311, persistent = 0, c, rc;
	long count = 10000, lost = 0;
	double rate = 0;
	struct mosquitto *m;
	char *payload;

	while ((c = getopt(argc, argv, "h:p:t:q:n:s:r:w:V:i:c")) != -1) {
		switch (c) {
		case 'h': host = optarg; break;
		case 'p': port = atoi(optarg); break;
		case 't': topic = optarg; break;
		case 'q': qos = atoi(optarg); break;
		case 'n': count = atol(optarg); break;
		case 's': size = atoi(optarg); break;
		case 'r': rate = atof(optarg); break;
		case 'w': window = atoi(optarg); break;
		case 'V': version = atoi(optarg); break;
		case 'i': id = optarg; break;
		case 'c': persistent = 1; break;
		default:
			fprintf(stderr, "usage: mqtt_pub -p PORT [-h HOST] [-t TOPIC] [-q QOS] [-n COUNT] "
			    "[-s SIZE] [-r RATE] [-w WINDOW] [-V 311|5] [-i ID] [-c]\n");
			return 2;
		}
	}
	if (port <= 0 || port > 65535 || qos < 0 || qos > 2 || count < 1 || size < 12 || window < 1 ||
	    (version != 311 && version != 5) || (persistent && !id)) {
		fprintf(stderr, "mqtt_pub: bad arguments\n");
		return 2;
	}
	mosquitto_lib_init();
	if (!(m = mosquitto_new(id, !persistent, NULL)) || !(payload = malloc((size_t)size + 1))) {
		fprintf(stderr, "mqtt_pub: out of memory\n");
		return 1;
	}
	mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, version == 5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311);
	mosquitto_max_inflight_messages_set(m, (unsigned)window);
	mosquitto_connect_callback_set(m, on_connect_cb);
	mosquitto_publish_callback_set(m, on_publish_cb);
	if ((rc = mosquitto_connect(m, host, port, 60)) != MOSQ_ERR_SUCCESS ||
	    (rc = mosquitto_loop_start(m)) != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, "mqtt_pub: connect %s:%d: %s\n", host, port, mosquitto_strerror(rc));
		return 1;
	}
	pthread_mutex_lock(&mtx);
	while (connected < 0)
		pthread_cond_wait(&cnd, &mtx);
	pthread_mutex_unlock(&mtx);
	if (connected != 0) {
		fprintf(stderr, "mqtt_pub: refused: %s\n", mosquitto_connack_string(connected));
		return 1;
	}
	double t0 = now_s(), c0 = cpu_s();
	long queue = qos ? window : (long)window * 50;
	for (long i = 1; i <= count; i++) {
		pthread_mutex_lock(&mtx);
		while (i - 1 - done_count >= queue)
			pthread_cond_wait(&cnd, &mtx);
		pthread_mutex_unlock(&mtx);
		int n = snprintf(payload, (size_t)size + 1, "%ld ", i);
		memset(payload + n, 'x', (size_t)(size - n));
		rc = mosquitto_publish(m, NULL, topic, size, payload, qos, false);
		if (rc == MOSQ_ERR_NO_CONN && qos > 0)
			rc = MOSQ_ERR_SUCCESS;	/* queued: sent after the reconnection */
		else if (rc == MOSQ_ERR_NO_CONN) {
			lost++;			/* QoS 0 while the broker is away */
			pthread_mutex_lock(&mtx);
			done_count++;
			pthread_mutex_unlock(&mtx);
			rc = MOSQ_ERR_SUCCESS;
		}
		if (rc != MOSQ_ERR_SUCCESS) {
			fprintf(stderr, "mqtt_pub: publish %ld: %s\n", i, mosquitto_strerror(rc));
			return 1;
		}
		if (rate > 0) {
			double ahead = t0 + (double)i / rate - now_s();
			if (ahead > 0)
				usleep((useconds_t)(ahead * 1e6));
		}
	}
	pthread_mutex_lock(&mtx);
	while (done_count < count)
		pthread_cond_wait(&cnd, &mtx);
	pthread_mutex_unlock(&mtx);
	double el = now_s() - t0, cpu = cpu_s() - c0;
	printf("published %ld elapsed %.3f rate %.0f cpu_us_per_msg %.2f not_connected %ld\n", count, el,
	    (double)count / el, cpu * 1e6 / (double)count, lost);
	fflush(stdout);
	mosquitto_disconnect(m);
	mosquitto_loop_stop(m, false);
	mosquitto_destroy(m);
	mosquitto_lib_cleanup();
	free(payload);
	return 0;
}
