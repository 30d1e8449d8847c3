/*-------------------------------------------------------------------------
 *
 * http.c
 *		HTTP routes: the samples and widgets API, health, metrics and the
 *		static files of the dashboard page.
 *
 * A response is prepared in the Session and written from the WRITEABLE
 * callback: headers first, the body on the next call, one lws_write()
 * each.  API answers that need the database wait for their request to
 * come back from the db thread (http_db_done) before they are prepared.
 *
 *-------------------------------------------------------------------------
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <jansson.h>

#include "ingest.h"
#include "log.h"
#include "server.h"

#define API_PREFIX		"/api/dashboard-templates/"
#define MAX_PATH		512
#define METRICS_MAX		16384

typedef struct MimeType
{
	const char *suffix;
	const char *type;
} MimeType;

static const MimeType mime_types[] = {
	{".html", "text/html; charset=utf-8"},
	{".js", "text/javascript; charset=utf-8"},
	{".mjs", "text/javascript; charset=utf-8"},
	{".css", "text/css; charset=utf-8"},
	{".json", "application/json"},
	{".svg", "image/svg+xml"},
	{".png", "image/png"},
	{".ico", "image/x-icon"},
	{".txt", "text/plain; charset=utf-8"},
	{NULL, NULL}
};

/* ---- responses ---- */

static void
respond(Session *s, int status, const char *content_type, const char *body, size_t len)
{
	free(s->body);
	s->body = malloc(LWS_PRE + len + 1);
	if (s->body == NULL)
	{
		/* Without memory for a body the connection can only be dropped. */
		s->status = -1;
		lws_callback_on_writable(s->wsi);
		return;
	}
	memcpy(s->body + LWS_PRE, body, len);
	s->body_len = len;
	s->status = status;
	s->content_type = content_type;
	s->response_ready = true;
	lws_callback_on_writable(s->wsi);
}

void
http_respond_json(Session *s, int status, const char *json)
{
	respond(s, status, "application/json", json, strlen(json));
}

/* {"error": "..."}, the message in the house style: lower case, no period. */
void
http_respond_error(Session *s, int status, const char *fmt,...)
{
	char		message[256];
	va_list		ap;
	json_t	   *obj;
	char	   *text;

	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);

	obj = json_pack("{s:s}", "error", message);
	text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
	http_respond_json(s, status, text ? text : "{\"error\":\"out of memory\"}");
	free(text);
	json_decref(obj);
	log_debug(s->prefix, "%d: %s", status, message);
}

static bool
write_headers(Session *s)
{
	unsigned char buf[LWS_PRE + 1024];
	unsigned char *start = buf + LWS_PRE;
	unsigned char *p = start;
	unsigned char *end = buf + sizeof(buf) - 1;
	static const char nostore[] = "no-store";
	static const char bearer[] = "Bearer realm=\"livewidget\"";

	if (lws_add_http_common_headers(s->wsi, (unsigned) s->status, s->content_type,
									s->body_len, &p, end) ||
		lws_add_http_header_by_name(s->wsi, (const unsigned char *) "cache-control:",
									(const unsigned char *) nostore,
									(int) strlen(nostore), &p, end))
		return false;
	if (s->unauthorized &&
		lws_add_http_header_by_name(s->wsi, (const unsigned char *) "www-authenticate:",
									(const unsigned char *) bearer,
									(int) strlen(bearer), &p, end))
		return false;
	if (s->status == 405 &&
		lws_add_http_header_by_name(s->wsi, (const unsigned char *) "allow:",
									(const unsigned char *) "GET", 3, &p, end))
		return false;
	return lws_finalize_write_http_header(s->wsi, start, &p, end) == 0;
}

int
http_writeable(Session *s)
{
	int			class;

	if (s->status < 0)
		return -1;
	if (!s->response_ready)
		return 0;

	/* First call: the headers.  Second call: the body. */
	if (s->content_type != NULL)
	{
		if (!write_headers(s))
			return -1;
		s->content_type = NULL;
		lws_callback_on_writable(s->wsi);
		return 0;
	}

	if (lws_write(s->wsi, (unsigned char *) s->body + LWS_PRE, s->body_len,
				  LWS_WRITE_HTTP_FINAL) < (int) s->body_len)
		return -1;
	class = s->status / 100;
	if (class >= 1 && class <= 5)
		server_stats.http_responses[class]++;
	free(s->body);
	s->body = NULL;
	s->response_ready = false;
	return lws_http_transaction_completed(s->wsi) ? -1 : 0;
}

/* ---- the API ---- */

/*
 * "Authorization: Bearer <jwt>".  Returns NULL when the token is good,
 * else the reason for the 401.
 */
static const char *
authorize(Session *s)
{
	char		header[AUTH_MAX_TOKEN + 32];
	int			len = lws_hdr_total_length(s->wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
	const char *token;

	if (len <= 0)
		return "no token";
	if (len >= (int) sizeof(header) ||
		lws_hdr_copy(s->wsi, header, sizeof(header), WSI_TOKEN_HTTP_AUTHORIZATION) < 0)
		return "token too long";
	if (strncasecmp(header, "Bearer ", 7) != 0)
		return "authorization is not a bearer token";
	token = header + 7;
	while (*token == ' ')
		token++;
	return auth_verify(token, &s->grant);
}

/*
 * /api/dashboard-templates/<dashboard>/widgets/
 * /api/dashboard-templates/<dashboard>/widgets/<widget>/samples/
 */
static int
api_request(Session *s, const char *path)
{
	char		raw_dashboard[64];
	char		dashboard[UUID_TEXT_LEN + 1];
	char		widget[WIDGET_ID_MAX + 2];
	const char *rest = path + strlen(API_PREFIX);
	size_t		len = strcspn(rest, "/");
	const char *reason;
	int			n = 0;

	if (len >= sizeof(raw_dashboard) || strncmp(rest + len, "/widgets/", 9) != 0)
	{
		http_respond_error(s, 404, "not found");
		return 0;
	}
	memcpy(raw_dashboard, rest, len);
	raw_dashboard[len] = '\0';
	rest += len + 9;

	/* Without a valid token nothing else is said about the resource. */
	grant_free(&s->grant);
	if ((reason = authorize(s)) != NULL)
	{
		s->unauthorized = true;
		http_respond_error(s, 401, "%s", reason);
		return 0;
	}
	if (!uuid_normalize(raw_dashboard, dashboard))
	{
		http_respond_error(s, 404, "dashboard not found");
		return 0;
	}
	if (!grant_allows(&s->grant, dashboard))
	{
		http_respond_error(s, 403, "dashboard not granted");
		return 0;
	}

	if (*rest == '\0')
	{
		server_submit(s, DBQ_WIDGETS_LIST, dashboard, NULL);
		return 0;
	}
	if (sscanf(rest, "%57[A-Za-z0-9_-]/samples%n", widget, &n) != 1 || n == 0 ||
		(rest[n] != '\0' && strcmp(rest + n, "/") != 0) || !widget_id_valid(widget))
	{
		http_respond_error(s, 404, "widget not found");
		return 0;
	}
	server_submit(s, DBQ_SAMPLES_JSON, dashboard, widget);
	return 0;
}

/*
 * PostgreSQL's json_build_object() writes "key" : value; the widgets list
 * holds only strings and integers, so jansson can give it the compact form
 * of every other body without changing a value.
 */
static void
respond_compact(Session *s, const char *json)
{
	json_t	   *doc = json_loads(json, 0, NULL);
	char	   *text = doc ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;

	if (text != NULL)
		http_respond_json(s, 200, text);
	else
		http_respond_error(s, 500, "could not read from the database");
	free(text);
	json_decref(doc);
}

void
http_db_done(Session *s, DbRequest *req)
{
	if (req->status == DBS_UNAVAILABLE)
		http_respond_error(s, 503, "database unavailable");
	else if (req->status != DBS_OK)
		http_respond_error(s, 500, "could not read from the database");
	else if (req->value == NULL)
		http_respond_error(s, 404, "widget not found on this dashboard");
	else if (req->query == DBQ_WIDGETS_LIST)
		respond_compact(s, req->value);
	else
		http_respond_json(s, 200, req->value);
}

/* ---- health and metrics ---- */

static void
readyz(Session *s)
{
	bool		db_ok = listen_ready();
	bool		mqtt_ok = ingest_ready();
	char		body[96];

	snprintf(body, sizeof(body), "{\"database\":%s,\"mqtt\":%s}",
			 db_ok ? "true" : "false", mqtt_ok ? "true" : "false");
	http_respond_json(s, db_ok && mqtt_ok ? 200 : 503, body);
}

static void
metrics(Session *s)
{
	char	   *buf = malloc(METRICS_MAX);
	size_t		len;

	if (buf == NULL)
	{
		http_respond_error(s, 500, "out of memory");
		return;
	}
	len = server_metrics(buf, METRICS_MAX);
	len += ingest_metrics(buf + len, METRICS_MAX - len);
	respond(s, 200, "text/plain; version=0.0.4; charset=utf-8", buf, len);
	free(buf);
}

/* ---- static files ---- */

static const char *
mime_type(const char *path)
{
	const char *dot = strrchr(path, '.');
	const MimeType *m;

	for (m = mime_types; dot != NULL && m->suffix != NULL; m++)
		if (strcmp(dot, m->suffix) == 0)
			return m->type;
	return NULL;
}

/*
 * Only plain names are served: letters, digits, '-', '_', '.', '/', and
 * no component starting with a dot, so nothing outside web_root (or
 * hidden inside it) can be named.
 */
static bool
static_path_safe(const char *path)
{
	const char *p;

	for (p = path; *p; p++)
	{
		if (!(isalnum((unsigned char) *p) || strchr("-_./", *p)))
			return false;
		if (*p == '/' && p[1] == '.')
			return false;
	}
	return path[0] == '/';
}

/* "/" and "/dashboards/<uuid>" are the dashboard page. */
static bool
is_page(const char *path)
{
	char		uuid[UUID_TEXT_LEN + 1];
	char		raw[64];
	size_t		len;

	if (strcmp(path, "/") == 0 || strcmp(path, "/index.html") == 0)
		return true;
	if (strncmp(path, "/dashboards/", 12) != 0)
		return false;
	len = strcspn(path + 12, "/");
	if (len >= sizeof(raw) || (path[12 + len] != '\0' && strcmp(path + 12 + len, "/") != 0))
		return false;
	memcpy(raw, path + 12, len);
	raw[len] = '\0';
	return uuid_normalize(raw, uuid);
}

static int
static_file(Session *s, const char *path)
{
	static const char headers[] = "cache-control: no-cache\r\n"
		"x-content-type-options: nosniff\r\n";
	char		file[MAX_PATH + 64];
	const char *type;
	struct stat st;
	int			n;

	if (is_page(path))
		path = "/index.html";
	type = mime_type(path);
	if (!static_path_safe(path) || type == NULL ||
		snprintf(file, sizeof(file), "%s%s", server_config->web_root, path) >= (int) sizeof(file) ||
		stat(file, &st) != 0 || !S_ISREG(st.st_mode))
	{
		http_respond_error(s, 404, "not found");
		return 0;
	}

	server_stats.http_responses[2]++;
	n = lws_serve_http_file(s->wsi, file, type, headers, (int) strlen(headers));
	if (n < 0 || (n > 0 && lws_http_transaction_completed(s->wsi)))
		return -1;
	return 0;
}

/* ---- routing ---- */

int
http_request(Session *s, const char *path)
{
	server_stats.http_requests++;
	s->unauthorized = false;
	if (lws_hdr_total_length(s->wsi, WSI_TOKEN_GET_URI) <= 0)
	{
		log_debug(s->prefix, "refused a method other than GET on %.*s", 200, path);
		http_respond_error(s, 405, "only GET is served here");
		return 0;
	}
	log_debug(s->prefix, "GET %.*s", 200, path);
	if (strlen(path) > MAX_PATH)
	{
		http_respond_error(s, 404, "not found");
		return 0;
	}
	if (strcmp(path, "/healthz") == 0)
		http_respond_json(s, 200, "{\"status\":\"ok\"}");
	else if (strcmp(path, "/readyz") == 0)
		readyz(s);
	else if (strcmp(path, "/metrics") == 0)
		metrics(s);
	else if (strncmp(path, API_PREFIX, strlen(API_PREFIX)) == 0)
		return api_request(s, path);
	else if (strncmp(path, "/api/", 5) == 0 || strcmp(path, "/api") == 0)
		http_respond_error(s, 404, "not found");
	else
		return static_file(s, path);
	return 0;
}
