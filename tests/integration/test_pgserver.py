"""The test PostgreSQL server itself: version, isolation, restarts and durability settings."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from pgserver import PostgresServer


def _make_engine(url: str) -> sa.Engine:
    return sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 5})


def test_server_is_postgres_15(pg_server: PostgresServer) -> None:
    rows = pg_server.psql("SELECT version(), current_setting('server_version_num')::int")
    assert rows is not None
    version, num = rows[0]
    assert version.startswith("PostgreSQL 15."), version
    assert 150000 <= num < 160000


def test_listens_on_loopback_only(pg_server: PostgresServer) -> None:
    assert pg_server.psql("SHOW listen_addresses") == [("127.0.0.1",)]
    assert pg_server.psql("SHOW port") == [(str(pg_server.port),)]
    assert pg_server.url("x") == f"postgresql+psycopg2://postgres@127.0.0.1:{pg_server.port}/x"


@pytest.mark.parametrize("setting", ["fsync", "synchronous_commit", "full_page_writes"])
def test_durability_settings_on(pg_server: PostgresServer, setting: str) -> None:
    assert pg_server.psql(f"SHOW {setting}") == [("on",)]


def test_session_settings(pg_server: PostgresServer) -> None:
    assert pg_server.psql("SHOW max_connections") == [("100",)]
    assert pg_server.psql("SHOW idle_in_transaction_session_timeout") == [("10s",)]
    assert pg_server.psql("SHOW server_encoding") == [("UTF8",)]


def test_each_database_is_fresh_and_isolated(pg_server: PostgresServer,
                                             pg_empty_url: str) -> None:
    engine = _make_engine(pg_empty_url)
    try:
        with engine.begin() as conn:
            assert conn.execute(sa.text(
                "SELECT count(*) FROM information_schema.tables "
                "WHERE table_schema = 'public'")).scalar_one() == 0
            conn.execute(sa.text("CREATE TABLE marker (id int PRIMARY KEY)"))
            conn.execute(sa.text("INSERT INTO marker VALUES (1)"))
    finally:
        engine.dispose()

    other = f"test_other_{uuid.uuid4().hex[:12]}"
    pg_server.create_database(other, template="template0")
    try:
        rows = pg_server.psql("SELECT to_regclass('public.marker') IS NULL", dbname=other)
        assert rows == [(True,)]
    finally:
        pg_server.drop_database(other)
    assert pg_server.psql("SELECT 1 FROM pg_database WHERE datname = %s", (other,)) == []


def test_pg_url_databases_are_distinct(pg_url: str) -> None:
    # Runs after the test above with a new (migrated) database: nothing left over from it.
    engine = _make_engine(pg_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT to_regclass('public.marker')")).scalar() is None
    finally:
        engine.dispose()


def test_drop_database_terminates_open_connections(pg_server: PostgresServer) -> None:
    name = f"test_drop_{uuid.uuid4().hex[:12]}"
    pg_server.create_database(name, template="template0")
    engine = _make_engine(pg_server.url(name))
    try:
        conn = engine.connect()
        conn.execute(sa.text("SELECT 1"))
        pg_server.drop_database(name)  # must not block on the open connection
        assert pg_server.psql("SELECT 1 FROM pg_database WHERE datname = %s", (name,)) == []
        with pytest.raises(sa.exc.OperationalError):  # it was terminated server-side
            conn.execute(sa.text("SELECT 1"))
        conn.invalidate()
        conn.close()
    finally:
        engine.dispose()


def test_restart_keeps_port_and_data(pg_server: PostgresServer, pg_url: str) -> None:
    port = pg_server.port
    engine = _make_engine(pg_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE kv (k text PRIMARY KEY, v text)"))
            conn.execute(sa.text("INSERT INTO kv VALUES ('a', 'before restart')"))
        with engine.connect() as conn:  # leave a pooled connection that the restart kills
            backend_before = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()

        pg_server.restart(mode="fast")
        assert pg_server.port == port

        # The pooled connection is dead; pool_pre_ping must notice and reconnect.
        with engine.connect() as conn:
            backend_after = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
            value = conn.execute(sa.text("SELECT v FROM kv WHERE k = 'a'")).scalar_one()
        assert value == "before restart"
        assert backend_after != backend_before
        assert pg_server.psql("SHOW port") == [(str(port),)]
    finally:
        engine.dispose()


def test_stop_and_start_again(pg_server: PostgresServer, pg_url: str) -> None:
    port = pg_server.port
    engine = _make_engine(pg_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE t (x int)"))
            conn.execute(sa.text("INSERT INTO t VALUES (42)"))
        pg_server.stop(mode="fast")
        with pytest.raises(sa.exc.OperationalError), engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        pg_server.start_again()
        assert pg_server.port == port
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT x FROM t")).scalar_one() == 42
    finally:
        engine.dispose()
