"""`A(z_t, surface, knowledge age) → z_a`: a small residual correction of stale producer logits.

Trained with `BCE(z_a, y)` on the freshest labelled window a consumer sees; its `σ(z_a)`, with
gradients stopped, supervises the consumer's second distillation head. The last layer starts at
zero, so an untrained adapter passes the producer's logits through unchanged.
"""

from __future__ import annotations

import torch
from torch import nn


class StudentAdapter(nn.Module):
    """forward(teacher_logits [B, T], surface [B] int, age_days [B] float) → corrected logits [B, T].

    >>> adapter = StudentAdapter(n_surfaces=5, n_tasks=1)
    >>> z_t = torch.randn(3, 1)
    >>> torch.equal(adapter(z_t, torch.tensor([0, 1, 4]), torch.zeros(3)), z_t)
    True
    """

    def __init__(self, n_surfaces: int, n_tasks: int, hidden: int = 16, surface_dim: int = 4):
        super().__init__()
        self.surface = nn.Embedding(n_surfaces, surface_dim)
        self.net = nn.Sequential(
            nn.Linear(n_tasks + surface_dim + 1, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 2 * n_tasks),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, teacher_logits: torch.Tensor, surface: torch.Tensor, age_days: torch.Tensor) -> torch.Tensor:
        features = torch.cat([teacher_logits, self.surface(surface), torch.log1p(age_days.clamp(min=0)).unsqueeze(-1)], dim=-1)
        log_scale, shift = self.net(features).chunk(2, dim=-1)  # [B, T] each
        return teacher_logits * torch.exp(log_scale) + shift  # [B, T]
