/*-------------------------------------------------------------------------
 *
 * samples.c
 *	  livewidget.samples_json() and livewidget.samples_after(): the buffer
 *	  as the JSON texts the bridge serves.
 *
 * Both are STABLE and run their one query with read_only = true, so they
 * read the caller's snapshot and never a half-written statement.  The
 * sample objects come from lw_append_sample(), like the notifications.
 *
 * extension/samples.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/uuid.h"

#include "livewidget.h"

PG_FUNCTION_INFO_V1(livewidget_samples_json);
PG_FUNCTION_INFO_V1(livewidget_samples_after);

/*
 * append_sample_row
 *		Append the sample in columns first .. first + 3 (seq, ts, value,
 *		unit) of an SPI row; returns false when seq is null (no sample).
 */
static bool
append_sample_row(StringInfo buf, HeapTuple tup, TupleDesc desc, int first,
				  bool comma)
{
	LwSample	sample;
	bool		isnull;
	Datum		unit;

	sample.seq = DatumGetInt64(SPI_getbinval(tup, desc, first, &isnull));
	if (isnull)
		return false;
	sample.ts = DatumGetTimestampTz(SPI_getbinval(tup, desc, first + 1,
												  &isnull));
	sample.value = DatumGetFloat8(SPI_getbinval(tup, desc, first + 2,
												&isnull));
	unit = SPI_getbinval(tup, desc, first + 3, &isnull);
	sample.unit = isnull ? NULL : TextDatumGetCString(unit);

	if (comma)
		appendStringInfoChar(buf, ',');
	lw_append_sample(buf, &sample);
	return true;
}

/*
 * append_sample_rows
 *		"[...]" of the samples in every row of the last query result.
 */
static void
append_sample_rows(StringInfo buf, int first)
{
	bool		any = false;

	appendStringInfoChar(buf, '[');
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		if (append_sample_row(buf, SPI_tuptable->vals[i],
							  SPI_tuptable->tupdesc, first, any))
			any = true;
	}
	appendStringInfoChar(buf, ']');
}

/*
 * livewidget_samples_json
 *		livewidget.samples_json(dashboard_uuid, widget_id): the buffered
 *		samples, oldest first (ts, then seq), as a JSON array; null when
 *		the widget is not on that dashboard.
 */
Datum
livewidget_samples_json(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *dashboard = PG_GETARG_UUID_P(0);
	text	   *widget_id = PG_GETARG_TEXT_PP(1);
	StringInfoData buf;
	Datum		args[2];
	bool		on_dashboard;

	/* allocated here so that it outlives SPI's memory */
	initStringInfo(&buf);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	args[0] = PointerGetDatum(widget_id);
	args[1] = UUIDPGetDatum(dashboard);
	lw_execute(LW_Q_SAMPLES_FOR_DASHBOARD, args, NULL, true, SPI_OK_SELECT);
	on_dashboard = (SPI_processed > 0);
	if (on_dashboard)
		append_sample_rows(&buf, 1);

	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");

	if (!on_dashboard)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf.data, buf.len));
}

/*
 * livewidget_samples_after
 *		livewidget.samples_after(widget_id, after):
 *		{"reset":false,"samples":[...]} with the buffered samples whose seq
 *		is above "after", in seq order.
 *
 * "reset" is true exactly when a sample with seq above "after" has left
 * the buffer (pushed out, trimmed, untracked): widget_state.removed_seq is
 * the highest seq that ever left.  A widget id never tracked has no
 * samples and nothing removed.
 */
Datum
livewidget_samples_after(PG_FUNCTION_ARGS)
{
	text	   *widget_id = PG_GETARG_TEXT_PP(0);
	int64		after = PG_GETARG_INT64(1);
	StringInfoData buf;
	Datum		args[2];
	bool		reset = false;

	initStringInfo(&buf);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	args[0] = PointerGetDatum(widget_id);
	args[1] = Int64GetDatum(after);
	lw_execute(LW_Q_SAMPLES_AFTER, args, NULL, true, SPI_OK_SELECT);
	if (SPI_processed > 0)
	{
		bool		isnull;
		int64		removed_seq;

		removed_seq = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
												  SPI_tuptable->tupdesc, 1,
												  &isnull));
		reset = (removed_seq > after);
	}

	appendStringInfo(&buf, "{\"reset\":%s,\"samples\":",
					 reset ? "true" : "false");
	if (SPI_processed > 0)
		append_sample_rows(&buf, 2);
	else
		appendStringInfoString(&buf, "[]");
	appendStringInfoChar(&buf, '}');

	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");

	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf.data, buf.len));
}
