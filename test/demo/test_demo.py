"""demo/run for real: PostgreSQL, Mosquitto, the bridge, the replay and
headless Chromium on the printed dashboard URL, then a clean Ctrl-C.

Ports are picked free at start.  The browser checks need `npm ci` in
test/browser (test/run does it).  The whole file takes about a minute.
"""

import asyncio
import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import jwt
import paho.mqtt.client as mqtt
import pytest
import websockets

from demoproc import DemoProcess, ROOT, port_is_free, processes_mentioning, \
    wait_until_gone

BROWSER_DIR = os.path.join(ROOT, "test", "browser")

EXPECTED_WIDGETS = {"co", "benzene", "nox", "no2", "temperature",
                    "humidity", "abs_humidity", "o3_response"}


@pytest.fixture(scope="module")
def demo():
    """One demo for the module, started as a user would: packages checked,
    build and "make install" included.  Stopped whatever happens."""
    running = DemoProcess(skip_install=False)
    try:
        running.wait_started()
        yield running
    finally:
        running.stop()


def get(demo, path, token=None):
    """GET on the bridge; returns (status, decoded JSON body)."""
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (demo.http_port,
                                                            path))
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def samples_path(demo, widget):
    return "/api/dashboard-templates/%s/widgets/%s/samples/" % (
        demo.dashboard, widget)


def foreign_token(demo):
    """A token signed with the demo's secret for another dashboard."""
    with open(os.path.join(demo.tmp, "jwt-secret"), "rb") as handle:
        key = handle.read().rstrip(b"\n")
    return jwt.encode({"dashboards": ["00000000-0000-4000-8000-000000000000"],
                       "exp": int(time.time()) + 600}, key, algorithm="HS256")


def wait_samples(demo, widget, count, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        status, body = get(demo, samples_path(demo, widget), demo.token)
        assert status == 200, body
        if len(body) >= count or time.monotonic() > deadline:
            return body
        time.sleep(0.3)


# REST ------------------------------------------------------------------------

def test_dashboard_lists_one_widget_per_channel(demo):
    status, body = get(demo, "/api/dashboard-templates/%s/widgets/" %
                       demo.dashboard, demo.token)
    assert status == 200
    assert {w["widget_id"] for w in body} == EXPECTED_WIDGETS
    temperature = [w for w in body if w["widget_id"] == "temperature"][0]
    assert temperature == {"widget_id": "temperature",
                           "device_id": "aq-multisensor",
                           "sensor_type": "temperature", "max_samples": 50}


def test_samples_are_the_replayed_readings(demo):
    samples = wait_samples(demo, "temperature", 50)
    assert len(samples) == 50
    keys = [(s["timestamp"], s["seq"]) for s in samples]
    assert keys == sorted(keys)
    assert all(s["unit"] == "°C" and -10 < s["value"] < 50 for s in samples)
    assert all(s["timestamp"].endswith(":00:00Z") for s in samples)


def test_rest_refusals(demo):
    path = samples_path(demo, "temperature")
    assert get(demo, path)[0] == 401
    assert get(demo, path, demo.token + "x")[0] == 401
    status, body = get(demo, path.replace(demo.dashboard,
                                    "00000000-0000-4000-8000-000000000000"),
                       foreign_token(demo))
    assert status in (403, 404), body
    assert get(demo, path.replace(demo.dashboard,
                            "00000000-0000-4000-8000-000000000000"),
                demo.token)[0] == 403
    status, body = get(demo, samples_path(demo, "no_such_widget"), demo.token)
    assert status == 404 and "error" in body


# WebSocket -------------------------------------------------------------------

def with_token(url, token):
    """The viewer token rides in access_token (the bridge never logs it)."""
    return url + ("&" if "?" in url else "?") + "access_token=" + token


async def follow(url, token, count, timeout=15):
    """Open a viewer socket; returns (subprotocol, messages)."""
    messages = []
    async with websockets.connect(
            with_token(url, token), subprotocols=["livewidget"],
            open_timeout=10) as ws:
        async def read():
            while len(messages) < count:
                messages.append(json.loads(await ws.recv()))
        await asyncio.wait_for(read(), timeout)
        return ws.subprotocol, messages


async def refused(url, token):
    async with websockets.connect(
            with_token(url, token), subprotocols=["livewidget"],
            open_timeout=10) as ws:
        try:
            await asyncio.wait_for(ws.recv(), 10)
        except websockets.ConnectionClosed:
            pass
        return ws.close_code


def test_websocket_resumes_after_a_seq_then_goes_live(demo):
    samples = wait_samples(demo, "humidity", 10)
    after = samples[-5]["seq"]
    url = "ws://127.0.0.1:%d/ws/widgets/humidity/?after=%d" % (
        demo.http_port, after)
    protocol, got = asyncio.run(follow(url, demo.token, 8))
    assert protocol == "livewidget"
    seqs = [m["seq"] for m in got if "seq" in m]
    assert seqs[:4] == [s["seq"] for s in samples[-4:]]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert seqs[-1] > samples[-1]["seq"]        # live ones followed
    assert all(m["unit"] == "%" for m in got if "seq" in m)


def test_websocket_refusals_have_readable_close_codes(demo):
    base = "ws://127.0.0.1:%d/ws/widgets/%%s/" % demo.http_port
    assert asyncio.run(refused(base % "co", "bad.token.here")) == 4401
    assert asyncio.run(refused(base % "co", foreign_token(demo))) == 4403
    assert asyncio.run(refused(base % "no_such_widget", demo.token)) == 4404


# The broker's logins and ACL -------------------------------------------------

def mqtt_connect(demo, username, password):
    """Connect once; returns the CONNACK code."""
    result = threading.Event()
    codes = []
    client = mqtt.Client(client_id="test-acl-%d" % os.getpid())
    if username:
        client.username_pw_set(username, password)

    def on_connect(c, u, f, rc):
        codes.append(rc)
        result.set()
    client.on_connect = on_connect
    client.connect("127.0.0.1", demo.mqtt_port)
    client.loop_start()
    result.wait(10)
    return client, codes[0] if codes else None


def device_password(demo, device):
    with open(os.path.join(demo.tmp, "device-credentials")) as handle:
        return dict(line.strip().split(":", 1) for line in handle)[device]


def test_broker_refuses_anonymous_and_wrong_passwords(demo):
    for user, password in ((None, None), ("aq-reference", "wrong")):
        client, rc = mqtt_connect(demo, user, password)
        client.loop_stop()
        assert rc == 5, "expected 'not authorised', got %r" % rc


def test_device_cannot_write_as_another_device(demo):
    password = device_password(demo, "aq-reference")
    client, rc = mqtt_connect(demo, "aq-reference", password)
    assert rc == 0
    marker = {"device_id": "aq-multisensor", "sensor_type": "humidity",
              "value": 777.25, "unit": "%",
              "timestamp": "2030-01-01T00:00:00Z"}
    own = dict(marker, device_id="aq-reference", sensor_type="acl_probe")
    for topic, payload in (("devices/aq-multisensor/telemetry", marker),
                           ("devices/aq-reference/telemetry", own)):
        client.publish(topic, json.dumps(payload), qos=1).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()
    # The reading on its own topic went through (stored, no widget), so
    # the other one had its chance too: it must not be in the buffer.
    time.sleep(2)
    status, samples = get(demo, samples_path(demo, "humidity"), demo.token)
    assert status == 200
    assert all(s["value"] != 777.25 for s in samples)


# Browser ---------------------------------------------------------------------

def test_dashboard_page_in_headless_chromium(demo):
    assert os.path.isdir(os.path.join(BROWSER_DIR, "node_modules",
                                      "playwright-core")), \
        "run \"npm ci\" in test/browser first"
    env = dict(os.environ, LW_DASHBOARD_URL=demo.url,
               LW_FOREIGN_TOKEN=foreign_token(demo))
    result = subprocess.run(["node", "--test", "--test-reporter=spec",
                             "dashboard.test.mjs"], cwd=BROWSER_DIR,
                            env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "fail 0" in result.stdout


# Stop ------------------------------------------------------------------------

def test_ctrl_c_stops_everything_and_removes_the_directory(demo):
    assert set(demo.pids) == {"postgres", "mosquitto", "bridge", "replay"}
    pids = list(demo.pids.values())
    assert wait_until_gone(pids, 0) == pids, "not all of %r run" % demo.pids
    assert demo.interrupt() == 0, demo.output()
    left = wait_until_gone(pids)
    assert not left, "%r: %r still run" % (demo.pids, left)
    assert not os.path.exists(demo.tmp)
    assert processes_mentioning(demo.tmp) == []
    for port in (demo.http_port, demo.mqtt_port, demo.pg_port):
        assert port_is_free(port), "port %d still taken" % port


def test_a_port_in_use_is_a_clear_error(start_demo):
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        demo = start_demo(LW_DEMO_HTTP_PORT=str(port))
        assert demo.wait_exit(60) == 1, demo.output()
    assert ("port %d (LW_DEMO_HTTP_PORT) is already in use" % port
            in demo.output())
    demo.assert_nothing_left()
