/*-------------------------------------------------------------------------
 *
 * store.c
 *	  The buffer trigger's reads and writes of widget_state and
 *	  widget_sample, through the table and index access methods.
 *
 * Every reading that reaches a buffer costs a few row operations: read
 * the widget's counters, find the samples it pushes out, write the new
 * sample, save the counters.  Run as SQL through SPI, each statement
 * costs more in executor start-up, array parameters and joins than the
 * row operations themselves; done here it is what a ModifyTable node
 * does for one row, without the parts these two tables never need
 * (triggers, foreign keys, row security, partitions, RETURNING).
 *
 * What still applies as in any UPDATE or INSERT: every index of the table
 * is maintained (ExecInsertIndexTuples, so indexes an analyst adds are
 * too), unique indexes are checked, HOT is used when no indexed column
 * changes, and the statistics and WAL are the heap's own.  CHECK
 * constraints are not evaluated: the trigger only writes rows it has
 * checked itself (see read_rows() in buffer.c), and the constraints stay
 * on the tables for anyone who edits them by hand.
 *
 * Locks.  A writer of a widget's buffer first takes the widget's lock
 * (lw_lock_widgets()): a transaction-level heavyweight lock on the
 * widget id, held until commit, taken in one order by every writer (a
 * commit takes all of its widgets' at once, see pending.c), so that
 * writers of one widget follow each other in commit order and never
 * deadlock among themselves.  Then it reads with a snapshot taken after
 * the lock, which shows the previous writer's commit.  The row updates
 * that follow find their rows unchanged: every writer of these tables
 * holds the widget's lock.  A row changed anyway (by hand, without it)
 * fails the transaction with a serialization failure rather than leave a
 * buffer wrong (specs/hand_edit.spec).
 *
 * extension/store.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation_d.h"
#include "common/hashfn.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "livewidget.h"

/*
 * The widget locks are advisory locks of a kind SQL cannot take: the
 * fourth field of the tag is 1 or 2 for pg_advisory_lock() and friends.
 * pg_locks shows them as locktype "advisory", objsubid LW_LOCK_KIND, and
 * classid and objid the high and low halves of a 64-bit hash of the
 * widget id (hashtextextended(id, 0)).
 *
 * Writers take them in widget id order (strcmp), so two of them never
 * wait for each other in a cycle.  Two ids with the same hash would share
 * a lock and could break that order; at 64 bits that takes billions of
 * widgets, and PostgreSQL's deadlock check would still end it.
 */
#define LW_LOCK_KIND		0x4C57	/* "LW" */

/* The columns of the two tables, found by name (see open_table()) */
enum
{
	STATE_WIDGET_ID, STATE_LAST_SEQ, STATE_REMOVED_SEQ, STATE_SAMPLE_COUNT,
	STATE_OLDEST_TS, STATE_NCOLS
};
static const char *const state_columns[] = {
	"widget_id", "last_seq", "removed_seq", "sample_count", "oldest_ts"
};

enum
{
	SAMPLE_WIDGET_ID, SAMPLE_SEQ, SAMPLE_TS, SAMPLE_VALUE, SAMPLE_UNIT,
	SAMPLE_NCOLS
};
static const char *const sample_columns[] = {
	"widget_id", "seq", "ts", "value", "unit"
};

#define STORE_MAX_COLS	5

/* One table opened for writing, with its indexes. */
typedef struct StoreTable
{
	Relation	rel;
	AttrNumber	attnums[STORE_MAX_COLS];	/* of the columns above */
	ResultRelInfo *rri;
	Relation	key_index;		/* the primary key */
	Oid			key_collation;	/* of its first column, widget_id */
	TupleTableSlot *slot;		/* rows read */
	TupleTableSlot *newslot;	/* rows written */
} StoreTable;

struct LwStore
{
	EState	   *estate;
	Snapshot	snapshot;		/* taken after the widget locks */
	CommandId	cid;
	StoreTable	state;
	StoreTable	sample;
};

static int
id_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/*
 * lw_lock_widgets
 *		Take the locks of n widgets until the end of the transaction, in
 *		widget id order, waiting as needed.
 */
void
lw_lock_widgets(char **widget_ids, int n)
{
	char	  **ids = palloc(sizeof(char *) * Max(n, 1));

	memcpy(ids, widget_ids, sizeof(char *) * n);
	qsort(ids, n, sizeof(char *), id_cmp);

	for (int i = 0; i < n; i++)
	{
		uint64		key;
		LOCKTAG		tag;

		if (i > 0 && strcmp(ids[i], ids[i - 1]) == 0)
			continue;
		key = hash_bytes_extended((const unsigned char *) ids[i],
								  strlen(ids[i]), 0);
		SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (key >> 32),
							 (uint32) key, LW_LOCK_KIND);
		(void) LockAcquire(&tag, ExclusiveLock, false, false);
	}
	pfree(ids);
}

static void
open_table(StoreTable *t, Oid relid, const char *name,
		   const char *const *columns, int ncolumns)
{
	Oid			keyoid;

	t->rel = table_open(relid, RowExclusiveLock);
	keyoid = RelationGetPrimaryKeyIndex(t->rel);
	if (!OidIsValid(keyoid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("relation \"livewidget.%s\" has no primary key", name),
				 errhint("Run ALTER EXTENSION livewidget UPDATE, or recreate the extension.")));
	t->key_index = index_open(keyoid, RowExclusiveLock);
	t->key_collation = t->key_index->rd_indcollation[0];

	/* by name: an update of the extension may leave dropped columns */
	for (int i = 0; i < ncolumns; i++)
	{
		t->attnums[i] = get_attnum(RelationGetRelid(t->rel), columns[i]);
		if (t->attnums[i] <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" of relation \"livewidget.%s\" does not exist",
							columns[i], name)));
	}

	t->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(t->rri, t->rel, 0, NULL, 0);
	ExecOpenIndices(t->rri, false);

	t->slot = table_slot_create(t->rel, NULL);
	t->newslot = table_slot_create(t->rel, NULL);
}

/*
 * start_row
 *		Clear the slot for a new row: every column null (dropped ones
 *		included) until set with set_column().
 */
static void
start_row(TupleTableSlot *slot)
{
	ExecClearTuple(slot);
	memset(slot->tts_isnull, true,
		   sizeof(bool) * slot->tts_tupleDescriptor->natts);
}

static void
set_column(StoreTable *t, int col, Datum value, bool isnull)
{
	TupleTableSlot *slot = t->newslot;
	int			i = t->attnums[col] - 1;

	slot->tts_values[i] = value;
	slot->tts_isnull[i] = isnull;
}

static Datum
get_column(StoreTable *t, int col)
{
	bool		isnull;

	return slot_getattr(t->slot, t->attnums[col], &isnull);
}

static Datum
get_nullable_column(StoreTable *t, int col, bool *isnull)
{
	return slot_getattr(t->slot, t->attnums[col], isnull);
}

static void
close_table(StoreTable *t)
{
	ExecDropSingleTupleTableSlot(t->slot);
	ExecDropSingleTupleTableSlot(t->newslot);
	ExecCloseIndices(t->rri);
	index_close(t->key_index, NoLock);
	table_close(t->rel, NoLock);
}

/*
 * lw_store_open
 *		Open both tables for a commit's buffer work; NULL when the
 *		extension's schema or either table is gone (the transaction
 *		dropped the extension after its inserts: nothing is left to
 *		write).  The caller holds the locks of every widget it will touch:
 *		the snapshot taken here must show their last writers' commits.
 */
LwStore *
lw_store_open(void)
{
	Oid			nsp = get_namespace_oid("livewidget", true);
	Oid			state_relid = InvalidOid;
	Oid			sample_relid = InvalidOid;
	LwStore    *s;

	if (OidIsValid(nsp))
	{
		state_relid = get_relname_relid("widget_state", nsp);
		sample_relid = get_relname_relid("widget_sample", nsp);
	}
	if (!OidIsValid(state_relid) || !OidIsValid(sample_relid))
		return NULL;

	s = palloc0(sizeof(LwStore));
	s->estate = CreateExecutorState();
	s->snapshot = RegisterSnapshot(GetLatestSnapshot());
	s->cid = GetCurrentCommandId(true);
	open_table(&s->state, state_relid, "widget_state", state_columns,
			   STATE_NCOLS);
	open_table(&s->sample, sample_relid, "widget_sample", sample_columns,
			   SAMPLE_NCOLS);
	return s;
}

/*
 * lw_store_close
 *		Close the tables, and make the statement's writes visible to what
 *		runs next in this transaction (another trigger of the same
 *		statement included).
 */
void
lw_store_close(LwStore *s)
{
	close_table(&s->sample);
	close_table(&s->state);
	UnregisterSnapshot(s->snapshot);
	FreeExecutorState(s->estate);
	CommandCounterIncrement();
	pfree(s);
}

/*
 * An index scan of t's primary key for widget_id, in key order, from the
 * first entry whose second column (widget_sample's ts) is at least *from
 * when from is given.
 */
static IndexScanDesc
begin_widget_scan(LwStore *s, StoreTable *t, const char *widget_id,
				  const TimestampTz *from)
{
	ScanKeyData keys[2];
	int			nkeys = 1;
	IndexScanDesc scan;

	ScanKeyEntryInitialize(&keys[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
						   t->key_collation, F_TEXTEQ,
						   CStringGetTextDatum(widget_id));
	if (from != NULL)
		ScanKeyEntryInitialize(&keys[nkeys++], 0, 2,
							   BTGreaterEqualStrategyNumber, InvalidOid,
							   InvalidOid, F_TIMESTAMPTZ_GE,
							   TimestampTzGetDatum(*from));
	scan = index_beginscan(t->rel, t->key_index, s->snapshot, nkeys, 0);
	index_rescan(scan, keys, nkeys, NULL, 0);
	return scan;
}

/*
 * lw_store_read_state
 *		The counters of a widget, and where its state row is; false when
 *		it has none (it was never tracked).
 */
bool
lw_store_read_state(LwStore *s, const char *widget_id, LwStateRow *row)
{
	IndexScanDesc scan = begin_widget_scan(s, &s->state, widget_id, NULL);
	TupleTableSlot *slot = s->state.slot;
	bool		found = index_getnext_slot(scan, ForwardScanDirection, slot);
	bool		isnull;

	if (found)
	{
		row->tid = slot->tts_tid;
		row->last_seq = DatumGetInt64(get_column(&s->state, STATE_LAST_SEQ));
		row->removed_seq = DatumGetInt64(get_column(&s->state,
													STATE_REMOVED_SEQ));
		row->sample_count = DatumGetInt32(get_column(&s->state,
													 STATE_SAMPLE_COUNT));
		row->oldest_ts = DatumGetTimestampTz(get_nullable_column(&s->state,
																 STATE_OLDEST_TS,
																 &isnull));
		row->oldest_known = !isnull;
	}
	index_endscan(scan);
	return found;
}

/*
 * lw_store_oldest
 *		The n oldest samples of a widget by (ts, seq), oldest first, in
 *		out[]; returns how many there are (fewer when the buffer holds
 *		fewer).
 *
 * The samples a statement replaces leave their index entries at the low
 * end of the widget's key range until vacuum; a scan from the start of
 * the range would step over all of them.  When the state row knows a
 * time no sample is older than, the scan starts there.
 */
int
lw_store_oldest(LwStore *s, const char *widget_id, const LwStateRow *state,
				int n, LwSampleRow *out)
{
	IndexScanDesc scan;
	TupleTableSlot *slot = s->sample.slot;
	int			got = 0;

	if (n <= 0)
		return 0;
	scan = begin_widget_scan(s, &s->sample, widget_id,
							 state->oldest_known ? &state->oldest_ts : NULL);
	while (got < n && index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		out[got].tid = slot->tts_tid;
		out[got].seq = DatumGetInt64(get_column(&s->sample, SAMPLE_SEQ));
		out[got].ts = DatumGetTimestampTz(get_column(&s->sample, SAMPLE_TS));
		got++;
	}
	index_endscan(scan);
	return got;
}

/* Fail the statement: a row this statement read has changed under it. */
static void
changed_under_us(const char *table, TM_Result result)
{
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("a row of livewidget.%s changed while readings were being buffered",
					table),
			 errdetail("The row was %s by a transaction that did not hold the widget's lock.",
					   result == TM_Deleted ? "deleted" : "updated"),
			 errhint("Change the buffers only through the livewidget functions.")));
}

static void
fill_sample(StoreTable *t, const char *widget_id, int64 seq, TimestampTz ts,
			float8 value, const char *unit)
{
	start_row(t->newslot);
	set_column(t, SAMPLE_WIDGET_ID, CStringGetTextDatum(widget_id), false);
	set_column(t, SAMPLE_SEQ, Int64GetDatum(seq), false);
	set_column(t, SAMPLE_TS, TimestampTzGetDatum(ts), false);
	set_column(t, SAMPLE_VALUE, Float8GetDatum(value), false);
	set_column(t, SAMPLE_UNIT, unit ? CStringGetTextDatum(unit) : (Datum) 0,
			   unit == NULL);
	ExecStoreVirtualTuple(t->newslot);
}

/* Update the row at tid with what newslot holds, indexes included. */
static void
update_row(LwStore *s, StoreTable *t, ItemPointer tid, const char *table)
{
	TM_FailureData tmfd;
	LockTupleMode lockmode;
	bool		update_indexes;
	TM_Result	result;

	result = table_tuple_update(t->rel, tid, t->newslot, s->cid, s->snapshot,
								InvalidSnapshot, true, &tmfd, &lockmode,
								&update_indexes);
	if (result != TM_Ok)
		changed_under_us(table, result);
	if (update_indexes)
		(void) ExecInsertIndexTuples(t->rri, t->newslot, s->estate, true,
									 false, NULL, NIL);
	ResetPerTupleExprContext(s->estate);
}

/*
 * lw_store_replace_sample
 *		A new sample takes over the row of a sample it pushes out.
 */
void
lw_store_replace_sample(LwStore *s, ItemPointer tid, const char *widget_id,
						int64 seq, TimestampTz ts, float8 value,
						const char *unit, ItemPointer newtid)
{
	fill_sample(&s->sample, widget_id, seq, ts, value, unit);
	update_row(s, &s->sample, tid, "widget_sample");
	*newtid = s->sample.newslot->tts_tid;
}

/*
 * lw_store_insert_sample
 *		A new sample in a row of its own.
 */
void
lw_store_insert_sample(LwStore *s, const char *widget_id, int64 seq,
					   TimestampTz ts, float8 value, const char *unit,
					   ItemPointer newtid)
{
	TupleTableSlot *slot = s->sample.newslot;

	fill_sample(&s->sample, widget_id, seq, ts, value, unit);
	table_tuple_insert(s->sample.rel, slot, s->cid, 0, NULL);
	(void) ExecInsertIndexTuples(s->sample.rri, slot, s->estate, false, false,
								 NULL, NIL);
	ResetPerTupleExprContext(s->estate);
	*newtid = slot->tts_tid;
}

/*
 * lw_store_delete_sample
 *		A pushed-out sample whose row no new sample takes.
 */
void
lw_store_delete_sample(LwStore *s, ItemPointer tid)
{
	TM_FailureData tmfd;
	TM_Result	result;

	result = table_tuple_delete(s->sample.rel, tid, s->cid, s->snapshot,
								InvalidSnapshot, true, &tmfd, false);
	if (result != TM_Ok)
		changed_under_us("widget_sample", result);
}

/*
 * lw_store_save_state
 *		Write a widget's counters to its state row.
 */
void
lw_store_save_state(LwStore *s, const char *widget_id, LwStateRow *row)
{
	StoreTable *t = &s->state;

	start_row(t->newslot);
	set_column(t, STATE_WIDGET_ID, CStringGetTextDatum(widget_id), false);
	set_column(t, STATE_LAST_SEQ, Int64GetDatum(row->last_seq), false);
	set_column(t, STATE_REMOVED_SEQ, Int64GetDatum(row->removed_seq), false);
	set_column(t, STATE_SAMPLE_COUNT, Int32GetDatum(row->sample_count), false);
	set_column(t, STATE_OLDEST_TS, TimestampTzGetDatum(row->oldest_ts),
			   !row->oldest_known);
	ExecStoreVirtualTuple(t->newslot);
	update_row(s, &s->state, &row->tid, "widget_state");
	row->tid = t->newslot->tts_tid;
}

/*
 * lw_store_check_sample
 *		Whether the row at tid is, as of the store's snapshot, the sample
 *		of widget_id with this seq and ts.
 */
bool
lw_store_check_sample(LwStore *s, const char *widget_id,
					  const LwSampleRow *sample)
{
	TupleTableSlot *slot = s->sample.slot;
	ItemPointerData tid = sample->tid;
	bool		same;

	if (!table_tuple_fetch_row_version(s->sample.rel, &tid, s->snapshot, slot))
		return false;
	same = DatumGetInt64(get_column(&s->sample, SAMPLE_SEQ)) == sample->seq &&
		DatumGetTimestampTz(get_column(&s->sample, SAMPLE_TS)) == sample->ts;
	if (same)
	{
		/* ids are short and never toasted: compare the bytes in place */
		text	   *id = DatumGetTextPP(get_column(&s->sample, SAMPLE_WIDGET_ID));
		size_t		len = strlen(widget_id);

		same = VARSIZE_ANY_EXHDR(id) == len &&
			memcmp(VARDATA_ANY(id), widget_id, len) == 0;
	}
	ExecClearTuple(slot);
	return same;
}

/*
 * lw_store_identity
 *		What the two tables' row locations are valid for: their files.  A
 *		rewrite (VACUUM FULL, CLUSTER, TRUNCATE) gives them new ones.
 */
void
lw_store_identity(LwStore *s, Oid *state_file, Oid *sample_file)
{
	*state_file = s->state.rel->rd_node.relNode;
	*sample_file = s->sample.rel->rd_node.relNode;
}
