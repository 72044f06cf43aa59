"""``automl predict``: an exported model's predictions for a file's rows, as CSV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_export import trained

from automl.cli.main import EXIT_USER_ERROR, main


def exported(task: str, folder: Path) -> tuple[object, pd.DataFrame]:
    predictor, rows = trained(task)
    predictor.save(folder, onnx=False)
    return predictor, rows


def test_predictions_match_the_model_row_for_row(tmp_path: Path) -> None:
    predictor, rows = exported("binary", tmp_path / "model")
    rows.assign(target="ignored").to_csv(tmp_path / "rows.csv", index=False)
    out = tmp_path / "predictions.csv"
    assert main(["predict", str(tmp_path / "model"), str(tmp_path / "rows.csv"),
                 "--out", str(out), "--proba"]) == 0
    table = pd.read_csv(out)
    assert list(table.columns) == ["prediction", "proba_no", "proba_yes"]
    assert table.prediction.tolist() == predictor.predict(rows).tolist()
    np.testing.assert_allclose(table[["proba_no", "proba_yes"]].to_numpy(),
                               predictor.predict_proba(rows), rtol=1e-6)
    # each label is its most probable class
    assert (table.prediction == np.where(table.proba_yes > 0.5, "yes", "no")).all()


def test_regression_values_go_to_stdout_in_the_targets_units(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    predictor, rows = exported("regression", tmp_path / "model")
    rows.to_csv(tmp_path / "rows.csv", index=False)
    assert main(["predict", str(tmp_path / "model"), str(tmp_path / "rows.csv")]) == 0
    printed = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out))
    np.testing.assert_allclose(printed.prediction, predictor.predict(rows), rtol=1e-5)
    assert printed.prediction.std() > 1.0  # diabetes progression, not standardised units


def test_a_missing_column_is_one_error_naming_it_and_nothing_is_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, rows = exported("binary", tmp_path / "model")
    rows.drop(columns="income").to_csv(tmp_path / "rows.csv", index=False)
    out = tmp_path / "predictions.csv"
    code = main(["predict", str(tmp_path / "model"), str(tmp_path / "rows.csv"),
                 "--out", str(out)])
    assert code == EXIT_USER_ERROR and "income" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("case", ["proba_of_regression", "existing_out", "not_a_model"])
def test_what_cannot_be_done_is_refused_by_name(
        case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, rows = exported("regression", tmp_path / "model")
    rows.to_csv(tmp_path / "rows.csv", index=False)
    (tmp_path / "taken.csv").write_text("keep me")
    args = {"proba_of_regression": [str(tmp_path / "model"), "--proba"],
            "existing_out": [str(tmp_path / "model"), "--out", str(tmp_path / "taken.csv")],
            "not_a_model": [str(tmp_path)]}[case]
    model, *options = args
    assert main(["predict", model, str(tmp_path / "rows.csv"), *options]) == EXIT_USER_ERROR
    expected = {"proba_of_regression": "--proba", "existing_out": "--force",
                "not_a_model": "model.json"}[case]
    assert expected in capsys.readouterr().err
    assert (tmp_path / "taken.csv").read_text() == "keep me"
