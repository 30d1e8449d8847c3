"""The dashboard page across bridge restarts, in headless Chromium.

The page must come back by itself after the bridge stops, resume after
the highest seq it saw (missing nothing still buffered), and rebuild its
window from REST when the server says samples it asked for are gone.
Uses the real PostgreSQL, Mosquitto and bridge fixtures of test/conftest.py.
"""

import datetime
import json
import os
import subprocess

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BROWSER_DIR = os.path.join(ROOT, "test", "browser")
T0 = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)


def stamp(i):
    return (T0 + datetime.timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ")


def insert(pg, widget, first, last):
    """Readings first..last: value i at T0 + i minutes."""
    pg.sql("INSERT INTO livewidget.sensor_data "
           "(device_id, sensor_type, value, unit, ts) "
           "SELECT %s, %s, i, '°C', %s::timestamptz + i * interval '1 minute' "
           "FROM generate_series(%s::int, %s::int) AS i",
           (widget["device"], widget["sensor"], T0, first, last))


class Page:
    """test/browser/follow-page.mjs, driven one JSON line at a time."""

    def __init__(self, url):
        if not os.path.isdir(os.path.join(BROWSER_DIR, "node_modules",
                                          "playwright-core")):
            pytest.fail("run \"npm ci\" in test/browser first")
        self.proc = subprocess.Popen(["node", "follow-page.mjs", url],
                                     cwd=BROWSER_DIR, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def wait(self, **want):
        self.proc.stdin.write(json.dumps({"wait": want}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the browser script ended"
        answer = json.loads(line)
        assert answer["ok"], "card never showed %r: %r" % (want, answer)
        return answer["card"]

    def close(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def restart(start_bridge, port):
    """A new bridge on the port of the stopped one (the page's origin)."""
    bridge = start_bridge(wait=False, listen="127.0.0.1:%d" % port)
    bridge.port = port
    bridge.url = "http://127.0.0.1:%d" % port
    return bridge.wait_ready()


def test_page_resumes_after_restarts_and_reloads_after_a_reset(
        pg, start_bridge, make_token, widget):
    bridge = start_bridge()
    port = bridge.port
    insert(pg, widget, 1, 10)
    token = make_token([widget["dashboard"]])
    page = Page("%s/dashboards/%s#token=%s" % (bridge.url,
                                               widget["dashboard"], token))
    w = widget["widget"]
    try:
        page.wait(widget=w, state="live", points=10, newest=stamp(10))

        # Down: the page says so; readings stored meanwhile stay buffered.
        bridge.stop()
        page.wait(widget=w, state="reconnecting")
        insert(pg, widget, 11, 15)
        bridge = restart(start_bridge, port)
        card = page.wait(widget=w, state="live", points=15,
                         newest=stamp(15))
        assert card["oldest"] == stamp(1) and card["value"] == "15"

        insert(pg, widget, 16, 17)
        page.wait(widget=w, points=17, newest=stamp(17))

        # Down again while 73 readings push 18..40 out of the 50-sample
        # buffer: the server answers ?after=17 with a reset, and the page
        # must show exactly the buffer, 41..90.
        bridge.stop()
        insert(pg, widget, 18, 90)
        bridge = restart(start_bridge, port)
        card = page.wait(widget=w, state="live", points=50,
                         oldest=stamp(41), newest=stamp(90))
        assert card["value"] == "90"
    finally:
        page.close()
