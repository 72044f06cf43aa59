"""Migrations and the schema check, against SQLite and a real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from alembic import command

from automl.client import Client
from automl.queue.engine import make_engine
from automl.queue.models import Base
from automl.queue.schema import (
    SchemaError,
    alembic_config,
    current_revision,
    head_revision,
    migrate,
    upgrade,
)

OPTUNA_TABLES = {"studies", "trials", "trial_values", "trial_params", "version_info"}


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    return str(request.getfixturevalue("pg_empty_url"))


def tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_empty_to_head_to_base_to_head_without_drift(empty_url: str) -> None:
    engine = make_engine(empty_url)
    ours = set(Base.metadata.tables)
    migrate(engine)
    assert current_revision(engine) == head_revision() and ours <= tables(empty_url)
    with engine.begin() as connection:
        command.check(alembic_config(connection))  # models and migrations agree
    migrate(engine, "base", down=True)
    assert current_revision(engine) is None and not ours & tables(empty_url)
    migrate(engine)
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_db_upgrade_is_idempotent_and_brings_optuna_along(empty_url: str) -> None:
    assert upgrade(empty_url) == upgrade(empty_url) == head_revision()
    assert tables(empty_url) >= OPTUNA_TABLES
    storage = optuna.storages.RDBStorage(empty_url)
    assert storage.get_current_version() == storage.get_head_version()


def test_our_downgrade_leaves_optuna_untouched(empty_url: str) -> None:
    upgrade(empty_url)
    study = optuna.create_study(storage=empty_url, study_name="kept")
    study.tell(study.ask(), 1.0)
    engine = make_engine(empty_url)
    migrate(engine, "base", down=True)
    engine.dispose()
    assert len(optuna.load_study(study_name="kept", storage=empty_url).trials) == 1


def test_clients_refuse_an_unmigrated_database(empty_url: str) -> None:
    with pytest.raises(SchemaError, match="automl db upgrade"):
        Client(empty_url)


def test_plain_postgresql_urls_work_as_the_docs_write_them(
        pg_empty_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 17: `postgresql://...` (docs/service.md) selects psycopg 3 under SQLAlchemy
    2.1, which is not installed; the project maps it to the driver it installs."""
    import pandas as pd

    from automl.cli.dashboard import dashboard_storage
    from automl.cli.main import main

    plain = pg_empty_url.replace("postgresql+psycopg2://", "postgresql://")
    assert plain.startswith("postgresql://")
    assert main(["db", "upgrade", "--storage", plain]) == 0
    frame = pd.DataFrame({"a": [float(i % 7) for i in range(40)], "y": [0, 1] * 20})
    run = Client(plain).submit(frame, "y", n_trials=1, n_seeds=1)
    assert main(["status", run.id, "--storage", plain]) == 0
    assert '"status": "queued"' in capsys.readouterr().out
    assert dashboard_storage(plain).get_all_studies() == []
