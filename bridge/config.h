/*-------------------------------------------------------------------------
 *
 * config.h
 *		The bridge's configuration: one declarative table of keys.
 *
 * A key is read from the configuration file ("key = value"), from the
 * environment (LIVEWIDGET_<KEY>) and from the command line (--key=value),
 * in that order, each later source overriding the earlier.  The Config is
 * filled once by the main thread before any other thread starts and is
 * read-only afterwards, so every thread may read it without locking.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LW_CONFIG_H
#define LW_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

typedef enum LogLevel
{
	LOG_LEVEL_FATAL = 0,
	LOG_LEVEL_ERROR,
	LOG_LEVEL_WARNING,
	LOG_LEVEL_LOG,				/* "info" in the configuration */
	LOG_LEVEL_DEBUG
} LogLevel;

typedef struct Config
{
	char	   *database;		/* libpq conninfo; "" means PG* defaults */
	char	   *mqtt_url;		/* mqtt://host:port */
	char	   *mqtt_topic;		/* JSON readings, "devices/+/telemetry" */
	char	   *mqtt_senml_topic;	/* SenML packs, "devices/+/senml" */
	char	   *mqtt_shared_group;	/* NULL: plain subscription */
	char	   *mqtt_client_id;
	char	   *mqtt_username;
	char	   *mqtt_password_file;
	char	   *listen;			/* "127.0.0.1:8080" */
	char	   *jwt_secret_file;
	char	   *jwt_public_key_file;
	char	   *jwt_audience;
	char	   *jwt_issuer;
	char	   *web_root;
	LogLevel	log_level;
	char	   *spool_file;		/* NULL: held messages in memory only */
} Config;

/*
 * Fill cfg from the file named on the command line (if any), the
 * environment and the command line.  Returns 0 on success.  On --help or
 * --version it prints and returns 1 (the caller exits 0); on an unknown key
 * or a bad value it prints a message naming the key to stderr and returns
 * -1 (the caller exits 2).
 */
extern int	config_load(Config *cfg, int argc, char **argv);
extern void config_free(Config *cfg);

/*
 * Reread every source (on SIGHUP).  Keys marked reloadable (log_level) are
 * applied to cfg and to the log; a changed key that is not reloadable is
 * logged as needing a restart, and a reload that changes nothing says so.
 * Returns 0, or -1 with cfg untouched when the new configuration is
 * invalid (each problem was logged).
 */
extern int	config_reload(Config *cfg, int argc, char **argv);

/*
 * Read a secret file (password, JWT secret): its whole content with one
 * trailing newline removed, NUL-terminated.  Returns a malloc'd buffer and
 * its length, or NULL with errno set (EFBIG beyond CONFIG_SECRET_MAX).
 */
#define CONFIG_SECRET_MAX	65536
extern char *config_read_secret(const char *path, size_t *len);

/*
 * Split a "listen" value ("127.0.0.1:8080", "[::1]:8080", "localhost:80")
 * into host (brackets removed) and port.  Returns 0, or -1 if malformed.
 */
extern int	config_split_listen(const char *value, char *host,
								size_t hostlen, int *port);

#endif							/* LW_CONFIG_H */
