"""Orchestration overhead per trial: plain Optuna against our service worker.

Both sides run N trials of 10 reports each on the same throwaway PostgreSQL 15 server
(``tests/pgserver.py``), each in a fresh database, one after the other, each in a fresh
``spawn`` child process so that its peak memory is its own. Only the timed phase is timed;
process start-up, imports and schema creation are not.

* **plain Optuna**: ``optuna.create_study(storage=RDBStorage(url), sampler=TPESampler(seed=0),
  pruner=MedianPruner(n_startup_trials=10, n_warmup_steps=W))`` (W = ``--warmup``, 10 by
  default like ours; our side gets the same warm-up) then
  ``study.optimize(objective, n_trials=N)``. The objective suggests ``lr`` and
  ``weight_decay`` (log floats, the ranges our side samples), then per epoch runs
  :func:`train_step` (three small matrix multiplies on a 256x8 tensor, timed with
  ``perf_counter``), ``trial.report`` and ``trial.should_prune``, and returns a value.
  Timed: ``create_study`` + ``optimize``. Overhead = wall - summed ``train_step`` time.
* **ours**: ``automl.client.Client(url).submit(...)`` of a 256x8 synthetic frame with every
  parameter fixed to the smallest model except ``lr`` and ``weight_decay`` (so both sides
  sample the same two parameters; ``--ours-space`` overrides), ``n_trials=N``,
  ``n_seeds=1``; then one in-process ``workers.service_worker.ServiceWorker(url)`` runs
  ``serve(max_tickets=N)``. Tickets are claimed in id order and the N trial tickets come
  first, so exactly the trial phase runs (checked afterwards: baseline and best tickets
  stay queued and are not measured). Timed: ``serve()``, i.e. for every ticket the sweep,
  claim, run start, study create-or-load and load, heartbeat thread, ``set_trial_number``,
  Optuna's ask (new trial + TPE), the suggestions, six ``set_user_attr``, model build,
  training, report/should_prune, validation scoring, tell, release and the finished-runs
  check; plus, once, loading the run's data (Parquet -> tensors).
  Training = summed trial user attribute ``seconds`` (time inside
  ``workers.train.train_model``) **minus** the time spent in ``trial.report`` and
  ``trial.should_prune``, which are called from inside that loop (measured by wrapping the
  two methods in this process). Overhead = wall - training. The table also shows the
  uncorrected ``wall - sum(seconds)``, and the trial span from ticket timestamps (first
  claim to last release, database clock) as a cross-check of the wall time.

Both sides also count SQL statements and the time spent executing them (a SQLAlchemy
``before/after_cursor_execute`` listener on every engine), per trial.

    python bench/overhead.py [--trials N] [--reports R] [--warmup W] [--json OUT] [--profile DIR]
                             [--ours-space JSON] [--timeout SECONDS] [--settle SECONDS]

``--profile DIR`` runs each side's timed phase under cProfile, writes ``DIR/plain.prof`` and
``DIR/ours.prof`` and prints where the time goes (cumulative ms per trial of the main
calls); profiled wall times are inflated, so use a separate run for the table.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import queue
import resource
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

SEED = 0
ROWS, COLS = 256, 8
# Smallest model; only lr and weight_decay are left to TPE (the plain side samples the same).
OURS_SPACE: dict[str, Any] = {
    "n_layers": 1, "units": 4, "activation": "relu", "batch_norm": False, "dropout": 0.0,
    "optimizer": "adam", "lr_schedule": "constant", "batch_size": 128,
    "lr": {"type": "float", "low": 3e-4, "high": 1e-2, "log": True},
    "weight_decay": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True},
}

# Cumulative time (cProfile) of these calls, per trial: (label, file suffix, function).
OURS_CALLS = [
    ("ServiceWorker.step (whole ticket)", "workers/service_worker.py", "step"),
    ("  sweep: expire_leases + skip_overdue + finished runs", "workers/service_worker.py",
     "sweep"),
    ("  claim_ticket", "automl/queue/leases.py", "claim_ticket"),
    ("  start_run", "automl/queue/queries.py", "start_run"),
    ("  TicketRunner.context (data, once per run)", "workers/tickets.py", "context"),
    ("  TicketRunner.study (per ticket)", "workers/tickets.py", "study"),
    ("  TicketRunner.study: create_study(load_if_exists)", "automl/study/studies.py",
     "create_study"),
    ("  TicketRunner.study: make_sampler", "automl/study/studies.py", "make_sampler"),
    ("  TicketRunner.study: load_study", "automl/study/studies.py", "load_study"),
    ("  Heartbeat thread start + stop", "workers/service_worker.py", "__exit__"),
    ("  set_trial_number", "automl/queue/leases.py", "set_trial_number"),
    ("  Study.optimize (one trial)", "optuna/study/study.py", "optimize"),
    ("    Study.ask (new trial, relative sampling)", "optuna/study/study.py", "ask"),
    ("    TPE sample_relative", "optuna/samplers/_tpe/sampler.py", "sample_relative"),
    ("    TPE sample_independent", "optuna/samplers/_tpe/sampler.py", "sample_independent"),
    ("    Trial.set_user_attr", "optuna/trial/_trial.py", "set_user_attr"),
    ("    Trial.report", "optuna/trial/_trial.py", "report"),
    ("    Trial.should_prune", "optuna/trial/_trial.py", "should_prune"),
    ("    train_model (incl. report/should_prune)", "workers/train.py", "train_model"),
    ("    tell", "optuna/study/_tell.py", "_tell_with_warning"),
    ("  release_ticket", "automl/queue/leases.py", "release_ticket"),
    ("  finish_ready_runs (sweep + release)", "workers/service_worker.py",
     "finish_ready_runs"),
    ("_CachedStorage.get_all_trials (all callers)", "optuna/storages/_cached_storage.py",
     "get_all_trials"),
    ("RDBStorage.get_all_trials (all callers)", "optuna/storages/_rdb/storage.py",
     "get_all_trials"),
    ("RDBStorage._get_trials (trials read from the DB)", "optuna/storages/_rdb/storage.py",
     "_get_trials"),
    ("RDBStorage.get_trial (all callers)", "optuna/storages/_rdb/storage.py", "get_trial"),
    ("psycopg2 cursor.execute (all SQL)", "sqlalchemy/engine/default.py", "do_execute"),
    ("connection commit (all)", "sqlalchemy/engine/default.py", "do_commit"),
]
PLAIN_CALLS = [
    ("Study.optimize (all trials)", "optuna/study/study.py", "optimize"),
    ("  Study.ask (new trial, relative sampling)", "optuna/study/study.py", "ask"),
    ("  TPE sample_independent", "optuna/samplers/_tpe/sampler.py", "sample_independent"),
    ("  Trial.report", "optuna/trial/_trial.py", "report"),
    ("  Trial.should_prune", "optuna/trial/_trial.py", "should_prune"),
    ("  tell", "optuna/study/_tell.py", "_tell_with_warning"),
    ("_CachedStorage.get_all_trials (all callers)", "optuna/storages/_cached_storage.py",
     "get_all_trials"),
    ("RDBStorage.get_all_trials (all callers)", "optuna/storages/_rdb/storage.py",
     "get_all_trials"),
    ("RDBStorage._get_trials (trials read from the DB)", "optuna/storages/_rdb/storage.py",
     "_get_trials"),
    ("RDBStorage.get_trial (all callers)", "optuna/storages/_rdb/storage.py", "get_trial"),
    ("psycopg2 cursor.execute (all SQL)", "sqlalchemy/engine/default.py", "do_execute"),
    ("connection commit (all)", "sqlalchemy/engine/default.py", "do_commit"),
]


# ---- measurement helpers (used in the children) -------------------------------------------
def peak_rss_mib() -> tuple[float, str]:
    """Peak resident set size of this process (VmHWM; ru_maxrss as a fallback)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024, "VmHWM"
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "ru_maxrss"


def current_rss_mib() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


class SqlStats:
    """Counts statements and the time spent in cursor.execute, on every engine."""

    def __init__(self) -> None:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        self.count, self.seconds = 0, 0.0
        self.by_statement: dict[str, list[float]] = {}
        self.enabled = False
        event.listen(Engine, "before_cursor_execute", self._before)
        event.listen(Engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, cursor: Any, statement: str, params: Any, context: Any,
                executemany: bool) -> None:
        conn.info["bench_t0"] = time.perf_counter()

    def _after(self, conn: Any, cursor: Any, statement: str, params: Any, context: Any,
               executemany: bool) -> None:
        started = conn.info.pop("bench_t0", None)
        if not self.enabled or started is None:
            return
        elapsed = time.perf_counter() - started
        self.count += 1
        self.seconds += elapsed
        entry = self.by_statement.setdefault(statement, [0, 0.0])
        entry[0] += 1
        entry[1] += elapsed

    def summary(self, n_trials: int, top: int = 8) -> dict[str, Any]:
        rows = sorted(self.by_statement.items(), key=lambda kv: -kv[1][1])[:top]
        return {
            "statements_per_trial": self.count / n_trials,
            "sql_ms_per_trial": 1000 * self.seconds / n_trials,
            "top_statements": [{"statement": " ".join(s.split())[:160],
                                "per_trial": c / n_trials, "ms_per_trial": 1000 * t / n_trials}
                               for s, (c, t) in rows],
        }


class CallTimer:
    """Wraps Trial.report and Trial.should_prune to sum the time spent in them."""

    def __init__(self) -> None:
        import optuna

        self.seconds = {"report": 0.0, "should_prune": 0.0}
        trial_cls = optuna.trial.Trial
        for name in self.seconds:
            setattr(trial_cls, name, self._wrap(name, getattr(trial_cls, name)))

    def _wrap(self, name: str, method: Any) -> Any:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - started

        wrapped.__name__ = method.__name__
        return wrapped


def profile_breakdown(profiler: Any, calls: list[tuple[str, str, str]],
                      n_trials: int) -> list[dict[str, Any]]:
    import pstats

    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    rows = []
    for label, suffix, function in calls:
        ncalls, cumulative = 0, 0.0
        for (filename, _line, name), (_cc, nc, _tt, ct, _callers) in stats.items():
            if name == function and filename.replace(os.sep, "/").endswith(suffix):
                ncalls += nc
                cumulative += ct
        rows.append({"call": label, "calls_per_trial": ncalls / n_trials,
                     "ms_per_trial": 1000 * cumulative / n_trials})
    return rows


def train_step(x: Any, w1: Any, w2: Any, lr: float, weight_decay: float) -> float:
    """The fixed "training" of the plain side: three matrix multiplies on a 256x8 tensor."""
    import torch

    hidden = torch.tanh(x @ w1)
    out = hidden @ w2
    loss = float(((out - x) ** 2).mean() + (hidden.T @ hidden).abs().mean() * 1e-3)
    # Give TPE something to model: a bowl in log-space around lr=3e-3, wd=1e-4.
    return loss + (math.log10(lr) + 2.5) ** 2 + 0.1 * (math.log10(weight_decay) + 4) ** 2


# ---- the two sides (each runs in its own spawn child) -------------------------------------
def plain_side(url: str, n_trials: int, reports: int, profile_dir: str | None,
               warmup: int) -> dict:
    import optuna
    import torch
    from optuna.pruners import MedianPruner
    from optuna.samplers import TPESampler
    from optuna.storages import RDBStorage

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = RDBStorage(url)  # creates Optuna's tables: not timed
    generator = torch.Generator().manual_seed(SEED)
    x = torch.randn(ROWS, COLS, generator=generator)
    w1 = torch.randn(COLS, 32, generator=generator)
    w2 = torch.randn(32, COLS, generator=generator)
    train_s = [0.0]

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 3e-4, 1e-2, log=True)
        weight_decay = trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True)
        value = math.inf
        for epoch in range(reports):
            started = time.perf_counter()
            value = train_step(x, w1, w2, lr, weight_decay)
            train_s[0] += time.perf_counter() - started
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value

    train_step(x, w1, w2, 1e-3, 1e-4)  # warm torch up outside the timed phase
    timer, sql = CallTimer(), SqlStats()
    ready_rss = current_rss_mib()
    profiler = _profiler(profile_dir)
    sql.enabled = True
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    study = optuna.create_study(storage=storage, sampler=TPESampler(seed=SEED),
                                pruner=MedianPruner(n_startup_trials=10,
                                                    n_warmup_steps=warmup))
    study.optimize(objective, n_trials=n_trials)
    if profiler is not None:
        profiler.disable()
    wall = time.perf_counter() - started
    sql.enabled = False
    peak, source = peak_rss_mib()
    trials = study.get_trials(deepcopy=False)
    result = {
        "side": "plain", "n_trials": len(trials), "params_sampled": 2,
        "states": _count(t.state.name for t in trials),
        "wall_s": wall, "train_s": train_s[0],
        "overhead_ms_per_trial": 1000 * (wall - train_s[0]) / n_trials,
        "report_ms_per_trial": 1000 * timer.seconds["report"] / n_trials,
        "should_prune_ms_per_trial": 1000 * timer.seconds["should_prune"] / n_trials,
        "ready_rss_mib": ready_rss, "peak_rss_mib": peak, "peak_rss_source": source,
        **sql.summary(n_trials),
    }
    if profiler is not None:
        result["profile"] = _dump(profiler, profile_dir, "plain", PLAIN_CALLS, n_trials)
    return result


def ours_side(url: str, n_trials: int, reports: int, profile_dir: str | None,
              warmup: int, space: dict[str, Any]) -> dict:
    import numpy as np
    import optuna
    import pandas as pd
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from automl.client import Client
    from automl.queue.models import Ticket
    from automl.queue.schema import upgrade
    from workers.service_worker import ServiceWorker

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    upgrade(url)  # our tables and Optuna's: not timed
    rng = np.random.default_rng(SEED)
    x = rng.normal(size=(ROWS, COLS))
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(COLS)])
    frame["y"] = (x @ rng.normal(size=COLS) > 0).astype(int)
    space = {**space, "max_epochs": reports, "patience": reports}
    client = Client(url)
    run = client.submit(frame, target="y", space=space, n_trials=n_trials, n_seeds=1,
                        seed=SEED, pruner_warmup_epochs=warmup)  # submission: not timed
    worker = ServiceWorker(url)  # engine, storage, schema check, torch threads: not timed
    timer, sql = CallTimer(), SqlStats()
    ready_rss = current_rss_mib()
    profiler = _profiler(profile_dir)
    sql.enabled = True
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    done = worker.serve(max_tickets=n_trials, idle_exit=30)
    if profiler is not None:
        profiler.disable()
    wall = time.perf_counter() - started
    sql.enabled = False
    peak, source = peak_rss_mib()

    with Session(client.engine) as session:
        tickets = session.execute(select(Ticket.kind, Ticket.status, Ticket.heartbeat_at,
                                         Ticket.updated_at)
                                  .where(Ticket.run_id == run.id)).all()
    trial_tickets = [t for t in tickets if t.kind == "trial"]
    touched = [t for t in tickets if t.kind != "trial" and t.status != "queued"]
    if done != n_trials or any(t.status != "done" for t in trial_tickets) or touched:
        raise RuntimeError(f"expected exactly the {n_trials} trial tickets to run: served "
                           f"{done}, trial statuses "
                           f"{_count(t.status for t in trial_tickets)}, other tickets run "
                           f"{len(touched)}")
    span = (max(t.updated_at for t in trial_tickets)
            - min(t.heartbeat_at for t in trial_tickets)).total_seconds()
    study = optuna.load_study(study_name=f"automl-{run.id}", storage=url)
    trials = study.get_trials(deepcopy=False)
    seconds = sum(float(t.user_attrs.get("seconds", 0.0)) for t in trials)
    in_loop = timer.seconds["report"] + timer.seconds["should_prune"]
    train = seconds - in_loop
    result = {
        "side": "ours", "n_trials": len(trials), "params_sampled": len(trials[0].params),
        "states": _count(t.state.name for t in trials),
        "wall_s": wall, "ticket_span_s": span, "seconds_attr_s": seconds, "train_s": train,
        "overhead_ms_per_trial": 1000 * (wall - train) / n_trials,
        "overhead_uncorrected_ms_per_trial": 1000 * (wall - seconds) / n_trials,
        "overhead_from_ticket_span_ms_per_trial": 1000 * (span - train) / n_trials,
        "report_ms_per_trial": 1000 * timer.seconds["report"] / n_trials,
        "should_prune_ms_per_trial": 1000 * timer.seconds["should_prune"] / n_trials,
        "ready_rss_mib": ready_rss, "peak_rss_mib": peak, "peak_rss_source": source,
        "space": space,
        **sql.summary(n_trials),
    }
    if profiler is not None:
        result["profile"] = _dump(profiler, profile_dir, "ours", OURS_CALLS, n_trials)
    client.close()
    return result


def _profiler(profile_dir: str | None) -> Any:
    if profile_dir is None:
        return None
    import cProfile

    return cProfile.Profile()


def _dump(profiler: Any, profile_dir: str | None, side: str,
          calls: list[tuple[str, str, str]], n_trials: int) -> list[dict[str, Any]]:
    assert profile_dir is not None
    profiler.dump_stats(os.path.join(profile_dir, f"{side}.prof"))
    return profile_breakdown(profiler, calls, n_trials)


PRODUCT_FILES = ("automl/study/studies.py", "automl/study/settings.py",
                 "automl/study/storage/retry.py", "automl/space/suggest.py",
                 "automl/queue/engine.py", "automl/queue/queries.py", "automl/queue/leases.py",
                 "automl/study/storage/write_behind.py", "automl/study/storage/rows.py",
                 "workers/service_worker.py", "workers/tickets.py", "workers/objective.py",
                 "workers/callbacks.py", "workers/train.py")


def product_fingerprint() -> dict[str, str]:
    """sha256 (first 12 hex digits) of the product files measured, to tell versions apart."""
    import hashlib

    return {name: hashlib.sha256((ROOT / name).read_bytes()).hexdigest()[:12]
            for name in PRODUCT_FILES if (ROOT / name).exists()}


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def _child(side: str, args: tuple, results: Any) -> None:
    try:
        function = plain_side if side == "plain" else ours_side
        results.put(("ok", function(*args)))
    except BaseException as exc:
        import traceback

        results.put(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))


def run_side(side: str, args: tuple, timeout: float) -> dict[str, Any]:
    """Run one side in a fresh spawn child; kill it if it runs past ``timeout``."""
    context = mp.get_context("spawn")
    results = context.Queue()
    child = context.Process(target=_child, args=(side, args, results), daemon=True)
    child.start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                status, payload = results.get(timeout=5)
                break
            except queue.Empty:
                if not child.is_alive():
                    raise RuntimeError(f"{side} side died (exit code {child.exitcode}) "
                                       "without a result") from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{side} side did not finish within {timeout:.0f} s"
                                       ) from None
    finally:
        child.join(timeout=30)
        if child.is_alive():
            child.kill()
            child.join(timeout=10)
    if status != "ok":
        raise RuntimeError(f"{side} side failed: {payload}")
    return payload


def settle(limit_s: float) -> float:
    """Wait (at most ``limit_s``) for the 1-minute load average to fall below 1, so that
    the previous side's work is not still counted; return the load."""
    deadline = time.monotonic() + limit_s
    while os.getloadavg()[0] >= 1.0 and time.monotonic() < deadline:
        time.sleep(5)
    return os.getloadavg()[0]


def trials_done(server: Any, database: str, side: str) -> int:
    """How far a side that ran out of time got (read from its database)."""
    sql = ("SELECT count(*) FROM automl_tickets WHERE kind = 'trial' AND status = 'done'"
           if side == "ours" else
           "SELECT count(*) FROM trials WHERE state IN ('COMPLETE', 'PRUNED', 'FAIL')")
    try:
        rows = server.psql(sql, dbname=database)
    except Exception:  # e.g. the tables were never created
        return 0
    return int(rows[0][0]) if rows else 0


# ---- report --------------------------------------------------------------------------------
def markdown_table(plain: dict[str, Any], ours: dict[str, Any], n_trials: int,
                   reports: int) -> str:
    def cell(side: dict[str, Any], key: str, digits: int) -> str:
        if side.get("timed_out"):
            return (f"did not finish: {side['trials_done']}/{n_trials} trials in "
                    f"{side['timeout_s']:.0f} s")
        return f"{side[key]:.{digits}f}"

    def rss(side: dict[str, Any]) -> str:
        return "n/a" if side.get("timed_out") else f"{side['peak_rss_mib']:.0f}"

    if plain.get("timed_out") or ours.get("timed_out"):
        ratio = "n/a"
    else:
        ratio = f"{ours['overhead_ms_per_trial'] / plain['overhead_ms_per_trial']:.2f}"
    lines = [
        "| trials | reports/trial | plain Optuna overhead ms/trial | ours ms/trial | "
        "ours/plain | plain peak RSS MiB | ours peak RSS MiB |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {n_trials} | {reports} | {cell(plain, 'overhead_ms_per_trial', 1)} | "
        f"{cell(ours, 'overhead_ms_per_trial', 1)} | {ratio} | "
        f"{rss(plain)} | {rss(ours)} |",
    ]
    return "\n".join(lines)


def details(plain: dict[str, Any], ours: dict[str, Any]) -> str:
    def value(side: dict[str, Any], key: str, fmt: str = "") -> str:
        if side.get("timed_out") or key not in side:
            return "n/a"
        return format(side[key], fmt)

    rows = [
        ("timed wall s", "wall_s", ".1f"),
        ("training s (subtracted)", "train_s", ".2f"),
        ("ours uncorrected: wall - sum(seconds), ms/trial",
         "overhead_uncorrected_ms_per_trial", ".1f"),
        ("ours from ticket span (first claim to last release), ms/trial",
         "overhead_from_ticket_span_ms_per_trial", ".1f"),
        ("trial.report ms/trial", "report_ms_per_trial", ".1f"),
        ("trial.should_prune ms/trial", "should_prune_ms_per_trial", ".1f"),
        ("SQL statements/trial", "statements_per_trial", ".0f"),
        ("SQL execute ms/trial", "sql_ms_per_trial", ".1f"),
        ("params sampled by TPE", "params_sampled", ""),
        ("trial states", "states", ""),
        ("RSS before the timed phase MiB", "ready_rss_mib", ".0f"),
    ]
    lines = ["", "| | plain Optuna | ours |", "| --- | ---: | ---: |"]
    lines += [f"| {label} | {value(plain, key, fmt)} | {value(ours, key, fmt)} |"
              for label, key, fmt in rows]
    for side in (plain, ours):
        if side.get("timed_out"):
            continue
        lines += ["", f"Top SQL statements by time, {side['side']}:", "",
                  "| per trial | ms/trial | statement |", "| ---: | ---: | --- |"]
        lines += [f"| {s['per_trial']:.1f} | {s['ms_per_trial']:.2f} | "
                  f"`{s['statement'][:110]}` |" for s in side["top_statements"]]
        if "profile" in side:
            lines += ["", f"cProfile, {side['side']} (cumulative, overlapping; inflated by "
                      "profiling):", "", "| call | calls/trial | ms/trial |",
                      "| --- | ---: | ---: |"]
            lines += [f"| {r['call']} | {r['calls_per_trial']:.1f} | {r['ms_per_trial']:.2f} |"
                      for r in side["profile"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000, help="trials per side (1000)")
    parser.add_argument("--reports", type=int, default=10,
                        help="intermediate values per trial (= our max_epochs; 10)")
    parser.add_argument("--warmup", type=int, default=10,
                        help="median pruner warm-up epochs on both sides (10, our default: "
                             "with 10 reports nothing can be pruned; 5 makes pruning live)")
    parser.add_argument("--json", help="also write the results as JSON to this file")
    parser.add_argument("--profile", metavar="DIR",
                        help="run under cProfile, write DIR/plain.prof and DIR/ours.prof")
    parser.add_argument("--ours-space", help="inline JSON replacing our side's space")
    parser.add_argument("--timeout", type=float, default=1800,
                        help="seconds each side may take before it is killed (1800)")
    parser.add_argument("--settle", type=float, default=90,
                        help="before each side, wait up to this many seconds for the 1-min "
                             "load average to drop below 1 (90)")
    args = parser.parse_args(argv)
    if args.trials < 1 or args.reports < 1:
        parser.error("--trials and --reports must be at least 1")
    space = json.loads(args.ours_space) if args.ours_space else OURS_SPACE
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)

    from pgserver import PostgresServer

    fingerprint = product_fingerprint()
    server = PostgresServer()
    results: dict[str, dict[str, Any]] = {}
    try:
        server.start()
        for side in ("plain", "ours"):
            name = f"bench_{side}_{uuid.uuid4().hex[:8]}"
            server.create_database(name, template="template0")
            call = (server.url(name), args.trials, args.reports, args.profile, args.warmup)
            if side == "ours":
                call += (space,)
            print(f"{side}: {args.trials} trials x {args.reports} reports ...",
                  file=sys.stderr, flush=True)
            load_before = settle(args.settle)
            try:
                results[side] = run_side(side, call, args.timeout)
                print(f"{side}: {results[side]['wall_s']:.1f} s", file=sys.stderr,
                      flush=True)
            except TimeoutError as exc:
                results[side] = {"side": side, "timed_out": True, "timeout_s": args.timeout,
                                 "n_trials": args.trials,
                                 "trials_done": trials_done(server, name, side)}
                print(f"{side}: {exc}; {results[side]['trials_done']} trials done",
                      file=sys.stderr, flush=True)
            results[side]["load_1min_before_after"] = [load_before, os.getloadavg()[0]]
            server.drop_database(name)
    finally:
        server.cleanup()

    plain, ours = results["plain"], results["ours"]
    print(markdown_table(plain, ours, args.trials, args.reports))
    print(details(plain, ours))
    print(f"\nnproc = {os.cpu_count()}; 1-min load average before/after each side: plain "
          f"{plain['load_1min_before_after']}, ours {ours['load_1min_before_after']} "
          "(above ~1 means something else was running)")
    if product_fingerprint() != fingerprint:
        print("warning: product files changed during the run; the sides may have measured "
              "different code", file=sys.stderr)
    if args.json:
        import optuna
        import torch

        meta = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "nproc": os.cpu_count(), "python": platform.python_version(),
                "optuna": optuna.__version__, "torch": torch.__version__,
                "trials": args.trials, "reports": args.reports,
                "profiled": bool(args.profile), "product_files": fingerprint}
        Path(args.json).write_text(json.dumps({"meta": meta, "plain": plain, "ours": ours},
                                              indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
