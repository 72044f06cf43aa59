"""Real tables (issue 16): missing values, identifiers, dates and spaces are handled with
a note, and a model predicts rows with missing values the same way in ``Predictor`` and
ONNX, or refuses them with one typed error naming the column."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch
from tables import messy_frame, rows_with_gaps

from automl.configs import ModelConfig, TrainConfig, TrialConfig
from automl.data import Preprocessor, load_dataset
from automl.errors import ConfigError, DtypeError, NonFiniteError, ShapeError
from workers.data import to_tensors
from workers.evaluate import evaluate_seeds
from workers.export import onnx_bytes, onnx_columns, onnx_features
from workers.predictor import Predictor

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    prepared = load_dataset(messy_frame(), "churned", seed=0)
    config = TrialConfig(ModelConfig((16,), "relu", batch_norm=True),
                         TrainConfig(max_epochs=4, batch_size=32, seed=1))
    evaluation = evaluate_seeds(config, [1, 2], to_tensors(prepared))
    return Predictor(evaluation.model, prepared.preprocessor, config)


def test_the_messy_table_is_read_with_a_note_for_each_change() -> None:
    prepared = load_dataset(messy_frame(), "churned", seed=0)
    notes = "\n".join(prepared.warnings)
    assert "dropped 4 row(s) whose target 'churned' is missing" in notes
    assert "'customer_id' (whole numbers, a different one in every row)" in notes
    assert "'notes' (missing in 394 of 396 rows)" in notes
    assert "date column(s) become year" in notes and "'signup'" in notes
    assert "'age' (40 missing, median" in notes and "'income' (20 missing" in notes
    assert "a missing category is a level of its own: 'city' (20 missing)" in notes
    assert "spaces stripped from text" in notes
    pre = prepared.preprocessor
    assert pre.missing_indicators == ["age", "income"]
    assert pre.date_columns == ["signup"] and "signup.month" in pre.numeric_columns
    assert pre.categorical_levels["city"] == ["(missing)", "Lille", "Lyon", "Nice", "Paris"]
    assert "customer_id" not in pre.input_columns and "notes" not in pre.input_columns
    assert np.isfinite(prepared.x_train).all() and prepared.n_features == pre.n_features


def test_identifiers_can_be_kept() -> None:
    prepared = load_dataset(messy_frame(), "churned", keep_identifiers=True)
    assert "customer_id" in prepared.preprocessor.numeric_columns
    codes = messy_frame(60).assign(code=[f"C{i}" for i in range(60)])
    kept = load_dataset(codes, "churned", keep_identifiers=True).preprocessor
    assert 0 < len(kept.categorical_levels["code"]) < 56  # one-hot: the training split's levels
    with pytest.raises(DtypeError, match=r"'code'.*kept as asked"):
        load_dataset(messy_frame().assign(code=[f"C{i}" for i in range(400)]), "churned",
                     keep_identifiers=True)


def test_rows_with_missing_values_predict_the_same_in_predictor_and_onnx(
        predictor: Predictor) -> None:
    rows = rows_with_gaps(messy_frame())
    probabilities = predictor.predict_proba(rows)
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    session = ort.InferenceSession(onnx_bytes(predictor), providers=["CPUExecutionProvider"])
    features = onnx_features(predictor.preprocessor, rows)
    assert features.shape[1] == len(onnx_columns(predictor.preprocessor))
    assert np.isnan(features[0, 0]) and features[2, onnx_columns(
        predictor.preprocessor).index("city=(missing)")] == 1.0
    got = session.run(None, {"features": features})[0]
    np.testing.assert_allclose(got, probabilities, atol=1e-5)


def test_rows_come_as_a_frame_a_list_of_dicts_or_one_dict(predictor: Predictor) -> None:
    rows = rows_with_gaps(messy_frame())
    records = rows.to_dict(orient="records")
    expected = predictor.predict_proba(rows)
    np.testing.assert_allclose(predictor.predict_proba(records), expected, atol=1e-6)
    np.testing.assert_allclose(predictor.predict_proba(records[4]), expected[4:5], atol=1e-6)
    extra = rows.assign(unused="ignored", customer_id=1)
    np.testing.assert_array_equal(predictor.predict(extra), predictor.predict(rows))
    assert set(predictor.predict(rows)) <= {"yes", "no"}


def test_a_missing_imputed_value_changes_nothing_but_that_input(predictor: Predictor) -> None:
    """Imputation, not a default class: a row missing its age predicts as the row with
    the training median's age plus the 'was missing' flag, never as NaN."""
    row = rows_with_gaps(messy_frame()).iloc[[0]]
    assert np.isfinite(predictor.predict_proba(row)).all()
    pre = predictor.preprocessor
    encoded = pre.transform(row)
    assert encoded[0, pre.numeric_columns.index("age")] == pytest.approx(
        (pre.medians[0] - pre.means[0]) / pre.stds[0], rel=1e-5)
    assert encoded[0, len(pre.numeric_columns)] == 1.0  # age's "was missing" input


@pytest.mark.parametrize(("change", "error", "field", "says"), [
    (lambda r: r.drop(columns=["age", "city"]), ShapeError, "age", "'age', 'city'"),
    (lambda r: r.assign(income=np.inf), NonFiniteError, "income", "infinite"),
    (lambda r: r.assign(age="forty"), DtypeError, "age", "numbers"),
    (lambda r: r.assign(signup="not a date"), DtypeError, "signup", "dates"),
    (lambda r: "age=40", ConfigError, "rows", "DataFrame"),
])
def test_bad_prediction_rows_get_one_typed_error_naming_the_column(
        predictor: Predictor, change: object, error: type, field: str, says: str) -> None:
    rows = rows_with_gaps(messy_frame())
    with pytest.raises(error) as info:
        predictor.predict(change(rows))  # type: ignore[operator]
    assert info.value.field == field and says in info.value.message


def test_rows_outside_the_training_range_are_held_at_its_edge(predictor: Predictor) -> None:
    """An MLP extrapolates linearly: a value far outside what training saw (a typo, a unit
    error) is clipped to the training range, in Predictor and ONNX alike, as a tree would
    hold it; beyond float32 it is refused, naming the column, never answered with NaN."""
    pre = predictor.preprocessor
    column = pre.numeric_columns.index("income")
    high, low = pre.highs[column], pre.lows[column]
    rows = rows_with_gaps(messy_frame()).iloc[:4]
    session = ort.InferenceSession(onnx_bytes(predictor), providers=["CPUExecutionProvider"])
    with pytest.raises(NonFiniteError, match="income"):
        predictor.predict_proba(rows.assign(income=1e39))
    for far, edge in ((1e37, high), (high * 50, high), (-1e6, low)):
        expected = predictor.predict_proba(rows.assign(income=edge))
        got = predictor.predict_proba(rows.assign(income=far))
        np.testing.assert_array_equal(got, expected)
        onnx = session.run(None, {"features": onnx_features(pre, rows.assign(income=far))})[0]
        np.testing.assert_allclose(onnx, expected, atol=1e-5)


def test_a_bundle_from_before_clipping_does_not_clip() -> None:
    frame = messy_frame().drop(columns=["signup", "notes", "customer_id"]).dropna()
    saved = load_dataset(frame, "churned", seed=0).preprocessor.to_dict()
    del saved["lows"], saved["highs"]
    old = Preprocessor(**json.loads(json.dumps(saved)))
    column = old.numeric_columns.index("income")
    far = frame.drop(columns="churned").iloc[:2].assign(income=1e30)
    expected = (1e30 - old.means[column]) / old.stds[column]
    assert old.transform(far)[:, column] == pytest.approx([expected] * 2, rel=1e-6)


def test_preprocessing_saved_before_imputation_still_loads() -> None:
    """model.json of earlier versions has no medians, indicators or dates."""
    frame = messy_frame().drop(columns=["signup", "notes", "customer_id"]).dropna()
    saved = load_dataset(frame, "churned", seed=0).preprocessor.to_dict()
    for key in ("medians", "missing_indicators", "date_columns"):
        del saved[key]
    old = Preprocessor(**json.loads(json.dumps(saved)))
    assert old.medians == old.means and old.missing_indicators == []
    rows = frame.drop(columns="churned").iloc[:5]
    np.testing.assert_array_equal(old.transform(rows), Preprocessor(
        **load_dataset(frame, "churned", seed=0).preprocessor.to_dict()).transform(rows))


def test_encoding_leaves_the_callers_rows_untouched() -> None:
    """The numeric block is imputed and scaled in place: it must be a copy."""
    frame = messy_frame().drop(columns=["signup", "city", "notes", "customer_id"])
    pre = load_dataset(frame, "churned", seed=0).preprocessor
    rows = frame.drop(columns="churned").astype(np.float64)
    before = rows.copy()
    pre.transform(rows)
    pd.testing.assert_frame_equal(rows, before)
