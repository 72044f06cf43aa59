"""Plain-words checks of a finished run, shared by the report, the dashboard note and the CLI.

Every check is a pure function of the study's trials (``FrozenTrial``), the search space
and the result, and returns :class:`Diagnostic` values whose message names the parameter
and the numbers:

* **edge of range**: a tuned parameter of the best trial sits within 5% of an end of its
  numeric range (measured on the log scale for log ranges): the optimum may lie outside.
* **failures**: more than half of the finished trials failed or diverged, counted by reason.
* **validation resolution**: the top trials' validation scores lie closer together than
  the noise of a score measured on the validation rows, so the ranking among them is
  partly luck. Accuracy: two standard errors, ``2 * sqrt(p(1-p)/n)`` (at least one row,
  ``1/n``). R²: two standard errors of ``1 - MSE/Var`` when the MSE is estimated from ``n``
  rows (``var(MSE) ~ 2 MSE^2 / n``), i.e. ``2 * (1-R²) * sqrt(2/n)``.
* **cohorts**: how many trials trained together as one stacked model (user attribute
  ``cohort_size``, :mod:`workers.trial_cohorts`), and how many at most.
* **pruning audit**: a few trials the pruner wanted to stop are let finish (user attribute
  ``audit_would_prune_at``); how many of them went on to be in the top 10% of trials, set a
  new best when they finished, or became the best trial.

The epochs trained and those pruning saved are added up in :mod:`automl.results.epochs`.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from automl.errors import AutoMLError
from automl.metrics import default_metric
from automl.results.result import TuneResult
from automl.space import DOMAINS, FloatRange, IntRange, SearchSpace
from automl.study.pruning import AUDIT_ATTR
from automl.study.trials import failure_kind

EDGE = 0.05  # share of a range (log scale for log ranges) that counts as its edge
TOP_K = 5  # trials compared by the validation-resolution check
TOP_FRACTION = 0.10  # "a future winner": a trial in the best 10% of completed trials
NOT_FAILURES = ("cancelled",)  # stopped from outside: neither a success nor a failure


@dataclass(frozen=True)
class Diagnostic:
    """One finding. ``severity``: "warning" (act on it), "info" (worth knowing) or "ok"."""

    code: str
    severity: str
    message: str


def diagnose_study(result: TuneResult, study: optuna.Study | None) -> list[Diagnostic]:
    """Every check that the inputs allow: with ``study`` (its trials and search space) all
    four; with the result alone (None) only the failure count, from the result's counts."""
    if study is None:
        kinds = Counter({"diverged": result.n_diverged, "failed": result.n_failed})
        return _failure_diagnostic(result.n_trials, +kinds, "")
    trials = study.get_trials(deepcopy=False)
    space = space_of(study)
    found: list[Diagnostic] = []
    best = next((t for t in trials if t.number == result.best.trial_number), None)
    if space is not None:
        found += edge_of_range(best.params if best else result.best.params, space)
    found += failures(trials)
    found += validation_resolution(trials, default_metric(result.task),
                                    val_rows(result.dataset))
    found.append(audit_diagnostic(audit_pruning(trials)))
    found += cohorts(trials)
    return found


def cohorts(trials: Iterable[FrozenTrial]) -> list[Diagnostic]:
    """An info on the trials trained in cohorts, if any was."""
    sizes = [int(t.user_attrs["cohort_size"]) for t in trials if "cohort_size" in t.user_attrs]
    together = [size for size in sizes if size > 1]
    if not together:
        return []
    return [Diagnostic("cohorts", "info", (
        f"{len(together)} of {len(sizes)} trials trained in cohorts, {min(together)} to "
        f"{max(together)} at once as one stacked model; the others trained alone (a "
        "structure with no cohort, or a model too wide for stacking to pay on this "
        "device). A trial's train time is its share of its cohort's."))]


# -- edge of the search range -------------------------------------------------------------
def edge_of_range(params: Mapping[str, Any], space: SearchSpace) -> list[Diagnostic]:
    """A warning for each numeric parameter of ``params`` (the best trial's) that sits on an
    edge of its range in ``space``; an info where that edge is also the parameter's hard
    limit (dropout 0, say), since such a range cannot be widened. Whole-number ranges of
    two values are skipped: every value is on an edge."""
    found = []
    for name, value in params.items():
        space_name = "units" if name.startswith("n_units_l") else name
        param = space.params.get(space_name)
        if (not isinstance(param, (IntRange, FloatRange)) or param.high <= param.low
                or isinstance(value, bool) or not isinstance(value, (int, float))
                or (isinstance(param, IntRange) and param.high - param.low < 2 * param.step)):
            continue  # (a range of two whole numbers is all edge: nothing to say)
        side = edge_side(float(value), param)
        if side is None:
            continue
        domain = DOMAINS[space_name]
        limit = param.high if side == "top" else param.low
        hard = limit == (domain.high if side == "top" else domain.low)
        where = (f"the best {param_label(name)}, {_number(value)}, sits at the {side} edge of "
                 f"its search range [{_number(param.low)}, {_number(param.high)}]"
                 f"{' (log scale)' if param.log else ''}")
        if hard:
            found.append(Diagnostic("edge_of_range", "info", f"{where}, which is also the "
                                    f"{'largest' if side == 'top' else 'smallest'} value it "
                                    "can take: nothing to widen."))
        else:
            direction = "above" if side == "top" else "below"
            found.append(Diagnostic("edge_of_range", "warning", f"{where}: the best value may "
                                    f"lie {direction} it; widen the range "
                                    f"{'upwards' if side == 'top' else 'downwards'} and tune "
                                    "again."))
    return found


def edge_side(value: float, param: IntRange | FloatRange) -> str | None:
    """"top", "bottom" or None: where ``value`` sits in the range (log scale if log)."""
    if param.log:
        position = (math.log(value) - math.log(param.low)) / (
            math.log(param.high) - math.log(param.low))
    else:
        position = (value - param.low) / (param.high - param.low)
    if position >= 1 - EDGE:
        return "top"
    if position <= EDGE:
        return "bottom"
    return None


def param_label(name: str) -> str:
    """``lr (learning rate)``, ``width of hidden layer 2 (n_units_l1)``."""
    if name.startswith("n_units_l") and name[9:].isdigit():
        return f"width of hidden layer {int(name[9:]) + 1} ({name})"
    domain = DOMAINS.get(name)
    return f"{domain.help.split(' (')[0]} ({name})" if domain and domain.help else name


# -- failed and diverged trials -----------------------------------------------------------
HINTS = {
    "diverged": "lower the top of the learning-rate range or set grad_clip_norm",
    "out_of_memory": "make the widest layers or the batch size smaller",
    "lost_worker": "workers died mid-trial (killed, or out of memory on the host)",
    "error": "read the failed trials' 'error' attribute",
}


def failures(trials: Iterable[FrozenTrial]) -> list[Diagnostic]:
    """A warning if most finished trials failed or diverged, with a count per reason."""
    finished = [t for t in trials if t.state.is_finished()
                and t.user_attrs.get("stop_reason") not in NOT_FAILURES]
    kinds = Counter(kind for t in finished if (kind := failure_kind(t)) is not None)
    example = next((t for t in finished if failure_kind(t) == _most_common(kinds)), None)
    detail = ""
    if example is not None:
        text = example.user_attrs.get("error") or example.user_attrs.get("detail")
        if text:
            detail = f" For example trial {example.number}: {str(text)[:200]}."
    return _failure_diagnostic(len(finished), kinds, detail)


def _failure_diagnostic(n_finished: int, kinds: Counter[str], detail: str) -> list[Diagnostic]:
    bad = sum(kinds.values())
    if n_finished == 0:
        return [Diagnostic("failures", "warning", "no trial finished.")]
    reasons = ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())
    if bad * 2 > n_finished:
        top = _most_common(kinds) or ""
        hint = HINTS.get(top.split(":")[0], HINTS["error"])
        return [Diagnostic("failures", "warning", f"most trials failed or diverged: {bad} of "
                           f"{n_finished} ({reasons}). The result rests on the "
                           f"{n_finished - bad} that finished; {hint}.{detail}")]
    if bad:
        return [Diagnostic("failures", "info", f"{bad} of {n_finished} trials failed or "
                           f"diverged ({reasons}); the other {n_finished - bad} carry the "
                           f"search.{detail}")]
    return [Diagnostic("failures", "ok", f"none of the {n_finished} trials failed or "
                       "diverged.")]


def _most_common(kinds: Counter[str]) -> str | None:
    return kinds.most_common(1)[0][0] if kinds else None


# -- is the validation set big enough to rank the top trials? ------------------------------
def val_rows(dataset: str) -> int | None:
    """The validation row count from a result's dataset description, if it says."""
    match = re.search(r"train/val/test rows (\d+)/(\d+)/(\d+)", dataset)
    return int(match.group(2)) if match else None


def score_noise(metric: str, score: float, n_val: int) -> float:
    """Two standard errors of a score measured on ``n_val`` rows (see the module doc)."""
    if metric == "accuracy":
        p = min(max(score, 0.0), 1.0)
        return max(2 * math.sqrt(p * (1 - p) / n_val), 1 / n_val)
    return 2 * max(1 - score, 0.0) * math.sqrt(2 / n_val)


def validation_resolution(trials: Iterable[FrozenTrial], metric: str, n_val: int | None,
                          top_k: int = TOP_K) -> list[Diagnostic]:
    """A warning when the ``top_k`` best trials (by validation loss, the ranking the study
    uses) have validation scores closer together than the noise of one score."""
    ranked = sorted((t for t in trials if t.state == TrialState.COMPLETE and t.value is not None
                     and isinstance(t.user_attrs.get("val_score"), (int, float))),
                    key=lambda t: float(t.value))  # type: ignore[arg-type]
    top = [float(t.user_attrs["val_score"]) for t in ranked[:top_k]]
    if not n_val or len(top) < 2:
        return []
    noise = score_noise(metric, top[0], n_val)
    spread = max(top) - min(top)
    fmt, name, rule = ((_percent, "accuracies", "√(p(1-p)/n)") if metric == "accuracy"
                       else (_r2, "R² scores", "(1-R²)·√(2/n)"))
    if spread < noise:
        return [Diagnostic(
            "small_validation", "warning",
            f"the validation set is too small to tell the top models apart: the {len(top)} "
            f"best trials' validation {name} lie within {fmt(spread, points=True)} of each "
            f"other ({fmt(min(top))} to {fmt(max(top))}), while a score measured on {n_val} "
            f"validation rows is only known to about ±{fmt(noise, points=True)} (two "
            f"standard errors, {rule}). Which of them won is partly luck; more rows would "
            "help.")]
    return [Diagnostic(
        "small_validation", "ok",
        f"the {len(top)} best trials' validation {name} span {fmt(spread, points=True)}, "
        f"more than the ±{fmt(noise, points=True)} noise of a score on {n_val} validation "
        "rows: the validation set separates them.")]


def _percent(value: float, points: bool = False) -> str:
    return f"{value * 100:.1f} points" if points else f"{value * 100:.1f}%"


def _r2(value: float, points: bool = False) -> str:
    return f"{value:.3f}"


# -- the pruning audit ---------------------------------------------------------------------
@dataclass(frozen=True)
class PruningAudit:
    """What became of the trials the pruner wanted to stop but the audit let finish."""

    audited: list[int]  # trial numbers
    in_top: list[int]  # ... that ended in the best TOP_FRACTION of completed trials
    new_best: list[int]  # ... that beat every trial completed before them
    became_best: int | None  # ... the study's best trial, if it is one of them
    n_pruned: int
    would_prune_at: dict[int, int] = field(default_factory=dict)


def audit_pruning(trials: Iterable[FrozenTrial]) -> PruningAudit:
    trials = list(trials)
    complete = sorted((t for t in trials if t.state == TrialState.COMPLETE
                       and t.value is not None), key=lambda t: float(t.value))  # type: ignore[arg-type]
    n_top = max(1, math.ceil(TOP_FRACTION * len(complete)))
    top = {t.number for t in complete[:n_top]}
    audited = sorted((t for t in trials if AUDIT_ATTR in t.user_attrs), key=lambda t: t.number)
    new_best = []
    for trial in audited:
        if trial.state != TrialState.COMPLETE or trial.value is None:
            continue
        earlier = [float(t.value) for t in complete if t.number != trial.number  # type: ignore[arg-type]
                   and _finished_before(t, trial)]
        if not earlier or trial.value < min(earlier):
            new_best.append(trial.number)
    best = complete[0].number if complete else None
    return PruningAudit(
        audited=[t.number for t in audited],
        in_top=[t.number for t in audited if t.number in top],
        new_best=new_best,
        became_best=best if best in {t.number for t in audited} else None,
        n_pruned=sum(t.state == TrialState.PRUNED and t.user_attrs.get("stop_reason")
                     == "pruned" for t in trials),
        would_prune_at={t.number: int(t.user_attrs[AUDIT_ATTR]) for t in audited})


def _finished_before(a: FrozenTrial, b: FrozenTrial) -> bool:
    if a.datetime_complete is not None and b.datetime_complete is not None:
        return a.datetime_complete < b.datetime_complete
    return a.number < b.number


def audit_diagnostic(audit: PruningAudit) -> Diagnostic:
    top = f"top {TOP_FRACTION:.0%}"
    n = len(audit.audited)
    if n == 0:
        if audit.n_pruned == 0:
            return Diagnostic("pruning_audit", "info", "no trial was pruned and none audited: "
                              "there is no pruning to check.")
        return Diagnostic("pruning_audit", "info", f"no audited trials: {audit.n_pruned} "
                          "trials were pruned, but none of the trials the pruner wanted to "
                          "stop was let finish, so how often pruning stops a future winner "
                          "is unknown for this run.")
    numbers = ", ".join(f"#{i}" for i in audit.in_top)
    text = (f"pruning would have stopped {len(audit.in_top)} of {n} audited trials that went "
            f"on to be in the {top}{f' ({numbers})' if audit.in_top else ''}")
    if audit.new_best:
        text += (f"; {len(audit.new_best)} of the {n} set a new best when they finished")
    if audit.became_best is not None:
        return Diagnostic("pruning_audit", "warning", f"{text}, and trial "
                          f"#{audit.became_best}, the tuned model, is one of them: the pruner "
                          "stops promising trials here; give it more warm-up epochs or "
                          "start-up trials.")
    if len(audit.in_top) >= 2 and len(audit.in_top) >= TOP_FRACTION * n:
        return Diagnostic("pruning_audit", "warning", f"{text}: no better than chance at "
                          "spotting losers; give the pruner more warm-up epochs or start-up "
                          "trials.")
    if audit.in_top:
        return Diagnostic("pruning_audit", "info", f"{text}.")
    return Diagnostic("pruning_audit", "ok", f"{text}: the trials it wanted to stop did "
                      "turn out poor.")


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:.3g}"


# -- reading what the checks need off a study ----------------------------------------------
def space_of(study: optuna.Study) -> SearchSpace | None:
    """The resolved search space stored on the study (user attribute ``space``)."""
    data = study.user_attrs.get("space")
    try:
        return SearchSpace.from_dict(data) if data else None
    except AutoMLError:
        return None
