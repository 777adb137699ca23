/* conf.c: reads komd.conf (libconfig 1.5 syntax, with @include) and the drop-in files of
 * komd.conf.d/, validates every section against its schema table (conf_schema.c, and the
 * protocol's own tables; host lists: conf_hostlist.c), and returns the configuration as
 * plain data. It collects every error as
 * "FILE:LINE: message" instead of stopping at the first, and it never touches the
 * running daemon: reload builds a complete new config and only then swaps it in. */
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <libconfig.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "conf.h"
#include "log.h"
#include "proto.h"

#define CONF_DROPIN_DIR "komd.conf.d"
#define CONF_APPDIR "#APPDIR#"

/* ---- load context ---- */

struct conf_ctx {
	struct config *c;
	struct conf_errors *errs;
	const char *file;     /* interned: the file being read */
	const char *readpath; /* as given to config_read_file (libconfig reports it so) */
	const char *incdir;   /* libconfig names included files relative to it */
	struct conf_loc *eloc; /* where each new error is, to sort them at the end */
	int nerr0;            /* errors in errs before this load */
};

/* Start-up and reload only: running out of memory here is not worth a recovery path. */
static void *
conf_alloc(size_t n)
{
	void *p = calloc(1, n ? n : 1);

	if (!p)
		fatal("conf: calloc");
	return p;
}

static char *
conf_strdup(const char *s)
{
	char *p = strdup(s);

	if (!p)
		fatal("conf: strdup");
	return p;
}

/* Grow *arr (of elements of size sz) to hold n + 1 elements. */
static void
conf_grow(void *arr, int n, size_t sz)
{
	void **pp = arr;
	void *p = realloc(*pp, (size_t)(n + 1) * sz);

	if (!p)
		fatal("conf: realloc");
	*pp = p;
	memset((char *)p + (size_t)n * sz, 0, sz);
}

static const char *
conf_intern(struct config *c, const char *name)
{
	for (int i = 0; i < c->nfiles; i++)
		if (strcmp(c->files[i], name) == 0)
			return c->files[i];
	conf_grow(&c->files, c->nfiles, sizeof(char *));
	c->files[c->nfiles] = conf_strdup(name);
	return c->files[c->nfiles++];
}

/* libconfig 1.5 names an included file as written in @include, relative to the include
 * directory; make it a name the user can open. */
static const char *
conf_file_of(struct conf_ctx *x, const char *raw)
{
	char buf[PATH_MAX];

	if (!raw)
		return x->file;
	if (raw[0] == '/' || strcmp(raw, x->readpath) == 0 || !x->incdir || strcmp(x->incdir, ".") == 0)
		return conf_intern(x->c, raw);
	snprintf(buf, sizeof(buf), "%s/%s", x->incdir, raw);
	return conf_intern(x->c, buf);
}

static void
conf_loc_of(struct conf_ctx *x, const config_setting_t *s, struct conf_loc *loc)
{
	loc->file = conf_file_of(x, s ? config_setting_source_file(s) : NULL);
	loc->line = s ? (int)config_setting_source_line(s) : 0;
}

static void __attribute__((format(printf, 4, 0)))
conf_verrat(struct conf_ctx *x, const char *file, int line, const char *fmt, va_list ap)
{
	char msg[1024], *full;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (asprintf(&full, "%s:%d: %s", file ? file : "?", line, msg) < 0)
		fatal("conf: asprintf");
	conf_grow(&x->errs->msg, x->errs->n, sizeof(char *));
	conf_grow(&x->eloc, x->errs->n - x->nerr0, sizeof(*x->eloc));
	x->eloc[x->errs->n - x->nerr0] = (struct conf_loc){ file, line };
	x->errs->msg[x->errs->n++] = full;
}

static void __attribute__((format(printf, 3, 4)))
conf_errloc(struct conf_ctx *x, const struct conf_loc *loc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	conf_verrat(x, loc->file, loc->line, fmt, ap);
	va_end(ap);
}

static void __attribute__((format(printf, 3, 4)))
conf_err(struct conf_ctx *x, const config_setting_t *s, const char *fmt, ...)
{
	struct conf_loc loc;
	va_list ap;

	conf_loc_of(x, s, &loc);
	va_start(ap, fmt);
	conf_verrat(x, loc.file, loc.line, fmt, ap);
	va_end(ap);
}

/* Replace every #APPDIR# in s by the appdir. */
static char *
conf_subst(struct conf_ctx *x, const char *s)
{
	const char *app = x->c->appdir ? x->c->appdir : "";
	size_t al = strlen(app), kl = strlen(CONF_APPDIR), n = 0;
	const char *p;
	char *out, *o;

	for (p = s; (p = strstr(p, CONF_APPDIR)); p += kl)
		n++;
	out = o = conf_alloc(strlen(s) + n * al + 1);
	while ((p = strstr(s, CONF_APPDIR))) {
		memcpy(o, s, (size_t)(p - s));
		o += p - s;
		memcpy(o, app, al);
		o += al;
		s = p + kl;
	}
	strcpy(o, s);
	return out;
}

/* ---- generic schema validation ---- */

static const struct conf_key *
conf_key_find(const struct conf_key *keys, const char *name)
{
	for (; keys && keys->name; keys++)
		if (strcmp(keys->name, name) == 0)
			return keys;
	return NULL;
}

static void
conf_choice_list(const char *const *choices, char *buf, size_t len)
{
	size_t o = 0;

	buf[0] = '\0';
	for (int i = 0; choices && choices[i] && o < len; i++) {
		int n = snprintf(buf + o, len - o, "%s%s", i ? ", " : "", choices[i]);
		if (n < 0)
			break;
		o += (size_t)n;
	}
}

static int
conf_choice_index(const char *const *choices, const char *s)
{
	for (int i = 0; choices && choices[i]; i++)
		if (strcmp(choices[i], s) == 0)
			return i;
	return -1;
}

static bool
conf_has_range(const struct conf_key *k)
{
	return k->min < k->max;
}

/* Store one present setting s, checked against key k as type t, at base + k->off. */
static int
conf_key_set_as(struct conf_ctx *x, const config_setting_t *s, const struct conf_key *k, enum ck_type t, void *base)
{
	char *field = (char *)base + k->off;
	int st = config_setting_type(s);
	char list[256];

	switch (t) {
	case CK_BOOL:
		if (st != CONFIG_TYPE_BOOL) {
			conf_err(x, s, "'%s' must be a boolean (true or false)", k->name);
			return -1;
		}
		*(bool *)field = config_setting_get_bool(s) != 0;
		return 0;
	case CK_INT: {
		long long v;

		if (st != CONFIG_TYPE_INT && st != CONFIG_TYPE_INT64) {
			conf_err(x, s, "'%s' must be an integer", k->name);
			return -1;
		}
		v = config_setting_get_int64(s);
		if (conf_has_range(k) ? (v < k->min || v > k->max) : (v < INT_MIN || v > INT_MAX)) {
			conf_err(x, s, "'%s' must be between %.15g and %.15g, not %lld", k->name,
			    conf_has_range(k) ? k->min : INT_MIN, conf_has_range(k) ? k->max : INT_MAX, v);
			return -1;
		}
		*(int *)field = (int)v;
		return 0;
	}
	case CK_SECONDS: {
		double v;

		if (st == CONFIG_TYPE_INT || st == CONFIG_TYPE_INT64)
			v = (double)config_setting_get_int64(s);
		else if (st == CONFIG_TYPE_FLOAT)
			v = config_setting_get_float(s);
		else {
			conf_err(x, s, "'%s' must be a number of seconds", k->name);
			return -1;
		}
		if (!isfinite(v) || (conf_has_range(k) && (v < k->min || v > k->max)) || v * 1000 > INT_MAX || v < 0) {
			conf_err(x, s, "'%s' must be between %.15g and %.15g seconds, not %.15g", k->name,
			    k->min, conf_has_range(k) ? k->max : INT_MAX / 1000.0, v);
			return -1;
		}
		*(int *)field = (int)llround(v * 1000);
		return 0;
	}
	case CK_STRING:
		if (st != CONFIG_TYPE_STRING) {
			conf_err(x, s, "'%s' must be a string", k->name);
			return -1;
		}
		free(*(char **)field);
		*(char **)field = conf_subst(x, config_setting_get_string(s));
		return 0;
	case CK_CHOICE: {
		int i;

		conf_choice_list(k->choices, list, sizeof(list));
		if (st != CONFIG_TYPE_STRING) {
			conf_err(x, s, "'%s' must be a string: one of %s", k->name, list);
			return -1;
		}
		if ((i = conf_choice_index(k->choices, config_setting_get_string(s))) < 0) {
			conf_err(x, s, "'%s' must be one of %s, not '%s'", k->name, list, config_setting_get_string(s));
			return -1;
		}
		*(int *)field = i;
		return 0;
	}
	case CK_VALUE:
	case CK_END:
		break;
	}
	return 0;
}

/* The default of k (as text in the table) into base + k->off. */
static void
conf_key_default(struct conf_ctx *x, const struct conf_key *k, void *base)
{
	char *field = (char *)base + k->off;

	switch (k->type) {
	case CK_BOOL:
		*(bool *)field = strcmp(k->def, "true") == 0;
		break;
	case CK_INT:
		*(int *)field = (int)strtol(k->def, NULL, 10);
		break;
	case CK_SECONDS:
		*(int *)field = (int)llround(strtod(k->def, NULL) * 1000);
		break;
	case CK_STRING:
		*(char **)field = conf_subst(x, k->def);
		break;
	case CK_CHOICE:
		*(int *)field = conf_choice_index(k->choices, k->def);
		break;
	case CK_VALUE:
	case CK_END:
		break;
	}
}

/* Validate group grp against the core table keys (into base) and the protocol's table
 * pkeys (into pbase): unknown keys, types, ranges, defaults and required keys. CK_VALUE
 * keys are only recognised; the section's own code reads them. what names the section
 * in messages ("line 'plc1'"). Returns the number of errors. */
static int
conf_section(struct conf_ctx *x, const config_setting_t *grp, const struct conf_key *keys, void *base,
    const struct conf_key *pkeys, void *pbase, const char *what)
{
	int nerr = 0, n = config_setting_length(grp);
	const struct conf_key *tabs[2] = { keys, pkeys };
	void *bases[2] = { base, pbase };

	for (int i = 0; i < n; i++) {
		const config_setting_t *m = config_setting_get_elem(grp, (unsigned)i);
		const char *name = config_setting_name(m);
		const struct conf_key *k;
		void *b = base;

		if (!(k = conf_key_find(keys, name)) && (k = conf_key_find(pkeys, name)))
			b = pbase;
		if (!k) {
			conf_err(x, m, "unknown key '%s'%s%s", name, what ? " in " : "", what ? what : "");
			nerr++;
		} else if (k->type != CK_VALUE && conf_key_set_as(x, m, k, k->type, b) != 0)
			nerr++;
	}
	for (int t = 0; t < 2; t++)
		for (const struct conf_key *k = tabs[t]; k && k->name; k++) {
			if (config_setting_get_member(grp, k->name))
				continue;
			if (t == 1 && conf_key_find(keys, k->name))
				continue; /* the core's key of the same name wins */
			if (k->required) {
				conf_err(x, grp, "missing required key '%s'%s%s", k->name, what ? " in " : "", what ? what : "");
				nerr++;
			} else if (k->def)
				conf_key_default(x, k, bases[t]);
		}
	return nerr;
}

/* A CK_VALUE key whose value, when present, has a plain type t (optional keys without a
 * default, and keys whose default depends on other keys). 1 set, 0 absent, -1 error. */
static int
conf_opt(struct conf_ctx *x, const config_setting_t *grp, const struct conf_key *keys, const char *name,
    enum ck_type t, void *base)
{
	const config_setting_t *m = config_setting_get_member(grp, name);
	const struct conf_key *k = conf_key_find(keys, name);

	if (!m || !k)
		return 0;
	return conf_key_set_as(x, m, k, t, base) == 0 ? 1 : -1;
}

static bool
conf_keys_secret(const struct conf_key *k, const char *name)
{
	for (; k && k->name; k++)
		if (k->secret && strcmp(k->name, name) == 0)
			return true;
	return false;
}

/* Is a key of this name a secret (conf_key.secret) in any table, the core's or a protocol's?
 * By name: the tree walks below do not know which section a setting belongs to. */
static bool
conf_secret_name(const char *name)
{
	if (!name)
		return false;
	if (conf_keys_secret(conf_tls_keys, name) || conf_keys_secret(conf_line_keys, name) ||
	    conf_keys_secret(conf_station_keys, name) || conf_keys_secret(conf_tag_keys, name))
		return true;
	for (int i = 0; proto_table[i]; i++)
		if (conf_keys_secret(proto_table[i]->line_keys, name) ||
		    conf_keys_secret(proto_table[i]->station_keys, name) ||
		    conf_keys_secret(proto_table[i]->tag_keys, name))
			return true;
	return false;
}

/* Wipe every secret string (psk, a protocol's password) of a libconfig tree before it is
 * freed: the parsed configuration keeps one copy (wiped by conf_free), the tree must not
 * leave another in freed memory. (libconfig's scanner buffers are its own and are not
 * reached.) */
static void
conf_wipe_secrets(config_setting_t *s)
{
	int n = config_setting_length(s);

	if (config_setting_type(s) == CONFIG_TYPE_STRING) {
		const char *name = config_setting_name(s);
		char *v = (char *)config_setting_get_string(s);
		if (v && conf_secret_name(name))
			OPENSSL_cleanse(v, strlen(v));
		return;
	}
	for (int i = 0; i < n; i++)
		conf_wipe_secrets(config_setting_get_elem(s, (unsigned)i));
}

static void
conf_destroy(config_t *cf)
{
	conf_wipe_secrets(config_root_setting(cf));
	config_destroy(cf);
	free(cf);
}

/* ---- fingerprint: canonical text of a setting tree ---- */

struct conf_buf {
	char *p;
	size_t n, cap;
};

static void __attribute__((format(printf, 2, 3)))
conf_bprintf(struct conf_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
		va_end(ap);
		if (n < 0)
			fatal("conf: vsnprintf");
		if (b->p && b->n + (size_t)n < b->cap) {
			b->n += (size_t)n;
			return;
		}
		b->cap = (b->cap + (size_t)n + 1) * 2;
		if (!(b->p = realloc(b->p, b->cap)))
			fatal("conf: realloc");
	}
}

static void
conf_bquote(struct conf_buf *b, const char *s)
{
	conf_bprintf(b, "\"");
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			conf_bprintf(b, "\\%c", *s);
		else
			conf_bprintf(b, "%c", *s);
	}
	conf_bprintf(b, "\"");
}

static int
conf_cmp_name(const void *a, const void *b)
{
	const config_setting_t *const *x = a, *const *y = b;

	return strcmp(config_setting_name(*x), config_setting_name(*y));
}

/* Groups list their members sorted by name, so that moving a key is not a change. */
static void
conf_fp(struct conf_ctx *x, struct conf_buf *b, const config_setting_t *s)
{
	int n = config_setting_length(s);

	switch (config_setting_type(s)) {
	case CONFIG_TYPE_GROUP: {
		const config_setting_t **m = conf_alloc((size_t)n * sizeof(*m));

		for (int i = 0; i < n; i++)
			m[i] = config_setting_get_elem(s, (unsigned)i);
		qsort(m, (size_t)n, sizeof(*m), conf_cmp_name);
		conf_bprintf(b, "{");
		for (int i = 0; i < n; i++) {
			conf_bprintf(b, "%s=", config_setting_name(m[i]));
			conf_fp(x, b, m[i]);
			conf_bprintf(b, ";");
		}
		conf_bprintf(b, "}");
		free(m);
		break;
	}
	case CONFIG_TYPE_LIST:
	case CONFIG_TYPE_ARRAY:
		conf_bprintf(b, config_setting_type(s) == CONFIG_TYPE_LIST ? "(" : "[");
		for (int i = 0; i < n; i++) {
			conf_bprintf(b, i ? "," : "");
			conf_fp(x, b, config_setting_get_elem(s, (unsigned)i));
		}
		conf_bprintf(b, config_setting_type(s) == CONFIG_TYPE_LIST ? ")" : "]");
		break;
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		conf_bprintf(b, "%lld", config_setting_get_int64(s));
		break;
	case CONFIG_TYPE_FLOAT:
		conf_bprintf(b, "%.17g", config_setting_get_float(s));
		break;
	case CONFIG_TYPE_BOOL:
		conf_bprintf(b, "%s", config_setting_get_bool(s) ? "true" : "false");
		break;
	case CONFIG_TYPE_STRING: {
		char *v = conf_subst(x, config_setting_get_string(s));
		const char *name = config_setting_name(s);

		if (conf_secret_name(name)) {
			/* a secret: its digest tells a change, and the text has one copy fewer */
			unsigned char md[SHA256_DIGEST_LENGTH];

			SHA256((const unsigned char *)v, strlen(v), md);
			conf_bprintf(b, "sha256:");
			for (size_t i = 0; i < sizeof(md); i++)
				conf_bprintf(b, "%02x", md[i]);
			OPENSSL_cleanse(v, strlen(v));
		} else
			conf_bquote(b, v);
		free(v);
		break;
	}
	default:
		conf_bprintf(b, "?");
		break;
	}
}

/* ---- sections ---- */

static bool
conf_name_ok(const char *s, const char *extra, size_t max)
{
	size_t n = strlen(s);

	if (n == 0 || n > max)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr(extra, *s))
			return false;
	return true;
}

/* "line 'x'" for messages; just "line" while the name is unknown. */
static void
conf_what(char *buf, size_t len, const char *kind, const config_setting_t *grp)
{
	const char *name = NULL;

	if (config_setting_lookup_string(grp, "name", &name) && name)
		snprintf(buf, len, "%s '%s'", kind, name);
	else
		snprintf(buf, len, "%s", kind);
}

static bool
conf_is_list(const config_setting_t *s)
{
	/* an empty list may be written () or [] */
	return config_setting_type(s) == CONFIG_TYPE_LIST ||
	    (config_setting_type(s) == CONFIG_TYPE_ARRAY && config_setting_length(s) == 0);
}

/* Does the line listen (server lines: listen addresses, no backup, no simulation)? */
static bool
conf_listens(const struct line_conf *lc)
{
	return lc->ops && lc->ops->transport == PROTO_LISTEN;
}

bool
conf_tag_serves(const struct line_conf *lc, const struct tag_conf *tc)
{
	if (!lc->ops)
		return false;
	return lc->ops->tag_serves ? lc->ops->tag_serves(lc, tc) : lc->ops->transport == PROTO_LISTEN;
}

/* A libconfig value as the tag's type (memory tags' initial). */
static int
conf_initial(struct conf_ctx *x, const config_setting_t *s, struct tag_conf *tc)
{
	int st = config_setting_type(s);
	char err[256];
	long long i;

	memset(&tc->initial, 0, sizeof(tc->initial));
	tc->initial.type = tc->type;
	if (st == CONFIG_TYPE_STRING) {
		if (value_parse(tc->type, config_setting_get_string(s), &tc->initial, err, sizeof(err)) != 0) {
			conf_err(x, s, "'initial': %s", err);
			return -1;
		}
		tc->has_initial = true;
		return 0;
	}
	switch (tc->type) {
	case VT_BOOL:
		if (st == CONFIG_TYPE_BOOL)
			tc->initial.i = config_setting_get_bool(s) != 0;
		else if ((st == CONFIG_TYPE_INT || st == CONFIG_TYPE_INT64) && (i = config_setting_get_int64(s)) >= 0 && i <= 1)
			tc->initial.i = i;
		else
			goto bad;
		break;
	case VT_DPI:
		if ((st == CONFIG_TYPE_INT || st == CONFIG_TYPE_INT64) && (i = config_setting_get_int64(s)) >= 0 && i <= 3)
			tc->initial.i = i;
		else
			goto bad;
		break;
	case VT_INT:
	case VT_TIME:
		if (st == CONFIG_TYPE_INT || st == CONFIG_TYPE_INT64)
			tc->initial.i = config_setting_get_int64(s);
		else if (st == CONFIG_TYPE_FLOAT && tc->type == VT_INT) {
			double f = config_setting_get_float(s);

			/* 5.0 fits an int; 5.5 and 1e30 do not */
			if (f != floor(f) || f < -9.2e18 || f > 9.2e18)
				goto bad;
			tc->initial.i = (int64_t)f;
		} else
			goto bad;
		break;
	case VT_FLOAT:
		if (st == CONFIG_TYPE_FLOAT)
			tc->initial.f = config_setting_get_float(s);
		else if (st == CONFIG_TYPE_INT || st == CONFIG_TYPE_INT64)
			tc->initial.f = (double)config_setting_get_int64(s);
		else
			goto bad;
		break;
	case VT_STRING:
		goto bad;
	}
	tc->has_initial = true;
	return 0;
bad:
	conf_err(x, s, "'initial' does not fit type %s", vtype_name(tc->type));
	return -1;
}

/* One tag group; sc NULL for a memory tag. */
static void
conf_tag(struct conf_ctx *x, const struct line_conf *lc, struct station_conf *sc, const config_setting_t *grp)
{
	const struct proto_ops *ops = lc ? lc->ops : NULL;
	const struct conf_key *pkeys = sc && ops ? ops->tag_keys : NULL;
	const config_setting_t *m;
	struct tag_conf tc;
	char what[200];
	int r;

	memset(&tc, 0, sizeof(tc));
	conf_loc_of(x, grp, &tc.loc);
	if (config_setting_type(grp) != CONFIG_TYPE_GROUP) {
		conf_err(x, grp, "each tag must be a group { ... }");
		return;
	}
	conf_what(what, sizeof(what), "tag", grp);
	if (pkeys)
		tc.pconf = conf_alloc(ops->tag_conf_size);
	conf_section(x, grp, conf_tag_keys, &tc, pkeys, tc.pconf, what);
	if (tc.name && !conf_name_ok(tc.name, "_.:-", 127))
		conf_err(x, config_setting_get_member(grp, "name"),
		    "tag name '%s' must be 1..127 letters, digits, '_', '.', ':' or '-'", tc.name);

	r = conf_opt(x, grp, conf_tag_keys, "address", CK_STRING, &tc);
	if (r == 1 && !sc)
		conf_err(x, config_setting_get_member(grp, "address"), "'address' is not allowed on memory tags");
	else if (r == 0 && sc && !sc->simulation && !(lc->ops && lc->ops->address_optional))
		conf_err(x, grp, "missing required key 'address' in %s", what);

	if ((m = config_setting_get_member(grp, "type"))) {
		char list[128];

		conf_choice_list(vtype_names, list, sizeof(list));
		if (config_setting_type(m) != CONFIG_TYPE_STRING || vtype_parse(config_setting_get_string(m), &tc.type) != 0)
			conf_err(x, m, "'type' must be one of %s", list);
		else
			tc.has_type = true;
	} else if (!sc || !conf_tag_serves(lc, &tc))
		conf_err(x, grp, "missing required key 'type' in %s", what);

	if ((m = config_setting_get_member(grp, "initial"))) {
		if (sc)
			conf_err(x, m, "'initial' is only allowed on memory tags");
		else if (tc.has_type)
			conf_initial(x, m, &tc);
	}

	if (sc) {
		conf_grow(&sc->tags, sc->ntags, sizeof(tc));
		sc->tags[sc->ntags++] = tc;
	} else {
		conf_grow(&x->c->tags, x->c->ntags, sizeof(tc));
		x->c->tags[x->c->ntags++] = tc;
	}
}

static void
conf_station(struct conf_ctx *x, struct line_conf *lc, const config_setting_t *grp)
{
	const struct conf_key *pkeys = lc->ops ? lc->ops->station_keys : NULL;
	const config_setting_t *m;
	struct station_conf sc;
	char what[200];

	memset(&sc, 0, sizeof(sc));
	conf_loc_of(x, grp, &sc.loc);
	if (config_setting_type(grp) != CONFIG_TYPE_GROUP) {
		conf_err(x, grp, "each station must be a group { ... }");
		return;
	}
	conf_what(what, sizeof(what), "station", grp);
	if (pkeys)
		sc.pconf = conf_alloc(lc->ops->station_conf_size);
	conf_section(x, grp, conf_station_keys, &sc, pkeys, sc.pconf, what);
	if (sc.name && !conf_name_ok(sc.name, "_.-", 127))
		conf_err(x, config_setting_get_member(grp, "name"),
		    "station name '%s' must be 1..127 letters, digits, '_', '.' or '-'", sc.name);
	for (int i = 0; sc.name && i < lc->nstations; i++)
		if (lc->stations[i].name && strcmp(lc->stations[i].name, sc.name) == 0)
			conf_errloc(x, &sc.loc, "station '%s' already defined in line '%s' at %s:%d", sc.name,
			    lc->name ? lc->name : "", lc->stations[i].loc.file, lc->stations[i].loc.line);

	if (sc.simulation && conf_listens(lc))
		conf_err(x, config_setting_get_member(grp, "simulation"), "simulation is only for client protocols");

	if ((m = config_setting_get_member(grp, "address"))) {
		int st = config_setting_type(m);

		if (st == CONFIG_TYPE_INT || st == CONFIG_TYPE_INT64) {
			if (asprintf(&sc.address, "%lld", config_setting_get_int64(m)) < 0)
				fatal("conf: asprintf");
		} else if (st == CONFIG_TYPE_STRING)
			sc.address = conf_strdup(config_setting_get_string(m));
		else
			conf_err(x, m, "'address' must be an integer or a string");
	} else if (!sc.simulation && !(lc->ops && lc->ops->address_optional))
		conf_err(x, grp, "missing required key 'address' in %s", what);

	if (sc.period_ms && sc.delay_ms)
		conf_errloc(x, &sc.loc, "%s: 'period' and 'delay' exclude each other", what);
	if (sc.continuous && (sc.period_ms || sc.delay_ms))
		conf_errloc(x, &sc.loc, "%s: 'continuous' excludes 'period' and 'delay'", what);
	if (sc.offset_ms && !sc.period_ms)
		conf_err(x, config_setting_get_member(grp, "offset"), "'offset' needs 'period'");
	else if (sc.period_ms && sc.offset_ms >= sc.period_ms)
		conf_err(x, config_setting_get_member(grp, "offset"), "'offset' must be less than 'period'");

	if ((m = config_setting_get_member(grp, "tags"))) {
		if (!conf_is_list(m))
			conf_err(x, m, "'tags' must be a list of groups: ( { ... }, ... )");
		else
			for (int i = 0; i < config_setting_length(m); i++)
				conf_tag(x, lc, &sc, config_setting_get_elem(m, (unsigned)i));
	}
	if (lc->ops && lc->ops->station_needs_trigger && !sc.simulation && !sc.period_ms && !sc.delay_ms &&
	    !sc.continuous) {
		bool inputs = false;
		for (int i = 0; i < sc.ntags; i++)
			inputs = inputs || sc.tags[i].dir != TD_OUT;
		if (inputs)
			conf_errloc(x, &sc.loc, "%s: a %s station reads its device only when polled: set 'period', "
			    "'delay' or 'continuous'", what, lc->ops->name);
	}
	conf_grow(&lc->stations, lc->nstations, sizeof(sc));
	lc->stations[lc->nstations++] = sc;
}

/* Files named in the tls group must be readable now, not at the first connect. */
static void
conf_tls_file(struct conf_ctx *x, const config_setting_t *grp, const char *key, const char *path)
{
	if (access(path, R_OK) != 0)
		conf_err(x, config_setting_get_member(grp, key), "'%s': cannot read '%s': %s", key, path, strerror(errno));
}

/* A secret's file (a private key; the file that holds a psk) that others than its owner and
 * group may read: a warning naming it, as ssh gives for its keys. */
static void
conf_secret_mode(struct conf_loc loc, const char *what, const char *file)
{
	struct stat st;

	if (file && stat(file, &st) == 0 && (st.st_mode & (S_IROTH | S_IWOTH)))
		log_warnx("%s:%d: %s: '%s' is readable by others (mode %04o): chmod o-rwx it", loc.file, loc.line, what,
		    file, (unsigned)(st.st_mode & 07777));
}

/* A comma-separated list of files (partner_certs, crl): each named and readable. */
static void
conf_tls_files(struct conf_ctx *x, const config_setting_t *grp, const char *key, const char *files)
{
	char *list, *save = NULL;

	if (!files)
		return;
	list = conf_strdup(files);
	for (char *f = strtok_r(list, ",", &save); f; f = strtok_r(NULL, ",", &save)) {
		while (isspace((unsigned char)*f))
			f++;
		for (char *e = f + strlen(f); e > f && isspace((unsigned char)e[-1]); )
			*--e = '\0';
		if (*f == '\0')
			conf_err(x, config_setting_get_member(grp, key), "'%s': empty file name", key);
		else
			conf_tls_file(x, grp, key, f);
	}
	free(list);
}

static void
conf_tls(struct conf_ctx *x, struct line_conf *lc, const config_setting_t *grp, const char *lwhat)
{
	char what[240];
	struct tls_conf *t = &lc->tls;
	const config_setting_t *m;

	snprintf(what, sizeof(what), "tls of %s", lwhat);
	if (config_setting_type(grp) != CONFIG_TYPE_GROUP) {
		conf_err(x, grp, "'tls' must be a group { ... }");
		return;
	}
	int n0 = x->errs->n;

	t->present = true;
	conf_section(x, grp, conf_tls_keys, t, NULL, NULL, what);
	conf_loc_of(x, grp, &t->loc);
	t->loc_partner_certs = t->loc_my_cert = t->loc_my_key = t->loc_psk = t->loc;

	if ((m = config_setting_get_member(grp, "partner_certs")))
		conf_loc_of(x, m, &t->loc_partner_certs);
	if ((m = config_setting_get_member(grp, "my_cert")))
		conf_loc_of(x, m, &t->loc_my_cert);
	if ((m = config_setting_get_member(grp, "my_key")))
		conf_loc_of(x, m, &t->loc_my_key);
	if ((m = config_setting_get_member(grp, "psk")))
		conf_loc_of(x, m, &t->loc_psk);
	t->loc_crl = t->loc;
	if ((m = config_setting_get_member(grp, "crl")))
		conf_loc_of(x, m, &t->loc_crl);
	if (!!t->my_cert != !!t->my_key)
		conf_err(x, grp, "%s: 'my_cert' and 'my_key' go together", what);
	if (t->min_version > t->max_version)
		conf_err(x, grp, "%s: 'min_version' is above 'max_version'", what);
	if (!t->my_cert && !t->partner_certs && !t->psk)
		conf_err(x, grp, "%s: set 'partner_certs' and/or 'my_cert' and 'my_key' (certificates), "
		    "or 'psk' (pre-shared key)", what);
	if (t->psk && !t->my_cert && !t->partner_certs && strncmp(t->psk, "text:", 5) != 0) {
		size_t n = strlen(t->psk);
		bool hex = n > 0 && n % 2 == 0 && n <= 512;
		for (size_t i = 0; hex && i < n; i++)
			hex = isxdigit((unsigned char)t->psk[i]) != 0;
		if (!hex)
			conf_err(x, config_setting_get_member(grp, "psk"),
			    "'psk' must be an even number of hex digits (at most 256 bytes), or \"text:...\"");
	}
	if (t->psk && strncmp(t->psk, "text:", 5) == 0 && (t->psk[5] == '\0' || strlen(t->psk + 5) > 256))
		conf_err(x, config_setting_get_member(grp, "psk"), "'psk': text key must be 1..256 characters");
	if (t->my_cert)
		conf_tls_file(x, grp, "my_cert", t->my_cert);
	if (t->my_key) {
		conf_tls_file(x, grp, "my_key", t->my_key);
		conf_secret_mode(t->loc_my_key, "my_key: private key", t->my_key);
	}
	if (t->psk)
		conf_secret_mode(t->loc_psk, "psk", t->loc_psk.file);
	conf_tls_files(x, grp, "partner_certs", t->partner_certs);
	conf_tls_files(x, grp, "crl", t->crl);
	if (t->crl && !t->partner_certs)
		conf_err(x, config_setting_get_member(grp, "crl"), "%s: 'crl' needs 'partner_certs' (the issuers "
		    "whose revocations it lists)", what);
	t->valid = x->errs->n == n0;
}

static void
conf_backup(struct conf_ctx *x, struct line_conf *lc, const config_setting_t *grp, const char *lwhat)
{
	const config_setting_t *m;
	char what[240], err[256];

	snprintf(what, sizeof(what), "backup of %s", lwhat);
	if (config_setting_type(grp) != CONFIG_TYPE_GROUP) {
		conf_err(x, grp, "'backup' must be a group { ... }");
		return;
	}
	lc->backup_present = true;
	conf_section(x, grp, conf_backup_keys, lc, NULL, NULL, what);
	if (conf_opt(x, grp, conf_backup_keys, "port", CK_INT, lc) == 0)
		lc->backup_port = lc->port;
	if (!(m = config_setting_get_member(grp, "host")))
		conf_err(x, grp, "missing required key 'host' in %s", what);
	else if (config_setting_type(m) != CONFIG_TYPE_STRING)
		conf_err(x, m, "'host' must be a string");
	else if (conf_parse_hostlist(config_setting_get_string(m), false, &lc->backup_hosts, err, sizeof(err)) != 0)
		conf_err(x, m, "'host': %s", err);
}

/* The http section: listen addresses as on server lines, its keys, the auth file readable. */
static void
conf_http(struct conf_ctx *x, const config_setting_t *grp)
{
	struct http_conf *h = &x->c->http;
	const config_setting_t *m;
	const char *hosts = "127.0.0.1";
	char err[256];

	if (config_setting_type(grp) != CONFIG_TYPE_GROUP) {
		conf_err(x, grp, "'http' must be a group { ... }");
		return;
	}
	h->present = true;
	conf_loc_of(x, grp, &h->loc);
	conf_section(x, grp, conf_http_keys, h, NULL, NULL, "http");
	if ((m = config_setting_get_member(grp, "host"))) {
		if (config_setting_type(m) != CONFIG_TYPE_STRING) {
			conf_err(x, m, "'host' must be a string");
			return;
		}
		hosts = config_setting_get_string(m);
	}
	if (conf_parse_hostlist(hosts, true, &h->hosts, err, sizeof(err)) != 0)
		conf_err(x, m ? m : grp, "'host': %s", err);
	if ((m = config_setting_get_member(grp, "tls"))) {
		/* TLS as tls.c builds it for a server line: by the transport of its ops */
		static const struct proto_ops http_ops = { .name = "http", .transport = PROTO_LISTEN };

		h->tls_line.name = (char *)"http";
		h->tls_line.ops = &http_ops;
		h->tls_line.loc = h->loc;
		conf_tls(x, &h->tls_line, m, "http");
	}
	if (h->auth_file) {
		struct conf_loc loc;

		conf_loc_of(x, config_setting_get_member(grp, "auth_file"), &loc);
		conf_tls_file(x, grp, "auth_file", h->auth_file);
		conf_secret_mode(loc, "auth_file: password hashes", h->auth_file);
	}
}

static void
conf_line(struct conf_ctx *x, const config_setting_t *grp)
{
	const config_setting_t *m;
	struct line_conf lc;
	char what[200], err[256];
	const char *proto;
	struct conf_buf fp = { 0 };

	memset(&lc, 0, sizeof(lc));
	conf_loc_of(x, grp, &lc.loc);
	if (config_setting_type(grp) != CONFIG_TYPE_GROUP) {
		conf_err(x, grp, "each line must be a group { ... }");
		return;
	}
	conf_what(what, sizeof(what), "line", grp);

	/* the protocol first: its table completes the line's schema */
	if (config_setting_lookup_string(grp, "protocol", &proto) && !(lc.ops = proto_find(proto))) {
		char list[512];
		size_t o = 0;

		list[0] = '\0';
		for (int i = 0; proto_table[i] && o < sizeof(list); i++)
			o += (size_t)snprintf(list + o, sizeof(list) - o, "%s%s", i ? ", " : "", proto_table[i]->name);
		conf_err(x, config_setting_get_member(grp, "protocol"), "unknown protocol '%s' (known: %s)", proto, list);
	}
	if (lc.ops && lc.ops->line_keys)
		lc.pconf = conf_alloc(lc.ops->line_conf_size);
	conf_section(x, grp, conf_line_keys, &lc, lc.ops ? lc.ops->line_keys : NULL, lc.pconf, what);
	if (lc.name && !conf_name_ok(lc.name, "_.-", SIZE_MAX))
		conf_err(x, config_setting_get_member(grp, "name"),
		    "line name '%s' must be letters, digits, '_', '.' or '-'", lc.name);

	if ((m = config_setting_get_member(grp, "host"))) {
		if (config_setting_type(m) != CONFIG_TYPE_STRING)
			conf_err(x, m, "'host' must be a string");
		else if (conf_parse_hostlist(config_setting_get_string(m), conf_listens(&lc), &lc.hosts, err, sizeof(err)) != 0)
			conf_err(x, m, "'host': %s", err);
	} else if (conf_listens(&lc))
		conf_parse_hostlist("*", true, &lc.hosts, err, sizeof(err));
	else if (lc.ops)
		conf_err(x, grp, "missing required key 'host' in %s", what);

	if ((m = config_setting_get_member(grp, "allow"))) {
		if (config_setting_type(m) != CONFIG_TYPE_STRING)
			conf_err(x, m, "'allow' must be a string");
		else if (lc.ops && !conf_listens(&lc))
			conf_err(x, m, "'allow' is only for server lines (the clients that may connect)");
		else if (conf_parse_addrlist(config_setting_get_string(m), &lc.allow, err, sizeof(err)) != 0)
			conf_err(x, m, "'allow': %s", err);
	}

	if (lc.reconnect_max_ms < lc.reconnect_delay_ms)
		conf_err(x, config_setting_get_member(grp, "reconnect_max") ? config_setting_get_member(grp, "reconnect_max") : grp,
		    "'reconnect_max' must not be less than 'reconnect_delay'");

	if ((m = config_setting_get_member(grp, "backup"))) {
		if (conf_listens(&lc))
			conf_err(x, m, "a backup is only for client protocols");
		else if (lc.type != LINE_TCP_REDUNDANT)
			conf_err(x, m, "'backup' is only allowed when type is tcp-redundant");
		else
			conf_backup(x, &lc, m, what);
	} else if (lc.type == LINE_TCP_REDUNDANT && lc.ops && !conf_listens(&lc))
		conf_err(x, grp, "%s: type tcp-redundant needs a backup group", what);
	if (lc.type == LINE_TCP_REDUNDANT && conf_listens(&lc))
		conf_err(x, config_setting_get_member(grp, "type"), "type tcp-redundant is only for client protocols");

	if ((m = config_setting_get_member(grp, "tls")))
		conf_tls(x, &lc, m, what);

	if ((m = config_setting_get_member(grp, "stations"))) {
		if (!conf_is_list(m))
			conf_err(x, m, "'stations' must be a list of groups: ( { ... }, ... )");
		else
			for (int i = 0; i < config_setting_length(m); i++)
				conf_station(x, &lc, config_setting_get_elem(m, (unsigned)i));
	}

	conf_fp(x, &fp, grp);
	lc.fingerprint = fp.p;
	conf_grow(&x->c->lines, x->c->nlines, sizeof(lc));
	x->c->lines[x->c->nlines++] = lc;
}

/* lines and tags of one file's top level. */
static void
conf_lists(struct conf_ctx *x, const config_setting_t *root)
{
	const config_setting_t *m;

	if ((m = config_setting_get_member(root, "lines"))) {
		if (!conf_is_list(m))
			conf_err(x, m, "'lines' must be a list of groups: ( { ... }, ... )");
		else
			for (int i = 0; i < config_setting_length(m); i++)
				conf_line(x, config_setting_get_elem(m, (unsigned)i));
	}
	if ((m = config_setting_get_member(root, "tags"))) {
		if (!conf_is_list(m))
			conf_err(x, m, "'tags' must be a list of groups: ( { ... }, ... )");
		else
			for (int i = 0; i < config_setting_length(m); i++)
				conf_tag(x, NULL, NULL, config_setting_get_elem(m, (unsigned)i));
	}
}

/* Parse one file; NULL after reporting a syntax error. */
static config_t *
conf_read(struct conf_ctx *x, const char *path, const char *dir)
{
	config_t *cf = conf_alloc(sizeof(*cf));

	config_init(cf);
	config_set_include_dir(cf, dir);
	x->readpath = path;
	x->incdir = dir;
	x->file = conf_intern(x->c, path);
	errno = 0;
	if (!config_read_file(cf, path)) {
		const char *ef = config_error_file(cf);
		int line = config_error_line(cf);
		struct conf_loc loc = { conf_file_of(x, ef), line };

		/* a missing main or drop-in file has no line; an @include that fails has one */
		if (config_error_type(cf) == CONFIG_ERR_FILE_IO && line == 0)
			conf_errloc(x, &loc, "cannot read: %s", strerror(errno ? errno : ENOENT));
		else
			conf_errloc(x, &loc, "%s", config_error_text(cf) ? config_error_text(cf) : "syntax error");
		config_destroy(cf);
		free(cf);
		return NULL;
	}
	return cf;
}

/* The directory part of path ("." when there is none). */
static char *
conf_dirname(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return conf_strdup(".");
	if (slash == path)
		return conf_strdup("/");
	return strndup(path, (size_t)(slash - path));
}

static void
conf_main(struct conf_ctx *x, const char *path, const char *dir)
{
	config_t *cf = conf_read(x, path, dir);
	const config_setting_t *root = cf ? config_root_setting(cf) : NULL, *m;
	char abs[PATH_MAX];
	struct config *c = x->c;

	/* appdir first: every other string may contain #APPDIR# */
	if (!realpath(dir, abs))
		snprintf(abs, sizeof(abs), "%s", dir);
	if (root && (m = config_setting_get_member(root, "appdir"))) {
		if (config_setting_type(m) != CONFIG_TYPE_STRING)
			conf_err(x, m, "'appdir' must be a string");
		else if (config_setting_get_string(m)[0] == '/')
			c->appdir = conf_strdup(config_setting_get_string(m));
		else if (asprintf(&c->appdir, "%s/%s", abs, config_setting_get_string(m)) < 0)
			fatal("conf: asprintf");
	}
	if (!c->appdir)
		c->appdir = conf_strdup(abs);
	if (root) {
		conf_section(x, root, conf_global_keys, c, NULL, NULL, NULL);
		if ((m = config_setting_get_member(root, "http")))
			conf_http(x, m);
		conf_lists(x, root);
	} else {
		for (const struct conf_key *k = conf_global_keys; k->name; k++)
			if (k->def)
				conf_key_default(x, k, c);
	}
	if (cf)
		conf_destroy(cf);
}

static int
conf_cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every *.conf of dir/komd.conf.d, in name order; each may hold only lines and tags. */
static void
conf_dropins(struct conf_ctx *x, const char *dir)
{
	char *ddir, **names = NULL;
	int n = 0;
	DIR *d;
	struct dirent *de;

	if (asprintf(&ddir, "%s/%s", dir, CONF_DROPIN_DIR) < 0)
		fatal("conf: asprintf");
	if (!(d = opendir(ddir))) {
		if (errno != ENOENT) {
			struct conf_loc loc = { conf_intern(x->c, ddir), 0 };

			conf_errloc(x, &loc, "cannot read directory: %s", strerror(errno));
		}
		free(ddir);
		return;
	}
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);

		/* hidden files are editor and package-manager leftovers */
		if (de->d_name[0] == '.' || len < 6 || strcmp(de->d_name + len - 5, ".conf") != 0)
			continue;
		conf_grow(&names, n, sizeof(char *));
		names[n++] = conf_strdup(de->d_name);
	}
	closedir(d);
	if (n > 1) /* qsort(NULL, 0) is undefined */
		qsort(names, (size_t)n, sizeof(char *), conf_cmp_str);
	for (int i = 0; i < n; i++) {
		char *path;
		config_t *cf;

		if (asprintf(&path, "%s/%s", ddir, names[i]) < 0)
			fatal("conf: asprintf");
		if ((cf = conf_read(x, path, ddir))) {
			const config_setting_t *root = config_root_setting(cf);

			for (int k = 0; k < config_setting_length(root); k++) {
				const config_setting_t *m = config_setting_get_elem(root, (unsigned)k);
				const char *name = config_setting_name(m);

				if (strcmp(name, "lines") != 0 && strcmp(name, "tags") != 0)
					conf_err(x, m, "'%s' is not allowed in %s/ (only lines and tags)", name, CONF_DROPIN_DIR);
			}
			conf_lists(x, root);
			conf_destroy(cf);
		}
		free(path);
		free(names[i]);
	}
	free(names);
	free(ddir);
}

/* ---- cross checks, once every file is read ---- */

struct conf_def {
	const struct tag_conf *tc;
	int fileidx;
};

static int
conf_file_index(const struct config *c, const char *f)
{
	for (int i = 0; i < c->nfiles; i++)
		if (c->files[i] == f)
			return i;
	return c->nfiles;
}

/* Definitions in reading order, so that the second one is the error. */
static int
conf_cmp_def(const void *a, const void *b)
{
	const struct conf_def *x = a, *y = b;

	if (x->fileidx != y->fileidx)
		return x->fileidx < y->fileidx ? -1 : 1;
	if (x->tc->loc.line != y->tc->loc.line)
		return x->tc->loc.line < y->tc->loc.line ? -1 : 1;
	return 0;
}

/* Open-addressing index of tag definitions; cap is a power of two > 2 * entries. */
struct conf_index {
	const struct tag_conf **slot;
	size_t cap;
};

static const struct tag_conf *
conf_index_find(const struct conf_index *ix, const char *name)
{
	for (size_t i = str_hash(name) & (ix->cap - 1); ix->slot[i]; i = (i + 1) & (ix->cap - 1))
		if (strcmp(ix->slot[i]->name, name) == 0)
			return ix->slot[i];
	return NULL;
}

static void
conf_index_add(struct conf_index *ix, const struct tag_conf *tc)
{
	size_t i = str_hash(tc->name) & (ix->cap - 1);

	while (ix->slot[i])
		i = (i + 1) & (ix->cap - 1);
	ix->slot[i] = tc;
}

static void
conf_check(struct conf_ctx *x)
{
	struct config *c = x->c;
	struct conf_def *defs;
	struct conf_index ix = { NULL, 1 };
	int ndefs = 0, total = c->ntags;
	char err[512];

	for (int i = 0; i < c->nlines; i++) {
		const struct line_conf *lc = &c->lines[i];

		for (int j = 0; j < i; j++)
			if (lc->name && c->lines[j].name && strcmp(lc->name, c->lines[j].name) == 0) {
				conf_errloc(x, &lc->loc, "line '%s' already defined at %s:%d", lc->name,
				    c->lines[j].loc.file, c->lines[j].loc.line);
				break;
			}
		for (int s = 0; s < lc->nstations; s++)
			total += lc->stations[s].ntags;
	}

	defs = conf_alloc((size_t)total * sizeof(*defs));
	for (int i = 0; i < c->nlines; i++)
		for (int s = 0; c->lines[i].ops && s < c->lines[i].nstations; s++)
			for (int t = 0; t < c->lines[i].stations[s].ntags; t++)
				if (!conf_tag_serves(&c->lines[i], &c->lines[i].stations[s].tags[t]))
					defs[ndefs++].tc = &c->lines[i].stations[s].tags[t];
	for (int t = 0; t < c->ntags; t++)
		defs[ndefs++].tc = &c->tags[t];
	for (int i = 0; i < ndefs; i++)
		defs[i].fileidx = conf_file_index(c, defs[i].tc->loc.file);
	qsort(defs, (size_t)ndefs, sizeof(*defs), conf_cmp_def);

	while (ix.cap < 2 * (size_t)ndefs + 2)
		ix.cap <<= 1;
	ix.slot = conf_alloc(ix.cap * sizeof(*ix.slot));
	for (int i = 0; i < ndefs; i++) {
		const struct tag_conf *tc = defs[i].tc, *first;

		if (!tc->name)
			continue;
		if ((first = conf_index_find(&ix, tc->name)))
			conf_errloc(x, &tc->loc, "tag '%s' already defined at %s:%d", tc->name, first->loc.file, first->loc.line);
		else
			conf_index_add(&ix, tc);
	}

	/* served tags take the type of the tag they serve; then the protocol's checks */
	for (int i = 0; i < c->nlines; i++) {
		struct line_conf *lc = &c->lines[i];

		if (!lc->ops)
			continue;
		for (int s = 0; s < lc->nstations; s++) {
			struct station_conf *sc = &lc->stations[s];

			for (int t = 0; t < sc->ntags; t++) {
				struct tag_conf *tc = &sc->tags[t];
				const struct tag_conf *def;

				if (!tc->name)
					continue;
				bool serves = conf_tag_serves(lc, tc);
				if (serves) {
					if (!(def = conf_index_find(&ix, tc->name))) {
						conf_errloc(x, &tc->loc, "tag '%s' is not defined", tc->name);
						continue;
					}
					if (!tc->has_type)
						tc->type = def->type;
					else if (tc->type != def->type) {
						conf_errloc(x, &tc->loc, "tag '%s' is %s where it is defined at %s:%d, not %s",
						    tc->name, vtype_name(def->type), def->loc.file, def->loc.line, vtype_name(tc->type));
						continue;
					}
				}
				if (!tc->has_type && !serves)
					continue; /* its missing type is the error: nothing follows from a guess */
				err[0] = '\0';
				if (lc->ops->check_tag && lc->ops->check_tag(sc, tc, err, sizeof(err)) != 0)
					conf_errloc(x, &tc->loc, "tag '%s': %s", tc->name, err[0] ? err : "rejected by the protocol");
			}
			err[0] = '\0';
			if (lc->ops->check_station && lc->ops->check_station(sc, err, sizeof(err)) != 0)
				conf_errloc(x, &sc->loc, "station '%s': %s", sc->name ? sc->name : "",
				    err[0] ? err : "rejected by the protocol");
		}
		err[0] = '\0';
		int rc = lc->ops->check_line ? lc->ops->check_line(lc, err, sizeof(err)) : 0;
		if (rc < 0)
			conf_errloc(x, &lc->loc, "line '%s': %s", lc->name ? lc->name : "", err[0] ? err : "rejected by the protocol");
		else if (rc > 0)
			log_warnx("%s:%d: line '%s': %s", lc->loc.file, lc->loc.line, lc->name ? lc->name : "", err);
	}
	free(ix.slot);
	free(defs);
}

/* Errors in file order (files in reading order, then lines), whichever check found them. */
struct conf_esort {
	int fileidx, line, seq;
	char *msg;
};

static int
conf_cmp_err(const void *a, const void *b)
{
	const struct conf_esort *x = a, *y = b;

	if (x->fileidx != y->fileidx)
		return x->fileidx < y->fileidx ? -1 : 1;
	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void
conf_sort_errors(struct conf_ctx *x)
{
	int n = x->errs->n - x->nerr0;
	struct conf_esort *e = conf_alloc((size_t)n * sizeof(*e));

	for (int i = 0; i < n; i++) {
		e[i].fileidx = conf_file_index(x->c, x->eloc[i].file);
		e[i].line = x->eloc[i].line;
		e[i].seq = i;
		e[i].msg = x->errs->msg[x->nerr0 + i];
	}
	qsort(e, (size_t)n, sizeof(*e), conf_cmp_err);
	for (int i = 0; i < n; i++)
		x->errs->msg[x->nerr0 + i] = e[i].msg;
	free(e);
}

struct config *
conf_load(const char *path, struct conf_errors *errs)
{
	int n0 = errs->n;
	struct config *c = conf_load_keep(path, errs);

	if (errs->n != n0) {
		conf_free(c);
		return NULL;
	}
	return c;
}

struct config *
conf_load_keep(const char *path, struct conf_errors *errs)
{
	struct conf_ctx x;
	char *dir = conf_dirname(path);

	memset(&x, 0, sizeof(x));
	x.errs = errs;
	x.nerr0 = errs->n;
	x.c = conf_alloc(sizeof(*x.c));
	x.c->path = conf_strdup(path);
	conf_main(&x, path, dir);
	conf_dropins(&x, dir);
	conf_check(&x);
	free(dir);
	conf_sort_errors(&x);
	free(x.eloc);
	return x.c;
}

/* ---- lookups and teardown ---- */

const struct line_conf *
conf_find_line(const struct config *c, const char *name)
{
	for (int i = 0; i < c->nlines; i++)
		if (strcmp(c->lines[i].name, name) == 0)
			return &c->lines[i];
	return NULL;
}

const struct tag_conf *
conf_find_tag(const struct config *c, const char *name)
{
	for (int t = 0; t < c->ntags; t++)
		if (strcmp(c->tags[t].name, name) == 0)
			return &c->tags[t];
	for (int i = 0; i < c->nlines; i++)
		for (int s = 0; c->lines[i].ops && s < c->lines[i].nstations; s++)
			for (int t = 0; t < c->lines[i].stations[s].ntags; t++)
				if (strcmp(c->lines[i].stations[s].tags[t].name, name) == 0 &&
				    !conf_tag_serves(&c->lines[i], &c->lines[i].stations[s].tags[t]))
					return &c->lines[i].stations[s].tags[t];
	return NULL;
}

/* Every string of a section: the CK_STRING keys of its table, whatever the section. */
void
conf_free_strings(const struct conf_key *keys, void *base)
{
	for (; base && keys && keys->name; keys++)
		if (keys->type == CK_STRING) {
			char *v = *(char **)((char *)base + keys->off);
			if (v && keys->secret)
				OPENSSL_cleanse(v, strlen(v));
			free(v);
		}
}

/* The protocol's strings in pconf, then pconf itself. */
static void
conf_free_pconf(const struct conf_key *keys, void *pconf)
{
	conf_free_strings(keys, pconf);
	free(pconf);
}

static void
conf_free_tag(const struct proto_ops *ops, struct tag_conf *tc)
{
	conf_free_strings(conf_tag_keys, tc);
	free(tc->address);    /* CK_VALUE: a string or a number in the file */
	value_clear(&tc->initial);
	conf_free_pconf(ops ? ops->tag_keys : NULL, tc->pconf);
}

void
conf_free(struct config *c)
{
	if (!c)
		return;
	for (int i = 0; i < c->nlines; i++) {
		struct line_conf *lc = &c->lines[i];

		for (int s = 0; s < lc->nstations; s++) {
			struct station_conf *sc = &lc->stations[s];

			for (int t = 0; t < sc->ntags; t++)
				conf_free_tag(lc->ops, &sc->tags[t]);
			free(sc->tags);
			conf_free_strings(conf_station_keys, sc);
			free(sc->address);    /* CK_VALUE: a string or a number in the file */
			conf_free_pconf(lc->ops ? lc->ops->station_keys : NULL, sc->pconf);
		}
		free(lc->stations);
		conf_free_strings(conf_line_keys, lc);
		conf_free_strings(conf_tls_keys, &lc->tls); /* the psk wiped (conf_key.secret) */
		conf_free_pconf(lc->ops ? lc->ops->line_keys : NULL, lc->pconf);
		free(lc->fingerprint);
	}
	free(c->lines);
	for (int t = 0; t < c->ntags; t++)
		conf_free_tag(NULL, &c->tags[t]);
	free(c->tags);
	for (int i = 0; i < c->nfiles; i++)
		free(c->files[i]);
	free(c->files);
	free(c->path);
	free(c->appdir);      /* CK_VALUE: relative to the main file */
	conf_free_strings(conf_global_keys, c);
	conf_free_strings(conf_http_keys, &c->http);
	conf_free_strings(conf_tls_keys, &c->http.tls_line.tls);
	free(c);
}

void
conf_errors_clear(struct conf_errors *errs)
{
	for (int i = 0; i < errs->n; i++)
		free(errs->msg[i]);
	free(errs->msg);
	errs->msg = NULL;
	errs->n = 0;
}
