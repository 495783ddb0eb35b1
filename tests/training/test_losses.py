"""Transfer losses against hand computations (design §8)."""

from __future__ import annotations

import math

import pytest
import torch

from adapters.distillation import distillation_loss, soft_targets
from adapters.representation import representation_loss
from transfer.contract import label_loss


def _bce(p: float, y: float) -> float:
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_label_loss_skips_missing_labels():
    logits = torch.tensor([[0.0, 2.0], [1.0, -1.0]])
    labels = torch.tensor([[1.0, float("nan")], [0.0, 1.0]])
    expected = (_bce(0.5, 1) + _bce(_sigmoid(1.0), 0) + _bce(_sigmoid(-1.0), 1)) / 3
    assert label_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_soft_targets_scale_and_clamp():
    z_t = torch.tensor([[0.0], [3.0]])
    targets = soft_targets(z_t, label_scale=1.5)
    assert targets[0, 0].item() == pytest.approx(0.75)
    assert targets[1, 0].item() == 1.0  # 1.5 · σ(3) = 1.43 → clamped


def test_distillation_loss_with_scale_and_temperature():
    z, z_t = torch.tensor([[1.0], [-2.0]]), torch.tensor([[0.5], [-1.0]])
    plain = (_bce(_sigmoid(1.0), _sigmoid(0.5)) + _bce(_sigmoid(-2.0), _sigmoid(-1.0))) / 2
    assert distillation_loss(z, z_t).item() == pytest.approx(plain, rel=1e-6)
    alpha, temp = 1.2, 2.0
    targets = [min(alpha * _sigmoid(0.5 / temp), 1.0), min(alpha * _sigmoid(-1.0 / temp), 1.0)]
    scaled = temp**2 * (_bce(_sigmoid(1.0 / temp), targets[0]) + _bce(_sigmoid(-2.0 / temp), targets[1])) / 2
    assert distillation_loss(z, z_t, alpha, temp).item() == pytest.approx(scaled, rel=1e-6)


def test_representation_losses_by_hand():
    predicted = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    target = torch.tensor([[1.0, 1.0], [0.0, -1.0]])
    cos = [1 / math.sqrt(2), -1.0]
    assert representation_loss(predicted, target, "cosine").item() == pytest.approx(((1 - cos[0]) + (1 - cos[1])) / 2, rel=1e-6)
    assert representation_loss(predicted, target, "mse").item() == pytest.approx((0 + 1 + 0 + 9) / 4, rel=1e-6)
    tau = 0.5
    # similarities of normalised rows: s[i][j] = cos(p_i, t_j) / τ; loss = mean_i −log softmax_j(s[i])[i]
    s = [[cos[0] / tau, 0.0 / tau], [(1 / math.sqrt(2)) / tau, cos[1] / tau]]
    expected = sum(-s[i][i] + math.log(sum(math.exp(v) for v in s[i])) for i in range(2)) / 2
    assert representation_loss(predicted, target, "infonce", tau).item() == pytest.approx(expected, rel=1e-6)


def test_unknown_representation_loss_is_refused():
    with pytest.raises(ValueError, match="cosine, mse, infonce"):
        representation_loss(torch.ones(2, 2), torch.ones(2, 2), "l1")
