--
-- PREPARE TRANSACTION writes the buffers like a commit does, but a
-- transaction to be prepared cannot send notifications: a warning says
-- which widgets' samples are not notified.  (Needs
-- max_prepared_transactions > 0; expected/prepared_1.out is the output
-- without.)
--
SELECT widget_id FROM livewidget.track('p-1', 't', 'p1',
                                       '00000000-0000-4000-8000-0000000000b1', 3);

BEGIN;
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
VALUES ('p-1', 't', 1, '2025-07-09 00:00:01+00'),
       ('p-1', 't', 2, '2025-07-09 00:00:02+00');
PREPARE TRANSACTION 'livewidget_prepared_1';
-- written, but not committed yet
SELECT count(*) AS visible FROM livewidget.samples('p1');
COMMIT PREPARED 'livewidget_prepared_1';
SELECT seq, value FROM livewidget.samples('p1');

-- rolled back: the buffer is as before, and the next insert goes on from
-- there
BEGIN;
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
VALUES ('p-1', 't', 3, '2025-07-09 00:00:03+00');
PREPARE TRANSACTION 'livewidget_prepared_2';
ROLLBACK PREPARED 'livewidget_prepared_2';
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
VALUES ('p-1', 't', 4, '2025-07-09 00:00:04+00');
SELECT seq, value FROM livewidget.samples('p1');
SELECT last_seq, sample_count FROM livewidget.widget_state WHERE widget_id = 'p1';

-- track() and refill() write the transaction's readings of the widget
-- before the commit; the transaction can still be prepared, and the
-- warning names the widget once.
BEGIN;
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
VALUES ('p-1', 't', 5, '2025-07-09 00:00:05+00');
SELECT widget_id FROM livewidget.track('p-1', 't', 'p1',
                                       '00000000-0000-4000-8000-0000000000b2', 3);
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
VALUES ('p-1', 't', 6, '2025-07-09 00:00:06+00');
PREPARE TRANSACTION 'livewidget_prepared_3';
COMMIT PREPARED 'livewidget_prepared_3';
SELECT seq, value FROM livewidget.samples('p1');

BEGIN;
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
VALUES ('p-1', 't', 7, '2025-07-09 00:00:07+00');
SELECT livewidget.refill('p1');
PREPARE TRANSACTION 'livewidget_prepared_4';
ROLLBACK PREPARED 'livewidget_prepared_4';
SELECT seq, value FROM livewidget.samples('p1');

SELECT livewidget.untrack('p1');
