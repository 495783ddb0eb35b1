"""NE, calibration, AUC, lift and transfer ratio against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from transfer.evaluation.metrics import Calibration, NormalizedEntropy, eval_metrics, lift_percent, transfer_ratio


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
