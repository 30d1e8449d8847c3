/*-------------------------------------------------------------------------
 *
 * ws.c
 *		WebSocket viewers: one widget each, one frame per new sample.
 *
 * A viewer goes through three states.  NEW: its token is checked and the
 * widget looked up.  CATCHING_UP: it is subscribed to the widget's channel
 * and the database is asked where to start (the samples after ?after=, or
 * the newest seq when it gave none).  LIVE: every notification's samples
 * with a seq above the last one it was sent are queued for it.
 * Notifications that arrive while it catches up are held, then sent after
 * the catch-up answer, minus those the answer already held: because seq
 * grows in commit order, "seq above the last sent" is exactly "not sent".
 *
 * The same catch-up runs for every viewer after the database connection
 * comes back, so an outage costs viewers a delay, not samples.
 *
 * Sample objects are forwarded byte for byte as the extension wrote them;
 * jansson only validates them and reads their seq.
 *
 *-------------------------------------------------------------------------
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "log.h"
#include "server.h"

#define WIDGET_BUCKETS	256
#define TIMER_MAX_SECONDS 3600
#define CLOSE_TIMEOUT_SECONDS 10	/* for a viewer that reads nothing */
#define URL_ARG_MAX		(AUTH_MAX_TOKEN + 4096)

typedef struct Widget
{
	struct Widget *next;		/* bucket chain */
	char		id[WIDGET_ID_MAX + 1];
	Session    *subscribers;
	DbRequest  *recheck;		/* a recheck in flight, or NULL */
} Widget;

static Widget *widgets[WIDGET_BUCKETS];
static int	nviewers;

/* A sample object's place in a payload, and its seq. */
typedef struct Span
{
	const char *start;
	size_t		len;
	int64_t		seq;
} Span;

static const char RESET_MESSAGE[] = "{\"type\":\"reset\"}";

/* ---- frame queues ---- */

static void
queue_init(FrameQueue *q)
{
	q->head = NULL;
	q->tail = &q->head;
	q->count = 0;
}

static bool
queue_push(FrameQueue *q, const char *text, size_t len, int64_t seq)
{
	Frame	   *f = malloc(sizeof(Frame) + LWS_PRE + len);

	if (f == NULL)
		return false;
	f->next = NULL;
	f->seq = seq;
	f->len = len;
	memcpy(f->data + LWS_PRE, text, len);
	if (q->tail == NULL)
		queue_init(q);
	*q->tail = f;
	q->tail = &f->next;
	q->count++;
	return true;
}

static Frame *
queue_pop(FrameQueue *q)
{
	Frame	   *f = q->head;

	if (f == NULL)
		return NULL;
	q->head = f->next;
	if (q->head == NULL)
		q->tail = &q->head;
	q->count--;
	return f;
}

static void
queue_clear(FrameQueue *q)
{
	Frame	   *f;

	while ((f = queue_pop(q)) != NULL)
		free(f);
}

/* ---- closing ---- */

static void
ws_close(Session *s, int code, const char *reason)
{
	if (s->state == WS_CLOSING)
		return;
	s->state = WS_CLOSING;
	s->close_code = code;
	snprintf(s->close_reason, sizeof(s->close_reason), "%s", reason);
	lws_callback_on_writable(s->wsi);

	/* A viewer that reads nothing never lets the close frame out. */
	lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, CLOSE_TIMEOUT_SECONDS);
}

static void
refuse(Session *s, int code, const char *reason)
{
	int			slot;

	switch (code)
	{
		case 4401:
			slot = 0;
			break;
		case 4403:
			slot = 1;
			break;
		case 4404:
			slot = 2;
			break;
		case 1013:
			slot = 3;
			break;
		default:
			slot = 4;
	}
	server_stats.ws_refused[slot]++;
	log_info(s->prefix, "closing with %d: %s", code, reason);
	ws_close(s, code, reason);
}

/* ---- the widget registry ---- */

static unsigned
bucket_of(const char *id)
{
	unsigned	h = 2166136261u;

	for (; *id; id++)
		h = (h ^ (unsigned char) *id) * 16777619u;
	return h % WIDGET_BUCKETS;
}

static Widget *
widget_find(const char *id)
{
	Widget	   *w;

	for (w = widgets[bucket_of(id)]; w != NULL; w = w->next)
		if (strcmp(w->id, id) == 0)
			return w;
	return NULL;
}

/*
 * Subscribe s to its widget; the first viewer of a widget makes the
 * database connection LISTEN to its channel.
 */
static bool
widget_subscribe(Session *s)
{
	Widget	   *w = widget_find(s->widget_id);

	if (w == NULL)
	{
		DbRequest  *req = listen_request(DBQ_LISTEN, s->widget_id, NULL, NULL);

		w = calloc(1, sizeof(Widget));
		if (w == NULL || req == NULL)
		{
			free(w);
			listen_request_free(req);
			return false;
		}
		snprintf(w->id, sizeof(w->id), "%s", s->widget_id);
		w->next = widgets[bucket_of(w->id)];
		widgets[bucket_of(w->id)] = w;
		listen_submit(req);
	}
	s->widget = w;
	s->next_subscriber = w->subscribers;
	w->subscribers = s;
	return true;
}

static void
widget_unsubscribe(Session *s)
{
	Widget	   *w = s->widget;
	Session   **link;
	Widget	  **wl;

	if (w == NULL)
		return;
	for (link = &w->subscribers; *link != NULL; link = &(*link)->next_subscriber)
	{
		if (*link == s)
		{
			*link = s->next_subscriber;
			break;
		}
	}
	s->widget = NULL;
	if (w->subscribers != NULL)
		return;

	/* The last viewer left: stop listening and forget the widget. */
	for (wl = &widgets[bucket_of(w->id)]; *wl != NULL; wl = &(*wl)->next)
	{
		if (*wl == w)
		{
			*wl = w->next;
			break;
		}
	}
	{
		DbRequest  *req = listen_request(DBQ_UNLISTEN, w->id, NULL, NULL);

		if (req != NULL)
			listen_submit(req);
	}
	if (w->recheck != NULL)
		w->recheck->owner = NULL;
	free(w);
}

/* ---- payloads ---- */

/*
 * Find the objects of the one array in a payload the extension wrote
 * ({"widget_id":..,"samples":[{..},..]} or {"reset":..,"samples":[..]}),
 * which jansson has already parsed as root.  Returns the number of spans
 * filled, or -1 when the text does not have that shape.
 */
static int
split_samples(const char *text, json_t *root, Span *spans, int maxspans)
{
	json_t	   *samples = json_object_get(root, "samples");
	char		stack[8];
	int			depth = 0;
	int			n = 0;
	bool		in_string = false;
	const char *p;

	if (!json_is_array(samples) || (int) json_array_size(samples) > maxspans)
		return -1;

	for (p = text; *p; p++)
	{
		if (in_string)
		{
			if (*p == '\\' && p[1] != '\0')
				p++;
			else if (*p == '"')
				in_string = false;
			continue;
		}
		if (*p == '"')
			in_string = true;
		else if (*p == '{' || *p == '[')
		{
			if (depth == (int) sizeof(stack))
				return -1;
			if (*p == '{' && depth == 2 && stack[1] == '[')
				spans[n].start = p;
			stack[depth++] = *p;
		}
		else if (*p == '}' || *p == ']')
		{
			if (--depth < 0)
				return -1;
			if (*p == '}' && depth == 2 && stack[1] == '[')
			{
				json_t	   *seq = json_object_get(json_array_get(samples, n), "seq");

				if (n >= maxspans || !json_is_integer(seq))
					return -1;
				spans[n].len = (size_t) (p + 1 - spans[n].start);
				spans[n].seq = json_integer_value(seq);
				n++;
			}
		}
	}
	return n == (int) json_array_size(samples) ? n : -1;
}

/* Queue the spans above s->last_seq for s, in order. */
static void
send_spans(Session *s, const Span *spans, int n)
{
	int			i;

	for (i = 0; i < n; i++)
	{
		if (spans[i].seq <= s->last_seq)
			continue;
		if (!queue_push(&s->out, spans[i].start, spans[i].len, spans[i].seq))
			break;
		s->last_seq = spans[i].seq;
	}
	if (s->out.count > WS_QUEUE_MAX)
	{
		server_stats.ws_slow_closed++;
		queue_clear(&s->out);
		refuse(s, 1008, "viewer too slow; reconnect with ?after=");
		return;
	}
	if (s->out.head != NULL)
		lws_callback_on_writable(s->wsi);
}

static void
hold_spans(Session *s, const Span *spans, int n)
{
	int			i;

	for (i = 0; i < n; i++)
		queue_push(&s->held, spans[i].start, spans[i].len, spans[i].seq);
}

/* The catch-up is answered: send the held notifications and go live. */
static void
go_live(Session *s)
{
	Frame	   *f;

	while ((f = queue_pop(&s->held)) != NULL)
	{
		Span		span = {(const char *) f->data + LWS_PRE, f->len, f->seq};

		send_spans(s, &span, 1);
		free(f);
	}
	if (s->state == WS_CATCHING_UP)
		s->state = WS_LIVE;
}

/* Ask where s stands: the samples after its last seq, or the newest seq. */
static void
catch_up(Session *s)
{
	char		after[24];

	s->state = WS_CATCHING_UP;
	if (s->want_position)
		server_submit(s, DBQ_LAST_SEQ, s->widget_id, NULL);
	else
	{
		snprintf(after, sizeof(after), "%lld", (long long) s->last_seq);
		server_submit(s, DBQ_SAMPLES_AFTER, s->widget_id, after);
	}
}

/*
 * Parse a payload of the extension and locate its sample objects.
 * Returns their number with *root and *spans set (the caller frees both),
 * or -1.
 */
static int
parse_payload(const char *text, json_t **root, Span **spans)
{
	size_t		count;
	int			n;

	*spans = NULL;
	*root = json_loads(text, 0, NULL);
	if (*root == NULL)
		return -1;
	count = json_array_size(json_object_get(*root, "samples"));
	*spans = malloc((count + 1) * sizeof(Span));
	n = *spans ? split_samples(text, *root, *spans, (int) count) : -1;
	if (n < 0)
	{
		json_decref(*root);
		free(*spans);
		*root = NULL;
		*spans = NULL;
	}
	return n;
}

void
ws_notify(const char *widget_id, const char *payload)
{
	Widget	   *w = widget_find(widget_id);
	json_t	   *root;
	Span	   *spans;
	int			n;
	Session    *s;

	server_stats.notifications++;
	if (w == NULL)
		return;

	n = parse_payload(payload, &root, &spans);
	if (n < 0)
	{
		server_stats.notifications_bad++;
		log_warning("db", "ignored a malformed notification on channel \"widget_%s\"",
					widget_id);
		return;
	}

	for (s = w->subscribers; s != NULL; s = s->next_subscriber)
	{
		if (s->state == WS_LIVE)
			send_spans(s, spans, n);
		else if (s->state == WS_CATCHING_UP)
			hold_spans(s, spans, n);
	}
	json_decref(root);
	free(spans);
}

/* ---- the connection's life ---- */

/*
 * The token comes from ?access_token= or from the subprotocol list, where
 * the client offers "livewidget, bearer.<jwt>".  lws has already answered
 * with "livewidget" alone, so the token is never echoed.
 */
static bool
find_token(struct lws *wsi, char *buf, int len)
{
	char		arg[URL_ARG_MAX];
	const char *v = lws_get_urlarg_by_name(wsi, "access_token=", arg, sizeof(arg));
	char	   *offer;
	char	   *save = NULL;

	if (v != NULL)
	{
		snprintf(buf, len, "%s", v);
		return true;
	}
	if (lws_hdr_copy(wsi, arg, sizeof(arg), WSI_TOKEN_PROTOCOL) <= 0)
		return false;
	for (offer = strtok_r(arg, ", ", &save); offer; offer = strtok_r(NULL, ", ", &save))
	{
		if (strncmp(offer, "bearer.", 7) == 0)
		{
			snprintf(buf, len, "%s", offer + 7);
			return true;
		}
	}
	return false;
}

/* "/ws/widgets/<id>/" (the final slash optional) -> id */
static bool
parse_ws_path(const char *path, char *widget_id)
{
	const char *prefix = "/ws/widgets/";
	const char *id;
	size_t		len;

	if (strncmp(path, prefix, strlen(prefix)) != 0)
		return false;
	id = path + strlen(prefix);
	len = strcspn(id, "/");
	if (len == 0 || len > WIDGET_ID_MAX || (id[len] == '/' && id[len + 1] != '\0'))
		return false;
	memcpy(widget_id, id, len);
	widget_id[len] = '\0';
	return widget_id_valid(widget_id);
}

/*
 * ?after=<seq>: digits only, within bigint.  The buffer is as large as the
 * whole request may be, because lws_get_urlarg_by_name() gives up at the
 * first argument (say, a token) that does not fit in it.
 */
static bool
parse_after(struct lws *wsi, Session *s, bool *bad)
{
	char		buf[URL_ARG_MAX];
	const char *v = lws_get_urlarg_by_name(wsi, "after=", buf, sizeof(buf));
	char	   *end;
	long long	after;

	*bad = false;
	if (v == NULL)
		return false;
	errno = 0;
	after = strtoll(v, &end, 10);
	if (!isdigit((unsigned char) *v) || *end != '\0' || errno == ERANGE)
	{
		*bad = true;
		return false;
	}
	s->last_seq = after;
	return true;
}

/*
 * Wake up when the token expires, or in an hour at the latest (ws_timer()
 * then arms again): the seconds are capped before they become
 * microseconds, so a far-future exp cannot overflow.
 */
static void
arm_expiry_timer(Session *s)
{
	int64_t		left = (int64_t) s->grant.expires + AUTH_LEEWAY_SECONDS
		- (int64_t) time(NULL);

	if (left > TIMER_MAX_SECONDS)
		left = TIMER_MAX_SECONDS;
	lws_set_timer_usecs(s->wsi, left < 1 ? 1 : (lws_usec_t) left * LWS_USEC_PER_SEC);
}

int
ws_established(Session *s)
{
	char		path[256];
	char		token[AUTH_MAX_TOKEN + 1];
	const char *reason;
	bool		bad_after;

	s->is_ws = true;
	s->state = WS_NEW;
	queue_init(&s->out);
	queue_init(&s->held);
	server_stats.ws_opened++;
	nviewers++;

	if (lws_hdr_copy(s->wsi, path, sizeof(path), WSI_TOKEN_GET_URI) <= 0 ||
		!parse_ws_path(path, s->widget_id))
	{
		refuse(s, 4404, "unknown widget");
		return 0;
	}
	if (!find_token(s->wsi, token, sizeof(token)))
	{
		refuse(s, 4401, "no token");
		return 0;
	}
	if ((reason = auth_verify(token, &s->grant)) != NULL)
	{
		refuse(s, 4401, reason);
		return 0;
	}
	s->want_position = !parse_after(s->wsi, s, &bad_after);
	if (bad_after)
	{
		refuse(s, 4400, "after must be a non-negative integer");
		return 0;
	}

	arm_expiry_timer(s);
	log_debug(s->prefix, "viewer for widget \"%s\"", s->widget_id);
	server_submit(s, DBQ_WIDGET_DASHBOARD, s->widget_id, NULL);
	return 0;
}

static void
widget_looked_up(Session *s, DbRequest *req)
{
	if (req->status != DBS_OK)
		refuse(s, 1013, "database unavailable; try again later");
	else if (req->value == NULL)
		refuse(s, 4404, "unknown widget");
	else if (!grant_allows(&s->grant, req->value))
		refuse(s, 4403, "dashboard not granted");
	else if (!widget_subscribe(s))
		refuse(s, 1011, "out of memory");
	else
		catch_up(s);
}

static void
caught_up(Session *s, DbRequest *req)
{
	json_t	   *root;
	Span	   *spans;
	int			n;

	/* The connection went away: wait for it, ws_reconnected() retries. */
	if (req->status == DBS_UNAVAILABLE)
		return;
	if (req->status != DBS_OK || req->value == NULL)
	{
		refuse(s, 1011, "could not read the widget's samples");
		return;
	}

	if (req->query == DBQ_LAST_SEQ)
	{
		s->last_seq = strtoll(req->value, NULL, 10);
		s->want_position = false;
		go_live(s);
		return;
	}

	n = parse_payload(req->value, &root, &spans);
	if (n < 0)
	{
		refuse(s, 1011, "could not read the widget's samples");
		return;
	}
	if (json_is_true(json_object_get(root, "reset")))
		queue_push(&s->out, RESET_MESSAGE, strlen(RESET_MESSAGE), 0);
	send_spans(s, spans, n);
	json_decref(root);
	free(spans);
	go_live(s);
}

void
ws_db_done(Session *s, DbRequest *req)
{
	if (s->state == WS_CLOSING)
		return;
	if (req->query == DBQ_WIDGET_DASHBOARD)
		widget_looked_up(s, req);
	else
		caught_up(s, req);
}

int
ws_writeable(Session *s)
{
	Frame	   *f;

	if (s->state == WS_CLOSING)
	{
		lws_close_reason(s->wsi, (enum lws_close_status) s->close_code,
						 (unsigned char *) s->close_reason, strlen(s->close_reason));
		return -1;
	}
	if ((f = queue_pop(&s->out)) == NULL)
		return 0;

	if (lws_write(s->wsi, f->data + LWS_PRE, f->len, LWS_WRITE_TEXT) < (int) f->len)
	{
		free(f);
		return -1;
	}
	server_stats.ws_frames_sent++;
	free(f);
	if (s->out.head != NULL)
		lws_callback_on_writable(s->wsi);
	return 0;
}

/* The token's exp has come (or the timer's cap): close or wait more. */
void
ws_timer(Session *s)
{
	if ((time_t) time(NULL) >= s->grant.expires + AUTH_LEEWAY_SECONDS)
		refuse(s, 4401, "token expired");
	else
		arm_expiry_timer(s);
}

void
ws_closed(Session *s)
{
	if (!s->is_ws)
		return;
	widget_unsubscribe(s);
	queue_clear(&s->out);
	queue_clear(&s->held);
	grant_free(&s->grant);
	nviewers--;
	s->is_ws = false;
}

/*
 * The database connection is back: notifications sent while it was gone
 * are lost, so every subscribed viewer catches up from its last seq.
 */
void
ws_reconnected(void)
{
	int			b;
	Widget	   *w;
	Session    *s;

	for (b = 0; b < WIDGET_BUCKETS; b++)
		for (w = widgets[b]; w != NULL; w = w->next)
			for (s = w->subscribers; s != NULL; s = s->next_subscriber)
				if (s->pending == NULL &&
					(s->state == WS_LIVE || s->state == WS_CATCHING_UP))
					catch_up(s);
}

/*
 * A viewer's right to a widget was checked when it connected; the widget
 * may since have moved to another dashboard or been untracked.  Every
 * WS_RECHECK_SECONDS each subscribed widget is looked up again and the
 * viewers it no longer may serve are closed, as a new connection would be.
 */
void
ws_recheck_all(void)
{
	int			b;
	Widget	   *w;

	for (b = 0; b < WIDGET_BUCKETS; b++)
	{
		for (w = widgets[b]; w != NULL; w = w->next)
		{
			if (w->recheck != NULL)
				continue;
			w->recheck = listen_request(DBQ_WIDGET_RECHECK, w->id, NULL, w);
			if (w->recheck != NULL)
				listen_submit(w->recheck);
		}
	}
}

void
ws_recheck_done(DbRequest *req)
{
	Widget	   *w = req->owner;
	Session    *s;

	if (w == NULL)
		return;
	w->recheck = NULL;

	/* An unanswered recheck changes nothing: the next one will tell. */
	if (req->status != DBS_OK)
		return;
	for (s = w->subscribers; s != NULL; s = s->next_subscriber)
	{
		if (req->value == NULL)
			refuse(s, 4404, "widget no longer tracked");
		else if (!grant_allows(&s->grant, req->value))
			refuse(s, 4403, "dashboard not granted");
	}
}

/* Shutting down: the viewer is told with 1001. */
void
ws_stop(Session *s)
{
	if (s->is_ws)
		ws_close(s, 1001, "bridge stopping");
}

int
ws_count(void)
{
	return nviewers;
}
