/*-------------------------------------------------------------------------
 *
 * auth.h
 *		Viewer tokens: JWT verification and dashboard grants.
 *
 * The algorithm comes from the configuration (HS256 for a secret file;
 * RS256 or ES256 from the type of a public key file), never from the
 * token.  Verification is pure computation: any thread may call
 * auth_verify() once auth_init() has returned.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LW_AUTH_H
#define LW_AUTH_H

#include <stdbool.h>
#include <time.h>

#include "config.h"

#define AUTH_LEEWAY_SECONDS 5	/* clock skew allowed on exp and nbf */
#define AUTH_MAX_TOKEN		8192	/* longer tokens are refused unread */
#define AUTH_MAX_DASHBOARDS 1024	/* entries of the "dashboards" claim */
#define UUID_TEXT_LEN		36

typedef struct Grant
{
	time_t		expires;		/* the token's exp */
	int			ndashboards;
	char		(*dashboards)[UUID_TEXT_LEN + 1];	/* lower-case uuids */
} Grant;

/* Load the key named by the configuration; -1 after logging why. */
extern int	auth_init(const Config *cfg);
extern void auth_shutdown(void);

/*
 * Verify token.  On success fill grant and return NULL; on failure return
 * a short reason fit for a client ("token expired"), never the token.
 */
extern const char *auth_verify(const char *token, Grant *grant);
extern void grant_free(Grant *grant);
extern bool grant_allows(const Grant *grant, const char *dashboard_uuid);

/*
 * Check a uuid in its 36-character text form and copy it in lower case
 * to out (UUID_TEXT_LEN + 1 bytes).  Returns false if it is not one.
 */
extern bool uuid_normalize(const char *in, char *out);

#endif							/* LW_AUTH_H */
