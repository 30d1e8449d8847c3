--
-- Install the extension and check what it creates.
--
CREATE EXTENSION livewidget;

\dx+ livewidget

\d livewidget.sensor_data
\d livewidget.tracked_variable
\d livewidget.widget_sample
\d livewidget.widget_state

-- the trigger that feeds the buffers
SELECT tgname, tgtype, tgnewtable, tgfoid::regprocedure
  FROM pg_trigger
 WHERE tgrelid = 'livewidget.sensor_data'::regclass AND NOT tgisinternal;

-- pg_dump keeps every table and both counters of the extension
SELECT unnest(extconfig)::regclass AS dumped
  FROM pg_extension WHERE extname = 'livewidget'
 ORDER BY 1::text;

-- the schema is fixed
ALTER EXTENSION livewidget SET SCHEMA public;

-- constraints of sensor_data: finite value and time
\set VERBOSITY terse
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value)
VALUES ('d', 's', 'NaN');
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value)
VALUES ('d', 's', 'Infinity');
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value)
VALUES ('d', 's', '-Infinity');
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
VALUES ('d', 's', 1, 'infinity');
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
VALUES ('d', 's', 1, '-infinity');
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value)
VALUES ('d', 's', NULL);
INSERT INTO livewidget.sensor_data (device_id, value) VALUES ('d', 1);
\set VERBOSITY default

-- ts and received_at default to the insert time
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value)
VALUES ('d', 's', 1.5)
RETURNING ts = now() AS ts_is_now, received_at = now() AS received_is_now,
          unit IS NULL AS unit_is_null;
DELETE FROM livewidget.sensor_data;
