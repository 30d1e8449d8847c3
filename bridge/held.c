/*-------------------------------------------------------------------------
 *
 * held.c
 *		Messages taken from the broker but not stored yet, by device.
 *
 * See held.h.  Devices are found by a walk of the set: it holds few of
 * them (the devices whose rows are locked, or during an outage the few
 * messages the broker had in flight), and ingest bounds what it holds
 * (HELD_MAX_MESSAGES in ingest.c), so a walk costs microseconds.
 *
 *-------------------------------------------------------------------------
 */
#include <stdlib.h>
#include <string.h>

#include "held.h"

HeldDevice *
held_find(const HeldSet *set, const char *id)
{
	for (HeldDevice *dev = set->first; dev != NULL; dev = dev->next)
		if (strcmp(dev->id, id) == 0)
			return dev;
	return NULL;
}

/* A new, empty device at the end of the set; NULL when out of memory */
static HeldDevice *
add_device(HeldSet *set, const char *id)
{
	size_t		len = strlen(id);
	HeldDevice *dev = calloc(1, sizeof(HeldDevice) + len + 1);

	if (dev == NULL)
		return NULL;
	memcpy(dev->id, id, len + 1);
	dev->prev = set->last;
	if (set->last)
		set->last->next = dev;
	else
		set->first = dev;
	set->last = dev;
	set->devices++;
	return dev;
}

static void
remove_device(HeldSet *set, HeldDevice *dev)
{
	if (dev->prev)
		dev->prev->next = dev->next;
	else
		set->first = dev->next;
	if (dev->next)
		dev->next->prev = dev->prev;
	else
		set->last = dev->prev;
	set->devices--;
	free(dev);
}

HeldDevice *
held_add(HeldSet *set, const char *id, int msgid, const char *topic,
		 const char *payload, size_t len)
{
	size_t		topic_len = strlen(topic);
	HeldDevice *dev = held_find(set, id);
	bool		new_device = dev == NULL;
	HeldMessage *msg;

	msg = malloc(sizeof(HeldMessage) + topic_len + 1 + len);
	if (msg == NULL || (new_device && (dev = add_device(set, id)) == NULL))
	{
		free(msg);
		return NULL;
	}

	memcpy(msg->data, topic, topic_len + 1);
	memcpy(msg->data + topic_len + 1, payload, len);
	msg->topic = msg->data;
	msg->payload = msg->data + topic_len + 1;
	msg->len = len;
	msg->msgid = msgid;
	msg->next = NULL;

	if (dev->tail)
		dev->tail->next = msg;
	else
		dev->head = msg;
	dev->tail = msg;
	dev->count++;
	set->messages++;
	set->bytes += topic_len + len;
	return dev;
}

bool
held_pop(HeldSet *set, HeldDevice *dev)
{
	HeldMessage *msg = dev->head;

	if (msg != NULL)
	{
		dev->head = msg->next;
		if (dev->head == NULL)
			dev->tail = NULL;
		dev->count--;
		set->messages--;
		set->bytes -= strlen(msg->topic) + msg->len;
		free(msg);
	}
	if (dev->head != NULL)
		return false;
	remove_device(set, dev);
	return true;
}

void
held_clear(HeldSet *set)
{
	while (set->first != NULL)
		held_pop(set, set->first);
}
