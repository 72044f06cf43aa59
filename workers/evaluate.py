"""Train one configuration under the common protocol and measure it on every split."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from automl.configs import TrialConfig
from workers.cohort import Member, cohort_key, train_in_turn
from workers.cohort_size import cohort_capacity
from workers.data import TensorSplits, all_metrics, metric_score, predict, score
from workers.ensemble import combine
from workers.model import build_model, count_trainable, fit_bins
from workers.train import EpochCallback, TrainOutcome, train_model


@dataclass
class Evaluation:
    """Scores of one trained model: in the run's metric, and ``search_val_score`` in the
    one its trials record (accuracy or R², what the report's search plots show)."""

    val_loss: float
    val_score: float
    test_score: float
    n_parameters: int
    epochs: int
    seconds: float
    stop_reason: str
    detail: str = ""
    history: list[float] = field(default_factory=list)  # validation loss per epoch
    search_val_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit(config: TrialConfig, data: TensorSplits,
        on_epoch: EpochCallback | None = None) -> tuple[torch.nn.Module, TrainOutcome]:
    """Build the model (seeded by ``config.train.seed``) and train it."""
    torch.manual_seed(config.train.seed)
    bins = fit_bins(config.model, data.x_train, data.n_numeric)
    model = build_model(config.model, data.n_inputs, data.n_outputs, data.task,
                        data.n_numeric, bins).to(data.device)
    return model, train_model(model, config.train, data, on_epoch)


def evaluate_config(config: TrialConfig, data: TensorSplits,
                    on_epoch: EpochCallback | None = None) -> Evaluation:
    """Train ``config`` and score its best weights on the validation and test splits."""
    return measure(*fit(config, data, on_epoch), data)


def measure(model: torch.nn.Module, outcome: TrainOutcome, data: TensorSplits,
            metric: str | None = None) -> Evaluation:
    """Score a trained model on the validation and test splits, in ``metric`` (a name of
    :mod:`automl.metrics`; None: accuracy or R²)."""
    val_outputs = predict(model, data.x_val)  # once: both validation scores read it
    return Evaluation(
        val_loss=outcome.best_val_loss,
        val_score=scored_in(metric, data, val_outputs, data.y_val),
        test_score=scored_in(metric, data, predict(model, data.x_test), data.y_test),
        n_parameters=count_trainable(model),
        epochs=outcome.epochs_run,
        seconds=outcome.seconds,
        stop_reason=outcome.stop_reason,
        detail=outcome.detail,
        history=[float(v) for v in outcome.val_losses],
        search_val_score=score(data.task, val_outputs, data.y_val),
    )


@dataclass
class SeedsEvaluation:
    """One configuration trained from several seeds: each seed's evaluation, and the
    scores of their ensemble (``model``, the averaged seeds: what a user gets)."""

    runs: list[Evaluation]
    ensemble_val_score: float
    ensemble_test_score: float
    model: torch.nn.Module
    ensemble_metrics: dict[str, float] = field(default_factory=dict)  # every one, on test

    def to_dict(self) -> dict[str, Any]:
        """The JSON form the driver and the service store (without the model)."""
        return {"runs": [run.to_dict() for run in self.runs],
                "ensemble": {"val_score": self.ensemble_val_score,
                             "test_score": self.ensemble_test_score,
                             "metrics": self.ensemble_metrics}}


def evaluate_seeds(config: TrialConfig, seeds: Sequence[int], data: TensorSplits,
                   on_epoch: EpochCallback | None = None,
                   metric: str | None = None) -> SeedsEvaluation:
    """Train ``config`` once per seed, score each model and the ensemble of all of them
    in ``metric`` (None: accuracy or R²), and the ensemble on the test split in every
    metric that applies."""
    trained = train_seeds([config.with_seed(seed) for seed in seeds], data, on_epoch)
    models = [model for model, _ in trained]
    runs = [measure(model, outcome, data, metric) for model, outcome in trained]
    ensemble = combine(models, data.task)
    test_outputs = predict(ensemble, data.x_test)
    return SeedsEvaluation(runs,
                           scored_in(metric, data, predict(ensemble, data.x_val), data.y_val),
                           scored_in(metric, data, test_outputs, data.y_test), ensemble,
                           all_metrics(data, test_outputs, data.y_test))


def scored_in(metric: str | None, data: TensorSplits, outputs: torch.Tensor,
              y: torch.Tensor) -> float:
    """``metric`` of these outputs (None: accuracy or R², what trials record)."""
    return score(data.task, outputs, y) if metric is None \
        else metric_score(metric, data, outputs, y)


Trained = tuple[torch.nn.Module, TrainOutcome]


def train_seeds(configs: Sequence[TrialConfig], data: TensorSplits,
                on_epoch: EpochCallback | None = None) -> list[Trained]:
    """Train ``configs`` (one configuration, several seeds): as one cohort where this
    device makes that pay (:mod:`workers.cohort_size`), else one after another."""
    first = configs[0]
    capacity = cohort_capacity(first.model, data.n_inputs, data.n_outputs,
                               first.train.batch_size, data.device, data.n_numeric)
    if len(configs) < 2 or capacity < 2 or cohort_key(first) is None:
        return [fit(config, data, on_epoch) for config in configs]
    trained: dict[int, Trained] = {}

    def done(member: Member, model: torch.nn.Module, outcome: TrainOutcome) -> None:
        assert isinstance(member.key, int)
        trained[member.key] = (model, outcome)

    train_in_turn([Member(i, config, on_epoch) for i, config in enumerate(configs)], data,
                  done, capacity)
    return [trained[i] for i in range(len(configs))]
