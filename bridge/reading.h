/*-------------------------------------------------------------------------
 *
 * reading.h
 *		Device messages to readings: parsing and checking, nothing else.
 *
 * Pure functions: no I/O, no clock (the caller passes the current time),
 * no global state, so any thread may call them and the tests can feed
 * them anything.
 *
 * Terms: a "message" is one MQTT publication (its topic and payload); a
 * "reading" is one measurement (device, sensor type, value, unit, time)
 * that becomes one row of livewidget.sensor_data.  A message carries one
 * reading, a bulk of them, or a SenML pack of records.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LW_READING_H
#define LW_READING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Limits on a message.  A message beyond one of them is rejected whole.
 *
 * READING_MAX_PAYLOAD		payload bytes (1 MiB: room for a full bulk of
 *							readings with units and timestamps, about
 *							100 bytes each)
 * READING_MAX_PER_MESSAGE	readings in a bulk or records in a SenML pack
 * READING_MAX_ID			bytes of device_id and sensor_type (at least 1)
 * READING_MAX_UNIT			bytes of unit
 * READING_MAX_FUTURE_US	how far past the bridge's clock a device time
 *							may be (24 hours): a device with a wrong clock
 *							would otherwise own a widget's "newest" samples
 *
 * Device times must also be at or after 1970-01-01T00:00:00Z (so epoch
 * seconds are never negative), which keeps them well inside PostgreSQL's
 * timestamptz range.  Ids and units hold no control characters (C0, DEL,
 * C1), so they cannot disturb a log line or a terminal.
 */
#define READING_MAX_PAYLOAD		(1024 * 1024)
#define READING_MAX_PER_MESSAGE	10000
#define READING_MAX_ID			128
#define READING_MAX_UNIT		256
#define READING_MAX_FUTURE_US	(INT64_C(24) * 3600 * 1000000)

/* Why a message was rejected; also the label of its counter */
typedef enum RejectReason
{
	REJECT_NONE = 0,
	REJECT_TOO_LARGE,			/* payload or reading count over a limit */
	REJECT_MALFORMED_JSON,		/* not JSON, or not the expected shape */
	REJECT_MISSING_FIELD,		/* sensor_type or value absent */
	REJECT_INVALID_VALUE,		/* value not a finite JSON number */
	REJECT_INVALID_FIELD,		/* an id or unit of the wrong type or form */
	REJECT_DEVICE_MISMATCH,		/* device_id differs from the topic's */
	REJECT_BAD_TIMESTAMP,		/* unparsable or out of range */
	REJECT_BAD_TOPIC,			/* topic without a valid device id */
	REJECT_DATABASE,			/* PostgreSQL refused the readings */
	REJECT_NUM_REASONS
} RejectReason;

typedef struct Reading
{
	const char *sensor_type;	/* points into the batch's parsed JSON */
	double		value;
	const char *unit;			/* NULL: none */
	bool		has_ts;			/* false: the database's now() */
	int64_t		ts_us;			/* microseconds since 1970-01-01 UTC */
} Reading;

/*
 * The readings of one message.  Strings point into the parsed payload
 * (json), which the batch owns until reading_batch_free().
 */
typedef struct ReadingBatch
{
	Reading    *readings;
	int			count;
	void	   *json;			/* the parsed payload (json_t *) */
	char	   *names;			/* SenML sensor types, one allocation */
	char		detail[160];	/* what exactly was wrong, for the log */
} ReadingBatch;

/* The counter label of a reason: "malformed_json", ... */
extern const char *reading_reason_name(RejectReason reason);

/*
 * The device id in topic: the level that matches the "+" of pattern.
 * Copies it into device (size bytes) and returns REJECT_NONE, or
 * REJECT_BAD_TOPIC when the topic does not match or the id is not valid.
 */
extern RejectReason reading_topic_device(const char *pattern,
										 const char *topic,
										 char *device, size_t size);

/*
 * Parse a JSON message (one reading or a bulk) of device from the topic.
 * now_us is the current time.  On REJECT_NONE batch holds the readings in
 * message order; otherwise batch->detail says why.  Either way the caller
 * calls reading_batch_free().
 */
extern RejectReason reading_parse_json(const char *payload, size_t len,
									   const char *device, int64_t now_us,
									   ReadingBatch *batch);

/* The same for a SenML pack (RFC 8428, JSON), see reading.c for the subset */
extern RejectReason reading_parse_senml(const char *payload, size_t len,
										const char *device, int64_t now_us,
										ReadingBatch *batch);

extern void reading_batch_free(ReadingBatch *batch);

/*
 * RFC 3339 date-time with an offset, "2025-07-09T07:15:02.25+02:00", to
 * microseconds since the epoch (fractions beyond 6 digits rounded, at most
 * 9 digits).  Returns false when the text is not of that form or a field
 * is out of range.
 */
extern bool reading_parse_rfc3339(const char *text, int64_t *us);

/*
 * Microseconds since the epoch as "2025-07-09T05:15:02.250000Z", which
 * PostgreSQL reads the same whatever the session's DateStyle and TimeZone.
 * buf must hold READING_TS_LEN bytes.
 */
#define READING_TS_LEN	32
extern void reading_format_ts(int64_t us, char *buf);

/*
 * Copy at most max_in bytes of in (len bytes) to out as printable ASCII,
 * fit to go between double quotes in a log line: a double quote becomes
 * \" and a backslash \\, control and non-ASCII bytes become \xNN, and
 * "..." marks a cut.  out must hold 4 * max_in + 4 bytes.  For log lines
 * that quote what a device sent.
 */
extern void reading_escape(const char *in, size_t len, size_t max_in,
						   char *out, size_t size);

#endif							/* LW_READING_H */
