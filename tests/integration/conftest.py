"""Integration tests: one real PostgreSQL server per test session (see tests/pgserver.py).

Every test under tests/integration is marked ``integration`` automatically. Tests are
skipped only when no PostgreSQL server binaries exist at all (set ``PGSERVER_REQUIRED=1``,
e.g. in CI, to make that a failure too); if the binaries exist but the server does not come
up, every test errors with the server log tail.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
TESTS_DIR = HERE.parent
if str(TESTS_DIR) not in sys.path:  # make tests/pgserver.py importable as ``pgserver``
    sys.path.insert(0, str(TESTS_DIR))

from pgserver import PostgresNotFound, PostgresServer, PostgresStartError, find_bindir  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "integration: needs a real PostgreSQL the tests start")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # This hook sees the whole session's items; mark only those under tests/integration.
    for item in items:
        if Path(item.path).resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole session, removed (data and all) at the end."""
    try:
        bindir = find_bindir()
    except PostgresNotFound as exc:
        if os.environ.get("PGSERVER_REQUIRED", "") not in ("", "0"):
            pytest.fail(f"PGSERVER_REQUIRED is set but: {exc}", pytrace=False)
        pytest.skip(f"PostgreSQL not installed: {exc}")
    server: PostgresServer | None = None
    error = None
    try:
        server = PostgresServer(bindir)  # as root: raises if there is no postgres user
        server.start()
    except Exception as exc:  # PostgresStartError's message already has the log tail
        error = f"{type(exc).__name__}: {exc}"
        if server is not None:
            if not isinstance(exc, PostgresStartError):
                error += f"\n--- server log tail ---\n{server.log_tail()}"
            server.cleanup()
    if error is not None:  # outside the except block: no chained traceback noise
        pytest.fail(f"PostgreSQL binaries found in {bindir} but the test server failed to "
                    f"start:\n{error}", pytrace=False)
    assert server is not None
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def pg_template(pg_server: PostgresServer) -> str | None:
    """A database migrated once per session (ours and Optuna's tables), cloned per test."""
    from automl.queue.schema import upgrade

    name = "automl_template"
    pg_server.create_database(name, template="template0")
    upgrade(pg_server.url(name))
    return name


@pytest.fixture
def pg_url(pg_server: PostgresServer, pg_template: str) -> Iterator[str]:
    """A fresh database of this test's own, already migrated, dropped afterwards."""
    yield from _database(pg_server, pg_template)


@pytest.fixture(params=["sqlite", "postgresql"])
def service_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated service database: a SQLite file, then a real PostgreSQL one."""
    if request.param == "sqlite":
        from automl.queue.schema import upgrade

        url = f"sqlite:///{tmp_path / 'service.db'}"
        upgrade(url)
        return url
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def pg_empty_url(pg_server: PostgresServer) -> Iterator[str]:
    """A fresh database with no tables at all (for migration tests)."""
    yield from _database(pg_server, "template0")


def _database(pg_server: PostgresServer, template: str) -> Iterator[str]:
    name = f"test_{uuid.uuid4().hex[:16]}"
    pg_server.create_database(name, template=template)
    try:
        yield pg_server.url(name)
    finally:
        pg_server.drop_database(name)


BUSY_PROCESSES = 2


@pytest.fixture(scope="module")
def busy_machine(request: pytest.FixtureRequest) -> Iterator[None]:
    """Two CPU-bound processes running beside the module's tests: the fault battery must
    hold on a loaded machine (a 2-core CI machine is then oversubscribed), not only on a
    quiet one. Used by test_faults.py, test_outages.py and test_ray_cluster.py.

    They run at the module's ``BUSY_NICENESS`` (0 unless it sets one): Ray starts its
    workers at niceness 15, and burners at 0 would leave them a few per cent of a core
    (a 20-trial run then takes over ten minutes), so Ray's tests burn at Ray's niceness
    and compete with the trials on equal terms."""
    niceness = getattr(request.module, "BUSY_NICENESS", 0)
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"],
                                preexec_fn=lambda: os.nice(niceness))
               for _ in range(BUSY_PROCESSES)]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
