/* conf_schema.c: the core's schema tables, one per section of komd.conf (as tmux's options
 * table): each key's name, type, range, default, whether it is required, and its help text.
 * They validate (conf.c), fill defaults, free (conf_free_strings) and document: every key is
 * in komd.conf(5), checked by test_conf both ways. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "conf.h"
#include "proto.h"

static const char *const conf_log_levels[] = { "error", "warning", "info", "debug", NULL };
static const char *const conf_line_types[] = { "tcp", "tcp-redundant", NULL };
static const char *const conf_tag_dirs[] = { "in", "out", "inout", NULL };
static const char *const conf_tls_versions[] = { "1.2", "1.3", NULL };

const struct conf_key conf_global_keys[] = {
	{ .name = "appdir", .type = CK_VALUE, .off = offsetof(struct config, appdir),
	  .help = "string: the application directory, substituted for #APPDIR# in every string; "
	  "default: the directory of the main file" },
	{ .name = "control_socket", .type = CK_STRING, .def = "/run/komd/komd.sock",
	  .off = offsetof(struct config, control_socket), .help = "path of the control socket (komctl)" },
	{ .name = "log_level", .type = CK_CHOICE, .def = "info", .choices = conf_log_levels,
	  .off = offsetof(struct config, log_level), .help = "least important messages logged" },
	{ .name = "write_timeout", .type = CK_SECONDS, .min = 0.1, .max = 3600, .def = "10",
	  .off = offsetof(struct config, write_timeout_ms),
	  .help = "time a write routed to an acquiring station may take before it fails" },
	{ .name = "control_max_clients", .type = CK_INT, .min = 1, .max = 1000, .def = "16",
	  .off = offsetof(struct config, control_max_clients),
	  .help = "most komctl clients connected at once; more are refused with an error" },
	{ .name = "control_timeout", .type = CK_SECONDS, .min = 0.1, .max = 3600, .def = "10",
	  .off = offsetof(struct config, control_timeout_ms),
	  .help = "time a komctl client may take to send its request before it is dropped" },
	{ .name = "control_readonly_group", .type = CK_STRING, .off = offsetof(struct config, control_readonly_group),
	  .help = "string: a group whose members may use status, tags, get and certs only (not set, reload or "
	  "trace); default: none" },
	{ .name = "resolv_conf", .type = CK_STRING, .def = "/etc/resolv.conf",
	  .off = offsetof(struct config, resolv_conf),
	  .help = "the name servers komd asks for the names of client lines' hosts (resolv.conf(5) format); "
	  "read at start-up" },
	{ .name = "hosts_file", .type = CK_STRING, .def = "/etc/hosts", .off = offsetof(struct config, hosts_file),
	  .help = "names komd knows without asking (hosts(5) format); read at start-up" },
	{ .name = "http", .type = CK_VALUE, .help = "group: the HTTP endpoint (/metrics, /api); none: no listener" },
	{ .name = "lines", .type = CK_VALUE, .help = "list of line groups" },
	{ .name = "tags", .type = CK_VALUE, .help = "list of memory tag groups" },
	{ .name = NULL, .type = CK_END },
};

const struct conf_key conf_http_keys[] = {
	{ .name = "host", .type = CK_VALUE,
	  .help = "string: addresses to listen on, as on server lines; default \"127.0.0.1\"" },
	{ .name = "port", .type = CK_INT, .required = true, .min = 1, .max = 65535,
	  .off = offsetof(struct http_conf, port), .help = "TCP port to listen on" },
	{ .name = "tls", .type = CK_VALUE,
	  .help = "group: TLS settings as a server line's (HTTPS); default: plain HTTP" },
	{ .name = "auth_file", .type = CK_STRING, .off = offsetof(struct http_conf, auth_file),
	  .help = "string: a file of \"user:hash\" lines (SHA-512-crypt, $6$); every request must then "
	  "authenticate (HTTP basic); default: none" },
	{ .name = "max_clients", .type = CK_INT, .min = 1, .max = 1000, .def = "64",
	  .off = offsetof(struct http_conf, max_clients),
	  .help = "most HTTP connections at once; more are answered 503 and closed" },
	{ .name = "timeout", .type = CK_SECONDS, .min = 0.1, .max = 3600, .def = "10",
	  .off = offsetof(struct http_conf, timeout_ms),
	  .help = "time a client may take to send a whole request (and to take the answer)" },
	{ .name = "max_request", .type = CK_INT, .min = 512, .max = 1048576, .def = "8192",
	  .off = offsetof(struct http_conf, max_request),
	  .help = "most bytes of a request's line and headers (and of a body); more is answered 413" },
	{ .name = NULL, .type = CK_END },
};

const struct conf_key conf_line_keys[] = {
	{ .name = "name", .type = CK_STRING, .required = true, .off = offsetof(struct line_conf, name),
	  .help = "unique name of the line: letters, digits, '_', '.', '-'" },
	{ .name = "type", .type = CK_CHOICE, .def = "tcp", .choices = conf_line_types,
	  .off = offsetof(struct line_conf, type),
	  .help = "tcp, or tcp-redundant for a client line with a backup" },
	{ .name = "protocol", .type = CK_STRING, .required = true, .off = offsetof(struct line_conf, protocol),
	  .help = "protocol name; it decides whether the line is a client or a server" },
	{ .name = "host", .type = CK_VALUE,
	  .help = "string: host list; client lines: hosts to connect to (required); "
	  "server lines: addresses to listen on (default \"*\")" },
	{ .name = "port", .type = CK_INT, .required = true, .min = 1, .max = 65535, .off = offsetof(struct line_conf, port),
	  .help = "TCP port to connect to or listen on" },
	{ .name = "line_number", .type = CK_INT, .min = 0, .max = 65535, .def = "0",
	  .off = offsetof(struct line_conf, line_number), .help = "number of the line, for the protocol and for reports" },
	{ .name = "enabled", .type = CK_BOOL, .def = "true", .off = offsetof(struct line_conf, enabled),
	  .help = "false: the line is configured but not started" },
	{ .name = "backup", .type = CK_VALUE, .help = "group: the backup path of a tcp-redundant line" },
	{ .name = "tls", .type = CK_VALUE, .help = "group: TLS settings; the line uses TLS when present" },
	{ .name = "connect_timeout", .type = CK_SECONDS, .min = 0.1, .max = 300, .def = "5",
	  .off = offsetof(struct line_conf, connect_timeout_ms), .help = "time a TCP (and TLS) connect may take" },
	{ .name = "reconnect_delay", .type = CK_SECONDS, .min = 0.1, .max = 3600, .def = "1",
	  .off = offsetof(struct line_conf, reconnect_delay_ms),
	  .help = "first delay before connecting again; doubles after each failure" },
	{ .name = "reconnect_max", .type = CK_SECONDS, .min = 0.1, .max = 86400, .def = "60",
	  .off = offsetof(struct line_conf, reconnect_max_ms),
	  .help = "longest delay between connection attempts; not less than reconnect_delay" },
	{ .name = "max_clients", .type = CK_INT, .min = 1, .max = 1000000, .def = "1000",
	  .off = offsetof(struct line_conf, max_clients), .help = "server lines: most clients connected at once" },
	{ .name = "max_clients_per_address", .type = CK_INT, .min = 0, .max = 1000000, .def = "0",
	  .off = offsetof(struct line_conf, max_clients_per_address),
	  .help = "server lines: most clients connected at once from one IP address; 0: no limit" },
	{ .name = "tcp_keepalive_idle", .type = CK_SECONDS, .min = 0, .max = 32767, .def = "60",
	  .off = offsetof(struct line_conf, keepalive_idle_ms),
	  .help = "TCP keepalive: silence before the first probe (the kernel's default is 2 hours); 0: no keepalive" },
	{ .name = "tcp_keepalive_interval", .type = CK_SECONDS, .min = 1, .max = 32767, .def = "10",
	  .off = offsetof(struct line_conf, keepalive_interval_ms), .help = "TCP keepalive: time between probes" },
	{ .name = "tcp_keepalive_count", .type = CK_INT, .min = 1, .max = 127, .def = "5",
	  .off = offsetof(struct line_conf, keepalive_count),
	  .help = "TCP keepalive: unanswered probes before the connection is dropped" },
	{ .name = "allow", .type = CK_VALUE,
	  .help = "string: server lines: the client addresses that may connect (IP literals, optionally "
	  "with a prefix length: \"10.0.0.0/8, 192.0.2.7\"); others are refused at accept; default: all" },
	{ .name = "idle_timeout", .type = CK_SECONDS, .min = 0, .max = 86400, .def = "120",
	  .off = offsetof(struct line_conf, idle_timeout_ms),
	  .help = "server lines: a client that sends no complete request within this time is "
	  "disconnected (logged); 0: never" },
	{ .name = "stations", .type = CK_VALUE, .help = "list of station groups" },
	{ .name = NULL, .type = CK_END },
};

const struct conf_key conf_backup_keys[] = {
	{ .name = "enabled", .type = CK_BOOL, .def = "true", .off = offsetof(struct line_conf, backup_enabled),
	  .help = "false: the backup path is configured but not used" },
	{ .name = "host", .type = CK_VALUE, .help = "string: host list of the backup path (required)" },
	{ .name = "port", .type = CK_VALUE, .min = 1, .max = 65535, .off = offsetof(struct line_conf, backup_port),
	  .help = "integer 1..65535: port of the backup path; default: the line's port" },
	{ .name = NULL, .type = CK_END },
};

const struct conf_key conf_tls_keys[] = {
	{ .name = "partner_certs", .type = CK_STRING, .off = offsetof(struct tls_conf, partner_certs),
	  .help = "string: comma-separated certificate files (PEM) that the partner's certificate must chain to" },
	{ .name = "my_cert", .type = CK_STRING, .off = offsetof(struct tls_conf, my_cert),
	  .help = "string: our certificate file (PEM); needs my_key" },
	{ .name = "my_key", .type = CK_STRING, .off = offsetof(struct tls_conf, my_key),
	  .help = "string: our private key file (PEM); needs my_cert" },
	{ .name = "psk", .type = CK_STRING, .off = offsetof(struct tls_conf, psk), .secret = true,
	  .help = "string: the pre-shared key, in hex or as \"text:...\" (PSK mode, when no certificate is "
	  "set); in certificate mode the password of an encrypted my_key" },
	{ .name = "psk_identity", .type = CK_STRING, .def = "Client_identity",
	  .off = offsetof(struct tls_conf, psk_identity),
	  .help = "PSK mode: the identity the client sends and the server expects" },
	{ .name = "min_version", .type = CK_CHOICE, .def = "1.2", .choices = conf_tls_versions,
	  .off = offsetof(struct tls_conf, min_version), .help = "lowest TLS version: 1.2 or 1.3" },
	{ .name = "max_version", .type = CK_CHOICE, .def = "1.3", .choices = conf_tls_versions,
	  .off = offsetof(struct tls_conf, max_version), .help = "highest TLS version: 1.2 or 1.3" },
	{ .name = "ciphers", .type = CK_STRING, .off = offsetof(struct tls_conf, ciphers),
	  .help = "string: OpenSSL cipher list for TLS 1.2; default: OpenSSL's, or the PSK suites in PSK mode" },
	{ .name = "ciphersuites", .type = CK_STRING, .off = offsetof(struct tls_conf, ciphersuites),
	  .help = "string: OpenSSL TLS 1.3 ciphersuites; default: OpenSSL's" },
	{ .name = "crl", .type = CK_STRING, .off = offsetof(struct tls_conf, crl),
	  .help = "string: comma-separated certificate revocation list files (PEM); a partner whose "
	  "certificate (or any certificate of its chain) is revoked is refused; read at start-up and reload" },
	{ .name = "plain_psk", .type = CK_BOOL, .def = "false", .off = offsetof(struct tls_conf, plain_psk),
	  .help = "PSK mode: also allow PSK without an ephemeral (EC)DHE exchange (no forward secrecy): "
	  "TLS 1.2 PSK suites and TLS 1.3 psk_ke" },
	{ .name = "renegotiation", .type = CK_BOOL, .def = "true", .off = offsetof(struct tls_conf, renegotiation),
	  .help = "TLS 1.2: accept the partner's secure (RFC 5746) renegotiation, for session key renewal" },
	{ .name = "renegotiation_min_interval", .type = CK_SECONDS, .min = 0, .max = 86400, .def = "10",
	  .off = offsetof(struct tls_conf, renegotiation_min_interval_ms),
	  .help = "a partner that renegotiates more often than this is disconnected" },
	{ .name = "renegotiate_interval", .type = CK_SECONDS, .min = 0, .max = 604800, .def = "0",
	  .off = offsetof(struct tls_conf, renegotiate_interval_ms),
	  .help = "renew the session keys this often (TLS 1.2: renegotiation; TLS 1.3: KeyUpdate); 0: never" },
	{ .name = "alpn", .type = CK_STRING, .off = offsetof(struct tls_conf, alpn),
	  .help = "application protocols (RFC 7301 ALPN), comma-separated, e.g. \"x-amzn-mqtt-ca\" for AWS IoT "
	          "on port 443: a client offers them in order, a server accepts a client offering one of them "
	          "(and refuses one offering only others)" },
	{ .name = "verify_host", .type = CK_BOOL, .def = "true", .off = offsetof(struct tls_conf, verify_host),
	  .help = "client lines: the partner's certificate must name the host dialled (DNS name, or IP "
	  "address for an IP literal); false checks the chain only" },
	{ .name = NULL, .type = CK_END },
};

const struct conf_key conf_station_keys[] = {
	{ .name = "name", .type = CK_STRING, .required = true, .off = offsetof(struct station_conf, name),
	  .help = "name of the station, unique within its line" },
	{ .name = "address", .type = CK_VALUE, .off = offsetof(struct station_conf, address),
	  .help = "integer or string: the station's protocol address; required unless simulation is true" },
	{ .name = "period", .type = CK_SECONDS, .min = 0, .max = 86400, .def = "0",
	  .off = offsetof(struct station_conf, period_ms),
	  .help = "polling period, aligned to the wall clock; 0: not set" },
	{ .name = "offset", .type = CK_SECONDS, .min = 0, .max = 86400, .def = "0",
	  .off = offsetof(struct station_conf, offset_ms), .help = "offset of each poll within the period" },
	{ .name = "delay", .type = CK_SECONDS, .min = 0, .max = 86400, .def = "0",
	  .off = offsetof(struct station_conf, delay_ms),
	  .help = "polling: delay after the end of the previous request; excludes period; 0: not set" },
	{ .name = "continuous", .type = CK_BOOL, .def = "false", .off = offsetof(struct station_conf, continuous),
	  .help = "polling: poll again as soon as the previous poll ends (as fast as the device answers); "
	  "excludes period and delay" },
	{ .name = "response_timeout", .type = CK_SECONDS, .min = 0.01, .max = 3600, .def = "5",
	  .off = offsetof(struct station_conf, response_timeout_ms),
	  .help = "time the device may take to answer a request before the station is in communication error" },
	{ .name = "simulation", .type = CK_BOOL, .def = "false", .off = offsetof(struct station_conf, simulation),
	  .help = "simulate the station's values instead of talking to a device (client lines)" },
	{ .name = "tags", .type = CK_VALUE, .help = "list of tag groups" },
	{ .name = NULL, .type = CK_END },
};

const struct conf_key conf_tag_keys[] = {
	{ .name = "name", .type = CK_STRING, .required = true, .off = offsetof(struct tag_conf, name),
	  .help = "tag name: letters, digits, '_', '.', ':', '-'; at most 127 characters" },
	{ .name = "address", .type = CK_VALUE, .off = offsetof(struct tag_conf, address),
	  .help = "string: the tag's protocol address; required on stations unless simulated; not on memory tags" },
	{ .name = "type", .type = CK_VALUE, .choices = vtype_names,
	  .help = "bool, dpi, int, float, string or time; optional on serving stations" },
	{ .name = "direction", .type = CK_CHOICE, .def = "in", .choices = conf_tag_dirs,
	  .off = offsetof(struct tag_conf, dir), .help = "in, out or inout: may the value be written" },
	{ .name = "initial", .type = CK_VALUE, .help = "memory tags: the value at start-up" },
	{ .name = "description", .type = CK_STRING, .off = offsetof(struct tag_conf, description),
	  .help = "string: free text" },
	{ .name = NULL, .type = CK_END },
};

static bool
schema_has(const struct conf_key *keys, const char *name)
{
	for (; keys && keys->name; keys++)
		if (strcmp(keys->name, name) == 0)
			return true;
	return false;
}

int
conf_check_tables(char *err, size_t errlen)
{
	for (int p = 0; proto_table[p]; p++) {
		const struct proto_ops *o = proto_table[p];
		const struct conf_key *const pairs[][2] = { { o->line_keys, conf_line_keys },
			{ o->station_keys, conf_station_keys }, { o->tag_keys, conf_tag_keys } };

		for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++)
			for (const struct conf_key *k = pairs[i][0]; k && k->name; k++)
				if (schema_has(pairs[i][1], k->name)) {
					snprintf(err, errlen, "protocol %s: key '%s' shadows the core's key of that name",
					    o->name, k->name);
					return -1;
				}
	}
	return 0;
}


