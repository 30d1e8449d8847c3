"""web/livewidget.js under node --test: window, backoff, argument checks."""

import os
import subprocess

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def test_client_module_unit_tests():
    result = subprocess.run(["node", "--test", "livewidget.test.mjs"],
                            cwd=os.path.join(ROOT, "test", "browser"),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# fail 0" in result.stdout and "# pass 6" in result.stdout
