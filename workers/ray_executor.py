"""Run trials and evaluations as Ray tasks (a local Ray by default, or a cluster).

Each trial is one Ray task that loads the study from storage, runs exactly one Optuna
trial and returns; so the trial budget is exact whatever the number of workers, and the
same code runs on a laptop and a cluster. The dataset is put in the object store once and
turned into tensors once per worker process (cached by content hash). While a local Ray
starts, the first trials train in a fork of the driver (:mod:`workers.head_start`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import ray
import torch

from automl.configs import TrialConfig
from automl.data import PreparedData
from automl.errors import ConfigError
from automl.executor import StudyJob, TrialDone
from automl.space import SearchSpace
from automl.studies import load_study
from workers.data import TensorSplits, to_tensors
from workers.evaluate import evaluate_seeds
from workers.head_start import HeadStart, can_fork, report_finished, start_meanwhile
from workers.objective import run_trial
from workers.predictor import Predictor

_TENSORS: dict[str, TensorSplits] = {}
PRELOAD = ("workers.warm",)  # imported by every worker of a local Ray as it starts


def _worker_tensors(data: PreparedData) -> TensorSplits:
    """Per-process cache: threads follow the task's CPUs, device follows its GPUs."""
    resources = ray.get_runtime_context().get_assigned_resources()
    torch.set_num_threads(max(1, int(resources.get("CPU", 1))))
    device = "cuda" if resources.get("GPU", 0) > 0 and torch.cuda.is_available() else "cpu"
    key = f"{data.content_hash}:{device}"
    if key not in _TENSORS:
        _TENSORS.clear()
        _TENSORS[key] = to_tensors(data, device)
    return _TENSORS[key]


@ray.remote(max_retries=0)
def trial_task(job: StudyJob, data: PreparedData, worker_index: int) -> None:
    logging.getLogger("optuna").setLevel(logging.WARNING)
    study = load_study(job.storage_url, job.study_name, worker_index)
    run_trial(study, SearchSpace.from_dict(job.space), _worker_tensors(data), job.seed,
              pruning=job.pruning)


@ray.remote(max_retries=0)
def evaluation_task(config: dict[str, Any], seeds: list[int], data: PreparedData,
                    keep_model: bool = False) -> dict[str, Any]:
    trial_config = TrialConfig.from_dict(config)
    evaluation = evaluate_seeds(trial_config, seeds, _worker_tensors(data))
    result = evaluation.to_dict()
    if keep_model:  # the bundle's bytes: the driver uploads them, torch-free
        result["model_files"] = Predictor(evaluation.model, data.preprocessor,
                                          trial_config).to_files()
    return result


class RayExecutor:
    """Keeps as many trials in flight as the cluster has room for, and no more.

    A local Ray is started at the first trial or evaluation, not on construction. With
    ``head_start`` (CPU trials only), the first trials train in a forked copy of this
    process while it starts (:mod:`workers.head_start`).
    """

    def __init__(self, address: str | None = None, n_workers: int | None = None,
                 cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0,
                 head_start: bool = True):
        self.address, self.n_workers = address, n_workers
        self.started_ray = not ray.is_initialized()
        self.head_start = (head_start and self.started_ray and address is None
                           and gpus_per_trial == 0 and can_fork())
        self.options = {"num_cpus": cpus_per_trial, "num_gpus": gpus_per_trial}
        self._data_refs: dict[str, ray.ObjectRef] = {}
        self.max_parallel = 0
        self.head_start_trials = 0  # trials the fork ran while Ray started
        if not self.head_start:
            self.start()

    def start(self) -> None:
        """Start (or join) Ray, once, and size the trials in flight to it.

        Called by the first trials or evaluation; callers may call it earlier."""
        if self.max_parallel:
            return
        if self.started_ray:
            start_ray(self.address, self.n_workers)
        resources = ray.cluster_resources()
        local = self.started_ray and self.address is None  # a Ray this executor started
        try:
            check_gpus(resources, self.options["num_gpus"], local=local)
        except ConfigError:
            self.close()
            raise
        slots = trial_slots(resources, **self.options)
        # A Ray started here has n_workers CPUs, so slots already count them; on a cluster
        # n_workers may ask for more than fits now (an autoscaler adds nodes for the rest).
        self.max_parallel = slots if local else self.n_workers or slots

    def run_trials(self, job: StudyJob, data: PreparedData, n_trials: int,
                   deadline: float | None, on_trial_done: TrialDone) -> list[str]:
        head, stop = None, False
        if self.max_parallel or not self.head_start:
            self.start()
        else:  # train in a fork of this process while Ray starts
            head = HeadStart(job, data, n_trials, deadline)
            stop = start_meanwhile(self.start, head, on_trial_done)
        data_ref = self._put(data)
        claim = head.claim if head is not None else _Counter(n_trials).claim
        pending: dict[ray.ObjectRef, int] = {}
        lost: list[str] = []
        while True:
            if not stop:
                in_head = 1 if head is not None and head.running else 0
                stop = self._launch(job, data_ref, pending, claim, deadline, in_head)
            if head is not None:
                stop = report_finished(head.newly_finished(), on_trial_done) or stop
                if not head.running:
                    lost += head.close()
                    self.head_start_trials = head.finished
                    head = None
                    continue
            if not pending:
                if head is None:
                    break
                head.wait(timeout=0.2)
                continue
            done, _ = ray.wait(list(pending), num_returns=1,
                               timeout=None if head is None else 0.2)
            for ref in done:
                pending.pop(ref)
                lost += _task_error(ref)
            stop = report_finished(len(done), on_trial_done) or stop
        return lost

    def _launch(self, job: StudyJob, data_ref: ray.ObjectRef,
                pending: dict[ray.ObjectRef, int], claim: Callable[[], int | None],
                deadline: float | None, in_head: int) -> bool:
        """Fill the free slots with trial tasks; True once the deadline has passed."""
        while len(pending) + in_head < self.max_parallel:
            if deadline is not None and time.monotonic() >= deadline:
                return True
            index = claim()
            if index is None:
                break
            pending[trial_task.options(**self.options).remote(job, data_ref, index)] = index
        return False

    def evaluate(self, configs: list[TrialConfig], seeds: list[int], data: PreparedData,
                 on_done: Callable[[], None],
                 keep_model: int | None = None) -> list[dict[str, Any]]:
        self.start()
        data_ref = self._put(data)
        refs = [evaluation_task.options(**self.options).remote(c.to_dict(), seeds, data_ref,
                                                               i == keep_model)
                for i, c in enumerate(configs)]
        results: dict[ray.ObjectRef, dict[str, Any]] = {}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            results[done[0]] = ray.get(done[0])
            on_done()
        return [results[ref] for ref in refs]

    def _put(self, data: PreparedData) -> ray.ObjectRef:
        """Put each dataset in the object store once per executor."""
        if data.content_hash not in self._data_refs:
            self._data_refs[data.content_hash] = ray.put(data)
        return self._data_refs[data.content_hash]

    def close(self) -> None:
        self._data_refs.clear()
        if self.started_ray:
            ray.shutdown()


class _Counter:
    """The trial budget when no head start shares it."""

    def __init__(self, n_trials: int) -> None:
        self.n_trials, self.claimed = n_trials, 0

    def claim(self) -> int | None:
        if self.claimed >= self.n_trials:
            return None
        self.claimed += 1
        return self.claimed - 1


def trial_slots(resources: Mapping[str, float], num_cpus: float, num_gpus: float) -> int:
    """How many trials fit on the cluster at once: the scarcer of its CPUs and its GPUs
    divided by what each trial asks for (at least one)."""
    fits = []
    if num_cpus > 0:
        fits.append(resources.get("CPU", 0.0) / num_cpus)
    if num_gpus > 0 and resources.get("GPU", 0.0) > 0:
        fits.append(resources.get("GPU", 0.0) / num_gpus)
    return max(1, int(min(fits) + 1e-9)) if fits else 1


def check_gpus(resources: Mapping[str, float], num_gpus: float, local: bool) -> None:
    """Trials that ask for a GPU on a Ray without one would wait for ever: refuse them on
    a local Ray; on a cluster (which may add GPU nodes later) say why nothing starts."""
    if num_gpus <= 0 or resources.get("GPU", 0.0) > 0:
        return
    message = (f"gpus_per_trial is {num_gpus:g} but the Ray here has no GPU "
               f"(torch sees {torch.cuda.device_count()} CUDA devices)")
    if local:
        raise ConfigError(message + "; use gpus_per_trial=0 to train on the CPU",
                          field="gpus_per_trial")
    logging.getLogger(__name__).warning("%s: trials wait until a GPU node joins", message)


def start_ray(address: str | None, n_workers: int | None,
              env_vars: dict[str, str] | None = None) -> None:
    """Join ``address``, or start a local Ray bound to loopback with the machine's CPUs.

    Ray's token authentication stays on; the token file it writes (world-readable in Ray
    2.60) is created readable by its owner only (:func:`private_files`), and one written
    before is made so. A local Ray starts warm: :func:`local_system_config`.
    """
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    with private_files():
        _init_ray(address, n_workers, {"env_vars": env_vars} if env_vars else None)
    protect_token_file()


def _init_ray(address: str | None, n_workers: int | None,
              runtime_env: dict[str, Any] | None) -> None:
    if address:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False,
                 runtime_env=runtime_env)
    else:
        # address="local": a fresh instance even when a `ray start` cluster runs here,
        # which a plain ray.init() would silently join.
        ray.init(address="local", num_cpus=n_workers or os.cpu_count() or 1,
                 include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=False, _node_ip_address="127.0.0.1", runtime_env=runtime_env,
                 _system_config=local_system_config(runtime_env))


@contextlib.contextmanager
def private_files() -> Iterator[None]:
    """Files this process creates meanwhile (Ray's token among them: Ray writes it with a
    plain ``open``) are readable by their owner only from the moment they exist."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def local_system_config(runtime_env: dict[str, Any] | None) -> dict[str, Any]:
    """Ray settings that take the workers' start-up off the first trial's path.

    Every worker imports the training modules as it starts (:mod:`workers.warm`), not in
    its first task. Without a job ``runtime_env``, the raylet also starts its workers as
    soon as it is up rather than when the driver connects (0.2-0.9 s later); with one they
    could not serve the job's tasks, so the default (start them for the first driver) stays.
    """
    config: dict[str, Any] = {"preload_python_modules": list(PRELOAD)}
    if runtime_env is None:
        config["enable_worker_prestart"] = True
    return config


def protect_token_file() -> None:
    token = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    if token.is_file():
        token.chmod(0o600)


def _task_error(ref: ray.ObjectRef) -> list[str]:
    try:
        ray.get(ref)
    except ray.exceptions.RayError as exc:
        return [f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"]
    return []
