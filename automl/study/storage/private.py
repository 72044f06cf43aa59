"""The few uses of Optuna's private API outside the write-behind storage, each saying
which Optuna behaviour it relies on. Optuna 4.x and 5.x both behave so (CI runs both)."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial


def cached_storage(rdb: RDBStorage) -> BaseStorage:
    """``rdb`` in Optuna's cache of finished trials (``_CachedStorage``), as Optuna wraps an
    RDB storage it is given by URL; without it every ``should_prune`` re-reads the whole
    study (measured: 9x the overhead per trial)."""
    from optuna.storages._cached_storage import _CachedStorage

    return _CachedStorage(rdb)


def stored_trial(study: optuna.Study, trial: FrozenTrial | optuna.Trial) -> FrozenTrial:
    """The trial as the study's storage has it now (``study._storage.get_trial`` by the
    trial's storage id, ``_trial_id``): the public ``study.trials`` may be served from a
    short-lived cache."""
    return study._storage.get_trial(trial._trial_id)


def set_stored_user_attr(study: optuna.Study, trial: FrozenTrial, key: str,
                         value: Any) -> None:
    """A user attribute on a trial this process does not run (``study._storage``): the
    public ``Trial.set_user_attr`` needs the running ``Trial`` object, which only its
    worker holds (the sweeper records why it failed a lost worker's trial)."""
    study._storage.set_trial_user_attr(trial._trial_id, key, value)
