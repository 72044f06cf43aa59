"""A worker that starts while its database is restarting waits for it instead of crashing
(found by the F3 battery on a busy machine: one worker claimed a cohort of two trials and
the restart caught the second worker still starting)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from sqlalchemy.exc import OperationalError

import workers.service_worker as service_worker
from automl.queue.schema import SchemaError, ensure_schema
from workers.service_worker import ServiceWorker


def test_start_rides_out_a_database_that_is_shutting_down(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    ensure_schema(url)
    calls: list[int] = []
    real_check = service_worker.check_schema

    def check_while_restarting(engine: Any) -> None:
        calls.append(1)
        if len(calls) < 3:
            raise OperationalError("SELECT version_num", {},
                                   Exception("FATAL: the database system is shutting down"))
        real_check(engine)

    monkeypatch.setattr(service_worker, "check_schema", check_while_restarting)
    worker = ServiceWorker(url, lease_s=30)
    worker.close()
    assert len(calls) == 3


def test_start_refuses_a_database_without_the_tables_at_once(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="automl db upgrade"):
        ServiceWorker(f"sqlite:///{tmp_path / 'empty.db'}", lease_s=30)


def test_opening_optunas_storage_rides_out_a_restart_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second start-up read the same CI run hit: Optuna's own schema check."""
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    ensure_schema(url)
    opened: list[int] = []
    real_storage = optuna.storages.RDBStorage

    def open_while_restarting(*args: Any, **kwargs: Any) -> optuna.storages.RDBStorage:
        opened.append(1)
        if len(opened) < 3:
            raise OperationalError("SELECT version_num FROM alembic_version", {},
                                   Exception("server closed the connection unexpectedly"))
        return real_storage(*args, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", open_while_restarting)
    worker = ServiceWorker(url, lease_s=30)
    worker.close()
    assert len(opened) == 3
