"""The LightningModule that trains, evaluates and scores every model: teacher, domain FM or VM.

One training step, short on purpose:
1. forward the model; loss = BCE on true labels + the sum of the enabled techniques' terms
   (each technique in `adapters/`; the Student Adapter was fit before training began);
2. one optimizer step for the model and its training-only heads.
Evaluation updates NE/AUC/calibration per task; `predict_step` emits logits and embeddings.
"""

from __future__ import annotations

import lightning as L
import torch
from torch import nn

from transfer.contract import label_loss
from transfer.errors import DivergedError
from transfer.evaluation.metrics import eval_metrics
from transfer.training.techniques import StageTechniques


class RankingModule(L.LightningModule):
    """Trains `model` on the tasks at `task_columns` of the batch labels.

    A teacher serves every task (`task_columns = [0, 1, …]`); a VM serves one (`[k]`). With a stage's
    transfer `techniques`, the batches carry the knowledge columns they need (`soft_logits` [B, T],
    `teacher_embedding` [B, E], `adapted_logits` [B, T]). Techniques are training-only: `export()`
    returns the bare serving model. With `warmup_steps`, step k's learning rate is
    lr·min(1, (k + 1)/warmup_steps).
    """

    def __init__(
        self,
        model: nn.Module,
        tasks: list[str],
        task_columns: list[int],
        lr: float,
        techniques: StageTechniques | None = None,
        base_rates: torch.Tensor | None = None,
        warmup_steps: int = 0,
    ):
        super().__init__()
        self.automatic_optimization = False  # one explicit step: the loss check below stops every rank together
        self.model = model
        self.techniques = techniques
        self.tasks = tasks
        self.task_columns = task_columns
        self.lr, self.warmup_steps = lr, warmup_steps
        self.test_metrics = nn.ModuleDict({task: eval_metrics() for task in tasks})
        self._batches_done = 0
        self.label = "model"  # named in errors, e.g. "student: ig_stories_click" (set by `fit`)
        if base_rates is not None:
            self._start_at_base_rates(base_rates)

    def _start_at_base_rates(self, base_rates: torch.Tensor) -> None:
        """Output biases = logit(base rate) [T]: an untrained model predicts the prior, not 0.5."""
        prior = torch.logit(base_rates.clamp(1e-4, 1 - 1e-4))
        layers = [self.model.output_layer(), *(self.techniques.prior_heads() if self.techniques else [])]
        with torch.no_grad():
            for layer in layers:
                layer.bias.copy_(prior)

    def forward(self, batch: dict[str, torch.Tensor]):
        return self.model(batch)

    def export(self) -> nn.Module:
        """The serving model alone: no transfer heads, no adapter."""
        return self.model

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        """One step; → the model's outputs on the batch from before the step learnt from it (detached
        `logits` [B, T], `embedding` [B, E]: knowledge from training traffic, `transfer.knowledge.traffic`)
        and the step's detached `loss` (for progress lines)."""
        model_opt = self.optimizers()
        labels = batch["labels"][:, self.task_columns]  # [B, T]
        out = self.model(batch)
        loss, parts = self.loss_of(out, batch, labels)
        if not _finite_on_every_rank(loss):  # every rank stops together (none left waiting in DDP's backward)
            self._stop_on_bad_loss(loss, parts)
        model_opt.zero_grad()
        self.manual_backward(loss)
        model_opt.step()
        if self.warmup_steps:
            self.lr_schedulers().step()
        self._log_losses(loss, parts, len(labels))
        return {"logits": out.logits.detach(), "embedding": out.embedding.detach(), "loss": loss.detach()}

    def _stop_on_bad_loss(self, loss: torch.Tensor, parts: dict[str, torch.Tensor]) -> None:
        where = f"step {self.global_step + 1} (epoch {self.current_epoch + 1})"
        if torch.isfinite(loss):
            raise DivergedError(f"{self.label}: another process's training loss became non-finite at {where}")
        values = ", ".join(f"{name} {value.item():.4g}" for name, value in parts.items())
        raise DivergedError(
            f"{self.label}: the training loss became {loss.item()} at step {self.global_step + 1} (epoch {self.current_epoch + 1}; "
            f"{values}); lower the learning rate or check the data for extreme values"
        )

    def model_loss(self, batch: dict[str, torch.Tensor], labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """BCE on true labels plus every technique's terms → (total, parts by name)."""
        return self.loss_of(self.model(batch), batch, labels)

    def loss_of(self, out, batch: dict[str, torch.Tensor], labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of the model's outputs `out` (logits [B, T], embedding [B, H]) on the batch → (total, parts by name)."""
        parts = {"label": label_loss(out.logits, labels)}
        if self.techniques is not None:
            parts |= self.techniques.loss(out.logits, out.embedding, batch)
        return sum(parts.values()), parts

    def _log_losses(self, loss: torch.Tensor, parts: dict[str, torch.Tensor], batch_size: int) -> None:
        # Lightning writes logs every `log_every_n_steps` batches; logging only then keeps steps cheap.
        self._batches_done += 1
        if self._batches_done % max(self.trainer.log_every_n_steps, 1) != 0:
            return
        self.log("train_loss", loss.detach(), prog_bar=True, batch_size=batch_size)
        if len(parts) > 1:
            self.log_dict({f"train_loss_{k}": v.detach() for k, v in parts.items()}, batch_size=batch_size)

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

    def configure_optimizers(self):
        heads = list(self.techniques.parameters()) if self.techniques is not None else []
        trainable = [p for p in [*self.model.parameters(), *heads] if p.requires_grad]
        optimizer = torch.optim.Adam(trainable, lr=self.lr)
        if not self.warmup_steps:
            return optimizer
        warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / self.warmup_steps))
        return {"optimizer": optimizer, "lr_scheduler": warmup}


def _finite_on_every_rank(loss: torch.Tensor) -> bool:
    """Whether the loss is finite in this process and, in a multi-process run, in every other one."""
    bad = (~torch.isfinite(loss.detach())).float()
    if torch.distributed.is_initialized():
        torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.MAX)
    return not bool(bad)
