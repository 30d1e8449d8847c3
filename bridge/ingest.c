/*-------------------------------------------------------------------------
 *
 * ingest.c
 *		MQTT ingest: device messages in, readings stored in PostgreSQL.
 *
 * Flow of one message:
 *
 *	broker --PUBLISH--> paho receive thread --on_message()--> parse
 *	(reading.c) --> one transaction: advisory lock on the device, one
 *	INSERT ... SELECT FROM unnest(...) --> COMMIT --> message freed
 *
 * Acknowledgement.  paho.mqtt.c sends the PUBACK of a QoS 1 message
 * *before* it calls messageArrived (MQTTProtocol_handlePublishes; the
 * maintainers' issue 522 asks for manual acks, still open), so neither
 * returning 0 from the callback nor disconnecting makes the broker send
 * the message again: returning 0 only keeps it in paho's in-memory queue,
 * and that queue is retried only when more traffic arrives (issue 1345).
 * What is robust with this library:
 *
 *	- store synchronously in the callback, so that what the broker has had
 *	  acknowledged is the message being stored and nothing else;
 *	- when the database fails (not the message's fault), keep the message
 *	  ourselves ("held", held.c), disconnect from the broker at once so
 *	  that it keeps everything published meanwhile in the persistent
 *	  session (cleansession 0), store the held messages once the database
 *	  is back, and only then connect again.
 *
 * Only the few messages that paho acknowledged between the failure and
 * the disconnect are held (up to the broker's in-flight window); they are
 * stored before any later message of their device, so order is kept.
 * With spool_file they are also written to disk (spool.c) and survive a
 * stop or a crash.
 *
 * A lock wait is not an outage.  The COMMIT writes the buffers of the
 * device's widgets (the extension's trigger leaves that to the commit),
 * so another session that keeps a widget of device X locked (its
 * widget_state row FOR UPDATE, or track() in a transaction left open)
 * makes every COMMIT for X wait until it ends.  Ingest's connections set
 * lock_timeout (DB_LOCK_TIMEOUT),
 * and a store that meets a lock or statement timeout, a deadlock or a
 * serialization failure finds the device "busy": the database answers,
 * only this device cannot be written now.  Its message is held under the
 * device, its later messages are held behind it (order matters within a
 * device only), and the worker retries it on a connection of its own,
 * while on_message() goes on storing every other device.  MQTT stays
 * connected and ingest stays ready; only when more than HELD_MAX_MESSAGES
 * or HELD_MAX_BYTES are held is MQTT paused, until half of it is stored.
 *
 * Why not a pool of connections keyed by device: storing stays in the
 * callback (see above), so that no more than one message taken from the
 * broker is ever waiting for the database outside the held set; the
 * retries are all a second connection is needed for.
 *
 * XXX The first message of a device whose rows are locked still holds up
 * paho's receive thread, and with it every device, for DB_LOCK_TIMEOUT;
 * later ones of that device are held at once.  A transaction that keeps
 * many devices' widgets locked slows ingest to one such device a second
 * until each has been found busy.  A shorter lock_timeout would shorten
 * that, but turn the ordinary short waits of concurrent writers into
 * retries.
 *
 * Stopping.  A graceful stop lets the broker go (see "Redeliveries"),
 * then stores what is held before it returns.  Without spool_file that
 * takes as long as the database needs: the log says every
 * STOP_LOG_SECONDS how many messages wait and why, and a second signal
 * ends the process at once (main.c), losing them.  With spool_file they
 * stay in the file for the next start.
 *
 * Redeliveries.  paho closes the socket with the broker's next messages
 * still unread, so the kernel resets the connection, and the broker drops
 * the last PUBACKs it had not read yet: it sends those messages again on
 * the next connection, with their packet id and the DUP flag.  So before
 * every disconnect ingest waits QUIESCE_MS, and on_message() as long after
 * each message taken meanwhile (paho reads nothing while its callback
 * runs): the broker reads every PUBACK before the reset.  Should one still
 * be lost, a message with DUP set whose packet id and content (hash of
 * topic and payload) match one taken on the previous connection is
 * skipped; the ids of the last connection go to the spool file at a stop
 * so that the next process knows them too.
 *
 * XXX A crash (not a graceful stop) while a message is being stored loses
 * it: the broker has its PUBACK.  Without spool_file, so do the messages
 * held at a crash, or at a stop ended by a second signal (the log said how
 * many).  A client library with manual acknowledgement (PUBACK after
 * COMMIT) would close the first window; paho.mqtt.c has none.
 *
 * XXX If the connection breaks during COMMIT, the outcome is unknown and
 * the message is stored again later: readings with a device timestamp are
 * then dropped as duplicates, readings without one are stored twice.
 *
 * Threads: paho calls on_message() and the other callbacks on its own
 * threads and on_message() stores on state.conn; the worker thread
 * (ingest_worker) owns the database's availability, storing held messages
 * on a connection of its own, and pausing and resuming MQTT; the main
 * thread calls the public functions.  state.lock guards state.conn, the
 * held set and the flags; the worker lets go of it while its own
 * connection works.  No MQTTAsync function is ever called with state.lock
 * held, since paho holds its own mutex while it runs a callback that may
 * wait for state.lock.  Counters are atomics, read without the lock.
 *
 * Terms: "rejected" means refused for its content, logged and counted,
 * written to livewidget.rejected_message (a "dead letter"), never
 * retried; "held" means taken from the broker but not yet stored
 * because the database is unavailable or the device busy; "busy" means
 * the database answers but cannot write this device now.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <MQTTAsync.h>
#include <libpq-fe.h>

#include "config.h"
#include "held.h"
#include "ingest.h"
#include "log.h"
#include "reading.h"
#include "spool.h"

/* MQTT session: keepalive, and paho's reconnect backoff (seconds) */
#define MQTT_KEEPALIVE			30
#define MQTT_RETRY_MIN			1
#define MQTT_RETRY_MAX			30
#define MQTT_DISCONNECT_MS		1000

/*
 * How long the broker gets to read the last PUBACKs before a disconnect
 * (see "Redeliveries" above); far more than it needs on a loaded machine,
 * little enough to go unnoticed in a stop.
 */
#define QUIESCE_MS				100

/*
 * How long messages taken after a disconnect began still pause: under a
 * steady stream paho may run one callback after another before the
 * disconnect gets its turn, and pauses without end would hold the stop
 * (and the disconnect) back for as long as the broker has messages.
 */
#define QUIESCE_WINDOW_MS		1000

/*
 * Database: reconnect backoff, doubled from MIN to MAX; how long one
 * statement may run (the callback blocks paho's receive thread, which
 * must answer the broker's keepalive); how long one statement may wait
 * for a lock before its device counts as busy; how long connecting may
 * take.
 */
#define DB_BACKOFF_MIN_MS		500
#define DB_BACKOFF_MAX_MS		30000
#define DB_STATEMENT_TIMEOUT	"20s"
#define DB_LOCK_TIMEOUT			"1s"
#define DB_CONNECT_TIMEOUT		"5"

/* Pause between two rounds of retries of busy devices */
#define BUSY_RETRY_MS			500

/*
 * The most ingest holds while MQTT stays connected (messages of busy
 * devices); beyond it MQTT pauses until half of it is stored.  Messages
 * are at most READING_MAX_PAYLOAD (1 MiB) each.
 */
#define HELD_MAX_MESSAGES		10000
#define HELD_MAX_BYTES			((size_t) 64 * 1024 * 1024)

/*
 * A stop waiting for the database: how often it says so, and the longest
 * pause between two attempts (shorter than in an outage, so that the stop
 * ends soon after the database is back).
 */
#define STOP_LOG_SECONDS		10
#define STOP_BACKOFF_MAX_MS		2000

/*
 * How many of the last packet ids of a connection a stop writes to the
 * spool file: far more than a broker keeps in flight (Mosquitto: 20).
 */
#define TAKEN_RING				1024

/* How much of a rejected payload a log line quotes */
#define LOG_PAYLOAD_BYTES		200
#define LOG_TOPIC_BYTES			256

/*
 * Advisory lock space of ingest (two-key form: this class, hashtext of the
 * device id), so that concurrent bridges storing the same device take
 * turns and the duplicate check of one sees the rows of the other.
 */
#define LOCK_CLASS				1280770049	/* 0x4C570001, "LW" */

/*
 * A rejected message, for livewidget.rejected_message (see
 * write_dead_letter()): at most DEAD_LETTERS_PER_SECOND of them a second
 * are written, the others only logged and counted.
 */
#define SQL_DEAD_LETTER \
	"INSERT INTO livewidget.rejected_message (topic, reason, payload) " \
	"VALUES ($1, $2, $3)"
#define DEAD_LETTERS_PER_SECOND	100
#define TEXT_TYPE_OID			25	/* pg_type.h is for the server */
#define BYTEA_TYPE_OID			17

#define SQL_LOCK \
	"SELECT pg_advisory_xact_lock(" CppAsString(LOCK_CLASS) ", hashtext($1))"

/*
 * One row per reading, in message order.  A reading whose device-supplied
 * time is already stored for the same device and sensor is a duplicate
 * (a redelivered message), and so is a repeat within the message (the
 * first one is kept).  Readings without a time get now() and are never
 * merged.
 */
#define SQL_INSERT \
	"INSERT INTO livewidget.sensor_data " \
	"(device_id, sensor_type, value, unit, ts) " \
	"SELECT $1, r.sensor_type, r.value, r.unit, coalesce(r.ts, now()) " \
	"FROM (SELECT u.*, row_number() OVER " \
	"(PARTITION BY u.sensor_type, u.ts ORDER BY u.ord) AS n " \
	"FROM unnest($2::text[], $3::float8[], $4::text[], $5::timestamptz[]) " \
	"WITH ORDINALITY AS u(sensor_type, value, unit, ts, ord)) AS r " \
	"WHERE r.ts IS NULL OR (r.n = 1 AND NOT EXISTS (" \
	"SELECT 1 FROM livewidget.sensor_data d WHERE d.device_id = $1 " \
	"AND d.sensor_type = r.sensor_type AND d.ts = r.ts)) " \
	"ORDER BY r.ord"

#define CppAsString(x)	CppAsString2(x)
#define CppAsString2(x)	#x

typedef enum StoreResult
{
	STORE_DONE,					/* stored, or rejected for its content */
	STORE_BUSY,					/* the device cannot be written now */
	STORE_FAILED				/* the database is unavailable */
} StoreResult;

/* A message as ingest sees it: its topic and payload */
typedef struct Message
{
	const char *topic;
	const char *payload;
	size_t		len;
} Message;

/* The last message taken with a packet id (see "Redeliveries" above) */
typedef struct TakenId
{
	uint64_t	hash;
	uint32_t	connection;		/* state.connection when it was taken */
	bool		used;
} TakenId;

static struct
{
	const Config *cfg;
	MQTTAsync	client;
	bool		created;		/* client exists */
	char	   *topics[2];		/* what is subscribed to */
	const char *patterns[2];	/* the same without $share/<group>/ */
	char	   *password;

	pthread_mutex_t lock;		/* guards everything down to "stopping" */
	pthread_cond_t wake;		/* the worker has something to do */
	pthread_t	worker;
	bool		worker_running;
	PGconn	   *conn;			/* on_message()'s connection */
	HeldSet		held;			/* messages not stored yet, by device */
	bool		holding;		/* database unavailable: all held, no MQTT */
	bool		full;			/* too much held: no MQTT */
	int			spool_fd;		/* -1: held messages in memory only */
	bool		spool_failed;	/* an append failed since nothing was held */
	uint32_t	connection;		/* broker connections so far */
	TakenId		taken[65536];	/* by packet id */
	uint16_t	ring[TAKEN_RING];	/* last ids taken on this connection */
	uint64_t	ring_count;		/* ids taken on this connection */
	bool		mqtt_wanted;	/* paho told to be connected */
	int			backoff_ms;
	bool		outage_logged;	/* the log said the database is away */
	bool		stopping;		/* ingest_stop() began */
	bool		mqtt_closed;	/* ... and let the broker go */

	atomic_bool mqtt_connected;
	atomic_bool subscribed;
	atomic_bool ready_db;		/* !holding, for ingest_ready() */
	atomic_bool mqtt_failure_logged;
	atomic_bool disconnect_done;
	atomic_bool quiescing;		/* a disconnect is coming: pause per message */
	atomic_llong quiesce_until_ms;	/* ... for messages taken until then */

	atomic_ullong received;
	atomic_ullong messages_stored;
	atomic_ullong readings_stored;
	atomic_ullong duplicates;
	atomic_ullong retained_skipped;
	atomic_ullong redeliveries;
	atomic_ullong db_errors;
	atomic_ullong db_busy;
	atomic_ullong rejected[REJECT_NUM_REASONS];
	atomic_ullong dead_letters;		/* rows written to rejected_message */
	atomic_ullong dead_letters_dropped;
	atomic_bool dead_letters_off;	/* the table is missing */
	atomic_llong dead_letter_second;	/* rate limit: current second ... */
	atomic_int	dead_letter_count;	/* ... and rows written in it */
	atomic_int	held_count;		/* state.held.messages, for the metrics */
} state = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.held = HELD_SET_INIT,
	.spool_fd = -1,
};

/* ----------------------------------------------------------------------
 * Small helpers
 * ----------------------------------------------------------------------
 */

static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * libpq's messages run over several lines ("...\n\tIs the server
 * running..."): make one line of them, for the log.
 */
static void
one_line(char *s)
{
	char	   *out = s;
	bool		space = false;

	for (char *p = s; *p; p++)
	{
		if ((unsigned char) *p <= ' ')
			space = out != s;
		else
		{
			if (space)
				*out++ = ' ';
			space = false;
			*out++ = *p;
		}
	}
	*out = '\0';
}

/* A growing text buffer for the array parameters */
typedef struct StrBuf
{
	char	   *data;
	size_t		len;
	size_t		cap;
	bool		failed;			/* out of memory: contents unusable */
} StrBuf;

static void
sb_append(StrBuf *sb, const char *s, size_t n)
{
	if (sb->failed)
		return;
	if (sb->len + n + 1 > sb->cap)
	{
		size_t		cap = sb->cap ? sb->cap : 256;
		char	   *data;

		while (sb->len + n + 1 > cap)
			cap *= 2;
		data = realloc(sb->data, cap);
		if (data == NULL)
		{
			sb->failed = true;
			return;
		}
		sb->data = data;
		sb->cap = cap;
	}
	memcpy(sb->data + sb->len, s, n);
	sb->len += n;
	sb->data[sb->len] = '\0';
}

static void
sb_puts(StrBuf *sb, const char *s)
{
	sb_append(sb, s, strlen(s));
}

/* An element of a text[] literal: NULL, or quoted with \ and " escaped */
static void
sb_array_text(StrBuf *sb, const char *s)
{
	if (s == NULL)
	{
		sb_puts(sb, "NULL");
		return;
	}
	sb_append(sb, "\"", 1);
	for (const char *p = s; *p; p++)
	{
		if (*p == '"' || *p == '\\')
			sb_append(sb, "\\", 1);
		sb_append(sb, p, 1);
	}
	sb_append(sb, "\"", 1);
}

/* ----------------------------------------------------------------------
 * Rejected messages
 * ----------------------------------------------------------------------
 */

static const char *error_text(PGconn *conn, const PGresult *res);
static bool db_connect(PGconn **conn, char *why, size_t whylen);

/*
 * Whether one more dead letter may be written this second: at most
 * DEAD_LETTERS_PER_SECOND, so that a device sending garbage cannot turn
 * every message it sends into a database write.  Both threads call this;
 * racing at a second's turn can let a few more through, never many.
 */
static bool
dead_letter_allowed(void)
{
	long long	second = (long long) (now_us() / 1000000);

	if (atomic_exchange(&state.dead_letter_second, second) != second)
		atomic_store(&state.dead_letter_count, 0);
	return atomic_fetch_add(&state.dead_letter_count, 1) <
		DEAD_LETTERS_PER_SECOND;
}

/*
 * Write a rejected message into livewidget.rejected_message: topic,
 * reason and the whole payload, on the connection of the thread that
 * rejected it (opened if need be; NULL while the database is known to be
 * unavailable: only logged).  Best effort: a failure is logged and the
 * message counts as rejected all the same.  The table's own trigger keeps
 * it bounded (livewidget.rejected_message_limit).
 */
static void
write_dead_letter(PGconn **connp, const Message *m, const char *reason)
{
	static const Oid types[3] = {TEXT_TYPE_OID, TEXT_TYPE_OID,
		BYTEA_TYPE_OID};
	static const int formats[3] = {0, 0, 1};
	const char *values[3] = {m->topic, reason, m->payload};
	int			lengths[3] = {0, 0, (int) m->len};
	PGresult   *res;
	const char *sqlstate;
	PGconn	   *conn;
	char		why[256];

	if (connp == NULL || atomic_load(&state.dead_letters_off))
		return;
	if (!dead_letter_allowed())
	{
		atomic_fetch_add(&state.dead_letters_dropped, 1);
		return;
	}
	if (*connp == NULL && !db_connect(connp, why, sizeof(why)))
	{
		atomic_fetch_add(&state.dead_letters_dropped, 1);
		return;
	}
	conn = *connp;
	if (PQstatus(conn) != CONNECTION_OK ||
		PQtransactionStatus(conn) != PQTRANS_IDLE)
	{
		atomic_fetch_add(&state.dead_letters_dropped, 1);
		return;
	}

	res = PQexecParams(conn, SQL_DEAD_LETTER, 3, types, values, lengths,
					   formats, 0);
	if (PQresultStatus(res) == PGRES_COMMAND_OK)
		atomic_fetch_add(&state.dead_letters, 1);
	else
	{
		atomic_fetch_add(&state.dead_letters_dropped, 1);
		sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		if (sqlstate != NULL && strcmp(sqlstate, "42P01") == 0)
		{
			/* no extension, or an older one: say it once */
			atomic_store(&state.dead_letters_off, true);
			log_warning("mqtt", "livewidget.rejected_message does not exist; "
						"rejected messages are only logged from now on");
		}
		else
			log_warning("mqtt", "could not write a rejected message to "
						"livewidget.rejected_message: %s",
						error_text(conn, res));
	}
	PQclear(res);
}

/*
 * One log line per rejected message: device, topic, reason, and at most
 * LOG_PAYLOAD_BYTES of the payload with everything but printable ASCII
 * escaped, so that a device cannot write lines of its own into the log.
 * The whole message also goes to livewidget.rejected_message, on conn.
 */
static void
log_rejection(PGconn **conn, const char *device, const Message *m,
			  RejectReason reason, const char *detail)
{
	char		dev[4 * READING_MAX_ID + 4];
	char		top[4 * LOG_TOPIC_BYTES + 4];
	char		body[4 * LOG_PAYLOAD_BYTES + 4];
	char		why[1024];

	atomic_fetch_add(&state.rejected[reason], 1);
	snprintf(why, sizeof(why), "%s: %s", reading_reason_name(reason), detail);
	write_dead_letter(conn, m, why);
	if (!log_enabled(LOG_LEVEL_WARNING))
		return;

	reading_escape(device, strlen(device), READING_MAX_ID, dev, sizeof(dev));
	reading_escape(m->topic, strlen(m->topic), LOG_TOPIC_BYTES, top,
				   sizeof(top));
	reading_escape(m->payload, m->len, LOG_PAYLOAD_BYTES, body, sizeof(body));
	log_warning("mqtt", "rejected message from device \"%s\" on topic "
				"\"%s\": %s: %s; payload (%zu bytes): \"%s\"",
				dev, top, reading_reason_name(reason), detail, m->len, body);
}

/* ----------------------------------------------------------------------
 * The database
 *
 * Two connections, each used by one thread at a time: state.conn by
 * on_message() (under state.lock), the worker's by the worker alone.
 * ----------------------------------------------------------------------
 */

/*
 * What a failed store means.  The device is busy (STORE_BUSY) when the
 * statement met a lock or statement timeout (55P03, 57014), a deadlock or
 * a serialization failure (40P01, 40001): the same store will do later.
 * The database is unavailable (STORE_FAILED) when the connection is gone
 * or the error says the server cannot take any message now: connection
 * (08), read-only standby (25), other transaction rollbacks (40), missing
 * table or privilege (42), resources (53), object state (55), shutdown
 * (57), system (58), configuration file (F0), internal (XX).  Everything
 * else (data exceptions 22, constraint violations 23, whatever a trigger
 * raises for a row) is the message's fault: it is rejected (STORE_DONE),
 * not tried again.
 */
static StoreResult
classify_error(PGconn *conn, const PGresult *res)
{
	static const char *const busy[] = {"55P03", "57014", "40P01", "40001"};
	static const char *const unavailable[] = {
		"08", "25", "40", "42", "53", "55", "57", "58", "XX", "F0"
	};
	const char *sqlstate;

	if (conn == NULL || PQstatus(conn) != CONNECTION_OK)
		return STORE_FAILED;
	sqlstate = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	if (sqlstate == NULL || strlen(sqlstate) != 5)
		return STORE_FAILED;	/* an error of libpq itself */
	for (size_t i = 0; i < sizeof(busy) / sizeof(busy[0]); i++)
		if (strcmp(sqlstate, busy[i]) == 0)
			return STORE_BUSY;
	for (size_t i = 0; i < sizeof(unavailable) / sizeof(unavailable[0]); i++)
		if (strncmp(sqlstate, unavailable[i], 2) == 0)
			return STORE_FAILED;
	return STORE_DONE;
}

/* The primary message of an error, on one line */
static const char *
error_text(PGconn *conn, const PGresult *res)
{
	const char *msg = NULL;

	if (res != NULL)
		msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

	if (msg == NULL && conn != NULL)
		msg = PQerrorMessage(conn);
	return msg && *msg ? msg : "unknown error";
}

static void
db_close(PGconn **conn)
{
	if (*conn != NULL)
		PQfinish(*conn);
	*conn = NULL;
}

/* Run a statement that returns nothing; returns the failed result or NULL */
static PGresult *
db_command(PGconn *conn, const char *sql)
{
	PGresult   *res = PQexec(conn, sql);

	if (PQresultStatus(res) == PGRES_COMMAND_OK ||
		PQresultStatus(res) == PGRES_TUPLES_OK)
	{
		PQclear(res);
		return NULL;
	}
	return res;
}

/* Prepare one statement; returns the failed result or NULL */
static PGresult *
db_prepare(PGconn *conn, const char *name, const char *sql, int nparams)
{
	PGresult   *res = PQprepare(conn, name, sql, nparams, NULL);

	if (PQresultStatus(res) == PGRES_COMMAND_OK)
	{
		PQclear(res);
		return NULL;
	}
	return res;
}

/*
 * Messages the server sends on its own (a NOTICE, or the FATAL of a
 * shutdown) would go to stderr raw; make them log lines.
 */
static void
notice_to_log(void *arg, const char *message)
{
	char		line[512];

	snprintf(line, sizeof(line), "%s", message);
	one_line(line);
	log_info("ingest", "database server: %s", line);
}

/*
 * Connect and prepare.  The settings before "dbname" (the user's
 * conninfo, expanded) are defaults it may override; client_encoding comes
 * after it and always wins, since payloads are UTF-8 (JSON) and the server
 * converts them to the database's encoding only when told so: a LATIN1
 * database would otherwise store "°C" as "Â°C".  Returns true, or false
 * with why filled in.
 */
static bool
db_connect(PGconn **conn, char *why, size_t whylen)
{
	const char *const keys[] = {
		"connect_timeout", "application_name", "keepalives_idle",
		"keepalives_interval", "keepalives_count", "dbname",
		"client_encoding", NULL
	};
	const char *const values[] = {
		DB_CONNECT_TIMEOUT, "livewidget-bridge ingest", "10", "5", "3",
		state.cfg->database, "UTF8", NULL
	};
	PGresult   *res;

	db_close(conn);
	*conn = PQconnectdbParams(keys, values, 1);
	if (PQstatus(*conn) != CONNECTION_OK)
	{
		snprintf(why, whylen, "%s", PQerrorMessage(*conn));
		one_line(why);
		db_close(conn);
		atomic_fetch_add(&state.db_errors, 1);
		return false;
	}

	PQsetNoticeProcessor(*conn, notice_to_log, NULL);

	/* a missing table (extension not created) shows here, not later */
	if ((res = db_command(*conn, "SET statement_timeout = '"
						  DB_STATEMENT_TIMEOUT "'; SET lock_timeout = '"
						  DB_LOCK_TIMEOUT "'")) ||
		(res = db_prepare(*conn, "lw_ingest_lock", SQL_LOCK, 1)) ||
		(res = db_prepare(*conn, "lw_ingest_insert", SQL_INSERT, 5)))
	{
		snprintf(why, whylen, "%s", error_text(*conn, res));
		one_line(why);
		PQclear(res);
		db_close(conn);
		atomic_fetch_add(&state.db_errors, 1);
		return false;
	}
	log_debug("ingest", "connected to the database");
	return true;
}

/*
 * Build the parameters of the INSERT: device, then text[], float8[],
 * text[] and timestamptz[] literals.  Returns false when out of memory.
 */
static bool
build_params(const ReadingBatch *batch, StrBuf bufs[4])
{
	char		num[32];
	char		ts[READING_TS_LEN];

	for (int k = 0; k < 4; k++)
		sb_puts(&bufs[k], "{");
	for (int i = 0; i < batch->count; i++)
	{
		const Reading *r = &batch->readings[i];
		const char *sep = i ? "," : "";

		for (int k = 0; k < 4; k++)
			sb_puts(&bufs[k], sep);
		sb_array_text(&bufs[0], r->sensor_type);
		/* 17 significant digits give back the same double */
		snprintf(num, sizeof(num), "%.17g", r->value);
		sb_puts(&bufs[1], num);
		sb_array_text(&bufs[2], r->unit);
		if (r->has_ts)
		{
			reading_format_ts(r->ts_us, ts);
			sb_puts(&bufs[3], ts);
		}
		else
			sb_puts(&bufs[3], "NULL");
	}
	for (int k = 0; k < 4; k++)
		sb_puts(&bufs[k], "}");
	return !bufs[0].failed && !bufs[1].failed && !bufs[2].failed &&
		!bufs[3].failed;
}

/*
 * One transaction: lock the device, insert the readings.  On failure
 * *failed is the failing result (the caller clears it).  Returns the
 * number of rows inserted, or -1.
 */
static int
insert_batch(PGconn *conn, const char *const params[5], PGresult **failed)
{
	PGresult   *res;
	int			inserted;

	*failed = db_command(conn, "BEGIN ISOLATION LEVEL READ COMMITTED");
	if (*failed != NULL)
		return -1;

	res = PQexecPrepared(conn, "lw_ingest_lock", 1, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		goto fail;
	PQclear(res);

	res = PQexecPrepared(conn, "lw_ingest_insert", 5, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		goto fail;
	inserted = atoi(PQcmdTuples(res));
	PQclear(res);

	if ((*failed = db_command(conn, "COMMIT")) != NULL)
		return -1;
	return inserted;

fail:
	*failed = res;
	if (PQstatus(conn) == CONNECTION_OK)
		PQclear(db_command(conn, "ROLLBACK"));
	return -1;
}

/*
 * Store a parsed message.  STORE_DONE when it committed or the database
 * refused it for its content (then it is logged as rejected); STORE_BUSY
 * or STORE_FAILED, with why filled in, when it must be tried again.
 */
static StoreResult
store_batch(PGconn **conn, const char *device, const Message *m,
			ReadingBatch *batch, char *why, size_t whylen)
{
	StrBuf		bufs[4];
	const char *params[5];
	PGresult   *failed = NULL;
	int			inserted;
	StoreResult result = STORE_DONE;

	memset(bufs, 0, sizeof(bufs));
	if (!build_params(batch, bufs))
	{
		/* like a database failure: try again, the memory may come back */
		snprintf(why, whylen, "out of memory building %d readings",
				 batch->count);
		result = STORE_FAILED;
		goto done;
	}
	params[0] = device;
	for (int k = 0; k < 4; k++)
		params[k + 1] = bufs[k].data;

	inserted = insert_batch(*conn, params, &failed);
	if (inserted >= 0)
	{
		atomic_fetch_add(&state.messages_stored, 1);
		atomic_fetch_add(&state.readings_stored,
						 (unsigned long long) inserted);
		atomic_fetch_add(&state.duplicates,
						 (unsigned long long) (batch->count - inserted));
		log_debug("mqtt", "stored %d of %d readings from device \"%s\"",
				  inserted, batch->count, device);
	}
	else if ((result = classify_error(*conn, failed)) == STORE_DONE)
	{
		char		detail[512];

		/* the text first: the dead letter reuses the connection */
		snprintf(detail, sizeof(detail), "%s", error_text(*conn, failed));
		one_line(detail);
		log_rejection(conn, device, m, REJECT_DATABASE, detail);
	}
	else
	{
		atomic_fetch_add(result == STORE_BUSY ? &state.db_busy :
						 &state.db_errors, 1);
		snprintf(why, whylen, "%s", error_text(*conn, failed));
		one_line(why);
		if (PQstatus(*conn) != CONNECTION_OK)
			db_close(conn);
	}
	PQclear(failed);

done:
	for (int k = 0; k < 4; k++)
		free(bufs[k].data);
	return result;
}

/*
 * Store with the connection we have, or a new one.  A connection found
 * broken (the server restarted since it was last used) gets one fresh
 * attempt before the message counts as failed.
 */
static StoreResult
try_store(PGconn **conn, const char *device, const Message *m,
		  ReadingBatch *batch, char *why, size_t whylen)
{
	bool		had_conn = *conn != NULL;
	StoreResult result;

	if (!had_conn && !db_connect(conn, why, whylen))
		return STORE_FAILED;
	result = store_batch(conn, device, m, batch, why, whylen);
	if (result == STORE_FAILED && had_conn && *conn == NULL &&
		db_connect(conn, why, whylen))
		result = store_batch(conn, device, m, batch, why, whylen);
	return result;
}

/* ----------------------------------------------------------------------
 * Messages
 * ----------------------------------------------------------------------
 */

/*
 * Find the device and parse the payload.  Returns false when the message
 * is refused (logged and counted here); batch is to be freed either way.
 */
static bool
parse_message(PGconn **conn, const Message *m, char *device,
			  ReadingBatch *batch)
{
	RejectReason reason;
	bool		senml = false;

	memset(batch, 0, sizeof(*batch));

	/* which subscription: the JSON one, else the SenML one */
	if (reading_topic_device(state.patterns[0], m->topic, device,
							 READING_MAX_ID + 1) != REJECT_NONE)
	{
		senml = true;
		if (reading_topic_device(state.patterns[1], m->topic, device,
								 READING_MAX_ID + 1) != REJECT_NONE)
		{
			log_rejection(conn, "", m, REJECT_BAD_TOPIC, "the topic has no valid "
						  "device id where the subscription has \"+\"");
			return false;
		}
	}

	reason = (senml ? reading_parse_senml : reading_parse_json)
		(m->payload, m->len, device, now_us(), batch);
	if (reason != REJECT_NONE)
	{
		log_rejection(conn, device, m, reason, batch->detail);
		return false;
	}
	return true;
}

/*
 * The device a topic names under either subscription, or "" (a message
 * read back from the spool file that names none is refused at its turn).
 */
static void
topic_device(const char *topic, char *device)
{
	for (int i = 0; i < 2; i++)
		if (reading_topic_device(state.patterns[i], topic, device,
								 READING_MAX_ID + 1) == REJECT_NONE)
			return;
	device[0] = '\0';
}

/* Is there a usable spool file for what is held? */
static bool
spool_keeps_held(void)
{
	return state.spool_fd >= 0 && !state.spool_failed;
}

/*
 * Past the most ingest holds while taking messages: the worker pauses
 * MQTT.  Caller holds state.lock.
 */
static void
check_held_limit(void)
{
	if (state.full || (state.held.messages < HELD_MAX_MESSAGES &&
					   state.held.bytes < HELD_MAX_BYTES))
		return;
	log_warning("ingest", "%d messages (%zu bytes) are held, the most "
				"ingest keeps while taking messages (%d, or %zu MiB); "
				"pausing MQTT until half of them are stored",
				state.held.messages, state.held.bytes, HELD_MAX_MESSAGES,
				HELD_MAX_BYTES >> 20);
	state.full = true;
	pthread_cond_signal(&state.wake);
}

/*
 * Keep a copy of a message behind what its device holds, in memory and
 * in the spool file.  Returns its device, or NULL when it could not be
 * kept.  Caller holds state.lock.
 */
static HeldDevice *
hold_message(const char *device, const Message *m, int msgid, bool to_spool)
{
	HeldDevice *dev;

	dev = held_add(&state.held, device, msgid, m->topic, m->payload, m->len);
	if (dev == NULL)
	{
		/* XXX nowhere to keep it: the broker has its PUBACK, so it is lost */
		log_error("ingest", "out of memory: a message of %zu bytes from "
				  "topic \"%.*s\" is lost", m->len, LOG_TOPIC_BYTES, m->topic);
		return NULL;
	}
	atomic_store(&state.held_count, state.held.messages);

	if (to_spool && spool_keeps_held() &&
		spool_append(state.spool_fd, msgid, m->topic, m->payload, m->len) != 0)
	{
		state.spool_failed = true;
		log_error("ingest", "could not write to spool file \"%s\": %s; "
				  "held messages are kept in memory only",
				  state.cfg->spool_file, strerror(errno));
	}
	check_held_limit();
	return dev;
}

/*
 * The first message of dev is stored (or rejected): drop it.  Returns dev
 * when it has more, else the device after it.  Once nothing is held, the
 * spool file is emptied.  Caller holds state.lock.
 */
static HeldDevice *
release_held(HeldDevice *dev)
{
	HeldDevice *next = dev->next;

	if (dev->busy && dev->count == 1)
		log_info("ingest", "device \"%s\": its held messages are stored; "
				 "its rows are no longer locked", dev->id);
	if (!held_pop(&state.held, dev))
		next = dev;
	atomic_store(&state.held_count, state.held.messages);

	/*
	 * XXX A crash between the last COMMIT and this truncation stores the
	 * spooled messages again at the next start; readings with a device
	 * timestamp are then dropped as duplicates, others are stored twice.
	 * While one device stays busy the file keeps the messages of the
	 * others that were stored meanwhile, widening that window.
	 */
	if (state.held.first == NULL)
	{
		if (state.spool_fd >= 0 && spool_clear(state.spool_fd) != 0)
			log_error("ingest", "could not empty spool file \"%s\": %s",
					  state.cfg->spool_file, strerror(errno));
		state.spool_failed = false;
	}
	return next;
}

/*
 * A device's rows are locked: say so once while it stays busy.  Caller
 * holds state.lock.
 */
static void
note_busy(HeldDevice *dev, const char *why)
{
	if (dev->busy)
		return;
	dev->busy = true;
	log_warning("ingest", "device \"%s\": could not store readings: %s; "
				"holding its messages and retrying (the database answers, "
				"other devices go on)", dev->id, why);
}

/*
 * Enter the holding state (once per outage, logged): the worker
 * disconnects from the broker and retries the database.  Caller holds
 * state.lock.
 */
static void
start_holding(const char *why)
{
	if (!state.holding)
	{
		log_error("ingest", "could not store readings: %s; holding messages "
				  "and pausing MQTT until the database is back", why);
		state.holding = true;
		state.outage_logged = true;
		state.backoff_ms = DB_BACKOFF_MIN_MS;
		atomic_store(&state.ready_db, false);
	}
	pthread_cond_signal(&state.wake);
}

/*
 * Store a message, or hold it: behind what its device holds already,
 * while the database is unavailable, or when storing finds the device
 * busy or the database gone.  Caller holds state.lock.
 */
static void
take_message(const Message *m, int msgid)
{
	char		device[READING_MAX_ID + 1] = "";
	ReadingBatch batch;
	StoreResult result = STORE_DONE;
	HeldDevice *dev;
	char		why[512];

	/* a message refused for its content is logged and counted there */
	if (!parse_message(state.holding ? NULL : &state.conn, m, device, &batch))
	{
		reading_batch_free(&batch);
		return;
	}
	if (state.holding || held_find(&state.held, device) != NULL)
		hold_message(device, m, msgid, true);
	else
		result = try_store(&state.conn, device, m, &batch, why, sizeof(why));
	reading_batch_free(&batch);

	if (result == STORE_BUSY &&
		(dev = hold_message(device, m, msgid, true)) != NULL)
	{
		note_busy(dev, why);
		pthread_cond_signal(&state.wake);
	}
	else if (result == STORE_FAILED)
	{
		hold_message(device, m, msgid, true);
		start_holding(why);
	}
}

/*
 * Parse and store a held message on the worker's connection (no lock
 * needed: the message stays put until the worker releases it).
 */
static StoreResult
store_held_message(PGconn **conn, const HeldMessage *h, char *why,
				   size_t whylen)
{
	Message		m = {h->topic, h->payload, h->len};
	char		device[READING_MAX_ID + 1] = "";
	ReadingBatch batch;
	StoreResult result = STORE_DONE;

	if (parse_message(conn, &m, device, &batch))
		result = try_store(conn, device, &m, &batch, why, whylen);
	reading_batch_free(&batch);
	return result;
}

/* Milliseconds of the monotonic clock */
static long long
monotonic_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long long) now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* FNV-1a over the topic, a NUL and the payload */
static uint64_t
content_hash(const Message *m)
{
	uint64_t	h = UINT64_C(14695981039346656037);
	const unsigned char *p = (const unsigned char *) m->topic;

	for (size_t i = 0; i <= strlen(m->topic); i++)
		h = (h ^ p[i]) * UINT64_C(1099511628211);
	p = (const unsigned char *) m->payload;
	for (size_t i = 0; i < m->len; i++)
		h = (h ^ p[i]) * UINT64_C(1099511628211);
	return h;
}

/*
 * Remember a message taken on connection; for the spool, also the ids of
 * the current one.  Caller holds state.lock.
 */
static void
remember_taken(int msgid, uint64_t hash, uint32_t connection)
{
	if (msgid <= 0 || msgid > 65535)
		return;
	state.taken[msgid].hash = hash;
	state.taken[msgid].connection = connection;
	state.taken[msgid].used = true;
	if (connection == state.connection)
		state.ring[state.ring_count++ % TAKEN_RING] = (uint16_t) msgid;
}

/*
 * Is this a redelivery of a message taken on the previous connection?
 * Otherwise remember it.  Caller holds state.lock.
 *
 * XXX A new message is taken for a redelivery only if the broker gave it
 * the packet id of an identical message (same topic, same payload) of the
 * previous connection and it never arrived before; ids are reused only
 * after 65535 messages, so that needs an identical message that far back
 * lost in the very connection reset described at the top.
 */
static bool
is_redelivery(int msgid, bool dup, const Message *m)
{
	uint64_t	hash = content_hash(m);
	TakenId    *t;

	if (msgid <= 0 || msgid > 65535)
		return false;
	t = &state.taken[msgid];
	if (dup && t->used && t->hash == hash &&
		t->connection + 1 == state.connection)
		return true;
	remember_taken(msgid, hash, state.connection);
	return false;
}

/*
 * At a stop, write the ids taken on the last connection to the spool file,
 * for the next start.  Caller holds state.lock.
 */
static void
spool_taken_ids(void)
{
	SpoolId		ids[TAKEN_RING];
	int			n = state.ring_count < TAKEN_RING ?
		(int) state.ring_count : TAKEN_RING;

	if (state.spool_fd < 0 || state.spool_failed)
		return;
	for (int i = 0; i < n; i++)
	{
		int			id;

		id = state.ring[(state.ring_count - (uint64_t) n + i) % TAKEN_RING];

		ids[i].msgid = id;
		ids[i].hash = state.taken[id].hash;
	}
	if (spool_append_ids(state.spool_fd, ids, n) != 0)
		log_error("ingest", "could not write to spool file \"%s\": %s",
				  state.cfg->spool_file, strerror(errno));
}

/* ----------------------------------------------------------------------
 * paho callbacks (paho's threads)
 * ----------------------------------------------------------------------
 */

static void mqtt_disconnect(void);

/*
 * A message arrived (paho has already acknowledged it, see the top of the
 * file).  It is always taken (return 1): stored, rejected, or held.
 */
static int
on_message(void *context, char *topic, int topic_len, MQTTAsync_message *msg)
{
	Message		m = {topic, msg->payload, (size_t) msg->payloadlen};

	atomic_fetch_add(&state.received, 1);

	if (topic_len > 0 && (size_t) topic_len != strlen(topic))
	{
		/* a NUL inside the topic cannot match a pattern: refuse it whole */
		/* no dead letter: a text column cannot hold the topic either */
		log_rejection(NULL, "", &m, REJECT_BAD_TOPIC,
					  "the topic holds a NUL byte");
	}
	else if (msg->retained)
	{
		/*
		 * A retained message comes with every new subscription; it was
		 * stored when it was published live, or predates this session.
		 */
		atomic_fetch_add(&state.retained_skipped, 1);
		log_debug("mqtt", "skipped a retained message on topic \"%.*s\"",
				  LOG_TOPIC_BYTES, topic);
	}
	else
	{
		pthread_mutex_lock(&state.lock);
		if (is_redelivery(msg->msgid, msg->dup, &m))
		{
			atomic_fetch_add(&state.redeliveries, 1);
			log_debug("mqtt", "skipped a redelivery (packet id %d) on topic "
					  "\"%.*s\"", msg->msgid, LOG_TOPIC_BYTES, topic);
		}
		else
			take_message(&m, msg->msgid);
		pthread_mutex_unlock(&state.lock);
	}

	MQTTAsync_freeMessage(&msg);
	MQTTAsync_free(topic);

	/*
	 * A disconnect is coming: paho reads nothing until this returns, so
	 * the broker gets the time to read this message's PUBACK first.
	 */
	if (atomic_load(&state.quiescing) &&
		monotonic_ms() < atomic_load(&state.quiesce_until_ms))
		usleep(QUIESCE_MS * 1000);
	return 1;
}

static void
on_subscribed(void *context, MQTTAsync_successData *response)
{
	/* two subscriptions: paho reports the granted QoS as a list */
	const int  *granted = response->alt.qosList;

	for (int i = 0; i < 2; i++)
	{
		if (granted[i] == 0x80)
		{
			log_error("mqtt", "the broker refused the subscription to \"%s\"",
					  state.topics[i]);
			return;
		}
		if (granted[i] == 0)
			log_warning("mqtt", "the broker granted QoS 0 for \"%s\": "
						"messages may be lost", state.topics[i]);
	}
	atomic_store(&state.subscribed, true);
	log_info("mqtt", "subscribed to \"%s\" and \"%s\"",
			 state.topics[0], state.topics[1]);
}

static void
on_subscribe_failed(void *context, MQTTAsync_failureData *response)
{
	log_error("mqtt", "could not subscribe: %s (code %d)",
			  response && response->message ? response->message :
			  MQTTAsync_strerror(response ? response->code : -1),
			  response ? response->code : -1);
}

/* Every successful connect, first or automatic: subscribe again */
static void
on_connected(void *context, char *cause)
{
	MQTTAsync_responseOptions opts = MQTTAsync_responseOptions_initializer;
	int			qos[2] = {1, 1};
	int			rc;
	bool		wanted;

	/* a new connection: what the last one took may come again (DUP) */
	pthread_mutex_lock(&state.lock);
	state.connection++;
	state.ring_count = 0;
	wanted = state.mqtt_wanted;
	pthread_mutex_unlock(&state.lock);

	/* an attempt that was under way when the database failed, or at stop */
	if (!wanted)
	{
		log_debug("mqtt", "connected while the broker is not wanted: "
				  "disconnecting");
		mqtt_disconnect();
		return;
	}

	atomic_store(&state.mqtt_connected, true);
	atomic_store(&state.subscribed, false);
	atomic_store(&state.mqtt_failure_logged, false);
	log_info("mqtt", "connected to broker %s", state.cfg->mqtt_url);

	opts.onSuccess = on_subscribed;
	opts.onFailure = on_subscribe_failed;
	rc = MQTTAsync_subscribeMany(state.client, 2, state.topics, qos, &opts);
	if (rc != MQTTASYNC_SUCCESS)
		log_error("mqtt", "could not subscribe: %s", MQTTAsync_strerror(rc));
}

/*
 * Why a connect failed: a refusal by the broker comes as the CONNACK
 * return code of MQTT 3.1.1 (1 to 5), anything else as a paho error.
 */
static const char *
connect_failure(const MQTTAsync_failureData *response)
{
	static const char *const refusals[] = {
		NULL, "unacceptable protocol version", "client id rejected",
		"broker unavailable", "bad user name or password", "not authorized"
	};

	if (response == NULL)
		return "unknown error";
	if (response->code >= 1 && response->code <= 5)
		return refusals[response->code];
	if (response->message != NULL)
		return response->message;
	return MQTTAsync_strerror(response->code);
}

static void
on_connect_failed(void *context, MQTTAsync_failureData *response)
{
	/* paho retries by itself; say so once per outage */
	if (atomic_exchange(&state.mqtt_failure_logged, true))
		return;
	log_error("mqtt", "could not connect to broker %s: %s; retrying",
			  state.cfg->mqtt_url, connect_failure(response));
}

static void
on_connection_lost(void *context, char *cause)
{
	atomic_store(&state.mqtt_connected, false);
	atomic_store(&state.subscribed, false);
	/* this line covers the failed attempts to reconnect that follow */
	atomic_store(&state.mqtt_failure_logged, true);
	log_warning("mqtt", "lost the connection to broker %s%s%s; reconnecting",
				state.cfg->mqtt_url, cause ? ": " : "", cause ? cause : "");
}

static void
on_disconnected(void *context, MQTTAsync_successData *response)
{
	atomic_store(&state.disconnect_done, true);
}

static void
on_disconnect_failed(void *context, MQTTAsync_failureData *response)
{
	atomic_store(&state.disconnect_done, true);
}

/* ----------------------------------------------------------------------
 * Connecting and disconnecting (never with state.lock held)
 * ----------------------------------------------------------------------
 */

static void
mqtt_connect(void)
{
	MQTTAsync_connectOptions opts = MQTTAsync_connectOptions_initializer;
	int			rc;

	opts.keepAliveInterval = MQTT_KEEPALIVE;
	opts.cleansession = 0;		/* the broker keeps our messages */
	opts.MQTTVersion = MQTTVERSION_3_1_1;
	opts.automaticReconnect = 1;
	opts.minRetryInterval = MQTT_RETRY_MIN;
	opts.maxRetryInterval = MQTT_RETRY_MAX;
	opts.username = state.cfg->mqtt_username;
	opts.password = state.password;
	opts.onFailure = on_connect_failed;

	rc = MQTTAsync_connect(state.client, &opts);
	if (rc != MQTTASYNC_SUCCESS)
		log_error("mqtt", "could not start connecting to broker %s: %s",
				  state.cfg->mqtt_url, MQTTAsync_strerror(rc));
}

static void
mqtt_disconnect(void)
{
	MQTTAsync_disconnectOptions opts = MQTTAsync_disconnectOptions_initializer;

	atomic_store(&state.disconnect_done, false);
	opts.timeout = MQTT_DISCONNECT_MS;
	opts.onSuccess = on_disconnected;
	opts.onFailure = on_disconnect_failed;
	if (MQTTAsync_disconnect(state.client, &opts) != MQTTASYNC_SUCCESS)
		atomic_store(&state.disconnect_done, true);
	atomic_store(&state.mqtt_connected, false);
	atomic_store(&state.subscribed, false);
}

/*
 * Let the broker go: give it QUIESCE_MS to read the last PUBACKs (see
 * "Redeliveries" at the top), disconnect, and wait until paho is done (a
 * message it acknowledges meanwhile still reaches on_message()).  Called
 * without state.lock, by whoever set mqtt_wanted to false.
 *
 * Under a steady stream paho's receive thread may take its mutex back
 * again and again before the disconnect gets it, one message (and one
 * pause) at a time, so this waits up to 5 s, and only the messages taken
 * in the first QUIESCE_WINDOW_MS pause: past that, a PUBACK the broker
 * loses brings a redelivery, recognised by this process or, with
 * spool_file, by the next (see "Redeliveries").
 */
static void
let_broker_go(void)
{
	atomic_store(&state.quiesce_until_ms, monotonic_ms() + QUIESCE_WINDOW_MS);
	atomic_store(&state.quiescing, true);
	usleep(QUIESCE_MS * 1000);
	mqtt_disconnect();
	for (int i = 0; i < 500 && !atomic_load(&state.disconnect_done); i++)
		usleep(10000);
}

/* ----------------------------------------------------------------------
 * The worker: database availability, held messages, pausing MQTT
 * ----------------------------------------------------------------------
 */

/* Wait up to ms for a signal; caller holds state.lock */
static void
wait_ms(int ms)
{
	struct timespec until;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (long) (ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L)
	{
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&state.wake, &state.lock, &until);
}

/*
 * One pass over the held messages on the worker's connection, letting go
 * of state.lock while the database works: each device's messages in
 * order, until one of them cannot be stored.  Returns STORE_FAILED (why
 * filled in) when the database is unavailable, STORE_BUSY when busy
 * devices are left, STORE_DONE when nothing is held any more; *stored
 * counts the messages stored.  Caller holds state.lock.
 */
static StoreResult
retry_held(PGconn **conn, int *stored, char *why, size_t whylen)
{
	HeldDevice *dev;
	bool		connected;

	if (*conn == NULL)
	{
		pthread_mutex_unlock(&state.lock);
		connected = db_connect(conn, why, whylen);
		pthread_mutex_lock(&state.lock);
		if (!connected)
			return STORE_FAILED;
	}

	/* a stop with a spool file leaves the rest to the next start */
	dev = state.held.first;
	while (dev != NULL && !(state.stopping && spool_keeps_held()))
	{
		const HeldMessage *h = dev->head;
		StoreResult result;

		pthread_mutex_unlock(&state.lock);
		result = store_held_message(conn, h, why, whylen);
		pthread_mutex_lock(&state.lock);

		if (result == STORE_FAILED)
			return STORE_FAILED;
		if (result == STORE_BUSY)
		{
			note_busy(dev, why);
			dev = dev->next;
			continue;
		}
		(*stored)++;
		dev = release_held(dev);
	}
	return state.held.first == NULL ? STORE_DONE : STORE_BUSY;
}

/*
 * The database did not answer: an outage begins, or goes on (said once).
 * Caller holds state.lock.
 */
static void
database_away(const char *why)
{
	if (!state.holding)
		start_holding(why);
	else if (!state.outage_logged)
	{
		/* at start, before any message was held */
		log_error("ingest", "could not connect to the database: %s; "
				  "MQTT stays disconnected until it answers", why);
		state.outage_logged = true;
	}
}

/* Wait before the next attempt, longer each time.  Caller holds state.lock. */
static void
back_off(void)
{
	int			max = state.stopping ? STOP_BACKOFF_MAX_MS : DB_BACKOFF_MAX_MS;

	if (state.backoff_ms > max)
		state.backoff_ms = max;
	wait_ms(state.backoff_ms);
	state.backoff_ms = state.backoff_ms * 2 > max ? max : state.backoff_ms * 2;
}

/*
 * The database answered (and took what it could): an outage ends, and
 * MQTT may take messages again once what is held is down to half the
 * limit.  Caller holds state.lock.
 */
static void
database_answers(int stored)
{
	state.backoff_ms = DB_BACKOFF_MIN_MS;
	if (state.holding)
	{
		if (state.outage_logged)
			log_info("ingest", "the database is back; stored %d held "
					 "message%s%s", stored, stored == 1 ? "" : "s",
					 state.stopping || state.full ? "" :
					 ", connecting to the broker again");
		state.holding = false;
		state.outage_logged = false;
		atomic_store(&state.ready_db, true);
	}
	if (state.full && state.held.messages <= HELD_MAX_MESSAGES / 2 &&
		state.held.bytes <= HELD_MAX_BYTES / 2)
	{
		log_info("ingest", "%d messages are held, half the most ingest "
				 "keeps while taking messages or fewer; taking messages "
				 "again", state.held.messages);
		state.full = false;
	}
}

/*
 * A stop waiting for held messages says so every STOP_LOG_SECONDS, from
 * the first attempt on.  Caller holds state.lock.
 */
static void
log_stop_wait(StoreResult result, const char *why, time_t *next)
{
	struct timespec now;
	int			n = state.held.messages;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (n == 0 || spool_keeps_held() || now.tv_sec < *next)
		return;
	*next = now.tv_sec + STOP_LOG_SECONDS;
	log_warning("ingest", "stopping: %d held message%s not stored yet: %s "
				"(%s); retrying until %s; a second SIGTERM or SIGINT stops "
				"at once and loses %s", n, n == 1 ? " is" : "s are",
				result == STORE_FAILED ? "the database is unreachable" :
				"rows of their devices are locked by other transactions",
				why, result == STORE_FAILED ? "it answers" :
				"the locks are released", n == 1 ? "it" : "them");
}

/*
 * Done at a stop once the broker is let go and what is held is stored, or
 * kept in the spool file.  Caller holds state.lock.
 */
static bool
worker_done(void)
{
	return state.stopping && state.mqtt_closed &&
		(state.held.first == NULL || spool_keeps_held());
}

/* Tell paho to take messages again.  Caller holds state.lock. */
static void
resume_mqtt(void)
{
	state.mqtt_wanted = true;
	atomic_store(&state.quiescing, false);
	pthread_mutex_unlock(&state.lock);
	mqtt_connect();
	pthread_mutex_lock(&state.lock);
}

/* The broker keeps messages from now on.  Caller holds state.lock. */
static void
pause_mqtt(void)
{
	state.mqtt_wanted = false;
	pthread_mutex_unlock(&state.lock);
	let_broker_go();
	pthread_mutex_lock(&state.lock);
}

static void *
ingest_worker(void *arg)
{
	PGconn	   *conn = NULL;	/* the worker's own connection */
	char		why[512] = "";
	time_t		next_stop_log = 0;
	StoreResult result;
	int			stored;

	pthread_mutex_lock(&state.lock);
	while (!worker_done())
	{
		/* MQTT: off while the database is away or too much is held */
		if (state.mqtt_wanted && (state.holding || state.full))
		{
			pause_mqtt();
			continue;
		}
		if (!state.mqtt_wanted && !state.holding && !state.full &&
			!state.stopping)
		{
			resume_mqtt();
			continue;
		}
		if (state.held.first == NULL && !state.holding)
		{
			pthread_cond_wait(&state.wake, &state.lock);
			continue;
		}

		stored = 0;
		result = retry_held(&conn, &stored, why, sizeof(why));
		if (result == STORE_FAILED)
			database_away(why);
		else
			database_answers(stored);
		if (state.stopping)
			log_stop_wait(result, why, &next_stop_log);
		if (result == STORE_FAILED)
			back_off();
		else if (result == STORE_BUSY)
			wait_ms(BUSY_RETRY_MS);
	}
	pthread_mutex_unlock(&state.lock);
	db_close(&conn);
	return NULL;
}

/* ----------------------------------------------------------------------
 * Public functions (main thread)
 * ----------------------------------------------------------------------
 */

/* "$share/<group>/<pattern>" or the pattern itself */
static char *
subscription(const char *pattern)
{
	char	   *topic;

	if (state.cfg->mqtt_shared_group == NULL)
		return strdup(pattern);
	if (asprintf(&topic, "$share/%s/%s", state.cfg->mqtt_shared_group,
				 pattern) < 0)
		return NULL;
	return topic;
}

/* Read the broker password, if configured; returns false on failure */
static bool
read_password(void)
{
	size_t		len;

	if (state.cfg->mqtt_password_file == NULL)
		return true;
	state.password = config_read_secret(state.cfg->mqtt_password_file, &len);
	if (state.password == NULL)
	{
		log_fatal("mqtt", "could not read mqtt_password_file \"%s\": %s",
				  state.cfg->mqtt_password_file, strerror(errno));
		return false;
	}
	if (strlen(state.password) != len)
	{
		log_fatal("mqtt", "mqtt_password_file \"%s\" holds a NUL byte",
				  state.cfg->mqtt_password_file);
		return false;
	}
	return true;
}

static bool
create_client(void)
{
	MQTTAsync_createOptions opts = MQTTAsync_createOptions_initializer;
	int			rc;

	opts.MQTTVersion = MQTTVERSION_3_1_1;
	rc = MQTTAsync_createWithOptions(&state.client, state.cfg->mqtt_url,
									 state.cfg->mqtt_client_id,
									 MQTTCLIENT_PERSISTENCE_NONE, NULL, &opts);
	if (rc != MQTTASYNC_SUCCESS)
	{
		log_fatal("mqtt", "could not create the MQTT client for %s: %s",
				  state.cfg->mqtt_url, MQTTAsync_strerror(rc));
		return false;
	}
	state.created = true;
	if ((rc = MQTTAsync_setCallbacks(state.client, NULL, on_connection_lost,
									 on_message, NULL)) != MQTTASYNC_SUCCESS ||
		(rc = MQTTAsync_setConnected(state.client, NULL, on_connected)) !=
		MQTTASYNC_SUCCESS)
	{
		log_fatal("mqtt", "could not set the MQTT callbacks: %s",
				  MQTTAsync_strerror(rc));
		return false;
	}
	return true;
}

/* spool_read() hands over a held message of a previous run */
static void
load_spooled(int msgid, const char *topic, const char *payload, size_t len,
			 void *arg)
{
	Message		m = {topic, payload, len};
	char		device[READING_MAX_ID + 1];

	topic_device(topic, device);
	hold_message(device, &m, msgid, false);
	remember_taken(msgid, content_hash(&m), 0);
}

/* ... and a message the previous run took on its last connection */
static void
load_taken(int msgid, uint64_t hash, void *arg)
{
	remember_taken(msgid, hash, 0);
}

/*
 * Open the spool file and take back what a previous run left in it: those
 * messages are stored before anything else.  Returns false on failure.
 */
static bool
open_spool(void)
{
	const SpoolReader reader = {load_spooled, load_taken, NULL};
	char		why[256];
	int			n;

	if (state.cfg->spool_file == NULL)
		return true;
	state.spool_fd = spool_open(state.cfg->spool_file);
	if (state.spool_fd < 0)
	{
		log_fatal("ingest", "could not open spool file \"%s\": %s",
				  state.cfg->spool_file, errno == EBUSY ?
				  "another process uses it" : strerror(errno));
		return false;
	}
	n = spool_read(state.spool_fd, READING_MAX_PAYLOAD, &reader,
				   why, sizeof(why));
	if (n < 0)
		log_error("ingest", "spool file \"%s\": %s; %d message%s before "
				  "it will be stored, the rest is lost", state.cfg->spool_file,
				  why, atomic_load(&state.held_count),
				  atomic_load(&state.held_count) == 1 ? "" : "s");
	else if (atomic_load(&state.held_count) > 0)
		log_info("ingest", "%d message%s from spool file \"%s\" will be "
				 "stored first", atomic_load(&state.held_count),
				 atomic_load(&state.held_count) == 1 ? "" : "s",
				 state.cfg->spool_file);
	return true;
}

int
ingest_start(const Config *cfg)
{
	pthread_condattr_t attr;

	state.cfg = cfg;
	state.patterns[0] = cfg->mqtt_topic;
	state.patterns[1] = cfg->mqtt_senml_topic;
	state.topics[0] = subscription(cfg->mqtt_topic);
	state.topics[1] = subscription(cfg->mqtt_senml_topic);
	if (state.topics[0] == NULL || state.topics[1] == NULL)
	{
		log_fatal("mqtt", "out of memory");
		return -1;
	}
	if (!read_password() || !open_spool() || !create_client())
		return -1;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&state.wake, &attr);
	pthread_condattr_destroy(&attr);

	/* the worker connects to the database first, then to the broker */
	state.holding = true;
	state.backoff_ms = DB_BACKOFF_MIN_MS;
	if (pthread_create(&state.worker, NULL, ingest_worker, NULL) != 0)
	{
		log_fatal("ingest", "could not start the ingest thread");
		return -1;
	}
	state.worker_running = true;
	return 0;
}

/*
 * What is still held when the worker is done at a stop waits in the spool
 * file for the next start; without one (the worker never ran) it is lost,
 * and said so.  Caller holds state.lock.
 */
static void
drop_held(void)
{
	int			left = state.held.messages;

	spool_taken_ids();
	if (left > 0 && spool_keeps_held())
		log_info("ingest", "%d held message%s wait%s in spool file \"%s\" "
				 "for the next start", left, left == 1 ? "" : "s",
				 left == 1 ? "s" : "", state.cfg->spool_file);
	else if (left > 0)
		log_error("ingest", "%d message%s acknowledged to the broker could "
				  "not be stored before stopping and %s lost",
				  left, left == 1 ? "" : "s", left == 1 ? "is" : "are");
	held_clear(&state.held);
	atomic_store(&state.held_count, 0);
}

/*
 * Stop taking messages, let the broker go, and return once every held
 * message is stored (without a spool file, however long the database
 * takes: see "Stopping" at the top).
 */
void
ingest_stop(void)
{
	bool		connected;

	if (!state.created)
		return;

	/* no new work for the worker but held messages; MQTT is ours now */
	pthread_mutex_lock(&state.lock);
	state.stopping = true;
	connected = state.mqtt_wanted;
	state.mqtt_wanted = false;
	pthread_cond_signal(&state.wake);
	pthread_mutex_unlock(&state.lock);

	if (connected)
		let_broker_go();

	pthread_mutex_lock(&state.lock);
	state.mqtt_closed = true;
	pthread_cond_signal(&state.wake);
	pthread_mutex_unlock(&state.lock);
	if (state.worker_running)
		pthread_join(state.worker, NULL);

	pthread_mutex_lock(&state.lock);
	drop_held();
	db_close(&state.conn);
	if (state.spool_fd >= 0)
		close(state.spool_fd);
	state.spool_fd = -1;
	pthread_mutex_unlock(&state.lock);

	MQTTAsync_destroy(&state.client);
	state.created = false;
	free(state.topics[0]);
	free(state.topics[1]);
	if (state.password)
		explicit_bzero(state.password, strlen(state.password));
	free(state.password);
	state.topics[0] = state.topics[1] = state.password = NULL;
	log_info("mqtt", "ingest stopped");
}

bool
ingest_ready(void)
{
	return atomic_load(&state.mqtt_connected) &&
		atomic_load(&state.subscribed) && atomic_load(&state.ready_db);
}

/* ----------------------------------------------------------------------
 * Metrics
 * ----------------------------------------------------------------------
 */

typedef struct MetricsBuf
{
	char	   *buf;
	size_t		size;
	size_t		len;
	bool		full;
} MetricsBuf;

/* Append a whole line or nothing */
static void
metric_line(MetricsBuf *m, const char *fmt,...)
__attribute__((format(printf, 2, 3)));

static void
metric_line(MetricsBuf *m, const char *fmt,...)
{
	va_list		ap;
	int			n;

	if (m->full)
		return;
	va_start(ap, fmt);
	n = vsnprintf(m->buf + m->len, m->size - m->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t) n >= m->size - m->len)
	{
		m->buf[m->len] = '\0';
		m->full = true;
		return;
	}
	m->len += (size_t) n;
}

static void
metric(MetricsBuf *m, const char *name, const char *type, const char *help,
	   unsigned long long value)
{
	metric_line(m, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n",
				name, help, name, type, name, value);
}

size_t
ingest_metrics(char *buf, size_t len)
{
	MetricsBuf	m = {buf, len, 0, len == 0};
	const char *rej = "livewidget_ingest_messages_rejected_total";

	if (len > 0)
		buf[0] = '\0';
	metric(&m, "livewidget_ingest_messages_received_total", "counter",
		   "MQTT messages received.", atomic_load(&state.received));
	metric(&m, "livewidget_ingest_messages_stored_total", "counter",
		   "Messages whose readings were committed.",
		   atomic_load(&state.messages_stored));
	metric(&m, "livewidget_ingest_readings_stored_total", "counter",
		   "Readings inserted into livewidget.sensor_data.",
		   atomic_load(&state.readings_stored));
	metric(&m, "livewidget_ingest_readings_duplicate_total", "counter",
		   "Readings dropped as duplicates of stored ones.",
		   atomic_load(&state.duplicates));
	metric_line(&m, "# HELP %s Messages rejected, by reason.\n"
				"# TYPE %s counter\n", rej, rej);
	for (int r = REJECT_NONE + 1; r < REJECT_NUM_REASONS; r++)
		metric_line(&m, "%s{reason=\"%s\"} %llu\n", rej,
					reading_reason_name((RejectReason) r),
					atomic_load(&state.rejected[r]));
	metric(&m, "livewidget_ingest_dead_letters_total", "counter",
		   "Rejected messages written to livewidget.rejected_message.",
		   atomic_load(&state.dead_letters));
	metric(&m, "livewidget_ingest_dead_letters_dropped_total", "counter",
		   "Rejected messages only logged: over the rate limit, or not writable.",
		   atomic_load(&state.dead_letters_dropped));
	metric(&m, "livewidget_ingest_retained_skipped_total", "counter",
		   "Retained messages skipped.", atomic_load(&state.retained_skipped));
	metric(&m, "livewidget_ingest_redeliveries_skipped_total", "counter",
		   "Messages sent again by the broker after they were taken.",
		   atomic_load(&state.redeliveries));
	metric(&m, "livewidget_ingest_db_errors_total", "counter",
		   "Failed attempts to reach or write the database.",
		   atomic_load(&state.db_errors));
	metric(&m, "livewidget_ingest_db_busy_total", "counter",
		   "Stores that met a lock or statement timeout; retried.",
		   atomic_load(&state.db_busy));
	metric(&m, "livewidget_ingest_messages_held", "gauge",
		   "Messages taken from the broker, not stored yet.",
		   (unsigned long long) atomic_load(&state.held_count));
	metric(&m, "livewidget_ingest_mqtt_connected", "gauge",
		   "1 while connected to the broker.",
		   atomic_load(&state.mqtt_connected) ? 1 : 0);
	metric(&m, "livewidget_ingest_ready", "gauge",
		   "1 while connected, subscribed and able to store.",
		   ingest_ready() ? 1 : 0);
	return m.len;
}
