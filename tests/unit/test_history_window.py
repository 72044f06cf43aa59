"""The windowed TPE: Optuna's own TPE up to the window, a bounded history past it."""

from __future__ import annotations

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from automl.study.storage.history_window import (
    HistoryWindow,
    RunningBest,
    WindowedTPESampler,
    windowed,
)

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


def test_the_best_trials_are_carried_over_and_updated_between_windows() -> None:
    study = history([0.5, *[10.0 + i for i in range(1, 10)]])  # trials 0-9, one running
    best = RunningBest(study, window=4)  # keeps the best max(1, 4 // 10) = 1
    first = windowed(study, 4, best=best)
    assert [t.number for t in first.get_trials(deepcopy=False)] == [0, 6, 7, 8, 9, 10]
    study.tell(10, 0.1)  # the running trial finishes best of all
    for value in (20.0, 21.0, 22.0, 23.0):
        study.add_trial(create_trial(value=value, params={"x": 0.0}, distributions={"x": X}))
    second = windowed(study, 4, best=best)
    assert [t.number for t in second.get_trials(deepcopy=False)] == [10, 11, 12, 13, 14]
