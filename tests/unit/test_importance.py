"""Permutation importance per column of the user's table (workers.importance)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from automl.configs import ModelConfig, TrainConfig, TrialConfig
from automl.data import load_dataset
from workers.data import to_tensors
from workers.evaluate import fit
from workers.importance import column_groups, permutation_importance

torch.set_num_threads(1)


def table(n: int = 600) -> pd.DataFrame:
    """'signal' decides the class; 'noise' and 'colour' do not; 'signal' has gaps and
    'day' is a date, so every kind of encoded input is there."""
    rng = np.random.default_rng(0)
    signal = rng.normal(size=n)
    frame = pd.DataFrame({"signal": signal, "noise": rng.normal(size=n),
                          "colour": rng.choice(["red", "green", "blue"], n),
                          "day": pd.date_range("2024-01-01", periods=n, freq="D")})
    frame.loc[::25, "signal"] = np.nan
    return frame.assign(target=np.where(signal > 0, "yes", "no"))


def test_each_column_owns_the_inputs_it_became_and_every_input_has_one_owner() -> None:
    pre = load_dataset(table(), "target", seed=0).preprocessor
    groups = column_groups(pre)
    assert list(groups) == ["signal", "noise", "day", "colour"]
    assert sorted(i for indices in groups.values() for i in indices) == \
        list(range(pre.n_features))
    assert len(groups["signal"]) == 2 and len(groups["colour"]) == 3  # + its 'was missing'
    assert len(groups["day"]) == 5  # year, month, day of week, day of year, timestamp


def test_the_column_that_decides_the_target_comes_first() -> None:
    prepared = load_dataset(table(), "target", seed=0)
    data = to_tensors(prepared)
    config = TrialConfig(ModelConfig((32,), "relu"), TrainConfig(max_epochs=30, lr=3e-3))
    model, _ = fit(config, data)
    found = permutation_importance(model, data, prepared.preprocessor, "accuracy", seed=0)
    assert found[0].column == "signal"
    assert found[0].importance > 0.2  # shuffling it costs over 20 points of accuracy
    others = {c.column: c for c in found[1:]}
    assert all(abs(c.importance) < 0.1 for c in others.values())
    assert set(others) == {"noise", "colour", "day"}
    # the same seed shuffles the same way: a reproducible table
    again = permutation_importance(model, data, prepared.preprocessor, "accuracy", seed=0)
    assert again == found
