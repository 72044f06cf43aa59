"""Optuna's group decomposition of the search space, each finished trial taken in once.

Grouped multivariate TPE splits the space into groups of parameters that always appear
together (Optuna's ``_GroupDecomposedSearchSpace``). Optuna recomputes it at every ask by
adding every finished trial's distributions again, one split of every group per trial:
about a quarter of an ask's time at a window of 1,000 trials (BENCHMARKS.md, "Each
finished trial read once"). Adding a trial a second time changes nothing (after the
first time, every group lies inside its parameters or outside them, and later splits
keep it so), so :class:`IncrementalGroups` adds only the trials it has not added before:
the same groups, in the same order, with the same distributions.
"""

from __future__ import annotations

import copy

import optuna
from optuna.search_space.group_decomposed import _GroupDecomposedSearchSpace, _SearchSpaceGroup
from optuna.trial import TrialState


class IncrementalGroups(_GroupDecomposedSearchSpace):
    """Optuna's ``_GroupDecomposedSearchSpace`` that skips the trials it has taken in."""

    def __init__(self, include_pruned: bool = False) -> None:
        super().__init__(include_pruned)
        self._taken: set[int] = set()  # trial ids already added to the groups

    def calculate(self, study: optuna.Study, use_cache: bool = False) -> _SearchSpaceGroup:
        """The groups of ``study``'s finished trials, as Optuna computes them."""
        if self._study_id is None:
            self._study_id = study._study_id
        elif self._study_id != study._study_id:
            raise ValueError("`_GroupDecomposedSearchSpace` cannot handle multiple studies.")
        states = (TrialState.COMPLETE, TrialState.PRUNED) if self._include_pruned \
            else (TrialState.COMPLETE,)
        for trial in study._get_trials(deepcopy=False, states=states, use_cache=use_cache):
            if trial._trial_id not in self._taken:
                self._taken.add(trial._trial_id)
                self._search_space.add_distributions(trial.distributions)
        return copy.deepcopy(self._search_space)


def take_in_once(sampler: optuna.samplers.TPESampler) -> None:
    """Give a grouped TPE sampler :class:`IncrementalGroups` in place of Optuna's own."""
    current = getattr(sampler, "_group_decomposed_search_space", None)
    if type(current) is _GroupDecomposedSearchSpace:
        sampler._group_decomposed_search_space = IncrementalGroups(current._include_pruned)
