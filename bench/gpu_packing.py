"""Trials per minute on one GPU as Ray packs 1, 2, 4, 8... trials on it, against the CPUs.

    python bench/gpu_packing.py --data fashion_mnist --rows 30000 --trials 32 --epochs 10

Each setting runs in its own fresh child process: a run submitted to a SQLite file and
served by a ``RayServiceWorker`` on a local Ray (no head start, ``cpus_per_trial=1``) with
``gpus_per_trial`` = 1, 0.5, 0.25, 0.125 (``--fractions``) and, with ``--cpu``,
``gpus_per_trial=0`` (one CPU thread per trial, as many trials as cores). Every setting runs
the same fixed-length trials: pruning off, warm start off, a space with fixed depth, width,
batch size and epochs (``--layers``, ``--units``, ``--batch-size``, ``--epochs``; patience =
epochs, so no early stop), the rest sampled by TPE with the same seed. Ray is started and
its workers warm before the clock starts; timed is serving the run's trial tickets alone
(the data goes through the object store, each worker moves it to its device once).

Reported per setting: how many trials Ray ran at once (``max_parallel``) and the most
that overlapped in the study's timestamps, trials per minute, mean seconds per trial,
epochs per second over the run, the GPU's mean utilisation and peak memory in use (NVML,
sampled every 0.2 s, the whole card), the devices the trials recorded, and the best
validation score.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "datasets"


def load_arrays(name: str, rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``fashion_mnist`` (the shared .npz, training set), an .npz with X and y, or letter."""
    if name == "fashion_mnist":
        with np.load(SHARED / "fashion_mnist.npz", allow_pickle=False) as arrays:
            x, y = arrays["x_train"], arrays["y_train"]
    elif name.endswith(".npz"):
        with np.load(name, allow_pickle=False) as arrays:
            x, y = arrays["X"], arrays["y"]
    else:
        import pandas as pd

        frame = pd.read_csv(SHARED / "pmlb_letter.tsv.gz", sep="\t")
        x, y = frame.drop(columns="target").to_numpy(), frame["target"].to_numpy()
    pick = np.random.default_rng(seed).permutation(len(x))[:rows]
    return x[pick].reshape(len(pick), -1).astype(np.float32), y[pick]


class GpuSampler:
    """Mean utilisation and peak memory in use of GPU 0, sampled on a thread (NVML)."""

    def __init__(self, every_s: float = 0.2) -> None:
        self.every_s, self.util, self.peak_mib = every_s, [], 0.0
        self._stop = threading.Event()
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml, self._handle = pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:  # no NVML (no GPU, or no nvidia-ml-py): report nothing
            self._nvml = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while self._nvml is not None and not self._stop.wait(self.every_s):
            self.util.append(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu)
            used = self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used / 2**20
            self.peak_mib = max(self.peak_mib, used)

    def __enter__(self) -> GpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, float | None]:
        if self._nvml is None:
            return {"gpu_util_pct": None, "gpu_peak_mib": None}
        return {"gpu_util_pct": float(np.mean(self.util)) if self.util else None,
                "gpu_peak_mib": self.peak_mib}


def max_overlap(trials: list[Any]) -> int:
    events = sorted([(t.datetime_start, 1) for t in trials if t.datetime_complete]
                    + [(t.datetime_complete, -1) for t in trials if t.datetime_complete],
                    key=lambda event: (event[0], event[1]))
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def child(args: argparse.Namespace, gpus: float, out: Path) -> None:
    import optuna

    from automl.options import TuneOptions
    from automl.queue.engine import make_engine
    from automl.queue.schema import ensure_schema
    from automl.run.runtime import single_machine_ray
    from automl.run.submit import validate_submission, write_submission
    from workers.ray_service import RayServiceWorker

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    single_machine_ray()
    x, y = load_arrays(args.data, args.rows, args.seed)
    space = {"max_epochs": args.epochs, "patience": args.epochs, "n_layers": args.layers,
             "units": args.units, "batch_size": args.batch_size}
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'study.db'}"
        options = TuneOptions(storage=url, n_trials=args.trials, seed=args.seed,
                              pruner="none", warm_start=False, progress=False)
        submission = validate_submission(x, y, space, options)
        ensure_schema(url)
        engine = make_engine(url)
        run_id = write_submission(engine, submission, study_name="gpu-packing")
        # The run's trial tickets come first (no baseline pruning): serving exactly that
        # many tickets times the trials alone, as the service's workers run them.
        worker = RayServiceWorker(url, ray_address="local", gpus_per_trial=gpus,
                                  poll_s=0.05, preload={run_id: submission.prepared})
        print(f"gpus_per_trial={gpus:g}: Ray up, {worker.max_parallel} trials at once",
              file=sys.stderr, flush=True)
        time.sleep(args.settle)  # let the prestarted workers finish importing
        with GpuSampler() as sampler:
            started = time.perf_counter()
            worker.serve(max_tickets=args.trials)
            elapsed = time.perf_counter() - started
        worker.close()
        engine.dispose()
        trials = optuna.load_study(study_name="gpu-packing", storage=url).get_trials()
        lost = [t for t in trials if t.user_attrs.get("stop_reason") == "lost_worker"]
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    epochs = sum(int(t.user_attrs.get("epochs", 0)) for t in trials)
    out.write_text(json.dumps({
        "gpus_per_trial": gpus, "max_parallel": worker.max_parallel,
        "max_overlap": max_overlap(trials), "trials": len(trials), "complete": len(complete),
        "lost": len(lost), "seconds": elapsed, "trials_per_min": 60 * len(trials) / elapsed,
        "mean_trial_s": float(np.mean([t.user_attrs["seconds"] for t in complete])),
        "epochs_per_s": epochs / elapsed,
        "devices": sorted({str(t.user_attrs.get("device")) for t in trials}),
        "best_val_score": max(float(t.user_attrs["val_score"]) for t in complete),
        **sampler.summary(),
    }))


COLUMNS = (("gpus_per_trial", "{:g}"), ("max_parallel", "{}"), ("max_overlap", "{}"),
           ("trials_per_min", "{:.1f}"), ("mean_trial_s", "{:.1f}"),
           ("epochs_per_s", "{:.1f}"), ("gpu_util_pct", "{:.0f}"),
           ("gpu_peak_mib", "{:.0f}"), ("best_val_score", "{:.4f}"), ("devices", "{}"))


def table(runs: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(name for name, _ in COLUMNS) + " |",
             "| " + " | ".join("---:" for _ in COLUMNS) + " |"]
    for run in runs:
        cells = ["n/a" if run[name] is None else form.format(
            ",".join(run[name]) if name == "devices" else run[name]) for name, form in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    import torch

    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="fashion_mnist",
                        help="fashion_mnist, letter, or an .npz with X and y")
    parser.add_argument("--rows", type=int, default=30000)
    parser.add_argument("--trials", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--units", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--fractions", type=float, nargs="*", default=[1, 0.5, 0.25, 0.125])
    parser.add_argument("--cpu", action="store_true", help="also run CPU trials (0 GPUs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--settle", type=float, default=5.0,
                        help="seconds between Ray's start and the clock's (worker imports)")
    parser.add_argument("--setting-timeout", type=float, default=None,
                        help="give up on a setting after this many seconds")
    parser.add_argument("--json", type=Path, help="write the machine and every run here")
    parser.add_argument("--child", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        child(args, args.child, args.out)
        return 0
    settings = [*args.fractions, *([0.0] if args.cpu else [])]
    runs: list[dict[str, Any]] = []
    forwarded = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--cpu"]
    with tempfile.TemporaryDirectory() as tmp:
        for gpus in settings:
            out = Path(tmp) / f"{gpus}.json"
            try:
                subprocess.run([sys.executable, __file__, *forwarded, "--child", str(gpus),
                                "--out", str(out)], check=True, timeout=args.setting_timeout)
            except subprocess.TimeoutExpired:
                print(f"gpus_per_trial={gpus:g}: over {args.setting_timeout:.0f} s, skipped",
                      flush=True)
                continue
            runs.append(json.loads(out.read_text()))
            print(json.dumps(runs[-1]), flush=True)
            if args.json:  # after every setting, so a cut-off run keeps what it measured
                args.json.write_text(json.dumps({"machine": machine(), "args": vars(args) | {
                    "json": str(args.json)}, "runs": runs}, indent=2))
    print(json.dumps(machine()))
    print(table(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
