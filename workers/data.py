"""Dataset splits as tensors on the trial's device, and batched evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from automl.configs import Task

if TYPE_CHECKING:  # the tensors alone need torch only (bench/cohort.py on a bare GPU machine)
    from automl.data import PreparedData

EVAL_BATCH = 8192


@dataclass
class TensorSplits:
    """Train/validation/test tensors, kept on one device for the whole trial."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    task: Task
    n_outputs: int
    n_numeric: int = 0  # the first columns are numeric (standardised); the rest are 0/1
    target_std: float = 1.0  # regression: one standardised unit in the target's own units

    @property
    def n_inputs(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def device(self) -> torch.device:
        return self.x_train.device


def to_tensors(data: PreparedData, device: torch.device | str = "cpu") -> TensorSplits:
    """Move the prepared arrays to ``device`` once; targets get the dtype the loss wants."""
    y_dtype = torch.long if data.task == "multiclass" else torch.float32

    def tensor(array: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.as_tensor(array, dtype=dtype, device=device)

    return TensorSplits(
        tensor(data.x_train), tensor(data.y_train, y_dtype),
        tensor(data.x_val), tensor(data.y_val, y_dtype),
        tensor(data.x_test), tensor(data.y_test, y_dtype),
        data.task, data.n_outputs, len(data.preprocessor.numeric_columns),
        float(data.preprocessor.target_std),
    )


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Raw outputs (logits or scaled values) in large batches, in eval mode."""
    model.eval()
    return torch.cat([model(x[i:i + EVAL_BATCH]) for i in range(0, len(x), EVAL_BATCH)])


def validation_loss(task: Task, outputs: torch.Tensor, y: torch.Tensor) -> float:
    """The fixed objective every trial is compared on, whatever loss it trained with:
    cross-entropy for classification, MSE on the standardised target for regression."""
    if task == "multiclass":
        return float(functional.cross_entropy(outputs, y))
    if task == "binary":
        return float(functional.binary_cross_entropy_with_logits(outputs.squeeze(1), y))
    return float(functional.mse_loss(outputs.squeeze(1), y))


def in_units(task: Task, outputs: torch.Tensor, y: torch.Tensor,
             target_std: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The truth and the predictions as :mod:`automl.metrics` takes them: class codes and
    class probabilities (two columns for binary), or values scaled to the target's units
    (its mean left out: no metric here depends on it)."""
    y_np = y.detach().cpu().numpy()
    if task == "multiclass":
        return y_np.astype(np.int64), torch.softmax(outputs, dim=1).cpu().numpy()
    if task == "binary":
        positive = torch.sigmoid(outputs.squeeze(1)).cpu().numpy()
        return y_np.astype(np.int64), np.stack([1 - positive, positive], axis=1)
    return y_np * target_std, outputs.squeeze(1).cpu().numpy() * target_std


def metric_score(metric: str, data: TensorSplits, outputs: torch.Tensor,
                 y: torch.Tensor) -> float:
    """``metric`` (a name of :mod:`automl.metrics`) of these outputs against ``y``."""
    from automl.metrics import compute  # scikit-learn: not on a bare GPU bench machine

    return compute(metric, *in_units(data.task, outputs, y, data.target_std))


def all_metrics(data: TensorSplits, outputs: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Every metric that applies to the task, of these outputs against ``y``."""
    from automl.metrics import compute_all

    return compute_all(data.task, *in_units(data.task, outputs, y, data.target_std))


def score(task: Task, outputs: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy for classification, R² for regression (what a trial records)."""
    if task == "multiclass":
        return float((outputs.argmax(dim=1) == y).float().mean())
    if task == "binary":
        return float(((outputs.squeeze(1) > 0).float() == y).float().mean())
    residual = ((outputs.squeeze(1) - y) ** 2).sum()
    total = ((y - y.mean()) ** 2).sum()
    return float(1 - residual / total) if float(total) > 0 else 0.0
