"""How far the test rows of issue 19's splits reach beyond the training split's range.

    python bench/unseen_range.py [--datasets ...] [--splits 0 1 2 3 4] [--max-rows 10000]
                                 [--out bench/records/unseen_range.jsonl]

Since f76a299 the preprocessor clips validation, test and prediction rows, column by
column, to the training split's range (``automl.data.preprocess``). On diamonds that one
change moved two splits by 3.7 and 25.8 points of R² (one width of 31.8 mm, 23.5 standard
deviations out). This shows, without training anything, which of the nine datasets have
test values outside the training range at all, and how far: where none reach far, the
protocol's earlier records stand as they are; where some do, those splits need a rerun.

For each dataset and split seed (the rows ``bench/protocol.py`` uses: datasets above
``--max-rows`` sampled once, seeded 0), the split ``tune`` makes from that seed, the
preprocessor fitted on its training rows, and the test rows' numeric cells (missing
ones imputed, as the model sees them): the share of cells outside the training range,
and the largest distance beyond the range, in the training column's standard deviations,
with its column.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from compare_quality import DATASETS, cap_rows, read_frame  # bench/ is on sys.path

from automl.data import DataLimits
from automl.data.checks import check_dataset
from automl.data.preprocess import Preprocessor, split_rows
from automl.data.sources import read_dataset

OUT = Path(__file__).resolve().parent / "records" / "unseen_range.jsonl"


def reach(name: str, split: int, max_rows: int) -> dict[str, Any]:
    """How far one split's test cells fall outside its training range."""
    spec = DATASETS[name]
    frame = cap_rows(read_frame(spec), spec, max_rows, seed=0)
    limits = DataLimits()
    checked = check_dataset(read_dataset(frame, spec.target, limits), spec.task, limits)
    train, _, test = split_rows(checked, split)
    pre = Preprocessor.fit(checked, train)
    cells = pre.raw_numeric(checked.features.iloc[test])
    cells = np.where(np.isnan(cells), np.asarray(pre.medians)[None, :], cells)
    lows, highs, stds = (np.asarray(v)[None, :] for v in (pre.lows, pre.highs, pre.stds))
    beyond = np.maximum(lows - cells, cells - highs).clip(min=0) / stds
    outside = beyond > 0
    worst = np.unravel_index(int(beyond.argmax()), beyond.shape) if beyond.size else (0, 0)
    return {"dataset": name, "split": split, "test_rows": len(test),
            "numeric_columns": len(pre.numeric_columns),
            "share_outside": float(outside.mean()) if beyond.size else 0.0,
            "rows_outside": int(outside.any(axis=1).sum()),
            "max_sd_beyond": float(beyond.max()) if beyond.size else 0.0,
            "column": pre.numeric_columns[worst[1]] if beyond.size else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--splits", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--max-rows", type=int, default=10_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    print("| dataset | split | test rows | rows with a cell outside | share of cells outside "
          "| farthest beyond the range (SD) | column |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for name in args.datasets:
        for split in args.splits:
            row = reach(name, split, args.max_rows)
            print(f"| {name} | {split} | {row['test_rows']:,} | {row['rows_outside']} | "
                  f"{100 * row['share_outside']:.3f} % | {row['max_sd_beyond']:.2f} | "
                  f"{row['column']} |", flush=True)
            if args.out:
                with args.out.open("a") as out:
                    out.write(json.dumps(row) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
