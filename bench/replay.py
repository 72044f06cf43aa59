"""A run's own trials trained again, alone and as cohorts: the trainer's gain without the
search's path.

    python bench/cohort_speed.py --datasets california --trials 20 --json runs.jsonl
    python bench/replay.py --record runs.jsonl --dataset california [--side cohorts]
                           [--seed 0] [--threads 1] [--json bench/records/replay.jsonl]

``bench/cohort_speed.py`` compares two searches, and two searches draw different trials:
on California one went to piecewise-linear embeddings and ran half the trials a minute of
the other (BENCHMARKS.md, "The six other datasets"). This takes the trials of one side of
one recorded run (each trial's configuration and the epochs it trained) and trains every
one of them for exactly those epochs, twice, in this process with ``--threads`` torch
threads (a worker's Ray task has one):

* **alone**: one after another, :func:`workers.evaluate.fit` (the ordinary loop);
* **cohorts**: trials of one cohort key (:func:`workers.cohort.cohort_key`) whose
  multiply-adds stay within the CPU's width spread (:func:`workers.cohort_size.widths_pay`)
  train as stacked cohorts, at most :func:`workers.cohort_size.cohort_capacity` at once,
  each member that stops replaced by the next (:func:`workers.cohort.train_in_turn`);
  the others alone. This is nearer the trainer's best case on the run's mix than a
  worker's claims: every trial of a key is at hand, where a worker stacks only the
  trials it claimed together.

The data is prepared as ``tune`` prepares it (``automl.run.submit.validate_submission``
with the record's split seed). Reported: seconds each way, their ratio, and the trials in
cohorts; a slower cohort side means the cost model lets stacking in where it does not pay.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from compare_quality import DATASETS, cap_rows, read_frame  # bench/ is on sys.path

from automl.configs import TrialConfig
from automl.options import TuneOptions
from automl.run.submit import validate_submission
from workers.cohort import Member, cohort_key, train_in_turn
from workers.cohort_size import cohort_capacity, multiply_adds, widths_pay
from workers.data import TensorSplits, to_tensors
from workers.evaluate import fit


def recorded_trials(record: Path, dataset: str, side: str, seed: int) -> list[TrialConfig]:
    """The last recorded run's trials of ``side``, each set to train exactly the epochs it
    trained then (no early stop, no pruning)."""
    runs = [r for r in map(json.loads, record.read_text().splitlines())
            if r.get("dataset") == dataset and r.get("side") == side
            and r.get("seed", 0) == seed and r.get("trials_detail")]
    if not runs:
        raise SystemExit(f"no run of {dataset} ({side}, seed {seed}) with trial configurations "
                         f"in {record}: run bench/cohort_speed.py first")
    configs = []
    for trial in runs[-1]["trials_detail"]:
        if trial.get("config") and trial["epochs"] > 0:
            config = TrialConfig.from_dict(trial["config"])
            epochs = int(trial["epochs"])
            configs.append(replace(config, train=replace(config.train, max_epochs=epochs,
                                                         patience=epochs)))
    return configs


def groups(configs: list[TrialConfig], data: TensorSplits) -> list[tuple[list[TrialConfig], int]]:
    """The cohorts (configurations, capacity) the worker's rules allow, in record order: one
    key, widths within the spread, as many at once as the widest member's capacity."""
    open_groups: dict[Any, list[TrialConfig]] = {}
    closed: list[list[TrialConfig]] = []
    for config in configs:
        key = cohort_key(config)
        group = open_groups.get(key) if key is not None else None
        if group is not None and widths_pay([macs(c, data) for c in [*group, config]],
                                            data.device):
            group.append(config)
            continue
        if group is not None:
            closed.append(group)
        if key is None:
            closed.append([config])
        else:
            open_groups[key] = [config]
    closed += open_groups.values()
    return [(group, capacity(group, data)) for group in closed]


def macs(config: TrialConfig, data: TensorSplits) -> int:
    return multiply_adds(config.model, data.n_inputs, data.n_outputs, data.n_numeric)


def capacity(group: list[TrialConfig], data: TensorSplits) -> int:
    if len(group) < 2:
        return 1
    widest = max(group, key=lambda c: len(c.model.hidden_units)).model
    units = tuple(max(c.model.hidden_units[i] for c in group)
                  for i in range(len(widest.hidden_units)))
    return cohort_capacity(replace(widest, hidden_units=units), data.n_inputs,
                           data.n_outputs, group[0].train.batch_size, data.device,
                           data.n_numeric)


def train_alone(configs: list[TrialConfig], data: TensorSplits) -> None:
    for config in configs:
        fit(config, data)


def train_grouped(configs: list[TrialConfig], data: TensorSplits) -> None:
    for group, size in groups(configs, data):
        if size < 2:
            train_alone(group, data)
        else:
            members = [Member(i, config) for i, config in enumerate(group)]
            train_in_turn(members, data, lambda *_: None, min(size, len(group)))


def timed(work: Callable[[], None]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", type=Path, required=True)
    parser.add_argument("--dataset", required=True, choices=DATASETS)
    parser.add_argument("--side", default="cohorts", choices=["cohorts", "solo"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-rows", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="append the record as one JSON line")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    configs = recorded_trials(args.record, args.dataset, args.side, args.seed)
    spec = DATASETS[args.dataset]
    frame = cap_rows(read_frame(spec), spec, args.max_rows, 0)
    submission = validate_submission(frame, spec.target, None,
                                     TuneOptions(task=spec.task, seed=args.seed))
    data = to_tensors(submission.prepared)
    plan = groups(configs, data)
    stacked = sum(len(group) for group, size in plan if size > 1)
    warm_up = [replace(c, train=replace(c.train, max_epochs=1)) for c in configs[:2]]
    train_alone(warm_up, data)  # a kernel's first call pays for its set-up: untimed
    train_grouped(warm_up, data)
    alone_s = timed(lambda: train_alone(configs, data))
    cohorts_s = timed(lambda: train_grouped(configs, data))
    row = {"dataset": args.dataset, "side": args.side, "seed": args.seed,
           "trials": len(configs), "epochs": sum(c.train.max_epochs for c in configs),
           "in_cohorts": stacked, "cohorts": sum(size > 1 for _, size in plan),
           "alone_s": round(alone_s, 1), "cohorts_s": round(cohorts_s, 1),
           "speedup": round(alone_s / cohorts_s, 2), "threads": args.threads,
           "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "machine": f"{os.cpu_count()} cores, {platform.processor() or '?'}"}
    print(json.dumps(row))
    if args.json:
        with args.json.open("a") as handle:
            handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
