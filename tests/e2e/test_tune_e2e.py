"""End to end: the ``automl`` CLI and ``automl.tune`` with a real local Ray and SQLite."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState
from optuna_dashboard import get_note
from sklearn.datasets import load_diabetes

import automl
from automl.errors import ConfigError, StudyUnhealthyError

pytestmark = pytest.mark.slow

FAST_SPACE = "max_epochs: 15\npatience: 5\nunits: {type: int, low: 8, high: 64, log: true}\n"
# Everything a cohort's members must share, fixed, and one width (a CPU stacks only
# members within 2x of each other's multiply-adds): every trial can join any cohort.
COHORT_SPACE = ("max_epochs: 15\npatience: 5\nunits: 32\nn_layers: 1\nactivation: relu\n"
                "batch_norm: false\noptimizer: adam\nbatch_size: 32\nembedding: none\n")
BASELINES = {"two_thirds_rule", "mean_rule", "upper_bound_rule", "textbook_shallow",
             "textbook_intermediate", "defaults", "linear", "constant"}


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "automl", *args], capture_output=True,
                          text=True, timeout=600, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, digits_frame: pd.DataFrame) -> Path:
    folder = tmp_path_factory.mktemp("e2e")
    digits_frame.to_csv(folder / "digits.csv", index=False)
    load_diabetes(as_frame=True).frame.to_csv(folder / "diabetes.csv.gz", index=False)
    (folder / "space.yaml").write_text(FAST_SPACE)
    return folder


def finished_trials(db: Path) -> list[optuna.trial.FrozenTrial]:
    storage = f"sqlite:///{db}"
    (summary,) = optuna.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage).trials


def test_cli_tunes_a_classifier_and_reports_json(files: Path) -> None:
    db = files / "cls.db"
    proc = run_cli("tune", str(files / "digits.csv"), "--target", "target", "--trials", "6",
                   "--space", str(files / "space.yaml"), "--storage", f"sqlite:///{db}",
                   "--seeds", "2", "--json", "--quiet")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["metric"] == "accuracy"
    assert {"architecture", "params", "val_score", "test_score"} <= set(result["best"])
    assert {b["name"] for b in result["baselines"]} == BASELINES
    assert all({"name", "architecture", "test_score"} <= set(b) for b in result["baselines"])
    assert result["n_trials"] == 6
    assert result["n_complete"] + result["n_pruned"] + result["n_failed"] == 6
    assert result["best"]["test_score"] > 0.5  # far above the 10% of chance
    trials = finished_trials(db)
    assert len(trials) == 6 and all(t.state.is_finished() for t in trials)
    assert all("stop_reason" in t.user_attrs for t in trials)
    study = optuna.load_study(study_name=result["study_name"], storage=f"sqlite:///{db}")
    assert result["study_name"].startswith("digits-target-")  # the data's and target's names
    assert study.metric_names == ["validation loss"]  # the dashboard's axis, named
    note = get_note(study)  # optuna-dashboard's note on the study: the table and verdict
    names = {line.split("|")[1].strip() for line in note.splitlines() if line.startswith("|")}
    assert "Verdict" in note and names >= BASELINES


def test_cli_regression_reports_r2_table(files: Path) -> None:
    proc = run_cli("tune", str(files / "diabetes.csv.gz"), "--target", "target", "--trials",
                   "4", "--space", str(files / "space.yaml"), "--storage",
                   f"sqlite:///{files / 'reg.db'}", "--seeds", "1", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "test R²" in proc.stdout and "tuned (best trial)" in proc.stdout
    assert "mean_rule" in proc.stdout and "rule of thumb" in proc.stdout
    # it ends with the run's name and the commands that use it (issue 21)
    name = proc.stdout.split("\nrun ", 1)[1].split()[0]
    assert name.startswith("diabetes-target-")  # named after the data and target
    assert f"automl export {name} --out model/ --storage sqlite:///" in proc.stdout


@pytest.mark.parametrize(("content", "code"), [
    ("a,b,target\n" + "1,inf,0\n" * 30, "E_NONFINITE"),
    ("a,b,target\n" + "1,2,0\n" * 30, "E_DEGENERATE"),
    ("", "E_SHAPE"),
])
def test_cli_rejects_bad_data_in_one_line_and_stores_nothing(tmp_path: Path, content: str,
                                                             code: str) -> None:
    (tmp_path / "bad.csv").write_text(content)
    db = tmp_path / "never.db"
    proc = run_cli("tune", str(tmp_path / "bad.csv"), "--target", "target", "--storage",
                   f"sqlite:///{db}")
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith(f"error {code}:")
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not db.exists()


def test_cli_rejects_a_bad_space_before_storing(files: Path, tmp_path: Path) -> None:
    (tmp_path / "space.yaml").write_text("lr: {type: float, low: 0.1, high: 0.01}\n")
    db = tmp_path / "never.db"
    proc = run_cli("tune", str(files / "digits.csv"), "--target", "target", "--space",
                   str(tmp_path / "space.yaml"), "--storage", f"sqlite:///{db}")
    assert proc.returncode == 2 and proc.stderr.startswith("error E_SPACE: parameter 'lr'")
    assert not db.exists()


def test_a_killed_worker_fails_its_trial_and_the_run_goes_on(files: Path) -> None:
    db = files / "kill.db"
    proc = run_cli("tune", str(files / "digits.csv"), "--target", "target", "--trials", "4",
                   "--space", str(files / "space.yaml"), "--storage", f"sqlite:///{db}",
                   "--seeds", "1", "--json", "--quiet",
                   env={"AUTOML_FAULT": "sigkill@trial:1:epoch:1"})
    assert proc.returncode == 0, proc.stderr
    trials = {t.number: t for t in finished_trials(db)}
    lost = [t for t in trials.values() if t.state == TrialState.FAIL]
    assert json.loads(proc.stdout)["n_failed"] == len(lost)
    assert trials[1].state == TrialState.FAIL
    assert all(t.user_attrs["stop_reason"] == "lost_worker" for t in lost)
    assert all(t.state != TrialState.RUNNING for t in trials.values())


def test_a_killed_cohort_reruns_each_of_its_trials_with_its_own_params(files: Path) -> None:
    """One Ray task claims four tickets; in TPE's random start-up its first cohort is a
    pair of trials of one structure, trained as one stacked model. The task is killed
    (SIGKILL) in its first epoch: both are failed as lost and run again, once, with their
    own parameters (together again), the two tickets it had not started yet run as fresh
    trials, and the run still has its eight trials."""
    (files / "cohort.yaml").write_text(COHORT_SPACE)
    db = files / "cohort-kill.db"
    proc = run_cli("tune", str(files / "digits.csv"), "--target", "target", "--trials", "8",
                   "--space", str(files / "cohort.yaml"), "--storage", f"sqlite:///{db}",
                   "--seeds", "1", "--json", "--quiet", "--workers", "1", "--no-head-start",
                   "--cohort-trials", "4", env={"AUTOML_FAULT": "sigkill@trial:1:epoch:1"})
    assert proc.returncode == 0, proc.stderr
    trials = finished_trials(db)
    lost = [t for t in trials if t.state == TrialState.FAIL]
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert sorted(t.number for t in lost) == [0, 1]  # the whole first cohort
    assert len(finished) == 8 and json.loads(proc.stdout)["n_failed"] == 2
    for trial in lost:
        assert trial.user_attrs["stop_reason"] == "lost_worker"
        (rerun,) = [t for t in finished if t.params == trial.params]
        assert rerun.user_attrs["cohort_size"] > 1  # the retries train together too


def test_repeated_divergence_stops_the_study_as_unhealthy(tmp_path: Path) -> None:
    frame = load_diabetes(as_frame=True).frame
    space = {"optimizer": "sgd", "lr": 9.0, "momentum": 0.99, "activation": "relu",
             "batch_norm": False, "loss": "mse", "max_epochs": 5}
    with pytest.raises(StudyUnhealthyError, match="diverged"):
        automl.tune(frame, "target", space=space, n_trials=12, max_consecutive_failures=3,
                    storage=f"sqlite:///{tmp_path / 'div.db'}", progress=False)
    trials = sorted(finished_trials(tmp_path / "div.db"), key=lambda t: t.datetime_complete)
    # How many trials finish before the breaker trips depends on the machine's load (on a
    # quiet one it stops well short of 12; a slow driver may see them all finish first).
    assert 3 <= len(trials) <= 12
    assert [t.user_attrs["stop_reason"] for t in trials[-3:]] == ["diverged"] * 3


def test_the_embedded_ray_listens_on_loopback_only() -> None:
    """Checked in a fresh interpreter: Ray reads its network mode when first imported."""
    script = ("from automl.run.runtime import single_machine_ray\n"
              "single_machine_ray()  # what tune() does before a local Ray starts\n"
              "from workers.ray_setup import start_ray\n"
              "start_ray(None, 1)\n"
              "import ray\n"
              "print(ray.nodes()[0]['NodeManagerAddress'], "
              "ray.get_runtime_context().gcs_address)\n"
              "ray.shutdown()\n")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    node, gcs = proc.stdout.split()[-2:]
    assert node == "127.0.0.1" and gcs.startswith("127.0.0.1:")


def test_the_embedded_ray_is_its_own_and_keeps_its_token_private() -> None:
    import ray

    from workers.ray_setup import start_ray

    start_ray(None, 1)
    try:  # a fresh one-CPU instance, never a `ray start` cluster that happens to run here
        assert ray.cluster_resources()["CPU"] == 1 and len(ray.nodes()) == 1
        token = Path.home() / ".ray" / "auth_token"
        if token.exists():
            assert token.stat().st_mode & 0o777 == 0o600
    finally:
        ray.shutdown()


def test_rays_token_file_is_private_from_the_moment_it_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 17: Ray 2.60 writes its token with a plain open() (mode 0644 under the usual
    umask); written while Ray starts here, it is 0600 before anyone could read it."""
    from ray._private.authentication import authentication_token_setup as setup

    from workers.ray_setup import private_files

    monkeypatch.setenv("HOME", str(tmp_path))
    with private_files():
        setup.generate_and_save_token()
    token = tmp_path / ".ray" / "auth_token"
    assert token.stat().st_mode & 0o777 == 0o600
    assert token.parent.stat().st_mode & 0o077 == 0


def test_the_first_trials_train_while_the_local_ray_starts(tmp_path: Path) -> None:
    """In a fresh interpreter, so that ``tune`` starts its own Ray (and forks before it)."""
    script = ("import sys\n"
              "from sklearn.datasets import load_digits\n"
              "import automl\n"
              "result = automl.tune(load_digits(as_frame=True).frame, 'target', n_trials=6,\n"
              "                     space=sys.argv[1], storage=sys.argv[2], n_seeds=1,\n"
              "                     n_workers=1, progress=False)\n"
              "print(result.n_trials)\n")
    (tmp_path / "space.yaml").write_text(FAST_SPACE)
    db = tmp_path / "head.db"
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "space.yaml"),
                           f"sqlite:///{db}"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1] == "6"
    with sqlite3.connect(db) as connection:  # who ran each trial ticket
        workers = [row[0] for row in connection.execute(
            "SELECT worker_id FROM automl_tickets WHERE kind = 'trial' AND status = 'done'")]
    in_fork = sum(":head-start:" in worker for worker in workers)
    assert len(workers) == 6 and 1 <= in_fork <= 6  # Ray takes seconds to start
    trials = finished_trials(db)
    assert len(trials) == 6 and all(t.state.is_finished() for t in trials)


def test_a_tune_run_is_found_like_a_service_run(tmp_path: Path, files: Path) -> None:
    """One pipeline (issue 18): `runs` lists a `tune` run and `result` finds it by name."""
    storage = f"sqlite:///{tmp_path / 'found.db'}"
    tuned = run_cli("tune", str(files / "digits.csv"), "--target", "target", "--trials", "2",
                    "--space", str(files / "space.yaml"), "--storage", storage, "--seeds", "1",
                    "--json", "--quiet")
    assert tuned.returncode == 0, tuned.stderr
    result = json.loads(tuned.stdout)
    listed = run_cli("runs", "--storage", storage)
    assert listed.returncode == 0, listed.stderr
    (line,) = listed.stdout.splitlines()
    assert "succeeded" in line and "trials 2/2" in line and result["study_name"] in line
    found = run_cli("result", result["study_name"], "--storage", storage, "--json")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout) == result
    with pytest.raises(ConfigError, match="already exists") as caught:
        automl.tune(files / "digits.csv", "target", n_trials=2, storage=storage,
                    study_name=result["study_name"], progress=False)
    assert caught.value.field == "study_name"


def test_a_messy_csv_tunes_in_one_command_with_its_notes(tmp_path: Path) -> None:
    """Issue 16: an ID, a date, missing numbers and categories, stray spaces, rows
    without a target: one command, and the output says what was done with each."""
    from tables import messy_frame

    path = tmp_path / "customers.csv"
    messy_frame().to_csv(path, index=False)
    proc = run_cli("tune", str(path), "--target", "churned", "--trials", "4", "--seeds", "1",
                   "--space", str(_space(tmp_path)), "--storage",
                   f"sqlite:///{tmp_path / 'messy.db'}", "--quiet")
    assert proc.returncode == 0, proc.stderr
    for said in ("dropped 4 row(s) whose target 'churned' is missing", "'customer_id'",
                 "'notes' (missing in", "date column(s) become year", "'age' (40 missing",
                 "a missing category is a level of its own: 'city'", "spaces stripped"):
        assert proc.stdout.count(said) == 1, (said, proc.stdout)


def _space(folder: Path) -> Path:
    path = folder / "space.yaml"
    path.write_text(FAST_SPACE)
    return path


# `python -m automl`, started as a shell starts it: SIGINT neither blocked nor ignored, whatever
# the test runner's own process did to its signals (a child inherits both). In the full
# suite the Ctrl-C below was twice not acted on while it was acted on alone.
AS_FROM_A_SHELL = ("import runpy, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); "
                   "signal.signal(signal.SIGINT, signal.default_int_handler); "
                   "sys.argv[0] = 'automl'; runpy.run_module('automl', run_name='__main__')")


def test_ctrl_c_cancels_the_run_and_leaves_no_trial_running(tmp_path: Path,
                                                            files: Path) -> None:
    """Interrupted, a tune run is cancelled: no ticket waits, no trial stays RUNNING."""
    db = tmp_path / "stop.db"
    # More trials than the run can finish before the test gives up on it: a Ctrl-C that is
    # not acted on shows as a hang (and its threads), never as a run that simply ended.
    proc = subprocess.Popen([sys.executable, "-c", AS_FROM_A_SHELL, "tune",
                             str(files / "digits.csv"),
                             "--target", "target", "--trials", "2000", "--space",
                             str(files / "space.yaml"), "--storage", f"sqlite:///{db}",
                             "--no-head-start", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONFAULTHANDLER": "1"})
    try:
        while not _a_trial_is_done(db):  # Ray is up and trials are running
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        try:
            _, stderr = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:  # a hang: every thread's stack, then fail
            proc.send_signal(signal.SIGABRT)
            _, stderr = proc.communicate(timeout=60)
            pytest.fail(f"no exit 120 s after Ctrl-C; its threads:\n{stderr[-20000:]}")
    finally:
        proc.kill()
    assert proc.returncode == 130 and "interrupted" in stderr, (
        proc.returncode, stderr[-5000:], signal.getsignal(signal.SIGINT),
        signal.pthread_sigmask(signal.SIG_BLOCK, []))  # this process's, which a child inherits
    with sqlite3.connect(db) as connection:
        (status,) = connection.execute("SELECT status FROM automl_runs").fetchone()
        waiting = connection.execute("SELECT count(*) FROM automl_tickets WHERE status IN "
                                     "('queued', 'running')").fetchone()[0]
    assert status == "cancelled" and waiting == 0
    trials = finished_trials(db)
    assert trials and all(t.state != TrialState.RUNNING for t in trials)

    # `automl finish` compares the best of the trials it had, training none again (issue 21)
    name = optuna.get_all_study_summaries(f"sqlite:///{db}")[0].study_name
    finished = run_cli("finish", name, "--storage", f"sqlite:///{db}", "--json", "--quiet")
    assert finished.returncode == 0, finished.stderr
    result = json.loads(finished.stdout)
    after = finished_trials(db)
    assert [(t.number, t.state) for t in after] == [(t.number, t.state) for t in trials]
    assert result["n_trials"] == len(trials) and result["best"]["trial_number"] in {
        t.number for t in trials if t.state == TrialState.COMPLETE}
    assert {b["name"] for b in result["baselines"]} == BASELINES
    assert any(f"best of its {sum(t.state == TrialState.COMPLETE for t in trials)} completed"
               in note for note in result["warnings"])
    exported = run_cli("export", name, "--storage", f"sqlite:///{db}", "--out",
                       str(tmp_path / "model"), "--no-onnx")
    assert exported.returncode == 0, exported.stderr
    again = run_cli("finish", name, "--storage", f"sqlite:///{db}")
    assert again.returncode == 2 and "already finished" in again.stderr


def test_a_cancelled_run_resumes_to_its_trial_budget(tmp_path: Path, files: Path) -> None:
    """`automl resume` runs the trials a cancelled run had left, then compares."""
    storage = f"sqlite:///{tmp_path / 'resume.db'}"
    assert run_cli("db", "upgrade", "--storage", storage).returncode == 0
    client = automl.Client(storage)
    run = client.submit(files / "digits.csv", "target", space=str(files / "space.yaml"),
                        n_trials=3, n_seeds=1)
    assert run.cancel()  # before any worker took a ticket
    nothing = run_cli("finish", run.id, "--storage", storage)
    assert nothing.returncode == 2 and "automl resume" in nothing.stderr
    resumed = run_cli("resume", run.id, "--storage", storage, "--json", "--quiet",
                      "--workers", "1")
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    assert result["n_trials"] == 3 and run.status().status == "succeeded"
    assert not any("finished early" in note for note in result["warnings"])


def _a_trial_is_done(db: Path) -> bool:
    if not db.exists():
        return False
    try:
        with sqlite3.connect(db) as connection:
            return bool(connection.execute(
                "SELECT count(*) FROM automl_tickets WHERE kind = 'trial' AND status = 'done'"
            ).fetchone()[0])
    except sqlite3.OperationalError:  # the tables are not there yet
        return False


def test_an_imbalanced_table_is_judged_on_the_metric_asked_for(tmp_path: Path) -> None:
    """Issue 21: with 10 % positives accuracy flatters the constant predictor; --metric
    roc_auc makes ROC AUC the headline, the verdict and the ranking, and the JSON carries
    every classification metric for every model."""
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=500, n_features=8, n_informative=4,
                               weights=[0.9, 0.1], flip_y=0.02, random_state=0)
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(8)]).assign(churned=y)
    frame.to_csv(tmp_path / "imbalanced.csv", index=False)
    (tmp_path / "space.yaml").write_text(FAST_SPACE + "class_weight: balanced\n")
    args = ("tune", str(tmp_path / "imbalanced.csv"), "--target", "churned", "--trials", "3",
            "--space", str(tmp_path / "space.yaml"), "--seeds", "1", "--metric", "roc_auc",
            "--storage", f"sqlite:///{tmp_path / 'auc.db'}", "--quiet")
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    table = proc.stdout.split("\n\n")[1]
    assert "test ROC AUC" in table.splitlines()[0]
    verdict = next(line for line in proc.stdout.splitlines() if line.startswith("Tuning "))
    assert "of test ROC AUC" in verdict
    result = json.loads(run_cli("result", proc.stdout.split("\nrun ", 1)[1].split()[0],
                                "--storage", f"sqlite:///{tmp_path / 'auc.db'}",
                                "--json").stdout)
    assert result["metric"] == "roc_auc"
    metrics = {"accuracy", "balanced_accuracy", "roc_auc", "log_loss", "f1"}
    assert set(result["best"]["metrics"]) == metrics
    constant = next(b for b in result["baselines"] if b["name"] == "constant")
    assert constant["ensemble_score"] is None and constant["test_score"] == 0.5  # no skill
    assert constant["metrics"]["accuracy"] > 0.85  # what accuracy would have flattered
    assert result["best"]["ensemble_score"] == result["best"]["metrics"]["roc_auc"] > 0.8
    # the delivered model's columns, by how much ROC AUC drops when each is shuffled
    importance = result["feature_importance"]
    assert {c["column"] for c in importance} == {f"x{i}" for i in range(8)}
    assert importance == sorted(importance, key=lambda c: -c["importance"])
    assert "The model leans most on: " in proc.stdout and "test ROC AUC drops" in proc.stdout
    # class_weight: balanced reached every trial (and the baselines: tests/unit)
    study = optuna.load_study(study_name=result["study_name"],
                              storage=f"sqlite:///{tmp_path / 'auc.db'}")
    assert {t.user_attrs["config"]["train"]["class_weight"] for t in study.trials} == {
        "balanced"}
    bad = run_cli(*args[:-1], "--metric", "rmse")
    assert bad.returncode == 2 and "does not fit a binary target" in bad.stderr
