/*-------------------------------------------------------------------------
 *
 * log.c
 *		Log lines of the bridge, on stderr.
 *
 * A line reads
 *
 *		2026-12-04 16:21:16.123 UTC [4242] LOG:  mqtt: connected to broker
 *
 * Any thread may call log_write().  Each line is formatted in a buffer on
 * the caller's stack and handed to the kernel with a single write(2), so
 * lines of concurrent threads never interleave.  A line is at most
 * LOG_LINE_MAX bytes (the size the kernel writes to a pipe atomically);
 * a longer one is cut and ends in "...".
 *
 * Control characters in the message are written as \xNN, so that text
 * taken from the network or from the database cannot start a line of its
 * own and pass for a line of the bridge.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* PIPE_BUF on Linux: one write(2) of this size is atomic on a pipe too */
#define LOG_LINE_MAX	4096

static atomic_int log_level = LOG_LEVEL_LOG;

static const char *const level_names[] = {
	[LOG_LEVEL_FATAL] = "FATAL",
	[LOG_LEVEL_ERROR] = "ERROR",
	[LOG_LEVEL_WARNING] = "WARNING",
	[LOG_LEVEL_LOG] = "LOG",
	[LOG_LEVEL_DEBUG] = "DEBUG",
};

void
log_set_level(LogLevel level)
{
	atomic_store(&log_level, (int) level);
}

bool
log_enabled(LogLevel level)
{
	return (int) level <= atomic_load(&log_level);
}

/*
 * Write the line header (time, pid, level, prefix) into buf; returns its
 * length.
 */
static size_t
format_header(char *buf, size_t size, LogLevel level, const char *prefix)
{
	struct timespec now;
	struct tm	tm;
	char		stamp[32];
	int			n;

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);

	n = snprintf(buf, size, "%s.%03ld UTC [%ld] %s:  %s%s",
				 stamp, now.tv_nsec / 1000000L, (long) getpid(),
				 level_names[level], prefix ? prefix : "",
				 prefix && prefix[0] ? ": " : "");
	if (n < 0)
		return 0;
	return (size_t) n < size ? (size_t) n : size - 1;
}

/*
 * Copy the formatted message into out, escaping control characters and
 * dropping trailing newlines (libpq's messages end in one).  Returns the
 * number of bytes written; sets *cut when out was too small.
 */
static size_t
copy_escaped(char *out, size_t size, const char *msg, bool *cut)
{
	size_t		len = strlen(msg);
	size_t		o = 0;

	*cut = false;

	while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == '\r'))
		len--;

	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) msg[i];

		if (c >= 0x20 && c != 0x7f)
		{
			if (o + 1 > size)
			{
				*cut = true;
				break;
			}
			out[o++] = (char) c;
		}
		else
		{
			if (o + 4 > size)
			{
				*cut = true;
				break;
			}
			snprintf(out + o, 5, "\\x%02x", c);
			o += 4;
		}
	}
	return o;
}

void
log_write(LogLevel level, const char *prefix, const char *fmt,...)
{
	char		line[LOG_LINE_MAX];
	char		msg[LOG_LINE_MAX];
	size_t		len;
	size_t		room;
	va_list		ap;
	bool		cut;
	int			saved_errno = errno;
	int			n;

	if (!log_enabled(level))
		return;

	/* %m in fmt must see the caller's errno */
	errno = saved_errno;
	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		snprintf(msg, sizeof(msg), "(could not format log message)");

	/* header, escaped message, then room for "..." and the newline */
	len = format_header(line, sizeof(line), level, prefix);
	room = sizeof(line) - len - 4;
	len += copy_escaped(line + len, room, msg, &cut);
	if (cut || (size_t) n >= sizeof(msg))
	{
		memcpy(line + len, "...", 3);
		len += 3;
	}
	line[len++] = '\n';

	/*
	 * One write(2) per line.  A short write to stderr is not retried: the
	 * rest would be a line of its own, interleaved with other threads.
	 */
	if (write(STDERR_FILENO, line, len) < 0)
	{
		/* nowhere left to report it */
	}
	errno = saved_errno;
}
