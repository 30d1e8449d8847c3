"""demo/run stops everything it started, whenever and however it is told.

A signal (Ctrl-C to the whole foreground group, SIGTERM to the demo, both
as `timeout` sends them, one or several in a row) at several moments of
start-up and while running must end in one orderly stop: every process
the demo started gone, the working directory gone, the ports free, exit
status 0, and no trace of the shell dying of the signal.

Each case starts a demo of its own (LW_DEMO_SKIP_INSTALL=1: the extension
is installed already by test/run or by test_demo.py) in a private
LW_DEMO_TMPDIR, so that what it leaves behind can be found by that
directory even when the demo was stopped before it printed anything.
"""

import fcntl
import os
import pty
import re
import signal
import subprocess
import tempfile
import termios
import threading
import time

import pytest

from demoproc import DEMO_RUN, free_ports, processes_mentioning, \
    remove_leftovers

INT, TERM = signal.SIGINT, signal.SIGTERM


# What a shell or Python prints when a signal kills what it runs.  make's
# own "*** ... Interrupt" is fair: a Ctrl-C during the build stops it.
DEATH_NOTICE = re.compile(r"Traceback|(^|\s)(Interrupt|Terminated|Killed)"
                          r"(\s|$)")


def assert_stopped_cleanly(demo, status):
    output = demo.output()
    assert status == 0, "exit status %r:\n%s" % (status, output)
    demo.assert_nothing_left()
    assert output.count("demo: stopping") == 1, output
    for line in output.splitlines():
        assert line.startswith("make") or not DEATH_NOTICE.search(line), \
            output


def send(demo, steps):
    """steps: (delay in seconds, signal, to the whole group?) in order."""
    for delay, signum, group in steps:
        time.sleep(delay)
        demo.signal(signum, group)


# Start-up ------------------------------------------------------------------

@pytest.mark.parametrize("line", [
    r"^demo: building",
    r"^demo: starting PostgreSQL",
    r"^demo: PostgreSQL started",
    r"^demo: starting Mosquitto",
    r"^demo: starting livewidget-bridge",
])
@pytest.mark.parametrize("delay", [0.0, 0.3])
def test_ctrl_c_at_a_step_of_start_up(start_demo, line, delay):
    demo = start_demo()
    demo.wait_line(line)
    send(demo, [(delay, INT, True)])
    assert_stopped_cleanly(demo, demo.wait_exit())


@pytest.mark.parametrize("line", [
    r"^demo: building",
    r"^demo: working directory",
    r"^demo: PostgreSQL started",
    r"^demo: Mosquitto started",
    r"^demo: livewidget-bridge started",
])
@pytest.mark.parametrize("delay", [0.0, 0.2])
def test_timeout_at_a_step_of_start_up(start_demo, line, delay):
    """timeout(1) sends SIGTERM to the command, then to its group."""
    demo = start_demo()
    demo.wait_line(line)
    send(demo, [(delay, TERM, False), (0, TERM, True)])
    assert_stopped_cleanly(demo, demo.wait_exit())


@pytest.mark.parametrize("delay", [0.2, 0.4, 0.7, 1.1, 1.6, 2.2])
def test_ctrl_c_some_time_after_start(start_demo, delay):
    demo = start_demo()
    send(demo, [(delay, INT, True)])
    assert_stopped_cleanly(demo, demo.wait_exit())


def test_double_ctrl_c_while_postgresql_starts(start_demo):
    demo = start_demo()
    demo.wait_line(r"^demo: starting PostgreSQL")
    send(demo, [(0.1, INT, True), (0.05, INT, True)])
    assert_stopped_cleanly(demo, demo.wait_exit())


def test_signals_of_every_kind_while_the_bridge_starts(start_demo):
    demo = start_demo()
    demo.wait_line(r"^demo: starting livewidget-bridge")
    send(demo, [(0, INT, True), (0.1, TERM, False), (0.1, INT, True),
                (0.3, TERM, True)])
    assert_stopped_cleanly(demo, demo.wait_exit())


# Running -------------------------------------------------------------------

@pytest.mark.parametrize("steps", [
    pytest.param([(0, INT, True)], id="ctrl-c"),
    pytest.param([(0, INT, True), (0.05, INT, True)], id="ctrl-c-twice-50ms"),
    pytest.param([(0, INT, True), (0.3, INT, True)], id="ctrl-c-twice-300ms"),
    pytest.param([(0, INT, True), (0.3, INT, True), (0.5, INT, True),
                  (1.0, INT, True)], id="ctrl-c-four-times"),
    pytest.param([(0, TERM, False)], id="kill"),
    # What `timeout` does: SIGTERM to the command, then to its group.
    pytest.param([(0, TERM, False), (0, TERM, True)], id="timeout"),
    pytest.param([(0, signal.SIGHUP, True)], id="hang-up"),
])
def test_signals_while_running(start_demo, steps):
    demo = start_demo().wait_started()
    pids = list(demo.pids.values())
    send(demo, steps)
    assert_stopped_cleanly(demo, demo.wait_exit())
    assert set(pids) <= set(demo.printed_pids())


def test_the_next_demo_starts_on_the_same_ports(start_demo):
    first = start_demo().wait_started()
    send(first, [(0, TERM, False), (0, TERM, True)])
    assert_stopped_cleanly(first, first.wait_exit())
    second = start_demo(LW_DEMO_HTTP_PORT=str(first.http_port),
                        LW_DEMO_MQTT_PORT=str(first.mqtt_port),
                        LW_DEMO_PG_PORT=str(first.pg_port)).wait_started()
    assert second.interrupt() == 0, second.output()
    second.assert_nothing_left()


# The reader of the output goes away --------------------------------------

def test_ctrl_c_after_the_output_reader_is_gone(start_demo):
    """As with "demo/run | tee log": Ctrl-C ends tee too, and the demo's
    "stopping" goes to a closed pipe."""
    demo = start_demo(read_output=False)
    demo.read_line(r"^demo: replaying")
    demo.close_output()
    send(demo, [(0, INT, True)])
    assert demo.wait_exit() == 0
    demo.assert_nothing_left()


@pytest.mark.parametrize("line", [r"^demo: building",
                                  r"^demo: starting PostgreSQL",
                                  r"^demo: Mosquitto started"])
def test_output_reader_gone_during_start_up(start_demo, line):
    """As with "demo/run | head -3": the next message finds no reader."""
    demo = start_demo(read_output=False)
    demo.read_line(line)
    demo.close_output()
    assert demo.wait_exit() == 0
    demo.assert_nothing_left()


# On a real terminal ------------------------------------------------------

def test_ctrl_c_typed_on_a_terminal():
    """^C written to a pseudo-terminal, twice, 50 ms apart: the terminal
    itself signals its foreground group, as when a user presses Ctrl-C."""
    base = tempfile.mkdtemp(prefix="lw-test-demo-")
    os.chmod(base, 0o755)
    http, mqtt_port, pg = free_ports(3)
    env = dict(os.environ, LW_DEMO_SKIP_INSTALL="1", LW_DEMO_TMPDIR=base,
               LW_DEMO_HTTP_PORT=str(http), LW_DEMO_MQTT_PORT=str(mqtt_port),
               LW_DEMO_PG_PORT=str(pg), LW_DEMO_SPEED="36000")
    env.pop("LW_DEMO_KEEP", None)
    master, slave = pty.openpty()

    def on_the_terminal():
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([DEMO_RUN], stdin=slave, stdout=slave,
                            stderr=slave, env=env, start_new_session=True,
                            preexec_fn=on_the_terminal)
    os.close(slave)
    seen = []

    def read():
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            if not data:
                return
            seen.append(data.decode(errors="replace"))
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while "demo: replaying" not in "".join(seen):
            assert proc.poll() is None and time.monotonic() < deadline, \
                "".join(seen)
            time.sleep(0.1)
        os.write(master, b"\x03")
        time.sleep(0.05)
        os.write(master, b"\x03")
        assert proc.wait(90) == 0, "".join(seen)
        reader.join(5)
        output = "".join(seen)
        assert output.count("demo: stopping") == 1, output
        assert not DEATH_NOTICE.search(output.replace("^C", "")), output
        assert processes_mentioning(base) == [], output
        assert os.listdir(base) == [], output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        remove_leftovers(base)
        os.close(master)
