"""The Student Adapter (design §8): a small model `A(z_t, inputs) → z_a` that corrects a producer's
stale logits, fit on the freshest labels — the last `fit_days` of the consumers' window, which the
producer never trained on — strictly before the consumer trains (not co-trained on its shuffled
rows). Its inputs are what stale knowledge gets wrong: the ad's category, the dense features (the
ad's age among them), the calendar (weekday, hour), the surface and the knowledge's age.

The fitted adapter, frozen, corrects the logits of every consumer row whose knowledge age lies
within the ages it was fit on (the others keep the producer's logits: it never extrapolates in
age); `σ(z_a)` supervises a second distillation head `z_a'` on the consumer's trunk (through the
gradient scaler β): `L = BCE(z_s, y) + … + w_a·BCE(z_a', σ(z_a))`.

A *placebo* adapter (`placebo: true`) is the identity: the same second head, learning from the
uncorrected `σ(z_t)` — the control that tells the correction from the extra head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import torch
from torch import nn

from adapters.distillation import distillation_loss
from adapters.technique import ConsumerShape, Technique, Trunk
from transfer.config.techniques import AdapterConfig  # its recipe knobs and their checks
from transfer.contract import CATEGORY_FEATURE
from transfer.training.losses import label_loss  # the BCE every model trains with

CATEGORY_BUCKETS = 1024  # the adapter's own small table over the (hashed) ad category
FIT_BATCH = 1024


def enabled(cfg: AdapterConfig) -> bool:
    return cfg.enabled


def tag(cfg: AdapterConfig) -> str:
    return "adapter_placebo" if cfg.placebo else "adapter"


@dataclass(frozen=True)
class AdapterInputs:
    """What the adapter reads for n rows."""

    logits: torch.Tensor  # [n, T] the producer's logits z_t
    surface: torch.Tensor  # [n] int64
    age_days: torch.Tensor  # [n] float, the knowledge's age at the row
    category: torch.Tensor  # [n] int64 hashed ad category
    dense: torch.Tensor  # [n, D] float (signed log1p; the ad's age among them where the dataset has it)
    ts: torch.Tensor  # [n] int64 seconds (UTC): the calendar

    def select(self, rows: torch.Tensor) -> AdapterInputs:
        return AdapterInputs(*(getattr(self, name)[rows] for name in ("logits", "surface", "age_days", "category", "dense", "ts")))


class StudentAdapter(nn.Module):
    """forward(inputs: AdapterInputs) → corrected logits [n, T] = z_t · exp(log_scale) + shift. The
    last layer starts at zero, so an unfitted adapter passes the producer's logits through.

    >>> adapter = StudentAdapter(n_surfaces=5, n_tasks=1, n_dense=2)
    >>> z_t = torch.randn(3, 1)
    >>> inputs = AdapterInputs(z_t, torch.tensor([0, 1, 4]), torch.zeros(3), torch.tensor([7, 8, 9]), torch.zeros(3, 2), torch.zeros(3, dtype=torch.long))
    >>> torch.equal(adapter(inputs), z_t)
    True
    """

    def __init__(self, n_surfaces: int, n_tasks: int, n_dense: int, hidden: int = 16, embed: int = 4):
        super().__init__()
        self.surface = nn.Embedding(n_surfaces, embed)
        self.category = nn.Embedding(CATEGORY_BUCKETS, embed)
        self.weekday = nn.Embedding(7, 2)
        self.hour = nn.Embedding(24, 2)
        self.net = nn.Sequential(
            nn.Linear(n_tasks + 2 * embed + 4 + n_dense + 1, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 2 * n_tasks),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, inputs: AdapterInputs) -> torch.Tensor:
        days = inputs.ts.div(86_400, rounding_mode="floor")  # [n] days since the epoch (a Thursday)
        hours = inputs.ts.div(3_600, rounding_mode="floor") % 24  # [n]
        features = torch.cat([
            inputs.logits,  # [n, T]
            self.surface(inputs.surface), self.category(inputs.category % CATEGORY_BUCKETS),  # [n, e] each
            self.weekday((days + 3) % 7), self.hour(hours),  # [n, 2] each (weekday 0 = Monday)
            inputs.dense,  # [n, D]
            torch.log1p(inputs.age_days.clamp(min=0)).unsqueeze(-1),  # [n, 1]
        ], dim=-1)
        log_scale, shift = self.net(features).chunk(2, dim=-1)  # [n, T] each
        return inputs.logits * torch.exp(log_scale) + shift  # [n, T]


def adapter_inputs(log, rows: torch.Tensor, logits: torch.Tensor, cutoff: datetime) -> AdapterInputs:
    """The adapter's inputs for the consumer's `rows` [n] of `log` (an `EncodedLog`), whose producer
    logits are `logits` [n, T] and whose producer trained up to `cutoff`."""
    ts = log.ts[rows]
    age = ((ts - int(cutoff.timestamp())) / 86400.0).clamp(min=0.0).float()
    return AdapterInputs(logits.float(), log.surface[rows], age, log.categorical[rows, CATEGORY_FEATURE], log.dense[rows].float(), ts)


def fit_adapter(inputs: AdapterInputs, labels: torch.Tensor, n_surfaces: int, cfg: AdapterConfig, seed: int) -> StudentAdapter:
    """Fit an adapter with `BCE(z_a, y)` on these rows (labels [n, T], NaN = none): `cfg.epochs`
    seeded shuffled passes of Adam; → the adapter, frozen."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # its initialisation leaves the caller's random stream alone
        torch.manual_seed(seed)
        adapter = StudentAdapter(n_surfaces, labels.shape[1], inputs.dense.shape[1], cfg.hidden)
    optimizer = torch.optim.Adam(adapter.parameters(), lr=cfg.lr)
    with torch.enable_grad():
        for _ in range(cfg.epochs):
            for batch in torch.randperm(len(labels), generator=generator).split(FIT_BATCH):
                optimizer.zero_grad()
                label_loss(adapter(inputs.select(batch)), labels[batch]).backward()
                optimizer.step()
    return adapter.eval().requires_grad_(False)


@dataclass(frozen=True)
class Correction:
    """What the adapter did to one consumer's knowledge (logged with its run)."""

    logits: torch.Tensor  # [n, T] z_a for every row (z_t where it does not apply)
    fit_rows: int  # labelled rows it was fit on
    corrected_rows: int  # rows within the fit ages, whose logits it corrected
    fit_loss_before: float  # BCE of z_t on the fit rows
    fit_loss_after: float  # BCE of z_a on them


def corrected_knowledge(inputs: AdapterInputs, labels: torch.Tensor, window_end: datetime, n_surfaces: int,
                        cfg: AdapterConfig, seed: int) -> Correction:
    """Fit the adapter on the rows of the last `cfg.fit_days` before `window_end` (labels [n, T]) and
    correct every row whose knowledge age lies within the fit rows' ages; a placebo corrects nothing."""
    fresh = inputs.ts >= int((window_end - timedelta(days=cfg.fit_days)).timestamp())  # [n] bool
    fit = fresh & ~torch.isnan(labels).all(dim=1)
    before = float(label_loss(inputs.logits[fit], labels[fit])) if fit.any() else math.nan
    if cfg.placebo or not fit.any():
        return Correction(inputs.logits, int(fit.sum()), 0, before, before)
    rows = fit.nonzero().squeeze(1)
    adapter = fit_adapter(inputs.select(rows), labels[rows], n_surfaces, cfg, seed)
    ages = inputs.age_days[rows]
    within = (inputs.age_days >= ages.min()) & (inputs.age_days <= ages.max())  # [n] bool
    with torch.no_grad():
        corrected = torch.where(within.unsqueeze(1), adapter(inputs), inputs.logits)  # [n, T]
    after = float(label_loss(corrected[fit], labels[fit]))
    return Correction(corrected, len(rows), int(within.sum()), before, after)


class AdapterTechnique(Technique):
    """The second distillation head, supervised by the corrected logits `adapted_logits` [B, T] (the
    adapter itself is fit before training, when the knowledge is joined: `corrected_knowledge`)."""

    columns = ("soft_logits", "adapted_logits")

    def __init__(self, weight: float):
        super().__init__()
        self.weight = weight
        self.head: nn.Linear | None = None

    def distill_heads(self, shape: ConsumerShape) -> None:
        self.head = nn.Linear(shape.hidden_dim, shape.n_tasks)

    def prior_heads(self) -> list[nn.Linear]:
        return [self.head]

    def loss(self, serving_logits: torch.Tensor, trunk: Trunk, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.weight <= 0:
            return {}
        return {"adapter_kd": self.weight * distillation_loss(self.head(trunk.scaled), batch["adapted_logits"])}  # σ(z_a) as is


def build(cfg: AdapterConfig) -> AdapterTechnique:
    return AdapterTechnique(cfg.weight)
