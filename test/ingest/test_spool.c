/*-------------------------------------------------------------------------
 *
 * test_spool.c
 *		Checks of the spool file (bridge/spool.c): what is appended is read
 *		back in order, a record cut short by a crash is reported and the
 *		ones before it kept, and one file serves one process.
 *
 * Run by "make -C test/ingest check"; exits 1 if a check failed.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "spool.h"

/* What spool_read() handed over, as one line per record */
static char seen[4096];

static void
on_message(int msgid, const char *topic, const char *payload, size_t len,
		   void *arg)
{
	size_t		n = strlen(seen);

	snprintf(seen + n, sizeof(seen) - n, "m %d %s %.*s|", msgid, topic,
			 (int) len, payload);
}

static void
on_taken(int msgid, uint64_t hash, void *arg)
{
	size_t		n = strlen(seen);

	snprintf(seen + n, sizeof(seen) - n, "t %d %llx|", msgid,
			 (unsigned long long) hash);
}

static int
read_all(int fd, char *why)
{
	const SpoolReader reader = {on_message, on_taken, NULL};

	seen[0] = '\0';
	return spool_read(fd, 1024, &reader, why, 128);
}

int
main(void)
{
	char		path[] = "/tmp/lw-test-spool-XXXXXX";
	char		why[128];
	SpoolId		ids[2] = {{7, UINT64_C(0x0123456789abcdef)}, {65535, 1}};
	struct stat st;
	int			tmp = mkstemp(path);
	int			fd;

	close(tmp);
	fd = spool_open(path);
	CHECK(fd >= 0);

	/* one file, one process: a second open is refused */
	CHECK(spool_open(path) == -1 && errno == EBUSY);

	CHECK(read_all(fd, why) == 0 && seen[0] == '\0');
	CHECK(spool_append(fd, 1, "devices/a/telemetry", "{\"v\":1}", 7) == 0);
	CHECK(spool_append(fd, 2, "devices/b/telemetry", "", 0) == 0);
	CHECK(spool_append_ids(fd, ids, 2) == 0);
	CHECK(spool_append(fd, 3, "t", "x\0y", 3) == 0);
	CHECK(read_all(fd, why) == 5);
	/* (the payload "x\0y" prints as "x") */
	CHECK(strcmp(seen, "m 1 devices/a/telemetry {\"v\":1}|"
				 "m 2 devices/b/telemetry |"
				 "t 7 123456789abcdef|t 65535 1|"
				 "m 3 t x|") == 0);

	/* a payload over the reader's limit is not taken for a message */
	{
		char	   *big = calloc(1, 2048);

		CHECK(spool_append(fd, 4, "t", big, 2048) == 0);
		CHECK(read_all(fd, why) == -1 && strstr(why, "record 6") != NULL);
		free(big);
	}

	/* a crash in the middle of an append: the records before it stay */
	CHECK(spool_clear(fd) == 0);
	CHECK(spool_append(fd, 1, "a", "1", 1) == 0);
	CHECK(spool_append(fd, 2, "b", "2", 1) == 0);
	CHECK(fstat(fd, &st) == 0 && ftruncate(fd, st.st_size - 1) == 0);
	CHECK(read_all(fd, why) == -1);
	CHECK(strcmp(seen, "m 1 a 1|") == 0);
	CHECK(strstr(why, "record 2") != NULL);

	/* emptied, and writable again afterwards */
	CHECK(spool_clear(fd) == 0);
	CHECK(read_all(fd, why) == 0);
	CHECK(spool_append(fd, 9, "z", "9", 1) == 0);
	CHECK(read_all(fd, why) == 1 && strcmp(seen, "m 9 z 9|") == 0);

	close(fd);
	unlink(path);
	return CHECK_SUMMARY("spool");
}
