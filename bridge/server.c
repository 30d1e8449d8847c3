/*-------------------------------------------------------------------------
 *
 * server.c
 *		The libwebsockets side: context, the one protocol, sessions, and
 *		the events coming back from the database thread.
 *
 * One protocol, "livewidget", serves both plain HTTP and the WebSocket
 * upgrade, so a viewer that offers the subprotocol and one that offers
 * none end up in the same callback.  This file only dispatches: HTTP
 * work is in http.c, viewers in ws.c.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ingest.h"
#include "log.h"
#include "server.h"

ServerStats server_stats;
const Config *server_config;

static Session *sessions;		/* every open session */
static uint64_t next_session_id = 1;

bool
widget_id_valid(const char *id)
{
	size_t		len = strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
							 "abcdefghijklmnopqrstuvwxyz0123456789_-");

	return len >= 1 && len <= WIDGET_ID_MAX && id[len] == '\0';
}

static void
session_open(Session *s, struct lws *wsi, const char *kind)
{
	char		peer[48] = "?";

	/* A kept-alive HTTP connection reuses its session for each request. */
	if (s->wsi != NULL)
		server_session_gone(s);
	s->wsi = wsi;
	s->id = next_session_id++;
	lws_get_peer_simple(wsi, peer, sizeof(peer));
	snprintf(s->prefix, sizeof(s->prefix), "%s#%llu %s", kind,
			 (unsigned long long) s->id, peer);
	s->next_session = sessions;
	if (sessions != NULL)
		sessions->prev_session = s;
	sessions = s;
}

/*
 * The session's memory is about to go: nothing may point at it any more.
 * A request still at the db thread comes back ownerless and is freed.
 */
void
server_session_gone(Session *s)
{
	if (s->wsi == NULL)
		return;
	ws_closed(s);
	if (s->pending != NULL)
		s->pending->owner = NULL;
	s->pending = NULL;
	free(s->body);
	s->body = NULL;
	grant_free(&s->grant);

	if (s->prev_session != NULL)
		s->prev_session->next_session = s->next_session;
	else
		sessions = s->next_session;
	if (s->next_session != NULL)
		s->next_session->prev_session = s->prev_session;
	s->wsi = NULL;
}

void
server_submit(Session *s, DbQuery query, const char *arg0, const char *arg1)
{
	DbRequest  *req = listen_request(query, arg0, arg1, s);

	if (req == NULL)
	{
		if (s->is_ws)
			ws_db_done(s, &(DbRequest) {.query = query, .status = DBS_FAILED});
		else
			http_respond_error(s, 500, "out of memory");
		return;
	}
	s->pending = req;
	listen_submit(req);
}

/* One event from the db thread, on the lws thread. */
static void
handle_db_event(const DbEvent *ev, void *arg)
{
	DbRequest  *req = ev->request;
	Session    *s;

	switch (ev->kind)
	{
		case DBE_DONE:
			if (req->query == DBQ_WIDGET_RECHECK)
			{
				ws_recheck_done(req);
				listen_request_free(req);
				break;
			}
			s = req->owner;
			if (s != NULL)
			{
				s->pending = NULL;
				if (s->is_ws)
					ws_db_done(s, req);
				else
					http_db_done(s, req);
			}
			listen_request_free(req);
			break;
		case DBE_NOTIFY:
			ws_notify(ev->widget_id, ev->payload);
			break;
		case DBE_CONNECTED:
			if (ev->generation > 1)
				ws_reconnected();
			break;
		case DBE_LOST:
			break;
	}
}

/*
 * libwebsockets refuses (by dropping the connection) an upgrade whose
 * Sec-WebSocket-Protocol header is longer than 126 bytes, which any real
 * token offered as "bearer.<jwt>" makes it.  Say so in the log and answer
 * with an HTTP status instead of a silent hang-up.
 *
 * XXX: this makes the subprotocol way of sending a token unusable with
 * libwebsockets 4.1 (the buffer is fixed inside lws_process_ws_upgrade);
 * clients send the token as ?access_token= instead.  Lifting it needs a
 * libwebsockets that sizes that buffer by the header.
 */
static int
confirm_upgrade(struct lws *wsi)
{
	int			len = lws_hdr_total_length(wsi, WSI_TOKEN_PROTOCOL);

	if (len < WS_PROTOCOL_HEADER_MAX)
		return 0;
	log_warning("ws", "refused an upgrade: its subprotocol list is %d bytes, "
				"longer than the %d libwebsockets accepts; send the token as access_token",
				len, WS_PROTOCOL_HEADER_MAX - 1);
	if (lws_return_http_status(wsi, 431,
							   "subprotocol list too long; send the token as access_token"))
		return -1;
	return 1;
}

static int
callback_livewidget(struct lws *wsi, enum lws_callback_reasons reason,
					void *user, void *in, size_t len)
{
	Session    *s = user;

	switch (reason)
	{
		case LWS_CALLBACK_HTTP:
			session_open(s, wsi, "http");
			return http_request(s, in);
		case LWS_CALLBACK_HTTP_WRITEABLE:
			return http_writeable(s);
		case LWS_CALLBACK_HTTP_FILE_COMPLETION:
			return lws_http_transaction_completed(wsi) ? -1 : 0;
		case LWS_CALLBACK_CLOSED_HTTP:
		case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
			if (s != NULL)
				server_session_gone(s);
			break;

		case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
			return confirm_upgrade(wsi);
		case LWS_CALLBACK_ESTABLISHED:
			session_open(s, wsi, "ws");
			return ws_established(s);
		case LWS_CALLBACK_SERVER_WRITEABLE:
			return ws_writeable(s);
		case LWS_CALLBACK_TIMER:
			if (s != NULL && s->is_ws)
				ws_timer(s);
			break;
		case LWS_CALLBACK_RECEIVE:
			/* Viewers have nothing to say; what they send is ignored. */
			break;
		case LWS_CALLBACK_CLOSED:
			server_session_gone(s);
			break;

		case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
			listen_drain(handle_db_event, NULL);
			break;
		default:
			break;
	}
	return 0;
}

static const struct lws_protocols protocols[] = {
	{
		.name = "livewidget",
		.callback = callback_livewidget,
		.per_session_data_size = sizeof(Session),
		.rx_buffer_size = 1024,
	},
	{.name = NULL}
};

static struct lws_context *context;

/* lws logs errors and warnings through ours, under the prefix "lws". */
static void
lws_log_line(int level, const char *line)
{
	size_t		len = strlen(line);

	while (len > 0 && line[len - 1] == '\n')
		len--;
	if (level & LLL_ERR)
		log_error("lws", "%.*s", (int) len, line);
	else
		log_warning("lws", "%.*s", (int) len, line);
}

/* The API works without the page, but a user opening "/" should know why. */
static void
warn_missing_page(const char *web_root)
{
	char		path[1024];
	struct stat st;

	snprintf(path, sizeof(path), "%s/index.html", web_root);
	if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
		log_warning("http", "web_root \"%s\" has no index.html: the dashboard page "
					"will answer 404", web_root);
}

struct lws_context *
server_create(const Config *cfg)
{
	struct lws_context_creation_info info;
	static char host[256];
	int			port;

	server_config = cfg;
	lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_line);
	if (config_split_listen(cfg->listen, host, sizeof(host), &port) != 0)
	{
		log_fatal("http", "invalid listen address \"%s\"", cfg->listen);
		return NULL;
	}

	memset(&info, 0, sizeof(info));
	info.port = port;
	info.iface = host[0] != '\0' ? host : NULL;
	info.protocols = protocols;
	info.vhost_name = "livewidget";
	info.max_http_header_data = AUTH_MAX_TOKEN + 4096;
	info.options = LWS_SERVER_OPTION_HTTP_HEADERS_SECURITY_BEST_PRACTICES_ENFORCE |
		LWS_SERVER_OPTION_DISABLE_IPV6;
	info.timeout_secs = 30;

	context = lws_create_context(&info);
	if (context == NULL)
	{
		log_fatal("http", "could not listen on %s", cfg->listen);
		return NULL;
	}
	log_info("http", "listening on %s", cfg->listen);
	warn_missing_page(cfg->web_root);
	return context;
}

/*
 * Graceful stop: every viewer gets a 1001 close; the loop runs until they
 * are gone or a second has passed.
 */
void
server_close_all(void)
{
	Session    *s;

	for (s = sessions; s != NULL; s = s->next_session)
		ws_stop(s);
}

bool
server_idle(void)
{
	Session    *s;

	for (s = sessions; s != NULL; s = s->next_session)
		if (s->is_ws)
			return false;
	return true;
}

size_t
server_metrics(char *buf, size_t len)
{
	const ServerStats *st = &server_stats;
	int			n;

	n = snprintf(buf, len,
				 "# HELP livewidget_http_requests_total HTTP requests received.\n"
				 "# TYPE livewidget_http_requests_total counter\n"
				 "livewidget_http_requests_total %llu\n"
				 "# HELP livewidget_http_responses_total HTTP responses by status class.\n"
				 "# TYPE livewidget_http_responses_total counter\n"
				 "livewidget_http_responses_total{class=\"2xx\"} %llu\n"
				 "livewidget_http_responses_total{class=\"4xx\"} %llu\n"
				 "livewidget_http_responses_total{class=\"5xx\"} %llu\n"
				 "# HELP livewidget_ws_viewers WebSocket viewers connected now.\n"
				 "# TYPE livewidget_ws_viewers gauge\n"
				 "livewidget_ws_viewers %d\n"
				 "# HELP livewidget_ws_opened_total WebSocket connections opened.\n"
				 "# TYPE livewidget_ws_opened_total counter\n"
				 "livewidget_ws_opened_total %llu\n"
				 "# HELP livewidget_ws_refused_total WebSocket connections closed at once, by code.\n"
				 "# TYPE livewidget_ws_refused_total counter\n"
				 "livewidget_ws_refused_total{code=\"4401\"} %llu\n"
				 "livewidget_ws_refused_total{code=\"4403\"} %llu\n"
				 "livewidget_ws_refused_total{code=\"4404\"} %llu\n"
				 "livewidget_ws_refused_total{code=\"1013\"} %llu\n"
				 "livewidget_ws_refused_total{code=\"other\"} %llu\n"
				 "# HELP livewidget_ws_frames_sent_total Sample and control frames sent.\n"
				 "# TYPE livewidget_ws_frames_sent_total counter\n"
				 "livewidget_ws_frames_sent_total %llu\n"
				 "# HELP livewidget_ws_slow_closed_total Viewers closed for falling behind.\n"
				 "# TYPE livewidget_ws_slow_closed_total counter\n"
				 "livewidget_ws_slow_closed_total %llu\n"
				 "# HELP livewidget_notifications_total Notifications received from the database.\n"
				 "# TYPE livewidget_notifications_total counter\n"
				 "livewidget_notifications_total %llu\n"
				 "# HELP livewidget_notifications_malformed_total Notifications ignored as malformed.\n"
				 "# TYPE livewidget_notifications_malformed_total counter\n"
				 "livewidget_notifications_malformed_total %llu\n"
				 "# HELP livewidget_database_up Whether the delivery connection is up.\n"
				 "# TYPE livewidget_database_up gauge\n"
				 "livewidget_database_up %d\n",
				 (unsigned long long) st->http_requests,
				 (unsigned long long) st->http_responses[2],
				 (unsigned long long) st->http_responses[4],
				 (unsigned long long) st->http_responses[5],
				 ws_count(),
				 (unsigned long long) st->ws_opened,
				 (unsigned long long) st->ws_refused[0],
				 (unsigned long long) st->ws_refused[1],
				 (unsigned long long) st->ws_refused[2],
				 (unsigned long long) st->ws_refused[3],
				 (unsigned long long) st->ws_refused[4],
				 (unsigned long long) st->ws_frames_sent,
				 (unsigned long long) st->ws_slow_closed,
				 (unsigned long long) st->notifications,
				 (unsigned long long) st->notifications_bad,
				 listen_ready() ? 1 : 0);
	return n < 0 ? 0 : ((size_t) n >= len ? len - 1 : (size_t) n);
}
