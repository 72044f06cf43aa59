"""TPE's densities by matrix products agree with Optuna's own, on fitted estimators of a
space with every kind of parameter, for many candidates and few distinct values alike."""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
import pytest
from optuna.samplers._tpe import probability_distributions as pd
from optuna.samplers._tpe.parzen_estimator import _ParzenEstimator

from automl.study.storage.draw_ahead import DrawAheadTPESampler, drawing_ahead
from automl.study.storage.tpe_log_pdf import mixture_log_pdf, parzen_log_pdf

optuna.logging.set_verbosity(optuna.logging.WARNING)


def objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -5.0, 5.0)
    lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
    width = trial.suggest_int("width", 16, 1024, log=True)  # many distinct values
    depth = trial.suggest_int("depth", 1, 4)  # few
    dim = trial.suggest_int("dim", 8, 64, step=8)
    kind = trial.suggest_categorical("kind", ["a", "b", "c"])
    return (x - 1) ** 2 + abs(np.log10(lr) + 3) + abs(np.log2(width) - 7) + depth / 10 \
        + dim / 100 + (kind == "b")


class Capturing(optuna.samplers.TPESampler):
    """Optuna's TPE that keeps each fit's two estimators."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.fits: list[tuple[_ParzenEstimator, _ParzenEstimator]] = []

    def _compute_acquisition_func(self, samples: dict[str, np.ndarray], mpe_below: Any,
                                  mpe_above: Any) -> np.ndarray:
        self.fits.append((mpe_below, mpe_above))
        return super()._compute_acquisition_func(samples, mpe_below, mpe_above)


@pytest.fixture(scope="module")
def estimators() -> list[_ParzenEstimator]:
    sampler = Capturing(multivariate=True, seed=0, n_startup_trials=5)
    optuna.create_study(sampler=sampler).optimize(objective, n_trials=60)
    return [mpe for pair in sampler.fits[-3:] for mpe in pair]


def test_it_agrees_with_optunas_log_pdf_on_fitted_estimators(
        estimators: list[_ParzenEstimator]) -> None:
    rng = np.random.RandomState(1)
    for mpe in estimators:
        samples = mpe.sample(rng, 700)
        assert len(np.unique(samples["width"])) > 32  # the element-wise path is used
        assert len(np.unique(samples["depth"])) <= 4  # and the one-hot product
        expected = mpe.log_pdf(samples)
        got = parzen_log_pdf(mpe, samples)
        assert np.all(np.isfinite(expected))
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


def test_a_candidate_outside_the_bounds_has_no_density_as_in_optuna(
        estimators: list[_ParzenEstimator]) -> None:
    mpe = estimators[0]
    samples = mpe.sample(np.random.RandomState(2), 5)
    samples["x"][0] = 6.0  # above x's bound
    expected, got = mpe.log_pdf(samples), parzen_log_pdf(mpe, samples)
    assert np.isneginf(expected[0]) and np.isneginf(got[0])
    np.testing.assert_allclose(got[1:], expected[1:], rtol=1e-9)


def test_a_kernel_of_no_width_gives_nan_as_in_optuna() -> None:
    kernels = pd._BatchedTruncNormDistributions(mu=np.array([0.0, 0.5]),
                                                sigma=np.array([np.inf, 0.2]),
                                                low=-1.0, high=1.0)
    mixture = pd._MixtureOfProductDistribution(weights=np.array([0.5, 0.5]),
                                               distributions=[kernels])
    x = np.array([[0.1], [0.7]])
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = mixture.log_pdf(x)
        got = mixture_log_pdf(mixture, x)
    assert np.isnan(expected).all()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))


def test_an_unknown_kind_of_distribution_is_left_to_optuna() -> None:
    class Unknown:
        def __init__(self) -> None:
            self._mixture_distribution = pd._MixtureOfProductDistribution(
                weights=np.array([1.0]), distributions=[object()])
            self.calls = 0

        def log_pdf(self, samples: dict[str, np.ndarray]) -> np.ndarray:
            self.calls += 1
            return np.zeros(1)

    unknown = Unknown()
    parzen_log_pdf(unknown, {"x": np.zeros(1)})  # type: ignore[arg-type]
    assert unknown.calls == 1


def test_members_drawn_ahead_are_the_best_under_optunas_own_densities() -> None:
    captured: list[tuple[dict[str, np.ndarray], Any, Any, np.ndarray]] = []

    class Keeping(DrawAheadTPESampler):
        def _compute_acquisition_func(self, samples: dict[str, np.ndarray], mpe_below: Any,
                                      mpe_above: Any) -> np.ndarray:
            values = super()._compute_acquisition_func(samples, mpe_below, mpe_above)
            captured.append((samples, mpe_below, mpe_above, values))
            return values

    study = optuna.create_study(sampler=Keeping(multivariate=True, seed=4,
                                                n_startup_trials=5))
    study.optimize(objective, n_trials=30)
    captured.clear()
    with drawing_ahead(study.sampler, 8):
        for _ in range(8):
            trial = study.ask()
            study.tell(trial, objective(trial))
    samples, below, above, values = captured[0]
    assert values.size == 8 * 24
    optunas = below.log_pdf(samples) - above.log_pdf(samples)
    np.testing.assert_allclose(values, optunas, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(values.reshape(8, 24).argmax(axis=1),
                                  optunas.reshape(8, 24).argmax(axis=1))
