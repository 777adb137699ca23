/* tls.h: TLS for lines (OpenSSL 3 through libevent's bufferevent_openssl). Protocols
 * never see it: a TLS session is a session like any other. */
#ifndef KOMD_TLS_H
#define KOMD_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>
#include <openssl/ssl.h>

struct bufferevent;

#include "conf.h"

/* A certificate komd uses or trusts, for komctl certs and expiry warnings. */
struct tls_cert_info {
	char file[256];
	const char *role;       /* "my_cert" or "partner_certs" */
	char subject[256];
	char issuer[256];
	time_t not_after;
};

/* One line's TLS context, rebuilt on every reload. */
struct line_tls {
	SSL_CTX *ctx;
	bool server;
	bool psk_mode;
	bool verify;            /* verify the partner (false with /DC) */
	bool verify_host;
	bool partner_certs;     /* partners are authenticated by certificate */
	unsigned char psk[256];
	size_t psk_len;
	char identity[128];
	struct tls_cert_info *certs;
	int ncerts;
	int ncrls;              /* CRLs loaded (crl) */
	bool renegotiation;     /* accept the partner's secure renegotiation (TLS 1.2) */
	int renegotiation_min_interval_ms;
	int renegotiate_interval_ms; /* our own key renewal; 0 off */
	unsigned char alpn[256];    /* ALPN protocol list in wire format (RFC 7301 3.1); alpn_len 0: none */
	size_t alpn_len;
};

/* Default TLS 1.2 cipher lists (openssl-ciphers(1)); ciphers in the tls section overrides.
 * Certificate mode: no anonymous, NULL, SHA-1 MAC (CBC-SHA) or PSK suites. PSK mode: the
 * PSK with an ephemeral (EC)DHE exchange (RFC 5489, RFC 4279 clause 3), and the PSK alone
 * (RFC 4279 clause 2) only with plain_psk. */
#define TLS_CERT_CIPHERS "HIGH:!aNULL:!eNULL:!SHA1:!PSK:!SRP:!DSS:!CAMELLIA:!ARIA"
#define TLS_PSK_CIPHERS "kECDHEPSK:kDHEPSK:!SHA1:!eNULL:!CAMELLIA:!ARIA"
#define TLS_PLAIN_PSK_CIPHERS "kPSK:!SHA1:!eNULL:!CAMELLIA:!ARIA"

/* Why tls_setup failed: the message, the key it is about, and whether it is only a matter
 * of dates (a certificate expired or not yet valid: that fails the line, not the file). */
struct tls_error {
	char msg[768];
	struct conf_loc where;
	bool dates;
};

/* Build the context for line lc: load and check every certificate, key and CRL. NULL with
 * e filled on failure. */
struct line_tls *tls_setup(const struct line_conf *lc, bool no_verify, struct tls_error *e);
void tls_free(struct line_tls *t);
/* Check the TLS settings of every line of c (komd -t, start-up and before a reload); errors
 * are appended to errs as "FILE:LINE: message". Certificates outside their validity dates
 * are errors only with dates (komd -t). Returns the number of errors. */
int tls_check_config(const struct config *c, struct conf_errors *errs, bool dates);
/* A new SSL for one connection; client: SNI for names, host name/IP verification. */
SSL *tls_ssl_new(const struct line_tls *t, const struct hostspec *host);
/* Why did the handshake or connection on bev fail: OpenSSL's reasons and the verify
 * result (true), or the socket error (false). */
bool tls_error_text(struct bufferevent *bev, char *buf, size_t len);
/* After the handshake: did the partner authenticate as the line is configured (PSK mode:
 * by the PSK, never by a certificate; certificate mode: a verified certificate, unless /DC
 * or a server without partner_certs)? false with the reason in why. */
bool tls_check_auth(SSL *ssl, const struct line_tls *t, char *why, size_t len);
/* What was negotiated: "TLSv1.3 TLS_AES_256_GCM_SHA384, peer /CN=... (verified)", or
 * "..., PSK identity ID" when the session was authenticated by a PSK. */
char *tls_describe(SSL *ssl, const struct line_tls *t, char *buf, size_t len);
/* "line L: PEER: TLS established: ..." (what was negotiated), and the /DC warning when
 * the partner was let in unverified. */
void tls_log_established(SSL *ssl, const struct line_tls *t, const char *line, const char *peer);
/* Did the partner's certificate verify? (false also when none was sent) */
bool tls_peer_verified(SSL *ssl);
/* Warn about certificates expiring within days; returns how many. */
int tls_warn_expiry(const struct line_tls *t, const char *line, int days);
int tls_days_left(time_t not_after);
/* Renew the session keys now (renegotiate_interval): TLS 1.2 renegotiation (RFC 5746), TLS
 * 1.3 KeyUpdate asking the partner to update too (RFC 8446 clause 4.6.3). 1 started (the
 * caller lets the bufferevent carry it), 0 a handshake runs already, -1 OpenSSL refused. */
int tls_renew_keys(struct bufferevent *bev);
/* Why komd itself ended a handshake on ssl (renegotiation refused or too soon), or NULL. */
const char *tls_refused(SSL *ssl);

#endif
