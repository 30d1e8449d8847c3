"""Fixtures for end-to-end tests of the bridge: real servers, real binary.

    pg_cluster      a throwaway PostgreSQL (test/pg-cluster) with a database
                    that has the livewidget extension (session)
    mosquitto       a Mosquitto broker on 127.0.0.1 (session)
    bridge_factory  start(**keys) -> a running livewidget-bridge configured
                    with those keys on top of working defaults (per test)
    device          a device id no other test uses

The servers themselves are in lw_servers.py, for tests that need one of
their own (a broker with logins, a broker to restart).
"""

import secrets
import shutil

import pytest

from lw_servers import (ROOT, BridgeProcess, MosquittoBroker, PgCluster,
                        free_port, shared_tempdir)


@pytest.fixture(scope="session")
def pg_cluster():
    cluster = PgCluster()
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="session")
def mosquitto():
    broker = MosquittoBroker()
    yield broker
    broker.destroy()


@pytest.fixture(scope="session")
def jwt_secret_file():
    """A valid HS256 secret file: the bridge needs a viewer key to start."""
    directory = shared_tempdir("lw-ingest-secret-")
    path = directory / "jwt.secret"
    path.write_text(secrets.token_urlsafe(48) + "\n")
    yield path
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def bridge_factory(pg_cluster, mosquitto, jwt_secret_file):
    """start(wait=True, extra_args=(), env=None, config_text=None, **keys):
    a bridge on this test's servers, stopped after the test.  keys override
    the defaults; a key set to None is left out."""
    started = []

    def start(wait=True, extra_args=(), env=None, config_text=None, **keys):
        options = {
            "database": pg_cluster.conninfo,
            "mqtt_url": mosquitto.url,
            "mqtt_client_id": "lw-test-bridge-" + secrets.token_hex(4),
            "listen": "127.0.0.1:%d" % free_port(),
            "jwt_secret_file": str(jwt_secret_file),
            "web_root": str(ROOT / "web"),
            "log_level": "debug",
        }
        options.update(keys)
        bridge = BridgeProcess(options, extra_args, env, config_text)
        started.append(bridge)
        return bridge.wait_ready() if wait else bridge

    yield start
    for bridge in started:
        bridge.destroy()


@pytest.fixture
def device():
    return "dev-" + secrets.token_hex(5)
