--
-- attach() and detach(): widgets fed from readings tables other than
-- livewidget.sensor_data.
--
SET timezone = 'UTC';

CREATE FUNCTION buffer_of(w text)
RETURNS TABLE (seq bigint, ts text, value double precision, unit text)
LANGUAGE sql AS $$
    SELECT s.seq, to_char(s.ts, 'MM-DD HH24:MI:SS'), s.value, s.unit
      FROM livewidget.samples(w) AS s
$$;

-- sensor_data is attached at install
SELECT readings, device_column, sensor_column, value_column, unit_column,
       ts_column
  FROM livewidget.attached_table;

--
-- A table shaped like Django's sensors_sensordata: a real value and a
-- time column named "timestamp", without time zone (read as UTC).
--
CREATE TABLE sensors_sensordata (
    id serial PRIMARY KEY,
    device_id varchar(64) NOT NULL,
    sensor_type varchar(32) NOT NULL,
    value real NOT NULL,
    unit varchar(16),
    "timestamp" timestamp NOT NULL
);
SELECT livewidget.attach('sensors_sensordata', ts_column => 'timestamp');
SELECT tgname, tgnewtable, tgfoid::regprocedure
  FROM pg_trigger WHERE tgrelid = 'sensors_sensordata'::regclass;

SELECT widget_id FROM livewidget.track('esp-1', 'temperature', 'dj-temp',
    'dddddddd-0000-4000-8000-000000000001', 3);
INSERT INTO sensors_sensordata (device_id, sensor_type, value, unit, "timestamp")
VALUES ('esp-1', 'temperature', 24.8, '°C', '2025-07-09 07:15:02'),
       ('esp-1', 'temperature', 24.9, '°C', '2025-07-09 07:15:03'),
       ('esp-1', 'humidity', 51, '%', '2025-07-09 07:15:03');
-- 24.8 stays 24.8, the time is the stored one, in UTC
SELECT * FROM buffer_of('dj-temp');

-- COPY is one statement; the later row of equal time is the newer
COPY sensors_sensordata (device_id, sensor_type, value, unit, "timestamp") FROM stdin;
esp-1	temperature	25.1	°C	2025-07-09 07:15:04
esp-1	temperature	25.2	°C	2025-07-09 07:15:05
esp-1	temperature	25.3	°C	2025-07-09 07:15:05
\.
SELECT * FROM buffer_of('dj-temp');

-- track() fills from the attached table, and so does refill()
SELECT widget_id FROM livewidget.track('esp-1', 'humidity', 'dj-hum',
    'dddddddd-0000-4000-8000-000000000001', 5);
SELECT * FROM buffer_of('dj-hum');
SELECT livewidget.refill('dj-temp');
SELECT * FROM buffer_of('dj-temp');

-- ... and from sensor_data and the other tables together
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, unit, ts)
VALUES ('esp-1', 'temperature', 30, '°C', '2025-07-09 07:15:06+00');
SELECT livewidget.refill('dj-temp');
SELECT * FROM buffer_of('dj-temp');

--
-- A numeric value, a table without units, timestamptz
--
CREATE TABLE plant_readings (
    plant text,
    probe text,
    reading numeric(10, 3),
    taken_at timestamptz
);
SELECT livewidget.attach('plant_readings', 'plant', 'probe', 'reading',
                         unit_column => NULL, ts_column => 'taken_at');
SELECT widget_id FROM livewidget.track('p1', 'soil', 'plant-soil',
    'dddddddd-0000-4000-8000-000000000002', 10);
INSERT INTO plant_readings
VALUES ('p1', 'soil', 12.125, '2025-07-09 08:00:00+02');
SELECT * FROM buffer_of('plant-soil');

-- readings the buffer cannot take: stored, one warning per statement
INSERT INTO plant_readings VALUES
    ('p1', 'soil', NULL, '2025-07-09 08:00:01+00'),
    ('p1', 'soil', 'NaN', '2025-07-09 08:00:02+00'),
    ('p1', 'soil', 1, NULL),
    ('p1', 'soil', 2, 'infinity'),
    (NULL, 'soil', 3, '2025-07-09 08:00:03+00'),
    ('p1', 'soil', 4, '2025-07-09 08:00:04+00');
SELECT count(*) AS stored FROM plant_readings;
SELECT * FROM buffer_of('plant-soil');

-- a real NaN or infinity is skipped the same way
INSERT INTO sensors_sensordata (device_id, sensor_type, value, "timestamp")
VALUES ('esp-1', 'temperature', 'Infinity', '2025-07-09 07:16:00'),
       ('esp-1', 'temperature', 'NaN', '2025-07-09 07:16:01');
SELECT count(*) AS buffered FROM livewidget.samples('dj-temp')
 WHERE ts >= '2025-07-09 07:16:00+00';

INSERT INTO plant_readings VALUES ('p1', 'soil', 5.5, '2025-07-09 08:00:05+00');
SELECT livewidget.samples_after('plant-soil', 2);

--
-- Attaching twice replaces the mapping
--
ALTER TABLE plant_readings ADD COLUMN amount float8;
SELECT livewidget.attach('plant_readings', 'plant', 'probe', 'amount',
                         unit_column => 'probe', ts_column => 'taken_at');
SELECT value_column, unit_column FROM livewidget.attached_table
 WHERE readings = 'plant_readings'::regclass;
SELECT count(*) AS triggers FROM pg_trigger
 WHERE tgrelid = 'plant_readings'::regclass;
INSERT INTO plant_readings (plant, probe, reading, amount, taken_at)
VALUES ('p1', 'soil', 999, 6.25, '2025-07-09 08:00:06+00');
SELECT * FROM buffer_of('plant-soil') WHERE value > 5;

--
-- detach stops feeding; attaching again starts again
--
SELECT livewidget.detach('plant_readings');
SELECT count(*) AS triggers FROM pg_trigger
 WHERE tgrelid = 'plant_readings'::regclass;
INSERT INTO plant_readings (plant, probe, amount, taken_at)
VALUES ('p1', 'soil', 7, '2025-07-09 08:00:07+00');
SELECT count(*) AS buffered FROM livewidget.samples('plant-soil')
 WHERE value = 7;
SELECT livewidget.attach('plant_readings', 'plant', 'probe', 'amount',
                         unit_column => NULL, ts_column => 'taken_at');
INSERT INTO plant_readings (plant, probe, amount, taken_at)
VALUES ('p1', 'soil', 8, '2025-07-09 08:00:08+00');
SELECT value, unit FROM livewidget.samples('plant-soil') WHERE value >= 7;

-- sensor_data too may be detached and attached again
SELECT livewidget.detach('livewidget.sensor_data');
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
VALUES ('esp-1', 'temperature', 40, '2025-07-09 07:20:00+00');
SELECT count(*) AS buffered FROM livewidget.samples('dj-temp') WHERE value = 40;
SELECT livewidget.attach('livewidget.sensor_data');
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
VALUES ('esp-1', 'temperature', 41, '2025-07-09 07:20:01+00');
SELECT count(*) AS buffered FROM livewidget.samples('dj-temp') WHERE value = 41;

--
-- A table partitioned by time: rows inserted through it into present and
-- future partitions feed widgets; a partition fed directly does so only
-- when it is attached itself.
--
CREATE TABLE metering (
    device_id text NOT NULL,
    sensor_type text NOT NULL,
    value integer NOT NULL,
    unit text,
    ts timestamptz NOT NULL
) PARTITION BY RANGE (ts);
CREATE TABLE metering_2025_07 PARTITION OF metering
    FOR VALUES FROM ('2025-07-01 00:00+00') TO ('2025-08-01 00:00+00');
CREATE TABLE metering_2025_08 PARTITION OF metering
    FOR VALUES FROM ('2025-08-01 00:00+00') TO ('2025-09-01 00:00+00');
SELECT livewidget.attach('metering');
CREATE TABLE metering_2025_09 PARTITION OF metering
    FOR VALUES FROM ('2025-09-01 00:00+00') TO ('2025-10-01 00:00+00');
SELECT widget_id FROM livewidget.track('meter-1', 'kwh', 'meter',
    'dddddddd-0000-4000-8000-000000000003', 10);
INSERT INTO metering VALUES
    ('meter-1', 'kwh', 1, 'kWh', '2025-07-15 00:00+00'),
    ('meter-1', 'kwh', 2, 'kWh', '2025-08-15 00:00+00'),
    ('meter-1', 'kwh', 3, 'kWh', '2025-09-15 00:00+00');
SELECT * FROM buffer_of('meter');
-- straight into a partition that is not attached: stored, not buffered
INSERT INTO metering_2025_09 VALUES ('meter-1', 'kwh', 4, 'kWh', '2025-09-16 00:00+00');
SELECT * FROM buffer_of('meter') WHERE value = 4;
-- attached, the partition feeds widgets; through the parent, rows are
-- buffered once
SELECT livewidget.attach('metering_2025_09');
INSERT INTO metering_2025_09 VALUES ('meter-1', 'kwh', 5, 'kWh', '2025-09-17 00:00+00');
INSERT INTO metering VALUES ('meter-1', 'kwh', 6, 'kWh', '2025-09-18 00:00+00');
SELECT * FROM buffer_of('meter') WHERE value >= 4;
-- the fill reads the partition through its attached parent, once
SELECT livewidget.refill('meter');
SELECT value FROM livewidget.samples('meter');

--
-- Errors
--
\set VERBOSITY default
SELECT livewidget.attach('plant_readings', 'plant', 'probe', 'nope',
                         ts_column => 'taken_at');
SELECT livewidget.attach('plant_readings', 'plant', 'probe', 'taken_at',
                         ts_column => 'taken_at');
SELECT livewidget.attach('plant_readings', 'plant', 'amount', 'amount',
                         unit_column => NULL, ts_column => 'taken_at');
SELECT livewidget.attach('plant_readings', 'plant', 'probe', 'amount',
                         unit_column => NULL, ts_column => 'plant');
SELECT livewidget.attach('plant_readings', 'plant', 'probe', 'amount',
                         unit_column => 'amount', ts_column => 'taken_at');
SELECT livewidget.attach('plant_readings', NULL);
SELECT livewidget.attach('plant_readings', 'plant', 'probe', 'amount',
                         unit_column => NULL, ts_column => 'ctid');
CREATE VIEW plant_view AS SELECT * FROM plant_readings;
SELECT livewidget.attach('plant_view', 'plant', 'probe', 'amount',
                         unit_column => NULL, ts_column => 'taken_at');
SELECT livewidget.detach('plant_view');
SELECT livewidget.attach('no_such_table');
CREATE TABLE taken_name (LIKE livewidget.sensor_data);
CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql
    AS $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER buffer_readings AFTER INSERT ON taken_name
    FOR EACH STATEMENT EXECUTE FUNCTION noop();
SELECT livewidget.attach('taken_name');
-- only the owner of a table may attach it
CREATE ROLE regress_lw_stranger;
GRANT USAGE ON SCHEMA livewidget TO regress_lw_stranger;
GRANT EXECUTE ON FUNCTION livewidget.attach(regclass, name, name, name, name, name)
    TO regress_lw_stranger;
SET ROLE regress_lw_stranger;
SELECT livewidget.attach('taken_name');
RESET ROLE;
REVOKE ALL ON FUNCTION livewidget.attach(regclass, name, name, name, name, name)
    FROM regress_lw_stranger;
REVOKE ALL ON SCHEMA livewidget FROM regress_lw_stranger;
DROP ROLE regress_lw_stranger;

-- a mapped column renamed later: inserts still work, with a warning
ALTER TABLE plant_readings RENAME COLUMN amount TO quantity;
INSERT INTO plant_readings (plant, probe, quantity, taken_at)
VALUES ('p1', 'soil', 9, '2025-07-09 08:00:09+00');
SELECT count(*) AS stored FROM plant_readings WHERE quantity = 9;
SELECT livewidget.attach('plant_readings', 'plant', 'probe', 'quantity',
                         unit_column => NULL, ts_column => 'taken_at');
INSERT INTO plant_readings (plant, probe, quantity, taken_at)
VALUES ('p1', 'soil', 10, '2025-07-09 08:00:10+00');
SELECT value FROM livewidget.samples('plant-soil') WHERE value >= 9;

-- a renamed table and column, seen by track() in this session
ALTER TABLE plant_readings RENAME TO plant_log;
ALTER TABLE plant_log RENAME COLUMN quantity TO qty;
SELECT livewidget.refill('plant-soil');
SELECT livewidget.attach('plant_log', 'plant', 'probe', 'qty',
                         unit_column => NULL, ts_column => 'taken_at');
SELECT livewidget.refill('plant-soil');
ALTER TABLE plant_log RENAME TO plant_readings;

-- clean up
SELECT livewidget.untrack(w)
  FROM unnest(ARRAY['dj-temp', 'dj-hum', 'plant-soil', 'meter']) AS w;
SELECT livewidget.detach(t)
  FROM unnest(ARRAY['sensors_sensordata', 'plant_readings',
                    'metering', 'metering_2025_09']::regclass[]) AS t;
SELECT readings FROM livewidget.attached_table;
DROP TABLE sensors_sensordata, plant_readings, metering, taken_name CASCADE;
DROP FUNCTION noop();
DELETE FROM livewidget.sensor_data WHERE device_id = 'esp-1';
DROP FUNCTION buffer_of(text);

--
-- A numeric of magnitude 1e308 or more is not finite for the buffer, at
-- an insert as in a fill: a refill keeps what the inserts buffered.
--
CREATE TABLE huge_readings (device_id text, sensor_type text, value numeric,
                            unit text, ts timestamptz);
SELECT livewidget.attach('huge_readings');
SELECT widget_id FROM livewidget.track('h1', 'v', 'huge',
    'dddddddd-0000-4000-8000-000000000009', 5);
INSERT INTO huge_readings VALUES
    ('h1', 'v', 9.99e307, NULL, '2025-07-09 09:00:00+00'),
    ('h1', 'v', 1e308, NULL, '2025-07-09 09:00:01+00'),
    ('h1', 'v', -1e308, NULL, '2025-07-09 09:00:02+00');
SELECT value FROM livewidget.samples('huge');
SELECT livewidget.refill('huge');
SELECT value FROM livewidget.samples('huge');
SELECT livewidget.untrack('huge');
SELECT livewidget.detach('huge_readings');
DROP TABLE huge_readings;
