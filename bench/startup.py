"""Where `tune`'s first seconds go: Ray's start and the first trials, head start on and off.

    python bench/startup.py --trials 16 --reps 2

Each run is ``automl.tune`` on digits (default space, SQLite in a temporary folder, a
local Ray started by ``tune``, ``n_seeds=1``) in its own fresh child process, alternating
``head_start=True`` and ``False`` so both see the same machine. Times count from the call
to ``tune``: when ``ray.init`` started and returned, when the first trial completed, when
the 4th, 8th and last did, how many trials started before Ray was up (in the head start's
fork: nothing else can run them then), and the epochs per second of the trials that started
after Ray was up (training speed once Ray is up, whatever ran first). ``ray.init`` is timed
by wrapping it, so the same script measures any version of ``automl`` (``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MODES = {"head": True, "no-head": False}


def child(mode: str, n_trials: int, out: Path) -> None:
    import optuna
    import ray
    from sklearn.datasets import load_digits

    import automl

    frame = load_digits(as_frame=True).frame
    marks: dict[str, float] = {}
    init = ray.init

    def timed_init(*args: Any, **kwargs: Any) -> Any:  # whichever automl version calls it
        marks["ray_init_begins"] = time.time()
        context = init(*args, **kwargs)
        marks["ray_up"] = time.time()
        return context

    ray.init = timed_init
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'study.db'}"
        t0 = time.time()
        result = automl.tune(frame, "target", n_trials=n_trials, n_seeds=1, storage=url,
                             progress=False, head_start=MODES[mode])
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        trials = optuna.load_study(study_name=result.study_name, storage=url).trials
    ray_up = marks["ray_up"] - t0
    started = {t.number: t.datetime_start.timestamp() - t0 for t in trials if t.datetime_start}
    ended = {t.number: t.datetime_complete.timestamp() - t0 for t in trials
             if t.datetime_complete}
    done = sorted(ended.values())
    after = [t for t in trials if started.get(t.number, -1.0) >= ray_up and t.number in ended]
    span = max(ended[t.number] for t in after) - ray_up if after else 0
    out.write_text(json.dumps({
        "mode": mode, "ray_init_begins_s": marks["ray_init_begins"] - t0, "ray_up_s": ray_up,
        "first_done_s": done[0], "fourth_done_s": done[min(3, len(done) - 1)],
        "eighth_done_s": done[min(7, len(done) - 1)], "last_done_s": done[-1],
        "trials_before_ray": sum(t < ray_up for t in started.values()),
        "epochs_per_s_after_ray": sum(int(t.user_attrs.get("epochs", 0)) for t in after)
        / span if span else None,
    }))


COLUMNS = ("ray_init_begins_s", "ray_up_s", "first_done_s", "fourth_done_s", "eighth_done_s",
           "last_done_s", "trials_before_ray", "epochs_per_s_after_ray")


def table(runs: list[dict[str, Any]]) -> str:
    lines = ["| mode | runs | " + " | ".join(COLUMNS) + " |",
             "| --- | ---: | " + "---: | " * len(COLUMNS)]
    for mode in MODES:
        mine = [r for r in runs if r["mode"] == mode]
        cells = [f"{statistics.median(r[c] for r in mine):.2f}" for c in COLUMNS]
        lines.append(f"| {mode} | {len(mine)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--reps", type=int, default=2, help="runs per mode, alternating")
    parser.add_argument("--json", type=Path, help="append every run as a JSON line")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.trials, args.out)
        return 0
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            for mode in MODES:
                out = Path(tmp) / f"{mode}-{rep}.json"
                subprocess.run([sys.executable, __file__, "--child", mode, "--trials",
                                str(args.trials), "--out", str(out)], check=True,
                               stderr=subprocess.DEVNULL)
                runs.append(json.loads(out.read_text()))
                print(json.dumps(runs[-1]), flush=True)
    if args.json:
        with args.json.open("a") as handle:
            for run in runs:
                handle.write(json.dumps(run) + "\n")
    print(table(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
