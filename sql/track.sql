--
-- track() and untrack(): the mapping, argument checks, and how the buffer
-- follows changes to it.
--
SET timezone = 'UTC';

CREATE FUNCTION buffer_of(w text)
RETURNS TABLE (seq bigint, ts text, value double precision)
LANGUAGE sql AS $$
    SELECT seq, to_char(ts, 'HH24:MI:SS'), value FROM livewidget.samples(w)
$$;

CREATE FUNCTION state_of(w text)
RETURNS TABLE (last_seq bigint, removed_seq bigint, sample_count int)
LANGUAGE sql AS $$
    SELECT last_seq, removed_seq, sample_count
      FROM livewidget.widget_state WHERE widget_id = w
$$;

-- readings that exist before any widget shows them; two share 13:00:05
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
SELECT 'dev-k', 'co2', g, '2025-07-09 13:00:00+00'::timestamptz
                          + least(g, 5) * interval '1 second'
                          + greatest(g - 6, 0) * interval '1 second'
  FROM generate_series(1, 10) AS g;
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
VALUES ('dev-k', 'voc', 100, '2025-07-09 13:00:00+00'),
       ('dev-k', 'voc', 101, '2025-07-09 13:00:01+00');
SELECT value, to_char(ts, 'HH24:MI:SS') AS ts
  FROM livewidget.sensor_data WHERE sensor_type = 'co2' ORDER BY id;

-- a new widget returns its row and is filled from the newest readings,
-- oldest first by seq; ties on time go by insertion order
SELECT device_id, sensor_type, widget_id, dashboard_uuid, max_samples
  FROM livewidget.track('dev-k', 'co2', 'k1',
                        'aaaaaaaa-0000-0000-0000-000000000001', 4);
SELECT * FROM buffer_of('k1');
SELECT * FROM state_of('k1');

-- the same call again changes nothing
SELECT max_samples FROM livewidget.track('dev-k', 'co2', 'k1',
                        'aaaaaaaa-0000-0000-0000-000000000001', 4);
SELECT * FROM state_of('k1');

-- called in a select list, it returns a tracked_variable value
SELECT (livewidget.track('dev-k', 'co2', 'k1',
                         'aaaaaaaa-0000-0000-0000-000000000001', 4)).widget_id;
SELECT pg_typeof(livewidget.track('dev-k', 'co2', 'k1',
                 'aaaaaaaa-0000-0000-0000-000000000001', 4));

-- lowering max_samples trims at once, oldest first
SELECT max_samples FROM livewidget.track('dev-k', 'co2', 'k1',
                        'aaaaaaaa-0000-0000-0000-000000000001', 2);
SELECT * FROM buffer_of('k1');
SELECT * FROM state_of('k1');

-- raising it empties and fills the buffer again: the newest six, the two
-- readings at 13:00:05 in insertion order, all with new seqs
SELECT max_samples FROM livewidget.track('dev-k', 'co2', 'k1',
                        'aaaaaaaa-0000-0000-0000-000000000001', 6);
SELECT * FROM buffer_of('k1');
SELECT * FROM state_of('k1');

-- more than there are readings: all ten
SELECT max_samples FROM livewidget.track('dev-k', 'co2', 'k1',
                        'aaaaaaaa-0000-0000-0000-000000000001', 1000);
SELECT count(*), min(value), max(value) FROM livewidget.samples('k1');

-- new readings go on from there
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
VALUES ('dev-k', 'co2', 11, '2025-07-09 13:01:00+00');
SELECT * FROM state_of('k1');

-- moving the dashboard only changes the row
SELECT dashboard_uuid FROM livewidget.track('dev-k', 'co2', 'k1',
                        'aaaaaaaa-0000-0000-0000-000000000002', 1000);
SELECT * FROM state_of('k1');

-- another sensor: the buffer is emptied and filled from that sensor
SELECT sensor_type FROM livewidget.track('dev-k', 'voc', 'k1',
                        'aaaaaaaa-0000-0000-0000-000000000002', 3);
SELECT * FROM buffer_of('k1');
SELECT * FROM state_of('k1');
SELECT count(*) AS tracked_rows FROM livewidget.tracked_variable
 WHERE widget_id = 'k1';

-- untrack removes the mapping and the samples, keeps the counters
SELECT livewidget.untrack('k1');
SELECT livewidget.untrack('k1');
SELECT livewidget.untrack('never-tracked');
SELECT count(*) FROM livewidget.samples('k1');
SELECT count(*) FROM livewidget.tracked_variable WHERE widget_id = 'k1';
SELECT * FROM state_of('k1');

-- tracked again, its seq goes on growing
SELECT widget_id FROM livewidget.track('dev-k', 'co2', 'k1',
                        'aaaaaaaa-0000-0000-0000-000000000001', 2);
SELECT * FROM buffer_of('k1');
SELECT * FROM state_of('k1');

-- track in a transaction that rolls back leaves nothing
BEGIN;
SELECT widget_id FROM livewidget.track('dev-k', 'co2', 'k-rolled-back',
                        'aaaaaaaa-0000-0000-0000-000000000001');
ROLLBACK;
SELECT count(*) FROM livewidget.widget_state WHERE widget_id = 'k-rolled-back';

-- the default size is 50
SELECT max_samples FROM livewidget.track('dev-k', 'co2', 'k-default',
                        'aaaaaaaa-0000-0000-0000-000000000001');
SELECT count(*) FROM livewidget.samples('k-default');

--
-- Argument checks.
--
SELECT livewidget.track(NULL, 'co2', 'bad', 'aaaaaaaa-0000-0000-0000-000000000001');
SELECT livewidget.track('dev-k', NULL, 'bad', 'aaaaaaaa-0000-0000-0000-000000000001');
SELECT livewidget.track('dev-k', 'co2', NULL, 'aaaaaaaa-0000-0000-0000-000000000001');
SELECT livewidget.track('dev-k', 'co2', 'bad', NULL);
SELECT livewidget.track('dev-k', 'co2', 'bad', 'aaaaaaaa-0000-0000-0000-000000000001', NULL);
SELECT livewidget.track('', 'co2', 'bad', 'aaaaaaaa-0000-0000-0000-000000000001');
SELECT livewidget.track('dev-k', '', 'bad', 'aaaaaaaa-0000-0000-0000-000000000001');
SELECT livewidget.track('dev-k', 'co2', '', 'aaaaaaaa-0000-0000-0000-000000000001');
SELECT livewidget.track('dev-k', 'co2', 'no spaces', 'aaaaaaaa-0000-0000-0000-000000000001');
SELECT livewidget.track('dev-k', 'co2', 'wïdget', 'aaaaaaaa-0000-0000-0000-000000000001');
SELECT livewidget.track('dev-k', 'co2', 'w.1', 'aaaaaaaa-0000-0000-0000-000000000001');
SELECT livewidget.track('dev-k', 'co2', repeat('w', 57), 'aaaaaaaa-0000-0000-0000-000000000001');
SELECT livewidget.track('dev-k', 'co2', 'bad', 'aaaaaaaa-0000-0000-0000-000000000001', 0);
SELECT livewidget.track('dev-k', 'co2', 'bad', 'aaaaaaaa-0000-0000-0000-000000000001', 1001);
SELECT livewidget.track('dev-k', 'co2', 'bad', 'aaaaaaaa-0000-0000-0000-000000000001', -5);
SELECT livewidget.untrack(NULL);
SELECT count(*) AS nothing_created FROM livewidget.widget_state
 WHERE widget_id = 'bad';

-- the limits themselves are accepted
SELECT length(widget_id), max_samples FROM livewidget.track(
    'dev-k', 'co2', repeat('W', 56), 'aaaaaaaa-0000-0000-0000-000000000001', 1);
SELECT widget_id, max_samples FROM livewidget.track(
    'dev-k', 'co2', 'Az09_-', 'aaaaaaaa-0000-0000-0000-000000000001', 1000);

-- the tables refuse what track() refuses
\set VERBOSITY terse
INSERT INTO livewidget.tracked_variable
       (device_id, sensor_type, widget_id, dashboard_uuid, max_samples)
VALUES ('d', 's', 'bad id', 'aaaaaaaa-0000-0000-0000-000000000001', 5);
INSERT INTO livewidget.tracked_variable
       (device_id, sensor_type, widget_id, dashboard_uuid, max_samples)
VALUES ('d', 's', E'w\n', 'aaaaaaaa-0000-0000-0000-000000000001', 5);
INSERT INTO livewidget.tracked_variable
       (device_id, sensor_type, widget_id, dashboard_uuid, max_samples)
VALUES ('d', 's', 'w', 'aaaaaaaa-0000-0000-0000-000000000001', 1001);
\set VERBOSITY default

DROP FUNCTION buffer_of(text), state_of(text);
