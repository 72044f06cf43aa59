"""The trials that changed since the last look at a study's trial list."""

from __future__ import annotations

from optuna.trial import FrozenTrial, TrialState, create_trial

from automl.study.storage.trial_cursor import TrialCursor


def trial(number: int, state: TrialState = TrialState.COMPLETE) -> FrozenTrial:
    made = create_trial(state=state, value=1.0 if state == TrialState.COMPLETE else None)
    made.number = number
    return made


def numbers(changed: list[FrozenTrial] | None) -> list[int] | None:
    return None if changed is None else [t.number for t in changed]


def test_each_finished_trial_is_seen_once_and_an_open_one_until_it_finishes() -> None:
    cursor = TrialCursor()
    trials = [trial(0), trial(1, TrialState.RUNNING), trial(2)]
    assert numbers(cursor.changed(trials)) == [0, 1, 2]
    assert numbers(cursor.changed(trials)) == [1]  # still running: looked at again
    trials[1] = trial(1, TrialState.PRUNED)
    trials.append(trial(3, TrialState.WAITING))
    assert numbers(cursor.changed(trials)) == [1, 3]
    assert numbers(cursor.changed(trials)) == [3]
    trials[3] = trial(3, TrialState.FAIL)
    assert numbers(cursor.changed(trials)) == [3]
    assert numbers(cursor.changed(trials)) == []


def test_a_list_it_cannot_continue_on_is_refused_and_nothing_remembered() -> None:
    cursor = TrialCursor()
    assert numbers(cursor.changed([trial(0), trial(1), trial(2)])) == [0, 1, 2]
    assert cursor.changed([trial(0)]) is None  # shorter: another study
    assert cursor.changed([trial(0), trial(1), trial(2), trial(4), trial(3)]) is None
    assert numbers(cursor.changed([trial(0), trial(1), trial(2), trial(3)])) == [3]
    cursor.reset()
    assert numbers(cursor.changed([trial(0), trial(1)])) == [0, 1]
