"""A trained model plus its preprocessing: predicts on raw rows, loads without pickles."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from automl.configs import TrialConfig
from automl.data import Preprocessor
from workers.data import predict
from workers.model import build_mlp


def weights_to_bytes(model: torch.nn.Module) -> bytes:
    """safetensors bytes of the model's weights (never pickle)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return save_safetensors(state)


class Predictor:
    """Applies the training preprocessing to raw rows, then the MLP."""

    def __init__(self, model: torch.nn.Module, preprocessor: Preprocessor):
        self.model, self.preprocessor = model.eval(), preprocessor

    @classmethod
    def from_artifact(cls, artifact: Any) -> Predictor:
        """From a stored artifact: config and preprocessor as JSON, weights as safetensors."""
        config = TrialConfig.from_dict(artifact.config)
        model = build_mlp(config.model, artifact.n_inputs, artifact.n_outputs)
        model.load_state_dict(load_safetensors(artifact.weights))
        return cls(model, Preprocessor(**artifact.preprocessor))

    def _outputs(self, rows: pd.DataFrame) -> torch.Tensor:
        return predict(self.model, torch.as_tensor(self.preprocessor.transform(rows)))

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        """Class labels (as in the training data) or values (in the target's units)."""
        outputs = self._outputs(rows)
        pre = self.preprocessor
        if pre.task == "regression":
            return outputs.squeeze(1).numpy() * pre.target_std + pre.target_mean
        codes = (outputs.squeeze(1) > 0).long() if pre.task == "binary" else outputs.argmax(1)
        return np.asarray(pre.classes, dtype=object)[codes.numpy()]

    def predict_proba(self, rows: pd.DataFrame) -> np.ndarray:
        """Class probabilities, one column per class in ``preprocessor.classes`` order."""
        outputs = self._outputs(rows)
        if self.preprocessor.task == "regression":
            raise TypeError("predict_proba is for classification models")
        if self.preprocessor.task == "binary":
            positive = torch.sigmoid(outputs.squeeze(1))
            return torch.stack([1 - positive, positive], dim=1).numpy()
        return torch.softmax(outputs, dim=1).numpy()
