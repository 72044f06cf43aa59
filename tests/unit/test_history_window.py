"""The windowed TPE: Optuna's own TPE up to the window, a bounded history past it."""

from __future__ import annotations

import random
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from automl.study.storage.finished_trials import FinishedTrials, RunningBest
from automl.study.storage.history_window import (
    HistoryWindow,
    WindowedTPESampler,
    _windowed_whole,
    windowed,
)
from automl.study.studies import make_storage

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
    finished = FinishedTrials(study, window=4)  # keeps the best max(1, 4 // 10) = 1
    first = windowed(study, 4, finished=finished)
    assert [t.number for t in first.get_trials(deepcopy=False)] == [0, 6, 7, 8, 9, 10]
    study.tell(10, 0.1)  # the running trial finishes best of all
    for value in (20.0, 21.0, 22.0, 23.0):
        study.add_trial(create_trial(value=value, params={"x": 0.0}, distributions={"x": X}))
    second = windowed(study, 4, finished=finished)
    assert [t.number for t in second.get_trials(deepcopy=False)] == [10, 11, 12, 13, 14]


def numbers_seen(view: object) -> list[int]:
    return [t.number for t in view.get_trials(deepcopy=False)]  # type: ignore[attr-defined]


@pytest.mark.parametrize(("seed", "storage"), [(0, "memory"), (1, "memory"), (2, "sqlite")])
def test_the_window_kept_up_to_date_is_the_window_of_the_whole_study(
        seed: int, storage: str, tmp_path: Path) -> None:
    """Trials start, finish in any order (COMPLETE, PRUNED, FAIL), some are enqueued; at
    every step the window taken from what changed is the one a pass over all gives (in
    memory, and through the run's own storage)."""
    rng = random.Random(seed)
    study = optuna.create_study(
        storage=make_storage(f"sqlite:///{tmp_path / 'w.db'}") if storage == "sqlite" else None,
        direction=rng.choice(["minimize", "maximize"]))
    finished, live, compared = FinishedTrials(study, window=7), [], 0
    events = 300 if storage == "memory" else 150
    for _ in range(events):
        action = rng.random()
        if action < 0.4 or not live:
            if rng.random() < 0.05:
                study.enqueue_trial({"x": 0.0})
            trial = study.ask()
            trial.suggest_float("x", -5.0, 5.0)
            live.append(trial)
        else:
            trial = live.pop(rng.randrange(len(live)))
            state = rng.choice([TrialState.COMPLETE] * 3 + [TrialState.PRUNED, TrialState.FAIL])
            study.tell(trial, rng.random() if state == TrialState.COMPLETE else None, state=state)
        kept = windowed(study, 7, use_cache=True, finished=finished)
        trials = study._get_trials(deepcopy=False, use_cache=True)
        assert finished.look(trials) is not None  # listed by number: no pass over all
        whole = _windowed_whole(study, trials, 7, RunningBest(study, 7))
        if kept is study or whole is study:
            assert kept is whole
            continue
        assert numbers_seen(kept) == numbers_seen(whole)
        compared += 1
    assert compared > events // 2


def test_a_list_out_of_number_order_is_read_whole() -> None:
    study = history([1.0, 2.0, 3.0, 4.0, 5.0])
    finished = FinishedTrials(study, window=2)
    assert finished.look(list(reversed(study._get_trials(deepcopy=False)))) is None
    assert finished.look(study._get_trials(deepcopy=False)) is not None


def test_the_sampler_looks_at_the_whole_study_once() -> None:
    sampler = WindowedTPESampler(window=4, **tpe_options())  # type: ignore[arg-type]
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=3)
    finished = sampler.look_at(study)
    assert sampler.look_at(study) is finished  # kept, not made again
    study.optimize(objective, n_trials=6)
    assert sampler.look_at(study) is finished
    other = optuna.create_study(sampler=sampler)
    assert sampler.look_at(other) is not finished  # another study: its own


def test_a_study_of_several_objectives_is_passed_through() -> None:
    study = optuna.create_study(directions=["minimize", "maximize"])
    for i in range(10):
        study.add_trial(create_trial(values=[float(i), float(-i)], params={"x": float(i % 5)},
                                     distributions={"x": X}))
    assert windowed(study, 4) is study
    assert windowed(study, 4, finished=FinishedTrials(study, 4)) is study
