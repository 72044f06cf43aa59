"""Build a torch model from a :class:`ModelConfig`: numeric embeddings, the MLP, the head.

The model is one ``nn.Sequential``: [embeddings of the numeric columns] → [TabM-mini's
per-member input scaling] → Linear → [BatchNorm] → activation → [Dropout] per hidden
layer → the head (one per member). Embeddings come from ``rtdl_num_embeddings`` and the
ensemble layers from ``tabm`` (the papers' own packages). A model of k > 1 members gives
``(batch, k, outputs)`` while training (each member's loss counts) and, in eval mode, the
members' average in the form one MLP gives (:func:`workers.ensemble.average`), so the
loop's validation, the predictor and the ONNX graph treat it as one MLP.
"""

from __future__ import annotations

import warnings

import tabm
import torch
from rtdl_num_embeddings import PeriodicEmbeddings, PiecewiseLinearEmbeddings, compute_bins
from torch import nn

from automl.configs import PERIODIC_FREQUENCIES, ModelConfig, Task
from workers.ensemble import average

ACTIVATION_LAYERS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}
Bins = list[list[float]]  # per numeric column, its piecewise-linear bin edges


def build_model(config: ModelConfig, n_inputs: int, n_outputs: int, task: Task = "binary",
                n_numeric: int = 0, bins: Bins | None = None) -> nn.Sequential:
    """The model for ``config``; the first ``n_numeric`` inputs are numeric columns (the
    ones embedded), and ``bins`` (:func:`fit_bins`) are needed for piecewise-linear ones.

    Hidden layers: SELU gets AlphaDropout (keeps its self-normalising property). Weights:
    He for the ReLU family and GELU, LeCun for SELU/ELU, Glorot for tanh/sigmoid and the
    head."""
    k = config.ensemble_k
    layers: list[nn.Module] = []
    width = n_inputs
    if config.embedding != "none" and n_numeric > 0:
        embedding = numeric_embedding(config, n_numeric, bins)
        layers.append(NumericEmbeddings(embedding, n_numeric, bins))
        width += n_numeric * (config.embedding_dim - 1)
    if k > 1:
        chunks = ([config.embedding_dim] * n_numeric + [1] * (n_inputs - n_numeric)
                  if layers else None)  # one sign per column's embedding (TabM's init)
        layers += [tabm.EnsembleView(k=k),
                   tabm.ElementwiseAffine((k, width), bias=False, scaling_init="random-signs",
                                          scaling_init_chunks=chunks)]
    for units in config.hidden_units:
        linear = nn.Linear(width, units)
        init_weights(linear, config.activation)
        layers.append(linear)
        if config.batch_norm:
            layers.append(tabm.BatchNorm1dEnsemble(units, k=k) if k > 1
                          else nn.BatchNorm1d(units))
        layers.append(ACTIVATION_LAYERS[config.activation]())
        if config.dropout > 0:
            dropout = nn.AlphaDropout if config.activation == "selu" else nn.Dropout
            layers.append(dropout(config.dropout))
        width = units
    if k == 1:
        head = nn.Linear(width, n_outputs)
        init_weights(head, "linear")
        return nn.Sequential(*layers, head)
    return nn.Sequential(*layers, tabm.LinearEnsemble(width, n_outputs, k=k), MemberMean(task))


def numeric_embedding(config: ModelConfig, n_numeric: int, bins: Bins | None) -> nn.Module:
    """The embedding of ``n_numeric`` columns: (batch, n) → (batch, n, embedding_dim)."""
    if config.embedding == "periodic":
        return PeriodicEmbeddings(n_numeric, config.embedding_dim, lite=False,
                                  n_frequencies=PERIODIC_FREQUENCIES,
                                  frequency_init_scale=config.frequency_scale)
    if bins is None:
        raise ValueError("piecewise-linear embeddings need the training rows' bins")
    with warnings.catch_warnings():  # "only one bin" for a two-valued column: fine
        warnings.simplefilter("ignore", UserWarning)
        return PiecewiseLinearEmbeddings([torch.tensor(edges) for edges in bins],
                                         config.embedding_dim, activation=False, version="B")


def fit_bins(config: ModelConfig, x_train: torch.Tensor, n_numeric: int) -> Bins | None:
    """Quantile bin edges of each numeric training column, for piecewise-linear embeddings
    (None for other models). A column constant in the training rows gets one bin."""
    if config.embedding != "piecewise_linear" or n_numeric == 0:
        return None
    numeric = x_train[:, :n_numeric].float().cpu()
    varies = (numeric != numeric[0]).any(dim=0)
    bins: Bins = [[float(numeric[0, j]), float(numeric[0, j]) + 1.0] for j in range(n_numeric)]
    if varies.any():
        n_bins = max(1, min(config.n_bins, len(numeric) - 1))
        with warnings.catch_warnings():  # "only one bin" for a two-valued column: fine
            warnings.simplefilter("ignore", UserWarning)
            edges = compute_bins(numeric[:, varies], n_bins=n_bins)
        for j, column in zip(varies.nonzero().flatten().tolist(), edges, strict=True):
            bins[j] = [float(v) for v in column]
    return bins


class NumericEmbeddings(nn.Module):
    """Embeds the first ``n_numeric`` columns and passes the rest (0/1 inputs) through;
    ``bins`` (piecewise-linear ones) are kept to be saved with the model."""

    def __init__(self, embedding: nn.Module, n_numeric: int, bins: Bins | None = None):
        super().__init__()
        self.embedding, self.n_numeric, self.bins = embedding, n_numeric, bins

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        numeric, rest = x[:, :self.n_numeric], x[:, self.n_numeric:]
        return torch.cat([self.embedding(numeric).flatten(1), rest], dim=1)


class MemberMean(nn.Module):
    """TabM's members: each member's outputs while training, their average in eval mode."""

    def __init__(self, task: Task):
        super().__init__()
        self.task = task

    def forward(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs if self.training else average(outputs, dim=1, task=self.task)


def init_weights(layer: nn.Linear, activation: str) -> None:
    """Initialise ``layer`` for the activation that follows it; biases start at zero."""
    if activation in ("relu", "gelu"):
        nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    elif activation == "leaky_relu":
        nn.init.kaiming_normal_(layer.weight, a=0.01, nonlinearity="leaky_relu")
    elif activation in ("selu", "elu"):
        nn.init.kaiming_normal_(layer.weight, nonlinearity="linear")  # LeCun normal
    elif activation == "tanh":
        nn.init.xavier_uniform_(layer.weight, gain=nn.init.calculate_gain("tanh"))
    else:
        nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def bins_of(model: nn.Module) -> Bins | None:
    """The piecewise-linear bin edges a model was built with (None if it has none)."""
    return next((m.bins for m in model.modules() if isinstance(m, NumericEmbeddings)), None)
