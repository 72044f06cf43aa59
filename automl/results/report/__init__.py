"""``automl report``: a finished run as one self-contained HTML page with plots.

    >>> path = write_report(result, study, "out/")   # out/report.html

See :mod:`automl.results.report.html` for the page and
:mod:`automl.results.report.plots` for the figures.
"""

from __future__ import annotations

from pathlib import Path

import optuna

from automl.results.result import TuneResult

REPORT_FILE = "report.html"


def write_report(result: TuneResult, study: optuna.Study | None, out_dir: str | Path) -> Path:
    """Write ``report.html`` into ``out_dir`` (created if missing); return its path."""
    from automl.results.report.html import render  # matplotlib: only when a report is written

    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / REPORT_FILE
    path.write_text(render(result, study), encoding="utf-8")
    return path
