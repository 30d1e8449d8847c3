/*-------------------------------------------------------------------------
 *
 * spool.c
 *		A file of MQTT messages taken from the broker but not yet stored.
 *
 * See spool.h for the format.  Each append is one write(2) of whole
 * records followed by fdatasync(), so a record is either complete on disk
 * or a short tail that spool_read() reports and ignores.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "spool.h"

#define MESSAGE_MAGIC	"LWs2"
#define MESSAGE_HEADER	16		/* magic, packet id, two lengths */
#define TAKEN_MAGIC		"LWi1"
#define TAKEN_LEN		16		/* magic, packet id, hash */

static void
put32(char *p, uint32_t v)
{
	for (int i = 3; i >= 0; i--, v >>= 8)
		p[i] = (char) (v & 0xff);
}

static uint32_t
get32(const char *p)
{
	uint32_t	v = 0;

	for (int i = 0; i < 4; i++)
		v = (v << 8) | (unsigned char) p[i];
	return v;
}

/* One write of size bytes, then a flush to disk */
static int
write_flush(int fd, const char *buf, size_t size)
{
	ssize_t		written = write(fd, buf, size);

	if (written != (ssize_t) size)
	{
		if (written >= 0)
			errno = ENOSPC;
		return -1;
	}
	return fdatasync(fd);
}

int
spool_open(const char *path)
{
	int			fd;
	int			saved;

	fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	if (flock(fd, LOCK_EX | LOCK_NB) != 0)
	{
		saved = errno;
		close(fd);
		errno = saved == EWOULDBLOCK ? EBUSY : saved;
		return -1;
	}
	return fd;
}

int
spool_append(int fd, int msgid, const char *topic, const char *payload,
			 size_t len)
{
	size_t		topic_len = strlen(topic);
	size_t		size = MESSAGE_HEADER + topic_len + len;
	char	   *rec;
	int			rc;

	if (topic_len > SPOOL_MAX_TOPIC || len > UINT32_MAX)
	{
		errno = EINVAL;
		return -1;
	}
	rec = malloc(size);
	if (rec == NULL)
		return -1;
	memcpy(rec, MESSAGE_MAGIC, 4);
	put32(rec + 4, (uint32_t) msgid);
	put32(rec + 8, (uint32_t) topic_len);
	put32(rec + 12, (uint32_t) len);
	memcpy(rec + MESSAGE_HEADER, topic, topic_len);
	memcpy(rec + MESSAGE_HEADER + topic_len, payload, len);
	rc = write_flush(fd, rec, size);
	free(rec);
	return rc;
}

int
spool_append_ids(int fd, const SpoolId *ids, int n)
{
	char	   *buf;
	int			rc;

	if (n <= 0)
		return 0;
	buf = malloc((size_t) n * TAKEN_LEN);
	if (buf == NULL)
		return -1;
	for (int i = 0; i < n; i++)
	{
		char	   *rec = buf + (size_t) i * TAKEN_LEN;

		memcpy(rec, TAKEN_MAGIC, 4);
		put32(rec + 4, (uint32_t) ids[i].msgid);
		put32(rec + 8, (uint32_t) (ids[i].hash >> 32));
		put32(rec + 12, (uint32_t) ids[i].hash);
	}
	rc = write_flush(fd, buf, (size_t) n * TAKEN_LEN);
	free(buf);
	return rc;
}

/* Read exactly len bytes; returns how many were read (len unless EOF) */
static size_t
read_full(int fd, char *buf, size_t len)
{
	size_t		got = 0;

	while (got < len)
	{
		ssize_t		n = read(fd, buf + got, len - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t) n;
	}
	return got;
}

/*
 * Read the rest of a message record whose header is in header, and hand
 * it over.  Returns false when the record is damaged or cut short.
 */
static bool
read_message(int fd, const char *header, size_t max_payload,
			 const SpoolReader *reader)
{
	uint32_t	topic_len = get32(header + 8);
	uint32_t	len = get32(header + 12);
	char	   *buf;
	bool		ok;

	if (topic_len > SPOOL_MAX_TOPIC || len > max_payload)
		return false;

	/* the topic, a NUL, then the payload, in one buffer */
	buf = malloc((size_t) topic_len + 1 + len + 1);
	if (buf == NULL)
		return false;
	ok = read_full(fd, buf, topic_len) == topic_len &&
		read_full(fd, buf + topic_len + 1, len) == len;
	if (ok)
	{
		buf[topic_len] = '\0';
		reader->message((int) get32(header + 4), buf, buf + topic_len + 1,
						len, reader->arg);
	}
	free(buf);
	return ok;
}

int
spool_read(int fd, size_t max_payload, const SpoolReader *reader,
		   char *why, size_t whylen)
{
	char		header[MESSAGE_HEADER];
	int			count = 0;
	size_t		got;

	if (lseek(fd, 0, SEEK_SET) != 0)
	{
		snprintf(why, whylen, "could not seek: %s", strerror(errno));
		return -1;
	}

	/* both kinds of record start with 16 bytes */
	while ((got = read_full(fd, header, MESSAGE_HEADER)) == MESSAGE_HEADER)
	{
		if (memcmp(header, TAKEN_MAGIC, 4) == 0)
			reader->taken((int) get32(header + 4),
						  ((uint64_t) get32(header + 8) << 32) |
						  get32(header + 12), reader->arg);
		else if (memcmp(header, MESSAGE_MAGIC, 4) != 0 ||
				 !read_message(fd, header, max_payload, reader))
		{
			snprintf(why, whylen, "record %d is damaged or cut short",
					 count + 1);
			return -1;
		}
		count++;
	}
	if (got != 0)
	{
		snprintf(why, whylen, "record %d is cut short", count + 1);
		return -1;
	}
	return count;
}

int
spool_clear(int fd)
{
	if (ftruncate(fd, 0) != 0)
		return -1;
	return fdatasync(fd);
}
