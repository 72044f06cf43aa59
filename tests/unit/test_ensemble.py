"""The seed ensemble: averaged probabilities (or values), scored as the model users get."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_diabetes, load_digits
from torch import nn

from automl.configs import ModelConfig, Task, TrainConfig, TrialConfig
from automl.data import load_dataset
from automl.results.result import BestTrial, ModelScore, TuneResult, result_from_dict
from workers.data import predict, score, to_tensors
from workers.ensemble import SeedEnsemble, combine
from workers.evaluate import evaluate_seeds

torch.set_num_threads(1)


def members(n_outputs: int, n: int = 3) -> list[nn.Module]:
    torch.manual_seed(0)
    return [nn.Linear(5, n_outputs) for _ in range(n)]


@pytest.mark.parametrize(("task", "n_outputs"), [("multiclass", 4), ("binary", 1),
                                                 ("regression", 1)])
def test_the_ensemble_averages_probabilities_or_values(task: Task, n_outputs: int) -> None:
    models = members(n_outputs)
    x = torch.randn(64, 5) * 4  # large logits too
    with torch.no_grad():
        outputs = torch.stack([m(x) for m in models])
        got = SeedEnsemble(models, task)(x)
    if task == "multiclass":
        expected = torch.softmax(outputs, dim=-1).mean(dim=0)
        torch.testing.assert_close(torch.softmax(got, dim=-1), expected)
    elif task == "binary":
        torch.testing.assert_close(torch.sigmoid(got), torch.sigmoid(outputs).mean(dim=0))
    else:
        torch.testing.assert_close(got, outputs.mean(dim=0))
    assert got.shape == (64, n_outputs)


def test_one_member_is_the_model_itself() -> None:
    (model,) = members(2, n=1)
    assert combine([model], "multiclass") is model
    with pytest.raises(ValueError, match="at least one"):
        SeedEnsemble([], "regression")


def config(task: str, seed: int = 0) -> TrialConfig:
    loss = "mse" if task == "regression" else "cross_entropy"
    return TrialConfig(ModelConfig((32,), "relu", dropout=0.1),
                       TrainConfig(lr=3e-3, max_epochs=15, patience=5, loss=loss, seed=seed))


def test_the_averaged_regressor_scores_at_least_the_seeds_mean() -> None:
    # R² is 1 - MSE / variance, and the MSE of an average is at most the average MSE
    # (convexity): the ensemble can never do worse than its seeds' mean, split by split.
    prepared = load_dataset(load_diabetes(as_frame=True).frame, "target", seed=0)
    result = evaluate_seeds(config("regression"), [10, 11, 12], to_tensors(prepared))
    assert len(result.runs) == 3 and len({r.test_score for r in result.runs}) == 3
    assert result.ensemble_test_score >= np.mean([r.test_score for r in result.runs])
    assert result.ensemble_val_score >= np.mean([r.val_score for r in result.runs])


def test_the_classifier_ensemble_is_scored_on_its_averaged_probabilities() -> None:
    prepared = load_dataset(load_digits(as_frame=True).frame.iloc[:600], "target", seed=0)
    data = to_tensors(prepared)
    result = evaluate_seeds(config("multiclass"), [10, 11], data)
    assert isinstance(result.model, SeedEnsemble) and len(result.model.members) == 2
    probabilities = torch.stack([torch.softmax(predict(m, data.x_test), dim=1)
                                 for m in result.model.members]).mean(dim=0)
    expected = float((probabilities.argmax(dim=1) == data.y_test).float().mean())
    assert result.ensemble_test_score == pytest.approx(expected)
    assert result.ensemble_test_score == score("multiclass", predict(result.model, data.x_test),
                                               data.y_test)
    stored = result.to_dict()
    assert stored["ensemble"] == {"val_score": result.ensemble_val_score,
                                  "test_score": result.ensemble_test_score,
                                  "metrics": result.ensemble_metrics}
    # every metric of a classifier, accuracy agreeing with the headline score
    assert set(result.ensemble_metrics) == {"accuracy", "balanced_accuracy", "roc_auc",
                                            "log_loss", "f1"}
    assert result.ensemble_metrics["accuracy"] == pytest.approx(expected)
    assert [r["test_score"] for r in stored["runs"]] == [r.test_score for r in result.runs]


def _score(name: str, mean: float, ensemble: float | None) -> ModelScore:
    runs = [{"test_score": mean, "val_score": mean, "n_parameters": 10, "seconds": 1.0,
             "epochs": 5}] * 2
    scores = None if ensemble is None else {"test_score": ensemble, "val_score": ensemble}
    return ModelScore.from_evaluations(name, "rule", None, runs, scores)


def test_the_verdict_compares_the_models_users_get() -> None:
    # One seed at a time the baseline is ahead; averaged, the tuned model is.
    tuned = BestTrial(**vars(_score("tuned", 0.90, 0.95)), trial_number=0)
    rival = _score("defaults", 0.92, 0.93)
    result = TuneResult("accuracy", "binary", "d", tuned, [rival], 1, 1, 0, 0, 0, "s",
                        "sqlite://", 1.0, 1.0, 2)
    assert result.gap == pytest.approx(0.02) and result.beats_baselines
    assert result.best_baseline is rival
    assert "beat the best rule of thumb" in result.verdict()


def test_results_from_before_ensembles_read_back_on_the_seeds_mean() -> None:
    tuned = BestTrial(**vars(_score("tuned", 0.90, None)), trial_number=0)
    data = TuneResult("accuracy", "binary", "d", tuned, [_score("defaults", 0.92, None)], 1,
                      1, 0, 0, 0, "s", "sqlite://", 1.0, 1.0, 2).to_dict()
    for model in (data["best"], *data["baselines"]):
        del model["ensemble_score"], model["ensemble_val_score"]
    old = result_from_dict(data)
    assert old.best.final_score == 0.90 and old.gap == pytest.approx(-0.02)
