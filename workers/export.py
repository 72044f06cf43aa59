"""The best model as ONNX: imputation, standardisation, the MLP and the output transform
in one graph.

The graph's input ``features`` is a float64 matrix (dynamic batch size) with the columns
``onnx_columns(preprocessor)`` in that order: every numeric column as it is in the data,
NaN where a value is missing (the graph imputes the training median, adds the "was
missing" inputs, clips to the training range and standardises, in float64 like
:class:`Preprocessor`; a date column
comes as its parts, ``signup.year`` and so on, as :func:`onnx_features` computes them),
then one 0/1 indicator per categorical column and level (``"colour=red"``; a missing
category is the level ``"colour=(missing)"`` when training had it; all 0 for a level
not seen in training). Its output is what :class:`~workers.predictor.Predictor` gives:

* classification: ``probabilities``, float32 ``(batch, n_classes)`` in the order of
  ``classes`` in ``model.json`` (binary: the negative class, then the positive one); the
  label is ``classes[argmax]``;
* regression: ``prediction``, float32 ``(batch,)`` in the target's units.

Exported with torch's ``torch.export``-based exporter (the default since torch 2.9; the
TorchScript one is deprecated), offline, via onnxscript.
"""

from __future__ import annotations

import copy
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from automl.data import Preprocessor

if TYPE_CHECKING:
    from workers.predictor import Predictor

INPUT_NAME = "features"
OPSET = 18


def onnx_columns(preprocessor: Preprocessor) -> list[str]:
    """The names of the ONNX input's columns, in order."""
    return [*map(str, preprocessor.numeric_columns),
            *(f"{column}={level}" for column, levels in preprocessor.categorical_levels.items()
              for level in levels)]


def onnx_output_name(preprocessor: Preprocessor) -> str:
    return "prediction" if preprocessor.task == "regression" else "probabilities"


def onnx_features(preprocessor: Preprocessor, rows: Any) -> np.ndarray:
    """Raw rows (checked as :class:`Preprocessor` checks them) as the ONNX input: numeric
    columns and date parts as they are (NaN where missing), categorical one-hot."""
    frame = preprocessor.check_rows(rows)
    return np.concatenate([preprocessor.raw_numeric(frame), *preprocessor.one_hot(frame)],
                          axis=1)


def onnx_description(preprocessor: Preprocessor) -> dict[str, Any]:
    """The ``onnx`` section of ``model.json``: how to feed the graph and read it."""
    output = onnx_output_name(preprocessor)
    return {
        "file": "model.onnx", "opset": OPSET,
        "input": {"name": INPUT_NAME, "dtype": "float64", "shape": ["batch", None],
                  "columns": onnx_columns(preprocessor)},
        "output": {"name": output, "dtype": "float32",
                   "shape": ["batch"] if output == "prediction" else ["batch", None]},
        "note": ("numeric columns as they are in the data, NaN where missing (the graph "
                 "imputes, clips to the training range and standardises them; a date "
                 "column comes as its parts), then a "
                 "0/1 column per categorical level ('column=level'); the output is "
                 + ("the prediction in the target's units" if output == "prediction" else
                    "one probability per class, in the order of 'classes'")),
    }


class InferenceGraph(nn.Module):
    """Impute, clip and standardise (float64) -> MLP (float32) -> probabilities or target
    units."""

    medians: torch.Tensor
    lows: torch.Tensor
    highs: torch.Tensor
    shift: torch.Tensor
    scale: torch.Tensor
    flagged: torch.Tensor

    def __init__(self, model: nn.Module, preprocessor: Preprocessor):
        super().__init__()
        pre = preprocessor
        self.n_numeric = len(pre.numeric_columns)
        self.register_buffer("medians", torch.tensor(pre.medians, dtype=torch.float64))
        unbounded = [float("inf")] * self.n_numeric  # a bundle from before clipping
        self.register_buffer("lows", torch.tensor(
            pre.lows or [-bound for bound in unbounded], dtype=torch.float64))
        self.register_buffer("highs", torch.tensor(pre.highs or unbounded, dtype=torch.float64))
        self.register_buffer("shift", torch.tensor(pre.means, dtype=torch.float64))
        self.register_buffer("scale", torch.tensor(pre.stds, dtype=torch.float64))
        self.register_buffer("flagged", torch.tensor(
            [pre.numeric_columns.index(c) for c in pre.missing_indicators], dtype=torch.long))
        self.mlp = copy.deepcopy(model).cpu().eval()
        self.task = preprocessor.task
        self.target_mean = float(preprocessor.target_mean)
        self.target_std = float(preprocessor.target_std)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        numeric, one_hot = features[:, :self.n_numeric], features[:, self.n_numeric:]
        missing = torch.isnan(numeric)
        filled = torch.clamp(torch.where(missing, self.medians, numeric), self.lows, self.highs)
        indicators = missing.index_select(1, self.flagged).to(torch.float64)
        encoded = torch.cat([(filled - self.shift) / self.scale, indicators, one_hot], dim=1)
        outputs = self.mlp(encoded.to(torch.float32))
        if self.task == "regression":
            return outputs.squeeze(1) * self.target_std + self.target_mean
        if self.task == "binary":
            positive = torch.sigmoid(outputs.squeeze(1))
            return torch.stack([1 - positive, positive], dim=1)
        return torch.softmax(outputs, dim=1)


def onnx_bytes(predictor: Predictor) -> bytes:
    """The serialised ONNX model of ``predictor`` (see the module docstring)."""
    pre = predictor.preprocessor
    graph = InferenceGraph(predictor.model, pre).eval()
    width = len(onnx_columns(pre))
    example = torch.zeros(2, width, dtype=torch.float64)  # batch 1 would be fixed
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # "torchvision is not installed" and the like
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                graph, (example,), dynamo=True, input_names=[INPUT_NAME],
                output_names=[onnx_output_name(pre)], opset_version=OPSET,
                dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
    finally:
        exporter_log.setLevel(level)
    assert program is not None
    return bytes(program.model_proto.SerializeToString())


def export_onnx(predictor: Predictor, path: str | Path) -> Path:
    """Write ``predictor`` as an ONNX file."""
    path = Path(path)
    path.write_bytes(onnx_bytes(predictor))
    return path
