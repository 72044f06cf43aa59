"""The training loop: pure torch, one screen, callbacks out.

``train_model`` knows nothing of Optuna, databases or Ray. After every epoch it computes
the validation loss and calls ``on_epoch(epoch, val_loss)``; a ``True`` answer stops the
run (that is how pruning reaches it). It stops on its own for early stopping and for a
non-finite loss, and always restores the best weights it saw.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from automl.configs import TrainConfig
from workers.data import TensorSplits, predict, validation_loss
from workers.optim import batch_loss, l1_penalty, make_loss, make_optimizer, make_schedule

EpochCallback = Callable[[int, float], bool]


@dataclass
class TrainOutcome:
    """What one training run did and why it stopped."""

    best_val_loss: float
    best_epoch: int
    epochs_run: int
    stop_reason: str  # completed | early_stopped | stopped | diverged
    detail: str = ""
    val_losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def train_model(model: nn.Module, config: TrainConfig, data: TensorSplits,
                on_epoch: EpochCallback | None = None) -> TrainOutcome:
    """Train ``model`` in place on ``data``; on return it holds its best weights."""
    started = time.perf_counter()
    generator = torch.Generator(device=data.device).manual_seed(config.seed)
    optimizer = make_optimizer(model, config)
    steps = math.ceil(len(data.x_train) / config.batch_size)
    batch_schedule, epoch_schedule = make_schedule(optimizer, config, steps)
    loss_fn = make_loss(data.task, config, data.y_train, max(2, data.n_outputs))
    best_loss, best_epoch, best_state = math.inf, -1, copy.deepcopy(model.state_dict())
    history: list[float] = []
    reason, detail = "completed", ""
    for epoch in range(config.max_epochs):
        train_loss = run_epoch(model, optimizer, batch_schedule, loss_fn, data, config,
                               generator)
        val_loss = validation_loss(data.task, predict(model, data.x_val), data.y_val)
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            reason, detail = "diverged", f"non_finite_loss@epoch{epoch}"
            break
        history.append(val_loss)
        if val_loss < best_loss:
            best_loss, best_epoch, best_state = val_loss, epoch, copy.deepcopy(model.state_dict())
        step_epoch_schedule(epoch_schedule, val_loss)
        if on_epoch is not None and on_epoch(epoch, val_loss):
            reason = "stopped"
            break
        if epoch - best_epoch >= config.patience:
            reason = "early_stopped"
            break
    model.load_state_dict(best_state)
    return TrainOutcome(best_loss, best_epoch, len(history) + (reason == "diverged"), reason,
                        detail, history, time.perf_counter() - started)


def run_epoch(model: nn.Module, optimizer: torch.optim.Optimizer,
              batch_schedule: torch.optim.lr_scheduler.LRScheduler | None, loss_fn: nn.Module,
              data: TensorSplits, config: TrainConfig, generator: torch.Generator) -> float:
    """One pass over a random permutation of the training rows; returns the mean loss."""
    model.train()
    n_rows = len(data.x_train)
    order = torch.randperm(n_rows, generator=generator, device=data.device)
    total = torch.zeros((), device=data.device)
    for start in range(0, n_rows, config.batch_size):
        index = order[start:start + config.batch_size]
        if len(index) < 2 and n_rows > 1:
            continue  # a one-row batch breaks batch norm and adds only noise
        loss = batch_loss(loss_fn, model(data.x_train[index]), data.y_train[index], data.task)
        penalty = config.l1 * l1_penalty(model) if config.l1 > 0 else 0.0
        optimizer.zero_grad(set_to_none=True)
        (loss + penalty).backward()
        if config.grad_clip_norm > 0:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
        optimizer.step()
        if batch_schedule is not None:
            batch_schedule.step()
        total += loss.detach() * len(index)
    return float(total) / n_rows


def step_epoch_schedule(schedule: object, val_loss: float) -> None:
    if isinstance(schedule, torch.optim.lr_scheduler.ReduceLROnPlateau):
        schedule.step(val_loss)
    elif isinstance(schedule, torch.optim.lr_scheduler.LRScheduler):
        schedule.step()
