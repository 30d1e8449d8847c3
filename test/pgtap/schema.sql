--
-- pgTAP: the SQL objects of livewidget, as the contract names them.
-- Runs in a transaction that is rolled back.
--
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS livewidget;

SELECT plan(93);

SELECT has_schema('livewidget');
SELECT has_extension('livewidget');

-- sensor_data
SELECT has_table('livewidget', 'sensor_data', 'sensor_data exists');
SELECT columns_are('livewidget', 'sensor_data',
    ARRAY['id', 'device_id', 'sensor_type', 'value', 'unit', 'ts', 'received_at']);
SELECT col_type_is('livewidget', 'sensor_data', 'id', 'bigint', 'sensor_data.id is bigint');
SELECT col_is_pk('livewidget', 'sensor_data', 'id', 'sensor_data.id is the primary key');
SELECT col_type_is('livewidget', 'sensor_data', 'device_id', 'text', 'sensor_data.device_id is text');
SELECT col_not_null('livewidget', 'sensor_data', 'device_id', 'sensor_data.device_id is not null');
SELECT col_type_is('livewidget', 'sensor_data', 'sensor_type', 'text', 'sensor_data.sensor_type is text');
SELECT col_not_null('livewidget', 'sensor_data', 'sensor_type', 'sensor_data.sensor_type is not null');
SELECT col_type_is('livewidget', 'sensor_data', 'value', 'double precision', 'sensor_data.value is double precision');
SELECT col_not_null('livewidget', 'sensor_data', 'value', 'sensor_data.value is not null');
SELECT col_type_is('livewidget', 'sensor_data', 'unit', 'text', 'sensor_data.unit is text');
SELECT col_is_null('livewidget', 'sensor_data', 'unit', 'sensor_data.unit may be null');
SELECT col_type_is('livewidget', 'sensor_data', 'ts', 'timestamp with time zone', 'sensor_data.ts is timestamptz');
SELECT col_not_null('livewidget', 'sensor_data', 'ts', 'sensor_data.ts is not null');
SELECT col_default_is('livewidget', 'sensor_data', 'ts', 'now()', 'sensor_data.ts defaults to now()');
SELECT col_type_is('livewidget', 'sensor_data', 'received_at', 'timestamp with time zone', 'sensor_data.received_at is timestamptz');
SELECT col_not_null('livewidget', 'sensor_data', 'received_at', 'sensor_data.received_at is not null');
SELECT col_default_is('livewidget', 'sensor_data', 'received_at', 'now()', 'sensor_data.received_at defaults to now()');
SELECT is((SELECT attidentity::text FROM pg_attribute
            WHERE attrelid = 'livewidget.sensor_data'::regclass
              AND attname = 'id'), 'd', 'sensor_data.id is an identity column');
SELECT has_index('livewidget', 'sensor_data', 'sensor_data_device_sensor_ts_idx',
                 ARRAY['device_id', 'sensor_type', 'ts']);
SELECT col_has_check('livewidget', 'sensor_data', 'value', 'sensor_data.value has a check constraint');
SELECT col_has_check('livewidget', 'sensor_data', 'ts', 'sensor_data.ts has a check constraint');

-- tracked_variable
SELECT has_table('livewidget', 'tracked_variable', 'tracked_variable exists');
SELECT columns_are('livewidget', 'tracked_variable',
    ARRAY['id', 'device_id', 'sensor_type', 'widget_id', 'dashboard_uuid', 'max_samples']);
SELECT col_type_is('livewidget', 'tracked_variable', 'id', 'bigint', 'tracked_variable.id is bigint');
SELECT col_is_pk('livewidget', 'tracked_variable', 'id', 'tracked_variable.id is the primary key');
SELECT col_type_is('livewidget', 'tracked_variable', 'device_id', 'text', 'tracked_variable.device_id is text');
SELECT col_not_null('livewidget', 'tracked_variable', 'device_id', 'tracked_variable.device_id is not null');
SELECT col_type_is('livewidget', 'tracked_variable', 'sensor_type', 'text', 'tracked_variable.sensor_type is text');
SELECT col_not_null('livewidget', 'tracked_variable', 'sensor_type', 'tracked_variable.sensor_type is not null');
SELECT col_type_is('livewidget', 'tracked_variable', 'widget_id', 'text', 'tracked_variable.widget_id is text');
SELECT col_not_null('livewidget', 'tracked_variable', 'widget_id', 'tracked_variable.widget_id is not null');
SELECT col_is_unique('livewidget', 'tracked_variable', 'widget_id', 'tracked_variable.widget_id is unique');
SELECT col_has_check('livewidget', 'tracked_variable', 'widget_id', 'tracked_variable.widget_id has a check constraint');
SELECT col_type_is('livewidget', 'tracked_variable', 'dashboard_uuid', 'uuid', 'tracked_variable.dashboard_uuid is uuid');
SELECT col_not_null('livewidget', 'tracked_variable', 'dashboard_uuid', 'tracked_variable.dashboard_uuid is not null');
SELECT col_type_is('livewidget', 'tracked_variable', 'max_samples', 'integer', 'tracked_variable.max_samples is integer');
SELECT col_not_null('livewidget', 'tracked_variable', 'max_samples', 'tracked_variable.max_samples is not null');
SELECT col_default_is('livewidget', 'tracked_variable', 'max_samples', 50, 'tracked_variable.max_samples defaults to 50');
SELECT col_has_check('livewidget', 'tracked_variable', 'max_samples', 'tracked_variable.max_samples has a check constraint');

-- widget_sample
SELECT has_table('livewidget', 'widget_sample', 'widget_sample exists');
SELECT columns_are('livewidget', 'widget_sample',
    ARRAY['widget_id', 'seq', 'ts', 'value', 'unit']);
SELECT col_type_is('livewidget', 'widget_sample', 'widget_id', 'text', 'widget_sample.widget_id is text');
SELECT col_type_is('livewidget', 'widget_sample', 'seq', 'bigint', 'widget_sample.seq is bigint');
SELECT col_type_is('livewidget', 'widget_sample', 'ts', 'timestamp with time zone', 'widget_sample.ts is timestamptz');
SELECT col_type_is('livewidget', 'widget_sample', 'value', 'double precision', 'widget_sample.value is double precision');
SELECT col_type_is('livewidget', 'widget_sample', 'unit', 'text', 'widget_sample.unit is text');
SELECT col_is_pk('livewidget', 'widget_sample', ARRAY['widget_id', 'ts', 'seq'],
                 'widget_sample (widget_id, ts, seq) is the primary key, in buffer order');
SELECT is((SELECT count(*)::int FROM pg_index
            WHERE indrelid = 'livewidget.widget_sample'::regclass), 1,
          'widget_sample has one index: every buffer write pays for each');

-- widget_state: one counter row per widget id ever tracked
SELECT has_table('livewidget', 'widget_state', 'widget_state exists');
SELECT col_is_pk('livewidget', 'widget_state', 'widget_id', 'widget_state.widget_id is the primary key');
SELECT col_type_is('livewidget', 'widget_state', 'last_seq', 'bigint', 'widget_state.last_seq is bigint');
SELECT col_type_is('livewidget', 'widget_state', 'removed_seq', 'bigint', 'widget_state.removed_seq is bigint');

-- functions, with the contract's signatures
SELECT has_function('livewidget', 'track',
                    ARRAY['text', 'text', 'text', 'uuid', 'integer']);
SELECT function_returns('livewidget', 'track',
                        ARRAY['text', 'text', 'text', 'uuid', 'integer'],
                        'livewidget.tracked_variable');
SELECT is((SELECT pronargdefaults::int FROM pg_proc
            WHERE oid = 'livewidget.track(text, text, text, uuid, integer)'::regprocedure),
          1, 'track has one default (max_samples)');
SELECT is((SELECT proargnames FROM pg_proc
            WHERE oid = 'livewidget.track(text, text, text, uuid, integer)'::regprocedure),
          ARRAY['device_id', 'sensor_type', 'widget_id', 'dashboard_uuid', 'max_samples'],
          'track argument names');
SELECT has_function('livewidget', 'untrack', ARRAY['text']);
SELECT function_returns('livewidget', 'untrack', ARRAY['text'], 'boolean');
SELECT has_function('livewidget', 'refill', ARRAY['text']);
SELECT function_returns('livewidget', 'refill', ARRAY['text'], 'integer');
SELECT has_function('livewidget', 'samples', ARRAY['text']);
SELECT function_returns('livewidget', 'samples', ARRAY['text'], 'setof record');
SELECT is((SELECT proargnames FROM pg_proc
            WHERE oid = 'livewidget.samples(text)'::regprocedure),
          ARRAY['widget_id', 'seq', 'ts', 'value', 'unit'],
          'samples returns seq, ts, value, unit');
SELECT has_function('livewidget', 'samples_json', ARRAY['uuid', 'text']);
SELECT function_returns('livewidget', 'samples_json', ARRAY['uuid', 'text'], 'json');
SELECT has_function('livewidget', 'samples_after', ARRAY['text', 'bigint']);
SELECT function_returns('livewidget', 'samples_after', ARRAY['text', 'bigint'], 'json');
SELECT volatility_is('livewidget', 'samples_json', ARRAY['uuid', 'text'], 'stable');
SELECT volatility_is('livewidget', 'samples_after', ARRAY['text', 'bigint'], 'stable');

-- the trigger, and its function running with the owner's rights
SELECT has_trigger('livewidget', 'sensor_data', 'buffer_readings',
                   'sensor_data has the buffer_readings trigger');
SELECT trigger_is('livewidget', 'sensor_data', 'buffer_readings',
                  'livewidget', 'buffer_readings');
SELECT is_definer('livewidget', 'buffer_readings', ARRAY[]::text[]);
SELECT ok(NOT has_function_privilege('public', 'livewidget.buffer_readings()', 'EXECUTE'),
          'PUBLIC cannot execute the trigger function');

-- everything pg_dump must keep
SELECT set_eq(
    $$SELECT unnest(extconfig)::regclass::text FROM pg_extension
       WHERE extname = 'livewidget'$$,
    ARRAY['livewidget.sensor_data', 'livewidget.tracked_variable',
          'livewidget.widget_sample', 'livewidget.widget_state',
          'livewidget.attached_table', 'livewidget.sensor_data_id_seq', 'livewidget.tracked_variable_id_seq',
          'livewidget.device_token', 'livewidget.device_token_id_seq',
          'livewidget.rejected_message', 'livewidget.rejected_message_id_seq'],
    'every table and counter of the extension is dumped');

-- device tokens: functions for the roles an administrator grants, and a
-- table that holds only hashes
SELECT has_function('livewidget', 'issue_device_token', ARRAY['text']);
SELECT function_returns('livewidget', 'issue_device_token', ARRAY['text'], 'text');
SELECT has_function('livewidget', 'device_token_valid', ARRAY['text', 'text']);
SELECT function_returns('livewidget', 'device_token_valid', ARRAY['text', 'text'], 'boolean');
SELECT has_function('livewidget', 'revoke_device_tokens', ARRAY['text']);
SELECT function_returns('livewidget', 'revoke_device_tokens', ARRAY['text'], 'integer');
SELECT ok(NOT has_function_privilege('public', 'livewidget.issue_device_token(text)', 'EXECUTE')
          AND NOT has_function_privilege('public', 'livewidget.device_token_valid(text,text)', 'EXECUTE')
          AND NOT has_function_privilege('public', 'livewidget.revoke_device_tokens(text)', 'EXECUTE'),
          'PUBLIC cannot use the device token functions');
SELECT columns_are('livewidget', 'device_token',
                   ARRAY['id', 'device_id', 'token_sha256', 'issued_at']);
SELECT col_type_is('livewidget', 'device_token', 'token_sha256', 'bytea',
                   'device_token keeps a hash');

-- the dead-letter table, as the contract names its columns
SELECT columns_are('livewidget', 'rejected_message',
                   ARRAY['id', 'received_at', 'topic', 'reason', 'payload']);
SELECT col_type_is('livewidget', 'rejected_message', 'received_at', 'timestamp with time zone',
                   'rejected_message.received_at is timestamp with time zone');
SELECT col_type_is('livewidget', 'rejected_message', 'topic', 'text',
                   'rejected_message.topic is text');
SELECT col_type_is('livewidget', 'rejected_message', 'reason', 'text',
                   'rejected_message.reason is text');
SELECT col_type_is('livewidget', 'rejected_message', 'payload', 'bytea',
                   'rejected_message.payload is bytea');
SELECT col_is_pk('livewidget', 'rejected_message', 'id', 'rejected_message is keyed by id');
SELECT has_trigger('livewidget', 'rejected_message', 'trim_rejected_messages',
                   'rejected_message is kept bounded by a trigger');

SELECT * FROM finish();
ROLLBACK;
