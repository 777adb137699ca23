/* mqtt_conf.c: the configuration of the mqtt-client protocol: its key tables (line,
 * station, tag; documented in komd.conf(5)) and the load-time checks, which apply the
 * rules of MQTT 3.1.1 and 5.0 to what the file gives (client identifier 3.1.3.1, user name
 * and password 3.1.2.8/3.1.2.9, topic names and filters 4.7) before any broker sees it. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mqtt.h"

static const char *const mqtt_redundancy_choices[] = { "dual", "alternate", NULL };
static const char *const mqtt_version_choices[] = { "3.1.1", "5", NULL };
static const char *const mqtt_payload_choices[] = { "text", "json", NULL };
static const char *const mqtt_tag_payload_choices[] = { "station", "text", "json", NULL };
static const char *const mqtt_time_choices[] = { MQTT_TIME_FORMAT_CHOICES, NULL };

#define L(f) offsetof(struct mqtt_line_conf, f)
#define S(f) offsetof(struct mqtt_station_conf, f)
#define T(f) offsetof(struct mqtt_tag_conf, f)

const struct conf_key mqtt_line_keys[] = {
	{ .name = "redundancy", .type = CK_CHOICE, .def = "dual", .choices = mqtt_redundancy_choices,
	  .off = L(redundancy), .help = "tcp-redundant lines: dual (a session with each broker) or alternate (one session)" },
	{ .name = "mqtt_version", .type = CK_CHOICE, .def = "3.1.1", .choices = mqtt_version_choices,
	  .off = L(version), .help = "MQTT protocol version: 3.1.1 or 5" },
	{ .name = "client_id", .type = CK_STRING, .off = L(client_id),
	  .help = "client identifier; default komd-HOSTNAME-LINE; empty only with clean_session" },
	{ .name = "username", .type = CK_STRING, .off = L(username), .help = "user name of CONNECT" },
	{ .name = "password", .type = CK_STRING, .off = L(password), .secret = true, .help = "password of CONNECT" },
	{ .name = "password_file", .type = CK_STRING, .off = L(password_file),
	  .help = "file whose first line is the password, read at load and reload" },
	{ .name = "clean_session", .type = CK_BOOL, .def = "false", .off = L(clean_session),
	  .help = "start every connection with a new session (false: a persistent session)" },
	{ .name = "session_expiry", .type = CK_INT, .min = -1, .max = 2147483647, .def = "-1", .off = L(session_expiry),
	  .help = "MQTT 5 Session Expiry Interval in seconds; -1: 3600 without clean_session, else 0" },
	{ .name = "keepalive", .type = CK_INT, .min = 1, .max = 65535, .def = "60", .off = L(keepalive),
	  .help = "keep alive in seconds: PINGREQ after this long without a packet either way" },
	{ .name = "reply_timeout", .type = CK_SECONDS, .min = 0.1, .max = 3600, .def = "10", .off = L(reply_timeout_ms),
	  .help = "CONNACK, PINGRESP, SUBACK and acknowledgements must come within it, else the next broker" },
	{ .name = "receive_maximum", .type = CK_INT, .min = 1, .max = 65535, .def = "65535", .off = L(receive_maximum),
	  .help = "MQTT 5: QoS 1 and 2 messages the broker may send komd unacknowledged" },
	{ .name = "topic_alias_maximum", .type = CK_INT, .min = 0, .max = 65535, .def = "0",
	  .off = L(topic_alias_maximum), .help = "MQTT 5: topic aliases komd accepts from the broker" },
	{ .name = "max_packet_size", .type = CK_INT, .min = 128, .max = 268435460, .def = "268435460",
	  .off = L(max_packet_size), .help = "largest packet komd accepts (announced with MQTT 5)" },
	{ .name = "broker_max_packet_size", .type = CK_INT, .min = 128, .max = 268435460, .def = "268435460",
	  .off = L(broker_max_packet_size),
	  .help = "largest packet the broker takes, for MQTT 3.1.1 (which cannot say it); larger messages are dropped" },
	{ .name = "will_topic", .type = CK_STRING, .off = L(will_topic), .help = "komd's own last will: topic" },
	{ .name = "will_payload", .type = CK_STRING, .def = "", .off = L(will_payload),
	  .help = "komd's own last will: payload" },
	{ .name = "will_qos", .type = CK_INT, .min = 0, .max = 2, .def = "1", .off = L(will_qos),
	  .help = "komd's own last will: QoS" },
	{ .name = "will_retain", .type = CK_BOOL, .def = "true", .off = L(will_retain),
	  .help = "komd's own last will: retained" },
	{ .name = "will_online_payload", .type = CK_STRING, .off = L(will_online_payload),
	  .help = "published on will_topic after each connection (e.g. online); unset: nothing" },
	{ .name = "max_inflight", .type = CK_INT, .min = 1, .max = 65535, .def = "20", .off = L(max_inflight),
	  .help = "QoS 1 and 2 messages unacknowledged at once (and at most the broker's Receive Maximum)" },
	{ .name = "queue_messages", .type = CK_INT, .min = 1, .max = 100000000, .def = "100000",
	  .off = L(queue_messages), .help = "messages kept while no broker takes them (per session path)" },
	{ .name = "queue_bytes", .type = CK_INT, .min = 1024, .max = 2147483647, .def = "67108864",
	  .off = L(queue_bytes), .help = "bytes kept while no broker takes them (per session path)" },
	{ .name = "command_max_age", .type = CK_SECONDS, .min = 0, .max = 31536000, .def = "60",
	  .off = L(command_max_age_ms), .help = "a command issued longer ago is refused; 0: off" },
	{ .name = NULL, .type = CK_END },
};

const struct conf_key mqtt_station_keys[] = {
	{ .name = "qos", .type = CK_INT, .min = 0, .max = 2, .def = "1", .off = S(qos),
	  .help = "QoS of the subscription to the station's address (a topic filter)" },
	{ .name = "payload", .type = CK_CHOICE, .def = "text", .choices = mqtt_payload_choices, .off = S(payload),
	  .help = "payload of the station's messages: text or json" },
	{ .name = "time_field", .type = CK_STRING, .off = S(time_field),
	  .help = "JSON path of the payload's own timestamp (the tags' source time)" },
	{ .name = "time_format", .type = CK_CHOICE, .def = "iso8601", .choices = mqtt_time_choices,
	  .off = S(time_format), .help = "time_field as epoch_s, epoch_ms or iso8601" },
	{ .name = "stale_timeout", .type = CK_SECONDS, .min = 0, .max = 31536000, .def = "0",
	  .off = S(stale_timeout_ms), .help = "no message for the station this long: its tags invalid; 0 off" },
	{ .name = "will_topic", .type = CK_STRING, .off = S(will_topic),
	  .help = "the device's last will topic: a message there puts the station in error" },
	{ .name = "will_payload", .type = CK_STRING, .off = S(will_payload),
	  .help = "the device's will payload (unset: any payload on will_topic)" },
	{ .name = "batch_ms", .type = CK_INT, .min = 0, .max = 60000, .def = "0", .off = S(batch_ms),
	  .help = "JSON changes of published tags collected this many ms into one array per topic" },
	{ .name = NULL, .type = CK_END },
};

const struct conf_key mqtt_tag_keys[] = {
	{ .name = "publish", .type = CK_STRING, .off = T(publish),
	  .help = "the topic the tag's value is published to (the station serves the tag)" },
	{ .name = "qos", .type = CK_INT, .min = 0, .max = 2, .def = "1", .off = T(qos),
	  .help = "QoS of the tag's publishes, command subscription and responses" },
	{ .name = "retain", .type = CK_BOOL, .def = "true", .off = T(retain), .help = "publish retained" },
	{ .name = "payload", .type = CK_CHOICE, .def = "station", .choices = mqtt_tag_payload_choices,
	  .off = T(payload), .help = "payload of the published tag: the station's, text or json" },
	{ .name = "deadband", .type = CK_SECONDS, .min = 0, .max = 2000000, .def = "0", .off = T(deadband_milli),
	  .help = "absolute change a number needs to be published (resolution 0.001); 0 every change" },
	{ .name = "period", .type = CK_SECONDS, .min = 0, .max = 86400, .def = "0", .off = T(period_ms),
	  .help = "publish again this often without a change; 0 off" },
	{ .name = "command", .type = CK_STRING, .off = T(command),
	  .help = "topic of writes to the tag; the result goes to TOPIC/response" },
	{ .name = NULL, .type = CK_END },
};

enum mqtt_version
mqtt_conf_version(const struct mqtt_line_conf *c)
{
	return c && c->version == 1 ? MQTT_V5 : MQTT_V311;
}

uint32_t
mqtt_conf_session_expiry(const struct mqtt_line_conf *c)
{
	if (c->session_expiry >= 0)
		return (uint32_t)c->session_expiry;
	return c->clean_session ? 0 : 3600;
}

bool
mqtt_tag_serves(const struct line_conf *lc, const struct tag_conf *tc)
{
	const struct mqtt_tag_conf *c = tc->pconf;

	(void)lc;
	return c && c->publish;
}

enum redund_policy
mqtt_line_redundancy(const struct line_conf *lc)
{
	const struct mqtt_line_conf *c = lc->pconf;

	return c && c->redundancy == MQTT_ALTERNATE ? REDUND_ALTERNATE : REDUND_DUAL;
}

bool
mqtt_station_subscribes(const struct station_conf *sc)
{
	const struct mqtt_station_conf *c = sc->pconf;

	if (c && c->will_topic)
		return true;
	for (int i = 0; i < sc->ntags; i++) {
		const struct mqtt_tag_conf *t = sc->tags[i].pconf;
		if (!t || !t->publish)
			return true;
	}
	return false;
}

enum mqtt_payload
mqtt_tag_payload_of(const struct station_conf *sc, const struct tag_conf *tc)
{
	const struct mqtt_tag_conf *t = tc->pconf;
	const struct mqtt_station_conf *s = sc->pconf;

	if (t && t->payload == MQTT_TP_TEXT)
		return MQTT_PAYLOAD_TEXT;
	if (t && t->payload == MQTT_TP_JSON)
		return MQTT_PAYLOAD_JSON;
	return s ? (enum mqtt_payload)s->payload : MQTT_PAYLOAD_TEXT;
}

/* A topic name of a key (4.7.1: no wildcards; 4.7.3: 1..65535 bytes of UTF-8). */
static int
mqtt_check_name(const char *key, const char *topic, char *err, size_t errlen)
{
	char why[160];

	if (mqtt_check_topic_name(topic, strlen(topic), why, sizeof(why)) != 0) {
		snprintf(err, errlen, "%s '%s' is not an MQTT topic name: %s", key, topic, why);
		return -1;
	}
	return 0;
}

/* password_file's first line, into c->password (the key's own field: freed and, by
 * line_free, wiped with the configuration). The file is read at every load; its digest
 * joins the line's fingerprint, so that a reload with a changed file restarts the line. */
static int
mqtt_read_password(struct line_conf *lc, struct mqtt_line_conf *c, char *err, size_t errlen)
{
	unsigned char md[SHA256_DIGEST_LENGTH];
	char *fp;
	size_t n;
	char buf[4096];
	struct stat sb;
	/* never blocks: a FIFO or a terminal would hold the whole load */
	int fd = open(c->password_file, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	FILE *f;

	if (fd < 0) {
		snprintf(err, errlen, "password_file '%s': %s", c->password_file, strerror(errno));
		return -1;
	}
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || (f = fdopen(fd, "r")) == NULL) {
		snprintf(err, errlen, "password_file '%s': not a regular file", c->password_file);
		close(fd);
		return -1;
	}
	if (!fgets(buf, sizeof(buf), f)) {
		fclose(f);
		snprintf(err, errlen, "password_file '%s' is empty", c->password_file);
		return -1;
	}
	fclose(f);
	buf[strcspn(buf, "\r\n")] = '\0';
	SHA256((const unsigned char *)buf, strlen(buf), md);
	c->password = strdup(buf);
	OPENSSL_cleanse(buf, sizeof(buf));
	n = strlen(lc->fingerprint ? lc->fingerprint : "");
	if (!c->password || (fp = realloc(lc->fingerprint, n + 32 + 2 * sizeof(md))) == NULL) {
		snprintf(err, errlen, "password_file: out of memory");
		return -1;
	}
	n += (size_t)snprintf(fp + n, 32, "\npassword_file:");
	for (size_t i = 0; i < sizeof(md); i++)
		n += (size_t)snprintf(fp + n, 3, "%02x", md[i]);
	lc->fingerprint = fp;
	c->password_read = true;
	return 0;
}

int
mqtt_check_line(const struct line_conf *lc, char *err, size_t errlen)
{
	/* the configuration is the loader's (not const to it): the password file's line goes
	 * into the password field, and its digest into the fingerprint, at load */
	struct line_conf *wlc = (struct line_conf *)lc;
	struct mqtt_line_conf *c = lc->pconf;
	char why[160];
	bool v5;

	if (!c)
		return 0;
	v5 = mqtt_conf_version(c) == MQTT_V5;
	if (c->client_id) {
		if (!*c->client_id && !c->clean_session) {
			snprintf(err, errlen, "an empty client_id needs clean_session = true (MQTT 3.1.1 3.1.3.1: the broker "
			    "assigns an identifier that no later connection can resume)");
			return -1;
		}
		if (strlen(c->client_id) > 65535 || mqtt_check_utf8(c->client_id, strlen(c->client_id), why,
		    sizeof(why)) != 0) {
			snprintf(err, errlen, "client_id is not an MQTT string (1.5.4): %s", why);
			return -1;
		}
	}
	if (c->password_file && !c->password_read) {
		if (c->password) {
			snprintf(err, errlen, "'password' and 'password_file' exclude each other");
			return -1;
		}
		if (mqtt_read_password(wlc, c, err, errlen) != 0)
			return -1;
	}
	if (c->password && !c->username && !v5) {
		snprintf(err, errlen, "a password needs a username with MQTT 3.1.1 (3.1.2.9)");
		return -1;
	}
	if (c->will_topic && mqtt_check_name("will_topic", c->will_topic, err, errlen) != 0)
		return -1;
	if (c->will_online_payload && !c->will_topic) {
		snprintf(err, errlen, "'will_online_payload' needs 'will_topic'");
		return -1;
	}
	if (!v5) {
		const char *k = c->topic_alias_maximum ? "topic_alias_maximum" : c->receive_maximum != 65535 ?
		    "receive_maximum" : c->session_expiry >= 0 ? "session_expiry" : NULL;
		if (k) {
			snprintf(err, errlen, "'%s' is MQTT 5 only (set mqtt_version = \"5\")", k);
			return -1;
		}
	}
	if (c->redundancy == MQTT_ALTERNATE && lc->type != LINE_TCP_REDUNDANT) {
		snprintf(err, errlen, "redundancy = \"alternate\" is for tcp-redundant lines (this line has one host list)");
		return 1;
	}
	return 0;
}

int
mqtt_check_station(const struct station_conf *sc, char *err, size_t errlen)
{
	const struct mqtt_station_conf *c = sc->pconf;
	char why[160];

	if (!c)
		return 0;
	if (sc->address && mqtt_check_topic_filter(sc->address, strlen(sc->address), why, sizeof(why)) != 0) {
		snprintf(err, errlen, "address '%s' is not an MQTT topic filter: %s", sc->address, why);
		return -1;
	}
	if (c->will_topic && mqtt_check_name("will_topic", c->will_topic, err, errlen) != 0)
		return -1;
	if (c->will_payload && !c->will_topic) {
		snprintf(err, errlen, "'will_payload' needs 'will_topic'");
		return -1;
	}
	if (!sc->address && !sc->simulation)
		for (int i = 0; i < sc->ntags; i++) {
			const struct mqtt_tag_conf *t = sc->tags[i].pconf;
			if (t && !t->publish) {
				snprintf(err, errlen, "tag '%s' is acquired: the station needs address = the topic filter "
				    "to subscribe", sc->tags[i].name ? sc->tags[i].name : "");
				return -1;
			}
		}
	if (c->time_field) {
		struct mqtt_jpath p;
		if (c->payload != MQTT_PAYLOAD_JSON) {
			snprintf(err, errlen, "'time_field' needs payload = \"json\"");
			return -1;
		}
		if (mqtt_jpath_parse(c->time_field, &p, why, sizeof(why)) != 0) {
			snprintf(err, errlen, "time_field '%s': %s", c->time_field, why);
			return -1;
		}
		mqtt_jpath_free(&p);
	}
	return 0;
}

int
mqtt_check_tag(const struct station_conf *sc, const struct tag_conf *tc, char *err, size_t errlen)
{
	const struct mqtt_tag_conf *c = tc->pconf;
	const struct mqtt_station_conf *s = sc->pconf;
	struct mqtt_tag_addr a;
	char why[200];

	if (!c)
		return 0;
	if (c->publish) {
		/* served: no address (address = "" is taken too) */
		if (tc->address && *tc->address) {
			snprintf(err, errlen, "a published tag has no address (its topic is 'publish')");
			return -1;
		}
		if (mqtt_check_name("publish", c->publish, err, errlen) != 0)
			return -1;
		if (c->command && mqtt_check_name("command", c->command, err, errlen) != 0)
			return -1;
		if (c->command && tc->dir == TD_IN) {
			snprintf(err, errlen, "'command' needs direction = \"inout\" or \"out\" (a command is a write)");
			return -1;
		}
		if (c->command && strlen(c->command) > 65535 - 9) {
			snprintf(err, errlen, "command topic too long for its /response topic");
			return -1;
		}
		if (c->deadband_milli && tc->type != VT_INT && tc->type != VT_FLOAT) {
			snprintf(err, errlen, "'deadband' is for int and float tags, not %s", vtype_name(tc->type));
			return -1;
		}
		return 0;
	}
	if (c->command || c->deadband_milli || c->period_ms) {
		snprintf(err, errlen, "'%s' is for published tags (set 'publish')", c->command ? "command" :
		    c->deadband_milli ? "deadband" : "period");
		return -1;
	}
	if (sc->simulation && !tc->address)
		return 0;
	if (mqtt_tag_addr_parse(tc->address ? tc->address : "", &a, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "address '%s': %s", tc->address ? tc->address : "", why);
		return -1;
	}
	int rc = 0;
	if (!a.topic && sc->address && strpbrk(sc->address, "+#")) {
		snprintf(err, errlen, "address needs T=topic: the station's filter '%s' has a wildcard", sc->address);
		rc = -1;
	} else if (a.topic && sc->address && !mqtt_topic_match(sc->address, a.topic, strlen(a.topic))) {
		snprintf(err, errlen, "T=%s is not matched by the station's filter '%s' (the tag would never receive)",
		    a.topic, sc->address);
		rc = -1;
	} else if (a.has_ja && (!s || s->payload != MQTT_PAYLOAD_JSON)) {
		snprintf(err, errlen, "JA= needs the station's payload = \"json\"");
		rc = -1;
	}
	mqtt_tag_addr_free(&a);
	return rc;
}
