/*-------------------------------------------------------------------------
 *
 * attach.c
 *	  livewidget.attach() and livewidget.detach(): which readings tables
 *	  feed widgets, under which column names, and the per-backend cache of
 *	  the queries built for each of them.
 *
 * A mapping is one row of livewidget.attached_table.  The buffer trigger
 * and the fill of track() and refill() read a table through the queries
 * built here from its mapping, so that the rest of the extension sees
 * every readings table with the columns of livewidget.sensor_data:
 * device_id text, sensor_type text, value float8, unit text,
 * ts timestamptz.
 *
 * Cache: one entry per table OID, and one fill query over all attached
 * tables, kept for the backend's life.  A statement trigger on
 * attached_table sends a relcache invalidation for attached_table itself
 * whenever its rows change, which empties the whole cache in every
 * backend; an invalidation of an attached table (ALTER TABLE, rename)
 * drops that table's entry and the fill query.  Plans of dropped entries
 * are freed at the next lookup, never inside the callback, which may run
 * while one of them executes.
 *
 *	  attachment	a readings table's mapping and the queries built from it
 *	  fill query	newest readings of one device+sensor over all tables
 *
 * extension/attach.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/relation.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type_d.h"
#include "commands/trigger.h"
#include "common/shortest_dec.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "livewidget.h"

PG_FUNCTION_INFO_V1(livewidget_attach);
PG_FUNCTION_INFO_V1(livewidget_detach);
PG_FUNCTION_INFO_V1(livewidget_attachments_changed);
PG_FUNCTION_INFO_V1(livewidget_real_value);

/* The trigger every attached table carries, and the function it runs. */
#define LW_TRIGGER_NAME		"buffer_readings"
#define LW_TRIGGER_FUNC		"livewidget.buffer_readings()"

/* What a mapped column holds, which decides the types it may have. */
typedef enum LwColumnRole
{
	LW_COL_KEY,					/* device or sensor: a string type */
	LW_COL_VALUE,				/* a numeric type */
	LW_COL_UNIT,				/* a string type */
	LW_COL_TIME					/* timestamptz or timestamp */
} LwColumnRole;

/* The mapping of one table, as validated against the catalogs. */
typedef struct LwMapping
{
	Oid			relid;
	char	   *names[5];		/* device, sensor, value, unit, ts */
	Oid			types[5];		/* base type of each; unit may be none */
	bool		nullable[5];
} LwMapping;

enum
{
	M_DEVICE, M_SENSOR, M_VALUE, M_UNIT, M_TS
};

static const char *const arg_names[5] = {
	"device_column", "sensor_column", "value_column", "unit_column",
	"ts_column"
};
static const LwColumnRole arg_roles[5] = {
	LW_COL_KEY, LW_COL_KEY, LW_COL_VALUE, LW_COL_UNIT, LW_COL_TIME
};

/* A reason a mapping cannot be used; code 0 means none. */
typedef struct LwProblem
{
	int			code;
	char	   *msg;
	char	   *detail;
} LwProblem;

static HTAB *attachments = NULL;
static SPIPlanPtr fill_plan = NULL;

/* The installed extension is this library's version (lw_check_version) */
static bool version_checked = false;
static bool fill_valid = false;
static Oid *fill_relids = NULL;		/* tables the fill query reads */
static int	fill_nrelids = 0;
static Oid	mapping_relid = InvalidOid;	/* livewidget.attached_table */

/* Plans of dropped cache entries, freed at the next lookup. */
static List *stale_plans = NIL;

/*
 * livewidget_real_value
 *		livewidget.real_value(real): a real as the double of its shortest
 *		decimal form, so that 24.8 stays 24.8 and not 24.799999237060547.
 *
 * float8(real) widens exactly, which keeps the binary error of the real;
 * going through the text form is what a reader of the table sees.
 */
Datum
livewidget_real_value(PG_FUNCTION_ARGS)
{
	PG_RETURN_FLOAT8(lw_real_to_double(PG_GETARG_FLOAT4(0)));
}

/*
 * lw_real_to_double
 *		What livewidget.real_value() returns, for C callers.
 */
float8
lw_real_to_double(float4 value)
{
	char		buf[FLOAT_SHORTEST_DECIMAL_LEN];

	if (isnan(value) || isinf(value))
		return (float8) value;
	float_to_shortest_decimal_buf(value, buf);
	return strtod(buf, NULL);
}

/*
 * relation_label
 *		"schema.table" for messages and for the queries built here.
 */
static char *
relation_label(Oid relid)
{
	char	   *nsp = get_namespace_name(get_rel_namespace(relid));
	char	   *rel = get_rel_name(relid);

	if (nsp == NULL || rel == NULL)
		return psprintf("%u", relid);
	return quote_qualified_identifier(nsp, rel);
}

/*
 * message_label
 *		"schema.table" unquoted, for messages that put it in double quotes.
 */
static char *
message_label(Oid relid)
{
	char	   *nsp = get_namespace_name(get_rel_namespace(relid));
	char	   *rel = get_rel_name(relid);

	if (nsp == NULL || rel == NULL)
		return psprintf("%u", relid);
	return psprintf("%s.%s", nsp, rel);
}

/*
 * type_fits
 *		Whether a column's base type suits its role.
 */
static bool
type_fits(LwColumnRole role, Oid type)
{
	switch (role)
	{
		case LW_COL_KEY:
		case LW_COL_UNIT:
			return type == TEXTOID || type == VARCHAROID || type == BPCHAROID;
		case LW_COL_VALUE:
			return type == INT2OID || type == INT4OID || type == INT8OID ||
				type == FLOAT4OID || type == FLOAT8OID ||
				type == NUMERICOID;
		case LW_COL_TIME:
			return type == TIMESTAMPTZOID || type == TIMESTAMPOID;
	}
	return false;
}

static const char *
role_types(LwColumnRole role)
{
	switch (role)
	{
		case LW_COL_KEY:
		case LW_COL_UNIT:
			return "text, varchar or char";
		case LW_COL_VALUE:
			return "smallint, integer, bigint, real, double precision or numeric";
		case LW_COL_TIME:
			return "timestamptz or timestamp (read as UTC)";
	}
	return "";
}

/*
 * check_column
 *		Resolve one mapped column; on failure fill *problem and return
 *		false.
 */
static bool
check_column(LwMapping *map, int i, LwProblem *problem)
{
	const char *name = map->names[i];
	AttrNumber	attnum = get_attnum(map->relid, name);
	HeapTuple	tup;

	if (attnum == InvalidAttrNumber || attnum < 0)
	{
		problem->code = ERRCODE_UNDEFINED_COLUMN;
		problem->msg = psprintf("column \"%s\" of relation \"%s\" does not exist",
								name, message_label(map->relid));
		problem->detail = psprintf("It was given as %s.", arg_names[i]);
		return false;
	}

	tup = SearchSysCache2(ATTNUM, ObjectIdGetDatum(map->relid),
						  Int16GetDatum(attnum));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for attribute %d of relation %u",
			 attnum, map->relid);
	map->types[i] = getBaseType(((Form_pg_attribute) GETSTRUCT(tup))->atttypid);
	map->nullable[i] = !((Form_pg_attribute) GETSTRUCT(tup))->attnotnull;
	ReleaseSysCache(tup);

	if (!type_fits(arg_roles[i], map->types[i]))
	{
		problem->code = ERRCODE_DATATYPE_MISMATCH;
		problem->msg = psprintf("column \"%s\" of relation \"%s\" has type %s",
								name, message_label(map->relid),
								format_type_be(map->types[i]));
		problem->detail = psprintf("The %s must be of type %s.",
								   arg_names[i], role_types(arg_roles[i]));
		return false;
	}
	return true;
}

/*
 * check_mapping
 *		Check the table and every mapped column; false with *problem set
 *		when the mapping cannot be used.
 */
static bool
check_mapping(LwMapping *map, LwProblem *problem)
{
	char		relkind = get_rel_relkind(map->relid);

	memset(problem, 0, sizeof(*problem));
	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE)
	{
		problem->code = ERRCODE_WRONG_OBJECT_TYPE;
		problem->msg = psprintf("\"%s\" is not a table",
								message_label(map->relid));
		problem->detail = pstrdup("Only tables and partitioned tables can feed widgets: the buffer needs an AFTER INSERT statement trigger with a transition table.");
		return false;
	}

	for (int i = 0; i < 5; i++)
	{
		if (map->names[i] == NULL)
		{
			map->types[i] = InvalidOid;
			continue;
		}
		if (!check_column(map, i, problem))
			return false;
	}
	return true;
}

/*
 * column_exprs
 *		The SQL expressions that read a row "r" of the table as the columns
 *		of sensor_data: device_id, sensor_type, value, unit, ts.
 *
 * A real goes through real_value() (see there).  A numeric too large for
 * a double is read as NaN, so that it is skipped as not finite instead of
 * failing the insert; NaN and infinity of numeric read the same way.
 */
static void
column_exprs(const LwMapping *map, char **exprs)
{
	const char *v = quote_identifier(map->names[M_VALUE]);
	const char *t = quote_identifier(map->names[M_TS]);

	exprs[M_DEVICE] = psprintf("r.%s::pg_catalog.text",
							   quote_identifier(map->names[M_DEVICE]));
	exprs[M_SENSOR] = psprintf("r.%s::pg_catalog.text",
							   quote_identifier(map->names[M_SENSOR]));
	exprs[M_UNIT] = map->names[M_UNIT] == NULL ? "NULL::pg_catalog.text" :
		psprintf("r.%s::pg_catalog.text",
				 quote_identifier(map->names[M_UNIT]));

	if (map->types[M_VALUE] == FLOAT4OID)
		exprs[M_VALUE] = psprintf("livewidget.real_value(r.%s::pg_catalog.float4)",
								  v);
	else if (map->types[M_VALUE] == NUMERICOID)
		exprs[M_VALUE] = psprintf("CASE WHEN r.%s IS NULL THEN NULL"
								  " WHEN abs(r.%s::pg_catalog.numeric) < 1e308"
								  " THEN r.%s::pg_catalog.float8"
								  " ELSE 'NaN'::pg_catalog.float8 END",
								  v, v, v);
	else
		exprs[M_VALUE] = psprintf("r.%s::pg_catalog.float8", v);

	if (map->types[M_TS] == TIMESTAMPOID)
		exprs[M_TS] = psprintf("(r.%s::pg_catalog.timestamp"
							   " AT TIME ZONE 'UTC')", t);
	else
		exprs[M_TS] = psprintf("r.%s::pg_catalog.timestamptz", t);
}

/*
 * read_mapping
 *		Load the mapping row of relid; false when the table is not
 *		attached.  Must be called while connected to SPI.
 */
static bool
read_mapping(Oid relid, LwMapping *map)
{
	Datum		arg = ObjectIdGetDatum(relid);
	HeapTuple	tup;
	TupleDesc	desc;

	lw_execute(LW_Q_GET_ATTACHMENT, &arg, NULL, false, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return false;

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	map->relid = relid;
	for (int i = 0; i < 5; i++)
		map->names[i] = SPI_getvalue(tup, desc, i + 1);
	SPI_freetuptable(SPI_tuptable);
	return true;
}

/*
 * attachment_invalidate
 *		Relcache callback: forget what an invalidated table may change.
 */
static void
attachment_invalidate(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	LwAttachment *entry;

	if (attachments == NULL)
		return;

	if (OidIsValid(relid) && relid != mapping_relid)
	{
		/* the fill query names the table: a rename must rebuild it */
		for (int i = 0; i < fill_nrelids; i++)
			if (fill_relids[i] == relid)
				fill_valid = false;

		entry = hash_search(attachments, &relid, HASH_FIND, NULL);
		if (entry != NULL)
		{
			entry->valid = false;
			fill_valid = false;
		}
		return;
	}

	/* the mapping table changed, or everything may have */
	version_checked = false;
	hash_seq_init(&status, attachments);
	while ((entry = hash_seq_search(&status)) != NULL)
		entry->valid = false;
	fill_valid = false;
	mapping_relid = InvalidOid;
}

/*
 * free_stale_plans
 *		Release the plans of cache entries dropped since the last lookup.
 */
static void
free_stale_plans(void)
{
	ListCell   *lc;

	foreach(lc, stale_plans)
		SPI_freeplan((SPIPlanPtr) lfirst(lc));
	list_free(stale_plans);
	stale_plans = NIL;
}

static void
retire_plan(SPIPlanPtr plan)
{
	MemoryContext oldcxt;

	if (plan == NULL)
		return;
	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	stale_plans = lappend(stale_plans, plan);
	MemoryContextSwitchTo(oldcxt);
}

/*
 * init_cache
 *		Create the cache on first use and note the mapping table's OID.
 */
static void
init_cache(void)
{
	if (attachments == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(LwAttachment);
		attachments = hash_create("livewidget attachments", 16, &ctl,
								  HASH_ELEM | HASH_BLOBS);
		CacheRegisterRelcacheCallback(attachment_invalidate, (Datum) 0);
	}
	if (!OidIsValid(mapping_relid))
		mapping_relid = get_relname_relid("attached_table",
										  get_namespace_oid("livewidget",
															false));
}

/*
 * build_attachment
 *		Fill a cache entry from the mapping row and the catalogs.
 */
/*
 * lw_check_version
 *		Refuse to work with a library newer than the extension's objects in
 *		this database (between "make install" and ALTER EXTENSION UPDATE):
 *		its code relies on what the update adds, such as the columns of
 *		widget_state and the trigger that keeps the lookup cache of
 *		lookup.c up to date.
 *
 * An insert then fails rather than storing readings that the buffers
 * would miss; a client that retries (the bridge holds its messages) loses
 * nothing.  Checked once per session, and again after the extension's
 * tables change (a DROP and CREATE EXTENSION).  Must be called while
 * connected to SPI.
 */
void
lw_check_version(void)
{
	char	   *installed = NULL;

	if (version_checked)
		return;

	lw_execute(LW_Q_EXTENSION_VERSION, NULL, NULL, false, SPI_OK_SELECT);
	if (SPI_processed == 1)
		installed = SPI_getvalue(SPI_tuptable->vals[0],
								 SPI_tuptable->tupdesc, 1);
	SPI_freetuptable(SPI_tuptable);

	if (installed == NULL || strcmp(installed, LW_EXTVERSION) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("livewidget library version %s cannot work with extension version %s",
						LW_EXTVERSION, installed ? installed : "(none)"),
				 errdetail("Nothing was changed: readings are not stored, widgets not tracked."),
				 errhint("Run ALTER EXTENSION livewidget UPDATE in this database.")));
	version_checked = true;
}

static void
build_attachment(LwAttachment *entry)
{
	LwMapping	map;
	LwProblem	problem;

	lw_check_version();

	entry->attached = read_mapping(entry->relid, &map);
	entry->problem = NULL;
	if (!entry->attached)
		return;

	if (!check_mapping(&map, &problem))
	{
		entry->problem =
			MemoryContextStrdup(TopMemoryContext,
								psprintf("Its mapping no longer fits the table: %s.",
										 problem.msg));
		return;
	}
	entry->keys_nullable = map.nullable[M_DEVICE] || map.nullable[M_SENSOR];
	for (int i = 0; i < 5; i++)
	{
		entry->attnums[i] = map.names[i] == NULL ? InvalidAttrNumber :
			get_attnum(map.relid, map.names[i]);
		entry->types[i] = map.names[i] == NULL ? InvalidOid : map.types[i];
	}
}

/*
 * lw_attachment
 *		The cache entry of a table; entry->attached says whether it feeds
 *		widgets, entry->problem (when set) why it cannot.  Must be called
 *		while connected to SPI.
 */
LwAttachment *
lw_attachment(Oid relid)
{
	LwAttachment *entry;
	bool		found;

	init_cache();
	free_stale_plans();

	entry = hash_search(attachments, &relid, HASH_ENTER, &found);
	if (found && entry->valid)
		return entry;
	if (found && entry->problem)
		pfree(entry->problem);
	entry->valid = false;
	entry->problem = NULL;

	/* valid first: an invalidation while building must win */
	entry->valid = true;
	PG_TRY();
	{
		build_attachment(entry);
	}
	PG_CATCH();
	{
		hash_search(attachments, &relid, HASH_REMOVE, NULL);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return entry;
}

/*
 * has_attached_ancestor
 *		Whether a partition's rows are already read through an attached
 *		ancestor, which the fill query must not count twice.
 */
static bool
has_attached_ancestor(Oid relid, Oid *relids, int n)
{
	List	   *ancestors;
	ListCell   *lc;

	if (!get_rel_relispartition(relid))
		return false;
	ancestors = get_partition_ancestors(relid);
	foreach(lc, ancestors)
	{
		for (int i = 0; i < n; i++)
			if (relids[i] == lfirst_oid(lc))
				return true;
	}
	return false;
}

/*
 * tie_break
 *		The columns that order readings of equal time within one table:
 *		a single-column integer primary key (sensor_data's id, a Django
 *		"id serial") is insertion order; otherwise the physical position,
 *		which is insertion order only until rows are updated or vacuumed.
 */
static char *
tie_break(Oid relid)
{
	Datum		arg = ObjectIdGetDatum(relid);
	char	   *result = "r.tableoid, r.ctid";

	lw_execute(LW_Q_INTEGER_KEY, &arg, NULL, false, SPI_OK_SELECT);
	if (SPI_processed > 0)
		result = psprintf("r.%s",
						  quote_identifier(SPI_getvalue(SPI_tuptable->vals[0],
														SPI_tuptable->tupdesc,
														1)));
	SPI_freetuptable(SPI_tuptable);
	return result;
}

/*
 * fill_branch
 *		The part of the fill query that reads one table: its $3 newest
 *		usable readings of device $1, sensor $2, numbered oldest first.
 *
 * The time range is tested on the stored column, so that an index on
 * (device, sensor, time) serves the scan; AT TIME ZONE 'UTC' keeps the
 * order of timestamp values.
 */
static void
fill_branch(StringInfo sql, const LwMapping *map, int src)
{
	char	   *exprs[5];
	const char *t = quote_identifier(map->names[M_TS]);
	const char *low = LW_TS_LOW_SQL;
	const char *high = LW_TS_HIGH_SQL;
	char	   *tb = tie_break(map->relid);
	char	   *tbdesc;

	column_exprs(map, exprs);
	if (map->types[M_TS] == TIMESTAMPOID)
	{
		low = "'0001-01-01 00:00:00'::pg_catalog.timestamp";
		high = "'10000-01-01 00:00:00'::pg_catalog.timestamp";
	}
	tbdesc = strchr(tb, ',') ? "r.tableoid DESC, r.ctid DESC" :
		psprintf("%s DESC", tb);

	appendStringInfo(sql,
					 "SELECT x.ts, x.value, x.unit, %d AS src,"
					 "       row_number() OVER (ORDER BY x.ts, x.k DESC) AS ord"
					 "  FROM (SELECT %s AS ts, %s AS value, %s AS unit,"
					 "               row_number() OVER (ORDER BY r.%s DESC, %s)"
					 "                 AS k"
					 "          FROM %s AS r"
					 "         WHERE %s = $1 AND %s = $2"
					 "           AND r.%s >= %s AND r.%s < %s"
					 "           AND %s > '-Infinity'::float8"
					 "           AND %s < 'Infinity'::float8"
					 "         ORDER BY r.%s DESC, %s LIMIT $3) AS x",
					 src, exprs[M_TS], exprs[M_VALUE], exprs[M_UNIT],
					 t, tbdesc, relation_label(map->relid),
					 exprs[M_DEVICE], exprs[M_SENSOR], t, low, t, high,
					 exprs[M_VALUE], exprs[M_VALUE], t, tbdesc);
}

/*
 * build_fill
 *		The fill query over every usable attached table, and the list of
 *		tables it reads.
 *
 * "k" above numbers a table's rows newest first, so within a table the
 * newer of two readings of equal time has the lower k and "ord" puts it
 * last.  Between tables, readings of equal time are ordered by the
 * table's OID: there is no insertion order across tables.
 */
static void
build_fill(void)
{
	Oid			fill_argtypes[3] = {TEXTOID, TEXTOID, INT4OID};
	StringInfoData sql;
	Oid		   *relids;
	int			n;
	int			nbranch = 0;
	MemoryContext oldcxt;

	lw_execute(LW_Q_LIST_ATTACHMENTS, NULL, NULL, false, SPI_OK_SELECT);
	n = (int) SPI_processed;
	relids = palloc(sizeof(Oid) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		bool		isnull;

		relids[i] = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
												   SPI_tuptable->tupdesc, 1,
												   &isnull));
	}
	SPI_freetuptable(SPI_tuptable);

	initStringInfo(&sql);
	appendStringInfoString(&sql,
						   "SELECT p.ts, p.value, p.unit FROM ("
						   " SELECT u.* FROM (");
	for (int i = 0; i < n; i++)
	{
		LwMapping	map;
		LwProblem	problem;

		if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relids[i])) ||
			has_attached_ancestor(relids[i], relids, n) ||
			!read_mapping(relids[i], &map))
			continue;
		if (!check_mapping(&map, &problem))
		{
			ereport(WARNING,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("readings of \"%s\" not used to fill buffers",
							message_label(relids[i])),
					 errdetail("Its mapping no longer fits the table: %s.",
							   problem.msg),
					 errhint("Attach the table again with livewidget.attach() and the columns it has now.")));
			continue;
		}
		if (nbranch++ > 0)
			appendStringInfoString(&sql, " UNION ALL ");
		fill_branch(&sql, &map, i);
	}
	if (nbranch == 0)
		appendStringInfoString(&sql,
							   "SELECT NULL::timestamptz AS ts,"
							   " NULL::float8 AS value, NULL::text AS unit,"
							   " 0 AS src, 0::int8 AS ord"
							   " WHERE $1::text IS NULL AND $2::text IS NULL"
							   " AND $3::int4 IS NULL");
	appendStringInfoString(&sql,
						   ") AS u ORDER BY u.ts DESC, u.src DESC, u.ord DESC"
						   " LIMIT $3) AS p ORDER BY p.ts, p.src, p.ord");

	retire_plan(fill_plan);
	fill_plan = NULL;
	fill_plan = lw_keep_plan(sql.data, 3, fill_argtypes);

	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	if (fill_relids)
		pfree(fill_relids);
	fill_relids = palloc(sizeof(Oid) * Max(n, 1));
	memcpy(fill_relids, relids, sizeof(Oid) * n);
	fill_nrelids = n;
	MemoryContextSwitchTo(oldcxt);
}

/*
 * lock_all_or_none
 *		SHARE-lock every table of the fill query that still exists, without
 *		waiting; on the first one another transaction holds, release the
 *		ones taken here and return its OID (InvalidOid when all are taken).
 *
 * A transaction that inserts into two attached tables holds the first
 * while it asks for the second.  Were track() to hold the second while
 * it waits for the first, the two would deadlock, and the deadlock check
 * may well abort the insert; so nothing is held while waiting.
 */
static Oid
lock_all_or_none(void)
{
	Oid		   *taken = palloc(sizeof(Oid) * Max(fill_nrelids, 1));
	Oid			busy = InvalidOid;
	int			ntaken = 0;

	for (int i = 0; i < fill_nrelids; i++)
	{
		if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(fill_relids[i])))
			continue;
		if (!ConditionalLockRelationOid(fill_relids[i], ShareLock))
		{
			busy = fill_relids[i];
			break;
		}
		taken[ntaken++] = fill_relids[i];
	}
	/* a lock this transaction held before stays: only ours are undone */
	if (OidIsValid(busy))
		for (int i = 0; i < ntaken; i++)
			UnlockRelationOid(taken[i], ShareLock);
	pfree(taken);
	return busy;
}

/*
 * lw_lock_attached_tables
 *		SHARE-lock every attached table and make the fill query current.
 *		Must be called while connected to SPI.
 *
 * The lock waits for inserting statements in progress and holds back new
 * ones until the caller's transaction ends (see track.c).  The tables are
 * taken all at once or not at all (lock_all_or_none()); when one is busy,
 * this waits for that one alone, lets it go, and tries all again.  Taking
 * a lock also reads pending invalidations, so when one says the list of
 * tables changed, the list is read again and the new tables locked too.
 */
void
lw_lock_attached_tables(void)
{
	init_cache();
	free_stale_plans();
	lw_check_version();

	for (int rebuilds = 0;;)
	{
		Oid			busy;

		if (!fill_valid)
		{
			if (++rebuilds > 100)
				elog(ERROR, "attached tables kept changing while being locked");
			fill_valid = true;
			build_fill();
		}
		busy = lock_all_or_none();
		if (OidIsValid(busy))
		{
			/* wait for its inserters, holding nothing else meanwhile */
			LockRelationOid(busy, ShareLock);
			UnlockRelationOid(busy, ShareLock);
			CHECK_FOR_INTERRUPTS();
			continue;
		}
		if (fill_valid)
			break;
	}
}

/*
 * lw_fill_plan
 *		The fill query, current as of the last lw_lock_attached_tables().
 */
SPIPlanPtr
lw_fill_plan(void)
{
	if (fill_plan == NULL)
		elog(ERROR, "livewidget fill query used before the tables were locked");
	return fill_plan;
}

/*
 * livewidget_attachments_changed
 *		Statement trigger on livewidget.attached_table (as
 *		attachments_changed()) and on livewidget.tracked_variable (as
 *		mappings_changed()): have every backend forget what it cached of
 *		the table once this transaction commits, and this backend at its
 *		next command.
 */
Datum
livewidget_attachments_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function \"%s\" was not called by trigger manager",
						get_func_name(fcinfo->flinfo->fn_oid))));
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	return PointerGetDatum(NULL);
}

/*
 * open_readings
 *		Open the table to attach or detach, with the lock CREATE TRIGGER
 *		takes, and check that the caller owns it.
 */
static Oid
open_readings(FunctionCallInfo fcinfo)
{
	Oid			relid;
	Relation	rel;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("readings must not be null")));
	relid = PG_GETARG_OID(0);

	rel = try_relation_open(relid, ShareRowExclusiveLock);
	if (rel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	if (!pg_class_ownercheck(relid, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER,
					   get_relkind_objtype(rel->rd_rel->relkind),
					   RelationGetRelationName(rel));
	relation_close(rel, NoLock);
	return relid;
}

/*
 * ensure_trigger
 *		Give the table the buffer trigger, unless it has it already.
 */
static void
ensure_trigger(Oid relid)
{
	Datum		arg = ObjectIdGetDatum(relid);
	bool		isnull;
	bool		ours;
	char	   *sql;

	lw_execute(LW_Q_FIND_TRIGGER, &arg, NULL, false, SPI_OK_SELECT);
	if (SPI_processed > 0)
	{
		ours = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull));
		SPI_freetuptable(SPI_tuptable);
		if (!ours)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("relation \"%s\" already has a trigger named \"%s\"",
							message_label(relid), LW_TRIGGER_NAME),
					 errhint("Rename that trigger; livewidget needs the name for its own.")));
		return;
	}

	sql = psprintf("CREATE TRIGGER " LW_TRIGGER_NAME
				   " AFTER INSERT ON %s"
				   " REFERENCING NEW TABLE AS new_readings"
				   " FOR EACH STATEMENT EXECUTE FUNCTION " LW_TRIGGER_FUNC,
				   relation_label(relid));
	if (SPI_execute(sql, false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not create trigger on %s", relation_label(relid));
}

/*
 * livewidget_attach
 *		livewidget.attach(readings, device_column, sensor_column,
 *		value_column, unit_column, ts_column): feed widgets from a table;
 *		replaces the mapping of a table already attached.
 */
Datum
livewidget_attach(PG_FUNCTION_ARGS)
{
	LwMapping	map;
	LwProblem	problem;
	Datum		args[6];
	bool		nulls[6];

	map.relid = open_readings(fcinfo);
	for (int i = 0; i < 5; i++)
	{
		if (PG_ARGISNULL(i + 1))
		{
			if (i != M_UNIT)
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("%s must not be null", arg_names[i]),
						 errhint("Only unit_column may be null, for a table without units.")));
			map.names[i] = NULL;
		}
		else
			map.names[i] = pstrdup(NameStr(*PG_GETARG_NAME(i + 1)));
	}

	if (!check_mapping(&map, &problem))
		ereport(ERROR,
				(errcode(problem.code),
				 errmsg_internal("%s", problem.msg),
				 errdetail_internal("%s", problem.detail)));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/* name arguments, as the columns of attached_table are */
	args[0] = ObjectIdGetDatum(map.relid);
	nulls[0] = false;
	for (int i = 0; i < 5; i++)
	{
		nulls[i + 1] = (map.names[i] == NULL);
		args[i + 1] = nulls[i + 1] ? (Datum) 0 :
			DirectFunctionCall1(namein, CStringGetDatum(map.names[i]));
	}
	lw_execute(LW_Q_PUT_ATTACHMENT, args, nulls, false, SPI_OK_INSERT);
	ensure_trigger(map.relid);

	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	PG_RETURN_VOID();
}

/*
 * livewidget_detach
 *		livewidget.detach(readings): stop feeding widgets from a table and
 *		drop its buffer trigger.  Buffers keep their samples.
 */
Datum
livewidget_detach(PG_FUNCTION_ARGS)
{
	Oid			relid = open_readings(fcinfo);
	Datum		arg = ObjectIdGetDatum(relid);
	bool		isnull;
	char	   *sql;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	lw_execute(LW_Q_DELETE_ATTACHMENT, &arg, NULL, false, SPI_OK_DELETE);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("relation \"%s\" is not attached",
						message_label(relid)),
				 errhint("Use livewidget.attach() to feed widgets from it.")));

	/* a trigger of that name that is not ours stays */
	lw_execute(LW_Q_FIND_TRIGGER, &arg, NULL, false, SPI_OK_SELECT);
	if (SPI_processed > 0 &&
		DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
								   SPI_tuptable->tupdesc, 1, &isnull)))
	{
		sql = psprintf("DROP TRIGGER " LW_TRIGGER_NAME " ON %s",
					   relation_label(relid));
		if (SPI_execute(sql, false, 0) != SPI_OK_UTILITY)
			elog(ERROR, "could not drop trigger on %s", relation_label(relid));
	}

	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	PG_RETURN_VOID();
}
