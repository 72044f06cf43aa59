"""``automl worker``: claim tickets from the service's database and run them.

The loop is short: sweep (expired leases, overdue trials, finished runs), claim one
ticket, run it under a heartbeat that renews its lease, release it, repeat. A ticket is
one trial, one baseline (trained over the run's seeds) or the final evaluation of the best
trial, which also stores the model. Whichever worker sees a run's last ticket end writes
the run's summary.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timezone
from typing import Any

import optuna
import torch
from optuna.trial import TrialState
from sqlalchemy import delete
from sqlalchemy.orm import Session

from automl.data import PreparedData, load_dataset
from automl.db import queries
from automl.db.engine import make_engine
from automl.db.models import BaselineResult, Dataset, ModelArtifact, Run
from automl.db.schema import check_schema
from automl.result import ModelScore
from automl.retry import is_transient, with_retry
from automl.service import read_frame
from automl.space import SearchSpace
from automl.studies import StudySettings, create_study, load_study, make_storage
from automl.summary import architecture, constant_baseline, final_seeds, summarize
from automl.trials import best_trial, trial_config
from automl.tuner import baselines_for
from workers.data import TensorSplits, to_tensors
from workers.evaluate import fit, measure
from workers.objective import TrialHooks, TrialInterrupted, run_trial
from workers.predictor import weights_to_bytes

logger = logging.getLogger(__name__)


@dataclass
class RunContext:
    """What a worker keeps per run: its row, data (as tensors) and space."""

    run: Run
    prepared: PreparedData
    data: TensorSplits
    space: SearchSpace


class Heartbeat:
    """Renews a ticket's lease in the background; tells the work when to stop."""

    def __init__(self, worker: ServiceWorker, ticket_id: int, run_id: str):
        self.worker, self.ticket_id, self.run_id = worker, ticket_id, run_id
        self.reason: str | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _beat(self) -> None:
        interval = self.worker.lease_s / 3
        while not self._done.wait(interval):
            try:
                held = queries.renew_lease(self.worker.engine, self.ticket_id,
                                           self.worker.worker_id, self.worker.lease_s)
            except Exception:  # the database is away: keep trying until the lease lapses
                logger.warning("heartbeat failed; retrying", exc_info=True)
                continue
            if not held:
                self.reason = "cancelled" if self.worker.run_status(self.run_id) == \
                    "cancelled" else "lease_lost"
                return

    def stop_reason(self) -> str | None:
        return self.reason


class ServiceWorker:
    """One worker process. ``serve()`` runs tickets until told to stop or idle."""

    def __init__(self, url: str, *, worker_id: str | None = None, lease_s: float = 30.0,
                 poll_s: float = 1.0, threads: int = 1):
        self.url, self.lease_s, self.poll_s = url, lease_s, poll_s
        self.engine = make_engine(url)
        check_schema(self.engine)
        self.storage = make_storage(url)
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self._contexts: dict[str, RunContext] = {}
        torch.set_num_threads(threads)

    def serve(self, max_tickets: int | None = None, idle_exit: float | None = None) -> int:
        """Run tickets; stop after ``max_tickets`` or ``idle_exit`` seconds with no work."""
        done, idle_since = 0, time.monotonic()
        while max_tickets is None or done < max_tickets:
            try:
                worked = self.step()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                logger.warning("database unavailable beyond the retry budget; waiting")
                worked = False
            if worked:
                done, idle_since = done + 1, time.monotonic()
            elif idle_exit is not None and time.monotonic() - idle_since >= idle_exit:
                break
            else:
                time.sleep(self.poll_s)
        return done

    def step(self) -> bool:
        """Sweep, then claim and run one ticket; False when there was nothing to do."""
        self.sweep()
        claim = queries.claim_ticket(self.engine, self.worker_id, self.lease_s)
        if claim is None:
            return False
        self.handle(claim)
        return True

    def handle(self, claim: queries.Claim) -> None:
        queries.start_run(self.engine, claim.run_id)
        status, result, error = "done", None, None
        with Heartbeat(self, claim.id, claim.run_id) as beat:
            try:
                result = self.execute(claim, self.context(claim.run_id), beat)
            except Exception as exc:
                status, error = "failed", f"{type(exc).__name__}: {exc}"[:2000]
                logger.warning("ticket %s (%s %s) failed: %s", claim.id, claim.kind,
                               claim.name, error)
        queries.release_ticket(self.engine, claim.id, self.worker_id, status=status,
                               result=result, error=error)
        self.finish_ready_runs()

    def execute(self, claim: queries.Claim, ctx: RunContext, beat: Heartbeat) -> dict[str, Any]:
        if claim.kind == "trial":
            return self.run_trial(claim, ctx, beat)
        if claim.kind == "baseline":
            return self.run_baseline(claim.name, ctx, beat)
        return self.run_best(ctx, beat)

    def run_trial(self, claim: queries.Claim, ctx: RunContext, beat: Heartbeat) -> dict[str, Any]:
        study = self.study(ctx.run, worker_index=claim.id)
        if claim.retry_params:
            study.enqueue_trial(claim.retry_params)
        numbers: list[int] = []

        def on_start(trial: optuna.Trial) -> None:
            numbers.append(trial.number)
            queries.set_trial_number(self.engine, claim.id, trial.number)

        run_trial(study, ctx.space, ctx.data, ctx.run.seed, TrialHooks(on_start, beat.stop_reason))
        return {"trial_number": numbers[0] if numbers else None}

    def run_baseline(self, name: str, ctx: RunContext, beat: Heartbeat) -> dict[str, Any]:
        baseline = next(b for b in baselines_for(ctx.prepared, ctx.space) if b.name == name)
        assert baseline.config is not None
        runs = [self._evaluate(baseline.config.with_seed(s), ctx, beat)[0]
                for s in final_seeds(ctx.run.seed, ctx.run.n_seeds)]
        score = ModelScore.from_evaluations(name, baseline.rule,
                                            architecture(baseline.config), runs)
        with Session(self.engine) as session, session.begin():
            session.execute(delete(BaselineResult).where(BaselineResult.run_id == ctx.run.id,
                                                         BaselineResult.name == name))
            session.add(BaselineResult(run_id=ctx.run.id, **vars(score)))
        return {"name": name, "test_score": score.test_score}

    def run_best(self, ctx: RunContext, beat: Heartbeat) -> dict[str, Any]:
        study = self.study(ctx.run)
        best = best_trial(study)
        if best is None:
            raise RuntimeError("no trial completed: every trial was pruned or failed")
        config = trial_config(best)
        runs, model = [], None
        for seed in final_seeds(ctx.run.seed, ctx.run.n_seeds):
            evaluation, trained = self._evaluate(config.with_seed(seed), ctx, beat)
            runs.append(evaluation)
            model = model or trained
        assert model is not None
        with Session(self.engine) as session, session.begin():
            session.merge(ModelArtifact(
                run_id=ctx.run.id, config=config.to_dict(),
                preprocessor=ctx.prepared.preprocessor.to_dict(), n_inputs=ctx.data.n_inputs,
                n_outputs=ctx.data.n_outputs, weights=weights_to_bytes(model),
                created_at=queries.utcnow()))
        return {"trial_number": best.number, "runs": runs}

    def _evaluate(self, config: Any, ctx: RunContext,
                  beat: Heartbeat) -> tuple[dict[str, Any], torch.nn.Module]:
        model, outcome = fit(config, ctx.data, lambda _e, _v: beat.stop_reason() is not None)
        if beat.stop_reason():
            raise TrialInterrupted(beat.stop_reason())
        return measure(model, outcome, ctx.data).to_dict(), model

    def sweep(self) -> None:
        """Re-queue expired leases (failing their lost trials), skip overdue trials and
        write the summary of every run whose work is all done."""
        for expired in queries.expire_leases(self.engine):
            if expired.kind == "trial" and expired.trial_number is not None:
                params = self.fail_lost_trial(expired.run_id, expired.trial_number)
                if expired.requeued and params is not None:
                    queries.set_retry_params(self.engine, expired.id, params)
        queries.skip_overdue_trials(self.engine)
        self.finish_ready_runs()

    def fail_lost_trial(self, run_id: str, number: int) -> dict[str, Any] | None:
        """Fail the trial a dead worker left RUNNING; return its params for the retry."""
        study = self.study(self.context(run_id).run)
        trial = next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)
        if trial is None:
            return None
        if trial.state == TrialState.RUNNING:
            self.storage.set_trial_user_attr(trial._trial_id, "stop_reason", "lost_worker")
            study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
        return dict(trial.params)

    def finish_ready_runs(self) -> None:
        def ready_runs() -> list[str]:
            with Session(self.engine) as session:
                return queries.unfinished_runs_done(session)

        for run_id in with_retry(ready_runs):
            self.finish(run_id)

    def finish(self, run_id: str) -> None:
        ctx = self.context(run_id)
        with Session(self.engine) as session:
            best = queries.best_ticket_result(session, run_id)
            rows = queries.baselines_of(session, run_id)
        if best is None:
            queries.finish_run(self.engine, run_id, status="failed", summary=None,
                               error="no trial completed: every trial was pruned or failed")
            return
        study = self.study(ctx.run)
        trial = next(t for t in study.get_trials(deepcopy=False)
                     if t.number == best["trial_number"])
        scores = [ModelScore(r.name, r.rule, r.architecture, r.test_score, r.test_score_std,
                             r.test_scores, r.val_score, r.n_parameters, r.train_seconds,
                             r.epochs) for r in rows]
        floor = next(b for b in baselines_for(ctx.prepared, ctx.space) if b.config is None)
        scores.append(constant_baseline(ctx.prepared, floor))
        started = ctx.run.started_at or ctx.run.created_at
        elapsed = (queries.utcnow() - started.replace(tzinfo=started.tzinfo or timezone.utc))
        result = summarize(study, ctx.prepared, trial, best["runs"], scores,
                           n_seeds=ctx.run.n_seeds, storage=self.url,
                           tuning_seconds=elapsed.total_seconds())
        queries.finish_run(self.engine, run_id, status="succeeded", summary=result.to_dict())

    def study(self, run: Run, worker_index: int = 0) -> optuna.Study:
        """The run's study, created by whichever worker gets there first."""
        create_study(self.url, run.study_name, StudySettings(**run.settings),
                     {"task": run.task, "metric": run.metric, "space": run.space,
                      "run_id": run.id}, storage=self.storage, load_if_exists=True)
        return load_study(self.url, run.study_name, worker_index, storage=self.storage)

    def run_status(self, run_id: str) -> str | None:
        with Session(self.engine) as session:
            run = session.get(Run, run_id)
            return None if run is None else run.status

    def context(self, run_id: str) -> RunContext:
        """Load (once per process) the run, its data as tensors and its space."""
        if run_id not in self._contexts:
            with Session(self.engine, expire_on_commit=False) as session:
                run = session.get(Run, run_id)
                assert run is not None
                dataset = session.get(Dataset, run.dataset_id)
                assert dataset is not None
                session.expunge_all()
            prepared = load_dataset(read_frame(dataset), dataset.target, task=run.task,
                                    seed=run.seed)
            # One run at a time is kept: a worker moving between runs does not pile up data.
            self._contexts = {run_id: RunContext(run, prepared, to_tensors(prepared,
                              self.device), SearchSpace.from_dict(run.space))}
        return self._contexts[run_id]
