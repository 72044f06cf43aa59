"""``automl dashboard`` on a finished service run, seen through headless Chromium.

One small run is trained on a real PostgreSQL. The dashboard is then served as the
read-only role of docs/service.md (its grants are executed as written there), loaded in
Debian's chromium: the run's study, its note with the baseline table and the best model's
files must be on the rendered pages, and screenshots are saved (copied to
``$AUTOML_SCREENSHOT_DIR`` when set). Served as that role, every write endpoint of
optuna-dashboard fails and the database stays byte for byte the same; the same requests
against a copy served as the owner succeed, so it is the role that stops them.

Without chromium the tests skip, unless ``PGSERVER_REQUIRED`` is set (CI): then they fail.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
import sqlalchemy as sa
from helpers import DOCUMENTED_ROLES, documented_role_statements
from optuna_dashboard import get_note
from pgserver import HOST, PostgresServer, free_port

from automl.client import Client
from automl.queue.engine import connection_url

pytestmark = pytest.mark.slow

FAST = {"max_epochs": 8, "patience": 3, "n_layers": 1, "units": {"type": "int", "low": 8,
                                                                    "high": 32}}
MODEL_FILES = ("model.json", "model.safetensors", "model.onnx")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                  "--virtual-time-budget=15000")


@dataclass
class FinishedRun:
    database: str  # the run's database
    copy: str  # a copy of it taken right after the run, for the owner-role control
    run_id: str
    result: dict[str, Any]

    @property
    def study_name(self) -> str:
        return f"automl-{self.run_id}"


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium") or ("/usr/bin/chromium"
                                         if Path("/usr/bin/chromium").exists() else None)
    if path is None:
        reason = "chromium is not installed (Debian: apt-get install chromium)"
        if os.environ.get("PGSERVER_REQUIRED", "") not in ("", "0"):
            pytest.fail(f"PGSERVER_REQUIRED is set but {reason}", pytrace=False)
        pytest.skip(reason)
    return path


@pytest.fixture(scope="module")
def finished(pg_server: PostgresServer, pg_template: str,
             digits_frame: pd.DataFrame) -> Iterator[FinishedRun]:
    """A tiny run trained to the end by ``automl worker``, in a database of its own."""
    database, copy = f"dash_{uuid.uuid4().hex[:12]}", f"dash_copy_{uuid.uuid4().hex[:12]}"
    pg_server.create_database(database, template=pg_template)
    try:
        url = pg_server.url(database)
        client = Client(url)
        run = client.submit(digits_frame, "target", space=FAST, n_trials=3, n_seeds=1)
        worker = subprocess.run(
            [sys.executable, "-m", "automl", "worker", "--storage", url, "--idle-exit", "2"],
            capture_output=True, text=True, timeout=400)
        log = (worker.stdout + worker.stderr)[-6000:]
        assert worker.returncode == 0, log
        assert run.status().status == "succeeded", log
        result = run.result()
        client.close()
        pg_server.create_database(copy, template=database)  # needs no open connection to it
        yield FinishedRun(database, copy, run.id, result)
    finally:
        pg_server.drop_database(copy)
        pg_server.drop_database(database)


@pytest.fixture(scope="module")
def reader(pg_server: PostgresServer, finished: FinishedRun) -> Iterator[str]:
    """The read-only role: docs/service.md's roles block run as written (fresh role names)."""
    suffix = uuid.uuid4().hex[:8]
    roles = {name: f"{name}_{suffix}" for name in DOCUMENTED_ROLES}
    try:
        for statement in documented_role_statements(roles, finished.database):
            pg_server.psql(statement, dbname=finished.database)
        yield (f"postgresql://{roles['automl_reader']}@{HOST}:{pg_server.port}/"
               f"{finished.database}")
    finally:
        for role in roles.values():
            pg_server.psql(f"DROP OWNED BY {role}", dbname=finished.database)
        for role in roles.values():
            pg_server.psql(f"DROP ROLE IF EXISTS {role}")


class Dashboard:
    """``automl dashboard`` as a subprocess on a free loopback port."""

    def __init__(self, storage: str, log: Path):
        self.port = free_port()
        self.base = f"http://{HOST}:{self.port}"
        self.log = log
        with log.open("w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "automl", "dashboard", "--storage", storage,
                 "--port", str(self.port)], stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 90
        while True:
            assert self.process.poll() is None, f"dashboard exited:\n{log.read_text()}"
            try:
                if self.request("GET", "/api/meta")[0] == 200:
                    return
            except OSError:
                pass
            assert time.monotonic() < deadline, f"dashboard never answered:\n{log.read_text()}"
            time.sleep(0.3)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw

    def get(self, path: str) -> Any:
        status, body = self.request("GET", path)
        assert status == 200, (path, status, body)
        return body

    def study(self, name: str) -> dict[str, Any]:
        (study,) = [s for s in self.get("/api/studies")["study_summaries"]
                    if s["study_name"] == name]
        return dict(study)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def read_only_dashboard(reader: str, tmp_path_factory: pytest.TempPathFactory
                        ) -> Iterator[Dashboard]:
    dashboard = Dashboard(reader, tmp_path_factory.mktemp("dashboard") / "reader.log")
    try:
        yield dashboard
    finally:
        dashboard.stop()


def browse(chromium: str, url: str, profile: Path, *args: str) -> str:
    """Load ``url`` in headless Chromium (the SPA runs its requests within the virtual time
    budget); returns its stdout: the rendered DOM with ``--dump-dom``."""
    process = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args,
                              url], capture_output=True, text=True, timeout=180)
    assert process.returncode == 0, process.stderr[-3000:]
    return process.stdout


def screenshot(chromium: str, url: str, profile: Path, path: Path, height: int = 2000) -> Path:
    browse(chromium, url, profile, f"--screenshot={path}", f"--window-size=1400,{height}")
    assert path.stat().st_size > 10_000, "blank screenshot"
    if os.environ.get("AUTOML_SCREENSHOT_DIR"):
        folder = Path(os.environ["AUTOML_SCREENSHOT_DIR"])
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / path.name)
    return path


def model_artifacts(dashboard: Dashboard, study_id: int, trial_number: int
                    ) -> list[dict[str, Any]]:
    """The model files the dashboard lists for the run (on its best trial or its study),
    each with the paths that download (``path``) and remove (``api``) it."""
    detail = dashboard.get(f"/api/studies/{study_id}")
    (trial,) = [t for t in detail["trials"] if t["number"] == trial_number]
    owned = [(f"{study_id}/{trial['trial_id']}", a) for a in trial.get("artifacts", [])]
    owned += [(f"{study_id}", a) for a in detail.get("artifacts", [])]
    return [{**a, "path": f"/artifacts/{owner}/{a['artifact_id']}",
             "api": f"/api/artifacts/{owner}/{a['artifact_id']}"}
            for owner, a in owned if a["filename"] in MODEL_FILES]


def test_the_dashboard_shows_the_run_its_note_and_its_model(
        chromium: str, finished: FinishedRun, read_only_dashboard: Dashboard,
        tmp_path: Path) -> None:
    dashboard = read_only_dashboard
    assert dashboard.get("/api/meta")["artifact_is_available"]
    study_id = dashboard.study(finished.study_name)["study_id"]
    best = finished.result["best"]["trial_number"]
    baselines = [b["name"] for b in finished.result["baselines"]]
    pages = f"{dashboard.base}/dashboard/studies/{study_id}"

    note = browse(chromium, f"{pages}/note", tmp_path / "profile", "--dump-dom")
    assert finished.study_name in note
    assert "Verdict" in note and "tuned (best trial)" in note
    for name in baselines:  # rendered as rows of the note's table, not as Markdown text
        assert re.search(rf"<td[^>]*>\s*{re.escape(name)}\s*</td>", note), name

    artifacts = model_artifacts(dashboard, study_id, best)
    assert sorted(a["filename"] for a in artifacts) == sorted(MODEL_FILES)
    for artifact in artifacts:  # downloadable through the dashboard, as the reader role
        status, body = dashboard.request("GET", artifact["path"])
        assert status == 200 and body, (artifact, status)
    trial_page = f"{pages}/trials?numbers={best}"
    trial_dom = browse(chromium, trial_page, tmp_path / "profile", "--dump-dom")
    top_dom = browse(chromium, pages, tmp_path / "profile", "--dump-dom")
    for filename in MODEL_FILES:
        assert filename in trial_dom or filename in top_dom, filename

    shots = [screenshot(chromium, f"{pages}/note", tmp_path / "profile",
                        tmp_path / "dashboard-note.png"),
             screenshot(chromium, trial_page, tmp_path / "profile",
                        tmp_path / "dashboard-best-trial.png"),
             screenshot(chromium, pages, tmp_path / "profile",
                        tmp_path / "dashboard-study.png", height=4000)]
    print("screenshots:", *shots)


def detail_trial_id(dashboard: Dashboard, study_id: int, number: int) -> int:
    detail = dashboard.get(f"/api/studies/{study_id}")
    return int(next(t["trial_id"] for t in detail["trials"] if t["number"] == number))


# Labels of the requests below that write to a finished run's database when the role may.
OWNER_WRITES = ("study note", "trial note", "create study", "upload study artifact",
                "preference", "preference component", "rename study")


def write_requests(dashboard: Dashboard, study_name: str,
                   best_number: int) -> list[tuple[str, str, str, Any]]:
    """Every write endpoint of optuna-dashboard, aimed at the run: (label, method, path,
    body). Those on the finished best trial itself are refused by Optuna whatever the role;
    removing a trial artifact deletes its file before failing so."""
    study_id = dashboard.study(study_name)["study_id"]
    detail = dashboard.get(f"/api/studies/{study_id}")
    trial_id = detail_trial_id(dashboard, study_id, best_number)
    (artifact, *_) = model_artifacts(dashboard, study_id, best_number)
    upload = {"file": "data:text/plain;base64," + base64.b64encode(b"intruder").decode(),
              "filename": "intruder.txt"}
    study, trial = f"/api/studies/{study_id}", f"/api/trials/{trial_id}"
    return [
        ("study note", "PUT", f"{study}/note",
         {"version": detail["note"]["version"] + 1, "body": "overwritten"}),
        ("trial note", "PUT", f"{study}/{trial_id}/note", {"version": 1, "body": "x"}),
        ("create study", "POST", "/api/studies",
         {"study_name": "intruder", "directions": ["minimize"]}),
        ("upload study artifact", "POST", f"/api/artifacts/{study_id}", upload),
        ("upload trial artifact", "POST", f"/api/artifacts/{study_id}/{trial_id}", upload),
        ("trial user attrs", "POST", f"{trial}/user-attrs", {"user_attrs": {"x": 1}}),
        ("tell trial", "POST", f"{trial}/tell", {"state": "Fail"}),
        ("skip trial", "POST", f"{study}/{trial_id}/skip", {}),
        ("preference", "POST", f"{study}/preference",
         {"mode": "ChooseWorst", "candidates": [best_number], "clicked": best_number}),
        ("preference component", "PUT", f"{study}/preference_feedback_component",
         {"output_type": "note"}),
        ("delete model artifact", "DELETE", artifact["api"], None),
        ("rename study", "POST", f"{study}/rename", {"study_name": f"{study_name}-renamed"}),
        ("delete study", "DELETE", study, {}),  # (the owner has just moved it by renaming)
    ]


def snapshot(pg_server: PostgresServer, database: str) -> dict[str, tuple[Any, ...]]:
    """Every table's row count and a digest of its whole content."""
    tables = [row[0] for row in pg_server.psql(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
        dbname=database) or []]
    return {table: tuple((pg_server.psql(
        f'SELECT count(*), md5(coalesce(string_agg(t::text, chr(10) ORDER BY t::text), \'\')) '
        f'FROM "{table}" t', dbname=database) or [()])[0]) for table in tables}


def note_of(url: str, study_name: str) -> str:
    return get_note(optuna.load_study(study_name=study_name, storage=url))


def test_served_as_the_read_only_role_every_write_endpoint_fails_and_nothing_changes(
        pg_server: PostgresServer, finished: FinishedRun, reader: str,
        read_only_dashboard: Dashboard) -> None:
    owner_url = pg_server.url(finished.database)
    before = snapshot(pg_server, finished.database)
    note = note_of(owner_url, finished.study_name)
    assert "Verdict" in note and before["automl_artifacts"][0] >= len(MODEL_FILES)
    dashboard = read_only_dashboard
    requests = write_requests(dashboard, finished.study_name,
                              finished.result["best"]["trial_number"])
    answers = {label: dashboard.request(method, path, body)[0]
               for label, method, path, body in requests}
    assert all(not 200 <= status < 300 for status in answers.values()), answers
    # Optuna's schema migration (a no-op at head: nothing to refuse, nothing written)
    dashboard.request("POST", "/incompatible-rdb-schema", {})
    assert snapshot(pg_server, finished.database) == before
    assert note_of(owner_url, finished.study_name) == note
    dashboard.study(finished.study_name)  # still there, still served
    assert "in a read-only transaction" in dashboard.log.read_text()  # the database said no

    # The grants alone refuse it too, with the role's read-only default switched off; and
    # the role reads what the dashboard needs, not the data sets or the queue.
    engine = sa.create_engine(connection_url(reader), connect_args={
        "options": "-c default_transaction_read_only=off"})
    try:
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT count(*) FROM trials")).scalar()
            for statement in ("SELECT count(*) FROM automl_datasets",
                              "SELECT count(*) FROM automl_runs",
                              "DELETE FROM trial_values", "UPDATE studies SET study_name = 'x'",
                              "DELETE FROM automl_artifacts", "CREATE TABLE intruder (x int)"):
                with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                    connection.execute(sa.text(statement))
                connection.rollback()
    finally:
        engine.dispose()


def test_the_same_requests_served_as_the_owner_do_write(
        pg_server: PostgresServer, finished: FinishedRun, tmp_path: Path) -> None:
    """The control, on a copy of the database served as its owner: the requests the
    read-only role was refused change the database, so it is the role that stops them."""
    before = snapshot(pg_server, finished.copy)
    dashboard = Dashboard(pg_server.url(finished.copy), tmp_path / "owner.log")
    try:
        requests = write_requests(dashboard, finished.study_name,
                                  finished.result["best"]["trial_number"])
        answers = {label: dashboard.request(method, path, body)[0]
                   for label, method, path, body in requests}
        renamed = dashboard.study(f"{finished.study_name}-renamed")["study_id"]
        deleted = dashboard.request("DELETE", f"/api/studies/{renamed}", {})[0]
    finally:
        dashboard.stop()
    assert all(200 <= answers[label] < 300 for label in OWNER_WRITES), answers
    assert deleted == 204
    after = snapshot(pg_server, finished.copy)
    changed = {table for table in before if after[table] != before[table]}
    assert {"studies", "study_system_attributes", "automl_artifacts"} <= changed, changed
