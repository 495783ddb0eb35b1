"""Whole batches by tensor indexing: a sampler yields index tensors, the dataset gathers them.

No per-example Python and no collation: one `__getitem__` call builds a whole batch, including
each row's last `L` history events (left-padded, newest last, with a mask).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from transfer.contract import AD_FEATURE, AGE_BUCKETS, CATEGORY_FEATURE
from transfer.data.encoding import EncodedLog
from transfer.util import ranks


class WindowBatches(Dataset):
    """Rows of one window, optionally with per-row extras aligned with them (knowledge: `soft_logits`
    [n, T], `teacher_embedding` [n, E], `adapted_logits` [n, T]), gathered into each batch."""

    def __init__(
        self, log: EncodedLog, rows: torch.Tensor, history_length: int, extras: dict[str, torch.Tensor] | None = None
    ):
        self.log = log
        self.rows = rows  # [n] indices into the log
        self.history_length = history_length
        self.extras = extras or {}
        self._offsets = torch.arange(-history_length, 0)  # [L]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, positions: torch.Tensor) -> dict[str, torch.Tensor]:
        rows = self.rows[positions]  # [B]
        log = self.log
        batch = {
            "row": rows,
            "categorical": log.categorical[rows],  # [B, F]
            "dense": log.dense[rows],  # [B, D]
            "surface": log.surface[rows],  # [B]
            "labels": log.labels[rows],  # [B, T]
            **self._history(rows),
        }
        for name, values in self.extras.items():
            batch[name] = values[positions]
        return batch

    def _history(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        log = self.log
        pos = log.hist_end[rows, None] + self._offsets  # [B, L]
        mask = pos >= log.hist_start[rows, None]  # [B, L] True where an event exists
        pos = torch.where(mask, pos, torch.zeros_like(pos))
        age_hours = (log.ts[rows, None] - log.ts[pos]).clamp(min=0) / 3600.0  # [B, L]
        age = torch.log2(1.0 + age_hours).long().clamp(max=AGE_BUCKETS - 1)
        zero = torch.zeros_like(pos)
        return {
            "hist_ad": torch.where(mask, log.categorical[pos, AD_FEATURE], zero),  # [B, L]
            "hist_category": torch.where(mask, log.categorical[pos, CATEGORY_FEATURE], zero),  # [B, L]
            "hist_surface": torch.where(mask, log.surface[pos], zero),  # [B, L]
            "hist_action": torch.where(mask, log.action[pos], zero),  # [B, L]
            "hist_age": torch.where(mask, age, zero),  # [B, L]
            "hist_mask": mask,  # [B, L] bool
        }




class IndexBatchSampler(Sampler[torch.Tensor]):
    """Yields index tensors of `batch_size`; reshuffled every epoch from `seed` when `shuffle`. With
    `days` ([n] each row's day), an epoch visits the days in order, shuffled within each day, so
    the last steps learn from the newest rows (calibrated on what comes next). Under DDP each
    process takes its share of every training batch, and its own rows when scoring (Lightning's
    sampler replacement is off)."""

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int = 0, days: torch.Tensor | None = None):
        self.n, self.batch_size, self.shuffle, self.seed, self.days = n, batch_size, shuffle, seed, days
        self.epoch = 0

    def __len__(self) -> int:
        return (self.n + self.batch_size - 1) // self.batch_size

    def set_epoch(self, epoch: int) -> None:
        """Lightning calls this before each epoch: a training resumed at epoch k shuffles as epoch k."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[torch.Tensor]:
        if not self.shuffle:  # scoring: each row once, in order within each rank's share
            yield from _this_rank(torch.arange(self.n)).split(self.batch_size)
            return
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        if self.days is not None:
            order = order[torch.argsort(self.days[order], stable=True)]  # day by day, random within a day
        self.epoch += 1
        for batch in order.split(self.batch_size):
            yield _share_of_batch(batch, order)


def _this_rank(order: torch.Tensor) -> torch.Tensor:
    """This process's share of `order` for scoring: every world-th row from its rank, each row once."""
    world = ranks.world_size()
    return order if world == 1 else order[ranks.rank() :: world]


def _share_of_batch(batch: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """This process's part of one training batch [B]: the batch is split across the ranks and DDP
    averages their gradients, so `batch_size` stays the global batch and a step is the single-process
    step up to rounding (exactly when the ranks' shares are equal in size and in labelled entries).
    A batch smaller than the world borrows rows from `order`."""
    rank, world = ranks.rank(), ranks.world_size()
    if world == 1:
        return batch
    if len(batch) < world:
        batch = torch.cat([batch, order[: world - len(batch)]])
    return batch.tensor_split(world)[rank]


def _as_is(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return batch


def window_loader(data: WindowBatches, batch_size: int, shuffle: bool, seed: int = 0, order: str = "shuffled") -> DataLoader:
    """A DataLoader of whole batches over `data`; a shuffled one in `order` (one of `transfer.config.recipe.ORDERS`)."""
    days = data.log.ts[data.rows] // 86_400 if shuffle and order == "time" else None  # [n] UTC day of each row
    sampler = IndexBatchSampler(len(data), batch_size, shuffle, seed, days)
    return DataLoader(data, sampler=sampler, batch_size=None, collate_fn=_as_is)


def random_batch(
    n_categorical: int, n_dense: int, n_surfaces: int, n_actions: int, buckets: int, batch_size: int, history_length: int, seed: int = 0
) -> dict[str, torch.Tensor]:
    """A batch of random ids and full histories, shaped like `WindowBatches` output (for costing models)."""
    g = torch.Generator().manual_seed(seed)
    b, length = batch_size, history_length

    def ints(high: int, *shape: int) -> torch.Tensor:
        return torch.randint(0, high, shape, generator=g)

    return {
        "categorical": ints(buckets, b, n_categorical),
        "dense": torch.randn(b, n_dense, generator=g),
        "surface": ints(n_surfaces, b),
        "labels": torch.randint(0, 2, (b, n_actions - 1), generator=g).float(),
        "hist_ad": ints(buckets, b, length),
        "hist_category": ints(buckets, b, length),
        "hist_surface": ints(n_surfaces, b, length),
        "hist_action": ints(n_actions, b, length),
        "hist_age": ints(AGE_BUCKETS, b, length),
        "hist_mask": torch.ones(b, length, dtype=torch.bool),
    }
