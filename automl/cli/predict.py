"""``automl predict MODEL DATA``: the delivered model's predictions for a table's rows.

    automl predict model/ new_rows.csv --out predictions.csv     # a folder `export` wrote
    automl predict RUN_OR_STUDY new_rows.csv --proba             # straight from the storage

Rows are checked as training checked them (issue 7): missing values are imputed the same
way; a missing column or an infinite value is one typed error naming it, and nothing is
written. The output is CSV, one line per row in the input's order: ``prediction`` (a
label, or a value in the target's units) and, with ``--proba``, one ``proba_CLASS``
column per class. Needs the worker extras (torch), as the model runs here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from automl.cli.main import limits_from_env, storage_argument, storage_of
from automl.errors import ConfigError
from automl.results.artifacts import MODEL_FILES, read_model
from automl.run.runtime import predictor_from_files

SKLEARN_PREFIX = "sklearn:"


def register(commands: argparse._SubParsersAction) -> None:
    predict = commands.add_parser(
        "predict", help="predict with a run's best model (an exported folder or a run)")
    predict.add_argument("model", metavar="MODEL",
                         help="a folder `automl export` wrote, a service run id, or the "
                         "study name of an 'automl tune' run")
    predict.add_argument("data", help="the rows: CSV/TSV (optionally .gz), Parquet or .npz "
                         "file, or sklearn:NAME; extra columns (the target) are ignored")
    predict.add_argument("--out", help="CSV file to write (default: stdout)")
    predict.add_argument("--proba", action="store_true",
                         help="add each class's probability (classification models)")
    predict.add_argument("--force", action="store_true", help="overwrite --out")
    storage_argument(predict)
    predict.set_defaults(run=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and not args.force:
        raise ConfigError(f"{out} exists: pass --force to overwrite it, or choose another "
                          "--out", field="out")
    predictor = load_predictor(args.model, args)
    table = predictions(predictor, read_rows(args.data), proba=args.proba)
    if out is None:
        table.to_csv(sys.stdout, index=False)
    else:
        table.to_csv(out, index=False)
        print(f"wrote {len(table):,} predictions to {out}", file=sys.stderr)
    return 0


def load_predictor(model: str, args: argparse.Namespace) -> Any:
    """The model of an exported folder (it holds ``model.json``), or else of the run or
    study of that name in the storage."""
    folder = Path(model)
    json_file, weights_file, _onnx = MODEL_FILES
    if (folder / json_file).is_file():
        names = (json_file, weights_file)
        return predictor_from_files({name: (folder / name).read_bytes() for name in names})
    if folder.exists():
        raise ConfigError(f"{folder} has no {json_file}: give the folder `automl export` "
                          "wrote, or a run id or study name", field="model")
    return predictor_from_files(read_model(storage_of(args), model, onnx=False))


def read_rows(data: str) -> pd.DataFrame:
    """The rows to predict, read with the limits and checks ``tune`` applies."""
    if data.startswith(SKLEARN_PREFIX):
        from automl.data.sources import bundled_dataset

        return bundled_dataset(data.removeprefix(SKLEARN_PREFIX))
    from automl.data.sources import read_file

    return read_file(Path(data), limits_from_env())


def predictions(predictor: Any, rows: pd.DataFrame, *, proba: bool) -> pd.DataFrame:
    """One line per row: ``prediction``, then ``proba_CLASS`` columns if ``proba``."""
    table = pd.DataFrame({"prediction": predictor.predict(rows)})
    if proba:
        classes = predictor.preprocessor.classes
        if not classes:
            raise ConfigError("--proba is for classification models; this one predicts "
                              "values (regression)", field="proba")
        probabilities = predictor.predict_proba(rows)
        for index, label in enumerate(classes):
            table[f"proba_{label}"] = probabilities[:, index]
    return table
