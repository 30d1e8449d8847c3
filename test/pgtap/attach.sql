--
-- pgTAP: attach() and detach().  Readings tables of other shapes feed
-- widgets exactly as sensor_data does: Django's sensors_sensordata (real
-- values, a "timestamp" column without time zone), a partitioned table,
-- a table without units.
-- Runs outside a transaction block, so that each statement commits and
-- its readings reach the buffers (they are written at commit); it starts
-- from a fresh extension and drops what it made at the end.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
DROP EXTENSION IF EXISTS livewidget CASCADE;
CREATE EXTENSION livewidget;
RESET client_min_messages;

SELECT plan(33);

SET timezone = 'Europe/Berlin';

-- the objects
SELECT has_table('livewidget', 'attached_table', 'attached_table exists');
SELECT col_is_pk('livewidget', 'attached_table', 'readings',
                 'attached_table is keyed by the readings table');
SELECT has_function('livewidget', 'attach',
                    ARRAY['regclass', 'name', 'name', 'name', 'name', 'name']);
SELECT has_function('livewidget', 'detach', ARRAY['regclass']);
SELECT function_returns('livewidget', 'attach',
                        ARRAY['regclass', 'name', 'name', 'name', 'name', 'name'],
                        'void');
SELECT function_returns('livewidget', 'detach', ARRAY['regclass'], 'void');
SELECT ok(NOT has_function_privilege('public',
          'livewidget.attach(regclass,name,name,name,name,name)', 'EXECUTE'),
          'attach is not granted to PUBLIC');
SELECT ok('livewidget.attached_table'::regclass::oid = ANY (extconfig),
          'pg_dump keeps attached_table')
  FROM pg_extension WHERE extname = 'livewidget';
SELECT is((SELECT count(*)::int FROM livewidget.attached_table
            WHERE readings = 'livewidget.sensor_data'::regclass), 1,
          'sensor_data is attached at install');

-- Django's table
CREATE TABLE sensors_sensordata (
    id serial PRIMARY KEY,
    device_id varchar(64) NOT NULL,
    sensor_type varchar(32) NOT NULL,
    value real NOT NULL,
    unit varchar(16),
    "timestamp" timestamp NOT NULL
);
SELECT lives_ok($$SELECT livewidget.attach('sensors_sensordata',
                                             ts_column => 'timestamp')$$,
                'attach a Django-shaped table');
SELECT has_trigger('public', 'sensors_sensordata', 'buffer_readings',
                   'attach creates the buffer trigger');
SELECT trigger_is('public', 'sensors_sensordata', 'buffer_readings',
                  'livewidget', 'buffer_readings');
SELECT lives_ok($$SELECT livewidget.attach('sensors_sensordata',
                                             ts_column => 'timestamp')$$,
                'attach the same table again');
SELECT is((SELECT count(*)::int FROM pg_trigger
            WHERE tgrelid = 'sensors_sensordata'::regclass), 1,
          'attaching again keeps one trigger');

SELECT livewidget.track('esp-9', 'temperature', 'tap-dj',
                        'eeeeeeee-0000-4000-8000-000000000001', 5);
INSERT INTO sensors_sensordata (device_id, sensor_type, value, unit, "timestamp")
SELECT 'esp-9', 'temperature', 20 + g / 10.0, '°C',
       '2025-07-09 07:00:00'::timestamp + g * interval '1 second'
  FROM generate_series(1, 8) AS g;
SELECT results_eq(
    $$SELECT value, ts FROM livewidget.samples('tap-dj')$$,
    $$SELECT (20 + g / 10.0)::float8,
             ('2025-07-09 07:00:00'::timestamp + g * interval '1 second')
                 AT TIME ZONE 'UTC'
        FROM generate_series(4, 8) AS g$$,
    'real values keep their decimal form; timestamp is read as UTC, not in the session time zone');
SELECT is(livewidget.samples_json('eeeeeeee-0000-4000-8000-000000000001', 'tap-dj')
              ->0->>'timestamp',
          '2025-07-09T07:00:04Z', 'the JSON time is the stored one in UTC');

-- track fills from it
SELECT livewidget.untrack('tap-dj');
SELECT livewidget.track('esp-9', 'temperature', 'tap-dj',
                        'eeeeeeee-0000-4000-8000-000000000001', 3);
SELECT results_eq($$SELECT value FROM livewidget.samples('tap-dj')$$,
                  ARRAY[20.6::float8, 20.7, 20.8],
                  'track fills from an attached table');

-- detach stops feeding, buffers stay
SELECT lives_ok($$SELECT livewidget.detach('sensors_sensordata')$$, 'detach');
SELECT hasnt_trigger('public', 'sensors_sensordata', 'buffer_readings',
                     'detach drops the buffer trigger');
INSERT INTO sensors_sensordata (device_id, sensor_type, value, "timestamp")
VALUES ('esp-9', 'temperature', 99, '2025-07-09 08:00:00');
SELECT results_eq($$SELECT value FROM livewidget.samples('tap-dj')$$,
                  ARRAY[20.6::float8, 20.7, 20.8],
                  'a detached table feeds no widget');
SELECT throws_ok($$SELECT livewidget.detach('sensors_sensordata')$$,
                 '42704', NULL, 'detach of a table not attached fails');

-- partitioned, with a partition added after attach
CREATE TABLE tap_parted (
    device_id text, sensor_type text, value bigint, unit text,
    ts timestamptz
) PARTITION BY RANGE (ts);
CREATE TABLE tap_parted_a PARTITION OF tap_parted
    FOR VALUES FROM ('2025-01-01 00:00+00') TO ('2025-02-01 00:00+00');
SELECT livewidget.attach('tap_parted');
CREATE TABLE tap_parted_b PARTITION OF tap_parted
    FOR VALUES FROM ('2025-02-01 00:00+00') TO ('2025-03-01 00:00+00');
SELECT livewidget.track('m', 'e', 'tap-part',
                        'eeeeeeee-0000-4000-8000-000000000002', 10);
INSERT INTO tap_parted VALUES ('m', 'e', 1, NULL, '2025-01-10 00:00+00'),
                              ('m', 'e', 2, NULL, '2025-02-10 00:00+00');
SELECT results_eq($$SELECT value FROM livewidget.samples('tap-part')$$,
                  ARRAY[1::float8, 2],
                  'rows routed to present and future partitions are buffered');
INSERT INTO tap_parted_b VALUES ('m', 'e', 3, NULL, '2025-02-11 00:00+00');
SELECT is((SELECT count(*)::int FROM livewidget.samples('tap-part')), 2,
          'rows inserted into a partition that is not attached are not');
SELECT livewidget.attach('tap_parted_b');
INSERT INTO tap_parted_b VALUES ('m', 'e', 4, NULL, '2025-02-12 00:00+00');
INSERT INTO tap_parted VALUES ('m', 'e', 5, NULL, '2025-02-13 00:00+00');
SELECT results_eq($$SELECT value FROM livewidget.samples('tap-part')$$,
                  ARRAY[1::float8, 2, 4, 5],
                  'an attached partition feeds widgets, rows through the parent once');
SELECT is(livewidget.refill('tap-part'), 5,
          'refill counts a partition''s rows once');

-- values the buffer cannot take: stored, not buffered, never an error
CREATE TABLE tap_loose (device_id text, sensor_type text,
                        value numeric, ts timestamp);
SELECT livewidget.attach('tap_loose', unit_column => NULL);
SELECT livewidget.track('l', 'x', 'tap-loose',
                        'eeeeeeee-0000-4000-8000-000000000003', 10);
SELECT lives_ok($$INSERT INTO tap_loose VALUES
    ('l', 'x', NULL, '2025-01-01 00:00'), ('l', 'x', 'NaN', '2025-01-01 00:00'),
    ('l', 'x', 1e400, '2025-01-01 00:00'), ('l', 'x', 1, 'infinity'),
    ('l', 'x', 1, NULL), (NULL, 'x', 1, '2025-01-01 00:00'),
    ('l', 'x', 7, '2025-01-01 00:00')$$,
    'readings the buffer cannot take do not fail the insert');
SELECT is((SELECT count(*)::int FROM tap_loose), 7, 'all of them are stored');
SELECT results_eq($$SELECT value, unit FROM livewidget.samples('tap-loose')$$,
                  $$VALUES (7::float8, NULL::text)$$,
                  'only the usable one is buffered, without a unit');

-- errors
SELECT throws_ok($$SELECT livewidget.attach('tap_loose', 'device_id', 'sensor_type',
                                              'nope', NULL, 'ts')$$,
                 '42703', NULL, 'a missing column is refused');
SELECT throws_ok($$SELECT livewidget.attach('tap_loose', 'device_id', 'sensor_type',
                                              'ts', NULL, 'ts')$$,
                 '42804', NULL, 'a value column of the wrong type is refused');
SELECT throws_ok($$SELECT livewidget.attach('tap_loose', 'device_id', 'sensor_type',
                                              'value', NULL, 'device_id')$$,
                 '42804', NULL, 'a time column of the wrong type is refused');
CREATE VIEW tap_view AS SELECT * FROM tap_loose;
SELECT throws_ok($$SELECT livewidget.attach('tap_view', unit_column => NULL)$$,
                 '42809', NULL, 'a view is refused');
SELECT throws_ok($$SELECT livewidget.attach('tap_loose', ts_column => NULL)$$,
                 '22004', NULL, 'a null ts_column is refused');

SELECT * FROM finish();
SET client_min_messages = warning;
DROP VIEW tap_view;
DROP TABLE sensors_sensordata, tap_parted, tap_loose;
DROP EXTENSION livewidget CASCADE;
