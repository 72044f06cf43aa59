"""The search space's groups, each trial taken in once: Optuna's groups exactly."""

from __future__ import annotations

import random

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.search_space.group_decomposed import _GroupDecomposedSearchSpace
from optuna.trial import TrialState, create_trial

from automl.study.storage.history_window import WindowedTPESampler
from automl.study.storage.space_groups import IncrementalGroups

optuna.logging.set_verbosity(optuna.logging.WARNING)
NAMES = {"lr": FloatDistribution(1e-4, 1e-1, log=True), "depth": IntDistribution(1, 4),
         "act": CategoricalDistribution(["relu", "gelu"]), "d_emb": IntDistribution(4, 32),
         "n_bins": IntDistribution(8, 64), "k": IntDistribution(2, 32),
         "momentum": FloatDistribution(0.0, 0.99)}


def add_random_trial(study: optuna.Study, rng: random.Random) -> None:
    """A finished (or running) trial with a random subset of the parameters, as a space
    with conditional parameters gives."""
    names = [n for n in NAMES if rng.random() < 0.5] or ["lr"]
    distributions = {n: NAMES[n] for n in names}
    params = {n: d.to_external_repr(d.low if not isinstance(d, CategoricalDistribution)
                                    else 0) for n, d in distributions.items()}
    state = rng.choice([TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING])
    study.add_trial(create_trial(state=state, value=1.0 if state == TrialState.COMPLETE else None,
                                 params=params, distributions=distributions,
                                 intermediate_values={0: 1.0}))


@pytest.mark.parametrize("include_pruned", [True, False])
def test_the_groups_are_optunas_at_every_call(include_pruned: bool) -> None:
    rng = random.Random(7)
    study = optuna.create_study()
    ours, optunas = IncrementalGroups(include_pruned), _GroupDecomposedSearchSpace(include_pruned)
    for _ in range(12):
        for _ in range(rng.randint(1, 8)):
            add_random_trial(study, rng)
        expected = optunas.calculate(study).search_spaces
        assert ours.calculate(study).search_spaces == expected
    assert len(expected) > 3  # the subsets did split the space


def test_a_running_trial_is_taken_in_once_it_finishes() -> None:
    study = optuna.create_study()
    groups = IncrementalGroups(include_pruned=True)
    study.add_trial(create_trial(params={"lr": 0.01}, distributions={"lr": NAMES["lr"]},
                                 value=1.0))
    trial = study.ask({"lr": NAMES["lr"], "depth": NAMES["depth"]})
    assert groups.calculate(study).search_spaces == [{"lr": NAMES["lr"]}]
    study.tell(trial, 2.0)
    assert groups.calculate(study).search_spaces == [{"lr": NAMES["lr"]},
                                                     {"depth": NAMES["depth"]}]


def test_another_study_is_refused_as_optuna_refuses_it() -> None:
    storage = optuna.storages.RDBStorage("sqlite:///:memory:")
    first, second = (optuna.create_study(storage=storage) for _ in range(2))
    groups = IncrementalGroups()
    groups.calculate(first)
    with pytest.raises(ValueError, match="multiple studies"):
        groups.calculate(second)


def test_the_windowed_sampler_uses_it() -> None:
    sampler = WindowedTPESampler(multivariate=True, group=True, constant_liar=True)
    assert isinstance(sampler._group_decomposed_search_space, IncrementalGroups)
