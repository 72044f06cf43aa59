"""The default search space: what is tuned when the user names nothing, and why."""

from __future__ import annotations

from automl.configs import Task
from automl.space.params import Choice, Fixed, FloatRange, IntRange, Param, Scalar


def default_params(task: Task, n_train_rows: int | None = None) -> dict[str, Param]:
    """The space used when the user gives none.

    Chosen by measurement (BENCHMARKS.md): a few dozen TPE trials do better in a compact
    space (Adam/AdamW, constant or plateau schedule, four activations) than in the full
    one, which stays available through a user space. Batch sizes follow the data: the
    smallest keeps an epoch at about 256 steps or fewer.
    """
    losses: tuple[Scalar, ...] = ("mse", "huber") if task == "regression" else (
        "cross_entropy",)
    batch = default_batch_size(n_train_rows)
    return {
        "n_layers": IntRange(1, 3),
        "units": IntRange(32, 512, log=True),
        "activation": Choice(("relu", "gelu", "selu", "elu")),
        "batch_norm": Choice((False, True)),
        "dropout": FloatRange(0.0, 0.5),
        "optimizer": Choice(("adam", "adamw")),
        "lr": FloatRange(3e-4, 1e-2, log=True),
        "momentum": FloatRange(0.8, 0.99),
        "nesterov": Choice((True, False)),
        "lr_schedule": Choice(("constant", "plateau")),
        "batch_size": Choice((batch, 2 * batch)),
        "max_epochs": Fixed(100),
        "patience": Fixed(15),
        "weight_decay": FloatRange(1e-6, 1e-2, log=True),
        "l1": Fixed(0.0),
        "grad_clip_norm": Fixed(0.0),
        "loss": Choice(losses) if len(losses) > 1 else Fixed(losses[0]),
        "huber_delta": Fixed(1.0),
        "embedding": Fixed("none"),
        "embedding_dim": Fixed(16),
        "frequency_scale": Fixed(0.1),
        "n_bins": Fixed(32),
        "ensemble_k": Fixed(1),
        "beta2": Fixed(0.999),
        "label_smoothing": Fixed(0.0),
    }


def default_batch_size(n_train_rows: int | None) -> int:
    """32, or the power of two that keeps an epoch at about 256 steps or fewer."""
    size = 32
    while n_train_rows is not None and n_train_rows / size > 256:
        size *= 2
    return size
