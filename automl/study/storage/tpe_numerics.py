"""TPE's Gaussian tail masses in C rather than one number at a time in Python.

Optuna's TPE weighs each candidate by the probability mass of every kernel of the
history between the parameter's bounds (and, for integer parameters, within half a step
of the candidate). ``optuna.samplers._tpe._truncnorm._log_ndtr``, the log of the normal
CDF under all of it, is ``np.frompyfunc`` over a Python function: at 1,000 finished trials
and the default space that is about 47,000 Python calls a trial and most of the sampler's
time (``bench/ask_tell.py``; profiled: 62 %). ``scipy.special.log_ndtr`` computes the same
function, vectorised and accurate in both tails (Optuna's is ``-ndtr(-a)`` above 6, which
differs from it by less than 1e-17 there). SciPy is already installed with scikit-learn.

:func:`use_vectorised_log_ndtr` swaps it in, process-wide and once; Optuna 4.x and 5.x both
look ``_log_ndtr`` up in that module at each call. If a later Optuna moves the function,
nothing is swapped and Optuna's own stays in use.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.special import log_ndtr

LogNdtr = Callable[[np.ndarray], np.ndarray]
_optuna_own: list[LogNdtr] = []  # what this Optuna shipped, kept once it is replaced


def vectorised_log_ndtr(a: np.ndarray) -> np.ndarray:
    """log Φ(a), element-wise, as float64."""
    return np.asarray(log_ndtr(np.asarray(a, dtype=np.float64)), dtype=np.float64)


def use_vectorised_log_ndtr() -> bool:
    """Make Optuna's TPE use :func:`vectorised_log_ndtr`; False where this Optuna has no
    ``_truncnorm._log_ndtr`` to replace."""
    from optuna.samplers._tpe import _truncnorm

    current = getattr(_truncnorm, "_log_ndtr", None)
    if not callable(current):
        return False
    if current is not vectorised_log_ndtr and not _optuna_own:
        _optuna_own.append(current)
    _truncnorm._log_ndtr = vectorised_log_ndtr
    return True


def optuna_log_ndtr() -> LogNdtr | None:
    """Optuna's own ``_log_ndtr``, replaced or not (for the tests and ``bench/ask_tell.py``)."""
    from optuna.samplers._tpe import _truncnorm

    return _optuna_own[0] if _optuna_own else getattr(_truncnorm, "_log_ndtr", None)
