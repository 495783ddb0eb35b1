"""Does the synthetic world have the mechanisms the transfer claims need? (`make bench-world`)

Measured over several data seeds (`SyntheticSpec.seed`), from the generator's own true
probabilities — no model is trained, so what it shows is what any model could at best get:
- **speed**: seconds to generate 1M impressions (median of 3);
- **power**: eval positives of each benchmarked slice, in the quickstart's windows and in the
  benchmark world's (`BENCH`, what `make bench-transfer` runs on);
- **staleness that hurts ranking**: the NE the *stale oracle* (the true generator with its drifting
  terms frozen at the teacher's cutoff, `click_logit(world, frozen_at=…)`) loses against the true
  generator on the eval window, after a one-parameter recalibration fitted on the students' last
  training day, for teacher cutoffs d = 0, 1, 3, 7 days before the students' window (the eval window
  starts student + validation days after d = 0, so even d = 0 is stale there), and the same on the
  students' own window — how stale the soft labels the students learn from are;
- **drift under production's protocol**: the NE the *lagging oracle* loses — the generator with its
  drifting terms frozen L days before each row's own time (a teacher that trains on the stream and
  lags it by L days) — on the eval window, recalibrated the same way, for L = 1 and 3 days: how much a
  fresh teacher's knowledge can lose to drift alone, against the lead a teacher needs (the headroom gate);
- **structure**: what the generator's order-dependent journey terms (`journey_terms`) and its
  4-way context table are worth in NE — the true generator without them (recalibrated), and a
  logistic regression over one-hot context features with all pairwise crosses against the same
  with the 4-way cross; and what the *observable* history's order is worth over target-match counts
  (a logistic regression on the counts of the user's past events on the candidate's category, against
  the same plus when they happened), fit on the students' window.
Every figure is a mean over seeds with a 95% t-interval.
"""

from __future__ import annotations

import itertools
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
import torch  # noqa: E402

from benchmarks.results_file import study_dir, write_csv, write_section  # noqa: E402
from transfer.data import synthetic as S  # noqa: E402
from transfer.evaluation.metrics import normalized_entropy, recalibration_shift  # noqa: E402

SEEDS = (0, 1, 2, 3, 4)
STALENESS = (0, 1, 3, 7)
LAGS = (1, 3)  # days the lagging oracle (production's protocol: a teacher on the stream) is behind each row
SLICES = (("ig_stories", "click"), ("fb_feed", "conversion"), ("fb_feed", "click"), ("msg_inbox", "click"))
DAY = 86_400
CSV = study_dir("world") / "synthetic_world.csv"


@dataclass(frozen=True)
class Layout:
    """A recipe's windows on the synthetic log, in days from its start: teacher [0, cutoff), students
    [cutoff, cutoff + student), validation, then eval."""

    name: str
    spec: S.SyntheticSpec
    cutoff: int
    student: int
    validation: int
    eval: int

    @property
    def eval_start(self) -> int:
        return self.cutoff + self.student + self.validation


QUICKSTART = Layout("quickstart", S.SyntheticSpec(rows=400_000, days=32), cutoff=21, student=7, validation=1, eval=3)
BENCH = Layout("bench", S.SyntheticSpec(rows=1_600_000, days=40), cutoff=21, student=7, validation=2, eval=10)


def main() -> None:
    torch.set_num_threads(2)
    started = time.perf_counter()
    speed = _generation_seconds()
    rows = []
    for seed in SEEDS:
        for layout in (QUICKSTART, BENCH):
            rows += _measure(replace(layout, spec=replace(layout.spec, seed=seed)))
        print(f"seed {seed} done ({time.perf_counter() - started:.0f} s)", flush=True)
    table = pl.DataFrame(rows)
    write_csv(table, CSV)
    write_section("synthetic-world", "make bench-world  (python benchmarks/synthetic_world.py)", _report(table, speed, time.perf_counter() - started))


def _generation_seconds() -> float:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        S.generate(S.SyntheticSpec(rows=1_000_000, days=32))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _measure(layout: Layout) -> list[dict]:
    world = S.simulate(layout.spec)
    rng = np.random.default_rng([layout.spec.seed, 1])  # as `generate` draws the labels
    click_logit = S.click_logit(world)
    click = rng.random(len(click_logit)) < _sigmoid(click_logit)
    converts = rng.random(len(click_logit)) < _sigmoid(S.conversion_logit(world))
    labels = {"click": click, "conversion": click & converts}
    day = world.t / DAY
    evaluation = (day >= layout.eval_start) & (day < layout.eval_start + layout.eval)
    fit = (day >= layout.cutoff + layout.student - 1) & (day < layout.cutoff + layout.student)  # the students' last day
    surfaces = list(S.SURFACES)
    bench = layout.name == BENCH.name
    stale = {d: S.click_logit(world, frozen_at=(layout.cutoff - d) * DAY) for d in STALENESS} if bench else {}
    lagging = {lag: S.click_logit(world, frozen_at=np.maximum(world.t - lag * DAY, 0)) for lag in LAGS} if bench else {}  # [N] each: frozen per row
    blind = click_logit - S.journey_terms(world)
    conversion_logit = S.conversion_logit(world)
    true_conversion = _logit(_sigmoid(click_logit) * _sigmoid(conversion_logit))  # P(click and convert)
    blind_conversion = _logit(_sigmoid(blind) * _sigmoid(conversion_logit - S.intent_terms(world)))
    students = (day >= layout.cutoff) & (day < layout.cutoff + layout.student)
    rows = []
    for surface, task in SLICES:
        on = world.surface == surfaces.index(surface)
        y = labels[task]
        base = {"layout": layout.name, "seed": layout.spec.seed, "slice": f"{surface}/{task}"}
        rows.append(base | {"measure": "eval positives", "value": float(y[on & evaluation].sum())})
        rows.append(base | {"measure": "eval rows", "value": float((on & evaluation).sum())})
        if not bench:
            continue
        if task == "conversion":
            true_ne = _ne(true_conversion, y, on & evaluation)
            rows.append(base | {"measure": "journey order value", "value": 100 * (_recalibrated_ne(blind_conversion, y, on & fit, on & evaluation) - true_ne)})
            continue
        true_ne = _ne(click_logit, y, on & evaluation)
        true_ne_students = _ne(click_logit, y, on & students)
        for d, logits in stale.items():
            rows.append(base | {"measure": f"stale oracle loss d={d}", "value": 100 * (_recalibrated_ne(logits, y, on & fit, on & evaluation) - true_ne)})
            rows.append(base | {"measure": f"stale soft labels d={d}",
                                "value": 100 * (_recalibrated_ne(logits, y, on & students, on & students) - true_ne_students)})
        for lag, logits in lagging.items():
            rows.append(base | {"measure": f"lagging oracle loss lag={lag}",
                                "value": 100 * (_recalibrated_ne(logits, y, on & fit, on & evaluation) - true_ne)})
        rows.append(base | {"measure": "journey order value", "value": 100 * (_recalibrated_ne(blind, y, on & fit, on & evaluation) - true_ne)})
    if bench:
        base = {"layout": layout.name, "seed": layout.spec.seed, "slice": "all/click"}
        rows.append(base | {"measure": "4-way cross value", "value": _cross_value(world, click, day, layout)})
        rows.append(base | {"measure": "history order value", "value": _history_order_value(layout)})
    return rows


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


def _ne(logits: np.ndarray, labels: np.ndarray, rows: np.ndarray) -> float:
    return normalized_entropy(torch.from_numpy(logits[rows]), torch.from_numpy(labels[rows].astype(np.float64)))


def _recalibrated_ne(logits: np.ndarray, labels: np.ndarray, fit: np.ndarray, evaluate: np.ndarray) -> float:
    shift = recalibration_shift(torch.from_numpy(logits[fit]), torch.from_numpy(labels[fit].astype(np.float64)))
    return _ne(logits + shift, labels, evaluate)


def _cross_value(world: S.World, click: np.ndarray, day: np.ndarray, layout: Layout) -> float:
    """NE points a logistic regression over one-hot surface, format, age bucket and daypart (and all
    their pairwise crosses) gains on the eval window from adding their 4-way cross; fit on the
    teacher's window (at most 300k rows)."""
    fields = [world.surface, world.ads["format"][world.ad], world.users["age"][world.user], world.hour // 6]
    sizes = [len(S.SURFACES), 3, 6, 4]
    train = np.flatnonzero(day < layout.cutoff)[:300_000]
    evaluation = np.flatnonzero((day >= layout.eval_start) & (day < layout.eval_start + layout.eval))
    pairwise = [(0,), (1,), (2,), (3,), *itertools.combinations(range(4), 2)]
    ne_pairwise = _one_hot_regression(fields, sizes, pairwise, click, train, evaluation)
    ne_four_way = _one_hot_regression(fields, sizes, [*pairwise, (0, 1, 2, 3)], click, train, evaluation)
    return 100 * (ne_pairwise - ne_four_way)


COUNT_GROUPS = [(0,), (1,), (2,), (3,), (1, 2), (2, 3), (0, 2)]  # surface, category impressions, clicks, conversions
ORDER_GROUPS = [(4,), (5,), (4, 2), (5, 2), (4, 5)]  # + days since the last conversion on it, clicks on it in the last 3 days


def _history_order_value(layout: Layout) -> float:
    """NE points (×100) on the eval window's clicks that the *order* of the user's observable history adds
    to target-match counts: a logistic regression over the counts of the user's past impressions, clicks
    and conversions on the candidate's category (binned, with crosses — what `TargetMatchCounts` gives a
    teacher) against the same plus two ordered features of that history (days since the last conversion
    on the category, clicks on it in the last 3 days). Both fit on the teacher's window (300k rows)."""
    frame = _history_features(S.generate(layout.spec))
    day = frame["day"].to_numpy()
    train = np.flatnonzero((day >= layout.cutoff) & (day < layout.cutoff + layout.student))
    evaluation = np.flatnonzero((day >= layout.eval_start) & (day < layout.eval_start + layout.eval))
    fields = [frame[c].to_numpy() for c in ("surface_code", "impressions_bin", "clicks_bin", "conversions_bin", "since_conversion_bin", "recent_clicks_bin")]
    sizes = [len(S.SURFACES), 6, 6, 4, 6, 4]
    click = frame["click"].to_numpy().astype(bool)
    last_day = np.flatnonzero((day >= layout.cutoff + layout.student - 1) & (day < layout.cutoff + layout.student))
    counts = _one_hot_regression(fields, sizes, COUNT_GROUPS, click, train, evaluation, last_day)
    ordered = _one_hot_regression(fields, sizes, COUNT_GROUPS + ORDER_GROUPS, click, train, evaluation, last_day)
    return 100 * (counts - ordered)


def _history_features(log: pl.DataFrame) -> pl.DataFrame:
    """Per impression, binned features of the user's earlier events on the candidate's category (all of
    them, strictly before the impression)."""
    group = ["user_id", "ad_category"]
    prior = lambda column: (pl.col(column).cum_sum() - pl.col(column)).over(group)  # noqa: E731 — events strictly before
    since_start = (pl.col("ts") - pl.col("ts").min()).dt.total_seconds() / DAY
    last_conversion = pl.when(pl.col("conversion") == 1).then(pl.col("day")).otherwise(None).shift(1).forward_fill().over(group)
    frame = log.with_columns(since_start.alias("day"), pl.col("surface").cast(pl.Enum(list(S.SURFACES))).to_physical().alias("surface_code"))
    frame = frame.with_columns(
        prior("click").alias("clicks"), prior("conversion").alias("conversions"), pl.int_range(pl.len()).over(group).alias("impressions"),
        (pl.col("day") - last_conversion).alias("since_conversion"),
        pl.col("click").cast(pl.Int64).rolling_sum_by("ts", window_size="3d", closed="left").over(group).fill_null(0).alias("recent_clicks"),
    )
    log_bin = lambda column, top: pl.col(column).cast(pl.Float64).log1p().floor().clip(0, top).cast(pl.Int64)  # noqa: E731
    return frame.with_columns(
        log_bin("impressions", 5).alias("impressions_bin"),
        log_bin("clicks", 5).alias("clicks_bin"),
        pl.col("conversions").clip(0, 3).cast(pl.Int64).alias("conversions_bin"),
        pl.when(pl.col("since_conversion").is_null()).then(0).when(pl.col("since_conversion") <= 3).then(1)
        .when(pl.col("since_conversion") <= 7).then(2).when(pl.col("since_conversion") <= 14).then(3)
        .when(pl.col("since_conversion") <= 28).then(4).otherwise(5).cast(pl.Int64).alias("since_conversion_bin"),  # never, ≤3, ≤7, ≤14, ≤28, older (days)
        pl.col("recent_clicks").clip(0, 3).cast(pl.Int64).alias("recent_clicks_bin"),
    )


def _one_hot_regression(fields: list[np.ndarray], sizes: list[int], groups: list[tuple[int, ...]], labels: np.ndarray,
                        train: np.ndarray, evaluate: np.ndarray, recalibrate: np.ndarray | None = None) -> float:
    """Eval NE of a logistic regression (L-BFGS) with one weight per value of each group's crossed fields;
    with `recalibrate` (rows), after a one-logit shift fitted on those rows."""
    columns, offset = [], 0
    for group in groups:
        code = np.zeros(len(labels), dtype=np.int64)
        for f in group:
            code = code * sizes[f] + fields[f]
        columns.append(torch.from_numpy(code + offset))
        offset += math.prod(sizes[f] for f in group)
    index = torch.stack(columns, dim=1)  # [N, G]
    y = torch.from_numpy(labels.astype(np.float32))
    weights = torch.zeros(offset, requires_grad=True)
    bias = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights, bias], max_iter=200, line_search_fn="strong_wolfe")
    rows = torch.from_numpy(train)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = weights[index[rows]].sum(dim=1) + bias
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y[rows]) + 1e-6 * weights.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        logits = (weights[index].sum(dim=1) + bias).double().numpy()
    if recalibrate is not None:
        logits = logits + recalibration_shift(torch.from_numpy(logits[recalibrate]), torch.from_numpy(labels[recalibrate].astype(np.float64)))
    return _ne(logits, labels, evaluate)


def _interval(values: list[float]) -> str:
    """'mean [low, high]' with a 95% t-interval over seeds."""
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return f"{mean:.2f}"
    t = {2: 12.71, 3: 4.30, 4: 3.18, 5: 2.78, 6: 2.57, 7: 2.45, 8: 2.36, 9: 2.31, 10: 2.26}.get(n, 2.0)
    half = t * statistics.stdev(values) / math.sqrt(n)
    return f"{mean:.2f} [{mean - half:.2f}, {mean + half:.2f}]"


def _cell(table: pl.DataFrame, layout: str, slice_: str, measure: str) -> str:
    values = table.filter((pl.col("layout") == layout) & (pl.col("slice") == slice_) & (pl.col("measure") == measure))["value"].to_list()
    return _interval(values) if values else "—"


def _staleness_rows(table: pl.DataFrame, measure: str) -> list[str]:
    """A markdown table of `measure` at each staleness, one row per click slice of the bench layout."""
    lines = ["| slice | " + " | ".join(f"d = {d}" for d in STALENESS) + " |", "|---|" + "---|" * len(STALENESS)]
    for s in (f"{surface}/{task}" for surface, task in SLICES if task == "click"):
        lines.append(f"| {s} | " + " | ".join(_cell(table, "bench", s, f"{measure} d={d}") for d in STALENESS) + " |")
    return lines


def _report(table: pl.DataFrame, speed: float, seconds: float) -> str:
    lines = [f"{len(SEEDS)} data seeds ({', '.join(map(str, SEEDS))}); mean [95% t-interval over seeds]; {seconds / 60:.0f} min for this run.",
             "", f"**Speed:** 1M impressions generated in {speed:.1f} s (median of 3).", "",
             "**Power** — eval positives per slice (rows in brackets are the interval over seeds):", "",
             "| slice | quickstart (400k rows, eval 3 days) | bench (1.6M rows, eval 10 days) |", "|---|---|---|"]
    for surface, task in SLICES:
        s = f"{surface}/{task}"
        lines.append(f"| {s} | {_cell(table, 'quickstart', s, 'eval positives')} | {_cell(table, 'bench', s, 'eval positives')} |")
    lines += ["", "**Staleness** — NE points (×100) the stale oracle loses against the true generator on the bench eval window, "
              "recalibrated (one logit shift) on the students' last training day; teacher cutoff d days before the students' window:", "",
              *_staleness_rows(table, "stale oracle loss")]
    lines += ["", "The same stale oracle as soft labels: NE points it loses against the true generator on the students' own "
              "window (their training rows), recalibrated (one logit shift) on that window — what a Student Adapter with "
              "fresh labels could at most win back:", "",
              *_staleness_rows(table, "stale soft labels")]
    lines += ["", "**Drift under production's protocol** — NE points (×100) the *lagging* oracle (drifting terms frozen L days "
              "before each row's own time: a teacher on the stream, L days behind) loses against the true generator on the bench "
              "eval window, recalibrated as above; the headroom gate asks a teacher to lead the baseline VM by 3:", "",
              "| slice | " + " | ".join(f"L = {lag}" for lag in LAGS) + " |", "|---|" + "---|" * len(LAGS)]
    for s in (f"{surface}/{task}" for surface, task in SLICES if task == "click"):
        lines.append(f"| {s} | " + " | ".join(_cell(table, "bench", s, f"lagging oracle loss lag={lag}") for lag in LAGS) + " |")
    lines += ["", "**Structure** — NE points (×100) lost on the bench eval window without it:", "",
              "| what | slice | NE points |", "|---|---|---|"]
    for surface, task in SLICES:
        s = f"{surface}/{task}"
        terms = "journey terms (click: casual interest and post-purchase dip)" if task == "click" else "journey terms (+ the intent phase of conversion)"
        lines.append(f"| true generator without its order-dependent {terms}, recalibrated | {s} | {_cell(table, 'bench', s, 'journey order value')} |")
    lines.append(f"| logistic regression, pairwise crosses only vs + the 4-way cross | all/click | {_cell(table, 'bench', 'all/click', '4-way cross value')} |")
    lines.append("| logistic regression on the user's history of the candidate's category: target-match counts only vs + its order "
                 f"(days since the last conversion on it, its clicks in the last 3 days) | all/click | {_cell(table, 'bench', 'all/click', 'history order value')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
