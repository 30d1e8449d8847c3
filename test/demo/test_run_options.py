"""demo/run's command line: --help describes the demo and starts nothing;
a bad argument is an error."""

import os
import re

import pytest

from demoproc import DEMO_RUN


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
    assert len(variables) >= 7, variables
    for name in variables:
        assert name in text, "--help does not mention " + name
    for words in ("Ctrl-C", "SIGTERM", "SIGKILL", "exits 0", "exits 1",
                  "exits 2"):
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
