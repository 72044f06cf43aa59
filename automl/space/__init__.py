"""The search space: which hyperparameters are tuned, over which ranges.

A space maps parameter names to one of :class:`IntRange`, :class:`FloatRange`,
:class:`Choice` or :class:`Fixed`. From YAML/JSON or a dict, a plain value means
``Fixed``, a list means ``Choice`` and a mapping gives the type explicitly::

    n_layers: {type: int, low: 1, high: 4}
    units: {type: int, low: 16, high: 512, log: true}   # width of every hidden layer
    activation: [relu, gelu, selu]
    lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
    max_epochs: 60

A user's space overrides the default space parameter by parameter; every parameter it
does not name keeps its default. Every name and value is checked against the
parameter's domain, and an invalid one raises :class:`~automl.errors.SpaceError` naming it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from automl.configs import CLASSIFICATION_LOSSES, REGRESSION_LOSSES, Task
from automl.errors import ConfigError, SpaceError
from automl.space.defaults import default_batch_size, default_params
from automl.space.params import (
    DOMAINS,
    Choice,
    Domain,
    Fixed,
    FloatRange,
    IntRange,
    Param,
    Scalar,
)

__all__ = ["DOMAINS", "Choice", "Domain", "Fixed", "FloatRange", "IntRange", "Param", "Scalar",
           "SearchSpace", "default_batch_size", "default_space", "parse_param"]

class _YamlLoader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-4`` as a float (YAML 1.1 wants ``1.0e-4``)."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$|^[-+]?\.(?:inf|Inf|INF)$"
               r"|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."),
)

RANGE_KEYS = {"type", "low", "high", "step", "log"}
MAX_NAME_LENGTH = 64


def default_space(task: Task, n_train_rows: int | None = None) -> SearchSpace:
    """The space used when the user gives none (:mod:`automl.space.defaults`)."""
    return SearchSpace(default_params(task, n_train_rows))


class SearchSpace:
    """A validated mapping from parameter name to :data:`Param`."""

    def __init__(self, params: Mapping[str, Param]):
        for name, param in params.items():
            _check_param(name, param)
        self.params: dict[str, Param] = dict(params)

    def __getitem__(self, name: str) -> Param:
        return self.params[name]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and self.params == other.params

    def __repr__(self) -> str:
        return f"SearchSpace({self.params!r})"

    @classmethod
    def from_dict(cls, data: Any) -> SearchSpace:
        """Parse a user's (partial) space; see the module docstring for the format."""
        if not isinstance(data, Mapping):
            raise SpaceError(f"a search space is a mapping of parameter names, not "
                             f"{type(data).__name__}", field="space")
        return cls({_check_name(name): parse_param(str(name), value)
                    for name, value in data.items()})

    @classmethod
    def from_file(cls, path: str | Path) -> SearchSpace:
        """Read a space from a ``.yaml``/``.yml`` or ``.json`` file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
            data = json.loads(text) if path.suffix == ".json" else yaml.load(text, _YamlLoader)
        except OSError as exc:
            raise SpaceError(f"cannot read search space file {path}: {exc.strerror}",
                             field="space") from exc
        except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SpaceError(f"{path.name} is not valid YAML/JSON: {exc}", field="space") from exc
        return cls.from_dict(data if data is not None else {})

    def resolve(self, task: Task, n_train_rows: int, n_numeric: int | None = None,
                budget: str = "default") -> SearchSpace:
        """The default space for ``task`` (and the data's ``n_numeric`` numeric columns, at
        ``budget``) overridden by this one, checked against the data."""
        defaults = default_params(task, n_train_rows, n_numeric, budget)
        merged = SearchSpace({**defaults, **self.params})
        _check_losses(merged["loss"], task)
        return _fit_batch_sizes(merged, n_train_rows, user_set="batch_size" in self.params)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, readable back by :meth:`from_dict`."""
        return {name: _param_to_json(param) for name, param in self.params.items()}


def parse_param(name: str, value: Any) -> Param:
    """Turn one YAML/JSON value into a :data:`Param` (not yet checked against its domain)."""
    if isinstance(value, (list, tuple)):
        return Choice(tuple(value))
    if not isinstance(value, Mapping):
        if not isinstance(value, (int, float, str, bool)):
            raise SpaceError(f"parameter '{name}': a value must be a number, text, true/false, "
                             f"a list or a mapping, not {type(value).__name__}", field=name)
        return Fixed(value)
    kind = value.get("type")
    if kind == "categorical":
        _reject_unknown_keys(name, value, {"type", "choices"})
        choices = value.get("choices")
        if not isinstance(choices, (list, tuple)):
            raise SpaceError(f"parameter '{name}': 'choices' must be a list", field=name)
        return Choice(tuple(choices))
    if kind == "fixed":
        _reject_unknown_keys(name, value, {"type", "value"})
        fixed = value.get("value")
        if isinstance(fixed, (list, tuple, Mapping)) or fixed is None:
            raise SpaceError(f"parameter '{name}': a fixed value must be one number, text or "
                             "true/false", field=name)
        return parse_param(name, fixed)
    if kind not in ("int", "float"):
        raise SpaceError(f"parameter '{name}': 'type' must be int, float, categorical or fixed "
                         f"(got {kind!r})", field=name)
    _reject_unknown_keys(name, value, RANGE_KEYS)
    if "low" not in value or "high" not in value:
        raise SpaceError(f"parameter '{name}': a range needs 'low' and 'high'", field=name)
    log = value.get("log", False)
    if not isinstance(log, bool):
        raise SpaceError(f"parameter '{name}': 'log' must be true or false", field=name)
    if kind == "int":
        return IntRange(value["low"], value["high"], value.get("step", 1), log)
    return FloatRange(value["low"], value["high"], value.get("step"), log)


def _check_name(name: Any) -> str:
    if not isinstance(name, str):
        raise SpaceError(f"parameter names are text, not {type(name).__name__}", field=str(name))
    if name not in DOMAINS:
        shown = name if len(name) <= MAX_NAME_LENGTH else name[:MAX_NAME_LENGTH] + "..."
        raise SpaceError(f"unknown parameter '{shown}'; known parameters: "
                         f"{', '.join(DOMAINS)}", field=shown)
    return name


def _reject_unknown_keys(name: str, value: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(str(k) for k in value if k not in allowed)
    if unknown:
        raise SpaceError(f"parameter '{name}': unknown key '{unknown[0]}' (allowed: "
                         f"{', '.join(sorted(allowed))})", field=name)


def _check_param(name: str, param: Param) -> None:
    domain = DOMAINS[_check_name(name)]
    if isinstance(param, Fixed):
        _check_value(name, domain, param.value)
    elif isinstance(param, Choice):
        _check_choices(name, domain, param.choices)
    else:
        _check_range(name, domain, param)


def _check_choices(name: str, domain: Domain, choices: tuple[Any, ...]) -> None:
    if not choices:
        raise SpaceError(f"parameter '{name}': the list of choices is empty", field=name)
    for choice in choices:
        _check_value(name, domain, choice)
    if len(set(choices)) != len(choices):
        raise SpaceError(f"parameter '{name}': choices repeat a value", field=name)


def _check_value(name: str, domain: Domain, value: Any) -> None:
    if domain.kind == "bool":
        if not isinstance(value, bool):
            raise SpaceError(f"parameter '{name}': {value!r} is not true/false", field=name)
        return
    if domain.kind == "option":
        if value not in domain.options:
            raise SpaceError(f"parameter '{name}': {value!r} is not one of "
                             f"{', '.join(domain.options)}", field=name)
        return
    _check_number(name, domain, value, "value")
    _check_in_domain(name, domain, value)


def _check_number(name: str, domain: Domain, value: Any, what: str) -> None:
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if domain.kind == "int" and not is_int:
        raise SpaceError(f"parameter '{name}': {what} {value!r} must be a whole number",
                         field=name)
    if (not is_int and not isinstance(value, float)) or isinstance(value, bool):
        raise SpaceError(f"parameter '{name}': {what} {value!r} must be a number", field=name)
    if isinstance(value, float) and not math.isfinite(value):
        raise SpaceError(f"parameter '{name}': {what} must be finite, not {value}", field=name)


def _check_in_domain(name: str, domain: Domain, value: float) -> None:
    too_low = value <= domain.low if domain.low_open else value < domain.low
    if too_low or value > domain.high:
        low = f"({domain.low:g}" if domain.low_open else f"[{domain.low:g}"
        shown = repr(value) if len(repr(value)) <= 24 else repr(value)[:21] + "..."
        raise SpaceError(f"parameter '{name}' ({domain.help}): {shown} is outside "
                         f"{low}, {domain.high:g}]", field=name)


def _check_range(name: str, domain: Domain, param: IntRange | FloatRange) -> None:
    if domain.kind not in ("int", "float"):
        raise SpaceError(f"parameter '{name}' takes a list of choices or one value, "
                         "not a numeric range", field=name)
    if domain.kind == "int" and isinstance(param, FloatRange):
        raise SpaceError(f"parameter '{name}' is a whole number: use type int", field=name)
    for what in ("low", "high"):
        _check_number(name, domain, getattr(param, what), what)
    if param.low > param.high:
        raise SpaceError(f"parameter '{name}': low {param.low!r} is greater than high "
                         f"{param.high!r}", field=name)
    _check_in_domain(name, domain, param.low)
    _check_in_domain(name, domain, param.high)
    if param.log and param.low <= 0:
        raise SpaceError(f"parameter '{name}': a log range needs low > 0 (got {param.low!r})",
                         field=name)
    _check_step(name, domain, param)


def _check_step(name: str, domain: Domain, param: IntRange | FloatRange) -> None:
    if param.step is None:
        if isinstance(param, IntRange):
            raise SpaceError(f"parameter '{name}': step must be a whole number >= 1",
                             field=name)
        return
    _check_number(name, domain, param.step, "step")
    if param.step <= 0:
        raise SpaceError(f"parameter '{name}': step must be > 0 (got {param.step!r})",
                         field=name)
    if param.log and param.step != 1:
        raise SpaceError(f"parameter '{name}': step cannot be combined with log", field=name)
    if param.high > param.low and param.step > param.high - param.low:
        raise SpaceError(f"parameter '{name}': step {param.step!r} is larger than the range "
                         f"{param.low!r}..{param.high!r}", field=name)


def _check_losses(param: Param, task: Task) -> None:
    allowed = REGRESSION_LOSSES if task == "regression" else CLASSIFICATION_LOSSES
    values = param.choices if isinstance(param, Choice) else (getattr(param, "value", None),)
    for value in values:
        if value not in allowed:
            raise SpaceError(f"parameter 'loss': {value!r} does not fit a {task} task; use "
                             f"{', '.join(allowed)}", field="loss")


def _fit_batch_sizes(space: SearchSpace, n_train_rows: int, user_set: bool) -> SearchSpace:
    param = space["batch_size"]
    sizes = _values_of(param)
    fitting = tuple(s for s in sizes if s <= n_train_rows)
    if len(fitting) == len(sizes):
        return space
    if user_set:
        raise ConfigError(f"batch_size {max(sizes)} is larger than the {n_train_rows} training "
                          "rows", field="batch_size")
    params = dict(space.params)
    params["batch_size"] = Choice(fitting) if fitting else Fixed(n_train_rows)
    return SearchSpace(params)


def _values_of(param: Param) -> tuple[Any, ...]:
    if isinstance(param, Fixed):
        return (param.value,)
    if isinstance(param, Choice):
        return param.choices
    return (param.low, param.high)


def _param_to_json(param: Param) -> Any:
    if isinstance(param, Fixed):
        return param.value
    if isinstance(param, Choice):
        return list(param.choices)
    data: dict[str, Any] = {"type": "int" if isinstance(param, IntRange) else "float",
                            "low": param.low, "high": param.high}
    if param.log:
        data["log"] = True
    if param.step not in (None, 1) or (isinstance(param, FloatRange) and param.step):
        data["step"] = param.step
    return data
