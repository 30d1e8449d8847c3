--
-- Least-privilege roles under a hostile search_path.
--
-- A device role holds INSERT on the readings tables and nothing else of
-- the extension; it keeps a schema of its own, first in its search_path
-- and ahead of pg_catalog, with functions and operators named like the
-- ones the buffer trigger uses.  The trigger runs with its owner's
-- rights, so if it resolved any name through the caller's path it would
-- run the role's code with those rights: every look-alike raises an
-- error, so a single call fails the insert.  An analyst role with SELECT
-- on the tables reads everything, under the same kind of path, and a
-- role that maps widgets needs only the grants on the tables it uses.
-- (specs/ingest_role.spec checks that such a role's readings are
-- notified.)
--
SET timezone = 'UTC';

CREATE ROLE regress_lw_device;
CREATE ROLE regress_lw_reader;

-- what the README lists for each of them
GRANT INSERT ON livewidget.sensor_data TO regress_lw_device;
GRANT SELECT ON livewidget.sensor_data, livewidget.tracked_variable,
                livewidget.widget_sample, livewidget.widget_state,
                livewidget.attached_table
   TO regress_lw_reader;

-- a Django-shaped readings table of the application
CREATE TABLE sensors_sensordata (
    id serial PRIMARY KEY,
    device_id varchar(64) NOT NULL,
    sensor_type varchar(32) NOT NULL,
    value real NOT NULL,
    unit varchar(16),
    "timestamp" timestamp NOT NULL
);
SELECT livewidget.attach('sensors_sensordata', ts_column => 'timestamp');
GRANT INSERT ON sensors_sensordata TO regress_lw_device;
-- its serial column's default calls nextval(), which needs this
GRANT USAGE ON SEQUENCE sensors_sensordata_id_seq TO regress_lw_device;
GRANT SELECT ON sensors_sensordata TO regress_lw_reader;

SELECT widget_id FROM livewidget.track('dev-roles', 'temp', 'roles-sd',
                        'cccccccc-0000-0000-0000-000000000002', 3);
SELECT widget_id FROM livewidget.track('dev-roles-dj', 'temp', 'roles-dj',
                        'cccccccc-0000-0000-0000-000000000002', 3);

--
-- The device role's own schema, with look-alikes of what the trigger's
-- queries call: now(), abs(), row_number(), and the =, <, > and >=
-- operators of the types they compare.
--
CREATE SCHEMA regress_lw_trap AUTHORIZATION regress_lw_device;
SET ROLE regress_lw_device;
CREATE FUNCTION regress_lw_trap.trap(what text) RETURNS boolean
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'look-alike % called', what;
END
$$;
CREATE FUNCTION regress_lw_trap.now() RETURNS timestamptz
    LANGUAGE sql
    AS $$ SELECT NULL::timestamptz WHERE regress_lw_trap.trap('now()') $$;
CREATE FUNCTION regress_lw_trap.abs(numeric) RETURNS numeric
    LANGUAGE sql
    AS $$ SELECT NULL::numeric WHERE regress_lw_trap.trap('abs()') $$;
CREATE FUNCTION regress_lw_trap.row_number() RETURNS bigint
    LANGUAGE sql
    AS $$ SELECT NULL::bigint WHERE regress_lw_trap.trap('row_number()') $$;
CREATE FUNCTION regress_lw_trap.text_eq(text, text) RETURNS boolean
    LANGUAGE sql AS $$ SELECT regress_lw_trap.trap('text =') $$;
CREATE FUNCTION regress_lw_trap.float8_cmp(float8, float8) RETURNS boolean
    LANGUAGE sql AS $$ SELECT regress_lw_trap.trap('float8 comparison') $$;
CREATE FUNCTION regress_lw_trap.tstz_cmp(timestamptz, timestamptz)
    RETURNS boolean
    LANGUAGE sql
    AS $$ SELECT regress_lw_trap.trap('timestamptz comparison') $$;
CREATE OPERATOR regress_lw_trap.= (LEFTARG = text, RIGHTARG = text,
                                   FUNCTION = regress_lw_trap.text_eq);
CREATE OPERATOR regress_lw_trap.< (LEFTARG = float8, RIGHTARG = float8,
                                   FUNCTION = regress_lw_trap.float8_cmp);
CREATE OPERATOR regress_lw_trap.> (LEFTARG = float8, RIGHTARG = float8,
                                   FUNCTION = regress_lw_trap.float8_cmp);
CREATE OPERATOR regress_lw_trap.>= (LEFTARG = timestamptz,
                                    RIGHTARG = timestamptz,
                                    FUNCTION = regress_lw_trap.tstz_cmp);
CREATE OPERATOR regress_lw_trap.< (LEFTARG = timestamptz,
                                   RIGHTARG = timestamptz,
                                   FUNCTION = regress_lw_trap.tstz_cmp);
SET search_path = regress_lw_trap, pg_catalog, public;

-- the traps are live for anything that resolves names through this path
SELECT now();
SELECT 'a'::text = 'a'::text;
SELECT 1::float8 < 2::float8;

-- defaults (ts, received_at, id) and the trigger call none of them
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, unit, ts)
VALUES ('dev-roles', 'temp', 1.5, '°C', '2025-07-09 15:00:01+00'),
       ('dev-roles', 'temp', 2.5, '°C', '2025-07-09 15:00:02+00'),
       ('dev-roles-x', 'other', 0, NULL, '2025-07-09 15:00:02+00');
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value)
VALUES ('dev-roles', 'temp', 9.5);
COPY livewidget.sensor_data (device_id, sensor_type, value, unit, ts)
FROM STDIN;
dev-roles	temp	3.5	°C	2025-07-09 15:00:03+00
\.
INSERT INTO sensors_sensordata
       (device_id, sensor_type, value, unit, "timestamp")
VALUES ('dev-roles-dj', 'temp', 24.8, '°C', '2025-07-09 15:00:01'),
       ('dev-roles-dj', 'temp', 24.9, '°C', '2025-07-09 15:00:02');

-- the role still reads nothing of the extension
SELECT count(*) FROM livewidget.widget_sample;
SELECT count(*) FROM livewidget.sensor_data;
RESET search_path;
RESET ROLE;

-- the readings were buffered: the newest three of dev-roles by time (the one
-- without a time got the insert time, the newest), both of dev-roles-dj
SELECT widget_id, value, unit, ts > '2025-07-10' AS stamped_at_insert
  FROM livewidget.widget_sample WHERE widget_id LIKE 'roles-%'
 ORDER BY widget_id, ts, seq;
SELECT widget_id, last_seq, removed_seq, sample_count
  FROM livewidget.widget_state WHERE widget_id LIKE 'roles-%'
 ORDER BY widget_id;

--
-- The analyst: SELECT on the tables is all the read functions need, and
-- look-alikes in its path change nothing either.
--
SET ROLE regress_lw_reader;
SET search_path = regress_lw_trap, pg_catalog, public;
SELECT seq, value, unit FROM livewidget.samples('roles-dj');
SELECT livewidget.samples_json('cccccccc-0000-0000-0000-000000000002',
                               'roles-dj');
SELECT livewidget.samples_after('roles-dj', 1);
SELECT livewidget.samples_after('roles-sd', 0)::jsonb -> 'reset' AS reset;
SELECT widget_id, device_id, max_samples
  FROM livewidget.tracked_variable WHERE widget_id LIKE 'roles-%'
 ORDER BY widget_id;
SELECT readings, ts_column FROM livewidget.attached_table ORDER BY 1;
SELECT count(*) FROM livewidget.sensor_data WHERE device_id LIKE 'dev-roles%';
SELECT count(*) FROM sensors_sensordata;
-- and reading is all it may do
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value)
VALUES ('dev-roles', 'temp', 4);
SELECT livewidget.track('dev-roles', 'temp', 'roles-sd',
                        'cccccccc-0000-0000-0000-000000000002', 5);
SELECT livewidget.refill('roles-sd');
RESET search_path;
RESET ROLE;

-- without SELECT on widget_sample the read functions are refused
SET ROLE regress_lw_device;
SELECT * FROM livewidget.samples('roles-dj');
SELECT livewidget.samples_after('roles-dj', 0);
RESET ROLE;

--
-- A role that maps widgets: track(), untrack() and refill() run with
-- its rights, so it writes the three buffer tables and reads the
-- attached ones (to fill buffers) and attached_table.
--
CREATE ROLE regress_lw_mapper;
GRANT SELECT, INSERT, UPDATE, DELETE
   ON livewidget.tracked_variable, livewidget.widget_sample,
      livewidget.widget_state
   TO regress_lw_mapper;
GRANT SELECT ON livewidget.attached_table, livewidget.sensor_data,
                sensors_sensordata
   TO regress_lw_mapper;
SET ROLE regress_lw_mapper;
SET search_path = regress_lw_trap, pg_catalog, public;
SELECT widget_id, max_samples
  FROM livewidget.track('dev-roles-dj', 'temp', 'roles-map',
                        'cccccccc-0000-0000-0000-000000000003', 5);
SELECT livewidget.refill('roles-map');
SELECT value FROM livewidget.samples('roles-map');
SELECT livewidget.untrack('roles-map');
RESET search_path;
RESET ROLE;
-- without SELECT on one attached table the fill is refused
REVOKE SELECT ON sensors_sensordata FROM regress_lw_mapper;
SET ROLE regress_lw_mapper;
\set VERBOSITY terse
SELECT livewidget.track('dev-roles-dj', 'temp', 'roles-map',
                        'cccccccc-0000-0000-0000-000000000003', 5);
\set VERBOSITY default
RESET ROLE;

SELECT livewidget.detach('sensors_sensordata');
DROP TABLE sensors_sensordata;
SELECT livewidget.untrack(w) FROM unnest(ARRAY['roles-sd', 'roles-dj']) AS w;
DELETE FROM livewidget.widget_state WHERE widget_id LIKE 'roles-%';
DELETE FROM livewidget.sensor_data
 WHERE device_id IN ('dev-roles', 'dev-roles-x');
-- the trap schema and its functions go with their owner
DROP OWNED BY regress_lw_device, regress_lw_reader, regress_lw_mapper;
DROP ROLE regress_lw_device;
DROP ROLE regress_lw_reader;
DROP ROLE regress_lw_mapper;
