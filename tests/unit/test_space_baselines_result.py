"""Search-space parsing and merging, the baselines' arithmetic, and the result's report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from automl.errors import ConfigError, SpaceError
from automl.metrics import check_metric, compute, compute_all, constant_predictions
from automl.results.result import BestTrial, ModelScore, TuneResult, comparison_rows, format_report
from automl.space import Choice, Fixed, FloatRange, IntRange, SearchSpace, default_space
from automl.space.baselines import rule_of_thumb_baselines


def test_yaml_file_with_every_form(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text("lr: {type: float, low: 1e-4, high: 1e-2, log: true}\n"
                    "activation: [relu, gelu]\nmax_epochs: 20\n"
                    "dropout: {type: fixed, value: 0.1}\n"
                    "batch_size: {type: categorical, choices: [16, 32]}\n")
    space = SearchSpace.from_file(path)
    assert space["lr"] == FloatRange(1e-4, 1e-2, log=True)
    assert space["activation"] == Choice(("relu", "gelu"))
    assert space["max_epochs"] == Fixed(20)
    assert space["dropout"] == Fixed(0.1)
    assert space["batch_size"] == Choice((16, 32))


def test_json_round_trip_of_the_default_space() -> None:
    space = default_space("regression")
    assert SearchSpace.from_dict(space.to_dict()) == space


def test_user_space_overrides_defaults_parameter_by_parameter() -> None:
    resolved = SearchSpace({"n_layers": IntRange(2, 5)}).resolve("multiclass", 1000)
    assert resolved["n_layers"] == IntRange(2, 5)
    assert resolved["lr"] == default_space("multiclass")["lr"]


def test_default_batch_sizes_follow_the_data() -> None:
    assert SearchSpace({}).resolve("binary", 1000)["batch_size"] == Choice((32, 64))
    assert SearchSpace({}).resolve("binary", 32_000)["batch_size"] == Choice((128, 256))


def test_default_batch_sizes_shrink_to_fit_small_data() -> None:
    assert SearchSpace({}).resolve("binary", 100)["batch_size"] == Choice((32, 64))
    assert SearchSpace({}).resolve("binary", 20)["batch_size"] == Fixed(20)


def test_user_batch_size_above_the_training_rows_is_an_error() -> None:
    with pytest.raises(ConfigError, match="batch_size 256") as info:
        SearchSpace({"batch_size": Fixed(256)}).resolve("binary", 100)
    assert info.value.field == "batch_size"


def test_loss_must_fit_the_task() -> None:
    with pytest.raises(SpaceError, match="does not fit a multiclass task"):
        SearchSpace({"loss": Fixed("mse")}).resolve("multiclass", 100)


def test_bad_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("lr: [1, 2\n")
    with pytest.raises(SpaceError, match=r"broken\.yaml is not valid YAML/JSON"):
        SearchSpace.from_file(path)


def test_neuron_count_rules() -> None:
    baselines = {b.name: b for b in rule_of_thumb_baselines(
        30, 3, "multiclass", max_epochs=50, patience=7, n_train_rows=20)}
    units = {name: b.config.model.hidden_units for name, b in baselines.items() if b.config}
    assert units["two_thirds_rule"] == (23,)  # 2/3 * 30 + 3
    assert units["mean_rule"] == (16,)  # (30 + 3) / 2 = 16.5, rounded to even
    assert units["upper_bound_rule"] == (59,)
    assert units["textbook_intermediate"] == (64, 64)
    assert units["linear"] == ()
    assert baselines["constant"].config is None
    trained = [b.config for b in baselines.values() if b.config]
    assert {(c.train.max_epochs, c.train.patience) for c in trained} == {(50, 7)}
    assert max(c.train.batch_size for c in trained) == 20  # clipped to the training rows


def test_constant_floor_scores() -> None:
    classes = constant_predictions("multiclass", np.array([0, 1, 1]), 4, n_classes=2)
    assert compute("accuracy", np.array([1, 1, 0, 1]), classes) == 0.75  # the majority class
    np.testing.assert_allclose(classes[0], [1 / 3, 2 / 3])  # log loss sees the frequencies
    values = constant_predictions("regression", np.array([1.0, 3.0]), 2, n_classes=0)
    assert compute("r2", np.array([2.0, 4.0]), values) == -1.0
    assert compute("rmse", np.array([2.0, 4.0]), values) == pytest.approx(np.sqrt(2.0))  # errs 0, 2


def _score(name: str, value: float) -> ModelScore:
    return ModelScore(name, "rule", {"hidden_units": [8], "activation": "relu"}, value, 0.01,
                      [value], value, 100, 1.0, 10.0)


def test_every_metric_that_cannot_be_computed_on_the_rows_is_left_out() -> None:
    one_class = np.zeros(4, dtype=int)
    probabilities = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.7, 0.3]])
    found = compute_all("binary", one_class, probabilities)
    assert "roc_auc" not in found and found["accuracy"] == 1.0  # AUC is undefined here


def test_the_constant_baseline_is_placed_on_the_search_plots_in_the_trials_metric() -> None:
    from automl.data import load_dataset
    from automl.run.finish import constant_baseline
    from automl.space.baselines import Baseline

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=100), "y": rng.normal(size=100) * 5000.0})
    prepared = load_dataset(frame, "y", seed=0)
    floor = constant_baseline(prepared, Baseline("constant", "mean", None), "rmse")
    assert floor.val_score is not None and floor.val_score > 1000  # RMSE, in the target's units
    assert floor.search_val_score is not None and floor.search_val_score <= 0.0  # R²


def test_report_and_json_name_the_winner() -> None:
    best = BestTrial(**vars(_score("tuned", 0.97)), trial_number=4, params={"lr": 0.01})
    result = TuneResult("accuracy", "multiclass", "data", best,
                        [_score("mean_rule", 0.95), _score("linear", 0.90)], 30, 20, 9, 1, 0,
                        "study", "sqlite:///x.db", 12.0, 20.0, 3)
    text = format_report(result)
    assert ("Tuning beat the best rule of thumb on validation (mean_rule) by 2.00 points of "
            "test accuracy, after 30 trials") in text
    assert text.index("mean_rule") < text.index("linear")
    data = result.to_dict()
    assert data["best"]["params"] == {"lr": 0.01} and data["best_baseline"] == "mean_rule"
    assert data["beats_best_baseline"] is True


def test_the_best_baseline_is_chosen_on_validation_not_test() -> None:
    lucky = _score("linear", 0.99)
    lucky.val_score = 0.80  # best on test by luck, poor on validation
    result = TuneResult("accuracy", "multiclass", "data", BestTrial(**vars(_score("t", 0.97))),
                        [_score("mean_rule", 0.95), lucky], 30, 30, 0, 0, 0, "s", "u", 1.0,
                        1.0, 3)
    assert result.best_baseline.name == "mean_rule"


def test_equal_scores_are_a_tie_not_a_loss() -> None:
    result = TuneResult("accuracy", "multiclass", "data",
                        BestTrial(**vars(_score("t", 0.9777777791023254))),
                        [_score("mean_rule", 0.9777777777777777)], 30, 30, 0, 0, 0, "s", "u",
                        1.0, 1.0, 3)
    assert result.gap == 0.0 and not result.beats_baselines
    assert "Tuning matched the best rule of thumb" in result.verdict()


@pytest.mark.parametrize(("metric", "tuned", "rival", "verdict"), [
    ("log_loss", 0.30, 0.25, "did not beat the best rule of thumb on validation (mean_rule): "
                             "it was behind by 0.0500 of test log loss (lower is better)"),
    ("log_loss", 0.25, 0.30, "beat the best rule of thumb on validation (mean_rule) by 0.0500 "
                             "of test log loss (lower is better)"),
    ("r2", 0.80, 0.80, "matched the best rule of thumb on validation (mean_rule) on test R²,"),
    ("rmse", 1250.0, 1500.0, "beat the best rule of thumb on validation (mean_rule) by "
                             "250.0000 of test RMSE (lower is better; in the target's units)"),
])
def test_the_verdict_reads_right_whichever_way_the_metric_points(
        metric: str, tuned: float, rival: float, verdict: str) -> None:
    task = "regression" if metric in ("r2", "rmse") else "binary"
    worse = _score("linear", rival * 1.5 if metric != "r2" else 0.1)  # worse on validation
    result = TuneResult(metric, task, "data", BestTrial(**vars(_score("t", tuned))),
                        [_score("mean_rule", rival), worse], 30, 30, 0, 0, 0, "s", "u", 1.0,
                        1.0, 3)
    assert result.best_baseline.name == "mean_rule"  # lower is better for log loss and RMSE
    assert verdict in result.verdict()
    assert result.beats_baselines is (verdict.startswith("beat"))
    rows = [row.name for row in comparison_rows(result)]
    assert rows == ["tuned (best trial)", "mean_rule", "linear"]  # best first, either way


def test_a_metric_that_does_not_fit_the_task_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="does not fit a regression target") as caught:
        check_metric("roc_auc", "regression")
    assert caught.value.field == "metric" and "rmse" in str(caught.value)
    assert check_metric(None, "binary") == "accuracy" and check_metric("f1", "multiclass")


def test_start_up_trials_scale_with_the_budget() -> None:
    from automl.options import TuneOptions
    from automl.run.plan import pruner_startup, settings_of, startup_trials
    from automl.space import SearchSpace

    assert [startup_trials(n) for n in (1, 9, 20, 30, 100)] == [3, 3, 6, 10, 10]
    assert [pruner_startup(n) for n in (1, 9, 20, 30, 100)] == [3, 3, 5, 5, 5]
    space = SearchSpace({}).resolve("binary", 500)
    settings = settings_of(TuneOptions(n_trials=20), space)
    assert (settings.tpe_startup_trials, settings.pruner_startup_trials) == (6, 5)
    assert settings_of(TuneOptions(n_trials=20, pruner_startup_trials=0),
                       space).pruner_startup_trials == 0
