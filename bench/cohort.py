"""Trials per minute: the cohort trainer against the ordinary loop, with torch alone.

    python bench/cohort.py --data fashion_mnist --rows 24000 --units 256 256 \\
        --batch-size 128 --epochs 8 --trials 1024 --k 32 128 1024 --tf32     # on a GPU
    python bench/cohort.py --data letter --rows 6000 --units 128 128 --batch-size 32 \\
        --epochs 4 --trials 64 --k 8 32 --threads 2                           # on 2 cores

The work of ``bench/gpu_packing.py`` without Ray or a database, so it runs on a bare GPU
machine with nothing but torch and numpy (the ``automl`` and ``workers`` packages are
imported without their ``__init__``, and ``tabm`` / ``rtdl_num_embeddings`` are two files
to put on ``PYTHONPATH``). Every trial has the same structure (``--units``, ReLU, Adam,
``--batch-size``) and its own learning rate (log-uniform 1e-4 to 1e-2, seeded) and seed,
hence its own initial weights and minibatch order; it trains exactly ``--epochs`` epochs
(no early stop) and its validation loss is read after every epoch.

* **ordinary**: :func:`workers.evaluate.fit` per trial, one after another (the loop a
  trial runs in today), on the first ``--ordinary`` trials.
* **cohort, K**: :func:`workers.cohort.train_cohort` on all ``--trials`` trials, K at a
  time, refilled as members finish.

Each setting runs in its own child process (peak memory is its own): trials per minute,
the ratio to the ordinary loop, peak memory (GPU: ``max_memory_allocated``; CPU: peak RSS) and the
best and median validation accuracy. Records append to ``--out`` (JSON lines).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import subprocess
import sys
import time
import types
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AUTOML_SHARED", ROOT.parent / "shared")) / "datasets"
OUT = ROOT / "bench" / "records" / "cohort.jsonl"


def import_bare() -> None:
    """Make ``automl`` and ``workers`` importable module by module, skipping their
    ``__init__`` (the client's imports: pandas, Optuna, SQLAlchemy...)."""
    sys.path.insert(0, str(ROOT))
    for package in ("automl", "workers"):
        if package not in sys.modules:
            module = types.ModuleType(package)
            module.__path__ = [str(ROOT / package)]
            sys.modules[package] = module


def load_arrays(name: str, rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` training rows and ``rows // 4`` validation rows, standardised."""
    if name == "fashion_mnist":
        with np.load(SHARED / "fashion_mnist.npz", allow_pickle=False) as arrays:
            x, y = arrays["x_train"].reshape(len(arrays["x_train"]), -1), arrays["y_train"]
    else:  # letter: a PMLB table, the target in the last column
        with gzip.open(SHARED / "pmlb_letter.tsv.gz", "rt") as handle:
            table = np.loadtxt(handle, delimiter="\t", skiprows=1)
        x, y = table[:, :-1], table[:, -1]
    pick = np.random.default_rng(seed).permutation(len(x))[:rows + rows // 4]
    x = x[pick].astype(np.float32)
    x = (x - x[:rows].mean(0)) / (x[:rows].std(0) + 1e-6)
    _, y = np.unique(y[pick], return_inverse=True)
    return x, y


def trial_configs(args: argparse.Namespace) -> list[Any]:
    from automl.configs import ModelConfig, TrainConfig, TrialConfig

    rng = np.random.default_rng(args.seed)
    model = ModelConfig(tuple(args.units), "relu", embedding=args.embedding,
                        embedding_dim=args.embedding_dim, n_bins=args.n_bins)
    return [TrialConfig(model,
                        TrainConfig("adam", lr=float(10 ** rng.uniform(-4, -2)),
                                    batch_size=args.batch_size, max_epochs=args.epochs,
                                    patience=args.epochs, seed=i))
            for i in range(args.trials)]


def measure(args: argparse.Namespace, k: int) -> dict[str, Any]:
    """One setting in this process: ``k`` = 0 is the ordinary loop."""
    import_bare()
    import torch

    from workers.cohort import Member, train_in_turn
    from workers.data import TensorSplits, predict, score
    from workers.evaluate import fit

    torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    device = torch.device(args.device)
    x, y = load_arrays(args.data, args.rows, args.seed)
    xt = torch.as_tensor(x, device=device)
    yt = torch.as_tensor(y, dtype=torch.long, device=device)
    n = args.rows
    data = TensorSplits(xt[:n], yt[:n], xt[n:], yt[n:], xt[n:], yt[n:], "multiclass",
                        int(y.max()) + 1, n_numeric=x.shape[1])
    configs = trial_configs(args)[:args.ordinary if k == 0 else args.trials]
    accuracies: list[float] = []
    warm_up(configs[:2], data)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    started = time.perf_counter()
    if k == 0:
        for config in configs:
            model, _ = fit(config, data)
            accuracies.append(score("multiclass", predict(model, data.x_val), data.y_val))
    else:
        def done(_member: Member, model: torch.nn.Module, _outcome: object) -> None:
            accuracies.append(score("multiclass", predict(model, data.x_val), data.y_val))

        train_in_turn([Member(i, c) for i, c in enumerate(configs)], data, done, k)
    sync()
    seconds = time.perf_counter() - started
    peak = (torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    return {"setting": "ordinary" if k == 0 else f"cohort K={k}", "k": k,
            "trials": len(configs), "seconds": seconds,
            "trials_per_min": 60 * len(configs) / seconds, "peak_gib": peak,
            "best_val_accuracy": 100 * max(accuracies),
            "median_val_accuracy": 100 * float(np.median(accuracies))}


def warm_up(configs: list[Any], data: Any) -> None:
    """One epoch of each way, untimed: the first call of a kernel pays for its set-up."""
    from dataclasses import replace

    from workers.cohort import Member, train_cohort
    from workers.evaluate import fit

    short = [replace(c, train=replace(c.train, max_epochs=1)) for c in configs]
    fit(short[0], data)
    train_cohort([Member(i, c) for i, c in enumerate(short)], data, lambda *_: None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["fashion_mnist", "letter"], default="letter")
    parser.add_argument("--rows", type=int, default=6000)
    parser.add_argument("--units", type=int, nargs="+", default=[128, 128])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--embedding", choices=["none", "piecewise_linear"], default="none",
                        help="the numeric columns' embedding (every column is numeric)")
    parser.add_argument("--embedding-dim", type=int, default=16)
    parser.add_argument("--n-bins", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--ordinary", type=int, default=8, help="trials the ordinary loop runs")
    parser.add_argument("--k", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--device", default="cuda" if _has_cuda() else "cpu")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--tf32", action="store_true", help="TF32 matmuls (GPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args, args.one)))
        return
    rows, forwarded = [], list(sys.argv[1:])
    for k in [0, *args.k]:
        out = subprocess.run([sys.executable, __file__, *forwarded, "--one", str(k)],
                             check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print_row(rows[-1], rows[0])
    record = {"when": datetime.now(timezone.utc).isoformat(), "machine": machine(args),
              "command": " ".join(["python bench/cohort.py", *forwarded]),
              "load": os.getloadavg(), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def print_row(row: dict[str, Any], ordinary: dict[str, Any]) -> None:
    ratio = row["trials_per_min"] / ordinary["trials_per_min"]
    print(f"{row['setting']:>16}: {row['trials']:5d} trials, {row['trials_per_min']:9.1f}/min "
          f"(x{ratio:6.1f}), peak {row['peak_gib']:6.2f} GiB, val accuracy best "
          f"{row['best_val_accuracy']:.2f} median {row['median_val_accuracy']:.2f}",
          flush=True)


def machine(args: argparse.Namespace) -> str:
    if args.device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name()
    return f"{platform.node()} ({os.cpu_count()} CPUs, {args.threads} threads)"


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


if __name__ == "__main__":
    main()
