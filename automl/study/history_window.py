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

:class:`WindowedPruner` gives a median or percentile rule the same window: past it, the
bar is the median of the recent trials and the best ones at that epoch (a little stricter
than the median of the whole history), and each check reads about ``1.1 * window`` trials
instead of all of them.
"""

from __future__ import annotations

import heapq
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

HISTORY_WINDOW = 1000  # finished trials TPE models; beyond it, the oldest are left out
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class HistoryWindow:
    """A study as TPE should see it: only the trials in ``keep`` and the unfinished ones.

    Everything but the two trial readers passes through to the study itself.
    """

    def __init__(self, study: optuna.Study, keep: frozenset[int]) -> None:
        self._study = study
        self._keep = keep

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _kept(self, trials: list[FrozenTrial]) -> list[FrozenTrial]:
        return [t for t in trials if t.number in self._keep or not t.state.is_finished()]

    def _get_trials(self, *args: Any, **kwargs: Any) -> list[FrozenTrial]:
        return self._kept(self._study._get_trials(*args, **kwargs))

    def get_trials(self, *args: Any, **kwargs: Any) -> list[FrozenTrial]:
        return self._kept(self._study.get_trials(*args, **kwargs))


def windowed(study: optuna.Study, window: int) -> optuna.Study | HistoryWindow:
    """``study`` itself while it holds at most ``window`` finished trials (or has several
    objectives); past that, the latest ``window`` finished trials and the best completed."""
    finished = study._get_trials(deepcopy=False, states=FINISHED, use_cache=True)  # as TPE reads
    if len(finished) <= window or len(study.directions) > 1:
        return study
    completed = [t for t in finished if t.state == TrialState.COMPLETE and t.value is not None]
    pick = heapq.nlargest if study.direction == StudyDirection.MAXIMIZE else heapq.nsmallest
    best = pick(max(1, window // 10), completed, key=lambda t: float(t.value))  # type: ignore[arg-type]
    recent = sorted(finished, key=lambda t: t.number)[-window:]
    return HistoryWindow(study, frozenset(t.number for t in [*recent, *best]))


class WindowedPruner(optuna.pruners.BasePruner):
    """``inner``'s decision on the window of the history :func:`windowed` keeps.

    Only for rules that read the finished trials at an epoch (median, percentile, the
    baseline rule's fallback); attributes other than ``prune`` are ``inner``'s.
    """

    def __init__(self, inner: optuna.pruners.BasePruner, window: int = HISTORY_WINDOW) -> None:
        self.inner, self.window = inner, window

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        return self.inner.prune(windowed(study, self.window), trial)  # type: ignore[arg-type]


class WindowedTPESampler(optuna.samplers.TPESampler):
    """Optuna's TPE, fitted on at most ``window`` finished trials plus the best ones."""

    def __init__(self, *, window: int = HISTORY_WINDOW, **tpe_options: Any) -> None:
        super().__init__(**tpe_options)
        self.window = window

    def infer_relative_search_space(self, study: optuna.Study,
                                    trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return super().infer_relative_search_space(windowed(study, self.window), trial)  # type: ignore[arg-type]

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return super().sample_relative(windowed(study, self.window), trial, search_space)  # type: ignore[arg-type]

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return super().sample_independent(windowed(study, self.window), trial,  # type: ignore[arg-type]
                                          param_name, param_distribution)
