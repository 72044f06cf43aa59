"""The ``automl`` command line. Configuration is read here, once, and passed down.

    automl tune DATA --target COL [--space FILE] [--trials N] [--timeout SECONDS]
                [--storage URL] [--seed N] [--json]

Errors the user can act on are printed as one line, ``error CODE: message``, with exit
status 2; nothing is stored for them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence

from automl.data import DataLimits
from automl.errors import AutoMLError
from automl.result import format_report
from automl.studies import PRUNERS
from automl.tuner import DEFAULT_STORAGE, TuneOptions, tune

EXIT_USER_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="automl", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    tune_cmd = commands.add_parser("tune", help="tune an MLP on a table and compare it with "
                                   "the rule-of-thumb baselines")
    tune_cmd.add_argument("data", help="CSV/TSV (optionally .gz), Parquet or .npz file")
    tune_cmd.add_argument("--target", required=True, help="name of the target column")
    tune_cmd.add_argument("--space", help="YAML/JSON search space (overrides the default)")
    tune_cmd.add_argument("--trials", type=int, default=30, help="trial budget (default 30)")
    tune_cmd.add_argument("--timeout", type=float, help="stop starting trials after SECONDS")
    tune_cmd.add_argument("--storage", help="Optuna storage URL (default: $AUTOML_STORAGE or "
                          f"{DEFAULT_STORAGE})")
    tune_cmd.add_argument("--seed", type=int, default=0, help="seed of split, sampler, training")
    tune_cmd.add_argument("--task", choices=["binary", "multiclass", "classification",
                                             "regression"], help="override the inferred task")
    tune_cmd.add_argument("--pruner", choices=PRUNERS, default="median")
    tune_cmd.add_argument("--workers", type=int, help="trials in parallel (default: CPUs)")
    tune_cmd.add_argument("--seeds", type=int, default=3,
                          help="seeds for the final comparison (default 3)")
    tune_cmd.add_argument("--ray-address", help="join this Ray cluster instead of a local Ray")
    tune_cmd.add_argument("--json", action="store_true", help="print the result as JSON")
    tune_cmd.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def limits_from_env() -> DataLimits:
    """Size limits, overridable with AUTOML_MAX_BYTES / _ROWS / _COLUMNS."""
    defaults = DataLimits()
    return DataLimits(
        max_bytes=int(os.environ.get("AUTOML_MAX_BYTES", defaults.max_bytes)),
        max_rows=int(os.environ.get("AUTOML_MAX_ROWS", defaults.max_rows)),
        max_columns=int(os.environ.get("AUTOML_MAX_COLUMNS", defaults.max_columns)),
    )


def run_tune(args: argparse.Namespace) -> int:
    options = TuneOptions(
        n_trials=args.trials, timeout=args.timeout, seed=args.seed, n_seeds=args.seeds,
        pruner=args.pruner, storage=args.storage or os.environ.get("AUTOML_STORAGE",
                                                                   DEFAULT_STORAGE),
        task=args.task, n_workers=args.workers, ray_address=args.ray_address,
        progress=not args.quiet, limits=limits_from_env(),
    )
    with stdout_to_stderr():
        result = tune(args.data, args.target, space=args.space, **vars(options))
    if args.json:
        json.dump(result.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_report(result))
    return 0


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
        return run_tune(args)
    except AutoMLError as exc:
        print(exc.one_line(), file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
