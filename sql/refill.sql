--
-- refill(): rebuild a widget's buffer from the readings stored, after
-- changes the trigger does not follow (updates, deletes).
--
SET timezone = 'UTC';

INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
SELECT 'dev-r', 'pm25', g, '2025-07-09 14:00:00+00'::timestamptz
                           + g * interval '1 minute'
  FROM generate_series(1, 6) AS g;
SELECT widget_id, max_samples
  FROM livewidget.track('dev-r', 'pm25', 'w-refill',
                        'aaaaaaaa-0000-4000-8000-000000000001', 4);
SELECT seq, value FROM livewidget.samples('w-refill');

-- the buffer follows inserts only: a correction and a removal stay unseen
UPDATE livewidget.sensor_data SET value = 50
 WHERE device_id = 'dev-r' AND value = 5;
DELETE FROM livewidget.sensor_data WHERE device_id = 'dev-r' AND value = 6;
SELECT seq, value FROM livewidget.samples('w-refill');

-- until refill, which numbers the samples anew and says how many
SELECT livewidget.refill('w-refill');
SELECT seq, value, to_char(ts, 'HH24:MI') AS ts
  FROM livewidget.samples('w-refill');

-- seq 4 left the buffer: a client that had seen only up to seq 3 is told
-- to reset; one that had seen seq 4 gets the refilled samples after it
SELECT livewidget.samples_after('w-refill', 3)::jsonb -> 'reset' AS reset;
SELECT livewidget.samples_after('w-refill', 4)::jsonb -> 'reset' AS reset;

-- new readings go on after the refilled ones
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
VALUES ('dev-r', 'pm25', 7, '2025-07-09 14:30:00+00');
SELECT seq, value FROM livewidget.samples('w-refill');

-- a widget without readings refills to nothing; unknown widgets are errors
SELECT widget_id FROM livewidget.track('dev-none', 'pm25', 'w-refill-empty',
                                       'aaaaaaaa-0000-4000-8000-000000000001');
SELECT livewidget.refill('w-refill-empty');
SELECT livewidget.refill('w-nobody');
SELECT livewidget.untrack('w-refill');
SELECT livewidget.refill('w-refill');
SELECT livewidget.refill(NULL);
