"""A readings table partitioned by day and managed by pg_partman feeds
widgets once attached: rows inserted through it into the partitions that
exist, into the ones pg_partman creates later, into its default
partition, and by COPY, are all buffered (the contract's attach()).

Skipped only when pg_partman is not installed (Debian package
postgresql-15-partman, which test/install-deps installs).
"""

import datetime

import pytest

DASHBOARD = "5d7c7e4a-1b2c-4d3e-8f90-a1b2c3d4e5f6"
UTC = datetime.timezone.utc


@pytest.fixture
def partman_db(pg, new_database):
    """A database with livewidget, pg_partman in schema "partman", and
    public.readings partitioned by day (two days premade each way, and a
    default partition), attached."""
    available = pg.sql("SELECT count(*) FROM pg_available_extensions "
                       "WHERE name = 'pg_partman'")[0][0]
    if not available:
        pytest.skip("pg_partman is not installed (postgresql-15-partman)")
    db = new_database()
    # partman names and bounds its daily partitions in the session's zone
    pg.sql('ALTER DATABASE "%s" SET timezone = \'UTC\'' % db)
    with pg.connect(db) as conn:
        conn.execute("CREATE SCHEMA partman")
        conn.execute("CREATE EXTENSION pg_partman SCHEMA partman")
        conn.execute("""
            CREATE TABLE public.readings (
                device_id text NOT NULL,
                sensor_type text NOT NULL,
                value double precision NOT NULL,
                unit text,
                ts timestamptz NOT NULL
            ) PARTITION BY RANGE (ts)""")
        conn.execute("SELECT partman.create_parent("
                     "p_parent_table => 'public.readings',"
                     " p_control => 'ts', p_type => 'native',"
                     " p_interval => 'daily', p_premake => 2)")
        conn.execute("SELECT livewidget.attach('public.readings')")
        conn.execute("SELECT livewidget.track('dev-pm', 'temp', 'w-pm', %s,"
                     " 1000)", (DASHBOARD,))
    return db


def partitions(pg, db):
    return {r[0] for r in pg.sql(
        "SELECT inhrelid::regclass::text FROM pg_inherits"
        " WHERE inhparent = 'public.readings'::regclass", dbname=db)}


def at_day(days, hour=12):
    """A time of day `days` days from today (UTC)."""
    today = datetime.datetime.now(UTC).replace(hour=0, minute=0, second=0,
                                               microsecond=0)
    return today + datetime.timedelta(days=days, hours=hour)


def insert(pg, db, table, value, ts):
    """Insert one reading of dev-pm; returns the partition it landed in."""
    return pg.sql(
        "INSERT INTO %s (device_id, sensor_type, value, unit, ts)"
        " VALUES ('dev-pm', 'temp', %%s, 'K', %%s)"
        " RETURNING tableoid::regclass::text" % table,
        (value, ts), dbname=db)[0][0]


def buffered(pg, db):
    return [r[0] for r in pg.sql(
        "SELECT value FROM livewidget.samples('w-pm')", dbname=db)]


def test_partman_partitions_feed_widgets(pg, partman_db):
    db = partman_db
    premade = partitions(pg, db)
    assert "readings_default" in premade
    assert len(premade) == 6, premade  # today, two each way, default

    # a partition that exists from the start
    today = insert(pg, db, "public.readings", 1, at_day(0))
    assert today in premade and today != "readings_default"

    # partitions pg_partman creates later: more days premade
    pg.sql("UPDATE partman.part_config SET premake = 6"
           " WHERE parent_table = 'public.readings'", dbname=db)
    pg.sql("SELECT partman.run_maintenance('public.readings')", dbname=db)
    later = partitions(pg, db) - premade
    assert len(later) == 4, later
    fifth = insert(pg, db, "public.readings", 2, at_day(5))
    assert fifth in later

    # the default partition: beyond the premade days, and before them
    assert insert(pg, db, "public.readings", 3, at_day(40)) == \
        "readings_default"
    assert insert(pg, db, "public.readings", 0, at_day(-40)) == \
        "readings_default"

    # COPY through the parent, over three partitions, in one statement
    with pg.connect(db) as conn:
        with conn.cursor().copy(
                "COPY public.readings (device_id, sensor_type, value, unit,"
                " ts) FROM STDIN") as copy:
            for value, days in ((1.5, 0), (4, 6), (2.5, 1)):
                copy.write_row(("dev-pm", "temp", value, "K",
                                at_day(days, hour=13)))
    places = pg.sql("SELECT value, tableoid::regclass::text"
                    "  FROM public.readings WHERE value IN (1.5, 4, 2.5)",
                    dbname=db)
    assert {p for _, p in places} <= (premade | later) - {"readings_default"}
    assert len({p for _, p in places}) == 3

    # every reading is buffered once, oldest first
    assert buffered(pg, db) == [0, 1, 1.5, 2.5, 2, 4, 3]
    state = pg.sql("SELECT last_seq, sample_count FROM livewidget.widget_state"
                   " WHERE widget_id = 'w-pm'", dbname=db)
    assert state == [(7, 7)]


def test_partition_itself_feeds_widgets_only_when_attached(pg, partman_db):
    db = partman_db
    child = insert(pg, db, "public.readings", 1, at_day(0))

    # straight into the partition, which is not attached: stored only
    insert(pg, db, child, 2, at_day(0, hour=14))
    assert buffered(pg, db) == [1]

    # attached too: straight inserts feed widgets, inserts through the
    # parent still count once, and a refill reads every row once
    pg.sql("SELECT livewidget.attach(%s::regclass)", (child,), dbname=db)
    insert(pg, db, child, 3, at_day(0, hour=15))
    insert(pg, db, "public.readings", 4, at_day(0, hour=16))
    assert buffered(pg, db) == [1, 3, 4]
    assert pg.sql("SELECT livewidget.refill('w-pm')", dbname=db) == [(4,)]
    assert buffered(pg, db) == [1, 2, 3, 4]
