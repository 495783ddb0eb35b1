"""The paired bootstrap interval of lift and transfer ratio (over rows and over users), the slice's
minimum detectable lift and Fieller's interval over seeds, against hand computations and a simulation."""

from __future__ import annotations

import itertools
import math
import statistics

import numpy as np
import pytest
import torch

from transfer.evaluation.intervals import (
    MIN_USERS,
    cluster_weights,
    fieller_interval,
    holm_adjusted,
    holm_verdict,
    lift_interval,
    multinomial_weights,
    resampled_ne,
    resampling_units,
    seed_interval,
)
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


def _clustered_world(users: int, rows_per_user: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """A slice whose rows cluster by user: each user has a base logit, the baseline a per-user error,
    and the student corrects half of that error for some users and doubles it for others, so the
    student's gain over the baseline varies from user to user. → labels, baseline, student, teacher
    logits [users · rows_per_user] and the users [n]."""
    user = torch.arange(users).repeat_interleave(rows_per_user)
    base = torch.randn(users, generator=generator)[user] * 0.8 - 2.0
    truth = base + 0.3 * torch.randn(len(user), generator=generator)
    error = torch.randn(users, generator=generator)[user] * 0.8
    factor = torch.where(torch.rand(users, generator=generator) < 0.6, 0.5, 1.6)[user]
    labels = torch.bernoulli(torch.sigmoid(truth), generator=generator)
    return labels, truth + error, truth + error * factor, truth, user


def _expected_ne(truth: torch.Tensor, logits: torch.Tensor) -> float:
    """The population NE: expected log loss under the true probabilities over the entropy of their mean."""
    p, q = torch.sigmoid(truth.double()), torch.sigmoid(logits.double())
    loss = -(p * torch.log(q) + (1 - p) * torch.log(1 - q)).mean()
    rate = p.mean()
    return (loss / -(rate * torch.log(rate) + (1 - rate) * torch.log(1 - rate))).item()


def test_a_bootstrap_over_users_covers_the_true_lift_where_one_over_rows_does_not():
    """200 users × 50 rows, user-level effects (the issue's simulation): over 200 eval sets drawn
    from the same world, the 95% interval over users holds the population's lift about 95% of the
    time; the interval over rows, which ignores the clustering, far less often."""
    generator = torch.Generator().manual_seed(0)
    _, big_baseline, big_student, big_truth, _ = _clustered_world(40_000, 50, generator)  # the population
    b, s = _expected_ne(big_truth, big_baseline), _expected_ne(big_truth, big_student)
    true_lift = 100 * (b - s) / b
    covered = {"users": 0, "rows": 0}
    simulations = 200
    for i in range(simulations):
        labels, baseline, student, teacher, user = _clustered_world(200, 50, generator)
        by_users = lift_interval(labels, baseline, student, teacher, resamples=200, seed=i, units=user)
        by_rows = lift_interval(labels, baseline, student, teacher, resamples=200, seed=i)
        covered["users"] += by_users.lift_low <= true_lift <= by_users.lift_high
        covered["rows"] += by_rows.lift_low <= true_lift <= by_rows.lift_high
        assert (by_users.units, by_users.unit, by_rows.units, by_rows.unit) == (200, "users", 10_000, "rows")
    assert 0.90 <= covered["users"] / simulations <= 0.99
    assert covered["rows"] / simulations < 0.75


def test_cluster_weights_give_every_row_of_a_user_the_times_its_user_was_drawn():
    units = torch.tensor([0, 0, 1, 2, 2, 2])
    weights = cluster_weights(units, 50, torch.Generator().manual_seed(1))  # [50, 6]
    assert weights.shape == (50, 6)
    assert torch.equal(weights[:, 0], weights[:, 1]) and torch.equal(weights[:, 3], weights[:, 5])
    assert torch.equal(weights[:, [0, 2, 3]].sum(dim=1), torch.full((50,), 3.0, dtype=torch.float64))  # 3 users drawn each time


def test_a_slice_with_few_users_is_resampled_in_user_day_blocks():
    day = 86_400
    users = torch.tensor([7, 7, 7, 9, 9])
    ts = torch.tensor([0, 10, day + 5, 3, 2 * day])
    codes, unit = resampling_units(users, ts)
    assert unit == "user-days"
    assert codes[0] == codes[1] and len({codes[0].item(), codes[2].item(), codes[3].item(), codes[4].item()}) == 4
    many = torch.arange(MIN_USERS).repeat_interleave(2)
    codes, unit = resampling_units(many, torch.zeros_like(many))
    assert unit == "users" and torch.equal(codes, many)


def test_the_minimum_detectable_lift_is_the_baselines_own_noise_whatever_the_student():
    """(z_0.975 + z_0.8) · √2 · sd(resampled NE_b) / mean(NE_b), in %: the same for a student equal to
    its baseline (whose paired interval collapses to a point) and for a very different one."""
    draws = list(itertools.product(range(5), repeat=5))
    weights = torch.tensor([[d.count(i) for i in range(5)] for d in draws], dtype=torch.float64)
    baseline_nes = [_hand_ne(d, BASELINE) for d in draws]
    finite = [v for v in baseline_nes if not math.isnan(v)]
    expected = 100 * (1.959964 + 0.841621) * math.sqrt(2) * statistics.stdev(finite) / statistics.mean(finite)
    labels, baseline = torch.tensor(LABELS, dtype=torch.float64), torch.tensor(BASELINE, dtype=torch.float64)
    same = lift_interval(labels, baseline, baseline.clone(), torch.tensor(TEACHER), weights=weights)
    other = lift_interval(labels, baseline, torch.tensor(STUDENT), torch.tensor(TEACHER), weights=weights)
    assert same.lift_low == same.lift_high == 0.0
    assert same.mde_lift == pytest.approx(expected, rel=1e-5) and other.mde_lift == pytest.approx(expected, rel=1e-5)


def test_the_denominators_intervals_decide_whether_a_ratio_exists():
    draws = list(itertools.product(range(5), repeat=5))
    weights = torch.tensor([[d.count(i) for i in range(5)] for d in draws], dtype=torch.float64)
    leads = [100 * (_hand_ne(d, BASELINE) - _hand_ne(d, TEACHER)) for d in draws]
    found = lift_interval(*(torch.tensor(v, dtype=torch.float64) for v in (LABELS, BASELINE, STUDENT, TEACHER)), weights=weights)
    low, high = np.nanquantile(leads, [0.025, 0.975])
    assert (found.lead_low, found.lead_high) == (pytest_approx(low), pytest_approx(high))
    assert found.ratio_defined == (low > 0)


def test_fieller_with_a_constant_denominator_is_the_numerators_t_interval_scaled():
    """With the same denominator on every seed, Var(ȳ) = 0 and Fieller's set is x̄/y ± t·se(x̄)/|y|."""
    numerators = [1.0, 2.0, 4.0, 3.0]
    found = fieller_interval(numerators, [2.0] * 4)
    half = 3.182446 * statistics.stdev(numerators) / math.sqrt(4) / 2  # t_0.975 with 3 degrees of freedom
    assert found.defined and found.ratio == pytest.approx(2.5 / 2)
    assert (found.low, found.high) == (pytest.approx(1.25 - half, rel=1e-6), pytest.approx(1.25 + half, rel=1e-6))


def test_fieller_bounds_solve_its_equation_and_an_unresolvable_denominator_is_undefined():
    x, y = [0.9, 1.4, 0.7, 1.2, 1.0], [1.6, 2.1, 1.5, 2.3, 1.9]
    found = fieller_interval(x, y)
    n, mx, my = 5, statistics.mean(x), statistics.mean(y)
    vx, vy = statistics.variance(x) / n, statistics.variance(y) / n
    cxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / (n - 1) / n
    t2 = 2.776445 ** 2  # t_0.975, 4 degrees of freedom
    for theta in (found.low, found.high):
        assert (mx - theta * my) ** 2 == pytest.approx(t2 * (vx - 2 * theta * cxy + theta * theta * vy), rel=1e-5)
    assert found.low < mx / my < found.high
    noisy = fieller_interval(x, [0.5, -0.6, 0.4, -0.3, 0.1])  # a denominator whose interval spans 0
    assert not noisy.defined and noisy.cell() == "undefined: its denominator is not resolvable over the seeds"
    assert fieller_interval([1.0], [1.0]).defined is False


def test_holm_multiplies_the_kth_smallest_by_m_minus_k_plus_one_and_keeps_the_order():
    """By hand: p = (0.01, 0.04, 0.03, 0.20) → sorted 0.01·4 = 0.04, 0.03·3 = 0.09, 0.04·2 = 0.08 → 0.09 (monotone), 0.20·1 = 0.20."""
    assert holm_adjusted([0.01, 0.04, 0.03, 0.20]) == pytest.approx([0.04, 0.09, 0.09, 0.20])
    assert holm_adjusted([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm_adjusted([]) == []


def test_the_seed_p_value_is_the_t_tests_and_a_holm_verdict_needs_the_adjusted_one():
    from scipy.stats import ttest_1samp

    values = [0.8, 1.4, 0.3, 1.1, 0.9]
    interval = seed_interval(values)
    assert interval.p_value == pytest.approx(ttest_1samp(values, 0.0).pvalue, rel=1e-9)
    assert holm_verdict(interval, interval.p_value) == "better"
    assert holm_verdict(interval, 0.2) == "not distinguishable"
    assert holm_verdict(seed_interval([-v for v in values]), 0.01) == "worse"


def test_fieller_calls_a_resolvably_negative_denominator_undefined_as_the_lift_table_does():
    found = fieller_interval([0.5, 0.6, 0.4, 0.55], [-2.0, -2.1, -1.9, -2.05])
    assert not found.defined and found.cell() == "undefined: its denominator is negative over the seeds"


def test_holm_leaves_an_endpoint_without_a_p_value_out_of_the_family_whatever_its_place():
    assert holm_adjusted([math.nan, 0.01, 0.02]) == pytest.approx([math.nan, 0.02, 0.02], nan_ok=True)
    assert holm_adjusted([0.01, math.nan, 0.02]) == pytest.approx([0.02, math.nan, 0.02], nan_ok=True)
