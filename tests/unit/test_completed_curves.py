"""The cached median/percentile pruner decides as Optuna's own, call for call, on studies
that evolve the way a run does: trials start, report (NaN and inf included, steps
skipped), and end COMPLETE, PRUNED or FAIL while others run; some are enqueued."""

from __future__ import annotations

import math
import pickle
import random

import optuna
import pytest
from optuna.trial import TrialState
from study_settings import study_settings

from automl.study.settings import make_pruner
from automl.study.storage.completed_curves import CachedMedianPruner, CachedPercentilePruner
from automl.study.studies import make_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)
# NaN and inf among the values: numpy warns while interpolating, for both pruners alike.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def a_value(rng: random.Random) -> float:
    draw = rng.random()
    if draw < 0.03:
        return math.nan
    if draw < 0.05:
        return math.inf
    return round(rng.gauss(1.0, 0.3), 2)  # rounded: ties between trials happen


def compare_on_evolving_study(study: optuna.Study, pairs: list[tuple[optuna.pruners.BasePruner,
                                                                     optuna.pruners.BasePruner]],
                              seed: int, events: int = 600) -> int:
    """Run random events on ``study``; after every report, each pair of pruners must agree.
    Returns how many calls said prune (so a test can see both answers were exercised)."""
    rng = random.Random(seed)
    live: dict[int, tuple[optuna.Trial, int]] = {}  # number -> (trial, its next step)
    pruned = 0
    for _ in range(events):
        action = rng.random()
        if action < 0.15 or not live:
            if rng.random() < 0.1:
                study.enqueue_trial({})
            trial = study.ask()
            live[trial.number] = (trial, 0)
        elif action < 0.8:
            number = rng.choice(sorted(live))
            trial, step = live[number]
            trial.report(a_value(rng), step)
            live[number] = (trial, step + rng.choice((1, 1, 1, 2)))
            frozen = study._storage.get_trial(trial._trial_id)
            for cached, optuna_pruner in pairs:
                said = cached.prune(study, frozen)
                assert said == optuna_pruner.prune(study, frozen), (number, step)
                pruned += said
        else:
            number = rng.choice(sorted(live))
            trial, step = live.pop(number)
            end = rng.choices([TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL],
                              [6, 2, 1])[0]
            if end == TrialState.COMPLETE:
                study.tell(trial, round(rng.gauss(1.0, 0.3), 2))
            else:
                study.tell(trial, state=end)
    return pruned


def pruner_pairs(rng: random.Random) -> list[tuple[optuna.pruners.BasePruner,
                                                  optuna.pruners.BasePruner]]:
    pairs: list[tuple[optuna.pruners.BasePruner, optuna.pruners.BasePruner]] = []
    for _ in range(4):
        options = {"n_startup_trials": rng.randint(0, 4), "n_warmup_steps": rng.randint(0, 3),
                   "interval_steps": rng.randint(1, 3), "n_min_trials": rng.randint(1, 4)}
        percentile = rng.choice([10.0, 25.0, 40.0, 50.0, 75.0])
        pairs.append((CachedPercentilePruner(percentile, **options),
                      optuna.pruners.PercentilePruner(percentile, **options)))
    pairs.append((CachedMedianPruner(n_startup_trials=2, n_warmup_steps=1),
                  optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)))
    return pairs


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_it_prunes_exactly_when_optunas_pruner_does(direction: str, seed: int) -> None:
    study = optuna.create_study(direction=direction)
    pruned = compare_on_evolving_study(study, pruner_pairs(random.Random(seed)), seed)
    assert pruned > 0  # both answers were exercised


def test_it_agrees_through_the_runs_own_storage(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """SQLite through make_storage (write-behind buffers, snapshots), as ``tune`` uses it."""
    storage = make_storage(f"sqlite:///{tmp_path / 'study.db'}")
    study = optuna.create_study(storage=storage, study_name="curves")
    assert compare_on_evolving_study(study, pruner_pairs(random.Random(7)), 7, events=250)


def test_a_storage_listing_trials_out_of_order_is_read_whole() -> None:
    study = optuna.create_study()
    listed = study.get_trials

    def reversed_trials(deepcopy: bool = True, states=None):  # type: ignore[no-untyped-def]
        return list(reversed(listed(deepcopy=deepcopy, states=states)))

    study.get_trials = reversed_trials  # type: ignore[method-assign]
    assert compare_on_evolving_study(study, pruner_pairs(random.Random(3)), 3, events=300)


def test_one_pruner_serves_two_studies_in_turn() -> None:
    cached, reference = CachedMedianPruner(n_startup_trials=1), optuna.pruners.MedianPruner(
        n_startup_trials=1)
    for seed in (4, 5, 4):  # back to a study it has seen: read afresh, same answers
        compare_on_evolving_study(optuna.create_study(), [(cached, reference)], seed, 200)


def test_the_runs_pruners_are_the_cached_ones_and_pickle() -> None:
    median = make_pruner(study_settings(pruner="median"))
    percentile = make_pruner(study_settings(pruner="percentile", pruner_percentile=40))
    assert isinstance(median, CachedMedianPruner)
    assert isinstance(median, optuna.pruners.MedianPruner)
    assert isinstance(percentile, CachedPercentilePruner)
    copy = pickle.loads(pickle.dumps(median))
    assert copy._n_warmup_steps == median._n_warmup_steps and copy._percentile == 50.0


def test_within_one_read_the_checks_share_the_first_checks_read() -> None:
    """A cohort's members at one epoch: one read of the study, not one per member; a
    trial completed after that read counts from the next block on."""
    from automl.study.storage.completed_curves import reading_once

    study = optuna.create_study()
    pruner = CachedMedianPruner(n_startup_trials=1, n_warmup_steps=0)
    reads: list[int] = []
    get_trials = study.get_trials

    def counting_get_trials(*args: object, **kwargs: object) -> list:
        reads.append(1)
        return get_trials(*args, **kwargs)  # type: ignore[arg-type]

    study.get_trials = counting_get_trials  # type: ignore[method-assign]
    done = study.ask()
    done.report(1.0, 0)
    study.tell(done, 1.0)
    members = [study.ask() for _ in range(4)]
    for trial in members:
        trial.report(2.0, 0)
    late = study.ask()
    with reading_once(pruner):
        first = pruner.prune(study, study._storage.get_trial(members[0]._trial_id))
        late.report(3.0, 0)
        study.tell(late, 3.0)  # the median at step 0 would now be 2.0: not yet seen
        rest = [pruner.prune(study, study._storage.get_trial(t._trial_id))
                for t in members[1:]]
    assert len(reads) == 1
    assert first and all(rest)  # 2.0 > 1.0, the only completed value read
    assert not pruner.prune(study, study._storage.get_trial(members[1]._trial_id))
    assert len(reads) == 2  # outside the block: read again, and the late trial counts
    with reading_once(optuna.pruners.MedianPruner()):  # other pruners read as usual
        pass


def test_a_steps_percentile_is_computed_once_until_its_values_change(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from automl.study.storage import completed_curves

    computed: list[int] = []
    percentile_of = completed_curves.percentile_of

    def counting(*args: object, **kwargs: object) -> float:
        computed.append(1)
        return percentile_of(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(completed_curves, "percentile_of", counting)
    study = optuna.create_study()
    pruner = CachedMedianPruner(n_startup_trials=1, n_warmup_steps=0)
    for value in (1.0, 3.0):
        done = study.ask()
        done.report(value, 0)
        study.tell(done, value)
    members = [study.ask() for _ in range(5)]
    for trial in members:
        trial.report(2.5, 0)
    said = [pruner.prune(study, study._storage.get_trial(t._trial_id)) for t in members]
    assert said == [True] * 5 and len(computed) == 1  # median 2.0, computed once
    late = study.ask()
    late.report(4.0, 0)
    study.tell(late, 4.0)  # the median at step 0 is now 3.0
    assert not pruner.prune(study, study._storage.get_trial(members[0]._trial_id))
    assert len(computed) == 2


def test_a_steps_values_grow_past_their_first_buffer_and_earlier_views_stay() -> None:
    from automl.study.storage.completed_curves import CompletedCurves

    study = optuna.create_study()
    curves = CompletedCurves()
    values = [float(i % 13) for i in range(300)]
    views = []
    for value in values:
        trial = study.ask()
        trial.report(value, 0)
        trial.report(-value, 2)  # step 1 skipped
        study.tell(trial, value)
        n_complete, at_0 = curves.at(study, 0)
        views.append(at_0)
        assert n_complete == len(views)
    assert views[-1].tolist() == values
    assert views[99].tolist() == values[:100]  # a view taken earlier is not touched
    assert curves.at(study, 2)[1].tolist() == [-v for v in values]
    assert curves.at(study, 1)[1].size == 0
    with pytest.raises(ValueError):  # the pruner's cached bar relies on it
        views[-1][0] = 99.0
