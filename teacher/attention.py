"""A pre-norm transformer block with key masks and optional causality — the unit every sequence
part of the GEM teacher is built from (and the full-attention baseline of the pyramid encoder)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AttentionBlock(nn.Module):
    """x [B, L, d], mask [B, L] bool (True = a real event) → [B, L, d]; padded positions → 0.

    Each position attends to the real positions (and only to earlier or equal ones when `causal`).
    A position with nothing to attend to gets zeros from attention, never NaN.
    """

    def __init__(self, dim: int, heads: int, ffn_mult: int = 2):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_mult * dim), nn.GELU(), nn.Linear(ffn_mult * dim, dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, causal: bool = False) -> torch.Tensor:
        x = x + self.attend(self.norm1(x), mask, causal)
        x = x + self.ffn(self.norm2(x))
        return x * mask.unsqueeze(-1)

    def attend(self, x: torch.Tensor, mask: torch.Tensor, causal: bool) -> torch.Tensor:
        """Multi-head attention only. x: [B, L, d] → [B, L, d]"""
        b, length, d = x.shape
        q, k, v = self.qkv(x).view(b, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # [B, H, L, d/H] each
        allowed = mask[:, None, None, :]  # [B, 1, 1, L] keys
        if causal:
            allowed = allowed & torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
        # A padded query may attend anywhere (its output is zeroed in `forward`): no row is empty, no NaN.
        allowed = allowed | ~mask[:, None, :, None]
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)  # [B, H, L, d/H]
        return self.out(attended.transpose(1, 2).reshape(b, length, d))


class QueryPooling(nn.Module):
    """`n` learned queries attend over a masked sequence. x [B, L, d], mask [B, L] → [B, n, d]

    Rows without any real position pool to zeros.
    """

    def __init__(self, dim: int, n: int):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(n, dim) * 0.05)
        self.key = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, extra_query: torch.Tensor | None = None) -> torch.Tensor:
        queries = self.queries.expand(len(x), -1, -1)  # [B, n, d]
        if extra_query is not None:
            queries = queries + extra_query.unsqueeze(1)
        scores = queries @ self.key(x).transpose(1, 2) / x.shape[-1] ** 0.5  # [B, n, L]
        weights = torch.softmax(scores.masked_fill(~mask[:, None, :], float("-inf")), dim=-1).nan_to_num(0.0)
        return weights @ x

