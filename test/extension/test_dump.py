"""pg_dump and restore keep every table of the extension, and seq goes on
increasing afterwards (the contract's buffer rules).

The source database has widgets fed by livewidget.sensor_data, by a
Django-shaped sensors_sensordata (real values, a "timestamp" column
without time zone) and by both; a widget untracked after it had samples;
one that never had any; both readings tables detached and attached again
with readings stored in between; and a third table attached and then
detached for good.  It is dumped with pg_dump -Fc and restored with a
serial pg_restore, or dumped as plain SQL and fed to psql, into a new
database, which must then hold the same rows and keep numbering and
notifying samples where the old one stopped.
"""

import datetime
import json
import select

import pytest

UTC = datetime.timezone.utc
DASHBOARD = "6f1c2a52-4c1e-4bfa-9a51-0c8f3f2f9a10"
OTHER_DASHBOARD = "0b7e6c1d-2f0a-4e55-8d3b-5a9c7e1f2d40"

SOURCE = """
SET timezone = 'UTC';

CREATE TABLE public.sensors_sensordata (
    id serial PRIMARY KEY,
    device_id varchar(64) NOT NULL,
    sensor_type varchar(32) NOT NULL,
    value real NOT NULL,
    unit varchar(16),
    "timestamp" timestamp NOT NULL
);
SELECT livewidget.attach('public.sensors_sensordata',
                         ts_column => 'timestamp');

CREATE TABLE public.old_readings (
    device_id text NOT NULL,
    sensor_type text NOT NULL,
    value double precision NOT NULL,
    unit text,
    ts timestamptz NOT NULL
);
SELECT livewidget.attach('public.old_readings');

SELECT livewidget.track('esp-1', 'temperature', 'w-sd', '{d}', 3);
SELECT livewidget.track('esp-1', 'temperature', 'w-sd-all', '{o}', 10);
SELECT livewidget.track('esp-2', 'humidity', 'w-dj', '{d}', 4);
SELECT livewidget.track('esp-3', 'co2', 'w-both', '{d}', 5);
SELECT livewidget.track('esp-4', 'pressure', 'w-gone', '{d}', 5);
SELECT livewidget.track('esp-5', 'light', 'w-empty', '{o}', 5);

-- six readings for a buffer of three: three pushed out
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, unit, ts)
SELECT 'esp-1', 'temperature', 20.5 + g, '°C',
       '2025-07-09 07:00:00+00'::timestamptz + g * interval '1 min'
  FROM generate_series(1, 6) AS g;

INSERT INTO public.sensors_sensordata
       (device_id, sensor_type, value, unit, "timestamp")
VALUES ('esp-2', 'humidity', 40.1, '%', '2025-07-09 07:01:00'),
       ('esp-2', 'humidity', 40.2, '%', '2025-07-09 07:02:00'),
       ('esp-2', 'humidity', 24.8, '%', '2025-07-09 07:03:00'),
       ('esp-3', 'co2', 401, 'ppm', '2025-07-09 07:02:00');

INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, unit, ts)
VALUES ('esp-3', 'co2', 400, 'ppm', '2025-07-09 07:01:00+00'),
       ('esp-3', 'co2', 402, 'ppm', '2025-07-09 07:03:00+00'),
       ('esp-4', 'pressure', 1013.25, 'hPa', '2025-07-09 07:01:00+00'),
       ('esp-4', 'pressure', 1013.5, 'hPa', '2025-07-09 07:02:00+00');

INSERT INTO public.old_readings VALUES
    ('esp-3', 'co2', 403, 'ppm', '2025-07-09 07:04:00+00');
SELECT livewidget.detach('public.old_readings');

-- both readings tables detached, fed while detached, attached again
SELECT livewidget.detach('public.sensors_sensordata');
INSERT INTO public.sensors_sensordata
       (device_id, sensor_type, value, unit, "timestamp")
VALUES ('esp-2', 'humidity', 99.9, '%', '2025-07-09 07:04:00');
SELECT livewidget.attach('public.sensors_sensordata',
                         ts_column => 'timestamp');
INSERT INTO public.sensors_sensordata
       (device_id, sensor_type, value, unit, "timestamp")
VALUES ('esp-2', 'humidity', 41.5, '%', '2025-07-09 07:05:00'),
       ('esp-3', 'co2', 405, 'ppm', '2025-07-09 07:05:00');

SELECT livewidget.detach('livewidget.sensor_data');
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, unit, ts)
VALUES ('esp-1', 'temperature', -40, '°C', '2025-07-09 07:07:00+00');
SELECT livewidget.attach('livewidget.sensor_data');
INSERT INTO livewidget.sensor_data (device_id, sensor_type, value, unit, ts)
VALUES ('esp-1', 'temperature', 27.25, '°C', '2025-07-09 07:08:00+00'),
       ('esp-3', 'co2', 406, 'ppm', '2025-07-09 07:06:00+00');

SELECT livewidget.untrack('w-gone');
""".replace("{d}", DASHBOARD).replace("{o}", OTHER_DASHBOARD)

# Which table feeds each widget's device+sensor in the readings added
# after the restore.
FEEDS = {
    "w-sd": ("livewidget.sensor_data", "esp-1", "temperature"),
    "w-sd-all": ("livewidget.sensor_data", "esp-1", "temperature"),
    "w-dj": ("public.sensors_sensordata", "esp-2", "humidity"),
    "w-both": ("public.sensors_sensordata", "esp-3", "co2"),
    "w-gone": ("livewidget.sensor_data", "esp-4", "pressure"),
    "w-empty": ("livewidget.sensor_data", "esp-5", "light"),
}


def rows(pg, db, query, params=None):
    return pg.sql(query, params, dbname=db)


def snapshot(pg, db):
    """Everything a restore must keep, as comparable Python values."""
    state = {
        "tracked_variable": set(rows(pg, db,
            "SELECT id, device_id, sensor_type, widget_id, dashboard_uuid,"
            "       max_samples FROM livewidget.tracked_variable")),
        "widget_sample": set(rows(pg, db,
            "SELECT widget_id, seq, ts, value, unit"
            "  FROM livewidget.widget_sample")),
        "widget_state": set(rows(pg, db,
            "SELECT widget_id, last_seq, removed_seq, sample_count"
            "  FROM livewidget.widget_state")),
        "attached_table": set(rows(pg, db,
            "SELECT readings::text, device_column, sensor_column,"
            "       value_column, unit_column, ts_column"
            "  FROM livewidget.attached_table")),
        "triggers": set(rows(pg, db,
            "SELECT tgrelid::regclass::text, tgname,"
            "       tgfoid::regprocedure::text, tgenabled"
            "  FROM pg_trigger WHERE NOT tgisinternal")),
        "sensor_data": set(rows(pg, db,
            "SELECT id, device_id, sensor_type, value, unit, ts, received_at"
            "  FROM livewidget.sensor_data")),
        "sensors_sensordata": set(rows(pg, db,
            "SELECT * FROM public.sensors_sensordata")),
        "old_readings": set(rows(pg, db, "SELECT * FROM public.old_readings")),
    }
    widgets = sorted(r[0] for r in state["widget_state"])
    state["samples"] = {w: rows(pg, db, "SELECT * FROM livewidget.samples(%s)",
                                (w,))
                        for w in widgets}
    state["samples_after"] = {
        w: rows(pg, db, "SELECT livewidget.samples_after(%s, 0)::text", (w,))
        for w in widgets}
    state["samples_json"] = {
        (w, str(d)): rows(pg, db,
                          "SELECT livewidget.samples_json(%s, %s)::text",
                          (d, w))
        for (_, _, _, w, d, _) in state["tracked_variable"]}
    return state


def notifications(conn, timeout):
    """(channel, payload) of every notification conn receives until
    timeout seconds pass without one."""
    pgconn = conn.pgconn
    while True:
        ready, _, _ = select.select([pgconn.socket], [], [], timeout)
        if not ready:
            return
        pgconn.consume_input()
        while True:
            note = pgconn.notifies()
            if note is None:
                break
            yield note.relname.decode(), note.extra.decode()


def build_source(pg, source):
    # one transaction per statement, as psql runs a script: the buffers
    # are written at each commit, so that readings push samples out
    with pg.connect(source) as conn:
        for statement in SOURCE.split(";\n"):
            if statement.strip():
                conn.execute(statement)
    before = snapshot(pg, source)

    # the scenario did what it says, or the comparison proves little
    assert {w for (w, *_rest) in before["widget_sample"]} == \
        {"w-sd", "w-sd-all", "w-dj", "w-both"}
    state = {r[0]: r for r in before["widget_state"]}
    assert state["w-sd"][2] > 0, "w-sd should have pushed samples out"
    assert state["w-gone"][1] > 0 and state["w-gone"][3] == 0
    assert state["w-empty"][1] == 0
    assert [r[2] for r in before["samples"]["w-dj"]] == \
        [40.1, 40.2, 24.8, 41.5]
    assert {r[0] for r in before["attached_table"]} == \
        {"livewidget.sensor_data", "sensors_sensordata"}
    return before


def dump_and_restore(pg, pg_tool, source, target, fmt, tmp_path):
    if fmt == "custom":
        archive = tmp_path / "source.dump"
        pg_tool("pg_dump", "-Fc", "-f", str(archive), source)
        pg_tool("pg_restore", "--exit-on-error", "-d", target, str(archive))
    else:
        script = pg_tool("pg_dump", "-Fp", source).stdout
        pg_tool("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", target,
                input=script)


def add_readings_after_restore(pg, db):
    """One new reading for every widget (after tracking w-gone again);
    returns {widget: [notified samples]} and the new sensor_data id."""
    channels = ["widget_" + w for w in FEEDS]
    received = {}
    with pg.connect(db) as listener:
        for channel in channels:
            listener.execute('LISTEN "%s"' % channel)
        with pg.connect(db) as writer:
            writer.execute("SELECT livewidget.track('esp-4', 'pressure', "
                           "'w-gone', %s, 5)", (DASHBOARD,))
            new_id = None
            for i, (widget, (table, device, sensor)) in \
                    enumerate(sorted(FEEDS.items())):
                if widget == "w-sd-all":
                    continue  # fed by the reading of w-sd
                ts = datetime.datetime(2025, 7, 10, 8, i, tzinfo=UTC)
                if table == "public.sensors_sensordata":
                    writer.execute(
                        "INSERT INTO public.sensors_sensordata"
                        " (device_id, sensor_type, value, unit, \"timestamp\")"
                        " VALUES (%s, %s, %s, 'x', %s)",
                        (device, sensor, 1000 + i, ts.replace(tzinfo=None)))
                else:
                    cur = writer.execute(
                        "INSERT INTO livewidget.sensor_data"
                        " (device_id, sensor_type, value, unit, ts)"
                        " VALUES (%s, %s, %s, 'x', %s) RETURNING id",
                        (device, sensor, 1000 + i, ts))
                    new_id = max(new_id or 0, cur.fetchone()[0])
            # a table detached before the dump stays detached
            writer.execute("INSERT INTO public.old_readings VALUES "
                           "('esp-3', 'co2', 1, 'ppm', now())")
        for channel, text in notifications(listener, timeout=2):
            payload = json.loads(text)
            assert channel == "widget_" + payload["widget_id"]
            received.setdefault(payload["widget_id"], []).extend(
                payload["samples"])
    return received, new_id


@pytest.mark.parametrize("fmt", ["custom", "plain"])
def test_dump_and_restore_keep_buffers_and_seq(pg, pg_tool, new_database,
                                               tmp_path, fmt):
    source = new_database()
    before = build_source(pg, source)
    last_seq_before = {r[0]: r[1] for r in before["widget_state"]}
    max_id_before = max(r[0] for r in before["sensor_data"])
    for widget, samples in before["samples"].items():
        assert all(s[0] <= last_seq_before[widget] for s in samples)

    target = new_database(extension=False)
    dump_and_restore(pg, pg_tool, source, target, fmt, tmp_path)
    after = snapshot(pg, target)

    for key in before:
        assert after[key] == before[key], "%s differs after restore" % key

    received, new_id = add_readings_after_restore(pg, target)
    assert new_id > max_id_before, "sensor_data's identity went back"

    # every widget heard of its new sample, numbered after all it had
    assert set(received) == set(FEEDS)
    for widget, samples in received.items():
        seqs = [s["seq"] for s in samples]
        assert seqs == sorted(set(seqs)), (widget, seqs)
        assert min(seqs) > last_seq_before[widget], (
            "%s: seq %d after the restore, %d before"
            % (widget, min(seqs), last_seq_before[widget]))
        newest = samples[-1]
        assert newest["value"] >= 1000 and newest["unit"] == "x"
        buffered = rows(pg, target,
                        "SELECT seq, value FROM livewidget.samples(%s)",
                        (widget,))
        assert buffered[-1] == (newest["seq"], newest["value"]), widget

    # w-gone, tracked again, was filled from its two old readings, also
    # numbered after the seqs it had handed out before the dump
    gone = rows(pg, target, "SELECT seq, value FROM livewidget.samples(%s)",
                ("w-gone",))
    assert [v for _, v in gone] == [1013.25, 1013.5,
                                    received["w-gone"][-1]["value"]]
    assert all(s > last_seq_before["w-gone"] for s, _ in gone)

    # nothing came from the table detached before the dump
    assert [v for _, v in rows(pg, target,
                               "SELECT seq, value FROM livewidget.samples(%s)",
                               ("w-both",))] == \
        [402, 403, 405, 406, received["w-both"][-1]["value"]]
