"""demo/run for real: PostgreSQL, Mosquitto, the bridge, the replay and
headless Chromium on the printed dashboard URL, then a clean Ctrl-C.

Ports (environment): LW_TEST_HTTP_PORT (18081), LW_TEST_MQTT_PORT (18821),
LW_TEST_PG_PORT (55521).  The browser checks need `npm ci` in
test/browser (test/run does it).  The whole file takes about a minute.
"""

import asyncio
import json
import os
import re
import signal
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

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HTTP_PORT = int(os.environ.get("LW_TEST_HTTP_PORT", "18081"))
MQTT_PORT = int(os.environ.get("LW_TEST_MQTT_PORT", "18821"))
PG_PORT = int(os.environ.get("LW_TEST_PG_PORT", "55521"))
BROWSER_DIR = os.path.join(ROOT, "test", "browser")

EXPECTED_WIDGETS = {"co", "benzene", "nox", "no2", "temperature",
                    "humidity", "abs_humidity", "o3_response"}
START_TIMEOUT = 180         # packages checked, build, servers up
STOP_TIMEOUT = 60


class Demo:
    """A running demo/run, its printed URL, pids and working directory."""

    def __init__(self):
        env = dict(os.environ, LW_DEMO_HTTP_PORT=str(HTTP_PORT),
                   LW_DEMO_MQTT_PORT=str(MQTT_PORT),
                   LW_DEMO_PG_PORT=str(PG_PORT), LW_DEMO_SPEED="36000")
        # A session of its own, as a terminal gives a foreground job, so
        # that a SIGINT to the group is what Ctrl-C would send.
        self.proc = subprocess.Popen([os.path.join(ROOT, "demo", "run")],
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True,
                                     env=env, start_new_session=True)
        self.lines = []
        self.printed = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("demo: replaying"):
                self.printed.set()
        self.printed.set()

    def output(self):
        return "\n".join(self.lines)

    def wait_started(self):
        assert self.printed.wait(START_TIMEOUT), \
            "no dashboard URL after %d s:\n%s" % (START_TIMEOUT,
                                                   self.output())
        text = self.output()
        url = re.search(r"^Dashboard: (\S+)$", text, re.M)
        assert url, "no dashboard URL printed:\n" + text
        self.url = url.group(1)
        match = re.match(r"http://127\.0\.0\.1:(\d+)/dashboards/"
                         r"([0-9a-f-]{36})#token=([\w.-]+)$", self.url)
        assert match, self.url
        assert int(match.group(1)) == HTTP_PORT
        self.dashboard, self.token = match.group(2), match.group(3)
        self.tmp = re.search(r"^demo: working directory (\S+)", text,
                             re.M).group(1)
        pids = re.search(r"^demo: pids: (.*)$", text, re.M).group(1)
        self.pids = {name: int(pid) for name, pid in
                     (part.split() for part in pids.split(", "))}

    def interrupt(self):
        """Ctrl-C: SIGINT to the demo's process group."""
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(STOP_TIMEOUT)

    def kill(self):
        if self.proc.poll() is None:
            try:
                self.interrupt()
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture(scope="module")
def demo():
    running = Demo()
    try:
        running.wait_started()
        yield running
    finally:
        running.kill()


def get(path, token=None):
    """GET on the bridge; returns (status, decoded JSON body)."""
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (HTTP_PORT, path))
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
        status, body = get(samples_path(demo, widget), demo.token)
        assert status == 200, body
        if len(body) >= count or time.monotonic() > deadline:
            return body
        time.sleep(0.3)


# REST ------------------------------------------------------------------------

def test_dashboard_lists_one_widget_per_channel(demo):
    status, body = get("/api/dashboard-templates/%s/widgets/" %
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
    assert get(path)[0] == 401
    assert get(path, demo.token + "x")[0] == 401
    status, body = get(path.replace(demo.dashboard,
                                    "00000000-0000-4000-8000-000000000000"),
                       foreign_token(demo))
    assert status in (403, 404), body
    assert get(path.replace(demo.dashboard,
                            "00000000-0000-4000-8000-000000000000"),
                demo.token)[0] == 403
    status, body = get(samples_path(demo, "no_such_widget"), demo.token)
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
    url = "ws://127.0.0.1:%d/ws/widgets/humidity/?after=%d" % (HTTP_PORT,
                                                               after)
    protocol, got = asyncio.run(follow(url, demo.token, 8))
    assert protocol == "livewidget"
    seqs = [m["seq"] for m in got if "seq" in m]
    assert seqs[:4] == [s["seq"] for s in samples[-4:]]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert seqs[-1] > samples[-1]["seq"]        # live ones followed
    assert all(m["unit"] == "%" for m in got if "seq" in m)


def test_websocket_refusals_have_readable_close_codes(demo):
    base = "ws://127.0.0.1:%d/ws/widgets/%%s/" % HTTP_PORT
    assert asyncio.run(refused(base % "co", "bad.token.here")) == 4401
    assert asyncio.run(refused(base % "co", foreign_token(demo))) == 4403
    assert asyncio.run(refused(base % "no_such_widget", demo.token)) == 4404


# The broker's logins and ACL -------------------------------------------------

def mqtt_connect(username, password):
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
    client.connect("127.0.0.1", MQTT_PORT)
    client.loop_start()
    result.wait(10)
    return client, codes[0] if codes else None


def device_password(demo, device):
    with open(os.path.join(demo.tmp, "device-credentials")) as handle:
        return dict(line.strip().split(":", 1) for line in handle)[device]


def test_broker_refuses_anonymous_and_wrong_passwords(demo):
    for user, password in ((None, None), ("aq-reference", "wrong")):
        client, rc = mqtt_connect(user, password)
        client.loop_stop()
        assert rc == 5, "expected 'not authorised', got %r" % rc


def test_device_cannot_write_as_another_device(demo):
    password = device_password(demo, "aq-reference")
    client, rc = mqtt_connect("aq-reference", password)
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
    status, samples = get(samples_path(demo, "humidity"), demo.token)
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

def running(pid):
    """True while pid runs; a zombie waiting for its reaper does not."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def alive(pid, grace=5.0):
    """running(pid), allowing a stopping process a few seconds to go."""
    deadline = time.monotonic() + grace
    while running(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return running(pid)


def processes_mentioning(text):
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as handle:
                if text.encode() in handle.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


def test_ctrl_c_stops_everything_and_removes_the_directory(demo):
    assert all(running(pid) for pid in demo.pids.values()), demo.pids
    assert set(demo.pids) == {"postgres", "mosquitto", "bridge", "replay"}
    assert demo.interrupt() == 0, demo.output()
    for name, pid in demo.pids.items():
        assert not alive(pid), "%s (pid %d) still runs" % (name, pid)
    assert not os.path.exists(demo.tmp)
    assert processes_mentioning(demo.tmp) == []
    for port in (HTTP_PORT, MQTT_PORT, PG_PORT):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))      # free again


def test_a_port_in_use_is_a_clear_error():
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", HTTP_PORT))
        busy.listen()
        env = dict(os.environ, LW_DEMO_HTTP_PORT=str(HTTP_PORT),
                   LW_DEMO_MQTT_PORT=str(MQTT_PORT),
                   LW_DEMO_PG_PORT=str(PG_PORT), LW_DEMO_SKIP_INSTALL="1")
        result = subprocess.run([os.path.join(ROOT, "demo", "run")], env=env,
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert ("port %d (LW_DEMO_HTTP_PORT) is already in use" % HTTP_PORT
            in result.stderr)
