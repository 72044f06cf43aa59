"""End to end: ``automl.tune`` (local Ray, SQLite) stores its best model, and
``automl export`` gets it out again: the same predictions, from PyTorch and from ONNX."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import optuna
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes

import automl
from automl.cli.main import main
from automl.results.artifacts import MODEL_ATTR
from workers.export import onnx_features
from workers.predictor import Predictor

pytestmark = pytest.mark.slow

SPACE = {"max_epochs": 5, "patience": 2, "n_layers": 1, "units": 16}


def test_tune_stores_the_best_model_and_export_reproduces_it(tmp_path: Path) -> None:
    frame = load_diabetes(as_frame=True).frame
    url = f"sqlite:///{tmp_path / 'tune.db'}"  # a fresh file: tune() creates our tables
    result = automl.tune(frame.iloc[:300], "target", space=SPACE, n_trials=2, n_seeds=2,
                         storage=url, n_workers=1, progress=False)
    study = optuna.load_study(study_name=result.study_name, storage=url)
    record = study.user_attrs[MODEL_ATTR]
    assert record["trial_number"] == result.best.trial_number
    assert sorted(record["files"]) == ["model.json", "model.onnx", "model.safetensors"]

    out = tmp_path / "model"
    assert main(["export", result.study_name, "--out", str(out), "--storage", url]) == 0
    model = Predictor.load(out)
    assert model.n_members == 2  # the best trial's two seeds, averaged
    # R² of averaged predictions is at least the seeds' mean R² (MSE is convex)
    assert result.best.ensemble_score is not None
    assert result.best.ensemble_score >= result.best.test_score - 1e-6
    rows = frame.drop(columns="target").iloc[300:]
    predictions = model.predict(rows)
    test_r2 = 1 - np.sum((frame.target.iloc[300:] - predictions) ** 2) / np.sum(
        (frame.target.iloc[300:] - frame.target.iloc[300:].mean()) ** 2)
    assert test_r2 > -1.0  # a trained model, not noise (5 epochs on 180 rows)
    np.testing.assert_array_equal(Predictor.load(out).predict(rows), predictions)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"features": onnx_features(model.preprocessor, rows)})[0]
    np.testing.assert_allclose(got, predictions, rtol=1e-5, atol=1e-4)

    # `automl predict` reads the same model straight from the storage, by study name
    rows.to_csv(tmp_path / "rows.csv", index=False)
    out_csv = tmp_path / "predictions.csv"
    assert main(["predict", result.study_name, str(tmp_path / "rows.csv"), "--storage", url,
                 "--out", str(out_csv)]) == 0
    np.testing.assert_allclose(pd.read_csv(out_csv).prediction, predictions, rtol=1e-5)
