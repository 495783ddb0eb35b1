"""The GEM teacher: Wukong non-sequence tower, pyramid-parallel sequence encoder, InterFormer-style
interleaving of the two, and multi-task heads conditioned on the surface.

Each interleaving layer, with X the non-sequence rows [B, n, d] and S the history [B, L+1, d]
(events, then a class token in the newest position):
1. summarise S three ways — the class token, target attention pooling queried by the candidate (its
   ad and category rows, the same rows history events are made of), and the mean of the most recent
   events — into 3 rows;
2. cross features: a Wukong layer over X plus those rows (non-sequence attends to sequence);
3. learn the sequence, conditioned on the non-sequence summary (added to every position) with a
   pyramid-parallel encoder — the full sequence is kept, never summarised early.
The non-sequence rows are the categorical features, the dense features, the surface, and how often
the user met the candidate's ad and category before (counts per action level). The heads read the
last X and summaries through an MLP (its output is the knowledge embedding).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from teacher.attention import QueryPooling
from teacher.layers import EventEmbedding, FeatureEmbedding, TargetMatchCounts, dense_projection, mlp
from teacher.pyramid import PyramidEncoder
from teacher.wukong import WukongLayer
from transfer.contract import AD_FEATURE, CATEGORY_FEATURE, InputSpec, ModelOutput, RankingModelBase

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
    """(X [B, n, d], S [B, L+1, d], mask [B, L+1], target [B, d]) → (X' [B, rows, d], S' [B, L+1, d], summaries [B, 3, d])"""

    def __init__(self, n_rows: int, size: GEMSize, causal: bool):
        super().__init__()
        d = size.dim
        self.summary = SequenceSummary(d, size.recent)
        self.cross = WukongLayer(n_rows + SUMMARY_ROWS, d, fmb_rows=size.rows // 2, lcb_rows=size.rows - size.rows // 2,
                                 rank=size.rank, hidden=size.fmb_hidden)
        self.condition = nn.Linear(d, d)
        self.sequence = PyramidEncoder(dim=d, heads=size.heads, segment=size.segment, summary_tokens=size.summary_tokens,
                                       max_length=size.history_length + 1, causal=causal)

    def forward(self, x: torch.Tensor, seq: torch.Tensor, mask: torch.Tensor, target: torch.Tensor):
        summaries = self.summary(seq, mask, target)  # [B, 3, d]
        x = self.cross(torch.cat([x, summaries], dim=1))  # [B, rows, d]
        seq = self.sequence(seq + self.condition(x.mean(dim=1)).unsqueeze(1), mask)  # [B, L+1, d]
        return x, seq, summaries


class GEMTeacher(RankingModelBase):
    """Multi-task, multi-surface teacher (a `transfer.contract.RankingModel`): logits [B, T], embedding [B, head_hidden[-1]]."""

    def __init__(self, inputs: InputSpec, size: GEMSize, causal: bool = False):
        super().__init__(history_length=size.history_length, embedding_dim=size.head_hidden[-1],
                         feature_names=inputs.categorical_names, n_categorical=inputs.n_categorical)
        d = size.dim
        self.features = FeatureEmbedding(inputs.n_categorical, inputs.hash_buckets, d)
        self.events = EventEmbedding(self.features, inputs.n_surfaces, inputs.n_tasks + 1, d, AD_FEATURE, CATEGORY_FEATURE)
        self.dense = dense_projection(inputs.n_dense, d)
        self.surface = nn.Embedding(inputs.n_surfaces, d)
        self.match_counts = TargetMatchCounts(inputs.n_tasks + 1, d)
        self.class_token = nn.Parameter(torch.randn(d) * 0.05)
        n_rows = inputs.n_categorical + 3  # features, dense, surface, match counts
        self.layers = nn.ModuleList(InterleavingLayer(n_rows if i == 0 else size.rows, size, causal) for i in range(size.layers))
        self.final_summary = SequenceSummary(d, size.recent)
        self.trunk = mlp([(size.rows + SUMMARY_ROWS) * d, *size.head_hidden])
        self.heads = nn.Linear(size.head_hidden[-1] + d, inputs.n_tasks)  # each task's head sees the surface

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        surface = self.surface(batch["surface"])  # [B, d]
        ids = batch["categorical"]  # [B, F]
        tokens = self.features(ids)  # [B, F, d]
        counts = self.match_counts(batch, ids[:, AD_FEATURE], ids[:, CATEGORY_FEATURE])  # [B, d]
        x = torch.cat([tokens, torch.stack([self.dense(batch["dense"]), surface, counts], dim=1)], dim=1)  # [B, F+3, d]
        target = tokens[:, AD_FEATURE] + tokens[:, CATEGORY_FEATURE]  # [B, d] the candidate, as events are embedded
        events = self.events(batch)  # [B, L, d]
        seq = torch.cat([events, self.class_token.expand(len(events), 1, -1)], dim=1)  # [B, L+1, d]
        mask = torch.cat([batch["hist_mask"], torch.ones_like(batch["hist_mask"][:, :1])], dim=1)  # [B, L+1]
        for layer in self.layers:
            x, seq, _ = layer(x, seq, mask, target)
        summaries = self.final_summary(seq, mask, target)  # [B, 3, d]
        embedding = self.trunk(torch.cat([x, summaries], dim=1).flatten(1))  # [B, E]
        return ModelOutput(self.heads(torch.cat([embedding, surface], dim=-1)), embedding)

    def output_layer(self) -> nn.Linear:
        return self.heads

    def module_parts(self) -> dict[str, nn.Module]:
        return {"sequence.layer0": self.layers[0].sequence, "nonsequence.layer0": self.layers[0].cross}


GEM_SIZES = {
    "gem_lite": GEMSize(dim=16, history_length=128, layers=1, rows=8, rank=4, fmb_hidden=64, heads=1, segment=32,
                        summary_tokens=2, recent=8, head_hidden=[128, 64]),
    "gem_tiny": GEMSize(dim=16, history_length=256, layers=2, rows=12, rank=4, fmb_hidden=128, heads=1, segment=32,
                        summary_tokens=2, recent=16, head_hidden=[256, 64]),
    "gem_base": GEMSize(dim=32, history_length=512, layers=2, rows=16, rank=8, fmb_hidden=256, heads=2, segment=64,
                        summary_tokens=4, recent=16, head_hidden=[512, 128]),
    "gem_large": GEMSize(dim=128, history_length=8192, layers=6, rows=32, rank=16, fmb_hidden=1024, heads=8, segment=128,
                         summary_tokens=8, recent=32, head_hidden=[2048, 512]),
}


def gem_model(
    inputs: InputSpec, *, dim: int, history_length: int, layers: int, rows: int, rank: int, fmb_hidden: int, heads: int,
    segment: int, summary_tokens: int, recent: int, head_hidden: list[int], causal: bool = False,
) -> GEMTeacher:
    """A GEM teacher of any size (the catalog's presets are `GEM_SIZES`; recipes override sizes by key)."""
    size = GEMSize(dim=dim, history_length=history_length, layers=layers, rows=rows, rank=rank, fmb_hidden=fmb_hidden,
                   heads=heads, segment=segment, summary_tokens=summary_tokens, recent=recent, head_hidden=list(head_hidden))
    return GEMTeacher(inputs, size, causal=causal)
