"""``automl dashboard``'s checks before it serves, and the run's note (no server started)."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna_dashboard import get_note

from automl.cli.dashboard import is_loopback, run_dashboard
from automl.cli.main import build_parser, main
from automl.results.note import write_note
from automl.results.result import BestTrial, ModelScore, TuneResult


def _score(name: str, value: float) -> ModelScore:
    return ModelScore(name, "rule", {"hidden_units": [8], "activation": "relu"}, value, 0.01,
                      [value], value, 100, 1.0, 10.0)


def _result() -> TuneResult:
    best = BestTrial(**vars(_score("tuned", 0.97)), trial_number=0, params={"lr": 0.01})
    return TuneResult("accuracy", "multiclass", "data", best,
                      [_score("mean_rule", 0.95), _score("linear", 0.90)], 1, 1, 0, 0, 0,
                      "study", "sqlite:///x.db", 1.0, 2.0, 3)


def test_loopback_hosts() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.5", "example.org"))


def test_defaults_bind_to_loopback() -> None:
    args = build_parser().parse_args(["dashboard"])
    assert (args.host, args.port, args.run) == ("127.0.0.1", 8080, run_dashboard)


def test_a_missing_database_is_one_line_and_nothing_is_created(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.db"
    assert main(["dashboard", "--storage", f"sqlite:///{missing}"]) == 2
    assert "error E_CONFIG: no SQLite database" in capsys.readouterr().err
    assert not missing.exists()


def test_a_database_without_optuna_tables_is_refused_untouched(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "other.db"
    sqlite3.connect(db).close()
    assert main(["dashboard", "--storage", f"sqlite:///{db}"]) == 2
    assert "no Optuna tables" in capsys.readouterr().err
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)


def test_binding_beyond_loopback_warns_what_it_exposes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["dashboard", "--host", "0.0.0.0", "--storage", f"sqlite:///{tmp_path / 'x.db'}"])
    err = capsys.readouterr().err
    assert "WARNING" in err and "no login" in err and "delete studies" in err


def test_the_command_imports_neither_torch_nor_ray() -> None:
    code = ("import sys, automl.cli.main, automl.cli.dashboard; "
            "assert not {'torch', 'ray'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_the_note_is_written_on_the_study() -> None:
    study = optuna.create_study()
    assert write_note(study, _result())
    note = get_note(study)
    names = [line.split("|")[1].strip() for line in note.splitlines() if line.startswith("|")]
    assert "Verdict" in note and "mean_rule" in names and "linear" in names


def test_a_note_that_cannot_be_written_only_warns(caplog: pytest.LogCaptureFixture) -> None:
    study = optuna.create_study()
    study._storage.get_study_system_attrs = None  # type: ignore[assignment,method-assign]
    with caplog.at_level(logging.WARNING, logger="automl.results.note"):
        assert not write_note(study, _result())
    assert "could not write the dashboard note" in caplog.text
