"""The MLP builder and the pure-torch training loop."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from automl.configs import ModelConfig, TrainConfig, TrialConfig, count_parameters
from workers.data import predict, score, to_tensors, validation_loss
from workers.evaluate import evaluate_config, fit
from workers.model import build_model, count_trainable
from workers.train import train_model

torch.set_num_threads(1)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "elu", "selu", "gelu", "tanh",
                                        "sigmoid"])
def test_builder_layers_and_parameter_count(activation: str) -> None:
    config = ModelConfig((32, 16), activation, batch_norm=True, dropout=0.2)
    model = build_model(config, 10, 3)
    assert model(torch.zeros(4, 10)).shape == (4, 3)
    assert count_trainable(model) == count_parameters(10, 3, config)
    dropout = nn.AlphaDropout if activation == "selu" else nn.Dropout
    assert sum(isinstance(m, dropout) for m in model) == 2
    assert sum(isinstance(m, nn.BatchNorm1d) for m in model) == 2


def test_builder_init_matches_activation() -> None:
    torch.manual_seed(0)
    relu = build_model(ModelConfig((512,), "relu"), 256, 1)[0].weight
    selu = build_model(ModelConfig((512,), "selu"), 256, 1)[0].weight
    assert relu.std().item() == pytest.approx(math.sqrt(2 / 256), rel=0.05)  # He
    assert selu.std().item() == pytest.approx(math.sqrt(1 / 256), rel=0.05)  # LeCun


def test_linear_model_has_no_hidden_layer() -> None:
    assert len(build_model(ModelConfig(()), 5, 2)) == 1


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "nadam", "rmsprop", "adamax", "adamw"])
@pytest.mark.parametrize("schedule", ["constant", "step", "exponential", "plateau", "onecycle",
                                      "cosine"])
def test_loss_goes_down_for_every_optimizer_and_schedule(blobs, optimizer, schedule) -> None:
    data = to_tensors(blobs)
    lr = 0.05 if optimizer == "sgd" else 0.01
    config = TrialConfig(ModelConfig((16,)), TrainConfig(optimizer=optimizer, lr=lr,
                         momentum=0.9, lr_schedule=schedule, batch_size=16, max_epochs=20,
                         patience=20))
    torch.manual_seed(0)
    untrained = validation_loss(data.task, predict(build_model(config.model, 8, 1), data.x_val),
                                data.y_val)
    model, outcome = fit(config, data)
    assert outcome.best_val_loss < 0.5 * untrained
    assert score(data.task, predict(model, data.x_test), data.y_test) > 0.8


@pytest.mark.parametrize("loss", ["mse", "mae", "huber"])
def test_regression_losses_train(diabetes, loss) -> None:
    data = to_tensors(diabetes)
    config = TrialConfig(ModelConfig((32,)), TrainConfig(loss=loss, lr=0.01, max_epochs=30))
    result = evaluate_config(config, data)
    assert result.val_score > 0.35  # R² of diabetes with a small MLP is about 0.45
    assert result.test_score > 0.0  # and it beats predicting the mean


def test_l1_weight_decay_and_clipping_run(blobs) -> None:
    config = TrainConfig(l1=1e-3, weight_decay=1e-3, grad_clip_norm=1.0, max_epochs=3)
    outcome = train_model(build_model(ModelConfig((8,)), 8, 1), config, to_tensors(blobs))
    assert outcome.epochs_run == 3 and outcome.stop_reason == "completed"


def test_early_stopping_restores_the_best_weights(digits) -> None:
    data = to_tensors(digits)
    config = TrainConfig(lr=0.03, max_epochs=200, patience=3, batch_size=32)
    model = build_model(ModelConfig((256, 256)), data.n_inputs, data.n_outputs)
    outcome = train_model(model, config, data)
    assert outcome.stop_reason == "early_stopped"
    assert outcome.epochs_run == outcome.best_epoch + 1 + config.patience
    restored = validation_loss(data.task, predict(model, data.x_val), data.y_val)
    assert restored == pytest.approx(outcome.best_val_loss, rel=1e-5)
    assert restored < outcome.val_losses[-1]


def test_divergence_ends_the_run_with_a_reason(blobs) -> None:
    config = TrainConfig(optimizer="sgd", lr=1e6, max_epochs=20)
    outcome = train_model(build_model(ModelConfig((16,)), 8, 1), config, to_tensors(blobs))
    assert outcome.stop_reason == "diverged"
    assert outcome.detail.startswith("non_finite_loss@epoch")
    assert outcome.epochs_run < 20


class TurnsNaN(nn.Module):
    """A model whose output becomes NaN from a given epoch on (late divergence, R2)."""

    def __init__(self, inner: nn.Module, nan_from_call: int):
        super().__init__()
        self.inner, self.calls, self.nan_from_call = inner, 0, nan_from_call

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out = self.inner(x)
        return out * float("nan") if self.calls >= self.nan_from_call else out


def test_late_nan_is_caught_at_its_epoch(blobs) -> None:
    data = to_tensors(blobs)
    config = TrainConfig(batch_size=256, max_epochs=10)  # 1 train batch + 1 val batch per epoch
    model = TurnsNaN(build_model(ModelConfig((8,)), 8, 1), nan_from_call=5)  # epoch 2's batch
    outcome = train_model(model, config, data)
    assert (outcome.stop_reason, outcome.detail) == ("diverged", "non_finite_loss@epoch2")
    assert len(outcome.val_losses) == 2 and all(map(math.isfinite, outcome.val_losses))


def test_callback_sees_every_epoch_and_can_stop(blobs) -> None:
    seen: list[tuple[int, float]] = []

    def on_epoch(epoch: int, val_loss: float) -> bool:
        seen.append((epoch, val_loss))
        return epoch == 3

    outcome = train_model(build_model(ModelConfig((8,)), 8, 1), TrainConfig(max_epochs=50),
                          to_tensors(blobs), on_epoch)
    assert outcome.stop_reason == "stopped"
    assert [e for e, _ in seen] == [0, 1, 2, 3]
    assert [v for _, v in seen] == outcome.val_losses


def test_training_is_reproducible_for_a_seed(blobs) -> None:
    config = TrialConfig(ModelConfig((16,), dropout=0.2), TrainConfig(max_epochs=3, seed=7))
    first = evaluate_config(config, to_tensors(blobs))
    second = evaluate_config(config, to_tensors(blobs))
    assert first.val_loss == second.val_loss
