"""TPE's tail masses in C (automl.study.storage.tpe_numerics): the same numbers as Optuna's
own Python loop, so the same suggestions."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from optuna.samplers._tpe import _truncnorm

from automl.study.storage.tpe_numerics import (
    optuna_log_ndtr,
    use_vectorised_log_ndtr,
    vectorised_log_ndtr,
)


def test_log_ndtr_matches_optunas_own_in_both_tails() -> None:
    own = optuna_log_ndtr()
    assert own is not None and own is not vectorised_log_ndtr
    a = np.concatenate([np.linspace(-60.0, 60.0, 24_001),
                        np.random.default_rng(0).normal(0.0, 10.0, 5_000)])
    expected = own(a)
    got = vectorised_log_ndtr(a)
    assert got.dtype == np.float64 and got.shape == a.shape
    np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-12)
    assert vectorised_log_ndtr(np.array([0.0]))[0] == pytest.approx(math.log(0.5), abs=1e-15)


def suggestions(log_ndtr, n_trials: int = 40) -> list[dict]:  # type: ignore[no-untyped-def]
    """Parameters a multivariate grouped TPE suggests with ``log_ndtr`` in place."""
    _truncnorm._log_ndtr = log_ndtr
    sampler = optuna.samplers.TPESampler(n_startup_trials=8, multivariate=True, group=True,
                                         constant_liar=True, seed=3)
    study = optuna.create_study(sampler=sampler)

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        depth = trial.suggest_int("depth", 1, 3)
        widths = [trial.suggest_int(f"units_{i}", 16, 512, log=True) for i in range(depth)]
        dropout = trial.suggest_float("dropout", 0.0, 0.5, step=0.05)
        kind = trial.suggest_categorical("kind", ["relu", "gelu"])
        return (abs(math.log10(lr) + 2.5) + sum(widths) / 2000 + dropout
                + (kind == "gelu") * 0.1)

    study.optimize(objective, n_trials=n_trials)
    return [t.params for t in study.trials]


def test_tpe_suggests_the_same_trials_with_either(monkeypatch: pytest.MonkeyPatch) -> None:
    own = optuna_log_ndtr()
    monkeypatch.setattr(_truncnorm, "_log_ndtr", own)  # restored after the test
    before = suggestions(own)
    after = suggestions(vectorised_log_ndtr)
    assert len(before) == len(after) == 40
    for old, new in zip(before, after, strict=True):
        assert new.keys() == old.keys() and new.pop("kind") == old.pop("kind")
        assert new == pytest.approx(old, rel=1e-9)


def test_the_run_sampler_uses_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from study_settings import study_settings

    from automl.study.settings import make_sampler

    monkeypatch.setattr(_truncnorm, "_log_ndtr", optuna_log_ndtr())
    make_sampler(study_settings())
    assert _truncnorm._log_ndtr is vectorised_log_ndtr
    assert use_vectorised_log_ndtr()  # idempotent
    assert optuna_log_ndtr() is not vectorised_log_ndtr
