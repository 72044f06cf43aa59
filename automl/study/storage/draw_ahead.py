"""One TPE fit for a cohort's trials: the next n asks' samples drawn together.

Optuna's TPE fits its two densities at every ask (about 40 ms a trial at 1,000 finished
trials, BENCHMARKS.md, "The search's own cost per trial"): at a GPU's cohort rate that is
most of a trial's time. Inside :meth:`DrawAheadTPESampler.drawing_ahead`, the first ask
of each search space fits TPE once and draws ``n`` members' candidates from it
(``n x n_ei_candidates``, i.i.d. from the "good" density); each member takes the best of
its own ``n_ei_candidates`` by the acquisition function, exactly as one ask would, and the
next asks of that space take the members drawn ahead instead of fitting again. The
``n x n_ei_candidates`` are scored by :mod:`automl.study.storage.tpe_log_pdf` (the same
densities as Optuna's, by matrix products; BENCHMARKS.md, "Candidates scored by matrix
products").

What changes against one fit per ask: the members drawn together do not see each other as
constant liars, nor trials that finish while they wait. With ``n`` = 1, or outside the
block, it is Optuna's TPE exactly (a unit test compares the suggestions one by one).

A block may also say which candidates it prefers (``prefer``: on a CPU, widths the
cohort can stack with): each member is then the best of its own candidates that the
block prefers, and the best of all of them only where it prefers none. Every candidate
is still a draw from TPE's "good" density; the preference chooses among them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers._tpe.parzen_estimator import _ParzenEstimator
from optuna.trial import FrozenTrial

from automl.study.storage.history_window import WindowedTPESampler
from automl.study.storage.tpe_log_pdf import parzen_log_pdf

SpaceKey = frozenset[tuple[str, BaseDistribution]]
# Which of a fit's candidates a block prefers: their values by name (Optuna's internal
# representation, only the names of the space drawn) -> one bool per candidate.
Preference = Callable[[dict[str, np.ndarray]], np.ndarray]


@dataclass
class _Ahead:
    """The block's state: members per fit, and each space's members drawn, not yet asked."""

    n: int
    prefer: Preference | None = None
    drawn: dict[SpaceKey, list[dict[str, Any]]] = field(default_factory=dict)
    window: Any = None  # the study as the last fit saw it (history_window)
    relative_space: dict[tuple[int, int], tuple[dict[str, BaseDistribution], Any]] = \
        field(default_factory=dict)


class DrawAheadTPESampler(WindowedTPESampler):
    """The run's TPE (windowed, :mod:`automl.study.storage.history_window`) that can draw
    a cohort's members from one fit (:meth:`drawing_ahead`)."""

    def __init__(self, **options: Any) -> None:
        self._local = threading.local()  # a block belongs to the thread that opened it
        super().__init__(**options)

    def __getstate__(self) -> dict[str, Any]:  # thread-local state does not pickle
        return {k: v for k, v in self.__dict__.items() if k != "_local"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    @property
    def _n_ei_candidates(self) -> int:
        """Optuna's candidates per ask; while this thread draws ahead, n times as many."""
        return getattr(self._local, "n_candidates", None) or self._candidates_per_ask

    @_n_ei_candidates.setter
    def _n_ei_candidates(self, value: int) -> None:  # TPESampler.__init__ sets it
        self._candidates_per_ask = value

    @contextmanager
    def drawing_ahead(self, n: int, prefer: Preference | None = None) -> Iterator[None]:
        """Within the block, each TPE fit draws ``n`` trials' samples, handed out to the
        block's next asks of the same space (refitted once they are used up); members drawn
        and never asked are dropped when the block ends. With ``prefer``, each member is
        the best of its candidates that ``prefer`` keeps, where it keeps any."""
        if n < 1:
            raise ValueError(f"draw ahead at least 1 trial, got {n}")
        outer = getattr(self._local, "ahead", None)
        self._local.ahead = _Ahead(n, prefer)
        try:
            yield
        finally:
            self._local.ahead = outer

    def _ahead(self) -> _Ahead | None:
        ahead: _Ahead | None = getattr(self._local, "ahead", None)
        return ahead if ahead is not None and ahead.n > 1 else None

    def _window(self, study: optuna.Study, trial: FrozenTrial) -> Any:
        """In a block, the window of the block's last fit while its members last: a pass
        over the study's trials per fit, not per member."""
        ahead = self._ahead()
        if ahead is None:
            return super()._window(study, trial)
        if ahead.window is None or not ahead.drawn or not all(ahead.drawn.values()):
            ahead.window = super()._window(study, trial)  # a fit comes: a fresh look
        return ahead.window

    def infer_relative_search_space(self, study: optuna.Study,
                                    trial: FrozenTrial) -> dict[str, BaseDistribution]:
        """In a block, the space (and its groups) inferred at the block's first ask: the
        study's trials are read once per block, not once per member."""
        ahead = self._ahead()
        if ahead is None:
            return super().infer_relative_search_space(study, trial)
        key = (id(study._storage), study._study_id)
        if key not in ahead.relative_space:
            space = super().infer_relative_search_space(study, trial)
            ahead.relative_space[key] = (space, self._search_space_group)
        space, self._search_space_group = ahead.relative_space[key]
        return dict(space)  # a copy: PartialFixedSampler deletes its fixed names from it

    def _sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                         search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        """In a block, a space with members drawn and not yet asked hands out the next
        without reading the study: the fit that drew them passed TPE's start-up check, and
        finished trials only accumulate. (Optuna reads every trial here to count them: one
        read of the database per member through a remote storage.)"""
        ahead = self._ahead()
        if ahead is not None and search_space and ahead.drawn.get(_key(search_space)):
            return ahead.drawn[_key(search_space)].pop()
        return super()._sample_relative(study, trial, search_space)

    def _sample(self, study: optuna.Study, trial: FrozenTrial,
                search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        ahead = self._ahead()
        if ahead is None:
            return super()._sample(study, trial, search_space)
        key = _key(search_space)
        if not ahead.drawn.get(key):
            ahead.drawn[key] = self._draw(study, trial, search_space, ahead)[::-1]
        return ahead.drawn[key].pop()

    def _draw(self, study: optuna.Study, trial: FrozenTrial,
              search_space: dict[str, BaseDistribution], ahead: _Ahead) -> list[dict[str, Any]]:
        """``ahead.n`` members from one fit: Optuna's own sampling with ``n`` times the
        candidates, each member the best of its own share (of those the block prefers)."""
        n = ahead.n
        per_member = self._candidates_per_ask
        self._local.n_candidates = per_member * n  # this thread's asks only
        self._local.candidates = None  # waiting for _compute_acquisition_func
        try:
            super()._sample(study, trial, search_space)
            samples, acquisition = self._local.candidates
        finally:
            self._local.n_candidates = None
            del self._local.candidates
        scores = acquisition.reshape(n, per_member)
        if ahead.prefer is not None:
            kept = np.asarray(ahead.prefer(samples), dtype=bool).reshape(n, per_member)
            usable = kept | ~kept.any(axis=1, keepdims=True)  # none kept: all of them
            scores = np.where(usable, scores, -np.inf)
        best = scores.argmax(axis=1) + np.arange(n) * per_member
        return [{name: search_space[name].to_external_repr(values[i].item())
                 for name, values in samples.items()} for i in best]

    def _compute_acquisition_func(self, samples: dict[str, np.ndarray],
                                  mpe_below: _ParzenEstimator,
                                  mpe_above: _ParzenEstimator) -> np.ndarray:
        if getattr(self._local, "candidates", False) is not None:  # an ordinary ask
            return super()._compute_acquisition_func(samples, mpe_below, mpe_above)
        # _draw waits for these: n members' candidates, scored by matrix products
        values = parzen_log_pdf(mpe_below, samples) - parzen_log_pdf(mpe_above, samples)
        self._local.candidates = (samples, values)
        return values


def _key(search_space: dict[str, BaseDistribution]) -> SpaceKey:
    """A search space as the block files its members drawn ahead."""
    return frozenset(search_space.items())


@contextmanager
def drawing_ahead(sampler: optuna.samplers.BaseSampler, n: int,
                  prefer: Preference | None = None) -> Iterator[None]:
    """:meth:`DrawAheadTPESampler.drawing_ahead` for a sampler that has it (also behind a
    ``PartialFixedSampler``); any other sampler asks as usual."""
    base = getattr(sampler, "_base_sampler", sampler)
    if isinstance(base, DrawAheadTPESampler):
        with base.drawing_ahead(n, prefer):
            yield
    else:
        yield
