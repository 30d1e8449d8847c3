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
 * Control characters in the message are written as \xNN, byte by byte,
 * so that text taken from the network or from the database cannot start a
 * line of its own and pass for a line of the bridge, nor send a terminal
 * that shows the log a control sequence: C0 (below 0x20), DEL, and the C1
 * range U+0080 to U+009F, whose U+009B is CSI.  Bytes that are not valid
 * UTF-8 are written the same way (a lone 0x9B is CSI to a terminal in an
 * 8-bit mode), so a line is always valid UTF-8 and "°C" stays readable.
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
 * Length of the UTF-8 sequence that starts at s (n bytes available), or 0
 * when there is none: a continuation byte out of place, a sequence cut
 * short, an overlong form, a surrogate or a code point beyond U+10FFFF.
 * Sets *cp to the code point.
 */
static int
utf8_sequence(const unsigned char *s, size_t n, unsigned int *cp)
{
	/* the smallest code point of each length; below it is an overlong form */
	static const unsigned int smallest[5] = {0, 0, 0x80, 0x800, 0x10000};
	int			len;

	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4;
	else
		return 0;
	if ((size_t) len > n)
		return 0;

	*cp = s[0] & (0x7f >> len);

	for (int i = 1; i < len; i++)
	{
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		*cp = (*cp << 6) | (s[i] & 0x3f);
	}
	if (*cp < smallest[len] || *cp > 0x10ffff ||
		(*cp >= 0xd800 && *cp <= 0xdfff))
		return 0;
	return len;
}

/*
 * How many bytes of msg at i go out as they are (a printable character,
 * one byte or a whole UTF-8 sequence); 0 when the byte at i is to be
 * escaped.
 */
static int
plain_length(const unsigned char *msg, size_t i, size_t len)
{
	unsigned int cp;
	int			n;

	if (msg[i] < 0x80)
		return msg[i] >= 0x20 && msg[i] != 0x7f ? 1 : 0;
	n = utf8_sequence(msg + i, len - i, &cp);
	if (n == 0)
		return 0;
	/* a C1 control: each of its two bytes is escaped */
	return cp <= 0x9f ? 0 : n;
}

/*
 * Copy the formatted message into out, escaping as the top of the file
 * says and dropping trailing newlines (libpq's messages end in one).  A
 * character is copied whole or not at all.  Returns the number of bytes
 * written; sets *cut when out was too small.
 */
static size_t
copy_escaped(char *out, size_t size, const char *msg, bool *cut)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *m = (const unsigned char *) msg;
	size_t		len = strlen(msg);
	size_t		o = 0;

	*cut = false;

	while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == '\r'))
		len--;

	for (size_t i = 0; i < len;)
	{
		int			n = plain_length(m, i, len);

		if (o + (n > 0 ? (size_t) n : 4) > size)
		{
			*cut = true;
			break;
		}
		if (n > 0)
		{
			memcpy(out + o, msg + i, (size_t) n);
			o += (size_t) n;
			i += (size_t) n;
		}
		else
		{
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[m[i] >> 4];
			out[o++] = hex[m[i] & 0x0f];
			i++;
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
