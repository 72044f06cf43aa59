"""``automl dashboard``: optuna-dashboard on the runs' storage, with their model artifacts.

    automl dashboard [--storage URL] [--host 127.0.0.1] [--port 8080]

Every run's study shows its learning curves, pruned trials, parameter importances, the
note with the comparison table and verdict, and the best trial's model files. The server
binds to loopback by default: optuna-dashboard has no login, and its write endpoints
(notes, renaming and deleting studies, uploading and deleting artifacts, telling trials)
work for anyone who reaches it unless the database role it connects as can only read.
For a shared deployment, connect as the read-only role of docs/service.md.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path
from typing import Any

import optuna
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url

from automl.cli.main import storage_argument, storage_of
from automl.errors import ConfigError
from automl.options import check_storage_url
from automl.queue.engine import connection_url
from automl.results.artifacts import open_artifact_store
from automl.run.finish import redacted

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


def register(commands: Any) -> None:
    command = commands.add_parser("dashboard", help="optuna-dashboard on the storage: "
                                  "learning curves, importances, notes and models")
    storage_argument(command)
    command.add_argument("--host", default=DEFAULT_HOST,
                         help=f"address to bind (default {DEFAULT_HOST}: this machine only)")
    command.add_argument("--port", type=int, default=DEFAULT_PORT,
                         help=f"port (default {DEFAULT_PORT})")
    command.set_defaults(run=run_dashboard)


def run_dashboard(args: argparse.Namespace) -> int:
    from optuna_dashboard import run_server

    url = storage_of(args)
    if not is_loopback(args.host):
        print(exposure_warning(args.host, args.port), file=sys.stderr)
    storage = dashboard_storage(url)
    store = artifact_store(url, storage)
    models = "shown" if store is not None else "not available (no automl_artifacts table)"
    print(f"optuna-dashboard on http://{_bracketed(args.host)}:{args.port}/dashboard "
          f"(storage {redacted(url)}; model files {models}); Ctrl-C stops it",
          file=sys.stderr, flush=True)
    run_server(storage, host=args.host, port=args.port, artifact_store=store)
    return 0


def dashboard_storage(url: str) -> Any:
    """An Optuna storage that never writes on its own: no table creation, no version stamp,
    so a role with SELECT only is enough to serve the dashboard."""
    check_storage_url(url)
    parsed = make_url(connection_url(url))
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or not Path(database).is_file():
            raise ConfigError(f"no SQLite database at '{database}': run `automl tune` with "
                              "this --storage first", field="storage")
    else:
        kwargs = {"pool_pre_ping": True}
    engine = create_engine(parsed)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    if not {"studies", "version_info", "alembic_version"} <= tables:
        raise ConfigError("no Optuna tables in this database: run `automl db upgrade` (the "
                          "service) or `automl tune` with this --storage first",
                          field="storage")
    return optuna.storages.RDBStorage(connection_url(url), engine_kwargs=kwargs,
                                      skip_table_creation=True,
                                      skip_compatibility_check=True)


def artifact_store(url: str, storage: Any) -> Any:
    """The runs' model files (the ``automl_artifacts`` table); None in a database without
    that table (Optuna's tables only, or made by an older automl)."""
    if not inspect(storage.engine).has_table("automl_artifacts"):
        return None
    return open_artifact_store(url)


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, port: int) -> str:
    return (f"WARNING: serving the dashboard on {host}:{port}, not loopback. Anyone who can "
            "reach that address sees every study in the storage (data set names, "
            "hyperparameters, scores, notes) and can download the model files; optuna-"
            "dashboard has no login. Its write endpoints (edit notes, rename or delete "
            "studies, upload or delete artifacts, tell trials) work for them too unless "
            "--storage connects as a role that can only read (see docs/service.md, "
            "automl_reader). Put it behind an authenticating proxy, or bind to 127.0.0.1 "
            "and use an SSH tunnel.")


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
