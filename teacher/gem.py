"""The GEM teacher: Wukong non-sequence tower, pyramid-parallel sequence encoder, InterFormer-style
interleaving of the two, and multi-task heads conditioned on the surface.

Each interleaving layer, with X the non-sequence rows [B, n, d] and S the history [B, L+1, d]
(events, then a class token in the newest position):
1. summarise S three ways — the class token, attention pooling queried by the non-sequence summary,
   and the mean of the most recent events — into 3 rows;
2. cross features: a Wukong layer over X plus those rows (non-sequence attends to sequence);
3. learn the sequence, conditioned on the non-sequence summary (added to every position) with a
   pyramid-parallel encoder — the full sequence is kept, never summarised early.
The heads read the last X and summaries through an MLP (its output is the knowledge embedding).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from teacher.attention import QueryPooling
from teacher.layers import EventEmbedding, FeatureEmbedding, ModelOutput, mlp
from teacher.pyramid import PyramidEncoder
from teacher.wukong import WukongLayer
from transfer.encoding import AD_FEATURE, CATEGORY_FEATURE, InputSpec

SUMMARY_ROWS = 3  # class token, attention pooling, recent events


@dataclass(frozen=True)
class GEMSize:
    """The sizes a GEM preset fixes (typed builder arguments, not a config object)."""

    dim: int
    history_length: int
    layers: int  # interleaving layers
    rows: int  # Wukong rows per layer (horizontal scaling)
    rank: int  # FMB projection rank
    fmb_hidden: int
    heads: int
    segment: int
    summary_tokens: int
    recent: int
    head_hidden: list[int]


class SequenceSummary(nn.Module):
    """S [B, L+1, d] (class token last), mask [B, L+1], query [B, d] → [B, 3, d]"""

    def __init__(self, dim: int, recent: int):
        super().__init__()
        self.recent = recent
        self.pool = QueryPooling(dim, 1)

    def forward(self, seq: torch.Tensor, mask: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        events, event_mask = seq[:, :-1], mask[:, :-1]
        pooled = self.pool(events, event_mask, query)[:, 0]  # [B, d]
        recent_mask = event_mask[:, -self.recent :].unsqueeze(-1).float()  # [B, r, 1]
        recent = (events[:, -self.recent :] * recent_mask).sum(1) / recent_mask.sum(1).clamp(min=1.0)  # [B, d]
        return torch.stack([seq[:, -1], pooled, recent], dim=1)


class InterleavingLayer(nn.Module):
    """(X [B, n, d], S [B, L+1, d], mask) → (X' [B, rows, d], S' [B, L+1, d], summaries [B, 3, d])"""

    def __init__(self, n_rows: int, size: GEMSize, causal: bool):
        super().__init__()
        d = size.dim
        self.summary = SequenceSummary(d, size.recent)
        self.cross = WukongLayer(n_rows + SUMMARY_ROWS, d, fmb_rows=size.rows // 2, lcb_rows=size.rows - size.rows // 2,
                                 rank=size.rank, hidden=size.fmb_hidden)
        self.condition = nn.Linear(d, d)
        self.sequence = PyramidEncoder(dim=d, heads=size.heads, segment=size.segment, summary_tokens=size.summary_tokens,
                                       max_length=size.history_length + 1, causal=causal)

    def forward(self, x: torch.Tensor, seq: torch.Tensor, mask: torch.Tensor):
        summaries = self.summary(seq, mask, x.mean(dim=1))  # [B, 3, d]
        x = self.cross(torch.cat([x, summaries], dim=1))  # [B, rows, d]
        seq = self.sequence(seq + self.condition(x.mean(dim=1)).unsqueeze(1), mask)  # [B, L+1, d]
        return x, seq, summaries


class GEMTeacher(nn.Module):
    """Multi-task, multi-surface teacher. forward(batch) → logits [B, T], embedding [B, E]."""

    def __init__(self, inputs: InputSpec, size: GEMSize, causal: bool = False):
        super().__init__()
        d = size.dim
        self.history_length = size.history_length
        self.embedding_dim = size.head_hidden[-1]
        self.feature_names = list(inputs.categorical_names) or [f"feature_{i}" for i in range(inputs.n_categorical)]
        self.features = FeatureEmbedding(inputs.n_categorical, inputs.hash_buckets, d)
        self.events = EventEmbedding(self.features, inputs.n_surfaces, inputs.n_tasks + 1, d, AD_FEATURE, CATEGORY_FEATURE)
        self.dense = nn.Linear(inputs.n_dense, d)
        self.surface = nn.Embedding(inputs.n_surfaces, d)
        self.class_token = nn.Parameter(torch.randn(d) * 0.05)
        n_rows = inputs.n_categorical + 2  # features, dense, surface
        self.layers = nn.ModuleList(InterleavingLayer(n_rows if i == 0 else size.rows, size, causal) for i in range(size.layers))
        self.final_summary = SequenceSummary(d, size.recent)
        self.trunk = mlp([(size.rows + SUMMARY_ROWS) * d, *size.head_hidden])
        self.heads = nn.Linear(size.head_hidden[-1] + d, inputs.n_tasks)  # each task's head sees the surface

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        surface = self.surface(batch["surface"])  # [B, d]
        x = torch.cat([self.features(batch["categorical"]), self.dense(batch["dense"]).unsqueeze(1), surface.unsqueeze(1)], dim=1)
        events = self.events(batch)  # [B, L, d]
        seq = torch.cat([events, self.class_token.expand(len(events), 1, -1)], dim=1)  # [B, L+1, d]
        mask = torch.cat([batch["hist_mask"], torch.ones_like(batch["hist_mask"][:, :1])], dim=1)  # [B, L+1]
        for layer in self.layers:
            x, seq, _ = layer(x, seq, mask)
        summaries = self.final_summary(seq, mask, x.mean(dim=1))  # [B, 3, d]
        embedding = self.trunk(torch.cat([x, summaries], dim=1).flatten(1))  # [B, E]
        return ModelOutput(self.heads(torch.cat([embedding, surface], dim=-1)), embedding)

    def output_layer(self) -> nn.Linear:
        return self.heads

    def module_parts(self) -> dict[str, nn.Module]:
        """Named modules a consumer may import (see `transfer.sharing`)."""
        return {"sequence.layer0": self.layers[0].sequence, "nonsequence.layer0": self.layers[0].cross}


GEM_SIZES = {
    "gem_lite": GEMSize(dim=16, history_length=128, layers=1, rows=8, rank=4, fmb_hidden=64, heads=2, segment=32,
                        summary_tokens=2, recent=8, head_hidden=[128, 64]),
    "gem_tiny": GEMSize(dim=16, history_length=256, layers=2, rows=12, rank=4, fmb_hidden=128, heads=2, segment=32,
                        summary_tokens=2, recent=16, head_hidden=[256, 64]),
    "gem_base": GEMSize(dim=32, history_length=1024, layers=3, rows=16, rank=8, fmb_hidden=256, heads=4, segment=64,
                        summary_tokens=4, recent=16, head_hidden=[512, 128]),
    "gem_large": GEMSize(dim=128, history_length=8192, layers=6, rows=32, rank=16, fmb_hidden=1024, heads=8, segment=128,
                         summary_tokens=8, recent=32, head_hidden=[2048, 512]),
}


def gem_lite(inputs: InputSpec) -> GEMTeacher:
    """1 interleaving layer, 128 events: fast exploration runs."""
    return GEMTeacher(inputs, GEM_SIZES["gem_lite"])


def gem_tiny(inputs: InputSpec) -> GEMTeacher:
    """2 interleaving layers, 16-dim, 256 events: tests and quickstart."""
    return GEMTeacher(inputs, GEM_SIZES["gem_tiny"])


def gem_base(inputs: InputSpec) -> GEMTeacher:
    """3 layers, 32-dim, 1,024 events: this machine's benchmarks."""
    return GEMTeacher(inputs, GEM_SIZES["gem_base"])


def gem_large(inputs: InputSpec) -> GEMTeacher:
    """6 layers, 128-dim, 8,192 events: accelerator scale."""
    return GEMTeacher(inputs, GEM_SIZES["gem_large"])
