"""The interface between the tuner and whatever runs the training work.

``automl`` defines it and never imports torch or ray; :mod:`workers.ray_executor`
implements it with Ray (local in-process by default, or a cluster address). The default
is reached by :func:`default_executor`, the only place ``automl`` names ``workers``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from automl.configs import TrialConfig
from automl.data import PreparedData
from automl.errors import ConfigError


@dataclass(frozen=True)
class StudyJob:
    """Everything a worker needs to run trials of one study."""

    storage_url: str
    study_name: str
    space: dict[str, Any]
    seed: int


TrialDone = Callable[[], bool]
"""Called after each finished trial; returning True stops launching new trials."""


class Executor(Protocol):
    def run_trials(self, job: StudyJob, data: PreparedData, n_trials: int,
                   deadline: float | None, on_trial_done: TrialDone) -> list[str]:
        """Run up to ``n_trials`` trials; return the errors of tasks that were lost."""

    def evaluate(self, configs: list[TrialConfig], data: PreparedData,
                 on_done: Callable[[], None]) -> list[dict[str, Any]]:
        """Train each config (under the common protocol) and return its evaluation."""

    def close(self) -> None:
        """Release what the executor started."""


def default_executor(ray_address: str | None = None, n_workers: int | None = None,
                     cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0) -> Executor:
    """The Ray executor (a local Ray started in-process unless ``ray_address`` is given)."""
    try:
        from workers.ray_executor import RayExecutor
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ConfigError(f"training needs the worker extras ({exc.name} is missing): "
                          "pip install 'automl[worker]'", field="executor") from exc
    return RayExecutor(ray_address, n_workers, cpus_per_trial, gpus_per_trial)
