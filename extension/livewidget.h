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
	LW_Q_LOOKUP_WIDGETS,
	LW_Q_INSERT_SAMPLES,
	LW_Q_CREATE_STATE,
	LW_Q_READ_STATE,
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
	LW_Q_EXTENSION_VERSION,
	LW_Q_REJECTED_SPAN,
	LW_Q_TRIM_REJECTED,
	LW_Q_COUNT					/* number of queries, not a query */
} LwQueryId;

/*
 * Why a reading of an attached table is stored but not buffered: the
 * "problem" column of the per-table query of new readings (attach.c).
 */
#define LW_SKIP_NULL		1	/* null device, sensor, value or time */
#define LW_SKIP_NOT_FINITE	2	/* NaN, infinity, or beyond a double */
#define LW_SKIP_TIME		3	/* outside years 1 to 9999 UTC */

/* The mapped columns of a readings table, in this order */
#define LW_ATT_DEVICE		0
#define LW_ATT_SENSOR		1
#define LW_ATT_VALUE		2
#define LW_ATT_UNIT			3
#define LW_ATT_TS			4
#define LW_ATT_COUNT		5

/*
 * A readings table as the buffer trigger sees it, cached per backend by
 * table OID (attach.c): where each mapped column is in the table's rows
 * (and so in the rows of the transition table), and its base type, one
 * of those attach() accepts.
 */
typedef struct LwAttachment
{
	Oid			relid;			/* hash key */
	bool		valid;			/* false once invalidated */
	bool		attached;		/* has a row in attached_table */
	char	   *problem;		/* why the mapping cannot be used, or NULL */
	bool		keys_nullable;	/* device or sensor column may be null */
	AttrNumber	attnums[LW_ATT_COUNT];	/* InvalidAttrNumber: no unit column */
	Oid			types[LW_ATT_COUNT];
} LwAttachment;

/* A widget a device+sensor feeds (lookup.c) */
typedef struct LwWidgetRef
{
	char	   *widget_id;
	int32		max_samples;
} LwWidgetRef;

/* Every widget one device+sensor feeds; none when it is not tracked */
typedef struct LwFeed
{
	int			nwidgets;
	LwWidgetRef *widgets;
} LwFeed;

/* A widget's state row as the buffer trigger reads and writes it */
typedef struct LwStateRow
{
	ItemPointerData tid;
	int64		last_seq;
	int64		removed_seq;
	int32		sample_count;
	bool		oldest_known;	/* oldest_ts is set */
	TimestampTz oldest_ts;		/* no sample is older */
} LwStateRow;

/*
 * A new reading that may become a sample.  ord numbers the readings of a
 * transaction in insertion order (pending.c): of two with the same ts,
 * the higher ord is the newer.
 */
typedef struct LwReading
{
	int64		ord;
	TimestampTz ts;
	float8		value;
	char	   *unit;			/* already cut to LW_UNIT_MAX_BYTES */
	int64		seq;			/* assigned when it enters the buffer */
} LwReading;

/* The readings a transaction gives one widget, to be written at commit */
typedef struct LwPendingWidget
{
	const char *widget_id;
	int32		max_samples;
	LwReading  *readings;		/* at most max_samples, by (ts, ord) */
	int			nreadings;
} LwPendingWidget;

/* A buffered sample that new readings may push out */
typedef struct LwSampleRow
{
	ItemPointerData tid;		/* its row, for reuse or deletion */
	int64		seq;
	TimestampTz ts;
} LwSampleRow;

typedef struct LwStore LwStore;

/* A session's copy of a widget's buffer order (order.c) */
typedef struct LwOrder
{
	char		widget_id[LW_WIDGET_ID_MAX_LEN + 1];	/* hash key */
	bool		current;		/* describes the buffer of "state" */
	bool		built;			/* was ever current */
	int			hits;			/* statements in a row it was current */
	int			misses;			/* statements in a row it was not */
	LwStateRow	state;			/* the state row it goes with */
	int			nsamples;
	int			cap;
	LwSampleRow *samples;		/* in (ts, seq) order */
} LwOrder;

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

/* buffer.c */
typedef void (*LwLaterFn) (void *arg, const char *widget_id,
						   const LwSample *samples, int nsamples);
extern void lw_buffer_write(LwPendingWidget *widgets, int n, LwLaterFn later,
							void *arg);

/* pending.c */
extern int64 lw_pending_ords(int64 n);
extern void lw_pending_add(const char *widget_id, int32 max_samples,
						   const LwReading *readings, int n);
extern void lw_pending_flush(const char *widget_id);

/* lookup.c */
extern void lw_lookup_begin(void);
extern const LwFeed *lw_lookup(const char *device_id, const char *sensor_type);
extern void lw_lookup_fill(char **device_ids, char **sensor_types, int n);

/* store.c */
extern void lw_lock_widgets(char **widget_ids, int n);
extern LwStore *lw_store_open(void);
extern void lw_store_close(LwStore *s);
extern bool lw_store_read_state(LwStore *s, const char *widget_id,
								LwStateRow *row);
extern int	lw_store_oldest(LwStore *s, const char *widget_id,
							const LwStateRow *state, int n,
							LwSampleRow *out);
extern void lw_store_replace_sample(LwStore *s, ItemPointer tid,
									const char *widget_id, int64 seq,
									TimestampTz ts, float8 value,
									const char *unit, ItemPointer newtid);
extern void lw_store_insert_sample(LwStore *s, const char *widget_id,
								   int64 seq, TimestampTz ts, float8 value,
								   const char *unit, ItemPointer newtid);
extern bool lw_store_check_sample(LwStore *s, const char *widget_id,
								  const LwSampleRow *sample);
extern void lw_store_identity(LwStore *s, Oid *state_file, Oid *sample_file);
extern void lw_store_delete_sample(LwStore *s, ItemPointer tid);
extern void lw_store_save_state(LwStore *s, const char *widget_id,
								LwStateRow *row);

/* order.c */
extern void lw_order_begin(Oid state_file, Oid sample_file);
extern LwOrder *lw_order_get(const char *widget_id);
extern bool lw_order_matches(const LwOrder *o, const LwStateRow *state);
extern void lw_order_set(LwOrder *o, const LwStateRow *state,
						 const LwSampleRow *samples, int n);
extern void lw_order_forget(LwOrder *o);

/* sample_json.c */
#define LW_NOTIFY_QUEUE_LIMIT_DEFAULT	0.9
extern double lw_notify_queue_limit;
extern void lw_append_timestamp(StringInfo buf, TimestampTz ts);
extern void lw_append_value(StringInfo buf, float8 value);
extern void lw_append_sample(StringInfo buf, const LwSample *sample);
extern void lw_notify_samples(const char *widget_id, const LwSample *samples,
							  int nsamples);

/* attach.c */
extern LwAttachment *lw_attachment(Oid relid);
extern float8 lw_real_to_double(float4 value);
extern void lw_check_version(void);
extern void lw_lock_attached_tables(void);
extern SPIPlanPtr lw_fill_plan(void);

/* track.c */
extern void lw_check_widget_id(const char *widget_id);

#endif							/* LIVEWIDGET_H */
