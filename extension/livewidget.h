/*-------------------------------------------------------------------------
 *
 * livewidget.h
 *	  Declarations shared by the modules of the livewidget extension.
 *
 * The extension keeps, per dashboard widget, a buffer of the newest
 * samples of one device+sensor and notifies listeners of new ones.
 *
 *	  reading	one row of an attached readings table (livewidget.sensor_data
 *				or any other, see attach.c), kept whole
 *	  sample	one buffered copy of a reading in livewidget.widget_sample,
 *				numbered by seq per widget
 *
 * Every query the extension runs goes through lw_plan(): prepared once per
 * backend, kept for its lifetime, all names schema-qualified.
 *
 * extension/livewidget.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef LIVEWIDGET_H
#define LIVEWIDGET_H

#include "fmgr.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/timestamp.h"

/*
 * Limits.  The same numbers are CHECK constraints in the install script;
 * keep the two in step.
 *
 * A widget id is at most 56 bytes so that "widget_<id>" fits a channel
 * name (NAMEDATALEN - 1 = 63 bytes).  A buffered unit is cut to 64 bytes
 * so that one sample always fits a notification with room to spare.
 */
#define LW_WIDGET_ID_MAX_LEN		56
#define LW_MAX_SAMPLES_MIN			1
#define LW_MAX_SAMPLES_MAX			1000
#define LW_UNIT_MAX_BYTES			64
#define LW_CHANNEL_PREFIX			"widget_"

/*
 * A notification payload stays strictly below this many bytes, the limit
 * of the contract; PostgreSQL itself refuses 8000 and above.
 */
#define LW_PAYLOAD_LIMIT			8000

/*
 * Samples carry RFC 3339 timestamps, whose years have four digits: the
 * buffer takes readings from 0001-01-01 up to, not including,
 * 10000-01-01 (UTC) and skips others with a warning.
 */
#define LW_TS_LOW_SQL		"'0001-01-01 00:00:00+00'::timestamptz"
#define LW_TS_HIGH_SQL		"'10000-01-01 00:00:00+00'::timestamptz"

/* One sample as it is shown to clients. */
typedef struct LwSample
{
	int64		seq;
	TimestampTz ts;
	float8		value;
	const char *unit;			/* NULL when the reading had none */
} LwSample;

/*
 * The fixed queries of the extension.  The text of each is in
 * livewidget.c.  The queries that read a readings table are built per
 * table from its mapping, in attach.c.
 */
typedef enum LwQueryId
{
	LW_Q_OLDEST_SAMPLES,
	LW_Q_INSERT_SAMPLES,
	LW_Q_DELETE_SAMPLES,
	LW_Q_UPDATE_STATES,
	LW_Q_CREATE_STATE,
	LW_Q_LOCK_STATE,
	LW_Q_SAVE_STATE,
	LW_Q_GET_MAPPING,
	LW_Q_PUT_MAPPING,
	LW_Q_DELETE_MAPPING,
	LW_Q_TRIM_BUFFER,
	LW_Q_SAMPLES_FOR_DASHBOARD,
	LW_Q_SAMPLES_AFTER,
	LW_Q_GET_ATTACHMENT,
	LW_Q_LIST_ATTACHMENTS,
	LW_Q_PUT_ATTACHMENT,
	LW_Q_DELETE_ATTACHMENT,
	LW_Q_FIND_TRIGGER,
	LW_Q_INTEGER_KEY,
	LW_Q_COUNT					/* number of queries, not a query */
} LwQueryId;

/*
 * Why a reading of an attached table is stored but not buffered: the
 * "problem" column of the per-table query of new readings (attach.c).
 */
#define LW_SKIP_NULL		1	/* null device, sensor, value or time */
#define LW_SKIP_NOT_FINITE	2	/* NaN, infinity, or beyond a double */
#define LW_SKIP_TIME		3	/* outside years 1 to 9999 UTC */

/*
 * A readings table as the buffer trigger sees it, cached per backend by
 * table OID (attach.c).  The plans read the transition table
 * "new_readings" and are only valid inside the trigger.
 */
typedef struct LwAttachment
{
	Oid			relid;			/* hash key */
	bool		valid;			/* false once invalidated */
	bool		attached;		/* has a row in attached_table */
	char	   *problem;		/* why the mapping cannot be used, or NULL */
	bool		keys_nullable;	/* device or sensor column may be null */
	SPIPlanPtr	lock_plan;		/* lock the fed widgets' state rows */
	SPIPlanPtr	new_plan;		/* new readings per widget */
} LwAttachment;

/* livewidget.c */
extern SPIPlanPtr lw_plan(LwQueryId id);
extern SPIPlanPtr lw_keep_plan(const char *sql, int nargs, Oid *argtypes);
extern void lw_execute(LwQueryId id, Datum *values, const bool *nulls,
					   bool read_only, int expected);
extern void lw_execute_plan(SPIPlanPtr plan, int nargs, Datum *values,
							const bool *nulls, bool read_only, int expected);
extern char *lw_clip_unit(const char *unit);
extern Datum lw_build_array(Datum *elems, const bool *nulls, int n,
							Oid elemtype);
extern Datum lw_cstring_array(char **strs, int n);

/* sample_json.c */
extern void lw_append_timestamp(StringInfo buf, TimestampTz ts);
extern void lw_append_value(StringInfo buf, float8 value);
extern void lw_append_sample(StringInfo buf, const LwSample *sample);
extern void lw_notify_samples(const char *widget_id, const LwSample *samples,
							  int nsamples);

/* attach.c */
extern LwAttachment *lw_attachment(Oid relid);
extern void lw_lock_attached_tables(void);
extern SPIPlanPtr lw_fill_plan(void);

/* track.c */
extern void lw_check_widget_id(const char *widget_id);

#endif							/* LIVEWIDGET_H */
