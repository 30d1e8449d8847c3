/*-------------------------------------------------------------------------
 *
 * held.h
 *		Messages taken from the broker but not stored yet, by device.
 *
 * Ingest keeps a message it could not store ("held") under its device:
 * the messages of one device in the order they came, the devices in the
 * order their first held message came.  Order matters within a device
 * only, so one device that cannot be written holds up its own messages
 * and no one else's.
 *
 * A set owns its messages and devices (one allocation each).  No locking
 * here: ingest calls these with its own lock held.
 *
 * Terms: a "held device" is a device with at least one held message; it
 * leaves the set with its last message.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LW_HELD_H
#define LW_HELD_H

#include <stdbool.h>
#include <stddef.h>

typedef struct HeldMessage
{
	struct HeldMessage *next;	/* the device's next message */
	int			msgid;			/* MQTT packet id, 0 for QoS 0 */
	const char *topic;			/* NUL-terminated, in data */
	const char *payload;		/* len bytes, in data */
	size_t		len;
	char		data[];			/* the topic, a NUL, the payload */
} HeldMessage;

typedef struct HeldDevice
{
	struct HeldDevice *prev;	/* in the set, oldest first */
	struct HeldDevice *next;
	HeldMessage *head;			/* the next message to store */
	HeldMessage *tail;
	int			count;			/* messages held */
	bool		busy;			/* ingest's mark: its rows are locked */
	char		id[];			/* the device id */
} HeldDevice;

typedef struct HeldSet
{
	HeldDevice *first;
	HeldDevice *last;
	int			messages;		/* held, in every device */
	int			devices;
	size_t		bytes;			/* of topics and payloads */
} HeldSet;

#define HELD_SET_INIT	{NULL, NULL, 0, 0, 0}

/* The held device called id, or NULL */
extern HeldDevice *held_find(const HeldSet *set, const char *id);

/*
 * Append a copy of a message to device id's messages (the device joins the
 * set at its end if it was not in it).  Returns the device, or NULL when
 * out of memory (nothing changed then).
 */
extern HeldDevice *held_add(HeldSet *set, const char *id, int msgid,
							const char *topic, const char *payload,
							size_t len);

/*
 * Free the device's first message; a device left without one leaves the
 * set and is freed.  Returns true when dev was freed.
 */
extern bool held_pop(HeldSet *set, HeldDevice *dev);

/* Free every message and device */
extern void held_clear(HeldSet *set);

#endif							/* LW_HELD_H */
