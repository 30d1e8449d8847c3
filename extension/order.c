/*-------------------------------------------------------------------------
 *
 * order.c
 *	  Each session's copy of the order of the buffers it writes.
 *
 * To know which samples a reading pushes out, the trigger needs a
 * buffer's oldest samples.  An index scan for them costs more than
 * anything else the trigger does per widget (the scan reads every entry
 * of the widget on the index page, and those of the samples replaced
 * since the last vacuum).  A session that is the only writer of a widget,
 * which is what an ingest process usually is, can instead remember the
 * widget's samples in (ts, seq) order with their row locations, as it
 * left them, and go on from there.
 *
 * A copy is used only while it is provably current:
 *	- the widget's state row is the one this session wrote last (same row
 *	  location, last_seq, removed_seq and sample_count): every change to a
 *	  buffer, by the trigger or by track(), untrack() and refill(),
 *	  updates the state row and moves at least one of those;
 *	- the tables have not been rewritten (same files);
 *	- no transaction or subtransaction has aborted, nor any been prepared
 *	  for two-phase commit, in this session since the copy was made (an
 *	  aborted write leaves the copy ahead of the tables);
 *	- and each sample taken from it is checked against its row before it
 *	  is replaced (lw_store_check_sample()).
 * Otherwise the trigger falls back to the index scan.  It builds a new
 * copy (reading the whole buffer once) for a widget it has no copy of,
 * whose copy was current the last time, or after 16 statements without
 * one: two sessions that take turns writing one widget do not pay a full
 * read each time (buffer.c).
 *
 * At most LW_ORDER_MAX_SAMPLES samples are kept in all; past that the
 * copies are dropped and built again as needed.
 *
 * extension/order.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "livewidget.h"

/* The most samples all copies of a session hold together (16 bytes each) */
#define LW_ORDER_MAX_SAMPLES	(1024 * 1024)

static MemoryContext order_cxt = NULL;
static HTAB *orders = NULL;
static long order_samples = 0;
static Oid	order_state_file = InvalidOid;
static Oid	order_sample_file = InvalidOid;
static bool callbacks_registered = false;
static bool order_aborted = false;	/* an abort since the copies were made */

static void
order_reset(void)
{
	HASHCTL		ctl;

	if (order_cxt == NULL)
		order_cxt = AllocSetContextCreate(TopMemoryContext,
										  "livewidget buffer order",
										  ALLOCSET_DEFAULT_SIZES);
	else
		MemoryContextReset(order_cxt);

	ctl.keysize = LW_WIDGET_ID_MAX_LEN + 1;
	ctl.entrysize = sizeof(LwOrder);
	ctl.hcxt = order_cxt;
	orders = hash_create("livewidget buffer order", 128, &ctl,
						 HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	order_samples = 0;
}

/*
 * Any abort: what the copies say may not have happened.  Only noted here
 * (no allocation in abort processing); lw_order_begin() drops them.
 */
static void
order_xact_callback(XactEvent event, void *arg)
{
	/*
	 * A prepared transaction may be rolled back later, by ROLLBACK
	 * PREPARED, without this session hearing of it: forget the copies as
	 * if it had aborted.
	 */
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		order_aborted = true;
}

static void
order_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		order_aborted = true;
}

/*
 * lw_order_begin
 *		Start a statement's use of the copies, for tables in these files.
 */
void
lw_order_begin(Oid state_file, Oid sample_file)
{
	if (!callbacks_registered)
	{
		RegisterXactCallback(order_xact_callback, NULL);
		RegisterSubXactCallback(order_subxact_callback, NULL);
		callbacks_registered = true;
	}
	if (orders == NULL || order_aborted || state_file != order_state_file ||
		sample_file != order_sample_file ||
		order_samples > LW_ORDER_MAX_SAMPLES)
	{
		order_reset();
		order_aborted = false;
		order_state_file = state_file;
		order_sample_file = sample_file;
	}
}

/*
 * lw_order_get
 *		The copy of a widget's order, created empty (not current) when the
 *		session has none.
 */
LwOrder *
lw_order_get(const char *widget_id)
{
	LwOrder    *o;
	bool		found;

	o = hash_search(orders, widget_id, HASH_ENTER, &found);
	if (!found)
	{
		o->current = false;
		o->built = false;
		o->hits = 0;
		o->misses = 0;
		o->nsamples = 0;
		o->cap = 0;
		o->samples = NULL;
	}
	return o;
}

/*
 * lw_order_matches
 *		Whether the copy describes the buffer whose state row is "state".
 */
bool
lw_order_matches(const LwOrder *o, const LwStateRow *state)
{
	return o->current &&
		ItemPointerEquals((ItemPointer) &o->state.tid,
						  (ItemPointer) &state->tid) &&
		o->state.last_seq == state->last_seq &&
		o->state.removed_seq == state->removed_seq &&
		o->state.sample_count == state->sample_count &&
		o->nsamples == state->sample_count;
}

/*
 * lw_order_set
 *		Make the copy the given samples (in (ts, seq) order) of the buffer
 *		whose state row is now "state".
 */
void
lw_order_set(LwOrder *o, const LwStateRow *state, const LwSampleRow *samples,
			 int n)
{
	if (o->cap < n)
	{
		int			cap = Max(n, 8);

		order_samples += cap - o->cap;
		o->samples = o->samples == NULL ?
			MemoryContextAlloc(order_cxt, sizeof(LwSampleRow) * cap) :
			repalloc(o->samples, sizeof(LwSampleRow) * cap);
		o->cap = cap;
	}
	if (n > 0)
		memcpy(o->samples, samples, sizeof(LwSampleRow) * n);
	o->nsamples = n;
	o->state = *state;
	o->current = true;
}

/*
 * lw_order_forget
 *		The buffer changed in a way the copy does not follow.
 */
void
lw_order_forget(LwOrder *o)
{
	o->current = false;
}
