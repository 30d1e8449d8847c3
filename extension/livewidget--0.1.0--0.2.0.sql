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

--
-- Device tokens, for the bridge's HTTP and WebSocket ingest.  Only the
-- SHA-256 of a token is stored: issue_device_token() shows the token
-- once.  A device may hold several at a time (to rotate them), at most
-- 100; revoke_device_tokens() removes all of a device's.
--
CREATE TABLE livewidget.device_token (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id text NOT NULL,
    token_sha256 bytea NOT NULL UNIQUE,
    issued_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT device_token_device_id_valid
        CHECK (octet_length(device_id) BETWEEN 1 AND 128
               AND device_id !~ '[[:cntrl:]]'),
    CONSTRAINT device_token_sha256_length
        CHECK (octet_length(token_sha256) = 32)
);

CREATE INDEX device_token_device_id_idx
    ON livewidget.device_token (device_id);

SELECT pg_catalog.pg_extension_config_dump('livewidget.device_token', '');
SELECT pg_catalog.pg_extension_config_dump('livewidget.device_token_id_seq', '');

--
-- The three functions run as the extension's owner, so that a role given
-- EXECUTE on one needs no right on the table; none is granted to PUBLIC.
-- A token is "lwd_" and 64 hexadecimal digits: the text of two version 4
-- UUIDs from the server's strong random source, 244 random bits.
--
CREATE FUNCTION livewidget.issue_device_token(device_id text)
RETURNS text
AS $$
DECLARE
    token text;
BEGIN
    IF device_id IS NULL THEN
        RAISE EXCEPTION 'device_id must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF octet_length(device_id) NOT BETWEEN 1 AND 128
       OR device_id ~ '[[:cntrl:]]' THEN
        RAISE EXCEPTION 'invalid device id "%"', left(device_id, 128)
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A device id is 1 to 128 bytes without control characters.';
    END IF;

    -- one issuer at a time, so that the limit holds
    LOCK TABLE livewidget.device_token IN SHARE ROW EXCLUSIVE MODE;
    IF (SELECT count(*) FROM livewidget.device_token AS t
         WHERE t.device_id = issue_device_token.device_id) >= 100 THEN
        RAISE EXCEPTION 'device "%" already has 100 tokens', device_id
            USING ERRCODE = 'program_limit_exceeded',
                  HINT = 'Revoke its tokens with livewidget.revoke_device_tokens() first.';
    END IF;

    token := 'lwd_' || replace(gen_random_uuid()::text || gen_random_uuid()::text,
                               '-', '');
    INSERT INTO livewidget.device_token (device_id, token_sha256)
    VALUES (issue_device_token.device_id, sha256(convert_to(token, 'UTF8')));
    RETURN token;
END
$$
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION livewidget.issue_device_token(text) IS
'a new token for a device, shown only here; only its SHA-256 is stored';

CREATE FUNCTION livewidget.device_token_valid(device_id text, token text)
RETURNS boolean
AS $$
    SELECT EXISTS (SELECT 1 FROM livewidget.device_token AS t
                    WHERE t.token_sha256 = sha256(convert_to($2, 'UTF8'))
                      AND t.device_id = $1)
$$
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION livewidget.device_token_valid(text, text) IS
'whether the token was issued to the device and not revoked';

CREATE FUNCTION livewidget.revoke_device_tokens(device_id text)
RETURNS integer
AS $$
    WITH gone AS (
        DELETE FROM livewidget.device_token AS t
         WHERE t.device_id = $1
        RETURNING 1
    )
    SELECT count(*)::integer FROM gone
$$
LANGUAGE sql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION livewidget.revoke_device_tokens(text) IS
'revoke every token of a device; returns how many there were';

REVOKE ALL ON FUNCTION livewidget.issue_device_token(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION livewidget.device_token_valid(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION livewidget.revoke_device_tokens(text) FROM PUBLIC;

--
-- The bridge's dead-letter table: messages it rejected for their content.
-- Bounded: after each insert, the oldest rows beyond
-- livewidget.rejected_message_limit (default 10,000; 0 keeps none) go.
--
CREATE TABLE livewidget.rejected_message (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    topic text NOT NULL,
    reason text NOT NULL,
    payload bytea
);

SELECT pg_catalog.pg_extension_config_dump('livewidget.rejected_message', '');
SELECT pg_catalog.pg_extension_config_dump('livewidget.rejected_message_id_seq', '');

--
-- The trigger that keeps it bounded is in C: calling it loads the library,
-- which defines livewidget.rejected_message_limit, so that only a role
-- allowed to set that superuser setting changes the bound.
--
CREATE FUNCTION livewidget.trim_rejected_messages()
RETURNS trigger
AS 'MODULE_PATHNAME', 'livewidget_trim_rejected_messages'
LANGUAGE C
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

REVOKE ALL ON FUNCTION livewidget.trim_rejected_messages() FROM PUBLIC;

CREATE TRIGGER trim_rejected_messages
    AFTER INSERT ON livewidget.rejected_message
    FOR EACH STATEMENT
    EXECUTE FUNCTION livewidget.trim_rejected_messages();
