/*-------------------------------------------------------------------------
 *
 * test_log.c
 *		Checks of the bridge's log lines (bridge/log.c): what may pass for
 *		a line of its own or reach a terminal as a control sequence is
 *		escaped, readable text is kept, and a long line is cut whole
 *		characters at a time.
 *
 * Each case writes one line through log_write() into a temporary file
 * standing in for stderr and compares what follows the prefix.  Run by
 * "make -C test/ingest check"; exits 1 if a check failed.
 *
 *-------------------------------------------------------------------------
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "log.h"

/* The last line written, whole, and its message after "t: " */
static char line[8192];
static const char *message;

/* Log msg (as the argument of "%s") and read the line back */
static const char *
logged(const char *msg)
{
	FILE	   *f = tmpfile();
	int			saved = dup(STDERR_FILENO);
	size_t		n;
	char	   *mark;

	if (f == NULL || saved < 0)
	{
		perror("test_log");
		exit(2);
	}
	fflush(stderr);
	dup2(fileno(f), STDERR_FILENO);
	log_write(LOG_LEVEL_LOG, "t", "%s", msg);
	dup2(saved, STDERR_FILENO);
	close(saved);

	rewind(f);
	n = fread(line, 1, sizeof(line) - 1, f);
	line[n] = '\0';
	fclose(f);

	mark = strstr(line, " LOG:  t: ");
	message = mark ? mark + strlen(" LOG:  t: ") : "";
	return message;
}

/* Is the message of the last line exactly want, followed by the newline? */
static bool
logged_as(const char *msg, const char *want)
{
	size_t		len = strlen(want);

	logged(msg);
	return strncmp(message, want, len) == 0 &&
		strcmp(message + len, "\n") == 0;
}

/* Is s valid UTF-8 throughout? */
static bool
valid_utf8(const char *s)
{
	const unsigned char *p = (const unsigned char *) s;

	while (*p)
	{
		int			n = *p < 0x80 ? 1 : *p >= 0xf0 ? 4 : *p >= 0xe0 ? 3 :
			*p >= 0xc2 ? 2 : 0;

		if (n == 0)
			return false;
		for (int i = 1; i < n; i++)
			if ((p[i] & 0xc0) != 0x80)
				return false;
		p += n;
	}
	return true;
}

static void
test_header(void)
{
	char		want[64];

	logged("connected");
	snprintf(want, sizeof(want), " UTC [%ld] LOG:  t: connected\n",
			 (long) getpid());
	CHECK(strstr(line, want) != NULL);
	CHECK(strlen(line) > 24 && line[4] == '-' && line[10] == ' ');
	CHECK(strchr(line, '\n') == line + strlen(line) - 1);
}

static void
test_kept_as_is(void)
{
	/* quotes and backslashes belong to the message's own wording */
	CHECK(logged_as("device \"d1\" said \\o/", "device \"d1\" said \\o/"));
	CHECK(logged_as("unit \xc2\xb0" "C, 5 \xe2\x82\xac, \xf0\x9f\x8c\xa1",
					"unit \xc2\xb0" "C, 5 \xe2\x82\xac, \xf0\x9f\x8c\xa1"));
	CHECK(logged_as("\xc2\xa0 after C1", "\xc2\xa0 after C1"));	/* U+00A0 */
	CHECK(logged_as("ends in newlines\n\r\n", "ends in newlines"));
}

static void
test_controls_escaped(void)
{
	CHECK(logged_as("a\nb\tc\rd", "a\\x0ab\\x09c\\x0dd"));
	CHECK(logged_as("x\x1b[31my\x7fz", "x\\x1b[31my\\x7fz"));
	CHECK(logged_as("forged\n2026-01-01 00:00:00.000 UTC [1] LOG:  x",
					"forged\\x0a2026-01-01 00:00:00.000 UTC [1] LOG:  x"));

	/* C1 controls as UTF-8: U+009B (CSI), U+0085 (NEL), U+0080, U+009F */
	CHECK(logged_as("key \xc2\x9b" "2J", "key \\xc2\\x9b2J"));
	CHECK(logged_as("\xc2\x85\xc2\x80\xc2\x9f",
					"\\xc2\\x85\\xc2\\x80\\xc2\\x9f"));
}

static void
test_invalid_utf8_escaped(void)
{
	CHECK(logged_as("lone \x9b" "2J", "lone \\x9b2J"));
	CHECK(logged_as("cut \xe2\x82", "cut \\xe2\\x82"));
	CHECK(logged_as("overlong \xc0\xaf \xe0\x80\xaf",
					"overlong \\xc0\\xaf \\xe0\\x80\\xaf"));
	CHECK(logged_as("surrogate \xed\xa0\x80", "surrogate \\xed\\xa0\\x80"));
	CHECK(logged_as("beyond \xf4\x90\x80\x80", "beyond \\xf4\\x90\\x80\\x80"));
	CHECK(logged_as("latin1 \xb0" "C", "latin1 \\xb0C"));
}

static void
test_long_line_cut(void)
{
	size_t		n = 3000;
	char	   *big = malloc(2 * n + 1);
	const char *end;

	/* "é" is two bytes: the cut must not split one */
	for (size_t i = 0; i < n; i++)
		memcpy(big + 2 * i, "\xc3\xa9", 2);
	big[2 * n] = '\0';
	logged(big);
	CHECK(strlen(line) <= 4096);
	CHECK(strlen(line) > 4000);
	CHECK(strcmp(line + strlen(line) - 4, "...\n") == 0);
	CHECK(valid_utf8(line));

	/* escapes are cut whole too: the line ends in "x" or "\x0a", then "..." */
	for (size_t i = 0; i < n; i++)
		memcpy(big + 2 * i, "\nx", 2);
	logged(big);
	CHECK(strlen(line) <= 4096);
	CHECK(strlen(line) > 4000);
	end = line + strlen(line) - 4;
	CHECK(strcmp(end, "...\n") == 0);
	CHECK(end[-1] == 'x' || strncmp(end - 4, "\\x0a", 4) == 0);
	free(big);
}

int
main(void)
{
	log_set_level(LOG_LEVEL_DEBUG);
	test_header();
	test_kept_as_is();
	test_controls_escaped();
	test_invalid_utf8_escaped();
	test_long_line_cut();
	return CHECK_SUMMARY("log");
}
