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
        rows = batch["row"]  # [B]
        keep = self.wanted[rows]  # [B]
        if keep.any():
            kept = rows[keep]
            self._open.writer.append(self.example_id.gather(kept.numpy()), outputs["logits"][keep].float(), outputs["embedding"][keep].float())
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
    holding a row of day D − `lag_days` — it had learnt from every earlier day and from none after.
    A row's knowledge is so between `lag_days` and `lag_days` + 1 days old. The teacher must train
    through time (days in order): once a batch's earliest day is m, every row of a day before m has
    been seen, so those days are scored then and the snapshots no later day needs are dropped —
    at most `lag_days` + 1 copies of the weights are held. Writes the table as `TrafficKnowledge`
    does (first epoch only, renamed into place with its checksum at the epoch's end).

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
        self._snapshots: dict[int, dict[str, torch.Tensor]] = {}  # day → the weights before its first batch
        self._pending: dict[int, list[torch.Tensor]] = {}  # day → its wanted rows seen so far
        self._latest_day: int | None = None
        self._scorer: torch.nn.Module | None = None
        self.rows = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == 0:
            self._open = _OpenTable(self.path, self.tasks, self.provenance, self.embedding_dim, self.example_id.dtype)
            self._scorer = copy.deepcopy(pl_module.model).eval()
            self._snapshots, self._pending, self._latest_day = {}, {}, None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if self._open is None:
            return
        newest = int(self.day_of[batch["row"]].max())
        if self._latest_day is None or newest > self._latest_day:
            weights = {name: tensor.detach().clone() for name, tensor in pl_module.model.state_dict().items()}
            first = newest if self._latest_day is None else self._latest_day + 1
            for day in range(first, newest + 1):  # days without rows share the weights of the next day that has some
                self._snapshots[day] = weights
            self._latest_day = newest

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        if self._open is None:
            return
        rows = batch["row"]  # [B]
        kept = rows[self.wanted[rows]]
        days = self.day_of[kept]
        for day in days.unique().tolist():
            self._pending.setdefault(day, []).append(kept[days == day])
        earliest = int(self.day_of[rows].min())
        self._score_days_before(earliest)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._open is not None:
            self._score_days_before(None)
            self._open.finish()
            self._open, self._scorer, self._snapshots = None, None, {}

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if self._open is not None:
            self._open.abandon(exception)
            self._open, self._scorer, self._snapshots = None, None, {}

    def _score_days_before(self, day: int | None) -> None:
        """Score the pending rows of every day before `day` (None: all) with the weights `lag_days`
        earlier, then drop the snapshots no later day needs."""
        for done in sorted(d for d in self._pending if day is None or d < day):
            source = done - self.lag_days
            if source not in self._snapshots:
                raise RuntimeError(f"knowledge for day {done} needs the weights of day {source}, before the training's first day: "
                                   "the lag reaches before the teacher's window")
            self._scorer.load_state_dict(self._snapshots[source])
            self._write(torch.cat(self._pending.pop(done)))
        if day is not None:
            for old in [d for d in self._snapshots if d < day - self.lag_days]:
                del self._snapshots[old]

    @torch.no_grad()
    def _write(self, rows: torch.Tensor) -> None:
        """Score `rows` [k] with the scorer and append them to the table."""
        writer = self._open.writer
        for chunk in rows.split(self.scoring_batch):
            out = self._scorer(WindowBatches(self.encoded, chunk, self.history_length)[torch.arange(len(chunk))])
            writer.append(self.example_id.gather(chunk.numpy()), out.logits.float(), out.embedding.float())
            self.rows += len(chunk)
