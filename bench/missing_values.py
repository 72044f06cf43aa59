"""Missing values: the tuned MLP against default HistGradientBoosting on blanked data.

    python bench/missing_values.py --splits 0 1 2 3 4 --trials 20 --n-seeds 2 \
        --max-rows 10000 --blank 0.1 --json /tmp/mv.json

adult (PMLB) is sampled to ``--max-rows`` rows (stratified, seed 0), then ``--blank`` of
the cells of its six continuous columns (age, fnlwgt, education-num, capital-gain,
capital-loss, hours-per-week) are blanked at random (seeded, the same cells for every
split). For each split seed:

* **tuned MLP**: ``automl.tune`` on the blanked table as a user would give it (missing
  numbers imputed with the training median plus a "was missing" input), ``--trials``
  trials, ``--n-seeds`` seeds averaged, scored on the test split;
* **HGB**: scikit-learn's ``HistGradientBoostingClassifier`` with default settings
  (``random_state`` = the split seed), fitted on the training split's raw blanked
  columns (it handles NaN natively) and scored on the same test rows: the rows come from
  ``automl.data.preprocess.split_rows``, the split every model of automl uses.

Prints the paired differences (MLP - HGB, accuracy points) with their mean and 95 %
t-interval over the splits, and each run's wall time.
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

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_quality import DATASETS, cap_rows, read_frame

CONTINUOUS = ["age", "fnlwgt", "education-num", "capital-gain", "capital-loss",
              "hours-per-week"]


def blanked_adult(max_rows: int, share: float) -> pd.DataFrame:
    spec = DATASETS["adult"]
    frame = cap_rows(read_frame(spec), spec, max_rows, seed=0).copy()
    rng = np.random.default_rng(1234)
    for column in CONTINUOUS:
        frame[column] = frame[column].astype(np.float64)
        frame.loc[rng.random(len(frame)) < share, column] = np.nan
    return frame


def hgb_score(frame: pd.DataFrame, split_seed: int) -> tuple[float, float]:
    from sklearn.ensemble import HistGradientBoostingClassifier

    from automl.data import DataLimits
    from automl.data.checks import check_dataset
    from automl.data.preprocess import split_rows
    from automl.data.sources import read_dataset

    checked = check_dataset(read_dataset(frame, "target", DataLimits()), "binary", DataLimits())
    train, _, test = split_rows(checked, split_seed)
    x, y = checked.features.to_numpy(dtype=np.float64), checked.target.to_numpy()
    started = time.perf_counter()
    model = HistGradientBoostingClassifier(random_state=split_seed).fit(x[train], y[train])
    return 100 * float(model.score(x[test], y[test])), time.perf_counter() - started


def tuned_score(frame: pd.DataFrame, split_seed: int, args: argparse.Namespace
                ) -> dict[str, Any]:
    import automl

    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        result = automl.tune(frame.copy(), "target", task="binary", n_trials=args.trials,
                             seed=split_seed, n_seeds=args.n_seeds, progress=False,
                             storage=f"sqlite:///{folder}/mv.db")
        wall = time.perf_counter() - started
    return {"score": 100 * result.best.final_score, "wall_s": wall,
            "notes": result.warnings, "n_pruned": result.n_pruned}


def t_interval(values: list[float]) -> tuple[float, float]:
    from scipy import stats

    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, float("nan")
    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5
    return mean, float(half)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--n-seeds", type=int, default=2)
    parser.add_argument("--max-rows", type=int, default=10_000)
    parser.add_argument("--blank", type=float, default=0.1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    frame = blanked_adult(args.max_rows, args.blank)
    rows = []
    for split in args.splits:
        hgb, hgb_s = hgb_score(frame, split)
        tuned = tuned_score(frame, split, args)
        rows.append({"split": split, "hgb": hgb, "hgb_fit_s": hgb_s, **tuned})
        print(f"split {split}: tuned MLP {tuned['score']:.2f} ({tuned['wall_s']:.0f} s), "
              f"HGB {hgb:.2f} ({hgb_s:.1f} s), difference {tuned['score'] - hgb:+.2f}",
              flush=True)
    mean, half = t_interval([r["score"] - r["hgb"] for r in rows])
    print(f"mean difference (MLP - HGB) over {len(rows)} splits: {mean:+.2f} ± {half:.2f} "
          "accuracy points (95 % t-interval)")
    print("notes of the last run:\n" + "\n".join(rows[-1]["notes"]))
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)},
                                         "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
