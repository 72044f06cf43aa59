"""What drawing a cohort's members from one TPE fit does to the search, on a known function.

    python bench/draw_ahead_quality.py [--seeds 20] [--trials 120] [--cohort 8]
                                       [--ways per-ask draw-ahead draw-ahead:w250]
                                       [--out bench/records/draw_ahead_quality.jsonl]

No training: each trial's configuration (the default space, digits' shape) is scored by a
fixed synthetic function with one best region (learning rate, width, dropout, weight decay)
and small gains for some structures, plus noise. Trials are asked as
``workers.trial_cohorts`` asks them: cohorts of ``--cohort``, the first from the whole
space, the rest with its structure pinned, all running until the cohort is told. Two ways,
on the same seeds: ``per-ask`` (one TPE fit per member, each seeing the earlier members as
constant liars: before ``automl.study.storage.draw_ahead``) and ``draw-ahead`` (the members
from one fit); a way named ``draw-ahead:wN`` fits TPE on a window of ``N`` finished trials
instead of the run's 1,000 (``automl.study.storage.history_window``). The table pairs every
way with the first one named. Recorded per seed and way: the best loss found, the mean loss
of the last third of trials, and the members' spread (mean pairwise distance of log10
learning rates within a cohort). A toy: it shows whether members drawn together crowd into
one spot; the datasets' protocol (``bench/protocol.py``) is the real check.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from automl.configs import TrialConfig
from automl.options import TuneOptions
from automl.run.plan import settings_of
from automl.space import SearchSpace
from automl.space.suggest import structure_params, suggest_trial_config
from automl.study.settings import make_sampler
from automl.study.storage.draw_ahead import drawing_ahead
from automl.study.storage.history_window import HISTORY_WINDOW

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
WAYS = ("per-ask", "draw-ahead")
STRUCTURE_GAIN = {"periodic": -0.2, "piecewise_linear": -0.15, "none": 0.0}


def synthetic_loss(config: TrialConfig, rng: np.random.Generator) -> float:
    """Lowest near lr 2e-3, 180 units, dropout 0.15, weight decay 1e-4; embeddings, an
    ensemble and Adam help a little; noise of SD 0.02."""
    model, train = config.model, config.train
    width = statistics.fmean(model.hidden_units) if model.hidden_units else 1.0
    loss = (math.log10(train.lr) + 2.7) ** 2 + 0.1 * (math.log2(width) - 7.5) ** 2
    loss += 2 * (model.dropout - 0.15) ** 2
    loss += 0.05 * (math.log10(train.weight_decay + 1e-7) + 4) ** 2
    loss += STRUCTURE_GAIN.get(model.embedding, 0.0) - 0.1 * (model.ensemble_k > 1)
    loss += 0.3 * (train.optimizer == "sgd")
    return float(loss + rng.normal(0, 0.02))


@contextmanager
def pinned(study: optuna.Study, fixed: dict[str, Any]) -> Iterator[None]:
    sampler = study.sampler
    study.sampler = optuna.samplers.PartialFixedSampler(fixed, sampler)
    try:
        yield
    finally:
        study.sampler = sampler


def search(seed: int, way: str, n_trials: int, cohort: int,
           space: SearchSpace) -> dict[str, Any]:
    """One study of ``n_trials`` asked in cohorts ``way``; its best, late mean and spread."""
    settings = settings_of(TuneOptions(n_trials=n_trials, seed=seed), space)
    base_way, _, window = way.partition(":w")
    study = optuna.create_study(sampler=make_sampler(
        settings, window=int(window) if window else HISTORY_WINDOW))
    rng = np.random.default_rng(seed)
    losses: list[float] = []
    spreads: list[float] = []
    while len(losses) < n_trials:
        size = min(cohort, n_trials - len(losses))
        first = study.ask()
        configs = [suggest_trial_config(first, space, seed)]
        trials = [first]
        block = drawing_ahead(study.sampler, size - 1) if base_way == "draw-ahead" \
            and size > 1 else nullcontext()
        with pinned(study, structure_params(first.params)), block:
            for _ in range(size - 1):
                trials.append(study.ask())
                configs.append(suggest_trial_config(trials[-1], space, seed))
        lrs = [math.log10(c.train.lr) for c in configs[1:]]
        if len(lrs) > 1:
            spreads.append(statistics.fmean(abs(a - b) for a, b in
                                            itertools.combinations(lrs, 2)))
        for trial, config in zip(trials, configs, strict=True):
            losses.append(synthetic_loss(config, rng))
            study.tell(trial, losses[-1])
    startup = settings.tpe_startup_trials
    return {"seed": seed, "way": way, "trials": n_trials, "cohort": cohort,
            "tpe_startup": startup, "best": min(losses),
            "late_mean": statistics.fmean(losses[-n_trials // 3:]),
            "spread": statistics.fmean(spreads[startup // cohort + 1:] or spreads)}


def summary(rows: list[dict[str, Any]], ways: list[str]) -> str:
    """Each way paired with the first over seeds (this - first): mean and 95 % t-interval,
    per measure."""
    from scipy import stats

    by_seed = {(r["seed"], r["way"]): r for r in rows}
    seeds = sorted({r["seed"] for r in rows})
    first = ways[0]
    lines = [f"| way | measure | {first} | way | way - {first} (95 % CI) |",
             "| --- | --- | ---: | ---: | ---: |"]
    for way in ways[1:]:
        for key in ("best", "late_mean", "spread"):
            a = [by_seed[(s, first)][key] for s in seeds]
            b = [by_seed[(s, way)][key] for s in seeds]
            diffs = [y - x for x, y in zip(a, b, strict=True)]
            half = float(stats.t.ppf(0.975, len(diffs) - 1)) * statistics.stdev(diffs) \
                / math.sqrt(len(diffs))
            lines.append(f"| {way} | {key} | {statistics.fmean(a):.3f} | "
                         f"{statistics.fmean(b):.3f} | {statistics.fmean(diffs):+.3f} ± "
                         f"{half:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--trials", type=int, default=120)
    parser.add_argument("--cohort", type=int, default=8)
    parser.add_argument("--ways", nargs="+", default=list(WAYS),
                        help="per-ask, draw-ahead, or either with :wN (a window of N)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    space = SearchSpace({}).resolve("multiclass", 1077, 64)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    rows = []
    for seed in range(args.seeds):
        for way in args.ways:
            row = {**search(seed, way, args.trials, args.cohort, space), "date": stamp,
                   "optuna": optuna.__version__}
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.out:
                with args.out.open("a") as out:
                    out.write(json.dumps(row) + "\n")
    print(summary(rows, args.ways))


if __name__ == "__main__":
    main()
