"""Representation learning (design §8): a training-only projection head maps the consumer's hidden
state into the producer's embedding space; loss cosine, MSE or InfoNCE (in-batch negatives) against
the stored embedding. The head is dropped at export, so serving cost is unchanged."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from adapters.technique import ConsumerShape, Knob, Step
from transfer.util.checks import check_non_negative, check_one_of, check_positive

if TYPE_CHECKING:
    import torch
    from torch import nn

KEY = "representation"
SUMMARY = "the consumer's hidden state aligned with the producer's embedding through a projection head"
SERVING = "none: the projection head is dropped at export"
LOSSES = ("cosine", "mse", "infonce")


@dataclass
class RepresentationConfig:
    """Align the consumer's hidden state with the producer's embedding through a projection head."""

    weight: float = 0.0  # 0 turns it off
    loss: str = "cosine"  # cosine, mse or infonce (in-batch negatives)
    temperature: float = 0.1  # InfoNCE only

    def check(self, key: str, window_days: int) -> None:
        check_one_of(f"{key}.loss", self.loss, LOSSES)
        check_non_negative(f"{key}.weight", self.weight)
        check_positive(f"{key}.temperature", self.temperature)


Config = RepresentationConfig  # every technique's knobs go by this name (`adapters.technique`)


def enabled(stage) -> bool:
    return stage.representation.weight > 0


def tag(stage) -> str:
    return f"representation_{stage.representation.loss}"


def reference(stage) -> Config:
    return Config()  # off


def columns(stage) -> tuple[str, ...]:
    return ("teacher_embedding",)


def knobs(stage) -> list[Knob]:
    return [Knob("representation.weight", 0.01, 2.0)]


def representation_loss(predicted: torch.Tensor, target: torch.Tensor, kind: str, temperature: float = 0.1) -> torch.Tensor:
    """Align projected hidden states with the producer's embeddings. predicted, target: [B, E] → scalar.

    cosine: mean(1 − cos); mse: mean squared error; infonce: cross-entropy of each row picking its
    own target among the batch's targets (cosine similarities / temperature).
    """
    import torch
    import torch.nn.functional as F

    if kind == "cosine":
        return (1.0 - F.cosine_similarity(predicted, target, dim=-1)).mean()
    if kind == "mse":
        return F.mse_loss(predicted, target)
    if kind == "infonce":
        similarity = F.normalize(predicted, dim=-1) @ F.normalize(target, dim=-1).T / temperature  # [B, B]
        return F.cross_entropy(similarity, torch.arange(len(predicted), device=predicted.device))
    raise ValueError(f"representation loss '{kind}'; allowed: {', '.join(LOSSES)}")


def heads(stage, shape: ConsumerShape) -> dict[str, nn.Module]:
    """The projection head: [B, H] → [B, E]."""
    from torch import nn

    h = shape.hidden_dim
    return {"projection": nn.Sequential(nn.Linear(h, h), nn.ReLU(), nn.Linear(h, shape.producer_dim))}


def loss(stage, heads: dict[str, nn.Module], step: Step) -> dict[str, torch.Tensor]:
    cfg = stage.representation
    target = step.batch["teacher_embedding"].float()  # [B, E]
    return {"representation": cfg.weight * representation_loss(heads["projection"](step.hidden), target, cfg.loss, cfg.temperature)}
