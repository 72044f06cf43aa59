"""A trained model plus its preprocessing: predicts on raw rows, loads without pickles.

Saved as a bundle of files (see :meth:`Predictor.to_files`): ``model.json`` (format
version, task, classes, the architecture and training settings, the fitted
preprocessing), ``model.safetensors`` (the weights) and ``model.onnx`` (the same
predictions under any ONNX runtime; see :mod:`workers.export`).

The model may be a :class:`~workers.ensemble.SeedEnsemble` (the tuned configuration
retrained from several seeds, averaged): ``model.json`` then gives ``members`` > 1 and the
weights file holds every member's. Bundles of format version 1 hold one MLP.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from automl.configs import TrialConfig
from automl.data import Preprocessor
from automl.errors import NonFiniteError
from workers.data import predict
from workers.ensemble import SeedEnsemble, combine
from workers.model import bins_of, build_model

FORMAT = "automl-model"
FORMAT_VERSION = 2  # 2: ``members`` (a seed ensemble); version 1 bundles still load
READABLE_VERSIONS = (1, 2)
JSON_FILE, WEIGHTS_FILE, ONNX_FILE = "model.json", "model.safetensors", "model.onnx"
logger = logging.getLogger(__name__)


def weights_to_bytes(model: torch.nn.Module) -> bytes:
    """safetensors bytes of the model's weights (never pickle)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return save_safetensors(state)


class Predictor:
    """Applies the training preprocessing to raw rows, then the MLP."""

    def __init__(self, model: torch.nn.Module, preprocessor: Preprocessor,
                 config: TrialConfig | None = None):
        self.model, self.preprocessor, self.config = model.eval(), preprocessor, config

    def describe(self) -> dict[str, Any]:
        """The content of ``model.json`` (without the ONNX section)."""
        if self.config is None:
            raise ValueError("a Predictor needs its TrialConfig to be saved")
        pre = self.preprocessor
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "task": pre.task,
                "classes": list(pre.classes), "n_inputs": pre.n_features,
                "n_outputs": pre.n_outputs, "config": self.config.to_dict(),
                "members": self.n_members, "bins": bins_of(self.model),
                "preprocessor": pre.to_dict(),
                "weights": WEIGHTS_FILE}

    @property
    def n_members(self) -> int:
        """How many seeds' MLPs the model averages (1: a single MLP)."""
        return len(self.model.members) if isinstance(self.model, SeedEnsemble) else 1

    def to_files(self, onnx: bool = True) -> dict[str, bytes]:
        """The bundle: file name -> content. An ONNX export that fails is logged and left
        out (``model.json`` says why); ``automl export`` can retry it where torch runs."""
        info: dict[str, Any] = {**self.describe(), "onnx": None}
        files = {WEIGHTS_FILE: weights_to_bytes(self.model)}
        if onnx:
            from workers.export import onnx_bytes, onnx_description

            try:
                files[ONNX_FILE] = onnx_bytes(self)
                info["onnx"] = onnx_description(self.preprocessor)
            except Exception as exc:  # the weights are what matters; ONNX is a convenience
                logger.warning("ONNX export failed, model saved without it: %r", exc)
                info["onnx"] = {"error": f"{type(exc).__name__}: {exc}"}
        return {JSON_FILE: json.dumps(info, indent=2).encode(), **files}

    def save(self, folder: str | Path, onnx: bool = True) -> list[Path]:
        """Write the bundle into ``folder`` (created if needed); returns the paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, content in self.to_files(onnx).items():
            (folder / name).write_bytes(content)
            paths.append(folder / name)
        return paths

    @classmethod
    def from_files(cls, files: Mapping[str, bytes]) -> Predictor:
        """From a bundle's ``model.json`` and ``model.safetensors`` (no pickles)."""
        info = json.loads(files[JSON_FILE])
        if info.get("format") != FORMAT or info.get("format_version") not in READABLE_VERSIONS:
            raise ValueError(f"not an {FORMAT} bundle of version {FORMAT_VERSION} or older: "
                             f"{info.get('format')!r} {info.get('format_version')!r}")
        config = TrialConfig.from_dict(info["config"])
        preprocessor = Preprocessor(**info["preprocessor"])
        shape = (int(info["n_inputs"]), int(info["n_outputs"]), preprocessor.task,
                 len(preprocessor.numeric_columns), info.get("bins"))
        members = [build_model(config.model, *shape) for _ in range(int(info.get("members", 1)))]
        model = combine(members, preprocessor.task)
        model.load_state_dict(load_safetensors(files[WEIGHTS_FILE]))
        return cls(model, preprocessor, config)

    @classmethod
    def load(cls, folder: str | Path) -> Predictor:
        """From a folder :meth:`save` or ``automl export`` wrote."""
        folder = Path(folder)
        return cls.from_files({name: (folder / name).read_bytes()
                               for name in (JSON_FILE, WEIGHTS_FILE)})

    def _outputs(self, rows: Any) -> torch.Tensor:
        outputs = predict(self.model, torch.as_tensor(self.preprocessor.transform(rows)))
        bad = ~torch.isfinite(outputs).all(dim=1)
        if bad.any():  # never a NaN probability or a silent default class
            raise NonFiniteError(f"the model gives no finite prediction for row(s) "
                                 f"{bad.nonzero().flatten()[:10].tolist()}: their values lie "
                                 "far outside what it was trained on", field="rows")
        return outputs

    def predict(self, rows: Any) -> np.ndarray:
        """Class labels (as in the training data) or values (in the target's units).

        ``rows``: a DataFrame, a list of dicts or one dict, holding every column the model
        was trained on (extra columns are ignored). Missing values are imputed as in
        training; a missing column or an infinite value raises a typed
        :class:`~automl.errors.DataError` naming the column."""
        outputs = self._outputs(rows)
        pre = self.preprocessor
        if pre.task == "regression":
            return outputs.squeeze(1).numpy() * pre.target_std + pre.target_mean
        codes = (outputs.squeeze(1) > 0).long() if pre.task == "binary" else outputs.argmax(1)
        return np.asarray(pre.classes, dtype=object)[codes.numpy()]

    def predict_proba(self, rows: Any) -> np.ndarray:
        """Class probabilities, one column per class in ``preprocessor.classes`` order
        (``rows`` as for :meth:`predict`)."""
        outputs = self._outputs(rows)
        if self.preprocessor.task == "regression":
            raise TypeError("predict_proba is for classification models")
        if self.preprocessor.task == "binary":
            positive = torch.sigmoid(outputs.squeeze(1))
            return torch.stack([1 - positive, positive], dim=1).numpy()
        return torch.softmax(outputs, dim=1).numpy()
