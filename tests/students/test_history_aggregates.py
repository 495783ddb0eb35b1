"""The VMs' classic history aggregates (past action rates, length, recency): hand-computed on a fixed
batch, and carried into the serving logit."""

from __future__ import annotations

import math

import torch

from students.mlp import mlp_vm
from teacher.layers import HistoryAggregates
from transfer.contract import AD_FEATURE, AGE_BUCKETS, CATEGORY_FEATURE, InputSpec
from transfer.data.batches import random_batch

INPUTS = InputSpec(n_categorical=6, n_dense=3, n_surfaces=4, n_tasks=2, hash_buckets=1000)


def _history(actions: list[list[int]], ages: list[list[int]], mask: list[list[bool]]) -> dict[str, torch.Tensor]:
    return {"hist_action": torch.tensor(actions), "hist_age": torch.tensor(ages), "hist_mask": torch.tensor(mask)}


def test_the_aggregates_match_a_hand_computation():
    # actions: 0 impression, 1 click, 2 conversion; newest event last; padding on the left
    batch = _history(
        actions=[[0, 1, 2, 0], [0, 0, 0, 1], [0, 0, 0, 0]],
        ages=[[9, 7, 5, 3], [0, 0, 4, 2], [0, 0, 0, 0]],
        mask=[[True, True, True, True], [False, False, True, True], [False, False, False, False]],
    )
    features = HistoryAggregates(n_actions=3, history_length=4, dim=8).features(batch)
    expected = torch.tensor([
        # clicked-or-more rate, converted rate, log count / log(1 + L), last age / buckets, empty
        [2 / 4, 1 / 4, math.log(5) / math.log(5), 3 / AGE_BUCKETS, 0.0],
        [1 / 2, 0 / 2, math.log(3) / math.log(5), 2 / AGE_BUCKETS, 0.0],
        [0.0, 0.0, 0.0, 0.0, 1.0],
    ])
    torch.testing.assert_close(features, expected)


def test_the_vm_reads_the_aggregates_and_can_go_without_them():
    batch = random_batch(6, 3, 4, 3, 1000, batch_size=32, history_length=16)
    with_aggregates = mlp_vm(INPUTS, dim=8, history_length=16, hidden=[64, 32])
    without = mlp_vm(INPUTS, dim=8, history_length=16, hidden=[64, 32], aggregates=False)
    extra = sum(p.numel() for p in with_aggregates.parameters()) - sum(p.numel() for p in without.parameters())
    # the projection, the trunk's first layer reading 8 more inputs, and the wide term reading the 5 raw aggregates
    assert extra == (3 + 2) * 8 + 8 + 8 * 64 + (3 + 2)
    assert without.aggregates is None
    # the aggregates path alone moves the logit: shift its projection and the output follows
    before = with_aggregates(batch).logits
    with torch.no_grad():
        with_aggregates.aggregates.project.bias.add_(1.0)
    assert not torch.allclose(before, with_aggregates(batch).logits)


def test_the_wide_term_is_a_linear_model_of_the_dense_features_and_raw_aggregates():
    batch = random_batch(6, 3, 4, 3, 1000, batch_size=32, history_length=16, seed=1)
    vm = mlp_vm(INPUTS, dim=8, history_length=16, hidden=[64, 32])
    weights = torch.arange(1.0, 9.0) / 10  # [3 dense + 5 aggregates]
    with torch.no_grad():
        vm.head.weight.zero_()  # the deep part off: only its bias is left
        vm.wide.weight.copy_(weights[None])
    raw = torch.cat([batch["dense"], vm.aggregates.features(batch)], dim=-1)  # [B, 8]
    torch.testing.assert_close(vm.wide_features(batch), raw)
    torch.testing.assert_close(vm(batch).logits, raw @ weights[:, None] + vm.head.bias)
    narrow = mlp_vm(INPUTS, dim=8, history_length=16, hidden=[64, 32], wide=False)
    assert narrow.wide is None
    assert sum(p.numel() for p in vm.parameters()) - sum(p.numel() for p in narrow.parameters()) == 3 + 5


def test_a_vm_that_reads_no_history_sees_every_history_as_empty_and_learns():
    """history_length 0 (the regime map's VM without history): the aggregates say "empty" on every
    row, the pooled history is zeros, and the model trains to finite logits."""
    batch = random_batch(6, 3, 4, 3, 1000, batch_size=32, history_length=0, seed=2)
    assert batch["hist_mask"].shape == (32, 0)
    vm = mlp_vm(INPUTS, dim=8, history_length=0, hidden=[64, 32])
    features = vm.aggregates.features(batch)
    torch.testing.assert_close(features, torch.tensor([[0.0, 0.0, 0.0, 0.0, 1.0]]).expand(32, 5))
    tokens = vm.features(batch["categorical"])
    pooled = vm.pooling(vm.events(batch), batch["hist_mask"], tokens[:, AD_FEATURE] + tokens[:, CATEGORY_FEATURE])
    assert torch.equal(pooled, torch.zeros(32, 24))
    optimizer = torch.optim.Adam(vm.parameters(), lr=1e-2)
    for _ in range(3):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(vm(batch).logits[:, 0], batch["labels"][:, 0])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert torch.isfinite(vm(batch).logits).all()
