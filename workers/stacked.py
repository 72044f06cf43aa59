"""K plain MLPs of one structure held as stacked tensors: one forward pass trains them all.

A cohort's members share depth, activation and batch norm; their widths may differ. Each
hidden layer is as wide as the cohort's widest member, and a member's extra units are
masked to zero after the activation, so they neither compute nor learn: their weights
start at zero and their gradients are exactly zero. Layer ``l`` holds ``w{l}``
``[K, in, out]`` (``baddbmm``), ``b{l}`` ``[K, out]``, and with batch norm ``g{l}``,
``beta{l}`` (affine) and ``mean{l}``, ``var{l}`` (running statistics), each member
normalising over its own batch as ``nn.BatchNorm1d`` does. Members are copied in from,
and back out to, the ordinary ``nn.Sequential`` that :func:`workers.model.build_model`
makes, so a member starts from the weights it would have had alone and ends as the
model the predictor and the export know.

Piecewise-linear embeddings (``rtdl_num_embeddings``, version B) stack too when the
members share their bins (the same ``n_bins`` on the same rows) and embedding size: the
encoding of the numeric columns is the members' common, fixed part (``encoding``), and
each member has its own linear term ``e_w0``, ``e_b0`` ``[K, n, d]`` and piecewise
weights ``e_w`` ``[K, n, bins, d]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from rtdl_num_embeddings import PiecewiseLinearEmbeddings
from torch import nn
from torch.nn import functional

from workers.model import ACTIVATION_LAYERS, NumericEmbeddings

BN_MOMENTUM, BN_EPS = 0.1, 1e-5  # nn.BatchNorm1d's defaults
SELU_ALPHA = 1.7580993408473766  # SELU's scale x alpha: where alpha dropout sets a unit


class StackedMLP:
    """Stacked parameters (``params``, trained) and buffers (``buffers``: widths' masks
    and batch norm's running statistics) of K members, leading dimension K."""

    def __init__(self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
                 depth: int, activation: str, batch_norm: bool,
                 encoding: nn.Module | None = None):
        self.params, self.buffers = params, buffers
        self.depth, self.batch_norm = depth, batch_norm
        self.encoding = encoding  # the shared piecewise-linear encoding, if embedded
        self.activation = ACTIVATION_LAYERS[activation]()
        self.alpha_dropout = activation == "selu"  # as build_model: SELU's keeps its scale
        for tensor in self.params.values():
            tensor.requires_grad_(True)
        self._ragged = self._ragged_layers()

    def _ragged_layers(self) -> list[bool]:
        """Per hidden layer, whether any member is narrower than the layer (masking needed)."""
        return [not bool(self.buffers[f"mask{layer}"].all()) for layer in range(self.depth)]

    @property
    def size(self) -> int:
        return int(self.params["w_out"].shape[0])

    def forward(self, x: torch.Tensor, dropout: torch.Tensor | None = None,
                training: bool = True) -> torch.Tensor:
        """``x`` ``[K, B, in]`` (each member its own rows) or ``[N, in]`` (the same rows
        for all) → ``[K, B|N, outputs]``. ``dropout`` ``[K]``: each member's rate (None:
        no member drops out)."""
        h = x if self.encoding is None else self._embed(x)
        for layer in range(self.depth):
            weight, bias = self.params[f"w{layer}"], self.params[f"b{layer}"]
            h = (torch.baddbmm(bias.unsqueeze(1), h, weight) if h.dim() == 3
                 else torch.matmul(h, weight) + bias.unsqueeze(1))
            if self.batch_norm:
                h = self._batch_norm(h, layer, training)
            h = self.activation(h)
            if training and dropout is not None:
                h = self._dropout(h, dropout)
            if self._ragged[layer]:  # after dropout: alpha dropout moves zeros
                h = h * self.buffers[f"mask{layer}"].unsqueeze(1)
        weight, bias = self.params["w_out"], self.params["b_out"]
        return (torch.baddbmm(bias.unsqueeze(1), h, weight) if h.dim() == 3
                else torch.matmul(h, weight) + bias.unsqueeze(1))

    def _dropout(self, h: torch.Tensor, rate: torch.Tensor) -> torch.Tensor:
        """Each member's dropout at its own ``rate`` ``[K]``: ``nn.Dropout``'s, or for SELU
        ``nn.AlphaDropout``'s (torch's formula: kept units scaled by ``a``, dropped ones
        set to SELU's negative saturation, then shifted by ``b``)."""
        p = rate.view(-1, 1, 1)
        keep = (torch.rand_like(h) >= p).to(h.dtype)
        if not self.alpha_dropout:
            return h * keep / (1 - p)
        a = 1 / torch.sqrt((SELU_ALPHA ** 2 * p + 1) * (1 - p))
        return h * keep * a + ((keep - 1) * SELU_ALPHA * a + SELU_ALPHA * a * p)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        """The numeric columns (the first ``n``) embedded, the others passed through:
        ``[K, B, n*d + rest]`` (``x`` shared by all members or not)."""
        assert self.encoding is not None
        w0, b0, w = self.params["e_w0"], self.params["e_b0"], self.params["e_w"]
        n = w0.shape[1]
        numeric, rest = x[..., :n], x[..., n:]
        encoded = self.encoding(numeric)  # [(K,) B, n, bins]
        linear = numeric.unsqueeze(-1) * w0.unsqueeze(1) + b0.unsqueeze(1)
        if x.dim() == 2:
            embedded = linear + torch.einsum("bnm,knmd->kbnd", encoded, w)
            rest = rest.expand(w0.shape[0], *rest.shape)
        else:
            embedded = linear + torch.einsum("kbnm,knmd->kbnd", encoded, w)
        return torch.cat([embedded.flatten(2), rest], dim=2)

    def _batch_norm(self, h: torch.Tensor, layer: int, training: bool) -> torch.Tensor:
        mean, var = self.buffers[f"mean{layer}"], self.buffers[f"var{layer}"]
        if training:
            batch_mean, batch_var = h.mean(dim=1), h.var(dim=1, unbiased=False)
            with torch.no_grad():
                rows = h.shape[1]
                mean.lerp_(batch_mean, BN_MOMENTUM)
                var.lerp_(batch_var * rows / max(rows - 1, 1), BN_MOMENTUM)
            normed = (h - batch_mean.unsqueeze(1)) / torch.sqrt(batch_var.unsqueeze(1) + BN_EPS)
        else:
            normed = (h - mean.unsqueeze(1)) / torch.sqrt(var.unsqueeze(1) + BN_EPS)
        return normed * self.params[f"g{layer}"].unsqueeze(1) + \
            self.params[f"beta{layer}"].unsqueeze(1)

    def linear_weights(self) -> list[torch.Tensor]:
        """The weight matrices (what an L1 penalty counts)."""
        return [self.params[f"w{layer}"] for layer in range(self.depth)] + [self.params["w_out"]]

    def state(self) -> dict[str, torch.Tensor]:
        """Every stacked tensor, parameters and buffers, by name."""
        return {**self.params, **self.buffers}

    def select(self, keep: torch.Tensor) -> None:
        """Keep only the members ``keep`` (indices), in that order."""
        self.params = {name: t.requires_grad_(True)
                       for name, t in take(self.params, keep).items()}
        self.buffers = take(self.buffers, keep)
        self._ragged = self._ragged_layers()

    def extend(self, other: StackedMLP) -> None:
        """Append ``other``'s members, padding whichever is narrower to the wider."""
        self.params = {name: t.requires_grad_(True)
                       for name, t in join(self.params, other.params).items()}
        self.buffers = join(self.buffers, other.buffers)
        self._ragged = self._ragged_layers()


def take(tensors: dict[str, torch.Tensor], keep: torch.Tensor) -> dict[str, torch.Tensor]:
    """The members ``keep`` (indices along the first dimension) of every tensor."""
    return {name: t.detach()[keep] for name, t in tensors.items()}


def join(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]
         ) -> dict[str, torch.Tensor]:
    """``first``'s members then ``second``'s, zero-padded to their common widths."""
    joined = {}
    for name, a in first.items():
        b = second[name].detach()
        shape = [max(x, y) for x, y in zip(a.shape[1:], b.shape[1:], strict=True)]
        joined[name] = torch.cat([_pad(a.detach(), [a.shape[0], *shape]),
                                  _pad(b, [b.shape[0], *shape])])
    return joined


def stack_models(models: Sequence[nn.Sequential], hidden_units: Sequence[Sequence[int]],
                 activation: str, batch_norm: bool) -> StackedMLP:
    """The members ``models`` (plain MLPs of ``build_model``) stacked, padded to the widest."""
    depth = len(hidden_units[0])
    widths = [max(units[layer] for units in hidden_units) for layer in range(depth)]
    per_member = [_member_tensors(model, units, widths, batch_norm)
                  for model, units in zip(models, hidden_units, strict=True)]
    stacked = {name: torch.stack([tensors[name] for tensors in per_member])
               for name in per_member[0]}
    buffer_names = {name for name in stacked if name.startswith(("mask", "mean", "var"))}
    params = {name: t for name, t in stacked.items() if name not in buffer_names}
    buffers = {name: t for name, t in stacked.items() if name in buffer_names}
    embedding = _piecewise_linear(models[0])
    encoding = embedding.impl if embedding is not None else None
    return StackedMLP(params, buffers, depth, activation, batch_norm, encoding)


def load_member(stacked: dict[str, torch.Tensor], member: int, model: nn.Sequential,
                hidden_units: Sequence[int]) -> None:
    """Copy member ``member`` of ``stacked`` (a :meth:`StackedMLP.state`) into ``model``,
    an ``nn.Sequential`` of its own structure and widths."""
    linears = [m for m in model if isinstance(m, nn.Linear)]
    norms = [m for m in model if isinstance(m, nn.BatchNorm1d)]
    sizes = [linears[0].in_features, *hidden_units]
    with torch.no_grad():
        if (embedding := _piecewise_linear(model)) is not None:
            assert embedding.linear0 is not None  # version B
            embedding.linear0.weight.copy_(stacked["e_w0"][member])
            embedding.linear0.bias.copy_(stacked["e_b0"][member])
            embedding.linear.weight.copy_(stacked["e_w"][member])
        for layer, linear in enumerate(linears):
            name = "_out" if layer == len(hidden_units) else str(layer)
            rows, cols = sizes[layer], linear.out_features
            linear.weight.copy_(stacked[f"w{name}"][member, :rows, :cols].T)
            linear.bias.copy_(stacked[f"b{name}"][member, :cols])
        for layer, norm in enumerate(norms):
            units = hidden_units[layer]
            norm.weight.copy_(stacked[f"g{layer}"][member, :units])
            norm.bias.copy_(stacked[f"beta{layer}"][member, :units])
            assert norm.running_mean is not None and norm.running_var is not None
            norm.running_mean.copy_(stacked[f"mean{layer}"][member, :units])
            norm.running_var.copy_(stacked[f"var{layer}"][member, :units])


def _member_tensors(model: nn.Sequential, units: Sequence[int], widths: Sequence[int],
                    batch_norm: bool) -> dict[str, torch.Tensor]:
    """One member's tensors, zero-padded to the cohort's ``widths``."""
    linears = [m for m in model if isinstance(m, nn.Linear)]
    norms = [m for m in model if isinstance(m, nn.BatchNorm1d)]
    sizes = [linears[0].in_features, *widths]
    out: dict[str, torch.Tensor] = {}
    if (embedding := _piecewise_linear(model)) is not None:
        assert embedding.linear0 is not None  # version B
        out["e_w0"] = embedding.linear0.weight.detach().clone()
        out["e_b0"] = embedding.linear0.bias.detach().clone()
        out["e_w"] = embedding.linear.weight.detach().clone()
    for layer, linear in enumerate(linears):
        name = "_out" if layer == len(units) else str(layer)
        rows = sizes[layer]
        cols = widths[layer] if layer < len(units) else linear.out_features
        out[f"w{name}"] = _pad(linear.weight.detach().T, (rows, cols))
        out[f"b{name}"] = _pad(linear.bias.detach(), (cols,))
    for layer, width in enumerate(widths):
        mask = torch.zeros(width, device=linears[0].weight.device)
        mask[:units[layer]] = 1.0
        out[f"mask{layer}"] = mask
        if batch_norm:
            norm = norms[layer]
            assert norm.running_mean is not None and norm.running_var is not None
            out[f"g{layer}"] = _pad(norm.weight.detach(), (width,))
            out[f"beta{layer}"] = _pad(norm.bias.detach(), (width,))
            out[f"mean{layer}"] = _pad(norm.running_mean, (width,))
            out[f"var{layer}"] = _pad(norm.running_var, (width,), value=1.0)
    return out


def _piecewise_linear(model: nn.Sequential) -> PiecewiseLinearEmbeddings | None:
    """The model's piecewise-linear embedding of its numeric columns, if it has one."""
    for module in model:
        if isinstance(module, NumericEmbeddings):
            assert isinstance(module.embedding, PiecewiseLinearEmbeddings)
            return module.embedding
    return None


def _pad(tensor: torch.Tensor, shape: Sequence[int], value: float = 0.0) -> torch.Tensor:
    """``tensor`` padded at the end of each dimension to ``shape``."""
    widths: list[int] = []
    for have, want in zip(reversed(tensor.shape), reversed(shape), strict=True):
        widths += [0, want - have]
    return functional.pad(tensor.clone(), widths, value=value)

