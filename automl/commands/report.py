"""``automl report RUN --out DIR``: a finished run as a self-contained HTML page.

RUN is a service run id (``automl submit``) or a study name (``automl tune``, whose
result is stored on its study as the user attribute ``result``). Needs neither torch nor
ray.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import optuna
from sqlalchemy.engine import make_url

from automl.client import RunFailedError
from automl.db.engine import connection_url, make_engine
from automl.errors import ConfigError
from automl.result import RESULT_ATTR, TuneResult, result_from_dict
from automl.studies import check_storage_url


def register(commands: Any) -> None:
    command = commands.add_parser("report", help="write a finished run's HTML report with "
                                  "plots and diagnostics")
    command.add_argument("run_ref", metavar="RUN", help="service run id, or study name of an "
                         "`automl tune` run")
    command.add_argument("--out", required=True, help="folder to write report.html into")
    from automl.cli import storage_argument

    storage_argument(command)
    command.set_defaults(run=run_report)


def run_report(args: argparse.Namespace) -> int:
    from automl.cli import storage_of
    from automl.report import write_report

    result, study = load_finished_run(storage_of(args), args.run_ref)
    path = write_report(result, study, args.out)
    print(path)
    return 0


def load_finished_run(url: str, run: str) -> tuple[TuneResult, optuna.Study | None]:
    """The stored result of a finished run and its study (None if the study is gone).

    Raises:
        ConfigError: no run id or study name ``run`` in the storage.
        RunFailedError: the run exists but has no result (running, failed or cancelled).
    """
    check_storage_url(url)
    _check_exists(url)
    summary, study_name = _service_run(url, run)
    storage = optuna.storages.RDBStorage(connection_url(url), skip_compatibility_check=True)
    if summary is None:  # not a service run: an embedded study by name
        try:
            study_id = storage.get_study_id_from_name(run)
        except KeyError:
            raise ConfigError(f"no run or study named {run} in {_shown(url)}; list them with "
                              "`automl runs` or optuna-dashboard", field="run") from None
        summary = storage.get_study_user_attrs(study_id).get(RESULT_ATTR)
        if not isinstance(summary, dict):
            raise RunFailedError(f"study {run} has no stored result: it is still running, "
                                 "ended without a result, or was tuned by an older version",
                                 field="run")
        study_name = run
    try:
        study: optuna.Study | None = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        study = None
    return result_from_dict(summary), study


def _service_run(url: str, run: str) -> tuple[dict[str, Any] | None, str]:
    """(summary, study name) of the service run with id (or study name) ``run``; (None, "")
    if the storage has no such run or no service tables."""
    from automl.db.queries import run_of
    from automl.db.schema import current_revision

    engine = make_engine(url)
    try:
        if current_revision(engine) is None:
            return None, ""
        row = run_of(engine, run, or_study=True)
        if row is None:
            return None, ""
        if row.status != "succeeded" or row.summary is None:
            reason = f": {row.error}" if row.error else ""
            raise RunFailedError(f"run {row.id} is {row.status}{reason}; a report needs "
                                 "a finished run", field="run")
        return dict(row.summary), row.study_name
    finally:
        engine.dispose()


def _check_exists(url: str) -> None:
    """Refuse a SQLite file that does not exist (opening it would create an empty one)."""
    parsed = make_url(url)
    database = parsed.database
    if (parsed.get_backend_name() == "sqlite" and database not in (None, "", ":memory:")
            and not Path(str(database)).exists()):
        raise ConfigError(f"no database at {database}; pass --storage", field="storage")


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)

