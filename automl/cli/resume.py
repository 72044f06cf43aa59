"""``automl finish RUN`` and ``automl resume RUN``: an interrupted run, carried to its end.

    automl finish digits-target-20261206-101500-3f2a   # from the trials it has
    automl resume digits-target-20261206-101500-3f2a   # the rest of its trial budget first

See :mod:`automl.run.resume`. Both print what ``tune`` prints (``--json``: its JSON).
"""

from __future__ import annotations

import argparse

from automl.cli.main import print_result, stdout_to_stderr, storage_argument, storage_of
from automl.run.resume import finish, resume

HELP = {"finish": "finish an interrupted run from its completed trials (its baselines and "
                  "best model are trained now; no more trials)",
        "resume": "resume an interrupted run: the rest of its trial budget, then the "
                  "comparison"}


def register(commands: argparse._SubParsersAction) -> None:
    for name, text in HELP.items():
        command = commands.add_parser(name, help=text)
        command.add_argument("run_name", metavar="RUN",
                             help="a run id, or the study name of an 'automl tune' run")
        storage_argument(command)
        command.add_argument("--workers", type=int, help="trainings in parallel "
                             "(default: CPUs)")
        command.add_argument("--ray-address", help="join this Ray cluster instead of a "
                             "local Ray")
        command.add_argument("--quiet", action="store_true", help="no progress bars")
        command.add_argument("--json", action="store_true", help="print the result as JSON")
        command.set_defaults(run=run_continue, resume=name == "resume")


def run_continue(args: argparse.Namespace) -> int:
    storage = storage_of(args)
    carry_on = resume if args.resume else finish
    with stdout_to_stderr():
        result = carry_on(args.run_name, storage=storage, n_workers=args.workers,
                          ray_address=args.ray_address, progress=not args.quiet)
    print_result(result, storage, as_json=args.json)
    return 0
