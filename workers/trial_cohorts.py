"""Several trials of one run trained at once: the glue between Optuna and the cohort trainer.

:mod:`workers.objective` runs one trial per call; this runs one trial per *slot* (a
claimed ticket) and trains them as cohorts (:mod:`workers.cohort`) where that pays. The
first trial is asked from the run's sampler as usual; the next ones are asked with its
structure fixed (``PartialFixedSampler``: depth, activation, batch norm, optimiser, batch
size, loss, embedding) and TPE choosing the rest, so they can share its stacked model. A
trial joins the cohort only if the cohort still pays with it (``cohort_capacity`` of the
members' widest layers: a narrow member computes at the widest member's width), else it
waits and leads a later group, or trains alone, and the cohort pins no more trials; so
does a trial whose configuration has no cohort (``cohort_key`` is None) or whose model
is too wide for this device to gain.
While the sampler is in its random start-up, cohorts are pairs and nothing is asked ahead;
a warm start's pair pins nothing (its partner joins only if it shares the structure).
Past it, the trials one refill of a cohort asks come from one TPE fit (at most
``MEMBERS_PER_FIT``, :mod:`automl.study.storage.draw_ahead`), not one fit each, on a
CPU each the best of its TPE candidates whose widths stack with the cohort's
(:func:`prefer_stackable`); the members' pruning checks of one epoch share one read of
the study (``reading_once``) and the members that end at one epoch are written in one
transaction (``cohort_epoch``).

Each trial keeps everything the ordinary path gives it: its own seed, epoch callbacks
(the fault hook, its ticket's interruption, its reports and the pruner), its user
attributes, and its own end: COMPLETE, PRUNED or FAIL with the reason. A member whose
callback raises fails alone; an error of the stacked training fails the members still in
it. A storage outage (a transient database error, past the retry budget) is no trial's
fault: it ends the whole batch and escapes, its trials left RUNNING for their tickets'
lease, after which a sweeper fails them as ``lost_worker`` and runs them again.
``cohort_size`` records how many trials were training together when it joined.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial, TrialState
from torch import nn

from automl.configs import TrialConfig
from automl.space import SearchSpace
from automl.space.suggest import structure_params, units_param
from automl.study.pruning import ASK_EVERY_EPOCH, PruningPolicy
from automl.study.storage.completed_curves import reading_once
from automl.study.storage.draw_ahead import Preference, drawing_ahead
from automl.study.storage.retry import is_transient
from automl.study.storage.write_behind import RETRY_ATTR, writing_together
from automl.study.studies import WARM_START_ATTR
from workers.cohort import CohortKey, Member, Refill, cohort_key, train_cohort
from workers.cohort_size import (
    cohort_capacity,
    layer_width_spread,
    multiply_adds,
    widths_pay,
)
from workers.data import TensorSplits
from workers.evaluate import fit
from workers.objective import (
    TrialHooks,
    TrialInterrupted,
    TrialWatch,
    record_error,
    start_trial,
    trial_value,
    watch_trial,
)
from workers.train import TrainOutcome

logger = logging.getLogger(__name__)

# Members of a cohort formed in the sampler's random start-up: pairs halve the start-up's
# structures where larger groups would collapse them (BENCHMARKS.md, issue 20).
STARTUP_COHORT = 2
# Trials of one refill asked from one TPE fit, at most (draw_ahead): the fit's cost
# shared by up to this many trials, none of them more than this many asks out of date.
MEMBERS_PER_FIT = 32


@dataclass(frozen=True)
class TrialSlot:
    """One trial to run: the hooks of the ticket that holds it, and a lost trial's
    parameters when the ticket is its retry."""

    hooks: TrialHooks = field(default_factory=TrialHooks)
    retry_params: dict[str, Any] | None = None


@dataclass
class _Asked:
    """A started trial waiting for, or in, training."""

    slot: int
    trial: optuna.Trial
    config: TrialConfig
    watch: TrialWatch
    error: BaseException | None = None  # raised by one of its own callbacks


def run_trial_cohorts(study: optuna.Study, slots: Sequence[TrialSlot], space: SearchSpace,
                      data: TensorSplits, seed: int, pruning: PruningPolicy | None = None,
                      startup_trials: int = 0) -> list[FrozenTrial | None]:
    """Run one trial per slot of ``study``, in cohorts where they pay. Every trial is told
    (COMPLETE, PRUNED or FAIL) and no exception escapes but a storage outage's (then the
    trials in training stay RUNNING, for the sweeper); returns each slot's trial as told
    (None when it was ended elsewhere first, or could not start).

    Until ``startup_trials`` trials have finished (the sampler's random start-up), a
    cohort is a pair (``STARTUP_COHORT``): the second trial is asked with the first's
    structure, and the next slots are asked only when they start, so the start-up draws
    no more random trials than it needs."""
    return _TrialBatch(study, slots, space, data, seed, pruning or ASK_EVERY_EPOCH,
                       startup_trials).run()


class _TrialBatch:
    """The slots still to run, the trials in training, and what each slot's trial became."""

    def __init__(self, study: optuna.Study, slots: Sequence[TrialSlot], space: SearchSpace,
                 data: TensorSplits, seed: int, policy: PruningPolicy, startup_trials: int):
        self.study, self.slots, self.space, self.data = study, slots, space, data
        self.seed, self.policy, self.startup_trials = seed, policy, startup_trials
        # Retries first: their parameters are enqueued just before their own ask.
        order = sorted(range(len(slots)), key=lambda i: slots[i].retry_params is None)
        self.queue: deque[int | _Asked] = deque(order)
        self.told: dict[int, FrozenTrial | None] = {}
        self.training: dict[int, _Asked] = {}

    def run(self) -> list[FrozenTrial | None]:
        while self.queue:
            first = self.ask(self.queue.popleft())
            if first is None:
                continue
            key, capacity = cohort_key(first.config), self.capacity([first])
            if key is None or capacity < 2 or not self.queue:
                self.train_alone(first)
            else:
                self.train_together(first, key)
        return [self.told.get(i) for i in range(len(self.slots))]

    def capacity(self, group: Sequence[_Asked]) -> int:
        """How many members of the group's widest shape pay on this device (1 when its
        members' widths differ too much to gain: ``widths_pay``)."""
        data = self.data
        macs = [multiply_adds(a.config.model, data.n_inputs, data.n_outputs, data.n_numeric)
                for a in group]
        if not widths_pay(macs, data.device):
            return 1
        widest = max(group, key=lambda a: len(a.config.model.hidden_units)).config.model
        units = tuple(max(a.config.model.hidden_units[i] for a in group)
                      for i in range(len(widest.hidden_units)))
        return cohort_capacity(replace(widest, hidden_units=units), self.data.n_inputs,
                               self.data.n_outputs, group[0].config.train.batch_size,
                               self.data.device, self.data.n_numeric)

    def ask(self, item: int | _Asked, fixed: dict[str, Any] | None = None) -> _Asked | None:
        """Start the slot's trial (or hand back one started earlier); None if it could
        not start (told FAIL)."""
        if isinstance(item, _Asked):
            return item
        slot = self.slots[item]
        if slot.retry_params:  # popped by the next ask (write_behind), before any other
            self.study.enqueue_trial(slot.retry_params, user_attrs={RETRY_ATTR: True})
        with _pinned(self.study, None if slot.retry_params else fixed):
            trial = self.study.ask()
            if slot.hooks.on_start is not None:
                slot.hooks.on_start(trial)
            try:  # (suggestions are sampled here, by the pinned sampler)
                config = start_trial(trial, self.space, self.data, self.seed)
            except Exception as exc:
                _raise_if_outage(exc)
                record_error(trial, exc)
                self.told[item] = self.tell(trial, None, exc)
                return None
        return _Asked(item, trial, config, watch_trial(trial, self.policy,
                                                       slot.hooks.stop_reason))

    def train_alone(self, asked: _Asked) -> None:
        asked.trial.set_user_attr("cohort_size", 1)
        try:
            model, outcome = fit(asked.config, self.data, asked.watch.on_epoch)
        except Exception as exc:
            _raise_if_outage(exc)
            record_error(asked.trial, exc)
            self.told[asked.slot] = self.tell(asked.trial, None, exc)
            return
        self.conclude(asked, model, outcome)

    def train_together(self, first: _Asked, key: CohortKey) -> None:
        """Train ``first`` with as many more trials of its structure as pay; members that
        stop are replaced from the queue. The first trial asked that does not fit (too wide
        for the cohort to pay on this device) waits its turn, and the cohort asks no more:
        every further pinned trial would spend the search on this structure with no
        stacking to show for it.

        In the sampler's random start-up a cohort is a pair and is not refilled: more
        members would spend the start-up on few structures, and every trial asked ahead
        while it lasts is drawn at random, however late it trains. A warm start's pair
        pins nothing: the trial asked for it joins only if it shares its structure (the
        next warm start does)."""
        fixed = structure_params(first.trial.params)
        starting_up = self.starting_up()
        size = min(self.capacity([first]), 1 + len(self.queue))
        if starting_up:
            size = min(size, STARTUP_COHORT)
            if first.trial.user_attrs.get(WARM_START_ATTR):
                # The rules of thumb share one structure and stack with each other, but pin
                # no trial to it: a random draw pinned to it would leave the start-up with
                # 4 structures where one trial at a time tries 7 (bench/trial_batches.py).
                fixed = {}
        waiting: list[_Asked] = []

        def refill(free: int) -> list[Member]:
            joining: list[_Asked] = []

            def widths() -> list[tuple[int, ...]]:  # the cohort's, as TPE draws for it
                return [a.config.model.hidden_units
                        for a in (*self.training.values(), *joining)]

            # The trials asked now come from one TPE fit that has seen every trial told
            # so far (draw_ahead; a later refill fits again), each the best of its
            # candidates whose widths stack with the cohort's on a CPU (prefer_stackable),
            # and their parameters are written in one transaction when the refill ends
            # (writing_together).
            n = max(1, min(free, len(self.queue), MEMBERS_PER_FIT))
            with writing_together(self.study), drawing_ahead(
                    self.study.sampler, n,
                    prefer_stackable(widths, first.config.model.depth, self.data.device)):
                while len(joining) < free and self.queue and not waiting:
                    asked = self.ask(self.queue.popleft(), fixed)
                    if asked is None:
                        continue
                    group = [*self.training.values(), *joining, asked]
                    if cohort_key(asked.config) == key and \
                            self.capacity(group) >= len(group):
                        joining.append(asked)
                    else:  # too wide to join: the cohort is full, and pins no more trials
                        waiting.append(asked)
            members = [self.member(asked) for asked in joining]
            for asked in joining:
                asked.trial.set_user_attr("cohort_size", len(self.training))
            return members

        members = [self.member(first)]
        members += refill(size - 1)
        if len(members) == 1:  # nothing else fits: no stacking overhead for one
            self.training.clear()
            self.train_alone(first)
        else:
            first.trial.set_user_attr("cohort_size", len(self.training))
            self.train_members(members, None if starting_up else refill)
        self.queue.extendleft(reversed(waiting))

    def train_members(self, members: list[Member], refill: Refill | None) -> None:
        try:
            train_cohort(members, self.data, self.on_done, refill=refill,
                         capacity=self.capacity(list(self.training.values())),
                         epoch_scope=lambda: cohort_epoch(self.study))
        except Exception as exc:  # the stacked training itself: its members fail with it
            _raise_if_outage(exc)
            for asked in list(self.training.values()):
                record_error(asked.trial, exc)
                self.told[asked.slot] = self.tell(asked.trial, None, exc)
            self.training.clear()

    def starting_up(self) -> bool:
        """Whether the sampler is still in its random start-up."""
        if not self.startup_trials:
            return False
        finished = self.study.get_trials(deepcopy=False,
                                         states=(TrialState.COMPLETE, TrialState.PRUNED))
        return len(finished) < self.startup_trials

    def member(self, asked: _Asked) -> Member:
        """``asked`` as a cohort member: its callback's own error fails it alone."""
        self.training[asked.slot] = asked

        def on_epoch(epoch: int, val_loss: float) -> bool:
            try:
                return asked.watch.on_epoch(epoch, val_loss)
            except Exception as exc:  # this member fails; the others train on
                _raise_if_outage(exc)
                asked.error = exc
                return True

        return Member(asked.slot, asked.config, on_epoch)

    def on_done(self, member: Member, model: nn.Module, outcome: TrainOutcome) -> None:
        assert isinstance(member.key, int)
        asked = self.training.pop(member.key)
        if asked.error is not None:
            record_error(asked.trial, asked.error)
            self.told[asked.slot] = self.tell(asked.trial, None, asked.error)
        else:
            self.conclude(asked, model, outcome)

    def conclude(self, asked: _Asked, model: nn.Module, outcome: TrainOutcome) -> None:
        """Tell a trained trial as the ordinary objective's end would."""
        try:
            value = trial_value(asked.trial, self.data, model, outcome, asked.watch)
        except optuna.TrialPruned:
            self.told[asked.slot] = self.tell(asked.trial, TrialState.PRUNED)
        except TrialInterrupted as exc:
            self.told[asked.slot] = self.tell(asked.trial, None, exc)
        else:
            self.told[asked.slot] = self.tell(asked.trial, value)

    def tell(self, trial: optuna.Trial, outcome: float | TrialState | None,
             error: BaseException | None = None) -> FrozenTrial | None:
        """Tell ``trial``: its value, PRUNED, or FAIL (``outcome`` None); a trial ended
        elsewhere first (a lost lease, failed by a sweeper) keeps that end."""
        if error is not None:
            logger.warning("trial %d failed: %s: %s", trial.number, type(error).__name__, error)
        try:
            if isinstance(outcome, float):
                return self.study.tell(trial, outcome)
            return self.study.tell(trial, state=outcome or TrialState.FAIL)
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError) as exc:
            logger.info("late result ignored, trial %d was already finished: %s",
                        trial.number, exc)
            return None


def prefer_stackable(members: Callable[[], list[tuple[int, ...]]], depth: int,
                     device: torch.device) -> Preference | None:
    """What a refill's TPE draw prefers on a CPU (None on a GPU): candidates whose every
    hidden layer keeps that layer's widths across the cohort (``members()``: the widths of
    those training and joining when TPE draws) within ``layer_width_spread``, so that
    they stack, and the stacked model computes less at widths no member uses: 1.12-1.29x
    the trials a minute at one structure (BENCHMARKS.md, "Refills drawn to stack")."""
    spread = layer_width_spread(depth, device)
    if math.isinf(spread):
        return None

    def prefer(samples: dict[str, np.ndarray]) -> np.ndarray:
        widths = members()
        kept = np.ones(len(next(iter(samples.values()))), dtype=bool)
        for layer in range(depth):
            values = samples.get(units_param(layer))
            if values is not None and widths:
                low, high = min(w[layer] for w in widths), max(w[layer] for w in widths)
                kept &= np.maximum(values, high) <= spread * np.minimum(values, low)
        return kept

    return prefer


def _raise_if_outage(exc: Exception) -> None:
    """Raise ``exc`` again when it is the storage's (transient), not the trial's."""
    if is_transient(exc):
        raise exc


@contextmanager
def cohort_epoch(study: optuna.Study) -> Iterator[None]:
    """The scope of one cohort epoch's checks and ends: the members' pruning checks share
    one read of the study (``reading_once``), and the trials that end are written in one
    transaction when it closes (``writing_together``), not one each."""
    with reading_once(study.pruner), writing_together(study):
        yield


@contextmanager
def _pinned(study: optuna.Study, fixed: dict[str, Any] | None) -> Iterator[None]:
    """While the body asks and suggests, the study's sampler keeps ``fixed`` pinned."""
    if not fixed:
        yield
        return
    sampler = study.sampler
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.sampler = optuna.samplers.PartialFixedSampler(fixed, sampler)
    try:
        yield
    finally:
        study.sampler = sampler
