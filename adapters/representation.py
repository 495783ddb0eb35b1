"""Representation learning (design §8): a training-only projection head maps the consumer's hidden
state into the producer's embedding space; loss cosine, MSE or InfoNCE (in-batch negatives) against
the stored embedding. The head is dropped at export, so serving cost is unchanged."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from adapters.technique import ConsumerShape, Technique, Trunk
from transfer.config.techniques import LOSSES, RepresentationConfig  # its recipe knobs and their checks


def enabled(cfg: RepresentationConfig) -> bool:
    return cfg.weight > 0


def tag(cfg: RepresentationConfig) -> str:
    return f"representation_{cfg.loss}"


def representation_loss(predicted: torch.Tensor, target: torch.Tensor, kind: str, temperature: float = 0.1) -> torch.Tensor:
    """Align projected hidden states with the producer's embeddings. predicted, target: [B, E] → scalar.

    cosine: mean(1 − cos); mse: mean squared error; infonce: cross-entropy of each row picking its
    own target among the batch's targets (cosine similarities / temperature).
    """
    if kind == "cosine":
        return (1.0 - F.cosine_similarity(predicted, target, dim=-1)).mean()
    if kind == "mse":
        return F.mse_loss(predicted, target)
    if kind == "infonce":
        similarity = F.normalize(predicted, dim=-1) @ F.normalize(target, dim=-1).T / temperature  # [B, B]
        return F.cross_entropy(similarity, torch.arange(len(predicted), device=predicted.device))
    raise ValueError(f"representation loss '{kind}'; allowed: {', '.join(LOSSES)}")


class Representation(Technique):
    """A projection head [B, H] → [B, E] pulled toward the producer's embedding."""

    columns = ("teacher_embedding",)

    def __init__(self, weight: float, kind: str = "cosine", temperature: float = 0.1):
        super().__init__()
        self.weight, self.kind, self.temperature = weight, kind, temperature
        self.projection: nn.Module | None = None

    def heads(self, shape: ConsumerShape) -> None:
        h = shape.hidden_dim
        self.projection = nn.Sequential(nn.Linear(h, h), nn.ReLU(), nn.Linear(h, shape.producer_dim))

    def loss(self, serving_logits: torch.Tensor, trunk: Trunk, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        target = batch["teacher_embedding"].float()  # [B, E]
        aligned = representation_loss(self.projection(trunk.hidden), target, self.kind, self.temperature)
        return {"representation": self.weight * aligned}


def build(cfg: RepresentationConfig) -> Representation:
    return Representation(cfg.weight, cfg.loss, cfg.temperature)
