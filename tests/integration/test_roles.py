"""The service under the least-privilege roles of docs/service.md, run as written there.

Two users (``alice``, ``bob``) submit as members of the client group, ``automl worker``
runs as the worker role, and each role is then refused what docs/service.md says it
cannot do. (optuna-dashboard as the reader role: tests/integration/test_dashboard.py,
which runs the same block.) Every URL is a plain ``postgresql://role@host:port/db``, as
the docs write them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from helpers import DOCUMENTED_ROLES, documented_role_statements
from pgserver import HOST, PostgresServer
from test_service_e2e import FAST, worker

from automl.client import Client
from automl.errors import PermissionDeniedError
from automl.queue.models import Ticket

pytestmark = pytest.mark.slow

REFUSED = "42501"  # insufficient privilege, a row-level security policy included


@dataclass(frozen=True)
class Roles:
    """Login URLs of one database set up by the documented block."""

    database: str
    alice: str
    bob: str
    worker: str
    reader: str


@pytest.fixture(scope="module")
def roles(pg_server: PostgresServer, pg_template: str) -> Iterator[Roles]:
    database = f"roles_{uuid.uuid4().hex[:12]}"
    suffix = uuid.uuid4().hex[:8]
    names = {name: f"{name}_{suffix}" for name in (*DOCUMENTED_ROLES, "bob")}
    pg_server.create_database(database, template=pg_template)
    try:
        for statement in documented_role_statements(names, database):
            pg_server.psql(statement, dbname=database)
        # A second user, added the way the docs add alice.
        pg_server.psql(f"CREATE ROLE {names['bob']} LOGIN IN ROLE {names['automl_client']}")

        def url(role: str) -> str:
            return f"postgresql://{names[role]}@{HOST}:{pg_server.port}/{database}"

        yield Roles(database, url("alice"), url("bob"), url("automl_worker"),
                    url("automl_reader"))
    finally:
        pg_server.drop_database(database)
        for role in names.values():
            pg_server.psql(f"DROP ROLE IF EXISTS {role}")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "automl", *args], capture_output=True,
                          text=True, timeout=300)


def refused(url: str, statement: str, params: dict[str, object] | None = None) -> str:
    """Run ``statement`` as ``url``'s role; the SQLSTATE it was refused with, or "changed N
    rows" when it was let through (a row-level policy that hides rows changes none)."""
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg2://"))
    try:
        with engine.begin() as connection:
            changed = connection.execute(sa.text(statement), params or {}).rowcount
        return f"changed {changed} rows"
    except sa.exc.DBAPIError as exc:
        return str(getattr(exc.orig, "pgcode", exc))
    finally:
        engine.dispose()


def test_users_submit_workers_train_and_nobody_steps_out_of_their_role(
        roles: Roles, digits_frame: pd.DataFrame, tmp_path: Path) -> None:
    alice, bob = Client(roles.alice), Client(roles.bob)
    run = alice.submit(digits_frame, "target", space=FAST, n_trials=3, n_seeds=1)
    doomed = bob.submit(digits_frame, "target", space=FAST, n_trials=3, n_seeds=1)
    assert alice.run(run.id).status().submitted_by.startswith("alice_")

    # alice may not cancel bob's run; bob may (before any worker has started).
    with pytest.raises(PermissionDeniedError, match="submitted by bob_"):
        alice.run(doomed.id).cancel()
    refusal = cli("cancel", doomed.id, "--storage", roles.alice)
    assert refusal.returncode == 2 and refusal.stderr.startswith("error E_PERMISSION")
    assert bob.run(doomed.id).cancel() is True
    assert bob.run(doomed.id).cancel() is False  # already ended

    trainer = worker(roles.worker, "--idle-exit", "5")
    result = run.wait(progress=False, timeout=300)
    output, _ = trainer.communicate(timeout=120)
    assert trainer.returncode == 0, output

    status = json.loads(cli("status", run.id, "--storage", roles.alice).stdout)
    assert status["status"] == "succeeded"
    assert status["trials_done"] == result["n_trials"] == 3
    assert status["trials_complete"] == result["n_complete"]
    shown = cli("result", run.id, "--storage", roles.bob)  # results are readable by all
    assert shown.returncode == 0 and "tuned" in shown.stdout, shown.stderr
    report = cli("report", run.id, "--storage", roles.alice, "--out", str(tmp_path))
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "report.html").stat().st_size > 0
    assert run.model().predict(digits_frame.drop(columns="target").head(3)).shape == (3,)
    runs = cli("runs", "--storage", roles.bob)
    assert runs.returncode == 0 and run.id in runs.stdout and doomed.id in runs.stdout

    # What a client cannot do: anything to the queue but cancel its own open work.
    assert refused(roles.alice, "UPDATE automl_runs SET status = 'queued' WHERE id = :id",
                   {"id": doomed.id}) == "changed 0 rows"        # bob's run, even ended
    assert refused(roles.alice, "UPDATE automl_runs SET status = 'queued' WHERE id = :id",
                   {"id": run.id}) == "changed 0 rows"           # her own finished run
    assert refused(roles.bob, "UPDATE automl_runs SET n_trials = 1000") == REFUSED
    assert refused(roles.bob, "UPDATE automl_tickets SET status = 'done', result = NULL"
                   ) == REFUSED
    assert refused(roles.bob, "DELETE FROM automl_tickets") == REFUSED
    assert refused(roles.bob, "DELETE FROM automl_runs") == REFUSED
    assert refused(roles.bob, _new_ticket(run.id)) == REFUSED     # into alice's run
    assert refused(roles.bob, "SELECT data FROM automl_datasets") == REFUSED
    assert refused(roles.bob, "UPDATE trials SET state = 'COMPLETE'") == REFUSED
    assert refused(roles.bob, "DELETE FROM automl_artifacts") == REFUSED
    assert refused(roles.bob, "CREATE TABLE mine (a int)") == REFUSED
    assert refused(roles.bob, "ALTER TABLE automl_runs DISABLE ROW LEVEL SECURITY") == REFUSED
    # A client's own open run: it may cancel tickets, never mark them anything else.
    mine = bob.submit(digits_frame, "target", space=FAST, n_trials=2, n_seeds=1)
    assert refused(roles.bob, "UPDATE automl_tickets SET status = 'done' WHERE run_id = :id",
                   {"id": mine.id}) == REFUSED
    assert refused(roles.bob, "UPDATE automl_runs SET status = 'running' WHERE id = :id",
                   {"id": mine.id}) == REFUSED
    assert bob.run(mine.id).cancel() is True
    assert cli("cancel", run.id, "--storage", roles.bob).stdout.strip() == "already finished"

    # The worker: every row, no DDL.
    assert refused(roles.worker, "CREATE TABLE mine (a int)") == REFUSED
    for statement in ("DROP TABLE automl_tickets", "ALTER TABLE automl_runs DISABLE ROW "
                      "LEVEL SECURITY", "TRUNCATE automl_datasets"):
        assert refused(roles.worker, statement) == REFUSED, statement
    # The reader (the dashboard's role): Optuna's tables only, and read only.
    assert refused(roles.reader, "SELECT 1 FROM studies") == "changed 1 rows"
    for statement in ("SELECT * FROM automl_datasets", "SELECT * FROM automl_runs",
                      "SELECT * FROM automl_tickets"):
        assert refused(roles.reader, statement) == REFUSED, statement
    assert refused(roles.reader, "UPDATE studies SET study_name = 'x'") in (REFUSED, "25006")


def test_a_refused_cli_command_says_so_in_one_line(roles: Roles) -> None:
    """A role asked for what it may not do gets E_PERMISSION, not a traceback."""
    done = cli("runs", "--storage", roles.reader)
    assert done.returncode == 2, done.stdout
    assert done.stderr.startswith("error E_PERMISSION: the database refused this role"), \
        done.stderr
    assert "Traceback" not in done.stderr


def _new_ticket(run_id: str) -> str:
    columns = ("run_id", "kind", "name", "status", "attempts", "max_attempts", "created_at",
               "updated_at")
    assert all(hasattr(Ticket, c) for c in columns)
    return (f"INSERT INTO automl_tickets ({', '.join(columns)}) VALUES ('{run_id}', 'trial', "
            "'99', 'queued', 0, 3, now(), now())")
