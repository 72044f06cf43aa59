"""The database artifact store, the stored model bundle, ``automl export`` and
``run.model()``, against SQLite and a real PostgreSQL."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import optuna
import pandas as pd
import pytest
import torch
from helpers import make_run
from optuna.artifacts import download_artifact, get_all_artifact_meta, upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from sqlalchemy import update

from automl.cli.main import main
from automl.client import Client
from automl.configs import ModelConfig, TrainConfig, TrialConfig
from automl.data import load_dataset
from automl.errors import AutoMLError
from automl.queue.engine import make_engine
from automl.queue.models import Run
from automl.queue.queries import table_counts
from automl.results.artifacts import (
    MODEL_ATTR,
    DatabaseArtifactStore,
    open_artifact_store,
    upload_model,
)
from workers.data import to_tensors
from workers.evaluate import fit
from workers.export import onnx_features
from workers.predictor import Predictor

torch.set_num_threads(1)


@pytest.fixture
def store(service_url: str) -> Iterator[DatabaseArtifactStore]:
    store = open_artifact_store(service_url)
    yield store
    store.engine.dispose()


@pytest.fixture(scope="module")
def model(digits_frame: pd.DataFrame) -> tuple[Predictor, dict[str, bytes], pd.DataFrame]:
    """A small trained digits model, its bundle (ONNX included) and raw rows."""
    frame = digits_frame.iloc[:300]
    prepared = load_dataset(frame, "target", seed=0)
    config = TrialConfig(ModelConfig((16,)), TrainConfig(max_epochs=3))
    predictor = Predictor(fit(config, to_tensors(prepared))[0], prepared.preprocessor, config)
    return predictor, predictor.to_files(), frame.drop(columns="target").iloc[:40]


def finished_study(url: str, name: str) -> optuna.Study:
    study = optuna.create_study(storage=url, study_name=name)
    study.tell(study.ask(), 0.5)
    return study


def test_the_store_round_trips_blobs_and_says_when_one_is_missing(
        store: DatabaseArtifactStore) -> None:
    blob = os.urandom(1 << 20)
    store.write("a-1", io.BytesIO(blob))
    with store.open_reader("a-1") as reader:
        assert reader.read() == blob
    store.write("a-1", io.BytesIO(b"replaced"))
    assert store.read("a-1") == b"replaced"
    store.remove("a-1")
    with pytest.raises(ArtifactNotFound):
        store.open_reader("a-1")
    with pytest.raises(ArtifactNotFound):
        store.remove("a-1")
    assert table_counts(store.engine)["automl_artifacts"] == 0


def test_optunas_artifact_api_works_on_the_store(store: DatabaseArtifactStore,
                                                service_url: str, tmp_path: Path) -> None:
    study = optuna.create_study(storage=service_url, study_name="with-artifacts")
    trial = study.ask()
    (tmp_path / "notes.txt").write_text("hello")
    artifact_id = upload_artifact(artifact_store=store, file_path=str(tmp_path / "notes.txt"),
                                  study_or_trial=trial)
    study.tell(trial, 1.0)
    (meta,) = get_all_artifact_meta(study.trials[0], storage=study._storage)
    assert meta.artifact_id == artifact_id and meta.filename == "notes.txt"
    download_artifact(artifact_store=store, file_path=str(tmp_path / "back.txt"),
                      artifact_id=artifact_id)
    assert (tmp_path / "back.txt").read_text() == "hello"


def test_export_writes_a_bundle_that_predicts_the_same(
        store: DatabaseArtifactStore, service_url: str, tmp_path: Path,
        model: tuple[Predictor, dict[str, bytes], pd.DataFrame]) -> None:
    predictor, files, rows = model
    study = finished_study(service_url, "embedded-study")
    ids = upload_model(store, study, 0, files)
    assert {m.artifact_id for m in get_all_artifact_meta(study)} == set(ids.values())
    assert study.user_attrs[MODEL_ATTR] == {"trial_number": 0, "files": ids}

    out = tmp_path / "out"
    assert main(["export", "embedded-study", "--out", str(out), "--storage", service_url]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(files)
    loaded = Predictor.load(out)
    np.testing.assert_array_equal(loaded.predict(rows), predictor.predict(rows))
    np.testing.assert_array_equal(loaded.predict_proba(rows), predictor.predict_proba(rows))
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    probabilities = session.run(None, {"features": onnx_features(loaded.preprocessor, rows)})[0]
    np.testing.assert_allclose(probabilities, predictor.predict_proba(rows), atol=1e-5)

    no_onnx = tmp_path / "no-onnx"
    assert main(["export", "embedded-study", "--out", str(no_onnx), "--storage", service_url,
                 "--no-onnx"]) == 0
    assert sorted(p.name for p in no_onnx.iterdir()) == ["model.json", "model.safetensors"]


def test_export_refuses_to_overwrite_without_force(
        store: DatabaseArtifactStore, service_url: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        model: tuple[Predictor, dict[str, bytes], pd.DataFrame]) -> None:
    upload_model(store, finished_study(service_url, "s"), 0, model[1])
    args = ["export", "s", "--out", str(tmp_path), "--storage", service_url, "--no-onnx"]
    assert main(args) == 0
    assert main(args) == 2
    assert "error E_CONFIG:" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0


def test_export_makes_the_onnx_file_when_the_store_lacks_it(
        store: DatabaseArtifactStore, service_url: str, tmp_path: Path,
        model: tuple[Predictor, dict[str, bytes], pd.DataFrame]) -> None:
    predictor, files, rows = model
    without = {k: v for k, v in files.items() if k != "model.onnx"}
    upload_model(store, finished_study(service_url, "s"), 0, without)
    assert main(["export", "s", "--out", str(tmp_path), "--storage", service_url]) == 0
    session = ort.InferenceSession(str(tmp_path / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    got = session.run(None, {"features": onnx_features(predictor.preprocessor, rows)})[0]
    np.testing.assert_allclose(got, predictor.predict_proba(rows), atol=1e-5)


def test_run_model_and_export_say_why_there_is_no_model(
        store: DatabaseArtifactStore, service_url: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        model: tuple[Predictor, dict[str, bytes], pd.DataFrame]) -> None:
    engine = make_engine(service_url)
    run_id = make_run(engine, [("trial", "0")])

    def export(key: str) -> str:
        assert main(["export", key, "--out", str(tmp_path / "x"), "--storage",
                     service_url]) == 2
        return capsys.readouterr().err

    def set_status(status: str) -> None:
        with engine.begin() as connection:
            connection.execute(update(Run).where(Run.id == run_id).values(status=status))

    assert "error E_CONFIG: no run or study named 'nope'" in export("nope")
    assert "error E_NO_MODEL:" in export(run_id) and "queued" in export(run_id)
    set_status("failed")
    assert "error E_RUN_FAILED:" in export(run_id)
    set_status("succeeded")
    study = finished_study(service_url, f"s-{run_id}")
    assert "error E_NO_MODEL:" in export(run_id)  # finished, but nothing stored
    upload_model(store, study, 0, model[1])
    predictor, _, rows = model
    client = Client(service_url)
    np.testing.assert_array_equal(client.run(run_id).model().predict(rows),
                                  predictor.predict(rows))
    assert main(["export", run_id, "--out", str(tmp_path / "ok"), "--storage",
                 service_url, "--no-onnx"]) == 0
    assert not (tmp_path / "x").exists()
    client.close()
    engine.dispose()


def test_export_needs_our_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'plain-optuna.db'}"
    optuna.create_study(storage=url, study_name="plain")
    assert main(["export", "plain", "--out", str(tmp_path / "m"), "--storage", url]) == 2
    assert "automl db upgrade" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_a_service_run_stores_its_model_for_export(tmp_path: Path,
                                                  digits_frame: pd.DataFrame) -> None:
    """Submit, train with a real worker, then ``automl export`` the run (SQLite)."""
    from automl.queue.schema import upgrade

    url = f"sqlite:///{tmp_path / 'service.db'}"
    upgrade(url)
    client = Client(url)
    space = {"max_epochs": 4, "patience": 2, "n_layers": 1, "units": 16}
    run = client.submit(digits_frame.iloc[:400], "target", space=space, n_trials=2, n_seeds=1)
    worker = subprocess.run([sys.executable, "-m", "automl", "worker", "--storage", url,
                             "--idle-exit", "2"], capture_output=True, text=True, timeout=600)
    assert worker.returncode == 0, worker.stderr[-3000:]
    result = run.wait(progress=False, timeout=60)
    assert main(["export", run.id, "--out", str(tmp_path / "model"), "--storage", url]) == 0
    exported = Predictor.load(tmp_path / "model")
    rows = digits_frame.drop(columns="target").iloc[400:450]
    np.testing.assert_array_equal(exported.predict(rows), run.model().predict(rows))
    assert exported.config is not None
    assert exported.config.model.hidden_units == tuple(result["best"]["architecture"]
                                                       ["hidden_units"])
    session = ort.InferenceSession(str(tmp_path / "model" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    got = session.run(None, {"features": onnx_features(exported.preprocessor, rows)})[0]
    np.testing.assert_allclose(got, exported.predict_proba(rows), atol=1e-5)
    study = optuna.load_study(study_name=f"automl-{run.id}", storage=url)
    assert study.user_attrs[MODEL_ATTR]["trial_number"] == result["best"]["trial_number"]
    client.close()


@pytest.mark.parametrize("hostile", ["../../escaped.json", "/tmp/automl-escaped.json",
                                     "..", "sub/model.json", "a\\b.json", ""])
def test_hostile_file_names_in_storage_are_refused_where_read_and_written(
        store: DatabaseArtifactStore, service_url: str, tmp_path: Path, hostile: str,
        capsys: pytest.CaptureFixture[str],
        model: tuple[Predictor, dict[str, bytes], pd.DataFrame]) -> None:
    """Issue 17: a model record naming files outside --out (planted by anyone who can
    write the store) makes export fail with a typed error, and nothing is written."""
    files = model[1]
    study = finished_study(service_url, "s")
    ids = upload_model(store, study, 0, files)
    study.set_user_attr(MODEL_ATTR, {"trial_number": 0,
                                     "files": {**ids, hostile: ids["model.json"]}})
    out = tmp_path / "deep" / "out"
    assert main(["export", "s", "--out", str(out), "--storage", service_url, "--force"]) == 2
    assert "error E_UNSAFE_FORMAT:" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "escaped.json").exists()
    assert not Path("/tmp/automl-escaped.json").exists()
    with pytest.raises(AutoMLError, match="not a plain file name"):
        upload_model(store, study, 0, {**files, hostile: b"{}"})
