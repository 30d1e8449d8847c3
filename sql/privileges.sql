--
-- Who may do what.  A role that may only insert readings still feeds the
-- buffers (the trigger runs with the owner's rights); a role with SELECT
-- on the tables can use every read function; nobody can reuse the
-- trigger function elsewhere.
--
SET timezone = 'UTC';

CREATE ROLE regress_lw_ingest;
CREATE ROLE regress_lw_analyst;
GRANT INSERT ON livewidget.sensor_data TO regress_lw_ingest;
GRANT SELECT ON ALL TABLES IN SCHEMA livewidget TO regress_lw_analyst;

SELECT widget_id FROM livewidget.track('dev-p', 'priv', 'priv',
                        'cccccccc-0000-0000-0000-000000000001', 2);

SET ROLE regress_lw_ingest;
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
VALUES ('dev-p', 'priv', 1, '2025-07-09 15:00:01+00'),
       ('dev-p', 'priv', 2, '2025-07-09 15:00:02+00'),
       ('dev-p', 'priv', 3, '2025-07-09 15:00:03+00');
-- but it cannot write the buffer itself, nor read it
DELETE FROM livewidget.widget_sample;
SELECT count(*) FROM livewidget.widget_sample;
SELECT livewidget.track('dev-p', 'priv', 'priv2',
                        'cccccccc-0000-0000-0000-000000000001');
RESET ROLE;

SET ROLE regress_lw_analyst;
SELECT seq, value FROM livewidget.samples('priv');
SELECT livewidget.samples_json('cccccccc-0000-0000-0000-000000000001', 'priv');
SELECT livewidget.samples_after('priv', 1);
SELECT count(*) FROM livewidget.sensor_data WHERE device_id = 'dev-p';
-- reading is all it may do
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value)
VALUES ('dev-p', 'priv', 4);
SELECT livewidget.untrack('priv');
RESET ROLE;

-- the trigger function is for livewidget.sensor_data only
SELECT has_function_privilege('regress_lw_ingest', 'livewidget.buffer_readings()',
                              'EXECUTE') AS ingest_may_execute;
CREATE TABLE other_readings (LIKE livewidget.sensor_data);
CREATE TRIGGER misused AFTER INSERT ON other_readings
    REFERENCING NEW TABLE AS new_readings
    FOR EACH STATEMENT EXECUTE FUNCTION livewidget.buffer_readings();
INSERT INTO other_readings VALUES (1, 'd', 's', 1, NULL, now(), now());
DROP TRIGGER misused ON other_readings;
CREATE TRIGGER misused AFTER INSERT ON other_readings
    FOR EACH ROW EXECUTE FUNCTION livewidget.buffer_readings();
INSERT INTO other_readings VALUES (1, 'd', 's', 1, NULL, now(), now());
DROP TABLE other_readings;
SELECT livewidget.buffer_readings();

DROP OWNED BY regress_lw_ingest, regress_lw_analyst;
DROP ROLE regress_lw_ingest;
DROP ROLE regress_lw_analyst;
