"""Wukong: stacked factorization machines for the non-sequence features (GEM's non-sequence tower).

One layer maps n token rows [B, n, d] to n' rows: the concatenation of
- a factorization machine block (FMB): pairwise interactions through a low-rank projection,
  `X·(Xᵀ·Y)` with learned `Y` [n, k] — [B, n, k] — flattened, LayerNorm, MLP, reshaped into
  `fmb_rows` new rows of width d;
- a linear compression block (LCB): `lcb_rows` learned recombinations of the input rows;
then a residual (the input rows, linearly mapped to n' rows when n ≠ n') and LayerNorm.
Depth (layers) and width (rows, rank) are the "vertical" and "horizontal" scaling knobs.
"""

from __future__ import annotations

import torch
from torch import nn


class FactorizationMachineBlock(nn.Module):
    """X [B, n, d] → [B, out_rows, d] from the low-rank pairwise interactions `X·(Xᵀ·Y)`."""

    def __init__(self, n_rows: int, dim: int, rank: int, out_rows: int, hidden: int):
        super().__init__()
        self.out_rows, self.dim = out_rows, dim
        self.projection = nn.Parameter(torch.randn(n_rows, rank) / n_rows**0.5)  # Y [n, k]
        self.norm = nn.LayerNorm(n_rows * rank)
        self.mlp = nn.Sequential(nn.Linear(n_rows * rank, hidden), nn.ReLU(), nn.Linear(hidden, out_rows * dim))

    def interactions(self, x: torch.Tensor) -> torch.Tensor:
        """`X·(Xᵀ·Y)`: [B, n, d] → [B, n, k] — every pair's dot product, compressed by Y."""
        return x @ (x.transpose(1, 2) @ self.projection)  # [B, n, d] @ [B, d, k]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = self.norm(self.interactions(x).flatten(1))  # [B, n·k]
        return self.mlp(flat).view(len(x), self.out_rows, self.dim)


class LinearCompressionBlock(nn.Module):
    """X [B, n, d] → W·X [B, out_rows, d]: learned linear recombinations of the rows."""

    def __init__(self, n_rows: int, out_rows: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_rows, n_rows) / n_rows**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight @ x


class WukongLayer(nn.Module):
    """[B, n, d] → [B, fmb_rows + lcb_rows, d]"""

    def __init__(self, n_rows: int, dim: int, *, fmb_rows: int, lcb_rows: int, rank: int, hidden: int):
        super().__init__()
        out_rows = fmb_rows + lcb_rows
        self.fmb = FactorizationMachineBlock(n_rows, dim, rank, fmb_rows, hidden)
        self.lcb = LinearCompressionBlock(n_rows, lcb_rows)
        self.residual = nn.Identity() if out_rows == n_rows else LinearCompressionBlock(n_rows, out_rows)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(torch.cat([self.fmb(x), self.lcb(x)], dim=1) + self.residual(x))


class WukongTower(nn.Module):
    """`layers` Wukong layers; the first maps n_rows to `rows` rows, later ones keep `rows`.
    [B, n_rows, d] → [B, rows, d]"""

    def __init__(self, n_rows: int, dim: int, *, layers: int, rows: int, rank: int, hidden: int):
        super().__init__()
        fmb_rows = rows // 2
        self.layers = nn.ModuleList(
            WukongLayer(n_rows if i == 0 else rows, dim, fmb_rows=fmb_rows, lcb_rows=rows - fmb_rows, rank=rank, hidden=hidden)
            for i in range(layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x
