"""The Student Adapter, fit before the consumer trains on the freshest labels only: it corrects what a
stale producer gets wrong (here one ad category's rate), never touches rows outside the knowledge ages
it was fit on, and a placebo is the identity."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import torch

from adapters import student_adapter
from adapters.distillation import DistillationConfig
from adapters.student_adapter import AdapterConfig, AdapterInputs, corrected_knowledge
from adapters.technique import ConsumerShape, Step
from transfer.config.recipe import StageConfig

WINDOW_END = datetime(2026, 2, 1, tzinfo=timezone.utc)
CUTOFF = WINDOW_END - timedelta(days=10)  # the producer's: the consumer's 10-day window comes after it
NEW_CATEGORY = 7  # the category whose rate the stale producer gets wrong


def _world(n: int = 6_000, seed: int = 0) -> tuple[AdapterInputs, torch.Tensor]:
    """n rows spread over the consumer's 10 days; the true logit is −1.5 (category 7: +0.5); the stale
    producer predicts −1.5 everywhere. → inputs, labels [n, 1]."""
    g = torch.Generator().manual_seed(seed)
    ts = int(CUTOFF.timestamp()) + torch.randint(0, 10 * 86_400, (n,), generator=g)
    category = torch.randint(0, 10, (n,), generator=g)
    truth = torch.where(category == NEW_CATEGORY, 0.5, -1.5)
    labels = torch.bernoulli(torch.sigmoid(truth), generator=g).unsqueeze(1)
    age = ((ts - int(CUTOFF.timestamp())) / 86_400.0).float()
    inputs = AdapterInputs(torch.full((n, 1), -1.5), torch.randint(0, 3, (n,), generator=g), age, category, torch.zeros(n, 2), ts)
    return inputs, labels


def _fresh(inputs: AdapterInputs, days: int) -> torch.Tensor:
    return inputs.ts >= int((WINDOW_END - timedelta(days=days)).timestamp())


def test_the_adapter_learns_the_category_the_stale_producer_gets_wrong_from_the_fresh_labels():
    inputs, labels = _world()
    cfg = AdapterConfig(enabled=True, fit_days=5)
    correction = corrected_knowledge(inputs, labels, WINDOW_END, 3, cfg, seed=0)
    fresh = _fresh(inputs, 5)
    assert correction.fit_rows == int(fresh.sum())
    assert correction.fit_loss_after < correction.fit_loss_before - 0.05
    new = inputs.category == NEW_CATEGORY
    lifted = correction.logits[fresh & new].mean() - inputs.logits[fresh & new].mean()
    others = correction.logits[fresh & ~new].mean() - inputs.logits[fresh & ~new].mean()
    assert lifted > 1.0 and abs(others) < 0.3  # the +2 logits of category 7, not a global shift


def test_rows_outside_the_fit_ages_keep_the_producers_logits_and_older_labels_never_reach_the_fit():
    inputs, labels = _world()
    cfg = AdapterConfig(enabled=True, fit_days=5)
    correction = corrected_knowledge(inputs, labels, WINDOW_END, 3, cfg, seed=0)
    fit_ages = inputs.age_days[_fresh(inputs, 5)]
    outside = (inputs.age_days < fit_ages.min()) | (inputs.age_days > fit_ages.max())
    assert outside.sum() > 1_000
    assert torch.equal(correction.logits[outside], inputs.logits[outside])
    assert correction.corrected_rows == int((~outside).sum())
    flipped = labels.clone()
    flipped[~_fresh(inputs, 5)] = 1 - flipped[~_fresh(inputs, 5)]  # labels before the fit window: the consumer's, not the adapter's
    assert torch.equal(corrected_knowledge(inputs, flipped, WINDOW_END, 3, cfg, seed=0).logits, correction.logits)


def test_a_placebo_is_the_identity_and_a_fit_is_seeded_without_touching_the_global_random_stream():
    inputs, labels = _world()
    placebo = corrected_knowledge(inputs, labels, WINDOW_END, 3, AdapterConfig(enabled=True, fit_days=5, placebo=True), seed=0)
    assert torch.equal(placebo.logits, inputs.logits) and placebo.corrected_rows == 0
    assert placebo.fit_loss_after == placebo.fit_loss_before
    cfg = AdapterConfig(enabled=True, fit_days=5, epochs=2)
    torch.manual_seed(123)
    first = corrected_knowledge(inputs, labels, WINDOW_END, 3, cfg, seed=4).logits
    after_fit = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(after_fit, torch.rand(3))  # the fit drew nothing from the global stream
    assert torch.equal(corrected_knowledge(inputs, labels, WINDOW_END, 3, cfg, seed=4).logits, first)
    assert not torch.equal(corrected_knowledge(inputs, labels, WINDOW_END, 3, cfg, seed=5).logits, first)


def test_the_second_head_learns_from_the_corrected_logits_at_its_weight_through_distillations_beta():
    torch.manual_seed(0)
    stage = StageConfig(adapter=AdapterConfig(enabled=True, weight=2.0), distillation=DistillationConfig(grad_scale=0.5))
    heads = student_adapter.distill_heads(stage, ConsumerShape(8, 1, 8, 3))
    hidden = torch.randn(16, 8, requires_grad=True)
    z_a = torch.randn(16, 1)
    term = student_adapter.loss(stage, heads, Step(torch.zeros(16, 1), hidden, {"adapted_logits": z_a}))["adapter_kd"]
    z = heads["second"](hidden)
    p = torch.sigmoid(z_a)
    by_hand = -(p * torch.nn.functional.logsigmoid(z) + (1 - p) * torch.nn.functional.logsigmoid(-z)).mean()
    torch.testing.assert_close(term, 2.0 * by_hand)
    term.backward()
    trunk_grad = hidden.grad.clone()
    hidden.grad = None
    (2.0 * by_hand).backward()
    torch.testing.assert_close(trunk_grad, 0.5 * hidden.grad)  # β of the stage's distillation scales its pull on the trunk
    off = StageConfig(adapter=AdapterConfig(enabled=True, weight=0.0))
    assert student_adapter.loss(off, heads, Step(torch.zeros(16, 1), hidden, {"adapted_logits": z_a})) == {}
