"""The HTML report, the dashboard note and ``automl report`` on constructed runs (no Ray)."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial
from sqlalchemy import update

from automl.cli.main import main
from automl.client import Client
from automl.queue.schema import upgrade
from automl.results.explain import comparison_rows, diagnostics_text, note_markdown, width_rows
from automl.results.report import write_report
from automl.results.result import BestTrial, ModelScore, TuneResult, format_report
from automl.space import Choice, Fixed, FloatRange, IntRange, SearchSpace
from automl.study.pruning import AUDIT_ATTR

SPACE = SearchSpace({"n_layers": IntRange(1, 2), "units": IntRange(8, 256, log=True),
                     "lr": FloatRange(1e-4, 1e-2, log=True), "activation": Choice(("relu",
                                                                                   "gelu")),
                     "max_epochs": Fixed(20)})
DISTRIBUTIONS = {"n_layers": IntDistribution(1, 2), "n_units_l0": IntDistribution(8, 256, log=True),
                 "lr": FloatDistribution(1e-4, 1e-2, log=True),
                 "activation": CategoricalDistribution(["relu", "gelu"])}


def fill(study: optuna.Study) -> None:
    """12 trials: the best (#7) has lr at the top edge of its range; #9 was audited."""
    study.set_user_attr("space", SPACE.to_dict())
    study.set_user_attr("automl_settings", {"max_epochs": 20})
    for i in range(12):
        lr = 1e-4 * 100 ** (i / 11) if i != 7 else 0.0099
        units = 8 * 2 ** (i % 5)
        loss = 0.2 + abs(i - 7) * 0.03
        state, reason, epochs = TrialState.COMPLETE, "early_stopped", 15
        attrs: dict[str, Any] = {}
        if i in (3, 5):
            state, reason, epochs = TrialState.PRUNED, "pruned", 6
            attrs["prune_reason"] = "pruned at epoch 5: val loss 0.9 against median 0.4"
        if i == 9:
            attrs[AUDIT_ATTR] = 6
        study.add_trial(create_trial(
            state=state, value=loss if state == TrialState.COMPLETE else None,
            params={"n_layers": 1, "n_units_l0": units, "lr": lr,
                    "activation": "relu" if i % 2 else "gelu"},
            distributions=DISTRIBUTIONS, intermediate_values={e: loss + 1 / (e + 1)
                                                              for e in range(epochs)},
            user_attrs={**attrs, "stop_reason": reason, "epochs": epochs, "seconds": 0.5,
                        "val_score": 0.99 - loss * 0.2, "n_parameters": 10 * units + 2,
                        "config": {"model": {"hidden_units": [units], "activation": "relu",
                                             "batch_norm": False, "dropout": 0.0}}}))


def make_result(study: optuna.Study) -> TuneResult:
    def score(name: str, rule: str, units: list[int] | None, val: float | None,
              test: float, params: int) -> ModelScore:
        arch = None if units is None else {"hidden_units": units, "activation": "relu",
                                           "batch_norm": False, "dropout": 0.0}
        ensemble = None if units is None else test + 0.004  # the seeds averaged
        return ModelScore(name, rule, arch, test, 0.012, [test - 0.012, test + 0.012], val,
                          params, 0.8, 14.0, ensemble, None if val is None else val + 0.005)

    baselines = [score("two_thirds_rule", "2/3 of the inputs plus the outputs", [7], 0.93,
                       0.925, 72),
                 score("mean_rule", "between input and output size: their mean", [5], 0.91,
                       0.905, 52),
                 score("defaults", "100 ReLU units, Adam <lr> 1e-3 & batch 32", [100], 0.935,
                       0.93, 1002),
                 score("linear", "no hidden layer (logistic / linear model)", [], 0.9, 0.895,
                       18),
                 score("constant", "majority class / mean of the training target", None, None,
                       0.5, 0)]
    best = study.best_trial
    tuned = BestTrial("tuned", "best trial", best.user_attrs["config"]["model"], 0.9512, 0.0031,
                      [0.948, 0.954], best.user_attrs["val_score"], 642, 1.1, 15.0, 0.9615,
                      best.user_attrs["val_score"] + 0.004, trial_number=best.number,
                      params=best.params, val_loss=best.value or 0.0)
    importance = [{"column": "tenure", "importance": 0.12, "std": 0.01},
                  {"column": "city", "importance": 0.004, "std": 0.003},
                  {"column": "noise", "importance": -0.002, "std": 0.004}]
    return TuneResult("accuracy", "binary", "binary, 8 features, train/val/test rows 153/51/52",
                      tuned, baselines, 12, 10, 2, 0, 0, study.study_name, "sqlite://", 42.0,
                      50.0, 2, feature_importance=importance)


@pytest.fixture
def run() -> tuple[TuneResult, optuna.Study]:
    study = optuna.create_study(study_name="constructed")
    fill(study)
    return make_result(study), study


def table_rows(page: str, table_id: str) -> list[list[str]]:
    """The body rows of ``<table id=table_id>`` as unescaped cell texts."""
    table = re.search(rf'<table id="{table_id}">(.*?)</table>', page, re.S)
    assert table is not None, f"no table {table_id}"
    body = table.group(1).split("<tbody>")[1]
    return [[html.unescape(re.sub(r"<[^>]+>", "", cell)) for cell in
             re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)]


def test_the_report_is_one_self_contained_page(run: tuple[TuneResult, optuna.Study],
                                              tmp_path: Path) -> None:
    result, study = run
    page = write_report(result, study, tmp_path / "out").read_text(encoding="utf-8")
    assert "<script" not in page and "http://" not in page and "https://" not in page
    images = re.findall(r'<img src="([^"]+)"', page)
    assert len(images) == 5 and all(i.startswith("data:image/svg+xml;base64,") for i in images)
    for heading in ("Verdict", "Comparison on the held-out test split", "Diagnostics",
                    "Optimisation history", "Score against model size",
                    "Epochs saved by pruning", "Which hyperparameters mattered",
                    "Which columns the model relies on", "The winning width against each rule"):
        assert f"<h2>{heading}</h2>" in page
    assert html.escape(result.verdict()) in page
    # text from the run is escaped, never markup
    assert "Adam &lt;lr&gt; 1e-3 &amp; batch 32" in page and "<lr>" not in page


def test_the_report_table_matches_the_result(run: tuple[TuneResult, optuna.Study],
                                             tmp_path: Path) -> None:
    result, study = run
    rows = table_rows(write_report(result, study, tmp_path).read_text(encoding="utf-8"),
                      "comparison")
    assert rows[0][0] == "tuned (best trial)" and rows[0][3:5] == ["96.15", "95.12 ± 0.31"]
    by_name = {r[0]: r for r in rows[1:]}
    assert set(by_name) == {b.name for b in result.baselines}
    for b in result.baselines:  # the ensemble's score where there is one, else the seeds'
        final = b.test_score if b.ensemble_score is None else b.ensemble_score
        assert by_name[b.name][3] == f"{final * 100:.2f}"
        assert by_name[b.name][4] == f"{b.test_score * 100:.2f} ± {b.test_score_std * 100:.2f}"
        assert by_name[b.name][5] == f"{b.n_parameters:,}"
    assert by_name["defaults"][3] == "93.40" and by_name["constant"][3] == "50.00"
    assert [r[0] for r in rows[1:]] == ["defaults", "two_thirds_rule", "mean_rule", "linear",
                                        "constant"]  # best test score first


def test_the_report_diagnostics_name_the_edge_and_the_audit(
        run: tuple[TuneResult, optuna.Study], tmp_path: Path) -> None:
    result, study = run
    page = html.unescape(write_report(result, study, tmp_path).read_text(encoding="utf-8"))
    assert "the best learning rate (lr), 0.0099, sits at the top edge" in page
    assert "pruning would have stopped 0 of 1 audited trials" in page
    assert "the validation set is too small to tell the top models apart" in page
    assert "pruned at epoch 5: val loss 0.9" in page  # an example prune reason


def test_a_report_without_the_study_still_has_the_table_and_verdict(
        run: tuple[TuneResult, optuna.Study], tmp_path: Path) -> None:
    result, _ = run
    page = write_report(result, None, tmp_path).read_text(encoding="utf-8")
    assert len(table_rows(page, "comparison")) == 1 + len(result.baselines)
    assert "plots are left out" in page and 'alt="optimisation history"' not in page
    assert len(re.findall("<img", page)) == 1  # the columns' plot needs only the result


def test_the_note_has_the_table_verdict_importances_widths_and_diagnostics(
        run: tuple[TuneResult, optuna.Study]) -> None:
    result, study = run
    note = note_markdown(result, study)
    cells = table_cells(note)
    assert cells[2][:2] == ["**tuned (best trial)**", "best trial"] and result.verdict() in note
    assert "### Which hyperparameters mattered most" in note and "learning rate (lr)" in note
    assert "fANOVA over the 10 completed trials" in note
    assert ["defaults", "100 ReLU units, Adam <lr> 1e-3 & batch 32", "100"] in [
        row[:3] for row in cells]
    table = [line for line in note.splitlines() if line.startswith("|")][:3]
    assert len({len(line) for line in table}) == 1  # the columns line up in the source
    assert "**Warning:** the best learning rate (lr), 0.0099" in note
    plain = note_markdown(result)  # without the study: no trial-level sections, no crash
    assert "needs the study's trials" in plain and "### Diagnostics" in plain


def test_width_against_each_rule(run: tuple[TuneResult, optuna.Study]) -> None:
    result, _ = run
    widths = {name: (width, words) for name, _, width, words in width_rows(result)}
    tuned = max(result.best.architecture["hidden_units"])  # type: ignore[index]
    assert widths["two_thirds_rule"] == (7, f"{tuned / 7:.1f} times as wide")
    assert widths["defaults"][1].startswith("narrower") or tuned >= 100
    assert "linear" not in widths and "constant" not in widths


def test_comparison_rows_are_the_stored_numbers(run: tuple[TuneResult, optuna.Study]) -> None:
    result, _ = run
    rows = comparison_rows(result)
    assert [r.model for r in rows[1:]] == sorted(result.baselines, key=lambda b: -b.test_score)


def test_cli_diagnostics_lines(run: tuple[TuneResult, optuna.Study]) -> None:
    result, study = run
    lines = diagnostics_text(result, study).splitlines()
    assert any(line.startswith("warning: the best learning rate (lr)") for line in lines)
    assert any(line.startswith("ok: pruning would have stopped 0 of 1") for line in lines)


# -- `automl report` reading runs back ----------------------------------------------------


def queued_run(tmp_path: Path, frame: Any) -> tuple[str, Client, str]:
    """A SQLite storage with one run submitted (not run): its URL, a client, the run id."""
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    upgrade(url)
    client = Client(url)
    return url, client, client.submit(frame, "target", n_trials=3).id


def test_cli_report_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture,
                                       blobs_frame: Any) -> None:
    url, client, run_id = queued_run(tmp_path, blobs_frame)
    client.close()
    out = str(tmp_path / "r")
    assert main(["report", run_id, "--out", out, "--storage", url]) == 2
    assert capsys.readouterr().err.startswith(f"error E_RUN_FAILED: run {run_id} is queued")
    assert main(["report", "nope", "--out", out, "--storage", url]) == 2
    assert capsys.readouterr().err.startswith("error E_CONFIG: no run or study named nope")
    missing = f"sqlite:///{tmp_path / 'missing.db'}"
    assert main(["report", "x", "--out", out, "--storage", missing]) == 2
    assert "no database at" in capsys.readouterr().err
    assert not (tmp_path / "missing.db").exists() and not (tmp_path / "r").exists()


def test_cli_report_of_a_service_run(tmp_path: Path, capsys: pytest.CaptureFixture,
                                     blobs_frame: Any) -> None:
    from automl.queue.models import Run

    url, client, run_id = queued_run(tmp_path, blobs_frame)
    out = str(tmp_path / "r")
    study = optuna.create_study(study_name=f"automl-{run_id}", storage=url)
    fill(study)
    result = make_result(study)
    with client.engine.begin() as connection:
        connection.execute(update(Run).where(Run.id == run_id).values(
            status="succeeded", summary=result.to_dict()))
    client.close()
    assert main(["report", run_id, "--out", out, "--storage", url]) == 0
    page = Path(capsys.readouterr().out.strip()).read_text(encoding="utf-8")
    assert len(table_rows(page, "comparison")) == 1 + len(result.baselines)
    assert "<img" in page  # the study was found beside the run
    assert main(["result", run_id, "--storage", url]) == 0  # the diagnostics after the table
    text = capsys.readouterr().out
    assert result.verdict() in text and "warning: the best learning rate (lr)" in text
    assert text.index(result.verdict()) < text.index("warning: the best learning rate")


@pytest.fixture
def blobs_frame() -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    frame = pd.DataFrame(rng.normal(size=(200, 4)) + y[:, None], columns=list("abcd"))
    frame["target"] = y
    return frame


def table_cells(markdown: str) -> list[list[str]]:
    """The cells of every Markdown table row in ``markdown``, stripped."""
    return [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in markdown.splitlines() if line.startswith("|")]


def test_the_columns_the_model_relies_on_are_in_the_table_notes_note_and_report(
        run: tuple[TuneResult, optuna.Study], tmp_path: Path) -> None:
    result, study = run
    assert ("The model leans most on: tenure 12.00, city 0.40, noise -0.20 (how much test "
            "accuracy drops") in format_report(result)
    note = note_markdown(result, study)
    assert "### Which columns the model relies on" in note
    assert ["tenure", "12.00", "1.00"] in table_cells(note)
    page = write_report(result, study, tmp_path).read_text(encoding="utf-8")
    assert "Which columns the model relies on" in page and 'alt="column importances"' in page
