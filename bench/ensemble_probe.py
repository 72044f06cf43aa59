"""Would averaging the top configurations beat averaging one configuration's seeds?

    python bench/ensemble_probe.py --datasets fashion_mnist diamonds adult california \
        --trials 40 --top 5 --max-rows 10000

A probe, not a feature. For each dataset, on ``compare_quality.py``'s split and row
sample: one ``automl.tune`` run (``--trials``, 3 seeds, a SQLite study kept in
``--folder`` so a second call reuses it), then the ``--top`` completed trials with the
lowest validation loss are retrained from the final comparison's 3 seeds
(``automl.run.finish.final_seeds``), and these ensembles are scored with
``workers.ensemble.SeedEnsemble`` (the averaging the product delivers):

* ``best x 3 seeds``: what ``tune`` delivers today;
* ``top 3 x 1 seed``: the three best configurations, one seed each (as many members);
* ``top 3 x 3 seeds`` and ``top K x 3 seeds``: every seed of the best configurations;
* ``greedy 10``: Caruana et al.'s ensemble selection (2004), 10 greedy picks with
  replacement from all ``K x 3`` models, each pick the one that lowers the ensemble's
  validation loss most.

Each row gives validation accuracy (or R²), validation loss and test accuracy (or R²).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    import optuna
    import pandas as pd

    from workers.data import TensorSplits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_quality import DATASETS, Spec, cap_rows, read_frame

Outputs = dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]]  # (rank, seed) -> val, test


class Recorded(torch.nn.Module):
    """A member that answers with outputs it was given (one split's, in row order)."""

    def __init__(self, outputs: torch.Tensor):
        super().__init__()
        self.outputs = outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outputs


def tuned_study(name: str, args: argparse.Namespace
                ) -> tuple[pd.DataFrame, Spec, optuna.Study]:
    import optuna

    import automl

    spec = DATASETS[name]
    frame = cap_rows(read_frame(spec), spec, args.max_rows, args.seed)
    storage = f"sqlite:///{Path(args.folder) / f'{name}_{args.seed}.db'}"
    if not optuna.get_all_study_names(storage):
        result = automl.tune(frame.copy(), spec.target, task=spec.task, n_trials=args.trials,
                             seed=args.seed, n_seeds=3, storage=storage, progress=False)
        print(f"{name}: tune delivered {result.best.final_score:.4f} "
              f"(one seed {result.best.test_score:.4f})", flush=True)
    study = optuna.load_study(study_name=optuna.get_all_study_names(storage)[0],
                              storage=storage)
    return frame, spec, study


def retrain_top(study: optuna.Study, data: TensorSplits, top: int,
                seeds: list[int]) -> Outputs:
    from optuna.trial import TrialState

    from automl.study.trials import trial_config
    from workers.data import predict
    from workers.evaluate import fit

    complete = sorted(study.get_trials(states=(TrialState.COMPLETE,)),
                      key=lambda t: math.inf if t.value is None else t.value)
    outputs: Outputs = {}
    for rank, trial in enumerate(complete[:top]):
        for seed in seeds:
            model, _ = fit(trial_config(trial).with_seed(seed), data)
            outputs[(rank, seed)] = (predict(model, data.x_val), predict(model, data.x_test))
    return outputs


def ensemble_scores(outputs: Outputs, keys: list[tuple[int, int]],
                    data: TensorSplits) -> tuple[float, float, float]:
    """Validation score, validation loss and test score of the members ``keys``."""
    from workers.data import score, validation_loss
    from workers.ensemble import combine

    def averaged(split: int) -> torch.Tensor:
        members = [Recorded(outputs[key][split]) for key in keys]
        return combine(members, data.task)(torch.empty(0))

    val, test = averaged(0), averaged(1)
    return (score(data.task, val, data.y_val), validation_loss(data.task, val, data.y_val),
            score(data.task, test, data.y_test))


def greedy_selection(outputs: Outputs, data: TensorSplits,
                     picks: int) -> list[tuple[int, int]]:
    chosen: list[tuple[int, int]] = []
    for _ in range(picks):
        chosen.append(min(outputs, key=lambda k: ensemble_scores(outputs, [*chosen, k], data)[1]))
    return chosen


def probe(name: str, args: argparse.Namespace) -> None:
    from automl.data import load_dataset
    from automl.run.finish import final_seeds
    from workers.data import to_tensors

    started = time.perf_counter()
    frame, spec, study = tuned_study(name, args)
    data = to_tensors(load_dataset(frame, spec.target, task=spec.task, seed=args.seed))
    seeds = final_seeds(args.seed, 3)
    outputs = retrain_top(study, data, args.top, seeds)
    top = max(rank for rank, _ in outputs) + 1
    few = min(3, top)
    candidates = {
        "best x 3 seeds": [(0, s) for s in seeds],
        f"top {few} x 1 seed": [(rank, seeds[rank]) for rank in range(few)],
        f"top {few} x 3 seeds": [(rank, s) for rank in range(few) for s in seeds],
        f"top {top} x 3 seeds": list(outputs),
        "greedy 10": greedy_selection(outputs, data, 10),
    }
    metric = "R²" if data.task == "regression" else "accuracy"
    print(f"\n{spec.label}, split seed {args.seed}, {time.perf_counter() - started:.0f} s\n")
    print(f"| ensemble | val {metric} | val loss | test {metric} |\n| --- | ---: | ---: | ---: |")
    for label, keys in candidates.items():
        val, loss, test = ensemble_scores(outputs, keys, data)
        print(f"| {label} | {val:.4f} | {loss:.4f} | {test:.4f} |")
    print(f"\ngreedy picks (rank, seed): {candidates['greedy 10']}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["fashion_mnist", "diamonds"],
                        choices=list(DATASETS), metavar="NAME")
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--top", type=int, default=5, help="configurations retrained")
    parser.add_argument("--max-rows", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0, help="split, sample and study seed")
    parser.add_argument("--folder", default="/tmp/ensemble_probe",
                        help="where the studies are kept (reused when present)")
    args = parser.parse_args()
    Path(args.folder).mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    for name in args.datasets:
        probe(name, args)


if __name__ == "__main__":
    main()
