/*-------------------------------------------------------------------------
 *
 * listen.h
 *		The delivery side's database connection: LISTEN and queries.
 *
 * One libpq connection runs on a thread of its own (the "db thread"), so
 * that connecting, reconnecting and every query may block without ever
 * stalling the libwebsockets loop.  The lws thread hands it requests; it
 * hands back events (finished requests, notifications, connection state)
 * and wakes the loop with lws_cancel_service(), the one lws call that is
 * safe from another thread.  The lws thread then calls listen_drain().
 *
 * Glossary: a *request* goes from the lws thread to the db thread; an
 * *event* comes back.  A request is owned by whoever holds it: the lws
 * thread until listen_submit(), the db thread until it posts the request
 * back as an event, then the lws thread again.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LW_LISTEN_H
#define LW_LISTEN_H

#include <stdbool.h>
#include <stdint.h>

struct lws_context;

typedef enum DbQuery
{
	DBQ_LISTEN,					/* arg0: widget id */
	DBQ_UNLISTEN,				/* arg0: widget id */
	DBQ_WIDGET_DASHBOARD,		/* arg0: widget id -> dashboard uuid */
	DBQ_SAMPLES_JSON,			/* arg0: dashboard, arg1: widget -> array */
	DBQ_SAMPLES_AFTER,			/* arg0: widget, arg1: seq -> object */
	DBQ_WIDGETS_LIST,			/* arg0: dashboard -> array */
	DBQ_LAST_SEQ,				/* arg0: widget -> newest buffered seq */
	DBQ_WIDGET_RECHECK			/* as DBQ_WIDGET_DASHBOARD, for a Widget */
} DbQuery;

typedef enum DbStatus
{
	DBS_OK,						/* ran; value is the result or NULL */
	DBS_UNAVAILABLE,			/* no connection: try again later */
	DBS_FAILED					/* the server refused the query */
} DbStatus;

typedef struct DbRequest
{
	struct DbRequest *next;
	DbQuery		query;
	char	   *arg[2];
	DbStatus	status;
	char	   *value;			/* first column of the first row, or NULL */

	/*
	 * The lws-thread object waiting for the answer, cleared by the lws
	 * thread when that object goes away first.  The db thread never reads
	 * it.
	 */
	void	   *owner;
} DbRequest;

typedef enum DbEventKind
{
	DBE_DONE,					/* a request came back */
	DBE_NOTIFY,					/* a notification on a widget channel */
	DBE_CONNECTED,				/* (re)connected, every channel listened */
	DBE_LOST					/* connection lost; reconnecting */
} DbEventKind;

typedef struct DbEvent
{
	DbEventKind kind;
	DbRequest  *request;		/* DBE_DONE */
	const char *widget_id;		/* DBE_NOTIFY: channel minus "widget_" */
	const char *payload;		/* DBE_NOTIFY */
	uint64_t	generation;		/* DBE_CONNECTED: how many connections so far */
} DbEvent;

typedef void (*DbEventHandler) (const DbEvent *event, void *arg);

extern int	listen_start(const char *conninfo, struct lws_context *context);
extern void listen_stop(void);

extern DbRequest *listen_request(DbQuery query, const char *arg0,
								 const char *arg1, void *owner);
extern void listen_submit(DbRequest *req);
extern void listen_request_free(DbRequest *req);

/* lws thread: hand every pending event to handler, in order. */
extern void listen_drain(DbEventHandler handler, void *arg);

/* Connected and listening?  Any thread. */
extern bool listen_ready(void);

#endif							/* LW_LISTEN_H */
