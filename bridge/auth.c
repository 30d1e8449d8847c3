/*-------------------------------------------------------------------------
 *
 * auth.c
 *		Viewer tokens: JWT verification and dashboard grants.
 *
 * libjwt checks the signature; everything else a token must satisfy is
 * checked here against its claims, read once as JSON with jansson: the
 * algorithm the configuration fixed, exp (required), nbf, iss, aud and the
 * "dashboards" claim.
 *
 *-------------------------------------------------------------------------
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "auth.h"
#include "log.h"

#define MIN_SECRET_BYTES 32
#define MAX_EXPIRES		253402300799.0	/* 9999-12-31T23:59:59Z: later is "never" */

static struct
{
	unsigned char *key;
	size_t		keylen;
	jwt_alg_t	alg;
	const char *audience;
	const char *issuer;
} auth;

/* The algorithm a public key is used with: RS256 for RSA, ES256 for P-256. */
static jwt_alg_t
public_key_alg(const unsigned char *pem, size_t len)
{
	BIO		   *bio = BIO_new_mem_buf(pem, (int) len);
	EVP_PKEY   *pkey = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
	jwt_alg_t	alg = JWT_ALG_INVAL;

	if (pkey != NULL && EVP_PKEY_base_id(pkey) == EVP_PKEY_RSA)
		alg = JWT_ALG_RS256;
	else if (pkey != NULL && EVP_PKEY_base_id(pkey) == EVP_PKEY_EC &&
			 EVP_PKEY_bits(pkey) == 256)
		alg = JWT_ALG_ES256;
	EVP_PKEY_free(pkey);
	BIO_free(bio);
	return alg;
}

int
auth_init(const Config *cfg)
{
	const char *path = cfg->jwt_secret_file ? cfg->jwt_secret_file
		: cfg->jwt_public_key_file;

	auth.audience = cfg->jwt_audience;
	auth.issuer = cfg->jwt_issuer;
	auth.key = (unsigned char *) config_read_secret(path, &auth.keylen);
	if (auth.key == NULL)
	{
		log_fatal("auth", "could not read \"%s\": %m", path);
		return -1;
	}

	if (cfg->jwt_secret_file != NULL)
	{
		auth.alg = JWT_ALG_HS256;
		if (auth.keylen < MIN_SECRET_BYTES)
		{
			log_fatal("auth", "JWT secret in \"%s\" is too short: %zu bytes, at least %d needed",
					  path, auth.keylen, MIN_SECRET_BYTES);
			return -1;
		}
		return 0;
	}

	auth.alg = public_key_alg(auth.key, auth.keylen);
	if (auth.alg == JWT_ALG_INVAL)
	{
		log_fatal("auth", "\"%s\" holds no RSA or P-256 EC public key in PEM form", path);
		return -1;
	}
	return 0;
}

void
auth_shutdown(void)
{
	if (auth.key != NULL)
		memset(auth.key, 0, auth.keylen);
	free(auth.key);
	auth.key = NULL;
}

bool
uuid_normalize(const char *in, char *out)
{
	int			i;

	if (in == NULL || strlen(in) != UUID_TEXT_LEN)
		return false;
	for (i = 0; i < UUID_TEXT_LEN; i++)
	{
		bool		dash = (i == 8 || i == 13 || i == 18 || i == 23);

		if (dash ? in[i] != '-' : !isxdigit((unsigned char) in[i]))
			return false;
		out[i] = (char) tolower((unsigned char) in[i]);
	}
	out[UUID_TEXT_LEN] = '\0';
	return true;
}

/* A NumericDate claim: an integer or real number of seconds. */
static bool
claim_time(json_t *claims, const char *name, double *when)
{
	json_t	   *v = json_object_get(claims, name);

	if (!json_is_number(v))
		return false;
	*when = json_number_value(v);
	return true;
}

/* aud may be a string or an array of strings (RFC 7519, 4.1.3). */
static bool
audience_matches(json_t *aud)
{
	size_t		i;
	json_t	   *v;

	if (json_is_string(aud))
		return strcmp(json_string_value(aud), auth.audience) == 0;
	json_array_foreach(aud, i, v)
	{
		if (json_is_string(v) && strcmp(json_string_value(v), auth.audience) == 0)
			return true;
	}
	return false;
}

static const char *
check_registered_claims(json_t *claims, Grant *grant)
{
	time_t		now = time(NULL);
	double		exp, nbf;
	json_t	   *iss = json_object_get(claims, "iss");
	json_t	   *aud = json_object_get(claims, "aud");

	if (!claim_time(claims, "exp", &exp))
		return "token has no exp claim";
	if (exp + AUTH_LEEWAY_SECONDS <= (double) now)
		return "token expired";
	if (json_object_get(claims, "nbf") != NULL &&
		(!claim_time(claims, "nbf", &nbf) || nbf - AUTH_LEEWAY_SECONDS > (double) now))
		return "token not yet valid";
	if (auth.issuer != NULL &&
		(!json_is_string(iss) || strcmp(json_string_value(iss), auth.issuer) != 0))
		return "token issuer not accepted";
	if (aud != NULL && auth.audience == NULL)
		return "token audience not accepted";
	if (auth.audience != NULL && (aud == NULL || !audience_matches(aud)))
		return "token audience not accepted";

	grant->expires = exp > MAX_EXPIRES ? (time_t) MAX_EXPIRES : (time_t) exp;
	return NULL;
}

static const char *
read_dashboards(json_t *claims, Grant *grant)
{
	json_t	   *list = json_object_get(claims, "dashboards");
	size_t		i;
	json_t	   *v;

	if (!json_is_array(list))
		return "token has no dashboards claim";
	if (json_array_size(list) > AUTH_MAX_DASHBOARDS)
		return "token grants too many dashboards";
	grant->dashboards = calloc(json_array_size(list) + 1, UUID_TEXT_LEN + 1);
	if (grant->dashboards == NULL)
		return "out of memory";
	json_array_foreach(list, i, v)
	{
		if (!json_is_string(v) ||
			!uuid_normalize(json_string_value(v), grant->dashboards[grant->ndashboards]))
			return "token dashboards claim holds something other than a uuid";
		grant->ndashboards++;
	}
	return NULL;
}

const char *
auth_verify(const char *token, Grant *grant)
{
	jwt_t	   *jwt = NULL;
	char	   *claims_text = NULL;
	json_t	   *claims = NULL;
	const char *reason = NULL;

	memset(grant, 0, sizeof(Grant));
	if (token == NULL || token[0] == '\0')
		return "no token";
	if (strlen(token) > AUTH_MAX_TOKEN)
		return "token too long";

	/*
	 * jwt_decode() verifies the signature with the algorithm the token
	 * names, so the algorithm must be checked afterwards: a token that
	 * verified under another algorithm (or none) is refused all the same.
	 */
	if (jwt_decode(&jwt, token, auth.key, (int) auth.keylen) != 0 || jwt == NULL)
	{
		reason = "token signature or format invalid";
		goto done;
	}
	if (jwt_get_alg(jwt) != auth.alg)
	{
		reason = "token algorithm not accepted";
		goto done;
	}

	claims_text = jwt_get_grants_json(jwt, NULL);
	claims = claims_text ? json_loads(claims_text, 0, NULL) : NULL;
	if (!json_is_object(claims))
	{
		reason = "token claims unreadable";
		goto done;
	}
	reason = check_registered_claims(claims, grant);
	if (reason == NULL)
		reason = read_dashboards(claims, grant);

done:
	if (reason != NULL)
		grant_free(grant);
	json_decref(claims);
	free(claims_text);
	if (jwt != NULL)
		jwt_free(jwt);
	return reason;
}

void
grant_free(Grant *grant)
{
	free(grant->dashboards);
	grant->dashboards = NULL;
	grant->ndashboards = 0;
}

bool
grant_allows(const Grant *grant, const char *dashboard_uuid)
{
	int			i;

	for (i = 0; i < grant->ndashboards; i++)
		if (strcmp(grant->dashboards[i], dashboard_uuid) == 0)
			return true;
	return false;
}
