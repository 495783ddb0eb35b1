"""The embedded default dataset: a seeded, vectorised simulator of an ads impression log (design §9).

The mechanisms GEM's claims rely on exist in it, each on purpose:
- **Surfaces and domains.** 7 surfaces on 3 domains: `facebook` (fb_feed, fb_marketplace),
  `instagram` (ig_feed, ig_stories, ig_reels) and `messenger` (msg_inbox, msg_stories), a *far
  domain*: a product launching during the log, whose traffic grows from ~1% to a large share (so a
  teacher trained on the early weeks sees only a small sample of it), with its own mechanics — its
  own format and context preferences, its own category fashions, conversions driven by the
  objective more than by long-range intent.
- **Drift that hurts ranking.** Each category's appeal follows a random walk plus calendar events
  (sales weeks lifting some categories for a few days); categories launch during the log; ads
  launch throughout and their quality changes with age (fatigue or word of mouth); each surface's
  click rate trends. A model trained before a cutoff knows none of what changed after it: the
  *stale oracle* (`click_logit(world, frozen_at=cutoff)`) is the true generator with these terms
  frozen at the cutoff, and `benchmarks/synthetic_world.py` measures what it loses.
- **Structure only a long, ordered history reveals.** A share of users goes through a purchase
  journey in one category: a casual interest rising over weeks, then intent (conversions), then,
  once they have bought, an interest *below* their usual for weeks. Counting a user's past clicks on
  the ad's category cannot tell a user about to buy from one who just bought — the order can
  (`benchmarks/synthetic_world.py` checks what the order of the observable history is worth over
  target-match counts).
- **Interactions beyond pairwise.** A random 4-way table over surface × format × age bucket ×
  time of day shifts the click logit: no sum of pairwise terms represents it.
- **Power.** Click rates of a few percent, conversions about a third of that — enough positives
  per slice at a few hundred thousand impressions.

Everything is numpy over whole arrays (how fast: benchmarks/RESULTS.md § synthetic-world, `make bench-world`).
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
    "msg_inbox": "messenger",
    "msg_stories": "messenger",
}
FAR_DOMAIN = "messenger"
_FAR = np.array([SURFACES[s] == FAR_DOMAIN for s in SURFACES])  # [S] True for the far domain's surfaces
_SURFACE_BASE_LOGIT = np.array([-3.7, -4.0, -3.6, -3.8, -3.4, -3.5, -3.7])
_FORMATS = ("image", "video", "carousel")
# rows: surface, columns: format — e.g. video works on reels and stories, carousels on marketplace
_FORMAT_BY_SURFACE = np.array(
    [[0.0, 0.1, 0.2], [0.2, -0.4, 0.5], [0.1, 0.2, 0.1], [-0.3, 0.5, -0.4], [-0.6, 0.8, -0.5], [0.6, -0.7, 0.1], [-0.5, 0.3, 0.6]]
)
_SURFACE_POPULARITY = np.array([3.0, 1.0, 2.0, 2.0, 1.5, 1.5, 1.0])  # Dirichlet weights of users' surface preferences: feeds are the big ones
_SURFACE_TREND_PER_WEEK = np.array([-0.12, 0.08, 0.05, 0.15, -0.10, 0.20, -0.15])  # each surface's click-logit trend
_CATEGORY_DRIFT_PER_WEEK = 0.6  # std of each category's weekly random-walk step
_OBJECTIVES = ("awareness", "traffic", "sales")
_COUNTRIES = 24
_AGE_BUCKETS = ("13-17", "18-24", "25-34", "35-44", "45-54", "55+")
_DEVICES = ("ios", "android", "web")
_DAYPARTS = 4  # hour // 6: night, morning, afternoon, evening
_SECONDS_PER_DAY = 86_400
_WEEK = 7 * _SECONDS_PER_DAY
# Purchase journeys (v6: strong enough that a model reading the order of the history gains NE from it,
# where v5's were not: `make bench-world`'s "history order value", benchmarks/RESULTS.md § synthetic-world)
_JOURNEY_SHARE = 0.8  # share of users who go through a purchase journey during (or around) the log
_CASUAL_PEAK = 0.8  # interest added to the journey category just before intent (×4 in the near domains' click logit)
_BOUGHT_DIP = 1.0  # interest taken from it once bought (×4), fading over about two months
_BOUGHT_WEEKS = 8.0  # how slowly the dip fades (weeks)
_TARGETED_SHARE = 0.5  # share of impressions targeted (retargeting) at the user's journey category
GENERATOR_VERSION = 6  # bump whenever the simulation changes, so cached logs are regenerated


@dataclass(frozen=True)
class SyntheticSpec:
    """Size and shape of a synthetic log. Defaults give about 400 impressions per user."""

    rows: int = 400_000
    days: int = 32
    start: str = "2026-01-01"
    seed: int = 0
    categories: int = 24
    impressions_per_user: int = 400
    impressions_per_ad: int = 150


@dataclass(frozen=True)
class World:
    """A simulated log before its labels: the latent state (users, ads, categories, the calendar)
    and each impression's who, what, where and when (all [N] arrays, unsorted)."""

    spec: SyntheticSpec
    users: dict[str, np.ndarray]
    ads: dict[str, np.ndarray]
    categories: dict[str, np.ndarray]
    crosses: np.ndarray  # [2, S, formats, age buckets, dayparts]: the 4-way context table (near, far domain)
    user: np.ndarray
    ad: np.ndarray
    t: np.ndarray  # seconds since spec.start
    surface: np.ndarray
    hour: np.ndarray


def simulate(spec: SyntheticSpec) -> World:
    """Draw the world and `spec.rows` impressions (no labels yet)."""
    rng = np.random.default_rng(spec.seed)
    n_users = max(spec.rows // spec.impressions_per_user, 10)
    n_ads = max(spec.rows // spec.impressions_per_ad, 20)
    period = spec.days * _SECONDS_PER_DAY
    categories = _simulate_categories(rng, spec.categories, period)
    users = _simulate_users(rng, n_users, spec.categories, period)
    ads = _simulate_ads(rng, n_ads, categories["launch"], period)
    user = rng.choice(n_users, size=spec.rows, p=users["activity"])
    t = rng.uniform(0, period, size=spec.rows)
    surface = _pick_surface(rng, users["surface_pref"][user], t / period)
    ad = _pick_launched_ad(rng, ads["launch"], t, user, users, ads)
    hour = _pick_hour(rng, spec.rows)
    crosses = rng.normal(0.0, 0.45, size=(2, len(SURFACES), len(_FORMATS), len(_AGE_BUCKETS), _DAYPARTS))
    return World(spec, users, ads, categories, crosses, user, ad, t, surface, hour)


def click_logit(world: World, frozen_at: float | None = None) -> np.ndarray:
    """Each impression's true click logit. [N]

    `frozen_at` (seconds since start): the *stale oracle* — the same generator with everything that
    drifts frozen at that time: surface trends and category appeal (walks, calendar events, launches)
    as they were then, ads launched after it of unknown quality, and ad quality as of the ad's age
    then. What a model sees at serving time (the user's history, the ad's age) is not frozen."""
    w, users, ads = world, world.users, world.ads
    t = w.t if frozen_at is None else np.minimum(w.t, frozen_at)
    category = ads["category"][w.ad]
    far = _FAR[w.surface].astype(np.int64)
    age_now = w.t - ads["launch"][w.ad]
    age_known = t - ads["launch"][w.ad]
    known_ad = age_known >= 0  # launched by the (frozen) time
    quality = np.where(known_ad, ads["quality"][w.ad] + ads["quality_drift"][w.ad] * _fatigue(np.maximum(age_known, 0)), 0.0)
    interest = _interest_at(users, w.user, category, w.t)
    intent = _intent_at(users, w.user, category, w.t)
    fmt, age_bucket = ads["format"][w.ad], users["age"][w.user]
    return (
        _SURFACE_BASE_LOGIT[w.surface]
        + _SURFACE_TREND_PER_WEEK[w.surface] * t / _WEEK
        + _category_appeal(w.categories, category, far, t)
        + users["propensity"][w.user]
        + quality
        + np.where(far == 1, 1.5, 4.0) * interest
        + np.where(far == 1, 0.5, 1.5) * intent
        + _FORMAT_BY_SURFACE[w.surface, fmt]
        + w.crosses[far, w.surface, fmt, age_bucket, w.hour // 6]
        + 0.4 * np.exp(-np.maximum(age_now, 0) / (2 * _SECONDS_PER_DAY))  # novelty of new ads (from the ad's age: not stale)
    )


def conversion_logit(world: World) -> np.ndarray:
    """Each impression's true logit of converting once clicked. [N]"""
    w, users, ads = world, world.users, world.ads
    intent = _intent_at(users, w.user, ads["category"][w.ad], w.t)
    sales = ads["objective"][w.ad] == 2
    far = _FAR[w.surface]
    return (
        -0.7
        + np.where(far, 1.5, 4.0) * intent
        + np.where(far, 1.6, 0.6) * sales
        + 0.3 * users["propensity"][w.user]
    )


def journey_terms(world: World) -> np.ndarray:
    """The part of each click logit that only the order of a user's history reveals: the casual
    interest rising before a purchase journey and the dip after it (zero off the journey category). [N]"""
    w = world
    category = w.ads["category"][w.ad]
    weight = np.where(_FAR[w.surface], 1.5, 4.0)
    return weight * (_interest_at(w.users, w.user, category, w.t) - _base_interest(w.users, w.user, category, w.t))


def intent_terms(world: World) -> np.ndarray:
    """The part of each conversion logit that the purchase journey's intent phase contributes (zero
    off the journey category and outside the phase). [N]"""
    w = world
    weight = np.where(_FAR[w.surface], 1.5, 4.0)
    return weight * _intent_at(w.users, w.user, w.ads["category"][w.ad], w.t)


def generate(spec: SyntheticSpec) -> pl.DataFrame:
    """Simulate `spec.rows` impressions; returns the canonical impression log, sorted by time."""
    world = simulate(spec)
    rng = np.random.default_rng([spec.seed, 1])  # the labels' own stream
    click = rng.random(spec.rows) < _sigmoid(click_logit(world))
    conversion = click & (rng.random(spec.rows) < _sigmoid(conversion_logit(world)))
    return _frame(world, click, conversion)


def _frame(world: World, click: np.ndarray, conversion: np.ndarray) -> pl.DataFrame:
    w, users, ads = world, world.users, world.ads
    start = datetime.fromisoformat(w.spec.start).replace(tzinfo=timezone.utc)
    frame = pl.DataFrame(
        {
            "example_id": np.arange(len(w.t), dtype=np.int64),
            "user_id": w.user.astype(np.int64),
            "ad_id": w.ad.astype(np.int64),
            "ts": (w.t * 1e6).astype(np.int64),
            "surface": np.array(list(SURFACES))[w.surface],
            "ad_category": ads["category"][w.ad].astype(np.int64),
            "advertiser": ads["advertiser"][w.ad].astype(np.int64),
            "objective": np.array(_OBJECTIVES)[ads["objective"][w.ad]],
            "ad_format": np.array(_FORMATS)[ads["format"][w.ad]],
            "country": users["country"][w.user].astype(np.int64),
            "age_bucket": np.array(_AGE_BUCKETS)[users["age"][w.user]],
            "device": np.array(_DEVICES)[users["device"][w.user]],
            "hour": w.hour.astype(np.int64),
            "bid": ads["bid"][w.ad].astype(np.float32),
            "ad_age_days": ((w.t - ads["launch"][w.ad]) / _SECONDS_PER_DAY).astype(np.float32),
            "click": click.astype(np.int8),
            "conversion": conversion.astype(np.int8),
        }
    )
    ts = pl.lit(start) + pl.duration(microseconds=pl.col("ts"))
    frame = frame.with_columns(ts.dt.cast_time_unit("us").alias("ts")).sort("ts", maintain_order=True)
    return frame.with_columns(pl.arange(0, pl.len(), dtype=pl.Int64).alias("example_id"))


def time_order(world: World) -> np.ndarray:
    """The permutation that sorts the world's impressions as `generate` sorts its rows. → [N]"""
    return np.argsort(world.t, kind="stable")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _fatigue(age: np.ndarray) -> np.ndarray:
    """How far an ad's quality has moved by `age` seconds since launch: grows over its first weeks, then
    saturates (×quality_drift: fatigue when negative, word of mouth when positive). [N]"""
    return np.tanh(age / (2 * _WEEK)) * 2.0


def _simulate_categories(rng: np.random.Generator, k: int, period: float) -> dict[str, np.ndarray]:
    """Each category's appeal over time: a weekly random walk per domain kind (near, far), calendar
    events, and a launch time (a quarter of them launch during the log)."""
    weeks = int(period // _WEEK) + 3
    walk = np.cumsum(rng.normal(0.0, _CATEGORY_DRIFT_PER_WEEK, size=(2, k, weeks)), axis=2)  # [2, K, W]
    n_events = max(1, int(period // (10 * _SECONDS_PER_DAY)))
    launches_during = rng.random(k) < 0.25
    launches_during[: max(1, k // 2)] = False  # at least half the categories exist from the start
    return {
        "walk": walk - walk[:, :, :1],
        "event_start": rng.uniform(0, period, size=n_events),
        "event_lift": np.where(rng.random((n_events, k)) < 0.3, rng.normal(1.0, 0.3, size=(n_events, k)), 0.0),  # [E, K]
        "launch": np.where(launches_during, rng.uniform(0.3, 0.9, size=k) * period, -np.inf),
    }


def _category_appeal(categories: dict[str, np.ndarray], category: np.ndarray, far: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The category's appeal at time t: its walk (the far domain's own), calendar events lifting it for
    a few days, and the novelty of a newly launched category. [N]"""
    walk = categories["walk"][far, category]  # [N, W]
    week = t / _WEEK
    lo = np.minimum(week.astype(np.int64), walk.shape[1] - 2)
    frac = week - lo
    rows = np.arange(len(t))
    appeal = (1 - frac) * walk[rows, lo] + frac * walk[rows, lo + 1]
    days_into = (t[:, None] - categories["event_start"][None, :]) / _SECONDS_PER_DAY  # [N, E]
    bump = np.clip(1.0 - np.abs(days_into - 2.0) / 2.5, 0.0, 1.0)  # rises over 2 days, fades over 2.5
    appeal = appeal + (bump * categories["event_lift"][:, category].T).sum(axis=1)
    since_launch = (t - categories["launch"][category]) / _SECONDS_PER_DAY
    return appeal + np.where(since_launch >= 0, 0.8 * np.exp(-since_launch / 5.0), 0.0)


def _simulate_users(rng: np.random.Generator, n: int, k: int, period: float) -> dict[str, np.ndarray]:
    activity = rng.lognormal(0.0, 1.0, size=n)
    has_journey = rng.random(n) < _JOURNEY_SHARE
    return {
        "activity": activity / activity.sum(),
        "propensity": rng.normal(0.0, 0.5, size=n),
        "interest_old": rng.dirichlet(np.full(k, 0.3), size=n),  # [U, K]
        "interest_new": rng.dirichlet(np.full(k, 0.3), size=n),  # [U, K]
        "shift_at": rng.uniform(0.2, 1.0, size=n) * period,
        "intent_category": rng.integers(0, k, size=n),
        "intent_at": np.where(has_journey, rng.uniform(-0.3, 1.0, size=n) * period, np.inf),
        "surface_pref": rng.dirichlet(_SURFACE_POPULARITY, size=n),  # [U, S]
        "country": rng.integers(0, _COUNTRIES, size=n),
        "age": rng.integers(0, len(_AGE_BUCKETS), size=n),
        "device": rng.integers(0, len(_DEVICES), size=n),
    }


def _simulate_ads(rng: np.random.Generator, n: int, category_launch: np.ndarray, period: float) -> dict[str, np.ndarray]:
    launch = np.sort(rng.uniform(-0.5 * period, period, size=n))  # some ads predate the log
    return {
        "launch": launch,
        "category": _launched_category(rng, category_launch, launch),
        "advertiser": rng.integers(0, max(n // 8, 1), size=n),
        "objective": rng.integers(0, len(_OBJECTIVES), size=n),
        "format": rng.integers(0, len(_FORMATS), size=n),
        "quality": rng.normal(0.0, 0.5, size=n),
        "quality_drift": rng.normal(0.0, 0.35, size=n),  # ×_fatigue(age): quality's change since launch
        "bid": rng.lognormal(0.0, 0.6, size=n),
    }


def _launched_category(rng: np.random.Generator, category_launch: np.ndarray, ad_launch: np.ndarray) -> np.ndarray:
    """A category for each ad among those launched before it (a new category's ads come after it)."""
    k = len(category_launch)
    category = rng.integers(0, k, size=len(ad_launch))
    for _ in range(8):
        late = category_launch[category] > ad_launch
        category = np.where(late, rng.integers(0, k, size=len(ad_launch)), category)
    always = np.flatnonzero(np.isinf(category_launch))
    return np.where(category_launch[category] > ad_launch, always[category % len(always)], category)


def _pick_surface(rng: np.random.Generator, pref: np.ndarray, progress: np.ndarray) -> np.ndarray:
    """One surface per impression from the user's preference, the far domain's share growing from
    ~0.5% at the start of the log to about two fifths at its end. pref: [N, S], progress: [N] in [0, 1] → [N]."""
    growth = np.where(_FAR[None, :], 0.01 + 1.5 * progress[:, None] ** 3, 1.0)  # [N, S]
    weights = pref * growth
    weights = weights / weights.sum(axis=1, keepdims=True)
    u = rng.random(len(pref))[:, None]
    return np.minimum((weights.cumsum(axis=1) < u).sum(axis=1), pref.shape[1] - 1)


def _pick_hour(rng: np.random.Generator, n: int) -> np.ndarray:
    """Hour of day of each impression, busier in the evening. → [N]"""
    weights = 1.0 + 0.8 * np.sin((np.arange(24) - 13) / 24 * 2 * np.pi)
    return rng.choice(24, size=n, p=weights / weights.sum())


def _pick_launched_ad(
    rng: np.random.Generator,
    launch: np.ndarray,
    t: np.ndarray,
    user: np.ndarray,
    users: dict[str, np.ndarray],
    ads: dict[str, np.ndarray],
) -> np.ndarray:
    """An ad already launched at time t; `_TARGETED_SHARE` of the time targeted at the user's journey category."""
    n_launched = np.searchsorted(launch, t, side="right")
    ad = np.minimum((rng.random(len(t)) * n_launched).astype(np.int64), len(launch) - 1)
    targeted = rng.random(len(t)) < _TARGETED_SHARE
    # targeted delivery: resample (a few tries) until the ad's category is the user's intent category
    for _ in range(8):
        retry = targeted & (ads["category"][ad] != users["intent_category"][user])
        candidate = np.minimum((rng.random(len(t)) * n_launched).astype(np.int64), len(launch) - 1)
        ad = np.where(retry, candidate, ad)
    return ad


def _interest_at(users: dict[str, np.ndarray], user: np.ndarray, category: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The user's interest in the ad's category at time t: drifts from the old to the new profile over
    about a week; for the journey category, a casual interest rising over the weeks before intent, and
    after the purchase an interest below the usual for weeks (they have bought)."""
    base = _base_interest(users, user, category, t)
    journey = category == users["intent_category"][user]
    weeks_since = (t - users["intent_at"][user]) / _WEEK
    casual = np.where(journey & (weeks_since < 0), _CASUAL_PEAK * np.exp(np.minimum(weeks_since, 0) / 1.5), 0.0)
    bought = np.where(journey & (weeks_since > 2.0), -_BOUGHT_DIP * np.exp(-(weeks_since - 2.0) / _BOUGHT_WEEKS), 0.0)
    return base + casual + bought


def _base_interest(users: dict[str, np.ndarray], user: np.ndarray, category: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The user's usual interest in the category: the old profile, then the new one over about a week. [N]"""
    drift = np.clip((t - users["shift_at"][user]) / _WEEK, 0.0, 1.0)
    return (1 - drift) * users["interest_old"][user, category] + drift * users["interest_new"][user, category]


def _intent_at(users: dict[str, np.ndarray], user: np.ndarray, category: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Purchase intent for the ad's category at time t, in [0, 1]: ramps up over three days, holds
    for a week, fades over four days (the purchase is made), so the share of users in market is
    roughly stationary while each user's intent comes and goes."""
    since = (t - users["intent_at"][user]) / _SECONDS_PER_DAY
    ramp = np.clip(since / 3.0, 0.0, 1.0) * np.clip(1.0 - (since - 10.0) / 4.0, 0.0, 1.0)
    return np.where(category == users["intent_category"][user], ramp, 0.0)
