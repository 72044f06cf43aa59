"""The default search space: what is tuned when the user names nothing, and why."""

from __future__ import annotations

from automl.configs import Task
from automl.space.params import Choice, Fixed, FloatRange, IntRange, Param, Scalar


def default_params(task: Task, n_train_rows: int | None = None, n_numeric: int | None = None,
                   budget: str = "default") -> dict[str, Param]:
    """The space used when the user gives none.

    Chosen by measurement (BENCHMARKS.md): a few dozen TPE trials do better in a compact
    space (Adam/AdamW, constant or plateau schedule, four activations) than in the full
    one, which stays available through a user space. Batch sizes follow the data: the
    smallest keeps an epoch at about 256 steps or fewer. The ``"default"`` budget adds
    the model family of issue 19 (:func:`family_params`); ``"fast"`` keeps the plain MLP.
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
        "class_weight": Fixed("none"),  # "balanced" for imbalanced classes: also baselines'
        **PLAIN_FAMILY,
        **(family_params(n_numeric) if budget == "default" else {}),
    }


def family_params(n_numeric: int | None) -> dict[str, Param]:
    """The model family the default budget searches (BENCHMARKS.md, issue 19).

    Measured at fixed settings over 5 splits of the nine datasets: piecewise-linear
    embeddings gained up to 2.8 points (California R²) and lost at most 0.5 (letter), so
    they are a choice; RealMLP's Adam beta2 0.95, label smoothing 0.1 and a cosine decay
    together gained 1.5-1.7 points on letter and digits and cost at most 0.6 elsewhere.
    TabM-mini (``ensemble_k``) stays 1: with 32 members (the paper's default) a fit took
    60-520 s on one CPU core against about 5 s for one embedded MLP (bench/model_family.py).
    """
    embed = n_numeric is None or 0 < n_numeric <= MAX_EMBEDDED_COLUMNS
    return {
        "embedding": Choice(("piecewise_linear", "none")) if embed else Fixed("none"),
        "embedding_dim": IntRange(8, 32, step=8),
        "n_bins": IntRange(8, 64, log=True),
        "lr_schedule": Choice(("cosine", "constant", "plateau")),
        "beta2": Fixed(0.95),
        "label_smoothing": Fixed(0.1),  # classification only (suggest_trial_config)
    }


# The plain MLP's settings of the family's parameters: the "fast" budget, main before
# issue 19, and what a user space overrides.
PLAIN_FAMILY: dict[str, Param] = {
    "embedding": Fixed("none"),
    "embedding_dim": Fixed(16),
    "frequency_scale": Fixed(0.1),
    "n_bins": Fixed(32),
    "ensemble_k": Fixed(1),
    "beta2": Fixed(0.999),
    "label_smoothing": Fixed(0.0),
}
# Above this many numeric columns (Fashion-MNIST's 784 pixels), embeddings multiply the
# first layer's inputs past what 2 CPU cores train in reasonable time.
MAX_EMBEDDED_COLUMNS = 100
BUDGETS = ("default", "fast")


def default_batch_size(n_train_rows: int | None) -> int:
    """32, or the power of two that keeps an epoch at about 256 steps or fewer."""
    size = 32
    while n_train_rows is not None and n_train_rows / size > 256:
        size *= 2
    return size
