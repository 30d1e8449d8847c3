/*-------------------------------------------------------------------------
 *
 * config.c
 *		The bridge's configuration: one declarative table of keys, read from
 *		a file, the environment and the command line.
 *
 * Every key is one line of config_keys[]: name, type (which says how the
 * value is checked), default, whether SIGHUP can change it, whether its
 * value is secret (never echoed in a message), and its help text.  Adding
 * a key is adding that line and the field in Config.
 *
 * Sources, lowest precedence first: the file named on the command line
 * ("key = value" lines), the environment (LIVEWIDGET_<KEY>), the options
 * (--key=value or --key value).  Only the final value of a key is checked,
 * and a bad one is reported with the source it came from.
 *
 * Runs on the main thread only, before any other thread exists (and on
 * SIGHUP, from the main loop).  At start messages go to stderr, since the
 * log is not configured yet; on SIGHUP they are lines of the log (prefix
 * "config"), like everything else the running bridge says.
 *
 *-------------------------------------------------------------------------
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "config.h"
#include "log.h"

#ifndef LW_VERSION
#define LW_VERSION "unknown"
#endif

/*
 * Where static files are served from when web_root is not set: the
 * Makefile compiles in the directory "make install" fills
 * (-DLW_WEB_ROOT='"$(PREFIX)/share/livewidget/web"'); a build without it
 * serves "web" in the current directory, the source tree's layout.
 */
#ifndef LW_WEB_ROOT
#define LW_WEB_ROOT "web"
#endif

#define PROGNAME		"livewidget-bridge"
#define ENV_PREFIX		"LIVEWIDGET_"

/* Limits on values, checked with the value */
#define TOPIC_MAX		1024	/* bytes of a subscription pattern */
#define GROUP_MAX		128		/* bytes of a shared-subscription group */
#define HOST_MAX		253		/* bytes of a host name (DNS limit) */

typedef enum ConfigType
{
	CONFIG_TEXT,				/* anything without control characters */
	CONFIG_CONNINFO,			/* libpq connection string */
	CONFIG_MQTT_URL,			/* mqtt://host[:port] */
	CONFIG_TOPIC,				/* pattern with exactly one "+" level */
	CONFIG_GROUP,				/* one topic level, no wildcard */
	CONFIG_FILE,				/* a file the bridge can read */
	CONFIG_PATH,				/* a path, not checked at start */
	CONFIG_STATE_FILE,			/* a file the bridge may create and write */
	CONFIG_LISTEN,				/* host:port */
	CONFIG_LOG_LEVEL			/* error, warning, info, debug */
} ConfigType;

typedef struct ConfigKey
{
	const char *name;
	ConfigType	type;
	const char *default_value;	/* NULL: unset; "" for database: PG* */
	bool		reloadable;
	bool		secret;
	size_t		offset;			/* of the field in Config */
	const char *help;
} ConfigKey;

#define FIELD(f)	offsetof(Config, f)

static const ConfigKey config_keys[] = {
	{"database", CONFIG_CONNINFO, "", false, true, FIELD(database),
	"libpq conninfo; PG* variables, .pgpass apply"},
	{"mqtt_url", CONFIG_MQTT_URL, "mqtt://127.0.0.1:1883", false, false,
	FIELD(mqtt_url), "broker, mqtt://host:port (no TLS here)"},
	{"mqtt_topic", CONFIG_TOPIC, "devices/+/telemetry", false, false,
	FIELD(mqtt_topic), "JSON readings; the \"+\" level is the device id"},
	{"mqtt_senml_topic", CONFIG_TOPIC, "devices/+/senml", false, false,
	FIELD(mqtt_senml_topic), "SenML packs (RFC 8428), same form"},
	{"mqtt_shared_group", CONFIG_GROUP, NULL, false, false,
	FIELD(mqtt_shared_group), "subscribe through $share/<group>/<topic>"},
	{"mqtt_client_id", CONFIG_TEXT, "livewidget-bridge-<hostname>", false,
	false, FIELD(mqtt_client_id), "client id; the broker keeps its session"},
	{"mqtt_username", CONFIG_TEXT, NULL, false, false, FIELD(mqtt_username),
	"user name for the broker"},
	{"mqtt_password_file", CONFIG_FILE, NULL, false, false,
	FIELD(mqtt_password_file), "file holding the broker password"},
	{"listen", CONFIG_LISTEN, "127.0.0.1:8080", false, false, FIELD(listen),
	"HTTP and WebSocket address"},
	{"jwt_secret_file", CONFIG_FILE, NULL, false, false,
	FIELD(jwt_secret_file), "HS256 viewer-token secret, 32 bytes or more"},
	{"jwt_public_key_file", CONFIG_FILE, NULL, false, false,
	FIELD(jwt_public_key_file), "RS256/ES256 viewer-token public key (PEM)"},
	{"jwt_audience", CONFIG_TEXT, NULL, false, false, FIELD(jwt_audience),
	"required aud of tokens (unset: none allowed)"},
	{"jwt_issuer", CONFIG_TEXT, NULL, false, false, FIELD(jwt_issuer),
	"required iss of tokens (unset: not checked)"},
	{"web_root", CONFIG_PATH, LW_WEB_ROOT, false, false, FIELD(web_root),
	"directory of the dashboard's static files"},
	{"log_level", CONFIG_LOG_LEVEL, "info", true, false, FIELD(log_level),
	"error, warning, info or debug (reloadable)"},
	{"spool_file", CONFIG_STATE_FILE, NULL, false, false, FIELD(spool_file),
	"keeps messages held in an outage across a stop"},
};

#define NUM_KEYS	(sizeof(config_keys) / sizeof(config_keys[0]))

/* What the help shows after "--key=" for each type */
static const char *const type_metavar[] = {
	[CONFIG_TEXT] = "TEXT",
	[CONFIG_CONNINFO] = "CONNINFO",
	[CONFIG_MQTT_URL] = "URL",
	[CONFIG_TOPIC] = "TOPIC",
	[CONFIG_GROUP] = "NAME",
	[CONFIG_FILE] = "FILE",
	[CONFIG_PATH] = "DIR",
	[CONFIG_STATE_FILE] = "FILE",
	[CONFIG_LISTEN] = "HOST:PORT",
	[CONFIG_LOG_LEVEL] = "LEVEL",
};

static const char *const level_words[] = {
	[LOG_LEVEL_ERROR] = "error",
	[LOG_LEVEL_WARNING] = "warning",
	[LOG_LEVEL_LOG] = "info",
	[LOG_LEVEL_DEBUG] = "debug",
};

/*
 * The value of each key while the sources are read, and where it came
 * from, for messages ("option --listen", "environment variable ...",
 * "configuration file "x", line 3").  Values and sources are malloc'd.
 */
typedef struct ConfigState
{
	char	   *value[NUM_KEYS];
	char	   *source[NUM_KEYS];
} ConfigState;

static void
state_free(ConfigState *st)
{
	for (size_t i = 0; i < NUM_KEYS; i++)
	{
		free(st->value[i]);
		free(st->source[i]);
		st->value[i] = st->source[i] = NULL;
	}
}

/* Set while config_reload() rereads the sources: messages go to the log */
static bool reloading = false;

static void
vreport(LogLevel level, const char *fmt, va_list ap)
{
	char		msg[1024];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (reloading)
		log_write(level, "config", "%s", msg);
	else
		fprintf(stderr, "%s: %s%s\n", PROGNAME,
				level == LOG_LEVEL_WARNING ? "warning: " : "", msg);
}

/* A configuration that cannot be used: what is wrong, and where */
static void
complain(const char *fmt,...) __attribute__((format(printf, 1, 2)));

static void
complain(const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vreport(LOG_LEVEL_ERROR, fmt, ap);
	va_end(ap);
}

/* Something probably unintended that does not stop the bridge */
static void
warn(const char *fmt,...) __attribute__((format(printf, 1, 2)));

static void
warn(const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vreport(LOG_LEVEL_WARNING, fmt, ap);
	va_end(ap);
}

static char *
xstrdup(const char *s)
{
	char	   *copy = strdup(s);

	if (copy == NULL)
	{
		fprintf(stderr, "%s: out of memory\n", PROGNAME);
		exit(1);
	}
	return copy;
}

static char *
xprintf(const char *fmt,...) __attribute__((format(printf, 1, 2)));

static char *
xprintf(const char *fmt,...)
{
	va_list		ap;
	char	   *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
	{
		fprintf(stderr, "%s: out of memory\n", PROGNAME);
		exit(1);
	}
	va_end(ap);
	return s;
}

/* Index of the key called name ("-" taken as "_"), or -1 */
static int
find_key(const char *name, size_t len)
{
	for (size_t i = 0; i < NUM_KEYS; i++)
	{
		const char *k = config_keys[i].name;
		size_t		j;

		if (strlen(k) != len)
			continue;
		for (j = 0; j < len; j++)
		{
			char		c = name[j] == '-' ? '_' : name[j];

			if (c != k[j])
				break;
		}
		if (j == len)
			return (int) i;
	}
	return -1;
}

static void
state_set(ConfigState *st, int key, const char *value, char *source)
{
	free(st->value[key]);
	free(st->source[key]);
	st->value[key] = xstrdup(value);
	st->source[key] = source;
}

/* ----------------------------------------------------------------------
 * Checking values
 *
 * Each check returns NULL when the value is good, else a short reason
 * (static text) that the caller puts after the key and its source.
 * ----------------------------------------------------------------------
 */

static bool
has_control_char(const char *s)
{
	for (; *s; s++)
		if ((unsigned char) *s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

/* A port: 1 to 65535, digits only */
static bool
valid_port(const char *s)
{
	long		port = 0;

	if (*s == '\0' || strlen(s) > 5)
		return false;
	for (const char *p = s; *p; p++)
	{
		if (!isdigit((unsigned char) *p))
			return false;
		port = port * 10 + (*p - '0');
	}
	return port >= 1 && port <= 65535;
}

/* A host name or IPv4 address, or an IPv6 address in brackets */
static bool
valid_host(const char *host, size_t len)
{
	char		buf[HOST_MAX + 1];
	struct in6_addr addr6;

	if (len == 0 || len > HOST_MAX)
		return false;
	memcpy(buf, host, len);
	buf[len] = '\0';

	if (buf[0] == '[')
	{
		if (len < 3 || buf[len - 1] != ']')
			return false;
		buf[len - 1] = '\0';
		return inet_pton(AF_INET6, buf + 1, &addr6) == 1;
	}
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char) buf[i]) && buf[i] != '.' && buf[i] != '-')
			return false;
	return true;
}

int
config_split_listen(const char *value, char *host, size_t hostlen, int *port)
{
	const char *colon = strrchr(value, ':');
	size_t		len;

	if (colon == NULL || !valid_port(colon + 1))
		return -1;
	len = (size_t) (colon - value);
	if (!valid_host(value, len))
		return -1;

	/* hand the address over without its brackets */
	if (value[0] == '[')
	{
		value++;
		len -= 2;
	}
	if (len + 1 > hostlen)
		return -1;
	memcpy(host, value, len);
	host[len] = '\0';
	*port = atoi(colon + 1);
	return 0;
}

static const char *
check_listen(const char *value)
{
	char		host[HOST_MAX + 1];
	int			port;

	if (config_split_listen(value, host, sizeof(host), &port) != 0)
		return "expected host:port, e.g. 127.0.0.1:8080 or [::1]:8080";
	return NULL;
}

/*
 * mqtt://host[:port] or tcp://host[:port], the forms paho's plain TCP
 * library (libpaho-mqtt3a) connects to.  Credentials do not belong in the
 * URL: they have their own keys, and a URL is printed in log lines.
 */
static const char *
check_mqtt_url(const char *value)
{
	const char *rest;
	const char *colon;
	const char *end;

	if (strncmp(value, "mqtt://", 7) == 0)
		rest = value + 7;
	else if (strncmp(value, "tcp://", 6) == 0)
		rest = value + 6;
	else if (strncmp(value, "mqtts://", 8) == 0 ||
			 strncmp(value, "ssl://", 6) == 0)
		return "TLS is not supported by this build; use mqtt://host:port";
	else
		return "expected mqtt://host:port";

	if (strchr(rest, '@') != NULL)
		return "credentials do not belong in the URL; "
			"use mqtt_username and mqtt_password_file";
	if (strchr(rest, '/') != NULL)
		return "expected mqtt://host:port with no path";

	/* a colon after the closing bracket (or anywhere, without one) */
	end = rest + strlen(rest);
	colon = strrchr(rest, ':');
	if (rest[0] == '[')
	{
		const char *bracket = strchr(rest, ']');

		if (bracket == NULL)
			return "unterminated IPv6 address";
		colon = bracket[1] == ':' ? bracket + 1 : NULL;
		if (colon == NULL && bracket[1] != '\0')
			return "expected mqtt://host:port";
	}
	if (colon != NULL)
	{
		if (!valid_port(colon + 1))
			return "port must be a number from 1 to 65535";
		end = colon;
	}
	if (!valid_host(rest, (size_t) (end - rest)))
		return "invalid host";
	return NULL;
}

/*
 * A subscription pattern whose one "+" level is the device id, like
 * "devices/+/telemetry".  No "#", no other wildcard, no leading "$" (the
 * bridge adds "$share/<group>/" itself).
 */
static const char *
check_topic(const char *value)
{
	int			plus = 0;
	const char *level = value;

	if (*value == '\0')
		return "must not be empty";
	if (strlen(value) > TOPIC_MAX)
		return "longer than 1024 bytes";
	if (value[0] == '$')
		return "must not start with \"$\" (see mqtt_shared_group)";

	for (;;)
	{
		size_t		len = strcspn(level, "/");

		if (len == 1 && level[0] == '+')
			plus++;
		else if (memchr(level, '+', len) || memchr(level, '#', len))
			return "wildcards other than one whole \"+\" level are "
				"not allowed";
		if (level[len] == '\0')
			break;
		level += len + 1;
	}
	if (plus != 1)
		return "must have exactly one \"+\" level, the device id";
	return NULL;
}

static const char *
check_group(const char *value)
{
	if (*value == '\0')
		return "must not be empty";
	if (strlen(value) > GROUP_MAX)
		return "longer than 128 bytes";
	if (strpbrk(value, "/+#") != NULL)
		return "must not contain \"/\", \"+\" or \"#\"";
	return NULL;
}

static const char *
check_conninfo(const char *value)
{
	PQconninfoOption *opts;
	char	   *err = NULL;
	static char reason[256];

	/* an empty string is valid: everything from PG* and the defaults */
	opts = PQconninfoParse(value, &err);
	if (opts == NULL)
	{
		/* libpq's message does not repeat the value, so it may be shown */
		snprintf(reason, sizeof(reason), "%s",
				 err ? err : "out of memory");
		reason[strcspn(reason, "\n")] = '\0';
		PQfreemem(err);
		return reason;
	}
	PQconninfoFree(opts);
	return NULL;
}

/* A reason followed by the system's word for errno, in a static buffer */
static const char *
os_reason(const char *what)
{
	static char reason[256];

	snprintf(reason, sizeof(reason), "%s: %s", what, strerror(errno));
	return reason;
}

static const char *
check_file(const char *value)
{
	struct stat st;

	if (*value == '\0')
		return "must not be empty";
	if (stat(value, &st) != 0 || access(value, R_OK) != 0)
		return os_reason("cannot read the file");
	if (!S_ISREG(st.st_mode))
		return "not a regular file";
	return NULL;
}

/* A file the bridge writes: it, or else its directory, must be writable */
static const char *
check_state_file(const char *value)
{
	char	   *dir;
	const char *slash = strrchr(value, '/');
	bool		ok;

	if (*value == '\0')
		return "must not be empty";
	if (access(value, F_OK) == 0)
		return access(value, R_OK | W_OK) == 0 ? NULL :
			os_reason("cannot read and write the file");
	dir = slash ? strndup(value, (size_t) (slash - value) + 1) : strdup(".");
	ok = dir != NULL && access(dir, W_OK | X_OK) == 0;
	free(dir);
	return ok ? NULL : os_reason("cannot create the file in its directory");
}

static int
parse_log_level(const char *value)
{
	for (int i = LOG_LEVEL_ERROR; i <= LOG_LEVEL_DEBUG; i++)
		if (strcasecmp(value, level_words[i]) == 0)
			return i;
	return -1;
}

static const char *
check_value(const ConfigKey *key, const char *value)
{
	if (has_control_char(value))
		return "contains a control character";

	switch (key->type)
	{
		case CONFIG_TEXT:
			return *value ? NULL : "must not be empty";
		case CONFIG_CONNINFO:
			return check_conninfo(value);
		case CONFIG_MQTT_URL:
			return check_mqtt_url(value);
		case CONFIG_TOPIC:
			return check_topic(value);
		case CONFIG_GROUP:
			return check_group(value);
		case CONFIG_FILE:
			return check_file(value);
		case CONFIG_PATH:
			return *value ? NULL : "must not be empty";
		case CONFIG_STATE_FILE:
			return check_state_file(value);
		case CONFIG_LISTEN:
			return check_listen(value);
		case CONFIG_LOG_LEVEL:
			return parse_log_level(value) >= 0 ? NULL :
				"expected error, warning, info or debug";
	}
	return "unknown type";
}

/* ----------------------------------------------------------------------
 * Reading the sources
 * ----------------------------------------------------------------------
 */

/*
 * Parse one line of the file: "key = value", a comment or a blank line.
 * The value may be in single or double quotes (taken literally, so it may
 * hold " #"); unquoted, it ends at a "#" that follows white space.
 * Returns 0, or -1 after printing what is wrong.
 */
static int
parse_file_line(ConfigState *st, char *line, const char *path, int lineno)
{
	char	   *p = line;
	char	   *name;
	char	   *value;
	char	   *end;
	size_t		namelen;
	int			key;

	line[strcspn(line, "\r\n")] = '\0';
	while (isspace((unsigned char) *p))
		p++;
	if (*p == '\0' || *p == '#')
		return 0;

	name = p;
	while (isalnum((unsigned char) *p) || *p == '_' || *p == '-')
		p++;
	namelen = (size_t) (p - name);
	while (isspace((unsigned char) *p))
		p++;
	if (namelen == 0 || *p != '=')
	{
		complain("syntax error in configuration file \"%s\", line %d: "
				 "expected \"key = value\"", path, lineno);
		return -1;
	}
	p++;
	while (isspace((unsigned char) *p))
		p++;

	if (*p == '"' || *p == '\'')
	{
		char		quote = *p++;

		value = p;
		end = strchr(p, quote);
		if (end == NULL)
		{
			complain("syntax error in configuration file \"%s\", line %d: "
					 "unterminated quoted value", path, lineno);
			return -1;
		}
		*end = '\0';
		for (p = end + 1; isspace((unsigned char) *p); p++)
			;
		if (*p != '\0' && *p != '#')
		{
			complain("syntax error in configuration file \"%s\", line %d: "
					 "text after the quoted value", path, lineno);
			return -1;
		}
	}
	else
	{
		value = p;
		for (end = p; *end; end++)
			if (*end == '#' &&
				(end == value || isspace((unsigned char) end[-1])))
				break;
		while (end > value && isspace((unsigned char) end[-1]))
			end--;
		*end = '\0';
	}

	key = find_key(name, namelen);
	if (key < 0)
	{
		complain("unknown key \"%.*s\" in configuration file \"%s\", "
				 "line %d", (int) namelen, name, path, lineno);
		return -1;
	}
	state_set(st, key, value,
			  xprintf("configuration file \"%s\", line %d", path, lineno));
	return 0;
}

static int
read_file(ConfigState *st, const char *path)
{
	FILE	   *f;
	char	   *line = NULL;
	size_t		cap = 0;
	int			lineno = 0;
	int			rc = 0;

	f = fopen(path, "r");
	if (f == NULL)
	{
		complain("could not open configuration file \"%s\": %s",
				 path, strerror(errno));
		return -1;
	}
	while (rc == 0 && getline(&line, &cap, f) != -1)
		rc = parse_file_line(st, line, path, ++lineno);
	if (rc == 0 && ferror(f))
	{
		complain("could not read configuration file \"%s\": %s",
				 path, strerror(errno));
		rc = -1;
	}
	free(line);
	fclose(f);
	return rc;
}

/*
 * LIVEWIDGET_<KEY> for every key.  A LIVEWIDGET_ variable that names no key
 * is most likely a typo: say so, but do not refuse to start, since other
 * tools may share the prefix.
 */
static void
read_environment(ConfigState *st)
{
	extern char **environ;

	for (size_t i = 0; i < NUM_KEYS; i++)
	{
		char		var[64];
		const char *value;
		size_t		j;

		memcpy(var, ENV_PREFIX, sizeof(ENV_PREFIX) - 1);
		for (j = 0; config_keys[i].name[j]; j++)
			var[sizeof(ENV_PREFIX) - 1 + j] =
				(char) toupper((unsigned char) config_keys[i].name[j]);
		var[sizeof(ENV_PREFIX) - 1 + j] = '\0';

		value = getenv(var);
		if (value != NULL)
			state_set(st, (int) i, value,
					  xprintf("environment variable %s", var));
	}

	for (char **e = environ; *e; e++)
	{
		const char *name = *e + sizeof(ENV_PREFIX) - 1;
		size_t		len = strcspn(name, "=");
		bool		known = false;

		if (strncmp(*e, ENV_PREFIX, sizeof(ENV_PREFIX) - 1) != 0)
			continue;
		for (size_t i = 0; i < NUM_KEYS && !known; i++)
			known = strlen(config_keys[i].name) == len &&
				strncasecmp(config_keys[i].name, name, len) == 0;
		if (!known)
			warn("ignoring environment variable %s%.*s, which names no "
				 "configuration key", ENV_PREFIX, (int) len, name);
	}
}

static void
print_help(void)
{
	printf("Usage: %s [OPTION]... [CONFIG_FILE]\n"
		   "Store device readings from MQTT in PostgreSQL and serve live "
		   "dashboard widgets.\n\n"
		   "Every key can be set in CONFIG_FILE (\"key = value\"), in the "
		   "environment\n(%s<KEY>, upper case) or as an option (--key=value "
		   "or --key value);\nan option wins over the environment, which "
		   "wins over the file.\n\n", PROGNAME, ENV_PREFIX);

	for (size_t i = 0; i < NUM_KEYS; i++)
	{
		const ConfigKey *k = &config_keys[i];
		char		opt[64];

		snprintf(opt, sizeof(opt), "--%s=%s", k->name, type_metavar[k->type]);
		printf("  %-30s %s\n", opt, k->help);
		if (k->default_value && k->default_value[0])
			printf("  %-30s (default: %s)\n", "", k->default_value);
	}
	printf("  %-30s %s\n", "--help", "show this help, then exit");
	printf("  %-30s %s\n", "--version", "show the version, then exit");
	printf("\nThe bridge runs in the foreground; SIGTERM or SIGINT stops it "
		   "gracefully,\nSIGHUP rereads the configuration (log_level).\n");
}

/*
 * Take the options from argv into st; *file is set to the configuration
 * file named, if any.  Returns 0, 1 after --help or --version, -1 on a
 * bad command line.
 */
static int
read_options(ConfigState *st, int argc, char **argv, const char **file,
			 bool apply)
{
	for (int i = 1; i < argc; i++)
	{
		const char *arg = argv[i];
		const char *name;
		const char *value;
		size_t		len;
		int			key;

		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)
		{
			print_help();
			return 1;
		}
		if (strcmp(arg, "--version") == 0 || strcmp(arg, "-V") == 0)
		{
			printf("%s %s\n", PROGNAME, LW_VERSION);
			return 1;
		}
		if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0')
		{
			if (arg[0] == '-' && arg[1] != '\0')
			{
				fprintf(stderr, "%s: unknown option \"%s\"\n"
						"Try \"%s --help\" for more information.\n",
						PROGNAME, arg, PROGNAME);
				return -1;
			}
			if (*file != NULL)
			{
				fprintf(stderr, "%s: only one configuration file may be "
						"given (\"%s\", \"%s\")\n", PROGNAME, *file, arg);
				return -1;
			}
			*file = arg;
			continue;
		}

		name = arg + 2;
		len = strcspn(name, "=");
		key = find_key(name, len);
		if (key < 0)
		{
			fprintf(stderr, "%s: unknown option \"--%.*s\"\n"
					"Try \"%s --help\" for more information.\n",
					PROGNAME, (int) len, name, PROGNAME);
			return -1;
		}
		if (name[len] == '=')
			value = name + len + 1;
		else if (i + 1 < argc)
			value = argv[++i];
		else
		{
			fprintf(stderr, "%s: option \"--%s\" needs a value\n",
					PROGNAME, config_keys[key].name);
			return -1;
		}
		if (apply)
			state_set(st, key, value,
					  xprintf("option --%.*s", (int) len, name));
	}
	return 0;
}

/* Index of a key known to exist */
static int
key_index(const char *name)
{
	return find_key(name, strlen(name));
}

/* Defaults; "<hostname>" in one is replaced by this machine's name */
static void
set_defaults(ConfigState *st)
{
	char		host[256];

	if (gethostname(host, sizeof(host)) != 0)
		strcpy(host, "localhost");
	host[sizeof(host) - 1] = '\0';

	for (size_t i = 0; i < NUM_KEYS; i++)
	{
		const char *def = config_keys[i].default_value;
		const char *mark;
		char	   *value;

		if (def == NULL)
			continue;
		mark = strstr(def, "<hostname>");
		if (mark == NULL)
			value = xstrdup(def);
		else
			value = xprintf("%.*s%s%s", (int) (mark - def), def, host,
							mark + strlen("<hostname>"));
		state_set(st, (int) i, value, xstrdup("default"));
		free(value);
	}
}

/*
 * Check every final value, and the rules between keys.  Returns 0 or -1
 * after printing each problem.
 */
static int
check_state(ConfigState *st)
{
	int			rc = 0;
	int			secret = key_index("jwt_secret_file");
	int			pubkey = key_index("jwt_public_key_file");

	for (size_t i = 0; i < NUM_KEYS; i++)
	{
		const ConfigKey *k = &config_keys[i];
		const char *reason;

		/* an empty value in a file or the environment unsets a key */
		if (st->value[i] == NULL || (st->value[i][0] == '\0' &&
									 k->default_value == NULL))
			continue;
		reason = check_value(k, st->value[i]);
		if (reason == NULL)
			continue;
		if (k->secret)
			complain("invalid value for \"%s\" (%s): %s",
					 k->name, st->source[i], reason);
		else
			complain("invalid value \"%s\" for \"%s\" (%s): %s",
					 st->value[i], k->name, st->source[i], reason);
		rc = -1;
	}

	/* the two subscriptions must be told apart by their pattern */
	{
		int			t = key_index("mqtt_topic");
		int			s = key_index("mqtt_senml_topic");

		if (strcmp(st->value[t], st->value[s]) == 0)
		{
			complain("\"mqtt_topic\" (%s) and \"mqtt_senml_topic\" (%s) "
					 "must differ", st->source[t], st->source[s]);
			rc = -1;
		}
	}

	/* viewer tokens are checked with exactly one kind of key */
	{
		bool		has_secret = st->value[secret] && st->value[secret][0];
		bool		has_pubkey = st->value[pubkey] && st->value[pubkey][0];

		if (has_secret && has_pubkey)
		{
			complain("\"jwt_secret_file\" (%s) and \"jwt_public_key_file\" "
					 "(%s) cannot both be set",
					 st->source[secret], st->source[pubkey]);
			rc = -1;
		}
		else if (!has_secret && !has_pubkey)
		{
			complain("one of \"jwt_secret_file\" and "
					 "\"jwt_public_key_file\" must be set");
			rc = -1;
		}
	}
	return rc;
}

/* Move the checked values into cfg */
static void
fill_config(Config *cfg, ConfigState *st)
{
	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < NUM_KEYS; i++)
	{
		const ConfigKey *k = &config_keys[i];
		char	   *v = st->value[i];

		if (k->type == CONFIG_LOG_LEVEL)
		{
			*(LogLevel *) ((char *) cfg + k->offset) =
				(LogLevel) parse_log_level(v);
			continue;
		}
		/* unset keys are NULL; database keeps "" for "PG* defaults" */
		if (v != NULL && (v[0] != '\0' || k->default_value != NULL))
		{
			*(char **) ((char *) cfg + k->offset) = v;
			st->value[i] = NULL;
		}
	}
}

int
config_load(Config *cfg, int argc, char **argv)
{
	ConfigState st;
	const char *file = NULL;
	int			rc;

	memset(&st, 0, sizeof(st));

	/* find the file and --help first; options are applied last */
	rc = read_options(&st, argc, argv, &file, false);
	if (rc != 0)
		return rc;

	set_defaults(&st);
	if (file != NULL && read_file(&st, file) != 0)
	{
		state_free(&st);
		return -1;
	}
	read_environment(&st);
	file = NULL;
	read_options(&st, argc, argv, &file, true);

	if (check_state(&st) != 0)
	{
		state_free(&st);
		return -1;
	}
	fill_config(cfg, &st);
	state_free(&st);
	return 0;
}

void
config_free(Config *cfg)
{
	for (size_t i = 0; i < NUM_KEYS; i++)
		if (config_keys[i].type != CONFIG_LOG_LEVEL)
		{
			char	  **field;

			field = (char **) ((char *) cfg + config_keys[i].offset);

			free(*field);
			*field = NULL;
		}
}

/* A value for a message: in double quotes, or "unset" */
static const char *
shown(const char *value, char *buf, size_t len)
{
	if (value == NULL)
		return "unset";
	snprintf(buf, len, "\"%s\"", value);
	return buf;
}

/*
 * Log each key a reload changed: log_level is applied, any other key only
 * takes effect at the next start (its values are shown unless it is
 * secret).  Returns how many keys changed.
 */
static int
log_changes(const Config *cfg, const Config *fresh)
{
	int			changed = 0;

	for (size_t i = 0; i < NUM_KEYS; i++)
	{
		const ConfigKey *k = &config_keys[i];
		const char *was;
		const char *now;
		char		a[512];
		char		b[512];

		/* the one reloadable key, log_level, is a number: see below */
		if (k->reloadable)
			continue;
		was = *(char *const *) ((const char *) cfg + k->offset);
		now = *(char *const *) ((const char *) fresh + k->offset);
		if ((was == NULL) == (now == NULL) && (was == NULL ||
											   strcmp(was, now) == 0))
			continue;
		changed++;
		if (k->secret)
			log_warning("config", "\"%s\" changed; restart the bridge to "
						"apply it", k->name);
		else
			log_warning("config", "\"%s\" changed from %s to %s; restart "
						"the bridge to apply it", k->name,
						shown(was, a, sizeof(a)), shown(now, b, sizeof(b)));
	}

	if (fresh->log_level != cfg->log_level)
	{
		changed++;
		log_info("config", "log_level is now \"%s\" (was \"%s\")",
				 level_words[fresh->log_level], level_words[cfg->log_level]);
	}
	return changed;
}

int
config_reload(Config *cfg, int argc, char **argv)
{
	Config		fresh;
	int			rc;
	int			changed;

	reloading = true;
	rc = config_load(&fresh, argc, argv);
	reloading = false;
	if (rc != 0)
		return -1;

	/* said at the level in force until now, then the new one applies */
	changed = log_changes(cfg, &fresh);
	if (changed == 0)
		log_info("config", "configuration reloaded, nothing changed");
	else
		log_info("config", "configuration reloaded, %d key%s changed",
				 changed, changed == 1 ? "" : "s");
	cfg->log_level = fresh.log_level;
	log_set_level(fresh.log_level);
	config_free(&fresh);
	return 0;
}

char *
config_read_secret(const char *path, size_t *len)
{
	struct stat st;
	char	   *buf;
	ssize_t		n;
	size_t		got = 0;
	int			fd;
	int			saved;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) != 0)
		goto fail;
	if (!S_ISREG(st.st_mode) || st.st_size > CONFIG_SECRET_MAX)
	{
		errno = S_ISREG(st.st_mode) ? EFBIG : EINVAL;
		goto fail;
	}

	buf = malloc((size_t) st.st_size + 1);
	if (buf == NULL)
		goto fail;
	while (got < (size_t) st.st_size &&
		   (n = read(fd, buf + got, (size_t) st.st_size - got)) != 0)
	{
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
		{
			saved = errno;
			explicit_bzero(buf, (size_t) st.st_size + 1);
			free(buf);
			errno = saved;
			goto fail;
		}
		got += (size_t) n;
	}
	close(fd);

	/* one trailing newline is not part of the secret */
	if (got > 0 && buf[got - 1] == '\n')
		got--;
	buf[got] = '\0';
	*len = got;
	return buf;

fail:
	saved = errno;
	close(fd);
	errno = saved;
	return NULL;
}
