"""`automl tune` and `automl submit` map their shared options in one place, with
TuneOptions' defaults (issue 18: configuration read once)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from automl.cli.main import build_parser, main, run_options
from automl.options import TuneOptions


def parsed(*argv: str) -> dict:
    return run_options(build_parser().parse_args(list(argv)))


def test_tune_and_submit_map_the_same_options_the_same_way() -> None:
    flags = ("--target", "y", "--trials", "7", "--seed", "3", "--seeds", "2",
             "--pruner", "percentile", "--pruner-percentile", "25", "--no-warm-start",
             "--task", "regression", "--timeout", "60", "--keep-identifiers")
    tune, submit = parsed("tune", "data.csv", *flags), parsed("submit", "data.csv", *flags)
    assert tune == submit
    assert TuneOptions(**tune).n_trials == 7 and tune["pruner_percentile"] == 25


def test_left_out_options_are_tune_options_defaults() -> None:
    defaults = {f.name: f.default for f in fields(TuneOptions)}
    for name, value in parsed("tune", "data.csv", "--target", "y").items():
        if name != "limits":  # from the environment (AUTOML_MAX_*), else DataLimits()
            assert value == defaults[name], name



def test_a_non_positive_db_retry_is_refused_by_name(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", "--db-retry", "0", "--storage", f"sqlite:///{tmp_path}/x.db"]) == 2
    err = capsys.readouterr().err
    assert "E_CONFIG" in err and "--db-retry" in err


def test_the_next_commands_name_the_run_and_a_storage_that_is_not_the_default(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from automl.cli.main import next_commands

    monkeypatch.delenv("AUTOML_STORAGE", raising=False)
    here = next_commands("tune-abc", "sqlite:///automl.db")
    assert "automl report tune-abc --out report/\n" in here and "--storage" not in here
    elsewhere = next_commands("7f3e", "postgresql://me:secret@db/automl")
    assert "automl predict 7f3e new_rows.csv --out predictions.csv --storage " \
        "postgresql://me:***@db/automl" in elsewhere and "secret" not in elsewhere
