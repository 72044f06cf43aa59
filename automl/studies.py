"""The Optuna side: storage, study creation and the sampler/pruner every worker rebuilds.

The sampler and pruner settings are stored on the study (as a user attribute), so a
worker that loads the study builds exactly the same TPE sampler and pruner, whichever
process or machine it runs on.
"""

from __future__ import annotations

import sqlite3
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import optuna
from sqlalchemy.engine import make_url

from automl.db.engine import connection_url
from automl.errors import ConfigError
from automl.optuna_storage.private import cached_storage
from automl.optuna_storage.write_behind import WriteBehindStorage
from automl.pruning import RUNG_PRUNERS, BaselinePruner, PruningPolicy
from automl.retry import RetryingStorage

PRUNERS = ("median", "percentile", "baseline", "hyperband", "successive_halving", "none")
SETTINGS_ATTR = "automl_settings"


@dataclass(frozen=True)
class StudySettings:
    """How trials are proposed and pruned; stored on the study for every worker."""

    seed: int = 0
    pruner: str = "median"
    tpe_startup_trials: int = 10
    pruner_startup_trials: int = 10
    pruner_warmup_epochs: int = 10
    pruner_percentile: float = 40.0  # "percentile": trials outside the best 40 % are pruned
    max_epochs: int = 100
    pruning_audit: float = 0.1  # share of to-be-pruned trials let finish, to audit pruning
    warm_start: bool = True  # the first trials try the rules of thumb (automl.warm_start)
    max_consecutive_failures: int = 10  # the run stops when this many fail the same way

    def __post_init__(self) -> None:
        if not isinstance(self.warm_start, bool):
            raise ConfigError(f"warm_start must be true or false, not {self.warm_start!r}",
                              field="warm_start")
        if self.pruner not in PRUNERS:
            raise ConfigError(f"unknown pruner '{self.pruner}': use {', '.join(PRUNERS)}",
                              field="pruner")
        check_percentile(self.pruner_percentile)
        audit = self.pruning_audit
        if isinstance(audit, bool) or not isinstance(audit, (int, float)) \
                or not 0 <= audit <= 1:
            raise ConfigError(f"pruning_audit must be a share between 0 and 1, not {audit!r}",
                              field="pruning_audit")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_percentile(percentile: Any) -> None:
    """The percentile pruner keeps trials in the best ``percentile`` % (0 < p < 100)."""
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) \
            or not 0 < percentile < 100:
        raise ConfigError("pruner_percentile must be a number between 0 and 100 (trials "
                          f"outside the best that many % are pruned), not {percentile!r}",
                          field="pruner_percentile")


def make_sampler(settings: StudySettings, worker_index: int = 0) -> optuna.samplers.TPESampler:
    """Parallel-aware TPE: multivariate, grouped for the conditional widths, constant liar.

    Each worker gets its own seed (``seed + worker_index``) so that parallel workers do not
    draw the same random start-up points.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _tpe(settings, worker_index)


def _tpe(settings: StudySettings, worker_index: int) -> optuna.samplers.TPESampler:
    return optuna.samplers.TPESampler(
        n_startup_trials=settings.tpe_startup_trials,
        multivariate=True,
        group=True,
        constant_liar=True,
        seed=settings.seed + worker_index,
    )


def make_pruner(settings: StudySettings) -> optuna.pruners.BasePruner:
    """Median rule by default (with start-up and warm-up so it does not prune on noise);
    "percentile" is the same rule with a stricter bar (the best ``pruner_percentile`` % of
    completed trials at that epoch); "baseline" prunes trials that stay behind the best
    rule-of-thumb baseline's curve."""
    if settings.pruner == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=settings.pruner_startup_trials,
            n_warmup_steps=settings.pruner_warmup_epochs,
        )
    if settings.pruner == "percentile":
        return optuna.pruners.PercentilePruner(
            settings.pruner_percentile,
            n_startup_trials=settings.pruner_startup_trials,
            n_warmup_steps=settings.pruner_warmup_epochs,
        )
    if settings.pruner == "baseline":
        median = optuna.pruners.MedianPruner(n_startup_trials=settings.pruner_startup_trials,
                                             n_warmup_steps=settings.pruner_warmup_epochs)
        return BaselinePruner(settings.pruner_warmup_epochs, fallback=median,
                              startup_trials=settings.pruner_startup_trials)
    if settings.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=max(1, settings.pruner_warmup_epochs),
            max_resource=settings.max_epochs,
            reduction_factor=RUNG_PRUNERS["hyperband"][1],
        )
    if settings.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=max(1, settings.pruner_warmup_epochs),
            reduction_factor=RUNG_PRUNERS["successive_halving"][1])
    return optuna.pruners.NopPruner()


def pruning_policy(settings: StudySettings) -> PruningPolicy:
    """From which epoch the pruner is worth asking, and the audit share."""
    warmup = settings.pruner_warmup_epochs
    first = {"median": warmup, "percentile": warmup, "baseline": warmup,
             "none": settings.max_epochs + 1}.get(settings.pruner, 0)
    percentile = settings.pruner_percentile if settings.pruner == "percentile" else 50.0
    return PruningPolicy(first_epoch=first, audit_share=settings.pruning_audit,
                         seed=settings.seed, percentile=percentile, rule=settings.pruner)


def check_storage_url(url: str) -> None:
    """Refuse a malformed storage URL before anything else happens."""
    try:
        make_url(url)
    except Exception as exc:
        raise ConfigError("storage is not a database URL (e.g. sqlite:///automl.db or "
                          "postgresql://host/db)", field="storage") from exc


def make_storage(url: str) -> optuna.storages.BaseStorage:
    """An RDB storage that retries through database restarts (see :mod:`automl.retry`);
    SQLite files get WAL mode and a long lock timeout for parallel workers."""
    kwargs: dict[str, Any] = {}
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        _enable_sqlite_wal(parsed.database)
        kwargs = {"connect_args": {"timeout": 60}}
    else:
        kwargs = {"pool_size": 2, "max_overflow": 2, "pool_pre_ping": True}
    rdb = optuna.storages.RDBStorage(connection_url(url), engine_kwargs=kwargs)
    # Optuna wraps an RDBStorage given by URL in its cache of finished trials; without it
    # every should_prune re-reads the whole study (measured: 9x the overhead per trial).
    # Reports and user attributes of a running trial are written in batches.
    cached = cached_storage(rdb)
    return RetryingStorage(WriteBehindStorage(cached))  # type: ignore[abstract]


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
    :mod:`automl.warm_start`).
    """
    storage = storage or make_storage(url)
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction="minimize",
                                    sampler=make_sampler(settings), pruner=make_pruner(settings))
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        if not load_if_exists:
            raise
        study = optuna.load_study(study_name=name, storage=storage,
                                  sampler=make_sampler(settings), pruner=make_pruner(settings))
        created = False
    study.set_user_attr(SETTINGS_ATTR, settings.to_dict())
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    if created:
        for params in first_trials:
            study.enqueue_trial(params, user_attrs={"warm_start": True})
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
    settings = StudySettings(**storage.get_study_user_attrs(study_id)[SETTINGS_ATTR])
    return optuna.load_study(
        study_name=name,
        storage=storage,
        sampler=make_sampler(settings, worker_index),
        pruner=make_pruner(settings),
    )
