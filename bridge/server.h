/*-------------------------------------------------------------------------
 *
 * server.h
 *		The HTTP and WebSocket server: sessions shared by http.c and ws.c.
 *
 * Everything here runs on the libwebsockets thread (the main thread);
 * nothing in it is locked.  A Session lives in the per-connection memory
 * lws allocates and frees: code that keeps a pointer to one elsewhere (a
 * pending database request, a widget's subscriber list) drops it in
 * server_session_gone().
 *
 * Glossary: a *widget* is what a viewer subscribes to; its *channel* is
 * the database notification channel widget_<id>.  A *frame* is one
 * WebSocket text message; a *sample* object travels in one frame.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LW_SERVER_H
#define LW_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libwebsockets.h>

#include "auth.h"
#include "config.h"
#include "listen.h"

#define WIDGET_ID_MAX	56		/* ^[A-Za-z0-9_-]{1,56}$, as in the database */
#define WS_QUEUE_MAX	2000	/* frames queued for one slow viewer */
#define WS_RECHECK_SECONDS 30	/* how often viewers' grants are checked again */
#define WS_PROTOCOL_HEADER_MAX 127	/* lws's own limit, terminator included */

typedef struct Frame
{
	struct Frame *next;
	int64_t		seq;			/* 0 for control messages */
	size_t		len;
	unsigned char data[];		/* LWS_PRE bytes, then the text */
} Frame;

typedef struct FrameQueue
{
	Frame	   *head;
	Frame	  **tail;
	int			count;
} FrameQueue;

typedef enum WsState
{
	WS_NEW,						/* checking token and widget */
	WS_CATCHING_UP,				/* asking for what it missed */
	WS_LIVE,					/* forwarding notifications */
	WS_CLOSING					/* a close frame is due */
} WsState;

struct Widget;

typedef struct Session
{
	struct lws *wsi;
	uint64_t	id;
	bool		is_ws;
	char		prefix[80];		/* "ws#42 127.0.0.1", for log lines */
	DbRequest  *pending;		/* at most one request in flight */

	/* HTTP: the response, written when the connection is writeable */
	int			status;
	const char *content_type;
	char	   *body;			/* LWS_PRE bytes of headroom first */
	size_t		body_len;
	bool		response_ready;
	bool		unauthorized;	/* add WWW-Authenticate */

	/* WebSocket */
	WsState		state;
	char		widget_id[WIDGET_ID_MAX + 1];
	Grant		grant;
	int64_t		last_seq;		/* highest seq sent, or the start point */
	bool		want_position;	/* no ?after=: start at the newest sample */
	FrameQueue	out;			/* frames to send */
	FrameQueue	held;			/* notifications that came during catch-up */
	int			close_code;
	char		close_reason[64];
	struct Widget *widget;
	struct Session *next_subscriber;
	struct Session *prev_session;	/* every open session, for shutdown */
	struct Session *next_session;
} Session;

typedef struct ServerStats
{
	uint64_t	http_requests;
	uint64_t	http_responses[6];	/* by status class: [2] = 2xx ... */
	uint64_t	ws_opened;
	uint64_t	ws_refused[5];	/* 4401, 4403, 4404, 1013, other */
	uint64_t	ws_frames_sent;
	uint64_t	notifications;
	uint64_t	notifications_bad;
	uint64_t	ws_slow_closed;
} ServerStats;

extern ServerStats server_stats;
extern const Config *server_config;

/* http.c */
extern int	http_request(Session *s, const char *path);
extern int	http_writeable(Session *s);
extern void http_db_done(Session *s, DbRequest *req);
extern void http_respond_json(Session *s, int status, const char *json);
extern void http_respond_error(Session *s, int status, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));

/* ws.c */
extern int	ws_established(Session *s);
extern int	ws_writeable(Session *s);
extern void ws_timer(Session *s);
extern void ws_db_done(Session *s, DbRequest *req);
extern void ws_closed(Session *s);
extern void ws_notify(const char *widget_id, const char *payload);
extern void ws_reconnected(void);
extern void ws_stop(Session *s);
extern void ws_recheck_all(void);
extern void ws_recheck_done(DbRequest *req);
extern int	ws_count(void);

/* server.c */
extern struct lws_context *server_create(const Config *cfg);
extern void server_close_all(void);
extern bool server_idle(void);
extern void server_session_gone(Session *s);
extern void server_submit(Session *s, DbQuery query, const char *arg0,
						  const char *arg1);
extern bool widget_id_valid(const char *id);
extern size_t server_metrics(char *buf, size_t len);

#endif							/* LW_SERVER_H */
