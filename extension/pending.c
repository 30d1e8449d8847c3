/*-------------------------------------------------------------------------
 *
 * pending.c
 *	  New readings of a transaction, waiting for its commit.
 *
 * The buffer trigger does not write the buffers at each statement.  It
 * hands the readings each widget gets to this module, and the buffers
 * are written once, just before the transaction commits
 * (XACT_EVENT_PRE_COMMIT), with the locks of all its widgets taken
 * together in widget id order.  Why:
 *
 *	- A writer holds no widget lock before its commit, so it never holds
 *	  one widget while it waits for another: two transactions that feed
 *	  the same widgets in separate statements, in any order, cannot
 *	  deadlock on the buffers.
 *	- The locks are held for the commit only, not the whole transaction,
 *	  so concurrent writers of the same widgets wait less.
 *	- A widget gets one seq allocation, one state row update and one group
 *	  of notifications per transaction, whatever its number of statements.
 *
 * The price: inside the inserting transaction the buffers do not show its
 * own readings yet; they appear with its commit.
 *
 * What waits, per widget: the newest max_samples readings the transaction
 * gave it, by (ts, ord), where ord numbers the transaction's readings in
 * the order they were inserted (lw_pending_ords()).  An older one could
 * never enter the buffer.
 *
 * Subtransactions.  Each subtransaction that inserts readings gets a
 * level of its own, on a stack whose top is the innermost.  Its abort
 * drops the level; its commit merges the level into its parent's.  A
 * reading of one level is never dropped for a newer one of another level,
 * since that one could still be rolled back.
 *
 * track(), untrack() and refill() change a buffer in the middle of a
 * transaction.  They first write what waits for the widget
 * (lw_pending_flush()) and leave a mark at the current level: what lower
 * levels hold for the widget is written.  Should the subtransaction roll
 * back, the mark and those writes go together, and the lower levels'
 * readings are written at commit as if nothing had happened.
 *
 * Notifications.  PostgreSQL refuses to prepare a transaction that has
 * sent one, so the samples written before the end of the transaction (by
 * lw_pending_flush()) are not notified at once: their level keeps them
 * as "notes", which follow the level (an abort drops them, a commit hands
 * them to the parent), and they are notified at commit, before the
 * samples the commit itself writes.  PREPARE TRANSACTION writes the
 * buffers too (XACT_EVENT_PRE_PREPARE), but cannot notify: a warning says
 * which widgets' samples, its own and the notes, are not notified.
 *
 * Memory: each level has its own context under TopTransactionContext;
 * the end of the transaction frees them all.
 *
 *	  level		the readings that one (sub)transaction added, with marks
 *	  mark		"what the levels below hold for this widget is written"
 *	  note		samples written early, to be notified at commit
 *
 * extension/pending.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "nodes/pg_list.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "livewidget.h"

/* What one level holds for one widget. */
typedef struct PendingWidget
{
	char		widget_id[LW_WIDGET_ID_MAX_LEN + 1];	/* hash key */
	bool		marked;			/* lower levels' readings are written */
	int32		max_samples;	/* as the newest statement saw it */
	LwReading  *readings;		/* newest max_samples, by (ts, ord) */
	int			nreadings;
} PendingWidget;

/* Samples written before the commit, not notified yet. */
typedef struct PendingNote
{
	char	   *widget_id;
	LwSample   *samples;		/* in seq order */
	int			nsamples;
} PendingNote;

typedef struct PendingLevel
{
	SubTransactionId subid;		/* the (sub)transaction it belongs to */
	MemoryContext cxt;			/* holds the level itself too */
	HTAB	   *widgets;		/* PendingWidget by widget id */
	List	   *notes;			/* PendingNote, oldest first */
	struct PendingLevel *below; /* the parent's level, or NULL */
} PendingLevel;

static PendingLevel *top_level = NULL;
static int64 next_ord = 0;
static bool callbacks_registered = false;

static void pending_xact_callback(XactEvent event, void *arg);
static void pending_subxact_callback(SubXactEvent event,
									 SubTransactionId mySubid,
									 SubTransactionId parentSubid, void *arg);

static PendingLevel *
new_level(SubTransactionId subid)
{
	MemoryContext cxt = AllocSetContextCreate(TopTransactionContext,
											  "livewidget pending readings",
											  ALLOCSET_DEFAULT_SIZES);
	PendingLevel *level = MemoryContextAlloc(cxt, sizeof(PendingLevel));
	HASHCTL		ctl;

	ctl.keysize = LW_WIDGET_ID_MAX_LEN + 1;
	ctl.entrysize = sizeof(PendingWidget);
	ctl.hcxt = cxt;
	level->widgets = hash_create("livewidget pending widgets", 16, &ctl,
								 HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	level->subid = subid;
	level->cxt = cxt;
	level->notes = NIL;
	level->below = NULL;
	return level;
}

/*
 * keep_note
 *		Keep samples just written, to notify them at commit, in the level
 *		given as arg (an LwLaterFn for lw_buffer_write()).
 */
static void
keep_note(void *arg, const char *widget_id, const LwSample *samples,
		  int nsamples)
{
	PendingLevel *level = (PendingLevel *) arg;
	MemoryContext oldcxt = MemoryContextSwitchTo(level->cxt);
	PendingNote *note = palloc(sizeof(PendingNote));

	note->widget_id = pstrdup(widget_id);
	note->samples = palloc(sizeof(LwSample) * Max(nsamples, 1));
	note->nsamples = nsamples;
	for (int i = 0; i < nsamples; i++)
	{
		note->samples[i] = samples[i];
		if (samples[i].unit != NULL)
			note->samples[i].unit = pstrdup(samples[i].unit);
	}
	level->notes = lappend(level->notes, note);
	MemoryContextSwitchTo(oldcxt);
}

/*
 * current_level
 *		The level of the running (sub)transaction, pushed when it has none.
 */
static PendingLevel *
current_level(void)
{
	SubTransactionId subid = GetCurrentSubTransactionId();
	PendingLevel *level;

	if (!callbacks_registered)
	{
		RegisterXactCallback(pending_xact_callback, NULL);
		RegisterSubXactCallback(pending_subxact_callback, NULL);
		callbacks_registered = true;
	}
	if (top_level != NULL && top_level->subid == subid)
		return top_level;

	level = new_level(subid);
	level->below = top_level;
	top_level = level;
	return level;
}

static PendingWidget *
level_widget(PendingLevel *level, const char *widget_id)
{
	PendingWidget *pw;
	bool		found;

	/* track() checks that ids fit the key */
	pw = hash_search(level->widgets, widget_id, HASH_ENTER, &found);
	if (!found)
	{
		pw->marked = false;
		pw->max_samples = 0;
		pw->readings = NULL;
		pw->nreadings = 0;
	}
	return pw;
}

static inline bool
reading_older(const LwReading *a, const LwReading *b)
{
	return a->ts < b->ts || (a->ts == b->ts && a->ord < b->ord);
}

/* Drop every reading a widget holds in its level (allocated in cxt). */
static void
clear_widget(PendingWidget *pw)
{
	for (int i = 0; i < pw->nreadings; i++)
		if (pw->readings[i].unit != NULL)
			pfree(pw->readings[i].unit);
	if (pw->readings != NULL)
		pfree(pw->readings);
	pw->readings = NULL;
	pw->nreadings = 0;
}

/*
 * merge_readings
 *		Add n readings, newer by ord than any pw holds and in (ts, ord)
 *		order, to what pw holds in cxt: the newest max_samples of both stay.
 *
 * Both lists are sorted, so the newest are taken from their ends.  Units
 * of the new readings that stay are copied into cxt; pw's own that leave
 * are freed, so that a long transaction holds no more than it keeps.
 */
static void
merge_readings(PendingWidget *pw, const LwReading *news, int n,
			   int32 max_samples, MemoryContext cxt)
{
	int			keep;
	int			i;
	int			j;
	LwReading  *merged;

	if (n == 0)
		return;
	pw->max_samples = max_samples;
	keep = Min(pw->nreadings + n, max_samples);
	merged = MemoryContextAlloc(cxt, sizeof(LwReading) * keep);

	i = pw->nreadings - 1;
	j = n - 1;
	for (int k = keep - 1; k >= 0; k--)
	{
		if (j < 0 || (i >= 0 && reading_older(&news[j], &pw->readings[i])))
			merged[k] = pw->readings[i--];
		else
		{
			merged[k] = news[j--];
			if (merged[k].unit != NULL)
				merged[k].unit = MemoryContextStrdup(cxt, merged[k].unit);
		}
	}

	/* what is left of pw's own list leaves */
	for (; i >= 0; i--)
		if (pw->readings[i].unit != NULL)
			pfree(pw->readings[i].unit);
	if (pw->readings != NULL)
		pfree(pw->readings);
	pw->readings = merged;
	pw->nreadings = keep;
}

/*
 * merge_widget
 *		Put what level "from" holds for a widget on top of what "into"
 *		holds for it, "from" being the later of the two.
 */
static void
merge_widget(PendingLevel *into, const PendingWidget *from)
{
	PendingWidget *pw = level_widget(into, from->widget_id);

	if (from->marked)
	{
		clear_widget(pw);
		pw->marked = true;
	}
	merge_readings(pw, from->readings, from->nreadings, from->max_samples,
				   into->cxt);
}

/* "from" being the later of the two levels; its notes go after into's */
static void
merge_level(PendingLevel *into, PendingLevel *from)
{
	HASH_SEQ_STATUS status;
	PendingWidget *pw;
	ListCell   *lc;

	hash_seq_init(&status, from->widgets);
	while ((pw = hash_seq_search(&status)) != NULL)
		merge_widget(into, pw);

	foreach(lc, from->notes)
	{
		PendingNote *note = (PendingNote *) lfirst(lc);

		keep_note(into, note->widget_id, note->samples, note->nsamples);
	}
}

/*
 * fold_levels
 *		What the whole stack holds, as one level with a context of its
 *		own: the levels merged from the bottom up.  Only the readings of
 *		widget_id, and no notes, when it is given.
 */
static PendingLevel *
fold_levels(const char *widget_id)
{
	PendingLevel *folded = new_level(InvalidSubTransactionId);
	int			depth = 0;
	PendingLevel **stack;

	for (PendingLevel *l = top_level; l != NULL; l = l->below)
		depth++;
	stack = palloc(sizeof(PendingLevel *) * Max(depth, 1));
	depth = 0;
	for (PendingLevel *l = top_level; l != NULL; l = l->below)
		stack[depth++] = l;

	while (depth-- > 0)
	{
		PendingWidget *pw;

		if (widget_id == NULL)
			merge_level(folded, stack[depth]);
		else if ((pw = hash_search(stack[depth]->widgets, widget_id,
								   HASH_FIND, NULL)) != NULL)
			merge_widget(folded, pw);
	}
	pfree(stack);
	return folded;
}

/*
 * write_level
 *		Write the buffers of every widget a folded level holds readings for;
 *		later and arg as for lw_buffer_write().
 */
static void
write_level(PendingLevel *level, LwLaterFn later, void *arg)
{
	long		n = hash_get_num_entries(level->widgets);
	LwPendingWidget *list = palloc(sizeof(LwPendingWidget) * Max(n, 1));
	HASH_SEQ_STATUS status;
	PendingWidget *pw;
	int			count = 0;

	hash_seq_init(&status, level->widgets);
	while ((pw = hash_seq_search(&status)) != NULL)
	{
		if (pw->nreadings == 0)
			continue;
		list[count].widget_id = pw->widget_id;
		list[count].max_samples = pw->max_samples;
		list[count].readings = pw->readings;
		list[count].nreadings = pw->nreadings;
		count++;
	}
	if (count > 0)
		lw_buffer_write(list, count, later, arg);
	pfree(list);
}

/* Notify the samples a folded level keeps notes of, oldest first. */
static void
send_notes(PendingLevel *level)
{
	ListCell   *lc;

	foreach(lc, level->notes)
	{
		PendingNote *note = (PendingNote *) lfirst(lc);

		lw_notify_samples(note->widget_id, note->samples, note->nsamples);
	}
}

/*
 * report_not_notified
 *		PREPARE TRANSACTION wrote samples it cannot notify, and may keep
 *		notes of samples written before: say which widgets', once.
 */
static void
report_not_notified(PendingLevel *level)
{
	StringInfoData ids;
	HASHCTL		ctl;
	HTAB	   *seen;
	ListCell   *lc;
	int			count = 0;

	ctl.keysize = LW_WIDGET_ID_MAX_LEN + 1;
	ctl.entrysize = LW_WIDGET_ID_MAX_LEN + 1;
	ctl.hcxt = CurrentMemoryContext;
	seen = hash_create("livewidget widgets not notified", 16, &ctl,
					   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	initStringInfo(&ids);
	foreach(lc, level->notes)
	{
		PendingNote *note = (PendingNote *) lfirst(lc);
		bool		found;

		(void) hash_search(seen, note->widget_id, HASH_ENTER, &found);
		if (found)
			continue;
		if (count++ < 10)
			appendStringInfo(&ids, "%s\"%s\"", count > 1 ? ", " : "",
							 note->widget_id);
	}
	hash_destroy(seen);
	if (count == 0)
		return;
	if (count > 10)
		appendStringInfo(&ids, " and %d more", count - 10);

	ereport(WARNING,
			(errcode(ERRCODE_WARNING),
			 errmsg_plural("new samples of %d widget are buffered but not notified",
						   "new samples of %d widgets are buffered but not notified",
						   count, count),
			 errdetail("A transaction being prepared cannot send notifications.  Widgets: %s.",
					   ids.data),
			 errhint("Clients see these samples when they next read the buffer, for example with livewidget.samples_after().")));
}

/*
 * write_all
 *		At the end of the transaction: write every buffer that readings
 *		wait for.  The stack is taken away first, so that an error here
 *		(which aborts the transaction) finds nothing left to write.
 *
 * At commit the notes go out first: their samples got their seqs before
 * the ones written now.  A transaction being prepared only keeps notes,
 * to say what it did not notify.
 */
static void
write_all(bool notify)
{
	PendingLevel *level;

	if (top_level == NULL)
		return;
	level = (top_level->below == NULL) ? top_level :
		fold_levels(NULL);
	top_level = NULL;
	next_ord = 0;
	if (notify)
	{
		send_notes(level);
		write_level(level, NULL, NULL);
	}
	else
	{
		write_level(level, keep_note, level);
		report_not_notified(level);
	}
}

static void
pending_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			write_all(true);
			break;
		case XACT_EVENT_PRE_PREPARE:
			write_all(false);
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			/* the contexts go with TopTransactionContext */
			top_level = NULL;
			next_ord = 0;
			break;
		default:
			break;
	}
}

static void
pending_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	PendingLevel *level = top_level;

	/* a subtransaction that inserted nothing has no level */
	if (level == NULL || level->subid != mySubid)
		return;

	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		top_level = level->below;
		MemoryContextDelete(level->cxt);
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		if (level->below != NULL && level->below->subid == parentSubid)
		{
			merge_level(level->below, level);
			top_level = level->below;
			MemoryContextDelete(level->cxt);
		}
		else
			level->subid = parentSubid;
	}
}

/*
 * lw_pending_ords
 *		Reserve n consecutive insertion numbers for a statement's rows;
 *		returns the one before the first.
 */
int64
lw_pending_ords(int64 n)
{
	int64		base = next_ord;

	next_ord += n;
	return base;
}

/*
 * lw_pending_add
 *		Have n new readings of a widget written at commit.  They are in
 *		(ts, ord) order, at most max_samples, and were numbered after every
 *		reading added before.
 */
void
lw_pending_add(const char *widget_id, int32 max_samples,
			   const LwReading *readings, int n)
{
	PendingLevel *level = current_level();

	merge_readings(level_widget(level, widget_id), readings, n, max_samples,
				   level->cxt);
}

/*
 * lw_pending_flush
 *		Write now what waits for one widget, and mark it written at the
 *		current level, which keeps the notes of the new samples.  The
 *		caller holds the widget's lock.
 */
void
lw_pending_flush(const char *widget_id)
{
	PendingLevel *folded;
	PendingWidget *pw;

	if (top_level == NULL)
		return;
	folded = fold_levels(widget_id);
	pw = hash_search(folded->widgets, widget_id, HASH_FIND, NULL);
	if (pw != NULL && pw->nreadings > 0)
	{
		PendingLevel *level = current_level();
		PendingWidget *mark;

		write_level(folded, keep_note, level);
		mark = level_widget(level, widget_id);
		clear_widget(mark);
		mark->marked = true;
	}
	MemoryContextDelete(folded->cxt);
}
