"""demo/replay: time conversion, missing values, bad rows, real MQTT."""

import datetime
import importlib.machinery
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

REPLAY = os.path.join(ROOT, "demo", "replay")
HEADER = ("Date,Time,CO_GT,PT08_S1_CO,NMHC_GT,C6H6_GT,PT08_S2_NMHC,NOx_GT,"
          "PT08_S3_NOx,NO2_GT,PT08_S4_NO2,PT08_S5_O3,T,RH,AH\n")


def load_replay():
    loader = importlib.machinery.SourceFileLoader("replay", REPLAY)
    spec = importlib.util.spec_from_loader("replay", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


replay = load_replay()
UTC = datetime.timezone.utc


def utc(*args):
    return datetime.datetime(*args, tzinfo=UTC)


def local(*args):
    return datetime.datetime(*args)


def row(date, time_, co="2.6", t="13.6"):
    return [date, time_, co, "1360", "150", "11.9", "1046", "166", "1056",
            "113", "1692", "1268", t, "48.9", "0.7578"]


def run_replay(*args, timeout=60, **kwargs):
    return subprocess.run([sys.executable, REPLAY] + list(args),
                          capture_output=True, text=True, timeout=timeout,
                          **kwargs)


# Time conversion ----------------------------------------------------------

def test_winter_time_is_one_hour_ahead_of_utc():
    assert replay.local_to_utc(local(2004, 3, 10, 18)) == utc(2004, 3, 10, 17)


def test_summer_time_is_two_hours_ahead_of_utc():
    assert replay.local_to_utc(local(2004, 6, 15, 12)) == utc(2004, 6, 15, 10)
    moment, _ = replay.row_messages(7, row("15/06/2004", "0:00:00"))
    assert moment == utc(2004, 6, 14, 22)


def test_hour_skipped_in_spring_is_left_out_with_a_warning(capsys):
    for day in ((2004, 3, 28), (2005, 3, 27)):
        with pytest.raises(replay.NonexistentLocalTime):
            replay.local_to_utc(local(*day, 2))
    assert replay.row_messages(418, row("28/03/2004", "2:00:00")) is None
    err = capsys.readouterr().err
    assert "line 418" in err and "does not exist" in err
    # The hours around the gap are one real hour apart.
    before = replay.local_to_utc(local(2004, 3, 28, 1))
    after = replay.local_to_utc(local(2004, 3, 28, 3))
    assert after - before == datetime.timedelta(hours=1)


def test_ambiguous_autumn_hour_is_taken_as_summer_time():
    assert replay.local_to_utc(local(2004, 10, 31, 1)) == utc(2004, 10, 30, 23)
    assert replay.local_to_utc(local(2004, 10, 31, 2)) == utc(2004, 10, 31, 0)
    assert replay.local_to_utc(local(2004, 10, 31, 3)) == utc(2004, 10, 31, 2)


def test_whole_recording_converts_to_strictly_increasing_utc(capsys):
    rows = replay.load_rows(os.path.join(ROOT, "data", "air-quality-uci.csv"))
    assert len(rows) == 9357 - 2
    moments = [m for m, _ in rows]
    assert all(a < b for a, b in zip(moments, moments[1:]))
    assert moments[0] == utc(2004, 3, 10, 17)
    assert capsys.readouterr().err.count("does not exist") == 2


# Readings -----------------------------------------------------------------

def test_reading_marked_minus_200_is_never_published():
    _, messages = replay.row_messages(2, row("10/03/2004", "18:00:00",
                                             co="-200", t="-200.0"))
    sensors = {r["sensor_type"] for m in messages.values()
               for r in m["readings"]}
    assert "co" not in sensors and "temperature" not in sensors
    assert "benzene" in sensors and "humidity" in sensors
    assert all(r["value"] != -200 for m in messages.values()
               for r in m["readings"])


def test_device_with_every_reading_missing_gets_no_message():
    fields = row("10/03/2004", "18:00:00")
    for i in (2, 4, 5, 7, 9):
        fields[i] = "-200"
    _, messages = replay.row_messages(2, fields)
    assert list(messages) == ["aq-multisensor"]


def test_message_shape_follows_the_bulk_payload():
    _, messages = replay.row_messages(2, row("10/03/2004", "18:00:00"))
    ref = messages["aq-reference"]
    assert ref["device_id"] == "aq-reference"
    assert ref["readings"][0] == {"sensor_type": "co", "value": 2.6,
                                  "unit": "mg/m³",
                                  "timestamp": "2004-03-10T17:00:00Z"}
    multi = messages["aq-multisensor"]["readings"]
    assert {r["sensor_type"] for r in multi} == {
        "pt08_s1_co", "pt08_s2_nmhc", "pt08_s3_nox", "pt08_s4_no2",
        "pt08_s5_o3", "temperature", "humidity", "abs_humidity"}
    assert "unit" not in multi[0]


# Bad input ----------------------------------------------------------------

@pytest.mark.parametrize("bad_line, message", [
    ("10/03/2004,20:00:00,abc,1,1,1,1,1,1,1,1,1,1,1,1\n",
     'invalid number "abc" in column "CO_GT"'),
    ("10/03/2004,20:00:00,1,1,1\n", "expected 15 fields, found 5"),
    ("31/02/2004,20:00:00,1,1,1,1,1,1,1,1,1,1,1,1,1\n",
     "invalid date or time"),
    ("10/03/2004,20:00:00,nan,1,1,1,1,1,1,1,1,1,1,1,1\n", "non-finite"),
])
def test_bad_row_is_reported_with_its_line_number(tmp_path, bad_line,
                                                  message):
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + ",".join(row("10/03/2004", "18:00:00")) + "\n"
                    + bad_line)
    result = run_replay("--csv", str(path), "--dry-run", "--no-pace")
    assert result.returncode == 2
    assert "line 3: " + message in result.stderr
    assert result.stdout == ""      # nothing published before the error


def test_bad_header_is_refused(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("Date,Time,CO\n1/1/2004,0:00:00,1\n")
    result = run_replay("--csv", str(path), "--dry-run")
    assert result.returncode == 2 and "line 1: unexpected header" in \
        result.stderr


def test_bad_options_are_refused():
    for args in (["--speed", "0"], ["--limit", "-1"], ["--start", "2004"],
                 ["--mqtt-url", "http://x"]):
        result = run_replay("--dry-run", *args)
        assert result.returncode == 2 and "error: argument" in result.stderr


def test_help_explains_missing_values_daylight_saving_and_limits():
    """data/README.md sends readers to --help: it must hold the answers."""
    result = run_replay("--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "top of this file" not in text
    for words in ("-200 marks a missing measurement and is never published",
                  "Europe/Rome", "does not exist", "left out, with a warning",
                  "read as the first of the two, summer time",
                  "at most %d messages per device" % replay.MAX_IN_FLIGHT,
                  "connecting gives up after %d seconds" %
                  replay.CONNECT_TIMEOUT,
                  "after %d seconds" % replay.ACK_TIMEOUT,
                  "Exit status: 0 when done; 2 for a bad argument"):
        assert words in text, "--help does not say: " + words
    assert "/../" not in text           # the default recording's path


def test_loop_shifts_each_pass_past_the_previous_one(tmp_path):
    path = tmp_path / "three.csv"
    path.write_text(HEADER + "".join(
        ",".join(row("10/03/2004", "%d:00:00" % h)) + "\n"
        for h in (18, 19, 20)))
    result = run_replay("--csv", str(path), "--dry-run", "--no-pace",
                        "--loop", "--limit", "7")
    stamps = [json.loads(line)["readings"][0]["timestamp"]
              for line in result.stdout.splitlines()
              if '"aq-reference"' in line]
    assert stamps == ["2004-03-10T%02d:00:00Z" % h
                      for h in (17, 18, 19, 20, 21, 22, 23)]


# Against a real broker ----------------------------------------------------

def mqtt_url(broker):
    return "mqtt://127.0.0.1:%d" % broker["port"]


def write_credentials(broker, path, **override):
    users = dict(broker["users"], **override)
    path.write_text("".join("%s:%s\n" % (u, p) for u, p in users.items()
                            if u != "bridge"))
    return str(path)


class Subscriber:
    """Reads devices/# as the bridge user and collects the payloads."""

    def __init__(self, broker):
        self.messages = []
        self.ready = threading.Event()
        self.client = mqtt.Client(client_id="test-sub-%d" % os.getpid())
        self.client.username_pw_set("bridge", broker["users"]["bridge"])
        self.client.on_connect = lambda c, u, f, rc: c.subscribe(
            "devices/#", qos=1)
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.on_message = lambda c, u, m: self.messages.append(
            (m.topic, json.loads(m.payload)))
        self.client.connect("127.0.0.1", broker["port"])
        self.client.loop_start()
        assert self.ready.wait(10), "subscription not acknowledged"

    def wait_for(self, count, timeout=10):
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.messages

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def test_rows_reach_the_broker_on_each_device_topic(secured_broker, tmp_path):
    sub = Subscriber(secured_broker)
    try:
        creds = write_credentials(secured_broker, tmp_path / "creds")
        result = run_replay("--mqtt-url", "mqtt://127.0.0.1:%d" %
                            secured_broker["port"], "--credentials", creds,
                            "--no-pace", "--limit", "5")
        assert result.returncode == 0, result.stderr
        assert "5 rows" in result.stderr
        got = sub.wait_for(10)
    finally:
        sub.close()
    assert len(got) == 10
    for topic, payload in got:
        assert topic == "devices/%s/telemetry" % payload["device_id"]
    first = [p for t, p in got if p["device_id"] == "aq-reference"][0]
    assert first["readings"][0]["timestamp"] == "2004-03-10T17:00:00Z"


def test_pacing_follows_the_speed_factor(secured_broker, tmp_path):
    creds = write_credentials(secured_broker, tmp_path / "creds")
    began = time.monotonic()
    result = run_replay("--mqtt-url", mqtt_url(secured_broker),
                        "--credentials", creds, "--speed", "7200",
                        "--limit", "5")
    elapsed = time.monotonic() - began
    assert result.returncode == 0, result.stderr
    # Four recorded hours at two hours per second: two seconds at least.
    assert 2.0 <= elapsed < 10.0


def test_wrong_password_is_a_clear_error(secured_broker, tmp_path):
    creds = write_credentials(secured_broker, tmp_path / "creds",
                              **{"aq-reference": "wrong"})
    result = run_replay("--mqtt-url", mqtt_url(secured_broker),
                        "--credentials", creds, "--no-pace", "--limit", "1")
    assert result.returncode != 0
    assert 'broker refused device "aq-reference"' in result.stderr


def test_unreachable_broker_is_a_clear_error(tmp_path):
    path = tmp_path / "creds"
    path.write_text("aq-reference:x\naq-multisensor:y\n")
    result = run_replay("--mqtt-url", "mqtt://127.0.0.1:1", "--credentials",
                        str(path), "--limit", "1")
    assert result.returncode != 0
    assert "could not connect to MQTT broker 127.0.0.1:1" in result.stderr


def test_sigint_stops_after_every_publish_is_acknowledged(secured_broker,
                                                         tmp_path):
    sub = Subscriber(secured_broker)
    try:
        creds = write_credentials(secured_broker, tmp_path / "creds")
        proc = subprocess.Popen(
            [sys.executable, REPLAY, "--mqtt-url",
             mqtt_url(secured_broker), "--credentials", creds,
             "--speed", "36000", "--loop"],
            stderr=subprocess.PIPE, text=True)
        time.sleep(2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        # "replay: N rows, aq-multisensor A, aq-reference B acknowledged"
        summary = re.search(r"replay: (\d+) rows, aq-multisensor (\d+), "
                            r"aq-reference (\d+) acknowledged", err)
        assert summary, err
        rows, multi, ref = (int(n) for n in summary.groups())
        assert rows >= 5 and multi == rows and ref <= rows
        got = sub.wait_for(multi + ref)
    finally:
        sub.close()
    # Every message the broker acknowledged reached the subscriber.
    assert len(got) == multi + ref


def test_prefill_sends_leading_rows_at_once_then_paces(secured_broker,
                                                      tmp_path):
    creds = write_credentials(secured_broker, tmp_path / "creds")
    began = time.monotonic()
    result = run_replay("--mqtt-url", mqtt_url(secured_broker),
                        "--credentials", creds, "--speed", "3600",
                        "--prefill", "4", "--limit", "6")
    elapsed = time.monotonic() - began
    assert result.returncode == 0, result.stderr
    # Rows 1-4 at once, then rows 5 and 6 one recorded hour (a second)
    # apart: about one second in all, where pacing all would take five.
    assert 1.0 <= elapsed < 3.5
