"""A study's finished trials in number order and its best completed ones, kept up to date
from the trials that changed since the last look.

TPE's window (:mod:`automl.study.storage.history_window`) is the latest finished trials,
the best completed ones and every trial not finished. Building it from the whole trial
list is a few passes over every trial of the study at each snapshot, twice per cohort:
at 10,000 trials, most of what a member's sampling costs there beyond what it costs at
1,000 (BENCHMARKS.md, "The window kept up to date"). :class:`FinishedTrials` looks, at
each call, only at the trials that changed since its last look
(:mod:`automl.study.storage.trial_cursor`), as the cached pruner's curves do
(:mod:`automl.study.storage.completed_curves`).
"""

from __future__ import annotations

import bisect
import heapq
import operator
import threading
from dataclasses import dataclass

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from automl.study.storage.trial_cursor import TrialCursor

FINISHED = frozenset({TrialState.COMPLETE, TrialState.PRUNED})
NUMBER = operator.attrgetter("_number")


def study_key(study: optuna.Study) -> tuple[int, int]:
    """One study among any others in this process (in-memory storages reuse study ids)."""
    return id(study._storage), study._study_id


class RunningBest:
    """The best completed trials of one study (a tenth of the window), kept up to date
    from the trials it has not seen yet, so a call costs a pass, not a sort."""

    def __init__(self, study: optuna.Study, window: int) -> None:
        self.study_key = study_key(study)
        self.k = max(1, window // 10)
        # the first objective's: a study of several objectives is never windowed
        self.sign = -1.0 if study.directions[0] == StudyDirection.MAXIMIZE else 1.0
        self._heap: list[tuple[float, int, FrozenTrial]] = []  # the worst kept on top
        self._seen: set[int] = set()
        self._lock = threading.Lock()

    def serves(self, study: optuna.Study) -> bool:
        return self.study_key == study_key(study)

    def update(self, finished: list[FrozenTrial]) -> list[FrozenTrial]:
        """Take in the completed trials of ``finished`` not seen before; the best so far."""
        with self._lock:
            return self._update(finished)

    def _update(self, finished: list[FrozenTrial]) -> list[FrozenTrial]:
        for trial in finished:
            if trial._number in self._seen or trial.state != TrialState.COMPLETE \
                    or not trial._values:
                continue
            self._seen.add(trial._number)
            item = (-self.sign * float(trial._values[0]), trial._number, trial)
            if len(self._heap) < self.k:
                heapq.heappush(self._heap, item)
            elif item[:2] > self._heap[0][:2]:
                heapq.heapreplace(self._heap, item)
        return [item[2] for item in self._heap]


@dataclass(frozen=True)
class Look:
    """What one look found: how many trials are finished, the latest ``window`` of them
    and the best completed (both by number), and the failed and unfinished trials."""

    n_finished: int
    latest: list[FrozenTrial]
    best: list[FrozenTrial]
    others: list[FrozenTrial]  # failed, running, waiting: by number


class FinishedTrials:
    """One study's trials as the window needs them: the finished (COMPLETE or PRUNED) and
    the failed ones in number order, the best completed (:class:`RunningBest`)."""

    def __init__(self, study: optuna.Study, window: int) -> None:
        self.window = window
        self.best = RunningBest(study, window)
        self._lock = threading.Lock()
        self._cursor = TrialCursor()
        self._reset()

    def _reset(self) -> None:
        self._finished: list[FrozenTrial] = []
        self._failed: list[FrozenTrial] = []
        self._cursor.reset()

    def serves(self, study: optuna.Study) -> bool:
        return self.best.serves(study)

    def look(self, trials: list[FrozenTrial]) -> Look | None:
        """Take in the study's trial list (``trials[n]`` is trial ``n``) where it changed
        since the last look; None where the list is not indexed by number."""
        with self._lock:
            changed = self._cursor.changed(trials)
            if changed is None:  # a shorter list (another study): start over
                self._reset()
                changed = self._cursor.changed(trials)
                if changed is None:
                    return None
            best = self.best.update(self._take_in(changed))
            unfinished = [trials[number] for number in sorted(self._cursor.open)]
            return Look(len(self._finished), self._finished[-self.window:], best,
                        list(heapq.merge(self._failed, unfinished, key=NUMBER)))

    def _take_in(self, changed: list[FrozenTrial]) -> list[FrozenTrial]:
        """File the trials that changed by state; those newly finished."""
        newly: list[FrozenTrial] = []
        for trial in changed:
            if not trial.state.is_finished():
                continue
            if trial.state in FINISHED:
                bisect.insort(self._finished, trial, key=NUMBER)
                newly.append(trial)
            else:
                bisect.insort(self._failed, trial, key=NUMBER)
        return newly
