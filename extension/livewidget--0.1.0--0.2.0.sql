/* extension/livewidget--0.1.0--0.2.0.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION livewidget UPDATE TO '0.2.0'" to load this file. \quit

--
-- widget_sample: one index instead of two.  The primary key becomes
-- (widget_id, ts, seq), the order every read and every buffer write uses,
-- and the separate (widget_id, ts, seq) index goes.
--
ALTER TABLE livewidget.widget_sample DROP CONSTRAINT widget_sample_pkey;
DROP INDEX livewidget.widget_sample_widget_ts_seq_idx;

--
-- widget_id of the buffer and of its state rows in the "C" collation:
-- byte order, so that the key comparisons of every buffer write are
-- cheap.  Ids are ASCII, so no order a reader sees changes.
--
ALTER TABLE livewidget.widget_sample
    ALTER COLUMN widget_id TYPE text COLLATE "C";
ALTER TABLE livewidget.widget_state
    ALTER COLUMN widget_id TYPE text COLLATE "C";

ALTER TABLE livewidget.widget_sample ADD PRIMARY KEY (widget_id, ts, seq);

-- Every backend forgets its cached device+sensor -> widget lookups when
-- tracked_variable changes (see extension/lookup.c).
CREATE FUNCTION livewidget.mappings_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'livewidget_attachments_changed'
LANGUAGE C
SET search_path = pg_catalog, pg_temp;

REVOKE ALL ON FUNCTION livewidget.mappings_changed() FROM PUBLIC;

CREATE TRIGGER mappings_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON livewidget.tracked_variable
    FOR EACH STATEMENT
    EXECUTE FUNCTION livewidget.mappings_changed();

--
-- The buffer trigger's queries all look rows up by key: keep the planner
-- from scanning small tables whole at every statement.
--
ALTER FUNCTION livewidget.buffer_readings() SET enable_seqscan = off;

--
-- Storage of the two tables every buffered reading writes: vacuum after a
-- fixed number of dead rows; room for HOT updates of the state rows.
--
ALTER TABLE livewidget.widget_sample
    SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
         autovacuum_vacuum_cost_delay = 0);
ALTER TABLE livewidget.widget_state
    SET (fillfactor = 50, autovacuum_vacuum_scale_factor = 0,
         autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_cost_delay = 0);

--
-- widget_state.oldest_ts: no sample of the widget is older (null when
-- unknown), where the trigger starts its search for the samples a reading
-- pushes out.
--
ALTER TABLE livewidget.widget_state ADD COLUMN oldest_ts timestamptz;
