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
LR_SCHEDULES = ("constant", "step", "exponential", "plateau", "onecycle", "cosine")
EMBEDDINGS = ("none", "periodic", "piecewise_linear")  # of each numeric input column
PERIODIC_FREQUENCIES = 48  # frequencies per column of a periodic embedding (the paper's)
CLASSIFICATION_LOSSES = ("cross_entropy",)
REGRESSION_LOSSES = ("mse", "mae", "huber")
CLASS_WEIGHTS = ("none", "balanced")  # of the classification loss
MAX_HIDDEN_LAYERS = 8
MAX_UNITS = 8192


@dataclass(frozen=True)
class ModelConfig:
    """The architecture of one MLP. ``hidden_units == ()`` is a linear/logistic model.

    ``embedding`` turns each numeric input into ``embedding_dim`` learned features before
    the first layer (Gorishniy et al. 2022): "periodic" (sines and cosines of learned
    frequencies, initialised at scale ``frequency_scale``) or "piecewise_linear"
    (``n_bins`` quantile bins of the training rows). ``ensemble_k`` > 1 makes it TabM-mini
    (Gorishniy et al. 2024): k members share the MLP's weights, each with its own input
    scaling and output head, trained on the mean of their losses and averaged.
    """

    hidden_units: tuple[int, ...]
    activation: str = "relu"
    batch_norm: bool = False
    dropout: float = 0.0
    embedding: str = "none"
    embedding_dim: int = 16
    frequency_scale: float = 0.1
    n_bins: int = 32
    ensemble_k: int = 1

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
    beta2: float = 0.999  # Adam's second-moment decay (RealMLP: 0.95)
    lr_schedule: str = "constant"
    batch_size: int = 32
    max_epochs: int = 100
    patience: int = 10
    weight_decay: float = 0.0
    l1: float = 0.0
    grad_clip_norm: float = 0.0
    loss: str = "cross_entropy"
    huber_delta: float = 1.0
    label_smoothing: float = 0.0  # classification only
    class_weight: str = "none"  # "balanced": classes weighted n / (k * count) in the loss
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


def count_parameters(n_inputs: int, n_outputs: int, model: ModelConfig,
                     n_numeric: int = 0) -> int:
    """Number of trainable weights of the model ``build_model`` makes (no torch needed);
    the first ``n_numeric`` inputs are numeric (embedded). Piecewise-linear embeddings
    count ``n_bins`` bins per column: columns with fewer distinct values get fewer."""
    k, d = model.ensemble_k, model.embedding_dim
    embedded = n_numeric if model.embedding != "none" else 0
    per_column = {"periodic": PERIODIC_FREQUENCIES * (1 + 2 * d) + d,
                  "piecewise_linear": (2 + model.n_bins) * d}.get(model.embedding, 0)
    width = n_inputs + embedded * (d - 1)
    sizes = [width, *model.hidden_units]
    total = embedded * per_column + sum(a * b + b for a, b in itertools.pairwise(sizes))
    total += k * (sizes[-1] * n_outputs + n_outputs)  # the head: one per member
    if model.batch_norm:
        total += 2 * k * sum(model.hidden_units) if k > 1 else 2 * sum(model.hidden_units)
    return total + (k * width if k > 1 else 0)  # each member's input scaling
