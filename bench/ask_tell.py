"""What the search itself costs per trial once a study holds many trials (issue 20).

    python bench/ask_tell.py --history 1000 10000 [--trials 20] [--epochs 10]
                             [--storage memory sqlite postgresql]
                             [--sampler automl python-ndtr full-tpe independent-tpe random]
                             [--pruner automl optuna] [--cohort 1 32] [--window 1000]
                             [--out bench/records/ask_tell.jsonl]

For each history size N and storage, a study with the run's own sampler and pruner
(``automl.study.settings``: multivariate grouped TPE with the constant liar, the median
pruner) and the default space (``automl.space``, digits' shape) is filled with N finished
trials (random parameters from the space, a synthetic loss curve of ``--epochs`` reports,
a fifth of them pruned), added without sampling. Then ``--trials`` more are run the way
a worker runs them, with no training: ask, suggest the configuration, report and ask the
pruner every epoch, tell. Each step is timed; the mean per trial is printed and recorded.
``--cohort K`` asks them K at a time as a cohort does (``workers.trial_cohorts``): the
first from the whole space, the next K - 1 with its structure pinned and drawn from one
TPE fit (``automl.study.storage.draw_ahead``); then every member reports each epoch,
their pruning checks of one epoch sharing one read of the study and the members that
end at it written in one transaction (``workers.trial_cohorts.cohort_epoch``).

The cohort trainer's GPU rate (issue 20: 1,000 trials a minute and up on one GPU) leaves
60 ms of wall time per trial; time outside training under 10 % means under 6 ms per
trial for everything here. ``sqlite``: a file through ``automl.study.studies.make_storage``,
as ``tune`` uses it; ``postgresql``: a fresh database per row on a throwaway local server
(``tests/pgserver.py``, as the integration tests start one), through the same call. The
worker's one read of the whole study when it starts is timed apart (``first_read_s``),
before the measured trials.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
from optuna.samplers._tpe import _truncnorm
from optuna.trial import TrialState, create_trial

from automl.options import TuneOptions
from automl.run.plan import settings_of
from automl.space import SearchSpace
from automl.space.suggest import structure_params, suggest_trial_config
from automl.study.settings import make_pruner, make_sampler
from automl.study.storage.draw_ahead import drawing_ahead
from automl.study.storage.history_window import HISTORY_WINDOW
from automl.study.storage.tpe_numerics import optuna_log_ndtr
from automl.study.storage.write_behind import writing_together
from automl.study.studies import make_storage
from workers.trial_cohorts import cohort_epoch

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)


def default_space() -> SearchSpace:
    """The default space as digits resolves it (64 inputs, 1,077 training rows)."""
    return SearchSpace({}).resolve("multiclass", 1077, 64)


def curve(quality: float, epochs: int) -> list[float]:
    """A loss curve that falls to ``quality``."""
    return [quality + 1.5 * math.exp(-0.4 * e) for e in range(epochs)]


def synthetic_history(space: SearchSpace, n: int, epochs: int) -> list[Any]:
    """``n`` finished trials with parameters drawn from ``space`` by a random sampler."""
    scratch = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trials = []
    for number in range(n):
        trial = scratch.ask()
        config = suggest_trial_config(trial, space, seed=number)
        quality = 0.1 + abs(math.log10(config.train.lr) + 2.5) / 5 + (number % 7) / 50
        values = curve(quality, epochs)
        pruned = number % 5 == 0
        if pruned:
            values = values[: max(2, epochs // 3)]
        frozen = scratch.tell(trial, None if pruned else min(values),
                              state=TrialState.PRUNED if pruned else TrialState.COMPLETE)
        trials.append(create_trial(
            state=frozen.state, value=frozen.value, params=frozen.params,
            distributions=frozen.distributions,
            intermediate_values=dict(enumerate(values)), user_attrs={"synthetic": True}))
    return trials


def timed(clock: dict[str, float], name: str, work: Callable[[], Any]) -> Any:
    """``work()``, its seconds added to ``clock[name]``."""
    start = time.perf_counter()
    result = work()
    clock[name] = clock.get(name, 0.0) + time.perf_counter() - start
    return result


def run_trials(study: optuna.Study, space: SearchSpace, n: int, epochs: int,
               cohort: int = 1) -> dict[str, float]:
    """Run ``n`` trials as a worker does, without training, ``cohort`` at a time; ms per
    trial by step."""
    clock: dict[str, float] = {}
    for start in range(0, n, cohort):
        trials = ask_cohort(study, space, start, min(cohort, n - start), clock)
        curves = [curve(0.2 + ((start + j) % 5) / 20, epochs) for j in range(len(trials))]
        for epoch in range(epochs):
            scope = cohort_epoch(study) if cohort > 1 else nullcontext()
            timed(clock, "prune", scope.__enter__)
            for trial, values in zip(trials, curves, strict=True):
                timed(clock, "report",
                      lambda t=trial, v=values[epoch], e=epoch: t.report(v, e))
                timed(clock, "prune", trial.should_prune)
            if epoch == epochs - 1:  # every member ends at its last epoch, told in its scope
                for trial, values in zip(trials, curves, strict=True):
                    timed(clock, "tell", lambda t=trial, v=values: study.tell(t, min(v)))
            timed(clock, "tell", lambda s=scope: s.__exit__(None, None, None))  # the ends' write
    per_step = {name: 1000 * seconds / n for name, seconds in clock.items()}
    return {**per_step, "total": sum(per_step.values())}


def ask_cohort(study: optuna.Study, space: SearchSpace, start: int, size: int,
               clock: dict[str, float]) -> list[optuna.Trial]:
    """Ask ``size`` trials as a cohort does (``workers.trial_cohorts``): the first from the
    whole space, the others with its structure pinned, drawn ahead from one TPE fit and
    their parameters written together."""

    def ask_one(i: int) -> optuna.Trial:
        trial = timed(clock, "ask", study.ask)
        timed(clock, "suggest", lambda: suggest_trial_config(trial, space, seed=start + i))
        return trial

    first = ask_one(0)
    if size == 1:
        return [first]
    sampler = study.sampler
    study.sampler = optuna.samplers.PartialFixedSampler(structure_params(first.params), sampler)
    scope = writing_together(study)  # the members' parameters: one write, timed at the end
    try:
        timed(clock, "suggest", scope.__enter__)
        with drawing_ahead(sampler, size - 1):
            members = [first, *(ask_one(i) for i in range(1, size))]
        timed(clock, "suggest", lambda: scope.__exit__(None, None, None))
        return members
    finally:
        study.sampler = sampler


def sampler_named(name: str, settings: Any,
                  window: int = HISTORY_WINDOW) -> optuna.samplers.BaseSampler:
    """``automl``: the run's own (multivariate grouped TPE, constant liar, a window of ``window``
    finished trials, the run's 1,000 by default); ``full-tpe``: the same on the whole
    history, as before the window; ``python-ndtr``: ``automl`` with Optuna's own Python
    ``_log_ndtr`` (before ``automl.study.storage.tpe_numerics``); the others are what the
    issue names as levers, measured beside it."""
    if name == "independent-tpe":
        return optuna.samplers.TPESampler(n_startup_trials=settings.tpe_startup_trials,
                                          constant_liar=True, seed=settings.seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=settings.seed)
    if name == "full-tpe":
        return make_sampler(settings, window=None)
    sampler = make_sampler(settings, window=window)
    if name == "python-ndtr":  # the run's sampler with Optuna's own log Φ, one value at a time
        _truncnorm._log_ndtr = optuna_log_ndtr()
    return sampler


def pruner_named(name: str, settings: Any) -> optuna.pruners.BasePruner:
    """``automl``: the run's own (the median rule, completed curves kept in memory:
    ``automl.study.storage.completed_curves``); ``optuna``: Optuna's ``MedianPruner`` with the same
    start-up and warm-up, which reads every completed trial at each epoch."""
    if name == "optuna":
        return optuna.pruners.MedianPruner(n_startup_trials=settings.pruner_startup_trials,
                                           n_warmup_steps=settings.pruner_warmup_epochs)
    return make_pruner(settings)


def measure(history: int, storage_kind: str, n_trials: int, epochs: int, folder: Path,
            sampler: str = "automl", pruner: str = "automl", cohort: int = 1,
            window: int = HISTORY_WINDOW, postgres: Any = None) -> dict[str, Any]:
    space = default_space()
    settings = settings_of(TuneOptions(n_trials=history + n_trials), space)
    storage: Any = None
    name = f"ask_tell_{history}_{sampler}_{pruner}_{cohort}_{window}"
    if storage_kind == "sqlite":
        storage = make_storage(f"sqlite:///{folder / f'{name}.db'}")
    elif storage_kind == "postgresql":
        postgres.create_database(name, template="template0")
        storage = make_storage(postgres.url(name))
    study = optuna.create_study(storage=storage, sampler=sampler_named(sampler, settings, window),
                                pruner=pruner_named(pruner, settings), direction="minimize",
                                study_name=f"ask-tell-{history}")
    start = time.perf_counter()
    study.add_trials(synthetic_history(space, history, epochs))
    filled = time.perf_counter() - start
    # A worker reads the whole study once, when it starts (Optuna's cache of finished
    # trials, the cached pruner's curves, the windowed sampler's index of the trials);
    # timed apart, so that the per-trial figures are the steady state.
    start = time.perf_counter()
    study._storage.get_all_trials(study._study_id, deepcopy=False)
    curves = getattr(study.pruner, "_curves", None)
    if curves is not None:  # the cached pruner's first look, at a worker's first check
        curves.at(study, 0)
    look_at = getattr(study.sampler, "look_at", None)
    if look_at is not None:  # the sampler's first look, at a worker's first ask
        look_at(study)
    first_read = time.perf_counter() - start
    per_trial = run_trials(study, space, n_trials, epochs, cohort)
    return {"history": history, "storage": storage_kind, "sampler": sampler, "pruner": pruner,
            "cohort": cohort, "window": window,
            "trials": n_trials, "epochs": epochs, "fill_s": round(filled, 1),
            "first_read_s": round(first_read, 2),
            **{f"{k}_ms": round(v, 2) for k, v in per_trial.items()}}


@contextmanager
def postgres_server(wanted: bool) -> Iterator[Any]:
    """A throwaway local PostgreSQL (``tests/pgserver.py``) while the rows need one."""
    if not wanted:
        yield None
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from pgserver import PostgresServer

    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--storage", nargs="+", default=["memory", "sqlite"],
                        choices=["memory", "sqlite", "postgresql"])
    parser.add_argument("--sampler", nargs="+", default=["automl"],
                        choices=["automl", "python-ndtr", "full-tpe", "independent-tpe",
                                 "random"])
    parser.add_argument("--pruner", nargs="+", default=["automl"], choices=["automl", "optuna"])
    parser.add_argument("--cohort", type=int, nargs="+", default=[1],
                        help="trials asked together, the others pinned to the first's "
                             "structure and drawn from one TPE fit (1: one by one)")
    parser.add_argument("--window", type=int, nargs="+", default=[HISTORY_WINDOW],
                        help="finished trials the run's TPE models (automl, python-ndtr)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory() as folder, \
            postgres_server("postgresql" in args.storage) as postgres:
        for history in args.history:
            for kind, sampler, pruner, cohort, window in (
                    (k, s, p, c, w) for k in args.storage for s in args.sampler
                    for p in args.pruner for c in args.cohort for w in args.window):
                row = measure(history, kind, args.trials, args.epochs, Path(folder), sampler,
                              pruner, cohort, window, postgres)
                row.update(date=stamp, machine=platform.node(), cpus=os.cpu_count(),
                           load=round(os.getloadavg()[0], 1), optuna=optuna.__version__)
                print(json.dumps(row), flush=True)
                if args.out:
                    with args.out.open("a") as out:
                        out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
