/*-------------------------------------------------------------------------
 *
 * sample_json.c
 *	  The JSON form of a sample and the notifications that carry samples.
 *
 * One routine writes the sample object for the notification payload, the
 * REST body (samples_json) and the resume (samples_after), so the three
 * are byte for byte the same:
 *
 *	  {"seq":41,"timestamp":"2025-07-09T07:15:02Z","value":24.8,"unit":"°C"}
 *
 * Text is written in the database encoding; PostgreSQL converts it to the
 * client's encoding on the way out, so a UTF-8 client gets UTF-8 JSON.
 *
 * extension/sample_json.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "commands/async.h"
#include "common/shortest_dec.h"
#include "datatype/timestamp.h"
#include "utils/datetime.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"

#include "livewidget.h"

/*
 * livewidget.notify_queue_limit: above this share of the NOTIFY queue in
 * use, samples are buffered but not notified: a full queue would make the
 * inserting transaction fail at commit, and a reading must never be lost
 * to a slow listener.  Set in livewidget.c.
 */
double		lw_notify_queue_limit = LW_NOTIFY_QUEUE_LIMIT_DEFAULT;

/*
 * The largest sample object: 20 characters of seq, a 30-character time,
 * a 24-character value, a 64-byte unit of control characters written as
 * \u00XX (384 bytes), and the keys.  Well below LW_PAYLOAD_LIMIT, so a
 * payload always has room for at least one sample.
 */
#define LW_SAMPLE_MAX_JSON		(20 + 30 + DOUBLE_SHORTEST_DECIMAL_LEN + \
								 6 * LW_UNIT_MAX_BYTES + 64)

StaticAssertDecl(LW_SAMPLE_MAX_JSON + 32 + LW_WIDGET_ID_MAX_LEN <
				 LW_PAYLOAD_LIMIT,
				 "a sample must fit a notification payload");
StaticAssertDecl(LW_PAYLOAD_LIMIT <= BLCKSZ - NAMEDATALEN - 128,
				 "the payload limit must not exceed PostgreSQL's");

/*
 * lw_append_timestamp
 *		RFC 3339 in UTC with "Z": fractional seconds only when not zero,
 *		without trailing zeros ("07:15:02Z", "07:15:02.25Z").
 *
 * The buffer only takes times of years 1 to 9999 (four-digit years), so
 * anything else here means the tables were edited by hand.
 */
void
lw_append_timestamp(StringInfo buf, TimestampTz ts)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (TIMESTAMP_NOT_FINITE(ts) ||
		timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0 ||
		tm.tm_year < 1 || tm.tm_year > 9999)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("sample time out of range for RFC 3339")));

	appendStringInfo(buf, "%04d-%02d-%02dT%02d:%02d:%02d",
					 tm.tm_year, tm.tm_mon, tm.tm_mday,
					 tm.tm_hour, tm.tm_min, tm.tm_sec);

	if (fsec != 0)
	{
		char		frac[8];
		int			len;

		/* microseconds, six digits, then drop the trailing zeros */
		len = snprintf(frac, sizeof(frac), "%06d", (int) fsec);
		while (len > 1 && frac[len - 1] == '0')
			len--;
		appendStringInfoChar(buf, '.');
		appendBinaryStringInfo(buf, frac, len);
	}
	appendStringInfoChar(buf, 'Z');
}

/*
 * lw_append_value
 *		The shortest decimal that reads back as the same double, whatever
 *		extra_float_digits says ("24.8", "1e+20", "-0.5").
 *
 * Buffered values are finite (CHECK constraints), and JSON has no
 * spelling for the others.
 */
void
lw_append_value(StringInfo buf, float8 value)
{
	char		digits[DOUBLE_SHORTEST_DECIMAL_LEN];

	if (!isfinite(value))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("sample value is not finite")));

	double_to_shortest_decimal_buf(value, digits);
	appendStringInfoString(buf, digits);
}

/*
 * lw_append_sample
 *		The JSON object of one sample.  A null unit is written as null.
 */
void
lw_append_sample(StringInfo buf, const LwSample *sample)
{
	appendStringInfo(buf, "{\"seq\":" INT64_FORMAT ",\"timestamp\":\"",
					 sample->seq);
	lw_append_timestamp(buf, sample->ts);
	appendStringInfoString(buf, "\",\"value\":");
	lw_append_value(buf, sample->value);
	appendStringInfoString(buf, ",\"unit\":");
	if (sample->unit == NULL)
		appendStringInfoString(buf, "null");
	else
		escape_json(buf, sample->unit);
	appendStringInfoChar(buf, '}');
}

/*
 * notification_queue_usage
 *		The share of the NOTIFY queue in use, from 0 to 1.
 */
static double
notification_queue_usage(void)
{
	LOCAL_FCINFO(fcinfo, 0);

	InitFunctionCallInfoData(*fcinfo, NULL, 0, InvalidOid, NULL, NULL);
	return DatumGetFloat8(pg_notification_queue_usage(fcinfo));
}

/*
 * start_payload
 *		Reset buf to the opening of a payload for widget_id.
 */
static void
start_payload(StringInfo buf, const char *widget_id)
{
	resetStringInfo(buf);
	appendStringInfoString(buf, "{\"widget_id\":");
	escape_json(buf, widget_id);
	appendStringInfoString(buf, ",\"samples\":[");
}

/*
 * lw_notify_samples
 *		Queue the notifications announcing new samples of one widget.
 *
 * Channel "widget_<widget_id>", case kept: Async_Notify() takes the name
 * as given, where SQL NOTIFY would fold an unquoted identifier.  Samples
 * go in the given (seq) order, as many per payload as fit below
 * LW_PAYLOAD_LIMIT bytes, then in further payloads.
 *
 * Nothing here may make an insert fail: a channel that cannot exist or a
 * nearly full queue is reported with a warning and the samples stay in
 * the buffer for clients to fetch.
 */
void
lw_notify_samples(const char *widget_id, const LwSample *samples,
				  int nsamples)
{
	char		channel[NAMEDATALEN];
	StringInfoData payload;
	StringInfoData one;
	int			empty_len;

	if (nsamples == 0)
		return;
	if (strlen(LW_CHANNEL_PREFIX) + strlen(widget_id) >= NAMEDATALEN)
	{
		ereport(WARNING,
				(errmsg("samples of widget \"%s\" not notified: widget id too long",
						widget_id)));
		return;
	}
	if (notification_queue_usage() > lw_notify_queue_limit)
	{
		ereport(WARNING,
				(errmsg("samples of widget \"%s\" not notified: notification queue over %g%% full",
						widget_id, lw_notify_queue_limit * 100),
				 errhint("A listening session is not consuming its notifications.")));
		return;
	}
	snprintf(channel, sizeof(channel), "%s%s", LW_CHANNEL_PREFIX, widget_id);

	initStringInfo(&payload);
	initStringInfo(&one);
	start_payload(&payload, widget_id);
	empty_len = payload.len;

	for (int i = 0; i < nsamples; i++)
	{
		resetStringInfo(&one);
		lw_append_sample(&one, &samples[i]);

		/* "," before the sample, "]}" after it */
		if (payload.len > empty_len &&
			payload.len + 1 + one.len + 2 >= LW_PAYLOAD_LIMIT)
		{
			appendStringInfoString(&payload, "]}");
			Async_Notify(channel, payload.data);
			start_payload(&payload, widget_id);
		}
		if (payload.len > empty_len)
			appendStringInfoChar(&payload, ',');
		appendBinaryStringInfo(&payload, one.data, one.len);
	}
	appendStringInfoString(&payload, "]}");
	Async_Notify(channel, payload.data);

	pfree(payload.data);
	pfree(one.data);
}
