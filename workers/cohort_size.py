"""How many trials of one shape train at once here: the cohort's size from the machine.

On a GPU (not measured here; issue 20's H200 probe: 29x the ordinary loop at K = 32) K
is bounded by memory: each member holds its weights five times (the weights, their
gradients, Adam's two moments, the best copy) and its activations for one batch, and the
cohort may use half of the memory free. On a CPU the stacked matmuls pay only for small
models: measured with one torch thread, as a Ray task with one CPU trains
(bench/cohort.py, BENCHMARKS.md "Cohorts"), 32 stacked members of a 16-128-128-26 MLP
(22 k multiply-adds a row) ran 3.3x the ordinary loop, 256-256 (76 k) 1.2x, and
784-256-256 (268 k) or 512-512-512 (545 k) no faster, so above ``CPU_MAX_MACS`` a CPU
trains the ordinary way.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch

from automl.configs import ModelConfig

CPU_MAX_MACS = 100_000  # multiply-adds per row above which a CPU cohort no longer pays
CPU_MACS_PER_COHORT = 2**20  # a CPU cohort's members x their multiply-adds per row
MAX_CPU_COHORT, MAX_GPU_COHORT = 32, 1024
# Trial tickets a worker (or Ray task) claims at once: what its cohorts draw from.
CPU_COHORT_TRIALS, GPU_COHORT_TRIALS = 8, 256
GPU_MEMORY_SHARE = 0.5
# The widest member's multiply-adds over the narrowest's, at most, in one CPU cohort.
MAX_CPU_WIDTH_SPREAD = 2.0


def multiply_adds(model: ModelConfig, n_inputs: int, n_outputs: int, n_numeric: int = 0) -> int:
    """Multiply-adds of one row's forward pass through an MLP (and its piecewise-linear
    embedding of the first ``n_numeric`` inputs, if it has one)."""
    embedding = 0
    if model.embedding != "none" and n_numeric > 0:
        embedding = n_numeric * (model.n_bins + 1) * model.embedding_dim
        n_inputs += n_numeric * (model.embedding_dim - 1)
    sizes = [n_inputs, *model.hidden_units, n_outputs]
    return embedding + sum(a * b for a, b in itertools.pairwise(sizes))


def cohort_capacity(model: ModelConfig, n_inputs: int, n_outputs: int, batch_size: int,
                    device: torch.device, n_numeric: int = 0) -> int:
    """The most members of ``model``'s shape to train together on ``device``; 1 means the
    ordinary loop is as fast (a wide model on a CPU)."""
    macs = max(1, multiply_adds(model, n_inputs, n_outputs, n_numeric))
    if device.type != "cuda":
        if macs > CPU_MAX_MACS:
            return 1
        return max(1, min(MAX_CPU_COHORT, CPU_MACS_PER_COHORT // macs))
    free, _total = torch.cuda.mem_get_info(device)
    activations = batch_size * (n_inputs + 4 * sum(model.hidden_units) + 2 * n_outputs)
    per_member = 4 * (5 * macs + activations)  # float32 bytes; weights ~ multiply-adds
    return max(1, min(MAX_GPU_COHORT, int(free * GPU_MEMORY_SHARE) // per_member))


def default_cohort_trials(device: str | torch.device) -> int:
    """How many trial tickets one worker or Ray task claims at once on ``device``."""
    return GPU_COHORT_TRIALS if torch.device(device).type == "cuda" else CPU_COHORT_TRIALS


def layer_width_spread(depth: int, device: torch.device) -> float:
    """How far apart (widest over narrowest) one layer's widths may be across a CPU
    cohort's members for their multiply-adds to stay within ``MAX_CPU_WIDTH_SPREAD``: a
    one-layer MLP's multiply-adds grow as its width, a deeper one's as the product of
    two widths. Unbounded on a GPU."""
    if device.type == "cuda":
        return math.inf
    return MAX_CPU_WIDTH_SPREAD ** (1 / min(2, max(1, depth)))


def widths_pay(member_macs: Sequence[int], device: torch.device) -> bool:
    """Whether members of these multiply-adds a row gain from training as one stacked
    model. It computes every member at the widest one's width, so on a CPU, where stacking
    gains 1.2-3.3x (BENCHMARKS.md, "Cohorts"), a member less than half as wide as the
    widest costs more in the cohort than alone. A GPU has the width to spare."""
    if device.type == "cuda" or len(member_macs) < 2:
        return True
    return max(member_macs) <= MAX_CPU_WIDTH_SPREAD * max(1, min(member_macs))
