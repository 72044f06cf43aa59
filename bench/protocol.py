"""Issue 19's protocol: the tuned model against default HistGradientBoosting, split by split.

    python bench/protocol.py run --datasets digits wine --splits 0 1 2 3 4   # appends
    python bench/protocol.py run --variant plain --splits 0 1 2 3 4           # main before
    python bench/protocol.py run --variant solo --datasets digits             # no cohorts
    python bench/protocol.py table [--against plain|solo]                     # the table
    python bench/protocol.py table --out new.jsonl --before old.jsonl         # code vs code

Each (dataset, split seed, variant) is one record in ``--out`` (JSON lines, default
``bench/records/protocol.jsonl``, committed); ``run`` skips the records already there, so the table
can be built one dataset and one split at a time, on one machine or several.

For every split seed (0-4), on the same rows (datasets above ``--max-rows`` are
subsampled once, seeded 0, stratified for classification):

* **tuned**: ``automl.tune(..., seed=split)`` at its default budget (``TuneOptions``:
  30 trials, 3 final seeds) in a fresh SQLite file with a local Ray; the split is the one
  ``tune`` makes from its seed. Test score: the delivered model (the final seeds'
  ensemble). ``--variant plain`` runs the same with the space main had before issue 19
  (plain MLP: no embeddings, one member, Adam's default beta2, constant or plateau
  schedule, no label smoothing); ``--variant fast`` runs ``--budget fast``; ``--variant
  solo`` runs one trial per Ray task (``cohort_trials=1``, as before issue 20's cohorts).
* **best rule of thumb**: the rule-of-thumb baseline with the best validation score in
  the same run, trained under the same protocol (its seeds' ensemble).
* **HGB**: scikit-learn's ``HistGradientBoosting{Classifier,Regressor}(random_state=split)``
  fitted on the same encoded training rows, scored on the same test rows.

Scores: accuracy (points) or R² (points x 100). ``table`` gives, per dataset, the mean
test score of each and the paired difference (tuned - HGB, tuned - rule of thumb, tuned
- plain) with its 95 % t-interval over the splits, a win (interval above 0), tie or loss,
and the wall time and trials per run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from compare_quality import DATASETS, cap_rows, read_frame  # bench/ is on sys.path

OUT = Path(__file__).resolve().parent / "records" / "protocol.jsonl"
PLAIN_SPACE = {"embedding": "none", "ensemble_k": 1, "beta2": 0.999, "label_smoothing": 0.0,
               "lr_schedule": ["constant", "plateau"]}  # main's default before issue 19
VARIANTS = ("default", "plain", "fast", "solo")


def hgb_score(prepared: Any, seed: int) -> tuple[float, float]:
    """Default HistGradientBoosting on the prepared split: test score (points), fit seconds."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    regression = prepared.task == "regression"
    model = (HistGradientBoostingRegressor if regression
             else HistGradientBoostingClassifier)(random_state=seed)
    started = time.perf_counter()
    model.fit(prepared.x_train, prepared.y_train)
    seconds = time.perf_counter() - started
    predicted, y = model.predict(prepared.x_test), prepared.y_test
    if not regression:
        return 100 * float((predicted == y).mean()), seconds
    total = float(((y - y.mean()) ** 2).sum())
    return 100 * (1 - float(((predicted - y) ** 2).sum()) / total), seconds


def run_one(name: str, split: int, variant: str, max_rows: int) -> dict[str, Any]:
    """One dataset, one split seed, one variant: the tuned run and HGB on the same rows."""
    import automl
    from automl.data import load_dataset

    spec = DATASETS[name]
    frame = cap_rows(read_frame(spec), spec, max_rows, seed=0)
    prepared = load_dataset(frame.copy(), spec.target, task=spec.task, seed=split)
    hgb, hgb_s = hgb_score(prepared, split)
    options: dict[str, Any] = {"space": PLAIN_SPACE} if variant == "plain" else {}
    if variant == "fast":
        options["budget"] = "fast"
    if variant == "solo":
        options["cohort_trials"] = 1
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        result = automl.tune(frame.copy(), spec.target, task=spec.task, seed=split,
                             storage=f"sqlite:///{folder}/x.db", progress=False, **options)
        wall = time.perf_counter() - started
    rule = result.best_baseline
    return {"dataset": name, "split": split, "variant": variant, "task": prepared.task,
            "rows": len(frame), "n_features": prepared.n_features,
            "tuned": 100 * result.best.final_score, "hgb": hgb, "hgb_s": hgb_s,
            "rule": 100 * rule.final_score, "rule_name": rule.name,
            "architecture": result.best.architecture, "params": result.best.params,
            "n_trials": result.n_trials, "n_complete": result.n_complete,
            "n_pruned": result.n_pruned, "wall_s": wall, "tuning_s": result.tuning_seconds,
            "load": os.getloadavg(), "when": datetime.now(timezone.utc).isoformat(),
            "commit": commit(),
            "machine": f"{platform.node()} ({os.cpu_count()} CPUs)"}


def commit() -> str:
    """The code's commit (of the tree this script runs from), for the record."""
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, cwd=Path(__file__).parent, check=False)
    return done.stdout.strip() or "unknown"


def read_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run(args: argparse.Namespace) -> None:
    done = {(r["dataset"], r["split"], r["variant"]) for r in read_records(args.out)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name in args.datasets:
        for split in args.splits:
            if (name, split, args.variant) in done:
                continue
            record = run_one(name, split, args.variant, args.max_rows)
            with args.out.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
            print(f"{name} split {split} {args.variant}: tuned {record['tuned']:.2f}, "
                  f"HGB {record['hgb']:.2f}, {record['wall_s']:.0f} s", file=sys.stderr)


def interval(differences: list[float]) -> tuple[float, float]:
    """Mean and half-width of the 95 % t-interval (nan with fewer than two)."""
    from scipy import stats

    mean = statistics.fmean(differences)
    if len(differences) < 2:
        return mean, math.nan
    sd = statistics.stdev(differences)
    return mean, float(stats.t.ppf(0.975, len(differences) - 1)) * sd / math.sqrt(
        len(differences))


def verdict(mean: float, half: float) -> str:
    if math.isnan(half):
        return "?"
    return "win" if mean - half > 0 else "loss" if mean + half < 0 else "tie"


def paired(rows: list[dict[str, Any]], key: str, other: dict[int, float] | None = None,
           ) -> tuple[str, str]:
    """'+1.23 ± 0.45' for tuned - ``key`` (or tuned - ``other[split]``), and its verdict."""
    diffs = [r["tuned"] - (other[r["split"]] if other is not None else r[key])
             for r in rows if other is None or r["split"] in other]
    if not diffs:
        return "—", ""
    mean, half = interval(diffs)
    return f"{mean:+.2f} ± {half:.2f}", verdict(mean, half)


def table(records: list[dict[str, Any]], variant: str, against: str = "plain") -> str:
    """The markdown table of ``variant``'s records, paired against HGB, the best rule and
    the ``against`` variant's records of the same splits."""
    lines = [f"| dataset | splits | tuned ({variant}) | HGB | best rule | tuned - HGB | "
             f"tuned - rule | tuned - {against} | s per run | trials (pruned) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    counts: dict[str, dict[str, int]] = {"HGB": {}, "rule": {}, against: {}}
    for name in DATASETS:
        rows = sorted((r for r in records if r["dataset"] == name and r["variant"] == variant),
                      key=lambda r: r["split"])
        if not rows:
            continue
        other = {r["split"]: r["tuned"] for r in records
                 if r["dataset"] == name and r["variant"] == against}
        cells = {"HGB": paired(rows, "hgb"), "rule": paired(rows, "rule"),
                 against: paired(rows, "", other) if variant != against else ("—", "")}
        for what, (_, word) in cells.items():
            if word:
                counts[what][word] = counts[what].get(word, 0) + 1
        mean = statistics.fmean
        lines.append(
            f"| {name} | {len(rows)} | {mean(r['tuned'] for r in rows):.2f} | "
            f"{mean(r['hgb'] for r in rows):.2f} | {mean(r['rule'] for r in rows):.2f} | "
            + " | ".join(f"{text} {word}" for text, word in cells.values())
            + f" | {mean(r['wall_s'] for r in rows):.0f} | "
            f"{mean(r['n_complete'] + r['n_pruned'] for r in rows):.0f} "
            f"({mean(r['n_pruned'] for r in rows):.0f}) |")
    summary = "; ".join(f"against {what}: " + ", ".join(f"{n} {word}" for word, n in
                                                         sorted(c.items()))
                        for what, c in counts.items() if c)
    return "\n".join(lines) + f"\n\nWins, ties and losses over the datasets: {summary}.\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_cmd = commands.add_parser("run", help="run the missing (dataset, split) records")
    run_cmd.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    run_cmd.add_argument("--splits", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    run_cmd.add_argument("--variant", choices=VARIANTS, default="default")
    run_cmd.add_argument("--max-rows", type=int, default=10_000)
    table_cmd = commands.add_parser("table", help="the markdown table of the records")
    table_cmd.add_argument("--variant", choices=VARIANTS, default="default")
    table_cmd.add_argument("--against", choices=("plain", "solo"), default="plain")
    table_cmd.add_argument("--before", type=Path,
                           help="records of the same variant from earlier code (another "
                                "file): the last column pairs against them instead")
    for command in (run_cmd, table_cmd):
        command.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.command == "run":
        run(args)
    else:
        records, against = read_records(args.out), args.against
        if args.before:
            against = "before"
            records += [{**r, "variant": against} for r in read_records(args.before)
                        if r["variant"] == args.variant]
        print(table(records, args.variant, against))


if __name__ == "__main__":
    main()
