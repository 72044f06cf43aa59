"""Finishing an interrupted run from the trials it has, or resuming its search.

    automl finish NAME     # compare the best of its completed trials with the baselines
    automl resume NAME     # run the rest of its trial budget, then compare

``NAME`` is a run id or a ``tune`` study name. Either way nothing already done is run
again: the study keeps its trials (so TPE resumes from all of them), done baselines stay
done, and the run is served from this process as ``tune`` serves it (a local Ray unless
``ray_address`` is given). Its result then says how many trials it had.
"""

from __future__ import annotations

from typing import Any

from automl.errors import ConfigError
from automl.options import TuneOptions
from automl.queue import queries
from automl.queue.engine import make_engine
from automl.queue.models import Run
from automl.queue.reopen import reopen_run, trial_tickets
from automl.queue.schema import check_schema
from automl.results.result import TuneResult
from automl.run.runtime import stored_prepared
from automl.run.tune import serve_run, stored_result


def finish(name: str, **options: Any) -> TuneResult:
    """Finish the ended run ``name`` from its completed trials: its baselines and the
    final evaluation of its best trial run now; the rest of its trial budget is dropped.

    ``options``: the :class:`TuneOptions` fields that say where it trains (``storage``,
    ``ray_address``, ``n_workers``, ``progress``...)."""
    return _continue(name, TuneOptions(**options), resume=False)


def resume(name: str, **options: Any) -> TuneResult:
    """Resume the ended run ``name``: its unspent trials run (TPE learning from every
    trial it already has), then the final comparison, as :func:`finish`."""
    return _continue(name, TuneOptions(**options), resume=True)


def _continue(name: str, opts: TuneOptions, *, resume: bool) -> TuneResult:
    engine = make_engine(opts.storage)
    try:
        check_schema(engine)
        run = _run_named(engine, name)
        note = None if resume else _finish_note(engine, run)
        reopen_run(engine, run.id, resume=resume, note=note)
        prepared = stored_prepared(engine, run.id)
        engine.dispose()  # the head start forks next: no pooled connection may cross it
        serve_run(engine, run.id, prepared, opts)
        return stored_result(engine, run.id)
    finally:
        engine.dispose()


def _run_named(engine: Any, name: str) -> Run:
    run = queries.run_of(engine, name, or_study=True)
    if run is None:
        raise ConfigError(f"no run or study named {name} in this storage; list them with "
                          "`automl runs`", field="run")
    return run


def _finish_note(engine: Any, run: Run) -> str:
    """What the result says of a run finished early; refuses one with nothing to finish."""
    state = queries.run_state(engine, run.id)
    completed = 0 if state is None else state.trials["COMPLETE"]
    if completed == 0:
        raise ConfigError(f"run {run.study_name} has no completed trial to finish from; "
                          f"`automl resume {run.study_name}` runs the rest of its trials",
                          field="run")
    spent = trial_tickets(engine, run.id).get("done", 0)
    return (f"the run was interrupted and finished early (automl finish): the best of its "
            f"{completed} completed trial(s) is compared, after {spent} of its "
            f"{run.n_trials}-trial budget")
