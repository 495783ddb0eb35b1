"""What every transfer technique provides (one module per technique in this package).

A technique is an `nn.Module` built from its recipe config (`build(cfg, shape)` in its module) that
takes part in a consumer's training step through these hooks; each defaults to doing nothing:

- `prepare(producer, consumer)`: change the consumer model before training (sharing imports parts);
- `distill_heads()`, `heads()`: create its training-only parameters. Every technique's
  `distill_heads` (heads that read the trunk through the gradient scaler β) are built first, then
  every `heads` (heads on the plain trunk): a fixed order, so a recipe's random initialisation never
  depends on which file a technique lives in;
- `columns`: the knowledge columns its batches need (`soft_logits`, `teacher_embedding`,
  `adapted_logits`);
- `prior_heads()`: its heads whose bias starts at the task's base rate;
- `loss(serving_logits, trunk, batch)`: its weighted loss terms, by name.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ConsumerShape:
    """The sizes a technique's parameters depend on."""

    hidden_dim: int  # the consumer's hidden state (its `embedding`) [B, H]
    n_tasks: int  # the consumer's tasks [B, T]
    producer_dim: int  # the producer's stored embedding [B, E]
    n_surfaces: int  # the dataset's surfaces (the adapter's input)


@dataclass(frozen=True)
class Trunk:
    """What heads read: the consumer's hidden state, plain and through the gradient scaler β."""

    hidden: torch.Tensor  # [B, H]
    scaled: torch.Tensor  # [B, H] identity forward; its gradient into the trunk is scaled by β


class Technique(nn.Module):
    """A transfer technique's part in a consumer's training (see the module docstring)."""

    columns: tuple[str, ...] = ()

    def prepare(self, producer: nn.Module, consumer: nn.Module) -> None:
        """Change the consumer model before its heads are built."""

    def distill_heads(self, shape: ConsumerShape) -> None:
        """Create heads that read `Trunk.scaled`."""

    def heads(self, shape: ConsumerShape) -> None:
        """Create heads that read `Trunk.hidden`."""

    def prior_heads(self) -> list[nn.Linear]:
        return []

    def loss(self, serving_logits: torch.Tensor, trunk: Trunk, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """serving_logits: [B, T] → weighted terms by name."""
        return {}

    def trainable(self) -> list[nn.Parameter]:
        """Its parameters the consumer's optimizer steps."""
        return list(self.parameters())


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


