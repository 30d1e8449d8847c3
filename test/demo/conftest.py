"""Fixtures for the demo tests: a real Mosquitto with per-device logins,
and demo/run itself, always stopped at the end of the test that used it.

Every port is picked free when the fixture starts, so that these tests do
not collide with another run on the same machine.
"""

import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from demoproc import DemoProcess, free_ports

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


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
    port, = free_ports(1)
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
                    "max_queued_messages 100000\n" % (port, passwd, acl))
    log = open(tmp_path / "mosquitto.log", "w")
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        try:
            wait_port(port, proc=proc)
        except AssertionError:
            raise AssertionError("mosquitto did not start:\n" +
                                 (tmp_path / "mosquitto.log").read_text())
        yield {"port": port, "users": users, "dir": tmp_path}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(tmp_path)


@pytest.fixture
def start_demo():
    """Start demo/run (DemoProcess arguments); stopped whatever happens."""
    started = []

    def start(*args, **kwargs):
        demo = DemoProcess(*args, **kwargs)
        started.append(demo)
        return demo
    try:
        yield start
    finally:
        for demo in started:
            demo.stop()
