"""The run's note in optuna-dashboard: the comparison table and the verdict on its study.

Written once a run is finished, by the embedded ``tune()`` and by the service worker that
writes the run's summary. A note that cannot be written is logged, never fatal: the run's
result is already stored.
"""

from __future__ import annotations

import logging

import optuna

from automl.results.result import TuneResult

logger = logging.getLogger(__name__)


def write_note(study: optuna.Study, result: TuneResult) -> bool:
    """Save ``note_markdown(result, study)`` as the study's note; False (and a warning) if
    it could not be written."""
    try:
        from optuna_dashboard import save_note  # imports sklearn: only when needed

        from automl.results.explain import note_markdown

        save_note(study, note_markdown(result, study))
    except Exception as exc:  # the run is done and stored: a missing note is not fatal
        logger.warning("could not write the dashboard note of study %s: %s: %s",
                       study.study_name, type(exc).__name__, exc)
        return False
    return True
