"""A run's search trained in batches of slots in one process, without Ray: ways of forming
cohorts compared on searches that differ only by them.

    python bench/trial_batches.py --dataset digits --trials 40 --seeds 0 1 2
                                  [--ways solo cohorts unpreferred] [--space FILE]
                                  [--budget fast] [--json FILE]

``bench/cohort_speed.py`` runs the whole service twice, and one trial per task alone
moved 2x in trials a minute from run to run on one split (BENCHMARKS.md, "After three
fixes to how cohorts ask"): two Ray workers ask and tell in whatever order their trials
end, so each run's search takes its own path. Here one process runs the trials the way
one worker's Ray task runs its claimed tickets
(:func:`workers.trial_cohorts.run_trial_cohorts`, one torch thread),
batch after batch, on a SQLite study made as ``tune`` makes it (settings, rule-of-thumb
warm starts, the default space for the data). One process and seeded samplers make each
way's search repeatable, so the ways differ only by how they form cohorts:

* **solo**: batches of one slot, one trial at a time (``cohort_trials=1``);
* **cohorts**: batches of ``CPU_COHORT_TRIALS`` slots, as a CPU worker claims them;
* **unpreferred**: the same without the refill's preference for widths that stack
  (:func:`workers.trial_cohorts.prefer_stackable`), as before it.

Reported per way and seed: wall seconds of the search, trials and epochs a minute, trials
in a cohort (largest), the share of training seconds in trials that cannot stack on a
CPU (above ``CPU_MAX_MACS`` or without a cohort key), how many structures (cohort keys)
the sampler's random start-up tried, and the best trial's validation loss and score.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from unittest import mock

import optuna
import torch
from compare_quality import DATASETS, cap_rows, read_frame  # bench/ is on sys.path
from optuna.trial import FrozenTrial

from automl.configs import TrialConfig
from automl.options import BUDGETS, TuneOptions
from automl.run.plan import baselines_for, first_trials, settings_of
from automl.run.submit import validate_submission
from automl.study.settings import pruning_policy
from automl.study.studies import create_study
from workers import trial_cohorts
from workers.cohort import cohort_key
from workers.cohort_size import CPU_COHORT_TRIALS, CPU_MAX_MACS, multiply_adds
from workers.data import TensorSplits, to_tensors

WAYS = {"solo": 1, "cohorts": CPU_COHORT_TRIALS, "unpreferred": CPU_COHORT_TRIALS}


def run_way(way: str, frame: Any, spec: Any, seed: int, n_trials: int,
            space: Path | None = None, budget: str = "default") -> dict[str, Any]:
    """One search of ``n_trials`` trials (``space``: a user space file, None: the
    default space of ``budget``), formed the ``way`` way."""
    options = TuneOptions(task=spec.task, seed=seed, n_trials=n_trials, budget=budget)
    sub = validate_submission(frame, spec.target, space, options)
    data = to_tensors(sub.prepared)
    settings = settings_of(options, sub.space)
    first = first_trials(settings, baselines_for(sub.prepared, sub.space), sub.space)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        study = create_study(f"sqlite:///{Path(tmp) / 'study.db'}", "bench", settings, {},
                             first_trials=first)
        patch = mock.patch.object(trial_cohorts, "prefer_stackable", lambda *_: None) \
            if way == "unpreferred" else nullcontext()
        started = time.perf_counter()
        with patch:
            while (done := len(_finished(study))) < n_trials:
                slots = [trial_cohorts.TrialSlot() for _ in range(min(WAYS[way], n_trials - done))]
                trial_cohorts.run_trial_cohorts(study, slots, sub.space, data, seed,
                                                pruning_policy(settings),
                                                settings.tpe_startup_trials)
        seconds = time.perf_counter() - started
        finished = sorted(_finished(study), key=lambda t: t.number)
        row = summary(way, seed, finished, seconds, data)
        startup = finished[:settings.tpe_startup_trials]
        row["startup_structures"] = len({structure(t) for t in startup})
        return row


def _finished(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]


def summary(way: str, seed: int, finished: list[FrozenTrial], seconds: float,
            data: TensorSplits) -> dict[str, Any]:
    sizes = [int(t.user_attrs.get("cohort_size", 1)) for t in finished]
    epochs = sum(len(t.intermediate_values) for t in finished)
    train_s = sum(float(t.user_attrs.get("seconds", 0.0)) for t in finished)
    cannot = sum(float(t.user_attrs.get("seconds", 0.0)) for t in finished
                 if not can_stack(t, data))
    best = min((t for t in finished if t.value is not None), key=lambda t: t.value or 0.0)
    return {"way": way, "seed": seed, "trials": len(finished), "seconds": round(seconds, 1),
            "trials_per_min": round(60 * len(finished) / seconds, 2),
            "epochs_per_min": round(60 * epochs / seconds, 1), "epochs": epochs,
            "in_cohorts": sum(size > 1 for size in sizes), "largest_cohort": max(sizes),
            "cannot_stack_share": round(cannot / train_s, 3) if train_s else None,
            "best_val_loss": best.value, "best_val_score": best.user_attrs.get("val_score")}


def config_of(trial: FrozenTrial) -> TrialConfig:
    return TrialConfig.from_dict(trial.user_attrs.get("config", {}))


def structure(trial: FrozenTrial) -> Any:
    """What the trial shares with the members of its cohort (its cohort key)."""
    return cohort_key(config_of(trial)) or ("no cohort", trial.number)


def can_stack(trial: FrozenTrial, data: TensorSplits) -> bool:
    """Whether the trial's model is one a CPU cohort could speed up."""
    config = config_of(trial)
    macs = multiply_adds(config.model, data.n_inputs, data.n_outputs, data.n_numeric)
    return cohort_key(config) is not None and macs <= CPU_MAX_MACS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits", choices=DATASETS)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--ways", nargs="+", default=list(WAYS), choices=WAYS)
    parser.add_argument("--max-rows", type=int, default=10_000)
    parser.add_argument("--space", type=Path, help="a search space file (default: the default)")
    parser.add_argument("--budget", default="default", choices=BUDGETS)
    parser.add_argument("--json", type=Path, help="append each record as one JSON line")
    args = parser.parse_args()
    torch.set_num_threads(1)  # a Ray task's one CPU
    spec = DATASETS[args.dataset]
    frame = cap_rows(read_frame(spec), spec, args.max_rows, 0)
    print("| seed | way | trials/min | epochs/min | in cohorts (largest) | cannot stack "
          "| start-up structures | best val loss | best val score | seconds |")
    print("| ---: | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for seed in args.seeds:
        for way in args.ways:
            row = run_way(way, frame, spec, seed, args.trials, args.space, args.budget)
            print(f"| {seed} | {way} | {row['trials_per_min']:.1f} | {row['epochs_per_min']:.0f}"
                  f" | {row['in_cohorts']} ({row['largest_cohort']}) | "
                  f"{row['cannot_stack_share']:.0%} | {row['startup_structures']} | "
                  f"{row['best_val_loss']:.4f} | "
                  f"{row['best_val_score']:.4f} | {row['seconds']:.0f} |", flush=True)
            if args.json:
                record = {"dataset": args.dataset, "space": str(args.space or "default"),
                          "budget": args.budget, **row,
                          "command": "python bench/trial_batches.py "
                                     + " ".join(sys.argv[1:]),
                          "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                          "machine": f"{os.cpu_count()} cores, {platform.processor() or '?'}",
                          "optuna": optuna.__version__}
                with args.json.open("a") as handle:
                    handle.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
