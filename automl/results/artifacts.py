"""Optuna's artifact store, kept in the run's own database, and the best model in it.

:class:`DatabaseArtifactStore` implements Optuna's ``ArtifactStore`` protocol with the
blobs in the ``automl_artifacts`` table, so one storage URL holds everything: workers on
many machines need no shared filesystem, and an embedded SQLite file carries its models.
optuna-dashboard shows them when started with ``artifact_store=open_artifact_store(url)``.

At the end of every run the best model's bundle (``model.json``, ``model.safetensors``,
``model.onnx``; see :mod:`workers.predictor`) is uploaded as artifacts of the study, and
the study's user attribute ``automl_model`` records which trial it is the model of and
the artifact id of each file. (They go on the study, not the trial: Optuna refuses to
change a finished trial, and the best model is retrained after the trials finish.)
Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import optuna
from optuna.artifacts import get_all_artifact_meta, upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from sqlalchemy import Engine

from automl.errors import ConfigError, NoModelError, RunFailedError, UnsafeFormatError
from automl.queue import queries
from automl.queue.engine import connection_url, is_sqlite, make_engine
from automl.queue.schema import check_schema

MODEL_ATTR = "automl_model"
MODEL_FILES = ("model.json", "model.safetensors", "model.onnx")
ONNX_FILE = "model.onnx"
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def plain_file_name(name: object) -> str:
    """``name`` if it is a plain file name (letters, digits, ``_``, ``-`` and dots, no
    separator, no ``..``, not absolute); else :class:`UnsafeFormatError`. Model file names
    are read from storage, which every worker role (and anyone sharing a SQLite file)
    can write: they are checked where they are written and where they are read."""
    if not isinstance(name, str) or not _PLAIN_NAME.match(name) or ".." in name:
        raise UnsafeFormatError(f"model file name {name!r} is not a plain file name: the "
                                "stored model record was tampered with or is corrupt",
                                field="run")
    return name


class DatabaseArtifactStore:
    """Optuna's ``ArtifactStore`` protocol over the ``automl_artifacts`` table."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def open_reader(self, artifact_id: str) -> BinaryIO:
        data = queries.read_artifact(self.engine, artifact_id)
        if data is None:
            raise ArtifactNotFound(f"no artifact with id {artifact_id}")
        return io.BytesIO(data)

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        queries.write_artifact(self.engine, artifact_id, content_body.read())

    def remove(self, artifact_id: str) -> None:
        if not queries.delete_artifact(self.engine, artifact_id):
            raise ArtifactNotFound(f"no artifact with id {artifact_id}")

    def read(self, artifact_id: str) -> bytes:
        with self.open_reader(artifact_id) as reader:
            return reader.read()


def open_artifact_store(url: str) -> DatabaseArtifactStore:
    """The artifact store of the database at ``url`` (for optuna-dashboard, too)."""
    return DatabaseArtifactStore(make_engine(url))


def upload_model(store: DatabaseArtifactStore, study: optuna.Study, trial_number: int,
                 files: Mapping[str, bytes]) -> dict[str, str]:
    """Upload a model bundle as artifacts of ``study``, recorded in ``automl_model``.

    Returns file name -> artifact id. A second upload (a retried final evaluation)
    replaces the record; the earlier files stay listed as study artifacts.
    """
    ids: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="automl-model-") as folder:
        order = [n for n in MODEL_FILES if n in files]
        for name in order + sorted(set(files) - set(order)):
            path = Path(folder) / plain_file_name(name)
            path.write_bytes(files[name])
            ids[name] = upload_artifact(artifact_store=store, file_path=str(path),
                                        study_or_trial=study)
    study.set_user_attr(MODEL_ATTR, {"trial_number": trial_number, "files": ids})
    return ids


def read_model(url: str, run_or_study: str, *, onnx: bool = True,
               engine: Engine | None = None) -> dict[str, bytes]:
    """The stored model bundle (file name -> bytes) of a service run id or a study name.

    Raises ``ConfigError`` (no such run or study), ``RunFailedError`` (the run failed or
    was cancelled) or ``NoModelError`` (not finished yet, or nothing stored).
    """
    own_engine = engine is None
    engine = engine or make_engine(url)
    try:
        check_schema(engine)
        with _optuna_storage(url) as storage:
            study = _study_of(engine, storage, run_or_study)
            record = study.user_attrs.get(MODEL_ATTR)
            where = f"study {study.study_name}"
            if not record:
                raise NoModelError(f"{where} has no stored model: its run did not finish "
                                   "(or finished before models were stored)", field="run")
            listed = {meta.artifact_id for meta in get_all_artifact_meta(study)}
            store = DatabaseArtifactStore(engine)
            files = {}
            for name, artifact_id in record["files"].items():
                plain_file_name(name)
                if name == ONNX_FILE and not onnx:
                    continue
                try:
                    if artifact_id not in listed:
                        raise ArtifactNotFound(artifact_id)
                    files[name] = store.read(artifact_id)
                except ArtifactNotFound as exc:
                    raise NoModelError(f"{where}: the model's {name} (artifact {artifact_id})"
                                       " is missing from the artifact store",
                                       field="run") from exc
            return files
    finally:
        if own_engine:
            engine.dispose()


def _study_of(engine: Engine, storage: optuna.storages.BaseStorage,
              run_or_study: str) -> optuna.Study:
    run = queries.run_of(engine, run_or_study)
    if run is not None:
        if run.status in ("queued", "running"):
            raise NoModelError(f"run {run.id} is {run.status}: its model is stored when it "
                               "finishes", field="run")
        if run.status != "succeeded":
            reason = f": {run.error}" if run.error else ""
            raise RunFailedError(f"run {run.id} is {run.status}{reason}; it has no model",
                                 field="run")
        name = run.study_name
    else:
        name = run_or_study
    try:
        return optuna.load_study(study_name=name, storage=storage,
                                 sampler=optuna.samplers.RandomSampler())
    except KeyError as exc:
        raise ConfigError(f"no run or study named {run_or_study!r} in this storage",
                          field="run") from exc


@contextlib.contextmanager
def _optuna_storage(url: str) -> Iterator[optuna.storages.RDBStorage]:
    kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}} if is_sqlite(url) else {}
    storage = optuna.storages.RDBStorage(connection_url(url), engine_kwargs=kwargs)
    try:
        yield storage
    finally:
        storage.engine.dispose()
