"""The service end to end: a client submits, ``automl worker`` processes train."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState
from sqlalchemy.orm import Session

from automl.client import Client
from automl.errors import AutoMLError
from automl.queue.queries import table_counts

pytestmark = pytest.mark.slow

FAST = {"max_epochs": 8, "patience": 3, "n_layers": 1, "units": {"type": "int", "low": 8,
                                                                    "high": 32}}


@pytest.fixture
def url(service_url: str) -> str:
    return service_url


def worker(url: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "automl", "worker", "--storage", url, *args],
        env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)


def study_trials(url: str, run_id: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=f"automl-{run_id}", storage=url).trials


def test_submit_here_train_there_wait_and_predict(url: str, digits_frame: pd.DataFrame) -> None:
    client = Client(url)
    run = client.submit(digits_frame, "target", space=FAST, n_trials=4, n_seeds=1)
    assert run.status().status == "queued"
    process = worker(url, "--idle-exit", "3", "--lease", "10")
    result = run.wait(progress=False, timeout=300)
    assert process.wait(timeout=60) == 0, process.stdout.read() if process.stdout else ""
    assert result["metric"] == "accuracy" and result["n_trials"] == 4
    assert {"architecture", "params", "val_score", "test_score"} <= set(result["best"])
    assert len(result["baselines"]) == 8
    # one seed: its "ensemble" is the model itself, stored through the baselines table
    for model in [result["best"], *result["baselines"]]:
        if model["name"] != "constant":
            assert model["ensemble_score"] == pytest.approx(model["test_score"])
            assert model["ensemble_val_score"] == pytest.approx(model["val_score"])
    rows = digits_frame.sample(50, random_state=1)
    predicted = run.model().predict(rows.drop(columns="target"))
    assert isinstance(predicted[0], int)
    assert np.mean(predicted == rows["target"].to_numpy()) > 0.7
    assert [r.status for r in client.runs()] == ["succeeded"]


def test_a_trial_told_before_its_worker_died_is_not_run_again(
        url: str, digits_frame: pd.DataFrame) -> None:
    # The worker finished its trial (told Optuna) and died before releasing the ticket:
    # the sweep must close the ticket, not re-queue it for a second trial.
    from automl.queue import leases
    from automl.queue.models import Ticket
    from workers.service_worker import ServiceWorker

    run = Client(url).submit(digits_frame, "target", space=FAST, n_trials=1, n_seeds=1)
    service = ServiceWorker(url, worker_id="sweeper", poll_s=0.1)
    claims = []
    while (claim := leases.claim_ticket(service.engine, "dead", lease_s=0.1)) is not None:
        claims.append(claim)  # the trial and the baselines (the best ticket waits)
    trial_ticket = next(c for c in claims if c.kind == "trial")
    service.runner.execute(trial_ticket, lambda: None)  # trained and told, never released
    time.sleep(0.2)
    service.sweep()
    with Session(service.engine) as session:
        ticket = session.get(Ticket, trial_ticket.id)
        assert ticket is not None and ticket.status == "done", ticket.error
        assert ticket.result == {"trial_number": 0} and ticket.retry_params is None
    assert service.serve(idle_exit=1) >= len(claims)  # the baselines, then the best model
    result = run.wait(progress=False, timeout=120)
    assert result["n_trials"] == 1 and result["n_complete"] == 1
    assert [t.state for t in study_trials(url, run.id)] == [TrialState.COMPLETE]


def test_a_killed_worker_has_its_trial_rerun_with_the_same_params(
        url: str, digits_frame: pd.DataFrame) -> None:
    client = Client(url)
    run = client.submit(digits_frame, "target", space=FAST, n_trials=5, n_seeds=1)
    doomed = worker(url, "--lease", "2", env={"AUTOML_FAULT": "sigkill@trial:1:epoch:2"})
    assert doomed.wait(timeout=120) == -9  # SIGKILL, mid-trial
    survivor = worker(url, "--idle-exit", "4", "--lease", "2")
    result = run.wait(progress=False, timeout=300)
    survivor.wait(timeout=60)
    trials = study_trials(url, run.id)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 5 and result["n_complete"] + result["n_pruned"] == 5
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    # The worker held all five tickets (a cohort's claim): every trial it had started
    # died with it, and each is run again, once, with its own parameters.
    lost = [t for t in trials if t.state == TrialState.FAIL]
    assert 1 in {t.number for t in lost}
    for trial in lost:
        assert trial.user_attrs["stop_reason"] == "lost_worker"
        assert sum(t.params == trial.params for t in finished) == 1


def test_bad_input_through_the_client_writes_nothing(url: str, tmp_path: Path) -> None:
    client = Client(url)
    before = table_counts(client.engine)
    bad = pd.DataFrame({"a": [1.0, float("inf")] * 20, "b": [i % 7 for i in range(40)],
                        "y": [0, 1] * 20})
    with pytest.raises(AutoMLError, match="column 'a'"):
        client.submit(bad, "y")
    good = bad.replace(float("inf"), 0.0)
    with pytest.raises(AutoMLError, match="parameter 'lr'"):
        client.submit(good, "y", space={"lr": {"type": "float", "low": 1, "high": 0.1}})
    with pytest.raises(AutoMLError, match="n_trials"):
        client.submit(good, "y", n_trials=0)
    assert table_counts(client.engine) == before
    assert optuna.get_all_study_summaries(url) == []


def test_a_cancelled_run_is_not_worked_on(url: str, digits_frame: pd.DataFrame) -> None:
    client = Client(url)
    run = client.submit(digits_frame, "target", space=FAST, n_trials=3, n_seeds=1)
    assert run.cancel()
    process = worker(url, "--idle-exit", "1")
    output, _ = process.communicate(timeout=60)
    assert "after 0 tickets" in output
    assert run.status().status == "cancelled"
    with pytest.raises(AutoMLError, match="cancelled"):
        run.result()


def test_postgres_restart_mid_run_crashes_no_worker_and_loses_nothing(
        pg_server, pg_url: str, digits_frame: pd.DataFrame) -> None:
    """F3: ``pg_ctl restart -m fast`` while at least two trials are running."""
    client = Client(pg_url)
    space = {**FAST, "max_epochs": 60, "patience": 60, "units": 256}
    run = client.submit(digits_frame, "target", space=space, n_trials=6, n_seeds=1,
                        pruner="none")
    workers = [worker(pg_url, "--idle-exit", "5", "--lease", "20") for _ in range(2)]
    deadline = time.monotonic() + 120
    while run.status().trials_running < 2:
        assert time.monotonic() < deadline, "two trials never ran at once"
        time.sleep(0.1)
    pg_server.restart("fast")
    result = run.wait(progress=False, timeout=300)
    for process in workers:
        output, _ = process.communicate(timeout=120)
        assert process.returncode == 0, output  # no worker crashed
    trials = study_trials(pg_url, run.id)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 6
    assert all(len(t.intermediate_values) == t.user_attrs["epochs"] for t in trials)
    assert result["n_complete"] == 6 and result["n_failed"] == 0


def test_cancel_ends_a_running_trial_and_the_worker_goes_on(
        url: str, digits_frame: pd.DataFrame) -> None:
    client = Client(url)
    slow = {**FAST, "max_epochs": 400, "patience": 400, "units": 256}
    run = client.submit(digits_frame, "target", space=slow, n_trials=2, n_seeds=1,
                        pruner="none")
    process = worker(url, "--idle-exit", "2", "--lease", "1.5")
    deadline = time.monotonic() + 60
    while run.status().trials_running < 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert run.cancel()
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    trials = study_trials(url, run.id)  # the worker claimed both: a cohort's claim
    assert trials
    for trial in trials:
        assert trial.state == TrialState.FAIL and trial.user_attrs["stop_reason"] == "cancelled"
        assert len(trial.intermediate_values) < 400


def test_cli_submit_status_result_runs(url: str, tmp_path: Path,
                                       digits_frame: pd.DataFrame) -> None:
    digits_frame.to_csv(tmp_path / "digits.csv", index=False)
    (tmp_path / "space.yaml").write_text("max_epochs: 8\npatience: 3\nn_layers: 1\n")
    cli = [sys.executable, "-m", "automl"]
    submitted = subprocess.run(
        [*cli, "submit", str(tmp_path / "digits.csv"), "--target", "target", "--trials", "3",
         "--seeds", "1", "--space", str(tmp_path / "space.yaml"), "--storage", url, "--json"],
        capture_output=True, text=True, timeout=120, check=True)
    run_id = json.loads(submitted.stdout)["run_id"]
    assert worker(url, "--idle-exit", "2").wait(timeout=300) == 0
    status = subprocess.run([*cli, "status", run_id, "--storage", url], capture_output=True,
                            text=True, timeout=60, check=True)
    assert json.loads(status.stdout)["status"] == "succeeded"
    result = subprocess.run([*cli, "result", run_id, "--storage", url, "--json"],
                            capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(result.stdout)["n_trials"] == 3
    table = subprocess.run([*cli, "result", run_id, "--storage", url], capture_output=True,
                           text=True, timeout=60, check=True)
    assert "tuned (best trial)" in table.stdout
    runs = subprocess.run([*cli, "runs", "--storage", url], capture_output=True, text=True,
                          timeout=60, check=True)
    assert run_id in runs.stdout and "succeeded" in runs.stdout


def test_the_same_data_is_stored_once(url: str, digits_frame: pd.DataFrame) -> None:
    client = Client(url)
    first = client.submit(digits_frame, "target", space=FAST, n_trials=2)
    second = client.submit(digits_frame.copy(), "target", space=FAST, n_trials=3, seed=1)
    counts = table_counts(client.engine)
    assert counts["automl_datasets"] == 1 and counts["automl_runs"] == 2
    assert counts["automl_tickets"] == (2 + 7 + 1) + (3 + 7 + 1)
    assert first.id != second.id


def test_baseline_pruning_trains_the_baselines_first_and_prunes_against_them(
        url: str, digits_frame: pd.DataFrame) -> None:
    client = Client(url)
    space = {**FAST, "max_epochs": 12, "patience": 12,
             "lr": {"type": "float", "low": 1e-6, "high": 1e-1, "log": True}}
    run = client.submit(digits_frame, "target", space=space, n_trials=8, n_seeds=1,
                        pruner="baseline", pruner_startup_trials=2, pruner_warmup_epochs=3)
    process = worker(url, "--idle-exit", "3", "--lease", "10")
    result = run.wait(progress=False, timeout=300)
    assert process.wait(timeout=60) == 0
    study = optuna.load_study(study_name=f"automl-{run.id}", storage=url)
    curves = [k for k in study.user_attrs if k.startswith("automl_baseline_curve:")]
    assert len(curves) == 7  # every trained baseline, recorded before the first trial
    first_trial = min(t.datetime_start for t in study.trials if t.datetime_start)
    assert all(study.user_attrs[k]["val_loss"] for k in curves)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED
              and t.user_attrs.get("stop_reason") == "pruned"]
    for trial in pruned:
        assert " baseline" in trial.user_attrs["prune_reason"], trial.user_attrs
    assert result["n_trials"] == 8 and first_trial is not None


def test_a_messy_table_runs_on_the_service_and_predicts_gaps_like_onnx(url: str) -> None:
    """Issue 16: missing values, an ID and a date column through the real client and
    worker; the stored model, its ONNX graph and the notes agree with what `tune` does."""
    import onnxruntime as ort
    from tables import messy_frame, rows_with_gaps

    from automl.results.artifacts import read_model
    from workers.export import onnx_features

    client = Client(url)
    run = client.submit(messy_frame(), "churned", space=FAST, n_trials=3, n_seeds=1)
    process = worker(url, "--idle-exit", "3", "--lease", "10")
    result = run.wait(progress=False, timeout=300)
    assert process.wait(timeout=60) == 0, process.stdout.read() if process.stdout else ""
    notes = "\n".join(result["warnings"])
    assert "dropped 4 row(s) whose target 'churned'" in notes and "'customer_id'" in notes
    assert "'age' (40 missing" in notes and "date column(s)" in notes
    rows = rows_with_gaps(messy_frame())
    model = run.model()
    probabilities = model.predict_proba(rows.to_dict(orient="records"))
    assert np.isfinite(probabilities).all()
    onnx = read_model(url, run.id)["model.onnx"]
    session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    got = session.run(None, {"features": onnx_features(model.preprocessor, rows)})[0]
    np.testing.assert_allclose(got, probabilities, atol=1e-5)


def test_racing_submits_of_one_new_dataset_all_succeed(url: str,
                                                       digits_frame: pd.DataFrame) -> None:
    """Issue 17, case 4: eight clients writing the same new data at once, each on its own
    connection, released together: one dataset row, eight runs, no IntegrityError."""
    import threading

    from automl.options import TuneOptions
    from automl.queue.engine import make_engine
    from automl.run.submit import validate_submission, write_submission

    submission = validate_submission(digits_frame.iloc[:300], "target", FAST,
                                     TuneOptions(storage=url, n_trials=2, progress=False))
    engines = [make_engine(url) for _ in range(8)]
    start = threading.Barrier(len(engines))
    run_ids: list[str] = []
    errors: list[BaseException] = []

    def submit(engine: object) -> None:
        start.wait(timeout=30)
        try:
            run_ids.append(write_submission(engine, submission))  # type: ignore[arg-type]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for engine in engines:
        engine.dispose()
    assert errors == [] and len(set(run_ids)) == 8
    counts = table_counts(Client(url).engine)
    assert counts["automl_datasets"] == 1 and counts["automl_runs"] == 8


def test_a_trial_left_running_by_a_lost_worker_is_failed_when_the_run_finishes(
        tmp_path: Path, digits_frame: pd.DataFrame) -> None:
    """Issue 17, case 1: after an outage longer than the lease a trial could stay RUNNING
    while its ticket was settled; the run then 'succeeded' with a trial unaccounted for.
    Finishing a run now fails such trials, so result and study agree."""
    from automl.queue.schema import upgrade
    from workers.service_worker import ServiceWorker

    url = f"sqlite:///{tmp_path / 'orphan.db'}"
    upgrade(url)
    run = Client(url).submit(digits_frame.iloc[:400], "target", space=FAST, n_trials=2,
                             n_seeds=1)
    study = optuna.create_study(study_name=f"automl-{run.id}", storage=url)
    orphan = study.ask()  # a trial whose worker is gone, as an outage leaves it
    ServiceWorker(url, lease_s=30).serve(idle_exit=0.5)
    result = run.result()
    trials = study_trials(url, run.id)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert trials[orphan.number].state == TrialState.FAIL
    assert trials[orphan.number].user_attrs["stop_reason"] == "lost_worker"
    assert result["n_failed"] == 1 and result["n_complete"] + result["n_pruned"] == 2
    status = run.status()  # counted from the trials: it agrees with the result
    assert (status.trials_done, status.trials_failed, status.trials_running) == \
        (result["n_trials"], 1, 0)
    assert status.trials_complete == result["n_complete"] and status.budget_spent == 2


def test_the_sweeper_fails_a_running_trial_that_no_ticket_holds(
        tmp_path: Path, digits_frame: pd.DataFrame) -> None:
    """Issue 17: a trial left RUNNING with no live ticket (its worker lost the storage
    between starting the trial and recording it on its ticket) is failed by the sweeper
    while the run goes on, not only when the run ends; a trial a live ticket holds is not,
    nor is any while a running ticket of the run has yet to record its trial's number."""
    from automl.queue import leases, queries
    from automl.queue.schema import upgrade
    from workers.service_worker import ServiceWorker

    url = f"sqlite:///{tmp_path / 'unheld.db'}"
    upgrade(url)
    client = Client(url)
    run = client.submit(digits_frame.iloc[:400], "target", space=FAST, n_trials=2, n_seeds=1)
    queries.start_run(client.engine, run.id)
    study = optuna.create_study(study_name=f"automl-{run.id}", storage=url)
    unheld, held = study.ask(), study.ask()
    claim = leases.claim_ticket(client.engine, "a-live-worker", lease_s=600)
    assert claim is not None and claim.kind == "trial"
    sweeper = ServiceWorker(url, lease_s=0.5)
    for _ in range(2):  # a live ticket yet to record its trial's number: either may be its
        sweeper.sweep()
        time.sleep(0.6)
    assert [t.state for t in study_trials(url, run.id)] == [TrialState.RUNNING] * 2
    leases.set_trial_number(client.engine, claim.id, held.number)
    sweeper.sweep()
    states = [t.state for t in study_trials(url, run.id)]
    assert states == [TrialState.RUNNING] * 2  # a trial just started gets a lease's grace
    time.sleep(0.6)
    sweeper.sweep()
    trials = study_trials(url, run.id)
    assert trials[unheld.number].state == TrialState.FAIL
    assert trials[unheld.number].user_attrs["stop_reason"] == "lost_worker"
    assert trials[held.number].state == TrialState.RUNNING
