"""Shared fixtures: a real PostgreSQL, a real Mosquitto, the real bridge.

Everything listens on 127.0.0.1 (or a unix socket) on ports picked free at
start, lives in a temporary directory, and is stopped by PID at the end.
PostgreSQL runs as the "postgres" OS user through test/pg-cluster, since
the server refuses to run as root.
"""

import json
import os
import pathlib
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid

import jwt as pyjwt
import paho.mqtt.client as mqtt
import psycopg
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
BRIDGE = ROOT / "bridge" / "livewidget-bridge"
PG_CLUSTER = ROOT / "test" / "pg-cluster"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=10.0, interval=0.05, what="condition"):
    """Poll predicate until it returns something true; fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s" % what)
        time.sleep(interval)


def private_dir(prefix):
    """A temporary directory the postgres and mosquitto users can enter."""
    path = pathlib.Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


class Postgres:
    """A throwaway cluster with a database that has the extension."""

    def __init__(self):
        self.dir = private_dir("lw-pg-")
        self.port = free_port()
        env = subprocess.run([str(PG_CLUSTER), "start", str(self.dir / "pg"),
                              str(self.port)], check=True, text=True,
                             capture_output=True).stdout
        assert "PGPORT" in env
        self.host = str(self.dir / "pg")
        self.dbname = "livewidget"
        with self.connect("postgres") as conn:
            conn.execute("CREATE DATABASE livewidget")
        with self.connect() as conn:
            conn.execute("CREATE EXTENSION livewidget")

    @property
    def conninfo(self):
        return "host=%s port=%d user=postgres dbname=%s" % (
            self.host, self.port, self.dbname)

    def connect(self, dbname=None, **kwargs):
        return psycopg.connect(host=self.host, port=self.port, user="postgres",
                               dbname=dbname or self.dbname, autocommit=True,
                               **kwargs)

    def sql(self, query, params=None):
        """Run one statement; return its rows (or [] for none)."""
        with self.connect() as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def stop(self):
        subprocess.run([str(PG_CLUSTER), "stop", self.host], check=True)

    def start(self):
        subprocess.run([str(PG_CLUSTER), "start", self.host, str(self.port)],
                       check=True, capture_output=True)

    def destroy(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Mosquitto:
    """A broker on 127.0.0.1 that lets anyone in (auth is the demo's job)."""

    def __init__(self):
        self.dir = private_dir("lw-mqtt-")
        self.port = free_port()
        conf = self.dir / "mosquitto.conf"
        conf.write_text("listener %d 127.0.0.1\nallow_anonymous true\n"
                        "persistence false\nmax_queued_messages 100000\n"
                        % self.port)
        self.client = None
        self.log = open(self.dir / "mosquitto.log", "w")
        self.proc = subprocess.Popen(["mosquitto", "-c", str(conf)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: self._accepts(), what="mosquitto to listen")

    def _accepts(self):
        assert self.proc.poll() is None, "mosquitto exited"
        try:
            socket.create_connection(("127.0.0.1", self.port), 0.2).close()
            return True
        except OSError:
            return False

    @property
    def url(self):
        return "mqtt://127.0.0.1:%d" % self.port

    def publish(self, topic, payload, qos=1):
        """Publish one message and wait until the broker acknowledged it."""
        if self.client is None:
            self.client = mqtt.Client(
                client_id="lw-test-%s" % secrets.token_hex(4))
            self.client.connect("127.0.0.1", self.port)
            self.client.loop_start()
        if not isinstance(payload, (bytes, str)):
            payload = json.dumps(payload)
        info = self.client.publish(topic, payload, qos=qos)
        info.wait_for_publish(5)
        assert info.is_published(), "the broker did not acknowledge"

    def destroy(self):
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Bridge:
    """livewidget-bridge with its own config, waited for until ready."""

    def __init__(self, pg, broker, secret_file, **options):
        self.port = free_port()
        self.dir = private_dir("lw-bridge-")
        self.log_path = self.dir / "bridge.log"
        args = {
            "database": pg.conninfo,
            "mqtt_url": broker.url,
            "mqtt_client_id": "lw-test-bridge-%s" % secrets.token_hex(4),
            "listen": "127.0.0.1:%d" % self.port,
            "jwt_secret_file": str(secret_file),
            "web_root": str(ROOT / "web"),
            "log_level": "debug",
        }
        args.update(options)
        self.argv = [str(BRIDGE)] + ["--%s=%s" % kv for kv in args.items()
                                     if kv[1] is not None]
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.argv, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.url = "http://127.0.0.1:%d" % self.port
        self.ws_url = "ws://127.0.0.1:%d" % self.port

    def wait_ready(self, timeout=15.0):
        def ready():
            assert self.proc.poll() is None, "bridge exited:\n" + self.logs()
            return self.get("/readyz")[0] == 200
        wait_for(ready, timeout, what="the bridge to be ready")
        return self

    def get(self, path, token=None, headers=None):
        """GET path; returns (status, parsed JSON or text, headers)."""
        request = urllib.request.Request(self.url + path)
        if token is not None:
            request.add_header("Authorization", "Bearer " + token)
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                status, body, hdrs = response.status, response.read(), response.headers
        except urllib.error.HTTPError as error:
            status, body, hdrs = error.code, error.read(), error.headers
        except (urllib.error.URLError, ConnectionError):
            return (None, None, None)
        if hdrs.get_content_type() == "application/json":
            return (status, json.loads(body), hdrs)
        return (status, body.decode("utf-8", "replace"), hdrs)

    def logs(self):
        self.log.flush()
        return self.log_path.read_text()

    def signal(self, signo):
        self.proc.send_signal(signo)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def destroy(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg():
    server = Postgres()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def broker():
    server = Mosquitto()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def jwt_secret():
    """The HS256 secret, and the file the bridge reads it from."""
    directory = private_dir("lw-secret-")
    secret = secrets.token_urlsafe(48)
    path = directory / "jwt.secret"
    path.write_text(secret + "\n")
    yield {"secret": secret, "path": path}
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def make_token(jwt_secret):
    """make_token(dashboards, lifetime=300, **claims) -> an HS256 JWT."""
    def make(dashboards, lifetime=300, key=None, algorithm="HS256", **claims):
        payload = {"dashboards": [str(d) for d in dashboards],
                   "exp": int(time.time()) + lifetime}
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        return pyjwt.encode(payload, key or jwt_secret["secret"],
                            algorithm=algorithm)
    return make


@pytest.fixture
def start_bridge(pg, broker, jwt_secret):
    """start_bridge(**options) -> a ready Bridge, stopped after the test."""
    started = []

    def start(wait=True, **options):
        bridge = Bridge(pg, broker, jwt_secret["path"], **options)
        started.append(bridge)
        return bridge.wait_ready() if wait else bridge

    yield start
    for bridge in started:
        bridge.destroy()


@pytest.fixture(scope="module")
def bridge(pg, broker, jwt_secret):
    """One bridge shared by the tests of a module."""
    server = Bridge(pg, broker, jwt_secret["path"]).wait_ready()
    yield server
    server.destroy()


@pytest.fixture
def widget(pg):
    """A fresh widget on a fresh dashboard, fed by a fresh device."""
    suffix = secrets.token_hex(4)
    w = {
        "device": "dev-%s" % suffix,
        "sensor": "temperature",
        "widget": "w-%s" % suffix,
        "dashboard": str(uuid.uuid4()),
    }
    pg.sql("SELECT livewidget.track(%s, %s, %s, %s)",
           (w["device"], w["sensor"], w["widget"], w["dashboard"]))
    return w
