"""The paired bootstrap interval of lift and transfer ratio, against a hand computation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from transfer.evaluation.intervals import lift_interval, multinomial_weights, resampled_ne, seed_interval
from transfer.evaluation.metrics import NormalizedEntropy

LABELS = [1.0, 0.0, 1.0, 0.0, 0.0]
BASELINE = [0.2, -0.1, 0.0, 0.3, -0.4]
STUDENT = [1.0, -0.8, 0.4, -0.2, -1.1]
TEACHER = [1.5, -1.2, 0.9, -0.6, -1.4]
VANILLA = [0.6, -0.5, 0.2, 0.1, -0.7]


def _hand_ne(rows: tuple[int, ...], logits: list[float]) -> float:
    """NE of the drawn rows, written out: mean log loss over the entropy of the base rate."""
    loss = 0.0
    for i in rows:
        p = 1 / (1 + math.exp(-logits[i]))
        loss -= math.log(p) if LABELS[i] == 1.0 else math.log(1 - p)
    rate = sum(LABELS[i] for i in rows) / len(rows)
    if rate in (0.0, 1.0):
        return math.nan
    return loss / len(rows) / -(rate * math.log(rate) + (1 - rate) * math.log(1 - rate))


def test_with_every_row_drawn_once_the_ne_is_the_metrics_ne():
    labels, logits = torch.tensor(LABELS), torch.tensor(STUDENT)
    metric = NormalizedEntropy()
    metric.update(logits, labels)
    assert resampled_ne(labels, logits, torch.ones(1, 5)).item() == pytest_approx(metric.compute().item())


def pytest_approx(value: float):
    return pytest.approx(value, rel=1e-12)


def test_the_interval_is_the_percentiles_of_every_possible_resample_computed_by_hand():
    draws = list(itertools.product(range(5), repeat=5))  # all 3,125 ordered draws of 5 rows: the exact bootstrap
    weights = torch.tensor([[d.count(i) for i in range(5)] for d in draws], dtype=torch.float64)
    lifts, ratios = [], []
    for d in draws:
        b, s, t = _hand_ne(d, BASELINE), _hand_ne(d, STUDENT), _hand_ne(d, TEACHER)
        lifts.append(100 * (b - s) / b)
        ratios.append((b - s) / (b - t) if b != t else math.nan)
    found = lift_interval(*(torch.tensor(v, dtype=torch.float64) for v in (LABELS, BASELINE, STUDENT, TEACHER)), weights=weights)
    low, high = np.nanquantile(lifts, [0.025, 0.975])
    assert (found.lift_low, found.lift_high) == (pytest_approx(low), pytest_approx(high))
    low, high = np.nanquantile(ratios, [0.025, 0.975])
    assert (found.ratio_low, found.ratio_high) == (pytest_approx(low), pytest_approx(high))
    assert found.positives == 2 and found.resamples == 3125


def test_the_gain_ratio_interval_is_the_percentiles_of_every_possible_resample_computed_by_hand():
    draws = list(itertools.product(range(5), repeat=5))
    weights = torch.tensor([[d.count(i) for i in range(5)] for d in draws], dtype=torch.float64)
    gains, over = [], []
    for d in draws:
        b, s, v = _hand_ne(d, BASELINE), _hand_ne(d, STUDENT), _hand_ne(d, VANILLA)
        gains.append((b - s) / (b - v) if b != v else math.nan)
        over.append(100 * (v - s))
    logits = (torch.tensor(v, dtype=torch.float64) for v in (LABELS, BASELINE, STUDENT, TEACHER))
    found = lift_interval(*logits, weights=weights, vanilla=torch.tensor(VANILLA, dtype=torch.float64))
    low, high = np.nanquantile(gains, [0.025, 0.975])
    assert (found.gain_low, found.gain_high) == (pytest_approx(low), pytest_approx(high))
    low, high = np.nanquantile(over, [0.025, 0.975])
    assert (found.over_vanilla_low, found.over_vanilla_high) == (pytest_approx(low), pytest_approx(high))


def test_without_a_vanilla_student_there_is_no_gain_ratio_and_no_verdict_against_it():
    found = lift_interval(*(torch.tensor(v * 40) for v in (LABELS, BASELINE, STUDENT, TEACHER)))
    assert math.isnan(found.gain_low) and math.isnan(found.gain_high) and found.vanilla_verdict == ""


def test_a_student_that_beats_vanilla_kd_clearly_is_better_than_it():
    generator = torch.Generator().manual_seed(2)
    labels = (torch.rand(4000, generator=generator) < 0.2).double()
    signal = 2 * labels - 1
    noise = torch.randn(3, 4000, generator=generator)
    baseline, vanilla, student = 0.3 * signal + noise[0] - 1, 0.8 * signal + noise[1] - 1, 1.6 * signal + noise[2] - 1
    found = lift_interval(labels, baseline, student, student.clone(), vanilla=vanilla)
    assert found.vanilla_verdict == "better" and found.gain_low > 1
    assert lift_interval(labels, baseline, vanilla, student, vanilla=student).vanilla_verdict == "worse"


def test_a_student_equal_to_its_baseline_is_not_distinguishable():
    labels = torch.tensor(LABELS * 40)
    same = torch.tensor(BASELINE * 40)
    found = lift_interval(labels, same, same.clone(), torch.tensor(TEACHER * 40))
    assert found.lift_low == found.lift_high == 0.0 and found.verdict == "not distinguishable"


def test_a_clearly_better_student_is_better_and_the_same_seed_gives_the_same_interval():
    generator = torch.Generator().manual_seed(1)
    labels = (torch.rand(4000, generator=generator) < 0.2).double()
    signal = 2 * labels - 1
    baseline = 0.3 * signal + torch.randn(4000, generator=generator)
    student = 1.5 * signal + torch.randn(4000, generator=generator) - 1
    teacher = 2.0 * signal + torch.randn(4000, generator=generator) - 1
    first = lift_interval(labels, baseline, student, teacher, seed=3)
    assert first.verdict == "better" and first.lift_low < first.lift_high
    assert lift_interval(labels, baseline, student, teacher, seed=3) == first
    assert lift_interval(labels, baseline, student, teacher, seed=4) != first


def test_resample_weights_draw_n_rows_each():
    weights = multinomial_weights(7, 50, torch.Generator().manual_seed(0))
    assert weights.shape == (50, 7) and (weights.sum(dim=1) == 7).all() and (weights >= 0).all()


def test_the_seed_interval_is_the_t_interval_computed_by_hand():
    values = [1.0, 2.0, 4.0, 3.0, 5.0]  # mean 3, sample sd √2.5
    found = seed_interval(values)
    half = 2.7764451 * math.sqrt(2.5) / math.sqrt(5)  # t(0.975, 4 df) from a table
    assert (found.mean, found.low, found.high, found.seeds) == (3.0, pytest.approx(3 - half, rel=1e-6), pytest.approx(3 + half, rel=1e-6), 5)
    assert found.verdict == "better" and seed_interval([-1.0, 1.0, 0.5]).verdict == "not distinguishable"
    # the effect detected with 80% power: (t(0.975, 4) + t(0.8, 4)) × sd / √n, t(0.8, 4) = 0.9409646
    assert found.minimum_detectable() == pytest.approx((2.7764451 + 0.9409646) * math.sqrt(2.5 / 5), rel=1e-6)
    assert math.isnan(seed_interval([2.0]).low)
