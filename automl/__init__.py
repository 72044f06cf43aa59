"""automl: Bayesian-optimisation AutoML for PyTorch MLPs.

    >>> import automl
    >>> result = automl.tune("data.csv", target="label", n_trials=30)
    >>> print(automl.format_report(result))

This package imports without torch and ray; training happens in :mod:`workers`.
``tune``, ``TuneOptions`` and ``Client`` (the service's client) are loaded on first use:
every Ray worker imports this package (to unpickle a job) and never needs the tuner's
imports (Alembic, the artifact store, SQLAlchemy...).
"""

from typing import TYPE_CHECKING, Any

from automl.errors import AutoMLError, ConfigError, DataError, SpaceError
from automl.results.result import TuneResult, format_report
from automl.space import Choice, Fixed, FloatRange, IntRange, SearchSpace, default_space

if TYPE_CHECKING:
    from automl.client import Client
    from automl.options import TuneOptions
    from automl.run.tune import tune

__all__ = [
    "AutoMLError",
    "Choice",
    "Client",
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



def __getattr__(name: str) -> Any:
    if name == "tune":
        from automl.run.tune import tune

        return tune
    if name == "TuneOptions":
        from automl.options import TuneOptions

        return TuneOptions
    if name == "Client":
        from automl.client import Client

        return Client
    raise AttributeError(f"module 'automl' has no attribute {name!r}")
