"""Studies in a storage: the storage for a URL (retrying, write-behind, SQLite in WAL
mode), creating a study with its settings stored on it, and loading it back with the
sampler and pruner those settings give (:mod:`automl.study.settings`).
"""

from __future__ import annotations

import sqlite3
import warnings
from collections.abc import Sequence
from typing import Any

import optuna
from sqlalchemy.engine import make_url

from automl.errors import ConfigError
from automl.queue.engine import connection_url
from automl.study.settings import StudySettings, make_pruner, make_sampler
from automl.study.storage.private import cached_storage
from automl.study.storage.retry import RetryingStorage, with_retry
from automl.study.storage.write_behind import WriteBehindStorage

SETTINGS_ATTR = "automl_settings"
OBJECTIVE_NAME = "validation loss"  # the objective, as the dashboard names it

WARM_START_ATTR = "warm_start"  # the user attribute of a trial enqueued as a warm start


def make_storage(url: str) -> optuna.storages.BaseStorage:
    """An RDB storage that retries through database restarts (see
    :mod:`automl.study.storage.retry`); SQLite files get WAL mode and a long lock timeout
    for parallel workers."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        _enable_sqlite_wal(parsed.database)
        kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}}
    else:
        kwargs = {"pool_size": 2, "max_overflow": 2, "pool_pre_ping": True}
    # Opening checks Optuna's tables: a process started while the database restarts waits,
    # as every later call does.
    rdb = with_retry(lambda: optuna.storages.RDBStorage(connection_url(url),
                                                        engine_kwargs=kwargs))
    # Optuna's cache of finished trials (see cached_storage for why), and a running trial's
    # reports and user attributes written in batches.
    return RetryingStorage(WriteBehindStorage(cached_storage(rdb)))  # type: ignore[abstract]


def make_proxy_storage(address: str) -> optuna.storages.BaseStorage:
    """Optuna's storage through an ``automl storage-proxy`` at ``HOST:PORT``.

    Many workers on a node then share the proxy's few database connections instead of
    opening a pool each; the service's own queue still goes to the database directly.
    """
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"storage proxy address must be HOST:PORT, not {address!r}",
                          field="optuna_proxy")
    from optuna.storages import GrpcStorageProxy

    return RetryingStorage(GrpcStorageProxy(host=host, port=int(port)))  # type: ignore[abstract]


def _enable_sqlite_wal(database: str | None) -> None:
    if not database or database == ":memory:":
        return
    with sqlite3.connect(database, timeout=60) as connection:
        connection.execute("PRAGMA journal_mode=WAL")


def create_study(url: str, name: str, settings: StudySettings, attrs: dict[str, Any], *,
                 storage: optuna.storages.BaseStorage | None = None,
                 load_if_exists: bool = False,
                 first_trials: Sequence[dict[str, Any]] = ()) -> optuna.Study:
    """Create a minimising study and store the settings and run metadata on it.

    With ``load_if_exists`` several workers may race to create it; one wins, and only
    that one enqueues ``first_trials`` (parameter sets to try first, see
    :mod:`automl.study.warm_start`).
    """
    storage = storage or make_storage(url)
    sampler, pruner = make_sampler(settings), make_pruner(settings)
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction="minimize",
                                    sampler=sampler, pruner=pruner)
    except optuna.exceptions.DuplicatedStudyError:
        if not load_if_exists:
            raise
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
        first_trials = ()  # the worker that created the study enqueues them
    with warnings.catch_warnings():  # experimental in Optuna 5; the dashboard reads it
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([OBJECTIVE_NAME])
    study.set_user_attr(SETTINGS_ATTR, settings.to_dict())
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    for params in first_trials:
        study.enqueue_trial(params, user_attrs={WARM_START_ATTR: True})
    return study


def load_study_if_exists(url: str, name: str) -> optuna.Study | None:
    """The study named ``name`` (its default sampler: for reading and settling trials),
    or None."""
    storage = make_storage(url)
    try:
        storage.get_study_id_from_name(name)
    except KeyError:
        return None
    return optuna.load_study(study_name=name, storage=storage)


def load_study(url: str, name: str, worker_index: int = 0, *,
               storage: optuna.storages.BaseStorage | None = None) -> optuna.Study:
    """Load a study with the sampler and pruner rebuilt from its stored settings."""
    storage = storage or make_storage(url)
    study_id = storage.get_study_id_from_name(name)
    settings = StudySettings.from_stored(storage.get_study_user_attrs(study_id)[SETTINGS_ATTR])
    return optuna.load_study(study_name=name, storage=storage,
                             sampler=make_sampler(settings, worker_index),
                             pruner=make_pruner(settings))
