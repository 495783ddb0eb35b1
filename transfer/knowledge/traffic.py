"""Knowledge from training traffic (GEM shares traffic between training and knowledge generation).

A teacher that trains through time in order computes, in each training step's forward pass, its
logits and embedding for the batch *before* the optimizer learns from that batch: out-of-sample
knowledge for every row it trains on, with no extra forward pass. `TrafficKnowledge` is the
Lightning callback that keeps those outputs for the consumers' rows during the first epoch and
writes them as a knowledge table (the same table a separate scoring pass writes; this rank's
shard in a multi-process run), renamed into place with its checksum when the epoch ends — before
the epoch's checkpoint, so a training resumed from a later epoch finds the table finished.

Within a day, rows are shuffled: a row may be scored after the teacher trained on later rows of
the same day, never after it trained on the row itself.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import lightning as L
import polars as pl
import torch
from lightning.pytorch.callbacks import Callback

from transfer.data.cache import write_checksum
from transfer.knowledge.table import KnowledgeWriter, Provenance
from transfer.util.atomic import atomic_path


class TrafficKnowledge(Callback):
    """Keeps the teacher's training-step outputs for `wanted` rows (a [n_log] bool mask) of the
    first epoch in a knowledge table at `path` (`example_id`: [n_log] the log's example ids)."""

    def __init__(self, path: Path, wanted: torch.Tensor, example_id: pl.Series, tasks: list[str], provenance: Provenance,
                 embedding_dim: int):
        self.path, self.wanted, self.example_id = path, wanted, example_id
        self.tasks, self.provenance, self.embedding_dim = tasks, provenance, embedding_dim
        self._open: tuple[contextlib.ExitStack, KnowledgeWriter] | None = None
        self.rows = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == 0:  # a training resumed at a later epoch finished its table already
            stack = contextlib.ExitStack()
            tmp = stack.enter_context(atomic_path(self.path))
            self._open = stack, KnowledgeWriter(tmp, self.tasks, self.provenance, self.embedding_dim, self.example_id.dtype)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        if self._open is None:
            return
        rows = batch["row"]  # [B]
        keep = self.wanted[rows]  # [B]
        if keep.any():
            kept = rows[keep]
            self._open[1].append(self.example_id.gather(kept.numpy()), outputs["logits"][keep].float(), outputs["embedding"][keep].float())
            self.rows += len(kept)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._open is not None:
            stack, writer = self._open
            self._open = None
            writer.close()
            stack.close()  # renamed into place
            write_checksum(self.path)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if self._open is not None:  # the half-written table is removed, never renamed
            stack, writer = self._open
            self._open = None
            with contextlib.suppress(Exception):
                writer.close()
            stack.__exit__(type(exception), exception, exception.__traceback__)
