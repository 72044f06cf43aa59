"""Turn an Optuna trial plus a :class:`SearchSpace` into a :class:`TrialConfig`.

This is the only module that asks Optuna for values. Hidden-layer widths are conditional
on depth (``n_units_l0`` ... ``n_units_l{n-1}``); momentum only exists for SGD and
RMSprop, Nesterov only for SGD with momentum, Adam's beta2 only for the Adam family, the
Huber delta only for the Huber loss, label smoothing only for classification, and the
embedding's size, frequency scale and bins only for the embeddings that have them.
"""

from __future__ import annotations

from typing import Any

import optuna

from automl.configs import ModelConfig, TrainConfig, TrialConfig
from automl.space import Choice, Fixed, FloatRange, IntRange, Param, SearchSpace

ADAM_FAMILY = ("adam", "adamw", "nadam", "adamax")


# The parameters that decide a model's structure for the cohort trainer
# (workers.cohort.cohort_key): trials that share them can train as one stacked model.
STRUCTURE_PARAMS = ("n_layers", "activation", "batch_norm", "optimizer", "batch_size",
                    "loss", "huber_delta", "embedding", "embedding_dim", "n_bins",
                    "ensemble_k", "class_weight")


def units_param(layer: int) -> str:
    """The name of hidden layer ``layer``'s width (from 0) among a trial's params."""
    return f"n_units_l{layer}"


def structure_params(params: dict[str, Any]) -> dict[str, Any]:
    """The structural part of a trial's ``params``: what a cohort's members share."""
    return {name: params[name] for name in STRUCTURE_PARAMS if name in params}


def suggest_value(trial: optuna.Trial, name: str, param: Param) -> Any:
    """Ask ``trial`` for one value of ``param`` (fixed values are not recorded as params)."""
    if isinstance(param, Fixed):
        return param.value
    if isinstance(param, Choice):
        if len(param.choices) == 1:
            return param.choices[0]
        return trial.suggest_categorical(name, list(param.choices))
    if isinstance(param, IntRange):
        step = 1 if param.log else param.step
        return trial.suggest_int(name, param.low, param.high, step=step, log=param.log)
    assert isinstance(param, FloatRange)
    return trial.suggest_float(name, param.low, param.high, step=param.step, log=param.log)


def suggest_trial_config(trial: optuna.Trial, space: SearchSpace, seed: int) -> TrialConfig:
    """Sample every hyperparameter of one trial."""

    def get(name: str) -> Any:
        return suggest_value(trial, name, space[name])

    n_layers = get("n_layers")
    units = tuple(suggest_value(trial, units_param(i), space["units"]) for i in range(n_layers))
    embedding = get("embedding")
    model = ModelConfig(
        units, get("activation"), get("batch_norm"), float(get("dropout")),
        embedding=embedding,
        embedding_dim=int(get("embedding_dim")) if embedding != "none" else 16,
        frequency_scale=float(get("frequency_scale")) if embedding == "periodic" else 0.1,
        n_bins=int(get("n_bins")) if embedding == "piecewise_linear" else 32,
        ensemble_k=int(get("ensemble_k")))
    optimizer = get("optimizer")
    momentum = float(get("momentum")) if optimizer in ("sgd", "rmsprop") else 0.0
    nesterov = bool(get("nesterov")) if optimizer == "sgd" and momentum > 0 else False
    loss = get("loss")
    train = TrainConfig(
        optimizer=optimizer,
        lr=float(get("lr")),
        momentum=momentum,
        nesterov=nesterov,
        lr_schedule=get("lr_schedule"),
        batch_size=int(get("batch_size")),
        max_epochs=int(get("max_epochs")),
        patience=int(get("patience")),
        weight_decay=float(get("weight_decay")),
        l1=float(get("l1")),
        grad_clip_norm=float(get("grad_clip_norm")),
        loss=loss,
        huber_delta=float(get("huber_delta")) if loss == "huber" else 1.0,
        beta2=float(get("beta2")) if optimizer in ADAM_FAMILY else 0.999,
        label_smoothing=float(get("label_smoothing")) if loss == "cross_entropy" else 0.0,
        class_weight=str(get("class_weight")) if loss == "cross_entropy" else "none",
        seed=seed,
    )
    return TrialConfig(model, train)
