"""The windowed TPE and pruner: Optuna's own up to the window, a bounded history past it."""

from __future__ import annotations

from dataclasses import replace

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from automl.options import TuneOptions
from automl.run.plan import settings_of
from automl.space import SearchSpace
from automl.study.history_window import HistoryWindow, WindowedPruner, WindowedTPESampler, windowed
from automl.study.settings import make_pruner

optuna.logging.set_verbosity(optuna.logging.WARNING)
X = FloatDistribution(-5.0, 5.0)


def objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -5.0, 5.0)
    if trial.suggest_categorical("kind", ["a", "b"]) == "a":
        return (x - 1.0) ** 2 + trial.suggest_float("extra", 0.0, 1.0)
    return (x + 2.0) ** 2


def suggestions(sampler: optuna.samplers.BaseSampler, n: int) -> list[dict[str, object]]:
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=n)
    return [t.params for t in study.trials]


def tpe_options() -> dict[str, object]:
    return {"n_startup_trials": 5, "multivariate": True, "group": True,
            "constant_liar": True, "seed": 3}


def history(values: list[float | None]) -> optuna.Study:
    """A study of finished trials with these values (None: pruned), one running trial."""
    study = optuna.create_study()
    for i, value in enumerate(values):
        state = TrialState.PRUNED if value is None else TrialState.COMPLETE
        study.add_trial(create_trial(state=state, value=value, params={"x": float(i % 5)},
                                     distributions={"x": X},
                                     intermediate_values={0: 1.0} if value is None else {}))
    study.ask()  # a running trial: the constant liar must still see it
    return study


def test_within_the_window_the_sampler_is_optunas_tpe() -> None:
    windowed_params = suggestions(WindowedTPESampler(window=50, **tpe_options()), 25)
    optuna_params = suggestions(optuna.samplers.TPESampler(**tpe_options()), 25)  # type: ignore[arg-type]
    assert windowed_params == optuna_params


def test_a_study_within_the_window_is_passed_through_unchanged() -> None:
    study = history([1.0, 2.0, None, 3.0])
    assert windowed(study, 4) is study


def test_past_the_window_tpe_sees_the_latest_trials_the_best_and_the_running() -> None:
    # trial 0 is the best but the oldest; trials 26-29 are the latest 4 (one pruned)
    values: list[float | None] = [0.5, *[10.0 + i for i in range(1, 26)], 3.0, None, 2.0, 9.0]
    study = history(values)
    view = windowed(study, 4)
    assert isinstance(view, HistoryWindow)
    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    seen = [t.number for t in view._get_trials(deepcopy=False, states=finished)]
    assert seen == [0, 26, 27, 28, 29]
    everything = [t.number for t in view.get_trials(deepcopy=False)]
    assert everything == [0, 26, 27, 28, 29, 30]  # 30: the running trial
    assert view.direction == study.direction  # the rest passes through


def test_for_a_maximized_study_the_best_are_the_largest() -> None:
    study = optuna.create_study(direction="maximize")
    for i, value in enumerate([9.0, 1.0, 2.0, 3.0, 4.0]):
        study.add_trial(create_trial(value=value, params={"x": float(i)},
                                     distributions={"x": X}))
    view = windowed(study, 2)
    assert [t.number for t in view.get_trials(deepcopy=False)] == [0, 3, 4]


def test_the_sampler_keeps_searching_past_its_window() -> None:
    sampler = WindowedTPESampler(window=12, **tpe_options())  # type: ignore[arg-type]
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=40)
    assert len(study.trials) == 40
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert study.best_value < 1.0  # it still finds the basin near x = 1 or x = -2


def history_at_epoch(old: int, recent: int) -> optuna.Study:
    """``old`` completed trials that were at 100 at epoch 1, then ``recent`` at 1."""
    study = optuna.create_study()
    for i in range(old + recent):
        value = 100.0 if i < old else 1.0
        study.add_trial(create_trial(value=value, params={"x": 0.0}, distributions={"x": X},
                                     intermediate_values={1: value}))
    return study


def decision(pruner: optuna.pruners.BasePruner, study: optuna.Study, at: float) -> bool:
    trial = study.ask()
    trial.report(at, step=1)
    return pruner.prune(study, study._storage.get_trial(trial._trial_id))


def test_past_the_window_the_median_is_the_windows() -> None:
    def median() -> optuna.pruners.BasePruner:
        return optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    study = history_at_epoch(old=20, recent=4)
    assert not decision(median(), study, at=5.0)  # the whole history's median is 100
    assert decision(WindowedPruner(median(), window=4), study, at=5.0)  # the window's is 1


def test_within_the_window_the_pruner_decides_as_its_rule() -> None:
    study = history_at_epoch(old=2, recent=4)
    rule = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    for at in (0.5, 5.0, 500.0):
        assert decision(WindowedPruner(rule, window=6), study, at) == decision(rule, study, at)


def default_space() -> SearchSpace:
    return SearchSpace({}).resolve("multiclass", 1000, 8)


def test_the_run_pruners_read_the_window_and_keep_their_own_attributes() -> None:
    options = TuneOptions(n_trials=10)
    assert isinstance(make_pruner(settings_of(options, default_space())), WindowedPruner)
    baseline = make_pruner(settings_of(replace(options, pruner="baseline"), default_space()))
    assert callable(getattr(baseline, "anchor_at", None))  # the epoch callback uses it
    assert not isinstance(make_pruner(settings_of(options, default_space()), window=None),
                          WindowedPruner)


def test_each_trial_samples_from_its_own_snapshot_of_the_window() -> None:
    sampler = WindowedTPESampler(window=4, **tpe_options())  # type: ignore[arg-type]
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=8)
    first = sampler._snapshot
    assert first is not None and isinstance(first[1], HistoryWindow)
    study.optimize(objective, n_trials=1)
    second = sampler._snapshot
    assert second is not None and second[0] != first[0]
    seen = {t.number for t in second[1].get_trials(deepcopy=False)}
    assert {4, 5, 6, 7, 8} <= seen  # the latest four finished and the running trial
