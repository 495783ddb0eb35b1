"""NE, calibration, AUC, lift and transfer ratio against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from transfer.evaluation.metrics import (
    Calibration,
    NormalizedEntropy,
    eval_metrics,
    lift_percent,
    normalized_entropy,
    recalibration_shift,
    transfer_ratio,
)


def test_ne_matches_hand_computation():
    # p = σ(logit): σ(0) = 0.5, σ(ln 3) = 0.75, σ(-ln 3) = 0.25
    logits = torch.tensor([0.0, math.log(3.0), -math.log(3.0), math.log(3.0)])
    labels = torch.tensor([1.0, 1.0, 0.0, 0.0])
    log_loss = -(math.log(0.5) + math.log(0.75) + math.log(0.75) + math.log(0.25)) / 4
    base_rate = 0.5
    entropy = -(base_rate * math.log(base_rate) + (1 - base_rate) * math.log(1 - base_rate))
    metric = NormalizedEntropy()
    metric.update(logits[:2], labels[:2])  # accumulates across updates
    metric.update(logits[2:], labels[2:])
    assert metric.compute().item() == pytest.approx(log_loss / entropy)


def test_ne_of_base_rate_prediction_is_one():
    labels = torch.tensor([1.0] * 3 + [0.0] * 97)
    logits = torch.full((100,), math.log(0.03 / 0.97))
    metric = NormalizedEntropy()
    metric.update(logits, labels)
    assert metric.compute().item() == pytest.approx(1.0, abs=1e-9)


def test_calibration_is_predicted_over_observed():
    metric = Calibration()
    metric.update(torch.tensor([0.0, 0.0, 0.0, 0.0]), torch.tensor([1.0, 0.0, 0.0, 0.0]))  # Σp = 2, Σy = 1
    assert metric.compute().item() == pytest.approx(2.0)


def test_collection_reports_auc_of_a_perfect_ranking():
    metrics = eval_metrics()
    metrics.update(torch.tensor([-2.0, -1.0, 1.0, 2.0]), torch.tensor([0.0, 0.0, 1.0, 1.0]))
    assert metrics.compute()["auc"].item() == pytest.approx(1.0)


def test_lift_and_transfer_ratio():
    assert lift_percent(0.80, 0.76) == pytest.approx(5.0)
    assert transfer_ratio(0.80, 0.76, 0.72) == pytest.approx(0.5)
    assert math.isnan(transfer_ratio(0.8, 0.7, 0.8))
    assert math.isnan(transfer_ratio(0.90, 0.96, 0.95))  # a teacher worse than the baseline: undefined, not +1.2


def test_recalibration_shift_of_constant_logits_is_the_base_rate_logit():
    logits = torch.zeros(8, dtype=torch.float64)
    labels = torch.tensor([1, 0, 0, 0, 1, 0, 0, 0], dtype=torch.float64)  # base rate 1/4: the best constant is logit(1/4) = −ln 3
    assert recalibration_shift(logits, labels) == pytest.approx(-math.log(3), abs=1e-9)


def test_recalibration_shift_matches_predicted_to_observed_positives():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(500, generator=generator, dtype=torch.float64)
    labels = (torch.rand(500, generator=generator, dtype=torch.float64) < torch.sigmoid(logits - 1.0)).double()
    labels[::50] = math.nan  # unlabelled rows are left out
    shift = recalibration_shift(logits, labels)
    known = ~labels.isnan()
    # the optimum of the log loss in b sets Σσ(z + b) = Σy; shifting the logits moves b the other way
    assert float(torch.sigmoid(logits[known] + shift).sum()) == pytest.approx(float(labels[known].sum()), rel=1e-9)
    assert recalibration_shift(logits + 2.0, labels) == pytest.approx(shift - 2.0, abs=1e-7)
    recalibrated = normalized_entropy(logits + shift, labels)
    assert recalibrated <= normalized_entropy(logits, labels) and recalibrated <= normalized_entropy(logits + shift + 0.1, labels)


def test_recalibration_shift_is_nan_without_both_classes():
    assert math.isnan(recalibration_shift(torch.randn(5), torch.ones(5)))
    assert math.isnan(recalibration_shift(torch.randn(0), torch.ones(0)))
