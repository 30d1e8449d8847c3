/*-------------------------------------------------------------------------
 *
 * track.c
 *	  livewidget.track() and livewidget.untrack(): the mapping of a
 *	  device+sensor to a widget, and the buffer changes that go with it.
 *
 * Concurrency: track(), untrack() and refill() take a SHARE lock on every
 * attached readings table before anything else.  It waits for the
 * inserting statements in progress to commit and holds back new ones
 * until this transaction ends, so a reading
 * committed while track() runs is either already in the table when the
 * buffer is filled, or inserted after the new mapping is visible to the
 * buffer trigger; it is never missed by both.  Then they take the
 * widget's lock, as a commit that writes the buffer does, so seq stays in
 * commit order, and write what their own transaction inserted for the
 * widget into its buffer first (pending.c).
 *
 * Under REPEATABLE READ and SERIALIZABLE the same holds: the extension's
 * own queries run with a fresh snapshot (see lw_execute()), so neither
 * the fill nor the trigger works from a view older than the lock.
 *
 *	  fill	put the newest readings, up to max_samples, in an empty buffer
 *	  trim	keep only the newest n samples (0 empties the buffer)
 *
 * extension/track.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "funcapi.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "livewidget.h"

PG_FUNCTION_INFO_V1(livewidget_track);
PG_FUNCTION_INFO_V1(livewidget_untrack);
PG_FUNCTION_INFO_V1(livewidget_refill);

/* The state row of one widget while this transaction holds its lock. */
typedef struct WidgetState
{
	char	   *widget_id;
	int64		last_seq;
	int64		removed_seq;	/* highest seq removed here, 0 if none */
} WidgetState;

/* The current mapping of a widget, if any. */
typedef struct Mapping
{
	bool		found;
	char	   *device_id;
	char	   *sensor_type;
	int32		max_samples;
} Mapping;

/*
 * lw_check_widget_id
 *		Reject a widget id that cannot name a notification channel.
 *
 * 1 to 56 bytes of ASCII letters, digits, "_" and "-": "widget_" plus the
 * id must fit the 63 bytes of a channel name, and a conservative alphabet
 * keeps the id safe in URLs and topic names.
 */
void
lw_check_widget_id(const char *widget_id)
{
	size_t		len = strlen(widget_id);

	if (len == 0 || len > LW_WIDGET_ID_MAX_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid widget id \"%s\"", widget_id),
				 errdetail("A widget id is 1 to %d bytes long; this one has %zu.",
						   LW_WIDGET_ID_MAX_LEN, len)));

	for (const char *p = widget_id; *p; p++)
	{
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
			(*p >= '0' && *p <= '9') || *p == '_' || *p == '-')
			continue;
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid widget id \"%s\"", widget_id),
				 errdetail("Only ASCII letters, digits, \"_\" and \"-\" are allowed; byte %d is not one of them.",
						   (int) (p - widget_id) + 1)));
	}
}

/*
 * text_arg
 *		A text argument that must be given and not empty, as a C string.
 */
static char *
text_arg(FunctionCallInfo fcinfo, int argno, const char *name)
{
	char	   *value;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name)));
	value = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	if (value[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", name)));
	return value;
}

/*
 * lock_state
 *		Take the lock of a widget and read its state row, creating the row
 *		first if asked to.
 *
 * Returns false when there is no state row (and create is false).
 */
static bool
lock_state(WidgetState *state, const char *widget_id, bool create)
{
	Datum		arg = CStringGetTextDatum(widget_id);
	bool		isnull;

	state->widget_id = pstrdup(widget_id);
	state->last_seq = 0;
	state->removed_seq = 0;

	/*
	 * The lock every writer of the widget's buffer takes first (store.c);
	 * then what this transaction inserted for the widget goes into the
	 * buffer, so that what follows sees it there (pending.c).
	 */
	lw_lock_widgets(&state->widget_id, 1);
	lw_pending_flush(widget_id);
	if (create)
		lw_execute(LW_Q_CREATE_STATE, &arg, NULL, false, SPI_OK_INSERT);
	lw_execute(LW_Q_READ_STATE, &arg, NULL, false, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return false;
	state->last_seq = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
												  SPI_tuptable->tupdesc, 1,
												  &isnull));
	SPI_freetuptable(SPI_tuptable);
	return true;
}

/*
 * save_state
 *		Store the counters; the sample count is recounted by the query.
 */
static void
save_state(WidgetState *state)
{
	Datum		args[3];

	args[0] = CStringGetTextDatum(state->widget_id);
	args[1] = Int64GetDatum(state->last_seq);
	args[2] = Int64GetDatum(state->removed_seq);
	lw_execute(LW_Q_SAVE_STATE, args, NULL, false, SPI_OK_UPDATE);
}

static void
get_mapping(Mapping *map, const char *widget_id)
{
	Datum		arg = CStringGetTextDatum(widget_id);
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;

	lw_execute(LW_Q_GET_MAPPING, &arg, NULL, false, SPI_OK_SELECT);
	map->found = (SPI_processed > 0);
	if (!map->found)
		return;

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	map->device_id = TextDatumGetCString(SPI_getbinval(tup, desc, 1,
													  &isnull));
	map->sensor_type = TextDatumGetCString(SPI_getbinval(tup, desc, 2,
														 &isnull));
	map->max_samples = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
	SPI_freetuptable(SPI_tuptable);
}

/*
 * trim_buffer
 *		Keep the newest "keep" samples of the widget; 0 empties it.
 */
static void
trim_buffer(WidgetState *state, int keep)
{
	Datum		args[2];
	bool		isnull;
	Datum		maxseq;

	args[0] = CStringGetTextDatum(state->widget_id);
	args[1] = Int32GetDatum(keep);
	lw_execute(LW_Q_TRIM_BUFFER, args, NULL, false, SPI_OK_SELECT);

	maxseq = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2,
						   &isnull);
	if (!isnull)
		state->removed_seq = Max(state->removed_seq, DatumGetInt64(maxseq));
	SPI_freetuptable(SPI_tuptable);
}

/*
 * insert_fill
 *		Write the rows of the fill query (oldest first) as samples with the
 *		next seqs.
 */
static void
insert_fill(WidgetState *state, SPITupleTable *tt, int n)
{
	char	  **ids = palloc(sizeof(char *) * n);
	Datum	   *seqs = palloc(sizeof(Datum) * n);
	Datum	   *tss = palloc(sizeof(Datum) * n);
	Datum	   *values = palloc(sizeof(Datum) * n);
	Datum	   *units = palloc(sizeof(Datum) * n);
	bool	   *unitnulls = palloc(sizeof(bool) * n);
	Datum		args[5];

	for (int i = 0; i < n; i++)
	{
		HeapTuple	tup = tt->vals[i];
		bool		isnull;
		Datum		unit;

		ids[i] = state->widget_id;
		seqs[i] = Int64GetDatum(++state->last_seq);
		tss[i] = SPI_getbinval(tup, tt->tupdesc, 1, &isnull);
		values[i] = SPI_getbinval(tup, tt->tupdesc, 2, &isnull);
		unit = SPI_getbinval(tup, tt->tupdesc, 3, &unitnulls[i]);
		units[i] = unitnulls[i] ? (Datum) 0 :
			CStringGetTextDatum(lw_clip_unit(TextDatumGetCString(unit)));
	}

	args[0] = lw_cstring_array(ids, n);
	args[1] = lw_build_array(seqs, NULL, n, INT8OID);
	args[2] = lw_build_array(tss, NULL, n, TIMESTAMPTZOID);
	args[3] = lw_build_array(values, NULL, n, FLOAT8OID);
	args[4] = lw_build_array(units, unitnulls, n, TEXTOID);
	lw_execute(LW_Q_INSERT_SAMPLES, args, NULL, false, SPI_OK_INSERT);
}

/*
 * fill_buffer
 *		Fill an empty buffer with the newest readings of device+sensor in
 *		all attached tables, up to max_samples, numbered oldest first.
 *		Returns how many.
 */
static int
fill_buffer(WidgetState *state, const char *device_id,
			const char *sensor_type, int max_samples)
{
	Datum		args[3];
	int			n;

	args[0] = CStringGetTextDatum(device_id);
	args[1] = CStringGetTextDatum(sensor_type);
	args[2] = Int32GetDatum(max_samples);
	lw_execute_plan(lw_fill_plan(), 3, args, NULL, false, SPI_OK_SELECT);
	n = (int) SPI_processed;
	if (n > 0)
		insert_fill(state, SPI_tuptable, n);
	SPI_freetuptable(SPI_tuptable);
	return n;
}

/*
 * read_track_args
 *		Validate the arguments of track() into map (found = true).
 */
static void
read_track_args(FunctionCallInfo fcinfo, Mapping *map, char **widget_id,
				pg_uuid_t **dashboard)
{
	map->device_id = text_arg(fcinfo, 0, "device_id");
	map->sensor_type = text_arg(fcinfo, 1, "sensor_type");
	*widget_id = text_arg(fcinfo, 2, "widget_id");
	lw_check_widget_id(*widget_id);

	if (PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("dashboard_uuid must not be null")));
	*dashboard = PG_GETARG_UUID_P(3);

	if (PG_ARGISNULL(4))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("max_samples must not be null")));
	map->max_samples = PG_GETARG_INT32(4);
	if (map->max_samples < LW_MAX_SAMPLES_MIN ||
		map->max_samples > LW_MAX_SAMPLES_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_samples must be between %d and %d",
						LW_MAX_SAMPLES_MIN, LW_MAX_SAMPLES_MAX),
				 errdetail("The value given was %d.", map->max_samples)));
	map->found = true;
}

/*
 * put_mapping
 *		Create or update the tracked_variable row; returns it (in SPI's
 *		memory).
 */
static HeapTuple
put_mapping(const Mapping *map, const char *widget_id, pg_uuid_t *dashboard)
{
	Datum		args[5];

	args[0] = CStringGetTextDatum(map->device_id);
	args[1] = CStringGetTextDatum(map->sensor_type);
	args[2] = CStringGetTextDatum(widget_id);
	args[3] = UUIDPGetDatum(dashboard);
	args[4] = Int32GetDatum(map->max_samples);
	lw_execute(LW_Q_PUT_MAPPING, args, NULL, false, SPI_OK_INSERT_RETURNING);
	return SPI_tuptable->vals[0];
}

/*
 * adjust_buffer
 *		Bring the buffer in line with a new mapping, given the old one.
 *
 * Lower max_samples: trim at once.  Only the dashboard changed: nothing to
 * do.  New widget, other device or sensor, or higher max_samples: empty
 * the buffer and fill it again.
 *
 * A higher max_samples refills rather than adding the older readings
 * below the buffer: those would get seqs above the buffered samples, and
 * among samples of equal time (ts, seq) order would no longer be
 * insertion order.  The price is that clients resuming from a seq they
 * saw before are told to reset.
 */
static void
adjust_buffer(WidgetState *state, const Mapping *old, const Mapping *want)
{
	bool		same_source = old->found &&
		strcmp(old->device_id, want->device_id) == 0 &&
		strcmp(old->sensor_type, want->sensor_type) == 0;

	if (same_source && want->max_samples == old->max_samples)
		return;
	if (same_source && want->max_samples < old->max_samples)
	{
		trim_buffer(state, want->max_samples);
		return;
	}

	/* a buffer left by hand edits or an older mapping goes too */
	trim_buffer(state, 0);
	fill_buffer(state, want->device_id, want->sensor_type, want->max_samples);
}

/*
 * livewidget_track
 *		livewidget.track(device_id, sensor_type, widget_id, dashboard_uuid,
 *		max_samples): create or update a widget's mapping; returns the
 *		tracked_variable row.
 */
Datum
livewidget_track(PG_FUNCTION_ARGS)
{
	Mapping		want;
	Mapping		old;
	char	   *widget_id;
	pg_uuid_t  *dashboard;
	WidgetState state;
	TupleDesc	rowdesc;
	HeapTuple	row;
	Datum		result;

	read_track_args(fcinfo, &want, &widget_id, &dashboard);
	if (get_call_result_type(fcinfo, NULL, &rowdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type of livewidget.track must be a row type");

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	lw_lock_attached_tables();

	lock_state(&state, widget_id, true);
	get_mapping(&old, widget_id);
	row = put_mapping(&want, widget_id, dashboard);
	adjust_buffer(&state, &old, &want);
	save_state(&state);

	/* copied into the caller's memory before SPI's is released */
	result = PointerGetDatum(SPI_returntuple(row, rowdesc));

	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	PG_RETURN_DATUM(result);
}

/*
 * livewidget_untrack
 *		livewidget.untrack(widget_id): remove a widget's mapping and its
 *		samples; true if the mapping existed.
 *
 * The state row stays, so that the widget id never reuses a seq, and
 * records the highest seq removed, so that samples_after() tells a
 * client that was behind to start over.
 */
Datum
livewidget_untrack(PG_FUNCTION_ARGS)
{
	char	   *widget_id;
	WidgetState state;
	Datum		arg;
	bool		existed;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("widget_id must not be null")));
	widget_id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	arg = CStringGetTextDatum(widget_id);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	lw_lock_attached_tables();

	lock_state(&state, widget_id, false);
	lw_execute(LW_Q_DELETE_MAPPING, &arg, NULL, false, SPI_OK_DELETE);
	existed = (SPI_processed > 0);
	trim_buffer(&state, 0);
	save_state(&state);

	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	PG_RETURN_BOOL(existed);
}

/*
 * livewidget_refill
 *		livewidget.refill(widget_id): empty a widget's buffer and fill it
 *		again from the readings stored; returns the samples buffered.
 *
 * Buffers follow inserts only, so this is how a buffer catches up with
 * readings that were updated, deleted or loaded behind the trigger's back.
 * The refilled samples get new seqs and the old ones count as removed, so
 * a client resuming from before is told to reset.
 */
Datum
livewidget_refill(PG_FUNCTION_ARGS)
{
	char	   *widget_id = text_arg(fcinfo, 0, "widget_id");
	WidgetState state;
	Mapping		map;
	int			n;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	lw_lock_attached_tables();

	/* the widget lock first, as track() takes it, then the mapping */
	map.found = lock_state(&state, widget_id, false);
	if (map.found)
		get_mapping(&map, widget_id);
	if (!map.found)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("widget \"%s\" is not tracked", widget_id),
				 errhint("Use livewidget.track() to map a device and sensor to it.")));
	trim_buffer(&state, 0);
	n = fill_buffer(&state, map.device_id, map.sensor_type, map.max_samples);
	save_state(&state);

	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	PG_RETURN_INT32(n);
}
