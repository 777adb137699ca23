/* tls.c: TLS contexts for lines. Certificate mode (partner_certs and/or my_cert + my_key,
 * the key optionally encrypted with psk as its password) takes precedence over PSK mode
 * (only psk: TLS 1.2 PSK cipher suites and TLS 1.3 external PSK through OpenSSL's PSK
 * callbacks, identity psk_identity). Clients verify the server's chain against
 * partner_certs (or the system's trust store without them) and its name or IP; servers
 * with partner_certs require and verify a client certificate. /DC turns verification off
 * (and every unverified partner is logged). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/util.h>
#include <sys/socket.h>

#include "log.h"
#include "proto.h"
#include "tls.h"

/* A line_tls lives as long as its SSL_CTX: connections made before a reload keep the
 * context (and so the PSK and identity their callbacks read) until they close. */
static int tls_ex_index = -1;

static void
tls_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	struct line_tls *t = ptr;

	(void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
	if (!t)
		return;
	free(t->certs);
	OPENSSL_cleanse(t->psk, sizeof(t->psk));
	free(t);
}

static const struct line_tls *
tls_of(SSL *ssl)
{
	return SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), tls_ex_index);
}

/* Per connection: the handshakes seen, for the renegotiation limits (RFC 5746). */
struct tls_conn {
	int hellos;               /* ClientHellos handled (server) */
	bool established;         /* the first handshake is done */
	bool asked;               /* komd asked for this renegotiation (HelloRequest) */
	int64_t last_reneg_ms;    /* when the partner last renegotiated; 0 never */
	const char *refused;      /* why komd ended a renegotiation, for the log */
	int verify_err;           /* the first certificate that failed verification: why, */
	char verify_subject[200]; /* whose, */
	time_t verify_not_after;  /* and its dates */
	time_t verify_not_before;
	char psk_identity[64];    /* server: an identity it does not know */
	bool cert_requested;      /* client: the server asked for a certificate we do not have */
};
static int tls_conn_index = -1;

static void
tls_conn_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	(void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
	free(ptr);
}

static int64_t
tls_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Server: every ClientHello passes here, the first and any renegotiation's. The partner's
 * renegotiation is refused (the connection then fails) when the line says so, or when it
 * comes sooner than renegotiation_min_interval after its previous one. */
static int
tls_client_hello_cb(SSL *ssl, int *alert, void *arg)
{
	const struct line_tls *t = tls_of(ssl);
	struct tls_conn *tc = SSL_get_ex_data(ssl, tls_conn_index);
	int64_t now = tls_now_ms();

	(void)arg;
	/* (a second ClientHello before the first handshake ends answers a TLS 1.3
	 * HelloRetryRequest: no renegotiation) */
	if (!t || !tc || tc->hellos++ == 0 || !tc->established)
		return SSL_CLIENT_HELLO_SUCCESS;
	if (tc->asked) {
		tc->asked = false; /* the answer to our own HelloRequest */
		return SSL_CLIENT_HELLO_SUCCESS;
	}
	if (!t->renegotiation) {
		tc->refused = "renegotiation refused (renegotiation = false)";
		*alert = SSL_AD_NO_RENEGOTIATION;
		return SSL_CLIENT_HELLO_ERROR;
	}
	if (tc->last_reneg_ms && now - tc->last_reneg_ms < t->renegotiation_min_interval_ms) {
		tc->refused = "renegotiation too soon after the previous one (renegotiation_min_interval)";
		*alert = SSL_AD_NO_RENEGOTIATION;
		return SSL_CLIENT_HELLO_ERROR;
	}
	tc->last_reneg_ms = now;
	return SSL_CLIENT_HELLO_SUCCESS;
}

/* Renegotiations that completed are logged (IEC 62351-3 key renewal is worth seeing). */
static void
tls_info_cb(const SSL *ssl, int where, int ret)
{
	struct tls_conn *tc = SSL_get_ex_data(ssl, tls_conn_index);

	(void)ret;
	if (!(where & SSL_CB_HANDSHAKE_DONE) || !tc)
		return;
	/* TLS 1.3 calls this after post-handshake messages too; it has no renegotiation */
	if (SSL_version(ssl) >= TLS1_3_VERSION) {
		tc->established = true;
		return;
	}
	if (tc->established)
		log_info("tls: session keys renewed by renegotiation (%s %s)", SSL_get_version(ssl),
		    SSL_get_cipher_name(ssl));
	tc->established = true;
}

static void
tls_setup_renegotiation(struct line_tls *t)
{
	if (tls_conn_index < 0)
		tls_conn_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, tls_conn_free);
	SSL_CTX_set_info_callback(t->ctx, tls_info_cb);
	if (t->server) {
		/* OpenSSL 3 refuses every client renegotiation unless allowed; the hello callback
		 * decides instead. Legacy (insecure) renegotiation stays refused. */
		SSL_CTX_set_options(t->ctx, SSL_OP_ALLOW_CLIENT_RENEGOTIATION);
		SSL_CTX_set_client_hello_cb(t->ctx, tls_client_hello_cb, NULL);
	} else if (!t->renegotiation) {
		SSL_CTX_set_options(t->ctx, SSL_OP_NO_RENEGOTIATION);
	}
}

int
tls_renew_keys(struct bufferevent *bev)
{
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	struct tls_conn *tc = ssl ? SSL_get_ex_data(ssl, tls_conn_index) : NULL;
	int rc = 1;

	if (!ssl || !SSL_is_init_finished(ssl))
		return 0; /* a handshake is running: that renews them already */
	if (SSL_version(ssl) >= TLS1_3_VERSION) {
		/* RFC 8446 clause 4.6.3: ours, and the partner's in answer; the bufferevent's
		 * handshake step below sends it (SSL_renegotiate itself refuses TLS 1.3) */
		if (SSL_key_update(ssl, SSL_KEY_UPDATE_REQUESTED) != 1)
			rc = -1;
	} else if (tc) {
		tc->asked = SSL_is_server(ssl); /* the partner's ClientHello answers our HelloRequest */
	}
	if (rc == 1 && bufferevent_ssl_renegotiate(bev) < 0)
		rc = -1;
	ERR_clear_error();
	if (rc == 1 && SSL_version(ssl) >= TLS1_3_VERSION)
		log_info("tls: session keys renewed by KeyUpdate (%s)", SSL_get_version(ssl));
	return rc;
}

const char *
tls_refused(SSL *ssl)
{
	struct tls_conn *tc = ssl ? SSL_get_ex_data(ssl, tls_conn_index) : NULL;

	return tc ? tc->refused : NULL;
}

static char *
tls_openssl_errors(char *buf, size_t len)
{
	unsigned long e;
	size_t o = 0;

	buf[0] = '\0';
	while ((e = ERR_get_error()) != 0 && o < len) {
		const char *r = ERR_reason_error_string(e);
		o += (size_t)snprintf(buf + o, len - o, "%s%s", o ? "; " : "", r ? r : "unknown error");
	}
	if (!buf[0])
		snprintf(buf, len, "unknown OpenSSL error");
	return buf;
}

int
tls_days_left(time_t not_after)
{
	double d = difftime(not_after, time(NULL)) / 86400.0;
	return d < 0 ? (int)d - 1 : (int)d;
}

static time_t
asn1_to_time(const ASN1_TIME *t)
{
	struct tm tm;

	if (ASN1_TIME_to_tm(t, &tm) != 1)
		return 0;
	return timegm(&tm);
}

static void
tls_cert_record(struct line_tls *t, X509 *x, const char *file, const char *role)
{
	struct tls_cert_info *ci;
	struct tls_cert_info *n = realloc(t->certs, (size_t)(t->ncerts + 1) * sizeof(*n));

	if (!n)
		return;
	t->certs = n;
	ci = &t->certs[t->ncerts++];
	memset(ci, 0, sizeof(*ci));
	snprintf(ci->file, sizeof(ci->file), "%s", file);
	ci->role = role;
	X509_NAME_oneline(X509_get_subject_name(x), ci->subject, sizeof(ci->subject));
	X509_NAME_oneline(X509_get_issuer_name(x), ci->issuer, sizeof(ci->issuer));
	ci->not_after = asn1_to_time(X509_get0_notAfter(x));
}

/* Read every certificate of a PEM file; -1 with err when there is none, -2 when one is
 * outside its validity dates (expired or not yet valid). */
static int
tls_read_certs(struct line_tls *t, const char *file, const char *role, char *err, size_t errlen)
{
	FILE *f = fopen(file, "r");
	X509 *x;
	int n = 0;

	if (!f) {
		snprintf(err, errlen, "%s: cannot read '%s': %s", role, file, strerror(errno));
		return -1;
	}
	while ((x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
		tls_cert_record(t, x, file, role);
		n++;
		if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0) {
			snprintf(err, errlen, "%s: certificate '%s' in '%s' expired %d days ago", role,
			    t->certs[t->ncerts - 1].subject, file, -tls_days_left(t->certs[t->ncerts - 1].not_after));
			X509_free(x);
			fclose(f);
			return -2;
		}
		if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0) {
			snprintf(err, errlen, "%s: certificate '%s' in '%s' is not valid yet", role,
			    t->certs[t->ncerts - 1].subject, file);
			X509_free(x);
			fclose(f);
			return -2;
		}
		X509_free(x);
	}
	fclose(f);
	ERR_clear_error();
	if (n == 0) {
		snprintf(err, errlen, "%s: no PEM certificate in '%s'", role, file);
		return -1;
	}
	return 0;
}

/* Add every CRL of a PEM file to the context's store (RFC 5280 clause 5); -1 with err. */
static int
tls_read_crls(struct line_tls *t, const char *file, char *err, size_t errlen)
{
	X509_STORE *store = SSL_CTX_get_cert_store(t->ctx);
	FILE *f = fopen(file, "r");
	X509_CRL *crl;
	int n = 0;

	if (!f) {
		snprintf(err, errlen, "crl: cannot read '%s': %s", file, strerror(errno));
		return -1;
	}
	while ((crl = PEM_read_X509_CRL(f, NULL, NULL, NULL)) != NULL) {
		const ASN1_TIME *next = X509_CRL_get0_nextUpdate(crl);
		char issuer[256];

		X509_NAME_oneline(X509_CRL_get_issuer(crl), issuer, sizeof(issuer));
		if (next && X509_cmp_current_time(next) < 0)
			log_warnx("tls: crl: '%s': the CRL of %s is past its next update: partners it covers will be "
			    "refused until a current one is installed", file, issuer);
		if (!X509_STORE_add_crl(store, crl)) {
			X509_CRL_free(crl);
			fclose(f);
			snprintf(err, errlen, "crl: '%s': cannot add the CRL of %s", file, issuer);
			return -1;
		}
		X509_CRL_free(crl);
		n++;
	}
	fclose(f);
	ERR_clear_error();
	if (n == 0) {
		snprintf(err, errlen, "crl: no PEM CRL in '%s'", file);
		return -1;
	}
	t->ncrls += n;
	return 0;
}

/* Each file of a comma-separated list, trimmed, through fn; stops at the first failure. */
static int
tls_each_file(const char *files, int (*fn)(struct line_tls *, const char *, void *), struct line_tls *t, void *arg)
{
	char *list = strdup(files), *save = NULL;
	int rc = 0;

	if (!list)
		return -1;
	for (char *f = strtok_r(list, ",", &save); f && rc == 0; f = strtok_r(NULL, ",", &save)) {
		while (isspace((unsigned char)*f))
			f++;
		for (char *e = f + strlen(f); e > f && isspace((unsigned char)e[-1]);)
			*--e = '\0';
		rc = fn(t, f, arg);
	}
	free(list);
	return rc;
}

static int
tls_password_cb(char *buf, int size, int rwflag, void *u)
{
	const char *pw = u;
	int n;

	(void)rwflag;
	if (!pw)
		return 0;
	n = (int)strlen(pw);
	if (n > size)
		return 0;
	memcpy(buf, pw, (size_t)n);
	return n;
}

static unsigned int
tls_psk_client_cb(SSL *ssl, const char *hint, char *identity, unsigned int max_identity_len,
    unsigned char *psk, unsigned int max_psk_len)
{
	const struct line_tls *t = tls_of(ssl);

	(void)hint;
	if (!t || strlen(t->identity) + 1 > max_identity_len || t->psk_len > max_psk_len)
		return 0;
	memcpy(identity, t->identity, strlen(t->identity) + 1);
	memcpy(psk, t->psk, t->psk_len);
	return (unsigned int)t->psk_len;
}

static unsigned int
tls_psk_server_cb(SSL *ssl, const char *identity, unsigned char *psk, unsigned int max_psk_len)
{
	const struct line_tls *t = tls_of(ssl);

	if (!t || !identity || strcmp(identity, t->identity) != 0 || t->psk_len > max_psk_len) {
		struct tls_conn *tc = SSL_get_ex_data(ssl, tls_conn_index);
		if (tc && identity)
			snprintf(tc->psk_identity, sizeof(tc->psk_identity), "%s", identity);
		return 0; /* unknown identity: the handshake fails */
	}
	memcpy(psk, t->psk, t->psk_len);
	return (unsigned int)t->psk_len;
}

/* A PSK line authenticates by the PSK alone: a partner that answers with a certificate
 * (a TLS 1.3 server that does not know the PSK falls back to one) is refused during the
 * handshake, whoever signed it. */
static int
tls_refuse_cert_cb(int ok, X509_STORE_CTX *ctx)
{
	(void)ok;
	X509_STORE_CTX_set_error(ctx, X509_V_ERR_APPLICATION_VERIFICATION);
	return 0;
}

/* Client without my_cert: the server asked for a certificate (remembered for the log). */
static int
tls_client_cert_cb(SSL *ssl, X509 **x509, EVP_PKEY **pkey)
{
	struct tls_conn *tc = SSL_get_ex_data(ssl, tls_conn_index);

	(void)x509; (void)pkey;
	if (tc)
		tc->cert_requested = true;
	return 0; /* none: the handshake goes on without */
}

/* Certificate lines: OpenSSL's verdict stands; the first failure is kept for the log, with
 * the certificate's subject and dates ("expired on DATE" is what an operator acts on). */
static int
tls_verify_cb(int ok, X509_STORE_CTX *ctx)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(ctx, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct tls_conn *tc = ssl ? SSL_get_ex_data(ssl, tls_conn_index) : NULL;
	X509 *x = X509_STORE_CTX_get_current_cert(ctx);

	if (!ok && tc && !tc->verify_err) {
		tc->verify_err = X509_STORE_CTX_get_error(ctx);
		if (x) {
			X509_NAME_oneline(X509_get_subject_name(x), tc->verify_subject, sizeof(tc->verify_subject));
			tc->verify_not_after = asn1_to_time(X509_get0_notAfter(x));
			tc->verify_not_before = asn1_to_time(X509_get0_notBefore(x));
		}
	}
	return ok;
}

/* With /DC: accept whatever the partner presents; the result is logged per connection. */
static int
tls_verify_none_cb(int ok, X509_STORE_CTX *ctx)
{
	(void)ok; (void)ctx;
	return 1;
}

static int
tls_parse_psk(struct line_tls *t, const char *psk, char *err, size_t errlen)
{
	if (strncmp(psk, "text:", 5) == 0) {
		t->psk_len = strlen(psk + 5);
		if (t->psk_len == 0 || t->psk_len > sizeof(t->psk)) {
			snprintf(err, errlen, "psk: text key must be 1..%zu characters", sizeof(t->psk));
			return -1;
		}
		memcpy(t->psk, psk + 5, t->psk_len);
		return 0;
	}
	size_t n = strlen(psk);
	if (n == 0 || n % 2 || n / 2 > sizeof(t->psk)) {
		snprintf(err, errlen, "psk: must be an even number of hex digits (at most %zu bytes), or \"text:...\"",
		    sizeof(t->psk));
		return -1;
	}
	for (size_t i = 0; i < n; i += 2) {
		char h[3] = { psk[i], psk[i + 1], 0 };
		if (!isxdigit((unsigned char)h[0]) || !isxdigit((unsigned char)h[1])) {
			snprintf(err, errlen, "psk: '%s' is not hex", h);
			return -1;
		}
		t->psk[i / 2] = (unsigned char)strtoul(h, NULL, 16);
	}
	t->psk_len = n / 2;
	return 0;
}

struct tls_load {
	const char *role;
	char *err;
	size_t errlen;
	STACK_OF(X509_NAME) *cas;    /* servers: the CA names sent in the certificate request */
};

static int
tls_load_partner(struct line_tls *t, const char *f, void *arg)
{
	struct tls_load *ld = arg;
	char oerr[512];
	int rc;

	if ((rc = tls_read_certs(t, f, "partner_certs", ld->err, ld->errlen)) != 0)
		return rc;
	if (SSL_CTX_load_verify_locations(t->ctx, f, NULL) != 1) {
		snprintf(ld->err, ld->errlen, "partner_certs: '%s': %s", f, tls_openssl_errors(oerr, sizeof(oerr)));
		return -1;
	}
	if (ld->cas)
		SSL_add_file_cert_subjects_to_stack(ld->cas, f);
	return 0;
}

static int
tls_load_crl(struct line_tls *t, const char *f, void *arg)
{
	struct tls_load *ld = arg;

	return tls_read_crls(t, f, ld->err, ld->errlen);
}

/* "a, b" to the ALPN wire format (RFC 7301 3.1: each name 1..255 bytes with its length
 * byte before it). 0, or -1 with err. */
static int
tls_alpn_wire(const char *s, unsigned char *out, size_t cap, size_t *len, char *err, size_t errlen)
{
	size_t n = 0;

	while (*s) {
		size_t k;
		while (*s == ' ' || *s == ',')
			s++;
		if (!*s)
			break;
		for (k = 0; s[k] && s[k] != ',' && s[k] != ' '; k++)
			;
		if (k > 255 || n + 1 + k > cap) {
			snprintf(err, errlen, "alpn: '%.*s': a protocol name is 1 to 255 bytes, all of them at most %zu",
			    (int)(k > 40 ? 40 : k), s, cap - 1);
			return -1;
		}
		out[n++] = (unsigned char)k;
		memcpy(out + n, s, k);
		n += k;
		s += k;
	}
	if (n == 0) {
		snprintf(err, errlen, "alpn: no protocol name given");
		return -1;
	}
	*len = n;
	return 0;
}

/* Server: the first of the line's protocols the client offers (RFC 7301 3.2: none of them
 * is a fatal no_application_protocol alert). A client offering no ALPN is not asked. */
static int
tls_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
    unsigned int inlen, void *arg)
{
	const struct line_tls *t = arg;
	unsigned char *sel;

	(void)ssl;
	if (SSL_select_next_proto(&sel, outlen, t->alpn, (unsigned)t->alpn_len, in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

struct line_tls *
tls_setup(const struct line_conf *lc, bool no_verify, struct tls_error *e)
{
	const struct tls_conf *c = &lc->tls;
	struct line_tls *t = calloc(1, sizeof(*t));
	static const int versions[] = { TLS1_2_VERSION, TLS1_3_VERSION };
	char *err = e->msg, oerr[512];
	size_t errlen = sizeof(e->msg);
	int rc;

	e->msg[0] = '\0';
	e->where = c->loc;
	e->dates = false;
	if (!t) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	t->server = lc->ops && lc->ops->transport == PROTO_LISTEN;
	t->psk_mode = !c->my_cert && !c->partner_certs && c->psk;
	t->verify = !no_verify;
	t->verify_host = c->verify_host;
	t->partner_certs = c->partner_certs != NULL;
	t->renegotiation = c->renegotiation;
	t->renegotiation_min_interval_ms = c->renegotiation_min_interval_ms;
	t->renegotiate_interval_ms = c->renegotiate_interval_ms;
	snprintf(t->identity, sizeof(t->identity), "%s", c->psk_identity ? c->psk_identity : "Client_identity");
	ERR_clear_error();
	if ((t->ctx = SSL_CTX_new(t->server ? TLS_server_method() : TLS_client_method())) == NULL) {
		snprintf(err, errlen, "cannot create a TLS context: %s", tls_openssl_errors(oerr, sizeof(oerr)));
		goto fail;
	}
	if (tls_ex_index < 0)
		tls_ex_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, tls_ex_free);
	if (tls_ex_index < 0 || !SSL_CTX_set_ex_data(t->ctx, tls_ex_index, t)) {
		SSL_CTX_free(t->ctx);
		t->ctx = NULL;
		snprintf(err, errlen, "cannot create a TLS context: ex_data");
		goto fail;
	}
	SSL_CTX_set_min_proto_version(t->ctx, versions[c->min_version]);
	SSL_CTX_set_max_proto_version(t->ctx, versions[c->max_version]);
	SSL_CTX_set_mode(t->ctx, SSL_MODE_RELEASE_BUFFERS);
	/* explicit defaults, not OpenSSL's: no CBC-SHA1 suites; a PSK line uses an ephemeral
	 * (EC)DHE exchange with the PSK (forward secrecy) unless plain_psk allows the PSK alone */
	const char *ciphers = c->ciphers ? c->ciphers : !t->psk_mode ? TLS_CERT_CIPHERS :
	    c->plain_psk ? TLS_PSK_CIPHERS ":" TLS_PLAIN_PSK_CIPHERS : TLS_PSK_CIPHERS;
	if (!SSL_CTX_set_cipher_list(t->ctx, ciphers)) {
		snprintf(err, errlen, "ciphers: '%s': %s", ciphers, tls_openssl_errors(oerr, sizeof(oerr)));
		goto fail;
	}
	if (t->psk_mode && c->plain_psk)
		SSL_CTX_set_options(t->ctx, SSL_OP_ALLOW_NO_DHE_KEX); /* TLS 1.3 psk_ke */
	SSL_CTX_set_dh_auto(t->ctx, 1);
	if (c->ciphersuites && !SSL_CTX_set_ciphersuites(t->ctx, c->ciphersuites)) {
		snprintf(err, errlen, "ciphersuites: '%s': %s", c->ciphersuites, tls_openssl_errors(oerr, sizeof(oerr)));
		goto fail;
	}
	tls_setup_renegotiation(t);
	if (c->alpn) {
		if (tls_alpn_wire(c->alpn, t->alpn, sizeof(t->alpn), &t->alpn_len, err, errlen) != 0)
			goto fail;
		if (t->server)
			SSL_CTX_set_alpn_select_cb(t->ctx, tls_alpn_select, t);
		else if (SSL_CTX_set_alpn_protos(t->ctx, t->alpn, (unsigned)t->alpn_len) != 0) {
			snprintf(err, errlen, "alpn: %s", tls_openssl_errors(oerr, sizeof(oerr)));
			goto fail;
		}
	}
	if (t->server) {
		/* resumption (TLS 1.2 session ids and tickets, TLS 1.3 tickets) needs a context
		 * that names the line: without it OpenSSL refuses resuming clients on lines that
		 * verify client certificates (alert 80) */
		unsigned char sid[SHA256_DIGEST_LENGTH];
		SHA256((const unsigned char *)lc->name, strlen(lc->name), sid);
		SSL_CTX_set_session_id_context(t->ctx, sid, SSL_MAX_SID_CTX_LENGTH);
	}

	if (t->psk_mode) {
		e->where = c->loc_psk;
		if (tls_parse_psk(t, c->psk, err, errlen) != 0)
			goto fail;
		if (t->server) {
			SSL_CTX_set_psk_server_callback(t->ctx, tls_psk_server_cb);
		} else {
			SSL_CTX_set_psk_client_callback(t->ctx, tls_psk_client_cb);
			SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, tls_refuse_cert_cb);
		}
		return t;
	}

	/* certificate mode */
	if (c->my_cert) {
		e->where = c->loc_my_cert;
		if ((rc = tls_read_certs(t, c->my_cert, "my_cert", err, errlen)) != 0) {
			e->dates = rc == -2;
			goto fail;
		}
		if (SSL_CTX_use_certificate_chain_file(t->ctx, c->my_cert) != 1) {
			snprintf(err, errlen, "my_cert: '%s': %s", c->my_cert, tls_openssl_errors(oerr, sizeof(oerr)));
			goto fail;
		}
		e->where = c->loc_my_key;
		SSL_CTX_set_default_passwd_cb(t->ctx, tls_password_cb);
		SSL_CTX_set_default_passwd_cb_userdata(t->ctx, c->psk);
		if (SSL_CTX_use_PrivateKey_file(t->ctx, c->my_key, SSL_FILETYPE_PEM) != 1) {
			tls_openssl_errors(oerr, sizeof(oerr));
			if (strstr(oerr, "mismatch"))
				snprintf(err, errlen, "my_key: '%s' does not match my_cert '%s'", c->my_key, c->my_cert);
			else if (strstr(oerr, "decrypt") || strstr(oerr, "password") || strstr(oerr, "unsupported"))
				snprintf(err, errlen, "my_key: '%s': %s%s", c->my_key, oerr,
				    c->psk ? " (wrong password in psk?)" : " (encrypted? its password goes in psk)");
			else
				snprintf(err, errlen, "my_key: '%s': %s", c->my_key, oerr);
			goto fail;
		}
		SSL_CTX_set_default_passwd_cb_userdata(t->ctx, NULL);
		if (SSL_CTX_check_private_key(t->ctx) != 1) {
			snprintf(err, errlen, "my_key: '%s' does not match my_cert '%s'", c->my_key, c->my_cert);
			goto fail;
		}
	}
	if (c->partner_certs) {
		struct tls_load ld = { .err = err, .errlen = errlen,
			.cas = t->server ? sk_X509_NAME_new_null() : NULL };

		e->where = c->loc_partner_certs;
		rc = tls_each_file(c->partner_certs, tls_load_partner, t, &ld);
		if (rc != 0) {
			sk_X509_NAME_pop_free(ld.cas, X509_NAME_free);
			e->dates = rc == -2;
			if (!err[0])
				snprintf(err, errlen, "out of memory");
			goto fail;
		}
		if (ld.cas)
			SSL_CTX_set_client_CA_list(t->ctx, ld.cas);
	} else if (!t->server) {
		/* no partner_certs on a client: the system's trust store (public brokers) */
		SSL_CTX_set_default_verify_paths(t->ctx);
	}
	if (c->crl) {
		struct tls_load ld = { .err = err, .errlen = errlen };

		e->where = c->loc_crl;
		if (tls_each_file(c->crl, tls_load_crl, t, &ld) != 0) {
			if (!err[0])
				snprintf(err, errlen, "out of memory");
			goto fail;
		}
		/* every certificate of the partner's chain, not only its own (IEC 62351-3) */
		X509_STORE_set_flags(SSL_CTX_get_cert_store(t->ctx), X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
	}
	if (t->server) {
		if (!c->my_cert) {
			e->where = c->loc;
			snprintf(err, errlen, "a TLS server line needs my_cert and my_key (or psk alone)");
			goto fail;
		}
		if (c->partner_certs)
			SSL_CTX_set_verify(t->ctx, t->verify ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT :
			    SSL_VERIFY_PEER, t->verify ? tls_verify_cb : tls_verify_none_cb);
	} else {
		SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, t->verify ? tls_verify_cb : tls_verify_none_cb);
		if (!c->my_cert)
			SSL_CTX_set_client_cert_cb(t->ctx, tls_client_cert_cb);
	}
	ERR_clear_error();
	return t;
fail:
	ERR_clear_error();
	tls_free(t);
	return NULL;
}

void
tls_free(struct line_tls *t)
{
	if (!t)
		return;
	if (t->ctx)
		SSL_CTX_free(t->ctx); /* frees t with the last reference (tls_ex_free) */
	else
		tls_ex_free(NULL, t, NULL, 0, 0, NULL);
}

int
tls_check_config(const struct config *c, struct conf_errors *errs, bool dates)
{
	int n = 0;

	for (int i = 0; i < c->nlines; i++) {
		const struct line_conf *lc = &c->lines[i];
		struct line_tls *t;
		struct tls_error e;
		char *msg;

		if (!lc->tls.present || !lc->tls.valid || !lc->name)
			continue; /* no TLS, or its own errors are reported already */
		if ((t = tls_setup(lc, false, &e)) != NULL) {
			tls_free(t);
			continue;
		}
		if (e.dates && !dates)
			continue; /* the line fails alone when it is created (line.c) */
		if (asprintf(&msg, "%s:%d: line '%s': tls: %s", e.where.file, e.where.line, lc->name, e.msg) < 0)
			continue;
		char **nm = realloc(errs->msg, (size_t)(errs->n + 1) * sizeof(*nm));
		if (!nm) {
			free(msg);
			continue;
		}
		errs->msg = nm;
		errs->msg[errs->n++] = msg;
		n++;
	}
	return n;
}

SSL *
tls_ssl_new(const struct line_tls *t, const struct hostspec *host)
{
	SSL *ssl = SSL_new(t->ctx);
	struct tls_conn *tc;

	if (!ssl)
		return NULL;
	if ((tc = calloc(1, sizeof(*tc))) == NULL || !SSL_set_ex_data(ssl, tls_conn_index, tc)) {
		free(tc);
		SSL_free(ssl);
		return NULL;
	}
	if (t->server || !host)
		return ssl;
	if (host->family == AF_UNSPEC) {
		/* a name: SNI (cloud brokers host many customers on one address) */
		SSL_set_tlsext_host_name(ssl, host->name);
		if (t->verify && t->verify_host && !t->psk_mode)
			SSL_set1_host(ssl, host->name);
	} else if (t->verify && t->verify_host && !t->psk_mode) {
		X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host->name);
	}
	return ssl;
}

/* What an operator can act on, from OpenSSL's reasons and what the callbacks saw. */
static const char *
tls_advice(SSL *ssl, const char *reasons)
{
	const struct line_tls *t = ssl ? tls_of(ssl) : NULL;
	struct tls_conn *tc = ssl ? SSL_get_ex_data(ssl, tls_conn_index) : NULL;
	bool server = ssl && SSL_is_server(ssl);

	if (!t)
		return NULL;
	if (strstr(reasons, "wrong version number") || strstr(reasons, "packet length too long") ||
	    strstr(reasons, "http request") || strstr(reasons, "unknown protocol") ||
	    strstr(reasons, "record layer failure"))
		return server ? "plain TCP on a TLS line (the client does not speak TLS)" :
		    "the partner answered without TLS (a plain server on a TLS line?)";
	if (!server && tc && tc->cert_requested)
		return "the server requires a client certificate (set my_cert and my_key)";
	if (t->psk_mode && (strstr(reasons, "decrypt") || strstr(reasons, "bad record mac") ||
	    strstr(reasons, "illegal parameter") || strstr(reasons, "binder") ||
	    strstr(reasons, "psk identity") || strstr(reasons, "handshake failure") ||
	    strstr(reasons, "no shared cipher") || strstr(reasons, "no suitable")))
		return "PSK mismatch (or unknown identity)";
	if (strstr(reasons, "peer did not return a certificate") || strstr(reasons, "certificate required"))
		return server ? "no client certificate (partner_certs requires one)" :
		    "the server requires a client certificate (set my_cert and my_key)";
	return NULL;
}

bool
tls_error_text(struct bufferevent *bev, char *buf, size_t len)
{
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	struct tls_conn *tc = ssl ? SSL_get_ex_data(ssl, tls_conn_index) : NULL;
	const char *advice;
	unsigned long e;
	size_t o = 0;
	long vr;

	buf[0] = '\0';
	if (tls_refused(ssl)) {
		while (bufferevent_get_openssl_error(bev) != 0)
			;
		snprintf(buf, len, "%s", tls_refused(ssl));
		return true;
	}
	while ((e = bufferevent_get_openssl_error(bev)) != 0 && o < len) {
		const char *r = ERR_reason_error_string(e);
		if (r && !strstr(buf, r)) /* libevent also queues codes without a reason */
			o += (size_t)snprintf(buf + o, len - o, "%s%s", o ? "; " : "", r);
	}
	if (ssl && (vr = SSL_get_verify_result(ssl)) != X509_V_OK && o < len) {
		o += (size_t)snprintf(buf + o, len - o, "%s%s", o ? ": " : "",
		    vr == X509_V_ERR_APPLICATION_VERIFICATION && tls_of(ssl) && tls_of(ssl)->psk_mode ?
		    "the partner sent a certificate instead of using the PSK (PSK mismatch or unknown identity?)" :
		    X509_verify_cert_error_string(vr));
		if (tc && tc->verify_err == vr && tc->verify_subject[0] && o < len) {
			char day[32] = "";
			struct tm tm;
			time_t when = vr == X509_V_ERR_CERT_HAS_EXPIRED ? tc->verify_not_after :
			    vr == X509_V_ERR_CERT_NOT_YET_VALID ? tc->verify_not_before : 0;
			if (when && gmtime_r(&when, &tm))
				strftime(day, sizeof(day), "%Y-%m-%d %H:%M UTC", &tm);
			o += (size_t)snprintf(buf + o, len - o, " (%s%s%s)", tc->verify_subject,
			    !day[0] ? "" : vr == X509_V_ERR_CERT_HAS_EXPIRED ? ": certificate expired on " :
			    ": certificate not valid before ", day);
		}
	}
	if (tc && tc->psk_identity[0] && o < len)
		o += (size_t)snprintf(buf + o, len - o, "%sunknown PSK identity '%s'", o ? ": " : "", tc->psk_identity);
	if (!buf[0]) {
		int err = EVUTIL_SOCKET_ERROR();
		snprintf(buf, len, "%s", err ? evutil_socket_error_to_string(err) : "connection closed during the handshake");
		return false;
	}
	if ((advice = tls_advice(ssl, buf)) != NULL && !strstr(buf, advice)) {
		/* the advice first: it is what the operator acts on; OpenSSL's words after it */
		char tmp[512];
		snprintf(tmp, sizeof(tmp), "%s", buf);
		snprintf(buf, len, "%s [%s]", advice, tmp);
	}
	return true;
}

bool
tls_peer_verified(SSL *ssl)
{
	X509 *x = SSL_get0_peer_certificate(ssl);
	return x && SSL_get_verify_result(ssl) == X509_V_OK;
}

/* Was the session authenticated by a pre-shared key? TLS 1.2: a PSK cipher suite; TLS 1.3:
 * the server accepted an offered PSK (it then sends no certificate). A resumed session is
 * reported as the one it resumes. */
static bool
tls_psk_used(SSL *ssl)
{
	if (SSL_get0_peer_certificate(ssl))
		return false;
	if (SSL_version(ssl) >= TLS1_3_VERSION)
		return SSL_session_reused(ssl) == 1;
	return SSL_CIPHER_get_auth_nid(SSL_get_current_cipher(ssl)) == NID_auth_psk;
}

bool
tls_check_auth(SSL *ssl, const struct line_tls *t, char *why, size_t len)
{
	if (t->psk_mode) {
		if (tls_psk_used(ssl))
			return true;
		snprintf(why, len, "the partner did not authenticate with the PSK (%s); a PSK line accepts no other way",
		    SSL_get0_peer_certificate(ssl) ? "it sent a certificate" : "none was used");
		return false;
	}
	if (!t->verify)
		return true; /* /DC: whatever the partner presents; logged by the caller */
	if (t->server && !t->partner_certs)
		return true; /* a server without partner_certs does not authenticate clients */
	if (tls_peer_verified(ssl))
		return true;
	snprintf(why, len, "%s", SSL_get0_peer_certificate(ssl) ? "the partner's certificate is not verified" :
	    "the partner sent no certificate; a certificate line accepts no other way");
	return false;
}

char *
tls_describe(SSL *ssl, const struct line_tls *t, char *buf, size_t len)
{
	X509 *x = SSL_get0_peer_certificate(ssl);
	char subj[256] = "", alpn[280] = "";
	const unsigned char *ap;
	unsigned aplen;
	size_t n;

	if (x)
		X509_NAME_oneline(X509_get_subject_name(x), subj, sizeof(subj));
	SSL_get0_alpn_selected(ssl, &ap, &aplen);
	if (aplen)
		snprintf(alpn, sizeof(alpn), ", ALPN %.*s", (int)aplen, (const char *)ap);
	else if (t->alpn_len)
		snprintf(alpn, sizeof(alpn), ", no ALPN protocol chosen");
	if (tls_psk_used(ssl)) {
		const char *id = t->server ? SSL_get_psk_identity(ssl) : t->identity;
		snprintf(buf, len, "%s %s, PSK identity %s%s", SSL_get_version(ssl), SSL_get_cipher_name(ssl),
		    id ? id : t->identity, SSL_session_reused(ssl) && !t->psk_mode ? " (resumed)" : "");
	} else
		snprintf(buf, len, "%s %s%s%s%s%s", SSL_get_version(ssl), SSL_get_cipher_name(ssl),
		    x ? ", peer " : ", no peer certificate", subj,
		    x ? (tls_peer_verified(ssl) ? " (verified)" : " (NOT verified)") : "",
		    SSL_session_reused(ssl) ? ", resumed" : "");
	n = strlen(buf);
	if (n < len)
		snprintf(buf + n, len - n, "%s", alpn);
	return buf;
}

void
tls_log_established(SSL *ssl, const struct line_tls *t, const char *line, const char *peer)
{
	char desc[512];

	tls_describe(ssl, t, desc, sizeof(desc));
	log_info("line %s: %s: TLS established: %s", line, peer, desc);
	/* /DC: a partner that would have been refused is let in, and said so each time */
	if (!t->psk_mode && !t->verify && (!t->server || t->partner_certs) && !tls_peer_verified(ssl))
		log_warnx("line %s: %s: partner accepted UNVERIFIED (/DC): %s", line, peer,
		    SSL_get0_peer_certificate(ssl) ? X509_verify_cert_error_string(SSL_get_verify_result(ssl)) :
		    "no certificate");
}

int
tls_warn_expiry(const struct line_tls *t, const char *line, int days)
{
	int n = 0;

	for (int i = 0; t && i < t->ncerts; i++) {
		int left = tls_days_left(t->certs[i].not_after);
		if (left <= days) {
			log_warnx("line %s: tls: %s certificate %s (%s) expires in %d day%s", line, t->certs[i].role,
			    t->certs[i].subject, t->certs[i].file, left, left == 1 ? "" : "s");
			n++;
		}
	}
	return n;
}
