"""Trials on a GPU: one trial on CUDA, and several small trials packed on one GPU by Ray.

The CUDA tests skip cleanly where torch sees no GPU (CI has none); the last test runs
where there is no GPU: asking for one there is refused by name before anything is stored.
Run them on a GPU machine with ``pytest -m gpu``; BENCHMARKS.md (GPU) has the figures.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch

import automl
from automl.configs import ModelConfig, TrainConfig, TrialConfig
from automl.data import PreparedData
from automl.errors import ConfigError
from workers.data import to_tensors
from workers.evaluate import evaluate_config

HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU (torch sees none)")
pytestmark = [pytest.mark.slow, pytest.mark.gpu]

SPACE = {"max_epochs": 12, "patience": 12, "n_layers": 1, "units": [32, 64]}


@needs_cuda
def test_a_trial_trains_on_the_gpu_as_well_as_on_the_cpu(digits: PreparedData) -> None:
    config = TrialConfig(ModelConfig((64,)), TrainConfig(lr=0.003, max_epochs=20, seed=3))
    on_gpu = evaluate_config(config, to_tensors(digits, "cuda"))
    on_cpu = evaluate_config(config, to_tensors(digits, "cpu"))
    assert on_gpu.val_score > 0.9
    # Same seed, same data; kernels differ in rounding, so allow a few rows' difference.
    assert abs(on_gpu.test_score - on_cpu.test_score) < 0.03


def max_overlap(trials: list[optuna.trial.FrozenTrial]) -> int:
    """The most trials that were running at the same moment."""
    events: list[tuple[datetime, int]] = []
    for trial in trials:
        assert trial.datetime_start is not None and trial.datetime_complete is not None
        events += [(trial.datetime_start, 1), (trial.datetime_complete, -1)]
    running = peak = 0
    for _, step in sorted(events, key=lambda event: (event[0], event[1])):
        running += step
        peak = max(peak, running)
    return peak


@needs_cuda
def test_fractional_gpus_pack_several_trials_on_one_gpu(tmp_path: Path,
                                                        digits_frame: pd.DataFrame) -> None:
    storage = f"sqlite:///{tmp_path / 'gpu.db'}"
    result = automl.tune(digits_frame, "target", space=SPACE, n_trials=12, n_seeds=1,
                         pruner="none", storage=storage, progress=False, gpus_per_trial=0.25)
    trials = optuna.load_study(study_name=result.study_name, storage=storage).trials
    assert [t.state for t in trials].count(optuna.trial.TrialState.COMPLETE) == 12
    assert {t.user_attrs["device"] for t in trials} == {"cuda:0"}
    assert max_overlap(trials) >= 2  # trials shared the GPU, not just took turns
    assert result.best.val_score > 0.9


@pytest.mark.skipif(HAS_CUDA, reason="checks the refusal where there is no GPU")
def test_asking_for_a_gpu_where_there_is_none_is_refused_before_anything_is_stored(
        tmp_path: Path, digits_frame: pd.DataFrame) -> None:
    db = tmp_path / "none.db"
    with pytest.raises(ConfigError, match="no GPU") as caught:
        automl.tune(digits_frame, "target", space=SPACE, n_trials=2, storage=f"sqlite:///{db}",
                    progress=False, gpus_per_trial=0.5)
    assert caught.value.field == "gpus_per_trial"
    assert not db.exists()
