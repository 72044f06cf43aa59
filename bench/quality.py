"""Tuned MLP against the rule-of-thumb baselines, over several split seeds.

    python bench/quality.py --dataset sklearn:digits --target target --trials 30 --seeds 0 1 2

Each seed is one full ``automl.tune`` run (its own split, study and baseline training) on
the embedded default. Prints one row per seed and a summary: how often tuning beat the
best baseline and the mean gap. ``--space`` takes a JSON or YAML file (or inline JSON)
overriding the default space, for comparing candidate defaults side by side.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import automl


def run_seed(args: argparse.Namespace, seed: int, folder: Path) -> dict[str, Any]:
    space: Any = None
    if args.space:
        space = args.space if Path(args.space).exists() else json.loads(args.space)
    started = time.perf_counter()
    result = automl.tune(args.dataset, args.target, space=space, n_trials=args.trials,
                         seed=seed, storage=f"sqlite:///{folder / f'seed{seed}.db'}",
                         progress=False, pruner=args.pruner,
                         pruner_warmup_epochs=args.warmup)
    rival = result.best_baseline  # chosen on validation, like the tuned model
    top = max(result.baselines, key=lambda b: b.final_score)  # the luckiest on test
    # Scores of the models tune delivers: each seed ensemble (tuned_sd: one seed's spread).
    return {"seed": seed, "tuned": result.best.final_score,
            "tuned_sd": result.best.test_score_std, "tuned_seed_mean": result.best.test_score,
            "best_baseline": rival.name, "baseline": rival.final_score,
            "gap": result.gap, "beats": result.beats_baselines,
            "top_test_baseline": top.name, "top_test": top.final_score,
            "gap_top_test": result.best.final_score - top.final_score,
            "architecture": result.best.architecture,
            "pruned": result.n_pruned, "failed": result.n_failed,
            "tuning_s": result.tuning_seconds, "total_s": time.perf_counter() - started,
            "metric": result.metric}


HEADER = ("| label | seed | tuned (mean ± sd) | best baseline on validation: its test | gap | "
          "best baseline on test | gap | pruned | tuning s |\n"
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="sklearn:digits")
    parser.add_argument("--target", default="target")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--space", help="JSON/YAML file or inline JSON overriding the default")
    parser.add_argument("--pruner", default="median")
    parser.add_argument("--warmup", type=int, default=10, help="pruner warm-up epochs")
    parser.add_argument("--label", default="default")
    parser.add_argument("--json", help="append the rows as JSON lines to this file")
    args = parser.parse_args()
    rows = []
    print(HEADER)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            row = {"label": args.label, **run_seed(args, seed, Path(tmp))}
            rows.append(row)
            scale = 100 if row["metric"] == "accuracy" else 1
            print(f"| {args.label} | {seed} | {row['tuned'] * scale:.2f} ± "
                  f"{row['tuned_sd'] * scale:.2f} | {row['best_baseline']} "
                  f"{row['baseline'] * scale:.2f} | {row['gap'] * scale:+.2f} | "
                  f"{row['top_test_baseline']} {row['top_test'] * scale:.2f} | "
                  f"{row['gap_top_test'] * scale:+.2f} | "
                  f"{row['pruned']} | {row['tuning_s']:.0f} |", flush=True)
            if args.json:
                with open(args.json, "a") as handle:
                    handle.write(json.dumps(row) + "\n")
    scale = 100 if rows[0]["metric"] == "accuracy" else 1
    wins = sum(r["beats"] for r in rows)
    wins_top = sum(r["gap_top_test"] > 0 for r in rows)
    gap = statistics.fmean(r["gap"] for r in rows) * scale
    gap_top = statistics.fmean(r["gap_top_test"] for r in rows) * scale
    print(f"{args.label}: beat the validation-chosen baseline in {wins}/{len(rows)} seeds "
          f"(mean gap {gap:+.2f}); beat every baseline's test score in {wins_top}/{len(rows)} "
          f"(mean gap {gap_top:+.2f})", file=sys.stderr)


if __name__ == "__main__":
    main()
