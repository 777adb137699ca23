/* conf.h: the configuration as plain data, read from libconfig files and validated
 * against schema tables (conf.c). Nothing here touches the running daemon. */
#ifndef KOMD_CONF_H
#define KOMD_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include "value.h"

#define CONF_MAX_HOSTS 8

struct proto_ops;

/* Where a setting came from, for "FILE:LINE: message". */
struct conf_loc {
	const char *file; /* interned, owned by struct config */
	int line;
};

/* One entry of a host list. */
struct hostspec {
	char name[256];  /* IP literal without brackets, or DNS name; "" for a wildcard */
	int family;      /* AF_INET / AF_INET6 for literals and wildcards, AF_UNSPEC for names */
	bool wildcard;   /* listen on every interface of family */
};

struct hostlist {
	int n;
	struct hostspec h[CONF_MAX_HOSTS];
};

/* An address list ("allow", IEC 104 "groups"): IP literals, each with an optional prefix
 * length ("10.0.0.0/8", "fd00::/8"); parsed once, at load, and matched as addresses, never
 * as text (a text match let "10.0.0.1" pass for "10.0.0.11"). */
#define CONF_MAX_ADDRS 64
struct addrmatch {
	int family;              /* AF_INET, AF_INET6 */
	unsigned char addr[16];
	int bits;                /* prefix length: 32 or 128 for one address */
};
struct addrlist {
	int n;                   /* 0: the list is empty */
	struct addrmatch a[CONF_MAX_ADDRS];
};
/* Parse a list separated by ',' or spaces. 0, or -1 with a message naming the entry. */
int conf_parse_addrlist(const char *s, struct addrlist *out, char *err, size_t errlen);
/* Is the address (family AF_INET/AF_INET6, 4 or 16 bytes; an IPv4-mapped IPv6 address is
 * taken as the IPv4 one) in the list? */
bool addrlist_match(const struct addrlist *l, int family, const void *addr);

/* Parse "a, b; [::1]" (client: up to 8 hosts) or, with listen, listen addresses
 * ("*", "ALL", "[*]", "[ALL]", literals). 0, or -1 with a message in err. */
int conf_parse_hostlist(const char *s, bool listen, struct hostlist *out, char *err, size_t errlen);
/* "[::1]:502" / "1.2.3.4:502" / "name:502" */
char *hostspec_format(const struct hostspec *h, int port, char *buf, size_t len);

/* Schema: one table per section; it validates, fills defaults and documents. */
enum ck_type {
	CK_END = 0,
	CK_BOOL,     /* bool */
	CK_INT,      /* int, within [min, max] */
	CK_SECONDS,  /* int milliseconds; config gives seconds, int or float, within [min, max] seconds */
	CK_STRING,   /* char * (strdup'ed; #APPDIR# substituted; freed by conf_free_strings) */
	CK_CHOICE,   /* int: index into choices[], config gives the string */
	CK_VALUE,    /* handled by the section's own code (type-dependent values, lists, groups) */
};

struct conf_key {
	const char *name;
	enum ck_type type;
	double min, max;
	bool required;              /* the section must give it (else: def, or left unset) */
	const char *def;            /* default as text (NULL: no default / not set) */
	size_t off;                 /* offset in the section's struct */
	const char *const *choices; /* CK_CHOICE: NULL-terminated */
	const char *help;
	bool secret;                /* CK_STRING: a password or key: wiped when freed, only a
	                             * digest in the line's fingerprint (any section, by name) */
};

/* Memory tags (top-level) and tags of stations. */
enum tdir { TD_IN, TD_OUT, TD_INOUT };

struct tag_conf {
	struct conf_loc loc;
	char *name;
	char *address;       /* protocol address; NULL for memory tags */
	enum vtype type;
	bool has_type;       /* serving stations may omit the type: taken from the tag */
	int dir;             /* enum tdir */
	bool has_initial;
	struct value initial; /* memory tags only */
	char *description;
	void *pconf;         /* the protocol's tag_keys, ops->tag_conf_size bytes */
};

struct station_conf {
	struct conf_loc loc;
	char *name;
	char *address;       /* int or string in the file, kept as text */
	int period_ms;       /* polling period, aligned to the wall clock; 0 unset */
	int offset_ms;       /* offset of polls within the period */
	int delay_ms;        /* or: delay after the previous request ends; 0 unset */
	bool continuous;     /* or: poll again as soon as the previous poll ends */
	int response_timeout_ms; /* a request unanswered this long is a communication error */
	bool simulation;
	void *pconf;         /* the protocol's station_keys */
	struct tag_conf *tags;
	int ntags;
};

enum line_type { LINE_TCP, LINE_TCP_REDUNDANT };

enum tls_version { TLSV_1_2, TLSV_1_3 };

struct tls_conf {
	bool present;        /* a tls section was given */
	bool valid;          /* and it had no error of its own: its files may be loaded (tls.c) */
	char *partner_certs; /* comma-separated files */
	char *my_cert;
	char *my_key;
	char *psk;           /* PSK mode: hex or "text:..."; certificate mode: my_key's password */
	char *psk_identity;
	int min_version;     /* enum tls_version */
	int max_version;
	char *ciphers;       /* TLS 1.2 cipher list; NULL: OpenSSL's default (or the PSK suites) */
	char *ciphersuites;  /* TLS 1.3 suites; NULL: OpenSSL's default */
	bool verify_host;    /* client: the partner's certificate must name the host we dialled */
	char *alpn;          /* ALPN protocol names, comma-separated (RFC 7301); NULL: none */
	char *crl;           /* comma-separated CRL files; NULL: no revocation check */
	bool plain_psk;      /* PSK without (EC)DHE allowed */
	bool renegotiation;  /* accept the partner's TLS 1.2 renegotiation */
	int renegotiation_min_interval_ms; /* faster partner renegotiation closes the connection */
	int renegotiate_interval_ms;       /* our own key renewal; 0 off */
	/* where each key was, for errors found when the files are loaded (tls.c) */
	struct conf_loc loc, loc_partner_certs, loc_my_cert, loc_my_key, loc_psk, loc_crl;
};

struct line_conf {
	struct conf_loc loc;
	char *name;
	int type;            /* enum line_type */
	char *protocol;
	const struct proto_ops *ops;
	struct hostlist hosts;
	int port;
	int line_number;
	bool enabled;
	bool backup_present;
	bool backup_enabled;
	struct hostlist backup_hosts;
	int backup_port;
	struct tls_conf tls;
	int connect_timeout_ms;
	int reconnect_delay_ms;
	int reconnect_max_ms;
	int max_clients;     /* server lines */
	int max_clients_per_address; /* server lines; 0 no limit */
	struct addrlist allow;       /* server lines: the clients that may connect; empty: all */
	int keepalive_idle_ms;     /* TCP keepalive; 0 off */
	int keepalive_interval_ms;
	int keepalive_count;
	int idle_timeout_ms; /* server lines: no complete request this long closes; 0 never */
	void *pconf;         /* the protocol's line_keys */
	struct station_conf *stations;
	int nstations;
	char *fingerprint;   /* canonical text of the whole line section: equal text, equal line */
};

/* The http section (http.c): a read-only endpoint for /metrics and /api. */
struct http_conf {
	bool present;        /* a section was given: komd listens */
	struct conf_loc loc;
	struct hostlist hosts; /* listen form */
	int port;
	char *auth_file;     /* "user:SHA-512-crypt hash" lines; NULL: no authentication */
	int max_clients;     /* connections at once, counted by http.c */
	int timeout_ms;      /* a request must arrive (and its answer leave) within it */
	int max_request;     /* bytes of a request's line and headers, and of its body */
	struct line_conf tls_line; /* tls: checked and loaded as a server line's, named "http"
	                            * (tls_setup); tls_line.tls.present: HTTPS */
};

struct config {
	char *path;          /* main file */
	char *appdir;
	char *control_socket;
	int log_level;       /* enum log_level */
	int write_timeout_ms;
	int control_max_clients;
	int control_timeout_ms;  /* a komctl request must arrive within it */
	char *control_readonly_group; /* NULL: none */
	char *resolv_conf;       /* the resolver's files (start-up only) */
	char *hosts_file;
	struct http_conf http;
	struct line_conf *lines;
	int nlines;
	struct tag_conf *tags; /* memory tags */
	int ntags;
	char **files;        /* interned file names */
	int nfiles;
};

/* Collected errors, each "FILE:LINE: message". */
struct conf_errors {
	char **msg;
	int n;
};

/* Read path, its @includes and every *.conf in the komd.conf.d/ directory beside it (in
 * name order), validate everything (schemas, protocol hooks, tag names, references).
 * Returns the config, or NULL with every error in errs. */
struct config *conf_load(const char *path, struct conf_errors *errs);
/* The same, but the configuration is returned even when it has errors (every one in errs),
 * for checks that need it (TLS files, komd -t): conf_free it. */
struct config *conf_load_keep(const char *path, struct conf_errors *errs);
void conf_free(struct config *c);
/* Free the CK_STRING fields of a section's struct base, as its table keys lists them. */
void conf_free_strings(const struct conf_key *keys, void *base);
/* Does any protocol's key shadow a key of the core's table for the same section? Such a key
 * could never be set (the core's wins): a programming error, checked at start-up. 0, or -1
 * with the first in err. */
int conf_check_tables(char *err, size_t errlen);
void conf_errors_clear(struct conf_errors *errs);

const struct line_conf *conf_find_line(const struct config *c, const char *name);
/* Where is tag name defined (acquiring station's tag or memory tag); NULL if nowhere. */
const struct tag_conf *conf_find_tag(const struct config *c, const char *name);

/* The schema tables, exported for the man page generator and tests. */
extern const struct conf_key conf_global_keys[];
extern const struct conf_key conf_line_keys[];
extern const struct conf_key conf_backup_keys[];
extern const struct conf_key conf_tls_keys[];
extern const struct conf_key conf_station_keys[];
extern const struct conf_key conf_tag_keys[];
extern const struct conf_key conf_http_keys[];

#endif
