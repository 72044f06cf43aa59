"""A finished run explained in plain words, as Markdown and as plain text.

Shared by optuna-dashboard's note, the HTML report and the CLI, so all three say the same
thing: the tuned model against every rule-of-thumb baseline, the verdict and its cost,
which hyperparameters mattered, where the winning width sits relative to each rule, and
the diagnostics (:mod:`automl.results.diagnostics`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import TrialState

from automl.metrics import METRICS, PERMUTATION_REPEATS
from automl.results.diagnostics import Diagnostic, diagnose_study, param_label
from automl.results.epochs import epoch_account, max_epochs_of
from automl.results.result import METRIC_NAMES, TuneResult, comparison_rows

MIN_IMPORTANCE_TRIALS = 4  # fANOVA needs a few completed trials to say anything
ROUGH_IMPORTANCE_TRIALS = 20  # below this, importances are flagged as rough
SEVERITY_LABELS = {"warning": "Warning", "info": "Note", "ok": "OK"}


def comparison_header(result: TuneResult) -> tuple[str, ...]:
    metric = METRIC_NAMES[result.metric] + (" %" if METRICS[result.metric].scale == 100 else "")
    return ("model", "rule", "architecture", metric, "one seed (mean ± sd)", "parameters",
            "train s")


def comparison_markdown(result: TuneResult) -> str:
    """The best model and every baseline as a Markdown table (the seed ensemble's test
    score, one seed's mean ± spread, parameter count and training time per seed), best test
    score first after the tuned model."""
    rows = [((f"**{row.name}**" if i == 0 else row.name), row.rule, row.architecture,
             row.score, row.one_seed, row.parameters, row.seconds)
            for i, row in enumerate(comparison_rows(result))]
    return markdown_table(comparison_header(result), rows, "lllrrrr")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]],
                   align: str) -> str:
    """A Markdown table whose columns line up in the source too (the dashboard's note
    editor shows the source); ``align``: ``l`` or ``r`` per column."""
    cells = [[str(c).replace("|", "\\|") for c in line] for line in [header, *rows]]
    widths = [max(3, *(len(line[i]) for line in cells)) for i in range(len(header))]

    def line(values: Sequence[str]) -> str:
        padded = (v.rjust(w) if a == "r" else v.ljust(w)
                  for v, w, a in zip(values, widths, align, strict=True))
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * (w - 1) + ":" if a == "r" else "-" * w for w, a in zip(widths, align,
                                                                          strict=True)]
    return "\n".join([line(cells[0]), line(rule), *(line(c) for c in cells[1:])])


# -- where the winning width sits relative to each rule ------------------------------------
def width_rows(result: TuneResult) -> list[tuple[str, str, int, str]]:
    """Per baseline with hidden layers: (name, rule, its widest layer, the tuned widest
    layer against it in words)."""
    widest = _widest(result.best.architecture)
    return [(b.name, b.rule, width, _relative(widest, width))
            for b in result.baselines if (width := _widest(b.architecture))]


def width_sentence(result: TuneResult) -> str:
    units = list((result.best.architecture or {}).get("hidden_units") or [])
    if not units:
        return ("The tuned model has no hidden layer (a linear model): narrower than every "
                "rule of thumb.")
    layers = "one hidden layer" if len(units) == 1 else f"{len(units)} hidden layers"
    return (f"The tuned model has {layers} ({'-'.join(str(u) for u in units)} units); its "
            f"widest layer, {max(units)} units, against each rule's width:")


def widths_markdown(result: TuneResult) -> str:
    table = markdown_table(["rule", "what it says", "its width", "tuned widest layer"],
                           width_rows(result), "llrl")
    return width_sentence(result) + "\n\n" + table


def _widest(architecture: dict[str, Any] | None) -> int:
    units = (architecture or {}).get("hidden_units") or []
    return int(max(units)) if units else 0


def _relative(tuned: int, rule: int) -> str:
    if tuned == 0:
        return "none (no hidden layer)"
    ratio = tuned / rule
    if ratio >= 1.1:
        return f"{ratio:.1f} times as wide"
    if ratio <= 1 / 1.1:
        return f"narrower: {ratio:.2f} times as wide"
    return "about as wide"


# -- which hyperparameters mattered --------------------------------------------------------
def param_importances(study: optuna.Study | None) -> dict[str, float] | None:
    """fANOVA importances over the COMPLETE trials (share of the variation in validation
    loss each parameter explains); None with too few trials or nothing that varied."""
    if study is None:
        return None
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < MIN_IMPORTANCE_TRIALS:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            evaluator = optuna.importance.FanovaImportanceEvaluator(n_trees=32, seed=0)
            found = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (ValueError, RuntimeError, ZeroDivisionError):
        return None
    return {name: float(value) for name, value in found.items()} or None


def importances_markdown(importances: dict[str, float] | None, n_complete: int,
                         have_trials: bool = True) -> str:
    if not have_trials:
        return "Telling which hyperparameters mattered needs the study's trials."
    if not importances:
        return (f"Not enough completed trials ({n_complete}) to tell which hyperparameters "
                f"mattered; it takes at least {MIN_IMPORTANCE_TRIALS} with varied values.")
    rough = (f" With only {n_complete} completed trials this is rough."
             if n_complete < ROUGH_IMPORTANCE_TRIALS else "")
    items = sorted(importances.items(), key=lambda kv: -kv[1])
    lines = [f"- {param_label(name)}: {share:.0%}" for name, share in items[:6]]
    return (f"Share of the variation in validation loss each hyperparameter explains "
            f"(fANOVA over the {n_complete} completed trials).{rough}\n\n" + "\n".join(lines))


# -- cost, diagnostics and the note --------------------------------------------------------
def cost_sentence(result: TuneResult, study: optuna.Study | None = None) -> str:
    """What tuning cost against training the best rule of thumb once."""
    rival = result.best_baseline
    text = (f"The search took {result.tuning_seconds:.0f} s for {result.n_trials} trials; "
            f"the tuned model then trains in {result.best.train_seconds:.1f} s per seed, the "
            f"best rule of thumb ({rival.name}) in {rival.train_seconds:.1f} s")
    if rival.train_seconds > 0:
        text += (f", so the search cost about {result.tuning_seconds / rival.train_seconds:,.0f}"
                 " trainings of that baseline")
    if study is not None:
        account = epoch_account(study.get_trials(deepcopy=False), max_epochs_of(study))
        if account.saved:
            text += (f". Trials trained {account.trained:,} epochs; pruning saved about "
                     f"{account.typical_saved:,} more (at most {account.saved:,})")
        elif account.trials:
            text += f". Trials trained {account.trained:,} epochs; none was pruned"
    return text + "."


def diagnostics_markdown(diagnostics: list[Diagnostic]) -> str:
    return "\n".join(f"- **{SEVERITY_LABELS.get(d.severity, d.severity)}:** {d.message}"
                     for d in diagnostics)


def diagnostics_text(result: TuneResult, study: optuna.Study | None = None) -> str:
    """The diagnostics as plain lines for the CLI (``warning: ...``, ``note: ...``)."""
    found = diagnose_study(result, study)
    return "\n".join(f"{SEVERITY_LABELS.get(d.severity, d.severity).lower()}: {d.message}"
                     for d in found)


def note_markdown(result: TuneResult, study: optuna.Study | None = None) -> str:
    """The note shown on the run's study in optuna-dashboard. With ``study`` it also says
    which hyperparameters mattered and runs every diagnostic over the trials."""
    intro = (f"**{result.dataset}**: {result.n_trials} trials ({result.n_complete} complete, "
             f"{result.n_pruned} pruned, {result.n_failed} failed); every model trained "
             f"with the same split, epoch budget and early stopping, scored over "
             f"{seeds(result.n_seeds)} on the held-out test split.")
    parts = ["## Tuned MLP against the rules of thumb", intro, comparison_markdown(result),
             f"**Verdict.** {result.verdict()}", f"**Compute.** {cost_sentence(result, study)}",
             "### Which hyperparameters mattered most",
             importances_markdown(param_importances(study), result.n_complete,
                                  study is not None),
             *columns_markdown(result),
             "### The winning width against each rule", widths_markdown(result),
             "### Diagnostics", diagnostics_markdown(diagnose_study(result, study))]
    if result.warnings:
        parts.append("**What was done to the data**\n\n"
                     + "\n".join(f"- {w}" for w in result.warnings))
    return "\n\n".join(parts) + "\n"


def columns_markdown(result: TuneResult) -> list[str]:
    """The note's section on the columns the delivered model relies on (none before it
    was measured)."""
    if not result.feature_importance:
        return []
    metric = METRICS[result.metric]
    rows = [(c["column"], metric.shown(c["importance"]), metric.shown(c["std"]))
            for c in result.feature_importance[:15]]
    return ["### Which columns the model relies on",
            f"How much {metric.label} drops when a column's values are shuffled on the test "
            f"split (permutation importance, {PERMUTATION_REPEATS} shuffles; ± their spread)."
            "\n\n" + markdown_table(["column", "drop", "±"], rows, "lrr")]


def seeds(n: int) -> str:
    return "1 seed" if n == 1 else f"{n} seeds"


def stored_diagnostics_text(result: TuneResult, storage: str) -> str:
    """:func:`diagnostics_text` with the run's study loaded from ``storage`` (the result's
    counts alone if the study cannot be read)."""
    try:
        study: optuna.Study | None = optuna.load_study(study_name=result.study_name,
                                                       storage=storage)
    except Exception:  # the diagnostics are a bonus: never fail the command over them
        study = None
    return diagnostics_text(result, study)
