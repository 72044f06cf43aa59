"""Which trials of a study changed since the last look, without a pass over all of them.

A study's trial list, as Optuna's storages give it, is indexed by number (``trials[n]``
is trial ``n``), trials are only appended, and a finished trial stays finished. So
between two looks only the trials numbered past the last look and those not finished
then can have changed. The cached pruner's curves
(:mod:`automl.study.storage.completed_curves`) and TPE's window
(:mod:`automl.study.storage.finished_trials`) take in only those.
"""

from __future__ import annotations

from optuna.trial import FrozenTrial


class TrialCursor:
    """The last look at one study's trial list: how far it went, and the trials it found
    not finished."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every look: the next one sees the whole list."""
        self.looked = 0  # trials numbered below this have been looked at
        self.open: set[int] = set()  # looked at, not finished then

    def changed(self, trials: list[FrozenTrial]) -> list[FrozenTrial] | None:
        """The trials of ``trials`` to look at again (those not finished at the last look,
        then the new ones, by number), and this look remembered; None, with nothing
        remembered, where the list is not one the last look can be continued on (shorter
        than then, or not indexed by number): the caller starts over."""
        if len(trials) < self.looked:
            return None
        numbers = [*sorted(self.open), *range(self.looked, len(trials))]
        if any(trials[number]._number != number for number in numbers):
            return None
        self.looked = len(trials)
        for number in numbers:
            if trials[number].state.is_finished():
                self.open.discard(number)
            else:
                self.open.add(number)
        return [trials[number] for number in numbers]
