"""Issue 19: which MLP family, at fixed hyperparameters, beats default HistGradientBoosting?

    PYTHONPATH=. python bench/model_family.py run --deadline-min 45
    python bench/model_family.py report      # bench/results/model_family.json -> a table

Every fit uses the product's arrays (``automl.data.load_dataset`` on the frame that
``bench/compare_quality.py --max-rows 10000 --seed S`` builds: the sample and the split are
both seeded with the split seed S). No tuning: each variant has one fixed configuration.

Variants (numeric columns = the Preprocessor's numeric block; one-hot/indicator columns are
passed through unchanged):

* A  plain MLP 3x256 ReLU, dropout 0.1, AdamW(1e-3, wd 1e-4, betas 0.9/0.999), constant lr
* B  A + RealMLP tricks: beta2 0.95, cosine decay of lr to 0 over max_epochs, label
     smoothing 0.1 (classification)
* C  B + PeriodicEmbeddings(d_embedding 16, n_frequencies 48, sigma 0.01, lite=False)
* D  B + PiecewiseLinearEmbeddings(compute_bins(x_train, 48), d_embedding 16,
     activation=False, version='B')
* E  TabM-mini (k=32, d_block 512, TabM.make's blocks for PLE inputs: 2), dropout 0.1,
     AdamW(2e-3, wd 3e-4), constant lr, PLE as in D; loss = mean of the k members' losses,
     prediction = mean of member probabilities (member means for regression)

All: batch 256, at most 200 epochs, early stopping on validation loss (patience 16, loss of
the (ensemble) prediction, no label smoothing), best epoch restored.
Preprocessing of numeric columns: ``standard`` (the pipeline's), ``robust`` (RealMLP:
(x - median) / (IQR / 1.349), then x / sqrt(1 + (x / 3)^2)), ``quantile``
(QuantileTransformer(output_distribution='normal')), each fitted on the training rows.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core: the machine is shared
# ruff: noqa: E402  (the thread limits above must be set before numpy and torch load)

import argparse
import copy
import json
import math
import statistics
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "records" / "model_family.json"
REPORT = HERE / "results" / "model_family.md"  # the printed tables (ignored)
MAX_ROWS = 10_000
SMALL = ["wine", "breast_cancer", "diabetes", "digits"]
LARGE = ["california", "adult", "diamonds", "letter", "fashion_mnist"]
NO_EMBEDDINGS = {"fashion_mnist"}  # 784 numeric columns: embeddings too slow on one core


@dataclass(frozen=True)
class Config:
    lr: float = 1e-3
    weight_decay: float = 1e-4
    beta2: float = 0.999
    cosine: bool = False
    label_smoothing: float = 0.0
    embedding: str | None = None  # None, "periodic", "ple"
    tabm: bool = False
    batch_size: int = 256
    max_epochs: int = 200
    patience: int = 16


REALMLP = dict(beta2=0.95, cosine=True, label_smoothing=0.1)
VARIANTS: dict[str, Config] = {
    "A": Config(),
    "B": Config(**REALMLP),
    "C": Config(**REALMLP, embedding="periodic"),
    "D": Config(**REALMLP, embedding="ple"),
    "E": Config(lr=2e-3, weight_decay=3e-4, embedding="ple", tabm=True),
}


# --- data ------------------------------------------------------------------------------

@dataclass
class Split:
    task: str
    n_classes: int
    num: dict[str, np.ndarray]  # numeric block per part (train/val/test)
    rest: dict[str, np.ndarray]  # one-hot and missing-indicator columns
    rest_codes: dict[str, np.ndarray]  # the same as integer codes (TabM's x_cat)
    cardinalities: list[int]
    y: dict[str, np.ndarray]
    x: dict[str, np.ndarray]  # the pipeline's full matrix (HGB's input)


PARTS = ("train", "val", "test")


def load_split(name: str, seed: int) -> Split:
    import compare_quality as cq

    from automl.data import load_dataset

    spec = cq.DATASETS[name]
    frame = cq.cap_rows(cq.read_frame(spec), spec, MAX_ROWS, seed)
    p = load_dataset(frame.copy(), spec.target, task=spec.task, seed=seed)
    pre = p.preprocessor
    n_num = len(pre.numeric_columns)
    x = {part: getattr(p, f"x_{part}") for part in PARTS}
    y = {part: getattr(p, f"y_{part}") for part in PARTS}
    keep = x["train"][:, :n_num].std(axis=0) > 0  # constant columns carry nothing
    blocks = [1] * len(pre.missing_indicators) + [len(v) for v in pre.categorical_levels.values()]
    codes = {}
    for part in PARTS:
        rest, start, cols = x[part][:, n_num:], 0, []
        for width in blocks:  # a 0/1 indicator is a block of width 1 -> code 0/1
            block = rest[:, start:start + width]
            cols.append(block[:, 0].astype(np.int64) if width == 1 else block.argmax(axis=1))
            start += width
        codes[part] = np.stack(cols, axis=1) if cols else np.zeros((len(rest), 0), np.int64)
    return Split(
        task=p.task, n_classes=0 if p.task == "regression" else len(pre.classes),
        num={part: x[part][:, :n_num][:, keep] for part in PARTS},
        rest={part: x[part][:, n_num:] for part in PARTS}, rest_codes=codes,
        cardinalities=[2 if w == 1 else w for w in blocks], y=y, x=x)


def transform_numeric(num: dict[str, np.ndarray], kind: str, seed: int) -> dict[str, np.ndarray]:
    """Re-scale the (already standardised) numeric block; every statistic from train."""
    if kind == "standard":
        return num
    train = num["train"].astype(np.float64)
    if kind == "robust":  # RealMLP: robust scale, then smooth clipping to about +-3
        median = np.median(train, axis=0)
        q1, q3 = np.quantile(train, [0.25, 0.75], axis=0)
        scale = (q3 - q1) / 1.349
        spread = (train.max(axis=0) - train.min(axis=0)) / 2
        scale = np.where(scale > 0, scale, np.where(spread > 0, spread, 1.0))

        def apply(a: np.ndarray) -> np.ndarray:
            z = (a - median) / scale
            return (z / np.sqrt(1 + (z / 3) ** 2)).astype(np.float32)

        return {part: apply(a) for part, a in num.items()}
    if kind == "quantile":
        from sklearn.preprocessing import QuantileTransformer

        qt = QuantileTransformer(output_distribution="normal", random_state=seed,
                                 n_quantiles=min(1000, len(train))).fit(train)
        return {part: qt.transform(a).astype(np.float32) for part, a in num.items()}
    raise ValueError(kind)


# --- models ----------------------------------------------------------------------------

def make_embedding(kind: str | None, x_train: np.ndarray) -> nn.Module | None:
    import rtdl_num_embeddings as rne

    if kind is None:
        return None
    n = x_train.shape[1]
    if kind == "periodic":
        return rne.PeriodicEmbeddings(n, 16, n_frequencies=48, frequency_init_scale=0.01,
                                      lite=False)
    with warnings.catch_warnings():  # "only one bin" for 0/1 columns is fine
        warnings.simplefilter("ignore", UserWarning)
        bins = rne.compute_bins(torch.as_tensor(x_train), n_bins=min(48, len(x_train) - 1))
    return rne.PiecewiseLinearEmbeddings(bins, 16, activation=False, version="B")


class MLP(nn.Module):
    """(numeric -> optional embedding, flattened) ++ other columns -> 3x256 ReLU MLP.
    Output (batch, 1, d_out), like TabM's (batch, k, d_out)."""

    def __init__(self, n_num: int, n_rest: int, d_out: int, embedding: nn.Module | None,
                 width: int = 256, depth: int = 3, dropout: float = 0.1):
        super().__init__()
        self.embedding = embedding
        d_num = n_num * (embedding.get_output_shape()[1] if embedding is not None else 1)
        layers: list[nn.Module] = []
        d = d_num + n_rest
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.ReLU(), nn.Dropout(dropout)]
            d = width
        self.net = nn.Sequential(*layers, nn.Linear(d, d_out))

    def forward(self, x_num: torch.Tensor, x_rest: torch.Tensor) -> torch.Tensor:
        if self.embedding is not None:
            x_num = self.embedding(x_num).flatten(1)
        return self.net(torch.cat([x_num, x_rest], dim=1)).unsqueeze(1)


class TabMModel(nn.Module):
    def __init__(self, n_num: int, cardinalities: list[int], d_out: int,
                 embedding: nn.Module | None, k: int = 32):
        super().__init__()
        import tabm

        self.has_cat = bool(cardinalities)
        self.model = tabm.TabM.make(
            n_num_features=n_num, cat_cardinalities=cardinalities or None, d_out=d_out,
            num_embeddings=embedding, arch_type="tabm-mini", k=k, d_block=512, dropout=0.1)

    def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor) -> torch.Tensor:
        return self.model(x_num, x_cat if self.has_cat else None)


# --- training --------------------------------------------------------------------------

def member_loss(out: torch.Tensor, y: torch.Tensor, task: str, smoothing: float) -> torch.Tensor:
    """Mean over the batch and the k members of each member's loss."""
    if task == "regression":
        return F.mse_loss(out[..., 0], y[:, None].expand(-1, out.shape[1]))
    return F.cross_entropy(out.flatten(0, 1), y.repeat_interleave(out.shape[1]),
                           label_smoothing=smoothing)


@torch.no_grad()
def predict(model: nn.Module, inputs: list[torch.Tensor], task: str) -> torch.Tensor:
    """The ensemble's prediction: mean member probability, or mean member output."""
    model.eval()
    outs = []
    for start in range(0, len(inputs[0]), 1024):
        out = model(*[t[start:start + 1024] for t in inputs])
        outs.append(out[..., 0].mean(1) if task == "regression"
                    else out.softmax(-1).mean(1))
    return torch.cat(outs)


def pred_loss(pred: torch.Tensor, y: torch.Tensor, task: str) -> float:
    if task == "regression":
        return float(F.mse_loss(pred, y))
    return float(F.nll_loss(pred.clamp_min(1e-12).log(), y))


def score(task: str, y: np.ndarray, pred: np.ndarray) -> float:
    """compare_quality._score: accuracy, or R² (on the standardised target)."""
    if task != "regression":
        return float((pred == y).mean())
    total = float(((y - y.mean()) ** 2).sum())
    return 1 - float(((pred - y) ** 2).sum()) / total if total > 0 else 0.0


def fit_network(data: Split, cfg: Config, prep: str, seed: int) -> dict[str, Any]:
    torch.manual_seed(seed)
    num = transform_numeric(data.num, prep, seed)
    rest = data.rest_codes if cfg.tabm else data.rest
    tensors = {part: [torch.as_tensor(num[part], dtype=torch.float32),
                      torch.as_tensor(rest[part]) if cfg.tabm
                      else torch.as_tensor(rest[part], dtype=torch.float32)]
               for part in PARTS}
    ydt = torch.float32 if data.task == "regression" else torch.int64
    ys = {part: torch.as_tensor(data.y[part], dtype=ydt) for part in PARTS}
    d_out = 1 if data.task == "regression" else data.n_classes
    embedding = make_embedding(cfg.embedding, num["train"])
    model = (TabMModel(num["train"].shape[1], data.cardinalities, d_out, embedding)
             if cfg.tabm else MLP(num["train"].shape[1], data.rest["train"].shape[1], d_out,
                                  embedding))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            betas=(0.9, cfg.beta2))
    n = len(ys["train"])
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total = cfg.max_epochs * steps_per_epoch
    sched = (torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step / total, 1.0))))
        if cfg.cosine else None)
    gen = torch.Generator().manual_seed(seed)
    best, best_state, best_epoch, epoch = math.inf, None, 0, 0
    started = time.perf_counter()
    for epoch in range(1, cfg.max_epochs + 1):
        model.train()
        for idx in torch.randperm(n, generator=gen).split(cfg.batch_size):
            out = model(*[t[idx] for t in tensors["train"]])
            loss = member_loss(out, ys["train"][idx], data.task, cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
        val = pred_loss(predict(model, tensors["val"], data.task), ys["val"], data.task)
        if val < best:
            best, best_epoch = val, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= cfg.patience:
            break
    seconds = time.perf_counter() - started
    model.load_state_dict(best_state)
    scores = {}
    for part in ("val", "test"):
        pred = predict(model, tensors[part], data.task).numpy()
        if data.task != "regression":
            pred = pred.argmax(1)
        scores[part] = score(data.task, data.y[part], pred)
    return {"test": scores["test"], "val": scores["val"], "epochs": epoch,
            "best_epoch": best_epoch, "seconds": seconds, "val_loss": best}


def fit_hgb(data: Split, seed: int) -> dict[str, Any]:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    cls = (HistGradientBoostingRegressor if data.task == "regression"
           else HistGradientBoostingClassifier)
    model = cls(random_state=seed)
    started = time.perf_counter()
    model.fit(data.x["train"], data.y["train"])
    seconds = time.perf_counter() - started
    return {"test": score(data.task, data.y["test"], model.predict(data.x["test"])),
            "val": score(data.task, data.y["val"], model.predict(data.x["val"])),
            "epochs": int(model.n_iter_), "seconds": seconds}


# --- job queue -------------------------------------------------------------------------

def splits_for(dataset: str) -> list[int]:
    return [0, 1, 2] if dataset == "fashion_mnist" else [0, 1, 2, 3, 4]


def job_plan() -> list[tuple[str, str, str, int]]:
    """(dataset, variant, prep, split) in priority order: HGB/B/D everywhere, TabM on the
    three smallest datasets, A/C, the preprocessing side study on B, then TabM on the larger
    datasets split by split (on one core a TabM fit there takes minutes)."""
    order = SMALL + LARGE
    plan = [(d, v, "standard") for d in order for v in ("HGB", "B", "D")]
    plan += [(d, "E", "standard") for d in SMALL[:3]]
    plan += [(d, v, "standard") for d in order for v in ("A", "C")]
    plan += [(d, "B", p) for d in order for p in ("robust", "quantile")]
    jobs = [(d, v, p, s) for d, v, p in plan for s in splits_for(d)]
    jobs += [(d, "E", "standard", s) for s in range(5) for d in ["california", "adult",
             "diamonds", "letter", "digits"]]
    jobs += [(d, "E", p, s) for d in SMALL[:3] for p in ("robust", "quantile")
             for s in splits_for(d)]
    return [j for j in jobs if not (j[0] in NO_EMBEDDINGS and j[1] in "CDE")]


def load_results() -> dict[str, Any]:
    if RESULTS.exists():
        return json.loads(RESULTS.read_text())
    return {"meta": {}, "runs": []}


def save_results(results: dict[str, Any]) -> None:
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(RESULTS)


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=UserWarning, module="rtdl_num_embeddings")
    deadline = time.time() + args.deadline_min * 60
    results = load_results()
    results["meta"] = {"torch": torch.__version__, "max_rows": MAX_ROWS,
                       "variants": {k: asdict(v) for k, v in VARIANTS.items()}}
    done = {(r["dataset"], r["variant"], r["prep"], r["split"]) for r in results["runs"]}
    plan = [j for j in job_plan() if (args.datasets is None or j[0] in args.datasets)
            and (args.variants is None or j[1] in args.variants)]
    cache: dict[tuple[str, int], Split] = {}
    for dataset, variant, prep, split in plan:
        if (dataset, variant, prep, split) in done:
            continue
        if time.time() > deadline:
            print("deadline reached: no new fits", file=sys.stderr)
            return
        if (dataset, split) not in cache:
            cache = {(dataset, split): load_split(dataset, split)}  # keep one in memory
        data = cache[(dataset, split)]
        out = (fit_hgb(data, split) if variant == "HGB"
               else fit_network(data, VARIANTS[variant], prep, split))
        results["runs"].append({"dataset": dataset, "variant": variant, "prep": prep,
                                "split": split, "task": data.task, **out})
        save_results(results)  # after every fit: a cut-off run keeps what it has
        print(f"{dataset:14s} {variant:3s} {prep:8s} split {split}: test {out['test']:.4f} "
              f"val {out['val']:.4f} epochs {out['epochs']:3d} {out['seconds']:6.1f} s",
              flush=True)


# --- report ----------------------------------------------------------------------------

def paired(diffs: list[float]) -> tuple[float, float, float]:
    from scipy import stats

    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return mean, math.nan, math.nan
    half = stats.t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return mean, mean - half, mean + half


def report() -> str:
    runs = load_results()["runs"]
    by = {}
    for r in runs:
        by.setdefault((r["variant"], r["prep"], r["dataset"]), {})[r["split"]] = r
    datasets = [d for d in SMALL + LARGE if ("HGB", "standard", d) in by]
    keys = sorted({(v, p) for v, p, _ in by if v != "HGB"},
                  key=lambda k: (k[0], ["standard", "robust", "quantile"].index(k[1])))
    lines = ["| variant | prep | datasets | mean test | mean diff vs HGB | W / T / L "
             "(95 % paired t) | mean s / fit | mean epochs |",
             "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: |"]
    detail = ["| dataset | variant | prep | splits | test (mean) | HGB (mean) | diff [95 % CI] "
              "| verdict |", "| --- | --- | --- | ---: | ---: | ---: | --- | --- |"]
    for variant, prep in [("HGB", "standard"), *keys]:
        tests, diffs, wins, ties, losses, secs, epochs, n_ds = [], [], 0, 0, 0, [], [], 0
        for d in datasets:
            mine, hgb = by.get((variant, prep, d), {}), by[("HGB", "standard", d)]
            common = sorted(set(mine) & set(hgb))
            if not common:
                continue
            n_ds += 1
            tests.append(statistics.fmean(mine[s]["test"] for s in common))
            secs += [mine[s]["seconds"] for s in common]
            epochs += [mine[s]["epochs"] for s in common]
            if variant == "HGB":
                continue
            mean, lo, hi = paired([mine[s]["test"] - hgb[s]["test"] for s in common])
            diffs.append(mean)
            verdict = ("n<2" if math.isnan(lo) else "win" if lo > 0 else "loss" if hi < 0
                       else "tie")
            wins, ties, losses = wins + (verdict == "win"), ties + (verdict == "tie"), \
                losses + (verdict == "loss")
            detail.append(f"| {d} | {variant} | {prep} | {len(common)} | {tests[-1]:.4f} | "
                          f"{statistics.fmean(hgb[s]['test'] for s in common):.4f} | "
                          f"{mean:+.4f} [{lo:+.4f}, {hi:+.4f}] | {verdict} |")
        if not n_ds:
            continue
        diff = f"{statistics.fmean(diffs):+.4f}" if diffs else "—"
        n_single = n_ds - wins - ties - losses
        wtl = (f"{wins} / {ties} / {losses}" + (f" (+{n_single} with 1 split)" if n_single
               else "")) if variant != "HGB" else "—"
        lines.append(f"| {variant} | {prep} | {n_ds} | {statistics.fmean(tests):.4f} | {diff} | "
                     f"{wtl} | {statistics.fmean(secs):.1f} | {statistics.fmean(epochs):.0f} |")
    columns = [("HGB", "standard"), *keys]
    pivot = ["| dataset | " + " | ".join(f"{v} {p}" for v, p in columns) + " |",
             "| --- |" + " ---: |" * len(columns)]
    for d in datasets:
        cells = []
        for key in columns:
            mine = by.get((*key, d), {})
            cells.append(f"{statistics.fmean(r['test'] for r in mine.values()):.4f} "
                         f"({len(mine)})" if mine else "—")
        pivot.append(f"| {d} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\nMean test score per dataset (splits run):\n\n" + \
        "\n".join(pivot) + "\n\nPer dataset (test score: accuracy or R²; diff = variant - HGB " \
        "on the same split, 95 % paired t-interval, dof = splits - 1):\n\n" + "\n".join(detail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run (or resume) the job queue")
    r.add_argument("--deadline-min", type=float, default=100,
                   help="launch no new fit after this many minutes")
    r.add_argument("--datasets", nargs="+")
    r.add_argument("--variants", nargs="+")
    sub.add_parser("report", help="print the tables from results.json")
    args = parser.parse_args()
    if args.command == "run":
        run(args)
    else:
        print(report())


if __name__ == "__main__":
    main()
