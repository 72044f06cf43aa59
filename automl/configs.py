"""Frozen value types shared by the client side and the workers.

A :class:`TrialConfig` fully describes one training run: the MLP (:class:`ModelConfig`)
and how it is trained (:class:`TrainConfig`). Trials, baselines and the final
re-evaluation of the best trial are all ``TrialConfig`` values, so they go through one
training loop under one protocol. Nothing here imports torch.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

Task = Literal["binary", "multiclass", "regression"]

ACTIVATIONS = ("relu", "leaky_relu", "elu", "selu", "gelu", "tanh", "sigmoid")
OPTIMIZERS = ("sgd", "adam", "nadam", "rmsprop", "adamax", "adamw")
LR_SCHEDULES = ("constant", "step", "exponential", "plateau", "onecycle")
CLASSIFICATION_LOSSES = ("cross_entropy",)
REGRESSION_LOSSES = ("mse", "mae", "huber")
MAX_HIDDEN_LAYERS = 8
MAX_UNITS = 8192


@dataclass(frozen=True)
class ModelConfig:
    """The architecture of one MLP. ``hidden_units == ()`` is a linear/logistic model."""

    hidden_units: tuple[int, ...]
    activation: str = "relu"
    batch_norm: bool = False
    dropout: float = 0.0

    @property
    def depth(self) -> int:
        return len(self.hidden_units)


@dataclass(frozen=True)
class TrainConfig:
    """How one MLP is trained: optimiser, schedule, regularisation, budget and loss."""

    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.0
    nesterov: bool = False
    lr_schedule: str = "constant"
    batch_size: int = 32
    max_epochs: int = 100
    patience: int = 10
    weight_decay: float = 0.0
    l1: float = 0.0
    grad_clip_norm: float = 0.0
    loss: str = "cross_entropy"
    huber_delta: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class TrialConfig:
    """One complete training run: the model plus its training settings."""

    model: ModelConfig
    train: TrainConfig = field(default_factory=TrainConfig)

    def with_seed(self, seed: int) -> TrialConfig:
        return replace(self, train=replace(self.train, seed=seed))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["model"]["hidden_units"] = list(self.model.hidden_units)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialConfig:
        model = dict(data["model"])
        model["hidden_units"] = tuple(int(u) for u in model["hidden_units"])
        return cls(model=ModelConfig(**model), train=TrainConfig(**data["train"]))


def count_parameters(n_inputs: int, n_outputs: int, model: ModelConfig) -> int:
    """Number of trainable weights of the MLP ``build_mlp`` makes (no torch needed)."""
    sizes = [n_inputs, *model.hidden_units, n_outputs]
    total = sum(a * b + b for a, b in itertools.pairwise(sizes))
    if model.batch_norm:
        total += 2 * sum(model.hidden_units)
    return total
