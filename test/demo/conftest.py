"""Fixtures for the demo tests: a real Mosquitto with per-device logins."""

import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MQTT_PORT = int(os.environ.get("LW_TEST_MQTT_PORT", "18821"))


def wait_port(port, timeout=10.0, proc=None):
    """Block until something accepts on 127.0.0.1:port, or fail.

    With proc, fail at once when that process has exited.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError("exited with status %d before listening "
                                 "on port %d" % (proc.returncode, port))
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("nothing listens on 127.0.0.1:%d" % port)


@pytest.fixture
def secured_broker():
    """Mosquitto on 127.0.0.1 with the demo's logins and ACL.

    Yields a dict with the port and the plain-text passwords by user.  Its
    files live in a directory of their own that the "mosquitto" user can
    read: started as root, the broker drops to that user before it opens
    them, and pytest's own temporary directories are private to root.
    """
    if shutil.which("mosquitto") is None:
        pytest.fail("mosquitto is not installed")
    tmp_path = pathlib.Path(tempfile.mkdtemp(prefix="lw-test-mqtt-"))
    tmp_path.chmod(0o755)
    users = {"aq-reference": "ref-secret", "aq-multisensor": "multi-secret",
             "bridge": "bridge-secret"}
    passwd = tmp_path / "passwd"
    passwd.touch()
    for user, password in users.items():
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user,
                        password], check=True)
    passwd.chmod(0o644)
    acl = tmp_path / "acl"
    acl.write_text("user bridge\ntopic read devices/#\n\n"
                   "pattern write devices/%u/#\n")
    acl.chmod(0o644)
    conf = tmp_path / "mosquitto.conf"
    conf.write_text("listener %d 127.0.0.1\nallow_anonymous false\n"
                    "password_file %s\nacl_file %s\npersistence false\n"
                    "max_queued_messages 100000\n" % (MQTT_PORT, passwd, acl))
    log = open(tmp_path / "mosquitto.log", "w")
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        try:
            wait_port(MQTT_PORT, proc=proc)
        except AssertionError:
            raise AssertionError("mosquitto did not start:\n" +
                                 (tmp_path / "mosquitto.log").read_text())
        yield {"port": MQTT_PORT, "users": users, "dir": tmp_path}
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
        shutil.rmtree(tmp_path)
