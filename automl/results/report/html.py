"""The report as one self-contained HTML page: inline CSS, figures as data URIs, no scripts.

Every piece of text that comes from the run (names, rules, messages) is escaped.
"""

from __future__ import annotations

import datetime
import html
from collections.abc import Sequence

import optuna

from automl.metrics import PERMUTATION_REPEATS
from automl.results.diagnostics import Diagnostic, diagnose_study
from automl.results.epochs import EpochAccount, epoch_account, max_epochs_of
from automl.results.explain import (
    MIN_IMPORTANCE_TRIALS,
    ROUGH_IMPORTANCE_TRIALS,
    SEVERITY_LABELS,
    comparison_header,
    cost_sentence,
    param_importances,
    seeds,
    width_rows,
    width_sentence,
)
from automl.results.report import plots
from automl.results.result import METRIC_NAMES, TuneResult, comparison_rows

CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       color: #222; max-width: 1050px; margin: 2em auto; padding: 0 1.2em; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.1em; }
h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
.sub { color: #555; margin-top: 0; }
.verdict { background: #f3f7fc; border-left: 5px solid #1f77b4; padding: 0.8em 1em; }
.verdict.lost { background: #fdf4ec; border-left-color: #ff7f0e; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { padding: 0.35em 0.7em; border-bottom: 1px solid #e4e4e4; text-align: left; }
th { background: #f6f6f6; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.tuned td { font-weight: 600; background: #fffbe6; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; }
figcaption { color: #444; font-size: 0.93em; margin-top: 0.3em; }
ul.diag { list-style: none; padding-left: 0; }
ul.diag li { margin: 0.45em 0; padding: 0.4em 0.7em; border-radius: 4px; }
li.warning { background: #fdecea; } li.info { background: #eef4fb; } li.ok { background: #eef8ee; }
.badge { font-weight: 700; margin-right: 0.4em; }
.muted { color: #666; font-size: 0.9em; }
"""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def render(result: TuneResult, study: optuna.Study | None = None) -> str:
    """The whole report page. Without ``study`` the trial plots and diagnostics that need
    the trials are left out (and the page says so)."""
    sections = [_header(result), _verdict(result, study), _comparison(result),
                _diagnostics(diagnose_study(result, study))]
    if study is not None:
        trials = study.get_trials(deepcopy=False)
        account = epoch_account(trials, max_epochs_of(study))
        sections += [_history(result, trials), _size(result, trials), _epochs(account, trials),
                     _importances(param_importances(study), result.n_complete)]
    else:
        sections.append('<p class="muted">The study\'s trials were not available, so the '
                        "plots are left out.</p>")
    if result.feature_importance:
        sections.append(_columns(result))
    sections.append(_widths(result))
    if result.warnings:
        sections.append("<h2>What was done to the data</h2><ul>" + "".join(
            f"<li>{esc(w)}</li>" for w in result.warnings) + "</ul>")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sections.append(f'<p class="muted">Written by <code>automl report</code> on {esc(stamp)} '
                    f"from study <code>{esc(result.study_name)}</code>.</p>")
    title = f"AutoML report: {result.study_name}"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>\n"
            + "\n".join(sections) + "\n</body></html>\n")


def _header(result: TuneResult) -> str:
    return (f"<h1>Tuned MLP against the rules of thumb</h1>"
            f'<p class="sub">{esc(result.dataset)} &middot; {result.n_trials} trials '
            f"({result.n_complete} complete, {result.n_pruned} pruned, {result.n_failed} "
            f"failed) &middot; study <code>{esc(result.study_name)}</code></p>")


def _verdict(result: TuneResult, study: optuna.Study | None) -> str:
    css = "verdict" if result.gap > 0 else "verdict lost"
    return (f'<h2>Verdict</h2><div class="{css}"><p><strong>{esc(result.verdict())}</strong>'
            f"</p><p>{esc(cost_sentence(result, study))}</p></div>")


def _comparison(result: TuneResult) -> str:
    head = "".join(f'<th class="{"num" if i >= 3 else ""}">{esc(h)}</th>'
                   for i, h in enumerate(comparison_header(result)))
    body = []
    for i, row in enumerate(comparison_rows(result)):
        cells = [f'<td class="name">{esc(row.name)}</td>', f"<td>{esc(row.rule)}</td>",
                 f"<td>{esc(row.architecture)}</td>",
                 f'<td class="num score">{esc(row.score)}</td>',
                 f'<td class="num one-seed">{esc(row.one_seed)}</td>',
                 f'<td class="num params">{esc(row.parameters)}</td>',
                 f'<td class="num seconds">{esc(row.seconds)}</td>']
        css = ' class="tuned"' if i == 0 else ""
        body.append(f"<tr{css}>{''.join(cells)}</tr>")
    return ("<h2>Comparison on the held-out test split</h2>"
            f"<p>Each model was trained with {seeds(result.n_seeds)}; the "
            f"{esc(METRIC_NAMES[result.metric])} is "
            "that of their averaged predictions (the model you get), next to one seed's mean "
            "± standard deviation, on rows no model saw while training or being chosen. "
            "Parameters count the trainable weights of one seed; train s is the training "
            "time of one seed.</p>"
            f'<table id="comparison"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def _diagnostics(found: Sequence[Diagnostic]) -> str:
    items = "".join(f'<li class="{esc(d.severity)}" data-code="{esc(d.code)}">'
                    f'<span class="badge">{esc(SEVERITY_LABELS.get(d.severity, d.severity))}'
                    f"</span>{esc(d.message)}</li>" for d in found)
    return ("<h2>Diagnostics</h2><p>Checks of the search itself: is the best value on the "
            "edge of its range, did most trials fail, can the validation set tell the top "
            f'models apart, and did pruning stop future winners.</p><ul class="diag">{items}</ul>')


def _figure(uri: str, alt: str, caption: str) -> str:
    return (f'<figure><img src="{uri}" alt="{esc(alt)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def _history(result: TuneResult, trials: Sequence[optuna.trial.FrozenTrial]) -> str:
    unit = "accuracy" if result.task != "regression" else "R²"  # what trials record
    caption = (f"Read it as: each dot is one trial's validation {unit}; the green line is "
               "the best so far, and each dashed line is a rule-of-thumb baseline trained "
               "the same way. Where the green line ends above the dashed lines, tuning found "
               "something better on validation (the tuned model, the star, is the trial with "
               "the lowest validation loss). Trials far below the rest are drawn on the "
               "bottom edge.")
    return ("<h2>Optimisation history</h2>"
            + _figure(plots.history_plot(trials, result), "optimisation history", caption))


def _size(result: TuneResult, trials: Sequence[optuna.trial.FrozenTrial]) -> str:
    caption = ("Read it as: further right is a bigger model, higher is better. If the best "
               "dots sit far right of the diamonds, tuning bought its score with size; if "
               "they sit at the same size, it found better training settings. The constant "
               "baseline has no parameters and is not shown.")
    return ("<h2>Score against model size</h2>"
            + _figure(plots.size_plot(trials, result), "score against parameter count",
                      caption))


def _epochs(account: EpochAccount, trials: Sequence[optuna.trial.FrozenTrial]) -> str:
    caption = (f"Read it as: each bar is one trial's training. Orange bars were stopped by "
               f"the pruner; the hatched part above them is what they would have cost at the "
               f"full budget of {account.max_epochs} epochs (an upper bound: some would have "
               f"stopped early anyway; about {account.typical_saved:,} epochs if they had run "
               "as long as a typical finished trial).")
    if account.audit_cost:
        caption += (f" Audited trials ran {account.audit_cost:,} epochs past where the pruner "
                    "wanted to stop them, to check it.")
    reason = next((t.user_attrs["prune_reason"] for t in trials
                   if isinstance(t.user_attrs.get("prune_reason"), str)), None)
    example = f"<p class=\"muted\">Why a trial was pruned, for example: {esc(reason)}</p>" \
        if reason else ""
    return ("<h2>Epochs saved by pruning</h2>"
            + _figure(plots.epochs_plot(account), "epochs per trial", caption) + example)


def _importances(importances: dict[str, float] | None, n_complete: int) -> str:
    if not importances:
        return ("<h2>Which hyperparameters mattered</h2><p>Not enough completed trials "
                f"({n_complete}) to tell; it takes at least {MIN_IMPORTANCE_TRIALS} with "
                "varied values.</p>")
    rough = (f" With only {n_complete} completed trials this is rough."
             if n_complete < ROUGH_IMPORTANCE_TRIALS else "")
    caption = ("Read it as: the longer the bar, the more the validation loss changed with "
               f"that hyperparameter across the {n_complete} completed trials; short bars "
               f"could have been left at any value in their range.{rough}")
    return ("<h2>Which hyperparameters mattered</h2>"
            + _figure(plots.importance_plot(importances), "parameter importances", caption))


def _columns(result: TuneResult) -> str:
    caption = ("Read it as: each column's values were shuffled across the test rows, "
               f"{PERMUTATION_REPEATS} times, and the bar is how much the delivered model's "
               f"{METRIC_NAMES[result.metric]} dropped on average (the whisker: its spread). "
               "A long bar is a column the model leans on; a bar near zero, or below it, is "
               "one it could do without. It measures this model, not the data: two "
               "columns that carry the same information share the credit.")
    return ("<h2>Which columns the model relies on</h2>"
            + _figure(plots.column_importance_plot(result), "column importances", caption))


def _widths(result: TuneResult) -> str:
    rows = "".join(f"<tr><td>{esc(name)}</td><td>{esc(rule)}</td>"
                   f'<td class="num">{width}</td><td>{esc(words)}</td></tr>'
                   for name, rule, width, words in width_rows(result))
    return ("<h2>The winning width against each rule</h2>"
            f"<p>{esc(width_sentence(result))}</p>"
            '<table id="widths"><thead><tr><th>rule</th><th>what it says</th>'
            '<th class="num">its width</th><th>tuned widest layer</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>")
