"""TPE's acquisition function for many candidates at once, with matrix products.

A cohort's members are drawn from one TPE fit (:mod:`automl.study.storage.draw_ahead`):
``n`` members' candidates, 24 each, scored under both of TPE's densities. The "bad"
density has a kernel per trial of the window (about 1,000), and Optuna evaluates the
truncated normal of every continuous parameter for every (candidate, kernel) pair, one
array element each: at 32 members that is most of a member's sampling cost (about
two-thirds under ``python -m cProfile bench/ask_tell.py --history 1000 --trials 64
--epochs 40 --storage memory --cohort 32`` before this module).

The continuous parameters' part of a kernel's log density is a quadratic form in the
candidate, so over all pairs it is one matrix product plus a constant per kernel:

    sum_p -((x_p - mu_kp) / sigma_kp)^2 / 2
        = -(x^2 @ (1/sigma^2).T - 2 x @ (mu/sigma^2).T + sum_p mu_kp^2/sigma_kp^2) / 2

Categorical parameters and integers with few distinct values join the same product as
one-hot columns; the masses of the integers and the mixture's log-sum-exp are computed as
Optuna computes them. :func:`parzen_log_pdf` agrees with ``_ParzenEstimator.log_pdf`` to
about 1e-9 (a unit test compares them on fitted estimators); it falls back to Optuna's own
where a distribution is of a kind it does not know.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from optuna.samplers._tpe import _truncnorm
from optuna.samplers._tpe import probability_distributions as pd
from optuna.samplers._tpe.parzen_estimator import _ParzenEstimator

_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))
_CONTINUOUS = (pd._BatchedTruncNormDistributions, pd._BatchedTruncLogNormDistributions)
_DISCRETE = (pd._BatchedDiscreteTruncNormDistributions,
             pd._BatchedDiscreteTruncLogNormDistributions)
_LOG = (pd._BatchedTruncLogNormDistributions, pd._BatchedDiscreteTruncLogNormDistributions)


def parzen_log_pdf(estimator: _ParzenEstimator, samples: dict[str, np.ndarray]) -> np.ndarray:
    """``estimator.log_pdf(samples)``, the continuous parameters by matrix products."""
    mixture = estimator._mixture_distribution
    if not all(isinstance(d, (*_CONTINUOUS, *_DISCRETE, pd._BatchedCategoricalDistributions))
               for d in mixture.distributions):
        return estimator.log_pdf(samples)
    return mixture_log_pdf(mixture, estimator._transform(samples))


def mixture_log_pdf(mixture: Any, x: np.ndarray) -> np.ndarray:
    """Log density of ``x`` (candidates x parameters, Optuna's internal representation)
    under a ``_MixtureOfProductDistribution``: one value per candidate."""
    terms = _Terms(len(x), len(mixture.weights))
    continuous: list[tuple[np.ndarray, Any]] = []
    for i, d in enumerate(mixture.distributions):
        if isinstance(d, pd._BatchedCategoricalDistributions):
            codes = x[:, i].astype(np.int64)
            terms.add(codes, np.log(d.weights).T)
        elif isinstance(d, _DISCRETE):
            uniq, inverse = np.unique(x[:, i], return_inverse=True)
            terms.add(inverse.ravel(), _discrete_log_mass(uniq, d))
        else:
            continuous.append((np.log(x[:, i]) if isinstance(d, _LOG) else x[:, i], d))
    if continuous:
        _add_continuous(terms, continuous)
    weighted = terms.total(np.log(mixture.weights))
    top = weighted.max(axis=1)
    top[np.isneginf(top)] = 0  # no (-inf) - (-inf) where every kernel gives zero
    with np.errstate(divide="ignore"):
        return np.asarray(np.log(np.exp(weighted - top[:, None]).sum(axis=1)) + top)


class _Terms:
    """A sum over parameters of candidates x kernels log densities, built as one matrix
    product: each parameter adds columns to the candidates' features and rows to the
    kernels' table. A parameter with many distinct values (or infinite entries, which a
    product would turn into NaN) is added element-wise instead."""

    ONE_HOT_MAX = 32  # distinct values up to which a one-hot product beats a gather

    def __init__(self, n_candidates: int, n_kernels: int) -> None:
        self.features: list[np.ndarray] = []
        self.tables: list[np.ndarray] = []
        self.direct = np.zeros((n_candidates, n_kernels))
        self.n = n_candidates

    def add(self, codes: np.ndarray, table: np.ndarray) -> None:
        """A parameter whose value ``codes[c]`` gives candidate ``c`` the log density
        ``table[codes[c], k]`` under kernel ``k``."""
        if len(table) > self.ONE_HOT_MAX or not np.isfinite(table).all():
            self.direct += table[codes]
            return
        one_hot = np.zeros((self.n, len(table)))
        one_hot[np.arange(self.n), codes] = 1.0
        self.add_features(one_hot, table)

    def add_features(self, features: np.ndarray, table: np.ndarray) -> None:
        """Columns ``features`` (candidates x m) against rows ``table`` (m x kernels)."""
        self.features.append(features)
        self.tables.append(table)

    def total(self, per_kernel: np.ndarray) -> np.ndarray:
        """Candidates x kernels: the terms summed, plus a constant per kernel."""
        out = self.direct + per_kernel
        if self.features:
            out += np.concatenate(self.features, axis=1) @ np.concatenate(self.tables)
        return out


def _bounds(d: Any) -> tuple[float, float]:
    """A distribution's support as its kernels see it (log scale for log distributions,
    half a step wider for discrete ones)."""
    half = getattr(d, "step", 0.0) / 2
    low, high = d.low - half, d.high + half
    return (math.log(low), math.log(high)) if isinstance(d, _LOG) else (low, high)


def _add_continuous(terms: _Terms, columns: list[tuple[np.ndarray, Any]]) -> None:
    """The continuous parameters' truncated-normal log densities, as features
    ``[x^2, x, 1]`` against each kernel's ``[-1/(2 sigma^2), mu/sigma^2, constant]``;
    centred on each parameter's range to keep the products exact. Candidates outside the
    bounds get -inf; a kernel of no width (or no room) gives NaN, as in Optuna."""
    x = np.stack([values for values, _ in columns], axis=1)
    low, high = np.asarray([_bounds(d) for _, d in columns]).T
    mu = np.stack([d.mu for _, d in columns], axis=1)
    sigma = np.stack([d.sigma for _, d in columns], axis=1)
    centre = (low + high) / 2
    xc, mc = x - centre, mu - centre
    inv_var = 1.0 / sigma**2
    a, b = (low - mu) / sigma, (high - mu) / sigma
    per_kernel = -(np.log(sigma) + _truncnorm._log_gauss_mass(a, b)
                   + mc**2 * inv_var / 2).sum(axis=1) - x.shape[1] * _LOG_SQRT_2PI
    outside = np.where(((x < low) | (x > high)).any(axis=1), -np.inf, 0.0)
    terms.add_features(np.concatenate([xc**2, xc, np.ones((len(x), 1))], axis=1),
                       np.concatenate([-inv_var.T / 2, (mc * inv_var).T, per_kernel[None]]))
    terms.direct += outside[:, None]


def _discrete_log_mass(values: np.ndarray, d: Any) -> np.ndarray:
    """Each kernel's log mass within half a step of each of ``values`` (distinct), over
    its mass within the bounds: values x kernels (Optuna's computation, over distinct
    kernels)."""
    half = d.step / 2
    log = isinstance(d, _LOG)
    low, high = _bounds(d)
    left, right = values - half, values + half
    if log:
        left, right = np.log(left), np.log(right)
    mu, sigma, kernel_inverse = pd._unique_inverse_2d(d.mu, d.sigma)
    mass = pd._log_gauss_mass_unique((left[:, np.newaxis] - mu) / sigma,
                                     (right[:, np.newaxis] - mu) / sigma)
    total = _truncnorm._log_gauss_mass((low - mu) / sigma, (high - mu) / sigma)
    return np.asarray((mass - total)[:, kernel_inverse])
