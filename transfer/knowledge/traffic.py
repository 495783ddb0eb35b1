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
import copy
from pathlib import Path

import lightning as L
import polars as pl
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.pytorch.callbacks import Callback

from transfer.data.batches import WindowBatches
from transfer.data.cache import write_checksum
from transfer.data.encoding import EncodedLog
from transfer.knowledge.table import KnowledgeWriter, Provenance
from transfer.util.atomic import atomic_path


class _OpenTable:
    """A knowledge table being written at a temporary path: `finish` renames it into place with its
    checksum, `abandon` removes it (a half-written table is never renamed)."""

    def __init__(self, path: Path, tasks: list[str], provenance: Provenance, embedding_dim: int, key_dtype: pl.DataType):
        self.path, self._stack = path, contextlib.ExitStack()
        tmp = self._stack.enter_context(atomic_path(path))
        self.writer = KnowledgeWriter(tmp, tasks, provenance, embedding_dim, key_dtype)

    def finish(self) -> None:
        self.writer.close()
        self._stack.close()  # renamed into place
        write_checksum(self.path)

    def abandon(self, exception: BaseException) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
        self._stack.__exit__(type(exception), exception, exception.__traceback__)


class TrafficKnowledge(Callback):
    """Keeps the teacher's training-step outputs for `wanted` rows (a [n_log] bool mask) of the
    first epoch in a knowledge table at `path` (`example_id`: [n_log] the log's example ids)."""

    def __init__(self, path: Path, wanted: torch.Tensor, example_id: pl.Series, tasks: list[str], provenance: Provenance,
                 embedding_dim: int):
        self.path, self.wanted, self.example_id = path, wanted, example_id
        self.tasks, self.provenance, self.embedding_dim = tasks, provenance, embedding_dim
        self._open: _OpenTable | None = None
        self.rows = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == 0:  # a training resumed at a later epoch finished its table already
            self._open = _OpenTable(self.path, self.tasks, self.provenance, self.embedding_dim, self.example_id.dtype)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        if self._open is None:
            return
        rows = batch["row"].cpu()  # [B]
        keep = self.wanted[rows]  # [B]
        if keep.any():
            kept = rows[keep]
            on_device = keep.to(outputs["logits"].device)
            self._open.writer.append(self.example_id.gather(kept.numpy()), outputs["logits"][on_device].float().cpu(),
                                     outputs["embedding"][on_device].float().cpu())
            self.rows += len(kept)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._open is not None:
            self._open.finish()
            self._open = None

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if self._open is not None:
            self._open.abandon(exception)
            self._open = None


class LaggedTrafficKnowledge(Callback):
    """Knowledge `lag_days` behind the training traffic: a wanted row of day D (the UTC day of its
    timestamp) is scored, in eval mode, by the model as it was before its first training batch
    holding a row of day D − `lag_days` — it had learnt from every earlier day and from none after
    (a day before the training's first is scored by the weights it started from). A row's knowledge
    is so between `lag_days` and `lag_days` + 1 days old. The teacher must train through time (days
    in order): once a batch's earliest day is m, every row of a day before m has been seen, so those
    days are scored then and the snapshots no later day needs are dropped — at most `lag_days` + 2
    copies of the weights (kept on the CPU) and the starting weights are held. Every process takes
    its snapshot at the same step (the newest day of the step is agreed over them). Writes the table
    as `TrafficKnowledge` does (first epoch only, renamed into place with its checksum at the end).

    wanted: [n_log] bool, the rows to keep; `log` the encoded log they index (their features, histories,
    example ids and timestamps); `history_length` the model's."""

    def __init__(self, path: Path, wanted: torch.Tensor, log: EncodedLog, tasks: list[str], provenance: Provenance,
                 embedding_dim: int, history_length: int, lag_days: int, scoring_batch: int = 4096):
        if lag_days < 1:
            raise ValueError(f"lag_days: found {lag_days}; allowed: >= 1 (0 is TrafficKnowledge)")
        self.path, self.wanted, self.encoded, self.example_id = path, wanted, log, log.example_id
        self.tasks, self.provenance, self.embedding_dim = tasks, provenance, embedding_dim
        self.history_length, self.lag_days, self.scoring_batch = history_length, lag_days, scoring_batch
        self.day_of = log.ts // 86_400  # [n_log] each row's UTC day
        self._open: _OpenTable | None = None
        self._reset()
        self.rows = 0

    def _reset(self) -> None:
        self._snapshots: dict[int, dict[str, torch.Tensor]] = {}  # day → the weights before its first batch (CPU)
        self._start: tuple[int, dict[str, torch.Tensor]] | None = None  # the first day and the weights training started from
        self._pending: dict[int, list[torch.Tensor]] = {}  # day → its wanted rows seen so far
        self._latest_day: int | None = None
        self._scorer: torch.nn.Module | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == 0:
            self._open = _OpenTable(self.path, self.tasks, self.provenance, self.embedding_dim, self.example_id.dtype)
            self._reset()
            self._scorer = copy.deepcopy(pl_module.model).eval()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if self._open is None:
            return
        days = self.day_of[batch["row"].cpu()]
        newest = int(trainer.strategy.reduce(torch.tensor(int(days.max()), device=pl_module.device), reduce_op="max"))
        if self._latest_day is not None and newest <= self._latest_day:
            return
        weights = {name: tensor.detach().to("cpu", copy=True) for name, tensor in pl_module.model.state_dict().items()}
        if self._latest_day is None:
            self._start = int(days.min()), weights
        first = int(days.min()) if self._latest_day is None else self._latest_day + 1
        for day in range(first, newest + 1):  # days without rows of their own share the next day's weights
            self._snapshots[day] = weights
        self._latest_day = newest

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        if self._open is None:
            return
        rows = batch["row"].cpu()  # [B]
        kept = rows[self.wanted[rows]]
        days = self.day_of[kept]
        for day in days.unique().tolist():
            self._pending.setdefault(day, []).append(kept[days == day])
        self._score_days_before(int(self.day_of[rows].min()))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._open is not None:
            self._score_days_before(None)
            self._open.finish()
            self._open = None
            self._reset()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if self._open is not None:
            self._open.abandon(exception)
            self._open = None
            self._reset()

    def _weights_before(self, day: int) -> dict[str, torch.Tensor]:
        """The weights from before the first batch of `day` (before training started, for an earlier day)."""
        first_day, start = self._start
        return self._snapshots[day] if day >= first_day else start

    def _score_days_before(self, day: int | None) -> None:
        """Score the pending rows of every day before `day` (None: all) with the weights `lag_days`
        earlier, then drop the snapshots no later day needs."""
        for done in sorted(d for d in self._pending if day is None or d < day):
            self._scorer.load_state_dict(self._weights_before(done - self.lag_days))
            self._write(torch.cat(self._pending.pop(done)))
        if day is not None:
            for old in [d for d in self._snapshots if d < day - self.lag_days]:
                del self._snapshots[old]

    @torch.no_grad()
    def _write(self, rows: torch.Tensor) -> None:
        """Score `rows` [k] with the scorer (on its device) and append them to the table."""
        writer, device = self._open.writer, next(self._scorer.parameters()).device
        for chunk in rows.split(self.scoring_batch):
            batch = move_data_to_device(WindowBatches(self.encoded, chunk, self.history_length)[torch.arange(len(chunk))], device)
            out = self._scorer(batch)
            writer.append(self.example_id.gather(chunk.numpy()), out.logits.float().cpu(), out.embedding.float().cpu())
            self.rows += len(chunk)
