--
-- samples(), samples_json() and the JSON form of a sample: the same
-- objects as in the notifications.
--
SET timezone = 'UTC';

SELECT widget_id FROM livewidget.track('dev-j', 'json', 'fmt',
                        'bbbbbbbb-0000-0000-0000-000000000001', 20);

-- known before any reading: an empty array, not null
SELECT livewidget.samples_json('bbbbbbbb-0000-0000-0000-000000000001', 'fmt');

INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, unit, ts)
VALUES ('dev-j', 'json', 24.8, '°C', '2025-07-09 07:15:02+00'),
       ('dev-j', 'json', 1e20, 'µg/m³', '2025-07-09 07:15:02.25+00'),
       ('dev-j', 'json', -0.5, NULL, '2025-07-09 07:15:02.5+00'),
       ('dev-j', 'json', 0.1::float8 + 0.2::float8, '', '2025-07-09 07:15:02.123456+00'),
       ('dev-j', 'json', 1e-7, E'q"b\\n\nt\tc\x01\x1f', '2025-07-09 07:15:02.000001+00'),
       ('dev-j', 'json', '-0', 'x', '2025-07-09 07:15:03.1+00'),
       ('dev-j', 'json', 123456789.125, repeat('ü', 40), '2025-07-09 07:15:04.01+00'),
       ('dev-j', 'json', 0, 'y', '1999-12-31 23:59:59.999999+00'),
       ('dev-j', 'json', 1.7976931348623157e308, 'z', '0001-01-01 00:00:00+00'),
       ('dev-j', 'json', 5e-324, 'z', '9999-12-31 23:59:59+00');

-- oldest first (by time, then seq)
SELECT seq, ts, value, unit FROM livewidget.samples('fmt');

-- one object per sample, each on its own line here
SELECT json_array_elements(
           livewidget.samples_json('bbbbbbbb-0000-0000-0000-000000000001',
                                   'fmt'))::text AS sample;

-- it is valid JSON and the values read back exactly
SELECT count(*) AS exact
  FROM json_array_elements(
           livewidget.samples_json('bbbbbbbb-0000-0000-0000-000000000001',
                                   'fmt')) AS e
  JOIN livewidget.samples('fmt') AS s ON s.seq = (e->>'seq')::bigint
 WHERE (e->>'value')::float8 = s.value
   AND (e->>'timestamp')::timestamptz = s.ts
   AND (e->>'unit') IS NOT DISTINCT FROM s.unit;

-- the text does not depend on the session's settings
SET extra_float_digits = -15;
SET timezone = 'America/New_York';
SET datestyle = 'German';
SELECT md5(livewidget.samples_json('bbbbbbbb-0000-0000-0000-000000000001',
                                   'fmt')::text) AS digest_a;
SET extra_float_digits = 3;
SET timezone = 'Asia/Kolkata';
SET datestyle = 'Postgres, MDY';
SELECT md5(livewidget.samples_json('bbbbbbbb-0000-0000-0000-000000000001',
                                   'fmt')::text) AS digest_b;
RESET extra_float_digits;
RESET datestyle;
SET timezone = 'UTC';

-- null when the widget is not on that dashboard, or not tracked at all
SELECT livewidget.samples_json('bbbbbbbb-0000-0000-0000-000000000002', 'fmt')
       IS NULL AS other_dashboard;
SELECT livewidget.samples_json('bbbbbbbb-0000-0000-0000-000000000001', 'nope')
       IS NULL AS unknown_widget;
SELECT livewidget.samples_json(NULL, 'fmt') IS NULL AS null_dashboard;
SELECT livewidget.samples_json('bbbbbbbb-0000-0000-0000-000000000001', NULL)
       IS NULL AS null_widget;
SELECT count(*) AS rows_for_null FROM livewidget.samples(NULL);
SELECT count(*) AS rows_for_unknown FROM livewidget.samples('nope');

-- an untracked widget is no longer on any dashboard
SELECT livewidget.untrack('fmt');
SELECT livewidget.samples_json('bbbbbbbb-0000-0000-0000-000000000001', 'fmt')
       IS NULL AS untracked;

--
-- samples_after(): samples above a seq, in seq order, and whether some
-- of them left the buffer.
--
SELECT livewidget.samples_after('never-tracked', 0);

SELECT widget_id FROM livewidget.track('dev-r', 'resume', 'resume',
                        'bbbbbbbb-0000-0000-0000-000000000001', 3);
SELECT livewidget.samples_after('resume', 0);

-- seqs 1 and 2, then a late reading (seq 3) older than the second
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
VALUES ('dev-r', 'resume', 1, '2025-07-09 14:00:01+00'),
       ('dev-r', 'resume', 3, '2025-07-09 14:00:03+00');
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
VALUES ('dev-r', 'resume', 2, '2025-07-09 14:00:02+00');
-- seq order, not time order
SELECT livewidget.samples_after('resume', 0);
SELECT livewidget.samples_after('resume', 2);
SELECT livewidget.samples_after('resume', 3);
SELECT livewidget.samples_after('resume', 100);
SELECT livewidget.samples_after('resume', -1);
SELECT livewidget.samples_after('resume', NULL) IS NULL AS null_after;

-- a new reading pushes out seq 1 (time 14:00:01): reset only for a
-- client that had not seen seq 1
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
VALUES ('dev-r', 'resume', 4, '2025-07-09 14:00:04+00');
SELECT livewidget.samples_after('resume', 0);
SELECT livewidget.samples_after('resume', 1);

-- the next one pushes out seq 3 (time 14:00:02, numbered after 14:00:03)
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
VALUES ('dev-r', 'resume', 5, '2025-07-09 14:00:05+00');
SELECT livewidget.samples_after('resume', 2);
SELECT livewidget.samples_after('resume', 3);

-- a reading too old for the full buffer removes nothing
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
VALUES ('dev-r', 'resume', 0, '2025-07-09 13:00:00+00');
SELECT livewidget.samples_after('resume', 3);

-- trimming removes seqs 2 and 4
SELECT max_samples FROM livewidget.track('dev-r', 'resume', 'resume',
                        'bbbbbbbb-0000-0000-0000-000000000001', 1);
SELECT livewidget.samples_after('resume', 3);
SELECT livewidget.samples_after('resume', 4);

-- untrack removes seq 5: every client that has not seen it starts over
SELECT livewidget.untrack('resume');
SELECT livewidget.samples_after('resume', 4);
SELECT livewidget.samples_after('resume', 5);

-- tracked again: the refill gets new seqs; old clients still reset
SELECT widget_id FROM livewidget.track('dev-r', 'resume', 'resume',
                        'bbbbbbbb-0000-0000-0000-000000000001', 2);
SELECT livewidget.samples_after('resume', 4);
SELECT livewidget.samples_after('resume', 5);
