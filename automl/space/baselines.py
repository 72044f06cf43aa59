"""The rule-of-thumb baselines every run is compared against.

Each baseline is a plain :class:`TrialConfig` (so it is trained by the same loop, on the
same split, with the same epoch budget, early stopping and seeds as the tuned model),
except the constant floor, which needs no training.

| name | rule |
| --- | --- |
| two_thirds_rule | 1 hidden layer of round(2/3 * inputs + outputs) ReLU units |
| mean_rule | 1 hidden layer of round((inputs + outputs) / 2) units ("between input and output") |
| upper_bound_rule | 1 hidden layer of 2 * inputs - 1 units ("under twice the inputs") |
| textbook_shallow | 1 hidden layer of 64 sigmoid units, SGD lr 0.1, batch 128 |
| textbook_intermediate | 2 hidden layers of 64 ReLU units, SGD lr 0.1, batch 128 |
| defaults | 1 hidden layer of 100 ReLU units (scikit-learn's default), Adam lr 1e-3, batch 32 |
| linear | no hidden layer: logistic / linear regression, Adam lr 1e-3, batch 32 |
| constant | majority class or training-mean predictor, no training |

The three neuron-count rules train like ``defaults`` (ReLU, Adam lr 1e-3, batch 32).
"""

from __future__ import annotations

from dataclasses import dataclass

from automl.configs import ModelConfig, Task, TrainConfig, TrialConfig


@dataclass(frozen=True)
class Baseline:
    """One heuristic: its name, the rule in words and the config (None: constant floor)."""

    name: str
    rule: str
    config: TrialConfig | None


def rule_of_thumb_baselines(n_inputs: int, n_outputs: int, task: Task, *, max_epochs: int,
                            patience: int, n_train_rows: int,
                            class_weight: str = "none") -> list[Baseline]:
    """The baselines for a dataset with ``n_inputs`` encoded features and ``n_outputs``;
    ``class_weight`` is the run's (the same protocol as the tuned model's)."""
    loss = "mse" if task == "regression" else "cross_entropy"
    weights = class_weight if task != "regression" else "none"

    def train(optimizer: str = "adam", lr: float = 1e-3, batch: int = 32) -> TrainConfig:
        return TrainConfig(optimizer=optimizer, lr=lr, batch_size=min(batch, n_train_rows),
                           max_epochs=max_epochs, patience=patience, loss=loss,
                           class_weight=weights)

    def one_layer(units: int, activation: str = "relu") -> ModelConfig:
        return ModelConfig((max(1, units),), activation)

    return [
        Baseline("two_thirds_rule", "2/3 of the inputs plus the outputs",
                 TrialConfig(one_layer(round(2 / 3 * n_inputs + n_outputs)), train())),
        Baseline("mean_rule", "between input and output size: their mean",
                 TrialConfig(one_layer(round((n_inputs + n_outputs) / 2)), train())),
        Baseline("upper_bound_rule", "just under twice the inputs",
                 TrialConfig(one_layer(2 * n_inputs - 1), train())),
        Baseline("textbook_shallow", "64 sigmoid units, SGD, batch 128",
                 TrialConfig(one_layer(64, "sigmoid"), train("sgd", 0.1, 128))),
        Baseline("textbook_intermediate", "2 x 64 ReLU units, SGD lr 0.1",
                 TrialConfig(ModelConfig((64, 64), "relu"), train("sgd", 0.1, 128))),
        Baseline("defaults", "100 ReLU units, Adam lr 1e-3, batch 32",
                 TrialConfig(one_layer(100), train())),
        Baseline("linear", "no hidden layer (logistic / linear model)",
                 TrialConfig(ModelConfig(()), train())),
        Baseline("constant", "majority class / mean of the training target", None),
    ]
