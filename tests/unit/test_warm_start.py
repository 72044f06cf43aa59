"""The first trials of a study try the rules of thumb, as the space's nearest points."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from study_settings import study_settings

from automl.space import FloatRange, IntRange, default_space
from automl.space.baselines import rule_of_thumb_baselines
from automl.space.suggest import suggest_trial_config
from automl.study.studies import create_study, make_storage
from automl.study.warm_start import nearest, params_of, warm_start_params

BASELINES = rule_of_thumb_baselines(64, 10, "multiclass", max_epochs=100, patience=15,
                                    n_train_rows=1077)
SPACE = default_space("multiclass", 1077)


def _baseline(name: str):  # type: ignore[no-untyped-def]
    return next(b for b in BASELINES if b.name == name)


def test_the_defaults_baseline_is_a_point_of_the_default_space() -> None:
    config = _baseline("defaults").config
    assert config is not None
    params = params_of(config, SPACE)
    assert params is not None
    rebuilt = suggest_trial_config(optuna.trial.FixedTrial(params), SPACE, seed=config.train.seed)
    assert rebuilt.model == config.model
    # Everything trains as the baseline does, but for weight decay (the space's smallest)
    # and the settings the default family fixes (Adam's beta2, label smoothing).
    assert rebuilt.train == config.train.__class__(**{**vars(config.train),
                                                     "weight_decay": 1e-6, "beta2": 0.95,
                                                     "label_smoothing": 0.1})


def test_choices_the_space_lacks_rule_a_baseline_out() -> None:
    for name in ("textbook_shallow", "textbook_intermediate", "linear"):  # SGD, 0 layers
        config = _baseline(name).config
        assert config is not None and params_of(config, SPACE) is None, name


def test_defaults_first_identical_points_once_and_a_limit() -> None:
    points = warm_start_params(BASELINES, SPACE, limit=10)
    assert points[0]["n_units_l0"] == 100  # defaults
    assert [p["n_units_l0"] for p in points[1:]] == [53, 37, 127]  # the neuron-count rules
    assert len(warm_start_params(BASELINES, SPACE, limit=2)) == 2
    tiny = rule_of_thumb_baselines(2, 1, "regression", max_epochs=100, patience=15,
                                   n_train_rows=500)
    # 2 inputs: every neuron-count rule is clipped to the space's 32 units: one point.
    clipped = warm_start_params([b for b in tiny if b.name != "defaults"],
                                default_space("regression", 500), limit=10)
    assert [p["n_units_l0"] for p in clipped] == [32]


@pytest.mark.parametrize(("param", "value", "expected"), [
    (IntRange(32, 512, log=True), 3, 32),
    (IntRange(4, 64, step=4), 30, 28),
    (FloatRange(1e-6, 1e-2, log=True), 0.0, 1e-6),
    (FloatRange(0.0, 0.5, step=0.1), 0.26, 0.3),
])
def test_nearest_clips_and_keeps_the_step_grid(param, value, expected) -> None:  # type: ignore[no-untyped-def]
    assert nearest(param, value) == pytest.approx(expected)


def test_only_the_process_that_creates_the_study_enqueues_them(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    points = warm_start_params(BASELINES, SPACE, limit=3)
    for _ in range(2):  # a second worker loads the study: nothing enqueued twice
        study = create_study(url, "s", study_settings(), {}, storage=make_storage(url),
                             load_if_exists=True, first_trials=points)
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [t.system_attrs["fixed_params"] for t in waiting] == points
    assert all(t.user_attrs["warm_start"] for t in waiting)
    trial = study.ask()  # the first ask takes the first rule of thumb
    assert trial.suggest_int("n_units_l0", 32, 512, log=True) == 100
