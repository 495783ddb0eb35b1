"""Start a wide & deep model at the logistic regression on its wide features.

A VM trained from scratch on a small slice (thousands of rows, tens of steps) lands wherever its last
batches leave it: on MovieLens its eval NE spread widely between seeds and stayed behind a logistic
regression on the same counters and aggregates (benchmarks/RESULTS.md § vm-wide-start). A model with
a wide term (`RankingModel`'s optional `wide` and `wide_features`) therefore starts where that
regression is: its wide weights and output bias are fitted to the training rows' labels by L-BFGS
before the first step, and training learns what the deep part adds from there.
"""

from __future__ import annotations

import torch
from torch import nn

from transfer.data.batches import WindowBatches

SCORING_BATCH = 4096  # rows per pass when gathering the features


def has_wide_term(model: nn.Module, outputs: int = 1) -> bool:
    """Whether `model` has a wide term to start (`wide`: an nn.Linear into each of its `outputs` logits, `wide_features`)."""
    wide = getattr(model, "wide", None)
    return isinstance(wide, nn.Linear) and wide.out_features == outputs and callable(getattr(model, "wide_features", None))


@torch.no_grad()
def wide_inputs(model: nn.Module, batches: WindowBatches, task_column: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The wide features [n, W] (float64) and 0/1 labels [n] of the rows of `batches` labelled for `task_column`."""
    features, labels = [], []
    for positions in torch.arange(len(batches)).split(SCORING_BATCH):
        batch = batches[positions]
        label = batch["labels"][:, task_column]  # [B]
        known = ~torch.isnan(label)
        features.append(model.wide_features(batch)[known])
        labels.append(label[known])
    return torch.cat(features).double(), torch.cat(labels).double()


def fit_logistic(x: torch.Tensor, y: torch.Tensor, l2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The L2-penalised (`l2`·|w|², bias free) maximum-likelihood logistic regression of y [n] on x [n, W],
    by L-BFGS. → (weights [W], bias [])"""
    weight = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    rate = y.mean().clamp(1e-4, 1 - 1e-4)
    bias = torch.logit(rate).reshape(()).clone().requires_grad_(True)
    optimiser = torch.optim.LBFGS([weight, bias], max_iter=200, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(x @ weight + bias, y) + l2 * weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimiser.step(closure)
    return weight.detach(), bias.detach()


def start_at_regression(model: nn.Module, batches: WindowBatches, task_columns: list[int]) -> bool:
    """Set each of `model`'s wide rows and output biases to the logistic regression of its training
    rows' labels on its wide features: output i predicts the log's task column `task_columns[i]` (a
    VM has one; a multi-task teacher with a wide term, one per task). Each fit is penalised by one
    pseudo-row's worth, 1/n, so a slice with few positives cannot push a weight to infinity. The deep
    part keeps its random start, which adds a small, nearly constant offset to the logit that the
    first steps learn away. False (nothing changed) for a model without a wide term into every
    output, a task without both classes, or a fit that did not come out finite."""
    if not has_wide_term(model, len(task_columns)):
        return False
    fitted = []
    for column in task_columns:
        x, y = wide_inputs(model, batches, column)
        if len(y) == 0 or y.min() == y.max():
            return False
        weight, bias = fit_logistic(x, y, l2=1.0 / len(y))
        if not (torch.isfinite(weight).all() and torch.isfinite(bias)):
            return False
        fitted.append((weight, bias))
    with torch.no_grad():
        for output, (weight, bias) in enumerate(fitted):
            model.wide.weight[output].copy_(weight.to(model.wide.weight.dtype))
            model.output_layer().bias[output] = float(bias)
    return True
