--
-- The buffer trigger: which readings become samples, their seq, and what
-- they push out.
--
SET timezone = 'UTC';

-- A compact view of one widget's buffer, oldest first.
CREATE FUNCTION buffer_of(w text)
RETURNS TABLE (seq bigint, ts text, value double precision, unit text)
LANGUAGE sql AS $$
    SELECT seq, to_char(ts, 'HH24:MI:SS.US'), value, unit
      FROM livewidget.samples(w)
$$;

CREATE FUNCTION state_of(w text)
RETURNS TABLE (last_seq bigint, removed_seq bigint, sample_count int,
               buffered bigint)
LANGUAGE sql AS $$
    SELECT s.last_seq, s.removed_seq, s.sample_count,
           (SELECT count(*) FROM livewidget.widget_sample AS b
             WHERE b.widget_id = w)
      FROM livewidget.widget_state AS s WHERE s.widget_id = w
$$;

--
-- 120 readings in one statement leave exactly the newest 50, numbered
-- 1 to 50 in row order; the 70 older ones are never written.
--
SELECT widget_id, max_samples
  FROM livewidget.track('dev-a', 'temperature', 'many',
                        '00000000-0000-0000-0000-00000000000a');

INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, unit, ts)
SELECT 'dev-a', 'temperature', g, 'C',
       '2025-07-09 07:00:00+00'::timestamptz + g * interval '1 second'
  FROM generate_series(1, 120) AS g;

SELECT count(*), min(value), max(value), min(seq), max(seq)
  FROM livewidget.samples('many');
SELECT * FROM state_of('many');

-- every sample is the reading of its time
SELECT count(*) AS mismatched
  FROM livewidget.samples('many') AS s
  JOIN livewidget.sensor_data AS d
    ON d.device_id = 'dev-a' AND d.ts = s.ts
 WHERE d.value <> s.value;

--
-- 120 more, one statement each, all in one transaction: still the newest
-- 50, which alone get a seq, from 51 on, at commit; removed_seq is the
-- highest seq pushed out.
--
DO $$
BEGIN
    FOR g IN 121..240 LOOP
        INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
        VALUES ('dev-a', 'temperature', g,
                '2025-07-09 07:00:00+00'::timestamptz + g * interval '1 second');
    END LOOP;
END
$$;

SELECT count(*), min(value), max(value), min(seq), max(seq)
  FROM livewidget.samples('many');
SELECT * FROM state_of('many');

-- samples() is ordered by time; here seq follows time too
SELECT bool_and(seq > prev) AS seq_follows_ts
  FROM (SELECT seq, lag(seq) OVER () AS prev
          FROM livewidget.samples('many')) AS s
 WHERE prev IS NOT NULL;

--
-- Ties.  Within one statement the later row is the newer: of three
-- readings at one time, max_samples 2 keeps the last two rows.
--
SELECT widget_id FROM livewidget.track('dev-t', 'ties', 'ties',
                                       '00000000-0000-0000-0000-00000000000a', 2);
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
VALUES ('dev-t', 'ties', 1, '2025-07-09 08:00:00+00'),
       ('dev-t', 'ties', 2, '2025-07-09 08:00:00+00'),
       ('dev-t', 'ties', 3, '2025-07-09 08:00:00+00');
SELECT * FROM buffer_of('ties');

-- Across statements, a new reading at the time of the oldest sample is
-- newer than it and pushes it out.
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
VALUES ('dev-t', 'ties', 4, '2025-07-09 08:00:00+00');
SELECT * FROM buffer_of('ties');
SELECT * FROM state_of('ties');

-- Row order, not time order, decides seq within a statement.
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
VALUES ('dev-t', 'ties', 6, '2025-07-09 08:00:02+00'),
       ('dev-t', 'ties', 5, '2025-07-09 08:00:01+00');
SELECT * FROM buffer_of('ties');

--
-- Late and out-of-order readings.
--
SELECT widget_id FROM livewidget.track('dev-l', 'late', 'late',
                                       '00000000-0000-0000-0000-00000000000a', 4);
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
VALUES ('dev-l', 'late', 10, '2025-07-09 09:00:10+00'),
       ('dev-l', 'late', 30, '2025-07-09 09:00:30+00');
-- an older reading into a buffer with room is buffered
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
VALUES ('dev-l', 'late', 20, '2025-07-09 09:00:20+00'),
       ('dev-l', 'late', 5, '2025-07-09 09:00:05+00');
SELECT * FROM buffer_of('late');
SELECT * FROM state_of('late');

-- full now: a reading between the oldest and the newest pushes out the
-- oldest (seq 4, the latest numbered one)
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
VALUES ('dev-l', 'late', 25, '2025-07-09 09:00:25+00');
SELECT * FROM buffer_of('late');
SELECT * FROM state_of('late');

-- a reading older than every sample of the full buffer is stored, not
-- buffered, and takes no seq
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
VALUES ('dev-l', 'late', 1, '2025-07-09 09:00:01+00');
SELECT * FROM buffer_of('late');
SELECT * FROM state_of('late');
SELECT count(*) AS stored FROM livewidget.sensor_data
 WHERE device_id = 'dev-l' AND value = 1;

-- in one statement: a new newest reading and a too-old one
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
VALUES ('dev-l', 'late', 2, '2025-07-09 09:00:02+00'),
       ('dev-l', 'late', 40, '2025-07-09 09:00:40+00');
SELECT * FROM buffer_of('late');
SELECT * FROM state_of('late');

-- more readings than the buffer holds, shuffled: the newest 4 by time stay
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
VALUES ('dev-l', 'late', 45, '2025-07-09 09:00:45+00'),
       ('dev-l', 'late', 70, '2025-07-09 09:01:10+00'),
       ('dev-l', 'late', 41, '2025-07-09 09:00:41+00'),
       ('dev-l', 'late', 60, '2025-07-09 09:01:00+00'),
       ('dev-l', 'late', 50, '2025-07-09 09:00:50+00'),
       ('dev-l', 'late', 42, '2025-07-09 09:00:42+00');
SELECT * FROM buffer_of('late');
SELECT * FROM state_of('late');

--
-- Several widgets on one device+sensor, each with its own size and seq;
-- one statement feeding two devices.
--
SELECT widget_id, max_samples FROM livewidget.track(
    'dev-m', 'humidity', 'hum-small', '00000000-0000-0000-0000-00000000000b', 2);
SELECT widget_id, max_samples FROM livewidget.track(
    'dev-m', 'humidity', 'hum-large', '00000000-0000-0000-0000-00000000000b', 5);
SELECT widget_id, max_samples FROM livewidget.track(
    'dev-n', 'humidity', 'hum-other', '00000000-0000-0000-0000-00000000000b', 3);
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, unit, ts)
SELECT CASE WHEN g % 2 = 0 THEN 'dev-m' ELSE 'dev-n' END, 'humidity',
       g, '%', '2025-07-09 10:00:00+00'::timestamptz + g * interval '1 minute'
  FROM generate_series(1, 8) AS g;
SELECT * FROM buffer_of('hum-small');
SELECT * FROM buffer_of('hum-large');
SELECT * FROM buffer_of('hum-other');
-- another sensor of the same device feeds none of them
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value)
VALUES ('dev-m', 'pressure', 1013);
SELECT widget_id, last_seq FROM livewidget.widget_state
 WHERE widget_id LIKE 'hum-%' ORDER BY widget_id;

--
-- COPY feeds the buffer like INSERT; rows in file order.
--
SELECT widget_id FROM livewidget.track('dev-c', 'copy', 'copied',
                                       '00000000-0000-0000-0000-00000000000c', 3);
COPY livewidget.sensor_data (device_id, sensor_type, value, unit, ts) FROM stdin;
dev-c	copy	1.5	V	2025-07-09 11:00:00+00
dev-c	copy	2.5	V	2025-07-09 11:00:00+00
dev-c	copy	3.5	\N	2025-07-09 11:00:01+00
dev-c	copy	0.5	V	2025-07-09 10:59:59+00
\.
SELECT * FROM buffer_of('copied');

-- a statement with no rows, and readings of untracked devices, change
-- nothing
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value)
SELECT device_id, sensor_type, value FROM livewidget.sensor_data WHERE false;
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value)
VALUES ('nobody', 'nothing', 1);
SELECT widget_id, last_seq FROM livewidget.widget_state
 WHERE widget_id = 'copied';

-- updating or deleting readings leaves the buffer as it is
UPDATE livewidget.sensor_data SET value = -1 WHERE device_id = 'dev-c';
DELETE FROM livewidget.sensor_data WHERE device_id = 'dev-c';
SELECT * FROM buffer_of('copied');

--
-- The buffered unit is cut to 64 bytes at a character boundary; the
-- reading keeps it whole.
--
SELECT widget_id FROM livewidget.track('dev-u', 'units', 'units',
                                       '00000000-0000-0000-0000-00000000000c', 5);
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, unit, ts)
VALUES ('dev-u', 'units', 1, repeat('€', 30), '2025-07-09 12:00:01+00'),
       ('dev-u', 'units', 2, repeat('x', 64), '2025-07-09 12:00:02+00'),
       ('dev-u', 'units', 3, repeat('x', 65), '2025-07-09 12:00:03+00'),
       ('dev-u', 'units', 4, '', '2025-07-09 12:00:04+00'),
       ('dev-u', 'units', 5, NULL, '2025-07-09 12:00:05+00');
SELECT s.seq, octet_length(s.unit) AS buffered_bytes,
       char_length(s.unit) AS buffered_chars,
       octet_length(d.unit) AS stored_bytes,
       d.unit LIKE s.unit || '%' AS is_prefix
  FROM livewidget.samples('units') AS s
  JOIN livewidget.sensor_data AS d ON d.device_id = 'dev-u' AND d.ts = s.ts
 ORDER BY s.seq;

--
-- A reading whose time has no four-digit year is stored, not buffered,
-- with one warning per statement.
--
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
VALUES ('dev-u', 'units', 6, '10000-01-01 00:00:00+00'),
       ('dev-u', 'units', 7, '0001-01-01 00:00:00+00'::timestamptz - interval '1 microsecond'),
       ('dev-u', 'units', 8, '9999-12-31 23:59:59.999999+00');
SELECT seq, value, ts FROM livewidget.samples('units') WHERE value >= 6;
SELECT count(*) AS stored FROM livewidget.sensor_data
 WHERE device_id = 'dev-u' AND value >= 6;

-- Bulk backfills.  5,000 readings older than a full buffer, in one
-- statement, are all stored, none buffered, and use no seq; 5,000 that
-- overlap it leave the newest 50 of both, numbered in row order.
SELECT widget_id FROM livewidget.track('dev-b', 'bulk', 'bulk',
                                       '00000000-0000-4000-8000-000000000001');
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
SELECT 'dev-b', 'bulk', i, '2025-07-09 10:00:00+00'::timestamptz + i * interval '1 s'
  FROM generate_series(1, 50) AS i;
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
SELECT 'dev-b', 'bulk', -i, '2025-07-09 10:00:00+00'::timestamptz - i * interval '1 s'
  FROM generate_series(1, 5000) AS i;
SELECT count(*) AS stored FROM livewidget.sensor_data WHERE device_id = 'dev-b';
SELECT min(value), max(value), min(seq), max(seq)
  FROM livewidget.samples('bulk');
SELECT * FROM state_of('bulk');
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
SELECT 'dev-b', 'bulk', 1000 + i,
       '2025-07-09 10:00:00+00'::timestamptz + i * interval '10 ms'
  FROM generate_series(1, 5000) AS i;
SELECT min(value), max(value), min(seq), max(seq), count(*)
  FROM livewidget.samples('bulk');
-- the newest 50 by ts: sample 50 (10:00:50) and the backfilled readings
-- from 10:00:49.52 on, the one at 10:00:50 after sample 50 (a new
-- reading is the newer of two with the same ts)
SELECT string_agg(value::text, ' ' ORDER BY ts, seq) AS buffer
  FROM livewidget.samples('bulk');
SELECT * FROM state_of('bulk');

-- the search for the samples a reading pushes out starts at the state
-- row's oldest_ts: a late reading that enters a buffer that is not full
-- lowers it, and is the one pushed out next
SELECT widget_id FROM livewidget.track('dev-o', 'oldest', 'oldest',
                                       '00000000-0000-4000-8000-000000000001', 3);
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
VALUES ('dev-o', 'oldest', 20, '2025-07-09 12:00:20+00');
SELECT oldest_ts FROM livewidget.widget_state WHERE widget_id = 'oldest';
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
VALUES ('dev-o', 'oldest', 10, '2025-07-09 12:00:10+00');
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
VALUES ('dev-o', 'oldest', 30, '2025-07-09 12:00:30+00');
SELECT oldest_ts FROM livewidget.widget_state WHERE widget_id = 'oldest';
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
VALUES ('dev-o', 'oldest', 40, '2025-07-09 12:00:40+00');
SELECT seq, value FROM livewidget.samples('oldest');
SELECT oldest_ts FROM livewidget.widget_state WHERE widget_id = 'oldest';
-- track() forgets it: a fill may bring older samples
SELECT max_samples FROM livewidget.track('dev-o', 'oldest', 'oldest',
                                         '00000000-0000-4000-8000-000000000001', 4);
SELECT oldest_ts IS NULL AS forgotten, sample_count
  FROM livewidget.widget_state WHERE widget_id = 'oldest';
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
VALUES ('dev-o', 'oldest', 50, '2025-07-09 12:00:50+00');
SELECT seq, value FROM livewidget.samples('oldest');

-- Each session keeps a copy of the order of the buffers it writes; a
-- rolled-back savepoint makes it start over, so the buffer is the same as
-- if the rolled-back reading had never been inserted.
BEGIN;
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
VALUES ('dev-o', 'oldest', 60, '2025-07-09 12:01:00+00');
SAVEPOINT before_70;
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
VALUES ('dev-o', 'oldest', 70, '2025-07-09 12:01:10+00');
ROLLBACK TO before_70;
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
VALUES ('dev-o', 'oldest', 80, '2025-07-09 12:01:20+00');
COMMIT;
SELECT seq, value FROM livewidget.samples('oldest');
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
VALUES ('dev-o', 'oldest', 90, '2025-07-09 12:01:30+00');
SELECT seq, value FROM livewidget.samples('oldest');
SELECT * FROM state_of('oldest');

-- The session's device+sensor cache holds at most 100,000 keys: a
-- statement of 100,001 new ones (one of them tracked) is buffered right,
-- and the next statement, which starts the cache over, too.
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
SELECT CASE WHEN i = 100001 THEN 'dev-o' ELSE 'dev-many-' || i END, 'oldest',
       i, '2025-07-09 12:02:00+00'
  FROM generate_series(1, 100001) AS i;
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
VALUES ('dev-o', 'oldest', 55, '2025-07-09 12:02:10+00');
SELECT value FROM livewidget.samples('oldest');
DELETE FROM livewidget.sensor_data WHERE device_id LIKE 'dev-many-%';

-- a writer takes no widget lock before its commit, and holds none after
-- it (README, "Concurrency"); the isolation tests show the commit's wait
BEGIN;
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
VALUES ('dev-u', 'units', 10, '2025-07-09 12:00:10+00'),
       ('dev-nobody', 'units', 1, '2025-07-09 12:00:10+00');
SELECT count(*) AS held_before_commit FROM pg_locks
 WHERE locktype = 'advisory' AND objsubid = 19543
   AND pid = pg_backend_pid();
COMMIT;
SELECT count(*) AS held_after_commit FROM pg_locks
 WHERE locktype = 'advisory' AND objsubid = 19543
   AND pid = pg_backend_pid();

-- counters agree with the buffers everywhere
SELECT s.widget_id, s.sample_count,
       (SELECT count(*) FROM livewidget.widget_sample AS b
         WHERE b.widget_id = s.widget_id) AS buffered,
       t.max_samples
  FROM livewidget.widget_state AS s
  JOIN livewidget.tracked_variable AS t USING (widget_id)
 ORDER BY s.widget_id;

DROP FUNCTION buffer_of(text), state_of(text);
