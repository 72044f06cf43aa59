"""Permutation importance of the delivered model, per column of the user's table.

A column's importance is how much the model's test score (in the run's metric) drops
when that column's values are shuffled across the test rows, breaking its link with the
target while keeping its distribution (Breiman 2001; scikit-learn's
``permutation_importance``). The model sees encoded inputs, so a column is shuffled as
all the inputs it became at once: a number with its "was missing" input, a date as its
parts, a category as its one-hot block. Averaged over a few shuffles, with their spread.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from automl.data import Preprocessor
from automl.data.columns import date_part_names
from automl.metrics import METRICS, PERMUTATION_REPEATS
from workers.data import TensorSplits, metric_score, predict


@dataclass(frozen=True)
class ColumnImportance:
    """One column: the mean drop in the metric when shuffled (positive: it mattered), in
    the metric's own units, and the spread of that drop over the shuffles."""

    column: str
    importance: float
    std: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def column_groups(pre: Preprocessor) -> dict[str, list[int]]:
    """Each input column of the table -> the indices of the encoded inputs it became."""
    numeric = {name: i for i, name in enumerate(pre.numeric_columns)}
    offset = len(pre.numeric_columns)
    indicators = {name: offset + i for i, name in enumerate(pre.missing_indicators)}
    groups: dict[str, list[int]] = {}
    parts = {p for d in pre.date_columns for p in date_part_names(d)}
    for name in (c for c in pre.numeric_columns if c not in parts):
        groups[name] = [numeric[name], *([indicators[name]] if name in indicators else [])]
    for date in pre.date_columns:
        names = date_part_names(date)
        groups[date] = [numeric[p] for p in names] + [indicators[p] for p in names
                                                       if p in indicators]
    start = offset + len(pre.missing_indicators)
    for name, levels in pre.categorical_levels.items():
        groups[name] = list(range(start, start + len(levels)))
        start += len(levels)
    return groups


def permutation_importance(model: torch.nn.Module, data: TensorSplits, pre: Preprocessor,
                           metric: str, *, n_repeats: int = PERMUTATION_REPEATS,
                           seed: int = 0) -> list[ColumnImportance]:
    """Every input column's importance on the test split, most important first."""
    direction = METRICS[metric]
    base = metric_score(metric, data, predict(model, data.x_test), data.y_test)
    generator = torch.Generator().manual_seed(seed)
    found = []
    for column, indices in column_groups(pre).items():
        drops = []
        for _ in range(n_repeats):
            order = torch.randperm(len(data.x_test), generator=generator).to(data.device)
            shuffled = data.x_test.clone()
            shuffled[:, indices] = data.x_test[order][:, indices]
            score = metric_score(metric, data, predict(model, shuffled), data.y_test)
            drops.append(direction.better(base, score))
        found.append(ColumnImportance(column, float(np.mean(drops)), float(np.std(drops))))
    return sorted(found, key=lambda c: -c.importance)
