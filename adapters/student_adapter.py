"""The Student Adapter (design §8): a small model `A(z_t, inputs) → z_a` that corrects a producer's
stale logits, fit on the freshest labels — the last `fit_days` of the consumers' window, which the
producer never trained on — strictly before the consumer trains (not co-trained on its shuffled
rows). Its inputs are what stale knowledge gets wrong: the ad's category, the dense features (the
ad's age among them), the calendar (weekday, hour), the surface and the knowledge's age.

The fitted adapter, frozen, corrects the logits of every consumer row whose knowledge age lies
within the ages it was fit on (the others keep the producer's logits: it never extrapolates in
age); `σ(z_a)` supervises a second distillation head `z_a'` on the consumer's trunk (through
distillation's gradient scaler β): `L = BCE(z_s, y) + … + w_a·BCE(z_a', σ(z_a))`.

A *placebo* adapter (`placebo: true`) is the identity: the same second head, learning from the
uncorrected `σ(z_t)` — the control that tells the correction from the extra head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from adapters.distillation import distillation_loss
from adapters.technique import ConsumerShape, Derived, Knob, KnowledgeRows, Step, scale_gradient
from transfer.util.checks import check_non_negative, check_positive

if TYPE_CHECKING:
    import torch
    from torch import nn

KEY = "adapter"
SUMMARY = "the Student Adapter: stale producer logits corrected on the freshest labels, supervising a second head"
SERVING = "none: the adapter and its head are training-only"
CATEGORY_BUCKETS = 1024  # the adapter's own small table over the (hashed) ad category
FIT_BATCH = 1024


@dataclass
class AdapterConfig:
    """The Student Adapter: corrects stale producer logits from the freshest labels."""

    enabled: bool = False  # true: fit the adapter and train the second distillation head
    fit_days: int = 3  # the adapter is fit on the last `fit_days` of the consumers' window
    weight: float = 1.0  # weight of the second distillation head, supervised by σ(z_a)
    hidden: int = 16  # the adapter's hidden width
    lr: float = 0.03  # its learning rate (Adam) while it is fit
    epochs: int = 5  # passes over the fit rows
    placebo: bool = False  # the identity instead of a fitted adapter (the control)

    def check(self, key: str, window_days: int) -> None:
        """`window_days`: the consumers' window, which the fit window must fit in."""
        check_non_negative(f"{key}.weight", self.weight)
        for name in ("lr", "hidden", "fit_days", "epochs"):
            check_positive(f"{key}.{name}", getattr(self, name))
        if self.enabled and self.fit_days > window_days:
            raise ValueError(f"{key}.fit_days: found {self.fit_days}; allowed: at most the consumers' window ({window_days} days)")


Config = AdapterConfig  # every technique's knobs go by this name (`adapters.technique`)


def enabled(stage) -> bool:
    return stage.adapter.enabled


def tag(stage) -> str:
    return "adapter_placebo" if stage.adapter.placebo else "adapter"


def reference(stage) -> Config:
    return Config()  # off


def columns(stage) -> tuple[str, ...]:
    return ("soft_logits", "adapted_logits")


def knobs(stage) -> list[Knob]:
    return [Knob("adapter.weight", 0.1, 3.0)]


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


def adapter_network(n_surfaces: int, n_tasks: int, n_dense: int, hidden: int = 16, embed: int = 4) -> nn.ModuleDict:
    """The adapter's parameters (read by `adapt`). Its last layer starts at zero, so an unfitted
    adapter passes the producer's logits through.

    >>> import torch
    >>> network = adapter_network(n_surfaces=5, n_tasks=1, n_dense=2)
    >>> z_t = torch.randn(3, 1)
    >>> inputs = AdapterInputs(z_t, torch.tensor([0, 1, 4]), torch.zeros(3), torch.tensor([7, 8, 9]), torch.zeros(3, 2), torch.zeros(3, dtype=torch.long))
    >>> torch.equal(adapt(network, inputs), z_t)
    True
    """
    from torch import nn

    network = nn.ModuleDict({
        "surface": nn.Embedding(n_surfaces, embed),
        "category": nn.Embedding(CATEGORY_BUCKETS, embed),
        "weekday": nn.Embedding(7, 2),
        "hour": nn.Embedding(24, 2),
        "net": nn.Sequential(nn.Linear(n_tasks + 2 * embed + 4 + n_dense + 1, hidden), nn.ReLU(), nn.Linear(hidden, 2 * n_tasks)),
    })
    nn.init.zeros_(network["net"][-1].weight)
    nn.init.zeros_(network["net"][-1].bias)
    return network


def adapt(network: nn.ModuleDict, inputs: AdapterInputs) -> torch.Tensor:
    """The corrected logits `z_a = z_t · exp(log_scale) + shift`, [n, T]."""
    import torch

    days = inputs.ts.div(86_400, rounding_mode="floor")  # [n] days since the epoch (a Thursday)
    hours = inputs.ts.div(3_600, rounding_mode="floor") % 24  # [n]
    features = torch.cat([
        inputs.logits,  # [n, T]
        network["surface"](inputs.surface), network["category"](inputs.category % CATEGORY_BUCKETS),  # [n, e] each
        network["weekday"]((days + 3) % 7), network["hour"](hours),  # [n, 2] each (weekday 0 = Monday)
        inputs.dense,  # [n, D]
        torch.log1p(inputs.age_days.clamp(min=0)).unsqueeze(-1),  # [n, 1]
    ], dim=-1)
    log_scale, shift = network["net"](features).chunk(2, dim=-1)  # [n, T] each
    return inputs.logits * torch.exp(log_scale) + shift  # [n, T]


def adapter_inputs(log, rows: torch.Tensor, logits: torch.Tensor, age_days: torch.Tensor) -> AdapterInputs:
    """The adapter's inputs for the consumer's `rows` [n] of `log` (an `EncodedLog`), whose producer
    logits are `logits` [n, T] and whose knowledge is `age_days` [n] old at each row."""
    from transfer.contract import CATEGORY_FEATURE

    age = age_days.clamp(min=0.0).float()
    return AdapterInputs(logits.float(), log.surface[rows], age, log.categorical[rows, CATEGORY_FEATURE], log.dense[rows].float(), log.ts[rows])


def fit_adapter(inputs: AdapterInputs, labels: torch.Tensor, n_surfaces: int, cfg: Config, seed: int) -> nn.ModuleDict:
    """Fit an adapter with `BCE(z_a, y)` on these rows (labels [n, T], NaN = none): `cfg.epochs`
    seeded shuffled passes of Adam; → the adapter network, frozen."""
    import torch

    from transfer.contract import label_loss  # the BCE every model trains with

    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # its initialisation leaves the caller's random stream alone
        torch.manual_seed(seed)
        network = adapter_network(n_surfaces, labels.shape[1], inputs.dense.shape[1], cfg.hidden)
    optimizer = torch.optim.Adam(network.parameters(), lr=cfg.lr)
    with torch.enable_grad():
        for _ in range(cfg.epochs):
            for batch in torch.randperm(len(labels), generator=generator).split(FIT_BATCH):
                optimizer.zero_grad()
                label_loss(adapt(network, inputs.select(batch)), labels[batch]).backward()
                optimizer.step()
    return network.eval().requires_grad_(False)


@dataclass(frozen=True)
class Correction:
    """What the adapter did to one consumer's knowledge (logged with its run)."""

    logits: torch.Tensor  # [n, T] z_a for every row (z_t where it does not apply)
    fit_rows: int  # labelled rows it was fit on
    corrected_rows: int  # rows within the fit ages, whose logits it corrected
    fit_loss_before: float  # BCE of z_t on the fit rows
    fit_loss_after: float  # BCE of z_a on them

    def metrics(self) -> dict[str, float]:
        return {"adapter_fit_rows": self.fit_rows, "adapter_corrected_rows": self.corrected_rows,
                "adapter_fit_bce_before": self.fit_loss_before, "adapter_fit_bce_after": self.fit_loss_after}


def corrected_knowledge(inputs: AdapterInputs, labels: torch.Tensor, window_end: datetime, n_surfaces: int,
                        cfg: Config, seed: int) -> Correction:
    """Fit the adapter on the rows of the last `cfg.fit_days` before `window_end` (labels [n, T]) and
    correct every row whose knowledge age lies within the fit rows' ages; a placebo corrects nothing."""
    import torch

    from transfer.contract import label_loss

    fresh = inputs.ts >= int((window_end - timedelta(days=cfg.fit_days)).timestamp())  # [n] bool
    fit = fresh & ~torch.isnan(labels).all(dim=1)
    before = float(label_loss(inputs.logits[fit], labels[fit])) if fit.any() else math.nan
    if cfg.placebo or not fit.any():
        return Correction(inputs.logits, int(fit.sum()), 0, before, before)
    rows = fit.nonzero().squeeze(1)
    network = fit_adapter(inputs.select(rows), labels[rows], n_surfaces, cfg, seed)
    ages = inputs.age_days[rows]
    within = (inputs.age_days >= ages.min()) & (inputs.age_days <= ages.max())  # [n] bool
    with torch.no_grad():
        corrected = torch.where(within.unsqueeze(1), adapt(network, inputs), inputs.logits)  # [n, T]
    after = float(label_loss(corrected[fit], labels[fit]))
    return Correction(corrected, len(rows), int(within.sum()), before, after)


def derive(stage, rows: KnowledgeRows) -> Derived:
    """The adapter, fit on the consumer's freshest labelled rows, and its corrected logits `adapted_logits` [n, T]."""
    inputs = adapter_inputs(rows.log, rows.rows, rows.logits, rows.age_days)
    correction = corrected_knowledge(inputs, rows.labels, rows.window_end, rows.n_surfaces, stage.adapter, rows.seed)
    return Derived({"adapted_logits": correction.logits}, correction.metrics())


def distill_heads(stage, shape: ConsumerShape) -> dict[str, nn.Module]:
    """The second distillation head `z_a'`: [B, H] → [B, T]."""
    from torch import nn

    return {"second": nn.Linear(shape.hidden_dim, shape.n_tasks)}


def loss(stage, heads: dict[str, nn.Module], step: Step) -> dict[str, torch.Tensor]:
    weight = stage.adapter.weight
    if weight <= 0:
        return {}
    student = heads["second"](scale_gradient(step.hidden, stage.distillation.grad_scale))  # [B, T]
    return {"adapter_kd": weight * distillation_loss(student, step.batch["adapted_logits"])}  # σ(z_a) as is
