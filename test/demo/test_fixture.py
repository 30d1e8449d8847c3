"""The start_demo fixture leaves no demo behind, whatever the test does.

Each case runs an inner pytest on a small test file that uses the real
fixture: one test fails, one is killed outright (as a runner's time-out
would do), one runs in the background of a shell (so it inherits SIGINT
ignored).  Afterwards nothing naming the demo's directory may run.
"""

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from demoproc import processes_mentioning, remove_leftovers

HERE = pathlib.Path(__file__).resolve().parent

# The inner run's conftest takes the fixture from this directory's
# conftest.py under another module name (test/conftest.py is "conftest").
INNER_CONFTEST = '''
import importlib.util
import sys

sys.path.insert(0, %(here)r)
spec = importlib.util.spec_from_file_location(
    "demo_fixtures", %(here)r + "/conftest.py")
fixtures = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fixtures)
start_demo = fixtures.start_demo
'''

INNER_TEST = '''
import time


def test_inner(start_demo):
    demo = start_demo()
    with open(%(report)r, "w") as handle:
        handle.write(demo.base)
    demo.wait_started()
    with open(%(report)r, "a") as handle:
        handle.write("\\nstarted")
    %(then)s
'''


def run_inner(then, background=False, kill_when_started=False):
    """Run the inner test; returns (the demo's base directory, output)."""
    work = pathlib.Path(tempfile.mkdtemp(prefix="lw-test-fixture-"))
    report = work / "report"
    try:
        (work / "conftest.py").write_text(INNER_CONFTEST % {"here": str(HERE)})
        (work / "test_inner.py").write_text(INNER_TEST % {
            "report": str(report), "then": then})
        command = [sys.executable, "-m", "pytest", "-q", "-p",
                   "no:cacheprovider", "--rootdir", str(work), str(work)]
        if background:
            # As "pytest &" in a script: the runner ignores SIGINT.
            command = ["sh", "-c", '"$@" & wait $!', "sh"] + command
        proc = subprocess.Popen(command, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        if kill_when_started:
            deadline = time.monotonic() + 180
            while "started" not in (report.read_text()
                                    if report.exists() else ""):
                assert proc.poll() is None and time.monotonic() < deadline, \
                    proc.communicate()[0]
                time.sleep(0.1)
            os.killpg(proc.pid, signal.SIGKILL)
        output = proc.communicate(timeout=300)[0]
        base = report.read_text().split("\n")[0]
        assert "started" in report.read_text(), output
        return base, output
    finally:
        shutil.rmtree(work)


def leftovers(base):
    files = os.listdir(base) if os.path.exists(base) else []
    return processes_mentioning(base), files


def assert_no_demo_left(base, grace=30.0):
    """Nothing of the demo runs, and its directory is gone or empty (a
    killed runner could not remove its own, empty, part).  With grace,
    the demo may still be stopping by itself meanwhile."""
    try:
        deadline = time.monotonic() + grace
        while leftovers(base) != ([], []) and time.monotonic() < deadline:
            time.sleep(0.2)
        left, files = leftovers(base)
        assert left == [], "the demo still runs: %r" % left
        assert files == [], "the demo left %r" % files
    finally:
        remove_leftovers(base)


def test_a_failing_test_leaves_no_demo():
    base, output = run_inner("assert False, 'on purpose'")
    assert "1 failed" in output, output
    assert not os.path.exists(base)
    assert_no_demo_left(base, grace=0)


def test_a_killed_test_run_leaves_no_demo():
    """The runner dies without its clean-up: the demo gets SIGTERM."""
    base, _ = run_inner("time.sleep(600)", kill_when_started=True)
    assert_no_demo_left(base)


def test_ctrl_c_reaches_the_demo_from_a_background_run():
    base, output = run_inner(
        "assert demo.interrupt() == 0, demo.output()\n"
        "    demo.assert_nothing_left()", background=True)
    assert "1 passed" in output, output
    assert_no_demo_left(base, grace=0)
