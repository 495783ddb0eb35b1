"""A consumer's training module (a domain FM or a VM): its model with a stage's techniques built onto
it (producer parts imported, heads made; `transfer.training.techniques`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from adapters.technique import ConsumerShape, FeatureSource
from transfer.config.recipe import StageConfig
from transfer.data.prepare import PreparedData
from transfer.training.module import RankingModule
from transfer.training.techniques import StageTechniques


@dataclass(frozen=True)
class ConsumerTarget:
    """What a consumer serves and learns from."""

    tasks: list[str]
    task_columns: list[int]  # their columns in the log's labels
    rows: torch.Tensor  # [n] its training rows (the consumers' window, its surfaces)

    def base_rates(self, data: PreparedData) -> torch.Tensor:
        """Mean label per task over the training rows. → [T]"""
        return data.base_rates(self.rows, self.task_columns)


def transfer_module(model: nn.Module, target: ConsumerTarget, lr: float, stage: StageConfig, producer_model: nn.Module,
                    n_surfaces: int, base_rates: torch.Tensor, source: FeatureSource | None = None) -> RankingModule:
    """A consumer's training module with the stage's techniques, taught by `producer_model` (whose
    tables techniques that add inputs read through `source`)."""
    shape = ConsumerShape(model.embedding_dim, len(target.tasks), producer_model.embedding_dim, n_surfaces)
    techniques = StageTechniques(stage, producer_model, model, shape, source)
    return RankingModule(model, target.tasks, target.task_columns, lr, techniques, base_rates)
