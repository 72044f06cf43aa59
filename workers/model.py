"""Build a torch MLP from a :class:`ModelConfig`, with weight init matched to activation."""

from __future__ import annotations

from torch import nn

from automl.configs import ModelConfig

ACTIVATION_LAYERS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}


def build_mlp(config: ModelConfig, n_inputs: int, n_outputs: int) -> nn.Sequential:
    """Linear → [BatchNorm] → activation → [Dropout] per hidden layer, then a linear head.

    SELU gets AlphaDropout (keeps its self-normalising property). Weights: He for the
    ReLU family and GELU, LeCun for SELU/ELU, Glorot for tanh/sigmoid and the head.
    """
    layers: list[nn.Module] = []
    width = n_inputs
    for units in config.hidden_units:
        linear = nn.Linear(width, units)
        init_weights(linear, config.activation)
        layers.append(linear)
        if config.batch_norm:
            layers.append(nn.BatchNorm1d(units))
        layers.append(ACTIVATION_LAYERS[config.activation]())
        if config.dropout > 0:
            dropout = nn.AlphaDropout if config.activation == "selu" else nn.Dropout
            layers.append(dropout(config.dropout))
        width = units
    head = nn.Linear(width, n_outputs)
    init_weights(head, "linear")
    layers.append(head)
    return nn.Sequential(*layers)


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
