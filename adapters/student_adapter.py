"""The Student Adapter (design §8): a small model `A(z_t, surface, knowledge age) → z_a`, trained with
`BCE(z_a, y)` on the freshest labelled rows a consumer sees, corrects the producer's stale logits;
`σ(z_a)`, gradients stopped, supervises a second distillation head `z_a'` on the consumer's trunk
(read through the gradient scaler β). Each training step updates the adapter first, then the
consumer: `L = BCE(z_s, y) + … + w_a·BCE(z_a', σ(z_a))`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import lightning as L
import torch
from torch import nn

from adapters.distillation import distillation_loss
from adapters.technique import ConsumerShape, Technique, Trunk, check_non_negative, check_positive
from transfer.training.losses import label_loss  # the BCE every model trains with


@dataclass
class AdapterConfig:
    """The Student Adapter: corrects stale producer logits from the freshest labels."""

    enabled: bool = False
    fit_days: int = 3  # the adapter learns from the last `fit_days` of the consumer's window
    weight: float = 3.0  # weight of the second distillation head, supervised by σ(z_a)
    hidden: int = 16
    lr: float = 0.03


def enabled(cfg: AdapterConfig) -> bool:
    return cfg.enabled


def tag(cfg: AdapterConfig) -> str:
    return "adapter"


def check(cfg: AdapterConfig, key: str, window_days: int) -> None:
    """`window_days`: the consumers' window, which the fit window must fit in."""
    check_non_negative(f"{key}.weight", cfg.weight)
    for name in ("lr", "hidden", "fit_days"):
        check_positive(f"{key}.{name}", getattr(cfg, name))
    if cfg.enabled and cfg.fit_days > window_days:
        raise ValueError(f"{key}.fit_days: found {cfg.fit_days}; allowed: at most the consumers' window ({window_days} days)")


def batch_columns(ts: torch.Tensor, cutoff: datetime, window_end: datetime, fit_days: int) -> dict[str, torch.Tensor]:
    """Each training row's knowledge age in days (`knowledge_age` [N] float) and whether it lies in
    the last `fit_days` of the consumer's window (`fresh` [N] bool). ts: [N] int64 seconds (UTC)."""
    age = ((ts - int(cutoff.timestamp())) / 86400.0).clamp(min=0.0).float()
    fresh_from = window_end - timedelta(days=fit_days)
    return {"knowledge_age": age, "fresh": ts >= int(fresh_from.timestamp())}


class StudentAdapter(nn.Module):
    """forward(teacher_logits [B, T], surface [B] int, age_days [B] float) → corrected logits [B, T].
    The last layer starts at zero, so an untrained adapter passes the producer's logits through.

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


class AdapterTechnique(Technique):
    """The adapter (its own optimizer, kept out of DDP) and the head it supervises."""

    columns = ("soft_logits", "knowledge_age", "fresh")
    steps_alone = "adapter"  # it steps on the fresh rows before the consumer's forward (see `step_adapter`)

    def __init__(self, weight: float, hidden: int = 16, lr: float = 0.03):
        super().__init__()
        self.weight, self.hidden, self.lr = weight, hidden, lr
        self.head: nn.Linear | None = None
        self.adapter: StudentAdapter | None = None

    def distill_heads(self, shape: ConsumerShape) -> None:
        self.head = nn.Linear(shape.hidden_dim, shape.n_tasks)

    def models(self, shape: ConsumerShape) -> None:
        self.adapter = StudentAdapter(shape.n_surfaces, shape.n_tasks, self.hidden)

    def prior_heads(self) -> list[nn.Linear]:
        return [self.head]

    def trainable(self) -> list[nn.Parameter]:
        return list(self.head.parameters())

    def optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.adapter.parameters(), lr=self.lr)

    @torch.no_grad()
    def corrected_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The adapter's `z_a` for every row, gradients stopped. → [B, T]"""
        return self.adapter(batch["soft_logits"], batch["surface"], batch["knowledge_age"])

    def before_step(self, module: L.LightningModule, optimizer, batch: dict[str, torch.Tensor], labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Fit the adapter on the batch's fresh rows, then → `adapted_logits` [B, T] for every row (detached)."""
        step_adapter(self.adapter, module, optimizer, batch, labels)
        return {"adapted_logits": self.corrected_logits(batch)}

    def loss(self, serving_logits: torch.Tensor, trunk: Trunk, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.weight <= 0:
            return {}
        return {"adapter_kd": self.weight * distillation_loss(self.head(trunk.scaled), batch["adapted_logits"])}  # σ(z_a) as is


def step_adapter(adapter: StudentAdapter, module: L.LightningModule, optimizer, batch: dict[str, torch.Tensor], labels: torch.Tensor) -> None:
    """One optimizer step of the adapter on the batch's fresh rows (`BCE(z_a, y)`; labels [B, T]).

    The adapter is kept out of DDP: under several processes each rank backpropagates its own fresh
    rows and the gradients are summed weighted by row counts, so a step is the single-process step
    over the whole batch's fresh rows (and no rank steps alone)."""
    fresh = batch["fresh"]  # [B] bool
    distributed = torch.distributed.is_initialized()
    count = (~torch.isnan(labels[fresh])).sum().float()  # [] this rank's labelled fresh entries (what the BCE averages)
    total = count.clone() if distributed else count
    if distributed:
        torch.distributed.all_reduce(total)
    if total <= 0:
        return
    optimizer.zero_grad()
    if fresh.any():
        z_a = adapter(batch["soft_logits"][fresh], batch["surface"][fresh], batch["knowledge_age"][fresh])
        loss = label_loss(z_a, labels[fresh])
        if distributed:  # outside DDP's reducer, through the precision plugin (loss scaling)
            module.trainer.precision_plugin.pre_backward(loss * count / total, module).backward()
        else:
            module.manual_backward(loss)
    if distributed:
        _sum_gradients(adapter)
    optimizer.step()


def _sum_gradients(module: nn.Module) -> None:
    """Sum each parameter's gradient over the ranks (a rank without fresh rows contributes zeros)."""
    for parameter in module.parameters():
        if parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
        torch.distributed.all_reduce(parameter.grad)


def build(cfg: AdapterConfig) -> AdapterTechnique:
    return AdapterTechnique(cfg.weight, cfg.hidden, cfg.lr)
