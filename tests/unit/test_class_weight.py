"""``class_weight: balanced`` (issue 21): each class weighs n / (classes x its count) in
the training loss, for the tuned model and the baselines alike."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from sklearn.datasets import make_classification

from automl.configs import ModelConfig, TrainConfig, TrialConfig
from automl.data import load_dataset
from automl.errors import SpaceError
from automl.metrics import compute
from automl.run.plan import baselines_for
from automl.space import SearchSpace
from workers.data import in_units, predict, to_tensors
from workers.evaluate import fit
from workers.optim import make_loss

torch.set_num_threads(1)


def test_balanced_weights_are_scikit_learns() -> None:
    y = torch.tensor([0, 0, 0, 1, 2, 2])
    loss = make_loss("multiclass", TrainConfig(class_weight="balanced"), y, n_classes=3)
    torch.testing.assert_close(loss.weight, torch.tensor([6 / 9, 6 / 3, 6 / 6]))
    assert make_loss("multiclass", TrainConfig(), y, n_classes=3).weight is None


def test_binary_weights_make_a_weighted_mean_of_the_rows_losses() -> None:
    y = torch.tensor([0.0, 0.0, 0.0, 1.0])
    logits = torch.tensor([0.3, -1.0, 2.0, 0.5])
    loss = make_loss("binary", TrainConfig(class_weight="balanced"), y)
    rows = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
    weights = torch.tensor([4 / 6, 4 / 6, 4 / 6, 4 / 2])
    torch.testing.assert_close(loss(logits, y), (rows * weights).sum() / weights.sum())


def imbalanced(seed: int = 0) -> pd.DataFrame:
    x, y = make_classification(n_samples=1200, n_features=6, n_informative=3,
                               weights=[0.93, 0.07], class_sep=0.6, random_state=seed)
    return pd.DataFrame(x, columns=[f"x{i}" for i in range(6)]).assign(target=y)


def test_balanced_weights_raise_the_minority_classs_recall() -> None:
    prepared = load_dataset(imbalanced(), "target", seed=0)
    data = to_tensors(prepared)
    recalls = {}
    for weights in ("none", "balanced"):
        config = TrialConfig(ModelConfig((32,), "relu"),
                             TrainConfig(max_epochs=20, lr=3e-3, class_weight=weights))
        model, _ = fit(config, data)
        y, probabilities = in_units("binary", predict(model, data.x_test), data.y_test)
        recalls[weights] = compute("balanced_accuracy", y, probabilities)
    assert recalls["balanced"] > recalls["none"] + 0.05


def test_the_space_sets_it_for_the_baselines_too_and_refuses_a_wrong_value() -> None:
    prepared = load_dataset(imbalanced(), "target", seed=0)
    space = SearchSpace.from_dict({"class_weight": "balanced"}).resolve(
        prepared.task, len(prepared.x_train), 6)
    trained = [b.config for b in baselines_for(prepared, space) if b.config is not None]
    assert trained and {c.train.class_weight for c in trained} == {"balanced"}
    plain = SearchSpace.from_dict({}).resolve(prepared.task, len(prepared.x_train), 6)
    assert {b.config.train.class_weight for b in baselines_for(prepared, plain)
            if b.config is not None} == {"none"}
    with pytest.raises(SpaceError, match="class_weight"):
        SearchSpace.from_dict({"class_weight": "inverse"})
