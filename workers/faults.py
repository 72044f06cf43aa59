"""Deterministic fault injection for the reliability tests.

Set ``AUTOML_FAULT`` to one or more comma-free specs separated by ``;``, each
``ACTION@trial:N:epoch:E`` (either part optional), for example
``raise@trial:3:epoch:1`` or ``oom@epoch:1``. Actions: ``raise`` (RuntimeError),
``oom`` (torch.OutOfMemoryError), ``sigkill`` (kill this process). It is read once per
process, at its first trial's first epoch (:func:`install` replaces it); a malformed spec
fails that trial with a ConfigError naming the variable; unset, it costs nothing.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

import torch

from automl.errors import ConfigError

FAULT_ENV = "AUTOML_FAULT"


@dataclass(frozen=True)
class Fault:
    action: str
    trial: int | None = None
    epoch: int | None = None

    def matches(self, trial: int, epoch: int) -> bool:
        return (self.trial in (None, trial)) and (self.epoch in (None, epoch))


ACTIONS = ("raise", "oom", "sigkill")


def parse_faults(text: str) -> list[Fault]:
    """The specs in ``text``; a malformed one is a ConfigError naming ``AUTOML_FAULT``."""
    faults = []
    for spec in filter(None, (s.strip() for s in text.split(";"))):
        action, _, where = spec.partition("@")
        parts = where.split(":") if where else []
        try:
            fields = dict(zip(parts[::2], (int(v) for v in parts[1::2]), strict=True))
        except ValueError as exc:
            raise ConfigError(f"{FAULT_ENV}: {spec!r} is not ACTION@trial:N:epoch:E",
                              field=FAULT_ENV) from exc
        if action not in ACTIONS or set(fields) - {"trial", "epoch"}:
            raise ConfigError(f"{FAULT_ENV}: {spec!r} is not ACTION@trial:N:epoch:E with "
                              f"ACTION one of {', '.join(ACTIONS)}", field=FAULT_ENV)
        faults.append(Fault(action, fields.get("trial"), fields.get("epoch")))
    return faults


def install(spec: str | None) -> None:
    """Replace this process's faults with ``spec`` (None or "" removes them). A process
    otherwise installs ``$AUTOML_FAULT`` at its first trial (a worker or a Ray task
    started with it set); tests running trials in-process call this."""
    global _installed
    _installed = tuple(parse_faults(spec or ""))


def inject(trial: int, epoch: int) -> None:
    """Raise or kill if an installed fault matches this trial and epoch."""
    if _installed is None:  # the process's first trial: $AUTOML_FAULT, once
        install(os.environ.get(FAULT_ENV))
    for fault in (f for f in _installed or () if f.matches(trial, epoch)):
        if fault.action == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        if fault.action == "oom":
            raise torch.OutOfMemoryError("injected CUDA out of memory")
        raise RuntimeError(f"injected fault at trial {trial}, epoch {epoch}")


_installed: tuple[Fault, ...] | None = None  # not read yet
