/*-------------------------------------------------------------------------
 *
 * check.h
 *		The one assertion of the C checks in test/ingest: count a check,
 *		and on failure print where and what, then go on with the next.
 *
 * Each check program includes this once, runs its cases and ends with
 * CHECK_SUMMARY(name), which prints the counts and gives the exit status
 * (1 if any check failed).
 *
 *-------------------------------------------------------------------------
 */
#ifndef LW_TEST_CHECK_H
#define LW_TEST_CHECK_H

#include <stdio.h>

static int	failures = 0;
static int	checks = 0;

#define CHECK(cond) \
	do { \
		checks++; \
		if (!(cond)) \
		{ \
			failures++; \
			fprintf(stderr, "%s:%d: check failed: %s\n", \
					__FILE__, __LINE__, #cond); \
		} \
	} while (0)

#define CHECK_SUMMARY(name) \
	(printf("%s: %d checks, %d failed\n", (name), checks, failures), \
	 failures ? 1 : 0)

#endif							/* LW_TEST_CHECK_H */
