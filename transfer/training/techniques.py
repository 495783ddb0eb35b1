"""A stage's transfer techniques built onto one consumer: their training-only heads as parameters of
the training module, and their loss terms in its training step. The techniques themselves are the
modules of `adapters/` (this module names none of them)."""

from __future__ import annotations

import torch
from torch import nn

import adapters
from adapters.technique import ConsumerShape, FeatureSource, Step


class StageTechniques(nn.Module):
    """The enabled techniques of `stage` (a recipe `StageConfig`) for one consumer.

    Built in a fixed order: every technique's `prepare` (producer parts imported), then every
    technique's `add_inputs` (inputs from the producer's tables, read through `source`), then every
    technique's distillation heads, then every other head, so a recipe's random initialisation never
    depends on which file a technique lives in.
    """

    def __init__(self, stage, producer: nn.Module, consumer: nn.Module, shape: ConsumerShape, source: FeatureSource | None = None):
        super().__init__()
        self.stage = stage
        self.keys = [technique.KEY for technique in adapters.enabled(stage)]  # names, not modules: this object deep-copies and pickles
        for technique in self._with("prepare"):
            technique.prepare(stage, producer, consumer)
        for technique in self._with("add_inputs"):
            if source is None:
                raise ValueError(f"{technique.KEY}: needs its producer's tables (a FeatureSource), and none was given")
            technique.add_inputs(stage, consumer, source)
        self.distill = nn.ModuleDict({t.KEY: nn.ModuleDict(t.distill_heads(stage, shape)) for t in self._with("distill_heads")})
        self.plain = nn.ModuleDict({t.KEY: nn.ModuleDict(t.heads(stage, shape)) for t in self._with("heads")})

    def _with(self, hook: str) -> list:
        """The enabled technique modules that provide `hook`."""
        return [technique for technique in map(adapters.by_key, self.keys) if hasattr(technique, hook)]

    def prior_heads(self) -> list[nn.Linear]:
        """The distillation heads ([B, H] → [B, T] logits), whose bias starts at the task's base rate."""
        return [head for heads in self.distill.values() for head in heads.values()]

    def loss(self, serving_logits: torch.Tensor, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Every enabled technique's weighted terms, by name. serving_logits [B, T], hidden [B, H]."""
        step = Step(serving_logits, hidden, batch)
        parts: dict[str, torch.Tensor] = {}
        for technique in self._with("loss"):
            heads = {**self._heads(self.distill, technique), **self._heads(self.plain, technique)}
            parts |= technique.loss(self.stage, heads, step)
        return parts

    @staticmethod
    def _heads(group: nn.ModuleDict, technique) -> dict[str, nn.Module]:
        return dict(group[technique.KEY].items()) if technique.KEY in group else {}
