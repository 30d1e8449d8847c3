/*-------------------------------------------------------------------------
 *
 * buffer.c
 *	  The statement trigger that appends new readings to widget buffers.
 *
 * livewidget.buffer_readings() fires AFTER INSERT FOR EACH STATEMENT on
 * every attached readings table (livewidget.sensor_data and those given
 * to livewidget.attach()) with the transition table "new_readings".  Per
 * statement, whatever the number of rows:
 *
 *	1. read the new rows from the transition table, as sensor_data's
 *	   columns (the table's mapping comes from attach.c);
 *	2. find the widgets each device+sensor feeds (lookup.c, one query for
 *	   all the keys the per-backend cache misses);
 *	3. per widget, keep the newest max_samples of its new readings, and
 *	   hand them to pending.c, which keeps the transaction's newest.
 *
 * Once per transaction, just before it commits (lw_buffer_write(), called
 * by pending.c):
 *
 *	4. take the widgets' locks, then per widget read its counters and the
 *	   oldest samples the new readings may push out, decide in C which
 *	   readings stay and which samples go, number the new samples and
 *	   write them, a new sample taking over the row of one it pushes out
 *	   (store.c);
 *	5. notify the new samples, one group of notifications per widget.
 *
 * Order of samples: by (ts, seq).  Of a new reading and a buffered sample
 * with the same ts the new reading is the newer; within the transaction
 * the later row is the newer, and it also gets the higher seq.
 *
 * Why seq follows commit order: the widget locks of step 4 are held
 * through the commit, so a second writer of the same widget waits for the
 * first to commit, then reads its counters and samples afresh.
 *
 * The memory of a statement (steps 1 to 3) and of a commit's writes
 * (steps 4 and 5) each lives in one context, deleted at the end or with
 * the transaction on error.
 *
 * extension/buffer.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type_d.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "storage/itemptr.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "livewidget.h"

PG_FUNCTION_INFO_V1(livewidget_buffer_readings);

/* The transition table name the install script and attach() give. */
#define LW_NEW_TABLE_NAME	"new_readings"

/* One widget fed by the statement, and what happens to its buffer. */
typedef struct WidgetBuffer
{
	char	   *widget_id;
	LwStateRow	state;			/* as read, under the widget's lock */
	int64		last_seq;
	int32		sample_count;
	int32		max_samples;

	LwReading *news;			/* oldest first, by (ts, ord) */
	int			nnew;
	int			newcap;

	LwSampleRow *olds;			/* oldest first, by (ts, seq) */
	int			nold;
	int			oldwanted;		/* how many olds were asked for */

	int			dropped_old;	/* olds[0 .. dropped_old) leave */
	LwReading **kept;			/* readings that stay, in seq order */
	ItemPointerData *newtids;	/* where each of kept went */
	int			nkept;
	int64		removed_seq;	/* highest seq that left, 0 if none */
	bool		changed;		/* state row needs saving */
} WidgetBuffer;

/* Where group_by_widget() put a widget, by id. */
typedef struct WidgetSlot
{
	char		widget_id[LW_WIDGET_ID_MAX_LEN + 1];	/* hash key */
	int			index;			/* in StatementWork.widgets */
} WidgetSlot;

/* The work of one statement. */
typedef struct StatementWork
{
	WidgetBuffer *widgets;		/* in strcmp() order of widget_id */
	int			nwidgets;

	LwAttachment *table;		/* the readings table and its queries */
	int			nskipped[LW_SKIP_TIME + 1]; /* by reason; 0 unused */
} StatementWork;

/*
 * check_trigger_call
 *		Refuse any use but the one the install script sets up.
 *
 * The function runs with its owner's rights, so it must not be usable on
 * another table, even by a role that managed to get EXECUTE on it.
 */
static void
check_trigger_call(FunctionCallInfo fcinfo)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function \"buffer_readings\" was not called by trigger manager")));

	if (!TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event) ||
		!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ||
		trigdata->tg_newtable == NULL ||
		trigdata->tg_trigger->tgnewtable == NULL ||
		strcmp(trigdata->tg_trigger->tgnewtable, LW_NEW_TABLE_NAME) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function \"buffer_readings\" must be fired AFTER INSERT FOR EACH STATEMENT"),
				 errdetail("It needs the new rows as transition table \"%s\".",
						   LW_NEW_TABLE_NAME)));
}

/*
 * find_table
 *		The attachment of the trigger's table; refuse a table that is not
 *		attached, so that this owner-rights function cannot be put to work
 *		on other tables, even by a role that managed to get EXECUTE on it.
 *		Must be called while connected to SPI.
 */
static LwAttachment *
find_table(TriggerData *trigdata)
{
	Relation	rel = trigdata->tg_relation;
	LwAttachment *table = lw_attachment(RelationGetRelid(rel));

	if (!table->attached)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function \"buffer_readings\" cannot be used on table \"%s\"",
						RelationGetRelationName(rel)),
				 errdetail("It only buffers readings of tables given to livewidget.attach().")));
	return table;
}

static int
widget_cmp(const void *a, const void *b)
{
	return strcmp(((const WidgetBuffer *) a)->widget_id,
				  ((const WidgetBuffer *) b)->widget_id);
}


/* A row of the transition table, read in C. */
typedef struct NewRow
{
	char	   *device_id;		/* NULL when the column is null */
	char	   *sensor_type;
	LwReading	r;
	int			problem;		/* 0, or an LW_SKIP_* reason */
} NewRow;

/*
 * string_column
 *		A text, varchar or char column as a C string, as its cast to text
 *		reads it (char loses its trailing blanks).
 */
static char *
string_column(Datum d, Oid type)
{
	char	   *s = TextDatumGetCString(d);

	if (type == BPCHAROID)
	{
		size_t		len = strlen(s);

		while (len > 0 && s[len - 1] == ' ')
			s[--len] = '\0';
	}
	return s;
}

/*
 * value_column
 *		A numeric column as a double; false when it has none that is
 *		finite (NaN, infinity, or a numeric beyond a double's range).
 */
static bool
value_column(Datum d, Oid type, float8 *value)
{
	switch (type)
	{
		case FLOAT8OID:
			*value = DatumGetFloat8(d);
			break;
		case FLOAT4OID:
			*value = lw_real_to_double(DatumGetFloat4(d));
			break;
		case INT2OID:
			*value = (float8) DatumGetInt16(d);
			break;
		case INT4OID:
			*value = (float8) DatumGetInt32(d);
			break;
		case INT8OID:
			*value = (float8) DatumGetInt64(d);
			break;
		case NUMERICOID:
			if (numeric_is_nan(DatumGetNumeric(d)) ||
				numeric_is_inf(DatumGetNumeric(d)))
				return false;
			/* beyond a double's range this gives an infinity, not an error */
			*value = DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow,
														d));

			/*
			 * The fills' queries count a numeric of magnitude 1e308 or more
			 * as not finite (attach.c): so does the trigger, so that a
			 * refill keeps what inserts buffered.
			 */
			if (fabs(*value) >= 1e308)
				return false;
			break;
		default:
			elog(ERROR, "unexpected type %u of a readings value column", type);
	}
	return !isnan(*value) && !isinf(*value);
}

/*
 * read_rows
 *		Read the statement's new rows from the transition table, in
 *		insertion order, as the columns of sensor_data.
 *
 * The transition table's rows have the trigger table's row type, also for
 * rows routed to partitions.  The trigger reads it with a read pointer of
 * its own, as a scan of it in a query does.
 */
static NewRow *
read_rows(TriggerData *trigdata, LwAttachment *table, int *nrows)
{
	static TimestampTz low = 0;
	static TimestampTz high = 0;
	Tuplestorestate *store = trigdata->tg_newtable;
	TupleTableSlot *slot;
	const AttrNumber *att = table->attnums;
	const Oid  *type = table->types;
	NewRow	   *rows;
	int64		base;
	int			n = 0;
	int			ptr;

	/* years 1 to 9999 UTC: what a sample's RFC 3339 time can show */
	if (high == 0)
	{
		low = (TimestampTz) (date2j(1, 1, 1) - POSTGRES_EPOCH_JDATE) *
			USECS_PER_DAY;
		high = (TimestampTz) (date2j(10000, 1, 1) - POSTGRES_EPOCH_JDATE) *
			USECS_PER_DAY;
	}

	rows = palloc(sizeof(NewRow) * tuplestore_tuple_count(store));
	base = lw_pending_ords(tuplestore_tuple_count(store));
	slot = MakeSingleTupleTableSlot(RelationGetDescr(trigdata->tg_relation),
									&TTSOpsMinimalTuple);
	ptr = tuplestore_alloc_read_pointer(store, EXEC_FLAG_REWIND);
	tuplestore_select_read_pointer(store, ptr);
	tuplestore_rescan(store);

	while (tuplestore_gettupleslot(store, true, false, slot))
	{
		NewRow	   *row = &rows[n];
		Datum		d;
		bool		isnull;
		bool		value_null;
		bool		ts_null;

		row->problem = 0;
		row->r.ord = base + ++n;
		row->r.seq = 0;

		d = slot_getattr(slot, att[LW_ATT_DEVICE], &isnull);
		row->device_id = isnull ? NULL : string_column(d, type[LW_ATT_DEVICE]);
		d = slot_getattr(slot, att[LW_ATT_SENSOR], &isnull);
		row->sensor_type = isnull ? NULL : string_column(d, type[LW_ATT_SENSOR]);

		row->r.unit = NULL;
		if (att[LW_ATT_UNIT] != InvalidAttrNumber)
		{
			d = slot_getattr(slot, att[LW_ATT_UNIT], &isnull);
			if (!isnull)
				row->r.unit = lw_clip_unit(string_column(d, type[LW_ATT_UNIT]));
		}

		/* timestamp and timestamptz count the same microseconds from 2000 */
		d = slot_getattr(slot, att[LW_ATT_TS], &ts_null);
		row->r.ts = ts_null ? 0 : DatumGetTimestampTz(d);
		d = slot_getattr(slot, att[LW_ATT_VALUE], &value_null);

		if (row->device_id == NULL || row->sensor_type == NULL ||
			value_null || ts_null)
			row->problem = LW_SKIP_NULL;
		else if (!value_column(d, type[LW_ATT_VALUE], &row->r.value))
			row->problem = LW_SKIP_NOT_FINITE;
		else if (row->r.ts < low || row->r.ts >= high)
			row->problem = LW_SKIP_TIME;
	}

	tuplestore_select_read_pointer(store, 0);
	ExecDropSingleTupleTableSlot(slot);
	*nrows = n;
	return rows;
}

/*
 * find_feeds
 *		The widgets each row feeds (NULL for none), from the lookup cache,
 *		asking tracked_variable once for all the keys it misses.
 */
static const LwFeed **
find_feeds(NewRow *rows, int nrows)
{
	const LwFeed **feeds = palloc0(sizeof(LwFeed *) * nrows);
	char	  **devices = NULL;
	char	  **sensors = NULL;
	int			nmissing = 0;

	for (int i = 0; i < nrows; i++)
	{
		if (rows[i].device_id == NULL || rows[i].sensor_type == NULL)
			continue;
		feeds[i] = lw_lookup(rows[i].device_id, rows[i].sensor_type);
		if (feeds[i] != NULL)
			continue;
		if (devices == NULL)
		{
			devices = palloc(sizeof(char *) * nrows);
			sensors = palloc(sizeof(char *) * nrows);
		}
		devices[nmissing] = rows[i].device_id;
		sensors[nmissing++] = rows[i].sensor_type;
	}
	if (nmissing == 0)
		return feeds;

	lw_lookup_fill(devices, sensors, nmissing);
	for (int i = 0; i < nrows; i++)
		if (feeds[i] == NULL && rows[i].device_id != NULL &&
			rows[i].sensor_type != NULL)
			feeds[i] = lw_lookup(rows[i].device_id, rows[i].sensor_type);
	return feeds;
}

static int
reading_ts_cmp(const void *a, const void *b)
{
	const LwReading *x = (const LwReading *) a;
	const LwReading *y = (const LwReading *) b;

	if (x->ts != y->ts)
		return x->ts < y->ts ? -1 : 1;
	return (x->ord > y->ord) - (x->ord < y->ord);
}

/*
 * group_by_widget
 *		Give each widget fed by the statement its new readings, the newest
 *		max_samples of them oldest first by (ts, ord), and count the
 *		readings the buffers cannot take, by reason.
 *
 * Readings of device+sensor pairs no widget tracks are not checked,
 * except for a null device or sensor, which is always counted (it can
 * only come from a table where those columns may be null).
 */
static void
group_by_widget(StatementWork *work, NewRow *rows, const LwFeed **feeds,
				int nrows)
{
	HASHCTL		ctl;
	HTAB	   *byid;
	int			cap = 16;

	ctl.keysize = LW_WIDGET_ID_MAX_LEN + 1;
	ctl.entrysize = sizeof(WidgetSlot);
	ctl.hcxt = CurrentMemoryContext;
	byid = hash_create("livewidget statement widgets", 64, &ctl,
					   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	work->widgets = palloc(sizeof(WidgetBuffer) * cap);
	work->nwidgets = 0;

	for (int i = 0; i < nrows; i++)
	{
		const LwFeed *feed = feeds[i];

		if (rows[i].device_id == NULL || rows[i].sensor_type == NULL)
		{
			work->nskipped[LW_SKIP_NULL]++;
			continue;
		}
		if (feed == NULL || feed->nwidgets == 0)
			continue;
		if (rows[i].problem != 0)
		{
			work->nskipped[rows[i].problem]++;
			continue;
		}

		for (int k = 0; k < feed->nwidgets; k++)
		{
			const LwWidgetRef *ref = &feed->widgets[k];
			WidgetSlot *slot;
			WidgetBuffer *w;
			bool		found;

			/* track() checks that ids fit the key */
			slot = hash_search(byid, ref->widget_id, HASH_ENTER, &found);
			if (!found)
			{
				if (work->nwidgets == cap)
				{
					cap *= 2;
					work->widgets = repalloc(work->widgets,
											 sizeof(WidgetBuffer) * cap);
				}
				slot->index = work->nwidgets++;
				w = &work->widgets[slot->index];
				memset(w, 0, sizeof(WidgetBuffer));
				w->widget_id = pstrdup(ref->widget_id);
				w->max_samples = ref->max_samples;
			}
			w = &work->widgets[slot->index];
			if (w->nnew == w->newcap)
			{
				w->newcap = Max(8, w->newcap * 2);
				w->news = w->news == NULL ?
					palloc(sizeof(LwReading) * w->newcap) :
					repalloc(w->news, sizeof(LwReading) * w->newcap);
			}
			w->news[w->nnew++] = rows[i].r;
		}
	}

	/* widget id order, strcmp() as COLLATE "C" sorts */
	qsort(work->widgets, work->nwidgets, sizeof(WidgetBuffer), widget_cmp);

	/* a reading older than max_samples newer ones of its statement stays out */
	for (int i = 0; i < work->nwidgets; i++)
	{
		WidgetBuffer *w = &work->widgets[i];

		qsort(w->news, w->nnew, sizeof(LwReading), reading_ts_cmp);
		if (w->nnew > w->max_samples)
		{
			memmove(w->news, w->news + (w->nnew - w->max_samples),
					sizeof(LwReading) * w->max_samples);
			w->nnew = w->max_samples;
		}
	}
}

static int
reading_ord_cmp(const void *a, const void *b)
{
	int64		x = (*(LwReading *const *) a)->ord;
	int64		y = (*(LwReading *const *) b)->ord;

	return (x > y) - (x < y);
}

/*
 * settle_widget
 *		Decide which new readings stay and which buffered samples leave,
 *		then number the ones that stay.
 *
 * The buffer keeps the max_samples newest of (buffer + new readings), so
 * the oldest "excess" of the two merged lists leave.  A buffered sample
 * with the same ts as a new reading is the older of the two.  A reading
 * that leaves here never gets a seq and is never written.
 */
static void
settle_widget(WidgetBuffer *w)
{
	int			excess;
	int			i = 0;
	int			j = 0;

	/*
	 * Fewer rows than asked for means the buffer is smaller than its
	 * counter says (a hand edit): trust the rows.
	 */
	if (w->nold < w->oldwanted)
	{
		w->sample_count = w->nold;
		w->changed = true;
	}

	excess = w->sample_count + w->nnew - w->max_samples;
	while (excess-- > 0 && (i < w->nold || j < w->nnew))
	{
		if (j >= w->nnew || (i < w->nold && w->olds[i].ts <= w->news[j].ts))
			i++;
		else
			j++;
	}

	w->dropped_old = i;
	for (int k = 0; k < i; k++)
		w->removed_seq = Max(w->removed_seq, w->olds[k].seq);

	/* Survivors get seqs in row order, so ties on ts keep row order too. */
	w->nkept = w->nnew - j;
	w->kept = palloc(sizeof(LwReading *) * Max(w->nkept, 1));
	for (int k = 0; k < w->nkept; k++)
		w->kept[k] = &w->news[j + k];
	qsort(w->kept, w->nkept, sizeof(LwReading *), reading_ord_cmp);
	for (int k = 0; k < w->nkept; k++)
		w->kept[k]->seq = ++w->last_seq;

	w->sample_count += w->nkept - w->dropped_old;
	if (w->nkept > 0 || w->dropped_old > 0)
		w->changed = true;
}

/*
 * note_oldest
 *		Where the oldest sample of the buffer will be once the statement's
 *		samples are written, for the next statement's search (the state
 *		row's oldest_ts): the older of the oldest sample that stays and the
 *		oldest new one.  Unknown when no old sample stays and none was
 *		read, or when nothing is left.
 */
static void
note_oldest(WidgetBuffer *w)
{
	LwStateRow *st = &w->state;
	bool		known = false;
	TimestampTz oldest = 0;

	if (w->oldwanted == 0)
	{
		/* nothing left the buffer: its oldest stays, if it was known */
		known = st->oldest_known;
		oldest = st->oldest_ts;
	}
	else if (w->nold > w->dropped_old)
	{
		known = true;
		oldest = w->olds[w->dropped_old].ts;
	}

	if (w->nkept > 0)
	{
		/* news[] is in (ts, ord) order and the kept ones are its end */
		TimestampTz first_new = w->news[w->nnew - w->nkept].ts;

		if (!known || first_new < oldest)
			oldest = first_new;
		/* an empty buffer holds nothing older than its first sample */
		known = known || w->sample_count == w->nkept;
	}

	if (known != st->oldest_known || (known && oldest != st->oldest_ts))
		w->changed = true;
	st->oldest_known = known;
	st->oldest_ts = oldest;
}

/*
 * write_widget
 *		Write what settle_widget() decided for one widget.
 *
 * A sample that stays takes over the row of one that leaves while there
 * is one: an update of a row just read costs less than a delete and an
 * insert.  Rows left over are deleted or inserted.
 */
static void
write_widget(LwStore *store, WidgetBuffer *w)
{
	int			k;

	w->newtids = palloc(sizeof(ItemPointerData) * Max(w->nkept, 1));
	for (k = 0; k < w->nkept && k < w->dropped_old; k++)
		lw_store_replace_sample(store, &w->olds[k].tid, w->widget_id,
								w->kept[k]->seq, w->kept[k]->ts,
								w->kept[k]->value, w->kept[k]->unit,
								&w->newtids[k]);
	for (; k < w->nkept; k++)
		lw_store_insert_sample(store, w->widget_id, w->kept[k]->seq,
							   w->kept[k]->ts, w->kept[k]->value,
							   w->kept[k]->unit, &w->newtids[k]);
	for (k = w->nkept; k < w->dropped_old; k++)
		lw_store_delete_sample(store, &w->olds[k].tid);

	if (!w->changed)
		return;
	w->state.last_seq = w->last_seq;
	w->state.sample_count = w->sample_count;
	w->state.removed_seq = Max(w->state.removed_seq, w->removed_seq);
	lw_store_save_state(store, w->widget_id, &w->state);
}

static int
sample_row_cmp(const void *a, const void *b)
{
	const LwSampleRow *x = (const LwSampleRow *) a;
	const LwSampleRow *y = (const LwSampleRow *) b;

	if (x->ts != y->ts)
		return x->ts < y->ts ? -1 : 1;
	return (x->seq > y->seq) - (x->seq < y->seq);
}

/*
 * oldest_from_copy
 *		Take the widget's oldest samples from the session's copy of its
 *		order (order.c), each checked against its row; false when the copy
 *		is not current or a check fails.
 */
static bool
oldest_from_copy(LwStore *store, WidgetBuffer *w, LwOrder *order, int fetch)
{
	if (!lw_order_matches(order, &w->state))
		return false;
	for (int k = 0; k < fetch; k++)
		if (!lw_store_check_sample(store, w->widget_id, &order->samples[k]))
			return false;
	if (fetch > 0)
	{
		w->olds = palloc(sizeof(LwSampleRow) * fetch);
		memcpy(w->olds, order->samples, sizeof(LwSampleRow) * fetch);
	}
	w->nold = fetch;
	return true;
}

/*
 * build_copy
 *		Read the whole buffer into the session's copy of its order, and take
 *		the oldest samples from it; false when the rows do not agree with
 *		the state row's count (then the copy is not used).
 */
static bool
build_copy(LwStore *store, WidgetBuffer *w, LwOrder *order, int fetch)
{
	LwSampleRow *all = palloc(sizeof(LwSampleRow) * Max(w->sample_count, 1));
	int			n = lw_store_oldest(store, w->widget_id, &w->state,
									w->sample_count, all);

	if (n != w->sample_count)
		return false;
	lw_order_set(order, &w->state, all, n);
	w->olds = all;
	w->nold = fetch;
	return true;
}

/*
 * update_copy
 *		After the widget's writes: the copy loses the samples pushed out and
 *		gains the new ones where they sort, and goes with the new state row.
 */
static void
update_copy(WidgetBuffer *w, LwOrder *order)
{
	int			nold = order->nsamples - w->dropped_old;
	LwSampleRow *olds = order->samples + w->dropped_old;
	LwSampleRow *news = palloc(sizeof(LwSampleRow) * Max(w->nkept, 1));
	LwSampleRow *merged = palloc(sizeof(LwSampleRow) *
								 Max(nold + w->nkept, 1));
	int			i = 0,
				j = 0,
				n = 0;

	for (int k = 0; k < w->nkept; k++)
	{
		news[k].tid = w->newtids[k];
		news[k].seq = w->kept[k]->seq;
		news[k].ts = w->kept[k]->ts;
	}
	qsort(news, w->nkept, sizeof(LwSampleRow), sample_row_cmp);

	while (i < nold || j < w->nkept)
	{
		if (j >= w->nkept ||
			(i < nold && sample_row_cmp(&olds[i], &news[j]) < 0))
			merged[n++] = olds[i++];
		else
			merged[n++] = news[j++];
	}
	Assert(n == w->sample_count);
	lw_order_set(order, &w->state, merged, n);
}

/*
 * buffer_widgets
 *		Take the locks of the transaction's widgets, then buffer each one's
 *		new readings.  Widgets without a state row were not made by
 *		track() and are not fed; they leave the list, as all do when the
 *		extension's tables are gone.
 */
static void
buffer_widgets(StatementWork *work)
{
	char	  **ids = palloc(sizeof(char *) * work->nwidgets);
	LwStore    *store;
	Oid			state_file,
				sample_file;
	int			kept = 0;

	for (int i = 0; i < work->nwidgets; i++)
		ids[i] = work->widgets[i].widget_id;
	lw_lock_widgets(ids, work->nwidgets);

	store = lw_store_open();
	if (store == NULL)
	{
		work->nwidgets = 0;
		return;
	}
	lw_store_identity(store, &state_file, &sample_file);
	lw_order_begin(state_file, sample_file);

	for (int i = 0; i < work->nwidgets; i++)
	{
		WidgetBuffer *w = &work->widgets[i];
		LwOrder    *order;
		int			excess;
		int			fetch;
		bool		use_copy;

		if (!lw_store_read_state(store, w->widget_id, &w->state))
			continue;
		w->last_seq = w->state.last_seq;
		w->sample_count = w->state.sample_count;

		/*
		 * Only the oldest "excess" samples can be pushed out; one more, when
		 * there is one, tells where the oldest sample left will be.
		 */
		excess = w->sample_count + w->nnew - w->max_samples;
		w->oldwanted = Min(Max(excess, 0), w->sample_count);
		fetch = w->oldwanted > 0 ? Min(w->oldwanted + 1, w->sample_count) : 0;

		/* from the session's copy of the order, or an index scan */
		order = lw_order_get(w->widget_id);
		use_copy = oldest_from_copy(store, w, order, fetch);
		if (use_copy)
		{
			order->hits++;
			order->misses = 0;
		}
		else
		{
			bool		rebuild = !order->built || order->hits > 0 ||
				++order->misses >= 16;

			order->hits = 0;
			lw_order_forget(order);
			if (rebuild)
			{
				order->misses = 0;
				use_copy = build_copy(store, w, order, fetch);
				order->built = order->built || use_copy;
			}
			if (!use_copy && fetch > 0)
			{
				w->olds = palloc(sizeof(LwSampleRow) * fetch);
				w->nold = lw_store_oldest(store, w->widget_id, &w->state,
										  fetch, w->olds);
			}
		}

		settle_widget(w);
		note_oldest(w);
		write_widget(store, w);
		if (use_copy)
			update_copy(w, order);
		work->widgets[kept++] = *w;
	}
	work->nwidgets = kept;
	lw_store_close(store);
}

/*
 * notify_new_samples
 *		Announce the samples that are in the buffers now, widget by widget,
 *		or hand them to "later" to be announced when the transaction ends
 *		(see lw_buffer_write()).
 */
static void
notify_new_samples(StatementWork *work, LwLaterFn later, void *arg)
{
	for (int i = 0; i < work->nwidgets; i++)
	{
		WidgetBuffer *w = &work->widgets[i];
		LwSample   *samples;

		if (w->nkept == 0)
			continue;
		samples = palloc(sizeof(LwSample) * w->nkept);
		for (int k = 0; k < w->nkept; k++)
		{
			samples[k].seq = w->kept[k]->seq;
			samples[k].ts = w->kept[k]->ts;
			samples[k].value = w->kept[k]->value;
			samples[k].unit = w->kept[k]->unit;
		}
		if (later != NULL)
			later(arg, w->widget_id, samples, w->nkept);
		else
			lw_notify_samples(w->widget_id, samples, w->nkept);
	}
}

/*
 * report_skipped
 *		One warning per statement for readings stored but not buffered.
 *
 * Readings of device+sensor pairs no widget tracks are not checked,
 * except for a null device or sensor, which is reported whenever the
 * table allows one.
 */
static void
report_skipped(StatementWork *work, Relation rel)
{
	static const char *const reasons[LW_SKIP_TIME + 1] = {
		NULL,
		"a null device, sensor, value or time",
		"a value that is not a finite double precision number",
		"a time outside the years 1 to 9999 (UTC)"
	};
	StringInfoData detail;
	int			total = 0;

	initStringInfo(&detail);
	for (int r = LW_SKIP_NULL; r <= LW_SKIP_TIME; r++)
	{
		if (work->nskipped[r] == 0)
			continue;
		appendStringInfo(&detail, "%s%d with %s", total > 0 ? "; " : "",
						 work->nskipped[r], reasons[r]);
		total += work->nskipped[r];
	}
	if (total == 0)
		return;

	ereport(WARNING,
			(errcode(ERRCODE_DATA_EXCEPTION),
			 errmsg_plural("%d reading of \"%s\" stored but not buffered",
						   "%d readings of \"%s\" stored but not buffered",
						   total, total, RelationGetRelationName(rel)),
			 errdetail("Widget buffers cannot take them: %s.", detail.data)));
}

/*
 * lw_buffer_write
 *		Write the readings a transaction gave its widgets into their
 *		buffers (pending.c calls this at commit, and for track() and its
 *		kind), then notify the new samples.
 *
 * With "later", the new samples are handed to it (with arg) instead of
 * being notified: a transaction that has sent a notification can no
 * longer be prepared, so before its end pending.c keeps them, and notifies
 * them at commit.
 *
 * A transaction that dropped the extension after its inserts has no
 * buffers left to write (lw_store_open() finds them gone).
 */
void
lw_buffer_write(LwPendingWidget *widgets, int n, LwLaterFn later, void *arg)
{
	MemoryContext cxt;
	MemoryContext oldcxt;
	StatementWork work;

	cxt = AllocSetContextCreate(CurrentMemoryContext,
								"livewidget buffer write",
								ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(cxt);
	memset(&work, 0, sizeof(work));

	work.widgets = palloc0(sizeof(WidgetBuffer) * n);
	work.nwidgets = n;
	for (int i = 0; i < n; i++)
	{
		WidgetBuffer *w = &work.widgets[i];

		w->widget_id = pstrdup(widgets[i].widget_id);
		w->max_samples = widgets[i].max_samples;
		w->news = widgets[i].readings;
		w->nnew = widgets[i].nreadings;
		w->newcap = w->nnew;
	}
	/* widget id order, strcmp() as COLLATE "C" sorts: the lock order */
	qsort(work.widgets, work.nwidgets, sizeof(WidgetBuffer), widget_cmp);

	buffer_widgets(&work);
	notify_new_samples(&work, later, arg);

	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(cxt);
}

/*
 * livewidget_buffer_readings
 *		Trigger function: hand the statement's new readings of tracked
 *		device+sensor pairs over, per widget, to be written into the
 *		buffers at commit.
 */
Datum
livewidget_buffer_readings(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	MemoryContext stmtcxt;
	MemoryContext oldcxt;
	StatementWork work;

	check_trigger_call(fcinfo);

	/* INSERT ... SELECT of no rows still fires a statement trigger */
	if (tuplestore_tuple_count(trigdata->tg_newtable) == 0)
		return PointerGetDatum(NULL);

	stmtcxt = AllocSetContextCreate(CurrentMemoryContext,
									"livewidget buffer statement",
									ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(stmtcxt);
	memset(&work, 0, sizeof(work));

	/* for the queries of the attachment and lookup caches, on a miss */
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* keep our own allocations out of SPI's context */
	MemoryContextSwitchTo(stmtcxt);

	work.table = find_table(trigdata);
	MemoryContextSwitchTo(stmtcxt);
	if (work.table->problem != NULL)
	{
		/* a mapping broken by ALTER TABLE must not fail the insert */
		ereport(WARNING,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("readings of \"%s\" stored but not buffered",
						RelationGetRelationName(trigdata->tg_relation)),
				 errdetail("%s", work.table->problem),
				 errhint("Attach the table again with livewidget.attach() and the columns it has now.")));
	}
	else
	{
		int			nrows;
		NewRow	   *rows = read_rows(trigdata, work.table, &nrows);
		const LwFeed **feeds;

		lw_lookup_begin();
		feeds = find_feeds(rows, nrows);
		group_by_widget(&work, rows, feeds, nrows);

		/* written at commit (pending.c) */
		for (int i = 0; i < work.nwidgets; i++)
			lw_pending_add(work.widgets[i].widget_id,
						   work.widgets[i].max_samples,
						   work.widgets[i].news, work.widgets[i].nnew);
	}

	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");

	report_skipped(&work, trigdata->tg_relation);

	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(stmtcxt);
	return PointerGetDatum(NULL);
}
