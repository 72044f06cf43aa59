"""Trials per minute with and without cohorts, on each dataset, side by side.

    python bench/cohort_speed.py --datasets breast_cancer wine diabetes --trials 20
    python bench/cohort_speed.py --trials 20 --json bench/records/cohort_speed.jsonl

For each dataset of ``bench/compare_quality.py`` (at most ``--max-rows`` rows, a seeded
stratified sample, as ``bench/protocol.py`` takes them), ``automl.tune`` runs twice in
fresh child processes, one right after the other, on the same split (``--seed``) with the
default space and budget settings, ``--trials`` trials, 1 final seed, a SQLite file and a
local Ray on all cores:

* **cohorts**: the default (a Ray task claims up to 8 trial tickets and trains those of
  one structure as one stacked model where that pays);
* **solo**: ``cohort_trials=1``, one trial per Ray task, as before issue 20.

Reported per side: the search's wall time (``tuning_seconds``: first trial start to last
trial end), trials and epochs per minute over it (epochs: every trial's reports, the
work done whether or not trials were pruned), the best trial's validation loss and
validation score (accuracy or R², the trials' own), the delivered model's test score,
how many trials trained in a cohort, and the child's wall time (Ray's start, the
baselines and the final evaluation included).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from compare_quality import DATASETS, cap_rows, read_frame  # bench/ is on sys.path

SIDES = {"cohorts": None, "solo": 1}


def run_side(dataset: str, side: str, args: argparse.Namespace) -> dict[str, Any]:
    """One ``tune`` in this process (the child)."""
    import optuna

    import automl

    spec = DATASETS[dataset]
    frame = cap_rows(read_frame(spec), spec, args.max_rows, 0)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'study.db'}"
        result = automl.tune(frame, spec.target, task=spec.task, seed=args.seed,
                             n_trials=args.trials, n_seeds=1, storage=url, progress=False,
                             cohort_trials=SIDES[side])
        study = optuna.load_study(study_name=result.study_name, storage=url)
        sizes = [int(t.user_attrs.get("cohort_size", 1)) for t in study.trials]
        epochs = sum(len(t.intermediate_values) for t in study.trials)
        trials = [trial_summary(t) for t in study.trials]
    return {"dataset": dataset, "side": side, "seed": args.seed, "trials": result.n_trials,
            "tuning_seconds": result.tuning_seconds,
            "trials_per_min": 60 * result.n_trials / result.tuning_seconds,
            "epochs": epochs, "epochs_per_min": 60 * epochs / result.tuning_seconds,
            "best_val_loss": result.best.val_loss, "best_val_score": result.best.val_score,
            "test_score": result.best.final_score, "in_cohorts": sum(s > 1 for s in sizes),
            "largest_cohort": max(sizes, default=1),
            "child_seconds": time.perf_counter() - started, "trials_detail": trials}


def trial_summary(trial: Any) -> dict[str, Any]:
    """One trial in a record: how long it trained, its structure and size, and its whole
    configuration (``TrialConfig.from_dict`` reads it back), to train it again."""
    config = trial.user_attrs.get("config", {})
    model = config.get("model", {})
    return {"number": trial.number, "state": trial.state.name,
            "epochs": len(trial.intermediate_values),
            "seconds": trial.user_attrs.get("seconds"),
            "cohort_size": trial.user_attrs.get("cohort_size", 1),
            "hidden_units": model.get("hidden_units"), "embedding": model.get("embedding"),
            "ensemble_k": model.get("ensemble_k"),
            "n_parameters": trial.user_attrs.get("n_parameters"), "config": config}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-rows", type=int, default=10_000)
    parser.add_argument("--json", type=Path, help="append each record as one JSON line")
    parser.add_argument("--sides", nargs="+", default=list(SIDES), choices=SIDES,
                        help="one side only compares code versions, not cohorts with solo")
    parser.add_argument("--child", nargs=2, metavar=("DATASET", "SIDE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        dataset, side = args.child
        print(json.dumps(run_side(dataset, side, args)))
        return
    forwarded = sys.argv[1:]
    print("| dataset | side | trials/min | x solo | epochs/min | x solo | best val loss "
          "| best val score | test | in cohorts (largest) | search s | child s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |")
    for dataset in args.datasets:
        rows = {}
        for side in args.sides:
            out = subprocess.run([sys.executable, __file__, *forwarded, "--child", dataset, side],
                                 capture_output=True, text=True, check=True)
            rows[side] = json.loads(out.stdout.strip().splitlines()[-1])
        for side, row in rows.items():
            solo = rows.get("solo", row)
            ratio = row["trials_per_min"] / solo["trials_per_min"]
            epoch_ratio = row["epochs_per_min"] / solo["epochs_per_min"]
            print(f"| {dataset} | {side} | {row['trials_per_min']:.1f} | {ratio:.2f} | "
                  f"{row['epochs_per_min']:.0f} | {epoch_ratio:.2f} | "
                  f"{row['best_val_loss']:.4f} | {row['best_val_score']:.4f} | "
                  f"{row['test_score']:.4f} | {row['in_cohorts']} ({row['largest_cohort']}) | "
                  f"{row['tuning_seconds']:.0f} | {row['child_seconds']:.0f} |", flush=True)
            if args.json:
                record = {**row, "command": "python bench/cohort_speed.py " + " ".join(forwarded),
                          "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                          "machine": f"{os.cpu_count()} cores, {platform.processor() or '?'}"}
                with args.json.open("a") as handle:
                    handle.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
