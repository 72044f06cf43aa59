"""``automl export RUN --out DIR``: the best model's files, from the artifact store.

    automl export RUN_ID --out model/ [--storage URL] [--no-onnx] [--force]
    automl export STUDY_NAME --out model/     # an embedded `automl tune` run

Writes ``model.json`` (architecture, preprocessing, classes), ``model.safetensors`` and
``model.onnx``; ``Predictor.load(DIR)`` predicts on raw rows again. Needs no Ray; torch
only if the stored bundle lacks its ONNX file (it is then exported here).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from automl.cli.main import storage_argument, storage_of
from automl.errors import ConfigError
from automl.results.artifacts import ONNX_FILE, read_model


def register(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser(
        "export", help="write a finished run's best model to a folder (model.json, "
        "model.safetensors, model.onnx)")
    export.add_argument("run_or_study", metavar="RUN",
                        help="a service run id, or the study name of an 'automl tune' run")
    export.add_argument("--out", required=True, help="folder to write into (created)")
    storage_argument(export)
    export.add_argument("--no-onnx", action="store_true", help="skip model.onnx")
    export.add_argument("--force", action="store_true", help="overwrite files in --out")
    export.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> int:
    for path in export_model(storage_of(args), args.run_or_study, Path(args.out),
                             onnx=not args.no_onnx, force=args.force):
        print(path)
    return 0


def export_model(url: str, run_or_study: str, out: Path, *, onnx: bool = True,
                 force: bool = False) -> list[Path]:
    """Write the stored bundle of a run (or study) into ``out``; returns the paths."""
    files = read_model(url, run_or_study, onnx=onnx)
    if onnx and ONNX_FILE not in files:
        files[ONNX_FILE] = _onnx_here(files)
    clashes = [name for name in files if (out / name).exists()]
    if clashes and not force:
        raise ConfigError(f"{out} already has {', '.join(clashes)}: pass --force to "
                          "overwrite, or choose another --out", field="out")
    out.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():  # read_model checked that each is a plain file name
        (out / name).write_bytes(content)
    return [out / name for name in files]


def _onnx_here(files: dict[str, bytes]) -> bytes:
    """The stored bundle has no ONNX file (its export failed on the worker): export it
    here from the weights, which needs the worker extras."""
    from automl.run.runtime import WORKER_EXTRAS, onnx_from_files

    try:
        return onnx_from_files(files)
    except ConfigError as exc:
        if exc.field != WORKER_EXTRAS:
            raise
        raise ConfigError(f"the stored model has no ONNX file and {exc}, or pass --no-onnx",
                          field="onnx") from exc
