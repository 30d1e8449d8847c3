"""demo/run's command line and what a failed start leaves to read.

--help describes the demo and starts nothing; a bad argument is an error;
a failed start shows the end of the failing component's log before the
clean-up, and LW_DEMO_KEEP=1 keeps the working directory with the logs
while still stopping every process.
"""

import os
import re
import shutil
import socket

import pytest

from demoproc import DEMO_RUN, wait_until_gone


def demo_variables():
    """Every LW_DEMO_* variable demo/run reads."""
    with open(DEMO_RUN) as handle:
        return set(re.findall(r"\bLW_DEMO_[A-Z_]+", handle.read()))


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_describes_the_demo_and_starts_nothing(start_demo, flag):
    demo = start_demo(args=[flag])
    assert demo.wait_exit(20) == 0, demo.output()
    text = demo.output()
    assert text.startswith("Usage: demo/run [--help]"), text
    variables = demo_variables()
    assert len(variables) >= 8, variables
    for name in variables:
        assert name in text, "--help does not mention " + name
    for words in ("Ctrl-C", "SIGTERM", "SIGKILL", "exits 0", "exits 1",
                  "exits 2", "LW_DEMO_KEEP=1"):
        assert words in text, "--help does not mention " + words
    assert not re.search(r"^demo: ", text, re.M), "it started:\n" + text
    assert os.listdir(demo.base) == []


@pytest.mark.parametrize("args", [["--bogus"], ["start"], ["--help", "x"],
                                  ["-h", "-h"]])
def test_a_bad_argument_is_an_error(start_demo, args):
    demo = start_demo(args=args)
    assert demo.wait_exit(20) == 2, demo.output()
    text = demo.output()
    assert text.startswith("demo: "), text
    assert "Usage: demo/run [--help]" in text or "too many" in text, text
    assert "demo: building" not in text
    assert os.listdir(demo.base) == []


def test_bad_keep_value_is_an_error(start_demo):
    demo = start_demo(LW_DEMO_KEEP="yes")
    assert demo.wait_exit(20) == 1, demo.output()
    assert "LW_DEMO_KEEP must be 0 or 1" in demo.output()
    assert os.listdir(demo.base) == []


def start_with_port_taken_later(start_demo, **env):
    """A demo whose HTTP port is free when checked, taken before the
    bridge binds it (what another program starting meanwhile does)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    demo = start_demo(LW_DEMO_HTTP_PORT=str(port), **env)
    demo.wait_line(r"^demo: building")
    busy = socket.socket()
    busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    busy.bind(("127.0.0.1", port))
    busy.listen()
    return demo, busy


def test_a_failed_start_shows_the_log_that_says_why(start_demo):
    demo, busy = start_with_port_taken_later(start_demo)
    with busy:
        assert demo.wait_exit() == 1, demo.output()
    text = demo.output()
    error = text.index("demo: error: the bridge stopped at start")
    shown = text.index("demo: last lines of bridge.log:")
    why = text.index("could not listen on 127.0.0.1:%d" % demo.http_port)
    stopping = text.index("demo: stopping")
    assert error < shown < why < stopping, text
    assert "LW_DEMO_KEEP=1" in text
    demo.assert_nothing_left()


def test_keep_leaves_the_logs_and_stops_every_process(start_demo):
    demo, busy = start_with_port_taken_later(start_demo, LW_DEMO_KEEP="1")
    with busy:
        assert demo.wait_exit() == 1, demo.output()
    kept = demo.working_directory()
    assert "demo: working directory kept: %s" % kept in demo.output()
    with open(os.path.join(kept, "bridge.log")) as handle:
        assert "could not listen" in handle.read()
    assert os.path.exists(os.path.join(kept, "mosquitto.log"))
    assert os.path.exists(os.path.join(kept, "pg", "server.log"))
    left, files = demo.leftovers()
    assert left == [], left
    assert files == [os.path.basename(kept)]
    assert not os.path.exists(os.path.join(kept, "pg", "data",
                                           "postmaster.pid"))


def test_keep_after_ctrl_c(start_demo):
    demo = start_demo(LW_DEMO_KEEP="1").wait_started()
    assert demo.interrupt() == 0, demo.output()
    assert not wait_until_gone(list(demo.pids.values()))
    left, files = demo.leftovers()
    assert left == [] and files == [os.path.basename(demo.tmp)]
    for log in ("bridge.log", "mosquitto.log", "pg/server.log"):
        assert os.path.getsize(os.path.join(demo.tmp, log)) > 0, log
    assert os.path.exists(os.path.join(demo.tmp, "replay.log"))
    shutil.rmtree(demo.tmp)


def test_a_missing_tmpdir_is_a_clear_error(start_demo):
    demo = start_demo(LW_DEMO_TMPDIR="/nonexistent/lw-demo")
    assert demo.wait_exit() == 1, demo.output()
    assert "demo: error: could not create a directory in /nonexistent/lw-demo" \
        in demo.output()
    assert "demo: stopping" not in demo.output()
