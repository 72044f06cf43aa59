"""Study settings for tests: those a default run stores, with the fields a test sets."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from automl.options import TuneOptions
from automl.run.plan import settings_of
from automl.space import SearchSpace
from automl.study.settings import StudySettings


def study_settings(**overrides: Any) -> StudySettings:
    """``settings_of(TuneOptions(), the default space)`` with ``overrides`` (validated)."""
    return replace(settings_of(TuneOptions(), SearchSpace({}).resolve("multiclass", 1000)),
                   **overrides)
