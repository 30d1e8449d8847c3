"""Fixtures for the extension's own pytest suites (dump and restore,
pg_partman): databases of their own on the session's PostgreSQL.

    new_database   new_database(extension=True) -> the name of a fresh
                   database on the "pg" cluster, with the livewidget
                   extension unless told otherwise; dropped after the test
    pg_tool        pg_tool(name, *args, **run_kwargs) -> runs a client
                   program of the server's own version (pg_dump,
                   pg_restore, psql) against the "pg" cluster

The cluster is the one of test/conftest.py (lw_servers.Postgres), which
listens on a unix socket and 127.0.0.1 only.
"""

import os
import secrets
import subprocess

import pytest

PGBIN = subprocess.run(["pg_config", "--bindir"], check=True,
                       capture_output=True, text=True).stdout.strip()


@pytest.fixture
def new_database(pg):
    """new_database(extension=True) -> the name of a fresh database."""
    if not pg.extension:
        pytest.fail("the livewidget extension is not installed "
                    "(run \"make install\" first)")
    made = []

    def make(extension=True):
        name = "lw_%s" % secrets.token_hex(4)
        with pg.connect("postgres") as conn:
            conn.execute('CREATE DATABASE "%s"' % name)
        made.append(name)
        if extension:
            pg.sql("CREATE EXTENSION livewidget", dbname=name)
        return name

    yield make
    with pg.connect("postgres") as conn:
        for name in made:
            conn.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)


@pytest.fixture
def pg_tool(pg):
    """pg_tool(name, *args, **run_kwargs): run a client program of the
    server's version on the "pg" cluster as user postgres; fails the test
    with its output when it exits with an error."""
    env = dict(os.environ, PGHOST=pg.host, PGPORT=str(pg.port),
               PGUSER="postgres")
    for key in ("PGDATABASE", "PGSERVICE", "PGOPTIONS"):
        env.pop(key, None)

    def run(name, *args, **kwargs):
        kwargs.setdefault("capture_output", True)
        result = subprocess.run([os.path.join(PGBIN, name)] + list(args),
                                env=env, **kwargs)
        assert result.returncode == 0, (
            "%s exited with %d:\n%s" % (name, result.returncode,
                                        _text(result.stderr)))
        return result

    return run


def _text(data):
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return data or ""
