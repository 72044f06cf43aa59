"""Imported by each worker process of a local Ray as it starts, before any task reaches it.

:func:`workers.ray_setup.start_ray` lists this module in Ray's
``preload_python_modules`` (:func:`workers.ray_setup.local_system_config`): the workers
start while Ray is still coming up, and load torch, the study storage and the training
code while the driver finishes starting Ray and sets up the study, instead of inside the
first trial. Importing is all it does: nothing is trained or connected. It never raises (an
exception here would kill the worker before it takes any task); a module that fails to
import fails again, and is reported, in the task that needs it.
"""

from __future__ import annotations

import importlib
import logging

MODULES = (
    "workers.local_run",  # torch, optuna, automl.data, the ticket runner and training loop
    "torch._dynamo",  # torch.optim imports it when it builds its first optimizer (~1 s)
    # Optuna's RDB storage imports these when a trial first loads its study.
    "alembic.command",
    "alembic.config",
    "alembic.migration",
    "alembic.script",
)

for _name in MODULES:
    try:
        importlib.import_module(_name)
    except Exception:  # pragma: no cover - a broken install; the first task reports it
        logging.getLogger(__name__).warning("could not preload %s", _name, exc_info=True)
