--
-- pgTAP: buffer behaviour against a model.  Thousands of readings with
-- many equal times go in by statements of random size; after each phase
-- every buffer must be exactly the max_samples newest readings of its
-- device+sensor by (ts, insertion order), in that order, with sound
-- counters.
-- Runs outside a transaction block, so that each statement commits and
-- its readings reach the buffers (they are written at commit); it starts
-- from a fresh extension and drops what it made at the end.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
DROP EXTENSION IF EXISTS livewidget CASCADE;
CREATE EXTENSION livewidget;
RESET client_min_messages;

SELECT plan(39);

SET timezone = 'UTC';
SELECT setseed(0.4242);

-- The buffer the model expects: newest n readings by (ts, id), oldest first.
CREATE FUNCTION pg_temp.expected_buffer(dev text, sensor text, n int)
RETURNS TABLE (ts timestamptz, value double precision)
LANGUAGE sql AS $$
    SELECT ts, value
      FROM (SELECT ts, value, id FROM livewidget.sensor_data
             WHERE device_id = dev AND sensor_type = sensor
             ORDER BY ts DESC, id DESC LIMIT n) AS newest
     ORDER BY ts, id
$$;

-- Random statements: 1 to 40 rows, times among 300 seconds (many ties),
-- values unique so that rows can be told apart.
CREATE FUNCTION pg_temp.feed(dev text, sensor text, statements int)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    base double precision := coalesce((SELECT max(value) FROM livewidget.sensor_data), 0);
BEGIN
    FOR i IN 1..statements LOOP
        INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, unit, ts)
        SELECT dev, sensor, base + i * 100 + g, 'u' || g,
               '2025-07-09 00:00:00+00'::timestamptz
               + floor(random() * 300) * interval '1 second'
          FROM generate_series(1, 1 + floor(random() * 40)::int) AS g;
    END LOOP;
END
$$;

-- Whether the buffer of widget w is exactly what the model expects.
CREATE FUNCTION pg_temp.buffer_matches(w text, dev text, sensor text, n int)
RETURNS boolean
LANGUAGE sql AS $$
    SELECT array(SELECT ROW(ts, value)::text FROM livewidget.samples(w))
         = array(SELECT ROW(ts, value)::text
                   FROM pg_temp.expected_buffer(dev, sensor, n))
$$;

CREATE FUNCTION pg_temp.counters_sound(w text)
RETURNS boolean
LANGUAGE sql AS $$
    SELECT s.sample_count = (SELECT count(*) FROM livewidget.widget_sample AS b
                              WHERE b.widget_id = w)
       AND s.last_seq >= coalesce((SELECT max(seq) FROM livewidget.widget_sample AS b
                                    WHERE b.widget_id = w), 0)
       AND s.removed_seq <= s.last_seq
      FROM livewidget.widget_state AS s WHERE s.widget_id = w
$$;

SELECT lives_ok($$
    SELECT livewidget.track('tap-dev', 'temp', 'tap-1', 'deadbeef-0000-0000-0000-000000000001', 1);
    SELECT livewidget.track('tap-dev', 'temp', 'tap-7', 'deadbeef-0000-0000-0000-000000000001', 7);
    SELECT livewidget.track('tap-dev', 'temp', 'tap-50', 'deadbeef-0000-0000-0000-000000000001');
    SELECT livewidget.track('tap-dev', 'hum', 'tap-hum', 'deadbeef-0000-0000-0000-000000000001', 20);
$$, 'four widgets tracked');

-- phase 1: 300 statements on one sensor in two transactions (each call
-- is one), 100 on another
SELECT pg_temp.feed('tap-dev', 'temp', 150);
SELECT pg_temp.feed('tap-dev', 'temp', 150);
SELECT pg_temp.feed('tap-dev', 'hum', 100);

SELECT ok(pg_temp.buffer_matches('tap-1', 'tap-dev', 'temp', 1), 'max 1: the newest reading');
SELECT ok(pg_temp.buffer_matches('tap-7', 'tap-dev', 'temp', 7), 'max 7: the 7 newest readings');
SELECT ok(pg_temp.buffer_matches('tap-50', 'tap-dev', 'temp', 50), 'max 50: the 50 newest readings');
SELECT ok(pg_temp.buffer_matches('tap-hum', 'tap-dev', 'hum', 20), 'other sensor: its own 20 newest');
SELECT ok(pg_temp.counters_sound('tap-1'), 'tap-1 counters sound');
SELECT ok(pg_temp.counters_sound('tap-7'), 'tap-7 counters sound');
SELECT ok(pg_temp.counters_sound('tap-50'), 'tap-50 counters sound');
SELECT ok(pg_temp.counters_sound('tap-hum'), 'tap-hum counters sound');

-- within equal times, seq follows insertion order
SELECT is((SELECT count(*)::int
             FROM livewidget.widget_sample AS a
             JOIN livewidget.widget_sample AS b
               ON a.widget_id = b.widget_id AND a.ts = b.ts AND a.seq < b.seq
             JOIN livewidget.sensor_data AS da
               ON da.device_id = 'tap-dev' AND da.value = a.value
             JOIN livewidget.sensor_data AS db
               ON db.device_id = 'tap-dev' AND db.value = b.value
            WHERE da.id > db.id),
          0, 'among equal times, the higher seq is the later insert');

-- samples_after(0) has every buffered sample, in seq order
SELECT is((SELECT array_agg((e->>'seq')::bigint)
             FROM json_array_elements(livewidget.samples_after('tap-50', 0)->'samples') AS e),
          (SELECT array_agg(seq ORDER BY seq) FROM livewidget.samples('tap-50')),
          'samples_after(0) lists the buffer in seq order');
SELECT is((SELECT json_array_length(livewidget.samples_json(
                      'deadbeef-0000-0000-0000-000000000001', 'tap-50'))),
          50, 'samples_json has max_samples samples');
SELECT is((SELECT array_agg((e->>'seq')::bigint)
             FROM json_array_elements(livewidget.samples_json(
                      'deadbeef-0000-0000-0000-000000000001', 'tap-50')) AS e),
          (SELECT array_agg(seq) FROM livewidget.samples('tap-50')),
          'samples_json is in the order of samples()');

-- a client that saw the newest seq misses nothing and needs no reset
SELECT is(livewidget.samples_after('tap-7',
              (SELECT last_seq FROM livewidget.widget_state WHERE widget_id = 'tap-7'))::text,
          '{"reset":false,"samples":[]}', 'up to date: no reset, nothing new');
-- one that saw nothing must reset: samples were pushed out
SELECT is((livewidget.samples_after('tap-7', 0)->>'reset')::boolean, true,
          'from seq 0: reset after push-outs');

-- phase 2: resize while readings keep coming
SELECT lives_ok($$SELECT livewidget.track('tap-dev', 'temp', 'tap-50',
                     'deadbeef-0000-0000-0000-000000000001', 13)$$, 'lower 50 to 13');
SELECT ok(pg_temp.buffer_matches('tap-50', 'tap-dev', 'temp', 13), 'trimmed to the 13 newest');
SELECT pg_temp.feed('tap-dev', 'temp', 50);
SELECT ok(pg_temp.buffer_matches('tap-50', 'tap-dev', 'temp', 13), 'still the 13 newest');
SELECT lives_ok($$SELECT livewidget.track('tap-dev', 'temp', 'tap-50',
                     'deadbeef-0000-0000-0000-000000000001', 400)$$, 'raise 13 to 400');
SELECT ok(pg_temp.buffer_matches('tap-50', 'tap-dev', 'temp', 400), 'filled to the 400 newest');
SELECT pg_temp.feed('tap-dev', 'temp', 50);
SELECT ok(pg_temp.buffer_matches('tap-50', 'tap-dev', 'temp', 400), 'still the 400 newest');
SELECT ok(pg_temp.buffer_matches('tap-1', 'tap-dev', 'temp', 1), 'max 1 unaffected');
SELECT ok(pg_temp.buffer_matches('tap-7', 'tap-dev', 'temp', 7), 'max 7 unaffected');
SELECT ok(pg_temp.counters_sound('tap-50'), 'tap-50 counters sound after resizing');

-- phase 3: move a widget to the other sensor, and back after untrack
SELECT lives_ok($$SELECT livewidget.track('tap-dev', 'hum', 'tap-7',
                     'deadbeef-0000-0000-0000-000000000001', 7)$$, 'move tap-7 to hum');
SELECT ok(pg_temp.buffer_matches('tap-7', 'tap-dev', 'hum', 7), 'tap-7 shows hum now');
SELECT pg_temp.feed('tap-dev', 'hum', 20);
SELECT ok(pg_temp.buffer_matches('tap-7', 'tap-dev', 'hum', 7), 'and follows it');

CREATE TEMP TABLE seen AS
    SELECT last_seq FROM livewidget.widget_state WHERE widget_id = 'tap-7';
SELECT ok(livewidget.untrack('tap-7'), 'untrack tap-7');
SELECT is((SELECT count(*)::int FROM livewidget.samples('tap-7')), 0, 'no samples left');
SELECT pg_temp.feed('tap-dev', 'hum', 5);
SELECT is((SELECT count(*)::int FROM livewidget.widget_sample WHERE widget_id = 'tap-7'),
          0, 'an untracked widget is not fed');
SELECT lives_ok($$SELECT livewidget.track('tap-dev', 'temp', 'tap-7',
                     'deadbeef-0000-0000-0000-000000000001', 7)$$, 'track tap-7 again');
SELECT ok(pg_temp.buffer_matches('tap-7', 'tap-dev', 'temp', 7), 'refilled from temp');
SELECT ok((SELECT min(seq) FROM livewidget.samples('tap-7')) > (SELECT last_seq FROM seen),
          'seqs after untrack and track are above every earlier one');
SELECT is((livewidget.samples_after('tap-7', (SELECT last_seq FROM seen))->>'reset')::boolean,
          false, 'a client that saw everything before untrack needs no reset');
SELECT is((livewidget.samples_after('tap-7', (SELECT last_seq FROM seen) - 1)->>'reset')::boolean,
          true, 'one that missed the last sample before untrack does');

-- errors carry SQLSTATEs a client can test
SELECT throws_ok($$SELECT livewidget.track('d', 's', 'bad id', 'deadbeef-0000-0000-0000-000000000001')$$,
                 '22023', 'invalid widget id "bad id"', 'bad widget id: 22023');
SELECT throws_ok($$SELECT livewidget.track('d', 's', 'w', 'deadbeef-0000-0000-0000-000000000001', 0)$$,
                 '22023', 'max_samples must be between 1 and 1000', 'bad max_samples: 22023');
SELECT throws_ok($$SELECT livewidget.track(NULL, 's', 'w', 'deadbeef-0000-0000-0000-000000000001')$$,
                 '22004', 'device_id must not be null', 'null argument: 22004');
SELECT throws_ok($$INSERT INTO livewidget.sensor_data (device_id, sensor_type, value)
                   VALUES ('tap-dev', 'temp', 'NaN')$$,
                 '23514', NULL, 'NaN reading refused');

SELECT * FROM finish();
DROP EXTENSION livewidget CASCADE;
