"""MQTT ingest end to end: Mosquitto -> livewidget-bridge -> PostgreSQL.

Each test publishes with paho-mqtt and checks the rows of
livewidget.sensor_data and the bridge's counters.  A test that expects
nothing to be stored waits for the rejection counter to move instead of
sleeping, then checks that no row appeared.
"""

import datetime
import json
import re
import secrets
import signal
import threading
import time

import pytest

from lw_servers import LOG_LINE, SENSOR_DATA, Mosquitto, wait_for

UTC = datetime.timezone.utc


def topic(device, kind="telemetry"):
    return "devices/%s/%s" % (device, kind)


def ts(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture
def bridge(start_bridge):
    return start_bridge()


def wait_rows(pg, device, n, timeout=15.0):
    wait_for(lambda: pg.count(device) >= n, timeout,
             what="%d rows of %s" % (n, device))
    return pg.readings(device)


def wait_rejected(bridge, reason, before, timeout=15.0):
    wait_for(lambda: bridge.rejected(reason) > before, timeout,
             what="a rejection for %s" % reason)


def reject_case(pg, broker, bridge, device, payload, reason,
                kind="telemetry"):
    """Publish payload, expect it rejected for reason, then prove the next
    good message of the device is stored."""
    before = bridge.rejected(reason)
    broker.publish(topic(device, kind), payload)
    wait_rejected(bridge, reason, before)
    broker.publish(topic(device), {"sensor_type": "ok", "value": 1})
    rows = wait_rows(pg, device, 1)
    assert [r[0] for r in rows] == ["ok"], rows


def test_single_reading(pg, broker, bridge, device):
    broker.publish(topic(device), {
        "device_id": device, "sensor_type": "temperature", "value": 24.8,
        "unit": "°C", "timestamp": "2025-07-09T09:15:02.25+02:00"})
    rows = wait_rows(pg, device, 1)
    assert rows == [("temperature", 24.8, "°C",
                     ts("2025-07-09T07:15:02.250Z"))]


def test_device_from_topic_and_defaults(pg, broker, bridge,
                                        device):
    """No device_id, unit or timestamp: the topic names the device, the
    unit is null and ts is the receive time."""
    before = datetime.datetime.now(UTC)
    broker.publish(topic(device), {"sensor_type": "rh", "value": 41})
    rows = wait_rows(pg, device, 1)
    after = datetime.datetime.now(UTC)
    assert rows[0][:3] == ("rh", 41.0, None)
    assert before - datetime.timedelta(seconds=1) <= rows[0][3] <= after


def test_latin1_database_gets_the_text_right(pg, broker, start_bridge,
                                             device):
    """Payloads are UTF-8; a database in LATIN1 stores "°C" as "°C" (the
    server converts), not the two bytes of its UTF-8 form as "Â°C"."""
    db = "lw_latin1_" + secrets.token_hex(4)
    pg.sql("CREATE DATABASE %s ENCODING 'LATIN1' LC_COLLATE 'C' "
           "LC_CTYPE 'C' TEMPLATE template0" % db, dbname="postgres")
    pg.sql("CREATE EXTENSION livewidget" if pg.extension else SENSOR_DATA,
           dbname=db)
    start_bridge(database=pg.conninfo_for(db))
    broker.publish(topic(device), {"sensor_type": "t", "value": 1,
                                   "unit": "°C"})
    rows = wait_for(lambda: pg.readings(device, dbname=db),
                    what="the reading in the LATIN1 database")
    assert rows[0][2] == "°C"


def test_epoch_timestamp(pg, broker, bridge, device):
    broker.publish(topic(device), {
        "sensor_type": "t", "value": -0.5, "timestamp": 1752045302.125})
    rows = wait_rows(pg, device, 1)
    assert rows[0][3] == ts("2025-07-09T07:15:02.125Z")


def test_bulk_keeps_message_order(pg, broker, bridge, device):
    readings = [{"sensor_type": "s%d" % (i % 3), "value": 100 - i}
                for i in range(60)]
    broker.publish(topic(device),
                          {"device_id": device, "readings": readings})
    rows = wait_rows(pg, device, 60)
    assert [(r[0], r[1]) for r in rows] == \
        [(r["sensor_type"], r["value"]) for r in readings]


def test_messages_stored_in_publish_order(pg, broker, bridge,
                                          device):
    broker.publish_all([(topic(device), {"sensor_type": "n", "value": i})
                           for i in range(200)])
    rows = wait_rows(pg, device, 200)
    assert [r[1] for r in rows] == list(range(200))


def test_bulk_is_all_or_nothing(pg, broker, bridge, device):
    """One bad reading rejects the whole bulk."""
    reject_case(pg, broker, bridge, device, {"readings": [
        {"sensor_type": "a", "value": 1},
        {"sensor_type": "a", "value": "2"}]}, "invalid_value")


def test_device_mismatch_rejected(pg, broker, bridge, device):
    reject_case(pg, broker, bridge, device, {
        "device_id": "someone-else", "sensor_type": "t", "value": 1},
        "device_mismatch")
    assert pg.count("someone-else") == 0


def test_malformed_json_logged_then_next_stored(pg, broker,
                                                bridge, device):
    """The rejection is one log line naming device, topic and reason; the
    payload is quoted escaped, so a newline in it cannot forge a line."""
    forged = ("not json\n2026-01-01 00:00:00.000 UTC [1] LOG:  main: "
              "forged\n" + "x" * 500)
    reject_case(pg, broker, bridge, device, forged,
                "malformed_json")
    lines = [line for line in bridge.logs().splitlines()
             if "rejected message" in line and device in line]
    assert len(lines) == 1, lines
    line = lines[0]
    assert ('mqtt: rejected message from device "%s" on topic "%s": '
            'malformed_json' % (device, topic(device))) in line
    assert "forged" in line and "\\x0a" in line
    quoted = line.split('payload (%d bytes): "' % len(forged))[1]
    assert quoted.endswith('..."')
    assert len(quoted) < 4 * 200 + 8
    for l in bridge.logs().splitlines():
        assert LOG_LINE.match(l), l
        assert not l.startswith("2026-01-01 00:00:00.000 UTC [1]"), l


def test_device_text_cannot_reach_a_terminal_raw(pg, broker, bridge,
                                                 device):
    """A JSON key holding U+009B (CSI, a C1 control) comes back in the
    parser's error text: the log line has it escaped, and the quotes of
    the quoted payload read as \\" rather than as hex."""
    payload = '{"k\u009b2J":1,"k\u009b2J":2}'.encode()
    reject_case(pg, broker, bridge, device, payload, "malformed_json")
    line = [line for line in bridge.logs().splitlines()
            if "rejected message" in line and device in line][0]
    assert "\u009b" not in line and "\x9b" not in line, ascii(line)
    assert "duplicate object key near '\"k\\xc2\\x9b2J\"'" in line, line
    assert 'payload (21 bytes): "{\\"k\\xc2\\x9b2J\\":1,' in line, line


@pytest.mark.parametrize("value", ['"24.8"', "true", "null", "[1]", "{}"])
def test_non_numeric_value_rejected(pg, broker, bridge, device,
                                    value):
    reject_case(pg, broker, bridge, device,
                '{"sensor_type":"t","value":%s}' % value, "invalid_value")


@pytest.mark.parametrize("payload,reason", [
    ({"value": 1}, "missing_field"),
    ({"sensor_type": "t"}, "missing_field"),
    ({"sensor_type": "", "value": 1}, "invalid_field"),
    ({"sensor_type": "x" * 129, "value": 1}, "invalid_field"),
    ({"sensor_type": "a\u0007b", "value": 1}, "invalid_field"),
    ({"sensor_type": "t", "value": 1, "unit": 5}, "invalid_field"),
    ({"sensor_type": "t", "value": 1, "unit": "u" * 257}, "invalid_field"),
    ({"readings": []}, "missing_field"),
    ([1, 2], "malformed_json"),
    ('{"sensor_type":"t","value":1,"value":2}', "malformed_json"),
    ('{"sensor_type":"t","value":1e999}', "malformed_json"),
])
def test_invalid_message_rejected(pg, broker, bridge, device,
                                  payload, reason):
    reject_case(pg, broker, bridge, device, payload, reason)


@pytest.mark.parametrize("stamp", [
    "2025-07-09T07:15:02",             # no offset
    "2025-07-09 07:15:02Z",            # space, not T
    "2025-02-29T00:00:00Z",            # not a leap year
    "2025-07-09T24:00:00Z",
    "2025-07-09T07:15:02+25:00",
    "yesterday",
    -1,                                # before the epoch
    1e300,
    True,
    "2999-01-01T00:00:00Z",            # more than a day ahead
])
def test_bad_timestamp_rejected(pg, broker, bridge, device, stamp):
    reject_case(pg, broker, bridge, device,
                {"sensor_type": "t", "value": 1, "timestamp": stamp},
                "bad_timestamp")


def test_too_large_rejected(pg, broker, bridge, device):
    """Over 1 MiB of payload, or over 10,000 readings: rejected whole."""
    big = json.dumps({"sensor_type": "t", "value": 1, "pad": "x" * (1 << 20)})
    reject_case(pg, broker, bridge, device, big, "too_large")
    many = {"readings": [{"sensor_type": "t", "value": i}
                         for i in range(10001)]}
    before = bridge.rejected("too_large")
    broker.publish(topic(device), many)
    wait_rejected(bridge, "too_large", before)
    assert pg.count(device) == 1        # the "ok" of reject_case


def test_largest_bulk_accepted(pg, broker, bridge, device):
    readings = [{"sensor_type": "t", "value": i, "unit": "°C",
                 "timestamp": 1752045302 + i} for i in range(10000)]
    broker.publish(topic(device), {"readings": readings})
    rows = wait_rows(pg, device, 10000, timeout=30)
    assert len(rows) == 10000 and rows[-1][1] == 9999


def test_bad_topic_rejected(pg, broker, bridge, device):
    """A device id longer than 128 bytes cannot be stored."""
    long_id = "d" * 129
    before = bridge.rejected("bad_topic")
    broker.publish(topic(long_id), {"sensor_type": "t", "value": 1})
    wait_rejected(bridge, "bad_topic", before)
    assert pg.count(long_id) == 0


def test_redelivery_is_not_stored_twice(pg, broker, bridge,
                                        device):
    """The same readings with device timestamps, delivered twice (QoS 1 is
    at least once), are stored once; within a message the first repeat
    wins."""
    message = {"readings": [
        {"sensor_type": "t", "value": 1, "timestamp": "2025-07-09T07:15:02Z"},
        {"sensor_type": "h", "value": 2, "timestamp": "2025-07-09T07:15:02Z"},
        {"sensor_type": "t", "value": 3, "timestamp": "2025-07-09T07:15:02Z"},
        {"sensor_type": "t", "value": 4, "timestamp": 1752045302.5}]}
    dup_before = bridge.metric("livewidget_ingest_readings_duplicate_total")
    broker.publish_all([(topic(device), message), (topic(device), message)])
    wait_for(lambda: bridge.metric(
        "livewidget_ingest_readings_duplicate_total") >= dup_before + 5,
        what="the duplicates to be counted")
    rows = pg.readings(device)
    assert [(r[0], r[1]) for r in rows] == [("t", 1), ("h", 2), ("t", 4)]


def test_readings_without_timestamp_all_kept(pg, broker, bridge,
                                             device):
    message = {"readings": [{"sensor_type": "t", "value": 7}] * 5}
    broker.publish_all([(topic(device), message), (topic(device), message)])
    rows = wait_rows(pg, device, 10)
    assert len(rows) == 10 and all(r[1] == 7 for r in rows)


def test_database_refusal_rejects_not_retries(pg, broker, bridge,
                                              device):
    """A message the database refuses for its content (a CHECK constraint
    here) is rejected once, not retried, and kept as a dead letter with
    PostgreSQL's message; the next one is stored."""
    name = "only_small_" + device.replace("-", "_")
    pg.sql("ALTER TABLE livewidget.sensor_data ADD CONSTRAINT %s "
                     "CHECK (device_id <> '%s' OR value < 100) NOT VALID"
                     % (name, device))
    try:
        reject_case(pg, broker, bridge, device,
                    {"sensor_type": "t", "value": 1000},
                    "rejected_by_database")
        assert bridge.metric("livewidget_ingest_messages_held") == 0
    finally:
        pg.sql("ALTER TABLE livewidget.sensor_data "
                         "DROP CONSTRAINT %s" % name)
    rows = dead_letters(pg, device)
    assert len(rows) == 1, rows
    assert rows[0][1].startswith("rejected_by_database: ") and \
        name in rows[0][1], rows[0][1]


def dead_letters(pg, device):
    """The rows livewidget.rejected_message holds for device's topic."""
    if not pg.extension:
        pytest.skip("the livewidget extension is not installed")
    return pg.sql("SELECT topic, reason, payload "
                  "FROM livewidget.rejected_message "
                  "WHERE topic = %s ORDER BY id", (topic(device),))


def test_rejected_message_kept_as_dead_letter(pg, broker, bridge, device):
    """A message rejected for its content goes whole into
    livewidget.rejected_message: topic, reason and the payload's bytes."""
    payload = '{"sensor_type":"t","value":"24,8","unit":"\u00b0C"}'
    before = bridge.metric("livewidget_ingest_dead_letters_total")
    reject_case(pg, broker, bridge, device, payload, "invalid_value")
    rows = dead_letters(pg, device)
    assert len(rows) == 1, rows
    assert rows[0][0] == topic(device)
    assert rows[0][1].startswith("invalid_value: "), rows[0][1]
    assert bytes(rows[0][2]) == payload.encode()
    assert bridge.metric("livewidget_ingest_dead_letters_total") == before + 1


def test_dead_letters_rate_limited(pg, broker, bridge, device):
    """A flood of bad messages: at most 100 a second are written, the
    others only logged and counted; every one counts as rejected."""
    written = bridge.metric("livewidget_ingest_dead_letters_total")
    dropped = bridge.metric("livewidget_ingest_dead_letters_dropped_total")
    before = bridge.rejected("malformed_json")
    started = time.monotonic()
    broker.publish_all([(topic(device), "{") for _ in range(300)])
    wait_for(lambda: bridge.rejected("malformed_json") - before == 300,
             what="300 rejections")
    seconds = time.monotonic() - started
    written = bridge.metric("livewidget_ingest_dead_letters_total") - written
    dropped = bridge.metric(
        "livewidget_ingest_dead_letters_dropped_total") - dropped
    assert written + dropped == 300
    # the counting windows are whole seconds of the clock
    assert written <= 100 * (int(seconds) + 2), (written, seconds)
    assert len(dead_letters(pg, device)) == written


def test_senml_pack(pg, broker, bridge, device):
    pack = [{"bn": device + "/", "bt": 1752045300, "bu": "Cel",
             "n": "temperature", "v": 23.5},
            {"n": "temperature", "t": 1, "v": 23.75},
            {"n": "humidity", "u": "%RH", "t": 1, "v": 41}]
    broker.publish(topic(device, "senml"), pack)
    rows = wait_rows(pg, device, 3)
    assert rows == [
        ("temperature", 23.5, "Cel", ts("2025-07-09T07:15:00Z")),
        ("temperature", 23.75, "Cel", ts("2025-07-09T07:15:01Z")),
        ("humidity", 41.0, "%RH", ts("2025-07-09T07:15:01Z"))]


def test_senml_without_numeric_value_rejected(pg, broker, bridge,
                                              device):
    reject_case(pg, broker, bridge, device,
                [{"n": "temperature", "v": 1}, {"n": "door", "vb": True}],
                "invalid_value", kind="senml")
    assert "only numeric values are stored" in bridge.logs()


def test_retained_copy_not_stored_again(pg, broker,
                                        start_bridge, device):
    """A retained message is stored when published; the copy the broker
    hands to every new subscription is skipped."""
    start_bridge()
    broker.publish(topic(device), {"sensor_type": "t", "value": 1},
                          retain=True)
    wait_rows(pg, device, 1)
    try:
        second = start_bridge()
        wait_for(lambda: second.metric(
            "livewidget_ingest_retained_skipped_total") >= 1,
            what="the retained copy to be skipped")
        assert pg.count(device) == 1
    finally:
        broker.publish(topic(device), "", retain=True)   # clear it


def test_shared_subscription(pg, broker, start_bridge, device):
    bridge = start_bridge(mqtt_shared_group="lw-test")
    assert '"$share/lw-test/devices/+/telemetry"' in bridge.logs()
    broker.publish(topic(device), {"sensor_type": "t", "value": 5})
    assert wait_rows(pg, device, 1)[0][1] == 5


def test_metrics_and_readiness(pg, broker, bridge, device):
    m = bridge.metrics()
    assert m["livewidget_ingest_mqtt_connected"] == 1
    assert m["livewidget_ingest_ready"] == 1
    for reason in ("malformed_json", "invalid_value", "device_mismatch",
                   "missing_field", "too_large", "bad_timestamp",
                   "bad_topic", "invalid_field", "rejected_by_database"):
        assert 'livewidget_ingest_messages_rejected_total{reason="%s"}' \
            % reason in m
    received = m["livewidget_ingest_messages_received_total"]
    stored = m["livewidget_ingest_readings_stored_total"]
    broker.publish(topic(device), {"readings": [
        {"sensor_type": "a", "value": 1}, {"sensor_type": "b", "value": 2}]})
    wait_rows(pg, device, 2)
    m = bridge.metrics()
    assert m["livewidget_ingest_messages_received_total"] == received + 1
    assert m["livewidget_ingest_readings_stored_total"] == stored + 2


def test_database_restart(pg, broker, start_bridge, device):
    """Messages published while PostgreSQL is down are stored once it is
    back, in order, and the bridge is not ready meanwhile."""
    bridge = start_bridge()
    broker.publish(topic(device), {"sensor_type": "n", "value": 0})
    wait_rows(pg, device, 1)

    pg.stop()
    try:
        broker.publish_all([(topic(device), {"sensor_type": "n", "value": i})
                               for i in range(1, 31)])
        wait_for(lambda: bridge.get("/readyz")[0] == 503,
                 what="the bridge to report not ready")
        time.sleep(1)
    finally:
        pg.start()

    rows = wait_rows(pg, device, 31, timeout=60)
    assert [r[1] for r in rows] == list(range(31))
    bridge.wait_ready(60)
    logs = bridge.logs()
    assert logs.count("holding messages and pausing MQTT") == 1, logs
    assert "the database is back" in logs


def test_bridge_down_messages_kept_by_broker(pg, broker,
                                             start_bridge, device):
    """The persistent session: what is published while the bridge is
    stopped arrives when it starts again with the same client id."""
    client_id = "lw-test-session-" + device
    first = start_bridge(mqtt_client_id=client_id)
    assert first.stop() == 0
    broker.publish_all([(topic(device), {"sensor_type": "n", "value": i})
                           for i in range(20)])
    start_bridge(mqtt_client_id=client_id)
    rows = wait_rows(pg, device, 20)
    assert [r[1] for r in rows] == list(range(20))


def test_graceful_stop_loses_and_duplicates_nothing(pg, broker,
                                                    start_bridge, device):
    """SIGTERM in the middle of a stream of readings without timestamps
    (which are never merged, so a duplicate would show): after a restart
    every reading is there exactly once."""
    client_id = "lw-test-stop-" + device
    first = start_bridge(mqtt_client_id=client_id)
    total = 2000
    publisher = threading.Thread(target=broker.publish_all, args=(
        [(topic(device), {"sensor_type": "n", "value": i})
         for i in range(total)],))
    publisher.start()
    wait_for(lambda: pg.count(device) >= 50, what="a first part")
    assert first.stop() == 0
    publisher.join(30)
    stopped_at = pg.count(device)
    assert stopped_at < total, "the stop came too late to test anything"

    start_bridge(mqtt_client_id=client_id)
    rows = wait_rows(pg, device, total, timeout=30)
    time.sleep(1)
    rows = pg.readings(device)
    assert sorted(r[1] for r in rows) == list(range(total))
    assert [r[1] for r in rows] == list(range(total))


def test_two_bridges_store_each_reading_once(pg, broker,
                                             start_bridge, device):
    """Two bridges with their own subscriptions both get every message;
    the per-device advisory lock and the duplicate check keep one copy of
    each reading that has a device timestamp."""
    bridges = [start_bridge(), start_bridge()]
    total = 300
    broker.publish_all([(topic(device), {"readings": [
        {"sensor_type": "t", "value": i, "timestamp": 1752045000 + i},
        {"sensor_type": "h", "value": i, "timestamp": 1752045000 + i}]})
        for i in range(total)])
    wait_for(lambda: sum(b.metric("livewidget_ingest_messages_stored_total")
                         for b in bridges) >= 2 * total + 0,
             what="both bridges to store every message")
    rows = pg.sql(
        "SELECT sensor_type, count(*), count(DISTINCT ts) FROM "
        "livewidget.sensor_data WHERE device_id = %s GROUP BY 1 ORDER BY 1",
        (device,))
    assert rows == [("h", total, total), ("t", total, total)]


def test_start_while_database_down(pg, broker, start_bridge,
                                   device):
    """The bridge starts without the database, stays off the broker (which
    keeps the session's messages) and catches up once it answers."""
    client_id = "lw-test-late-db-" + device
    start_bridge(mqtt_client_id=client_id).stop()
    pg.stop()
    try:
        bridge = start_bridge(mqtt_client_id=client_id, wait=False)
        wait_for(lambda: "MQTT stays disconnected until it answers"
                 in bridge.logs(), what="the bridge to wait for the database")
        broker.publish_all([(topic(device), {"sensor_type": "n", "value": i})
                               for i in range(10)])
        assert bridge.get("/readyz")[0] == 503
        assert bridge.metric("livewidget_ingest_mqtt_connected") == 0
    finally:
        pg.start()
    rows = wait_rows(pg, device, 10, timeout=60)
    assert [r[1] for r in rows] == list(range(10))
    bridge.wait_ready(30)


def test_stop_while_database_down_stores_what_it_holds(pg, broker,
                                                       start_bridge, device):
    """SIGTERM while the database is down and messages are held, without a
    spool file: the bridge keeps trying and says so, stores them once the
    database is back and exits 0.  With what the broker kept for the next
    start, every reading (none with a timestamp, so a duplicate would
    show) is stored exactly once, in order."""
    client_id = "lw-test-stop-down-" + device
    bridge = start_bridge(mqtt_client_id=client_id)
    pg.stop()
    try:
        broker.publish_all([(topic(device), {"sensor_type": "n", "value": i})
                            for i in range(20)])
        wait_for(lambda: bridge.metric("livewidget_ingest_messages_held") > 0,
                 what="messages to be held")
        bridge.signal(signal.SIGTERM)
        said = wait_for(lambda: re.search(
            r"stopping: (\d+) held messages? (is|are) not stored yet: the "
            r"database is unreachable \(.*\); retrying until it answers; a "
            r"second SIGTERM or SIGINT stops at once and loses (it|them)$",
            bridge.logs(), re.M), what="the stop to say what it waits for")
        time.sleep(3)
        assert bridge.proc.poll() is None, \
            "the bridge stopped with messages held:\n" + bridge.logs()
    finally:
        pg.start()
    assert bridge.wait_exit(30) == 0, bridge.logs()
    held = int(said.group(1))
    assert [r[1] for r in pg.readings(device)] == list(range(held))
    assert "could not be stored before stopping" not in bridge.logs()

    start_bridge(mqtt_client_id=client_id)
    wait_rows(pg, device, 20, timeout=30)
    time.sleep(1)
    assert [r[1] for r in pg.readings(device)] == list(range(20))


def open_transaction_on(pg, device):
    """A session that inserted a reading of device and keeps its
    transaction open, holding its widget's state row locked: every commit
    of a reading of device waits for it (the buffers are written at
    commit)."""
    if not pg.extension:
        pytest.skip("the livewidget extension is not installed")
    pg.sql("SELECT livewidget.track(%s, 't', %s, gen_random_uuid())",
           (device, "w-" + device))
    session = pg.connect()
    session.execute("BEGIN")
    session.execute("INSERT INTO livewidget.sensor_data "
                    "(device_id, sensor_type, value) VALUES (%s, 't', -1)",
                    (device,))
    session.execute("SELECT 1 FROM livewidget.widget_state "
                    "WHERE widget_id = %s FOR UPDATE", ("w-" + device,))
    return session


def test_open_transaction_holds_up_only_its_device(pg, broker, start_bridge,
                                                   device):
    """A transaction left open on a reading of device X and its widget's
    row makes the bridge's COMMIT for X wait.  That is no outage: X's
    messages are held and retried in order, other devices are stored at
    once, MQTT stays connected and the bridge ready, and the log says
    neither that the database went nor that it came back."""
    other = device + "-other"
    bridge = start_bridge()
    session = open_transaction_on(pg, device)
    try:
        broker.publish(topic(device), {"sensor_type": "t", "value": 1})
        started = time.monotonic()
        broker.publish_all([(topic(other), {"sensor_type": "t", "value": i})
                            for i in range(5)])
        broker.publish(topic(device), {"sensor_type": "t", "value": 2})
        wait_rows(pg, other, 5)
        assert time.monotonic() - started < 8
        wait_for(lambda: bridge.metric("livewidget_ingest_messages_held")
                 == 2, what="both messages of the locked device held")
        for _ in range(4):
            assert bridge.get("/readyz")[0] == 200
            assert bridge.metric("livewidget_ingest_mqtt_connected") == 1
            time.sleep(0.5)
        assert bridge.metric("livewidget_ingest_db_busy_total") >= 2
        assert pg.count(device) == 0
        session.execute("COMMIT")
    finally:
        session.close()
    rows = wait_rows(pg, device, 3)
    assert [r[1] for r in rows] == [-1, 1, 2]
    wait_for(lambda: bridge.metric("livewidget_ingest_messages_held") == 0,
             what="nothing held")

    # and the device is back to normal
    broker.publish(topic(device), {"sensor_type": "t", "value": 3})
    assert [r[1] for r in wait_rows(pg, device, 4)] == [-1, 1, 2, 3]
    logs = bridge.logs()
    assert logs.count('ingest: device "%s": could not store readings: '
                      'canceling statement due to lock timeout; holding its '
                      'messages and retrying' % device) == 1, logs
    assert 'ingest: device "%s": its held messages are stored' % device \
        in logs
    assert "pausing MQTT" not in logs and "is back" not in logs, logs


def test_stop_waits_for_a_locked_device(pg, broker, start_bridge, device):
    """SIGTERM while a device's messages wait for a lock: the stop waits,
    says why, and ends once the lock is released and they are stored."""
    bridge = start_bridge()
    session = open_transaction_on(pg, device)
    try:
        broker.publish(topic(device), {"sensor_type": "t", "value": 1})
        wait_for(lambda: bridge.metric("livewidget_ingest_messages_held")
                 == 1, what="the message to be held")
        bridge.signal(signal.SIGTERM)
        wait_for(lambda: "stopping: 1 held message is not stored yet: rows "
                 "of their devices are locked by other transactions"
                 in bridge.logs(), what="the stop to say what it waits for")
        time.sleep(2)
        assert bridge.proc.poll() is None
        session.execute("COMMIT")
    finally:
        session.close()
    assert bridge.wait_exit(20) == 0
    assert [r[1] for r in pg.readings(device)] == [-1, 1]


def test_bulk_order_reaches_the_widget_buffer(pg, broker, bridge,
                                              device):
    """Readings of one bulk without timestamps all get the same now(); the
    later in the message is the newer, so a buffer of 3 keeps the last
    three in message order."""
    if not pg.extension:
        pytest.skip("the livewidget extension is not installed")
    widget = "w-" + device
    pg.sql("SELECT livewidget.track(%s, 't', %s, "
                     "gen_random_uuid(), 3)", (device, widget))
    broker.publish(topic(device), {"readings": [
        {"sensor_type": "t", "value": v} for v in [10, 11, 12, 13, 14]]})
    wait_rows(pg, device, 5)
    assert len({r[3] for r in pg.readings(device)}) == 1
    samples = pg.sql("SELECT value FROM livewidget.samples(%s)",
                               (widget,))
    assert [s[0] for s in samples] == [12, 13, 14]


def test_broker_credentials(pg, start_bridge, device, tmp_path):
    """mqtt_username and mqtt_password_file log in; a wrong password is
    reported once and the bridge stays not ready."""
    broker = Mosquitto(users={"publisher": "pub-secret",
                                    "bridge": "bridge-secret"})
    try:
        good = tmp_path / "good"
        good.write_text("bridge-secret\n")
        start_bridge(mqtt_url=broker.url, mqtt_username="bridge",
                       mqtt_password_file=str(good))
        broker.publish(topic(device), {"sensor_type": "t", "value": 1})
        assert wait_rows(pg, device, 1)[0][1] == 1

        bad = tmp_path / "bad"
        bad.write_text("wrong\n")
        refused = start_bridge(mqtt_url=broker.url, mqtt_username="bridge",
                                 mqtt_password_file=str(bad), wait=False)
        wait_for(lambda: "could not connect to broker" in refused.logs(),
                 what="the refusal to be logged")
        time.sleep(2.5)         # paho retries after 1 s, then 2 s
        assert refused.logs().count("could not connect to broker") == 1
        assert refused.get("/readyz")[0] == 503
        assert "wrong" not in refused.logs()
    finally:
        broker.destroy()


def test_broker_restart_reconnects_and_resubscribes(pg,
                                                    start_bridge, device):
    """The broker restarts and forgets every session: the bridge connects
    again by itself, subscribes again, and is ready only after that."""
    broker = Mosquitto()
    try:
        bridge = start_bridge(mqtt_url=broker.url)
        broker.stop()
        wait_for(lambda: bridge.get("/readyz")[0] == 503,
                 what="the bridge to notice")
        assert bridge.metric("livewidget_ingest_mqtt_connected") == 0
        broker.start()
        bridge.wait_ready(40)
        broker.publish(topic(device), {"sensor_type": "t", "value": 2})
        assert wait_rows(pg, device, 1)[0][1] == 2
        logs = bridge.logs()
        assert "lost the connection to broker" in logs
        assert logs.count("subscribed to") == 2
    finally:
        broker.destroy()


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_spool_keeps_held_messages(pg, broker, start_bridge,
                                   device, tmp_path, how):
    """With a spool file, the messages held while the database is down
    survive a graceful stop and even SIGKILL: the next start stores them
    first, then takes the rest from the broker, in order."""
    client_id = "lw-test-spool-" + device
    spool = tmp_path / "bridge.spool"
    bridge = start_bridge(mqtt_client_id=client_id, spool_file=str(spool))
    pg.stop()
    try:
        broker.publish_all([(topic(device), {"sensor_type": "n", "value": i})
                               for i in range(20)])
        wait_for(lambda: bridge.metric("livewidget_ingest_messages_held") > 0,
                 what="messages to be held")
        assert spool.stat().st_size > 0
        if how == "stop":
            assert bridge.stop() == 0
            assert "wait in spool file" in bridge.logs() or \
                "waits in spool file" in bridge.logs()
        else:
            bridge.stop(signal.SIGKILL)
    finally:
        pg.start()
    again = start_bridge(mqtt_client_id=client_id, spool_file=str(spool))
    wait_rows(pg, device, 20, timeout=30)
    time.sleep(0.5)
    assert [r[1] for r in pg.readings(device)] == list(range(20))
    assert "from spool file" in again.logs()
    wait_for(lambda: spool.stat().st_size == 0, what="the spool to empty")


def test_spool_file_is_exclusive(start_bridge, tmp_path):
    spool = tmp_path / "bridge.spool"
    start_bridge(spool_file=str(spool))
    second = start_bridge(spool_file=str(spool), wait=False)
    assert second.wait_exit() == 1
    assert "another process uses it" in second.logs()
