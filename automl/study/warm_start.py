"""Warm start: the first trials of a study try the rules of thumb.

Every run trains the rule-of-thumb baselines anyway, to compare against. Their configs are
also good first points for the search: a user expects the tuner to hold a model at least
as good as the textbook default as soon as possible, and TPE learns from them like from
any other trial. So a new study enqueues, as its first trials, the point of the search
space nearest to each baseline that the space can express:

* numbers outside a range are clipped to it (e.g. no weight decay becomes the smallest
  weight decay the space allows) and put on its step grid;
* a choice the space does not offer (SGD, sigmoid units in the default space) or a depth
  outside its range rules the baseline out;
* fixed parameters keep the space's value, as for every trial.

The ``defaults`` baseline comes first; at most half of the random start-up trials are
replaced, and identical points are enqueued once. These trials are ordinary trials
(counted in the budget, seeded like any other, prunable after the start-up).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from automl.configs import TrialConfig
from automl.space import Choice, Fixed, FloatRange, IntRange, Param, SearchSpace
from automl.space.baselines import Baseline

FIRST = "defaults"
# The rules of thumb are plain MLPs: where the space offers no plain input (no embedding
# "none"), the warm-start trial takes the sampler's embedding and keeps the rest.
LEFT_TO_THE_SAMPLER = frozenset({"embedding"})


def warm_start_params(baselines: Sequence[Baseline], space: SearchSpace,
                      limit: int) -> list[dict[str, Any]]:
    """Trial parameters for up to ``limit`` baselines the space can express."""
    ordered = sorted(baselines, key=lambda b: b.name != FIRST)
    points: list[dict[str, Any]] = []
    for config in (b.config for b in ordered if b.config is not None):
        params = params_of(config, space)
        if params is not None and params not in points and len(points) < limit:
            points.append(params)
    return points


def params_of(config: TrialConfig, space: SearchSpace) -> dict[str, Any] | None:
    """The trial parameters that make :func:`automl.space.suggest.suggest_trial_config` build
    the space's nearest point to ``config``; None when the space cannot express it."""
    model, train = config.model, config.train
    values: list[tuple[str, str, Any]] = [("n_layers", "n_layers", len(model.hidden_units))]
    values += [(f"n_units_l{i}", "units", u) for i, u in enumerate(model.hidden_units)]
    values += [("activation", "activation", model.activation),
               ("batch_norm", "batch_norm", model.batch_norm),
               ("dropout", "dropout", model.dropout),
               ("optimizer", "optimizer", train.optimizer)]
    if train.optimizer in ("sgd", "rmsprop"):
        values.append(("momentum", "momentum", train.momentum))
    if train.optimizer == "sgd" and train.momentum > 0:
        values.append(("nesterov", "nesterov", train.nesterov))
    values += [(name, name, getattr(train, name)) for name in (
        "lr", "lr_schedule", "batch_size", "max_epochs", "patience", "weight_decay", "l1",
        "grad_clip_norm", "loss")]
    if train.loss == "huber":
        values.append(("huber_delta", "huber_delta", train.huber_delta))
    values += [("embedding", "embedding", model.embedding),
               ("ensemble_k", "ensemble_k", model.ensemble_k)]
    params: dict[str, Any] = {}
    for name, space_name, value in values:
        param = space[space_name]
        if space_name == "n_layers" and not _in_range(param, value):
            return None
        point = nearest(param, value)
        if point is None and name in LEFT_TO_THE_SAMPLER:
            continue
        if point is None:
            return None
        if not _fixed(param):
            params[name] = point
    return params


def nearest(param: Param, value: Any) -> Any:
    """The value of ``param`` nearest to ``value``; None if it has no such choice."""
    if isinstance(param, Fixed):
        return param.value
    if isinstance(param, Choice):
        return value if value in param.choices else None
    low, high = param.low, param.high
    clipped = min(max(value, low), high)
    step = (1 if param.log else param.step) if isinstance(param, IntRange) else param.step
    if step is None:
        return float(clipped)
    return min(high, low + round((clipped - low) / step) * step)


def _fixed(param: Param) -> bool:
    return isinstance(param, Fixed) or (isinstance(param, Choice) and len(param.choices) == 1)


def _in_range(param: Param, value: int) -> bool:
    if isinstance(param, (IntRange, FloatRange)):
        return param.low <= value <= param.high and math.isfinite(value)
    return nearest(param, value) == value
