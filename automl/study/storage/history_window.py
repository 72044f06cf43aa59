"""TPE over a bounded window of the study's history, so a trial's sampling cost stops
growing with the study.

Optuna's TPE refits its two densities on every finished trial at every ask: at 1,000
trials that is about 120 ms a trial, at 10,000 about 850 ms (BENCHMARKS.md, "The search's
own cost per trial"). Past ``window`` finished trials, :class:`WindowedTPESampler` shows
TPE the ``window`` most recent finished trials plus the best completed ones (a tenth of
the window), and every running trial (the constant liar needs them). TPE's "good" set is
at most 25 trials (``optuna.samplers._tpe.sampler.default_gamma``), so it stays the best
trials of the whole study; only the "bad" density forgets the oldest trials. Up to
``window`` finished trials the sampler is exactly Optuna's TPE. The window is kept up to
date from the trials that changed since the last snapshot
(:mod:`automl.study.storage.finished_trials`), not rebuilt from the whole study.

The median pruner is left on the whole history: windowed, it was no faster, because its
cost is reading the completed trials, which a window cannot skip, not the median.
"""

from __future__ import annotations

import copy
from collections.abc import Container
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from automl.study.storage.finished_trials import (
    FINISHED,
    NUMBER,
    FinishedTrials,
    RunningBest,
    study_key,
)
from automl.study.storage.space_groups import take_in_once

HISTORY_WINDOW = 1000  # finished trials TPE models; beyond it, the oldest are left out


class HistoryWindow:
    """A study as TPE should see it: a snapshot of the trials the window keeps, every
    unfinished or failed trial with them.

    Everything but the two trial readers passes through to the study itself.
    """

    def __init__(self, study: optuna.Study, trials: list[FrozenTrial]) -> None:
        self._study = study
        self._trials = trials
        self._by_states: dict[frozenset[TrialState], list[FrozenTrial]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None,
                    use_cache: bool = False) -> list[FrozenTrial]:
        trials = self._trials if states is None else self._in_states(states)
        return copy.deepcopy(trials) if deepcopy else list(trials)

    def _in_states(self, states: Container[TrialState]) -> list[FrozenTrial]:
        """The snapshot's trials in ``states``, filtered once per set of states: TPE asks
        for the finished trials at every group and parameter of every ask."""
        key = frozenset(state for state in TrialState if state in states)
        trials = self._by_states.get(key)
        if trials is None:
            trials = self._by_states[key] = [t for t in self._trials if t.state in key]
        return trials

    def get_trials(self, deepcopy: bool = True,
                   states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        return self._get_trials(deepcopy, states)


def windowed(study: optuna.Study, window: int, *, use_cache: bool = False,
             finished: FinishedTrials | None = None) -> optuna.Study | HistoryWindow:
    """``study`` itself while it holds at most ``window`` finished trials (or has several
    objectives); past that, the latest ``window`` finished trials and the best completed.

    ``use_cache``: the list the sampler reads, as TPE's own reads do. ``finished`` carries
    the study's trials over from the last call, so that only what changed since is looked
    at; a storage that does not list trials by number is read whole each time.
    """
    trials = study._get_trials(deepcopy=False, use_cache=use_cache)
    finished = finished or FinishedTrials(study, window)
    look = finished.look(trials)
    if look is None:
        return _windowed_whole(study, trials, window, finished.best)
    if look.n_finished <= window or len(study.directions) > 1:
        return study
    latest_numbers = {t._number for t in look.latest}
    older_best = [t for t in look.best if t._number not in latest_numbers]
    kept = sorted([*older_best, *look.latest], key=NUMBER)
    return HistoryWindow(study, [*kept, *look.others])


def _windowed_whole(study: optuna.Study, trials: list[FrozenTrial], window: int,
                    best: RunningBest) -> optuna.Study | HistoryWindow:
    """:func:`windowed` by a pass over every trial."""
    finished = [t for t in trials if t.state in FINISHED]
    if len(finished) <= window or len(study.directions) > 1:
        return study
    finished.sort(key=NUMBER)
    latest = finished[-window:]
    numbers = {t._number for t in latest}
    older_best = [t for t in best.update(finished) if t._number not in numbers]
    kept = sorted([*older_best, *latest], key=NUMBER)
    return HistoryWindow(study, [*kept, *(t for t in trials if t.state not in FINISHED)])


class WindowedTPESampler(optuna.samplers.TPESampler):
    """Optuna's TPE, fitted on at most ``window`` finished trials plus the best ones.

    A trial's sampling calls (the relative space, the relative sample, each independent
    parameter) share one snapshot of the window, taken at its first call.
    """

    def __init__(self, *, window: int = HISTORY_WINDOW, **tpe_options: Any) -> None:
        super().__init__(**tpe_options)
        take_in_once(self)  # the groups of the space, each finished trial added once
        self.window = window
        self._snapshot: tuple[tuple[int, int, int], optuna.Study | HistoryWindow] | None = None
        self._finished: FinishedTrials | None = None

    def look_at(self, study: optuna.Study) -> FinishedTrials:
        """The study's trials as this sampler keeps them; made and filled at the first
        call (one pass over the study: a worker's first ask makes it), then only what
        changed is looked at, at each snapshot."""
        finished = self._finished
        if finished is None or not finished.serves(study):
            finished = self._finished = FinishedTrials(study, self.window)
            finished.look(study._get_trials(deepcopy=False, use_cache=True))
        return finished

    def _window(self, study: optuna.Study, trial: FrozenTrial) -> Any:
        key = (*study_key(study), trial._trial_id)
        snapshot = self._snapshot
        if snapshot is None or snapshot[0] != key:
            snapshot = (key, windowed(study, self.window, use_cache=True,
                                      finished=self.look_at(study)))
            self._snapshot = snapshot  # one assignment: threads never see half a snapshot
        return snapshot[1]

    def infer_relative_search_space(self, study: optuna.Study,
                                    trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return super().infer_relative_search_space(self._window(study, trial), trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return super().sample_relative(self._window(study, trial), trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return super().sample_independent(self._window(study, trial), trial, param_name,
                                          param_distribution)
