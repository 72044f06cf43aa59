"""A realistic messy table, as users have them: the fixture of issue 16's tests.

An ID column, an ISO date column, numbers with missing cells, a category with missing
cells and stray spaces, a column that is nearly all empty, and a few rows whose target is
missing. The target depends on the numbers, the category and the date, so a model that
reads them all does better than one that does not.
"""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd


def messy_frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.normal(40, 12, n).round()
    income = rng.lognormal(10.5, 0.4, n)
    city = rng.choice(["Paris", "Lyon ", " Nice", "Lille"], n)
    signup = pd.Timestamp("2022-01-01") + pd.to_timedelta(rng.integers(0, 900, n), unit="D")
    score = (age - 40) / 12 + np.log(income / 36_000) + (city == "Paris") * 1.0 \
        + (signup.month.to_numpy() >= 7) * 0.8 + rng.normal(0, 0.5, n)
    frame = pd.DataFrame({
        "customer_id": np.arange(5_000, 5_000 + n),
        "signup": signup.strftime("%Y-%m-%d"),
        "age": age, "income": income, "city": city,
        "notes": [None] * (n - 3) + ["vip", "call back", None],
        "churned": np.where(score > np.median(score), "yes", "no"),
    })
    frame.loc[rng.choice(n, n // 10, replace=False), "age"] = np.nan
    frame.loc[rng.choice(n, n // 20, replace=False), "income"] = np.nan
    frame.loc[rng.choice(n, n // 20, replace=False), "city"] = None
    frame.loc[rng.choice(n, 4, replace=False), "churned"] = None
    return frame


def rows_with_gaps(frame: pd.DataFrame) -> pd.DataFrame:
    """Feature rows for prediction, with a missing value in every column that can have one."""
    rows = frame.drop(columns="churned").iloc[:12].copy()
    rows.loc[rows.index[0], "age"] = np.nan
    rows.loc[rows.index[1], "income"] = np.nan
    rows.loc[rows.index[2], "city"] = None
    rows.loc[rows.index[3], "signup"] = None
    rows.loc[rows.index[4], ["age", "income", "city", "signup"]] = [np.nan, np.nan, None, None]
    rows.loc[rows.index[5], "city"] = "Marseille"  # a level never seen in training
    return rows


def gzip_bomb(inflated_bytes: int, columns: int = 100) -> bytes:
    """A ``.csv.gz`` of identical gzip members: a few KB per inflated MB of numeric rows."""
    row = ",".join(f"{i % 9}.5" for i in range(columns)) + ",1\n"
    block = (row * ((1 << 20) // len(row))).encode()
    member = gzip.compress(block, compresslevel=9)
    header = gzip.compress((",".join(f"f{i}" for i in range(columns)) + ",y\n").encode())
    return header + member * max(1, inflated_bytes // len(block))
