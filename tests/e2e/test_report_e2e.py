"""End to end: ``automl report`` on a real finished ``automl.tune`` run (local Ray, SQLite)."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest
from sklearn.datasets import load_breast_cancer

import automl
from automl.cli.main import main
from automl.client import Client
from automl.results.explain import stored_diagnostics_text

pytestmark = pytest.mark.slow

SPACE = {"max_epochs": 12, "patience": 4, "n_layers": {"type": "int", "low": 1, "high": 2},
         "units": {"type": "int", "low": 8, "high": 64, "log": True}}


def comparison_rows(page: str) -> dict[str, list[str]]:
    """The comparison table's rows by model name, as unescaped cell texts."""
    table = re.search(r'<table id="comparison">(.*?)</table>', page, re.S)
    assert table is not None
    rows = [[html.unescape(re.sub(r"<[^>]+>", "", cell))
             for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table.group(1).split("<tbody>")[1],
                                  re.S)]
    return {row[0]: row for row in rows}


def test_report_of_a_finished_run_matches_the_stored_result(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    url = f"sqlite:///{tmp_path / 'tune.db'}"
    frame = load_breast_cancer(as_frame=True).frame
    # No pruning: all 6 trials complete, enough for the importances plot (4 or more) on
    # every Optuna version and split of the pruner's decisions.
    result = automl.tune(frame, "target", space=SPACE, n_trials=6, n_seeds=2, storage=url,
                         study_name="report-e2e", n_workers=1, progress=False, pruner="none")
    stored = Client(url).run("report-e2e").result()  # a tune run is a run
    assert stored == json.loads(json.dumps(result.to_dict()))

    assert main(["report", "report-e2e", "--out", str(tmp_path / "out"), "--storage", url]) == 0
    path = Path(capsys.readouterr().out.strip())
    page = path.read_text(encoding="utf-8")
    rows = comparison_rows(page)
    assert set(rows) == {"tuned (best trial)", *(b["name"] for b in stored["baselines"])}
    for model in [stored["best"], *stored["baselines"]]:
        row = rows["tuned (best trial)" if model is stored["best"] else model["name"]]
        assert row[1] == model["rule"]
        final = model["ensemble_score"]  # the seeds averaged; none for the constant
        assert (final is None) == (model["name"] == "constant")
        assert row[3] == f"{(final or model['test_score']) * 100:.2f}"
        assert row[4] == (f"{model['test_score'] * 100:.2f} ± "
                          f"{model['test_score_std'] * 100:.2f}")
        assert row[5] == f"{model['n_parameters']:,}"
        assert row[6] == f"{model['train_seconds']:.1f}"
    # history, size, epochs, hyperparameters, and the delivered model's columns
    assert len(re.findall(r'<img src="data:image/svg\+xml;base64,', page)) == 5
    assert 'alt="column importances"' in page and stored["feature_importance"]
    assert html.escape(result.verdict()) in page

    lines = stored_diagnostics_text(result, url).splitlines()
    assert any("trials failed or diverged" in line for line in lines)
    assert any("prun" in line for line in lines)
