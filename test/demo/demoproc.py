"""demo/run as a child of the tests: free ports, its output, a sure stop.

Each DemoProcess gets ports picked free at start and a base directory of
its own as LW_DEMO_TMPDIR, so that everything the demo creates, and every
process it starts (their command lines name that directory), can be found
again whatever the demo printed before it was stopped.

The child starts in a session of its own, as a terminal gives a foreground
job, with SIGINT and SIGTERM at their default disposition: a test runner
started in the background of a shell ignores SIGINT, and a child would
inherit that, so a "Ctrl-C" sent to it would do nothing.  It also gets
SIGTERM when the test runner dies, so a killed run leaves no demo behind.
"""

import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEMO_RUN = os.path.join(ROOT, "demo", "run")

START_TIMEOUT = 180         # packages checked, build, servers up
STOP_TIMEOUT = 90           # the demo's own bound is 15 s per process
LEFTOVER_GRACE = 3.0        # a process just told to stop may take this long

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _child_setup():
    """Runs in the child between fork and exec: plain system calls only.

    The demo starts with the signals a terminal leaves it, whatever runs
    the tests: a shell cannot trap a signal that was ignored when it
    started, and nohup (or a CI runner) may have ignored SIGHUP."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def free_ports(count):
    """count distinct ports free on 127.0.0.1 right now."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def port_is_free(port):
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def running(pid):
    """True while pid runs; a zombie waiting for its reaper does not."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def processes_mentioning(text):
    """PIDs of the live processes whose command line contains text."""
    found = []
    needle = text.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as handle:
                if needle in handle.read() and running(int(entry)):
                    found.append(int(entry))
        except OSError:
            continue
    return found


def wait_until_gone(pids, grace=LEFTOVER_GRACE):
    """The subset of pids still running after up to grace seconds."""
    deadline = time.monotonic() + grace
    while True:
        left = [pid for pid in pids if running(pid)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


class DemoProcess:
    """One demo/run, its output lines, ports and base directory."""

    def __init__(self, args=(), skip_install=True, read_output=True,
                 **env_extra):
        """read_output=False: no reader thread; the test reads with
        read_line() and may close the pipe, as a reader that goes away."""
        self.http_port, self.mqtt_port, self.pg_port = free_ports(3)
        self.base = tempfile.mkdtemp(prefix="lw-test-demo-")
        os.chmod(self.base, 0o755)
        env = dict(os.environ,
                   LW_DEMO_HTTP_PORT=str(self.http_port),
                   LW_DEMO_MQTT_PORT=str(self.mqtt_port),
                   LW_DEMO_PG_PORT=str(self.pg_port),
                   LW_DEMO_TMPDIR=self.base, LW_DEMO_SPEED="36000")
        env.pop("LW_DEMO_KEEP", None)
        if skip_install:
            env["LW_DEMO_SKIP_INSTALL"] = "1"
        env.update(env_extra)
        # Ports given by the caller win over the picked ones.
        self.http_port = int(env["LW_DEMO_HTTP_PORT"])
        self.mqtt_port = int(env["LW_DEMO_MQTT_PORT"])
        self.pg_port = int(env["LW_DEMO_PG_PORT"])
        self.lines = []
        self.cond = threading.Condition()
        self.eof = False
        self.proc = subprocess.Popen([DEMO_RUN] + list(args),
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True,
                                     env=env, start_new_session=True,
                                     preexec_fn=_child_setup)
        self.reader = None
        if read_output:
            self.reader = threading.Thread(target=self._read, daemon=True)
            self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def read_line(self, pattern):
        """Read (in this thread) up to a line matching pattern."""
        regex = re.compile(pattern)
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
            if regex.search(line):
                return line
        raise AssertionError("no line matching %r:\n%s" % (pattern,
                                                            self.output()))

    def close_output(self):
        self.proc.stdout.close()

    def output(self):
        with self.cond:
            return "\n".join(self.lines)

    def wait_line(self, pattern, timeout=START_TIMEOUT):
        """The first output line matching pattern (a regex); fails at EOF."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines:
                    match = regex.search(line)
                    if match:
                        return match
                left = deadline - time.monotonic()
                if self.eof or left <= 0:
                    raise AssertionError("demo/run printed no line matching "
                                         "%r:\n%s" % (pattern,
                                                      "\n".join(self.lines)))
                self.cond.wait(left)

    def wait_started(self):
        """Wait for the dashboard URL; parse what the demo printed."""
        self.wait_line(r"^demo: replaying")
        text = self.output()
        url = re.search(r"^Dashboard: (\S+)$", text, re.M)
        assert url, "no dashboard URL printed:\n" + text
        self.url = url.group(1)
        match = re.match(r"http://127\.0\.0\.1:(\d+)/dashboards/"
                         r"([0-9a-f-]{36})#token=([\w.-]+)$", self.url)
        assert match, self.url
        assert int(match.group(1)) == self.http_port
        self.dashboard, self.token = match.group(2), match.group(3)
        self.tmp = self.working_directory()
        pids = re.search(r"^demo: pids: (.*)$", text, re.M).group(1)
        self.pids = {name: int(pid) for name, pid in
                     (part.split() for part in pids.split(", "))}
        return self

    def working_directory(self):
        match = re.search(r"^demo: working directory (\S+)", self.output(),
                          re.M)
        return match.group(1) if match else None

    def printed_pids(self):
        """Every PID the demo printed so far, by "(pid N)" or "pids:"."""
        text = self.output()
        pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", text)]
        for line in re.findall(r"^demo: pids: (.*)$", text, re.M):
            pids += [int(part.split()[1]) for part in line.split(", ")]
        return pids

    def signal(self, signum, group=True):
        """group: to the whole foreground group, as a terminal sends."""
        if self.proc.poll() is not None:
            return
        try:
            if group:
                os.killpg(self.proc.pid, signum)
            else:
                os.kill(self.proc.pid, signum)
        except ProcessLookupError:
            pass

    def interrupt(self):
        """Ctrl-C; returns the exit status."""
        self.signal(signal.SIGINT)
        return self.wait_exit()

    def wait_exit(self, timeout=STOP_TIMEOUT):
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            # say what it was doing and what still runs, for the report
            pids = set(processes_mentioning(self.base))
            pids.update(p for p in self.printed_pids() if running(p))
            pids.add(self.proc.pid)
            raise AssertionError(
                "the demo did not exit within %d s; still running:\n%s"
                "\n\ndemo output:\n%s\n%s" % (
                    timeout, "\n".join("%d %s %s" % (p, _state(p), _cmdline(p))
                                        for p in sorted(pids)),
                    self.output(), self.log_tails())) from None
        if self.reader is not None:
            self.reader.join(10)
        return status

    def log_tails(self, lines=15):
        """The last lines of every log in the demo's working directory."""
        out = []
        for root, _dirs, files in os.walk(self.base):
            for name in sorted(files):
                if name.endswith(".log"):
                    path = os.path.join(root, name)
                    try:
                        with open(path, errors="replace") as f:
                            tail = f.readlines()[-lines:]
                    except OSError:
                        continue
                    out.append("--- %s\n%s" % (path, "".join(tail)))
        return "\n".join(out)

    def leftovers(self):
        """Processes of this demo still running, and files it left."""
        pids = set(processes_mentioning(self.base))
        pids.update(pid for pid in self.printed_pids() if running(pid))
        left = wait_until_gone(sorted(pids))
        files = sorted(os.listdir(self.base)) if os.path.isdir(self.base) \
            else []
        return left, files

    def assert_nothing_left(self):
        left, files = self.leftovers()
        described = ["%d %s" % (pid, _cmdline(pid)) for pid in left]
        assert not described, "still running:\n%s\n\ndemo output:\n%s" % (
            "\n".join(described), self.output())
        assert not files, "left in %s: %s\n\ndemo output:\n%s" % (
            self.base, files, self.output())
        for port in (self.http_port, self.mqtt_port, self.pg_port):
            assert port_is_free(port), "port %d still taken" % port

    def stop(self):
        """Whatever state the demo is in, leave nothing of it behind.

        First as a user would (Ctrl-C, then SIGKILL to its group if it
        does not exit), then, should the demo have failed to clean up,
        every process naming its directory, and the directory itself.
        """
        if self.proc.poll() is None:
            self.signal(signal.SIGINT)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait()
        remove_leftovers(self.base)


def remove_leftovers(base):
    """Stop every process naming base, then remove base: the last resort
    when a demo failed to clean up after itself."""
    left = processes_mentioning(base)
    for pid in left:
        _kill_leftover(pid, signal.SIGTERM)
    for pid in wait_until_gone(left, 10.0):
        _kill_leftover(pid, signal.SIGKILL)
    wait_until_gone(left, 10.0)
    shutil.rmtree(base, ignore_errors=True)


def _state(pid):
    """A process's state letter and what it waits in, from /proc."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        with open("/proc/%d/wchan" % pid) as f:
            return "%s/%s" % (state, f.read().strip() or "-")
    except OSError:
        return "?"


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "?"


def _kill_leftover(pid, signum):
    """A postmaster gets SIGQUIT (immediate shutdown) rather than TERM."""
    if signum == signal.SIGTERM and "postgres -D" in _cmdline(pid):
        signum = signal.SIGQUIT
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
