"""The pyramid-parallel sequence encoder: long histories at near-linear cost (GEM).

Level 0 cuts the sequence into segments of `segment` events, encoded in parallel by local
attention. Each segment is summarised into `summary_tokens` tokens; those form the next, coarser
sequence, encoded the same way, up to a top level short enough for full attention. Going back
down, every position adds the context of its segment from the level above (residual aggregation).
With `causal`, a position sees only earlier events: within a segment by a causal mask, and from
above only the context of the segments before its own (shifted by one segment).

Cost: level 0 is L·s, each level above is `summary_tokens / segment` of the one below: O(L·s).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from teacher.attention import AttentionBlock, QueryPooling


def pyramid_depth(max_length: int, segment: int, summary_tokens: int) -> int:
    """How many levels below the top a sequence of `max_length` needs."""
    depth, length = 0, max_length
    while length > segment:
        length = math.ceil(length / segment) * summary_tokens
        depth += 1
    return depth


class PyramidEncoder(nn.Module):
    """x [B, L, d], mask [B, L] bool → [B, L, d] (padded positions → 0).

    >>> enc = PyramidEncoder(dim=16, heads=2, segment=32, summary_tokens=2, max_length=1024)
    >>> enc(torch.randn(3, 1024, 16), torch.ones(3, 1024, dtype=torch.bool)).shape
    torch.Size([3, 1024, 16])
    """

    def __init__(self, *, dim: int, heads: int, segment: int, summary_tokens: int, max_length: int, causal: bool = False):
        super().__init__()
        if summary_tokens >= segment:
            raise ValueError(f"summary_tokens ({summary_tokens}) must be below segment ({segment})")
        self.segment, self.summary_tokens, self.causal = segment, summary_tokens, causal
        depth = pyramid_depth(max_length, segment, summary_tokens)
        self.blocks = nn.ModuleList(AttentionBlock(dim, heads) for _ in range(depth + 1))  # the last one is the top
        self.summaries = nn.ModuleList(QueryPooling(dim, summary_tokens) for _ in range(depth))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self._encode(x, mask, level=0)

    def _encode(self, x: torch.Tensor, mask: torch.Tensor, level: int) -> torch.Tensor:
        length = x.shape[1]
        if length <= self.segment or level == len(self.summaries):
            return self.blocks[-1](x, mask, self.causal)  # the top: full attention
        pad = (-length) % self.segment
        x, mask = F.pad(x, (0, 0, pad, 0)), F.pad(mask, (pad, 0))  # left-pad: newest events stay last
        b, padded, d = x.shape
        n_seg = padded // self.segment
        local = self.blocks[level](
            x.reshape(b * n_seg, self.segment, d), mask.reshape(b * n_seg, self.segment), self.causal
        )  # [B·S, s, d]
        seg_mask = mask.reshape(b * n_seg, self.segment)
        summary = self.summaries[level](local, seg_mask)  # [B·S, t, d]
        summary_mask = seg_mask.any(dim=1, keepdim=True).expand(-1, self.summary_tokens)  # [B·S, t]
        coarse = self._encode(
            summary.reshape(b, n_seg * self.summary_tokens, d), summary_mask.reshape(b, -1), level + 1
        )  # [B, S·t, d]
        context = coarse.view(b, n_seg, self.summary_tokens, d).mean(dim=2)  # [B, S, d] one per segment
        if self.causal:  # a segment may only hear about the segments before it
            context = F.pad(context, (0, 0, 1, 0))[:, :-1]
        out = local.view(b, n_seg, self.segment, d) + context.unsqueeze(2)  # [B, S, s, d]
        out = out.reshape(b, padded, d) * mask.unsqueeze(-1)
        return out[:, pad:]


class FullAttentionEncoder(nn.Module):
    """The baseline: one attention block over the whole sequence, same width. [B, L, d] → [B, L, d]"""

    def __init__(self, *, dim: int, heads: int, causal: bool = False):
        super().__init__()
        self.block, self.causal = AttentionBlock(dim, heads), causal

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.block(x, mask, self.causal)
