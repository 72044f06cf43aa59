"""scikit-learn estimators: ``fit`` tunes, ``predict`` uses the model the run delivers.

    >>> from automl.sklearn import AutoMLClassifier
    >>> model = AutoMLClassifier(n_trials=20).fit(X_train, y_train)
    >>> model.predict_proba(X_test)[:, 1]
    >>> cross_val_score(make_pipeline(SimpleImputer(), AutoMLClassifier(n_trials=5)), X, y)

Each ``fit`` is one :func:`automl.tune` run: the same checks, search, baselines and
seed ensemble; ``result_`` holds its comparison table (``print(automl.format_report(
model.result_))``). The runs go to ``storage`` (default: a SQLite file in a temporary
folder of this process, so fitting in a loop leaves nothing behind); training needs the
worker extras. ``X`` may be a DataFrame (text and date columns included: they are
encoded as ``tune`` encodes them) or a 2-D array; every column is kept as a feature
(``keep_identifiers``), since a scikit-learn caller chose them.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.sparse import issparse
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import DataConversionWarning
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted

from automl.errors import DataError
from automl.results.result import TuneResult

TARGET = "__automl_target__"


class _AutoMLEstimator(BaseEstimator):
    """What the classifier and the regressor share; the options are :class:`TuneOptions`'."""

    _task = "classification"

    def __init__(self, n_trials: int = 20, *, timeout: float | None = None,
                 budget: str = "default", space: Any = None, metric: str | None = None,
                 n_seeds: int = 3, random_state: int = 0, storage: str | None = None,
                 n_workers: int | None = None, progress: bool = False) -> None:
        self.n_trials = n_trials
        self.timeout = timeout
        self.budget = budget
        self.space = space
        self.metric = metric
        self.n_seeds = n_seeds
        self.random_state = random_state
        self.storage = storage
        self.n_workers = n_workers
        self.progress = progress

    def fit(self, X: Any, y: Any) -> _AutoMLEstimator:
        """Tune on ``X``, ``y``; the delivered model (the best configuration's seed
        ensemble) then predicts."""
        from automl.run.tune import tune

        frame = self._frame(X, fitting=True)
        labels = self._labels(y, len(frame))
        storage = self.storage or _scratch_storage()
        try:
            result = tune(frame.assign(**{TARGET: labels}), TARGET, space=self.space,
                          n_trials=self.n_trials, timeout=self.timeout, budget=self.budget,
                          metric=self.metric, n_seeds=self.n_seeds, seed=self.random_state,
                          storage=storage, task=self._task, n_workers=self.n_workers,
                          progress=self.progress, keep_identifiers=True)
        except DataError as exc:  # scikit-learn's callers expect bad data as a ValueError
            raise ValueError(exc.one_line()) from exc
        self.result_: TuneResult = result
        self.model_ = _delivered_model(storage, result.study_name)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Labels (as in ``y``) or values, one per row of ``X``."""
        check_is_fitted(self, "model_")
        return np.asarray(self.model_.predict(self._frame(X, fitting=False)))

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # missing values are imputed, as tune does
        tags.non_deterministic = True  # trials run in parallel: not bit-reproducible
        return tags

    def _labels(self, y: Any, n_rows: int) -> np.ndarray:
        """``y`` as a 1-D array, checked as scikit-learn's estimators check it."""
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target "
                             "y is None")
        labels = np.asarray(y)
        if labels.ndim == 2 and labels.shape[1] == 1:
            warnings.warn("A column-vector y was passed when a 1d array was expected; it is "
                          "used as y.ravel()", DataConversionWarning, stacklevel=3)
            labels = labels.ravel()
        if labels.ndim != 1 or len(labels) != n_rows:
            raise ValueError(f"y must be 1-D with one value per row of X ({n_rows}); got "
                             f"shape {labels.shape}")
        if labels.dtype.kind in "fc" and not np.isfinite(labels).all():
            raise ValueError("Input y contains NaN or infinity.")
        return labels

    def _frame(self, X: Any, *, fitting: bool) -> pd.DataFrame:
        """``X`` as a DataFrame with the column names the model was trained on."""
        if issparse(X):
            raise TypeError("Sparse data was passed, but dense data is required: use "
                            "X.toarray() (an MLP here trains on dense inputs)")
        if isinstance(X, pd.DataFrame):
            frame = X.copy()
            frame.columns = [str(c) for c in X.columns]
            names = np.asarray(frame.columns, dtype=object)
        else:
            array = np.asarray(X)
            if array.ndim != 2:
                raise ValueError(f"X must be 2-D (rows, features); got shape {array.shape}. "
                                 "Reshape your data: X.reshape(-1, 1) if it is one feature, "
                                 "X.reshape(1, -1) if it is one row")
            frame = pd.DataFrame(array, columns=[f"x{i}" for i in range(array.shape[1])])
            names = None
        named = names is not None and all(isinstance(c, str) for c in X.columns)
        if fitting:
            self.n_features_in_ = frame.shape[1]
            self._columns = list(frame.columns)  # what the model's rows must be called
            if named:
                self.feature_names_in_ = names
            elif hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
            return frame
        if frame.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {frame.shape[1]} features, but {type(self).__name__} "
                             f"is expecting {self.n_features_in_} features as input")
        if not named or not hasattr(self, "feature_names_in_"):
            frame.columns = list(self._columns)  # by position, as scikit-learn does
        return frame


class AutoMLClassifier(ClassifierMixin, _AutoMLEstimator):
    """Tunes an MLP classifier with :func:`automl.tune` (``score``: accuracy)."""

    _task = "classification"

    def fit(self, X: Any, y: Any) -> AutoMLClassifier:
        kind = type_of_target(np.asarray(y)) if y is not None else "unknown"
        if kind.startswith("continuous"):
            raise ValueError(f"Unknown label type: {kind}. A classifier needs class labels; "
                             "use AutoMLRegressor for a continuous target")
        super().fit(X, y)
        self.classes_ = np.asarray(self.model_.preprocessor.classes)
        return self

    def predict(self, X: Any) -> np.ndarray:
        labels = super().predict(X)
        return labels.astype(self.classes_.dtype) if self.classes_.dtype != object else labels

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, one column per class in ``classes_`` order."""
        check_is_fitted(self, "model_")
        return np.asarray(self.model_.predict_proba(self._frame(X, fitting=False)))


class AutoMLRegressor(RegressorMixin, _AutoMLEstimator):
    """Tunes an MLP regressor with :func:`automl.tune` (``score``: R²)."""

    _task = "regression"

    def predict(self, X: Any) -> np.ndarray:
        return super().predict(X).astype(np.float64)


def _delivered_model(storage: str, study_name: str) -> Any:
    """The run's stored best model (its seed ensemble), ready to predict on raw rows."""
    from automl.results.artifacts import read_model
    from automl.run.runtime import predictor_from_files

    return predictor_from_files(read_model(storage, study_name, onnx=False))


_SCRATCH: list[tempfile.TemporaryDirectory[str]] = []


def _scratch_storage() -> str:
    """A SQLite file in a temporary folder that lives as long as this process."""
    if not _SCRATCH:
        _SCRATCH.append(tempfile.TemporaryDirectory(prefix="automl-sklearn-"))
    return f"sqlite:///{Path(_SCRATCH[0].name) / 'runs.db'}"
