"""Build a :class:`TuneResult` from a study and the final evaluations: what the worker
that finishes a run stores on it (``tune --json``, ``automl result`` and ``run.result()``
print that one stored result)."""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial
from sqlalchemy.engine import make_url

from automl.configs import TrialConfig
from automl.data import PreparedData
from automl.metrics import compute, compute_all, constant_predictions, default_metric
from automl.results.result import BestTrial, ModelScore, TuneResult
from automl.space.baselines import Baseline
from automl.study.trials import count_trials, search_seconds


def final_seeds(seed: int, n_seeds: int) -> list[int]:
    """The seeds every model of the final comparison is trained with."""
    return [seed + 10_000 + i for i in range(n_seeds)]


def architecture(config: TrialConfig | None) -> dict[str, Any] | None:
    return None if config is None else config.to_dict()["model"]


def constant_baseline(prepared: PreparedData, baseline: Baseline, metric: str) -> ModelScore:
    """The floor: the training split's class frequencies (majority class) or mean, no
    training; scored in ``metric``, and in every metric that applies."""
    task, target_std = prepared.task, prepared.preprocessor.target_std
    n_classes = max(2, len(prepared.preprocessor.classes))

    def scores(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y_units = y * target_std if task == "regression" else y
        return y_units, constant_predictions(task, prepared.y_train, len(y), n_classes,
                                             target_std)

    test, val = compute(metric, *scores(prepared.y_test)), compute(metric, *scores(prepared.y_val))
    return ModelScore(baseline.name, baseline.rule, None, test, 0.0, [test], val, 0, 0.0, 0.0,
                      metrics=compute_all(task, *scores(prepared.y_test)),
                      search_val_score=compute(default_metric(task), *scores(prepared.y_val)))


def summarize(study: optuna.Study, prepared: PreparedData, best: FrozenTrial,
              best_seeds: dict[str, Any], baselines: list[ModelScore], *, n_seeds: int,
              storage: str, total_seconds: float, metric: str) -> TuneResult:
    """The run's result: the best trial retrained over seeds next to every baseline.

    ``best_seeds``: the best configuration's ``{"runs": [...], "ensemble": {...}}`` (a
    ``SeedsEvaluation.to_dict()``); ``total_seconds``: from submission to now. The search's
    own time is the span of its trials."""
    config = TrialConfig.from_dict(best.user_attrs["config"])
    score = ModelScore.from_evaluations("tuned", "best trial", architecture(config),
                                        best_seeds["runs"], best_seeds.get("ensemble"))
    counts = count_trials(study)
    return TuneResult(
        metric=metric, task=prepared.task, dataset=prepared.describe(),
        best=BestTrial(**vars(score), trial_number=best.number, params=dict(best.params),
                       val_loss=float(best.value or 0.0)),
        baselines=baselines, n_trials=counts.finished, n_complete=counts.complete,
        n_pruned=counts.pruned, n_failed=counts.failed, n_diverged=counts.diverged,
        study_name=study.study_name, storage=redacted(storage),
        tuning_seconds=search_seconds(study), total_seconds=total_seconds, n_seeds=n_seeds,
        warnings=list(prepared.warnings),
        feature_importance=list(best_seeds.get("feature_importance", [])))


def redacted(url: str) -> str:
    """The storage URL with any password masked, for results and logs."""
    return make_url(url).render_as_string(hide_password=True)
