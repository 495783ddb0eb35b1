"""Training-only heads a consumer grows on its trunk for transfer; dropped at export (design §8).

- a distillation head (auxiliary KD), fed through a gradient scaler `β`;
- an adapter head, the second distillation head supervised by the Student Adapter;
- a projection head mapping the hidden state into the producer's embedding space.
"""

from __future__ import annotations

import torch
from torch import nn


class _ScaleGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.scale, None


def scale_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity forward; the gradient flowing back through it is multiplied by `scale`."""
    if scale == 1.0:
        return x
    return _ScaleGradient.apply(x, scale)


class TransferHeads(nn.Module):
    """Heads on a consumer's hidden state [B, H]; each is built only when its technique is on.

    forward(hidden) → dict with any of: "distill" [B, T], "adapted" [B, T], "projection" [B, E].
    The distillation and adapter heads see the trunk through `scale_gradient(·, grad_scale)`.
    """

    def __init__(
        self,
        hidden_dim: int,
        n_tasks: int,
        *,
        distill_head: bool,
        adapter_head: bool,
        projection_dim: int | None,
        grad_scale: float = 1.0,
    ):
        super().__init__()
        self.grad_scale = grad_scale
        self.distill = nn.Linear(hidden_dim, n_tasks) if distill_head else None
        self.adapted = nn.Linear(hidden_dim, n_tasks) if adapter_head else None
        self.projection = (
            nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, projection_dim))
            if projection_dim
            else None
        )

    def forward(self, hidden: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        scaled = scale_gradient(hidden, self.grad_scale)  # [B, H]
        if self.distill is not None:
            out["distill"] = self.distill(scaled)  # [B, T]
        if self.adapted is not None:
            out["adapted"] = self.adapted(scaled)  # [B, T]
        if self.projection is not None:
            out["projection"] = self.projection(hidden)  # [B, E]
        return out
