/*-------------------------------------------------------------------------
 *
 * spool.h
 *		A file of MQTT messages taken from the broker but not yet stored.
 *
 * While the database is unavailable, ingest keeps the messages the broker
 * has already had acknowledged ("held" messages).  With a spool file they
 * are also written there, flushed to disk one by one, so that a stop or a
 * crash before the database is back does not lose them: the next start
 * reads them back and stores them before anything else.
 *
 * The file is a sequence of records, each starting with 4 bytes of magic
 * and holding big-endian numbers:
 *
 *	"LWs2" packet id (4), topic length (4), payload length (4), topic,
 *	payload: a held message
 *	"LWi1" packet id (4), content hash (8): a message taken on the last
 *	broker connection, written at a stop, so that the next start knows
 *	a redelivery of it for what it is
 *
 * The process that opens it holds an exclusive lock on it (flock), so two
 * bridges cannot share one.  Only ingest's lock holder calls these.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LW_SPOOL_H
#define LW_SPOOL_H

#include <stddef.h>
#include <stdint.h>

/* Longest topic a record may hold (MQTT's own limit) */
#define SPOOL_MAX_TOPIC		65535

/* Open (creating, mode 0600) and lock; returns an fd, or -1 with errno */
extern int	spool_open(const char *path);

/* Append one message and flush it to disk; returns 0, or -1 with errno */
extern int	spool_append(int fd, int msgid, const char *topic,
						 const char *payload, size_t len);

/* Append "taken" records and flush them; returns 0, or -1 with errno */
typedef struct SpoolId
{
	int			msgid;
	uint64_t	hash;
} SpoolId;
extern int	spool_append_ids(int fd, const SpoolId *ids, int n);

/*
 * Read every record in order, calling message() or taken() for each.
 * Returns how many were read; -1 with why filled in when a record is
 * damaged (a crash during an append leaves a short last record), after
 * the calls for the ones before it.
 */
typedef struct SpoolReader
{
	void		(*message) (int msgid, const char *topic, const char *payload,
							size_t len, void *arg);
	void		(*taken) (int msgid, uint64_t hash, void *arg);
	void	   *arg;
} SpoolReader;
extern int	spool_read(int fd, size_t max_payload, const SpoolReader *reader,
					   char *why, size_t whylen);

/* Empty the file (every message in it is stored); 0, or -1 with errno */
extern int	spool_clear(int fd);

#endif							/* LW_SPOOL_H */
