"""TPE and the pruner over a bounded window of the study's history, so a trial's search cost
stops growing.

Optuna's TPE refits its two densities on every finished trial at every ask: at 1,000
trials that is about 120 ms a trial, at 10,000 about 850 ms (BENCHMARKS.md, "The search's
own cost per trial"). Past ``window`` finished trials, :class:`WindowedTPESampler` shows
TPE the ``window`` most recent finished trials plus the best completed ones (a tenth of
the window), and every running trial (the constant liar needs them). TPE's "good" set is
at most 25 trials (``optuna.samplers._tpe.sampler.default_gamma``), so it stays the best
trials of the whole study; only the "bad" density forgets the oldest trials. Up to
``window`` finished trials the sampler is exactly Optuna's TPE.

:class:`WindowedPruner` gives a median or percentile rule a window of the completed
trials: past ``window`` of them, the bar is the median of the latest ``window`` and the
best tenth as many at that epoch (a little stricter than the whole history's median), and
each check computes it over about ``1.1 * window`` trials instead of all of them.
"""

from __future__ import annotations

import copy
import heapq
import operator
from collections.abc import Container
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

HISTORY_WINDOW = 1000  # finished trials TPE models; beyond it, the oldest are left out
FINISHED = frozenset({TrialState.COMPLETE, TrialState.PRUNED})
_NUMBER = operator.attrgetter("_number")


class HistoryWindow:
    """A study as TPE or the pruner should see it: a snapshot of the trials the window
    keeps, every unfinished or failed trial with them.

    Everything but the two trial readers passes through to the study itself.
    """

    def __init__(self, study: optuna.Study, trials: list[FrozenTrial]) -> None:
        self._study = study
        self._trials = trials

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None,
                    use_cache: bool = False) -> list[FrozenTrial]:
        trials = self._trials if states is None else [t for t in self._trials
                                                      if t.state in states]
        return copy.deepcopy(trials) if deepcopy else trials

    def get_trials(self, deepcopy: bool = True,
                   states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        return self._get_trials(deepcopy, states)


def windowed(study: optuna.Study, window: int, *,
             use_cache: bool = False) -> optuna.Study | HistoryWindow:
    """``study`` itself while it holds at most ``window`` finished trials (or has several
    objectives); past that, the latest ``window`` finished trials and the best completed.

    One pass over the study's trials (``use_cache``: the list the sampler reads, as TPE's
    own reads do), so it costs a small fraction of what it saves.
    """
    trials = study._get_trials(deepcopy=False, use_cache=use_cache)
    finished = [t for t in trials if t.state in FINISHED]
    if len(finished) <= window or len(study.directions) > 1:
        return study
    keep = _latest_and_best(finished, window, study.direction)
    return HistoryWindow(study, [t for t in trials if t.state not in FINISHED or id(t) in keep])


def _latest_and_best(finished: list[FrozenTrial], window: int,
                     direction: StudyDirection) -> set[int]:
    """The ids of the latest ``window`` of ``finished`` and of the best tenth as many."""
    completed = [t for t in finished if t.state == TrialState.COMPLETE and t.value is not None]
    pick = heapq.nlargest if direction == StudyDirection.MAXIMIZE else heapq.nsmallest
    best = pick(max(1, window // 10), completed, key=_value)
    latest = sorted(finished, key=_NUMBER)[-window:]  # storages list by number already
    return {id(t) for t in latest} | {id(t) for t in best}


def _value(trial: FrozenTrial) -> float:
    return float(trial.value)  # type: ignore[arg-type]


class WindowedPruner(optuna.pruners.BasePruner):
    """``inner``'s decision on the latest ``window`` completed trials and the best ones.

    For the rules that read only the completed trials (median, percentile, the baseline
    rule's fallback): they read one snapshot of them, so within the window the decision
    and its cost are the rule's own. Attributes other than ``prune`` are ``inner``'s.
    """

    def __init__(self, inner: optuna.pruners.BasePruner, window: int = HISTORY_WINDOW) -> None:
        self.inner, self.window = inner, window

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(completed) > self.window and len(study.directions) == 1:
            keep = _latest_and_best(completed, self.window, study.direction)
            completed = [t for t in completed if id(t) in keep]
        return self.inner.prune(HistoryWindow(study, completed), trial)  # type: ignore[arg-type]


class WindowedTPESampler(optuna.samplers.TPESampler):
    """Optuna's TPE, fitted on at most ``window`` finished trials plus the best ones.

    A trial's sampling calls (the relative space, the relative sample, each independent
    parameter) share one snapshot of the window, taken at its first call.
    """

    def __init__(self, *, window: int = HISTORY_WINDOW, **tpe_options: Any) -> None:
        super().__init__(**tpe_options)
        self.window = window
        self._snapshot: tuple[tuple[int, int, int], optuna.Study | HistoryWindow] | None = None

    def _window(self, study: optuna.Study, trial: FrozenTrial) -> Any:
        key = (id(study._storage), study._study_id, trial._trial_id)
        snapshot = self._snapshot
        if snapshot is None or snapshot[0] != key:
            snapshot = (key, windowed(study, self.window, use_cache=True))
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
