"""The plain-words diagnostics on constructed trials whose right answer is known."""

from __future__ import annotations

import datetime
from typing import Any

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from automl.results.diagnostics import (
    audit_diagnostic,
    audit_pruning,
    edge_of_range,
    failures,
    score_noise,
    val_rows,
    validation_resolution,
)
from automl.results.epochs import epoch_account
from automl.space import FloatRange, IntRange, SearchSpace
from automl.study.pruning import AUDIT_ATTR

T0 = datetime.datetime(2024, 1, 1)


def trial(number: int, value: float | None = None, *, state: TrialState = TrialState.COMPLETE,
          **attrs: Any) -> FrozenTrial:
    """A finished trial, completed ``number`` minutes after T0 (so order = number)."""
    made = create_trial(state=state, value=value if state == TrialState.COMPLETE else None,
                        params={"lr": 1e-3}, distributions={"lr": FloatDistribution(1e-4, 1e-2,
                                                                                     log=True)},
                        user_attrs=attrs)
    made.number = number
    made.datetime_complete = T0 + datetime.timedelta(minutes=number)
    return made


def in_study(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """Round-trip through an in-memory study, as the report reads them."""
    study = optuna.create_study()
    for t in trials:
        study.add_trial(t)
    return study.get_trials()


SPACE = SearchSpace({"lr": FloatRange(1e-4, 1e-2, log=True), "n_layers": IntRange(1, 3),
                     "units": IntRange(32, 512, log=True), "dropout": FloatRange(0.0, 0.5),
                     "momentum": FloatRange(0.8, 0.99)})


# -- edge of the search range -------------------------------------------------------------


def test_best_lr_at_the_top_edge_of_a_log_range_is_a_warning() -> None:
    (found,) = edge_of_range({"lr": 0.0098}, SPACE)
    assert found.code == "edge_of_range" and found.severity == "warning"
    assert "learning rate (lr)" in found.message and "0.0098" in found.message
    assert "top edge" in found.message and "[0.0001, 0.01]" in found.message
    assert "widen the range upwards" in found.message


def test_best_lr_in_the_middle_of_its_range_says_nothing() -> None:
    assert edge_of_range({"lr": 1e-3}, SPACE) == []
    # 3e-3 is 76% of the way up the log range (but 30% on a linear scale): no edge either
    assert edge_of_range({"lr": 3e-3}, SPACE) == []


def test_log_scale_decides_the_edge_of_a_log_range() -> None:
    # 1.2e-4 is 1.2% of the linear range but 4% of the log range: the bottom edge
    (found,) = edge_of_range({"lr": 1.2e-4}, SPACE)
    assert "bottom edge" in found.message and "downwards" in found.message


def test_whole_numbers_at_a_bound_and_the_widths_of_each_layer() -> None:
    (layers,) = edge_of_range({"n_layers": 3}, SPACE)
    assert "top edge" in layers.message and "number of hidden layers (n_layers)" in layers.message
    assert edge_of_range({"n_layers": 2}, SPACE) == []
    (width,) = edge_of_range({"n_units_l0": 128, "n_units_l1": 500}, SPACE)
    assert "width of hidden layer 2 (n_units_l1)" in width.message and "500" in width.message


def test_linear_range_bottom_edge() -> None:
    (found,) = edge_of_range({"momentum": 0.805}, SPACE)
    assert found.severity == "warning" and "bottom edge" in found.message
    assert edge_of_range({"momentum": 0.9}, SPACE) == []


def test_an_edge_that_is_the_parameters_own_limit_cannot_be_widened() -> None:
    (found,) = edge_of_range({"dropout": 0.0}, SPACE)
    assert found.severity == "info" and "nothing to widen" in found.message


def test_categorical_unknown_and_two_value_parameters_are_ignored() -> None:
    assert edge_of_range({"activation": "relu", "batch_norm": True, "lr_x": 1.0}, SPACE) == []
    two = SearchSpace({"n_layers": IntRange(1, 2)})
    assert edge_of_range({"n_layers": 2}, two) == []


# -- failed and diverged trials -----------------------------------------------------------


def test_most_trials_diverging_is_a_warning_with_the_reasons() -> None:
    trials = [trial(i, state=TrialState.PRUNED, stop_reason="diverged",
                    detail="non-finite loss at epoch 2") for i in range(6)]
    trials.append(trial(6, state=TrialState.FAIL, stop_reason="error",
                        error="ValueError: bad shape"))
    trials += [trial(7 + i, 0.5, stop_reason="completed") for i in range(3)]
    (found,) = failures(in_study(trials))
    assert found.severity == "warning"
    assert "7 of 10" in found.message and "6 diverged" in found.message
    assert "1 error: ValueError" in found.message
    assert "learning-rate range" in found.message and "non-finite loss" in found.message


def test_a_few_failures_are_a_note_and_none_is_ok() -> None:
    trials = [trial(i, 0.5, stop_reason="completed") for i in range(9)]
    (few,) = failures([*trials, trial(9, state=TrialState.FAIL, stop_reason="lost_worker")])
    assert few.severity == "info" and "1 of 10" in few.message and "lost_worker" in few.message
    (none,) = failures(trials)
    assert none.severity == "ok"


def test_cancelled_trials_are_not_failures() -> None:
    trials = [trial(i, state=TrialState.FAIL, stop_reason="cancelled") for i in range(5)]
    (found,) = failures([*trials, trial(5, 0.3, stop_reason="completed")])
    assert found.severity == "ok" and "none of the 1 trials" in found.message


# -- validation set too small -------------------------------------------------------------


def scored(values_and_scores: list[tuple[float, float]]) -> list[FrozenTrial]:
    return [trial(i, v, val_score=s, stop_reason="completed")
            for i, (v, s) in enumerate(values_and_scores)]


def test_top_models_within_the_noise_of_a_small_validation_set_warn() -> None:
    trials = scored([(0.10, 0.95), (0.11, 0.948), (0.12, 0.946), (0.13, 0.945), (0.14, 0.944),
                     (0.9, 0.60)])
    (found,) = validation_resolution(trials, "accuracy", n_val=100)
    assert found.code == "small_validation" and found.severity == "warning"
    # spread of the top 5: 0.6 points; noise: 2 * sqrt(0.95 * 0.05 / 100) = 4.4 points
    assert "0.6 points" in found.message and "±4.4 points" in found.message
    assert "100 validation rows" in found.message
    (ok,) = validation_resolution(trials, "accuracy", n_val=1_000_000)
    assert ok.severity == "ok"


def test_validation_noise_formulas() -> None:
    assert score_noise("accuracy", 0.95, 100) == pytest.approx(2 * (0.95 * 0.05 / 100) ** 0.5)
    assert score_noise("accuracy", 1.0, 50) == pytest.approx(1 / 50)  # at least one row
    assert score_noise("r2", 0.8, 50) == pytest.approx(2 * 0.2 * (2 / 50) ** 0.5)


def test_regression_uses_the_r2_rule_and_needs_rows_and_two_trials() -> None:
    trials = scored([(0.2, 0.80), (0.21, 0.795), (0.22, 0.79)])
    (found,) = validation_resolution(trials, "r2", n_val=50)
    assert found.severity == "warning" and "R²" in found.message
    assert validation_resolution(trials, "r2", n_val=None) == []
    assert validation_resolution(trials[:1], "r2", n_val=50) == []


def test_validation_rows_are_read_from_the_dataset_description() -> None:
    assert val_rows("binary, 8 features, train/val/test rows 153/51/52") == 51
    assert val_rows("a table") is None


# -- pruning audit ------------------------------------------------------------------------


def test_an_audited_trial_that_became_the_best_is_counted_and_warned_about() -> None:
    trials = [trial(i, 1.0 + i, stop_reason="early_stopped") for i in range(10)]
    trials.append(trial(10, 0.5, stop_reason="early_stopped", **{AUDIT_ATTR: 4}))
    trials.append(trial(11, 20.0, stop_reason="completed", **{AUDIT_ATTR: 3}))
    trials.append(trial(12, state=TrialState.PRUNED, stop_reason="pruned"))
    audit = audit_pruning(in_study(trials))
    assert audit.audited == [10, 11] and audit.in_top == [10] and audit.became_best == 10
    assert audit.new_best == [10] and audit.n_pruned == 1
    assert audit.would_prune_at == {10: 4, 11: 3}
    found = audit_diagnostic(audit)
    assert found.severity == "warning"
    assert "pruning would have stopped 1 of 2 audited trials" in found.message
    assert "top 10%" in found.message and "#10" in found.message


def test_an_audited_trial_that_set_a_new_best_at_the_time_but_was_overtaken() -> None:
    trials = [trial(i, 5.0 + i, stop_reason="completed") for i in range(5)]
    trials.append(trial(5, 4.0, stop_reason="completed", **{AUDIT_ATTR: 2}))  # best so far
    trials += [trial(6 + i, 1.0 + i * 0.1, stop_reason="completed") for i in range(14)]
    audit = audit_pruning(trials)
    assert audit.new_best == [5] and audit.in_top == [] and audit.became_best is None
    found = audit_diagnostic(audit)
    assert found.severity == "ok" and "0 of 1 audited" in found.message
    assert "1 of the 1 set a new best" in found.message


def test_audited_trials_that_turned_out_poor_mean_pruning_was_right() -> None:
    trials = [trial(i, 1.0 + i, stop_reason="completed") for i in range(20)]
    trials += [trial(20 + i, 50.0 + i, stop_reason="completed", **{AUDIT_ATTR: 5})
               for i in range(3)]
    found = audit_diagnostic(audit_pruning(trials))
    assert found.severity == "ok" and "0 of 3 audited trials" in found.message


def test_no_audited_trials_says_so() -> None:
    pruned = [trial(i, state=TrialState.PRUNED, stop_reason="pruned") for i in range(3)]
    complete = [trial(3 + i, 1.0, stop_reason="completed") for i in range(5)]
    found = audit_diagnostic(audit_pruning([*complete, *pruned]))
    assert found.code == "pruning_audit" and "no audited trials" in found.message
    assert "3 trials were pruned" in found.message
    nothing = audit_diagnostic(audit_pruning(complete))
    assert "no trial was pruned" in nothing.message


# -- epochs saved by pruning --------------------------------------------------------------


def test_epochs_trained_and_saved_by_pruning() -> None:
    trials = [trial(0, 1.0, stop_reason="early_stopped", epochs=20),
              trial(1, 1.0, stop_reason="completed", epochs=30),
              trial(2, state=TrialState.PRUNED, stop_reason="pruned", epochs=10),
              trial(3, 1.0, stop_reason="early_stopped", epochs=24, **{AUDIT_ATTR: 9}),
              trial(4, state=TrialState.PRUNED, stop_reason="diverged", epochs=3)]
    account = epoch_account(trials, max_epochs=30)
    assert account.trained == 20 + 30 + 10 + 24 + 3
    assert account.saved == 20  # only the pruned trial: 30 - 10
    assert account.typical_saved == 24 - 10  # median of the finished trials (20, 24, 30)
    assert account.audit_cost == 24 - 10  # ran past epoch index 9, i.e. its 10th epoch
    assert [t.outcome for t in account.trials][2] == "pruned"


def test_cohorts_are_counted_when_trials_trained_together() -> None:
    from automl.results.diagnostics import cohorts

    def trial(size: int | None) -> FrozenTrial:
        attrs = {} if size is None else {"cohort_size": size}
        return optuna.trial.create_trial(value=1.0, user_attrs=attrs)

    assert cohorts([trial(None), trial(1)]) == []
    (found,) = cohorts([trial(1), trial(4), trial(8), trial(None)])
    assert found.severity == "info"
    assert found.message.startswith("2 of 3 trials trained in cohorts, 4 to 8 at once")
