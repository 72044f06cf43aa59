"""Train one configuration under the common protocol and measure it on every split."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from automl.configs import TrialConfig
from workers.data import TensorSplits, predict, score
from workers.model import build_mlp, count_trainable
from workers.train import EpochCallback, TrainOutcome, train_model


@dataclass
class Evaluation:
    """Scores of one trained model (``metric`` is accuracy or R²)."""

    val_loss: float
    val_score: float
    test_score: float
    n_parameters: int
    epochs: int
    seconds: float
    stop_reason: str
    detail: str = ""
    history: list[float] = field(default_factory=list)  # validation loss per epoch

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit(config: TrialConfig, data: TensorSplits,
        on_epoch: EpochCallback | None = None) -> tuple[torch.nn.Module, TrainOutcome]:
    """Build the MLP (seeded by ``config.train.seed``) and train it."""
    torch.manual_seed(config.train.seed)
    model = build_mlp(config.model, data.n_inputs, data.n_outputs).to(data.device)
    return model, train_model(model, config.train, data, on_epoch)


def evaluate_config(config: TrialConfig, data: TensorSplits,
                    on_epoch: EpochCallback | None = None) -> Evaluation:
    """Train ``config`` and score its best weights on the validation and test splits."""
    return measure(*fit(config, data, on_epoch), data)


def measure(model: torch.nn.Module, outcome: TrainOutcome, data: TensorSplits) -> Evaluation:
    """Score a trained model on the validation and test splits."""
    return Evaluation(
        val_loss=outcome.best_val_loss,
        val_score=score(data.task, predict(model, data.x_val), data.y_val),
        test_score=score(data.task, predict(model, data.x_test), data.y_test),
        n_parameters=count_trainable(model),
        epochs=outcome.epochs_run,
        seconds=outcome.seconds,
        stop_reason=outcome.stop_reason,
        detail=outcome.detail,
        history=[float(v) for v in outcome.val_losses],
    )
