"""How many trials a Ray cluster holds at once, and trials asking for a GPU there is none of.

No Ray and no GPU needed: the functions take the cluster's resources as a mapping."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from automl.cli.main import main
from automl.errors import ConfigError
from workers.ray_setup import check_gpus, trial_slots


@pytest.mark.parametrize(("resources", "cpus", "gpus", "slots"), [
    ({"CPU": 16.0}, 1.0, 0.0, 16),
    ({"CPU": 16.0}, 2.0, 0.0, 8),
    ({"CPU": 16.0, "GPU": 1.0}, 1.0, 0.25, 4),  # the GPU is the scarcer
    ({"CPU": 16.0, "GPU": 1.0}, 1.0, 0.1, 10),  # 1 / 0.1 is 9.999...: still 10
    ({"CPU": 16.0, "GPU": 1.0}, 1.0, 1 / 3, 3),
    ({"CPU": 4.0, "GPU": 2.0}, 1.0, 0.125, 4),  # the CPUs are the scarcer
    ({"CPU": 16.0, "GPU": 2.0}, 1.0, 1.0, 2),
    ({"CPU": 16.0}, 1.0, 0.5, 16),  # no GPU yet (a cluster may add one): CPUs decide
    ({"CPU": 0.5}, 1.0, 0.0, 1),  # never fewer than one
    ({"CPU": 8.0, "GPU": 1.0}, 0.0, 0.5, 2),
])
def test_trial_slots_take_the_scarcer_resource(resources: dict[str, float], cpus: float,
                                               gpus: float, slots: int) -> None:
    assert trial_slots(resources, num_cpus=cpus, num_gpus=gpus) == slots


def test_gpu_trials_on_a_local_ray_without_a_gpu_are_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="no GPU") as caught:
        check_gpus({"CPU": 2.0}, 0.25, local=True)
    assert caught.value.field == "gpus_per_trial"


def test_gpu_trials_on_a_cluster_without_a_gpu_yet_are_only_warned_about(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        check_gpus({"CPU": 2.0}, 0.25, local=False)
    assert "wait until a GPU node joins" in caplog.text


@pytest.mark.parametrize("resources", [{"CPU": 2.0}, {"CPU": 2.0, "GPU": 1.0}])
def test_cpu_trials_and_gpu_trials_with_a_gpu_pass(resources: dict[str, float]) -> None:
    check_gpus(resources, 0.0, local=True)
    check_gpus({"CPU": 2.0, "GPU": 1.0}, 0.5, local=True)


def test_the_service_worker_refuses_a_bad_gpu_share_before_starting_ray(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "w.db"
    code = main(["worker", "--storage", f"sqlite:///{db}", "--ray-address", "local",
                 "--gpus-per-trial", "1.5"])
    assert code == 2
    assert "gpus_per_trial" in capsys.readouterr().err
    assert not db.exists()
