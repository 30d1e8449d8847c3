"""META.json is valid for PGXN (Meta Spec 1.0.0), and test/meta-check,
which "make version-check" runs, catches what would make PGXN refuse it.

No network: test/meta-check is our own reading of the spec.
"""

import copy
import importlib.machinery
import importlib.util
import json
import pathlib
import re
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
CHECKER = ROOT / "test" / "meta-check"


def load_checker():
    loader = importlib.machinery.SourceFileLoader("meta_check", str(CHECKER))
    spec = importlib.util.spec_from_loader("meta_check", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


meta_check = load_checker()


def extversion():
    match = re.search(r"^EXTVERSION = (\S+)$",
                      (ROOT / "Makefile").read_text(), re.M)
    assert match, "no EXTVERSION in the Makefile"
    return match.group(1)


def problems(meta, version=None):
    return meta_check.Checker(str(ROOT)).check(meta, version)


@pytest.fixture
def meta():
    return json.loads((ROOT / "META.json").read_text())


def test_meta_json_is_valid_for_pgxn(meta):
    assert problems(meta, extversion()) == []
    assert meta["meta-spec"]["version"] == "1.0.0"
    provided = meta["provides"]["livewidget"]
    assert (ROOT / provided["file"]).is_file()
    assert provided["file"] == "extension/livewidget--%s.sql" % extversion()


def test_version_check_runs_it():
    result = subprocess.run(["make", "-s", "version-check"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = subprocess.run([str(CHECKER), str(ROOT / "META.json"), "9.9.9"],
                            capture_output=True, text=True)
    assert broken.returncode == 1
    assert "the Makefile says '9.9.9'" in broken.stdout


def without(meta, *path):
    meta = copy.deepcopy(meta)
    node = meta
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return meta


def changed(meta, value, *path):
    meta = copy.deepcopy(meta)
    node = meta
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return meta


@pytest.mark.parametrize("key", ["name", "abstract", "version", "maintainer",
                                 "license", "provides", "meta-spec"])
def test_each_required_key_is_required(meta, key):
    assert any("required key %r is missing" % key in p
               for p in problems(without(meta, key)))


@pytest.mark.parametrize("mutate, expected", [
    (lambda m: changed(m, "1.0", "version"), "not a semantic version"),
    (lambda m: changed(m, "v0.1.0", "version"), "not a semantic version"),
    (lambda m: changed(m, "01.0.0", "provides", "livewidget", "version"),
     "not a semantic version"),
    (lambda m: changed(m, "1.1.0", "meta-spec", "version"), "must be '1.0.0'"),
    (lambda m: changed(m, "extension/missing.sql", "provides", "livewidget",
                       "file"), "does not exist"),
    (lambda m: without(m, "provides", "livewidget", "file"),
     "required key 'file' is missing"),
    (lambda m: without(m, "provides", "livewidget", "version"),
     "required key 'version' is missing"),
    (lambda m: changed(m, {}, "provides"), "at least one extension"),
    (lambda m: changed(m, "PostgreSQL License", "license"),
     "not a license name"),
    (lambda m: changed(m, "live widget", "name"), "without spaces"),
    (lambda m: changed(m, [], "maintainer"), "empty array"),
    (lambda m: changed(m, "soon", "prereqs", "runtime", "requires",
                       "PostgreSQL"), "not a version or version range"),
    (lambda m: changed(m, {}, "prereqs", "install"), "unknown key 'install'"),
    (lambda m: changed(m, "x", "homepage"), "unknown key 'homepage'"),
    (lambda m: changed(m, "done", "release_status"), "must be one of"),
])
def test_checker_catches(meta, mutate, expected):
    found = problems(mutate(meta))
    assert any(expected in p for p in found), found


def test_checker_accepts_what_the_spec_allows(meta):
    meta = changed(meta, ["postgresql", "mit"], "license")
    meta = changed(meta, "1.0.0-beta1", "version")
    meta["provides"]["livewidget"]["version"] = "1.0.0beta2"
    meta["prereqs"]["runtime"]["requires"]["PostgreSQL"] = ">= 15.0.0, < 16"
    meta["prereqs"]["runtime"]["recommends"] = {"pg_partman": 0}
    meta["x_comment"] = "custom keys start with x_"
    meta["release_status"] = "testing"
    assert problems(meta) == []
