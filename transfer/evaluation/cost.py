"""What a model costs: parameters, and forward FLOPs (per batch, or per example at its full history length).

An engine concern (serving budgets, `gem-transfer ls`, benchmarks): it measures any `RankingModel`."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from transfer.contract import InputSpec, RankingModel
from transfer.data.batches import random_batch


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def forward_flops(model: nn.Module, batch: dict[str, torch.Tensor]) -> float:
    """Forward FLOPs of scoring `batch` (matmuls and attention, counted by torch from the shapes, so
    the same for every run: a deterministic cost, unlike a timing)."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(batch)
    return float(counter.get_total_flops())


def forward_flops_per_example(model: RankingModel, inputs: InputSpec, batch_size: int = 2) -> float:
    """Forward FLOPs for one example with a full history (matmuls and attention, counted by torch)."""
    batch = random_batch(inputs.n_categorical, inputs.n_dense, inputs.n_surfaces, inputs.n_tasks + 1,
                         inputs.hash_buckets, batch_size, model.history_length)
    return forward_flops(model, batch) / batch_size
