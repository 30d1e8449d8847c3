"""Shared fixtures: a real PostgreSQL, a real Mosquitto, the real bridge.

    pg            a throwaway PostgreSQL with database "livewidget" (session)
    broker        Mosquitto on 127.0.0.1, anonymous (session)
    jwt_secret    the HS256 viewer secret and the file holding it (session)
    make_token    make_token(dashboards, lifetime=300, **claims) -> a JWT
    start_bridge  start_bridge(wait=True, extra_args=(), env=None,
                  config_text=None, **options) -> a livewidget-bridge on
                  these servers, stopped after the test
    bridge        one ready bridge shared by the tests of a module
    widget        a fresh widget on a fresh dashboard, fed by a fresh device
    device        a device id no other test uses

The servers themselves are in lw_servers.py, which every suite imports.
Everything listens on 127.0.0.1 (or a unix socket) on ports picked free at
start, lives in a temporary directory, and is stopped by PID at the end.
"""

import secrets
import shutil
import sys
import time
import uuid

import jwt as pyjwt
import pytest

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from lw_servers import (Bridge, Mosquitto, Postgres,  # noqa: E402
                        bridge_options, shared_tempdir)


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
    directory = shared_tempdir("lw-secret-")
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


def _destroy(bridge, broker):
    """Stop a bridge and drop its broker session, which would otherwise
    queue every later message of the run for a client that is gone."""
    try:
        bridge.destroy()
    finally:
        if bridge.options.get("mqtt_url") == broker.url:
            broker.forget_session(bridge.options["mqtt_client_id"])


@pytest.fixture
def start_bridge(pg, broker, jwt_secret):
    """start_bridge(wait=True, extra_args=(), env=None, config_text=None,
    **options) -> a bridge on this run's servers, stopped after the test;
    options override the defaults, one set to None is left out."""
    started = []

    def start(wait=True, extra_args=(), env=None, config_text=None,
              **options):
        bridge = Bridge(bridge_options(pg, broker, jwt_secret["path"],
                                       **options),
                        extra_args, env, config_text)
        started.append(bridge)
        return bridge.wait_ready() if wait else bridge

    yield start
    for bridge in started:
        _destroy(bridge, broker)


@pytest.fixture(scope="module")
def bridge(pg, broker, jwt_secret):
    """One bridge shared by the tests of a module."""
    server = Bridge(bridge_options(pg, broker, jwt_secret["path"]))
    try:
        server.wait_ready()
        yield server
    finally:
        _destroy(server, broker)


@pytest.fixture
def widget(pg):
    """A fresh widget on a fresh dashboard, fed by a fresh device."""
    if not pg.extension:
        pytest.fail("the livewidget extension is not installed "
                    "(run \"make install\" first)")
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


@pytest.fixture
def device():
    return "dev-" + secrets.token_hex(5)
