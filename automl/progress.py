"""Progress bars on stderr: trials done, pruned, failed and the best value so far."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm

from automl.trials import TrialCounts


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
        if self.bar is None:
            return
        best = "-" if counts.best_value is None else f"{counts.best_value:.4f}"
        self.bar.n = counts.finished
        self.bar.set_postfix(complete=counts.complete, pruned=counts.pruned,
                             failed=counts.failed, best_val_loss=best, refresh=True)

    def set(self, done: int, **fields: Any) -> None:
        if self.bar is not None:
            self.bar.n = done
            self.bar.set_postfix(refresh=True, **fields)

    def step(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
