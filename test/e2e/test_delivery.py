"""End to end: MQTT in, PostgreSQL, HTTP and WebSocket out.

A real Mosquitto, a real PostgreSQL with the extension and the real
bridge; readings are published with paho-mqtt, samples received with
python-websockets, and tokens minted with PyJWT.
"""

import base64
import datetime
import os
import http.client
import json
import select
import re
import sys
import time
import urllib.request
import uuid

import pytest

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from wsclient import Viewer  # noqa: E402

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?Z$")


def iso(ts):
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def publish_readings(broker, w, values, start=None):
    """One MQTT message per value, each with a device timestamp 1 s apart."""
    start = start or datetime.datetime(2025, 7, 9, 7, 0, 0,
                                       tzinfo=datetime.timezone.utc)
    for i, value in enumerate(values):
        broker.publish("devices/%s/telemetry" % w["device"], {
            "sensor_type": w["sensor"], "value": value, "unit": "°C",
            "timestamp": iso(start + datetime.timedelta(seconds=i))})


def unsigned_token(dashboards):
    """A token with "alg": "none" and no signature."""
    def b64(obj):
        raw = json.dumps(obj).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return "%s.%s." % (b64({"alg": "none", "typ": "JWT"}),
                       b64({"dashboards": dashboards,
                            "exp": int(time.time()) + 300}))


def assert_sample(sample):
    assert set(sample) == {"seq", "timestamp", "value", "unit"}
    assert isinstance(sample["seq"], int)
    assert TIMESTAMP.match(sample["timestamp"]), sample["timestamp"]


def samples_path(w, dashboard=None):
    return "/api/dashboard-templates/%s/widgets/%s/samples/" % (
        dashboard or w["dashboard"], w["widget"])


def ws_url(bridge, w):
    return "%s/ws/widgets/%s/" % (bridge.ws_url, w["widget"])


# ---- the live path ----

def test_websocket_sample_within_a_second_of_publish(bridge, broker, widget,
                                                      make_token):
    token = make_token([widget["dashboard"]])
    with Viewer(ws_url(bridge, widget), token, after=0) as viewer:
        assert viewer.subprotocol == "livewidget"
        viewer.run(0.3)
        sent = time.monotonic()
        broker.publish("devices/%s/telemetry" % widget["device"], {
            "sensor_type": widget["sensor"], "value": 24.8, "unit": "°C",
            "timestamp": "2025-07-09T07:15:02Z"})
        frames = viewer.wait_frames(1, timeout=3)
        assert frames, "no sample arrived"
        received = viewer.frames[0][0]
        assert received - sent < 1.0
        assert frames[0] == {"seq": frames[0]["seq"],
                             "timestamp": "2025-07-09T07:15:02Z",
                             "value": 24.8, "unit": "°C"}


def test_rest_returns_newest_50_oldest_first(bridge, broker, widget,
                                             make_token, pg):
    values = [float(i) + 0.5 for i in range(120)]
    publish_readings(broker, widget, values)
    token = make_token([widget["dashboard"]])

    def all_stored():
        return pg.sql("SELECT count(*) FROM livewidget.sensor_data "
                      "WHERE device_id = %s", (widget["device"],))[0][0] == 120
    deadline = time.monotonic() + 20
    while not all_stored():
        assert time.monotonic() < deadline, "readings were not all stored"
        time.sleep(0.1)

    status, body, headers = bridge.get(samples_path(widget), token)
    assert status == 200
    assert headers.get_content_type() == "application/json"
    assert [s["value"] for s in body] == values[-50:]
    for sample in body:
        assert_sample(sample)
    seqs = [s["seq"] for s in body]
    assert seqs == sorted(seqs)
    assert pg.sql("SELECT count(*) FROM livewidget.widget_sample "
                  "WHERE widget_id = %s", (widget["widget"],))[0][0] == 50


def notifications(conn, timeout):
    """Every notification conn receives until timeout s of quiet."""
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


def test_listener_receives_every_sample(pg, widget):
    """120 readings, one statement each: 50 left, 120 notified in order."""
    channel = "widget_" + widget["widget"]
    with pg.connect() as listener:
        listener.execute('LISTEN "%s"' % channel)
        with pg.connect() as writer:
            for i in range(120):
                writer.execute(
                    "INSERT INTO livewidget.sensor_data "
                    "(device_id, sensor_type, value, unit, ts) "
                    "VALUES (%s, %s, %s, 'K', "
                    "'2025-01-01T00:00:00Z'::timestamptz + %s * interval '1 s')",
                    (widget["device"], widget["sensor"], i, i))
        received = []
        for name, text in notifications(listener, timeout=5):
            assert name == channel
            payload = json.loads(text)
            assert set(payload) == {"widget_id", "samples"}
            assert payload["widget_id"] == widget["widget"]
            received.extend(payload["samples"])
    assert [s["value"] for s in received] == list(range(120))
    seqs = [s["seq"] for s in received]
    assert seqs == sorted(set(seqs))
    for sample in received:
        assert_sample(sample)
    rows = pg.sql("SELECT value FROM livewidget.samples(%s)",
                  (widget["widget"],))
    assert [r[0] for r in rows] == list(range(70, 120))


def test_resume_with_after_misses_nothing(bridge, broker, widget, make_token):
    token = make_token([widget["dashboard"]])
    publish_readings(broker, widget, [1, 2, 3])
    status, body, _ = bridge.get(samples_path(widget), token)
    deadline = time.monotonic() + 5
    while len(body) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
        status, body, _ = bridge.get(samples_path(widget), token)
    assert [s["value"] for s in body] == [1, 2, 3]

    # Two more arrive while the viewer is away; it asks for what follows
    # the first sample it saw and gets everything after, then live ones.
    publish_readings(broker, widget, [4, 5],
                     start=datetime.datetime(2025, 7, 9, 8, 0, 0,
                                             tzinfo=datetime.timezone.utc))
    time.sleep(0.5)
    with Viewer(ws_url(bridge, widget), token, after=body[0]["seq"]) as viewer:
        frames = viewer.wait_frames(4)
        assert [f["value"] for f in frames] == [2, 3, 4, 5]
        publish_readings(broker, widget, [6],
                         start=datetime.datetime(2025, 7, 9, 9, 0, 0,
                                                 tzinfo=datetime.timezone.utc))
        frames = viewer.wait_frames(5)
        assert [f["value"] for f in frames] == [2, 3, 4, 5, 6]


def test_resume_tells_reset_when_samples_are_gone(bridge, pg, widget,
                                                  make_token):
    pg.sql("SELECT livewidget.track(%s, %s, %s, %s, 3)",
           (widget["device"], widget["sensor"], widget["widget"],
            widget["dashboard"]))
    with pg.connect() as conn:
        for i in range(6):
            conn.execute("INSERT INTO livewidget.sensor_data "
                         "(device_id, sensor_type, value) VALUES (%s, %s, %s)",
                         (widget["device"], widget["sensor"], i))
    token = make_token([widget["dashboard"]])
    with Viewer(ws_url(bridge, widget), token, after=0) as viewer:
        frames = viewer.wait_frames(4)
        assert frames[0] == {"type": "reset"}
        assert [f["value"] for f in frames[1:]] == [3, 4, 5]


def test_viewer_without_subprotocol_is_served(bridge, broker, widget,
                                              make_token):
    token = make_token([widget["dashboard"]])
    with Viewer(ws_url(bridge, widget), token, after=0,
                subprotocols=None) as viewer:
        assert viewer.subprotocol is None
        publish_readings(broker, widget, [7.25])
        frames = viewer.wait_frames(1)
        assert [f["value"] for f in frames] == [7.25]


def test_token_in_subprotocol_that_fits(bridge, widget, make_token):
    """The subprotocol path, with a token short enough for libwebsockets.

    libwebsockets 4.1 takes at most 126 bytes of subprotocol list, so a
    real token does not fit (see the next test); a forged short one shows
    that the path itself works and never echoes the token.
    """
    with Viewer(ws_url(bridge, widget), "a.b.c",
                token_in_subprotocol=True) as viewer:
        assert viewer.subprotocol == "livewidget"
        code, reason = viewer.wait_closed()
        assert code == 4401
        assert "a.b.c" not in reason


def test_subprotocol_list_too_long_is_refused_with_a_status(bridge, widget,
                                                            make_token):
    token = make_token([widget["dashboard"]])
    conn = http.client.HTTPConnection("127.0.0.1", bridge.port, timeout=5)
    conn.request("GET", "/ws/widgets/%s/" % widget["widget"], headers={
        "Connection": "Upgrade", "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(b"0123456789abcdef").decode(),
        "Sec-WebSocket-Protocol": "livewidget, bearer." + token})
    response = conn.getresponse()
    assert response.status == 431
    assert b"send the token as access_token" in response.read()
    conn.close()
    assert "send the token as access_token" in bridge.logs()
    assert token not in bridge.logs()


# ---- REST refusals ----

def test_rest_without_token_is_401(bridge, widget):
    status, body, headers = bridge.get(samples_path(widget))
    assert status == 401
    assert body == {"error": "no token"}
    assert headers["WWW-Authenticate"].startswith("Bearer")


def test_rest_wrong_dashboard_is_403(bridge, widget, make_token):
    token = make_token([str(uuid.uuid4())])
    status, body, _ = bridge.get(samples_path(widget), token)
    assert status == 403
    assert "error" in body


def test_rest_unknown_widget_is_404(bridge, widget, make_token):
    token = make_token([widget["dashboard"]])
    path = "/api/dashboard-templates/%s/widgets/nope-%s/samples/" % (
        widget["dashboard"], widget["widget"])
    status, body, _ = bridge.get(path, token)
    assert status == 404
    assert "error" in body


def test_rest_widget_on_other_dashboard_is_404(bridge, widget, make_token):
    other = str(uuid.uuid4())
    status, body, _ = bridge.get(samples_path(widget, other),
                                 make_token([other]))
    assert status == 404


@pytest.mark.parametrize("case", ["expired", "bad signature", "alg none",
                                  "no exp", "future nbf", "garbage",
                                  "audience without config"])
def test_rest_bad_tokens_are_401(bridge, widget, make_token, case):
    dash = [widget["dashboard"]]
    token = {
        "expired": lambda: make_token(dash, lifetime=-60),
        "bad signature": lambda: make_token(dash, key="x" * 40),
        "alg none": lambda: unsigned_token(dash),
        "no exp": lambda: make_token(dash, exp=None),
        "future nbf": lambda: make_token(dash, nbf=int(time.time()) + 600),
        "garbage": lambda: "not.a.token",
        "audience without config": lambda: make_token(dash, aud="someone"),
    }[case]()
    status, body, _ = bridge.get(samples_path(widget), token)
    assert status == 401, body
    assert set(body) == {"error"}


def test_widgets_list(bridge, pg, widget, make_token):
    token = make_token([widget["dashboard"]])
    pg.sql("SELECT livewidget.track(%s, 'humidity', %s, %s, 20)",
           (widget["device"], widget["widget"] + "-h", widget["dashboard"]))
    status, body, _ = bridge.get("/api/dashboard-templates/%s/widgets/"
                                 % widget["dashboard"], token)
    assert status == 200
    raw = urllib.request.urlopen(urllib.request.Request(
        bridge.url + "/api/dashboard-templates/%s/widgets/"
        % widget["dashboard"], headers={"Authorization": "Bearer " + token}
    )).read().decode()
    assert " : " not in raw and ", " not in raw, raw
    assert body == [
        {"widget_id": widget["widget"], "device_id": widget["device"],
         "sensor_type": "temperature", "max_samples": 50},
        {"widget_id": widget["widget"] + "-h", "device_id": widget["device"],
         "sensor_type": "humidity", "max_samples": 20},
    ]
    assert bridge.get("/api/dashboard-templates/%s/widgets/"
                      % widget["dashboard"])[0] == 401


# ---- WebSocket refusals ----

def test_ws_without_token_closes_4401(bridge, widget):
    with Viewer(ws_url(bridge, widget), subprotocols=["livewidget"]) as v:
        assert v.wait_closed()[0] == 4401


def test_ws_wrong_dashboard_closes_4403(bridge, widget, make_token):
    with Viewer(ws_url(bridge, widget), make_token([str(uuid.uuid4())])) as v:
        code, reason = v.wait_closed()
        assert code == 4403
        assert reason


def test_ws_unknown_widget_closes_4404(bridge, widget, make_token):
    url = "%s/ws/widgets/unknown-%s/" % (bridge.ws_url, widget["widget"])
    with Viewer(url, make_token([widget["dashboard"]])) as v:
        assert v.wait_closed()[0] == 4404


def test_ws_expired_token_closes_4401(bridge, widget, make_token):
    token = make_token([widget["dashboard"]], lifetime=-60)
    with Viewer(ws_url(bridge, widget), token) as v:
        assert v.wait_closed()[0] == 4401


def test_ws_token_expiring_while_open_closes_4401(bridge, widget, make_token):
    # exp is checked with 5 s of leeway, so this token lasts about 6 s.
    token = make_token([widget["dashboard"]], lifetime=1)
    with Viewer(ws_url(bridge, widget), token) as v:
        v.run(2)
        assert v.closed is None
        assert v.wait_closed(timeout=10)[0] == 4401


# ---- health, static files, logs ----

def test_health_ready_and_metrics(bridge):
    assert bridge.get("/healthz")[0] == 200
    status, body, _ = bridge.get("/readyz")
    assert (status, body) == (200, {"database": True, "mqtt": True})
    status, text, headers = bridge.get("/metrics")
    assert status == 200
    assert headers.get_content_type() == "text/plain"
    assert re.search(r"^livewidget_ws_opened_total \d+$", text, re.M)
    assert re.search(r"^livewidget_database_up 1$", text, re.M)


def test_dashboard_page_and_client_module_are_served(bridge):
    for path in ("/", "/dashboards/%s" % uuid.uuid4(), "/livewidget.js"):
        status, text, _ = bridge.get(path)
        assert status == 200, path
        assert len(text) > 100
    assert bridge.get("/../Makefile")[0] == 404
    assert bridge.get("/.hidden")[0] == 404
    assert bridge.get("/api/nothing")[0] == 404


def test_tokens_never_reach_the_log(bridge, widget, make_token):
    token = make_token([widget["dashboard"]])
    bridge.get(samples_path(widget), token)
    with Viewer(ws_url(bridge, widget), token, after=0) as viewer:
        viewer.run(0.2)
    with Viewer(ws_url(bridge, widget), "x.y.z",
                token_in_subprotocol=True) as viewer:
        viewer.run(0.2)
    logs = bridge.logs()
    assert token not in logs
    assert token.split(".")[2] not in logs
    assert "access_token=" not in logs


def test_after_works_in_any_argument_order(bridge, pg, widget, make_token):
    with pg.connect() as conn:
        for value in (1, 2, 3):
            conn.execute("INSERT INTO livewidget.sensor_data "
                         "(device_id, sensor_type, value) VALUES (%s, %s, %s)",
                         (widget["device"], widget["sensor"], value))
    first = pg.sql("SELECT min(seq) FROM livewidget.widget_sample "
                   "WHERE widget_id = %s", (widget["widget"],))[0][0]
    token = make_token([widget["dashboard"]])
    url = "%s?access_token=%s&after=%d" % (ws_url(bridge, widget), token,
                                           first)
    with Viewer(url) as viewer:
        assert [f["value"] for f in viewer.wait_frames(2)] == [2, 3]


@pytest.mark.parametrize("after", ["abc", "-1", "+2", "1.5", "",
                                   "99999999999999999999999"])
def test_bad_after_closes_4400(bridge, widget, make_token, after):
    token = make_token([widget["dashboard"]])
    url = "%s?access_token=%s&after=%s" % (ws_url(bridge, widget), token,
                                           after)
    with Viewer(url) as viewer:
        assert viewer.wait_closed()[0] == 4400


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_far_future_exp_does_not_busy_the_bridge(bridge, widget, make_token):
    token = make_token([widget["dashboard"]], lifetime=10 ** 13)
    with Viewer(ws_url(bridge, widget), token, after=0) as viewer:
        viewer.run(0.3)
        before = cpu_seconds(bridge.proc.pid)
        viewer.run(1.0)
        assert cpu_seconds(bridge.proc.pid) - before < 0.3
        assert viewer.closed is None
