"""Docs that run (issue 21): every Python block of README.md and docs/ is executed here,
as a user would paste it, so a snippet can never rot again.

Each block runs as its own script in one sandbox folder holding what the docs name: a
small churn table (``churn.csv``), rows to predict (``new_rows.csv``), an exported model
(``model/``) and ``$AUTOML_STORAGE`` (a SQLite file with the service's tables, served by
an ``automl worker`` as the service's docs start one). A block that is not meant to run
says why on the line above it: ``<!-- not run: REASON -->``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^(?P<before>[^\n]*)\n```python\n(?P<code>.*?)^```", re.S | re.M)
NOT_RUN = re.compile(r"<!-- not run: (?P<reason>.+) -->")


@dataclass(frozen=True)
class Block:
    where: str  # file:line of the opening fence
    code: str
    not_run: str | None  # why, if it is not meant to run


def python_blocks(path: Path) -> list[Block]:
    """The ```python blocks of a Markdown file, in order."""
    text = path.read_text()
    blocks = []
    for match in BLOCK.finditer(text):
        line = text.count("\n", 0, match.start("code"))
        skip = NOT_RUN.search(match.group("before"))
        blocks.append(Block(f"{path.relative_to(ROOT)}:{line}", match.group("code"),
                            skip.group("reason") if skip else None))
    return blocks


BLOCKS = [block for path in DOCS for block in python_blocks(path)]


def test_the_docs_python_blocks_are_found() -> None:
    """The parser sees the blocks (a changed fence would otherwise skip them silently)."""
    assert len(BLOCKS) >= 4
    assert {b.where.split(":")[0] for b in BLOCKS} >= {"README.md", "docs/service.md"}
    assert all("import" in b.code for b in BLOCKS if b.not_run is None), \
        "a block that runs imports what it uses"


def churn_table(n: int, seed: int) -> pd.DataFrame:
    """A small churn table: tenure and charges decide, a categorical contract helps."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"tenure": rng.integers(1, 72, n),
                          "monthly_charges": rng.uniform(20, 110, n).round(2),
                          "contract": rng.choice(["monthly", "yearly", "two_year"], n)})
    risk = frame.monthly_charges / 40 - frame.tenure / 20 + (frame.contract == "monthly")
    return frame.assign(churned=np.where(risk + rng.normal(0, 0.5, n) > 1, "yes", "no"))


def exported_model(folder: Path, table: pd.DataFrame) -> None:
    """A model bundle as ``automl export`` writes it, trained here in a second."""
    from automl.configs import ModelConfig, TrainConfig, TrialConfig
    from automl.data import load_dataset
    from workers.data import to_tensors
    from workers.evaluate import fit
    from workers.predictor import Predictor

    prepared = load_dataset(table, "churned", seed=0)
    config = TrialConfig(ModelConfig((16,), "relu"), TrainConfig(max_epochs=3, seed=0))
    model, _ = fit(config, to_tensors(prepared))
    Predictor(model, prepared.preprocessor, config).save(folder, onnx=False)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    folder = tmp_path_factory.mktemp("docs")
    table = churn_table(160, seed=0)
    table.to_csv(folder / "churn.csv", index=False)
    churn_table(10, seed=1).drop(columns="churned").to_csv(folder / "new_rows.csv", index=False)
    exported_model(folder / "model", table)
    env = {**os.environ, "AUTOML_STORAGE": f"sqlite:///{folder / 'automl.db'}",
           "PYTHONPATH": str(ROOT)}
    automl = [sys.executable, "-m", "automl"]
    subprocess.run([*automl, "db", "upgrade"], cwd=folder, env=env, check=True,
                   capture_output=True, timeout=300)
    worker = subprocess.Popen([*automl, "worker", "--idle-exit", "600"], cwd=folder, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield folder, env
    finally:
        worker.kill()
        worker.wait()


@pytest.mark.slow
@pytest.mark.parametrize("block", [b for b in BLOCKS if b.not_run is None],
                         ids=lambda b: b.where)
def test_a_python_block_of_the_docs_runs(block: Block,
                                         sandbox: tuple[Path, dict[str, str]]) -> None:
    folder, env = sandbox
    script = folder / f"block_{block.where.replace('/', '_').replace(':', '_')}.py"
    script.write_text(block.code)
    proc = subprocess.run([sys.executable, str(script)], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{block.where} failed:\n{block.code}\n{proc.stderr[-3000:]}"
