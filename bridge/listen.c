/*-------------------------------------------------------------------------
 *
 * listen.c
 *		The delivery side's database connection, on its own thread.
 *
 * The db thread owns one PGconn.  It runs the requests of the lws thread
 * one at a time, in the order they were submitted, and between them waits
 * in poll() for either a notification on the socket or a new request (an
 * eventfd).  It keeps the set of listened widget channels itself, so that
 * after a lost connection it can LISTEN to all of them again before it
 * tells the lws thread, which then asks for whatever it may have missed.
 *
 * Ordering matters for gap-free delivery: a LISTEN submitted before a
 * query has taken effect when the query's snapshot is taken, because both
 * run on this one connection in submission order.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <libwebsockets.h>

#include "listen.h"
#include "log.h"

#define CHANNEL_PREFIX		"widget_"
#define PING_INTERVAL_MS	10000	/* a silent connection is checked this often */
#define BACKOFF_MIN_MS		250
#define BACKOFF_MAX_MS		5000

/* An event waiting for the lws thread, with the strings it owns. */
typedef struct EventNode
{
	struct EventNode *next;
	DbEvent		event;
	char	   *widget_id;
	char	   *payload;
} EventNode;

typedef struct Channel
{
	struct Channel *next;
	char	   *widget_id;
} Channel;

static struct
{
	char	   *conninfo;
	struct lws_context *context;
	pthread_t	thread;
	int			wakefd;
	atomic_bool stopping;
	atomic_bool ready;

	pthread_mutex_t lock;		/* protects requests and events */
	DbRequest  *requests;		/* submitted, oldest first */
	DbRequest **requests_tail;
	EventNode  *events;			/* for the lws thread, oldest first */
	EventNode **events_tail;

	/* Only the db thread touches these. */
	PGconn	   *conn;
	Channel    *channels;
	uint64_t	generation;
	bool		outage_logged;
} db = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.wakefd = -1,
};

static void
post_event(EventNode *node)
{
	node->next = NULL;
	pthread_mutex_lock(&db.lock);
	*db.events_tail = node;
	db.events_tail = &node->next;
	pthread_mutex_unlock(&db.lock);
	lws_cancel_service(db.context);
}

static void
post_simple(DbEventKind kind)
{
	EventNode  *node = calloc(1, sizeof(EventNode));

	if (node == NULL)
		return;
	node->event.kind = kind;
	node->event.generation = db.generation;
	post_event(node);
}

static void
post_done(DbRequest *req)
{
	EventNode  *node = calloc(1, sizeof(EventNode));

	/*
	 * Out of memory here would strand the request's owner forever; there
	 * is no sane way to go on.
	 */
	if (node == NULL)
		abort();
	node->event.kind = DBE_DONE;
	node->event.request = req;
	post_event(node);
}

/*
 * A libpq message on one log line: its inner line breaks and tabs (before
 * DETAIL, CONTEXT...) become spaces, the trailing ones go.
 */
static const char *
one_line(const char *message)
{
	static __thread char buf[1024];
	size_t		len;
	char	   *p;

	snprintf(buf, sizeof(buf), "%s", message);
	for (p = buf; *p; p++)
		if (*p == '\n' || *p == '\t')
			*p = ' ';
	len = strlen(buf);
	while (len > 0 && buf[len - 1] == ' ')
		buf[--len] = '\0';
	return buf;
}

static const char *
pq_message(PGconn *conn)
{
	return one_line(PQerrorMessage(conn));
}

/* Server notices (a WARNING, a FATAL before a disconnect) as log lines. */
static void
log_notice(void *arg, const char *message)
{
	log_warning("db", "server says: %s", one_line(message));
}

/*
 * Channel names: "widget_" + the widget id.  Widget ids are checked
 * against ^[A-Za-z0-9_-]{1,56}$ before they get here, and the name is
 * still quoted by libpq so that case and dashes survive.
 */
static bool
exec_channel_command(const char *verb, const char *widget_id)
{
	char		channel[sizeof(CHANNEL_PREFIX) + 64];
	char	   *quoted;
	char		sql[160];
	PGresult   *res;
	bool		ok;

	snprintf(channel, sizeof(channel), CHANNEL_PREFIX "%s", widget_id);
	quoted = PQescapeIdentifier(db.conn, channel, strlen(channel));
	if (quoted == NULL)
		return false;
	snprintf(sql, sizeof(sql), "%s %s", verb, quoted);
	PQfreemem(quoted);

	res = PQexec(db.conn, sql);
	ok = PQresultStatus(res) == PGRES_COMMAND_OK;
	if (!ok)
		log_error("db", "could not %s channel \"%s\": %s", verb, channel,
				  pq_message(db.conn));
	PQclear(res);
	return ok;
}

static Channel **
find_channel(const char *widget_id)
{
	Channel   **link;

	for (link = &db.channels; *link != NULL; link = &(*link)->next)
		if (strcmp((*link)->widget_id, widget_id) == 0)
			return link;
	return NULL;
}

/* Keep the channel set in step with what the lws thread asked for. */
static void
remember_channel(const char *widget_id, bool listen)
{
	Channel   **link = find_channel(widget_id);
	Channel    *ch;

	if (listen && link == NULL)
	{
		ch = calloc(1, sizeof(Channel));
		if (ch == NULL || (ch->widget_id = strdup(widget_id)) == NULL)
			abort();
		ch->next = db.channels;
		db.channels = ch;
	}
	else if (!listen && link != NULL)
	{
		ch = *link;
		*link = ch->next;
		free(ch->widget_id);
		free(ch);
	}
}

static int
count_channels(void)
{
	Channel    *ch;
	int			n = 0;

	for (ch = db.channels; ch != NULL; ch = ch->next)
		n++;
	return n;
}

static void
drop_connection(void)
{
	if (db.conn == NULL)
		return;
	PQfinish(db.conn);
	db.conn = NULL;
	atomic_store(&db.ready, false);
	post_simple(DBE_LOST);
}

static bool
connection_broken(void)
{
	return db.conn == NULL || PQstatus(db.conn) != CONNECTION_OK;
}

/*
 * Connect, bound every delivery query in time, and LISTEN to every
 * channel the lws thread has subscribers for.  Settings placed before
 * "dbname" are defaults the user's conninfo may override; the ones after
 * it are ours.
 */
static bool
db_connect(void)
{
	const char *keys[] = {"connect_timeout", "keepalives_idle", "dbname",
	"fallback_application_name", "client_encoding", NULL};
	const char *values[] = {"10", "30", db.conninfo,
	"livewidget-bridge", "UTF8", NULL};
	PGresult   *res;
	Channel    *ch;

	db.conn = PQconnectdbParams(keys, values, 1);
	if (PQstatus(db.conn) != CONNECTION_OK)
	{
		if (!db.outage_logged)
			log_error("db", "could not connect to the database: %s",
					  pq_message(db.conn));
		db.outage_logged = true;
		PQfinish(db.conn);
		db.conn = NULL;
		return false;
	}

	PQsetNoticeProcessor(db.conn, log_notice, NULL);
	res = PQexec(db.conn, "SET statement_timeout = '10s'");
	PQclear(res);
	for (ch = db.channels; ch != NULL; ch = ch->next)
	{
		if (!exec_channel_command("LISTEN", ch->widget_id) && connection_broken())
		{
			PQfinish(db.conn);
			db.conn = NULL;
			return false;
		}
	}

	db.generation++;
	db.outage_logged = false;
	log_info("db", "connected, listening on %d widget channel(s)",
			 count_channels());
	atomic_store(&db.ready, true);
	post_simple(DBE_CONNECTED);
	return true;
}

static const char *const query_sql[] = {
	[DBQ_WIDGET_DASHBOARD] =
	"SELECT dashboard_uuid::text FROM livewidget.tracked_variable"
	" WHERE widget_id = $1",
	[DBQ_WIDGET_RECHECK] =
	"SELECT dashboard_uuid::text FROM livewidget.tracked_variable"
	" WHERE widget_id = $1",
	[DBQ_SAMPLES_JSON] =
	"SELECT livewidget.samples_json($1::uuid, $2)::text",
	[DBQ_SAMPLES_AFTER] =
	"SELECT livewidget.samples_after($1, $2::bigint)::text",
	[DBQ_WIDGETS_LIST] =
	"SELECT coalesce(json_agg(json_build_object("
	"'widget_id', widget_id, 'device_id', device_id,"
	" 'sensor_type', sensor_type, 'max_samples', max_samples)"
	" ORDER BY widget_id), '[]')::text"
	" FROM livewidget.tracked_variable WHERE dashboard_uuid = $1::uuid",
	[DBQ_LAST_SEQ] =
	"SELECT coalesce(max(seq), 0)::text FROM livewidget.widget_sample"
	" WHERE widget_id = $1",
};

static const char *const query_name[] = {
	[DBQ_LISTEN] = "listen",
	[DBQ_UNLISTEN] = "unlisten",
	[DBQ_WIDGET_DASHBOARD] = "widget lookup",
	[DBQ_SAMPLES_JSON] = "samples",
	[DBQ_SAMPLES_AFTER] = "samples after",
	[DBQ_WIDGETS_LIST] = "widgets list",
	[DBQ_LAST_SEQ] = "last seq",
	[DBQ_WIDGET_RECHECK] = "widget recheck",
};

static void
run_query(DbRequest *req)
{
	const char *params[2] = {req->arg[0], req->arg[1]};
	int			nparams = req->arg[1] != NULL ? 2 : 1;
	PGresult   *res;

	res = PQexecParams(db.conn, query_sql[req->query], nparams, NULL,
					   params, NULL, NULL, 0);
	if (PQresultStatus(res) == PGRES_TUPLES_OK)
	{
		req->status = DBS_OK;
		if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
			req->value = strdup(PQgetvalue(res, 0, 0));
	}
	else if (connection_broken())
		req->status = DBS_UNAVAILABLE;
	else
	{
		req->status = DBS_FAILED;
		log_error("db", "%s query failed: %s", query_name[req->query],
				  pq_message(db.conn));
	}
	PQclear(res);
}

/*
 * Run one request.  Channel requests always succeed from the lws thread's
 * point of view: when the connection is down the channel set is updated
 * and the next connection listens.
 */
static void
run_request(DbRequest *req)
{
	bool		is_listen = req->query == DBQ_LISTEN;

	if (req->query == DBQ_LISTEN || req->query == DBQ_UNLISTEN)
	{
		remember_channel(req->arg[0], is_listen);
		if (!connection_broken())
			exec_channel_command(is_listen ? "LISTEN" : "UNLISTEN", req->arg[0]);
		req->status = DBS_OK;
	}
	else if (connection_broken())
		req->status = DBS_UNAVAILABLE;
	else
		run_query(req);

	if (db.conn != NULL && connection_broken())
		drop_connection();
	post_done(req);
}

static void
post_notifications(void)
{
	PGnotify   *n;

	while (db.conn != NULL && (n = PQnotifies(db.conn)) != NULL)
	{
		EventNode  *node;

		if (strncmp(n->relname, CHANNEL_PREFIX, strlen(CHANNEL_PREFIX)) != 0 ||
			(node = calloc(1, sizeof(EventNode))) == NULL)
		{
			PQfreemem(n);
			continue;
		}
		node->widget_id = strdup(n->relname + strlen(CHANNEL_PREFIX));
		node->payload = strdup(n->extra);
		PQfreemem(n);
		if (node->widget_id == NULL || node->payload == NULL)
		{
			free(node->widget_id);
			free(node->payload);
			free(node);
			continue;
		}
		node->event.kind = DBE_NOTIFY;
		node->event.widget_id = node->widget_id;
		node->event.payload = node->payload;
		post_event(node);
	}
}

static DbRequest *
take_request(void)
{
	DbRequest  *req;

	pthread_mutex_lock(&db.lock);
	req = db.requests;
	if (req != NULL)
	{
		db.requests = req->next;
		if (db.requests == NULL)
			db.requests_tail = &db.requests;
		req->next = NULL;
	}
	pthread_mutex_unlock(&db.lock);
	return req;
}

typedef enum Wakeup
{
	WAKE_TIMEOUT,				/* nothing happened for timeout_ms */
	WAKE_SOCKET,				/* the server sent something */
	WAKE_REQUEST				/* a request was submitted, or stop */
} Wakeup;

/* Wait until the socket has input, a request comes, or timeout_ms pass. */
static Wakeup
wait_for_work(int timeout_ms)
{
	struct pollfd fds[2];
	int			nfds = 1;
	uint64_t	count;

	fds[0].fd = db.wakefd;
	fds[0].events = POLLIN;
	if (db.conn != NULL)
	{
		fds[1].fd = PQsocket(db.conn);
		fds[1].events = POLLIN;
		nfds = 2;
	}
	if (poll(fds, nfds, timeout_ms) <= 0)
		return WAKE_TIMEOUT;
	if (nfds == 2 && (fds[1].revents & (POLLIN | POLLHUP | POLLERR)))
		return WAKE_SOCKET;
	if (read(db.wakefd, &count, sizeof(count)) < 0 && errno != EAGAIN)
		log_debug("db", "could not read the wakeup counter: %m");
	return WAKE_REQUEST;
}

/* A quiet connection may be dead without our knowing: ask. */
static void
ping(void)
{
	PGresult   *res = PQexec(db.conn, "SELECT 1");

	PQclear(res);
	if (connection_broken())
	{
		log_error("db", "lost the database connection: %s", pq_message(db.conn));
		drop_connection();
	}
}

static void *
db_main(void *arg)
{
	int			backoff = BACKOFF_MIN_MS;
	DbRequest  *req;

	while (!atomic_load(&db.stopping))
	{
		if (db.conn == NULL && !db_connect())
		{
			/* Answer what is waiting (as unavailable), then back off. */
			while ((req = take_request()) != NULL)
				run_request(req);
			wait_for_work(backoff);
			backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
			continue;
		}
		backoff = BACKOFF_MIN_MS;

		while (db.conn != NULL && (req = take_request()) != NULL)
			run_request(req);
		post_notifications();
		if (db.conn == NULL)
			continue;

		switch (wait_for_work(PING_INTERVAL_MS))
		{
			case WAKE_SOCKET:
				if (!PQconsumeInput(db.conn))
				{
					log_error("db", "lost the database connection: %s",
							  pq_message(db.conn));
					drop_connection();
				}
				break;
			case WAKE_TIMEOUT:
				ping();
				break;
			case WAKE_REQUEST:
				break;
		}
		post_notifications();
	}
	return NULL;
}

int
listen_start(const char *conninfo, struct lws_context *context)
{
	db.conninfo = strdup(conninfo != NULL ? conninfo : "");
	db.context = context;
	db.requests_tail = &db.requests;
	db.events_tail = &db.events;
	db.wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (db.conninfo == NULL || db.wakefd < 0)
	{
		log_fatal("db", "could not set up the database thread: %m");
		return -1;
	}
	if (pthread_create(&db.thread, NULL, db_main, NULL) != 0)
	{
		log_fatal("db", "could not start the database thread");
		return -1;
	}
	return 0;
}

static void
wake(void)
{
	uint64_t	one = 1;

	if (write(db.wakefd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_debug("db", "could not wake the database thread: %m");
}

/* Stop the thread; a query under way finishes first (10 s at most). */
void
listen_stop(void)
{
	EventNode  *node;

	if (db.wakefd < 0)
		return;
	atomic_store(&db.stopping, true);
	wake();
	pthread_join(db.thread, NULL);
	if (db.conn != NULL)
		PQfinish(db.conn);
	db.conn = NULL;

	while ((node = db.events) != NULL)
	{
		db.events = node->next;
		if (node->event.request != NULL)
			listen_request_free(node->event.request);
		free(node->widget_id);
		free(node->payload);
		free(node);
	}
	close(db.wakefd);
	db.wakefd = -1;
	free(db.conninfo);
}

DbRequest *
listen_request(DbQuery query, const char *arg0, const char *arg1, void *owner)
{
	DbRequest  *req = calloc(1, sizeof(DbRequest));

	if (req == NULL)
		return NULL;
	req->query = query;
	req->owner = owner;
	req->arg[0] = arg0 != NULL ? strdup(arg0) : NULL;
	req->arg[1] = arg1 != NULL ? strdup(arg1) : NULL;
	if ((arg0 != NULL && req->arg[0] == NULL) ||
		(arg1 != NULL && req->arg[1] == NULL))
	{
		listen_request_free(req);
		return NULL;
	}
	return req;
}

void
listen_request_free(DbRequest *req)
{
	if (req == NULL)
		return;
	free(req->arg[0]);
	free(req->arg[1]);
	free(req->value);
	free(req);
}

void
listen_submit(DbRequest *req)
{
	req->next = NULL;
	pthread_mutex_lock(&db.lock);
	*db.requests_tail = req;
	db.requests_tail = &req->next;
	pthread_mutex_unlock(&db.lock);
	wake();
}

/*
 * Hand the pending events to handler.  The list is detached under the
 * lock and walked without it, so the db thread never waits on a handler.
 * The handler owns a DBE_DONE request from then on.
 */
void
listen_drain(DbEventHandler handler, void *arg)
{
	EventNode  *list;
	EventNode  *node;

	pthread_mutex_lock(&db.lock);
	list = db.events;
	db.events = NULL;
	db.events_tail = &db.events;
	pthread_mutex_unlock(&db.lock);

	while ((node = list) != NULL)
	{
		list = node->next;
		handler(&node->event, arg);
		free(node->widget_id);
		free(node->payload);
		free(node);
	}
}

bool
listen_ready(void)
{
	return atomic_load(&db.ready);
}
