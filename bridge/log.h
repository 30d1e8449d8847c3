/*-------------------------------------------------------------------------
 *
 * log.h
 *		Log lines of the bridge, on stderr.
 *
 * A line is: timestamp, pid, level, a prefix naming the connection it is
 * about ("mqtt", "ws#42 127.0.0.1:51234", "db"), then the message.
 * Safe to call from any thread: each line is written with one write(2).
 * Never pass a secret, a token or a query string to these functions.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LW_LOG_H
#define LW_LOG_H

#include "config.h"

extern void log_set_level(LogLevel level);
extern bool log_enabled(LogLevel level);
extern void log_write(LogLevel level, const char *prefix, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));

#define log_fatal(prefix, ...)	log_write(LOG_LEVEL_FATAL, prefix, __VA_ARGS__)
#define log_error(prefix, ...)	log_write(LOG_LEVEL_ERROR, prefix, __VA_ARGS__)
#define log_warning(prefix, ...) log_write(LOG_LEVEL_WARNING, prefix, __VA_ARGS__)
#define log_info(prefix, ...)	log_write(LOG_LEVEL_LOG, prefix, __VA_ARGS__)
#define log_debug(prefix, ...)	log_write(LOG_LEVEL_DEBUG, prefix, __VA_ARGS__)

#endif							/* LW_LOG_H */
