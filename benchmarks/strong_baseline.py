"""How strong is the no-transfer baseline? A logistic regression on the classic CTR aggregates against
the VMs (#15's "lift against a strong baseline").

On each seed of the wide & deep VMs' ablations (MovieLens: the same seeded 80 % of the users as `make
bench-transfer`, `data.users`; synthetic: the same benchmark world per seed), for each VM's slice: a
logistic regression trained on the VM's own rows (its slice of the students' window) from six
standard features —
- the user's past click and conversion rates over the last 16 events before the row (the VMs' history
  length), and how many events that is (log-scaled; 0 = none): the aggregates the VMs read;
- the item's running counters as the VMs get them (`counters: [ad_id]` in the dataset YAMLs,
  `transfer.data.counters`): its count of earlier impressions (any user, any surface) and its click and
  conversion rates over them, smoothed, as log-odds.
Every feature comes from strictly earlier timestamps. Scored on the eval window with the lift table's NE,
and paired per seed with the baseline VM, the vanilla-KD and combination VMs and the teacher of the
ablation's CSV (`benchmarks/results/transfer/transfer_ablation_{movielens,synthetic}_best_epoch.csv`: VMs started at their regression,
`transfer.training.wide_start`, keeping their best epoch on the validation window, the start as epoch 0,
`transfer.training.best_epoch`; the eval rows must match, seed by seed): NE points (×100), positive = the regression is better, 95 % t-interval over seeds.

An independent reference not nested in the VM's start: a gradient-boosted tree (LightGBM, a
benchmark-only extra that `make bench-baseline` installs) on the VM's inputs — the same six features
plus the dataset's own categorical and dense columns and the ad's category — trained on the VM's rows
of the students' window, its shape and rounds chosen on the validation window (as the VMs' epochs
are), scored on the eval window. "Strong baseline" means the baseline VM is within MARGIN NE points of that tree:
non-inferiority, one-sided t-test of (VM − tree) < MARGIN over the seeds, Holm-adjusted over the
slices of a study, named before the data.

A second tree, (b), reads the same inputs plus long-history aggregates a 16-event VM cannot see: the
user's click and conversion rates and event counts over the last LONG events (the teacher's history)
and over their whole history before the row. What (b) gains over (a) is knowledge the world holds
beyond the VM's inputs; a teacher behind (b) leaves some of it on the table. Both trees are paired, seed
by seed, with the baseline VM and the teacher of each ablation CSV on the same eval rows — the separate-
knowledge ablations and those with knowledge from training traffic (the benchmark world and the
quickstart world, where the headroom gate passes), whose worlds and windows are the same per seed.

    python benchmarks/strong_baseline.py        # writes the section strong-baseline (`make bench-baseline`)
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.results_file import shown, study_dir, write_csv, write_section  # noqa: E402
from benchmarks.synthetic_world import BENCH  # noqa: E402
from transfer.config.dataset import dataset_config_path, load_dataset_config  # noqa: E402
from transfer.config.loader import load_recipe  # noqa: E402
from transfer.config.recipe import UserSampleConfig  # noqa: E402
from transfer.data.counters import counter_features  # noqa: E402
from transfer.data.impressions import load_impressions  # noqa: E402
from transfer.data.prepare import sample_users  # noqa: E402
from transfer.data.synthetic import SyntheticSpec, generate  # noqa: E402
from transfer.evaluation.intervals import holm_adjusted, seed_interval  # noqa: E402
from transfer.evaluation.metrics import normalized_entropy  # noqa: E402
from transfer.training.wide_start import fit_logistic  # noqa: E402

TASKS, HISTORY, SEEDS = ("click", "conversion"), 16, range(5)
LONG = 256  # the teacher's history length (skeleton_tiny): tree (b)'s long window
MARGIN = 0.5  # NE points: a baseline VM within this of the tree on its inputs is a strong baseline
TREE = {"objective": "binary", "learning_rate": 0.05, "feature_fraction": 0.8,
        "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0, "num_threads": 1, "deterministic": True, "verbosity": -1}
COMMAND = "python benchmarks/strong_baseline.py"
Windows = tuple[datetime, datetime, datetime, datetime]  # the students' window [start, end), the eval window [start, end)


@dataclass(frozen=True)
class Study:
    name: str
    ablation_csv: Path  # the ablation's committed CSV it pairs with, seed by seed
    slices: tuple[tuple[str, str], ...]  # (surface, task) per VM
    windows: Callable[[], Windows]
    log: Callable[[int], pl.DataFrame]  # seed → the canonical log that seed's ablation runs ran on
    world: str = ""  # studies of the same world (log and windows per seed) share their trees; default: the name


def movielens_windows() -> Windows:
    data = load_recipe(REPO / "recipes" / "movielens_all_techniques.yaml").data
    return _windows(datetime.fromisoformat(str(data.train.start)), data.train.days, data.student.days, data.validation.days, data.eval.days)


def _windows(start: datetime, train: int, student: int, validation: int, evaluation: int) -> Windows:
    start = start.replace(tzinfo=timezone.utc)  # the logs' timestamps are UTC
    day = lambda n: start + timedelta(days=n)  # noqa: E731
    return day(train), day(train + student), day(train + student + validation), day(train + student + validation + evaluation)


def movielens_log(seed: int) -> pl.DataFrame:
    """Seed `seed`'s sample of MovieLens's users, as `make bench-transfer` draws it (`data.users`)."""
    return sample_users(_movielens(), UserSampleConfig(fraction=0.8, seed=seed))


@functools.cache
def _movielens() -> pl.DataFrame:
    path = dataset_config_path("movielens100k")
    return load_impressions(load_dataset_config(path), path, REPO / ".cache" / "gem-transfer", SyntheticSpec())


def synthetic_log(seed: int) -> pl.DataFrame:
    """The benchmark world of seed `seed` (`make bench-world`'s BENCH layout)."""
    spec = SyntheticSpec(rows=BENCH.spec.rows, days=BENCH.spec.days, start=BENCH.spec.start, seed=seed)
    return generate(spec).with_columns(pl.col(t).cast(pl.Float32) for t in TASKS)


def quickstart_log(seed: int) -> pl.DataFrame:
    """The all-techniques recipe's own world of seed `seed` (`--synthetic-scale recipe`: 400k impressions)."""
    spec = load_recipe(REPO / "recipes" / "direct_all_techniques.yaml").data.synthetic
    world = SyntheticSpec(rows=spec.rows, days=spec.days, start=str(spec.start), seed=seed)
    return generate(world).with_columns(pl.col(t).cast(pl.Float32) for t in TASKS)


def quickstart_windows() -> Windows:
    data = load_recipe(REPO / "recipes" / "direct_all_techniques.yaml").data
    return _windows(datetime.fromisoformat(str(data.train.start)), data.train.days, data.student.days, data.validation.days, data.eval.days)


def bench_windows() -> Windows:
    return _windows(datetime.fromisoformat(BENCH.spec.start), BENCH.cutoff, BENCH.student, BENCH.validation, BENCH.eval)


SYNTHETIC_SLICES = (("ig_stories", "click"), ("fb_feed", "conversion"))
STUDIES = (
    Study("movielens", study_dir("transfer") / "transfer_ablation_movielens_best_epoch.csv", (("weekday_night", "click"), ("weekday_night", "conversion")),
          movielens_windows, movielens_log),
    Study("synthetic", study_dir("transfer") / "transfer_ablation_synthetic_best_epoch.csv", SYNTHETIC_SLICES, bench_windows, synthetic_log),
    Study("synthetic, knowledge from training traffic", study_dir("transfer") / "transfer_ablation_synthetic_best_epoch_traffic.csv",
          SYNTHETIC_SLICES, bench_windows, synthetic_log, world="synthetic"),
    Study("quickstart world, knowledge from training traffic", study_dir("transfer") / "transfer_ablation_synthetic_best_epoch_400k_traffic.csv",
          SYNTHETIC_SLICES, quickstart_windows, quickstart_log, world="quickstart"),
)


def features(log: pl.DataFrame) -> pl.DataFrame:
    """Per impression: the user's rates over their last 16 events and that count (`u_*`, `u_count`), the
    same over their last LONG events (`u{LONG}_*`) and their whole history (`uall_*`), and the item's
    running counters (`ad_id.*`, `transfer.data.counters`). "Earlier" is strictly before the row's
    timestamp, as the VMs' histories are (events at the same instant, e.g. a burst of ratings in one
    second, never inform each other)."""
    log = log.sort("user_id", "ts", "example_id")
    log = log.with_columns(counter_features(log, ["ad_id"], list(TASKS)))
    before, start = _strictly_earlier(log, "user_id")  # [N] events before each row, [N] its user's first row
    columns = {}
    for prefix, length in (("u", HISTORY), (f"u{LONG}", LONG), ("uall", None)):
        recent = before if length is None else np.minimum(before, length)
        columns[f"{prefix}_count"] = pl.Series(recent.astype(np.float64))
        columns |= {f"{prefix}_{task}": _window_mean(log[task], start + before - recent, start + before) for task in TASKS}
    return log.with_columns(**columns)


def _strictly_earlier(log: pl.DataFrame, key: str) -> tuple[np.ndarray, np.ndarray]:
    """For `log` sorted by (key, ts): per row, how many rows of its key have an earlier timestamp, and
    the index of its key's first row. → ([N], [N]) int64."""
    n = log.height
    keys, times = log[key].to_numpy(), log["ts"].to_physical().to_numpy()
    new_key = np.r_[True, keys[1:] != keys[:-1]]  # [N]
    new_instant = new_key | np.r_[True, times[1:] != times[:-1]]  # [N]
    index = np.arange(n)
    key_start = np.maximum.accumulate(np.where(new_key, index, 0))
    instant_start = np.maximum.accumulate(np.where(new_instant, index, 0))
    return instant_start - key_start, key_start


def _window_mean(labels: pl.Series, first: np.ndarray, last: np.ndarray) -> pl.Series:
    """Per row: the mean of `labels` over rows [first, last) (of the same sorted frame); 0 where that is empty."""
    total = np.r_[0.0, np.cumsum(labels.cast(pl.Float64).to_numpy())]  # [N + 1]
    count = last - first
    return pl.Series(np.where(count > 0, (total[last] - total[first]) / np.maximum(count, 1), 0.0))


def matrix(rows: pl.DataFrame) -> torch.Tensor:
    """[N, 6] features: user click/conversion rates, log count; the item's log count and click/conversion log-odds."""
    columns = [rows["u_click"], rows["u_conversion"], (rows["u_count"] + 1).log() / math.log(HISTORY + 1),
               rows["ad_id.impressions"], rows["ad_id.click_rate"], rows["ad_id.conversion_rate"]]
    return torch.tensor(np.stack([c.to_numpy() for c in columns], axis=1), dtype=torch.float64)


def seed_rows(study: Study, seed: int) -> list[dict]:
    """The regression's and both trees' eval NE per VM slice on seed `seed`'s log."""
    student, student_end, evaluation, evaluation_end = study.windows()
    table = features(study.log(seed))
    columns, categorical = tree_columns(study, table)
    longer = [*columns, *LONG_HISTORY]
    table = table.with_columns(pl.col(c).cast(pl.String).cast(pl.Categorical).to_physical().cast(pl.Int32) for c in categorical)
    rows = []
    for surface, task in study.slices:
        in_slice = pl.col("surface") == surface
        train = table.filter(in_slice & (pl.col("ts") >= student) & (pl.col("ts") < student_end))
        validation = table.filter(in_slice & (pl.col("ts") >= student_end) & (pl.col("ts") < evaluation))
        test = table.filter(in_slice & (pl.col("ts") >= evaluation) & (pl.col("ts") < evaluation_end))
        weights, bias = fit_logistic(matrix(train), torch.tensor(train[task].to_numpy(), dtype=torch.float64), l2=0.0)
        labels = torch.tensor(test[task].to_numpy(), dtype=torch.float32)
        common = {"dataset": study.name, "seed": seed, "slice": f"{surface}/{task}", "train rows": train.height,
                  "eval rows": test.height, "eval positives": int(labels.sum())}
        rows.append(common | {"model": "regression", "NE": normalized_entropy((matrix(test) @ weights + bias).float(), labels)})
        for model, inputs in (("tree", columns), ("tree (b)", longer)):
            rows.append(common | {"model": model, "NE": normalized_entropy(tree_logits(train, validation, test, inputs, categorical, task, seed),
                                                                          labels)})
    return rows


def tree_columns(study: Study, table: pl.DataFrame) -> tuple[list[str], list[str]]:
    """The VM's inputs as tree features: the six classic features, the dataset's dense columns, and its
    categorical columns with the ad's category (as categories). → (all columns, the categorical ones)."""
    config = load_dataset_config(dataset_config_path("movielens100k" if study.name == "movielens" else "synthetic"))
    categorical = [c for c in [*config.categorical, "ad_category"] if c in table.columns]
    dense = [c for c in config.dense if c in table.columns]
    return [*CLASSIC, *dense, *categorical], categorical


CLASSIC = ["u_click", "u_conversion", "u_count", "ad_id.impressions", "ad_id.click_rate", "ad_id.conversion_rate"]
LONG_HISTORY = [f"{prefix}_{name}" for prefix in (f"u{LONG}", "uall") for name in (*TASKS, "count")]  # tree (b)'s extra inputs


GRID = [{"num_leaves": leaves, "min_data_in_leaf": least} for leaves in (2, 4, 15, 63) for least in (50, 200)]  # chosen on validation


def tree_logits(train: pl.DataFrame, validation: pl.DataFrame, test: pl.DataFrame, columns: list[str], categorical: list[str],
                task: str, seed: int) -> torch.Tensor:
    """LightGBM on `columns`, tuned as the VMs are, on the validation window: each of GRID's shapes, with
    the categorical columns as categories and as plain codes, its rounds chosen by early stopping; the
    best by validation log loss scores `test`. → its logits [n]."""
    import lightgbm as lgb

    names = [c.replace(".", "_") for c in columns]

    def data(frame: pl.DataFrame, cats: list[str], reference=None):
        return lgb.Dataset(frame.select(columns).to_numpy(), frame[task].to_numpy(), feature_name=names,
                           categorical_feature=[c.replace(".", "_") for c in cats], reference=reference, free_raw_data=False)

    best = None
    for cats in (categorical, []):
        fitted = data(train, cats)
        held_out = data(validation, cats, fitted)
        for shape in GRID:
            booster = lgb.train(TREE | shape | {"seed": seed}, fitted, num_boost_round=2000, valid_sets=[held_out],
                                callbacks=[lgb.early_stopping(50, verbose=False)])
            loss = booster.best_score["valid_0"]["binary_logloss"]
            if best is None or loss < best[0]:
                best = (loss, booster)
    booster = best[1]
    return torch.tensor(booster.predict(test.select(columns).to_numpy(), num_iteration=booster.best_iteration, raw_score=True),
                        dtype=torch.float32)


def paired(regression: pl.DataFrame, ablation: pl.DataFrame) -> str:
    """Markdown: per slice, the regression's NE against each VM role of the ablation, paired per seed."""
    lines = ["| slice | eval positives per seed | regression NE (mean ± sd) | against | its NE | regression better by, NE points [95% CI] | verdict |",
             "|---|---|---|---|---|---|---|"]
    references = {"baseline VM (no transfer)": ("baseline", "vanilla KD"), "vanilla-KD VM": ("student", "vanilla KD"),
                  "GEM's combination VM": ("student", "aux KD + representation + sharing"), "teacher": ("teacher", "vanilla KD")}
    for slice_name, rows in regression.group_by("slice", maintain_order=True):
        positives = f"{rows['eval positives'].min():,}–{rows['eval positives'].max():,}"
        own = f"{rows['NE'].mean():.4f} ± {rows['NE'].std():.4f}"
        for label, (role, variant) in references.items():
            other = ablation.filter((pl.col("slice") == slice_name[0]) & (pl.col("role") == role) & (pl.col("variant") == variant))
            joined = rows.join(other.select("seed", pl.col("NE").alias("other")), on="seed")
            if joined.is_empty():  # a variant the ablation did not run on this slice (its headroom gate failed)
                continue
            interval = seed_interval((100 * (joined["other"] - joined["NE"])).to_list())
            lines.append(f"| {slice_name[0]} | {positives} | {own} | {label} | {joined['other'].mean():.4f} | "
                         f"{interval.mean:+.2f} [{interval.low:.2f}, {interval.high:.2f}] | {interval.verdict} |")
    return "\n".join(lines)


def strong_baseline_table(tree: pl.DataFrame, ablation: pl.DataFrame) -> str:
    """Markdown: per slice, the baseline VM against the tree on its inputs — VM − tree in NE points
    (positive = the tree is better) with its 95% interval over seeds, the one-sided p-value of "the VM
    is at least MARGIN behind", Holm-adjusted over the study's slices, and the verdict; beside it where
    the teacher stands against the same tree."""
    from scipy.stats import t

    rows = []
    for (slice_name,), own in tree.group_by("slice", maintain_order=True):
        joined = own.join(_ablation_ne(ablation, slice_name, "baseline"), on="seed").join(_ablation_ne(ablation, slice_name, "teacher"), on="seed")
        behind = seed_interval((100 * (joined["baseline"] - joined["NE"])).to_list())  # how far the VM is behind the tree
        teacher = seed_interval((100 * (joined["teacher"] - joined["NE"])).to_list())
        p = float(t.cdf((behind.mean - MARGIN) / behind.error, behind.seeds - 1)) if behind.error > 0 else float(behind.mean >= MARGIN)
        rows.append((slice_name, own, behind, teacher, p))
    adjusted = holm_adjusted([row[4] for row in rows])
    lines = [f"| slice | eval positives per seed | tree NE (mean ± sd) | baseline VM − tree, NE points [95% CI] (positive: the tree is better) "
             f"| p (VM ≥ {MARGIN} behind), Holm-adjusted | strong baseline? (primary) | teacher − tree, NE points [95% CI] |", "|---|---|---|---|---|---|---|"]
    for (slice_name, own, behind, teacher, _), p in zip(rows, adjusted, strict=True):
        verdict = f"**yes**: within {MARGIN} of the tree" if p < 0.05 else (
            f"**no**: behind the tree by more than {MARGIN}" if behind.low > MARGIN else f"not shown at a {MARGIN}-point margin")
        positives = f"{own['eval positives'].min():,}–{own['eval positives'].max():,}"
        lines.append(f"| {slice_name} | {positives} | {own['NE'].mean():.4f} ± {own['NE'].std():.4f} | {behind.mean:+.2f} [{behind.low:.2f}, "
                     f"{behind.high:.2f}] | {p:.3f} | {verdict} | {teacher.mean:+.2f} [{teacher.low:.2f}, {teacher.high:.2f}] |")
    return "\n".join(lines)


def long_history_table(trees: pl.DataFrame, ablation: pl.DataFrame) -> str:
    """Markdown: per slice, what the long-history aggregates are worth to a tree — tree (a) − tree (b)
    in NE points (positive: (b) is better) — and where the baseline VM and the teacher stand against
    tree (b) (positive: the tree is better; a teacher behind it leaves knowledge on the table), each
    with its 95% interval over seeds."""
    lines = ["| slice | tree (b) NE (mean ± sd) | tree (a) − tree (b), NE points [95% CI] | baseline VM − tree (b) [95% CI] "
             "| teacher − tree (b) [95% CI] | teacher vs tree (b) |", "|---|---|---|---|---|---|"]
    for (slice_name,), own in trees.filter(pl.col("model") == "tree (b)").group_by("slice", maintain_order=True):
        joined = (own.join(trees.filter(pl.col("model") == "tree", pl.col("slice") == slice_name).select("seed", pl.col("NE").alias("a")), on="seed")
                  .join(_ablation_ne(ablation, slice_name, "baseline"), on="seed").join(_ablation_ne(ablation, slice_name, "teacher"), on="seed"))
        gain, vm, teacher = (seed_interval((100 * (joined[column] - joined["NE"])).to_list()) for column in ("a", "baseline", "teacher"))
        where = ("behind: knowledge left on the table" if teacher.low > 0 else "ahead of it" if teacher.high < 0 else "not distinguishable")
        lines.append(f"| {slice_name} | {own['NE'].mean():.4f} ± {own['NE'].std():.4f} | {_cell(gain)} | {_cell(vm)} | {_cell(teacher)} | {where} |")
    return "\n".join(lines)


def _cell(interval) -> str:
    return f"{interval.mean:+.2f} [{interval.low:.2f}, {interval.high:.2f}]"


def _ablation_ne(ablation: pl.DataFrame, slice_name: str, role: str) -> pl.DataFrame:
    """The ablation's `role` model's NE on `slice_name`, per seed (a column named after the role)."""
    chosen = (pl.col("slice") == slice_name) & (pl.col("role") == role) & (pl.col("variant") == "vanilla KD")
    return ablation.filter(chosen).select("seed", pl.col("NE").alias(role))


def main() -> None:
    torch.set_num_threads(1)
    sections, by_world = [], {}
    for study in STUDIES:
        world = study.world or study.name
        if world not in by_world:  # the same log and windows per seed: the same trees
            by_world[world] = pl.DataFrame([row for seed in SEEDS for row in seed_rows(study, seed)])
        regression = by_world[world].with_columns(dataset=pl.lit(study.name))
        ablation = pl.read_csv(study.ablation_csv, infer_schema_length=0).with_columns(
            pl.col("seed").cast(pl.Int64), pl.col("NE").cast(pl.Float64))
        check = regression.join(ablation.filter(pl.col("role") == "baseline", pl.col("variant") == "vanilla KD")
                                .select("seed", "slice", pl.col("eval rows").cast(pl.Int64).alias("vm eval rows")), on=["seed", "slice"])
        if check.height != regression.height or not (check["eval rows"] == check["vm eval rows"]).all():
            raise SystemExit(f"strong_baseline: {study.name}: the eval rows differ from {shown(study.ablation_csv)}'s: "
                             f"{check.select('seed', 'slice', 'eval rows', 'vm eval rows')}")  # not the same data: no comparison
        csv = study_dir("baseline") / f"strong_baseline_{world}.csv"
        write_csv(by_world[world], csv)
        strong = strong_baseline_table(regression.filter(pl.col("model") == "tree"), ablation)
        table = paired(regression.filter(pl.col("model") == "regression"), ablation)
        long = long_history_table(regression, ablation)
        print(f"{study.name}\n{strong}\n\n{long}\n\n{table}", flush=True)
        sections.append(f"**{study.name}** (VMs' NE per seed from `{shown(study.ablation_csv)}`; CSV `{shown(csv)}`)\n\n"
                        f"Primary: the baseline VM against the tree on its inputs, (a).\n\n{strong}\n\nSecondary: tree (b), the VM's inputs "
                        f"plus the user's rates and counts over the last {LONG} events and the whole history, against tree (a), "
                        f"the baseline VM and the teacher.\n\n{long}\n\nSecondary: the logistic regression on the "
                        f"six classic features (nested in the VM's own regression start, so not a test of strength) against the VMs.\n\n{table}")
    write_section("strong-baseline", COMMAND, f"{len(SEEDS)} seeds; gradient-boosted trees on the VM's inputs, (a), and on them plus "
                  "long-history aggregates, (b), and a logistic regression on 6 classic features (the script's docstring), each trained on the VM's own rows, against the ablations' VMs and "
                  "teacher on the same eval rows.\n\n" + "\n\n".join(sections))


if __name__ == "__main__":
    main()
