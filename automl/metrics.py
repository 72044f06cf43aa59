"""The metrics a run can be judged on (``--metric``), computed with scikit-learn's.

Trials are always chosen on the validation loss (cross-entropy, or MSE of the
standardised target); the metric is what the final comparison reports and ranks the
models by: the table's headline, the verdict, the report and the dashboard note. The JSON
result carries every metric that applies to the task, for every model.

Classification metrics take class codes and class probabilities (binary: two columns);
regression metrics take values in the target's own units (RMSE and MAE are in them).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from automl.errors import ConfigError

CLASSIFICATION, REGRESSION = ("binary", "multiclass"), ("regression",)
PERMUTATION_REPEATS = 5  # shuffles per column for the delivered model's column importance
Scorer = Callable[[np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class Metric:
    """One metric: how it is computed, which tasks it fits, and how it reads.

    A difference reads ``shown(gap) + " " + unit`` ("1.25 points of test accuracy": the
    score times ``scale``, with ``digits`` decimals)."""

    name: str
    label: str
    tasks: tuple[str, ...]
    greater_is_better: bool
    scorer: Scorer
    scale: float = 1.0
    unit: str = ""
    digits: int = 4

    def better(self, a: float, b: float) -> float:
        """How much better ``a`` is than ``b`` (positive: better), in this metric's units."""
        return (a - b) if self.greater_is_better else (b - a)

    def shown(self, value: float) -> str:
        return f"{value * self.scale:.{self.digits}f}"

    def ranking(self, value: float | None) -> float:
        """A key that sorts better scores higher (None lowest)."""
        if value is None:
            return -math.inf
        return value if self.greater_is_better else -value


def _sk() -> Any:
    """scikit-learn's metrics, imported when a score is computed (``import automl`` stays
    light: every Ray worker imports it)."""
    from sklearn import metrics

    return metrics


def _labels(probabilities: np.ndarray) -> np.ndarray:
    return np.asarray(probabilities).argmax(axis=1)


def _roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    if p.shape[1] == 2:
        return float(_sk().roc_auc_score(y, p[:, 1]))
    return float(_sk().roc_auc_score(y, p, multi_class="ovr", labels=np.arange(p.shape[1])))


def _f1(y: np.ndarray, p: np.ndarray) -> float:
    average = "binary" if p.shape[1] == 2 else "macro"
    return float(_sk().f1_score(y, _labels(p), average=average, zero_division=0.0))


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    return float(_sk().log_loss(y, np.clip(p, 1e-15, 1.0), labels=np.arange(p.shape[1])))


def _r2(y: np.ndarray, v: np.ndarray) -> float:
    total = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - v) ** 2).sum()) / total if total > 0 else 0.0


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("accuracy", "test accuracy", CLASSIFICATION, True,
           lambda y, p: float(_sk().accuracy_score(y, _labels(p))), 100,
           "points of test accuracy", 2),
    Metric("balanced_accuracy", "test balanced accuracy", CLASSIFICATION, True,
           lambda y, p: float(_sk().balanced_accuracy_score(y, _labels(p))), 100,
           "points of test balanced accuracy", 2),
    Metric("roc_auc", "test ROC AUC", CLASSIFICATION, True, _roc_auc, 1, "of test ROC AUC"),
    Metric("log_loss", "test log loss", CLASSIFICATION, False, _log_loss, 1,
           "of test log loss (lower is better)"),
    Metric("f1", "test F1", CLASSIFICATION, True, _f1, 100, "points of test F1", 2),
    Metric("r2", "test R²", REGRESSION, True, _r2, 1, "of test R²"),
    Metric("rmse", "test RMSE", REGRESSION, False,
           lambda y, v: float(np.sqrt(np.mean((y - v) ** 2))), 1,
           "of test RMSE (lower is better; in the target's units)"),
    Metric("mae", "test MAE", REGRESSION, False,
           lambda y, v: float(np.mean(np.abs(y - v))), 1,
           "of test MAE (lower is better; in the target's units)"),
)}


def default_metric(task: str) -> str:
    """Accuracy for classification, R² for regression."""
    return "r2" if task == "regression" else "accuracy"


def check_metric(name: str | None, task: str) -> str:
    """``name`` (or the task's default when None) if it fits ``task``; else a
    :class:`ConfigError` naming ``metric`` and the metrics that fit."""
    if name is None:
        return default_metric(task)
    fitting = [m.name for m in METRICS.values() if task in m.tasks]
    if name not in METRICS:
        raise ConfigError(f"unknown metric {name!r}: use one of {', '.join(fitting)}",
                          field="metric")
    if task not in METRICS[name].tasks:
        raise ConfigError(f"metric {name!r} does not fit a {task} target: use one of "
                          f"{', '.join(fitting)}", field="metric")
    return name


def compute(name: str, y: np.ndarray, predictions: np.ndarray) -> float:
    """``name`` of predictions against the truth: class codes and probabilities, or values
    in the target's units."""
    return METRICS[name].scorer(np.asarray(y), np.asarray(predictions))


def compute_all(task: str, y: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """Every metric that applies to ``task``; one that cannot be computed on these rows
    (ROC AUC on a split with one class, log loss of non-finite outputs) is left out."""
    found = {}
    for metric in (m for m in METRICS.values() if task in m.tasks):
        try:
            value = compute(metric.name, y, predictions)
        except ValueError:  # e.g. non-finite outputs for log loss
            continue
        if math.isfinite(value):  # ROC AUC with one class in the rows is NaN
            found[metric.name] = value
    return found


def constant_predictions(task: str, y_train: np.ndarray, n_rows: int, n_classes: int,
                         target_std: float = 1.0) -> np.ndarray:
    """What the constant baseline predicts for ``n_rows`` rows: the training split's class
    frequencies (its majority class the label), or its mean in the target's units."""
    if task == "regression":
        return np.full(n_rows, float(np.mean(y_train)) * target_std)
    counts = np.bincount(np.asarray(y_train, dtype=np.int64), minlength=n_classes)
    return np.tile(counts / counts.sum(), (n_rows, 1))
