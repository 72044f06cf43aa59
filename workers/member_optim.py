"""Per-member optimisers, schedules and losses for a cohort (:mod:`workers.cohort`).

Each member keeps its own hyperparameters as a row of a ``[K]`` tensor (learning rate,
weight decay, Adam's beta2, momentum, L1, clipping norm, dropout, label smoothing) and
its own step count. The arithmetic is torch's own, written for a leading member
dimension: ``torch.optim.Adam``/``AdamW``/``SGD``, ``CosineAnnealingLR`` per batch,
``StepLR``/``ExponentialLR``/``ReduceLROnPlateau`` per epoch, ``clip_grad_norm_``, and
the losses of :func:`workers.optim.make_loss`, so a member follows the path it would
have followed alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.nn import functional

from automl.configs import Task, TrainConfig

ADAM_BETA1, ADAM_EPS = 0.9, 1e-8
PLATEAU_FACTOR, PLATEAU_THRESHOLD, PLATEAU_EPS = 0.5, 1e-4, 1e-8  # ReduceLROnPlateau's
COHORT_OPTIMIZERS = ("adam", "adamw", "sgd")


def member_settings(configs: Sequence[TrainConfig], dropout: Sequence[float],
                    steps_per_epoch: int, device: torch.device) -> dict[str, torch.Tensor]:
    """The members' hyperparameters and counters as ``[K]`` tensors."""
    def column(values: Sequence[float]) -> torch.Tensor:
        return torch.tensor([float(v) for v in values], device=device)

    return {
        "base_lr": column([c.lr for c in configs]),
        "epoch_factor": column([1.0] * len(configs)),
        "weight_decay": column([c.weight_decay for c in configs]),
        "beta2": column([c.beta2 for c in configs]),
        "momentum": column([c.momentum for c in configs]),
        "nesterov": column([c.nesterov and c.momentum > 0 for c in configs]),
        "l1": column([c.l1 for c in configs]),
        "clip": column([c.grad_clip_norm for c in configs]),
        "dropout": column(dropout),
        "smoothing": column([c.label_smoothing for c in configs]),
        "cosine": column([c.lr_schedule == "cosine" for c in configs]),
        "total_steps": column([c.max_epochs * steps_per_epoch for c in configs]),
        "steps": column([0.0] * len(configs)),
    }


def learning_rates(settings: dict[str, torch.Tensor]) -> torch.Tensor:
    """Each member's learning rate for the next step (cosine annealing to 0 per step)."""
    cosine = 0.5 * (1 + torch.cos(math.pi * settings["steps"] / settings["total_steps"]))
    factor = torch.where(settings["cosine"] > 0, cosine, torch.ones_like(cosine))
    return settings["base_lr"] * settings["epoch_factor"] * factor


def optimizer_step(kind: str, params: dict[str, torch.Tensor],
                   grads: dict[str, torch.Tensor], moments: dict[str, torch.Tensor],
                   settings: dict[str, torch.Tensor], weight_decay: bool = True) -> None:
    """One step of every member (``kind``: adam, adamw or sgd), in place;
    ``weight_decay`` False skips the decay when no member has any."""
    lr = learning_rates(settings)
    settings["steps"] += 1
    with torch.no_grad():
        for name, param in params.items():
            grad = grads[name]
            if weight_decay and kind == "adamw":
                param.mul_(1 - per_member(lr * settings["weight_decay"], param))
            elif weight_decay:
                grad = grad + per_member(settings["weight_decay"], param) * param
            if kind == "sgd":
                _sgd(param, grad, moments[f"m:{name}"], lr, settings)
            else:
                _adam(param, grad, moments[f"m:{name}"], moments[f"v:{name}"], lr, settings)


def _adam(param: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor,
          exp_avg_sq: torch.Tensor, lr: torch.Tensor, settings: dict[str, torch.Tensor]
          ) -> None:
    beta2, step = settings["beta2"], settings["steps"]
    exp_avg.lerp_(grad, 1 - ADAM_BETA1)
    exp_avg_sq.lerp_(grad * grad, per_member(1 - beta2, param))
    denom = exp_avg_sq.sqrt().div_(per_member(torch.sqrt(1 - beta2 ** step), param))
    update = exp_avg / denom.add_(ADAM_EPS)
    param.sub_(update.mul_(per_member(lr / (1 - ADAM_BETA1 ** step), param)))


def _sgd(param: torch.Tensor, grad: torch.Tensor, buffer: torch.Tensor, lr: torch.Tensor,
         settings: dict[str, torch.Tensor]) -> None:
    momentum = per_member(settings["momentum"], param)
    buffer.mul_(momentum).add_(grad)
    nesterov = per_member(settings["nesterov"], param) > 0
    param.sub_(per_member(lr, param) * torch.where(nesterov, grad + momentum * buffer, buffer))


def per_member(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A ``[K]`` tensor shaped to broadcast against the stacked tensor ``like``."""
    return values.view((-1,) + (1,) * (like.dim() - 1))


def new_moments(kind: str, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The optimiser's zeroed state for ``params`` (Adam's two moments, SGD's momentum)."""
    moments = {f"m:{name}": torch.zeros_like(p.detach()) for name, p in params.items()}
    if kind != "sgd":
        moments |= {f"v:{name}": torch.zeros_like(p.detach()) for name, p in params.items()}
    return moments


def clip_gradients(grads: dict[str, torch.Tensor], clip: torch.Tensor) -> None:
    """``clip_grad_norm_`` per member (members with ``clip`` 0 are left alone), in place."""
    squares = sum(g.pow(2).flatten(1).sum(dim=1) for g in grads.values())
    assert isinstance(squares, torch.Tensor)
    coef = torch.clamp(clip / (squares.sqrt() + 1e-6), max=1.0)
    coef = torch.where(clip > 0, coef, torch.ones_like(coef))
    for name, grad in grads.items():
        grads[name] = grad * per_member(coef, grad)


def member_losses(task: Task, loss: str, huber_delta: float, outputs: torch.Tensor,
                  y: torch.Tensor, smoothing: torch.Tensor) -> torch.Tensor:
    """Each member's training loss on its own batch: ``outputs`` ``[K, B, out]``, ``y``
    ``[K, B]`` → ``[K]`` (``make_loss``'s losses, label smoothing per member)."""
    if task == "multiclass":
        log_p = functional.log_softmax(outputs, dim=-1)
        nll = -log_p.gather(-1, y.unsqueeze(-1)).squeeze(-1)
        eps = smoothing.unsqueeze(1)
        return ((1 - eps) * nll - eps * log_p.mean(dim=-1)).mean(dim=1)
    values = outputs.squeeze(-1)
    if task == "binary":
        eps = smoothing.unsqueeze(1)
        target = y * (1 - eps) + eps / 2
        return functional.binary_cross_entropy_with_logits(values, target,
                                                           reduction="none").mean(dim=1)
    if loss == "mae":
        return (values - y).abs().mean(dim=1)
    if loss == "huber":
        return functional.huber_loss(values, y, delta=huber_delta, reduction="none").mean(dim=1)
    return (values - y).pow(2).mean(dim=1)


def validation_losses(task: Task, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """:func:`workers.data.validation_loss` of each member: ``[K, N, out]`` → ``[K]``."""
    k = outputs.shape[0]
    if task == "multiclass":
        return functional.cross_entropy(outputs.flatten(0, 1), y.repeat(k),
                                        reduction="none").view(k, -1).mean(dim=1)
    values, target = outputs.squeeze(-1), y.expand(k, -1)
    if task == "binary":
        return functional.binary_cross_entropy_with_logits(values, target,
                                                           reduction="none").mean(dim=1)
    return (values - target).pow(2).mean(dim=1)


@dataclass
class EpochSchedule:
    """A member's per-epoch learning-rate factor: ``StepLR``, ``ExponentialLR`` or
    ``ReduceLROnPlateau`` as :func:`workers.optim.make_schedule` sets them up."""

    kind: str
    max_epochs: int
    patience: int
    base_lr: float
    factor: float = 1.0
    best: float = math.inf
    bad_epochs: int = 0

    def step(self, epoch: int, val_loss: float) -> float:
        """The factor after ``epoch`` (0-based) ended with ``val_loss``."""
        if self.kind == "step":
            self.factor = 0.1 ** ((epoch + 1) // max(1, self.max_epochs // 3))
        elif self.kind == "exponential":
            self.factor = (0.01 ** (1 / self.max_epochs)) ** (epoch + 1)
        elif self.kind == "plateau":
            self._plateau(val_loss)
        return self.factor

    def _plateau(self, val_loss: float) -> None:
        if val_loss < self.best * (1 - PLATEAU_THRESHOLD):
            self.best, self.bad_epochs = val_loss, 0
        else:
            self.bad_epochs += 1
        if self.bad_epochs > max(1, self.patience // 3):
            if self.base_lr * self.factor * (1 - PLATEAU_FACTOR) > PLATEAU_EPS:
                self.factor *= PLATEAU_FACTOR
            self.bad_epochs = 0
