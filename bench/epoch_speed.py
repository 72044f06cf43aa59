"""Seconds per training epoch: the project's loop against a conventional DataLoader loop.

Times epochs of the same MLP on the same data with

* **ours**: ``workers.train.run_epoch`` — tensors stay on the device and mini-batches are
  drawn by indexing a random permutation (``workers.data.to_tensors``);
* **DataLoader**: ``DataLoader(TensorDataset(x, y), batch_size=..., shuffle=True)`` with
  per-sample collation (``num_workers=0``), the loop of Optuna's PyTorch example.

Both use the same architecture (``workers.model.build_model``, same initial weights), the same
optimiser (``workers.optim.make_optimizer``), loss (``make_loss``) and batch size, and
``torch.set_num_threads(1)``. After one warm-up epoch each, timed epochs are interleaved
(AB, BA, AB, ... so neither always runs first) and the median of each is reported.

Peak memory is measured separately: each variant runs its epochs alone in a fresh
``spawn`` child, which reports its peak resident set size. It is read from ``VmHWM`` in
``/proc/self/status``, not ``ru_maxrss``: on Linux a spawned child's ``ru_maxrss`` starts at
the parent's RSS (the high-water mark survives fork+exec), so it would attribute the
parent's memory to the child. ``ru_maxrss`` is only the fallback where ``/proc`` is missing.

    python bench/epoch_speed.py [--dataset letter|digits] [--epochs N] [--batch-size N]
                                [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

from automl.configs import ModelConfig, TrainConfig
from automl.data import PreparedData, load_dataset
from workers.data import TensorSplits, to_tensors
from workers.model import build_model
from workers.optim import make_loss, make_optimizer
from workers.train import run_epoch

# shared/ sits beside the repository (as in CI); AUTOML_SHARED overrides it.
SHARED = Path(os.environ.get("AUTOML_SHARED", Path(__file__).resolve().parents[2] / "shared"))
LETTER_PATH = str(SHARED / "datasets" / "pmlb_letter.tsv.gz")
DATASETS = ("letter", "digits")
VARIANTS = ("ours", "dataloader")
HIDDEN_UNITS = (64, 64)
SEED = 0
# Timed epochs per variant when --epochs is not given: a digits epoch is ~20x shorter.
DEFAULT_EPOCHS = {"letter": 20, "digits": 200}


def load(name: str) -> PreparedData:
    """The dataset, read, validated, split and encoded by ``automl.data.load_dataset``."""
    if name == "letter":
        return load_dataset(LETTER_PATH, "target", seed=SEED)
    from sklearn.datasets import load_digits

    return load_dataset(load_digits(as_frame=True).frame, "target", seed=SEED)


def train_config(batch_size: int) -> TrainConfig:
    return TrainConfig(optimizer="adam", lr=1e-3, batch_size=batch_size, seed=SEED)


def model_config() -> ModelConfig:
    return ModelConfig(HIDDEN_UNITS, activation="relu")


class Runner:
    """One variant's model, optimiser and data, ready to run one epoch at a time."""

    def __init__(self, variant: str, splits: TensorSplits, config: TrainConfig) -> None:
        self.variant, self.splits, self.config = variant, splits, config
        torch.manual_seed(SEED)  # the same initial weights for both variants
        self.model = build_model(model_config(), splits.n_inputs, splits.n_outputs)
        self.optimizer = make_optimizer(self.model, config)
        self.loss_fn = make_loss(splits.task, config)
        self.generator = torch.Generator(device=splits.device).manual_seed(SEED)
        self.loader = DataLoader(TensorDataset(splits.x_train, splits.y_train),
                                 batch_size=config.batch_size, shuffle=True,
                                 generator=torch.Generator().manual_seed(SEED))
        self.epoch: Callable[[], float] = (
            self.ours_epoch if variant == "ours" else self.dataloader_epoch)

    def ours_epoch(self) -> float:
        return run_epoch(self.model, self.optimizer, None, self.loss_fn, self.splits,
                         self.config, self.generator)

    def dataloader_epoch(self) -> float:
        """The conventional loop, doing the same per-batch work as ``run_epoch``."""
        self.model.train()
        total = torch.zeros(())
        for x, y in self.loader:
            outputs = self.model(x)
            loss = self.loss_fn(outputs if self.splits.task == "multiclass"
                                else outputs.squeeze(1), y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += loss.detach() * len(x)
        return float(total) / len(self.splits.x_train)

    def timed_epoch(self) -> float:
        started = time.perf_counter()
        loss = self.epoch()
        seconds = time.perf_counter() - started
        if not math.isfinite(loss):
            raise RuntimeError(f"{self.variant}: non-finite training loss {loss}")
        return seconds


def time_interleaved(splits: TensorSplits, config: TrainConfig,
                     epochs: int) -> dict[str, list[float]]:
    """One warm-up epoch each, then ``epochs`` timed epochs each in alternating order."""
    runners = {name: Runner(name, splits, config) for name in VARIANTS}
    for runner in runners.values():
        runner.timed_epoch()
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for rep in range(epochs):
        order = VARIANTS if rep % 2 == 0 else VARIANTS[::-1]
        for name in order:
            times[name].append(runners[name].timed_epoch())
    return times


def peak_rss_mib() -> tuple[float, str]:
    """This process's peak RSS in MiB and where it was read from."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024, "VmHWM"
    except OSError:
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024), "ru_maxrss"


def memory_child(variant: str, dataset: str, batch_size: int, epochs: int,
                 queue: Any) -> None:
    """Run one variant alone (warm-up plus ``epochs``) and report its peak RSS."""
    torch.set_num_threads(1)
    splits = to_tensors(load(dataset))
    runner = Runner(variant, splits, train_config(batch_size))
    setup_mib, _ = peak_rss_mib()
    for _ in range(epochs + 1):
        runner.timed_epoch()
    peak_mib, source = peak_rss_mib()
    queue.put({"variant": variant, "peak_rss_mib": peak_mib, "setup_peak_rss_mib": setup_mib,
               "source": source,
               "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss})


def measure_memory(variant: str, dataset: str, batch_size: int, epochs: int) -> dict[str, Any]:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=memory_child,
                              args=(variant, dataset, batch_size, epochs, queue))
    process.start()
    result: dict[str, Any] = queue.get(timeout=900)
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"memory child for {variant} exited with {process.exitcode}")
    return result


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| dataset | batch size | s/epoch ours | s/epoch DataLoader | ratio DataLoader/ours "
             "| peak RSS MiB ours | peak RSS MiB DataLoader |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        lines.append(
            f"| {row['dataset']} | {row['batch_size']} | {row['median_s_ours']:.4f} "
            f"| {row['median_s_dataloader']:.4f} | {row['ratio']:.2f} "
            f"| {row['peak_rss_mib_ours']:.0f} | {row['peak_rss_mib_dataloader']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=DATASETS, default="letter")
    parser.add_argument("--epochs", type=int,
                        help="timed epochs per variant, after one warm-up epoch "
                             "(default: 20 for letter, 200 for digits)")
    parser.add_argument("--batch-size", type=int, default=TrainConfig().batch_size,
                        help="mini-batch size (default: TrainConfig's, 32)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if args.epochs is None:
        args.epochs = DEFAULT_EPOCHS[args.dataset]
    if args.epochs < 1 or args.batch_size < 1:
        parser.error("--epochs and --batch-size must be positive")

    torch.set_num_threads(1)
    data = load(args.dataset)
    splits = to_tensors(data)
    config = train_config(args.batch_size)
    print(f"{args.dataset}: {data.describe()}; MLP {model_config().describe()}, adam lr "
          f"{config.lr}, batch {config.batch_size}, {args.epochs} timed epochs each "
          f"(+1 warm-up), torch {torch.__version__}, 1 thread", file=sys.stderr)

    times = time_interleaved(splits, config, args.epochs)
    medians = {name: statistics.median(values) for name, values in times.items()}
    memory = {name: measure_memory(name, args.dataset, args.batch_size, args.epochs)
              for name in VARIANTS}

    row = {
        "dataset": args.dataset, "batch_size": args.batch_size,
        "median_s_ours": medians["ours"], "median_s_dataloader": medians["dataloader"],
        "ratio": medians["dataloader"] / medians["ours"],
        "peak_rss_mib_ours": memory["ours"]["peak_rss_mib"],
        "peak_rss_mib_dataloader": memory["dataloader"]["peak_rss_mib"],
    }
    print(markdown_table([row]))
    if args.json is not None:
        report = {
            **row,
            "epochs": args.epochs,
            "train_rows": len(data.x_train),
            "features": data.n_features,
            "outputs": data.n_outputs,
            "hidden_units": list(HIDDEN_UNITS),
            "optimizer": config.optimizer,
            "lr": config.lr,
            "epoch_seconds": times,
            "memory": memory,
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "machine": platform.machine(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
