/* value.c: typed tag values, their text form (for komctl, the config and text protocols)
 * and their JSON form. Times are ISO 8601 (RFC 3339 profile) in UTC with milliseconds. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <jansson.h>

#include "log.h"
#include "value.h"

const char *const vtype_names[] = { VTYPE_NAME_LIST, NULL };

uint32_t
str_hash(const char *s)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}
static const char *const dpi_names[] = { "intermediate", "off", "on", "faulty" };

const char *
vtype_name(enum vtype t)
{
	if ((unsigned)t >= sizeof(vtype_names) / sizeof(vtype_names[0]) - 1)
		return "?";
	return vtype_names[t];
}

int
vtype_parse(const char *s, enum vtype *out)
{
	for (size_t i = 0; vtype_names[i]; i++)
		if (strcmp(s, vtype_names[i]) == 0) {
			*out = (enum vtype)i;
			return 0;
		}
	return -1;
}

/* Copy text without surrounding white space into buf; -1 when it does not fit. */
static int
value_trim(const char *text, char *buf, size_t len)
{
	size_t n;

	while (isspace((unsigned char)*text))
		text++;
	n = strlen(text);
	while (n > 0 && isspace((unsigned char)text[n - 1]))
		n--;
	if (n >= len)
		return -1;
	memcpy(buf, text, n);
	buf[n] = '\0';
	return 0;
}

static int
value_parse_int(const char *s, int64_t *out)
{
	char *end;
	long long v;

	if (*s == '\0')
		return -1;
	errno = 0;
	/* base 10 only: a leading zero must not silently mean octal */
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	*out = v;
	return 0;
}

/* Days from 1970-01-01 to y-m-d of the proleptic Gregorian calendar (H. Hinnant's
 * days_from_civil; exact for any year, negative ones too). */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* n digits at s[*i], advanced; -1 when they are not all digits. */
static int
digits(const char *s, size_t *i, int n, int *out)
{
	int v = 0;

	for (int k = 0; k < n; k++) {
		if (!isdigit((unsigned char)s[*i + (size_t)k]))
			return -1;
		v = v * 10 + (s[*i + (size_t)k] - '0');
	}
	*i += (size_t)n;
	*out = v;
	return 0;
}

/* value.h says the form (ISO 8601-1:2019 5.4.2 extended format, RFC 3339 5.6). */
int
value_parse_iso8601(const char *s, int64_t *ms, char *why, size_t whylen)
{
	static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int y, mo, d, h, mi, sec, frac = 0, off = 0, dim;
	size_t i = 0;
	int64_t t;

	if (digits(s, &i, 4, &y) || s[i++] != '-' || digits(s, &i, 2, &mo) || s[i++] != '-' ||
	    digits(s, &i, 2, &d)) {
		snprintf(why, whylen, "expected YYYY-MM-DD");
		return -1;
	}
	if (s[i] != 'T' && s[i] != 't' && s[i] != ' ') {
		snprintf(why, whylen, "expected 'T' at %zu", i + 1);
		return -1;
	}
	i++;
	if (digits(s, &i, 2, &h) || s[i++] != ':' || digits(s, &i, 2, &mi) || s[i++] != ':' ||
	    digits(s, &i, 2, &sec)) {
		snprintf(why, whylen, "expected hh:mm:ss after the date");
		return -1;
	}
	if (s[i] == '.' || s[i] == ',') {
		int scale = 100;

		if (!isdigit((unsigned char)s[++i])) {
			snprintf(why, whylen, "expected a digit at %zu", i + 1);
			return -1;
		}
		for (; isdigit((unsigned char)s[i]); i++, scale /= 10)
			frac += (s[i] - '0') * scale;
	}
	if (s[i] == 'Z' || s[i] == 'z') {
		i++;
	} else if (s[i] == '+' || s[i] == '-') {
		int oh, om = 0, sign = s[i++] == '-' ? -1 : 1;

		if (digits(s, &i, 2, &oh)) {
			snprintf(why, whylen, "expected an offset like +01:00 at %zu", i + 1);
			return -1;
		}
		if (s[i] == ':') {
			i++;
			if (digits(s, &i, 2, &om)) {
				snprintf(why, whylen, "expected offset minutes at %zu", i + 1);
				return -1;
			}
		} else if (isdigit((unsigned char)s[i]) && digits(s, &i, 2, &om)) {
			snprintf(why, whylen, "expected offset minutes at %zu", i + 1);
			return -1;
		}
		if (oh > 23 || om > 59) {
			snprintf(why, whylen, "offset %02d:%02d out of range", oh, om);
			return -1;
		}
		off = sign * (oh * 60 + om);
	}
	if (s[i] != '\0') {
		snprintf(why, whylen, "unexpected text at %zu", i + 1);
		return -1;
	}
	if (mo < 1 || mo > 12) {
		snprintf(why, whylen, "no month %d", mo);
		return -1;
	}
	dim = mdays[mo - 1] + (mo == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0));
	if (d < 1 || d > dim) {
		snprintf(why, whylen, "no day %d in %04d-%02d", d, y, mo);
		return -1;
	}
	if (h > 23 || mi > 59 || sec > 60) {
		snprintf(why, whylen, "no time %02d:%02d:%02d", h, mi, sec);
		return -1;
	}
	t = ((days_from_civil(y, mo, d) * 24 + h) * 60 + mi - off) * 60 + (sec == 60 ? 59 : sec);
	if (sec == 60) {
		if (((t % 86400) + 86400) % 86400 != 86399) {
			snprintf(why, whylen, "second 60 is only at 23:59:60 UTC (a leap second)");
			return -1;
		}
		t++;
	}
	*ms = t * 1000 + frac;
	return 0;
}

int
value_parse(enum vtype t, const char *text, struct value *v, char *err, size_t errlen)
{
	char s[128], why[100];
	int64_t i;

	memset(v, 0, sizeof(*v));
	v->type = t;
	if (t == VT_STRING) {
		/* strings are taken as they are, spaces included */
		if (!(v->s = strdup(text))) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		return 0;
	}
	if (value_trim(text, s, sizeof(s)) != 0) {
		snprintf(err, errlen, "value too long for type %s", vtype_name(t));
		return -1;
	}
	switch (t) {
	case VT_BOOL:
		if (strcmp(s, "1") == 0 || strcasecmp(s, "true") == 0 || strcasecmp(s, "on") == 0)
			v->i = 1;
		else if (strcmp(s, "0") == 0 || strcasecmp(s, "false") == 0 || strcasecmp(s, "off") == 0)
			v->i = 0;
		else
			goto bad;
		return 0;
	case VT_DPI:
		if (s[0] >= '0' && s[0] <= '3' && s[1] == '\0') {
			v->i = s[0] - '0';
			return 0;
		}
		for (int k = 0; k < 4; k++)
			if (strcasecmp(s, dpi_names[k]) == 0) {
				v->i = k;
				return 0;
			}
		goto bad;
	case VT_INT:
		if (value_parse_int(s, &v->i) != 0)
			goto bad;
		return 0;
	case VT_FLOAT: {
		char *end;

		if (s[0] == '\0')
			goto bad;
		errno = 0;
		v->f = strtod(s, &end);
		/* underflow to a tiny number is fine; overflow is not, nor "nan" or "inf": no device
		 * value is one (issue 11) */
		if (*end != '\0' || (errno == ERANGE && isinf(v->f)))
			goto bad;
		if (!isfinite(v->f)) {
			snprintf(err, errlen, "'%s' is not a finite number", s);
			v->f = 0; /* a refused value leaves nothing a careless caller could pass on */
			return -1;
		}
		return 0;
	}
	case VT_TIME:
		if (value_parse_int(s, &i) == 0 || value_parse_iso8601(s, &i, why, sizeof(why)) == 0) {
			v->i = i;
			return 0;
		}
		goto bad;
	case VT_STRING:
		break;
	}
bad:
	v->i = 0; /* nothing of a refused value stays (a float's NaN, half a number) */
	switch (t) {
	case VT_BOOL:
		snprintf(err, errlen, "'%s' is not a bool (0, 1, true, false, on, off)", s);
		break;
	case VT_DPI:
		snprintf(err, errlen, "'%s' is not a dpi (0..3, intermediate, off, on, faulty)", s);
		break;
	case VT_INT:
		snprintf(err, errlen, "'%s' is not a 64-bit integer", s);
		break;
	case VT_FLOAT:
		snprintf(err, errlen, "'%s' is not a number", s);
		break;
	case VT_TIME:
		snprintf(err, errlen, "'%s' is not a time (ms since the epoch or ISO 8601 like 2026-11-23T10:00:00.123Z)", s);
		break;
	default:
		snprintf(err, errlen, "bad value");
		break;
	}
	v->i = 0;
	return -1;
}

/* Shortest text that reads back as the same double. */
static void
value_format_double(double f, char *buf, size_t len)
{
	snprintf(buf, len, "%.15g", f);
	if (strtod(buf, NULL) != f)
		snprintf(buf, len, "%.17g", f);
}

char *
value_format(const struct value *v, char *buf, size_t len)
{
	if (len == 0)
		return buf;
	switch (v->type) {
	case VT_BOOL:
		snprintf(buf, len, "%s", v->i ? "true" : "false");
		break;
	case VT_DPI:
		snprintf(buf, len, "%s", v->i >= 0 && v->i <= 3 ? dpi_names[v->i] : "faulty");
		break;
	case VT_INT:
		snprintf(buf, len, "%" PRId64, v->i);
		break;
	case VT_FLOAT:
		value_format_double(v->f, buf, len);
		break;
	case VT_STRING:
		snprintf(buf, len, "%s", v->s ? v->s : "");
		break;
	case VT_TIME:
		/* time_format's "-" for 0 is for display only; a value must read back */
		if (v->i == 0)
			snprintf(buf, len, "1970-01-01T00:00:00.000Z");
		else
			time_format(v->i, buf, len);
		break;
	default:
		snprintf(buf, len, "?");
		break;
	}
	return buf;
}

/* Text that may come from a peer as a JSON string: bytes that are not UTF-8 (RFC 3629) and
 * DEL become the text \xNN (as komctl's text output has them), so that jansson, which
 * takes only valid UTF-8, gets it whole; control bytes it escapes itself. */
json_t *
value_json_text(const char *s)
{
	const unsigned char *p = (const unsigned char *)(s ? s : "");
	size_t n = strlen((const char *)p), bad = 0, l, o = 0;
	json_t *j;
	char *c;

	for (size_t i = 0; i < n; i += l)
		if ((l = p[i] >= 0x80 ? utf8_len(p + i, n - i) : 1) == 0 || p[i] == 0x7f) {
			bad++;
			l = 1;
		}
	if (!bad)
		return json_stringn((const char *)p, n);
	if ((c = malloc(n + 3 * bad + 1)) == NULL)
		return NULL;
	for (size_t i = 0; i < n; i += l) {
		if ((l = p[i] >= 0x80 ? utf8_len(p + i, n - i) : 1) == 0 || p[i] == 0x7f) {
			o += (size_t)snprintf(c + o, 5, "\\x%02x", p[i]);
			l = 1;
		} else {
			memcpy(c + o, p + i, l);
			o += l;
		}
	}
	j = json_stringn(c, o);
	free(c);
	return j;
}

json_t *
value_json(const struct value *v)
{
	char t[40];

	switch (v->type) {
	case VT_BOOL:
		return json_boolean(v->i);
	case VT_INT:
		return json_integer(v->i);
	case VT_FLOAT:
		/* JSON has no NaN or infinity */
		return isfinite(v->f) ? json_real(v->f) : json_null();
	case VT_DPI:
	case VT_TIME:
		return json_string(value_format(v, t, sizeof(t)));
	case VT_STRING:
		return value_json_text(v->s);
	default:
		return json_null();
	}
}

json_t *
value_json_count(uint64_t n)
{
	return json_integer(n > (uint64_t)INT64_MAX ? (json_int_t)INT64_MAX : (json_int_t)n);
}

/* The digits (15..17) that the reals of j need to read back as themselves. */
static int
value_json_precision(const json_t *j)
{
	const char *key;
	json_t *m;
	size_t i;
	int p = 15, q;

	switch (json_typeof(j)) {
	case JSON_REAL: {
		double f = json_real_value(j);
		char b[40];
		for (; p < 17; p++) {
			snprintf(b, sizeof(b), "%.*g", p, f);
			if (strtod(b, NULL) == f)
				break;
		}
		return p;
	}
	case JSON_ARRAY:
		json_array_foreach((json_t *)j, i, m)
			if ((q = value_json_precision(m)) > p && (p = q) == 17)
				break;
		return p;
	case JSON_OBJECT:
		json_object_foreach((json_t *)j, key, m)
			if ((q = value_json_precision(m)) > p && (p = q) == 17)
				break;
		return p;
	default:
		return p;
	}
}

size_t
value_json_flags(const json_t *j)
{
	return JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(value_json_precision(j));
}

char *
value_json_dump(const json_t *j)
{
	return j ? json_dumps(j, value_json_flags(j)) : NULL;
}

void
value_copy(struct value *dst, const struct value *src)
{
	*dst = *src;
	if (src->type == VT_STRING) {
		/* no error path for the callers: a copy that cannot be made is a broken machine */
		if (!(dst->s = strdup(src->s ? src->s : "")))
			fatal("value_copy");
	}
}

void
value_clear(struct value *v)
{
	if (v->type == VT_STRING)
		free(v->s);
	v->s = NULL;
	v->i = 0;
}

bool
value_equal(const struct value *a, const struct value *b)
{
	if (a->type != b->type)
		return false;
	switch (a->type) {
	case VT_FLOAT:
		/* NaN equals NaN here: repeating NaN is not a change */
		if (isnan(a->f) && isnan(b->f))
			return true;
		return a->f == b->f;
	case VT_STRING:
		return strcmp(a->s ? a->s : "", b->s ? b->s : "") == 0;
	default:
		return a->i == b->i;
	}
}

char *
quality_format(unsigned q, char *buf, size_t len)
{
	static const struct { unsigned bit; const char *name; } qn[] = {
		{ Q_INVALID, "IV" }, { Q_NOTTOPICAL, "NT" }, { Q_SUBSTITUTED, "SB" },
		{ Q_BLOCKED, "BL" }, { Q_OVERFLOW, "OV" },
	};
	size_t o = 0;

	if (len == 0)
		return buf;
	buf[0] = '\0';
	if ((q & 0x1f) == 0) {
		snprintf(buf, len, "good");
		return buf;
	}
	for (size_t i = 0; i < sizeof(qn) / sizeof(qn[0]); i++) {
		if (!(q & qn[i].bit))
			continue;
		int n = snprintf(buf + o, len - o, "%s%s", o ? "," : "", qn[i].name);
		if (n < 0 || (size_t)n >= len - o)
			break;
		o += (size_t)n;
	}
	return buf;
}

char *
time_format(int64_t ms, char *buf, size_t len)
{
	struct tm tm;
	time_t t;
	int64_t sec, frac;

	if (len == 0)
		return buf;
	if (ms == 0) {
		snprintf(buf, len, "-");
		return buf;
	}
	/* floor division, so times before 1970 keep a positive millisecond part */
	sec = ms / 1000;
	frac = ms % 1000;
	if (frac < 0) {
		frac += 1000;
		sec--;
	}
	t = (time_t)sec;
	if (!gmtime_r(&t, &tm)) {
		snprintf(buf, len, "%" PRId64, ms);
		return buf;
	}
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
	    tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)frac);
	return buf;
}

int64_t
time_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
value_round_i64(double f)
{
	if (isnan(f))
		return 0;
	f = round(f);
	/* -2^63 is exact in a double; 2^63 is the first value past INT64_MAX */
	if (f >= 9223372036854775808.0)
		return INT64_MAX;
	if (f <= -9223372036854775808.0)
		return INT64_MIN;
	return (int64_t)f;
}

double
value_float32_decimal(double f)
{
	/* round to 6..9 significant digits with exact powers of ten (integer / 10^k and
	 * integer * 10^k are correctly rounded, as strtod would give): no printf, no strtod,
	 * since protocols call this for every float they receive */
	static const double p10[] = { 1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
		1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22 };
	float target = (float)f;

	if (!isfinite(f) || f == 0.0)
		return f;
	int mag = (int)floor(log10(fabs(f)));
	for (int digits = 6; digits <= 9; digits++) {
		int k = digits - 1 - mag; /* decimals to keep */
		double y;
		if (k >= 0 && k <= 22)
			y = round(f * p10[k]) / p10[k];
		else if (k < 0 && -k <= 22)
			y = round(f / p10[-k]) * p10[-k];
		else
			return f;
		if ((float)y == target)
			return y;
	}
	return f;
}
