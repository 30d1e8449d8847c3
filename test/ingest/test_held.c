/*-------------------------------------------------------------------------
 *
 * test_held.c
 *		Checks of the held messages (bridge/held.c): each device's messages
 *		come back in the order they were held, devices in the order they
 *		first held one, and the counts follow every change.
 *
 * Run by "make -C test/ingest check"; exits 1 if a check failed.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "held.h"

/* Hold a message whose payload is its text, on topic "d/<id>/t" */
static HeldDevice *
hold(HeldSet *set, const char *id, int msgid, const char *text)
{
	char		topic[64];

	snprintf(topic, sizeof(topic), "d/%s/t", id);
	return held_add(set, id, msgid, topic, text, strlen(text));
}

/* Is dev's first message the payload text, on its own topic? */
static int
first_is(const HeldDevice *dev, const char *text)
{
	char		topic[64];

	snprintf(topic, sizeof(topic), "d/%s/t", dev->id);
	return dev->head != NULL && dev->head->len == strlen(text) &&
		memcmp(dev->head->payload, text, strlen(text)) == 0 &&
		strcmp(dev->head->topic, topic) == 0;
}

static void
test_order(void)
{
	HeldSet		set = HELD_SET_INIT;
	HeldDevice *x;
	HeldDevice *y;

	x = hold(&set, "x", 1, "x1");
	y = hold(&set, "y", 2, "y1");
	CHECK(hold(&set, "x", 3, "x2") == x);
	CHECK(hold(&set, "x", 4, "x3") == x);
	CHECK(set.first == x && set.last == y && x->next == y && y->prev == x);
	CHECK(set.messages == 4 && set.devices == 2);
	CHECK(set.bytes == 4 * (strlen("d/x/t") + 2));
	CHECK(held_find(&set, "y") == y && held_find(&set, "z") == NULL);
	CHECK(x->count == 3 && y->count == 1 && x->head->msgid == 1);

	/* a device's messages in order; it leaves with its last */
	CHECK(first_is(x, "x1"));
	CHECK(!held_pop(&set, x) && first_is(x, "x2"));
	CHECK(!held_pop(&set, x) && first_is(x, "x3"));
	CHECK(held_pop(&set, x));
	CHECK(set.first == y && set.last == y && y->prev == NULL);
	CHECK(set.messages == 1 && set.devices == 1);
	CHECK(held_find(&set, "x") == NULL);

	/* a device held again joins at the end */
	x = hold(&set, "x", 5, "x4");
	CHECK(set.first == y && set.last == x);
	CHECK(held_pop(&set, y) && set.first == x && x->prev == NULL);
	held_clear(&set);
	CHECK(set.first == NULL && set.last == NULL);
	CHECK(set.messages == 0 && set.devices == 0 && set.bytes == 0);
}

static void
test_middle_and_binary(void)
{
	HeldSet		set = HELD_SET_INIT;
	HeldDevice *b;
	const char	payload[] = {'a', '\0', 'b'};

	hold(&set, "a", 1, "a1");
	b = hold(&set, "b", 2, "b1");
	hold(&set, "c", 3, "c1");

	/* the one in the middle leaves; its neighbours are linked */
	CHECK(held_pop(&set, b));
	CHECK(set.first->next == set.last && set.last->prev == set.first);
	CHECK(strcmp(set.first->id, "a") == 0 && strcmp(set.last->id, "c") == 0);

	/* payloads are bytes: a NUL inside is kept */
	b = held_add(&set, "b", 0, "d/b/t", payload, sizeof(payload));
	CHECK(b != NULL && b->head->len == 3 &&
		  memcmp(b->head->payload, payload, 3) == 0 && b->head->msgid == 0);
	held_clear(&set);
	CHECK(set.devices == 0);
}

int
main(void)
{
	test_order();
	test_middle_and_binary();
	return CHECK_SUMMARY("held");
}
