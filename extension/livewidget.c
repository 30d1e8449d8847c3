/*-------------------------------------------------------------------------
 *
 * livewidget.c
 *	  Module entry point and the queries shared by the extension's C code.
 *
 * Every statement the extension runs is listed in one table below and
 * prepared at most once per backend (SPI_prepare + SPI_keepplan).  All
 * names are qualified with the livewidget schema and the C functions run
 * with search_path pinned to pg_catalog (see the install script), so a
 * caller's search_path can neither break nor hijack them.
 *
 * Ordering convention: widget ids are sorted with COLLATE "C" wherever the
 * order matters (row locks, merging query results in C), so that the
 * order is the same in every database and equals strcmp() order.
 *
 * extension/livewidget.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type_d.h"
#include "commands/trigger.h"
#include "mb/pg_wchar.h"
#include "nodes/parsenodes.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"

#include "livewidget.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(livewidget_trim_rejected_messages);

void		_PG_init(void);

static int	lw_rejected_message_limit = 10000;

/*
 * _PG_init
 *		Define the extension's settings.
 */
void
_PG_init(void)
{
	DefineCustomRealVariable("livewidget.notify_queue_limit",
							 "Share of the NOTIFY queue in use above which new samples are buffered but not notified.",
							 "A full queue would make the inserting transaction fail at commit; "
							 "above this share the trigger skips notifications with a warning instead.",
							 &lw_notify_queue_limit,
							 LW_NOTIFY_QUEUE_LIMIT_DEFAULT, 0.0, 1.0,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);
	/* read by the trigger on livewidget.rejected_message, in SQL */
	DefineCustomIntVariable("livewidget.rejected_message_limit",
							"Rows livewidget.rejected_message keeps; the oldest beyond are removed.",
							NULL,
							&lw_rejected_message_limit,
							10000, 0, INT_MAX,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
	MarkGUCPrefixReserved("livewidget");
}

#define LW_MAX_QUERY_ARGS	6

typedef struct LwQuery
{
	const char *sql;
	int			nargs;
	Oid			argtypes[LW_MAX_QUERY_ARGS];
} LwQuery;

/*
 * The statements, indexed by LwQueryId.  Comments say what each one
 * guarantees; the callers say why they need it.
 */
static const LwQuery lw_queries[LW_Q_COUNT] = {
	/* LW_Q_LOOKUP_WIDGETS: the widgets fed by the keys ($1[i], $2[i]) */
	[LW_Q_LOOKUP_WIDGETS] = {
		"SELECT t.device_id, t.sensor_type, t.widget_id, t.max_samples"
		"  FROM livewidget.tracked_variable AS t"
		" WHERE (t.device_id, t.sensor_type) IN"
		"       (SELECT * FROM unnest($1, $2))",
		2, {TEXTARRAYOID, TEXTARRAYOID}
	},

	/* LW_Q_INSERT_SAMPLES: the samples of a fill, in one statement */
	[LW_Q_INSERT_SAMPLES] = {
		"INSERT INTO livewidget.widget_sample (widget_id, seq, ts, value, unit)"
		" SELECT * FROM unnest($1, $2, $3, $4, $5)",
		5, {TEXTARRAYOID, INT8ARRAYOID, TIMESTAMPTZARRAYOID, FLOAT8ARRAYOID,
			TEXTARRAYOID}
	},

	/* LW_Q_CREATE_STATE: a widget id gets its state row once, for good */
	[LW_Q_CREATE_STATE] = {
		"INSERT INTO livewidget.widget_state (widget_id) VALUES ($1)"
		" ON CONFLICT (widget_id) DO NOTHING",
		1, {TEXTOID}
	},

	/*
	 * LW_Q_READ_STATE: the counters of a widget whose lock (store.c) the
	 * caller holds; no writer can change them until it commits.
	 */
	[LW_Q_READ_STATE] = {
		"SELECT last_seq FROM livewidget.widget_state"
		" WHERE widget_id = $1",
		1, {TEXTOID}
	},

	/*
	 * LW_Q_SAVE_STATE: counters after track() or untrack(); the sample
	 * count is taken from the buffer itself, so these two also repair a
	 * count that a hand edit of widget_sample put out of step.  The
	 * buffer may now hold older samples than oldest_ts says: forget it.
	 */
	[LW_Q_SAVE_STATE] = {
		"UPDATE livewidget.widget_state"
		"   SET last_seq = $2, removed_seq = greatest(removed_seq, $3),"
		"       oldest_ts = NULL,"
		"       sample_count = (SELECT count(*)"
		"                         FROM livewidget.widget_sample AS s"
		"                        WHERE s.widget_id = $1)"
		" WHERE widget_id = $1",
		3, {TEXTOID, INT8OID, INT8OID}
	},

	[LW_Q_GET_MAPPING] = {
		"SELECT device_id, sensor_type, max_samples"
		"  FROM livewidget.tracked_variable WHERE widget_id = $1",
		1, {TEXTOID}
	},

	/* LW_Q_PUT_MAPPING: create or update; returns the whole row */
	[LW_Q_PUT_MAPPING] = {
		"INSERT INTO livewidget.tracked_variable AS t"
		"       (device_id, sensor_type, widget_id, dashboard_uuid, max_samples)"
		" VALUES ($1, $2, $3, $4, $5)"
		" ON CONFLICT (widget_id) DO UPDATE"
		"   SET device_id = excluded.device_id,"
		"       sensor_type = excluded.sensor_type,"
		"       dashboard_uuid = excluded.dashboard_uuid,"
		"       max_samples = excluded.max_samples"
		" RETURNING t.*",
		5, {TEXTOID, TEXTOID, TEXTOID, UUIDOID, INT4OID}
	},

	[LW_Q_DELETE_MAPPING] = {
		"DELETE FROM livewidget.tracked_variable WHERE widget_id = $1",
		1, {TEXTOID}
	},

	/*
	 * LW_Q_TRIM_BUFFER: keep the $2 newest samples of widget $1 (0 empties
	 * it); returns how many left and the highest seq among them.
	 */
	[LW_Q_TRIM_BUFFER] = {
		"WITH gone AS ("
		"  DELETE FROM livewidget.widget_sample AS s"
		"   WHERE s.widget_id = $1"
		"     AND s.seq IN (SELECT o.seq FROM livewidget.widget_sample AS o"
		"                    WHERE o.widget_id = $1"
		"                    ORDER BY o.ts DESC, o.seq DESC OFFSET $2)"
		"  RETURNING s.seq)"
		" SELECT count(*)::int4, max(seq) FROM gone",
		2, {TEXTOID, INT4OID}
	},

	/*
	 * LW_Q_SAMPLES_FOR_DASHBOARD: no row when widget $1 is not on
	 * dashboard $2, one all-null row when its buffer is empty.
	 */
	[LW_Q_SAMPLES_FOR_DASHBOARD] = {
		"SELECT s.seq, s.ts, s.value, s.unit"
		"  FROM livewidget.tracked_variable AS t"
		"  LEFT JOIN livewidget.widget_sample AS s ON s.widget_id = t.widget_id"
		" WHERE t.widget_id = $1 AND t.dashboard_uuid = $2"
		" ORDER BY s.ts, s.seq",
		2, {TEXTOID, UUIDOID}
	},

	/*
	 * LW_Q_SAMPLES_AFTER: the removed_seq of widget $1 with each of its
	 * samples above seq $2 (one all-null sample when there is none), read
	 * in one snapshot so that "reset" and the samples agree.
	 */
	[LW_Q_SAMPLES_AFTER] = {
		"SELECT st.removed_seq, s.seq, s.ts, s.value, s.unit"
		"  FROM livewidget.widget_state AS st"
		"  LEFT JOIN livewidget.widget_sample AS s"
		"         ON s.widget_id = st.widget_id AND s.seq > $2"
		" WHERE st.widget_id = $1"
		" ORDER BY s.seq",
		2, {TEXTOID, INT8OID}
	},
	/* LW_Q_GET_ATTACHMENT: the column names of table $1, unit may be null */
	[LW_Q_GET_ATTACHMENT] = {
		"SELECT device_column, sensor_column, value_column, unit_column,"
		"       ts_column"
		"  FROM livewidget.attached_table WHERE readings = $1",
		1, {OIDOID}
	},

	[LW_Q_LIST_ATTACHMENTS] = {
		"SELECT readings::oid FROM livewidget.attached_table ORDER BY 1",
		0, {0}
	},

	/* LW_Q_PUT_ATTACHMENT: create or replace the mapping of a table */
	[LW_Q_PUT_ATTACHMENT] = {
		"INSERT INTO livewidget.attached_table AS a"
		"       (readings, device_column, sensor_column, value_column,"
		"        unit_column, ts_column)"
		" VALUES ($1, $2, $3, $4, $5, $6)"
		" ON CONFLICT (readings) DO UPDATE"
		"   SET device_column = excluded.device_column,"
		"       sensor_column = excluded.sensor_column,"
		"       value_column = excluded.value_column,"
		"       unit_column = excluded.unit_column,"
		"       ts_column = excluded.ts_column",
		6, {OIDOID, NAMEOID, NAMEOID, NAMEOID, NAMEOID, NAMEOID}
	},

	[LW_Q_DELETE_ATTACHMENT] = {
		"DELETE FROM livewidget.attached_table WHERE readings = $1",
		1, {OIDOID}
	},

	/*
	 * LW_Q_FIND_TRIGGER: whether table $1 has a trigger named
	 * buffer_readings, and whether it runs livewidget.buffer_readings().
	 */
	[LW_Q_FIND_TRIGGER] = {
		"SELECT tgfoid = 'livewidget.buffer_readings()'::regprocedure"
		"  FROM pg_catalog.pg_trigger"
		" WHERE tgrelid = $1 AND tgname = 'buffer_readings'"
		"   AND NOT tgisinternal",
		1, {OIDOID}
	},

	/*
	 * LW_Q_INTEGER_KEY: the column of table $1's primary key when it is a
	 * single integer column, which orders its rows by insertion.
	 */
	[LW_Q_EXTENSION_VERSION] = {
		"SELECT extversion FROM pg_catalog.pg_extension"
		" WHERE extname = 'livewidget'",
		0, {InvalidOid}
	},

	/*
	 * LW_Q_REJECTED_SPAN: newest id minus oldest id of rejected_message,
	 * from the two ends of its key; no more rows than that plus one
	 */
	[LW_Q_REJECTED_SPAN] = {
		"SELECT max(id) - min(id) FROM livewidget.rejected_message",
		0, {InvalidOid}
	},

	/* LW_Q_TRIM_REJECTED: keep the newest $1 rows of rejected_message */
	[LW_Q_TRIM_REJECTED] = {
		"DELETE FROM livewidget.rejected_message"
		" WHERE id <= (SELECT r.id FROM livewidget.rejected_message AS r"
		"               ORDER BY r.id DESC OFFSET $1 LIMIT 1)",
		1, {INT8OID}
	},

	[LW_Q_INTEGER_KEY] = {
		"SELECT a.attname"
		"  FROM pg_catalog.pg_index AS i"
		"  JOIN pg_catalog.pg_attribute AS a"
		"    ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
		" WHERE i.indrelid = $1 AND i.indisprimary AND i.indnkeyatts = 1"
		"   AND a.atttypid IN ('int2'::regtype, 'int4'::regtype,"
		"                      'int8'::regtype)",
		1, {OIDOID}
	},
};

/* Plans prepared so far in this backend, kept until it exits. */
static SPIPlanPtr lw_plans[LW_Q_COUNT];

/*
 * lw_plan
 *		The kept plan of a query, prepared on first use.
 *
 * Must be called while connected to SPI.  A kept plan survives a DROP and
 * CREATE EXTENSION in the same session: the plan cache re-parses it by
 * name when the objects it uses change.
 */
SPIPlanPtr
lw_plan(LwQueryId id)
{
	const LwQuery *q = &lw_queries[id];

	if (lw_plans[id] == NULL)
		lw_plans[id] = lw_keep_plan(q->sql, q->nargs, (Oid *) q->argtypes);
	return lw_plans[id];
}

/*
 * lw_keep_plan
 *		Prepare a statement and keep its plan for the backend's life.
 *
 * Generic plans only: the arguments are mostly arrays whose length the
 * planner cannot see, or keys of an index lookup, so custom plans would
 * cost a planning per call for no better plan.
 *
 * Must be called while connected to SPI.  SPI_prepare() returns with
 * CurrentMemoryContext set to SPI's procedure context, which SPI_finish()
 * deletes; the caller's context is put back, as lw_execute_plan() does,
 * so that what the caller allocates next (the buffer trigger keeps its
 * samples past SPI_finish() to notify them) is not freed behind its back.
 */
SPIPlanPtr
lw_keep_plan(const char *sql, int nargs, Oid *argtypes)
{
	MemoryContext callercxt = CurrentMemoryContext;
	SPIPlanPtr	plan;

	plan = SPI_prepare_cursor(sql, nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for livewidget query \"%s\": %s",
			 sql, SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed for livewidget query \"%s\"", sql);
	MemoryContextSwitchTo(callercxt);
	return plan;
}

/*
 * lw_execute
 *		Run one of the extension's queries; the result is in SPI_tuptable
 *		and SPI_processed.
 *
 * nulls may be NULL when no argument is null.  read_only is true for the
 * STABLE functions: they must see the caller's snapshot, not a new one.
 * expected is the SPI result code the statement must end with.
 *
 * SPI leaves CurrentMemoryContext set to its own procedure context after
 * each call; the caller's context is put back here, so that what callers
 * allocate between queries does not vanish at SPI_finish().
 */
void
lw_execute(LwQueryId id, Datum *values, const bool *nulls, bool read_only,
		   int expected)
{
	lw_execute_plan(lw_plan(id), lw_queries[id].nargs, values, nulls,
					read_only, expected);
}

/*
 * lw_execute_plan
 *		lw_execute() for a plan that is not in the table above (the
 *		per-table queries of attach.c); nargs at most LW_MAX_QUERY_ARGS.
 */
void
lw_execute_plan(SPIPlanPtr plan, int nargs, Datum *values, const bool *nulls,
				bool read_only, int expected)
{
	MemoryContext callercxt = CurrentMemoryContext;
	char		nullflags[LW_MAX_QUERY_ARGS + 1];
	int			rc;

	Assert(nargs <= LW_MAX_QUERY_ARGS);
	for (int i = 0; i < nargs; i++)
		nullflags[i] = (nulls != NULL && nulls[i]) ? 'n' : ' ';
	nullflags[nargs] = '\0';

	if (!read_only && IsolationUsesXactSnapshot())
	{
		/*
		 * Under REPEATABLE READ or SERIALIZABLE the transaction snapshot may
		 * predate commits the buffer must follow: a new mapping, another
		 * writer's samples.  Read and write the extension's tables as of
		 * now instead, as ri_triggers.c does for its checks.  A row lock on
		 * a concurrently updated state row still fails with a
		 * serialization error.
		 */
		rc = SPI_execute_snapshot(plan, values, nullflags,
								  GetLatestSnapshot(), InvalidSnapshot,
								  false, true, 0);
	}
	else
		rc = SPI_execute_plan(plan, values, nullflags, read_only, 0);
	MemoryContextSwitchTo(callercxt);
	if (rc != expected)
		elog(ERROR, "livewidget query failed: %s",
			 SPI_result_code_string(rc));
}

/*
 * lw_clip_unit
 *		A unit as buffered: its first LW_UNIT_MAX_BYTES bytes, cut at a
 *		character boundary of the database encoding.
 *
 * Returns the argument itself when it is short enough.
 */
char *
lw_clip_unit(const char *unit)
{
	int			len;

	if (unit == NULL)
		return NULL;
	len = strlen(unit);
	if (len <= LW_UNIT_MAX_BYTES)
		return (char *) unit;
	return pnstrdup(unit, pg_mbcliplen(unit, len, LW_UNIT_MAX_BYTES));
}

/*
 * lw_build_array
 *		A one-dimensional array datum of n elements of elemtype, for the
 *		set-based statements that take one array per column.
 */
Datum
lw_build_array(Datum *elems, const bool *nulls, int n, Oid elemtype)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			dims[1];
	int			lbs[1];

	if (n == 0)
		return PointerGetDatum(construct_empty_array(elemtype));

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	dims[0] = n;
	lbs[0] = 1;
	return PointerGetDatum(construct_md_array(elems, (bool *) nulls, 1, dims,
											  lbs, elemtype, typlen,
											  typbyval, typalign));
}

/*
 * lw_cstring_array
 *		A text[] datum from n C strings, none of them NULL.
 */
Datum
lw_cstring_array(char **strs, int n)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		elems[i] = CStringGetTextDatum(strs[i]);
	return lw_build_array(elems, NULL, n, TEXTOID);
}

/*
 * livewidget_trim_rejected_messages
 *		Trigger function, AFTER INSERT FOR EACH STATEMENT on
 *		livewidget.rejected_message: remove the oldest rows beyond
 *		livewidget.rejected_message_limit.
 *
 * In C so that calling it loads this library, which defines the setting:
 * a value that a role without the right to set it left as a placeholder
 * is refused then, and the limit is the one a superuser configured.
 */
Datum
livewidget_trim_rejected_messages(PG_FUNCTION_ARGS)
{
	Datum		keep = Int64GetDatum((int64) lw_rejected_message_limit);
	bool		isnull = true;
	int64		span = 0;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("livewidget.trim_rejected_messages() must be called as a trigger")));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	lw_execute(LW_Q_REJECTED_SPAN, NULL, NULL, true, SPI_OK_SELECT);
	if (SPI_processed == 1)
		span = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 1, &isnull));
	if (!isnull && span >= lw_rejected_message_limit)
		lw_execute(LW_Q_TRIM_REJECTED, &keep, NULL, false, SPI_OK_DELETE);
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	return PointerGetDatum(NULL);
}
