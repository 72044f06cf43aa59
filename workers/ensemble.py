"""The delivered model: the best configuration retrained from several seeds, averaged.

The final comparison already trains every model from ``n_seeds`` seeds; averaging their
predicted probabilities (or values) costs nothing more to train and scores better than
the seeds do one by one (BENCHMARKS.md, "Seed ensembles"). :class:`SeedEnsemble` answers in
the form one member does (logits, or the standardised target), so scoring, the
:class:`~workers.predictor.Predictor` and the ONNX graph treat it as one MLP.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional

from automl.configs import Task


class SeedEnsemble(nn.Module):
    """Averages its members' probabilities (classification) or values (regression).

    The output is the average turned back into a member's form: the log of the mean
    class probabilities (multiclass), the logit of the mean positive probability
    (binary), the mean value (regression); softmax, sigmoid and argmax then give the
    averaged probabilities and their winner.
    """

    def __init__(self, members: Sequence[nn.Module], task: Task):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.task = task

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return average(torch.stack([member(x) for member in self.members]), 0, self.task)


def average(outputs: torch.Tensor, dim: int, task: Task) -> torch.Tensor:
    """Several models' outputs stacked along ``dim``, averaged as probabilities (or values)
    and turned back into one model's form (see :class:`SeedEnsemble`)."""
    if task == "regression":
        return outputs.mean(dim=dim)
    log_n = math.log(outputs.shape[dim])
    if task == "binary":  # logit(mean p) = log(mean p) - log(mean (1 - p))
        log_p = torch.logsumexp(functional.logsigmoid(outputs), dim=dim) - log_n
        log_q = torch.logsumexp(functional.logsigmoid(-outputs), dim=dim) - log_n
        return log_p - log_q
    return torch.logsumexp(torch.log_softmax(outputs, dim=-1), dim=dim) - log_n


def combine(members: Sequence[nn.Module], task: Task) -> nn.Module:
    """One model from the seeds' models: the model itself when there is only one."""
    return members[0] if len(members) == 1 else SeedEnsemble(members, task)
