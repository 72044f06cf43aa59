"""The median (percentile) pruner without a pass over every completed trial at each epoch.

Optuna's ``PercentilePruner`` (``MedianPruner`` is its 50th percentile) reads the study's
completed trials, filtered by state, at every ``should_prune``, and gathers their values
at the trial's step. That is two passes over the whole history per epoch per trial: at
10,000 trials, about 3 ms an epoch (BENCHMARKS.md, "The median pruner's cost").

:class:`CachedPercentilePruner` and :class:`CachedMedianPruner` decide exactly as Optuna's
pruners do (same checks, same numbers, tested against them) with two changes of order and
memory:

* the trial's own checks (its last step, the warm-up, the interval) come first, so a
  call that cannot prune reads nothing;
* :class:`CompletedCurves` keeps the completed trials' values by step in memory, in
  arrays that grow (a step's values are not rebuilt from a list after every tell). A call
  reads the study's trial list (unfiltered: a copy of a list) and looks only at the trials
  it has not seen finish, since trial numbers index that list; each completed trial is
  taken in once.

A cohort's members check at the same epoch one after the other; within
:func:`reading_once` the first check reads the study and the others use that read. A
storage lists every running trial on each read (from the database), so without it a
cohort of K costs K reads of K running trials an epoch.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import optuna
from optuna.pruners._percentile import (
    _get_best_intermediate_result_over_steps,
    _is_first_in_interval_step,
)
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from automl.study.storage.trial_cursor import TrialCursor


class CompletedCurves:
    """The intermediate values of one study's completed trials, by step, kept up to date
    from the trials that finished since the last look."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()  # this thread's one-read block: read yet?
        self._reset(None)

    @contextmanager
    def one_read(self) -> Iterator[None]:
        """Within the block, the study is read at the first :meth:`at` only (this thread)."""
        outer = getattr(self._local, "read", None)
        self._local.read = False
        try:
            yield
        finally:
            self._local.read = outer

    def _reset(self, study: optuna.Study | None) -> None:
        # The storage object itself, not its id: a new storage may reuse a freed one's id.
        self._storage = None if study is None else study._storage
        self._study_id = None if study is None else study._study_id
        self._cursor = TrialCursor()
        self._steps: dict[int, _Growing] = {}
        self._arrays: dict[int, np.ndarray] = {}
        self.n_complete = 0

    def at(self, study: optuna.Study, step: int) -> tuple[int, np.ndarray]:
        """How many trials of ``study`` are complete, and their values at ``step`` (the
        trials that reported one)."""
        with self._lock:
            if not getattr(self._local, "read", None) or study._storage is not self._storage \
                    or study._study_id != self._study_id:
                self._update(study)
                if getattr(self._local, "read", None) is False:
                    self._local.read = True
            values = self._arrays.get(step)
            if values is None:
                grown = self._steps.get(step)
                values = grown.view() if grown is not None else np.empty(0)
                self._arrays[step] = values
            return self.n_complete, values

    def _update(self, study: optuna.Study) -> None:
        trials = study.get_trials(deepcopy=False)
        if study._storage is not self._storage or study._study_id != self._study_id:
            self._reset(study)
        changed = self._cursor.changed(trials)
        if changed is None:  # a shorter list, or one out of order: look at them all
            self._reset(study)
            trials = sorted(trials, key=lambda t: t.number)
            changed = self._cursor.changed(trials)
        for trial in trials if changed is None else changed:
            if trial.state == TrialState.COMPLETE:
                self._take_in(trial)

    def _take_in(self, trial: FrozenTrial) -> None:
        self.n_complete += 1
        for step, value in trial.intermediate_values.items():
            grown = self._steps.get(step)
            if grown is None:
                grown = self._steps[step] = _Growing()
            grown.append(value)
            self._arrays.pop(step, None)


class _Growing:
    """An array of floats that grows at its end; :meth:`view` hands out a new array object
    over the values so far, which later appends leave as they are."""

    def __init__(self) -> None:
        self._buffer = np.empty(64)
        self._n = 0

    def append(self, value: float) -> None:
        if self._n == len(self._buffer):
            self._buffer = np.concatenate([self._buffer, np.empty(len(self._buffer))])
        self._buffer[self._n] = value
        self._n += 1

    def view(self) -> np.ndarray:
        values = self._buffer[: self._n]
        values.flags.writeable = False  # the pruner's bar is cached against it
        return values


def percentile_of(values: np.ndarray, direction: StudyDirection, percentile: float,
                  n_min_trials: int) -> float:
    """Optuna's percentile of the completed trials' values at one step (NaN: no verdict)."""
    if len(values) < n_min_trials or np.isnan(values).all():
        return math.nan
    if direction == StudyDirection.MAXIMIZE:
        percentile = 100 - percentile
    return float(np.nanpercentile(values, percentile))


class CachedPercentilePruner(optuna.pruners.PercentilePruner):
    """Optuna's ``PercentilePruner``, its completed trials' curves kept in memory."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._curves = CompletedCurves()
        self._bars: dict[tuple[int, StudyDirection], tuple[np.ndarray, float]] = {}

    def __getstate__(self) -> dict[str, Any]:  # a lock does not pickle; the cache is redone
        return {k: v for k, v in self.__dict__.items() if k not in ("_curves", "_bars")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._curves = CompletedCurves()
        self._bars = {}

    def one_read(self) -> Any:
        """A block within which the checks share one read of the study
        (:meth:`CompletedCurves.one_read`)."""
        return self._curves.one_read()

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or step < self._n_warmup_steps:
            return False
        if not _is_first_in_interval_step(step, trial.intermediate_values.keys(),
                                          self._n_warmup_steps, self._interval_steps):
            return False
        n_complete, values = self._curves.at(study, step)
        if n_complete == 0 or n_complete < self._n_startup_trials:
            return False
        direction = study.direction
        best = _get_best_intermediate_result_over_steps(trial, direction)
        if math.isnan(best):
            return True
        bar = self._bar(values, step, direction)
        if math.isnan(bar):
            return False
        return best < bar if direction == StudyDirection.MAXIMIZE else best > bar

    def _bar(self, values: np.ndarray, step: int, direction: StudyDirection) -> float:
        """The percentile of ``values``, kept until the step's values change (they are a
        new array then): a cohort's members check one step against the same values."""
        cached = self._bars.get((step, direction))
        if cached is not None and cached[0] is values:
            return cached[1]
        bar = percentile_of(values, direction, self._percentile, self._n_min_trials)
        self._bars[(step, direction)] = (values, bar)
        return bar


class CachedMedianPruner(CachedPercentilePruner, optuna.pruners.MedianPruner):
    """Optuna's ``MedianPruner``, its completed trials' curves kept in memory."""


@contextmanager
def reading_once(pruner: optuna.pruners.BasePruner) -> Iterator[None]:
    """Within the block, a cached pruner's checks share one read of the study (a cohort's
    members at one epoch); any other pruner reads as usual."""
    if isinstance(pruner, CachedPercentilePruner):
        with pruner.one_read():
            yield
    else:
        yield
