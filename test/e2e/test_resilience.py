"""The bridge under faults: lost database connections, restarts, stops."""

import signal
import sys
import time

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from wsclient import Viewer  # noqa: E402


def ws_url(bridge, w):
    return "%s/ws/widgets/%s/" % (bridge.ws_url, w["widget"])


def insert(pg, w, values):
    with pg.connect() as conn:
        for value in values:
            conn.execute("INSERT INTO livewidget.sensor_data "
                         "(device_id, sensor_type, value) VALUES (%s, %s, %s)",
                         (w["device"], w["sensor"], value))


def test_sigterm_closes_viewers_with_1001_and_exits(start_bridge, widget,
                                                     make_token):
    bridge = start_bridge()
    token = make_token([widget["dashboard"]])
    with Viewer(ws_url(bridge, widget), token, after=0) as viewer:
        viewer.run(0.3)
        bridge.signal(signal.SIGTERM)
        assert viewer.wait_closed()[0] == 1001
    assert bridge.proc.wait(10) == 0
    assert "stopped" in bridge.logs()


def test_viewer_misses_nothing_across_a_lost_database_connection(
        start_bridge, pg, widget, make_token):
    bridge = start_bridge()
    token = make_token([widget["dashboard"]])
    with Viewer(ws_url(bridge, widget), token, after=0) as viewer:
        insert(pg, widget, [1, 2])
        assert [f["value"] for f in viewer.wait_frames(2)] == [1, 2]

        # Cut the bridge's connections and write while it reconnects: the
        # notifications of these commits reach nobody, the catch-up must.
        pg.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
               "WHERE application_name = 'livewidget-bridge'")
        insert(pg, widget, [3, 4, 5])
        frames = viewer.wait_frames(5, timeout=15)
        assert [f["value"] for f in frames] == [1, 2, 3, 4, 5]
        seqs = [f["seq"] for f in frames]
        assert seqs == sorted(set(seqs))
        assert viewer.closed is None


def test_database_down_then_back(start_bridge, pg, broker, widget,
                                 make_token):
    bridge = start_bridge()
    token = make_token([widget["dashboard"]])
    path = "/api/dashboard-templates/%s/widgets/%s/samples/" % (
        widget["dashboard"], widget["widget"])
    with Viewer(ws_url(bridge, widget), token, after=0) as viewer:
        viewer.run(0.3)
        pg.stop()
        try:
            deadline = time.monotonic() + 20
            while bridge.get("/readyz")[0] != 503:
                assert time.monotonic() < deadline, "readyz stayed 200"
                viewer.run(0.1)
            assert bridge.get(path, token)[0] == 503
            with Viewer(ws_url(bridge, widget), token) as refused:
                assert refused.wait_closed(timeout=10)[0] == 1013

            # Readings published now wait with the broker, unacknowledged.
            for value in (10, 11, 12):
                broker.publish("devices/%s/telemetry" % widget["device"],
                               {"sensor_type": widget["sensor"],
                                "value": value})
        finally:
            pg.start()

        frames = viewer.wait_frames(3, timeout=30)
        assert [f["value"] for f in frames] == [10, 11, 12]
        assert viewer.closed is None
    deadline = time.monotonic() + 20
    while bridge.get("/readyz")[0] != 200:
        assert time.monotonic() < deadline, "readyz did not come back"
        time.sleep(0.2)
    status, body, _ = bridge.get(path, token)
    assert status == 200
    assert [s["value"] for s in body] == [10, 11, 12]


def test_bad_configuration_stops_at_start(start_bridge):
    bridge = start_bridge(wait=False, listen="nowhere")
    assert bridge.proc.wait(10) != 0
    assert "listen" in bridge.logs()


def test_short_jwt_secret_refused(start_bridge, tmp_path):
    short = tmp_path / "short.secret"
    short.write_text("x" * 31 + "\n")
    bridge = start_bridge(wait=False, jwt_secret_file=str(short))
    assert bridge.proc.wait(10) != 0
    assert "too short" in bridge.logs()


def test_bridge_runs_with_the_documented_grants(start_bridge, pg, broker,
                                                widget, make_token):
    """The least a bridge's role needs, as the README lists it."""
    role = "lw_bridge_" + widget["widget"].replace("-", "_")
    pg.sql("CREATE ROLE %s LOGIN" % role)
    pg.sql("GRANT USAGE ON SCHEMA livewidget TO %s" % role)
    pg.sql("GRANT SELECT, INSERT ON livewidget.sensor_data TO %s" % role)
    pg.sql("GRANT SELECT ON livewidget.tracked_variable, "
           "livewidget.widget_sample, livewidget.widget_state TO %s" % role)
    conninfo = "host=%s port=%d user=%s dbname=%s" % (
        pg.host, pg.port, role, pg.dbname)
    bridge = start_bridge(database=conninfo)
    token = make_token([widget["dashboard"]])
    with Viewer(ws_url(bridge, widget), token, after=0) as viewer:
        broker.publish("devices/%s/telemetry" % widget["device"],
                       {"sensor_type": widget["sensor"], "value": 3.5})
        assert [f["value"] for f in viewer.wait_frames(1)] == [3.5], \
            bridge.logs()
    path = "/api/dashboard-templates/%s/widgets/%s/samples/" % (
        widget["dashboard"], widget["widget"])
    status, body, _ = bridge.get(path, token)
    assert status == 200 and [s["value"] for s in body] == [3.5]
    assert "permission denied" not in bridge.logs()


def test_second_stop_signal_exits_at_once(start_bridge, pg, broker, widget):
    """Even while ingest drains messages it holds for a database that is
    down, a second SIGTERM ends the bridge at once."""
    bridge = start_bridge()
    pg.stop()
    try:
        broker.publish("devices/%s/telemetry" % widget["device"],
                       {"sensor_type": widget["sensor"], "value": 1})
        deadline = time.monotonic() + 10
        while "holding" not in bridge.logs():
            assert time.monotonic() < deadline, "ingest never held it"
            time.sleep(0.1)
        bridge.signal(signal.SIGTERM)
        time.sleep(0.3)
        started = time.monotonic()
        bridge.signal(signal.SIGTERM)
        assert bridge.proc.wait(5) == 1
        assert time.monotonic() - started < 1.0
    finally:
        pg.start()


def test_viewers_lose_a_widget_that_moves_or_goes(start_bridge, pg, widget,
                                                  make_token):
    """Grants are checked again every 30 s, not only at connect."""
    bridge = start_bridge()
    other = dict(widget, widget=widget["widget"] + "-b")
    pg.sql("SELECT livewidget.track(%s, %s, %s, %s)",
           (other["device"], other["sensor"], other["widget"],
            other["dashboard"]))
    token = make_token([widget["dashboard"]])
    with Viewer(ws_url(bridge, widget), token, after=0) as moved, \
            Viewer(ws_url(bridge, other), token, after=0) as gone:
        moved.run(0.5)
        pg.sql("SELECT livewidget.track(%s, %s, %s, gen_random_uuid())",
               (widget["device"], widget["sensor"], widget["widget"]))
        pg.sql("SELECT livewidget.untrack(%s)", (other["widget"],))
        assert moved.wait_closed(timeout=45)[0] == 4403
        assert gone.wait_closed(timeout=5)[0] == 4404
