"""The model bundle: save/load gives identical predictions, ONNX the same within tolerance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_diabetes, load_digits

from automl.configs import ModelConfig, TrainConfig, TrialConfig
from automl.data import load_dataset
from workers.data import to_tensors
from workers.ensemble import SeedEnsemble
from workers.evaluate import evaluate_seeds, fit
from workers.export import export_onnx, onnx_columns, onnx_features
from workers.predictor import FORMAT_VERSION, Predictor

torch.set_num_threads(1)


def mixed_frame(n: int = 240) -> pd.DataFrame:
    """Numeric columns on very different scales and a categorical one."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"income": rng.normal(5e4, 1e4, n), "rate": rng.normal(0, 0.01, n),
                          "colour": rng.choice(["red", "green", "blue"], n)})
    signal = frame.income / 1e4 + frame.rate * 100 + (frame.colour == "red") * 2
    return frame.assign(target=signal + rng.normal(0, 0.1, n))


def frame_for(task: str) -> pd.DataFrame:
    if task == "multiclass":
        return load_digits(as_frame=True).frame.iloc[:400]
    if task == "regression":
        return load_diabetes(as_frame=True).frame.iloc[:300]
    if task == "mixed_regression":
        return mixed_frame()
    frame = mixed_frame()  # binary, with a categorical feature
    return frame.assign(target=np.where(frame.target > frame.target.median(), "yes", "no"))


def trained(task: str, activation: str = "relu") -> tuple[Predictor, pd.DataFrame]:
    """A small model (batch norm and dropout included), and raw rows to predict on."""
    frame = frame_for(task)
    prepared = load_dataset(frame, "target", seed=0)
    loss = "mse" if prepared.task == "regression" else "cross_entropy"
    config = TrialConfig(ModelConfig((16, 8), activation, batch_norm=True, dropout=0.1),
                         TrainConfig(max_epochs=3, batch_size=32, loss=loss, seed=3))
    model, _ = fit(config, to_tensors(prepared))
    return Predictor(model, prepared.preprocessor, config), frame.drop(columns="target")


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_a_saved_model_loads_back_with_identical_predictions(task: str, tmp_path: Path) -> None:
    predictor, rows = trained(task)
    paths = predictor.save(tmp_path / "model", onnx=False)
    assert sorted(p.name for p in paths) == ["model.json", "model.safetensors"]
    loaded = Predictor.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.predict(rows), predictor.predict(rows))
    if predictor.preprocessor.task != "regression":
        np.testing.assert_array_equal(loaded.predict_proba(rows), predictor.predict_proba(rows))
        assert type(loaded.predict(rows)[0]) is type(predictor.predict(rows)[0])
    for name, tensor in predictor.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor.cpu())
    info = json.loads((tmp_path / "model" / "model.json").read_text())
    assert info["format_version"] == FORMAT_VERSION and info["onnx"] is None
    assert info["task"] == predictor.preprocessor.task
    assert info["classes"] == predictor.preprocessor.classes
    assert info["config"]["model"]["hidden_units"] == [16, 8]
    assert info["preprocessor"]["means"] == predictor.preprocessor.means


@pytest.mark.parametrize(("task", "activation"), [("binary", "selu"), ("multiclass", "gelu"),
                                                  ("regression", "tanh"),
                                                  ("mixed_regression", "leaky_relu")])
def test_onnx_gives_the_same_predictions_under_onnxruntime(task: str, activation: str,
                                                           tmp_path: Path) -> None:
    predictor, rows = trained(task, activation)
    path = export_onnx(predictor, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inputs,), (output,) = session.get_inputs(), session.get_outputs()
    pre = predictor.preprocessor
    assert inputs.name == "features" and inputs.type == "tensor(double)"
    assert inputs.shape[1] == len(onnx_columns(pre))
    for batch in (rows.iloc[:1], rows):  # the batch axis is dynamic
        got = session.run(None, {"features": onnx_features(pre, batch)})[0]
        if pre.task == "regression":
            assert output.name == "prediction" and got.shape == (len(batch),)
            np.testing.assert_allclose(got, predictor.predict(batch), rtol=1e-5, atol=1e-5)
        else:
            assert output.name == "probabilities"
            np.testing.assert_allclose(got, predictor.predict_proba(batch), atol=1e-5)
            labels = np.asarray(pre.classes, dtype=object)[got.argmax(axis=1)]
            assert (labels == predictor.predict(batch)).mean() > 0.99  # ties aside


def test_the_bundle_describes_its_onnx_input_and_output() -> None:
    predictor, rows = trained("binary")
    files = predictor.to_files()
    assert list(files) == ["model.json", "model.safetensors", "model.onnx"]
    info = json.loads(files["model.json"])
    assert info["onnx"]["input"]["columns"] == ["income", "rate", "colour=blue",
                                                "colour=green", "colour=red"]
    assert info["onnx"]["output"]["name"] == "probabilities"
    assert info["classes"] == ["no", "yes"]
    features = onnx_features(predictor.preprocessor, rows.iloc[:3])
    assert features[:, 0].tolist() == rows.income.iloc[:3].tolist()  # raw, not standardised
    assert Predictor.from_files(files).predict(rows).tolist() == predictor.predict(rows).tolist()


def test_a_failed_onnx_export_still_saves_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    import workers.export

    def broken(_predictor: Predictor) -> bytes:
        raise RuntimeError("no exporter here")

    monkeypatch.setattr(workers.export, "onnx_bytes", broken)
    predictor, rows = trained("regression")
    files = predictor.to_files()
    assert "model.onnx" not in files
    assert "no exporter here" in json.loads(files["model.json"])["onnx"]["error"]
    np.testing.assert_array_equal(Predictor.from_files(files).predict(rows),
                                  predictor.predict(rows))


def test_an_unknown_bundle_format_is_refused(tmp_path: Path) -> None:
    predictor, _ = trained("regression")
    files = predictor.to_files(onnx=False)
    info = json.loads(files["model.json"])
    files["model.json"] = json.dumps({**info, "format_version": 99}).encode()
    with pytest.raises(ValueError, match="version"):
        Predictor.from_files(files)


def trained_ensemble(task: str) -> tuple[Predictor, pd.DataFrame]:
    """Three seeds of a small model averaged: the bundle a tuning run stores."""
    frame = frame_for(task)
    prepared = load_dataset(frame, "target", seed=0)
    loss = "mse" if prepared.task == "regression" else "cross_entropy"
    config = TrialConfig(ModelConfig((16, 8), "gelu", batch_norm=True, dropout=0.1),
                         TrainConfig(max_epochs=3, batch_size=32, loss=loss))
    evaluation = evaluate_seeds(config, [3, 4, 5], to_tensors(prepared))
    return (Predictor(evaluation.model, prepared.preprocessor, config),
            frame.drop(columns="target"))


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_a_seed_ensemble_round_trips_and_exports(task: str, tmp_path: Path) -> None:
    predictor, rows = trained_ensemble(task)
    assert isinstance(predictor.model, SeedEnsemble) and predictor.n_members == 3
    predictor.save(tmp_path / "model")
    info = json.loads((tmp_path / "model" / "model.json").read_text())
    assert info["members"] == 3 and info["format_version"] == FORMAT_VERSION
    loaded = Predictor.load(tmp_path / "model")
    assert isinstance(loaded.model, SeedEnsemble) and loaded.n_members == 3
    np.testing.assert_array_equal(loaded.predict(rows), predictor.predict(rows))
    session = ort.InferenceSession(str(tmp_path / "model" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    got = session.run(None, {"features": onnx_features(predictor.preprocessor, rows)})[0]
    if task == "regression":
        np.testing.assert_allclose(got, predictor.predict(rows), rtol=1e-5, atol=1e-5)
    else:
        np.testing.assert_allclose(got, predictor.predict_proba(rows), atol=1e-5)
        members = [Predictor(m, predictor.preprocessor, predictor.config)
                   for m in predictor.model.members]
        mean = np.mean([m.predict_proba(rows) for m in members], axis=0)
        np.testing.assert_allclose(predictor.predict_proba(rows), mean, atol=1e-6)


def test_a_version_1_bundle_of_one_mlp_still_loads() -> None:
    predictor, rows = trained("multiclass")
    files = predictor.to_files(onnx=False)
    info = json.loads(files["model.json"])
    assert info["members"] == 1
    del info["members"]
    files["model.json"] = json.dumps({**info, "format_version": 1}).encode()
    loaded = Predictor.from_files(files)
    assert not isinstance(loaded.model, SeedEnsemble)
    np.testing.assert_array_equal(loaded.predict(rows), predictor.predict(rows))


def test_exporting_onnx_here_without_the_worker_extras_says_how_to_get_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from automl.cli.export import _onnx_here
    from automl.errors import ConfigError
    from automl.run import runtime

    def missing(files: dict[str, bytes]) -> bytes:
        raise ConfigError("exporting to ONNX needs the worker extras (torch is missing)",
                          field=runtime.WORKER_EXTRAS)

    monkeypatch.setattr(runtime, "onnx_from_files", missing)
    with pytest.raises(ConfigError, match=r"no ONNX file and exporting .* or pass --no-onnx"):
        _onnx_here({})

    def broken(files: dict[str, bytes]) -> bytes:  # any other refusal is not about extras
        raise ConfigError("model.json is not a model bundle", field="model")

    monkeypatch.setattr(runtime, "onnx_from_files", broken)
    with pytest.raises(ConfigError, match=r"^model\.json is not a model bundle"):
        _onnx_here({})
