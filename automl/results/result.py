"""What a tuning run gives back: the best model next to every baseline.

``TuneResult.to_dict()`` is the JSON the CLI prints with ``--json``; ``format_report()``
is the table it prints otherwise.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from automl.metrics import METRICS

METRIC_NAMES = {name: metric.label for name, metric in METRICS.items()}
TIE = 1e-6  # score differences below this are float noise between equal accuracies


@dataclass
class ModelScore:
    """A model trained over several seeds: its test score's mean and spread and its cost.

    ``test_score``/``val_score`` are the seeds' mean, one model at a time;
    ``ensemble_score``/``ensemble_val_score`` score the seeds' averaged predictions, the
    model a user gets (None for the constant baseline and results from before ensembles).
    """

    name: str
    rule: str
    architecture: dict[str, Any] | None
    test_score: float
    test_score_std: float
    test_scores: list[float]
    val_score: float | None
    n_parameters: int
    train_seconds: float
    epochs: float
    ensemble_score: float | None = None
    ensemble_val_score: float | None = None
    metrics: dict[str, float] | None = None  # the model's test score in every metric
    search_val_score: float | None = None  # accuracy or R², as its trials record (plots)

    @property
    def plotted_val_score(self) -> float | None:
        """Its validation score in the trials' own metric, where the search plots put it."""
        return self.val_score if self.search_val_score is None else self.search_val_score

    @property
    def final_score(self) -> float:
        """The test score of the model a user gets: the seed ensemble's where there is one."""
        return self.test_score if self.ensemble_score is None else self.ensemble_score

    @property
    def final_val_score(self) -> float | None:
        """The validation score of that model: what winners are chosen on."""
        return self.val_score if self.ensemble_val_score is None else self.ensemble_val_score

    @classmethod
    def from_evaluations(cls, name: str, rule: str, architecture: dict[str, Any] | None,
                         runs: list[dict[str, Any]],
                         ensemble: dict[str, Any] | None = None) -> ModelScore:
        """From one evaluation per seed and, optionally, their ensemble's scores."""
        scores = [r["test_score"] for r in runs]
        return cls(
            name=name, rule=rule, architecture=architecture,
            test_score=statistics.fmean(scores),
            test_score_std=statistics.stdev(scores) if len(scores) > 1 else 0.0,
            test_scores=scores,
            val_score=statistics.fmean(r["val_score"] for r in runs),
            n_parameters=int(runs[0]["n_parameters"]),
            train_seconds=statistics.fmean(r["seconds"] for r in runs),
            epochs=statistics.fmean(r["epochs"] for r in runs),
            ensemble_score=None if ensemble is None else float(ensemble["test_score"]),
            ensemble_val_score=None if ensemble is None else float(ensemble["val_score"]),
            metrics=None if ensemble is None else ensemble.get("metrics"),
            search_val_score=statistics.fmean(r["search_val_score"] for r in runs)
            if all(r.get("search_val_score") is not None for r in runs) else None,
        )


@dataclass
class BestTrial(ModelScore):
    """The tuned model: the best trial's hyperparameters retrained over the seeds."""

    trial_number: int = -1
    params: dict[str, Any] = field(default_factory=dict)
    val_loss: float = float("nan")


@dataclass
class TuneResult:
    """Everything a finished run reports (see ``to_dict`` for the JSON form)."""

    metric: str
    task: str
    dataset: str
    best: BestTrial
    baselines: list[ModelScore]
    n_trials: int
    n_complete: int
    n_pruned: int
    n_failed: int
    n_diverged: int
    study_name: str
    storage: str
    tuning_seconds: float
    total_seconds: float
    n_seeds: int
    warnings: list[str] = field(default_factory=list)
    # Per input column, most important first: {"column", "importance", "std"}, the drop
    # in the metric when it is shuffled on the test split (workers.importance).
    feature_importance: list[dict[str, Any]] = field(default_factory=list)

    @property
    def best_baseline(self) -> ModelScore:
        """The baseline with the best *validation* score: chosen the way the tuned model is
        chosen, so the test split is never used to pick a winner."""
        metric = METRICS[self.metric]
        return max(self.baselines, key=lambda b: metric.ranking(b.final_val_score))

    @property
    def gap(self) -> float:
        """How much better the tuned model's test score is than the best baseline's (on
        validation), each the model a user gets (the seed ensemble), in the metric's
        direction (positive: tuning did better, also for log loss, RMSE, MAE); exact
        ties give 0."""
        metric = METRICS[self.metric]
        gap = metric.better(self.best.final_score, self.best_baseline.final_score)
        return 0.0 if abs(gap) < TIE else gap

    @property
    def beats_baselines(self) -> bool:
        return self.gap > 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["beats_best_baseline"] = self.beats_baselines
        data["best_baseline"] = self.best_baseline.name
        return data

    def verdict(self) -> str:
        """One sentence a newcomer can read: did tuning pay off, by how much, at what cost."""
        rival, gap, metric = self.best_baseline, self.gap, METRICS[self.metric]
        against = f"the best rule of thumb on validation ({rival.name})"
        amount = f"{metric.shown(abs(gap))} {metric.unit}"
        if gap > 0:
            outcome = f"Tuning beat {against} by {amount}"
        elif gap == 0:
            outcome = f"Tuning matched {against} on {metric.label}"
        else:
            outcome = f"Tuning did not beat {against}: it was behind by {amount}"
        return (f"{outcome}, after {self.n_trials} trials in {self.tuning_seconds:.0f} s "
                f"({self.n_pruned} pruned, {self.n_failed} failed).")


def result_from_dict(data: dict[str, Any]) -> TuneResult:
    """The inverse of :meth:`TuneResult.to_dict` (for results read back from storage)."""
    fields = {k: v for k, v in data.items() if k not in ("beats_best_baseline", "best_baseline")}
    fields["best"] = BestTrial(**fields["best"])
    fields["baselines"] = [ModelScore(**b) for b in fields["baselines"]]
    return TuneResult(**fields)


def format_report(result: TuneResult) -> str:
    """The best model and every baseline as an aligned text table, plus the verdict."""
    rows = [(r.name, r.architecture, r.score, r.one_seed, r.parameters, r.seconds)
            for r in comparison_rows(result)]
    header = ("model", "architecture", METRIC_NAMES[result.metric], "one seed (mean ± sd)",
              "params", "train s")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True))
             for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    intro = (f"{result.dataset}: {result.n_trials} trials ({result.n_complete} complete, "
             f"{result.n_pruned} pruned, {result.n_failed} failed), the best chosen on "
             f"validation loss; models compared on {METRIC_NAMES[result.metric]}, on the "
             f"held-out test split. Each model is trained from {result.n_seeds} seeds; its "
             f"score is that of the seeds' averaged predictions (the model you get), next to one "
             f"seed's mean ± sd; params and train s are per seed.")
    importance = importance_sentence(result)
    return "\n".join([intro, "", *lines, "", result.verdict(),
                      *([importance] if importance else []), *result.warnings])


TOP_COLUMNS = 5


def importance_sentence(result: TuneResult) -> str | None:
    """The columns the delivered model leans on most, in words (None before it was
    measured)."""
    if not result.feature_importance:
        return None
    metric = METRICS[result.metric]
    top = result.feature_importance[:TOP_COLUMNS]
    shown = ", ".join(f"{c['column']} {metric.shown(c['importance'])}" for c in top)
    more = len(result.feature_importance) - len(top)
    points = ", in points" if metric.scale == 100 else ""
    rest = f"; {more} more column(s) below" if more > 0 else ""
    worse = "drops" if metric.greater_is_better else "rises"
    return (f"The model leans most on: {shown}{rest} (how much {metric.label} {worse} when "
            f"the column's values are shuffled{points}).")


@dataclass(frozen=True)
class ComparisonRow:
    """One row of the comparison table, as text, plus the model it shows."""

    name: str
    rule: str
    architecture: str
    score: str  # the seed ensemble's: the model a user gets
    one_seed: str  # one seed's mean ± sd
    parameters: str
    seconds: str
    model: ModelScore


def comparison_rows(result: TuneResult) -> list[ComparisonRow]:
    """The tuned model, then every baseline by test score (best first)."""
    models: list[tuple[str, ModelScore]] = [("tuned (best trial)", result.best)]
    metric = METRICS[result.metric]
    models += [(b.name, b) for b in sorted(result.baselines,
                                           key=lambda b: -metric.ranking(b.final_score))]
    return [ComparisonRow(
        name, model.rule, describe_architecture(model.architecture),
        *score_texts(model, result.metric), parameters=f"{model.n_parameters:,}",
        seconds=f"{model.train_seconds:.1f}", model=model)
        for name, model in models]


def score_texts(model: ModelScore, metric: str) -> tuple[str, str]:
    """The test score of the model a user gets, and one seed's mean ± sd, as shown."""
    shown = METRICS[metric].shown
    return (shown(model.final_score),
            f"{shown(model.test_score)} ± {shown(model.test_score_std)}")


def describe_architecture(architecture: dict[str, Any] | None) -> str:
    if architecture is None:
        return "no model"
    units = architecture["hidden_units"]
    if not units:
        return "linear"
    text = "-".join(str(u) for u in units) + f" {architecture['activation']}"
    if architecture.get("batch_norm"):
        text += " +bn"
    if architecture.get("dropout"):
        text += f" drop {architecture['dropout']:.2f}"
    return text
