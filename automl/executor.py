"""The interface between the tuner and whatever runs the training work.

``automl`` defines it and never imports torch or ray; :mod:`workers.ray_executor`
implements it with Ray (local in-process by default, or a cluster address), reached
through :func:`automl.runtime.default_executor`.
"""

from __future__ import annotations

import math
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


def check_gpu_share(value: Any) -> None:
    """``gpus_per_trial``: 0 (CPU), a fraction of one GPU (trials share it), or a whole
    number of GPUs, as Ray accepts; anything else is refused by name."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not 0 <= value < math.inf or (value > 1 and value != int(value)):
        raise ConfigError("gpus_per_trial must be 0, a fraction of one GPU such as 0.25, "
                          f"or a whole number of GPUs, not {value!r}", field="gpus_per_trial")
