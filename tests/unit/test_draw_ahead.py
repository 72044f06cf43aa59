"""Drawing a cohort's members from one TPE fit: Optuna's TPE outside a block, one fit per
space for n asks inside one, each member the best of its own candidates."""

from __future__ import annotations

import pickle
import threading
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from automl.study.storage.draw_ahead import DrawAheadTPESampler, drawing_ahead

optuna.logging.set_verbosity(optuna.logging.WARNING)


def tpe_options() -> dict[str, Any]:
    return {"n_startup_trials": 5, "multivariate": True, "group": True,
            "constant_liar": True, "seed": 3}


def suggest(trial: optuna.Trial) -> dict[str, Any]:
    params = {"x": trial.suggest_float("x", -5.0, 5.0),
              "lr": trial.suggest_float("lr", 1e-4, 1e-1, log=True),
              "kind": trial.suggest_categorical("kind", ["a", "b"])}
    if params["kind"] == "a":
        params["extra"] = trial.suggest_float("extra", 0.0, 1.0)
    return params


def loss(params: dict[str, Any]) -> float:
    return (params["x"] - 1.0) ** 2 + abs(np.log10(params["lr"]) + 2) \
        + params.get("extra", 0.5)


def study_with_history(sampler: optuna.samplers.BaseSampler, n: int = 12) -> optuna.Study:
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda trial: loss(suggest(trial)), n_trials=n)
    return study


class CountingSampler(DrawAheadTPESampler):
    """Counts TPE fits (one per search space group per Optuna ``_sample``) and keeps every
    fit's candidates with their acquisition values."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.fits = 0
        self.acquisitions: list[tuple[dict[str, np.ndarray], np.ndarray]] = []

    def _build_parzen_estimator(self, study: optuna.Study, search_space: Any,
                                trials: list[FrozenTrial], handle_below: bool) -> Any:
        self.fits += handle_below
        return super()._build_parzen_estimator(study, search_space, trials, handle_below)

    def _compute_acquisition_func(self, samples: dict[str, np.ndarray], mpe_below: Any,
                                  mpe_above: Any) -> np.ndarray:
        values = super()._compute_acquisition_func(samples, mpe_below, mpe_above)
        self.acquisitions.append((samples, values))
        return values


def test_outside_a_block_and_with_one_member_it_is_optunas_tpe() -> None:
    def run(sampler: optuna.samplers.BaseSampler, block: int | None) -> list[dict[str, Any]]:
        study = study_with_history(sampler, 8)
        for _ in range(6):
            if block is None:
                trial = study.ask()
                study.tell(trial, loss(suggest(trial)))
            else:
                with drawing_ahead(sampler, block):
                    trial = study.ask()
                    study.tell(trial, loss(suggest(trial)))
        return [t.params for t in study.trials]

    optuna_tpe = run(optuna.samplers.TPESampler(**tpe_options()), None)
    assert run(DrawAheadTPESampler(**tpe_options()), None) == optuna_tpe
    assert run(DrawAheadTPESampler(**tpe_options()), 1) == optuna_tpe


def test_a_block_fits_once_per_group_for_n_asks() -> None:
    sampler = CountingSampler(**tpe_options())
    study = study_with_history(sampler)
    sampler.fits = 0
    with drawing_ahead(sampler, 4):
        trials = [study.ask() for _ in range(4)]
        members = [suggest(trial) for trial in trials]
    groups = sampler.fits
    assert 1 <= groups <= 3  # {x, lr, kind}, {extra}: fitted once for the four members
    assert len({m["x"] for m in members}) == 4  # four members, not one drawn four times
    sampler.fits = 0
    for _ in range(4):
        suggest(study.ask())
    assert sampler.fits >= 4 * groups - 1  # asked one by one: a fit per ask (and group)


def test_members_used_up_are_drawn_again_from_a_new_fit() -> None:
    sampler = CountingSampler(**tpe_options())
    study = study_with_history(sampler)
    sampler.acquisitions.clear()
    with drawing_ahead(sampler, 2):
        for _ in range(5):
            trial = study.ask()
            study.tell(trial, loss(suggest(trial)))
    sizes = [values.size for _, values in sampler.acquisitions]
    assert set(sizes) == {2 * 24}  # every fit drew two members' candidates
    assert len(sizes) >= 3 and len(sizes) % 3 == 0  # each group fitted at asks 1, 3 and 5


def test_each_member_is_the_best_of_its_own_candidates() -> None:
    sampler = CountingSampler(**tpe_options())
    study = study_with_history(sampler)
    sampler.acquisitions.clear()
    with drawing_ahead(sampler, 3):
        trials = [study.ask() for _ in range(3)]
        members = [suggest(trial) for trial in trials]
    samples, values = next((s, v) for s, v in sampler.acquisitions if "x" in s)
    assert values.size == 3 * 24
    for member, chunk in zip(members, np.split(np.arange(values.size), 3), strict=True):
        best = chunk[np.argmax(values[chunk])]
        assert member["x"] == pytest.approx(float(samples["x"][best]))
        assert member["lr"] == pytest.approx(float(samples["lr"][best]))
        assert member["kind"] == ["a", "b"][int(samples["kind"][best])]  # an index inside


def test_a_preference_chooses_among_each_members_own_candidates() -> None:
    """Each member is the best of its own candidates that the block prefers (here x < 0,
    away from the optimum at 1), and the best of all of them where it prefers none."""
    def draw(prefer: Any) -> tuple[list[dict[str, Any]], dict[str, np.ndarray], np.ndarray]:
        sampler = CountingSampler(**tpe_options())
        study = study_with_history(sampler)
        sampler.acquisitions.clear()
        with drawing_ahead(sampler, 3, prefer):
            members = [suggest(study.ask()) for _ in range(3)]
        samples, values = next((s, v) for s, v in sampler.acquisitions if "x" in s)
        return members, samples, values

    def negative_x(samples: dict[str, np.ndarray]) -> np.ndarray:  # called for every group
        size = len(next(iter(samples.values())))
        return samples["x"] < 0 if "x" in samples else np.ones(size, dtype=bool)

    members, samples, values = draw(negative_x)
    moved = 0  # members whose best candidate overall was not preferred
    for member, chunk in zip(members, np.split(np.arange(values.size), 3), strict=True):
        kept = chunk[samples["x"][chunk] < 0]
        best = kept[np.argmax(values[kept])] if kept.size else chunk[np.argmax(values[chunk])]
        assert member["x"] == pytest.approx(float(samples["x"][best]))
        assert member["lr"] == pytest.approx(float(samples["lr"][best]))
        moved += best != chunk[np.argmax(values[chunk])]
    assert moved >= 1
    none = draw(lambda s: np.zeros(len(next(iter(s.values()))), dtype=bool))[0]
    assert none == draw(None)[0]


def test_a_pinned_cohort_draws_ahead_through_the_partial_fixed_sampler() -> None:
    sampler = CountingSampler(**tpe_options())
    study = study_with_history(sampler)
    study.sampler = optuna.samplers.PartialFixedSampler({"kind": "b"}, sampler)
    sampler.fits = 0
    with drawing_ahead(study.sampler, 4):
        members = [suggest(study.ask()) for _ in range(4)]
    assert {m["kind"] for m in members} == {"b"}
    assert sampler.fits == 2  # {x, lr} (kind pinned) and {extra}, once each for 4 members
    assert len({m["x"] for m in members}) == 4


def test_a_block_belongs_to_its_thread() -> None:
    sampler = CountingSampler(**tpe_options())
    study = study_with_history(sampler)
    sampler.fits = 0
    fits_elsewhere: list[int] = []

    def ask_elsewhere() -> None:
        before = sampler.fits
        suggest(study.ask())
        fits_elsewhere.append(sampler.fits - before)

    with drawing_ahead(sampler, 8):
        suggest(study.ask())
        thread = threading.Thread(target=ask_elsewhere)
        thread.start()
        thread.join()
    assert fits_elsewhere and fits_elsewhere[0] >= 1  # the other thread fitted on its own


def test_other_samplers_ask_as_usual_and_a_block_needs_a_member() -> None:
    random = optuna.samplers.RandomSampler(seed=0)
    with drawing_ahead(random, 4):
        study = optuna.create_study(sampler=random)
        study.optimize(lambda trial: loss(suggest(trial)), n_trials=3)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    with pytest.raises(ValueError, match="at least 1"), \
            DrawAheadTPESampler(**tpe_options()).drawing_ahead(0):
        pass


def test_a_pinned_ask_leaves_the_blocks_space_whole_for_the_next() -> None:
    sampler = DrawAheadTPESampler(**tpe_options())
    study = study_with_history(sampler)
    pinned = optuna.samplers.PartialFixedSampler({"kind": "b"}, sampler)
    with drawing_ahead(sampler, 4):
        trial = study._storage.get_trial(study.ask()._trial_id)
        assert "kind" not in pinned.infer_relative_search_space(study, trial)
        assert "kind" in sampler.infer_relative_search_space(study, trial)  # a retry's ask


def test_a_block_looks_over_the_study_once_per_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    from automl.study.storage import history_window

    looks: list[int] = []
    windowed = history_window.windowed

    def counting(*args: Any, **kwargs: Any) -> Any:
        looks.append(1)
        return windowed(*args, **kwargs)

    sampler = DrawAheadTPESampler(**tpe_options())
    study = study_with_history(sampler)
    monkeypatch.setattr(history_window, "windowed", counting)
    with drawing_ahead(sampler, 3):
        for _ in range(6):
            suggest(study.ask())
    assert len(looks) == 2  # a fresh look for each fit: asks 1 and 4
    looks.clear()
    suggest(study.ask())
    assert len(looks) == 1  # outside: one look per ask


def test_while_one_thread_draws_ahead_another_asks_with_optunas_candidates() -> None:
    seen_elsewhere: list[int] = []

    class Peeking(DrawAheadTPESampler):
        def _compute_acquisition_func(self, samples: dict[str, np.ndarray], mpe_below: Any,
                                      mpe_above: Any) -> np.ndarray:
            thread = threading.Thread(target=lambda: seen_elsewhere.append(
                self._n_ei_candidates))
            thread.start()
            thread.join()
            return super()._compute_acquisition_func(samples, mpe_below, mpe_above)

    sampler = Peeking(**tpe_options())
    study = study_with_history(sampler)
    seen_elsewhere.clear()
    with drawing_ahead(sampler, 4):
        suggest(study.ask())
    assert seen_elsewhere and set(seen_elsewhere) == {24}
    assert sampler._n_ei_candidates == 24


def test_the_sampler_pickles_and_draws_ahead_after() -> None:
    sampler = pickle.loads(pickle.dumps(DrawAheadTPESampler(**tpe_options())))
    study = study_with_history(sampler)
    with drawing_ahead(sampler, 3):
        members = [suggest(study.ask()) for _ in range(3)]
    assert len({m["x"] for m in members}) == 3


def test_an_error_in_a_draw_leaves_the_sampler_as_it_was() -> None:
    class FailingOnce(DrawAheadTPESampler):
        failed = True  # armed once the history is in

        def _compute_acquisition_func(self, samples: dict[str, np.ndarray], mpe_below: Any,
                                      mpe_above: Any) -> np.ndarray:
            if not self.failed:
                self.failed = True
                raise RuntimeError("boom")
            return super()._compute_acquisition_func(samples, mpe_below, mpe_above)

    sampler = FailingOnce(**tpe_options())
    study = study_with_history(sampler)
    sampler.failed = False
    with pytest.raises(RuntimeError, match="boom"), drawing_ahead(sampler, 4):
        suggest(study.ask())
    assert sampler._n_ei_candidates == 24
    assert not hasattr(sampler._local, "candidates")
    assert sampler._ahead() is None
    suggest(study.ask())  # asks on as Optuna's TPE


def test_members_drawn_ahead_are_handed_out_without_reading_the_study(
        monkeypatch: pytest.MonkeyPatch) -> None:
    sampler = DrawAheadTPESampler(**tpe_options())
    study = study_with_history(sampler)
    reads: list[int] = []  # full reads per ask (Optuna's narrow look for enqueued trials aside)
    get_all_trials = study._storage.get_all_trials

    def counting(*args: Any, states: Any = None, **kwargs: Any) -> Any:
        if states != (TrialState.WAITING,):
            reads[-1] += 1
        return get_all_trials(*args, states=states, **kwargs)

    monkeypatch.setattr(study._storage, "get_all_trials", counting)
    with drawing_ahead(sampler, 4):
        for _ in range(4):
            reads.append(0)
            suggest(study.ask())
    assert reads[0] >= 1 and reads[1:] == [0, 0, 0]  # through a database: a round trip each
    reads.append(0)
    suggest(study.ask())
    assert reads[-1] >= 1  # outside a block, Optuna's TPE reads the study at every ask
