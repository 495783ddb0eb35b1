"""The synthetic world's mechanisms, checked on the simulated state (not on a model)."""

import numpy as np
import pytest

from transfer.data import synthetic as S

DAY = 86_400


@pytest.fixture(scope="module")
def world():
    return S.simulate(S.SyntheticSpec(rows=200_000, days=40, seed=3))


def test_same_seed_same_log_other_seed_other_log():
    spec = S.SyntheticSpec(rows=20_000, days=10, seed=1)
    first, again, other = S.generate(spec), S.generate(spec), S.generate(S.SyntheticSpec(rows=20_000, days=10, seed=2))
    assert first.equals(again)
    assert not first["click"].equals(other["click"])


def test_stale_oracle_is_the_truth_before_its_cutoff_and_differs_after(world):
    cutoff = 20 * DAY
    truth, stale = S.click_logit(world), S.click_logit(world, frozen_at=cutoff)
    before = world.t < cutoff
    np.testing.assert_array_equal(stale[before], truth[before])
    assert np.abs(stale[~before] - truth[~before]).mean() > 0.1  # drift after the cutoff is real, not a constant


def test_journey_raises_clicks_before_the_purchase_and_lowers_them_after(world):
    """On a user's journey category: the order-dependent terms are positive in the weeks before intent,
    negative once bought, zero elsewhere; and the true click probability follows them."""
    terms = S.journey_terms(world)
    users = world.users
    on_journey = world.ads["category"][world.ad] == users["intent_category"][world.user]
    weeks = (world.t - users["intent_at"][world.user]) / (7 * DAY)
    casual = on_journey & (weeks > -1.0) & (weeks < 0.0)
    bought = on_journey & (weeks > 2.5) & (weeks < 6.0)
    assert casual.sum() > 200 and bought.sum() > 200
    assert (terms[casual] > 0).all() and (terms[bought] < 0).all()
    assert (terms[~on_journey] == 0).all()
    click = 1 / (1 + np.exp(-S.click_logit(world)))
    assert click[bought].mean() < 0.5 * click[casual].mean()


def test_far_domain_grows_from_a_small_sample(world):
    far = np.isin(world.surface, [i for i, s in enumerate(S.SURFACES) if S.SURFACES[s] == S.FAR_DOMAIN])
    first_week, last_week = world.t < 7 * DAY, world.t >= 33 * DAY
    assert far[first_week].mean() < 0.05 < 0.2 < far[last_week].mean()
