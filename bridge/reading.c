/*-------------------------------------------------------------------------
 *
 * reading.c
 *		Device messages to readings: parsing and checking, nothing else.
 *
 * JSON messages (topic mqtt_topic), one reading or a bulk:
 *
 *		{"device_id":"esp32-01","sensor_type":"temperature","value":24.8,
 *		 "unit":"°C","timestamp":"2025-07-09T07:15:02Z"}
 *		{"device_id":"esp32-01","readings":[{...},{...}]}
 *
 * device_id may be left out (the topic names the device) and must match
 * the topic when given; value is a JSON number; unit is optional (a string
 * or null); timestamp is optional: an RFC 3339 string with an offset or a
 * number of seconds since the epoch.  Members not named here are ignored,
 * so that devices may send more than the bridge stores.  A payload with a
 * member twice is refused: which one counts would be a guess.
 *
 * SenML packs (topic mqtt_senml_topic, RFC 8428 in JSON): the subset
 * bn, bt, bu, bv, bver, n, u, v, t.  A record's sensor type is its name
 * (bn + n) with a leading "<device id>/" or "<device id>:" removed, so a
 * pack may name the device in bn.  Only numeric values are stored: a
 * record without "v" (vs, vb, vd, s only) rejects the pack, and so does a
 * field ending in "_" (RFC 8428's "must understand" fields).  A time below
 * 2^28 is relative to now (RFC 8428 section 4.5.3); a record with no time
 * at all gets the receive time like a JSON reading without a timestamp.
 *
 * Every message is taken or refused whole; reading.h lists the limits.
 *
 *-------------------------------------------------------------------------
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "reading.h"

/* Earliest device time: the epoch (see reading.h) */
#define MIN_TS_US		INT64_C(0)

/* Epoch seconds beyond this cannot be in range, and would overflow µs */
#define MAX_EPOCH_SECONDS	1e11

/* SenML times below this are relative to now (RFC 8428, 4.5.3) */
#define SENML_RELATIVE_LIMIT	268435456.0

/* How jansson reads payloads: all numbers as doubles, no duplicates */
#define JSON_FLAGS		(JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL)

static const char *const reason_names[REJECT_NUM_REASONS] = {
	[REJECT_NONE] = "none",
	[REJECT_TOO_LARGE] = "too_large",
	[REJECT_MALFORMED_JSON] = "malformed_json",
	[REJECT_MISSING_FIELD] = "missing_field",
	[REJECT_INVALID_VALUE] = "invalid_value",
	[REJECT_INVALID_FIELD] = "invalid_field",
	[REJECT_DEVICE_MISMATCH] = "device_mismatch",
	[REJECT_BAD_TIMESTAMP] = "bad_timestamp",
	[REJECT_BAD_TOPIC] = "bad_topic",
	[REJECT_DATABASE] = "rejected_by_database",
};

const char *
reading_reason_name(RejectReason reason)
{
	if ((int) reason < 0 || reason >= REJECT_NUM_REASONS)
		return "unknown";
	return reason_names[reason];
}

/* Record why the message is rejected; returns reason for a tail call */
static RejectReason
reject(ReadingBatch *batch, RejectReason reason, const char *fmt,...)
__attribute__((format(printf, 3, 4)));

static RejectReason
reject(ReadingBatch *batch, RejectReason reason, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(batch->detail, sizeof(batch->detail), fmt, ap);
	va_end(ap);
	return reason;
}

/* ----------------------------------------------------------------------
 * Ids, units and topics
 * ----------------------------------------------------------------------
 */

/*
 * Is s (len bytes) well-formed UTF-8 without control characters?  C1
 * controls (U+0080..U+009F) are the two-byte sequences C2 80..C2 9F.
 */
static bool
clean_utf8(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *) s;
	size_t		i = 0;

	while (i < len)
	{
		unsigned char c = p[i];
		size_t		n;
		uint32_t	cp;

		if (c < 0x20 || c == 0x7f)
			return false;
		if (c < 0x80)
		{
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			n = 2, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			n = 3, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			n = 4, cp = c & 0x07;
		else
			return false;
		if (i + n > len)
			return false;
		for (size_t k = 1; k < n; k++)
		{
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i + k] & 0x3f);
		}
		/* overlong forms, surrogates, beyond U+10FFFF, C1 controls */
		if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
			(cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff ||
			(cp >= 0x80 && cp <= 0x9f))
			return false;
		i += n;
	}
	return true;
}

static bool
valid_id(const char *s, size_t len)
{
	return len >= 1 && len <= READING_MAX_ID && clean_utf8(s, len);
}

RejectReason
reading_topic_device(const char *pattern, const char *topic,
					 char *device, size_t size)
{
	const char *p = pattern;
	const char *t = topic;
	const char *dev = NULL;
	size_t		devlen = 0;

	/* walk both level by level; only the "+" level may differ */
	for (;;)
	{
		size_t		plen = strcspn(p, "/");
		size_t		tlen = strcspn(t, "/");

		if (plen == 1 && p[0] == '+')
		{
			dev = t;
			devlen = tlen;
		}
		else if (plen != tlen || memcmp(p, t, plen) != 0)
			return REJECT_BAD_TOPIC;

		if (p[plen] == '\0' || t[tlen] == '\0')
		{
			if (p[plen] != t[tlen])
				return REJECT_BAD_TOPIC;	/* not as many levels */
			break;
		}
		p += plen + 1;
		t += tlen + 1;
	}

	if (dev == NULL || !valid_id(dev, devlen) || devlen + 1 > size)
		return REJECT_BAD_TOPIC;
	memcpy(device, dev, devlen);
	device[devlen] = '\0';
	return REJECT_NONE;
}

void
reading_escape(const char *in, size_t len, size_t max_in,
			   char *out, size_t size)
{
	size_t		o = 0;
	size_t		n = len < max_in ? len : max_in;

	for (size_t i = 0; i < n && o + 8 < size; i++)
	{
		unsigned char c = (unsigned char) in[i];

		if (c == '\\' || c == '"')
		{
			out[o++] = '\\';
			out[o++] = (char) c;
		}
		else if (c >= 0x20 && c < 0x7f)
			out[o++] = (char) c;
		else
			o += (size_t) snprintf(out + o, size - o, "\\x%02x", c);
	}
	if (n < len && o + 4 <= size)
	{
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
}

/* ----------------------------------------------------------------------
 * Times
 * ----------------------------------------------------------------------
 */

/* Read exactly n digits at *p into *val */
static bool
read_digits(const char **p, int n, int *val)
{
	int			v = 0;

	for (int i = 0; i < n; i++)
	{
		char		c = (*p)[i];

		if (c < '0' || c > '9')
			return false;
		v = v * 10 + (c - '0');
	}
	*p += n;
	*val = v;
	return true;
}

static int
days_in_month(int year, int month)
{
	static const int days[12] = {
		31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31
	};
	bool		leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

	return month == 2 && leap ? 29 : days[month - 1];
}

/*
 * Fractional seconds: 1 to 9 digits, as nanoseconds.  More digits than a
 * nanosecond are refused rather than silently dropped.
 */
static bool
read_fraction(const char **p, int64_t *ns)
{
	int64_t		v = 0;
	int			digits = 0;

	while (**p >= '0' && **p <= '9')
	{
		if (++digits > 9)
			return false;
		v = v * 10 + (**p - '0');
		(*p)++;
	}
	if (digits == 0)
		return false;
	for (; digits < 9; digits++)
		v *= 10;
	*ns = v;
	return true;
}

bool
reading_parse_rfc3339(const char *text, int64_t *us)
{
	const char *p = text;
	int			year, month, day, hour, minute, second;
	int			off_h = 0, off_m = 0, sign = 0;
	int64_t		ns = 0;
	struct tm	tm;
	int64_t		secs;

	/* YYYY-MM-DDTHH:MM:SS */
	if (!read_digits(&p, 4, &year) || *p++ != '-' ||
		!read_digits(&p, 2, &month) || *p++ != '-' ||
		!read_digits(&p, 2, &day) || (*p != 'T' && *p != 't') ||
		!(p++, read_digits(&p, 2, &hour)) || *p++ != ':' ||
		!read_digits(&p, 2, &minute) || *p++ != ':' ||
		!read_digits(&p, 2, &second))
		return false;

	/* [.frac] then Z or +HH:MM / -HH:MM */
	if (*p == '.' && !(p++, read_fraction(&p, &ns)))
		return false;
	if (*p == 'Z' || *p == 'z')
		p++;
	else if (*p == '+' || *p == '-')
	{
		sign = *p++ == '+' ? 1 : -1;
		if (!read_digits(&p, 2, &off_h) || *p++ != ':' ||
			!read_digits(&p, 2, &off_m))
			return false;
	}
	else
		return false;
	if (*p != '\0')
		return false;

	/* Field ranges; a leap second (:60) is not accepted */
	if (month < 1 || month > 12 || day < 1 ||
		day > days_in_month(year, month) || hour > 23 || minute > 59 ||
		second > 59 || off_h > 23 || off_m > 59)
		return false;

	memset(&tm, 0, sizeof(tm));
	tm.tm_year = year - 1900;
	tm.tm_mon = month - 1;
	tm.tm_mday = day;
	tm.tm_hour = hour;
	tm.tm_min = minute;
	tm.tm_sec = second;
	secs = (int64_t) timegm(&tm) - sign * (off_h * 3600 + off_m * 60);

	/* round to the microsecond, as PostgreSQL would */
	*us = secs * 1000000 + (ns + 500) / 1000;
	return true;
}

void
reading_format_ts(int64_t us, char *buf)
{
	int64_t		secs = us / 1000000;
	int64_t		frac = us % 1000000;
	time_t		t;
	struct tm	tm;
	size_t		len;

	if (frac < 0)
	{
		frac += 1000000;
		secs--;
	}
	t = (time_t) secs;
	gmtime_r(&t, &tm);
	len = strftime(buf, READING_TS_LEN - 9, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + len, READING_TS_LEN - len, ".%06dZ", (int) frac);
}

/* Epoch seconds (finite, not negative, fractions allowed) to µs */
static bool
epoch_to_us(double seconds, int64_t *us)
{
	if (!isfinite(seconds) || seconds < 0 || seconds > MAX_EPOCH_SECONDS)
		return false;
	*us = llround(seconds * 1e6);
	return true;
}

/* Is a device time within the accepted range? Sets the detail if not. */
static RejectReason
check_ts_range(ReadingBatch *batch, const char *where, int64_t us,
			   int64_t now_us)
{
	if (us < MIN_TS_US)
		return reject(batch, REJECT_BAD_TIMESTAMP,
					  "%stimestamp is before 1970-01-01T00:00:00Z", where);
	if (us > now_us + READING_MAX_FUTURE_US)
		return reject(batch, REJECT_BAD_TIMESTAMP,
					  "%stimestamp is more than 24 hours ahead of the "
					  "bridge's clock", where);
	return REJECT_NONE;
}

/* ----------------------------------------------------------------------
 * JSON readings
 * ----------------------------------------------------------------------
 */

/* device_id, when given, must be the topic's */
static RejectReason
check_device(ReadingBatch *batch, const char *where, json_t *obj,
			 const char *device)
{
	json_t	   *v = json_object_get(obj, "device_id");

	if (v == NULL || json_is_null(v))
		return REJECT_NONE;
	if (!json_is_string(v))
		return reject(batch, REJECT_INVALID_FIELD,
					  "%sdevice_id must be a string", where);
	if (strcmp(json_string_value(v), device) != 0)
		return reject(batch, REJECT_DEVICE_MISMATCH,
					  "%sdevice_id differs from the device of the topic",
					  where);
	return REJECT_NONE;
}

static RejectReason
parse_timestamp(ReadingBatch *batch, const char *where, json_t *v,
				int64_t now_us, Reading *r)
{
	r->has_ts = false;
	if (v == NULL || json_is_null(v))
		return REJECT_NONE;

	if (json_is_string(v))
	{
		if (!reading_parse_rfc3339(json_string_value(v), &r->ts_us))
			return reject(batch, REJECT_BAD_TIMESTAMP,
						  "%stimestamp is not an RFC 3339 date-time with an "
						  "offset (like 2025-07-09T07:15:02Z)", where);
	}
	else if (json_is_number(v))
	{
		if (!epoch_to_us(json_number_value(v), &r->ts_us))
			return reject(batch, REJECT_BAD_TIMESTAMP,
						  "%stimestamp in epoch seconds is out of range",
						  where);
	}
	else
		return reject(batch, REJECT_BAD_TIMESTAMP,
					  "%stimestamp must be a string or a number", where);

	r->has_ts = true;
	return check_ts_range(batch, where, r->ts_us, now_us);
}

/* One reading object; where prefixes the detail ("readings[3]: ") */
static RejectReason
parse_reading(ReadingBatch *batch, const char *where, json_t *obj,
			  const char *device, int64_t now_us, Reading *r)
{
	json_t	   *type = json_object_get(obj, "sensor_type");
	json_t	   *value = json_object_get(obj, "value");
	json_t	   *unit = json_object_get(obj, "unit");
	RejectReason rc;

	if ((rc = check_device(batch, where, obj, device)) != REJECT_NONE)
		return rc;

	if (type == NULL || json_is_null(type))
		return reject(batch, REJECT_MISSING_FIELD,
					  "%ssensor_type is missing", where);
	if (!json_is_string(type) ||
		!valid_id(json_string_value(type), json_string_length(type)))
		return reject(batch, REJECT_INVALID_FIELD,
					  "%ssensor_type must be a string of 1 to %d bytes "
					  "without control characters", where, READING_MAX_ID);
	r->sensor_type = json_string_value(type);

	if (value == NULL)
		return reject(batch, REJECT_MISSING_FIELD, "%svalue is missing",
					  where);
	if (!json_is_number(value) || !isfinite(json_number_value(value)))
		return reject(batch, REJECT_INVALID_VALUE,
					  "%svalue must be a JSON number", where);
	r->value = json_number_value(value);

	r->unit = NULL;
	if (unit != NULL && !json_is_null(unit))
	{
		if (!json_is_string(unit) ||
			json_string_length(unit) > READING_MAX_UNIT ||
			!clean_utf8(json_string_value(unit), json_string_length(unit)))
			return reject(batch, REJECT_INVALID_FIELD,
						  "%sunit must be null or a string of at most %d "
						  "bytes without control characters",
						  where, READING_MAX_UNIT);
		r->unit = json_string_value(unit);
	}

	return parse_timestamp(batch, where, json_object_get(obj, "timestamp"),
						   now_us, r);
}

/* Size check and JSON parse shared by both formats */
static RejectReason
load_payload(ReadingBatch *batch, const char *payload, size_t len)
{
	json_error_t err;

	memset(batch, 0, sizeof(*batch));
	if (len > READING_MAX_PAYLOAD)
		return reject(batch, REJECT_TOO_LARGE,
					  "payload of %zu bytes is over the limit of %d bytes",
					  len, READING_MAX_PAYLOAD);
	batch->json = json_loadb(payload, len, JSON_FLAGS, &err);
	if (batch->json == NULL)
		return reject(batch, REJECT_MALFORMED_JSON,
					  "invalid JSON at line %d, column %d: %s",
					  err.line, err.column, err.text);
	return REJECT_NONE;
}

static RejectReason
alloc_readings(ReadingBatch *batch, size_t n, const char *what)
{
	if (n == 0)
		return reject(batch, REJECT_MISSING_FIELD, "%s is empty", what);
	if (n > READING_MAX_PER_MESSAGE)
		return reject(batch, REJECT_TOO_LARGE,
					  "%s holds %zu entries, over the limit of %d",
					  what, n, READING_MAX_PER_MESSAGE);
	batch->readings = calloc(n, sizeof(Reading));
	if (batch->readings == NULL)
		return reject(batch, REJECT_TOO_LARGE, "out of memory");
	return REJECT_NONE;
}

RejectReason
reading_parse_json(const char *payload, size_t len, const char *device,
				   int64_t now_us, ReadingBatch *batch)
{
	json_t	   *root;
	json_t	   *list;
	RejectReason rc;
	char		where[48];

	if ((rc = load_payload(batch, payload, len)) != REJECT_NONE)
		return rc;
	root = batch->json;
	if (!json_is_object(root))
		return reject(batch, REJECT_MALFORMED_JSON,
					  "payload must be a JSON object");

	/* one reading */
	list = json_object_get(root, "readings");
	if (list == NULL)
	{
		if ((rc = alloc_readings(batch, 1, "message")) != REJECT_NONE)
			return rc;
		batch->count = 1;
		return parse_reading(batch, "", root, device, now_us,
							 &batch->readings[0]);
	}

	/* a bulk: its own device_id, then readings in order */
	if (!json_is_array(list))
		return reject(batch, REJECT_MALFORMED_JSON,
					  "readings must be an array");
	if (json_object_get(root, "value") || json_object_get(root, "sensor_type"))
		return reject(batch, REJECT_MALFORMED_JSON,
					  "a bulk message has no value or sensor_type of its own");
	if ((rc = check_device(batch, "", root, device)) != REJECT_NONE)
		return rc;
	rc = alloc_readings(batch, json_array_size(list), "readings");
	if (rc != REJECT_NONE)
		return rc;

	for (size_t i = 0; i < json_array_size(list); i++)
	{
		json_t	   *obj = json_array_get(list, i);

		snprintf(where, sizeof(where), "readings[%zu]: ", i);
		if (!json_is_object(obj))
			return reject(batch, REJECT_MALFORMED_JSON,
						  "%snot a JSON object", where);
		rc = parse_reading(batch, where, obj, device, now_us,
						   &batch->readings[i]);
		if (rc != REJECT_NONE)
			return rc;
		batch->count++;
	}
	return REJECT_NONE;
}

/* ----------------------------------------------------------------------
 * SenML packs
 * ----------------------------------------------------------------------
 */

/* The base values in force while a pack's records are read */
typedef struct SenmlBase
{
	const char *name;			/* bn */
	double		time;			/* bt */
	const char *unit;			/* bu */
	double		value;			/* bv */
} SenmlBase;

/* RFC 8428 4.5.1: name characters, the first one alphanumeric */
static bool
valid_senml_name(const char *name)
{
	static const char allowed[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-:./_";

	if (name[0] == '\0' || name[0] == '-' || name[0] == ':' ||
		name[0] == '.' || name[0] == '/' || name[0] == '_')
		return false;
	return strspn(name, allowed) == strlen(name);
}

/* Take the base fields of a record into base */
static RejectReason
senml_base(ReadingBatch *batch, const char *where, json_t *rec,
		   SenmlBase *base)
{
	json_t	   *v;

	if ((v = json_object_get(rec, "bn")) != NULL)
	{
		if (!json_is_string(v))
			return reject(batch, REJECT_INVALID_FIELD,
						  "%sbn must be a string", where);
		base->name = json_string_value(v);
	}
	if ((v = json_object_get(rec, "bt")) != NULL)
	{
		if (!json_is_number(v))
			return reject(batch, REJECT_BAD_TIMESTAMP,
						  "%sbt must be a number", where);
		base->time = json_number_value(v);
	}
	if ((v = json_object_get(rec, "bu")) != NULL)
	{
		if (!json_is_string(v))
			return reject(batch, REJECT_INVALID_FIELD,
						  "%sbu must be a string", where);
		base->unit = json_string_value(v);
	}
	if ((v = json_object_get(rec, "bv")) != NULL)
	{
		if (!json_is_number(v))
			return reject(batch, REJECT_INVALID_VALUE,
						  "%sbv must be a number", where);
		base->value = json_number_value(v);
	}
	if ((v = json_object_get(rec, "bver")) != NULL && !json_is_number(v))
		return reject(batch, REJECT_INVALID_FIELD,
					  "%sbver must be a number", where);
	return REJECT_NONE;
}

/*
 * The sensor type of a record: bn + n without a leading "<device>/" or
 * "<device>:".  Written to out (READING_MAX_ID + 1 bytes).
 */
static RejectReason
senml_name(ReadingBatch *batch, const char *where, const SenmlBase *base,
		   json_t *rec, const char *device, char *out)
{
	json_t	   *n = json_object_get(rec, "n");
	const char *name = n ? json_string_value(n) : "";
	char		full[2 * READING_MAX_ID + 2];
	const char *type = full;
	size_t		dlen = strlen(device);

	if (n != NULL && !json_is_string(n))
		return reject(batch, REJECT_INVALID_FIELD, "%sn must be a string",
					  where);
	if (strlen(base->name ? base->name : "") + strlen(name) >= sizeof(full))
		return reject(batch, REJECT_INVALID_FIELD, "%sname is too long",
					  where);
	snprintf(full, sizeof(full), "%s%s", base->name ? base->name : "", name);

	if (!valid_senml_name(full))
		return reject(batch, REJECT_INVALID_FIELD,
					  "%sname must start with a letter or digit and hold "
					  "only letters, digits and - : . / _", where);
	if (strncmp(full, device, dlen) == 0 &&
		(full[dlen] == '/' || full[dlen] == ':'))
		type = full + dlen + 1;
	if (!valid_id(type, strlen(type)))
		return reject(batch, REJECT_INVALID_FIELD,
					  "%ssensor type (the name without the device) must be "
					  "1 to %d bytes", where, READING_MAX_ID);
	strcpy(out, type);
	return REJECT_NONE;
}

/* A record's time: absolute, relative to now, or none at all */
static RejectReason
senml_time(ReadingBatch *batch, const char *where, const SenmlBase *base,
		   json_t *rec, int64_t now_us, Reading *r)
{
	json_t	   *t = json_object_get(rec, "t");
	double		time;

	if (t != NULL && !json_is_number(t))
		return reject(batch, REJECT_BAD_TIMESTAMP, "%st must be a number",
					  where);
	time = base->time + (t ? json_number_value(t) : 0.0);

	r->has_ts = false;
	if (time == 0.0)
		return REJECT_NONE;		/* "now": the receive time */
	if (!isfinite(time) || fabs(time) > MAX_EPOCH_SECONDS)
		return reject(batch, REJECT_BAD_TIMESTAMP, "%stime is out of range",
					  where);
	if (time < SENML_RELATIVE_LIMIT)
		r->ts_us = now_us + llround(time * 1e6);
	else if (!epoch_to_us(time, &r->ts_us))
		return reject(batch, REJECT_BAD_TIMESTAMP, "%stime is out of range",
					  where);
	r->has_ts = true;
	return check_ts_range(batch, where, r->ts_us, now_us);
}

static RejectReason
senml_record(ReadingBatch *batch, const char *where, SenmlBase *base,
			 json_t *rec, const char *device, int64_t now_us, char *name,
			 Reading *r)
{
	json_t	   *v;
	json_t	   *u;
	const char *key;
	json_t	   *member;
	RejectReason rc;

	json_object_foreach(rec, key, member)
	{
		size_t		len = strlen(key);

		if (len > 0 && key[len - 1] == '_')
			return reject(batch, REJECT_INVALID_FIELD,
						  "%sfield \"%.40s\" must be understood and is not "
						  "supported", where, key);
	}
	rc = senml_base(batch, where, rec, base);
	if (rc == REJECT_NONE)
		rc = senml_name(batch, where, base, rec, device, name);
	if (rc != REJECT_NONE)
		return rc;
	r->sensor_type = name;

	/* a string, boolean, data or sum value has a value, of the wrong kind */
	v = json_object_get(rec, "v");
	if (v == NULL)
	{
		bool		other = json_object_get(rec, "vs") ||
			json_object_get(rec, "vb") || json_object_get(rec, "vd") ||
			json_object_get(rec, "s");

		return reject(batch,
					  other ? REJECT_INVALID_VALUE : REJECT_MISSING_FIELD,
					  "%srecord has no numeric value (\"v\"); only numeric "
					  "values are stored", where);
	}
	if (!json_is_number(v) || !isfinite(base->value + json_number_value(v)))
		return reject(batch, REJECT_INVALID_VALUE,
					  "%sv must be a finite number", where);
	r->value = base->value + json_number_value(v);

	u = json_object_get(rec, "u");
	if (u != NULL && !json_is_string(u))
		return reject(batch, REJECT_INVALID_FIELD, "%su must be a string",
					  where);
	r->unit = u ? json_string_value(u) : base->unit;
	if (r->unit && (strlen(r->unit) > READING_MAX_UNIT ||
					!clean_utf8(r->unit, strlen(r->unit))))
		return reject(batch, REJECT_INVALID_FIELD,
					  "%sunit must be at most %d bytes without control "
					  "characters", where, READING_MAX_UNIT);

	return senml_time(batch, where, base, rec, now_us, r);
}

RejectReason
reading_parse_senml(const char *payload, size_t len, const char *device,
					int64_t now_us, ReadingBatch *batch)
{
	SenmlBase	base = {NULL, 0.0, NULL, 0.0};
	json_t	   *pack;
	RejectReason rc;
	char		where[48];
	size_t		n;

	if ((rc = load_payload(batch, payload, len)) != REJECT_NONE)
		return rc;
	pack = batch->json;
	if (!json_is_array(pack))
		return reject(batch, REJECT_MALFORMED_JSON,
					  "a SenML pack must be a JSON array");
	n = json_array_size(pack);
	if ((rc = alloc_readings(batch, n, "pack")) != REJECT_NONE)
		return rc;

	/* the names are built, not found in the payload: keep them here */
	batch->names = malloc(n * (READING_MAX_ID + 1));
	if (batch->names == NULL)
		return reject(batch, REJECT_TOO_LARGE, "out of memory");

	for (size_t i = 0; i < n; i++)
	{
		json_t	   *rec = json_array_get(pack, i);

		snprintf(where, sizeof(where), "record %zu: ", i);
		if (!json_is_object(rec))
			return reject(batch, REJECT_MALFORMED_JSON,
						  "%snot a JSON object", where);
		rc = senml_record(batch, where, &base, rec, device, now_us,
						  batch->names + i * (READING_MAX_ID + 1),
						  &batch->readings[i]);
		if (rc != REJECT_NONE)
			return rc;
		batch->count++;
	}
	return REJECT_NONE;
}

void
reading_batch_free(ReadingBatch *batch)
{
	if (batch->json)
		json_decref((json_t *) batch->json);
	free(batch->readings);
	free(batch->names);
	batch->json = NULL;
	batch->readings = NULL;
	batch->names = NULL;
	batch->count = 0;
}
