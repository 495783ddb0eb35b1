"""The LightningModule that trains, evaluates and scores every model: teacher, domain FM or VM.

One training step, short on purpose:
1. with a Student Adapter: update the adapter on the batch's fresh rows, then score all rows
   with it (gradients stopped) — the adapter first, then the model;
2. forward the model and its transfer heads; loss = BCE on true labels + the transfer terms;
3. one optimizer step for the model and its heads.
Evaluation updates NE/AUC/calibration per task; `predict_step` emits logits and embeddings.
"""

from __future__ import annotations

import lightning as L
import torch
from torch import nn

from adapters import StudentAdapter
from transfer.errors import TrainingError
from transfer.heads import TransferHeads
from transfer.losses import label_loss
from transfer.metrics import eval_metrics
from transfer.objective import TransferTerms, transfer_losses


class RankingModule(L.LightningModule):
    """Trains `model` on the tasks at `task_columns` of the batch labels.

    A teacher serves every task (`task_columns = [0, 1, …]`); a VM serves one (`[k]`). With transfer
    `terms`, the batches carry `soft_logits` [B, T] (and `teacher_embedding` [B, E], `knowledge_age`
    [B], `fresh` [B] bool where the techniques need them). `heads` and `adapter` are training-only:
    `export()` returns the bare serving model.
    """

    def __init__(
        self,
        model: nn.Module,
        tasks: list[str],
        task_columns: list[int],
        lr: float,
        terms: TransferTerms | None = None,
        heads: TransferHeads | None = None,
        adapter: StudentAdapter | None = None,
        adapter_lr: float = 5e-3,
        base_rates: torch.Tensor | None = None,
    ):
        super().__init__()
        self.automatic_optimization = False  # the adapter steps before the model, in the same batch
        self.model = model
        self.heads = heads
        self.adapter = adapter
        self.tasks = tasks
        self.task_columns = task_columns
        self.lr, self.adapter_lr = lr, adapter_lr
        self.terms = terms or TransferTerms()
        self.test_metrics = nn.ModuleDict({task: eval_metrics() for task in tasks})
        self._batches_done = 0
        self.label = "model"  # named in errors, e.g. "student: ig_stories_click" (set by `fit`)
        if base_rates is not None:
            self._start_at_base_rates(base_rates)

    def _start_at_base_rates(self, base_rates: torch.Tensor) -> None:
        """Output biases = logit(base rate) [T]: an untrained model predicts the prior, not 0.5."""
        prior = torch.logit(base_rates.clamp(1e-4, 1 - 1e-4))
        layers = [self.model.output_layer()]
        if self.heads is not None:
            layers += [head for head in (self.heads.distill, self.heads.adapted) if head is not None]
        with torch.no_grad():
            for layer in layers:
                layer.bias.copy_(prior)

    def forward(self, batch: dict[str, torch.Tensor]):
        return self.model(batch)

    def export(self) -> nn.Module:
        """The serving model alone: no transfer heads, no adapter."""
        return self.model

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        optimizers = self.optimizers()
        model_opt, adapter_opt = optimizers if isinstance(optimizers, list) else (optimizers, None)
        labels = batch["labels"][:, self.task_columns]  # [B, T]
        adapted = self._adapter_step(batch, labels, adapter_opt) if self.adapter is not None else None
        loss, parts = self.model_loss(batch, labels, adapted)
        if not _finite_on_every_rank(loss):  # every rank stops together (none left waiting in DDP's backward)
            self._stop_on_bad_loss(loss, parts)
        model_opt.zero_grad()
        self.manual_backward(loss)
        model_opt.step()
        self._log_losses(loss, parts, len(labels))

    def _stop_on_bad_loss(self, loss: torch.Tensor, parts: dict[str, torch.Tensor]) -> None:
        where = f"step {self.global_step + 1} (epoch {self.current_epoch + 1})"
        if torch.isfinite(loss):
            raise TrainingError(f"{self.label}: another process's training loss became non-finite at {where}")
        values = ", ".join(f"{name} {value.item():.4g}" for name, value in parts.items())
        raise TrainingError(
            f"{self.label}: the training loss became {loss.item()} at step {self.global_step + 1} (epoch {self.current_epoch + 1}; "
            f"{values}); lower the learning rate or check the data for extreme values"
        )

    def model_loss(
        self, batch: dict[str, torch.Tensor], labels: torch.Tensor, adapted: torch.Tensor | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """BCE on true labels plus the transfer terms → (total, parts by name)."""
        out = self.model(batch)
        heads = self.heads(out.embedding) if self.heads is not None else {}
        parts = {"label": label_loss(out.logits, labels)}
        if self.terms.needs_knowledge:
            parts |= transfer_losses(out.logits, heads, batch, adapted, self.terms)
        return sum(parts.values()), parts

    def _adapter_step(
        self, batch: dict[str, torch.Tensor], labels: torch.Tensor, optimizer
    ) -> torch.Tensor:
        """Fit the adapter on the batch's fresh rows; → its corrected logits for every row [B, T], detached.

        The adapter is kept out of DDP (see `setup`): under several processes each rank backpropagates
        its own fresh rows and the gradients are summed weighted by row counts, so a step is the
        single-process step over the whole batch's fresh rows (and no rank steps alone)."""
        fresh = batch["fresh"]  # [B] bool
        distributed = torch.distributed.is_initialized()
        count = (~torch.isnan(labels[fresh])).sum().float()  # [] this rank's labelled fresh entries (what the BCE averages)
        if distributed:
            total = count.clone()
            torch.distributed.all_reduce(total)
        else:
            total = count
        if total > 0:
            optimizer.zero_grad()
            if fresh.any():
                z_a = self.adapter(batch["soft_logits"][fresh], batch["surface"][fresh], batch["knowledge_age"][fresh])
                loss = label_loss(z_a, labels[fresh])
                if distributed:  # outside DDP's reducer, through the precision plugin (loss scaling)
                    self.trainer.precision_plugin.pre_backward(loss * count / total, self).backward()
                else:
                    self.manual_backward(loss)
            if distributed:
                _sum_gradients(self.adapter)
            optimizer.step()
        return self.corrected_logits(batch)

    def setup(self, stage: str) -> None:
        """Before Lightning wraps the module in DDP: leave the adapter out (it steps on the fresh rows
        before the model's forward, a second backward DDP's reducer cannot take; `_adapter_step` syncs it)."""
        if self.adapter is not None and torch.distributed.is_initialized():
            names = [f"adapter.{name}" for name in self.adapter.state_dict()]
            torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self, names)

    @torch.no_grad()
    def corrected_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The adapter's `z_a` for every row, gradients stopped. → [B, T]"""
        return self.adapter(batch["soft_logits"], batch["surface"], batch["knowledge_age"])

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
        trainable = [p for p in [*self.model.parameters(), *(self.heads.parameters() if self.heads else [])] if p.requires_grad]
        model_opt = torch.optim.Adam(trainable, lr=self.lr)
        if self.adapter is None:
            return model_opt
        return [model_opt, torch.optim.Adam(self.adapter.parameters(), lr=self.adapter_lr)]


def _sum_gradients(module: nn.Module) -> None:
    """Sum each parameter's gradient over the ranks (a rank without fresh rows contributes zeros)."""
    for parameter in module.parameters():
        if parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
        torch.distributed.all_reduce(parameter.grad)


def _finite_on_every_rank(loss: torch.Tensor) -> bool:
    """Whether the loss is finite in this process and, in a multi-process run, in every other one."""
    bad = (~torch.isfinite(loss.detach())).float()
    if torch.distributed.is_initialized():
        torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.MAX)
    return not bool(bad)
