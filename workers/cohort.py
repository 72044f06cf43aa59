"""The cohort trainer: many trial configurations trained at once as one stacked model.

Pure torch, like :mod:`workers.train` (no Optuna, database or Ray). Members that share a
structure (:func:`cohort_key`: depth, activation, batch norm, optimiser, batch size,
loss) train together: their weights are stacked (:mod:`workers.stacked`), each with its
own hyperparameters and optimiser state (:mod:`workers.member_optim`), its own seed and
minibatch order. Every member reports its validation loss after each of its epochs
through the same ``on_epoch`` contract as :func:`workers.train.train_model`, and stops on
its own: pruned (``on_epoch`` answers True), early-stopped, diverged (a non-finite loss
stays in that member's rows) or at its epoch budget. A stopped member leaves the cohort
with its best weights, as the ordinary ``nn.Sequential`` it would have been alone, and
``refill`` may bring in new members in its place.

Same seed, same batches: a member's validation curve is the one :func:`workers.evaluate.
fit` gives alone, to float tolerance, except with dropout (its masks come from another
random stream).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import torch
from torch import nn

from automl.configs import TrialConfig
from workers.data import EVAL_BATCH, TensorSplits
from workers.member_optim import (
    COHORT_OPTIMIZERS,
    EpochSchedule,
    clip_gradients,
    member_losses,
    member_settings,
    new_moments,
    optimizer_step,
    validation_losses,
)
from workers.model import build_model, fit_bins
from workers.stacked import StackedMLP, join, load_member, stack_models, take
from workers.train import EpochCallback, TrainOutcome

CohortKey = tuple[Hashable, ...]
STACKED_EMBEDDINGS = ("none", "piecewise_linear")


@dataclass
class Member:
    """One configuration to train in a cohort; ``key`` is the caller's (a trial number)."""

    key: Hashable
    config: TrialConfig
    on_epoch: EpochCallback | None = None


Done = Callable[[Member, nn.Module, TrainOutcome], None]
Refill = Callable[[int], Sequence[Member]]
EpochScope = Callable[[], AbstractContextManager[None]]


def cohort_key(config: TrialConfig) -> CohortKey | None:
    """What members of one cohort must share (piecewise-linear embeddings: their size and
    bins too); None for a configuration that trains only the ordinary way (periodic
    embeddings, TabM members, a one-cycle schedule, an optimiser other than Adam, AdamW or
    SGD, class weights)."""
    model, train = config.model, config.train
    if (model.embedding not in STACKED_EMBEDDINGS or model.ensemble_k != 1
            or train.lr_schedule == "onecycle" or train.optimizer not in COHORT_OPTIMIZERS
            or train.class_weight != "none"):
        return None
    embedded = (model.embedding_dim, model.n_bins) if model.embedding != "none" else ()
    return (model.depth, model.activation, model.batch_norm, train.optimizer,
            train.batch_size, train.loss, train.huber_delta, model.embedding, *embedded)


@dataclass
class _Progress:
    """A member's own bookkeeping: where it is, its best epoch, its curve."""

    member: Member
    schedule: EpochSchedule
    generator: torch.Generator
    epoch: int = 0
    best_loss: float = math.inf
    best_epoch: int = -1
    history: list[float] = field(default_factory=list)
    seconds: float = 0.0  # its share of the cohort's time: each epoch's over the members

    def outcome(self, reason: str, detail: str = "") -> TrainOutcome:
        return TrainOutcome(self.best_loss, self.best_epoch,
                            len(self.history) + (reason == "diverged"), reason, detail,
                            self.history, self.seconds)


class Cohort:
    """The members now training, their stacked model, optimiser state and best weights."""

    def __init__(self, members: Sequence[Member], data: TensorSplits):
        self.data = data
        first = members[0].config
        key = cohort_key(first)
        if key is None:
            raise ValueError(f"this configuration does not train in a cohort: {first}")
        self.key, self.optimizer = key, first.train.optimizer
        self.batch_size, self.loss = first.train.batch_size, first.train.loss
        self.huber_delta = first.train.huber_delta
        self.steps_per_epoch = math.ceil(len(data.x_train) / self.batch_size)
        self.bins = fit_bins(first.model, data.x_train, data.n_numeric)  # shared by key
        self.model, self.progress = self._stack(members)
        self.moments = new_moments(self.optimizer, self.model.params)
        self.settings = self._settings(members)
        self.best = {name: t.detach().clone() for name, t in self.model.state().items()}

    @property
    def size(self) -> int:
        return len(self.progress)

    def _uses(self, setting: str) -> bool:
        """Whether any member has a nonzero ``setting`` (skipped work when none has)."""
        return bool((self.settings[setting] != 0).any())

    def _stack(self, members: Sequence[Member]) -> tuple[StackedMLP, list[_Progress]]:
        models, progress = [], []
        for member in members:
            if cohort_key(member.config) != self.key:
                raise ValueError(f"member {member.key!r} does not share the cohort's structure")
            torch.manual_seed(member.config.train.seed)  # as fit() seeds a model alone
            models.append(build_model(member.config.model, self.data.n_inputs,
                                      self.data.n_outputs, self.data.task, self.data.n_numeric,
                                      self.bins).to(self.data.device))
            train = member.config.train
            progress.append(_Progress(
                member, EpochSchedule(train.lr_schedule, train.max_epochs, train.patience,
                                      train.lr),
                torch.Generator(device=self.data.device).manual_seed(train.seed)))
        model = members[0].config.model
        stacked = stack_models(models, [m.config.model.hidden_units for m in members],
                               model.activation, model.batch_norm)
        return stacked, progress

    def _settings(self, members: Sequence[Member]) -> dict[str, torch.Tensor]:
        return member_settings([m.config.train for m in members],
                               [m.config.model.dropout for m in members],
                               self.steps_per_epoch, self.data.device)

    def add(self, members: Sequence[Member]) -> None:
        """Bring ``members`` in, from their first epoch."""
        model, progress = self._stack(members)
        self.model.extend(model)
        self.moments = join(self.moments, new_moments(self.optimizer, model.params))
        self.settings = join(self.settings, self._settings(members))
        self.best = join(self.best, model.state())
        self.progress += progress

    def keep(self, indices: list[int]) -> None:
        """Compact the cohort to the members ``indices``."""
        keep = torch.tensor(indices, dtype=torch.long, device=self.data.device)
        self.model.select(keep)
        self.moments, self.settings = take(self.moments, keep), take(self.settings, keep)
        self.best = take(self.best, keep)
        self.progress = [self.progress[i] for i in indices]

    def run_epoch(self) -> torch.Tensor:
        """One pass of every member over its own permutation of the training rows;
        returns each member's mean training loss ``[K]``."""
        data, batch = self.data, self.batch_size
        n_rows = len(data.x_train)
        orders = torch.stack([torch.randperm(n_rows, generator=p.generator, device=data.device)
                              for p in self.progress])
        total = torch.zeros(self.size, device=data.device)
        uses = {name: self._uses(name) for name in ("dropout", "l1", "clip", "weight_decay")}
        for start in range(0, n_rows, batch):
            index = orders[:, start:start + batch]
            if index.shape[1] < 2 and n_rows > 1:
                continue  # as train.run_epoch: a one-row batch breaks batch norm
            outputs = self.model.forward(data.x_train[index],
                                         self.settings["dropout"] if uses["dropout"] else None)
            losses = member_losses(data.task, self.loss, self.huber_delta, outputs,
                                   data.y_train[index], self.settings["smoothing"])
            objective = losses.sum()
            if uses["l1"]:
                weights = self.model.linear_weights()
                objective = objective + (self.settings["l1"] * sum(
                    w.abs().flatten(1).sum(dim=1) for w in weights)).sum()
            names = list(self.model.params)
            grads = dict(zip(names, torch.autograd.grad(
                objective, [self.model.params[n] for n in names]), strict=True))
            if uses["clip"]:
                clip_gradients(grads, self.settings["clip"])
            optimizer_step(self.optimizer, self.model.params, grads, self.moments,
                           self.settings, uses["weight_decay"])
            total += losses.detach() * index.shape[1]
        return total / n_rows

    @torch.no_grad()
    def validation_losses(self) -> torch.Tensor:
        """Each member's validation loss ``[K]`` (eval mode: running batch-norm stats)."""
        x = self.data.x_val
        rows = max(256, EVAL_BATCH * 32 // max(self.size, 32))  # K x rows activations
        outputs = torch.cat([self.model.forward(x[i:i + rows], training=False)
                             for i in range(0, len(x), rows)], dim=1)
        return validation_losses(self.data.task, outputs, self.data.y_val)

    def remember_best(self, improved: list[bool]) -> None:
        mask = torch.tensor(improved, device=self.data.device)
        for name, current in self.model.state().items():
            shaped = mask.view((-1,) + (1,) * (current.dim() - 1))
            self.best[name] = torch.where(shaped, current.detach(), self.best[name])

    def best_model(self, index: int) -> nn.Module:
        """Member ``index``'s best weights as the ordinary model it would be alone."""
        config = self.progress[index].member.config.model
        model = build_model(config, self.data.n_inputs, self.data.n_outputs, self.data.task,
                            self.data.n_numeric, self.bins).to(self.data.device)
        load_member(self.best, index, model, config.hidden_units)
        return model.eval()


def train_cohort(members: Sequence[Member], data: TensorSplits, on_done: Done,
                 refill: Refill | None = None, capacity: int | None = None,
                 epoch_scope: EpochScope = nullcontext) -> None:
    """Train ``members`` together until each has stopped; ``on_done(member, model,
    outcome)`` hears of each as it stops, with its best weights (``outcome.seconds``: its
    share of the cohort's time, each epoch's time over the members). After every epoch,
    ``refill(n)`` may add up to ``n`` new members of the same structure (``capacity``, by
    default the starting size, bounds the cohort). The members' ``on_epoch`` calls of one
    epoch, and the ``on_done`` calls of those that stop at it, run inside one
    ``epoch_scope()`` (the caller's: one read of the study for all, their ends written
    together)."""
    cohort = Cohort(members, data)
    capacity = capacity or len(members)
    while cohort.size:
        started = time.perf_counter()
        train_losses = cohort.run_epoch().tolist()
        val_losses = cohort.validation_losses().tolist()
        for progress in cohort.progress:
            progress.seconds += (time.perf_counter() - started) / cohort.size
        with epoch_scope():
            decisions = [_after_epoch(progress, train_losses[i], val_losses[i])
                         for i, progress in enumerate(cohort.progress)]
            cohort.remember_best([improved for _, improved in decisions])
            for index, (reason, _) in enumerate(decisions):
                if reason is not None:
                    progress = cohort.progress[index]
                    detail = f"non_finite_loss@epoch{progress.epoch}" \
                        if reason == "diverged" else ""
                    on_done(progress.member, cohort.best_model(index),
                            progress.outcome(reason, detail))
        cohort.settings["epoch_factor"] = torch.tensor(
            [p.schedule.factor for p in cohort.progress], device=data.device)
        staying = [i for i, (reason, _) in enumerate(decisions) if reason is None]
        if len(staying) < cohort.size:
            cohort.keep(staying)
        if refill is not None and cohort.size < capacity:
            new = refill(capacity - cohort.size)
            if new:
                cohort.add(new)


def train_in_turn(members: Sequence[Member], data: TensorSplits, on_done: Done,
                  capacity: int) -> None:
    """Train all ``members``, ``capacity`` at a time: each one that stops makes room for
    the next in line."""
    waiting = list(members)

    def refill(free: int) -> list[Member]:
        taken, waiting[:] = waiting[:free], waiting[free:]
        return taken

    train_cohort(refill(capacity), data, on_done, refill=refill, capacity=capacity)


def _after_epoch(progress: _Progress, train_loss: float, val_loss: float
                 ) -> tuple[str | None, bool]:
    """The ordinary loop's decisions after one of a member's epochs: why it stops (None
    to go on) and whether this epoch is its best yet. Advances its epoch and schedule."""
    epoch = progress.epoch
    if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
        return "diverged", False
    progress.history.append(val_loss)
    progress.epoch += 1
    improved = val_loss < progress.best_loss
    if improved:
        progress.best_loss, progress.best_epoch = val_loss, epoch
    progress.schedule.step(epoch, val_loss)
    train = progress.member.config.train
    on_epoch = progress.member.on_epoch
    if on_epoch is not None and on_epoch(epoch, val_loss):
        return "stopped", improved
    if epoch - progress.best_epoch >= train.patience:
        return "early_stopped", improved
    return ("completed" if progress.epoch >= train.max_epochs else None), improved
