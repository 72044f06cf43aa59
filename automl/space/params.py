"""The parameter types of a search space and every parameter's domain (what values it
may take at all, whatever the space)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from automl.configs import (
    ACTIVATIONS,
    CLASS_WEIGHTS,
    CLASSIFICATION_LOSSES,
    EMBEDDINGS,
    LR_SCHEDULES,
    MAX_HIDDEN_LAYERS,
    MAX_UNITS,
    OPTIMIZERS,
    REGRESSION_LOSSES,
)

Scalar = int | float | str | bool


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int
    step: int = 1
    log: bool = False


@dataclass(frozen=True)
class FloatRange:
    low: float
    high: float
    step: float | None = None
    log: bool = False


@dataclass(frozen=True)
class Choice:
    choices: tuple[Scalar, ...]


@dataclass(frozen=True)
class Fixed:
    value: Scalar


Param = IntRange | FloatRange | Choice | Fixed


@dataclass(frozen=True)
class Domain:
    """What values a parameter may take at all."""

    kind: str  # "int" | "float" | "option" | "bool"
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    options: tuple[str, ...] = ()
    help: str = ""


DOMAINS: dict[str, Domain] = {
    "n_layers": Domain("int", 0, MAX_HIDDEN_LAYERS, help="number of hidden layers"),
    "units": Domain("int", 1, MAX_UNITS, help="units of each hidden layer"),
    "activation": Domain("option", options=ACTIVATIONS, help="hidden-layer activation"),
    "batch_norm": Domain("bool", help="batch normalisation after each hidden layer"),
    "dropout": Domain("float", 0.0, 0.9, help="dropout rate (AlphaDropout with selu)"),
    "optimizer": Domain("option", options=OPTIMIZERS, help="optimiser"),
    "lr": Domain("float", 0.0, 10.0, low_open=True, help="learning rate"),
    "momentum": Domain("float", 0.0, 0.999, help="momentum (sgd, rmsprop)"),
    "nesterov": Domain("bool", help="Nesterov momentum (sgd)"),
    "lr_schedule": Domain("option", options=LR_SCHEDULES, help="learning-rate schedule"),
    "batch_size": Domain("int", 1, 65536, help="mini-batch size"),
    "max_epochs": Domain("int", 1, 10000, help="epoch budget per trial"),
    "patience": Domain("int", 1, 10000, help="early-stopping patience in epochs"),
    "weight_decay": Domain("float", 0.0, 1.0, help="L2 penalty / decoupled weight decay"),
    "l1": Domain("float", 0.0, 1.0, help="L1 penalty on weights"),
    "grad_clip_norm": Domain("float", 0.0, 1e6, help="gradient clipping norm (0 = off)"),
    "loss": Domain("option", options=CLASSIFICATION_LOSSES + REGRESSION_LOSSES, help="loss"),
    "huber_delta": Domain("float", 0.0, 1e6, low_open=True, help="Huber loss delta"),
    "embedding": Domain("option", options=EMBEDDINGS, help="embedding of each numeric column"),
    "embedding_dim": Domain("int", 1, 256, help="size of each numeric column's embedding"),
    "frequency_scale": Domain("float", 0.0, 100.0, low_open=True,
                              help="initial scale of periodic embeddings' frequencies"),
    "n_bins": Domain("int", 2, 1024, help="quantile bins of piecewise-linear embeddings"),
    "ensemble_k": Domain("int", 1, 64, help="TabM-mini members sharing one MLP (1: off)"),
    "beta2": Domain("float", 0.0, 1.0, low_open=True, help="Adam's second-moment decay"),
    "label_smoothing": Domain("float", 0.0, 0.5, help="label smoothing (classification)"),
    "class_weight": Domain("option", options=CLASS_WEIGHTS,
                           help="class weights of the training loss (classification): "
                           "'balanced' weighs each class by n / (classes x its count)"),
}
