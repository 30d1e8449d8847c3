"""Real servers for the end-to-end tests of the bridge, and helpers.

    Postgres    a throwaway PostgreSQL cluster (test/pg-cluster) with a
                database "livewidget" that has the extension, or only the
                readings table where the extension is not installed
    Mosquitto   Mosquitto on 127.0.0.1, anonymous or with logins
    Bridge      livewidget-bridge with given options, environment and
                configuration file

test/conftest.py turns them into the fixtures every suite uses
(test/e2e, test/ingest, test/demo); a test that needs a server of its own
(a broker with logins, a broker to restart) builds one from here.

Every server listens on 127.0.0.1 or a unix socket, on a port found free
at start, lives in a temporary directory of its own, and is stopped by its
PID (PostgreSQL through pg_ctl, since it refuses to run as root) when it
is destroyed.  Run under /usr/bin/python3 (python3-pytest,
python3-paho-mqtt, python3-psycopg).
"""

import json
import os
import pathlib
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from signal import SIGTERM

import paho.mqtt.client as mqtt
import psycopg

ROOT = pathlib.Path(__file__).resolve().parent.parent
# LW_TEST_BRIDGE runs the tests against another build (e.g. with ASan)
BRIDGE_BIN = pathlib.Path(os.environ.get(
    "LW_TEST_BRIDGE", str(ROOT / "bridge" / "livewidget-bridge")))
PG_CLUSTER = ROOT / "test" / "pg-cluster"

# The table as the contract defines it, for a server where the extension
# is not installed (the ingest tests need nothing else from it).
SENSOR_DATA = """
CREATE SCHEMA livewidget;
CREATE TABLE livewidget.sensor_data (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id text NOT NULL,
    sensor_type text NOT NULL,
    value double precision NOT NULL
        CHECK (value <> 'NaN' AND value <> 'Infinity'
               AND value <> '-Infinity'),
    unit text,
    ts timestamptz NOT NULL DEFAULT now() CHECK (isfinite(ts)),
    received_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX ON livewidget.sensor_data (device_id, sensor_type, ts);
"""

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC \[\d+\] "
                      r"(FATAL|ERROR|WARNING|LOG|DEBUG):  \S.*$")


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=15.0, interval=0.05, what="a condition"):
    """Poll predicate until it returns something true; fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0f s waiting for %s"
                                 % (timeout, what))
        time.sleep(interval)


def shared_tempdir(prefix):
    """A temporary directory that the postgres and mosquitto users can
    enter (pytest's own are private to root)."""
    path = pathlib.Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


class Postgres:
    """A PostgreSQL cluster of its own, with database "livewidget".

    extension tells whether the livewidget extension is in it; without
    one installed on this machine the database has only the readings
    table, which is all MQTT ingest needs."""

    def __init__(self, dbname="livewidget"):
        self.dir = shared_tempdir("lw-pg-")
        self.host = str(self.dir / "pg")
        self.port = free_port()
        self.dbname = dbname
        self.start()
        with self.connect("postgres") as conn:
            conn.execute('CREATE DATABASE "%s"' % dbname)
        with self.connect() as conn:
            available = conn.execute(
                "SELECT count(*) FROM pg_available_extensions "
                "WHERE name = 'livewidget'").fetchone()[0]
            self.extension = bool(available)
            if self.extension:
                conn.execute("CREATE EXTENSION livewidget")
            else:
                conn.execute(SENSOR_DATA)

    @property
    def conninfo(self):
        return self.conninfo_for(self.dbname)

    def conninfo_for(self, dbname, user="postgres"):
        return "host=%s port=%d user=%s dbname=%s" % (
            self.host, self.port, user, dbname)

    def connect(self, dbname=None, **kwargs):
        return psycopg.connect(host=self.host, port=self.port,
                               user="postgres", dbname=dbname or self.dbname,
                               autocommit=True, **kwargs)

    def sql(self, query, params=None, dbname=None):
        """Run one statement; return its rows ([] when it returns none)."""
        with self.connect(dbname) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def readings(self, device, dbname=None):
        """(sensor_type, value, unit, ts) of a device, in insert order."""
        return self.sql(
            "SELECT sensor_type, value, unit, ts FROM livewidget.sensor_data "
            "WHERE device_id = %s ORDER BY id", (device,), dbname)

    def count(self, device):
        return self.sql("SELECT count(*) FROM livewidget.sensor_data "
                        "WHERE device_id = %s", (device,))[0][0]

    def start(self):
        subprocess.run([str(PG_CLUSTER), "start", self.host, str(self.port)],
                       check=True, capture_output=True, text=True)

    def stop(self):
        subprocess.run([str(PG_CLUSTER), "stop", self.host], check=True)

    def destroy(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Mosquitto:
    """Mosquitto on 127.0.0.1 with a queue large enough that a persistent
    session loses nothing in these tests.  Anonymous, or with users
    ({name: password}) and no anonymous access."""

    def __init__(self, users=None):
        self.dir = shared_tempdir("lw-mqtt-")
        self.port = free_port()
        self.users = users
        self.conf = self.dir / "mosquitto.conf"
        conf = ("listener %d 127.0.0.1\n"
                "persistence false\n"
                "max_queued_messages 100000\n" % self.port)
        if users:
            passwd = self.dir / "passwd"
            passwd.touch()
            for name, password in users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(passwd), name,
                                password], check=True)
            passwd.chmod(0o644)
            conf += "allow_anonymous false\npassword_file %s\n" % passwd
        else:
            conf += "allow_anonymous true\n"
        self.conf.write_text(conf)
        self.log_path = self.dir / "mosquitto.log"
        self.log = open(self.log_path, "a")
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)],
                                     stdout=self.log,
                                     stderr=subprocess.STDOUT)
        wait_for(self._accepts, 10, what="mosquitto to listen")

    def stop(self):
        """Stop the broker (by PID); without persistence it forgets every
        session."""
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def _accepts(self):
        assert self.proc.poll() is None, \
            "mosquitto exited:\n" + self.log_path.read_text()
        try:
            socket.create_connection(("127.0.0.1", self.port), 0.2).close()
            return True
        except OSError:
            return False

    @property
    def url(self):
        return "mqtt://127.0.0.1:%d" % self.port

    def _client(self, client_id=None, clean_session=True):
        client = mqtt.Client(
            client_id=client_id or "lw-test-pub-" + secrets.token_hex(4),
            clean_session=clean_session)
        if self.users:
            name, password = next(iter(self.users.items()))
            client.username_pw_set(name, password)
        client.connect("127.0.0.1", self.port)
        return client

    def publish_all(self, messages, qos=1, retain=False):
        """Publish [(topic, payload), ...] in order on one connection and
        wait until the broker has acknowledged every one.  A payload that
        is not bytes or str is sent as JSON."""
        client = self._client()
        client.loop_start()
        try:
            infos = []
            for topic, payload in messages:
                if not isinstance(payload, (bytes, str)):
                    payload = json.dumps(payload)
                infos.append(client.publish(topic, payload, qos=qos,
                                            retain=retain))
            for info in infos:
                info.wait_for_publish(10)
                assert info.is_published(), "the broker did not acknowledge"
        finally:
            # in this order: loop_stop() first would wait out the network
            # loop's one-second poll
            client.disconnect()
            client.loop_stop()

    def publish(self, topic, payload, qos=1, retain=False):
        """Publish one message and wait until the broker acknowledged it."""
        self.publish_all([(topic, payload)], qos=qos, retain=retain)

    def forget_session(self, client_id):
        """Drop the persistent session of a client that is gone, so that
        the broker stops queueing every later message for it."""
        if self.proc.poll() is not None:
            return
        try:
            client = self._client(client_id, clean_session=True)
            client.disconnect()
        except OSError:
            pass

    def destroy(self):
        self.stop()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def bridge_options(pg, broker, secret_file, **keys):
    """Working options for a bridge on these servers; keys override them
    (a key set to None is left out)."""
    options = {
        "database": pg.conninfo,
        "mqtt_url": broker.url,
        "mqtt_client_id": "lw-test-bridge-" + secrets.token_hex(4),
        "listen": "127.0.0.1:%d" % free_port(),
        "jwt_secret_file": str(secret_file),
        "web_root": str(ROOT / "web"),
        "log_level": "debug",
    }
    options.update(keys)
    return options


class Bridge:
    """livewidget-bridge started with --key=value options (None leaves a
    key out); extra_args, env and a configuration file text are optional.
    port (and with it url and ws_url) comes from the "listen" option; a
    test that sets listen elsewhere sets port itself."""

    def __init__(self, options, extra_args=(), env=None, config_text=None):
        self.dir = shared_tempdir("lw-bridge-")
        self.options = dict(options)
        self.port = None
        listen = self.options.get("listen") or ""
        if listen.rpartition(":")[2].isdigit():
            self.port = int(listen.rpartition(":")[2])
        argv = [str(BRIDGE_BIN)]
        argv += ["--%s=%s" % kv for kv in self.options.items()
                 if kv[1] is not None]
        argv += list(extra_args)
        if config_text is not None:
            path = self.dir / "bridge.conf"
            path.write_text(config_text)
            argv.append(str(path))
        self.argv = argv
        self.log_path = self.dir / "bridge.log"
        self.log = open(self.log_path, "w")
        full_env = dict(os.environ)
        for key in list(full_env):
            if key.startswith("LIVEWIDGET_"):
                del full_env[key]
        full_env.update(env or {})
        self.proc = subprocess.Popen(argv, stdout=self.log,
                                     stderr=subprocess.STDOUT, env=full_env)

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    @url.setter
    def url(self, value):
        self.port = int(value.rsplit(":", 1)[1].rstrip("/"))

    @property
    def ws_url(self):
        return "ws://127.0.0.1:%d" % self.port

    def get(self, path, token=None, headers=None):
        """GET path; (status, body, headers), the body parsed when it is
        JSON, else text; (None, None, None) when nothing answers."""
        request = urllib.request.Request(self.url + path)
        if token is not None:
            request.add_header("Authorization", "Bearer " + token)
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                status, body, hdrs = (response.status, response.read(),
                                      response.headers)
        except urllib.error.HTTPError as error:
            status, body, hdrs = error.code, error.read(), error.headers
        except (urllib.error.URLError, ConnectionError, socket.timeout):
            return (None, None, None)
        if hdrs.get_content_type() == "application/json":
            return (status, json.loads(body), hdrs)
        return (status, body.decode("utf-8", "replace"), hdrs)

    def ready(self):
        assert self.proc.poll() is None, \
            "the bridge exited with %s:\n%s" % (self.proc.returncode,
                                                 self.logs())
        return self.get("/readyz")[0] == 200

    def wait_ready(self, timeout=20.0):
        wait_for(self.ready, timeout, what="the bridge to be ready")
        return self

    def metrics(self):
        """The bridge's metrics as {"name{labels}": value}."""
        status, body, _ = self.get("/metrics")
        assert status == 200, body
        values = {}
        for line in body.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        return values

    def metric(self, name):
        return self.metrics().get(name, 0.0)

    def rejected(self, reason):
        return self.metric(
            'livewidget_ingest_messages_rejected_total{reason="%s"}' % reason)

    def logs(self):
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def signal(self, signo):
        self.proc.send_signal(signo)

    def wait_exit(self, timeout=20.0):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("the bridge did not exit:\n" + self.logs())

    def stop(self, signo=SIGTERM, timeout=20.0):
        """Stop by PID; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signo)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("the bridge ignored signal %d:\n%s"
                                     % (signo, self.logs()))
        return self.proc.returncode

    def destroy(self):
        try:
            status = self.stop()
            # a build with sanitizers (LW_TEST_BRIDGE) reports here; leaks
            # count only after a clean stop
            logs = self.logs()
            marks = ["ERROR: AddressSanitizer", "runtime error:"]
            if status == 0:
                marks.append("ERROR: LeakSanitizer")
            for mark in marks:
                assert mark not in logs, logs
        finally:
            self.log.close()
            shutil.rmtree(self.dir, ignore_errors=True)
