"""Starting or joining Ray, and sizing work to it; shared by every Ray entry point.

A local Ray is private (loopback only, its own instance even when a ``ray start`` cluster
runs here, its token file readable by its owner only) and starts warm: its workers import
the training code as they start (:mod:`workers.warm`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import ray
import torch

from automl.errors import ConfigError


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


def check_local_gpus(num_gpus: float) -> None:
    """A local Ray gets the GPUs torch sees: refuse GPU trials here before anything is
    stored or started when it sees none."""
    check_gpus({"GPU": float(torch.cuda.device_count())}, num_gpus, local=True)


def start_ray(address: str | None, n_workers: int | None,
              env_vars: dict[str, str] | None = None) -> None:
    """Join ``address``, or start a local Ray bound to loopback with the machine's CPUs.

    Ray's token authentication stays on; the token file it writes (world-readable in Ray
    2.60) is created readable by its owner only (:func:`private_files`), and one written
    before is made so. A local Ray starts warm: :func:`local_system_config`.
    """
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    runtime_env = {"env_vars": env_vars} if env_vars else None
    with private_files():
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
    token = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    if token.is_file():
        token.chmod(0o600)


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
    config: dict[str, Any] = {"preload_python_modules": ["workers.warm"]}
    if runtime_env is None:
        config["enable_worker_prestart"] = True
    return config
