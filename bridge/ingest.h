/*-------------------------------------------------------------------------
 *
 * ingest.h
 *		MQTT ingest: device messages in, readings stored in PostgreSQL.
 *
 * Ingest runs on paho.mqtt.c's own threads with its own libpq connection.
 * It never talks to the delivery side (HTTP, WebSocket, LISTEN): the two
 * meet only in the database.  The main thread only starts it, asks whether
 * it is ready, reads its counters and stops it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LW_INGEST_H
#define LW_INGEST_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* Start connecting to the broker; returns 0, or -1 after logging why. */
extern int	ingest_start(const Config *cfg);

/*
 * Stop taking messages, finish the one being stored, disconnect.  A
 * message not yet acknowledged stays with the broker, which delivers it
 * again on the next connection.
 */
extern void ingest_stop(void);

/* Connected to the broker with every subscription acknowledged? */
extern bool ingest_ready(void);

/*
 * Append ingest's counters in Prometheus text format to buf (at most len
 * bytes including the terminating NUL); returns the length appended.
 */
extern size_t ingest_metrics(char *buf, size_t len);

#endif							/* LW_INGEST_H */
