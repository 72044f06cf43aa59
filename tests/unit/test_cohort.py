"""The cohort trainer (issue 20): members trained as one stacked model follow the path
they follow alone, stop on their own, leave and make room for new ones."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
from torch import nn

from automl.configs import ModelConfig, Task, TrainConfig, TrialConfig
from workers.cohort import Member, cohort_key, train_cohort
from workers.cohort_size import cohort_capacity, multiply_adds, widths_pay
from workers.data import TensorSplits, predict, validation_loss
from workers.evaluate import fit, train_seeds
from workers.train import TrainOutcome

torch.set_num_threads(1)
SCHEDULES = ("constant", "cosine", "plateau", "step", "exponential")


def splits(task: Task, rows: int = 400) -> TensorSplits:
    """A small real table as tensors: 60 % train, 20 % validation, 20 % test."""
    loader = {"multiclass": load_digits, "binary": load_breast_cancer,
              "regression": load_diabetes}[task]
    x_all, y_all = loader(return_X_y=True)
    x_all, y_all = x_all[:rows], y_all[:rows]
    if task == "regression":
        y_all = (y_all - y_all.mean()) / y_all.std()
    x = torch.tensor((x_all - x_all.mean(0)) / (x_all.std(0) + 1e-9), dtype=torch.float32)
    y = torch.tensor(y_all, dtype=torch.long if task == "multiclass" else torch.float32)
    a, b = int(len(x) * 0.6), int(len(x) * 0.8)
    outputs = 10 if task == "multiclass" else 1
    return TensorSplits(x[:a], y[:a], x[a:b], y[a:b], x[b:], y[b:], task, outputs, x.shape[1])


def members_of(optimizer: str, batch_norm: bool, loss: str = "cross_entropy",
               dropout: float = 0.0, epochs: int = 5) -> list[TrialConfig]:
    """Five members of one structure that differ in everything a cohort lets differ."""
    widths = [(32, 16), (8, 24), (48, 4), (16, 16), (24, 12)]
    return [TrialConfig(
        ModelConfig(units, "gelu", batch_norm, dropout),
        TrainConfig(optimizer, lr=[1e-3, 3e-3, 1e-2, 5e-4, 2e-3][i], beta2=[0.95, 0.999][i % 2],
                    momentum=0.9 if optimizer == "sgd" else 0.0, nesterov=i % 2 == 0,
                    lr_schedule=SCHEDULES[i], batch_size=32, max_epochs=epochs, patience=3,
                    weight_decay=[0.0, 1e-3, 1e-4, 0.0, 0.0][i],
                    grad_clip_norm=[0.0, 1.0, 0.5, 0.0, 0.0][i],
                    l1=[0.0, 0.0, 1e-5, 0.0, 0.0][i], label_smoothing=[0.0, 0.1, 0.0, 0.05, 0.0][i],
                    loss=loss, seed=10 + i))
        for i, units in enumerate(widths)]


def run_cohort(configs: list[TrialConfig], data: TensorSplits, **kwargs: object
               ) -> dict[int, tuple[nn.Module, TrainOutcome]]:
    done: dict[int, tuple[nn.Module, TrainOutcome]] = {}

    def on_done(member: Member, model: nn.Module, outcome: TrainOutcome) -> None:
        assert isinstance(member.key, int)
        done[member.key] = (model, outcome)

    members = kwargs.pop("members", None) or [Member(i, c) for i, c in enumerate(configs)]
    train_cohort(members, data, on_done, **kwargs)  # type: ignore[arg-type]
    return done


def assert_same_curves(configs: list[TrialConfig], data: TensorSplits, rtol: float) -> None:
    cohort = run_cohort(configs, data)
    for i, config in enumerate(configs):
        alone = fit(config, data)[1]
        together = cohort[i][1]
        assert together.stop_reason == alone.stop_reason
        assert together.best_epoch == alone.best_epoch
        assert together.val_losses == pytest.approx(alone.val_losses, rel=rtol)
        # the member leaves as the model it would be alone, with its best weights
        reloaded = validation_loss(data.task, predict(cohort[i][0], data.x_val), data.y_val)
        assert reloaded == pytest.approx(alone.best_val_loss, rel=rtol)


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
@pytest.mark.parametrize(("task", "loss"), [("multiclass", "cross_entropy"),
                                            ("binary", "cross_entropy"), ("regression", "mse"),
                                            ("regression", "huber"), ("regression", "mae")])
def test_a_member_follows_the_curve_it_follows_alone(task: Task, loss: str,
                                                     optimizer: str) -> None:
    assert_same_curves(members_of(optimizer, batch_norm=False, loss=loss), splits(task), 1e-5)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_batch_norm_members_follow_their_curves(optimizer: str) -> None:
    """With batch norm, the bias before the norm gets a gradient that is float noise
    (the norm cancels it); Adam scales noise up to a full step, so the running means of
    two summation orders drift apart by about 1e-3. SGD keeps float tolerance."""
    rtol = 1e-5 if optimizer == "sgd" else 2e-2
    assert_same_curves(members_of(optimizer, batch_norm=True), splits("multiclass"), rtol)


def test_one_members_divergence_never_touches_another() -> None:
    data = splits("regression")
    configs = [TrialConfig(ModelConfig(units, "relu"),
                           TrainConfig("sgd", lr=1e6 if i == 1 else 1e-3, batch_size=32,
                                       max_epochs=5, patience=3, loss="mse", seed=10 + i))
               for i, units in enumerate([(16,), (16,), (8,), (24,)])]
    cohort = run_cohort(configs, data)
    assert cohort[1][1].stop_reason == "diverged"
    assert cohort[1][1].detail.startswith("non_finite_loss@epoch")
    for i in (0, 2, 3):
        alone = fit(configs[i], data)[1]
        assert cohort[i][1].val_losses == pytest.approx(alone.val_losses, rel=1e-5)
        assert all(math.isfinite(v) for v in cohort[i][1].val_losses)


def test_members_stop_on_their_own_and_new_ones_fill_their_places() -> None:
    """Member 0 is pruned after its second epoch; refills (one wider than the cohort)
    join, train from their own first epoch and match their curves alone."""
    data = splits("multiclass")
    configs = members_of("adam", batch_norm=False, epochs=4)
    wider = TrialConfig(ModelConfig((64, 40), "gelu"), configs[0].train)
    waiting = [Member(5, wider), Member(6, configs[3].with_seed(99))]
    asked: list[int] = []

    def refill(free: int) -> list[Member]:
        asked.append(free)
        taken = waiting[:free]
        del waiting[:free]
        return taken

    members = [Member(0, configs[0], on_epoch=lambda epoch, _loss: epoch >= 1)]
    members += [Member(i, c) for i, c in enumerate(configs) if i > 0]
    done = run_cohort(configs, data, members=members, refill=refill)
    assert done[0][1].stop_reason == "stopped" and len(done[0][1].val_losses) == 2
    assert asked[0] == 1 and not waiting
    for key, config in ((5, wider), (6, configs[3].with_seed(99))):
        alone = fit(config, data)[1]
        assert done[key][1].val_losses == pytest.approx(alone.val_losses, rel=1e-5)
        first = next(m for m in done[key][0].modules() if isinstance(m, nn.Linear))
        assert first.out_features == config.model.hidden_units[0]


def test_each_epochs_member_callbacks_run_inside_one_epoch_scope() -> None:
    """The caller's scope (one read of the study for the members' pruning checks) is
    entered once an epoch, around every member's callback of that epoch."""
    from contextlib import contextmanager

    data = splits("binary")
    configs = members_of("adam", batch_norm=False, epochs=3)[:3]
    events: list[str] = []

    @contextmanager
    def scope():  # type: ignore[no-untyped-def]
        events.append("enter")
        yield
        events.append("exit")

    members = [Member(i, c, on_epoch=lambda epoch, _loss, i=i: events.append(f"{i}@{epoch}")
                      is None and False) for i, c in enumerate(configs)]
    run_cohort(configs, data, members=members, epoch_scope=scope)
    assert events == [e for epoch in range(3)
                      for e in ("enter", *(f"{i}@{epoch}" for i in range(3)), "exit")]


def test_dropout_members_train_as_they_would_alone_with_other_masks() -> None:
    """Dropout masks come from another random stream than alone: the curves differ
    (dropout is applied), but each member ends within 10 % of its loss alone."""
    configs = members_of("adam", batch_norm=False, dropout=0.3)
    data = splits("multiclass")
    done = run_cohort(configs, data)
    for i, config in enumerate(configs):
        model, outcome = done[i]
        alone = fit(config, data)[1]
        assert outcome.val_losses != pytest.approx(alone.val_losses, rel=1e-5)
        assert outcome.best_val_loss == pytest.approx(alone.best_val_loss, rel=0.1)
        assert any(isinstance(layer, nn.Dropout) for layer in model.modules())


@pytest.mark.parametrize("change", [
    {"embedding": "periodic"}, {"ensemble_k": 4}, {"lr_schedule": "onecycle"},
    {"optimizer": "rmsprop"}, {"class_weight": "balanced"}])
def test_what_trains_only_the_ordinary_way(change: dict[str, Any]) -> None:
    model_fields = {"embedding", "ensemble_k", "activation", "dropout"}
    model = ModelConfig((8,), **{k: v for k, v in change.items() if k in model_fields})
    train = TrainConfig(**{k: v for k, v in change.items() if k not in model_fields})
    assert cohort_key(TrialConfig(model, train)) is None
    assert cohort_key(TrialConfig(ModelConfig((8,)), TrainConfig())) is not None


def test_a_member_of_another_structure_is_refused() -> None:
    configs = members_of("adam", batch_norm=False)
    deeper = TrialConfig(ModelConfig((8, 8, 8), "gelu"), configs[0].train)
    with pytest.raises(ValueError, match="does not share the cohort's structure"):
        run_cohort([configs[0], deeper], splits("binary"))


def test_a_configurations_seeds_train_as_one_cohort_where_that_pays() -> None:
    """The final evaluation's seeds: one cohort on a CPU for a small model, the same
    curves as one after another; a wide model trains the ordinary way."""
    data = splits("multiclass")
    config = members_of("adam", batch_norm=False)[0]
    seeds = [config.with_seed(s) for s in (3, 4, 5)]
    assert cohort_capacity(config.model, data.n_inputs, data.n_outputs, 32, data.device) >= 3
    together = train_seeds(seeds, data)
    for (_model, outcome), alone in zip(together, (fit(c, data)[1] for c in seeds),
                                        strict=True):
        assert outcome.val_losses == pytest.approx(alone.val_losses, rel=1e-5)
    wide = ModelConfig((1024, 1024), "relu")
    assert cohort_capacity(wide, data.n_inputs, data.n_outputs, 32, data.device) == 1


def test_the_cpu_cohort_shrinks_as_the_model_grows() -> None:
    cpu = torch.device("cpu")
    sizes = [cohort_capacity(ModelConfig((units, units)), 16, 26, 32, cpu)
             for units in (32, 128, 256, 512)]
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[0] == 32 and sizes[-1] == 1


def test_on_a_cpu_members_of_too_different_widths_do_not_stack() -> None:
    """The stacked model computes each member at the widest one's width."""
    cpu = torch.device("cpu")
    narrow, wide = (multiply_adds(ModelConfig((units,)), 64, 10) for units in (32, 256))
    assert widths_pay([narrow], cpu) and widths_pay([narrow, narrow * 2], cpu)
    assert not widths_pay([narrow, wide], cpu) and not widths_pay([wide, narrow, wide], cpu)
    assert widths_pay([narrow, wide], torch.device("cuda"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_a_member_follows_its_curve_and_the_cohort_is_sized_by_memory() -> None:
    cpu = splits("multiclass")
    cuda = TensorSplits(cpu.x_train.cuda(), cpu.y_train.cuda(), cpu.x_val.cuda(),
                        cpu.y_val.cuda(), cpu.x_test.cuda(), cpu.y_test.cuda(), cpu.task,
                        cpu.n_outputs, cpu.n_numeric)
    configs = members_of("adam", batch_norm=False)
    done = run_cohort(configs, cuda)
    for i, config in enumerate(configs):
        alone = fit(config, cuda)[1]
        assert done[i][1].val_losses == pytest.approx(alone.val_losses, rel=1e-4)
    model = ModelConfig((256, 256))
    assert cohort_capacity(model, 784, 10, 128, cuda.device) > 32


def test_selu_members_drop_out_as_alpha_dropout_does() -> None:
    """Per member, the stacked dropout of SELU units keeps torch's AlphaDropout's mean and
    spread (its masks are its own), and padded units stay zero."""
    from workers.stacked import StackedMLP

    torch.manual_seed(0)
    units = torch.selu(torch.randn(2, 20000, 4))
    units[1, :, 3] = 0.0  # member 1 is 3 units wide
    mask = torch.ones(2, 4)
    mask[1, 3] = 0.0
    stacked = StackedMLP({"w_out": torch.zeros(2, 4, 1), "b_out": torch.zeros(2, 1)},
                         {"mask0": mask}, 0, "selu", False)
    rates = torch.tensor([0.1, 0.4])
    dropped = stacked._dropout(units, rates) * mask.unsqueeze(1)
    for member, rate in enumerate(rates.tolist()):
        alone = nn.functional.alpha_dropout(units[member, :, :3], rate, training=True)
        ours = dropped[member, :, :3]
        assert float(ours.mean()) == pytest.approx(float(alone.mean()), abs=0.03)
        assert float(ours.std()) == pytest.approx(float(alone.std()), abs=0.03)
    assert bool((dropped[1, :, 3] == 0).all())
