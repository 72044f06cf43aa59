"""The report's figures, drawn with matplotlib's Agg backend and returned as self-contained
``data:image/svg+xml;base64,...`` URIs (no files, no fonts or scripts fetched).

Every score axis shows the *validation* score in the run's metric, higher is better:
accuracy in percent, or R². Trials are told apart by how they ended.
"""

from __future__ import annotations

import base64
import io
import itertools
import math
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import blended_transform_factory
from optuna.trial import FrozenTrial, TrialState

from automl.metrics import METRICS, default_metric
from automl.results.diagnostics import param_label
from automl.results.epochs import EpochAccount
from automl.results.result import TuneResult

BLUE, GREY, ORANGE, RED, GREEN = "#1f77b4", "#9a9a9a", "#ff7f0e", "#d62728", "#2ca02c"
BASELINE_COLORS = ("#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#9467bd",
                   "#393b79", "#637939")
STYLE: Any = {"font.size": 9.5, "axes.titlesize": 11, "axes.spines.top": False,
         "axes.spines.right": False, "svg.fonttype": "none", "svg.hashsalt": "automl"}


def score_axis(metric: str) -> tuple[float, str]:
    """(scale, label) of the validation-score axis."""
    if metric == "accuracy":
        return 100.0, "validation accuracy (%), higher is better"
    return 1.0, "validation R², higher is better"


def to_uri(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _score(trial: FrozenTrial) -> float | None:
    value = trial.user_attrs.get("val_score")
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def _limits(values: Sequence[float], anchors: Sequence[float], metric: str,
            scale: float) -> tuple[float, float]:
    """A y range that shows the completed trials and the baselines; the worst tenth of the
    trials may fall below it (they are drawn on the bottom edge)."""
    ordered = sorted(values)
    low_trials = ordered[len(ordered) // 10] if ordered else math.inf
    low = min([low_trials, *anchors])
    high = max([*values, *anchors], default=1.0)
    if metric != "accuracy":
        low = max(low, -1.0)
    if not math.isfinite(low):
        low = high - 1.0
    pad = max((high - low) * 0.06, 0.005)
    top = high + pad
    if metric == "accuracy":
        top = min(top, 1.0 + pad / 3)
    return (low - pad) * scale, top * scale


def _spread_labels(ys: list[float], gap: float) -> list[float]:
    """Label positions near ``ys`` (any order) that are at least ``gap`` apart."""
    order = sorted(range(len(ys)), key=lambda i: ys[i])
    placed = [0.0] * len(ys)
    previous = -math.inf
    for i in order:
        placed[i] = max(ys[i], previous + gap)
        previous = placed[i]
    overshoot = previous - max(ys, default=0.0)
    if overshoot > 0:  # centre the stack on the lines
        placed = [p - overshoot / 2 for p in placed]
    return placed


def history_plot(trials: Sequence[FrozenTrial], result: TuneResult) -> str:
    """Each trial's validation score in order, the best so far, and the baselines as
    horizontal lines labelled on the right."""
    scale, label = score_axis(default_metric(result.task))
    finished = sorted((t for t in trials if t.state.is_finished()), key=lambda t: t.number)
    complete = [(t.number, s) for t in finished if t.state == TrialState.COMPLETE
                and (s := _score(t)) is not None]
    stopped = [(t.number, s) for t in finished if t.state == TrialState.PRUNED
               and (s := _score(t)) is not None]
    failed = [t.number for t in finished if _score(t) is None]
    audited = {t.number for t in finished if "audit_would_prune_at" in t.user_attrs}
    baselines = [b for b in result.baselines if b.plotted_val_score is not None]
    low, high = _limits([s for _, s in complete], [b.plotted_val_score for b in baselines  # type: ignore[misc]
                                                   ], default_metric(result.task), scale)

    def clip(points: list[tuple[int, float]]) -> tuple[list[int], list[float]]:
        return [n for n, _ in points], [max(s * scale, low) for _, s in points]

    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(9.5, 4.6))
        ax.scatter(*clip(complete), s=22, color=BLUE, label="completed trial", zorder=3)
        if stopped:
            ax.scatter(*clip(stopped), s=22, color=GREY, marker="x",
                       label="pruned or diverged (score when stopped)", zorder=2)
        if failed:
            ax.scatter(failed, [low] * len(failed), s=30, color=RED, marker="^",
                       label="failed or diverged (no score)", clip_on=False, zorder=3)
        ring = [(n, s) for n, s in complete if n in audited]
        if ring:
            ax.scatter(*clip(ring), s=90, facecolors="none", edgecolors=ORANGE,
                       linewidths=1.4, label="audited: the pruner wanted to stop it", zorder=4)
        if complete:
            steps = list(itertools.accumulate((s * scale for _, s in complete), max))
            ax.step([n for n, _ in complete], steps, where="post", color=GREEN, linewidth=1.6,
                    label="best validation score so far", zorder=3)
        chosen = next((s for n, s in complete if n == result.best.trial_number), None)
        if chosen is not None:
            ax.scatter([result.best.trial_number], [chosen * scale], s=180, marker="*",
                       color="gold", edgecolors="black", linewidths=0.6, zorder=5,
                       label=f"tuned model (trial #{result.best.trial_number})")
        _baseline_lines(ax, result, baselines, scale, low, high)
        ax.set_ylim(low, high)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("trial number (order in which trials started)")
        ax.set_ylabel(label)
        ax.set_title("Optimisation history against the rule-of-thumb baselines")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, frameon=False,
                  fontsize=8.5)
        return to_uri(fig)


def baseline_color(result: TuneResult, name: str) -> str:
    """The same colour for a baseline in every plot."""
    names = [b.name for b in result.baselines]
    index = names.index(name) if name in names else 0
    return BASELINE_COLORS[index % len(BASELINE_COLORS)]


def _baseline_lines(ax: Any, result: TuneResult, baselines: Sequence[Any], scale: float,
                    low: float, high: float) -> None:
    shown = [(b, b.plotted_val_score * scale) for b in baselines]
    ys = [min(max(y, low), high) for _, y in shown]
    positions = _spread_labels(ys, (high - low) * 0.055)
    transform = blended_transform_factory(ax.transAxes, ax.transData)
    for (baseline, value), y, text_y in zip(shown, ys, positions, strict=True):
        color = baseline_color(result, baseline.name)
        ax.axhline(y, color=color, linestyle="--", linewidth=1.0, zorder=1)
        marker = "" if low <= value <= high else (" (below)" if value < low else " (above)")
        ax.annotate(f"{baseline.name} {value:.1f}{marker}" if scale == 100 else
                    f"{baseline.name} {value:.3f}{marker}", xy=(1.0, y), xycoords=transform,
                    xytext=(1.02, text_y), textcoords=transform, color=color, fontsize=8,
                    va="center", annotation_clip=False,
                    arrowprops={"arrowstyle": "-", "color": color, "linewidth": 0.6})


def size_plot(trials: Sequence[FrozenTrial], result: TuneResult) -> str:
    """Validation score against parameter count (log scale), the baselines marked."""
    scale, label = score_axis(default_metric(result.task))
    points = [(t.user_attrs["n_parameters"], s, t.state == TrialState.COMPLETE)
              for t in trials if t.state.is_finished() and (s := _score(t)) is not None
              and isinstance(t.user_attrs.get("n_parameters"), int)
              and t.user_attrs["n_parameters"] > 0]
    baselines = [b for b in result.baselines
                 if b.plotted_val_score is not None and b.n_parameters > 0]
    anchors = [b.plotted_val_score for b in baselines]
    low, high = _limits([s for _, s, done in points if done], anchors,  # type: ignore[arg-type]
                        default_metric(result.task), scale)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(9.5, 4.6))
        for done, color, marker, name in ((True, BLUE, "o", "completed trial"),
                                          (False, GREY, "x", "pruned or diverged trial")):
            chosen = [(n, max(s * scale, low)) for n, s, d in points if d is done]
            if chosen:
                ax.scatter([n for n, _ in chosen], [y for _, y in chosen], s=20, color=color,
                           marker=marker, alpha=0.75, label=name, zorder=2)
        for baseline in baselines:
            units = (baseline.architecture or {}).get("hidden_units") or []
            shape = "-".join(str(u) for u in units) + " units" if units else "no hidden layer"
            ax.scatter([baseline.n_parameters], [max(baseline.plotted_val_score * scale, low)],  # type: ignore[operator]
                       s=70, marker="D", color=baseline_color(result, baseline.name),
                       edgecolors="black", linewidths=0.5, zorder=4,
                       label=f"{baseline.name} ({shape})")
        best_val = result.best.plotted_val_score
        if best_val is not None and result.best.n_parameters > 0:
            ax.scatter([result.best.n_parameters], [best_val * scale], s=200,
                       marker="*", color="gold", edgecolors="black", linewidths=0.6, zorder=5,
                       label="tuned model")
        ax.set_xscale("log")
        ax.set_ylim(low, high)
        ax.set_xlabel("trainable parameters (log scale)")
        ax.set_ylabel(label)
        ax.set_title("Score against model size, with the rule-of-thumb baselines marked")
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=8.5)
        return to_uri(fig)


OUTCOME_COLORS = {"completed": BLUE, "early_stopped": BLUE, "pruned": ORANGE, "diverged": RED}


def epochs_plot(account: EpochAccount) -> str:
    """Epochs each trial trained, by outcome, and the epochs pruning saved."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(9.5, 3.8))
        numbers = [t.number for t in account.trials]
        colors = [OUTCOME_COLORS.get(t.outcome, RED) for t in account.trials]
        ax.bar(numbers, [t.run for t in account.trials], width=0.8, color=colors, zorder=2)
        ax.bar(numbers, [t.saved for t in account.trials], width=0.8,
               bottom=[t.run for t in account.trials], color="#ffe0c2", edgecolor=ORANGE,
               linewidth=0.4, hatch="///", zorder=1)
        audits = [(t.number, t.would_prune_at + 1) for t in account.trials
                  if t.would_prune_at is not None]
        if audits:
            ax.scatter([n for n, _ in audits], [e for _, e in audits], marker="_", s=120,
                       color="black", linewidths=2, zorder=3)
        ax.axhline(account.max_epochs, color="black", linestyle=":", linewidth=1)
        handles = [
            *(plt.Rectangle((0, 0), 1, 1, color=color) for color in (BLUE, ORANGE, RED)),
            plt.Rectangle((0, 0), 1, 1, facecolor="#ffe0c2", edgecolor=ORANGE, hatch="///"),
            plt.Line2D([], [], color="black", linestyle=":"),
        ]
        names = ["trained: completed or early-stopped", "trained: pruned",
                 "trained: diverged or failed", "saved by pruning (up to the budget)",
                 f"epoch budget ({account.max_epochs})"]
        if audits:
            handles.append(plt.Line2D([], [], color="black", marker="_", linestyle="",
                                      markersize=10, markeredgewidth=2))
            names.append("audited: where the pruner wanted to stop it")
        ax.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3,
                  frameon=False, fontsize=8.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(-0.8, max([*numbers, 11]) + 0.8)  # few trials: keep the bars slim
        ax.set_xlabel("trial number")
        ax.set_ylabel("epochs")
        ax.set_ylim(0, account.max_epochs * 1.08)
        total = account.trained + account.saved
        share = account.saved / total if total else 0.0
        ax.set_title(f"Epochs: {account.trained:,} trained, up to {account.saved:,} saved by "
                     f"pruning ({share:.0%} of the full cost)" if account.saved else
                     f"Epochs: {account.trained:,} trained; no trial was pruned")
        return to_uri(fig)


def importance_plot(importances: dict[str, float]) -> str:
    """Horizontal bars: each hyperparameter's share of the variation in validation loss."""
    items = sorted(importances.items(), key=lambda kv: kv[1])[-12:]
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(9.5, 0.45 * len(items) + 1.2))
        bars = ax.barh([param_label(name) for name, _ in items],
                       [share * 100 for _, share in items], color=BLUE)
        ax.bar_label(bars, [f"{share:.0%}" for _, share in items], padding=3, fontsize=8.5)
        ax.set_xlabel("share of the variation in validation loss it explains (%)")
        ax.set_xlim(0, max(share for _, share in items) * 100 * 1.15 + 1)
        ax.set_title("Which hyperparameters mattered (fANOVA importance)")
        return to_uri(fig)


def column_importance_plot(result: TuneResult) -> str:
    """Horizontal bars: how much the delivered model's test score drops when each column
    is shuffled, with the spread over the shuffles."""
    metric = METRICS[result.metric]
    items = list(reversed(result.feature_importance[:15]))
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(9.5, 0.42 * len(items) + 1.3))
        values = [c["importance"] * metric.scale for c in items]
        bars = ax.barh([str(c["column"]) for c in items], values,
                       xerr=[c["std"] * metric.scale for c in items],
                       color=[BLUE if v > 0 else GREY for v in values], capsize=2)
        ax.bar_label(bars, [metric.shown(c["importance"]) for c in items], padding=3,
                     fontsize=8.5)
        ax.axvline(0, color="black", linewidth=0.6)
        ax.set_xlabel(f"drop in {metric.label} when the column is shuffled"
                      + (" (points)" if metric.scale == 100 else ""))
        ax.set_title("Which columns the delivered model relies on (permutation importance)")
        return to_uri(fig)
