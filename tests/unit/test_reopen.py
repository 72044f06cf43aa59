"""Re-opening an ended run (``automl finish`` / ``resume``): what changes in the queue,
and what is refused, on a SQLite file with no worker."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from automl.client import Client, RunHandle
from automl.errors import ConfigError
from automl.queue import leases
from automl.queue.reopen import reopen_run, trial_tickets
from automl.queue.schema import ensure_schema

SPACE = {"max_epochs": 2, "n_layers": 1, "units": 8}


@pytest.fixture
def submitted(tmp_path: Path, digits_frame: pd.DataFrame) -> RunHandle:
    url = f"sqlite:///{tmp_path / 'reopen.db'}"
    ensure_schema(url)
    return Client(url).submit(digits_frame.iloc[:300], "target", space=SPACE, n_trials=5)


def test_finishing_skips_the_unspent_trials_and_queues_the_final_work(
        submitted: RunHandle) -> None:
    engine = submitted.client.engine
    claim = leases.claim_ticket(engine, "w1", lease_s=30)
    assert claim is not None and claim.kind == "trial"
    leases.release_ticket(engine, claim.id, "w1", status="done", result={})
    submitted.cancel()
    reopened = reopen_run(engine, submitted.id, resume=False, note="finished early")
    assert (reopened.trials_skipped, reopened.trials_queued) == (4, 0)
    assert reopened.final_queued == 8  # seven trained baselines and the best model
    assert trial_tickets(engine, submitted.id) == {"done": 1, "skipped": 4}
    status = submitted.status()
    assert status.status == "running" and status.trials_left == 0


def test_resuming_queues_the_unspent_trials_again(submitted: RunHandle) -> None:
    submitted.cancel()
    reopened = reopen_run(submitted.client.engine, submitted.id, resume=True)
    assert (reopened.trials_skipped, reopened.trials_queued) == (0, 5)
    assert submitted.status().trials_left == 5


def test_a_run_a_worker_still_holds_is_refused(submitted: RunHandle) -> None:
    engine = submitted.client.engine
    assert leases.claim_ticket(engine, "w1", lease_s=300) is not None
    with pytest.raises(ConfigError, match=r"still running.*automl cancel"):
        reopen_run(engine, submitted.id, resume=True)


def test_a_crashed_run_whose_lease_lapsed_can_be_reopened(submitted: RunHandle) -> None:
    engine = submitted.client.engine
    assert leases.claim_ticket(engine, "w1", lease_s=-1) is not None  # its worker died
    assert reopen_run(engine, submitted.id, resume=True).trials_queued == 5


def test_a_sqlite_store_holding_runs_upgrades_past_0006(submitted: RunHandle) -> None:
    """0006 widens automl_runs.metric only where lengths are enforced: on SQLite the
    rebuild it would take is forbidden by the tickets' foreign keys once a run exists."""
    from automl.queue.schema import current_revision, head_revision, migrate

    engine = submitted.client.engine
    migrate(engine, "0005", down=True)
    migrate(engine)
    assert current_revision(engine) == head_revision()
    assert submitted.status().status == "queued"  # the run and its tickets are intact


def test_a_failed_run_whose_trials_are_still_in_flight_is_refused(
        submitted: RunHandle) -> None:
    """The circuit breaker fails a run and lets its trials in flight finish: their live
    leases keep it from being re-opened under them."""
    from automl.queue.queries import fail_run

    engine = submitted.client.engine
    assert leases.claim_ticket(engine, "w1", lease_s=300) is not None
    assert fail_run(engine, submitted.id, "stopped after 10 consecutive trials failed")
    with pytest.raises(ConfigError, match="still running"):
        reopen_run(engine, submitted.id, resume=True)


def test_resuming_gives_a_timed_run_its_timeout_again(tmp_path: Path,
                                                      digits_frame: pd.DataFrame) -> None:
    from automl.queue.queries import run_of

    url = f"sqlite:///{tmp_path / 'timed.db'}"
    ensure_schema(url)
    run = Client(url).submit(digits_frame.iloc[:300], "target", space=SPACE, n_trials=5,
                             timeout=600)
    run.cancel()
    reopen_run(run.client.engine, run.id, resume=True)
    stored = run_of(run.client.engine, run.id)
    assert stored is not None and stored.deadline_at is not None
