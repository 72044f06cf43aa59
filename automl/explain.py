"""A finished run explained in plain words, as Markdown.

Shared by optuna-dashboard's note, the HTML report and the CLI, so all three say the same
thing: the tuned model against every rule-of-thumb baseline and the verdict.
"""

from __future__ import annotations

from automl.result import METRIC_NAMES, ModelScore, TuneResult, describe_architecture


def comparison_markdown(result: TuneResult) -> str:
    """The best model and every baseline as a Markdown table (test score mean ± spread over
    seeds, parameter count, training time), best test score first after the tuned model."""
    metric = METRIC_NAMES[result.metric]
    header = (f"| model | rule | architecture | {metric} (mean ± sd) | parameters | "
              "train s |\n| --- | --- | --- | ---: | ---: | ---: |")
    rows = [_markdown_row(result.best, "**tuned (best trial)**", result.metric)]
    rows += [_markdown_row(b, b.name, result.metric)
             for b in sorted(result.baselines, key=lambda b: -b.test_score)]
    return "\n".join([header, *rows])


def note_markdown(result: TuneResult) -> str:
    """The note shown on the run's study in optuna-dashboard."""
    intro = (f"**{result.dataset}**: {result.n_trials} trials ({result.n_complete} complete, "
             f"{result.n_pruned} pruned, {result.n_failed} failed); every model trained "
             f"with the same split, epoch budget and early stopping, scored over "
             f"{result.n_seeds} seeds on the held-out test split.")
    parts = ["## Tuned MLP against the rules of thumb", intro, comparison_markdown(result),
             f"**Verdict.** {result.verdict()}"]
    if result.warnings:
        parts.append("**Warnings**\n\n" + "\n".join(f"- {w}" for w in result.warnings))
    return "\n\n".join(parts) + "\n"


def _markdown_row(model: ModelScore, name: str, metric: str) -> str:
    scale, digits = (100, 2) if metric == "accuracy" else (1, 4)
    score = f"{model.test_score * scale:.{digits}f} ± {model.test_score_std * scale:.{digits}f}"
    rule = model.rule.replace("|", "\\|")
    return (f"| {name} | {rule} | {describe_architecture(model.architecture)} | {score} | "
            f"{model.n_parameters:,} | {model.train_seconds:.1f} |")
