"""PostgreSQL stopped mid-run at the production defaults: does any trial get lost?

    python bench/outage.py --outages 45 90 --trials 16 --busy 2

The reproduction of issue 17, case 1, as a user would run it. For each outage length, a
throwaway PostgreSQL (``tests/pgserver.py``) gets a fresh migrated database; a run of
``--trials`` trials on digits is submitted, and two ``automl worker`` processes with the
default lease (30 s) and retry budget (30 s) work on it, beside ``--busy`` CPU-bound
processes. Once two trials have finished and one is running, the database is stopped
(``pg_ctl stop -m fast``) for the outage's length and started again. Then the run is
waited for and its trials counted: how many finished (COMPLETE or PRUNED), how many
FAILed and why, how many were left RUNNING, whether each lost trial was re-run with its
parameters, whether ``status`` agrees with ``result``, and whether both workers lived.
"lost" is a trial of the budget that never finished: ``trials - finished``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from sklearn.datasets import load_digits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from pgserver import PostgresServer

from automl.client import Client, RunHandle
from automl.queue.schema import upgrade

SPACE = {"max_epochs": 40, "patience": 40, "n_layers": 1, "units": 128}


def trials_of(url: str, run: RunHandle) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name=f"automl-{run.id}", storage=url).trials
    except KeyError:  # the first worker creates the study
        return []


def wait_until_mid_run(url: str, run: RunHandle) -> None:
    """Two trials finished and one running: the outage cuts a trial in training."""
    while True:
        states = [t.state for t in trials_of(url, run)]
        if states.count(TrialState.COMPLETE) >= 2 and TrialState.RUNNING in states:
            return
        time.sleep(0.2)


def one_outage(server: PostgresServer, outage_s: float, n_trials: int,
               index: int) -> dict[str, Any]:
    database = f"outage_{index}"
    server.create_database(database, template="template0")
    url = server.url(database)
    upgrade(url)
    frame = load_digits(as_frame=True).frame
    run = Client(url).submit(frame, "target", space=SPACE, n_trials=n_trials, n_seeds=1,
                             pruner="none")
    workers = [subprocess.Popen([sys.executable, "-m", "automl", "worker", "--storage", url],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for _ in range(2)]
    started = time.monotonic()
    try:
        wait_until_mid_run(url, run)
        server.stop("fast")
        time.sleep(outage_s)
        server.start_again()
        result = run.wait(progress=False, timeout=3600)
    finally:
        alive = sum(process.poll() is None for process in workers)
        for process in workers:
            process.terminate()
            process.communicate(timeout=120)
    return count(url, run, result, outage_s, n_trials, alive, time.monotonic() - started)


def count(url: str, run: RunHandle, result: dict[str, Any], outage_s: float, n_trials: int,
          alive: int, wall_s: float) -> dict[str, Any]:
    trials = trials_of(url, run)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    status = run.status()
    return {
        "outage_s": outage_s, "trials": n_trials, "finished": len(finished),
        "failed": len(failed),
        "reasons": sorted({str(t.user_attrs.get("stop_reason")) for t in failed}),
        "left_running": sum(t.state == TrialState.RUNNING for t in trials),
        "lost": n_trials - len(finished),
        "retried_with_params": sum(any(t.params.items() <= f.params.items() for f in finished)
                                   for t in failed),
        "status": status.status,
        "status_agrees": (status.trials_done, status.trials_complete, status.trials_failed)
        == (result["n_trials"], result["n_complete"], result["n_failed"]),
        "workers_alive": f"{alive}/2", "wall_s": round(wall_s),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outages", type=float, nargs="+", default=[45.0, 90.0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--busy", type=int, default=2, help="CPU-bound processes beside")
    args = parser.parse_args()
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
               for _ in range(args.busy)]
    rows = []
    try:
        with PostgresServer() as server:
            for index, outage_s in enumerate(args.outages):
                rows.append(one_outage(server, outage_s, args.trials, index))
                print(rows[-1], flush=True)
    finally:
        for burner in burners:
            burner.kill()
    print("\n| outage | lease / retry | trials | finished | FAIL (reason) | left RUNNING "
          "| lost | retried with params | run | status = result | workers alive | wall |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['outage_s']:.0f} s | 30 s / 30 s | {row['trials']} | {row['finished']} "
              f"| {row['failed']} ({', '.join(row['reasons']) or '-'}) | {row['left_running']} "
              f"| {row['lost']} | {row['retried_with_params']}/{row['failed']} | {row['status']} "
              f"| {row['status_agrees']} | {row['workers_alive']} | {row['wall_s']} s |")


if __name__ == "__main__":
    main()
