"""``automl report RUN --out DIR``: a finished run as a self-contained HTML page.

RUN is a run id or its study's name (``automl tune`` names its runs after their study).
Needs neither torch nor ray.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any

import optuna
from sqlalchemy.engine import make_url

from automl.cli.main import storage_argument, storage_of
from automl.client import Client
from automl.errors import ConfigError
from automl.options import check_storage_url
from automl.queue.engine import connection_url
from automl.results.report import write_report
from automl.results.result import TuneResult, result_from_dict


def register(commands: Any) -> None:
    command = commands.add_parser("report", help="write a finished run's HTML report with "
                                  "plots and diagnostics")
    command.add_argument("run_ref", metavar="RUN", help="run id or study name")
    command.add_argument("--out", required=True, help="folder to write report.html into")
    storage_argument(command)
    command.set_defaults(run=run_report)


def run_report(args: argparse.Namespace) -> int:
    result, study = load_finished_run(storage_of(args), args.run_ref)
    path = write_report(result, study, args.out)
    print(path)
    return 0


def load_finished_run(url: str, run: str) -> tuple[TuneResult, optuna.Study | None]:
    """The stored result of a finished run (by id or study name) and its study (None if
    the study is gone).

    Raises:
        ConfigError: no run id or study name ``run`` in the storage.
        RunFailedError: the run exists but has no result (running, failed or cancelled).
    """
    check_storage_url(url)
    _check_exists(url)
    with contextlib.closing(Client(url)) as client:
        summary = client.run(run).result()
    storage = optuna.storages.RDBStorage(connection_url(url), skip_compatibility_check=True)
    try:
        study: optuna.Study | None = optuna.load_study(study_name=summary["study_name"],
                                                       storage=storage)
    except KeyError:
        study = None
    return result_from_dict(summary), study


def _check_exists(url: str) -> None:
    """Refuse a SQLite file that does not exist (opening it would create an empty one)."""
    parsed = make_url(url)
    database = parsed.database
    if (parsed.get_backend_name() == "sqlite" and database not in (None, "", ":memory:")
            and not Path(str(database)).exists()):
        raise ConfigError(f"no database at {database}; pass --storage", field="storage")
