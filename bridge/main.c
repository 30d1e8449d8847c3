/*-------------------------------------------------------------------------
 *
 * main.c
 *		livewidget-bridge: device readings in over MQTT, widget samples out
 *		over HTTP and WebSocket, the database in between.
 *
 *	  devices --MQTT--> [ingest: paho threads] --INSERT--> PostgreSQL
 *	                                                          |
 *	           C trigger: widget_sample buffer + NOTIFY widget_<id>
 *	                                                          |
 *	  browsers <--WS/HTTP-- [lws loop: main thread] <--LISTEN/queries--
 *	                               ^                  [db thread]
 *	                               +--- events, lws_cancel_service()
 *
 * Ingest and delivery meet only in the database: what a browser sees is
 * what committed, and several bridges on one database see the same.
 *
 * Threads: the main thread runs the libwebsockets loop and owns every
 * HTTP/WebSocket session; the db thread (listen.c) owns the delivery
 * connection; paho's threads run ingest with a connection of their own.
 * Signals are blocked everywhere but in the main thread, whose handlers
 * only set flags that the loop reads.
 *
 *-------------------------------------------------------------------------
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "config.h"
#include "ingest.h"
#include "listen.h"
#include "log.h"
#include "server.h"

#define DRAIN_SECONDS 2			/* how long viewers get to see a 1001 */

static volatile sig_atomic_t stop_requests;
static volatile sig_atomic_t reload_requested;

/*
 * The first stop signal asks the loop for a graceful stop.  The second
 * means "now", even while the main thread is blocked draining ingest, so
 * it ends the process from the handler itself: _exit() is async-signal
 * safe, and nothing is left to flush that a graceful stop was not already
 * giving up on.
 */
static void
on_stop_signal(int signo)
{
	if (++stop_requests >= 2)
		_exit(1);
}

static void
on_reload_signal(int signo)
{
	reload_requested = 1;
}

/*
 * Block the signals we handle before any thread starts, so that only the
 * main thread (which unblocks them later) ever runs a handler.
 */
static void
block_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, set, NULL);
	signal(SIGPIPE, SIG_IGN);
}

static void
install_handlers(const sigset_t *set)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal;	/* no SA_RESTART: poll() returns */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = on_reload_signal;
	sigaction(SIGHUP, &sa, NULL);
	pthread_sigmask(SIG_UNBLOCK, set, NULL);
}

/*
 * A periodic wakeup, so that a signal that lands just before poll() is
 * seen within a quarter of a second rather than at the next event.
 */
static struct lws_context *context;
static lws_sorted_usec_list_t tick;
static int	ticks;

static void
on_tick(lws_sorted_usec_list_t *sul)
{
	if (++ticks % (WS_RECHECK_SECONDS * 4) == 0)
		ws_recheck_all();
	lws_sul_schedule(context, 0, sul, on_tick, 250 * LWS_US_PER_MS);
}

/* SIGHUP rereads the configuration; config_reload() applies what it can. */
static void
run_loop(Config *cfg, int argc, char **argv)
{
	while (stop_requests == 0)
	{
		if (lws_service(context, 0) < 0)
			break;
		if (reload_requested)
		{
			reload_requested = 0;
			if (config_reload(cfg, argc, argv) != 0)
				log_warning("main", "configuration not reloaded: it has errors");
		}
	}
}

/*
 * Stop taking readings first (what the broker has not had acknowledged
 * stays with it), then tell viewers with 1001 and give the loop a moment
 * to send that.  A second signal ends the process at once.
 */
static void
drain(void)
{
	time_t		deadline = time(NULL) + DRAIN_SECONDS;

	log_info("main", "stopping");
	ingest_stop();
	server_close_all();
	while (!server_idle() && time(NULL) < deadline)
		lws_service(context, 0);
}

int
main(int argc, char **argv)
{
	Config		cfg;
	sigset_t	handled;
	int			rc;

	memset(&cfg, 0, sizeof(cfg));
	rc = config_load(&cfg, argc, argv);
	if (rc != 0)
	{
		config_free(&cfg);
		return rc > 0 ? 0 : 2;
	}
	log_set_level(cfg.log_level);
	block_signals(&handled);

	rc = 1;
	if (auth_init(&cfg) != 0 || (context = server_create(&cfg)) == NULL)
		goto cleanup;
	if (listen_start(cfg.database, context) != 0 || ingest_start(&cfg) != 0)
		goto cleanup;
	install_handlers(&handled);
	lws_sul_schedule(context, 0, &tick, on_tick, 250 * LWS_US_PER_MS);
	log_info("main", "livewidget-bridge %s started", LW_VERSION);

	run_loop(&cfg, argc, argv);
	drain();
	lws_sul_cancel(&tick);
	log_info("main", "stopped");
	rc = 0;

cleanup:
	if (context != NULL)
		lws_context_destroy(context);
	listen_stop();
	auth_shutdown();
	config_free(&cfg);
	return rc;
}
