"""The time between trials of a local ``tune`` run, with the training itself held fixed.

    python bench/trial_gap.py --trials 24 [--reps 2]

``automl.tune`` on digits with every parameter of the space fixed (one hidden layer of 64,
Adam at 0.003, batch 32, 20 epochs), no pruning, no warm start and no head start, so every
trial trains the same model and what differs between two versions of ``automl`` (put one
first on ``PYTHONPATH``) is the machinery around the trials. Reported per run: when the
first trial started (seconds from the call), the span from the first trial's start to the
last one's end, the summed training time (``seconds`` of each trial), and the gap per trial,
(workers x span - summed training) / trials, with the 2 workers of a 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import optuna
from sklearn.datasets import load_digits

import automl

SPACE = {"n_layers": 1, "units": 64, "max_epochs": 20, "patience": 20, "batch_size": 32,
         "lr": 0.003, "activation": "relu", "optimizer": "adam", "dropout": 0.0,
         "weight_decay": 0.0, "batch_norm": False, "lr_schedule": "constant",
         "grad_clip_norm": 0.0}


def one_run(n_trials: int) -> str:
    frame = load_digits(as_frame=True).frame
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'gap.db'}"
        t0 = time.time()
        result = automl.tune(frame, "target", space=SPACE, n_trials=n_trials, n_seeds=1,
                             storage=url, progress=False, pruner="none", warm_start=False,
                             head_start=False)
        total = time.time() - t0
        trials = optuna.load_study(study_name=result.study_name, storage=url).trials
    starts = [t.datetime_start.timestamp() - t0 for t in trials if t.datetime_start]
    ends = [t.datetime_complete.timestamp() - t0 for t in trials if t.datetime_complete]
    training = sum(float(t.user_attrs["seconds"]) for t in trials)
    span = max(ends) - min(starts)
    workers = os.cpu_count() or 1
    return (f"| {len(trials)} | {min(starts):.2f} | {span:.2f} | {training:.2f} | "
            f"{(workers * span - training) / len(trials) * 1000:.0f} | {total:.1f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--reps", type=int, default=1)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print("| trials | first trial starts s | trial span s | training s | gap ms/trial | "
          "tune s |\n| ---: | ---: | ---: | ---: | ---: | ---: |")
    for _ in range(args.reps):
        print(one_run(args.trials), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
