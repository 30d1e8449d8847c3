/*-------------------------------------------------------------------------
 *
 * lookup.c
 *	  Which widgets a device+sensor feeds: a per-backend cache of
 *	  livewidget.tracked_variable for the buffer trigger.
 *
 * The trigger looks up every new reading's device+sensor.  Asking the
 * table each time would cost a join per statement, so each backend keeps
 * the answers: keys are filled on demand, all the keys a statement misses
 * in one query, and a key that no widget tracks is kept too (with no
 * widgets), so that readings of untracked sensors cost one hash probe.
 *
 * Invalidation.  A statement trigger on tracked_variable (mappings_changed)
 * sends a relcache invalidation for the table; every backend drops its
 * cache when it processes it.  track() and untrack() hold a SHARE lock on
 * every attached readings table from before they change the mapping until
 * they commit, and an INSERT into a readings table processes pending
 * invalidations when it takes its lock on the table, so an insert never
 * works from a mapping older than the last track() committed before it.
 *
 * The callback only marks the cache stale; it is emptied at the next
 * lw_lookup_begin(), never in the middle of a statement.  Invalidations
 * are also processed in the middle of a trigger call (at the first lock
 * on a table in a transaction, such as the lookup query's), and the
 * caller holds pointers into the cache until the statement ends.
 *
 * Past LW_LOOKUP_MAX_KEYS keys the cache starts over at the next
 * statement, which bounds its memory by that and the keys of one
 * statement, whatever the number of devices.
 *
 * extension/lookup.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type_d.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "livewidget.h"

/* The most device+sensor keys one backend keeps. */
#define LW_LOOKUP_MAX_KEYS	100000

typedef struct LookupKey
{
	const char *device_id;
	const char *sensor_type;
} LookupKey;

typedef struct LookupEntry
{
	LookupKey	key;			/* strings in lookup_cxt */
	LwFeed		feed;
} LookupEntry;

static MemoryContext lookup_cxt = NULL;
static HTAB *lookup = NULL;
static bool lookup_stale = false;
static bool callback_registered = false;
static Oid	mapping_relid = InvalidOid;	/* livewidget.tracked_variable */

static uint32
key_hash(const void *key, Size keysize)
{
	const LookupKey *k = (const LookupKey *) key;

	return hash_combine(string_hash(k->device_id, 0),
						string_hash(k->sensor_type, 0));
}

static int
key_compare(const void *a, const void *b, Size keysize)
{
	const LookupKey *x = (const LookupKey *) a;
	const LookupKey *y = (const LookupKey *) b;
	int			c = strcmp(x->device_id, y->device_id);

	return c != 0 ? c : strcmp(x->sensor_type, y->sensor_type);
}

/*
 * lookup_invalidate
 *		Relcache callback: tracked_variable changed (or every relation may
 *		have).
 */
static void
lookup_invalidate(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == mapping_relid)
		lookup_stale = true;
}

static void
lookup_reset(void)
{
	HASHCTL		ctl;

	if (lookup_cxt == NULL)
		lookup_cxt = AllocSetContextCreate(CacheMemoryContext,
										   "livewidget lookup",
										   ALLOCSET_DEFAULT_SIZES);
	else
		MemoryContextReset(lookup_cxt);

	ctl.keysize = sizeof(LookupKey);
	ctl.entrysize = sizeof(LookupEntry);
	ctl.hash = key_hash;
	ctl.match = key_compare;
	ctl.hcxt = lookup_cxt;
	lookup = hash_create("livewidget lookup", 256, &ctl,
						 HASH_ELEM | HASH_FUNCTION | HASH_COMPARE |
						 HASH_CONTEXT);
	lookup_stale = false;

	/* a DROP and CREATE EXTENSION gives the table a new OID */
	mapping_relid = get_relname_relid("tracked_variable",
									  get_namespace_oid("livewidget", false));
}

/*
 * lw_lookup_begin
 *		Start a round of lookups; pointers returned by earlier rounds are
 *		no longer valid.
 */
void
lw_lookup_begin(void)
{
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(lookup_invalidate, (Datum) 0);
		callback_registered = true;
	}
	if (lookup == NULL || lookup_stale ||
		hash_get_num_entries(lookup) > LW_LOOKUP_MAX_KEYS)
		lookup_reset();
}

/*
 * lw_lookup
 *		The widgets device+sensor feeds, or NULL when the cache does not
 *		know yet (then lw_lookup_fill() it).
 */
const LwFeed *
lw_lookup(const char *device_id, const char *sensor_type)
{
	LookupKey	key = {device_id, sensor_type};
	LookupEntry *entry;

	entry = hash_search(lookup, &key, HASH_FIND, NULL);
	return entry ? &entry->feed : NULL;
}

/*
 * lw_lookup_fill
 *		Ask tracked_variable about n keys the cache does not know, in one
 *		query, and remember the answers.  Duplicate keys are fine.  Must be
 *		called while connected to SPI.
 */
void
lw_lookup_fill(char **device_ids, char **sensor_types, int n)
{
	Datum		args[2];
	SPITupleTable *tt;
	MemoryContext oldcxt;

	args[0] = lw_cstring_array(device_ids, n);
	args[1] = lw_cstring_array(sensor_types, n);
	lw_execute(LW_Q_LOOKUP_WIDGETS, args, NULL, false, SPI_OK_SELECT);
	tt = SPI_tuptable;

	/*
	 * An invalidation processed by the query itself (when it locked
	 * tracked_variable, before it took its snapshot) leaves lookup_stale
	 * set: the cache is emptied at the next lw_lookup_begin(), not here,
	 * since the caller still holds answers of this round.  Those cannot be
	 * out of date: track() and untrack() cannot commit while this
	 * statement inserts (see the top of this file), and the rows read here
	 * are as of a snapshot taken after the invalidation.
	 */

	oldcxt = MemoryContextSwitchTo(lookup_cxt);

	/* every key asked for gets an entry, with no widget until found */
	for (int i = 0; i < n; i++)
	{
		LookupKey	key = {device_ids[i], sensor_types[i]};
		LookupEntry *entry;
		bool		found;

		entry = hash_search(lookup, &key, HASH_ENTER, &found);
		if (found)
			continue;
		entry->key.device_id = pstrdup(device_ids[i]);
		entry->key.sensor_type = pstrdup(sensor_types[i]);
		entry->feed.nwidgets = 0;
		entry->feed.widgets = NULL;
	}

	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = tt->vals[r];
		TupleDesc	desc = tt->tupdesc;
		bool		isnull;
		LookupKey	key;
		LookupEntry *entry;
		LwFeed	   *feed;

		key.device_id = TextDatumGetCString(SPI_getbinval(tup, desc, 1, &isnull));
		key.sensor_type = TextDatumGetCString(SPI_getbinval(tup, desc, 2, &isnull));
		entry = hash_search(lookup, &key, HASH_FIND, NULL);
		if (entry == NULL)
			elog(ERROR, "livewidget lookup returned a key it was not asked for");

		feed = &entry->feed;
		feed->widgets = feed->widgets == NULL ?
			palloc(sizeof(LwWidgetRef)) :
			repalloc(feed->widgets, sizeof(LwWidgetRef) * (feed->nwidgets + 1));
		feed->widgets[feed->nwidgets].widget_id =
			TextDatumGetCString(SPI_getbinval(tup, desc, 3, &isnull));
		feed->widgets[feed->nwidgets].max_samples =
			DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
		feed->nwidgets++;
	}

	MemoryContextSwitchTo(oldcxt);
	SPI_freetuptable(tt);
}
