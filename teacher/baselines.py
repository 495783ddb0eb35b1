"""Baseline teacher architectures for the quality benchmark: an MLP and a DCN-v2-style model.

Both read the same inputs as the GEM teacher — hashed features, dense features, surface, and the
history (mean-pooled events) — flattened into one vector `x0` [B, D]; with `match_counts`, also the
target-match counts (`TargetMatchCounts`: how often the user met the candidate's ad and category,
per action) — the order-free summary of the history a sequence model has to beat.
- MLP: x0 → MLP → embedding → one head per task (conditioned on the surface).
- DCN-v2: cross layers `x_{l+1} = x0 ⊙ (W_l·x_l + b_l) + x_l` beside a deep MLP; their outputs
  concatenated → MLP → embedding → heads.
"""

from __future__ import annotations

import torch
from torch import nn

from teacher.layers import EventEmbedding, FeatureEmbedding, TargetMatchCounts, dense_projection, mlp
from transfer.contract import AD_FEATURE, CATEGORY_FEATURE, InputSpec, ModelOutput, RankingModelBase


class FlatInputs(nn.Module):
    """batch → x0 [B, (F + 3)·d]: feature tokens, dense, surface, mean of the history events."""

    def __init__(self, inputs: InputSpec, dim: int):
        super().__init__()
        self.features = FeatureEmbedding(inputs.n_categorical, inputs.hash_buckets, dim)
        self.events = EventEmbedding(self.features, inputs.n_surfaces, inputs.n_tasks + 1, dim, AD_FEATURE, CATEGORY_FEATURE)
        self.dense = dense_projection(inputs.n_dense, dim)
        self.surface = nn.Embedding(inputs.n_surfaces, dim)
        self.width = (inputs.n_categorical + 3) * dim

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """→ x0 [B, D], surface [B, d]"""
        mask = batch["hist_mask"].unsqueeze(-1).float()  # [B, L, 1]
        history = (self.events(batch) * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # [B, d]
        surface = self.surface(batch["surface"])  # [B, d]
        tokens = self.features(batch["categorical"]).flatten(1)  # [B, F·d]
        return torch.cat([tokens, self.dense(batch["dense"]), surface, history], dim=-1), surface


class CrossLayer(nn.Module):
    """DCN-v2 cross: x0 ⊙ (W·x + b) + x. x0, x: [B, D] → [B, D]"""

    def __init__(self, width: int):
        super().__init__()
        self.linear = nn.Linear(width, width)

    def forward(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x0 * self.linear(x) + x


class BaselineTeacher(RankingModelBase):
    """MLP (cross_layers = 0) or DCN-v2 (cross_layers > 0), a `transfer.contract.RankingModel`:
    logits [B, T], embedding [B, hidden[-1]]."""

    def __init__(self, inputs: InputSpec, *, dim: int, history_length: int, hidden: list[int], cross_layers: int,
                 match_counts: bool = False):
        super().__init__(history_length=history_length, embedding_dim=hidden[-1], feature_names=inputs.categorical_names,
                         n_categorical=inputs.n_categorical)
        self.inputs = FlatInputs(inputs, dim)
        self.features, self.events = self.inputs.features, self.inputs.events
        self.match_counts = TargetMatchCounts(inputs.n_tasks + 1, dim) if match_counts else None
        width = self.inputs.width + (dim if match_counts else 0)
        self.cross = nn.ModuleList(CrossLayer(width) for _ in range(cross_layers))
        deep_in = width * (2 if cross_layers else 1)
        self.trunk = mlp([deep_in, *hidden])
        self.heads = nn.Linear(hidden[-1] + dim, inputs.n_tasks)

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        x0, surface = self.inputs(batch)  # [B, D], [B, d]
        if self.match_counts is not None:
            ids = batch["categorical"]  # [B, F]
            x0 = torch.cat([x0, self.match_counts(batch, ids[:, AD_FEATURE], ids[:, CATEGORY_FEATURE])], dim=-1)  # [B, D + d]
        x = x0
        for layer in self.cross:
            x = layer(x0, x)
        embedding = self.trunk(torch.cat([x0, x], dim=-1) if self.cross else x0)  # [B, E]
        return ModelOutput(self.heads(torch.cat([embedding, surface], dim=-1)), embedding)

    def output_layer(self) -> nn.Linear:
        return self.heads

    def module_parts(self) -> dict[str, nn.Module]:
        return {}


def baseline_teacher(inputs: InputSpec, *, dim: int, history_length: int, hidden: list[int], cross_layers: int,
                     match_counts: bool = False) -> BaselineTeacher:
    """An MLP (cross_layers = 0) or DCN-v2-style (cross layers beside the MLP) baseline teacher; with
    `match_counts`, it also reads the target-match counts of the history."""
    return BaselineTeacher(inputs, dim=dim, history_length=history_length, hidden=list(hidden), cross_layers=cross_layers,
                           match_counts=match_counts)
