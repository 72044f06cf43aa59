"""Would a longer epoch budget lift the tuned model? The best trial retrained with more.

    python bench/budget_probe.py --dataset california --budgets 100:15 300:30 300:50

A probe, not a feature. It reuses (or makes) ``ensemble_probe.py``'s study for the
dataset and split, retrains the best trial from the final comparison's 3 seeds under each
``MAX_EPOCHS:PATIENCE`` budget (the default space fixes 100:15), and prints each seed's
validation and test scores, its stop reason and epochs, and the 3 seeds' averaged
(delivered) test score.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_quality import DATASETS
from ensemble_probe import Recorded, tuned_study


def main() -> None:
    from automl.data import load_dataset
    from automl.run.finish import final_seeds
    from automl.study.trials import best_trial, trial_config
    from workers.data import predict, score, to_tensors
    from workers.ensemble import combine
    from workers.evaluate import fit

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="california", choices=list(DATASETS))
    parser.add_argument("--budgets", nargs="+", default=["100:15", "300:30", "300:50"])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--max-rows", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folder", default="/tmp/ensemble_probe")
    args = parser.parse_args()
    Path(args.folder).mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    frame, spec, study = tuned_study(args.dataset, args)
    data = to_tensors(load_dataset(frame, spec.target, task=spec.task, seed=args.seed))
    best = best_trial(study)
    if best is None:
        raise SystemExit(f"{args.dataset}: the study has no completed trial")
    print(f"\n{spec.label}, split seed {args.seed}, best trial #{best.number}\n")
    print("| max_epochs:patience | seed | val | test | stopped | epochs | s |\n"
          "| --- | --- | ---: | ---: | --- | ---: | ---: |")
    for budget in args.budgets:
        max_epochs, patience = (int(part) for part in budget.split(":"))
        config = trial_config(best)
        config = dataclasses.replace(config, train=dataclasses.replace(
            config.train, max_epochs=max_epochs, patience=patience))
        tests = []
        for seed in final_seeds(args.seed, 3):
            started = time.perf_counter()
            model, outcome = fit(config.with_seed(seed), data)
            val = score(data.task, predict(model, data.x_val), data.y_val)
            tests.append(Recorded(predict(model, data.x_test)))
            print(f"| {budget} | {seed} | {val:.4f} | "
                  f"{score(data.task, tests[-1].outputs, data.y_test):.4f} | "
                  f"{outcome.stop_reason} | {outcome.epochs_run} | "
                  f"{time.perf_counter() - started:.1f} |", flush=True)
        averaged = combine(tests, data.task)(torch.empty(0))
        print(f"| {budget} | 3 seeds averaged | | {score(data.task, averaged, data.y_test):.4f} "
              "| | | |", flush=True)


if __name__ == "__main__":
    main()
