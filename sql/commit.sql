--
-- The buffers are written when the inserting transaction commits: what
-- a transaction, its savepoints and its calls to track(), untrack() and
-- refill() leave in them.
--
SET timezone = 'UTC';

CREATE FUNCTION buf(w text)
RETURNS TABLE (seq bigint, value double precision)
LANGUAGE sql AS $$
    SELECT seq, value FROM livewidget.samples(w)
$$;

CREATE FUNCTION put(dev text, v double precision, secs int)
RETURNS void
LANGUAGE sql AS $$
    INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, ts)
    VALUES (dev, 't', v, '2025-07-09 00:00:00+00'::timestamptz
                         + secs * interval '1 second')
$$;

SELECT widget_id FROM livewidget.track('c-1', 't', 'c1',
                                       '00000000-0000-4000-8000-0000000000c1', 3);

-- Inside the transaction its readings are stored but not buffered yet;
-- the commit buffers them, numbered in insertion order.
BEGIN;
SELECT put('c-1', 1, 1);
SELECT put('c-1', 2, 2);
SELECT count(*) AS readings FROM livewidget.sensor_data WHERE device_id = 'c-1';
SELECT count(*) AS samples_before_commit FROM livewidget.samples('c1');
COMMIT;
SELECT * FROM buf('c1');

-- A rolled-back transaction leaves the buffer and its counters alone.
BEGIN;
SELECT put('c-1', 99, 99);
ROLLBACK;
SELECT * FROM buf('c1');
SELECT last_seq, removed_seq FROM livewidget.widget_state WHERE widget_id = 'c1';

-- Many statements, one transaction: only the newest max_samples get a seq,
-- once, at commit; a tie on ts goes to the later statement.
BEGIN;
SELECT put('c-1', v, 10 + v::int) FROM generate_series(3, 7) AS v;
SELECT put('c-1', 8, 17);
SELECT put('c-1', 9, 17);
COMMIT;
SELECT * FROM buf('c1');
SELECT last_seq, removed_seq FROM livewidget.widget_state WHERE widget_id = 'c1';

-- A savepoint rolled back takes its readings along, and only them.  The
-- newer readings of the rolled-back savepoint must not have pushed out
-- the older one of the transaction itself.
BEGIN;
SELECT put('c-1', 20, 30);
SAVEPOINT s1;
SELECT put('c-1', 21, 31);
SELECT put('c-1', 22, 32);
SELECT put('c-1', 23, 33);
ROLLBACK TO s1;
SAVEPOINT s2;
SELECT put('c-1', 24, 34);
SAVEPOINT s3;
SELECT put('c-1', 25, 35);
RELEASE s3;
RELEASE s2;
SAVEPOINT s4;
SELECT put('c-1', 26, 36);
ROLLBACK TO s4;
COMMIT;
SELECT * FROM buf('c1');

-- The same through PL/pgSQL: an exception block is a savepoint.
DO $$
BEGIN
    PERFORM put('c-1', 30, 40);
    BEGIN
        PERFORM put('c-1', 31, 41);
        RAISE division_by_zero;
    EXCEPTION WHEN division_by_zero THEN
        NULL;
    END;
    PERFORM put('c-1', 32, 42);
END
$$;
SELECT * FROM buf('c1');

-- track() in the transaction that inserted: it sees the transaction's
-- readings in the buffer first, then works on it (here it lowers
-- max_samples to 2, which trims at once); later readings go on top.
BEGIN;
SELECT put('c-1', 40, 50);
SELECT put('c-1', 41, 51);
SELECT max_samples FROM livewidget.track('c-1', 't', 'c1',
                                         '00000000-0000-4000-8000-0000000000c1', 2);
SELECT * FROM buf('c1');
SELECT put('c-1', 42, 52);
COMMIT;
SELECT * FROM buf('c1');

-- ... and when the savepoint around it rolls back, the readings it wrote
-- early are written at commit all the same.
BEGIN;
SELECT put('c-1', 50, 60);
SAVEPOINT before_track;
SELECT max_samples FROM livewidget.track('c-1', 't', 'c1',
                                         '00000000-0000-4000-8000-0000000000c1', 3);
ROLLBACK TO before_track;
SELECT put('c-1', 51, 61);
COMMIT;
SELECT * FROM buf('c1');
SELECT max_samples FROM livewidget.tracked_variable WHERE widget_id = 'c1';

-- untrack() after inserting: the commit writes nothing into the widget.
BEGIN;
SELECT put('c-1', 60, 70);
SELECT livewidget.untrack('c1');
SELECT put('c-1', 61, 71);
COMMIT;
SELECT count(*) AS samples FROM livewidget.samples('c1');
SELECT sample_count FROM livewidget.widget_state WHERE widget_id = 'c1';

-- refill() after inserting: the fill sees the transaction's readings, and
-- they are not buffered a second time.
SELECT widget_id FROM livewidget.track('c-1', 't', 'c1',
                                       '00000000-0000-4000-8000-0000000000c1', 3);
BEGIN;
SELECT put('c-1', 70, 80);
SELECT livewidget.refill('c1');
COMMIT;
SELECT value FROM livewidget.samples('c1');

-- The work at commit does not depend on the caller's search_path.
BEGIN;
CREATE SCHEMA decoy;
CREATE TABLE decoy.widget_sample (LIKE livewidget.widget_sample);
CREATE TABLE decoy.widget_state (LIKE livewidget.widget_state);
SET LOCAL search_path = decoy, public;
SELECT put('c-1', 80, 90);
COMMIT;
SELECT count(*) AS decoy_rows FROM decoy.widget_sample;
SELECT value FROM livewidget.samples('c1');
DROP SCHEMA decoy CASCADE;

-- A transaction that drops the extension after inserting commits.
BEGIN;
CREATE TABLE own_readings (device_id text, sensor_type text, value float8,
                           unit text, ts timestamptz);
SELECT livewidget.attach('own_readings');
INSERT INTO own_readings VALUES ('c-1', 't', 1, NULL, now());
DROP EXTENSION livewidget CASCADE;
COMMIT;
SELECT count(*) AS kept FROM own_readings;
DROP TABLE own_readings;
CREATE EXTENSION livewidget;
