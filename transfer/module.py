"""The LightningModule that trains, evaluates and scores every model, teacher or student.

The training step is short on purpose: forward, loss (true labels, plus soft labels when the
student is distilled), log. Evaluation updates NE/AUC/calibration per task over the test loader.
"""

from __future__ import annotations

import lightning as L
import torch
from torch import nn

from transfer.losses import ranking_loss
from transfer.metrics import eval_metrics


class RankingModule(L.LightningModule):
    """Trains `model` on the tasks at `task_columns` of the batch labels.

    A teacher serves every task (`task_columns = [0, 1, …]`); a VM serves one (`[k]`). With
    `distill_weight > 0` the batches carry `soft_logits` [B, len(task_columns)] from the producer.
    """

    def __init__(self, model: nn.Module, tasks: list[str], task_columns: list[int], lr: float, distill_weight: float = 0.0):
        super().__init__()
        self.model = model
        self.tasks = tasks
        self.task_columns = task_columns
        self.lr = lr
        self.distill_weight = distill_weight
        self.test_metrics = nn.ModuleDict({task: eval_metrics() for task in tasks})

    def forward(self, batch: dict[str, torch.Tensor]):
        return self.model(batch)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self.model(batch).logits  # [B, T]
        labels = batch["labels"][:, self.task_columns]  # [B, T]
        loss = ranking_loss(logits, labels, batch.get("soft_logits"), self.distill_weight)
        self.log("train_loss", loss, on_step=True, prog_bar=True, batch_size=len(labels))
        return loss

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits = self.model(batch).logits  # [B, T]
        labels = batch["labels"][:, self.task_columns]  # [B, T]
        for i, task in enumerate(self.tasks):
            known = ~torch.isnan(labels[:, i])
            self.test_metrics[task].update(logits[known, i], labels[known, i])

    def on_test_epoch_end(self) -> None:
        for task in self.tasks:
            for name, value in self.test_metrics[task].compute().items():
                self.log(f"eval_{task}_{name}", value, sync_dist=False)
            self.test_metrics[task].reset()

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int):
        out = self.model(batch)
        return batch["row"], out.logits, out.embedding

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)
