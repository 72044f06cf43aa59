"""The ``automl`` command line. Configuration is read here, once, and passed down.

    automl tune DATA --target COL [--space FILE] [--trials N] [--timeout SECONDS]
                [--storage URL] [--seed N] [--json]          # embedded: tune here and now
    automl db upgrade [--storage URL]                         # service: bring schema to head
    automl submit DATA --target COL [...] [--json]            # queue a run, print its id
    automl worker [--storage URL] [--max-tickets N] [--idle-exit SECONDS]
    automl status RUN | result RUN [--json] | cancel RUN | runs
    automl report RUN --out DIR [--storage URL]               # HTML report with plots
    automl dashboard [--storage URL] [--host H] [--port P]    # optuna-dashboard, loopback
    automl export RUN --out DIR [--no-onnx]                   # model bundle + ONNX
    automl predict MODEL DATA [--out FILE] [--proba]          # the model on new rows
    automl finish RUN | resume RUN                            # an interrupted run
    automl storage-proxy [--storage URL] [--host H] [--port P] # one node's Optuna gateway

Errors the user can act on are printed as one line, ``error CODE: message``, with exit
status 2; nothing is stored for them.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from typing import Any, TypedDict

from sqlalchemy.engine import make_url

from automl.client import Client
from automl.data import DataLimits
from automl.errors import AutoMLError
from automl.metrics import METRICS
from automl.options import (
    DEFAULT_STORAGE,
    PRUNERS,
    TuneOptions,
    check_cohort_trials,
    check_gpu_share,
)
from automl.queue.engine import refusal
from automl.queue.schema import upgrade
from automl.results.explain import stored_diagnostics_text
from automl.results.result import TuneResult, format_report, result_from_dict
from automl.run.runtime import service_worker
from automl.run.tune import tune
from automl.space.defaults import BUDGETS
from automl.study.storage.retry import BUDGET_S, set_budget, wait_through_outages

EXIT_USER_ERROR = 2


COHORT_HELP = ("trial tickets a task claims and trains together as one stacked model where "
               "that pays (default: 8 on a CPU, 256 on a GPU; 1: one trial per task)")

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="automl", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    tune_cmd = commands.add_parser("tune", help="tune an MLP on a table and compare it with "
                                   "the rule-of-thumb baselines")
    _run_arguments(tune_cmd)
    tune_cmd.add_argument("--workers", type=int, help="trials in parallel (default: CPUs)")
    tune_cmd.add_argument("--ray-address", help="join this Ray cluster instead of a local Ray")
    tune_cmd.add_argument("--no-head-start", dest="head_start", action="store_false",
                          help="do not train the first trials in this process's fork while "
                               "the local Ray starts")
    tune_cmd.add_argument("--gpus-per-trial", type=float, default=TuneOptions.gpus_per_trial,
                          help="GPUs per trial; a fraction such as 0.25 packs several trials "
                               "on one GPU (default 0: CPU)")
    tune_cmd.add_argument("--cohort-trials", type=int, metavar="N", help=COHORT_HELP)
    tune_cmd.add_argument("--quiet", action="store_true", help="no progress bars")
    submit = commands.add_parser("submit", help="queue a run on the service; print its id")
    _run_arguments(submit)
    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    storage_argument(db_commands.add_parser("upgrade", help="migrate the service's and "
                                            "Optuna's tables to head (idempotent)"))
    worker = commands.add_parser("worker", help="run queued work until stopped or idle")
    storage_argument(worker)
    worker.add_argument("--max-tickets", type=int, help="exit after this many tickets")
    worker.add_argument("--idle-exit", type=float, help="exit after SECONDS with no work")
    worker.add_argument("--lease", type=float, default=30.0, help="lease seconds (default 30)")
    worker.add_argument("--db-retry", type=float, default=BUDGET_S, metavar="SECONDS",
                        help="keep retrying a lost database connection this long before a "
                        f"ticket is left to its lease (default {BUDGET_S:g})")
    worker.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    worker.add_argument("--ray-address", help="run tickets as Ray tasks on this cluster "
                        "('local' starts one here)")
    worker.add_argument("--cpus-per-trial", type=float, default=1.0)
    worker.add_argument("--gpus-per-trial", type=float, default=0.0,
                        help="fractions share a GPU between trials, e.g. 0.25")
    worker.add_argument("--max-parallel", type=int, help="tickets in flight (default: CPUs)")
    worker.add_argument("--cohort-trials", type=int, metavar="N", help=COHORT_HELP)
    worker.add_argument("--optuna-proxy", metavar="HOST:PORT",
                        help="reach Optuna's tables through this `automl storage-proxy` "
                        "(the queue still uses --storage)")
    for name, text in (("status", "a run's progress"), ("result", "a finished run's result"),
                       ("cancel", "stop a run")):
        command = commands.add_parser(name, help=text)
        command.add_argument("run_id")
        storage_argument(command)
        if name == "result":
            command.add_argument("--json", action="store_true")
    storage_argument(commands.add_parser("runs", help="recent runs, newest first"))
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(commands)
    return parser


def storage_argument(command: argparse.ArgumentParser) -> None:
    """Add --storage (to every command that reads or writes the storage)."""
    command.add_argument("--storage", help="database URL (default: $AUTOML_STORAGE or "
                         f"{DEFAULT_STORAGE}); prefer no password in it: use ~/.pgpass")


def _run_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("data", help="CSV/TSV (optionally .gz), Parquet or .npz file, or "
                         "sklearn:NAME")
    command.add_argument("--target", required=True, help="name of the target column")
    command.add_argument("--space", help="YAML/JSON search space (overrides the default)")
    command.add_argument("--trials", type=int, default=TuneOptions.n_trials,
                         help=f"trial budget (default {TuneOptions.n_trials})")
    command.add_argument("--timeout", type=float, help="stop starting trials after SECONDS")
    command.add_argument("--budget", choices=BUDGETS, default=TuneOptions.budget,
                         help="'fast': the plain MLP, no numeric embeddings (about the "
                         "speed of versions before them); default: the full model family")
    storage_argument(command)
    command.add_argument("--seed", type=int, default=TuneOptions.seed,
                         help="seed of split, sampler, training")
    command.add_argument("--task", choices=["binary", "multiclass", "classification",
                                            "regression"], help="override the inferred task")
    command.add_argument("--metric", choices=list(METRICS),
                         help="what the comparison reports and ranks models by (default: "
                         "accuracy, or r2 for regression); trials are still chosen on "
                         "validation loss")
    command.add_argument("--pruner", choices=PRUNERS, default=TuneOptions.pruner)
    command.add_argument("--pruner-percentile", type=float,
                         default=TuneOptions.pruner_percentile, metavar="P",
                         help="with --pruner percentile: prune trials outside the best P %% "
                         "of completed trials at the same epoch (default "
                         f"{TuneOptions.pruner_percentile:g})")
    command.add_argument("--no-warm-start", dest="warm_start", action="store_false",
                         help="do not start the search from the rules of thumb")
    command.add_argument("--seeds", type=int, default=TuneOptions.n_seeds,
                         help=f"seeds for the final comparison (default {TuneOptions.n_seeds})")
    command.add_argument("--keep-identifiers", action="store_true",
                         help="keep columns that look like row identifiers (a distinct whole "
                         "number or word in every row); by default they are dropped")
    command.add_argument("--json", action="store_true", help="print the result as JSON")


def storage_of(args: argparse.Namespace) -> str:
    """The storage URL from --storage or $AUTOML_STORAGE; warns about a password in it."""
    if args.storage and make_url(args.storage).password:
        print("warning: a password in --storage shows in process listings and shell "
              "history; keep it in ~/.pgpass or PGPASSWORD and leave it out of the URL",
              file=sys.stderr)
    return str(args.storage or os.environ.get("AUTOML_STORAGE", DEFAULT_STORAGE))


def limits_from_env() -> DataLimits:
    """Size limits, overridable with AUTOML_MAX_BYTES / _ROWS / _COLUMNS."""
    defaults = DataLimits()
    return DataLimits(
        max_bytes=int(os.environ.get("AUTOML_MAX_BYTES", defaults.max_bytes)),
        max_rows=int(os.environ.get("AUTOML_MAX_ROWS", defaults.max_rows)),
        max_columns=int(os.environ.get("AUTOML_MAX_COLUMNS", defaults.max_columns)),
    )


class RunOptions(TypedDict):
    """The TuneOptions fields `tune` and `submit` both take from the command line."""

    n_trials: int
    timeout: float | None
    budget: str
    seed: int
    n_seeds: int
    pruner: str
    pruner_percentile: float
    task: str | None
    metric: str | None
    warm_start: bool
    limits: DataLimits
    keep_identifiers: bool


def run_options(args: argparse.Namespace) -> RunOptions:
    """The options `tune` and `submit` share, mapped from the command line in one place
    (their defaults are TuneOptions')."""
    return {"n_trials": args.trials, "timeout": args.timeout, "budget": args.budget,
            "seed": args.seed,
            "n_seeds": args.seeds, "pruner": args.pruner,
            "pruner_percentile": args.pruner_percentile, "task": args.task,
            "metric": args.metric,
            "warm_start": args.warm_start, "limits": limits_from_env(),
            "keep_identifiers": args.keep_identifiers}


def run_tune(args: argparse.Namespace) -> int:
    options = TuneOptions(
        **run_options(args), storage=storage_of(args), n_workers=args.workers,
        ray_address=args.ray_address, head_start=args.head_start,
        gpus_per_trial=args.gpus_per_trial, cohort_trials=args.cohort_trials,
        progress=not args.quiet)
    with stdout_to_stderr():
        result = tune(args.data, args.target, space=args.space, **vars(options))
    print_result(result, options.storage, as_json=args.json)
    return 0


def print_result(result: TuneResult, storage: str, *, as_json: bool) -> None:
    """A run's result on stdout: the JSON, or the table, its diagnostics and what next."""
    if as_json:
        json.dump(result.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    print(format_report(result))
    print(stored_diagnostics_text(result, storage))
    print(next_commands(result.study_name, storage))


def next_commands(name: str, storage: str) -> str:
    """The run's name and what to do with it next, as commands to copy."""
    url = make_url(storage).render_as_string(hide_password=True)
    where = "" if storage == os.environ.get("AUTOML_STORAGE", DEFAULT_STORAGE) \
        else f" --storage {url}"
    commands = [f"automl report {name} --out report/{where}",
                f"automl export {name} --out model/{where}",
                f"automl predict {name} new_rows.csv --out predictions.csv{where}",
                f"automl dashboard{where}"]
    return "\n".join([f"\nrun {name} (in {url}); next:", *(f"  {c}" for c in commands)])


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send everything written to stdout while it runs (Ray's notices included, even those
    written to file descriptor 1 directly) to stderr, so stdout holds only the result."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("optuna").setLevel(logging.WARNING)
    try:
        if args.command not in COMMANDS:  # a command from automl/cli/
            return int(args.run(args))
        return COMMANDS[args.command](args)
    except AutoMLError as exc:
        print(exc.one_line(), file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `automl ... | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        refused = refusal(exc)
        if refused is None:
            raise
        print(refused.one_line(), file=sys.stderr)
        return EXIT_USER_ERROR


def run_submit(args: argparse.Namespace) -> int:
    client = Client(storage_of(args))
    run = client.submit(args.data, args.target, space=args.space, **run_options(args))
    print(json.dumps({"run_id": run.id}) if args.json else run.id)
    return 0


def run_db(args: argparse.Namespace) -> int:
    revision = upgrade(storage_of(args))
    print(f"schema at {revision} (service tables) and Optuna's tables at head")
    return 0


def run_worker(args: argparse.Namespace) -> int:
    set_budget(args.db_retry)
    ray: dict[str, Any] = {}  # tickets run here (--threads) or as Ray tasks (the rest)
    if args.cohort_trials is not None:
        check_cohort_trials(args.cohort_trials)
    if args.ray_address:
        check_gpu_share(args.gpus_per_trial)
        ray = {"ray_address": args.ray_address, "cpus_per_trial": args.cpus_per_trial,
               "gpus_per_trial": args.gpus_per_trial, "max_parallel": args.max_parallel}
    worker = wait_through_outages(lambda: service_worker(
        storage_of(args), lease_s=args.lease, optuna_proxy=args.optuna_proxy,
        threads=args.threads, cohort_trials=args.cohort_trials, **ray), "the worker starts")
    print(f"worker {worker.worker_id} started", file=sys.stderr)
    done = worker.serve(max_tickets=args.max_tickets, idle_exit=args.idle_exit)
    print(f"worker {worker.worker_id} stopped after {done} tickets", file=sys.stderr)
    return 0


def run_status(args: argparse.Namespace) -> int:
    status = Client(storage_of(args)).run(args.run_id).status()
    print(json.dumps(asdict(status)))
    return 0


def run_result(args: argparse.Namespace) -> int:
    storage = storage_of(args)
    result = Client(storage).run(args.run_id).result()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        parsed = result_from_dict(result)
        print(format_report(parsed))
        print(stored_diagnostics_text(parsed, storage))
        print(next_commands(args.run_id, storage))
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    cancelled = Client(storage_of(args)).run(args.run_id).cancel()
    print("cancelled" if cancelled else "already finished")
    return 0


def run_runs(args: argparse.Namespace) -> int:
    for status in Client(storage_of(args)).runs():
        print(f"{status.run_id}  {status.status:<9}  trials {status.budget_spent}/"
              f"{status.n_trials}  baselines {status.baselines_done}/{status.n_baselines}"
              f"  by {status.submitted_by or '?'}  {status.study_name or ''}".rstrip())
    return 0


# Commands that live in their own modules. Each module has ``register(commands)``, which
# adds its sub-parser and sets ``run`` (a function of the parsed args returning the exit
# status) with ``set_defaults(run=...)``.
COMMAND_MODULES: tuple[str, ...] = ("automl.cli.dashboard", "automl.cli.report",
                                    "automl.cli.export", "automl.cli.predict",
                                    "automl.cli.resume", "automl.cli.proxy")

COMMANDS = {"tune": run_tune, "submit": run_submit, "db": run_db, "worker": run_worker,
            "status": run_status, "result": run_result, "cancel": run_cancel,
            "runs": run_runs}


if __name__ == "__main__":
    sys.exit(main())
