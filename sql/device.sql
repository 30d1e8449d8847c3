--
-- Device tokens (for the bridge's HTTP and WebSocket ingest) and the
-- bridge's dead-letter table, rejected_message.
--
CREATE ROLE lw_ops;
GRANT EXECUTE ON FUNCTION livewidget.issue_device_token(text),
                          livewidget.device_token_valid(text, text),
                          livewidget.revoke_device_tokens(text) TO lw_ops;

-- a token is shown once: "lwd_" and 64 hex digits; only its SHA-256 stays
SET ROLE lw_ops;
SELECT livewidget.issue_device_token('esp32-01') AS token \gset
SELECT :'token' ~ '^lwd_[0-9a-f]{64}$' AS well_formed;
SELECT livewidget.device_token_valid('esp32-01', :'token') AS valid;
SELECT livewidget.device_token_valid('esp32-02', :'token') AS other_device;
SELECT livewidget.device_token_valid('esp32-01', upper(:'token')) AS changed;
SELECT livewidget.device_token_valid('esp32-01', NULL) AS null_token;
SELECT livewidget.device_token_valid(NULL, :'token') AS null_device;
-- the role may use the functions, not read the table
SELECT count(*) FROM livewidget.device_token;
RESET ROLE;
SELECT count(*) AS stored,
       bool_and(token_sha256 = sha256(convert_to(:'token', 'UTF8'))) AS hash_only,
       bool_and(position(convert_to(:'token', 'UTF8') IN token_sha256) = 0) AS no_token
  FROM livewidget.device_token;

-- tokens differ; a device may hold several, then all are revoked
SELECT livewidget.issue_device_token('esp32-01') AS token2 \gset
SELECT :'token' <> :'token2' AS differ;
SELECT livewidget.device_token_valid('esp32-01', :'token') AND
       livewidget.device_token_valid('esp32-01', :'token2') AS both_valid;
SELECT livewidget.revoke_device_tokens('esp32-01') AS revoked;
SELECT livewidget.device_token_valid('esp32-01', :'token') AS after_revoke;
SELECT livewidget.revoke_device_tokens('esp32-01') AS revoked_again;

-- limits and bad arguments
\set VERBOSITY terse
SELECT livewidget.issue_device_token(NULL);
SELECT livewidget.issue_device_token('');
SELECT livewidget.issue_device_token(repeat('x', 129));
SELECT livewidget.issue_device_token(E'esp\n32');
SELECT count(*) FROM (SELECT livewidget.issue_device_token('esp32-03')
                        FROM generate_series(1, 100)) AS t;
SELECT livewidget.issue_device_token('esp32-03');
\set VERBOSITY default
SELECT livewidget.revoke_device_tokens('esp32-03') AS revoked;

-- not for PUBLIC
CREATE ROLE lw_nobody;
SET ROLE lw_nobody;
\set VERBOSITY terse
SELECT livewidget.issue_device_token('esp32-01');
SELECT livewidget.device_token_valid('esp32-01', 'x');
\set VERBOSITY default
RESET ROLE;

-- rejected_message keeps the newest livewidget.rejected_message_limit rows
INSERT INTO livewidget.rejected_message (topic, reason, payload)
SELECT 'devices/esp32-01/telemetry', 'bad json ' || g, convert_to('{', 'UTF8')
  FROM generate_series(1, 5) AS g;
SELECT count(*) AS kept FROM livewidget.rejected_message;
SET livewidget.rejected_message_limit = 3;
INSERT INTO livewidget.rejected_message (topic, reason, payload)
VALUES ('devices/esp32-01/telemetry', 'bad json 6', NULL);
SELECT reason FROM livewidget.rejected_message ORDER BY id;
SET livewidget.rejected_message_limit = 0;
INSERT INTO livewidget.rejected_message (topic, reason) VALUES ('t', 'r');
SELECT count(*) AS kept FROM livewidget.rejected_message;
RESET livewidget.rejected_message_limit;
-- where the library is loaded, the setting is checked
LOAD 'livewidget';
\set VERBOSITY terse
SET livewidget.rejected_message_limit = -1;
\set VERBOSITY default

-- a role that may insert dead letters cannot move the bound: a value it
-- sets before the library is loaded is refused when the trigger loads it
INSERT INTO livewidget.rejected_message (topic, reason)
SELECT 't', 'r' FROM generate_series(1, 5);
CREATE ROLE lw_ingest LOGIN;
GRANT INSERT ON livewidget.rejected_message TO lw_ingest;
\set superuser :USER
\c - lw_ingest
SET livewidget.rejected_message_limit = 0;
INSERT INTO livewidget.rejected_message (topic, reason) VALUES ('t', 'r');
\c - :superuser
SELECT count(*) AS kept FROM livewidget.rejected_message;
DELETE FROM livewidget.rejected_message;
REVOKE INSERT ON livewidget.rejected_message FROM lw_ingest;
DROP ROLE lw_ingest;

REVOKE EXECUTE ON FUNCTION livewidget.issue_device_token(text),
                           livewidget.device_token_valid(text, text),
                           livewidget.revoke_device_tokens(text) FROM lw_ops;
DROP ROLE lw_ops;
DROP ROLE lw_nobody;
