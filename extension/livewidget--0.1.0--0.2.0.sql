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
ALTER TABLE livewidget.widget_sample ADD PRIMARY KEY (widget_id, ts, seq);
