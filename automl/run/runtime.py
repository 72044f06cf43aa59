"""The one place ``automl`` names ``workers``: the training side, imported on first use.

``automl`` never imports torch or Ray at import time, so the client and the CLI's light
commands work without the ``worker`` extras. Whatever trains, serves tickets, predicts or
exports a model is reached through the functions here; each imports its ``workers``
module when called and turns a missing extra into one actionable :class:`ConfigError`.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from automl.errors import ConfigError

WORKER_EXTRAS = "worker_extras"  # the field of the error a missing extra raises

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from automl.data import PreparedData
    from workers.service_worker import ServiceWorker


def _workers(module: str, what: str) -> ModuleType:
    try:
        return importlib.import_module(f"workers.{module}")
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        if exc.name is None or exc.name.startswith("workers"):
            raise
        raise ConfigError(f"{what} needs the worker extras ({exc.name} is missing): "
                          "pip install 'automl[worker]'", field=WORKER_EXTRAS) from exc


def single_machine_ray() -> None:
    """Make a Ray started here listen on 127.0.0.1 only.

    Ray 2.60 otherwise binds its servers to every interface and advertises the host's
    outward address, even when told 127.0.0.1. Its single-machine mode (the switch below,
    read when ray is first imported) keeps everything on loopback. Clusters are unaffected:
    this is only called when no cluster address is given.
    """
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def check_local_gpus(gpus_per_trial: float) -> None:
    """Trials that ask for a GPU on a local Ray where torch sees none: a ConfigError now."""
    if gpus_per_trial > 0:
        _workers("ray_setup", "training").check_local_gpus(gpus_per_trial)


def run_to_end(url: str, run_id: str, prepared: PreparedData, finished: Callable[[], bool],
               *, ray_address: str | None = None, n_workers: int | None = None,
               gpus_per_trial: float = 0.0, head_start: bool = True,
               cohort_trials: int | None = None) -> None:
    """Serve a submitted run's tickets from this process until ``finished()`` says it has
    ended: on a local Ray started here (``n_workers`` CPUs) unless ``ray_address`` is given,
    the first tickets training in a fork while a local Ray starts (``head_start``, CPU
    only), each Ray task training up to ``cohort_trials`` trials together. See
    :mod:`workers.local_run`."""
    if ray_address is None:
        single_machine_ray()
    _workers("local_run", "training").run_to_end(
        url, run_id, prepared, finished, ray_address=ray_address, n_workers=n_workers,
        gpus_per_trial=gpus_per_trial, head_start=head_start, cohort_trials=cohort_trials)


def service_worker(storage: str, *, lease_s: float, optuna_proxy: str | None,
                   ray_address: str | None = None, threads: int = 1,
                   cohort_trials: int | None = None, **ray_options: Any) -> ServiceWorker:
    """An ``automl worker``: tickets run in this process, or on Ray when ``ray_address``
    is given (``"local"`` starts a Ray on this machine); ``ray_options`` are
    ``RayServiceWorker``'s (``cpus_per_trial``, ``gpus_per_trial``, ``max_parallel``)."""
    if ray_address is None:
        return _workers("service_worker", "a worker").ServiceWorker(
            storage, lease_s=lease_s, threads=threads, optuna_proxy=optuna_proxy,
            cohort_trials=cohort_trials)
    if ray_address == "local":
        single_machine_ray()
    return _workers("ray_service", "a Ray worker").RayServiceWorker(
        storage, ray_address=ray_address, lease_s=lease_s, optuna_proxy=optuna_proxy,
        cohort_trials=cohort_trials, **ray_options)


def predictor_from_files(files: dict[str, bytes]) -> Any:
    """A stored model bundle (file name -> bytes) as a ``workers.predictor.Predictor``."""
    return _workers("predictor", "predicting").Predictor.from_files(files)


def onnx_from_files(files: dict[str, bytes]) -> bytes:
    """The ONNX file of a stored model bundle, exported here from its weights."""
    export = _workers("export", "exporting to ONNX")
    return bytes(export.onnx_bytes(predictor_from_files(files)))


def stored_prepared(engine: Engine, run_id: str) -> PreparedData:
    """A submitted run's data as its workers prepare it from the stored table (its notes
    included), for serving it again from this process."""
    _run, prepared = _workers("tickets", "training").stored_run_data(engine, run_id)
    return prepared
