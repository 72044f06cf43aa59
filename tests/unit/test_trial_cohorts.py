"""Trials trained in cohorts (issue 20): each slot's trial is asked, trained with others of
its structure, and told as the ordinary path would tell it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState
from outages import database_away_after
from sqlalchemy.exc import OperationalError
from study_settings import study_settings

from automl.configs import TrialConfig
from automl.data import PreparedData
from automl.space import Choice, Fixed, FloatRange, IntRange, SearchSpace
from automl.space.suggest import STRUCTURE_PARAMS
from automl.study.studies import create_study
from workers.data import to_tensors
from workers.evaluate import fit
from workers.faults import install
from workers.objective import TrialHooks
from workers.trial_cohorts import TrialSlot, prefer_stackable, run_trial_cohorts

torch.set_num_threads(1)
# Widths within 2x in multiply-adds, so that members of one structure always stack on a CPU.
SPACE = {"max_epochs": Fixed(6), "patience": Fixed(6), "n_layers": IntRange(1, 2),
         "units": IntRange(16, 24), "batch_size": Fixed(32), "optimizer": Choice(("adam", "sgd")),
         "activation": Choice(("relu", "gelu")), "batch_norm": Fixed(False),
         "dropout": Fixed(0.0), "lr": FloatRange(1e-3, 1e-2, log=True),
         "lr_schedule": Fixed("constant"), "embedding": Fixed("none")}


def space(**overrides) -> SearchSpace:
    return SearchSpace({**SPACE, **overrides}).resolve("binary", 150)  # type: ignore[arg-type]


def new_study(tmp_path: Path) -> optuna.Study:
    return create_study(f"sqlite:///{tmp_path / 'study.db'}", "s",
                        study_settings(tpe_startup_trials=2), {})


def test_slots_share_the_first_trials_structure_and_each_is_told(tmp_path: Path,
                                                                  blobs: PreparedData) -> None:
    study = new_study(tmp_path)
    numbers: list[int] = []
    slots = [TrialSlot(TrialHooks(on_start=lambda t: numbers.append(t.number)))
             for _ in range(5)]
    told = run_trial_cohorts(study, slots, space(), to_tensors(blobs), seed=0)
    assert [t.number for t in told if t is not None] == numbers == list(range(5))
    trials = study.trials
    assert all(t.state == TrialState.COMPLETE for t in trials)
    structure = {name: trials[0].params[name] for name in STRUCTURE_PARAMS
                 if name in trials[0].params}
    assert all({n: t.params[n] for n in structure} == structure for t in trials)
    assert {t.user_attrs["cohort_size"] for t in trials} == {5}
    assert len({t.params["lr"] for t in trials}) == 5  # the rest is TPE's, per trial
    for trial in trials:
        assert set(trial.user_attrs) >= {"config", "n_parameters", "epochs", "stop_reason",
                                         "val_score", "seconds"}
        assert len(trial.intermediate_values) == trial.user_attrs["epochs"]
        assert trial.value == min(trial.intermediate_values.values())


def test_in_the_random_start_up_cohorts_are_pairs_asked_as_they_start(
        tmp_path: Path, blobs: PreparedData) -> None:
    study = new_study(tmp_path)
    finished_at_ask: list[int] = []

    def on_start(trial: optuna.Trial) -> None:
        finished_at_ask.append(sum(t.state.is_finished() for t in study.trials))

    slots = [TrialSlot(TrialHooks(on_start=on_start)) for _ in range(6)]
    run_trial_cohorts(study, slots, space(), to_tensors(blobs), seed=0, startup_trials=100)
    trials = study.trials
    assert [t.user_attrs["cohort_size"] for t in trials] == [2] * 6
    for first, second in zip(trials[::2], trials[1::2], strict=True):
        assert {n: first.params[n] for n in STRUCTURE_PARAMS if n in first.params} == \
            {n: second.params[n] for n in STRUCTURE_PARAMS if n in first.params}
    assert finished_at_ask == [0, 0, 2, 2, 4, 4]  # no trial asked ahead of its pair
    assert all(t.state == TrialState.COMPLETE for t in trials)


def test_in_the_start_up_warm_starts_stack_together_and_pin_no_random_trial(
        tmp_path: Path, blobs: PreparedData, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rules of thumb share one structure: they train in pairs, and a trial asked for
    a warm start is not pinned to that structure (the random start-up keeps its draws);
    the random trials pair among themselves."""
    from workers import trial_cohorts

    pins: list[dict | None] = []  # the structure each ask was pinned to, in ask order
    real = trial_cohorts._pinned

    def recording(study: optuna.Study, fixed: dict | None):  # type: ignore[no-untyped-def]
        pins.append(fixed or None)
        return real(study, fixed)

    monkeypatch.setattr(trial_cohorts, "_pinned", recording)
    warm = {"n_layers": 1, "n_units_l0": 16, "activation": "relu", "optimizer": "adam",
            "lr": 1e-3}
    study = create_study(f"sqlite:///{tmp_path / 'study.db'}", "s",
                         study_settings(tpe_startup_trials=2), {},
                         first_trials=[warm, {**warm, "n_units_l0": 18},
                                       {**warm, "n_units_l0": 20}])
    run_trial_cohorts(study, [TrialSlot() for _ in range(7)], space(), to_tensors(blobs),
                      seed=0, startup_trials=100)
    trials = study.trials
    assert [t.user_attrs.get("warm_start", False) for t in trials[:4]] == [True] * 3 + [False]
    assert [t.user_attrs["cohort_size"] for t in trials[:2]] == [2, 2]
    assert pins[:4] == [None] * 4  # the warm starts, and the random trial asked for one
    assert any(pin is not None for pin in pins[4:])  # random trials still pair up
    assert all(t.state == TrialState.COMPLETE for t in trials)


def test_a_cohort_stops_pinning_trials_at_the_first_that_does_not_fit(
        tmp_path: Path, blobs: PreparedData, monkeypatch: pytest.MonkeyPatch) -> None:
    """Room for three on its own, but every pinned trial comes out too wide to join: one
    waits and leads the next group; the rest are asked when their turn comes, not all at
    once with the first's structure."""
    from workers import trial_cohorts

    monkeypatch.setattr(trial_cohorts._TrialBatch, "capacity",
                        lambda self, group: 3 if len(group) == 1 else 1)
    study = new_study(tmp_path)
    finished_at_ask: list[int] = []

    def on_start(trial: optuna.Trial) -> None:
        finished_at_ask.append(sum(t.state.is_finished() for t in study.trials))

    slots = [TrialSlot(TrialHooks(on_start=on_start)) for _ in range(6)]
    run_trial_cohorts(study, slots, space(), to_tensors(blobs), seed=0)
    assert finished_at_ask == [0, 0, 1, 2, 3, 4]
    assert [t.user_attrs["cohort_size"] for t in study.trials] == [1] * 6
    assert all(t.state == TrialState.COMPLETE for t in study.trials)


def test_past_the_start_up_a_cohorts_members_share_one_tpe_fit(
        tmp_path: Path, blobs: PreparedData, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first trial fits TPE on the whole space; its four pinned members are drawn
    from one fit of what is left (``draw_ahead``), not one fit each."""
    study = new_study(tmp_path)
    data = to_tensors(blobs)
    run_trial_cohorts(study, [TrialSlot() for _ in range(3)], space(), data, seed=0)
    fits: list[int] = []  # TPE's "good" densities fitted, one per group and fit
    build = study.sampler._build_parzen_estimator  # type: ignore[attr-defined]

    def counting(study: optuna.Study, space: object, trials: object, handle_below: bool):
        fits.append(handle_below)
        return build(study, space, trials, handle_below)

    monkeypatch.setattr(study.sampler, "_build_parzen_estimator", counting)
    fits_at_start: list[int] = []
    slots = [TrialSlot(TrialHooks(on_start=lambda t: fits_at_start.append(sum(fits))))
             for _ in range(5)]
    run_trial_cohorts(study, slots, space(), data, seed=0, startup_trials=2)
    assert {t.user_attrs["cohort_size"] for t in study.trials[3:]} == {5}
    first = fits_at_start[1]  # the first trial's fits, made before the second's ask
    assert first >= 1
    assert sum(fits) - first <= first  # four members: as many fits as one trial, not four


def test_each_refill_draws_from_a_fit_that_saw_the_trials_told_before_it(
        tmp_path: Path, blobs: PreparedData, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first fill asks its two members from one fit; the refill after they stop asks
    its three from a new fit, made once they were told."""
    from contextlib import contextmanager

    from workers import trial_cohorts

    monkeypatch.setattr(trial_cohorts._TrialBatch, "capacity", lambda self, group: 3)
    study = new_study(tmp_path)
    blocks: list[tuple[int, int]] = []  # (members drawn per fit, trials finished then)
    real = trial_cohorts.drawing_ahead

    @contextmanager
    def recording(sampler, n, prefer=None):  # type: ignore[no-untyped-def]
        blocks.append((n, sum(t.state.is_finished() for t in study.trials)))
        with real(sampler, n, prefer):
            yield

    monkeypatch.setattr(trial_cohorts, "drawing_ahead", recording)
    run_trial_cohorts(study, [TrialSlot() for _ in range(6)], space(), to_tensors(blobs),
                      seed=0)
    assert blocks[0] == (2, 0)
    assert blocks[1][0] >= 1 and blocks[1][1] >= 1  # after a member was told
    assert sum(n for n, _ in blocks) >= 5
    assert all(t.state == TrialState.COMPLETE for t in study.trials)


def test_on_a_cpu_refills_prefer_widths_within_the_spread_of_the_cohorts() -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    members = [(64, 32), (80, 40)]
    prefer = prefer_stackable(lambda: members, 2, cpu)
    assert prefer is not None
    # two layers: each layer's widths within sqrt(2), so multiply-adds within 2x
    kept = prefer({"n_units_l0": np.array([64.0, 90.0, 91.0, 57.0, 56.0, 64.0]),
                   "n_units_l1": np.array([32.0, 32.0, 32.0, 32.0, 32.0, 100.0]),
                   "lr": np.full(6, 1e-3)})
    assert kept.tolist() == [True, True, False, True, False, False]
    only_lr = prefer({"lr": np.full(3, 1e-3)})  # a group without widths: no preference
    assert only_lr.tolist() == [True] * 3
    one_layer = prefer_stackable(lambda: [(64,)], 1, cpu)
    assert one_layer is not None  # one layer: widths within 2x
    assert one_layer({"n_units_l0": np.array([128.0, 129.0, 32.0, 31.0])}).tolist() == \
        [True, False, True, False]
    assert prefer_stackable(lambda: members, 2, gpu) is None  # a GPU has width to spare


def test_a_refills_draw_prefers_the_widths_of_the_cohort_it_joins(
        tmp_path: Path, blobs: PreparedData, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the start-up, a refill hands TPE a preference for the cohort's widths: at the
    first refill, a member as wide as the cohort's first is preferred, one ten times wider
    is not."""
    from contextlib import contextmanager

    from workers import trial_cohorts

    study = new_study(tmp_path)
    data = to_tensors(blobs)
    wide = space(n_layers=Fixed(1), units=IntRange(8, 512, log=True))
    run_trial_cohorts(study, [TrialSlot() for _ in range(3)], wide, data, seed=0)
    judged: list[list[bool]] = []
    real = trial_cohorts.drawing_ahead

    @contextmanager
    def recording(sampler, n, prefer=None):  # type: ignore[no-untyped-def]
        first = study.trials[3].params["n_units_l0"]  # the first cohort's leader
        judged.append(prefer({"n_units_l0": np.array([first, 10.0 * first])}).tolist())
        with real(sampler, n, prefer):
            yield

    monkeypatch.setattr(trial_cohorts, "drawing_ahead", recording)
    run_trial_cohorts(study, [TrialSlot() for _ in range(4)], wide, data, seed=0,
                      startup_trials=2)
    assert judged[0] == [True, False]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)


def test_a_trial_in_a_cohort_has_the_curve_it_has_alone(tmp_path: Path,
                                                        blobs: PreparedData) -> None:
    study = new_study(tmp_path)
    data = to_tensors(blobs)
    run_trial_cohorts(study, [TrialSlot() for _ in range(4)], space(), data, seed=3)
    for trial in study.trials:
        config = TrialConfig.from_dict(trial.user_attrs["config"])
        _, alone = fit(config, data)
        curve = [trial.intermediate_values[e] for e in sorted(trial.intermediate_values)]
        assert curve == pytest.approx(alone.val_losses, abs=1e-5)


def test_a_members_own_error_fails_it_alone(tmp_path: Path, blobs: PreparedData) -> None:
    study = new_study(tmp_path)
    install("raise@trial:1:epoch:2")
    try:
        run_trial_cohorts(study, [TrialSlot() for _ in range(3)], space(), to_tensors(blobs),
                          seed=0)
    finally:
        install(None)
    states = {t.number: t.state for t in study.trials}
    assert states == {0: TrialState.COMPLETE, 1: TrialState.FAIL, 2: TrialState.COMPLETE}
    failed = study.trials[1]
    assert failed.user_attrs["stop_reason"] == "error"
    assert failed.user_attrs["error"].startswith("RuntimeError: injected fault")
    assert len(failed.intermediate_values) == 2  # its epochs before the fault


def test_an_interrupted_member_fails_with_its_reason(tmp_path: Path,
                                                     blobs: PreparedData) -> None:
    study = new_study(tmp_path)
    cancelled = TrialSlot(TrialHooks(stop_reason=lambda: "cancelled"))
    run_trial_cohorts(study, [TrialSlot(), cancelled, TrialSlot()], space(),
                      to_tensors(blobs), seed=0)
    first, stopped, last = study.trials
    assert stopped.state == TrialState.FAIL and stopped.user_attrs["stop_reason"] == "cancelled"
    assert len(stopped.intermediate_values) == 0
    assert first.state == last.state == TrialState.COMPLETE


def test_a_storage_outage_escapes_and_leaves_the_trials_to_their_lease(
        tmp_path: Path, blobs: PreparedData) -> None:
    """The database away past the retry budget, as a member's epoch polls its ticket: no
    trial's fault, so none is told FAIL ("error" would close its ticket without a retry);
    the error reaches the ticket layer and the trials in training stay RUNNING, for the
    sweeper to fail as lost_worker and run again with their parameters."""
    study = new_study(tmp_path)
    slots = [TrialSlot(), TrialSlot(TrialHooks(stop_reason=database_away_after(3))),
             TrialSlot()]
    with pytest.raises(OperationalError):
        run_trial_cohorts(study, slots, space(), to_tensors(blobs), seed=0)
    assert [t.state for t in study.trials] == [TrialState.RUNNING] * 3
    assert not [t for t in study.trials if "stop_reason" in t.user_attrs]


def test_a_retry_runs_the_lost_trials_parameters(tmp_path: Path, blobs: PreparedData) -> None:
    study = new_study(tmp_path)
    lost = {"n_layers": 2, "n_units_l0": 17, "n_units_l1": 23, "optimizer": "sgd",
            "activation": "gelu", "lr": 0.005, "weight_decay": 1e-4}
    told = run_trial_cohorts(study, [TrialSlot(), TrialSlot(retry_params=lost), TrialSlot()],
                             space(momentum=Fixed(0.9), nesterov=Fixed(False)),
                             to_tensors(blobs), seed=0)
    assert told[1] is not None and told[1].params == lost
    assert all(t.state == TrialState.COMPLETE for t in study.trials)


def test_models_too_wide_to_gain_train_one_at_a_time(tmp_path: Path,
                                                     blobs: PreparedData) -> None:
    study = new_study(tmp_path)
    wide = space(n_layers=Fixed(3), units=Fixed(400))  # > 100 k multiply-adds a row
    run_trial_cohorts(study, [TrialSlot() for _ in range(2)], wide, to_tensors(blobs), seed=0)
    assert [t.user_attrs["cohort_size"] for t in study.trials] == [1, 1]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)


def test_piecewise_linear_members_share_their_bins_and_keep_their_curves(
        tmp_path: Path, blobs: PreparedData) -> None:
    study = new_study(tmp_path)
    data = to_tensors(blobs)
    embedded = space(embedding=Fixed("piecewise_linear"), n_bins=IntRange(4, 16),
                     embedding_dim=IntRange(4, 8, step=4), batch_norm=Choice((False, True)))
    run_trial_cohorts(study, [TrialSlot() for _ in range(4)], embedded, data, seed=1)
    trials = study.trials
    assert {t.user_attrs["cohort_size"] for t in trials} == {4}
    assert len({(t.params["n_bins"], t.params["embedding_dim"]) for t in trials}) == 1
    for trial in trials:
        config = TrialConfig.from_dict(trial.user_attrs["config"])
        _, alone = fit(config, data)
        curve = [trial.intermediate_values[e] for e in sorted(trial.intermediate_values)]
        assert curve == pytest.approx(alone.val_losses, abs=1e-4)
