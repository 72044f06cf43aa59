"""Workers reaching Optuna's tables through one ``automl storage-proxy`` per node."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from automl.client import Client
from automl.errors import ConfigError
from automl.study.studies import make_proxy_storage

pytestmark = pytest.mark.slow

FAST = {"max_epochs": 6, "patience": 3, "n_layers": 1, "units": {"type": "int", "low": 8,
                                                                    "high": 32}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def automl(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "automl", *args], env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_workers_started_before_the_proxy_wait_for_it_and_finish_the_run(
        pg_url: str, digits_frame: pd.DataFrame) -> None:
    port = free_port()
    run = Client(pg_url).submit(digits_frame, "target", space=FAST, n_trials=6, n_seeds=1)
    workers = [automl("worker", "--storage", pg_url, "--optuna-proxy", f"127.0.0.1:{port}",
                      "--idle-exit", "3", "--lease", "10") for _ in range(2)]
    time.sleep(3)  # the workers claim tickets and find no proxy: they retry, not crash
    proxy = automl("storage-proxy", "--storage", pg_url, "--port", str(port))
    try:
        result = run.wait(progress=False, timeout=300)
        for process in workers:
            assert process.wait(timeout=60) == 0, process.stdout.read()  # type: ignore[union-attr]
    finally:
        proxy.terminate()
        proxy.wait(timeout=30)
    trials = optuna.load_study(study_name=f"automl-{run.id}", storage=pg_url).trials
    assert result["n_trials"] == 6
    assert sorted(t.number for t in trials) == list(range(6))
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert all(t.intermediate_values for t in trials)  # reports went through the proxy


def test_a_bad_proxy_address_is_refused_with_the_option_named() -> None:
    with pytest.raises(ConfigError, match="HOST:PORT") as error:
        make_proxy_storage("localhost")
    assert error.value.field == "optuna_proxy"
