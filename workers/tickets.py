"""Run one claimed ticket in this process: a trial, a baseline, or the best model.

A :class:`TicketRunner` loads each run's data once (as tensors on its device) and is
used both by the in-process worker and inside Ray tasks. ``stop_reason`` is polled every
epoch; a non-None answer (the run was cancelled, or the lease was lost) stops the work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState
from sqlalchemy import Engine

from automl.configs import TrialConfig
from automl.data import PreparedData, load_dataset
from automl.queue import leases, queries
from automl.queue.engine import make_engine
from automl.queue.models import Run
from automl.results.artifacts import DatabaseArtifactStore, upload_model
from automl.results.result import ModelScore
from automl.run.finish import architecture, final_seeds
from automl.run.plan import baselines_for, first_trials
from automl.space import SearchSpace
from automl.study.pruning import BaselineCurve, record_curve
from automl.study.settings import StudySettings, make_sampler, pruning_policy
from automl.study.storage.private import stored_trial
from automl.study.storage.retry import with_retry
from automl.study.storage.write_behind import RETRY_ATTR
from automl.study.studies import create_study, load_study, make_proxy_storage, make_storage
from automl.study.trials import best_trial, fail_trial, failure_kind, trial_config
from workers.data import TensorSplits, to_tensors
from workers.dataset_cache import cached_frame
from workers.evaluate import SeedsEvaluation, evaluate_seeds
from workers.importance import permutation_importance
from workers.objective import TrialHooks, TrialInterrupted, run_trial
from workers.predictor import Predictor
from workers.trial_cohorts import TrialSlot, run_trial_cohorts

StopReason = Callable[[], str | None]


# Seeds apart for a ticket's attempts: far more tickets than any run holds.
ATTEMPT_SEED_STRIDE = 1_000_003


def sampler_index(claim: leases.Claim) -> int:
    """The sampler's seed offset for ``claim``: its ticket and its attempt. A ticket run
    again after its worker died must not replay its first attempt's random draws: the
    dead worker's trials, already rerun with their own parameters, would be drawn again."""
    return claim.id + ATTEMPT_SEED_STRIDE * (claim.attempts - 1)


@dataclass(frozen=True)
class LostTrial:
    """What became of the trial of a ticket whose worker died: failed now or before
    (re-queue the ticket with ``params``), or finished by the worker before it died
    (``finished``: the ticket's work is done)."""

    finished: bool
    params: dict[str, Any] | None = None


@dataclass
class RunContext:
    """What a process keeps per run: its row, data and space; the data as tensors on
    ``device`` once a ticket trains on them (a driver that only finishes runs never
    builds them)."""

    run: Run
    prepared: PreparedData
    space: SearchSpace
    device: str
    _tensors: TensorSplits | None = None

    @property
    def data(self) -> TensorSplits:
        if self._tensors is None:
            self._tensors = to_tensors(self.prepared, self.device)
        return self._tensors


class TicketRunner:
    """Executes tickets against one database; keeps the current run's data loaded."""

    def __init__(self, url: str, device: str = "cpu", optuna_proxy: str | None = None):
        self.url, self.device, self.optuna_proxy = url, device, optuna_proxy
        self.engine = make_engine(url)
        self.storage = make_proxy_storage(optuna_proxy) if optuna_proxy else make_storage(url)
        self.artifacts = DatabaseArtifactStore(self.engine)
        self._contexts: dict[str, RunContext] = {}
        self._studies: dict[str, optuna.Study] = {}

    def execute(self, claim: leases.Claim, stop_reason: StopReason) -> dict[str, Any]:
        ctx = self.context(claim.run_id)
        if claim.kind == "trial":
            return self.run_trial(claim, ctx, stop_reason)
        if claim.kind == "baseline":
            return self.run_baseline(claim.name, ctx, stop_reason)
        return self.run_best(ctx, stop_reason)

    def execute_all(self, claims: Sequence[leases.Claim],
                    stop_reasons: Sequence[StopReason]) -> list[dict[str, Any]]:
        """Run ``claims``: one ticket as :meth:`execute` runs it, or several trial tickets
        of one run together (:meth:`run_trials`); one result per claim."""
        if len(claims) == 1:
            return [self.execute(claims[0], stop_reasons[0])]
        return self.run_trials(claims, stop_reasons)

    def run_trials(self, claims: Sequence[leases.Claim],
                   stop_reasons: Sequence[StopReason]) -> list[dict[str, Any]]:
        """Trial tickets of one run trained as cohorts (:mod:`workers.trial_cohorts`); each
        ticket records its trial's number as soon as the trial starts."""
        ctx = self.context(claims[0].run_id)
        study = self.study(ctx.run, worker_index=sampler_index(claims[0]))
        numbers: dict[int, int] = {}

        def on_start(claim: leases.Claim) -> Callable[[optuna.Trial], None]:
            def record(trial: optuna.Trial) -> None:
                numbers[claim.id] = trial.number
                leases.set_trial_number(self.engine, claim.id, trial.number)
            return record

        slots = [TrialSlot(TrialHooks(on_start(claim), stop_reason), claim.retry_params)
                 for claim, stop_reason in zip(claims, stop_reasons, strict=True)]
        settings = StudySettings.from_stored(ctx.run.settings)
        told = run_trial_cohorts(study, slots, ctx.space, ctx.data, ctx.run.seed,
                                 pruning_policy(settings), settings.tpe_startup_trials)
        return [{"trial_number": numbers.get(claim.id),
                 "failure": None if trial is None else failure_kind(trial)}
                for claim, trial in zip(claims, told, strict=True)]

    def run_trial(self, claim: leases.Claim, ctx: RunContext,
                  stop_reason: StopReason) -> dict[str, Any]:
        study = self.study(ctx.run, worker_index=sampler_index(claim))
        if claim.retry_params:  # popped before any other waiting trial: write_behind
            study.enqueue_trial(claim.retry_params, user_attrs={RETRY_ATTR: True})
        numbers: list[int] = []

        def on_start(trial: optuna.Trial) -> None:
            numbers.append(trial.number)
            leases.set_trial_number(self.engine, claim.id, trial.number)

        told = run_trial(study, ctx.space, ctx.data, ctx.run.seed,
                         TrialHooks(on_start, stop_reason),
                         pruning_policy(StudySettings.from_stored(ctx.run.settings)))
        # "failure": how it failed, if it did (the run's circuit breaker counts these).
        return {"trial_number": numbers[0] if numbers else None,
                "failure": None if told is None else failure_kind(told)}

    def run_baseline(self, name: str, ctx: RunContext, stop_reason: StopReason) -> dict[str, Any]:
        baseline = next(b for b in baselines_for(ctx.prepared, ctx.space) if b.name == name)
        assert baseline.config is not None
        evaluation = self.evaluate(baseline.config, ctx, stop_reason).to_dict()
        runs = evaluation["runs"]
        score = ModelScore.from_evaluations(name, baseline.rule, architecture(baseline.config),
                                            runs, evaluation["ensemble"])
        # Its learning curve anchors baseline pruning and is drawn by the report.
        record_curve(self.study(ctx.run), BaselineCurve(
            name, baseline.rule, runs[0]["search_val_score"], runs[0]["history"]))
        with_retry(lambda: queries.save_baseline(self.engine, ctx.run.id, score))
        return {"name": name, "test_score": score.test_score}

    def run_best(self, ctx: RunContext, stop_reason: StopReason) -> dict[str, Any]:
        """Retrain the best trial over the run's seeds; upload their ensemble to the
        artifact store (as artifacts of the run's study)."""
        best = best_trial(self.study(ctx.run))
        if best is None:
            raise RuntimeError("no trial completed: every trial was pruned or failed")
        config = trial_config(best)
        evaluation = self.evaluate(config, ctx, stop_reason)
        files = Predictor(evaluation.model, ctx.prepared.preprocessor, config).to_files()
        artifacts = upload_model(self.artifacts, self.study(ctx.run), best.number, files)
        importance = permutation_importance(evaluation.model, ctx.data,
                                            ctx.prepared.preprocessor, ctx.run.metric,
                                            seed=ctx.run.seed)
        return {"trial_number": best.number, **evaluation.to_dict(),
                "model_artifacts": artifacts,
                "feature_importance": [column.to_dict() for column in importance]}

    def evaluate(self, config: TrialConfig, ctx: RunContext,
                 stop_reason: StopReason) -> SeedsEvaluation:
        """``config`` trained from each of the run's seeds, and their ensemble."""
        evaluation = evaluate_seeds(config, final_seeds(ctx.run.seed, ctx.run.n_seeds),
                                    ctx.data, lambda _e, _v: stop_reason() is not None,
                                    metric=ctx.run.metric)
        reason = stop_reason()
        if reason:
            raise TrialInterrupted(reason)
        return evaluation

    def fail_lost_trial(self, run_id: str, number: int) -> LostTrial:
        """Fail the trial a dead worker left RUNNING and give its params for the retry.

        A trial that had finished before its worker died (it was told, the ticket was not
        yet released) is left as it is: its ticket is done, not retried."""
        study = self.study(self.context(run_id).run)
        trial = next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)
        if trial is None:
            return LostTrial(finished=False)
        if fail_trial(study, trial, "lost_worker"):
            return LostTrial(finished=False, params=dict(trial.params))
        now = stored_trial(study, trial)
        if now.state == TrialState.FAIL and now.user_attrs.get("stop_reason") == "lost_worker":
            return LostTrial(finished=False, params=dict(now.params))  # failed earlier
        return LostTrial(finished=True)

    def study(self, run: Run, worker_index: int = 0) -> optuna.Study:
        """The run's study (created by whichever worker gets there first), kept per
        process; each ticket gets its own sampler seed."""
        study = self._studies.get(run.id)
        settings = StudySettings.from_stored(run.settings)
        if study is None:
            ctx = self.context(run.id)
            create_study(self.url, run.study_name, settings,
                         {"task": run.task, "metric": run.metric, "space": run.space,
                          "run_id": run.id, "dataset_hash": ctx.prepared.content_hash,
                          "n_trials": run.n_trials}, storage=self.storage, load_if_exists=True,
                         first_trials=first_trials(settings, baselines_for(
                             ctx.prepared, ctx.space), ctx.space))
            study = load_study(self.url, run.study_name, worker_index, storage=self.storage)
            self._studies = {run.id: study}
        study.sampler = make_sampler(settings, worker_index)
        return study

    def context(self, run_id: str) -> RunContext:
        """Load (once per process) the run, its data and its space."""
        if run_id not in self._contexts:
            self._keep(*stored_run_data(self.engine, run_id))
        return self._contexts[run_id]

    def preload(self, run_id: str, prepared: PreparedData) -> None:
        """Use ``prepared`` (the submitter's own, identical to what :meth:`context` would
        rebuild from the stored table) for the run, skipping the read back."""
        if run_id not in self._contexts:
            run = queries.run_of(self.engine, run_id)  # retried inside
            assert run is not None, f"no run {run_id}"
            self._keep(run, prepared)

    def _keep(self, run: Run, prepared: PreparedData) -> None:
        # One run at a time is kept: a worker moving between runs does not pile up data.
        self._contexts = {run.id: RunContext(run, prepared, SearchSpace.from_dict(run.space),
                                             self.device)}


def stored_run_data(engine: Engine, run_id: str) -> tuple[Run, PreparedData]:
    """A submitted run and its data, prepared from the stored table as at submission."""
    found = with_retry(lambda: queries.run_and_dataset(engine, run_id))
    assert found is not None, f"no run {run_id}"
    run, content_hash, target = found
    frame = cached_frame(content_hash, lambda: queries.dataset_bytes(engine, content_hash))
    # The stored table is the one the submission's checks left (identifiers kept only if
    # asked), so nothing is dropped again; its notes were stored with it.
    prepared = load_dataset(frame, target, task=run.task, seed=run.seed, keep_identifiers=True)
    if run.data_notes is not None:
        prepared.warnings = list(run.data_notes)
    return run, prepared
