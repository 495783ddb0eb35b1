"""How training visits its rows (`trainer.order`): day by day, or all shuffled."""

from __future__ import annotations

import torch

from transfer.data.batches import IndexBatchSampler


def _epoch(sampler: IndexBatchSampler) -> torch.Tensor:
    return torch.cat(list(iter(sampler)))


def test_time_order_visits_days_in_order_and_shuffles_within_each_day():
    days = torch.tensor([2, 0, 1, 0, 2, 1, 0, 2, 1, 0] * 10)  # [100] rows of three days, interleaved
    sampler = IndexBatchSampler(len(days), batch_size=7, shuffle=True, seed=3, days=days)
    first, second = _epoch(sampler), _epoch(sampler)
    for order in (first, second):
        assert sorted(order.tolist()) == list(range(100))  # each row once
        assert torch.all(days[order].diff() >= 0)  # never back in time
    assert not torch.equal(first, second)  # a new shuffle within the days every epoch
    day_zero = torch.nonzero(days == 0).flatten()
    assert not torch.equal(first[: len(day_zero)], day_zero)  # not the rows' own order


def test_shuffled_order_mixes_the_days():
    days = torch.arange(100) // 10
    order = _epoch(IndexBatchSampler(100, batch_size=10, shuffle=True, seed=3))
    assert sorted(order.tolist()) == list(range(100)) and torch.any(days[order].diff() < 0)
