"""Optimisers, learning-rate schedules and training losses from a :class:`TrainConfig`."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional
from torch.optim import lr_scheduler

from automl.configs import Task, TrainConfig

EpochScheduler = lr_scheduler.LRScheduler | lr_scheduler.ReduceLROnPlateau


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params, lr, wd = model.parameters(), config.lr, config.weight_decay
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum,
                               nesterov=config.nesterov and config.momentum > 0,
                               weight_decay=wd)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=config.momentum, weight_decay=wd)
    optimizers: dict[str, Callable[..., torch.optim.Optimizer]] = {
        "adam": torch.optim.Adam, "nadam": torch.optim.NAdam,
        "adamax": torch.optim.Adamax, "adamw": torch.optim.AdamW,
    }
    return optimizers[config.optimizer](params, lr=lr, weight_decay=wd,
                                        betas=(0.9, config.beta2))


def make_schedule(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int
) -> tuple[lr_scheduler.LRScheduler | None, EpochScheduler | None]:
    """Return (per-batch scheduler, per-epoch scheduler); at most one is set."""
    epochs = config.max_epochs
    if config.lr_schedule == "onecycle":
        return lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr,
                                       total_steps=epochs * steps_per_epoch), None
    if config.lr_schedule == "cosine":  # to 0 at the epoch budget, step by step
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch), None
    if config.lr_schedule == "step":
        return None, lr_scheduler.StepLR(optimizer, step_size=max(1, epochs // 3), gamma=0.1)
    if config.lr_schedule == "exponential":
        return None, lr_scheduler.ExponentialLR(optimizer, gamma=0.01 ** (1 / epochs))
    if config.lr_schedule == "plateau":
        return None, lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5,
                                                    patience=max(1, config.patience // 3))
    return None, None


def make_loss(task: Task, config: TrainConfig, y_train: torch.Tensor | None = None,
              n_classes: int = 2) -> nn.Module:
    """The training loss (a hyperparameter for regression; label smoothing and class
    weights for classes: ``balanced`` weighs each class of ``y_train`` by
    n / (n_classes x its count), as scikit-learn's ``class_weight="balanced"``)."""
    weights = None
    if config.class_weight == "balanced" and task != "regression" and y_train is not None:
        weights = balanced_weights(y_train, n_classes)
    if task == "multiclass":
        return nn.CrossEntropyLoss(weight=weights, label_smoothing=config.label_smoothing)
    if task == "binary":
        return SmoothedBCEWithLogits(config.label_smoothing, weights)
    if config.loss == "mae":
        return nn.L1Loss()
    if config.loss == "huber":
        return nn.HuberLoss(delta=config.huber_delta)
    return nn.MSELoss()


def l1_penalty(model: nn.Module) -> torch.Tensor:
    """Sum of absolute weights of the linear layers (biases and norms excluded)."""
    weights = [m.weight.abs().sum() for m in model.modules() if isinstance(m, nn.Linear)]
    return torch.stack(weights).sum()


def balanced_weights(y_train: torch.Tensor, n_classes: int) -> torch.Tensor:
    """n / (n_classes x count) per class (a class absent from the rows counts once)."""
    counts = torch.bincount(y_train.long(), minlength=n_classes).clamp(min=1).float()
    return len(y_train) / (n_classes * counts)


class SmoothedBCEWithLogits(nn.BCEWithLogitsLoss):
    """Binary cross-entropy against targets pulled ``smoothing / 2`` towards one half,
    as ``CrossEntropyLoss(label_smoothing=...)`` does for two classes; ``weights`` (the
    two classes' weights) weigh each row by its class, as ``CrossEntropyLoss(weight=...)``
    does (a weighted mean)."""

    def __init__(self, smoothing: float = 0.0, weights: torch.Tensor | None = None):
        super().__init__()
        self.smoothing = smoothing
        self.class_weights = weights

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        smoothed = target * (1 - self.smoothing) + self.smoothing / 2
        if self.class_weights is None:
            return super().forward(logits, smoothed)
        weights = self.class_weights.to(logits.device)[target.long()]
        losses = functional.binary_cross_entropy_with_logits(logits, smoothed,
                                                             reduction="none")
        return (losses * weights).sum() / weights.sum()


def batch_loss(loss_fn: nn.Module, outputs: torch.Tensor, target: torch.Tensor,
               task: Task) -> torch.Tensor:
    """One batch's training loss. A k-member model's ``(batch, k, outputs)`` counts each
    member's loss on the whole batch: their mean, as TabM trains."""
    if outputs.dim() == 3:
        target = target.repeat_interleave(outputs.shape[1])
        outputs = outputs.flatten(0, 1)
    return loss_fn(outputs if task == "multiclass" else outputs.squeeze(1), target)
