"""The skeleton teacher: a multi-task ranking model over static features and a long history.

Static features and the pooled history (target attention over up to `history_length` events) feed
an MLP trunk; its last layer is the knowledge embedding; one head per task, each conditioned on the
surface. The GEM architecture (Wukong, pyramid encoder, InterFormer) will sit beside it; this one
stays as the baseline architecture.
"""

from __future__ import annotations

import torch
from torch import nn

from teacher.layers import EventEmbedding, FeatureEmbedding, HistoryPooling, TargetMatchCounts, dense_projection, mlp
from transfer.contract import AD_FEATURE, CATEGORY_FEATURE, InputSpec, ModelOutput, RankingModelBase


class SkeletonTeacher(RankingModelBase):
    """Multi-task teacher (a `transfer.contract.RankingModel`): logits [B, T], embedding [B, hidden[-1]]."""

    def __init__(
        self,
        *,
        n_categorical: int,
        n_dense: int,
        n_surfaces: int,
        n_tasks: int,
        hash_buckets: int,
        dim: int,
        history_length: int,
        hidden: list[int],
        heads: int = 4,
        recent: int = 16,
        feature_names: tuple[str, ...] = (),
    ):
        super().__init__(history_length=history_length, embedding_dim=hidden[-1], feature_names=feature_names,
                         n_categorical=n_categorical)
        self.features = FeatureEmbedding(n_categorical, hash_buckets, dim)
        self.events = EventEmbedding(self.features, n_surfaces, n_tasks + 1, dim, AD_FEATURE, CATEGORY_FEATURE)
        self.event_mlp = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))
        self.pooling = HistoryPooling(dim, heads, recent)
        self.match_counts = TargetMatchCounts(n_tasks + 1, dim)
        self.dense = dense_projection(n_dense, dim)
        self.surface = nn.Embedding(n_surfaces, dim)
        trunk_in = (n_categorical + 2) * dim + 4 * dim  # features, dense, surface, history, match counts
        self.trunk = mlp([trunk_in, *hidden])
        self.heads = nn.Linear(hidden[-1] + dim, n_tasks)  # each task's head sees the surface

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        tokens = self.features(batch["categorical"])  # [B, F, d]
        events = self.event_mlp(self.events(batch))  # [B, L, d]
        target = tokens[:, AD_FEATURE] + tokens[:, CATEGORY_FEATURE]  # [B, d]
        history = self.pooling(events, batch["hist_mask"], target)  # [B, 3d]
        ids = batch["categorical"]
        counts = self.match_counts(batch, ids[:, AD_FEATURE], ids[:, CATEGORY_FEATURE])  # [B, d]
        surface = self.surface(batch["surface"])  # [B, d]
        x = torch.cat([tokens.flatten(1), self.dense(batch["dense"]), surface, history, counts], dim=-1)
        embedding = self.trunk(x)  # [B, E]
        logits = self.heads(torch.cat([embedding, surface], dim=-1))  # [B, T]
        return ModelOutput(logits, embedding)

    def output_layer(self) -> nn.Linear:
        return self.heads

    def module_parts(self) -> dict[str, nn.Module]:
        return {"history.event_mlp": self.event_mlp, "history.pooling": self.pooling, "history.match_counts": self.match_counts}


def skeleton_model(
    inputs: InputSpec, *, dim: int, history_length: int, hidden: list[int], heads: int = 4, recent: int = 16
) -> SkeletonTeacher:
    """A skeleton-architecture model of any size for the data `inputs` describes (the catalog holds the presets)."""
    return SkeletonTeacher(
        n_categorical=inputs.n_categorical,
        n_dense=inputs.n_dense,
        n_surfaces=inputs.n_surfaces,
        n_tasks=inputs.n_tasks,
        hash_buckets=inputs.hash_buckets,
        dim=dim,
        history_length=history_length,
        hidden=list(hidden),
        heads=heads,
        recent=recent,
        feature_names=inputs.categorical_names,
    )
