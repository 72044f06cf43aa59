"""automl: Bayesian-optimisation AutoML for PyTorch MLPs.

    >>> import automl
    >>> result = automl.tune("data.csv", target="label", n_trials=30)
    >>> print(automl.format_report(result))

This package imports without torch and ray; training happens in :mod:`workers`.
"""

from automl.errors import AutoMLError, ConfigError, DataError, SpaceError
from automl.result import TuneResult, format_report
from automl.space import Choice, Fixed, FloatRange, IntRange, SearchSpace, default_space
from automl.tuner import TuneOptions, tune

__all__ = [
    "AutoMLError",
    "Choice",
    "ConfigError",
    "DataError",
    "Fixed",
    "FloatRange",
    "IntRange",
    "SearchSpace",
    "SpaceError",
    "TuneOptions",
    "TuneResult",
    "default_space",
    "format_report",
    "tune",
]
__version__ = "0.1.0"
