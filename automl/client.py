"""The Python client: submit runs, watch them, fetch results and models.

    >>> client = automl.Client("postgresql://automl@db.internal/automl")  # or Client.from_env()
    >>> run = client.submit("houses.csv", target="price", n_trials=50)
    >>> result = run.wait(progress=True)      # same content as ``automl tune --json``
    >>> model = run.model()                   # predicts on raw rows (needs the worker extras)

Submitting needs neither torch nor ray. Nothing is written unless every check passed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from automl.errors import ConfigError, RunFailedError
from automl.options import TuneOptions
from automl.queue.engine import make_engine
from automl.queue.queries import cancel_run, recent_run_ids, run_of, run_state
from automl.queue.schema import check_schema
from automl.run.progress import RunProgress
from automl.run.submit import validate_submission, write_submission
from automl.study.storage.retry import with_retry

STORAGE_ENV = "AUTOML_STORAGE"
FINISHED = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class RunStatus:
    """Where a run stands.

    The trial counts are read from the study's trials, so they are the counts its result
    reports: ``trials_done`` = complete + pruned + failed (a trial lost with its worker is
    failed, and its re-run counted again). ``trials_left`` is the trial budget
    (``n_trials``) not yet spent: trials queued or running. Baselines are not trials:
    their counts are the run's baseline tickets."""

    run_id: str
    status: str
    n_trials: int
    trials_done: int
    trials_complete: int
    trials_pruned: int
    trials_failed: int
    trials_running: int
    trials_left: int
    baselines_done: int
    n_baselines: int
    error: str | None
    submitted_by: str | None = None
    study_name: str | None = None  # what `tune` prints as the run's name

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def budget_spent(self) -> int:
        """Trials of the budget that have ended, however they ended."""
        return self.n_trials - self.trials_left


class Client:
    """A connection to the service's database (PostgreSQL, or SQLite on one machine)."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        check_schema(self.engine)

    @classmethod
    def from_env(cls) -> Client:
        """Use ``$AUTOML_STORAGE`` (a password-less URL plus ~/.pgpass or PGPASSWORD)."""
        url = os.environ.get(STORAGE_ENV)
        if not url:
            raise ConfigError(f"set {STORAGE_ENV} to the service's database URL", field="storage")
        return cls(url)

    def submit(self, data: Any, target: Any = None, *, space: Any = None,
               **options: Any) -> RunHandle:
        """Validate ``data``, ``space`` and options, then queue the run.

        Options are those of :class:`automl.TuneOptions` (``n_trials``, ``timeout``,
        ``seed``, ``n_seeds``, ``pruner``, ``task``...). Raises a typed
        :class:`~automl.errors.AutoMLError` before anything is written.
        """
        opts = TuneOptions(storage=self.url, progress=False, **options)
        run_id = write_submission(self.engine, validate_submission(data, target, space, opts))
        return RunHandle(self, run_id)

    def run(self, run: str) -> RunHandle:
        """The run with this id, or whose study has this name (``tune`` names its runs
        after their study); raises :class:`ConfigError` when there is none."""
        found = run_of(self.engine, run, or_study=True)
        if found is None:
            raise ConfigError(f"no run or study named {run} in this storage; list them with "
                              "`automl runs`", field="run")
        return RunHandle(self, found.id)

    def runs(self, limit: int = 50) -> list[RunStatus]:
        """The most recent runs, newest first."""
        return [RunHandle(self, run_id).status()
                for run_id in with_retry(lambda: recent_run_ids(self.engine, limit))]

    def close(self) -> None:
        self.engine.dispose()


class RunHandle:
    """One submitted run."""

    def __init__(self, client: Client, run_id: str):
        self.client, self.id = client, run_id

    def __repr__(self) -> str:
        return f"RunHandle({self.id!r})"

    def status(self) -> RunStatus:
        """The run's status, its trials' counts and its baselines' (retried through a
        database restart)."""
        return with_retry(self._status)

    def _status(self) -> RunStatus:
        state = run_state(self.client.engine, self.id)
        if state is None:
            raise ConfigError(f"no run with id {self.id}", field="run")
        run, tickets, trials = state.run, state.tickets, state.trials
        done = trials["COMPLETE"] + trials["PRUNED"] + trials["FAIL"]
        return RunStatus(
            run_id=run.id, status=run.status, n_trials=run.n_trials, trials_done=done,
            trials_complete=trials["COMPLETE"], trials_pruned=trials["PRUNED"],
            trials_failed=trials["FAIL"], trials_running=trials["RUNNING"],
            trials_left=tickets[("trial", "queued")] + tickets[("trial", "running")],
            baselines_done=tickets[("baseline", "done")],
            n_baselines=sum(n for (k, _), n in tickets.items() if k == "baseline"),
            error=run.error, submitted_by=run.submitted_by, study_name=run.study_name)

    def wait(self, progress: bool = True, poll_s: float = 1.0,
             timeout: float | None = None) -> dict[str, Any]:
        """Block until the run has ended and nothing of it runs (showing its progress as
        ``tune`` does), then return its result."""
        watch = RunProgress(self.client.engine, self.id, progress, every_s=0.0)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not watch.watch():
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"run {self.id} still running after {timeout} s")
                time.sleep(poll_s)
        finally:
            watch.close()
        return self.result()

    def result(self) -> dict[str, Any]:
        """The finished run's result: the same JSON as ``automl tune --json``."""
        run = run_of(self.client.engine, self.id)
        if run is None:
            raise ConfigError(f"no run with id {self.id}", field="run")
        if run.status != "succeeded" or run.summary is None:
            reason = f": {run.error}" if run.error else ""
            raise RunFailedError(f"run {self.id} is {run.status}{reason}", field="run")
        return dict(run.summary)

    def cancel(self) -> bool:
        """Stop handing out this run's work; running trials stop at their next epoch.

        False if the run had already ended; raises
        :class:`~automl.errors.PermissionDeniedError` if it is another role's run."""
        return cancel_run(self.client.engine, self.id)

    def model(self) -> Any:
        """The best model, ready to predict on raw rows (needs ``automl[worker]``).

        It is read from Optuna's artifact store in the same database (the files
        ``automl export`` writes); raises a typed error while the run has no model."""
        from automl.results.artifacts import read_model
        from automl.run.runtime import predictor_from_files

        files = read_model(self.client.url, self.id, onnx=False, engine=self.client.engine)
        return predictor_from_files(files)
