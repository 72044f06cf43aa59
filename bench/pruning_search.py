"""Pruning savings and TPE against random search, on the same data and trial budgets.

    python bench/pruning_search.py pruning --dataset digits --trials 40 --seeds 0 1 2
    python bench/pruning_search.py search --dataset digits --budgets 20 40 --seeds 0 1 2

**pruning** — for each seed, one full ``automl.tune`` run per pruner (``median``, the
default; ``none``; ``hyperband``; ``percentile``) with the same trial budget, seed, split
and default space, on the embedded default (SQLite in a temporary folder; one local Ray,
started once and shared by every run, 2 trials in parallel on 2 cores). Per run: epochs
trained (the sum of every trial's ``epochs`` attribute, pruned trials included), trials
pruned, the best trial's validation accuracy (the trial the tuner picks: lowest validation
loss), the tuned model's test accuracy (the best trial retrained over ``--final-seeds``
seeds by ``tune``), and the study's wall-clock (``tuning_seconds``). The pruner's audit (a
seeded 10 % of the trials it would stop are let finish, ``pruning_audit``) is on, as in
``tune``'s default.

**search** — TPE (``automl.study.studies.make_sampler``: multivariate, grouped, 10 random start-up
trials) against ``optuna.samplers.RandomSampler`` with the same seed, the same objective
(``workers.objective.run_trial``, in-process, no Ray, one torch thread), the same median
pruner and pruning policy (``make_pruner``/``pruning_policy``), the same split and default
space, in an in-memory study. After N trials (each of ``--budgets``, read from one run of
the largest N): the best trial by validation loss, its validation accuracy, and its test
accuracy when retrained once with the first final seed (as ``tune`` would). The (seed,
sampler) runs go to ``--jobs`` processes at a time.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState
from time_to_quality import load_frame  # bench/ is on sys.path when run as a script

import automl
from automl.data import load_dataset
from automl.run.finish import final_seeds
from automl.run.plan import settings_of
from automl.space import SearchSpace
from automl.study.pruning import AUDIT_ATTR
from automl.study.settings import make_pruner, make_sampler, pruning_policy
from automl.study.trials import trial_config

PRUNERS = ("median", "none", "hyperband", "percentile")
SAMPLERS = ("tpe", "random")


# ---- pruning ------------------------------------------------------------------------------
def pruning_run(args: argparse.Namespace, pruner: str, seed: int, folder: Path) -> dict[str, Any]:
    url = f"sqlite:///{folder / f'{pruner}-{seed}.db'}"
    started = time.perf_counter()
    result = automl.tune(load_frame(args.dataset, args.max_rows), "target",
                         n_trials=args.trials, seed=seed, n_seeds=args.final_seeds,
                         pruner=pruner, storage=url, progress=False, **args.tune_options)
    wall = time.perf_counter() - started
    study = optuna.load_study(study_name=result.study_name, storage=url)
    trials = study.get_trials(deepcopy=False)
    return {
        "pruner": pruner, "seed": seed, "trials": len(trials),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "audited": sum(AUDIT_ATTR in t.user_attrs for t in trials),
        "epochs": sum(int(t.user_attrs.get("epochs", 0)) for t in trials),
        "best_val": result.best.val_score, "best_val_loss": result.best.val_loss,
        "best_trial_val": study.trials[result.best.trial_number].user_attrs.get("val_score"),
        "test": result.best.test_score, "test_sd": result.best.test_score_std,
        "tuning_s": result.tuning_seconds, "wall_s": wall, "options": args.tune_options,
    }


def pruning(args: argparse.Namespace) -> list[dict[str, Any]]:
    from automl.run.runtime import single_machine_ray
    from workers.ray_setup import start_ray

    single_machine_ray()
    start_ray(None, args.workers)  # one Ray for every run; tune() leaves it running
    rows = []
    print("| seed | pruner | trials | pruned (audited) | epochs | best trial val acc | "
          "tuned test acc (mean ± sd) | study s |\n| --- | --- | ---: | ---: | ---: | ---: | "
          "---: | ---: |", flush=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for seed in args.seeds:
                for pruner in args.pruners:
                    row = pruning_run(args, pruner, seed, Path(tmp))
                    rows.append(row)
                    save(args, [row])  # as it comes: a run cut off keeps what it did
                    print(f"| {seed} | {pruner} | {row['trials']} | {row['pruned']} "
                          f"({row['audited']}) | {row['epochs']} | "
                          f"{row['best_trial_val'] * 100:.2f} | {row['test'] * 100:.2f} ± "
                          f"{row['test_sd'] * 100:.2f} | {row['tuning_s']:.0f} |", flush=True)
    finally:
        import ray

        ray.shutdown()
    print(pruning_summary(rows, args.pruners))
    return rows


def pruning_summary(rows: list[dict[str, Any]], pruners: list[str]) -> str:
    lines = ["| pruner | seeds | mean epochs | epochs saved vs none | mean best trial val acc | "
             "Δ val vs none (points) | mean tuned test acc | Δ test vs none (points) | "
             "mean study s |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]

    def mean(pruner: str, key: str) -> float:
        return statistics.fmean(r[key] for r in rows if r["pruner"] == pruner)

    for pruner in pruners:
        if not any(r["pruner"] == pruner for r in rows):
            continue
        seeds = sum(r["pruner"] == pruner for r in rows)
        saved = dval = dtest = "—"
        if "none" in pruners and pruner != "none":
            # per seed, then averaged, so a seed's quality is compared with its own split
            pairs = [(r, n) for r in rows if r["pruner"] == pruner for n in rows
                     if n["pruner"] == "none" and n["seed"] == r["seed"]]
            saved = f"{statistics.fmean(1 - r['epochs'] / n['epochs'] for r, n in pairs):.0%}"
            dval = f"{statistics.fmean(r['best_trial_val'] - n['best_trial_val'] for r, n in pairs) * 100:+.2f}"  # noqa: E501
            dtest = f"{statistics.fmean(r['test'] - n['test'] for r, n in pairs) * 100:+.2f}"
        lines.append(f"| {pruner} | {seeds} | {mean(pruner, 'epochs'):.0f} | {saved} | "
                     f"{mean(pruner, 'best_trial_val') * 100:.2f} | {dval} | "
                     f"{mean(pruner, 'test') * 100:.2f} | {dtest} | "
                     f"{mean(pruner, 'tuning_s'):.0f} |")
    return "\n".join(lines)


# ---- search -------------------------------------------------------------------------------
def search_run(dataset: str, max_rows: int | None, sampler_name: str, seed: int,
               budgets: list[int], pruner: str) -> list[dict[str, Any]]:
    """One in-process study of ``max(budgets)`` trials; the best after each budget."""
    from workers.data import to_tensors
    from workers.evaluate import evaluate_config
    from workers.objective import run_trial

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    prepared = load_dataset(load_frame(dataset, max_rows), "target", seed=seed)
    data = to_tensors(prepared)
    space = SearchSpace({}).resolve(prepared.task, len(prepared.x_train))
    # The settings a 30-trial run stores, with the pruner's start-up at 10 (as measured).
    options = automl.TuneOptions(seed=seed, pruner=pruner, pruner_startup_trials=10)
    settings = replace(settings_of(options, space), max_epochs=100)
    sampler: optuna.samplers.BaseSampler = (
        make_sampler(settings) if sampler_name == "tpe"
        else optuna.samplers.RandomSampler(seed=seed))
    study = optuna.create_study(direction="minimize", sampler=sampler,
                                pruner=make_pruner(settings))
    started = time.perf_counter()
    for _ in range(max(budgets)):
        run_trial(study, space, data, seed, pruning=pruning_policy(settings))
    seconds = time.perf_counter() - started
    rows = []
    for budget in budgets:
        first = [t for t in study.trials if t.number < budget]
        done = [t for t in first if t.state == TrialState.COMPLETE]
        best = min(done, key=lambda t: float(t.value))  # type: ignore[arg-type]
        retrained = evaluate_config(trial_config(best).with_seed(final_seeds(seed, 1)[0]),
                                    data)
        rows.append({
            "sampler": sampler_name, "seed": seed, "budget": budget,
            "best_val_loss": best.value, "best_val": best.user_attrs["val_score"],
            "max_val": max(t.user_attrs["val_score"] for t in done),
            "test": retrained.test_score, "complete": len(done),
            "epochs": sum(int(t.user_attrs.get("epochs", 0)) for t in first),
            "seconds_all": seconds,
        })
    return rows


def search(args: argparse.Namespace) -> list[dict[str, Any]]:
    jobs = [(s, seed) for seed in args.seeds for s in args.samplers]
    context = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool:
        futures = [pool.submit(search_run, args.dataset, args.max_rows, sampler, seed,
                               args.budgets, args.pruner) for sampler, seed in jobs]
        rows = []
        for future in futures:
            rows += future.result()
            save(args, future.result())
    print("| N trials | seed | sampler | best trial val loss | its val acc | its test acc "
          "(retrained) | best val acc of any trial | epochs |\n"
          "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for row in sorted(rows, key=lambda r: (r["budget"], r["seed"], r["sampler"])):
        print(f"| {row['budget']} | {row['seed']} | {row['sampler']} | "
              f"{row['best_val_loss']:.4f} | {row['best_val'] * 100:.2f} | "
              f"{row['test'] * 100:.2f} | {row['max_val'] * 100:.2f} | {row['epochs']} |")
    print(search_summary(rows, args.budgets, args.samplers))
    return rows


def search_summary(rows: list[dict[str, Any]], budgets: list[int], samplers: list[str]) -> str:
    lines = ["| N trials | sampler | seeds | mean best val loss | mean its val acc | "
             "mean its test acc | lower val loss than the other (seeds) |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for budget in budgets:
        for sampler in samplers:
            mine = {r["seed"]: r for r in rows if r["budget"] == budget
                    and r["sampler"] == sampler}
            others = {r["seed"]: r for r in rows if r["budget"] == budget
                      and r["sampler"] != sampler}
            wins = sum(mine[s]["best_val_loss"] < others[s]["best_val_loss"]
                       for s in mine if s in others)
            values = list(mine.values())
            lines.append(
                f"| {budget} | {sampler} | {len(values)} | "
                f"{statistics.fmean(r['best_val_loss'] for r in values):.4f} | "
                f"{statistics.fmean(r['best_val'] for r in values) * 100:.2f} | "
                f"{statistics.fmean(r['test'] for r in values) * 100:.2f} | "
                f"{wins}/{len([s for s in mine if s in others])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("pruning", "search"))
    parser.add_argument("--dataset", default="digits",
                        help="digits, letter (shared/datasets) or a CSV/TSV with 'target'")
    parser.add_argument("--max-rows", type=int, help="subsample to this many rows (seeded)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=40, help="pruning: trials per run")
    parser.add_argument("--pruners", nargs="+", choices=PRUNERS, default=list(PRUNERS))
    parser.add_argument("--tune-option", action="append", default=[], metavar="KEY=VALUE",
                        help="pruning: a tune() option for every run, e.g. "
                             "pruner_startup_trials=5 (repeatable; VALUE is read as JSON)")
    parser.add_argument("--final-seeds", type=int, default=3,
                        help="pruning: seeds the tuned model is retrained with for its test score")
    parser.add_argument("--workers", type=int, help="pruning: Ray workers (default: one per core)")
    parser.add_argument("--budgets", type=int, nargs="+", default=[20, 40],
                        help="search: trial budgets N")
    parser.add_argument("--samplers", nargs="+", choices=SAMPLERS, default=list(SAMPLERS))
    parser.add_argument("--pruner", default="median", help="search: the pruner of both sides")
    parser.add_argument("--jobs", type=int, default=1, help="search: processes at a time")
    parser.add_argument("--json", type=Path, help="append the rows as JSON lines to this file")
    args = parser.parse_args(argv)
    args.tune_options = dict(_option(text) for text in args.tune_option)
    print(f"{args.part} on {args.dataset}, seeds {args.seeds}, nproc {os.cpu_count()}, "
          f"torch {torch.__version__}, optuna {optuna.__version__}, load "
          f"{os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)
    if args.part == "pruning":
        pruning(args)
    else:
        search(args)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    return 0


def _option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise SystemExit(f"--tune-option wants KEY=VALUE, not {text!r}")
    return key, json.loads(value)


def save(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    """Append ``rows`` to ``--json`` (one JSON line each), if given."""
    if args.json is None:
        return
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with args.json.open("a") as handle:
        for row in rows:
            handle.write(json.dumps({"part": args.part, "dataset": args.dataset,
                                     "date": stamp, "load": os.getloadavg()[0], **row}) + "\n")


if __name__ == "__main__":
    sys.exit(main())
