"""The model family (issue 19): numeric embeddings, TabM-mini's k members, RealMLP's
optimiser settings and label smoothing; saved, reloaded and exported like a plain MLP."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import optuna
import pytest
import torch
from test_export import frame_for  # the mixed numeric/categorical tables
from torch import nn
from torch.nn import functional

from automl.configs import ModelConfig, TrainConfig, TrialConfig, count_parameters
from automl.data import load_dataset
from automl.space import Choice, Fixed, IntRange, SearchSpace
from automl.space.suggest import suggest_trial_config
from workers.data import predict, to_tensors
from workers.ensemble import average
from workers.evaluate import fit
from workers.export import export_onnx, onnx_features
from workers.model import build_model, count_trainable, fit_bins
from workers.optim import SmoothedBCEWithLogits, batch_loss
from workers.predictor import Predictor

torch.set_num_threads(1)
FAMILY = [("none", 1), ("periodic", 1), ("piecewise_linear", 1), ("none", 4),
          ("piecewise_linear", 4)]


def model_config(embedding: str, k: int, batch_norm: bool = True) -> ModelConfig:
    return ModelConfig((16, 8), "relu", batch_norm=batch_norm, dropout=0.1,
                       embedding=embedding, embedding_dim=4, n_bins=8, ensemble_k=k)


@pytest.mark.parametrize(("embedding", "k"), FAMILY)
@pytest.mark.parametrize("batch_norm", [False, True])
def test_the_parameter_count_is_known_before_building(embedding: str, k: int,
                                                      batch_norm: bool) -> None:
    x_train = torch.randn(200, 7)
    config = model_config(embedding, k, batch_norm)
    bins = fit_bins(config, x_train, n_numeric=5)
    model = build_model(config, 7, 3, "multiclass", n_numeric=5, bins=bins)
    assert count_trainable(model) == count_parameters(7, 3, config, n_numeric=5)
    assert model.eval()(x_train[:6]).shape == (6, 3)


def test_k_members_answer_apart_in_training_and_as_their_average_in_eval() -> None:
    torch.manual_seed(0)
    model = build_model(model_config("none", 4, batch_norm=False), 6, 3, "multiclass")
    x = torch.randn(5, 6)
    model[-1].train()  # members apart; dropout off (eval) everywhere else
    for layer in model[:-1]:
        layer.eval()
    members = model(x)
    assert members.shape == (5, 4, 3)
    assert not torch.allclose(members[:, 0], members[:, 1])  # each its own input scaling
    torch.testing.assert_close(model.eval()(x), average(members, 1, "multiclass"))
    mean_probability = torch.softmax(members, dim=-1).mean(dim=1)
    torch.testing.assert_close(torch.softmax(model(x), dim=-1), mean_probability)


def test_a_k_member_batch_loss_is_the_mean_of_the_members_losses() -> None:
    outputs, target = torch.randn(8, 4, 3), torch.randint(0, 3, (8,))
    loss = batch_loss(nn.CrossEntropyLoss(), outputs, target, "multiclass")
    each = [functional.cross_entropy(outputs[:, i], target) for i in range(4)]
    torch.testing.assert_close(loss, torch.stack(each).mean())


def test_binary_label_smoothing_is_two_class_cross_entropy_smoothing() -> None:
    logits, target = torch.randn(16), torch.randint(0, 2, (16,)).float()
    two_class = torch.stack([torch.zeros(16), logits], dim=1)
    expected = functional.cross_entropy(two_class, target.long(), label_smoothing=0.2)
    torch.testing.assert_close(SmoothedBCEWithLogits(0.2)(logits, target), expected)


@pytest.mark.parametrize(("embedding", "k"), FAMILY[1:])
@pytest.mark.parametrize("task", ["binary", "multiclass", "mixed_regression"])
def test_the_family_saves_reloads_and_exports_like_one_mlp(embedding: str, k: int, task: str,
                                                            tmp_path: Path) -> None:
    frame = frame_for(task)
    prepared = load_dataset(frame, "target", seed=0)
    loss = "mse" if prepared.task == "regression" else "cross_entropy"
    config = TrialConfig(model_config(embedding, k),
                         TrainConfig(max_epochs=3, batch_size=32, loss=loss, beta2=0.95,
                                     lr_schedule="cosine", seed=3,
                                     label_smoothing=0.1 if loss == "cross_entropy" else 0.0))
    model, outcome = fit(config, to_tensors(prepared))
    assert outcome.epochs_run == 3
    predictor, rows = Predictor(model, prepared.preprocessor, config), frame.drop(columns="target")
    predictor.save(tmp_path / "model", onnx=False)
    info = json.loads((tmp_path / "model" / "model.json").read_text())
    assert info["config"]["model"]["embedding"] == embedding
    assert info["config"]["model"]["ensemble_k"] == k
    assert (info["bins"] is not None) == (embedding == "piecewise_linear")
    loaded = Predictor.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.predict(rows), predictor.predict(rows))
    session = ort.InferenceSession(str(export_onnx(predictor, tmp_path / "model.onnx")),
                                   providers=["CPUExecutionProvider"])
    got = session.run(None, {"features": onnx_features(prepared.preprocessor, rows)})[0]
    if prepared.task == "regression":
        np.testing.assert_allclose(got, predictor.predict(rows), rtol=1e-5, atol=1e-5)
    else:
        np.testing.assert_allclose(got, predictor.predict_proba(rows), atol=1e-5)


def test_a_model_without_numeric_columns_is_a_plain_mlp_whatever_the_embedding(blobs) -> None:
    data = to_tensors(blobs)
    config = model_config("piecewise_linear", 1)
    model = build_model(config, data.n_inputs, 1, "binary", n_numeric=0)
    assert count_trainable(model) == count_parameters(data.n_inputs, 1, config, n_numeric=0)
    assert predict(model, data.x_val).shape == (len(data.x_val), 1)


def test_embedding_settings_are_asked_only_where_they_apply() -> None:
    space = SearchSpace({"embedding": Choice(("none", "periodic", "piecewise_linear")),
                         "embedding_dim": IntRange(4, 32), "n_bins": IntRange(8, 64),
                         "ensemble_k": Fixed(8), "optimizer": Choice(("adamw", "sgd")),
                         }).resolve("binary", 1000)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen: dict[str, set[str]] = {}
    for _ in range(40):
        trial = study.ask()
        config = suggest_trial_config(trial, space, seed=0)
        seen.setdefault(config.model.embedding, set()).update(trial.params)
        assert config.model.ensemble_k == 8
        assert "beta2" not in trial.params  # a fixed value is not a parameter
        study.tell(trial, 0.0)
    assert "embedding_dim" not in seen["none"] and "n_bins" not in seen["none"]
    assert "frequency_scale" not in seen["piecewise_linear"]
    assert {"embedding_dim", "n_bins"} <= seen["piecewise_linear"]
    assert "n_bins" not in seen["periodic"] and "embedding_dim" in seen["periodic"]


def test_the_default_budget_searches_the_family_and_fast_keeps_the_plain_mlp() -> None:
    default = SearchSpace({}).resolve("multiclass", 1000, n_numeric=12)
    fast = SearchSpace({}).resolve("multiclass", 1000, n_numeric=12, budget="fast")
    assert default["embedding"] == Choice(("piecewise_linear", "none"))
    assert default["beta2"] == Fixed(0.95) and default["label_smoothing"] == Fixed(0.1)
    assert fast["embedding"] == Fixed("none") and fast["beta2"] == Fixed(0.999)
    assert fast["label_smoothing"] == Fixed(0.0) and fast["ensemble_k"] == Fixed(1)
    assert "cosine" not in fast["lr_schedule"].choices  # type: ignore[union-attr]
    wide = SearchSpace({}).resolve("multiclass", 1000, n_numeric=784)  # Fashion-MNIST
    assert wide["embedding"] == Fixed("none")
    user = SearchSpace.from_dict({"embedding": "periodic"}).resolve("multiclass", 1000, 784)
    assert user["embedding"] == Fixed("periodic")  # the user's choice wins


def test_an_unknown_budget_is_refused_by_name() -> None:
    from automl.errors import ConfigError
    from automl.options import TuneOptions

    with pytest.raises(ConfigError) as info:
        TuneOptions(budget="huge")
    assert info.value.field == "budget" and "fast" in str(info.value)
