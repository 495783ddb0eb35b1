"""A student's interval goes to MLflow and comes back from it as the same interval: ratios logged only
where their denominator is resolvable, the lead and gain intervals, the MDE and the units resampled —
so `gem-transfer lift` shows what the run's own table showed."""

from __future__ import annotations

import math

import pytest

from transfer.evaluation.intervals import LiftInterval
from transfer.evaluation.lift_table import Scores
from transfer.tracking import lift
from transfer.tracking import tags as T

BASELINE, STUDENT, TEACHER, VANILLA = (Scores(ne, 0.7, 1.0, ne) for ne in (0.90, 0.85, 0.80, 0.88))


def _interval(**changes) -> LiftInterval:
    values = dict(lift_low=2.0, lift_high=9.0, ratio_low=0.2, ratio_high=0.8, positives=500, resamples=1000, gain_low=1.1, gain_high=4.0,
                  over_vanilla_low=0.5, over_vanilla_high=4.0, lead_low=5.0, lead_high=15.0, vanilla_gain_low=1.0, vanilla_gain_high=3.0,
                  mde_lift=4.5, units=812, unit="users")
    return LiftInterval(**(values | changes))


def test_resolvable_denominators_log_both_ratios_and_the_store_gives_the_interval_back():
    interval = _interval()
    metrics = T.interval_metrics(interval, STUDENT, BASELINE, TEACHER, VANILLA)
    assert metrics[T.TRANSFER_RATIO] == pytest.approx((0.90 - 0.85) / (0.90 - 0.80))
    assert metrics[T.GAIN_RATIO] == pytest.approx((0.90 - 0.85) / (0.90 - 0.88))
    assert (metrics[T.TRANSFER_RATIO_LOW], metrics[T.GAIN_RATIO_HIGH], metrics[T.MDE_LIFT_PCT]) == (0.2, 4.0, 4.5)
    back = lift._interval(metrics | {T.EVAL_POSITIVES: 500.0}, {T.RESAMPLED_UNIT: "users"})
    assert back == interval


@pytest.mark.parametrize(("changes", "absent"), [
    ({"lead_low": -1.0}, {T.TRANSFER_RATIO, T.TRANSFER_RATIO_LOW, T.TRANSFER_RATIO_HIGH}),
    ({"vanilla_gain_low": -0.3}, {T.GAIN_RATIO, T.GAIN_RATIO_LOW, T.GAIN_RATIO_HIGH}),
])
def test_an_unresolvable_denominator_logs_no_ratio_and_the_store_says_undefined(changes, absent):
    interval = _interval(**changes)
    metrics = T.interval_metrics(interval, STUDENT, BASELINE, TEACHER, VANILLA)
    assert not absent & set(metrics)
    back = lift._interval(metrics, {T.RESAMPLED_UNIT: "users"})
    assert (back.ratio_defined, back.gain_defined) == (interval.ratio_defined, interval.gain_defined)
    assert math.isnan(back.ratio_low) == (not interval.ratio_defined) and math.isnan(back.gain_low) == (not interval.gain_defined)
