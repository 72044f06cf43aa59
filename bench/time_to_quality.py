"""Time-to-quality: ``automl.tune`` against a plain Optuna script, side by side in one run.

    python bench/time_to_quality.py --dataset digits --budget-s 120
    python bench/time_to_quality.py --dataset letter --budget-s 180 --sides ours plain

Every side runs in its own fresh child process (one after the other, never at the same
time), on the same dataset and the same seeded 60/20/20 split from
``automl.data.load_dataset``, with the same wall-clock budget:

* **ours** — ``automl.tune`` with the default space on the embedded default: a SQLite
  study in a temporary folder and a local Ray started by ``tune`` (Ray's start-up is part
  of our wall-clock), 2 trials in parallel on 2 cores, 1 torch thread each.
  ``timeout=--budget-s`` (``tune`` counts it from the run's start, when its first ticket
  is claimed, and starts no trial after it; with the head start that is before Ray is up,
  its start-up used to train the first trials); ``n_seeds=1`` for the final comparison.
* **ours-1w** — the same with ``n_workers=1`` (one trial at a time, one thread).
* **ours-cold** — ``ours`` with ``warm_start=False``: the search does not start from the
  rules of thumb (:mod:`automl.study.warm_start`), its start-up trials are all random.
* **ours-solo** — ``ours`` with ``cohort_trials=1``: one trial per Ray task, as before
  trials trained in cohorts (issue 20); ``ours`` claims 8 trial tickets per task and
  trains those of one structure as one stacked model where that pays.
* **ours-no-head** — ``ours`` with ``head_start=False``: no trial trains before Ray is up
  (:mod:`workers.head_start`), and the run, with its timeout, starts once Ray is up.
* **plain** — a script written the way Optuna's PyTorch example
  (``optuna/optuna-examples`` ``pytorch/pytorch_simple.py``) is: the model is defined in the
  objective (``n_layers`` 1..3, ``n_units_l{i}`` 4..128, ReLU, ``dropout_l{i}`` 0.2..0.5,
  log-softmax), optimizer Adam/RMSprop/SGD, ``lr`` 1e-5..1e-1 (log), a ``DataLoader`` of
  batch 128 with ``shuffle=True``, ``EPOCHS`` (10) epochs of ``nll_loss``, validation
  accuracy reported every epoch with ``trial.should_prune()``, and
  ``optuna.create_study(direction="maximize")`` (default TPE, seeded here, and the default
  ``MedianPruner``), in-memory storage, ``study.optimize(timeout=--budget-s)``; one process
  with torch's default of one thread per core (``--plain-threads``, 2 on 2 cores).
* **plain-1t** — the same with ``torch.set_num_threads(1)``. On a busy machine two OpenMP
  threads that must wait for each other can be several times slower than one; this side
  keeps that out of the comparison. Differences from the example, forced by the data: it reads
  the already preprocessed arrays (not FashionMNIST), trains on the whole training split
  each epoch and validates on the whole validation split (the example caps both, to cut
  FashionMNIST's 60000 images down).

The **target** is the validation score (accuracy) of the best rule-of-thumb baseline,
chosen on validation, from the ``ours`` run (the baselines are trained once, by ``tune``
after its study, with the first final seed). For each side, from the trials' completion
timestamps measured from the side's start (``t0``: just before the dataset is loaded, after
torch/optuna/automl are imported; Ray is imported and started after ``t0``):

* **time-to-quality**: seconds until the first COMPLETE trial whose validation score
  reaches the target (pruned trials do not count: neither side would return them);
* **best validation score** among the COMPLETE trials finished by each checkpoint
  (``--checkpoints``, default a quarter, a half and all of the budget).

Peak memory is the largest sum, sampled every 0.5 s, of the proportional set size (PSS,
``/proc/PID/smaps_rollup``) of the child and all its descendants (for ours: the driver, Ray's
GCS and raylet and every Ray worker); PSS counts shared pages once (and splits pages
shared with other processes on the machine, e.g. the same torch libraries, so it is lower
on a busy machine). The driver's own peak RSS (``VmHWM``) is given too.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import torch

import automl
from automl.data import PreparedData, load_dataset

# shared/ sits beside the repository (as in CI); AUTOML_SHARED overrides it.
SHARED = Path(os.environ.get("AUTOML_SHARED", Path(__file__).resolve().parents[2] / "shared"))
DATASETS = {"letter": SHARED / "datasets" / "pmlb_letter.tsv.gz"}
SIDES = ("ours", "ours-1w", "ours-cold", "ours-solo", "ours-no-head", "plain", "plain-1t")
PLAIN_BATCH = 128  # BATCHSIZE of Optuna's example
PLAIN_EPOCHS = 10  # EPOCHS of Optuna's example
MANY_TRIALS = 100_000  # the budget is the wall-clock, not a trial count


# ---- the data, the same for every side ----------------------------------------------------
def load_frame(name: str, max_rows: int | None) -> pd.DataFrame:
    """``digits`` (scikit-learn), ``letter`` (PMLB, shared/) or a file with a ``target``
    column; at most ``max_rows`` rows (a seeded sample)."""
    if name == "digits":
        from sklearn.datasets import load_digits

        frame = load_digits(as_frame=True).frame
    else:
        path = DATASETS.get(name, Path(name))
        frame = pd.read_csv(path, sep="\t" if ".tsv" in path.name else ",")
    if max_rows is not None and len(frame) > max_rows:
        frame = frame.sample(n=max_rows, random_state=0).reset_index(drop=True)
    return frame


def prepared(args: argparse.Namespace) -> PreparedData:
    return load_dataset(load_frame(args.dataset, args.max_rows), "target", seed=args.seed)


# ---- the plain Optuna script (the example's structure, on our arrays) ---------------------
class PlainScript:
    """Optuna's ``pytorch_simple.py``, reading the preprocessed arrays instead of MNIST."""

    def __init__(self, data: PreparedData, epochs: int = PLAIN_EPOCHS) -> None:
        from torch.utils.data import DataLoader, TensorDataset

        self.in_features, self.classes, self.epochs = data.n_features, data.n_outputs, epochs
        x_train = torch.as_tensor(data.x_train, dtype=torch.float32)
        y_train = torch.as_tensor(data.y_train, dtype=torch.long)
        x_val = torch.as_tensor(data.x_val, dtype=torch.float32)
        y_val = torch.as_tensor(data.y_val, dtype=torch.long)
        self.train_set = TensorDataset(x_train, y_train)
        self.valid_set = TensorDataset(x_val, y_val)
        self.loader_cls = DataLoader

    def define_model(self, trial: optuna.Trial) -> torch.nn.Module:
        from torch import nn

        n_layers = trial.suggest_int("n_layers", 1, 3)
        layers: list[nn.Module] = []
        in_features = self.in_features
        for i in range(n_layers):
            out_features = trial.suggest_int(f"n_units_l{i}", 4, 128)
            layers.append(nn.Linear(in_features, out_features))
            layers.append(nn.ReLU())
            p = trial.suggest_float(f"dropout_l{i}", 0.2, 0.5)
            layers.append(nn.Dropout(p))
            in_features = out_features
        layers.append(nn.Linear(in_features, self.classes))
        layers.append(nn.LogSoftmax(dim=1))
        return nn.Sequential(*layers)

    def loaders(self) -> tuple[Any, Any]:
        train_loader = self.loader_cls(self.train_set, batch_size=PLAIN_BATCH, shuffle=True)
        valid_loader = self.loader_cls(self.valid_set, batch_size=PLAIN_BATCH, shuffle=True)
        return train_loader, valid_loader

    def objective(self, trial: optuna.Trial) -> float:
        from torch import optim
        from torch.nn import functional

        model = self.define_model(trial)
        optimizer_name = trial.suggest_categorical("optimizer", ["Adam", "RMSprop", "SGD"])
        lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
        optimizer = getattr(optim, optimizer_name)(model.parameters(), lr=lr)
        train_loader, valid_loader = self.loaders()
        accuracy = 0.0
        for epoch in range(self.epochs):
            model.train()
            for data, target in train_loader:
                optimizer.zero_grad()
                output = model(data)
                loss = functional.nll_loss(output, target)
                loss.backward()
                optimizer.step()
            model.eval()
            correct = 0
            with torch.no_grad():
                for data, target in valid_loader:
                    pred = model(data).argmax(dim=1, keepdim=True)
                    correct += pred.eq(target.view_as(pred)).sum().item()
            accuracy = correct / len(self.valid_set)
            trial.report(accuracy, epoch)
            if trial.should_prune():
                raise optuna.exceptions.TrialPruned()
        return accuracy


def run_plain(args: argparse.Namespace, t0: float, threads: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    torch.manual_seed(args.seed)
    data = prepared(args)
    script = PlainScript(data, args.plain_epochs)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=args.seed))
    study.optimize(script.objective, n_trials=MANY_TRIALS, timeout=args.budget_s)
    trials = [trial_record(t, t0, t.value if t.state.name == "COMPLETE" else None,
                           len(t.intermediate_values)) for t in study.trials]
    return {"trials": trials, "split": data.describe(), "threads": torch.get_num_threads(),
            "workers": 1}


# ---- our tuner ----------------------------------------------------------------------------
def run_ours(args: argparse.Namespace, t0: float, n_workers: int | None,
             warm_start: bool = True, head_start: bool = True,
             cohort_trials: int | None = None) -> dict[str, Any]:
    frame = load_frame(args.dataset, args.max_rows)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'study.db'}"
        result = automl.tune(frame, "target", n_trials=MANY_TRIALS, timeout=args.budget_s,
                             seed=args.seed, n_seeds=1, n_workers=n_workers, storage=url,
                             progress=False, warm_start=warm_start,
                             head_start=head_start, cohort_trials=cohort_trials,
                             space=args.space)
        study = optuna.load_study(study_name=result.study_name, storage=url)
        trials = [{**trial_record(t, t0, t.user_attrs.get("val_score")
                                  if t.state.name == "COMPLETE" else None,
                                  int(t.user_attrs.get("epochs", 0))),
                   "cohort_size": int(t.user_attrs.get("cohort_size", 1)),
                   "train_s": t.user_attrs.get("seconds"), "params": t.params}
                  for t in study.trials]
    # Trials are single models: the target is the best baseline's single-seed validation
    # score (the seeds' mean), not its ensemble's.
    best_baseline = max((b for b in result.baselines if b.val_score is not None),
                        key=lambda b: b.val_score or 0.0)
    return {
        "trials": trials, "split": result.dataset, "workers": n_workers or os.cpu_count(),
        "threads": 1, "tuning_seconds": result.tuning_seconds,
        "total_seconds": result.total_seconds,
        "target": best_baseline.val_score, "target_baseline": best_baseline.name,
        "baselines": {b.name: {"val_score": b.val_score, "test_score": b.test_score}
                      for b in result.baselines},
        "tuned_test_score": result.best.test_score,
    }


def trial_record(trial: optuna.trial.FrozenTrial, t0: float, score: float | None,
                 epochs: int) -> dict[str, Any]:
    def since(moment: datetime | None) -> float | None:
        return None if moment is None else moment.timestamp() - t0

    return {"number": trial.number, "state": trial.state.name,
            "start_s": since(trial.datetime_start), "complete_s": since(trial.datetime_complete),
            "val_score": score, "epochs": epochs}


def child(args: argparse.Namespace) -> None:
    t0 = time.time()
    if args.child.startswith("plain"):
        out = run_plain(args, t0, 1 if args.child == "plain-1t" else args.plain_threads)
    else:
        out = run_ours(args, t0, 1 if args.child == "ours-1w" else None,
                       warm_start=args.child != "ours-cold",
                       head_start=args.child != "ours-no-head",
                       cohort_trials=1 if args.child == "ours-solo" else None)
    out["wall_s"] = time.time() - t0
    out["driver_peak_rss_mib"] = vm_hwm_mib()
    Path(args.out).write_text(json.dumps(out))


# ---- measuring a child --------------------------------------------------------------------
def vm_hwm_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return math.nan


def descendants(root: int) -> list[int]:
    """``root`` and every process below it, from the parent ids in ``/proc/*/stat``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, queue = [], [root]
    while queue:
        pid = queue.pop()
        found.append(pid)
        queue.extend(children.get(pid, []))
    return found


def pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class TreeMemory:
    """Samples the summed PSS of a process tree in a thread; ``peak_mib`` is the largest."""

    root: int
    interval_s: float = 0.5
    peak_kib: int = 0
    peak_processes: int = 0

    def start(self) -> TreeMemory:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = descendants(self.root)
            total = sum(pss_kib(pid) for pid in pids)
            if total > self.peak_kib:
                self.peak_kib, self.peak_processes = total, len(pids)
            self._stop.wait(self.interval_s)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_kib / 1024


def run_side(side: str, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    out = folder / f"{side}.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--child", side,
               "--dataset", args.dataset, "--seed", str(args.seed),
               "--budget-s", str(args.budget_s), "--plain-threads", str(args.plain_threads),
               "--plain-epochs", str(args.plain_epochs), "--out", str(out)]
    if args.max_rows is not None:
        command += ["--max-rows", str(args.max_rows)]
    if args.space is not None:
        command += ["--space", str(args.space.resolve())]
    load_before = os.getloadavg()[0]
    process = subprocess.Popen(command)
    memory = TreeMemory(process.pid).start()
    try:
        code = process.wait(timeout=args.budget_s * 3 + 900)
    finally:
        peak = memory.stop()
        if process.poll() is None:
            process.kill()
    if code != 0:
        raise RuntimeError(f"side {side} exited with {code}")
    result: dict[str, Any] = json.loads(out.read_text())
    result.update(side=side, peak_pss_mib=peak, peak_processes=memory.peak_processes,
                  load_before=load_before, load_after=os.getloadavg()[0])
    return result


# ---- reading the trials -------------------------------------------------------------------
def completed(side: dict[str, Any]) -> list[dict[str, Any]]:
    done = [t for t in side["trials"] if t["state"] == "COMPLETE" and t["val_score"] is not None
            and t["complete_s"] is not None]
    return sorted(done, key=lambda t: t["complete_s"])


def time_to(side: dict[str, Any], target: float, budget: float) -> float | None:
    """Seconds to the first COMPLETE trial reaching ``target``; None if none did within the
    budget (``tune`` counts its timeout from the start of the study, so its last trials
    can end after ``budget`` seconds from the side's start: they do not count)."""
    for trial in completed(side):
        if trial["complete_s"] > budget:
            break
        if trial["val_score"] >= target - 1e-9:
            return float(trial["complete_s"])
    return None


def best_by(side: dict[str, Any], seconds: float) -> float | None:
    scores = [t["val_score"] for t in completed(side) if t["complete_s"] <= seconds]
    return max(scores) if scores else None


def summarize_side(side: dict[str, Any], target: float, budget: float,
                   checkpoints: list[float]) -> dict[str, Any]:
    within = [t for t in side["trials"] if t["complete_s"] is not None
              and t["complete_s"] <= budget]
    starts = [t["start_s"] for t in side["trials"] if t["start_s"] is not None]
    return {
        "side": side["side"], "time_to_quality_s": time_to(side, target, budget),
        "best_at": {str(c): best_by(side, c) for c in checkpoints},
        "trials_in_budget": len(within),
        "pruned_in_budget": sum(t["state"] == "PRUNED" for t in within),
        "epochs_in_budget": sum(t["epochs"] for t in within),
        "first_trial_start_s": min(starts) if starts else None,
        "wall_s": side["wall_s"], "peak_pss_mib": side["peak_pss_mib"],
        "driver_peak_rss_mib": side["driver_peak_rss_mib"], "workers": side["workers"],
        "threads": side["threads"], "load_before": side["load_before"],
        "load_after": side["load_after"],
    }


def fmt_score(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.2f}"


def fmt_time(value: float | None, budget: float) -> str:
    return f"not reached (> {budget:.0f})" if value is None else f"{value:.1f}"


def table(rows: list[dict[str, Any]], checkpoints: list[float], budget: float) -> str:
    head = ("| side | workers x threads | time to target s | "
            + " | ".join(f"best val @ {c:g} s" for c in checkpoints)
            + " | trials (pruned) in budget | epochs in budget | first trial starts s "
              "| peak PSS MiB (tree) | peak RSS MiB (driver) |")
    lines = [head, "| --- " * (8 + len(checkpoints)) + "|"]
    for row in rows:
        lines.append(
            f"| {row['side']} | {row['workers']} x {row['threads']} | "
            f"{fmt_time(row['time_to_quality_s'], budget)} | "
            + " | ".join(fmt_score(row["best_at"][str(c)]) for c in checkpoints)
            + f" | {row['trials_in_budget']} ({row['pruned_in_budget']}) | "
              f"{row['epochs_in_budget']} | {row['first_trial_start_s']:.1f} | "
              f"{row['peak_pss_mib']:.0f} | {row['driver_peak_rss_mib']:.0f} |")
    return "\n".join(lines)


def ratios(rows: list[dict[str, Any]], budget: float) -> list[str]:
    by = {row["side"]: row for row in rows}
    lines = []
    for name in ("ours", "ours-1w", "ours-cold", "ours-solo", "ours-no-head"):
        for rival in ("plain", "plain-1t"):
            ours, plain = by.get(name), by.get(rival)
            if ours is None or plain is None:
                continue
            mine, theirs = ours["time_to_quality_s"], plain["time_to_quality_s"]
            if mine is None:
                lines.append(f"{name}: did not reach the target within the budget")
                continue
            elif theirs is None:
                lines.append(f"{rival} / {name} time-to-quality: > {budget / mine:.2f}x "
                             f"({rival} did not reach it in {budget:.0f} s)")
            else:
                lines.append(f"{rival} / {name} time-to-quality: {theirs / mine:.2f}x")
    return list(dict.fromkeys(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits",
                        help="digits, letter (shared/datasets) or a CSV/TSV with 'target'")
    parser.add_argument("--max-rows", type=int, help="subsample to this many rows (seeded)")
    parser.add_argument("--seed", type=int, default=0, help="split and sampler seed")
    parser.add_argument("--budget-s", type=float, default=120.0)
    parser.add_argument("--checkpoints", type=float, nargs="+",
                        help="seconds (default: budget/4, budget/2, budget)")
    parser.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES))
    parser.add_argument("--plain-threads", type=int, default=os.cpu_count() or 1,
                        help="torch threads of the plain side (default: one per core)")
    parser.add_argument("--plain-epochs", type=int, default=PLAIN_EPOCHS)
    parser.add_argument("--space", type=Path,
                        help="our sides' search space (YAML; default: the default space)")
    parser.add_argument("--json", type=Path, help="append the run (every trial) as one JSON line")
    parser.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0
    budget = args.budget_s
    checkpoints = args.checkpoints or [budget / 4, budget / 2, budget]
    sides = ["ours", *[s for s in args.sides if s != "ours"]]  # ours trains the baselines
    print(f"{args.dataset} (seed {args.seed}), budget {budget:g} s each, sides {sides}, "
          f"nproc {os.cpu_count()}, torch {torch.__version__}, optuna {optuna.__version__}",
          file=sys.stderr, flush=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for side in sides:
            results.append(run_side(side, args, Path(tmp)))
            print(f"  {side} done in {results[-1]['wall_s']:.0f} s", file=sys.stderr,
                  flush=True)
    ours = results[0]
    target = float(ours["target"])
    rows = [summarize_side(r, target, budget, checkpoints) for r in results]
    print(f"{args.dataset}: {ours['split']}; target = validation accuracy of "
          f"{ours['target_baseline']} (best baseline on validation) = {target * 100:.2f}")
    print(table(rows, checkpoints, budget))
    for line in ratios(rows, budget):
        print(line)
    if args.json is not None:
        record = {"dataset": args.dataset, "seed": args.seed, "budget_s": budget,
                  "max_rows": args.max_rows, "checkpoints": checkpoints, "target": target,
                  "space": None if args.space is None else str(args.space),
                  "target_baseline": ours["target_baseline"], "rows": rows, "raw": results,
                  "torch": torch.__version__, "optuna": optuna.__version__,
                  "python": platform.python_version(), "nproc": os.cpu_count(),
                  "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        with args.json.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
