"""The reads of a study one process serves again: recent, and only until it writes."""

from __future__ import annotations

from collections.abc import Callable

from automl.study.storage.recent_reads import RecentReads


def counting(answer: bool) -> tuple[list[int], Callable[[], bool]]:
    calls: list[int] = []

    def query() -> bool:
        calls.append(1)
        return answer

    return calls, query


def test_no_enqueued_trial_is_believed_until_this_process_enqueues_one() -> None:
    reads = RecentReads(waiting_s=3600.0)
    calls, query = counting(False)
    assert not reads.any_waiting(1, query) and not reads.any_waiting(1, query)
    assert len(calls) == 1
    reads.wrote()  # other writes (a report, a tell) do not enqueue anything
    assert not reads.any_waiting(1, query) and len(calls) == 1
    reads.enqueued(2)  # another study's enqueue
    assert not reads.any_waiting(1, query) and len(calls) == 1
    reads.enqueued(1)
    assert not reads.any_waiting(1, query) and len(calls) == 2


def test_a_study_with_an_enqueued_trial_is_asked_every_time() -> None:
    reads = RecentReads(waiting_s=3600.0)
    calls, query = counting(True)
    assert reads.any_waiting(1, query) and reads.any_waiting(1, query)
    assert len(calls) == 2  # the next ask pops it: whether more wait is not known


def test_an_enqueue_during_the_query_is_not_lost() -> None:
    reads = RecentReads(waiting_s=3600.0)
    calls: list[int] = []

    def racing() -> bool:  # another thread of ours enqueues after the query looked
        calls.append(1)
        if len(calls) == 1:
            reads.enqueued(1)
        return False

    assert not reads.any_waiting(1, racing)
    assert not reads.any_waiting(1, racing) and len(calls) == 2  # asked again


def test_a_read_of_all_trials_is_served_again_until_a_write_or_its_age() -> None:
    reads = RecentReads(snapshot_s=3600.0)
    calls: list[int] = []

    def read() -> list:
        calls.append(1)
        return []

    first = reads.all_trials(1, read)
    assert reads.all_trials(1, read) is first and len(calls) == 1
    reads.all_trials(2, read)
    assert len(calls) == 2  # per study
    reads.wrote()
    reads.all_trials(1, read)
    assert len(calls) == 3
    reads.snapshot_s = 0.0
    reads.all_trials(1, read)
    assert len(calls) == 4
