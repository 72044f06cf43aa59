"""Each ticket attempt samples from its own seed (found by the e2e cohort-kill test: a
ticket re-run after its worker died replayed the dead attempt's first random draw, so a
trial already re-run with its own parameters was drawn a second time)."""

from __future__ import annotations

import optuna
from study_settings import study_settings

from automl.queue.leases import Claim
from automl.study.settings import make_sampler
from workers.tickets import sampler_index


def first_draw(worker_index: int) -> float:
    study = optuna.create_study(sampler=make_sampler(study_settings(), worker_index))
    return study.ask().suggest_float("lr", 1e-4, 1e-1, log=True)


def test_a_tickets_second_attempt_draws_anew() -> None:
    first, again = (Claim(7, "run", "trial", "trial", attempts, None) for attempts in (1, 2))
    other = Claim(8, "run", "trial", "trial", 1, None)
    indices = {sampler_index(c) for c in (first, again, other)}
    assert len(indices) == 3
    assert first_draw(sampler_index(first)) == first_draw(sampler_index(first))  # seeded
    assert first_draw(sampler_index(again)) != first_draw(sampler_index(first))
