"""The bridge's configuration: sources, precedence, checks, messages.

A bad configuration must stop the bridge at start (exit status 2) with a
message that names the key and where the value came from; a good one must
start it.  The tests run the real binary.
"""

import os
import re
import signal
import subprocess

import pytest

from lw_servers import BRIDGE_BIN, LOG_LINE, ROOT, free_port, wait_for

KEYS = ["database", "mqtt_url", "mqtt_topic", "mqtt_senml_topic",
        "mqtt_shared_group", "mqtt_client_id", "mqtt_username",
        "mqtt_password_file", "listen", "jwt_secret_file",
        "jwt_public_key_file", "jwt_audience", "jwt_issuer", "web_root",
        "log_level", "spool_file"]


def run(args, env=None, timeout=10):
    """Run the bridge expecting it to end by itself; (status, stdout,
    stderr)."""
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith("LIVEWIDGET_")}
    full_env.update(env or {})
    proc = subprocess.run([str(BRIDGE_BIN)] + list(args), env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def jwt_secret_file(jwt_secret):
    return jwt_secret["path"]


@pytest.fixture
def secret(jwt_secret_file):
    return "--jwt_secret_file=%s" % jwt_secret_file


def test_help_lists_every_key_with_default():
    status, out, err = run(["--help"])
    assert status == 0 and err == ""
    assert out.startswith("Usage: livewidget-bridge [OPTION]... [CONFIG_FILE]")
    for key in KEYS:
        assert "--%s=" % key in out, key
    for default in ("mqtt://127.0.0.1:1883", "devices/+/telemetry",
                    "devices/+/senml", "127.0.0.1:8080",
                    "livewidget-bridge-<hostname>", "(default: info)"):
        assert default in out, default
    assert max(len(line) for line in out.splitlines()) <= 79


def test_version_is_the_control_file_version():
    control = (ROOT / "livewidget.control").read_text()
    version = re.search(r"default_version = '([^']+)'", control).group(1)
    assert run(["--version"]) == (0, "livewidget-bridge %s\n" % version, "")


def test_unknown_option():
    status, out, err = run(["--mqtt_ur=mqtt://x"])
    assert status == 2
    assert 'unknown option "--mqtt_ur"' in err


def test_option_needs_a_value():
    status, _, err = run(["--listen"])
    assert status == 2 and 'option "--listen" needs a value' in err


def test_unknown_key_in_file_names_file_and_line(tmp_path):
    conf = tmp_path / "bridge.conf"
    conf.write_text("# comment\n\nlisten = 127.0.0.1:1\nlog_levle = debug\n")
    status, _, err = run([str(conf)])
    assert status == 2
    assert 'unknown key "log_levle" in configuration file "%s", line 4' \
        % conf in err


def test_missing_file():
    status, _, err = run(["/nonexistent/bridge.conf"])
    assert status == 2
    assert 'could not open configuration file "/nonexistent/bridge.conf"' \
        in err


@pytest.mark.parametrize("line,why", [
    ("listen 127.0.0.1:1", 'expected "key = value"'),
    ("listen = '127.0.0.1:1", "unterminated quoted value"),
    ("listen = '127.0.0.1:1' x", "text after the quoted value"),
])
def test_file_syntax_errors(tmp_path, line, why):
    conf = tmp_path / "bridge.conf"
    conf.write_text("\n" + line + "\n")
    status, _, err = run([str(conf)])
    assert status == 2
    assert 'configuration file "%s", line 2' % conf in err and why in err


@pytest.mark.parametrize("key,value,why", [
    ("mqtt_url", "http://127.0.0.1:1883", "expected mqtt://host:port"),
    ("mqtt_url", "mqtt://127.0.0.1:99999", "port must be a number"),
    ("mqtt_url", "mqtt://127.0.0.1:0", "port must be a number"),
    ("mqtt_url", "mqtts://broker:8883", "TLS is not supported"),
    ("mqtt_url", "mqtt://user:pw@broker", "credentials do not belong"),
    ("mqtt_url", "mqtt://broker/path", "no path"),
    ("mqtt_url", "mqtt://bro ker", "invalid host"),
    ("mqtt_topic", "devices/#", "wildcards"),
    ("mqtt_topic", "devices/+/+/telemetry", 'exactly one "+" level'),
    ("mqtt_topic", "devices/x/telemetry", 'exactly one "+" level'),
    ("mqtt_topic", "devices/a+/telemetry", "wildcards"),
    ("mqtt_topic", "$share/g/devices/+/telemetry", 'must not start with "$"'),
    ("mqtt_senml_topic", "", "must not be empty"),
    ("mqtt_shared_group", "a/b", 'must not contain "/"'),
    ("listen", "8080", "expected host:port"),
    ("listen", "127.0.0.1:0", "expected host:port"),
    ("listen", "[::1:8080", "expected host:port"),
    ("log_level", "verbose", "expected error, warning, info or debug"),
    ("mqtt_password_file", "/nonexistent/password",
     "cannot read the file: No such file or directory"),
    ("jwt_public_key_file", "/nonexistent/key.pem",
     "cannot read the file: No such file or directory"),
    ("web_root", "", "must not be empty"),
    ("mqtt_client_id", "", "must not be empty"),
    ("mqtt_username", "a\tb", "control character"),
    ("spool_file", "/nonexistent/dir/bridge.spool",
     "cannot create the file in its directory: No such file or directory"),
])
def test_bad_value_named_with_its_source(tmp_path, secret, key, value, why):
    """The same bad value from each source: the message names the key and
    the source it came from."""
    env_var = "LIVEWIDGET_" + key.upper()
    conf = tmp_path / "bridge.conf"
    conf.write_text("# first line\n%s = '%s'\n" % (key, value))
    cases = [
        (["--%s=%s" % (key, value), secret], {}, "option --%s" % key),
        (["--" + key, value, secret], {}, "option --%s" % key),
        ([secret], {env_var: value}, "environment variable %s" % env_var),
        ([secret, str(conf)], {},
         'configuration file "%s", line 2' % conf),
    ]
    for args, env, source in cases:
        status, _, err = run(args, env)
        assert status == 2, (args, env, err)
        assert '"%s" (%s): ' % (key, source) in err, err
        assert why in err, err


def test_secret_value_not_echoed(secret):
    status, _, err = run(["--database=password=hunter2 nosuchkey=1", secret])
    assert status == 2
    assert '"database" (option --database)' in err
    assert "hunter2" not in err


def test_the_winning_source_is_named(tmp_path, secret):
    """File < environment < option: a bad value in the file is not even
    checked when the environment overrides it, and the option's bad value
    is the one reported when all three are bad."""
    conf = tmp_path / "bridge.conf"
    conf.write_text("log_level = bad-in-file\n")
    env = {"LIVEWIDGET_LOG_LEVEL": "bad-in-env"}
    status, _, err = run([secret, str(conf)], env)
    assert status == 2 and "bad-in-env" in err and "bad-in-file" not in err
    status, _, err = run([secret, "--log_level=bad-in-option", str(conf)], env)
    assert status == 2 and "bad-in-option" in err and "bad-in-env" not in err


def test_viewer_key_exactly_one(tmp_path, jwt_secret_file):
    status, _, err = run([])
    assert status == 2
    assert 'one of "jwt_secret_file" and "jwt_public_key_file" must be set' \
        in err
    status, _, err = run(["--jwt_secret_file=%s" % jwt_secret_file],
                         {"LIVEWIDGET_JWT_PUBLIC_KEY_FILE":
                          str(jwt_secret_file)})
    assert status == 2
    assert ('"jwt_secret_file" (option --jwt_secret_file) and '
            '"jwt_public_key_file" (environment variable '
            'LIVEWIDGET_JWT_PUBLIC_KEY_FILE) cannot both be set') in err


def test_topics_must_differ(secret):
    status, _, err = run([secret, "--mqtt_senml_topic=devices/+/telemetry"])
    assert status == 2 and "must differ" in err


def test_precedence_option_env_file(tmp_path, start_bridge):
    """listen from the file, overridden by the environment, overridden by
    the option: the bridge answers where the winner says."""
    ports = [free_port() for _ in range(3)]
    conf = tmp_path / "bridge.conf"
    conf.write_text('listen = "127.0.0.1:%d"   # from the file\n' % ports[0])

    only_file = start_bridge(listen=None, config_text=conf.read_text(),
                               wait=False)
    only_file.port = ports[0]
    only_file.wait_ready()
    only_file.stop()

    env = {"LIVEWIDGET_LISTEN": "127.0.0.1:%d" % ports[1]}
    with_env = start_bridge(listen=None, env=env, wait=False,
                              config_text=conf.read_text())
    with_env.port = ports[1]
    with_env.wait_ready()
    with_env.stop()

    with_option = start_bridge(listen="127.0.0.1:%d" % ports[2], env=env,
                                 config_text=conf.read_text())
    assert with_option.get("/healthz")[0] == 200


def test_file_forms(tmp_path, start_bridge, pg, broker):
    """Quotes, comments, dashes for underscores, "--key value", an empty
    value for a key without default."""
    port = free_port()
    text = ("# livewidget-bridge\n"
            "   listen   =   '127.0.0.1:%d'  # quoted\n"
            "mqtt-url = %s\n"
            "mqtt_username =\n"
            "log_level = 'debug'\n"
            "database = \"%s\"\n" % (port, broker.url, pg.conninfo))
    bridge = start_bridge(listen=None, mqtt_url=None, database=None,
                            log_level=None, config_text=text, wait=False)
    bridge.port = port
    bridge.wait_ready()
    assert "DEBUG:" in bridge.logs()


def test_example_file_is_valid(start_bridge, pg, broker):
    example = (ROOT / "bridge" / "livewidget-bridge.conf.example").read_text()
    port = free_port()
    bridge = start_bridge(
        listen=None, log_level=None, web_root=None, mqtt_url=None,
        database=None, config_text=example, wait=False,
        env={"LIVEWIDGET_LISTEN": "127.0.0.1:%d" % port,
             "LIVEWIDGET_MQTT_URL": broker.url,
             "LIVEWIDGET_DATABASE": pg.conninfo})
    bridge.port = port
    bridge.wait_ready()


def test_unknown_environment_variable_warns(start_bridge):
    bridge = start_bridge(env={"LIVEWIDGET_LISTN": "127.0.0.1:1"})
    assert ("ignoring environment variable LIVEWIDGET_LISTN, which names "
            "no configuration key") in bridge.logs()


def sighup(bridge, text):
    """Write the bridge's configuration file anew, send SIGHUP and return
    what the bridge logged about it."""
    size = len(bridge.logs())
    (bridge.dir / "bridge.conf").write_text(text)
    bridge.signal(signal.SIGHUP)
    return wait_for(lambda: "config: " in bridge.logs()[size:] and
                    "configuration " in bridge.logs()[size:] and
                    bridge.logs()[size:],
                    what="the reload to be logged")


def test_sighup_applies_log_level(tmp_path, start_bridge, device, broker,
                                  pg):
    bridge = start_bridge(log_level=None, config_text="log_level = debug\n")
    said = sighup(bridge, "log_level = warning\nmqtt_topic = other/+/t\n")
    assert 'log_level is now "warning" (was "debug")' in said
    assert ('"mqtt_topic" changed from "devices/+/telemetry" to '
            '"other/+/t"; restart the bridge to apply it') in said
    assert "configuration reloaded, 2 keys changed" in said
    size = len(bridge.logs())
    broker.publish("devices/%s/telemetry" % device,
                   {"sensor_type": "t", "value": 1})
    wait_for(lambda: pg.count(device) == 1, what="the reading")
    assert "DEBUG:" not in bridge.logs()[size:]


def test_sighup_says_when_nothing_changed(start_bridge):
    text = "log_level = info\n"
    bridge = start_bridge(log_level=None, config_text=text)
    said = sighup(bridge, "# the same, with a comment\n" + text)
    assert "LOG:  config: configuration reloaded, nothing changed" in said
    assert "changed from" not in said


def test_sighup_keeps_secrets_out_of_the_log(start_bridge, pg):
    bridge = start_bridge(database=None, config_text="database = '%s'\n"
                          % pg.conninfo)
    said = sighup(bridge, "database = '%s password=hunter2'\n"
                  % pg.conninfo)
    assert '"database" changed; restart the bridge to apply it' in said
    assert "hunter2" not in bridge.logs()


def test_sighup_with_errors_keeps_the_configuration(start_bridge):
    """A bad value at a reload is reported in log lines naming the key and
    where it was set; the bridge goes on with what it had."""
    bridge = start_bridge(log_level=None, config_text="log_level = info\n")
    size = len(bridge.logs())
    (bridge.dir / "bridge.conf").write_text("log_level = loud\n")
    bridge.signal(signal.SIGHUP)
    wait_for(lambda: "configuration not reloaded" in bridge.logs()[size:],
             what="the refusal")
    said = bridge.logs()[size:]
    assert ('ERROR:  config: invalid value "loud" for "log_level" '
            '(configuration file "%s", line 1): expected error, warning, '
            'info or debug' % (bridge.dir / "bridge.conf")) in said, said
    for line in said.splitlines():
        assert LOG_LINE.match(line), line
    assert bridge.get("/healthz")[0] == 200
