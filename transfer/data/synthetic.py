"""The embedded default dataset: a seeded, vectorised simulator of an ads impression log.

What it models (see design §9):
- 5 surfaces on 2 domains (`facebook`: fb_feed, fb_marketplace; `instagram`: ig_feed, ig_stories,
  ig_reels), each with its own base click rate and format preferences;
- users with heavy-tailed activity (tens to thousands of impressions over the period), whose
  interests drift from an old profile to a new one over about a week, at a user-specific time;
- a share of users developing purchase intent in one category: first a casual interest that grows
  over weeks, then conversions on ads of that category. Conversions are an order of magnitude rarer
  than clicks and mostly depend on this long-range intent, visible only in a long history;
- ads with category, advertiser, objective and format, launching throughout the period;
- a world that moves, so that knowledge goes stale: each surface's click rate trends (a redesign,
  a growing format), each category's appeal follows its own random walk (seasons, fashions), and
  each ad's quality drifts with its age (fatigue or word of mouth).

Everything is numpy over whole arrays; 1M impressions take a few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import polars as pl

SURFACES: dict[str, str] = {
    "fb_feed": "facebook",
    "fb_marketplace": "facebook",
    "ig_feed": "instagram",
    "ig_stories": "instagram",
    "ig_reels": "instagram",
}
_SURFACE_BASE_LOGIT = np.array([-3.3, -3.7, -3.1, -3.8, -2.9])
_FORMATS = ("image", "video", "carousel")
# rows: surface, columns: format — e.g. video works on reels and stories, carousels on marketplace
_FORMAT_BY_SURFACE = np.array(
    [[0.0, 0.1, 0.2], [0.2, -0.4, 0.5], [0.1, 0.2, 0.1], [-0.3, 0.5, -0.4], [-0.6, 0.8, -0.5]]
)
# weekly trend of each surface's click logit (design §8: stale knowledge must be measurably worse)
_SURFACE_TREND_PER_WEEK = np.array([-0.12, 0.08, 0.05, 0.15, -0.10])
_CATEGORY_DRIFT_PER_WEEK = 0.25  # std of each category's weekly random-walk step
_OBJECTIVES = ("awareness", "traffic", "sales")
_COUNTRIES = 24
_AGE_BUCKETS = ("13-17", "18-24", "25-34", "35-44", "45-54", "55+")
_DEVICES = ("ios", "android", "web")
_SECONDS_PER_DAY = 86_400
GENERATOR_VERSION = 4  # bump whenever the simulation changes, so cached logs are regenerated


@dataclass(frozen=True)
class SyntheticSpec:
    """Size and shape of a synthetic log. Defaults give about 400 impressions per user."""

    rows: int = 300_000
    days: int = 24
    start: str = "2026-01-01"
    seed: int = 0
    categories: int = 20
    impressions_per_user: int = 400
    impressions_per_ad: int = 150


def generate(spec: SyntheticSpec) -> pl.DataFrame:
    """Simulate `spec.rows` impressions; returns the canonical impression log, sorted by time."""
    rng = np.random.default_rng(spec.seed)
    n_users = max(spec.rows // spec.impressions_per_user, 10)
    n_ads = max(spec.rows // spec.impressions_per_ad, 20)
    period = spec.days * _SECONDS_PER_DAY
    users = _simulate_users(rng, n_users, spec.categories, period)
    ads = _simulate_ads(rng, n_ads, spec.categories, period)

    user = rng.choice(n_users, size=spec.rows, p=users["activity"])
    t = rng.uniform(0, period, size=spec.rows)
    surface = _pick_surface(rng, users["surface_pref"][user])
    ad = _pick_launched_ad(rng, ads["launch"], t, user, users, ads)
    interest = _interest_at(users, user, ads["category"][ad], t)
    intent = _intent_at(users, user, ads["category"][ad], t)
    weeks = t / (7 * _SECONDS_PER_DAY)
    category_trend = _random_walk(rng, spec.categories, spec.days // 7 + 2, _CATEGORY_DRIFT_PER_WEEK)  # [K, W]

    click_logit = (
        _SURFACE_BASE_LOGIT[surface]
        + _SURFACE_TREND_PER_WEEK[surface] * weeks
        + _interpolate(category_trend[ads["category"][ad]], weeks)
        + users["propensity"][user]
        + ads["quality"][ad]
        + ads["quality_drift"][ad] * (t - ads["launch"][ad]) / (7 * _SECONDS_PER_DAY)
        + 4.0 * interest
        + 1.5 * intent
        + _FORMAT_BY_SURFACE[surface, ads["format"][ad]]
        + 0.4 * np.exp(-(t - ads["launch"][ad]) / (2 * _SECONDS_PER_DAY))  # novelty of new ads
    )
    click = rng.random(spec.rows) < _sigmoid(click_logit)
    conv_logit = -3.2 + 4.5 * intent + 0.8 * (ads["objective"][ad] == 2) + 0.3 * users["propensity"][user]
    conversion = click & (rng.random(spec.rows) < _sigmoid(conv_logit))

    start = datetime.fromisoformat(spec.start).replace(tzinfo=timezone.utc)
    frame = pl.DataFrame(
        {
            "example_id": np.arange(spec.rows, dtype=np.int64),
            "user_id": user.astype(np.int64),
            "ad_id": ad.astype(np.int64),
            "ts": (t * 1e6).astype(np.int64),
            "surface": np.array(list(SURFACES))[surface],
            "ad_category": ads["category"][ad].astype(np.int64),
            "advertiser": ads["advertiser"][ad].astype(np.int64),
            "objective": np.array(_OBJECTIVES)[ads["objective"][ad]],
            "ad_format": np.array(_FORMATS)[ads["format"][ad]],
            "country": users["country"][user].astype(np.int64),
            "age_bucket": np.array(_AGE_BUCKETS)[users["age"][user]],
            "device": np.array(_DEVICES)[users["device"][user]],
            "hour": ((t % _SECONDS_PER_DAY) // 3600).astype(np.int64),
            "bid": ads["bid"][ad].astype(np.float32),
            "ad_age_days": ((t - ads["launch"][ad]) / _SECONDS_PER_DAY).astype(np.float32),
            "click": click.astype(np.int8),
            "conversion": conversion.astype(np.int8),
        }
    )
    ts = pl.lit(start) + pl.duration(microseconds=pl.col("ts"))
    frame = frame.with_columns(ts.dt.cast_time_unit("us").alias("ts")).sort("ts")
    return frame.with_columns(pl.arange(0, pl.len(), dtype=pl.Int64).alias("example_id"))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _random_walk(rng: np.random.Generator, n: int, steps: int, std: float) -> np.ndarray:
    """n independent random walks starting at 0, one value per week. → [n, steps]"""
    walk = np.cumsum(rng.normal(0.0, std, size=(n, steps)), axis=1)
    return walk - walk[:, :1]


def _interpolate(walk: np.ndarray, weeks: np.ndarray) -> np.ndarray:
    """Each row's walk at fractional week `weeks` (linear between weekly values). walk: [N, W] → [N]"""
    lo = np.minimum(weeks.astype(np.int64), walk.shape[1] - 2)
    frac = weeks - lo
    rows = np.arange(len(walk))
    return (1 - frac) * walk[rows, lo] + frac * walk[rows, lo + 1]


def _simulate_users(rng: np.random.Generator, n: int, k: int, period: float) -> dict[str, np.ndarray]:
    activity = rng.lognormal(0.0, 1.0, size=n)
    has_intent = rng.random(n) < 0.5
    return {
        "activity": activity / activity.sum(),
        "propensity": rng.normal(0.0, 0.5, size=n),
        "interest_old": rng.dirichlet(np.full(k, 0.3), size=n),  # [U, K]
        "interest_new": rng.dirichlet(np.full(k, 0.3), size=n),  # [U, K]
        "shift_at": rng.uniform(0.2, 1.0, size=n) * period,
        "intent_category": rng.integers(0, k, size=n),
        "intent_at": np.where(has_intent, rng.uniform(-0.5, 1.0, size=n) * period, np.inf),
        "surface_pref": rng.dirichlet(np.full(len(SURFACES), 1.0), size=n),  # [U, S]
        "country": rng.integers(0, _COUNTRIES, size=n),
        "age": rng.integers(0, len(_AGE_BUCKETS), size=n),
        "device": rng.integers(0, len(_DEVICES), size=n),
    }


def _simulate_ads(rng: np.random.Generator, n: int, k: int, period: float) -> dict[str, np.ndarray]:
    launch = np.sort(rng.uniform(-0.5 * period, period, size=n))  # some ads predate the log
    return {
        "launch": launch,
        "category": rng.integers(0, k, size=n),
        "advertiser": rng.integers(0, max(n // 8, 1), size=n),
        "objective": rng.integers(0, len(_OBJECTIVES), size=n),
        "format": rng.integers(0, len(_FORMATS), size=n),
        "quality": rng.normal(0.0, 0.4, size=n),
        "quality_drift": rng.normal(0.0, 0.2, size=n),  # change of quality per week since launch
        "bid": rng.lognormal(0.0, 0.6, size=n),
    }


def _pick_surface(rng: np.random.Generator, pref: np.ndarray) -> np.ndarray:
    """One surface per impression from each user's preference. pref: [N, S] → [N]."""
    u = rng.random(len(pref))[:, None]
    return np.minimum((pref.cumsum(axis=1) < u).sum(axis=1), pref.shape[1] - 1)


def _pick_launched_ad(
    rng: np.random.Generator,
    launch: np.ndarray,
    t: np.ndarray,
    user: np.ndarray,
    users: dict[str, np.ndarray],
    ads: dict[str, np.ndarray],
) -> np.ndarray:
    """An ad already launched at time t; half the time targeted at the user's intent category."""
    n_launched = np.searchsorted(launch, t, side="right")
    ad = np.minimum((rng.random(len(t)) * n_launched).astype(np.int64), len(launch) - 1)
    targeted = rng.random(len(t)) < 0.25
    # targeted delivery: resample (a few tries) until the ad's category is the user's intent category
    for _ in range(8):
        retry = targeted & (ads["category"][ad] != users["intent_category"][user])
        candidate = np.minimum((rng.random(len(t)) * n_launched).astype(np.int64), len(launch) - 1)
        ad = np.where(retry, candidate, ad)
    return ad


def _interest_at(users: dict[str, np.ndarray], user: np.ndarray, category: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The user's interest in the ad's category at time t; drifts from the old to the new profile
    over about a week, and rises for the intent category in the weeks before intent forms."""
    drift = np.clip((t - users["shift_at"][user]) / (7 * _SECONDS_PER_DAY), 0.0, 1.0)
    base = (1 - drift) * users["interest_old"][user, category] + drift * users["interest_new"][user, category]
    weeks_before_intent = (users["intent_at"][user] - t) / (7 * _SECONDS_PER_DAY)
    casual = np.where(
        (category == users["intent_category"][user]) & (weeks_before_intent > 0),
        0.25 * np.exp(-weeks_before_intent),
        0.0,
    )
    return base + casual


def _intent_at(users: dict[str, np.ndarray], user: np.ndarray, category: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Purchase intent for the ad's category at time t, in [0, 1]: ramps up over three days, holds
    for a week, fades over four days (the purchase is made), so the share of users in market is
    roughly stationary while each user's intent comes and goes."""
    since = (t - users["intent_at"][user]) / _SECONDS_PER_DAY
    ramp = np.clip(since / 3.0, 0.0, 1.0) * np.clip(1.0 - (since - 10.0) / 4.0, 0.0, 1.0)
    return np.where(category == users["intent_category"][user], ramp, 0.0)
