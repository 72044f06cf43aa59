"""Quality: the tuned MLP against every rule-of-thumb baseline and scikit-learn's defaults.

    python bench/compare_quality.py                 # all nine datasets, the defaults below
    python bench/compare_quality.py --datasets digits breast_cancer wine diabetes \
        --trials 30 --timeout 0 --n-seeds 3

For each dataset, on one seeded split (``automl.data.load_dataset``: stratified 60/20/20,
preprocessing fitted on the training rows):

* **tuned MLP**: one ``automl.tune`` run at a fixed budget (``--trials``, default 20, and
  at most ``--timeout`` seconds of tuning, default 150), a fresh SQLite study in a
  temporary folder, a local Ray; the best trial and the seven trained rule-of-thumb
  baselines retrained over ``--n-seeds`` seeds (default 2). Test score: that of the seeds'
  averaged predictions, the model ``tune`` delivers (runs from before seed ensembles
  recorded the seeds' mean), with one seed's mean ± sd beside it;
* **HistGradientBoosting** and **MLP** from scikit-learn with default settings (only
  ``random_state`` set, one fit per seed, the same seeds count), fitted on exactly the
  same encoded training arrays (``PreparedData.x_train``/``y_train``; the validation rows
  are not used by them) and scored on the same test rows with the same metric (accuracy,
  or R² — on the standardised target, which leaves R² unchanged).

Datasets larger than ``--max-rows`` are subsampled first (stratified by class for
classification, seeded), and the same rows go to every model; the table says so.

Cost, side by side:

* time: the tuning run's wall time (trials only) and its total (data checks, Ray start,
  trials, final retraining of the best model and every baseline over the seeds); for the
  scikit-learn models, the mean wall time of one ``fit``;
* peak memory: for the tuning run, the peak of the summed proportional set size (PSS,
  ``/proc/PID/smaps_rollup``) of this process and all its descendants (Ray's GCS, raylet
  and worker processes included), sampled every 0.5 s; for each scikit-learn model, the
  ``VmHWM`` (peak RSS) of a fresh ``spawn`` child that fits it (interpreter, numpy and
  scikit-learn included), and how much the fits added over the child's peak before them.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# shared/ sits beside the repository (as in CI); AUTOML_SHARED overrides it.
SHARED = Path(os.environ.get("AUTOML_SHARED", Path(__file__).resolve().parents[2] / "shared"))


@dataclass(frozen=True)
class Spec:
    """Where a dataset comes from, its target column and task."""

    label: str
    source: str  # a file under SHARED/datasets, or sklearn:NAME
    target: str
    task: str


DATASETS: dict[str, Spec] = {
    "adult": Spec("adult (PMLB)", "pmlb_adult.tsv.gz", "target", "binary"),
    "letter": Spec("letter (PMLB)", "pmlb_letter.tsv.gz", "target", "multiclass"),
    "california": Spec("California housing (PMLB 537_houses)", "pmlb_537_houses.tsv.gz",
                       "target", "regression"),
    "diamonds": Spec("diamonds (ggplot2)", "diamonds.csv.gz", "price", "regression"),
    "fashion_mnist": Spec("Fashion-MNIST (training set)", "fashion_mnist.npz", "target",
                          "multiclass"),
    "digits": Spec("digits (sklearn)", "sklearn:digits", "target", "multiclass"),
    "breast_cancer": Spec("breast_cancer (sklearn)", "sklearn:breast_cancer", "target",
                          "binary"),
    "wine": Spec("wine (sklearn)", "sklearn:wine", "target", "multiclass"),
    "diabetes": Spec("diabetes (sklearn)", "sklearn:diabetes", "target", "regression"),
}
DEFAULT_DATASETS = list(DATASETS)
SK_MODELS = ("hgb", "sk_mlp")


# --- data --------------------------------------------------------------------------------

def read_frame(spec: Spec) -> pd.DataFrame:
    """The whole dataset as one frame with the target column ``spec.target``."""
    if spec.source.startswith("sklearn:"):
        from automl.data.sources import bundled_dataset

        return bundled_dataset(spec.source.removeprefix("sklearn:"))
    path = SHARED / "datasets" / spec.source
    if path.suffix == ".npz":  # Fashion-MNIST: the official 60k training images only
        with np.load(path, allow_pickle=False) as arrays:
            x, y = arrays["x_train"], arrays["y_train"]
        frame = pd.DataFrame(x.astype(np.float32), columns=[f"p{i}" for i in range(x.shape[1])])
        frame[spec.target] = y.astype(np.int64)
        return frame
    return pd.read_csv(path, sep="\t" if ".tsv" in path.name else ",")


def cap_rows(frame: pd.DataFrame, spec: Spec, max_rows: int, seed: int) -> pd.DataFrame:
    """At most ``max_rows`` rows: a seeded sample, stratified by class for classification."""
    if not max_rows or len(frame) <= max_rows:
        return frame
    from sklearn.model_selection import train_test_split

    labels = None if spec.task == "regression" else frame[spec.target]
    kept, _ = train_test_split(frame, train_size=max_rows, random_state=seed, stratify=labels)
    return kept.reset_index(drop=True)


# --- memory ------------------------------------------------------------------------------

def _proc_children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class TreeMemory(threading.Thread):
    """Samples the summed PSS of this process and its descendants; keeps the peak."""

    def __init__(self, interval: float = 0.5):
        super().__init__(daemon=True)
        self.interval, self.peak_kib, self.max_processes = interval, 0, 0
        self._stop_event = threading.Event()

    def sample(self) -> None:
        children = _proc_children()
        pids, todo = [], [os.getpid()]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            todo.extend(children.get(pid, []))
        self.peak_kib = max(self.peak_kib, sum(_pss_kib(p) for p in pids))
        self.max_processes = max(self.max_processes, len(pids))

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        self.sample()


def _vmhwm_mib() -> float:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- scikit-learn defaults, each in a fresh spawn child ---------------------------------------

def _sk_model(kind: str, task: str, seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    regression = task == "regression"
    if kind == "hgb":
        return (HistGradientBoostingRegressor if regression
                else HistGradientBoostingClassifier)(random_state=seed)
    return (MLPRegressor if regression else MLPClassifier)(random_state=seed)


def _score(task: str, y: np.ndarray, predicted: np.ndarray) -> float:
    """The project's metric (``workers.data.score``): accuracy, or R² against y's own mean."""
    if task != "regression":
        return float((predicted == y).mean())
    total = float(((y - y.mean()) ** 2).sum())
    return 1 - float(((predicted - y) ** 2).sum()) / total if total > 0 else 0.0


def sk_child(kind: str, task: str, arrays: dict[str, np.ndarray],
             seeds: list[int]) -> dict[str, Any]:
    """Fit one scikit-learn default per seed on the training rows; runs in a spawn child."""
    from sklearn.exceptions import ConvergenceWarning

    before = _vmhwm_mib()
    runs = []
    for seed in seeds:
        model = _sk_model(kind, task, seed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            started = time.perf_counter()
            model.fit(arrays["x_train"], arrays["y_train"])
            fit_s = time.perf_counter() - started
        runs.append({
            "seed": seed, "fit_s": fit_s,
            "test_score": _score(task, arrays["y_test"], model.predict(arrays["x_test"])),
            "val_score": _score(task, arrays["y_val"], model.predict(arrays["x_val"])),
            "n_iter": int(getattr(model, "n_iter_", 0) or 0),
            "not_converged": any(issubclass(w.category, ConvergenceWarning) for w in caught),
        })
    return {"runs": runs, "peak_rss_mib": _vmhwm_mib(), "peak_before_fit_mib": before}


def run_sklearn(kind: str, task: str, prepared: Any, seeds: list[int]) -> dict[str, Any]:
    arrays = {name: getattr(prepared, name) for name in
              ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        out = pool.submit(sk_child, kind, task, arrays, seeds).result()
    scores = [r["test_score"] for r in out["runs"]]
    return {
        "model": kind, "test_score": statistics.fmean(scores),
        "test_score_std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
        "val_score": statistics.fmean(r["val_score"] for r in out["runs"]),
        "fit_s": statistics.fmean(r["fit_s"] for r in out["runs"]),
        "not_converged": sum(r["not_converged"] for r in out["runs"]),
        **out,
    }


# --- one dataset -------------------------------------------------------------------------

def run_tuned(frame: pd.DataFrame, spec: Spec, args: argparse.Namespace, folder: Path,
              content_hash: str) -> dict[str, Any]:
    import optuna

    import automl

    storage = f"sqlite:///{folder / 'x.db'}"
    memory = TreeMemory()
    memory.start()
    started = time.perf_counter()
    try:
        result = automl.tune(frame.copy(), spec.target, task=spec.task, n_trials=args.trials,
                             timeout=args.timeout or None, seed=args.seed, n_seeds=args.n_seeds,
                             storage=storage, progress=False)
    finally:
        memory.stop()
    wall = time.perf_counter() - started
    study = optuna.load_study(study_name=result.study_name, storage=storage)
    if study.user_attrs.get("dataset_hash") != content_hash:
        raise RuntimeError("the tuned run saw different data from the scikit-learn models")
    rival = result.best_baseline
    top = max(result.baselines, key=lambda b: b.final_score)
    return {  # test_score: the model tune delivers (the seeds' ensemble); then one seed's
        "test_score": result.best.final_score, "val_score": result.best.final_val_score,
        "seed_mean": result.best.test_score, "test_score_std": result.best.test_score_std,
        "test_scores": result.best.test_scores, "seed_val_mean": result.best.val_score,
        "architecture": result.best.architecture, "params": result.best.params,
        "n_trials": result.n_trials, "n_complete": result.n_complete,
        "n_pruned": result.n_pruned, "n_failed": result.n_failed,
        "tuning_s": result.tuning_seconds, "total_s": result.total_seconds, "wall_s": wall,
        "peak_pss_mib": memory.peak_kib / 1024, "max_processes": memory.max_processes,
        "best_baseline_val": {"name": rival.name, "test_score": rival.final_score,
                              "val_score": rival.final_val_score},
        "best_baseline_test": {"name": top.name, "test_score": top.final_score},
        "baselines": [{"name": b.name, "test_score": b.final_score, "seed_mean": b.test_score,
                       "test_score_std": b.test_score_std, "val_score": b.final_val_score,
                       "train_seconds": b.train_seconds} for b in result.baselines],
        "warnings": result.warnings,
    }


def run_dataset(name: str, args: argparse.Namespace) -> dict[str, Any]:
    from automl.data import load_dataset
    from automl.run.finish import final_seeds

    spec = DATASETS[name]
    full = read_frame(spec)
    frame = cap_rows(full, spec, args.max_rows, args.seed)
    prepared = load_dataset(frame.copy(), spec.target, task=spec.task, seed=args.seed)
    row: dict[str, Any] = {
        "dataset": name, "label": spec.label, "task": prepared.task,
        "metric": "r2" if prepared.task == "regression" else "accuracy",
        "rows_total": len(full), "rows_used": len(frame), "n_features": prepared.n_features,
        "split": [len(prepared.x_train), len(prepared.x_val), len(prepared.x_test)],
        "content_hash": prepared.content_hash, "load_before": os.getloadavg(),
    }
    seeds = final_seeds(args.seed, args.n_seeds)  # the tuned model's retraining seeds
    for kind in SK_MODELS:
        try:
            row[kind] = run_sklearn(kind, prepared.task, prepared, seeds)
        except Exception as exc:  # keep going: record the failure in the table
            row[kind] = {"error": f"{type(exc).__name__}: {exc}"}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            row["tuned"] = run_tuned(frame, spec, args, Path(tmp), prepared.content_hash)
        except Exception as exc:
            row["tuned"] = {"error": f"{type(exc).__name__}: {exc}"}
    row["load_after"] = os.getloadavg()  # 1/5/15-minute load: the machine is shared
    return row


# --- output ------------------------------------------------------------------------------

def _fmt(row: dict[str, Any], value: float | None, sd: float | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if row["metric"] == "accuracy":
        text = f"{value * 100:.2f}" + (f" ± {sd * 100:.2f}" if sd is not None else "")
    else:
        text = f"{value:.3f}" + (f" ± {sd:.3f}" if sd is not None else "")
    return text


def _gap(row: dict[str, Any], a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return "—"
    scale, digits = (100, 2) if row["metric"] == "accuracy" else (1, 3)
    return f"**{(a - b) * scale:+.{digits}f}**"


def _rows_label(row: dict[str, Any]) -> str:
    if row["rows_used"] < row["rows_total"]:
        return f"{row['rows_used']:,} of {row['rows_total']:,} (sample)"
    return f"{row['rows_used']:,}"


def markdown(rows: list[dict[str, Any]]) -> str:
    quality = [
        "| dataset | rows used (train/val/test) | metric | tuned MLP | best rule on validation: "
        "its test | best rule on test | HGB default | sklearn MLP default | tuned − rule (val) "  # noqa: RUF001
        "| tuned − rule (test) | tuned − HGB | tuned − sklearn MLP |",  # noqa: RUF001
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    cost = [
        "| dataset | trials run (pruned) | tuning s | tuned total s | HGB fit s "
        "| sklearn MLP fit s | tuned total / HGB fit | peak PSS tuning run (processes) "
        "| peak RSS HGB (+fit) "
        "| peak RSS sklearn MLP (+fit) | sklearn MLP not converged |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        tuned, hgb, mlp = row.get("tuned", {}), row.get("hgb", {}), row.get("sk_mlp", {})
        t = tuned.get("test_score")
        rv, rt = tuned.get("best_baseline_val", {}), tuned.get("best_baseline_test", {})
        metric = "accuracy %" if row["metric"] == "accuracy" else "R²"
        split = "/".join(str(n) for n in row["split"])
        tuned_text = (_fmt(row, t, tuned.get("test_score_std")) if "error" not in tuned
                      else f"failed: {tuned['error'][:80]}")
        if "seed_mean" in tuned:  # an ensemble: one seed's mean ± sd beside it
            tuned_text = (f"**{_fmt(row, t)}** (one seed "
                          f"{_fmt(row, tuned['seed_mean'], tuned['test_score_std'])})")
        quality.append(
            f"| {row['label']} | {_rows_label(row)} ({split}) | {metric} | {tuned_text} | "
            f"{rv.get('name', '—')} {_fmt(row, rv.get('test_score'))} | "
            f"{rt.get('name', '—')} {_fmt(row, rt.get('test_score'))} | "
            f"{_fmt(row, hgb.get('test_score'), hgb.get('test_score_std'))} | "
            f"{_fmt(row, mlp.get('test_score'), mlp.get('test_score_std'))} | "
            f"{_gap(row, t, rv.get('test_score'))} | {_gap(row, t, rt.get('test_score'))} | "
            f"{_gap(row, t, hgb.get('test_score'))} | {_gap(row, t, mlp.get('test_score'))} |")

        def seconds(value: float | None) -> str:
            return "—" if value is None else f"{value:.1f}"

        def rss(model: dict[str, Any]) -> str:
            if "peak_rss_mib" not in model:
                return "—"
            added = model["peak_rss_mib"] - model["peak_before_fit_mib"]
            return f"{model['peak_rss_mib']:.0f} MiB (+{added:.0f})"

        ratio = ("—" if tuned.get("total_s") is None or not hgb.get("fit_s")
                 else f"{tuned['total_s'] / hgb['fit_s']:.0f}×")  # noqa: RUF001
        pss = ("—" if "peak_pss_mib" not in tuned
               else f"{tuned['peak_pss_mib']:.0f} MiB ({tuned['max_processes']})")
        trials = ("—" if "n_trials" not in tuned
                  else f"{tuned['n_trials']} ({tuned['n_pruned']})")
        unconverged = ("—" if "runs" not in mlp
                       else f"{mlp['not_converged']}/{len(mlp['runs'])} "
                            f"(iterations {', '.join(str(r['n_iter']) for r in mlp['runs'])})")
        cost.append(
            f"| {row['dataset']} | {trials} | {seconds(tuned.get('tuning_s'))} | "
            f"{seconds(tuned.get('total_s'))} | {seconds(hgb.get('fit_s'))} | "
            f"{seconds(mlp.get('fit_s'))} | {ratio} | {pss} | {rss(hgb)} | {rss(mlp)} | "
            f"{unconverged} |")
    return "\n".join(quality) + "\n\n" + "\n".join(cost)


def summary(rows: list[dict[str, Any]]) -> str:
    done = [r for r in rows if "test_score" in r.get("tuned", {})]

    def wins(key: str) -> str:
        pairs = []
        for r in done:
            other = (r["tuned"][key]["test_score"] if key.startswith("best_")
                     else r.get(key, {}).get("test_score"))
            if other is not None:
                pairs.append(r["tuned"]["test_score"] - other)
        won = sum(g > 1e-6 for g in pairs)
        lost = sum(g < -1e-6 for g in pairs)
        return f"{won} won, {len(pairs) - won - lost} tied, {lost} lost"

    return (f"tuned MLP vs best rule of thumb (chosen on validation): {wins('best_baseline_val')}; "
            f"vs best rule on test: {wins('best_baseline_test')}; vs HGB default: {wins('hgb')}; "
            f"vs sklearn MLP default: {wins('sk_mlp')}; "
            f"({len(rows) - len(done)} dataset(s) without a tuned result)")


def meta(args: argparse.Namespace) -> dict[str, Any]:
    import optuna
    import sklearn
    import torch

    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "nproc": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "optuna": optuna.__version__,
            "sklearn": sklearn.__version__, "argv": sys.argv, "args": vars(args)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=DEFAULT_DATASETS,
                        choices=list(DATASETS), metavar="NAME",
                        help=f"any of {', '.join(DATASETS)} (default: all)")
    parser.add_argument("--trials", type=int, default=20, help="trials per dataset")
    parser.add_argument("--timeout", type=float, default=150,
                        help="seconds of tuning per dataset (the trials stop there; the final "
                             "retraining still runs); 0: no limit, only --trials")
    parser.add_argument("--n-seeds", type=int, default=2,
                        help="seeds the tuned model, every baseline and each scikit-learn "
                             "default are trained with")
    parser.add_argument("--max-rows", type=int, default=10_000,
                        help="subsample larger datasets to this many rows (0: all rows)")
    parser.add_argument("--seed", type=int, default=0, help="split, sample and study seed")
    parser.add_argument("--json", help="write every result (and the settings) to this file")
    parser.add_argument("--render", metavar="JSON",
                        help="only print the tables of a JSON written by --json (for example "
                             "of a run that was cut off)")
    args = parser.parse_args()
    if args.render:
        saved = json.loads(Path(args.render).read_text())["rows"]
        print(markdown(saved) + "\n\n" + summary(saved))
        return
    rows: list[dict[str, Any]] = []
    info = meta(args)
    for name in args.datasets:
        started = time.perf_counter()
        rows.append(run_dataset(name, args))
        print(f"[{name} done in {time.perf_counter() - started:.0f} s]", file=sys.stderr,
              flush=True)
        if args.json:  # rewritten after every dataset, so a cut-off run keeps what it has
            Path(args.json).write_text(json.dumps({"meta": info, "rows": rows}, indent=1,
                                                  default=str))
    print(markdown(rows))
    print()
    print(summary(rows))


if __name__ == "__main__":
    main()
