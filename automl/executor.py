"""The interface between the tuner and whatever runs the training work.

``automl`` defines it and never imports torch or ray; :mod:`workers.ray_executor`
implements it with Ray (local in-process by default, or a cluster address). The default
is reached by :func:`default_executor`, the only place ``automl`` names ``workers``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from automl.configs import TrialConfig
from automl.data import PreparedData
from automl.errors import ConfigError
from automl.pruning import PruningPolicy


@dataclass(frozen=True)
class StudyJob:
    """Everything a worker needs to run trials of one study."""

    storage_url: str
    study_name: str
    space: dict[str, Any]
    seed: int
    pruning: PruningPolicy = field(default_factory=PruningPolicy)


TrialDone = Callable[[], bool]
"""Called after each finished trial; returning True stops launching new trials."""


class Executor(Protocol):
    def run_trials(self, job: StudyJob, data: PreparedData, n_trials: int,
                   deadline: float | None, on_trial_done: TrialDone) -> list[str]:
        """Run up to ``n_trials`` trials; return the errors of tasks that were lost."""

    def evaluate(self, configs: list[TrialConfig], seeds: list[int], data: PreparedData,
                 on_done: Callable[[], None],
                 keep_model: int | None = None) -> list[dict[str, Any]]:
        """Train each config once per seed (under the common protocol); return, per config,
        ``{"runs": [one evaluation per seed], "ensemble": {"val_score", "test_score"}}``
        (the ensemble averages the seeds' predictions). ``on_done`` is called per config.

        The result for ``configs[keep_model]`` also carries the ensemble's bundle under
        ``"model_files"`` (file name -> bytes, see ``Predictor.to_files``)."""

    def close(self) -> None:
        """Release what the executor started."""


def single_machine_ray() -> None:
    """Make a Ray started here listen on 127.0.0.1 only.

    Ray 2.60 otherwise binds its servers to every interface and advertises the host's
    outward address, even when told 127.0.0.1. Its single-machine mode (the switch below,
    read when ray is first imported) keeps everything on loopback. Clusters are unaffected:
    this is only called when no cluster address is given.
    """
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def check_gpu_share(value: Any) -> None:
    """``gpus_per_trial``: 0 (CPU), a fraction of one GPU (trials share it), or a whole
    number of GPUs, as Ray accepts; anything else is refused by name."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not 0 <= value < math.inf or (value > 1 and value != int(value)):
        raise ConfigError("gpus_per_trial must be 0, a fraction of one GPU such as 0.25, "
                          f"or a whole number of GPUs, not {value!r}", field="gpus_per_trial")


def default_executor(ray_address: str | None = None, n_workers: int | None = None,
                     cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0,
                     head_start: bool = True) -> Executor:
    """The Ray executor (a local Ray started in-process unless ``ray_address`` is given).

    ``head_start``: a local Ray's first trials train in a fork of this process while Ray
    starts (:mod:`workers.head_start`)."""
    if ray_address is None:
        single_machine_ray()
    try:
        from workers.ray_executor import RayExecutor
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ConfigError(f"training needs the worker extras ({exc.name} is missing): "
                          "pip install 'automl[worker]'", field="executor") from exc
    return RayExecutor(ray_address, n_workers, cpus_per_trial, gpus_per_trial, head_start)
