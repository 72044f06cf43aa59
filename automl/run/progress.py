"""Progress bars on stderr: trials done, pruned, failed and the best value so far, then the
final models."""

from __future__ import annotations

import sys
import time
from typing import Any

from sqlalchemy import Engine
from tqdm import tqdm

from automl.queue.queries import ACTIVE_RUN, run_of, run_state
from automl.study.storage.retry import with_retry
from automl.study.trials import TrialCounts


class Progress:
    """Thin wrapper over tqdm that can be switched off (``--json`` keeps it on stderr)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar: Any = None

    def start(self, total: int, label: str) -> None:
        self.close()
        self.bar = tqdm(total=total, desc=label, file=sys.stderr, disable=not self.enabled,
                        dynamic_ncols=True, leave=True)

    def trials(self, counts: TrialCounts) -> None:
        best = "-" if counts.best_value is None else f"{counts.best_value:.4f}"
        self.set(counts.finished, complete=counts.complete, pruned=counts.pruned,
                 failed=counts.failed, best_val_loss=best)

    def set(self, done: int, **fields: Any) -> None:
        if self.bar is not None:
            self.bar.n = done
            self.bar.set_postfix(refresh=True, **fields)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class RunProgress:
    """A run's progress read from its storage: its trials, then the final models (the best
    trial and the baselines retrained over the seeds)."""

    def __init__(self, engine: Engine, run_id: str, enabled: bool, every_s: float = 1.0):
        self.engine, self.run_id, self.every_s = engine, run_id, every_s
        self.bar, self.phase = Progress(enabled), ""
        self._read_at = -float("inf")

    def watch(self) -> bool:
        """Draw where the run stands; True once it has ended and nothing of it runs.

        Drawn at most every ``every_s`` (counting a run's tickets is a scan: 30 ms at
        100,000 tickets); in between only the run's status is read, so its end is seen at
        once."""
        if time.monotonic() - self._read_at < self.every_s:
            run = run_of(self.engine, self.run_id)
            if run is None or run.status in ACTIVE_RUN:
                return False
        self._read_at = time.monotonic()
        state = with_retry(lambda: run_state(self.engine, self.run_id))
        assert state is not None, f"no run {self.run_id}"
        tickets, trials = state.tickets, state.trials
        trials_open = tickets[("trial", "queued")] + tickets[("trial", "running")]
        if trials_open and not self.phase:
            self.phase = "trials"
            self.bar.start(state.run.n_trials, "trials")
        if self.phase == "trials":
            self.bar.trials(TrialCounts(trials["COMPLETE"], trials["PRUNED"], trials["FAIL"], 0,
                                        trials["RUNNING"], state.best_value))
        finals = [(status, n) for (kind, status), n in tickets.items() if kind != "trial"]
        if not trials_open and self.phase != "final":
            self.phase = "final"
            self.bar.start(sum(n for _, n in finals),
                           f"best model and baselines, {state.run.n_seeds} seeds each")
        if self.phase == "final":
            self.bar.set(sum(n for status, n in finals if status in ("done", "failed")))
        return state.run.status not in ACTIVE_RUN and not any(
            status == "running" for _, status in tickets)

    def close(self) -> None:
        self.bar.close()
