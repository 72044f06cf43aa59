"""Typed errors the user can act on.

Every error carries a stable ``code`` (documented in README.md), the ``field`` it is
about (a column or a search-space parameter, when there is one) and a one-line message
saying what is wrong and what to do. The CLI prints ``error CODE: message`` and exits 2.
"""

from __future__ import annotations

from collections.abc import Iterator


class AutoMLError(Exception):
    """Base class of every error this package raises on purpose."""

    code = "E_AUTOML"

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)  # str(error) is the message
        self.message = message
        self.field = field

    def one_line(self) -> str:
        """The message as the CLI prints it: ``error CODE: message``."""
        return f"error {self.code}: {self.message}"


class DataError(AutoMLError):
    """The dataset cannot be used as given (bad values, types, shape or size)."""

    code = "E_DATA"


class NonFiniteError(DataError):
    code = "E_NONFINITE"


class DtypeError(DataError):
    code = "E_DTYPE"


class ShapeError(DataError):
    code = "E_SHAPE"


class ParseError(DataError):
    code = "E_PARSE"


class DegenerateError(DataError):
    code = "E_DEGENERATE"


class TooLargeError(DataError):
    code = "E_TOO_LARGE"


class UnsafeFormatError(DataError):
    code = "E_UNSAFE_FORMAT"


class SpaceError(AutoMLError):
    """The search space is invalid; ``field`` names the parameter."""

    code = "E_SPACE"


class ConfigError(AutoMLError):
    """A run setting (budget, pruner, device, batch size against the data...) is invalid."""

    code = "E_CONFIG"


class StudyUnhealthyError(AutoMLError):
    """Too many consecutive trials failed the same way: the study was stopped."""

    code = "E_STUDY_UNHEALTHY"


class PermissionDeniedError(AutoMLError):
    """The database role in use may not do this (see docs/service.md, roles)."""

    code = "E_PERMISSION"


class RunFailedError(AutoMLError):
    """The run ended without a result (every trial failed, or it was cancelled)."""

    code = "E_RUN_FAILED"


class NoModelError(AutoMLError):
    """The run or study has no stored model: it has not finished, or it failed."""

    code = "E_NO_MODEL"


def exception_chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and what it was raised from or while handling (``__cause__``, else
    ``__context__``), each once: a chain can loop back on itself (an exception raised
    ``from`` another that is later re-raised while handling the first), and a walk that
    follows it blindly never ends."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__
