"""Transfer ablation (issues #3, #14): which technique buys how much NE, over seeds, on two datasets;
and a staleness sweep with and without the Student Adapter.

Variants per VM, all from the shipped "all techniques" recipes (one source of truth for settings):
baseline (no transfer), vanilla KD (soft labels on the serving head), auxiliary-head KD, aux KD +
representation learning, aux KD + parameter sharing (as shipped, and with the other `freeze`), aux KD + Student Adapter, GEM's claimed
combination (aux KD + representation + sharing, no adapter), all combined (direct), all combined
(hierarchical), and hierarchical with each domain FM warm-started on its domain of the teacher's window. Teacher, knowledge and domain FMs are trained once per seed and reused through the
stage cache. Every run is a real recipe run tracked in MLflow (`benchmarks/.runs`).

Seeds vary the models (recipe `seed`) and, on the synthetic world, the data (`data.synthetic.seed`);
MovieLens (100K; 1M with `--only movielens1m`) is one fixed log, so each seed runs on its own seeded sample of a share F of its users
(`data.users`, `--movielens-users F`, default 0.8) and its seeds vary the data too (F = 1: models only). Every effect is the mean of per-seed
paired differences with its 95% t-interval over seeds; a verdict is "better"/"worse" only when the
interval excludes 0. For GEM's "2×" claim the interval is that of gain_combined − 2·gain_vanilla (NE
points, gain = NE_baseline − NE). Each slice states its eval positives and the minimum detectable
effect (80% power) of a comparison with vanilla KD.

With `--tune TRIALS` every variant's technique knobs are first chosen by `gem-transfer tune` with the
same budget (TRIALS trials on the first seed's validation window), so the comparison is of tuned variants.

Each study writes its current section of benchmarks/RESULTS.md (`section_id`) and its CSV under
benchmarks/results/transfer/ (`csv_path`); `--from-csv` analyses a section's CSV again into it.

    python benchmarks/transfer_ablation.py [--seeds 5] [--only synthetic movielens movielens1m domains staleness] [--variants NAME …] [--tune TRIALS]
                                        [--synthetic-scale recipe] [--knowledge training_traffic]
    python benchmarks/transfer_ablation.py --from-csv benchmarks/results/transfer/transfer_ablation_synthetic_best_epoch.csv
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import math
import re
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

import polars as pl
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from adapters.embedding_features import EmbeddingFeaturesConfig  # noqa: E402
from adapters.representation import RepresentationConfig  # noqa: E402
from adapters.sharing import SharingConfig  # noqa: E402
from adapters.student_adapter import AdapterConfig  # noqa: E402
from benchmarks.headroom import headroom, headroom_table  # noqa: E402
from benchmarks.results_file import command_line, shown, study_dir, write_csv, write_section  # noqa: E402
from benchmarks.synthetic_world import BENCH  # noqa: E402
from transfer.config.loader import load_recipe, validate  # noqa: E402
from transfer.config.recipe import Recipe, StudentConfig, UserSampleConfig  # noqa: E402
from transfer.evaluation.intervals import SeedInterval, fieller_interval, holm_adjusted, holm_verdict, seed_interval  # noqa: E402
from transfer.pipeline.engine import run_recipe  # noqa: E402
from transfer.tuning.space import stage_knobs  # noqa: E402
from transfer.tuning.study import tune  # noqa: E402
from transfer.util.atomic import write_text_atomic  # noqa: E402

OUTPUT = REPO / "benchmarks" / ".runs"


@dataclass(frozen=True)
class Study:
    name: str
    direct: str  # the all-techniques direct recipe
    hierarchical: str
    students: tuple[str, ...] = ()  # the VMs to run, in place of the recipes' own (empty: theirs)


STUDIES = {
    "synthetic": Study("synthetic", "recipes/direct_all_techniques.yaml", "recipes/hierarchical_all_techniques.yaml"),
    "movielens": Study("movielens", "recipes/movielens_all_techniques.yaml", "recipes/movielens_hierarchical.yaml"),
    "movielens1m": Study("movielens1m", "recipes/movielens1m_all_techniques.yaml", "recipes/movielens1m_hierarchical.yaml"),
    # near and far domains (#15): the recipes' VMs (instagram, facebook: most of the teacher's traffic) beside
    # messenger's, the far domain (it launches during the log, with its own mechanics)
    "domains": Study("domains", "recipes/direct_all_techniques.yaml", "recipes/hierarchical_all_techniques.yaml",
                     ("ig_stories_click", "fb_feed_conversion", "msg_inbox_click", "msg_inbox_conversion")),
}
ON_REQUEST = {"movielens1m"}  # run only when `--only` names it (hours here; the Makefile runs it under production's protocol)
STALENESS_RECIPE = "recipes/staleness_study.yaml"
SCALE = {"synthetic": "bench",  # bench: the synthetic_world BENCH layout; recipe: the recipes' own (400k rows)
         "users": 1.0,  # a fixed log's share of users per seed (`data.users`); 1.0: seeds vary the models only
         "knowledge": "separate"}  # `transfer.knowledge`: training_traffic trains the teacher on through the students' window
CLAIMED = "aux KD + representation + sharing"  # GEM's combined techniques (2× vanilla KD), without the adapter
WARM = "all combined (hierarchical, warm-started domain FM)"
COMBINED = (CLAIMED, "all combined (direct)", "all combined (hierarchical)", WARM)
STALENESS_DAYS = (0, 1, 3, 7)
EMBEDDINGS, EMBEDDINGS_KD = "embedding features", "embedding features + vanilla KD"  # the teacher's user embeddings as a VM input
EMBEDDING = EmbeddingFeaturesConfig(enabled=True)  # its defaults: the teacher's last 7 days, a linear projection, fine-tuned
ON_REQUEST_VARIANTS = {EMBEDDINGS, EMBEDDINGS_KD}  # run only when `--variants` names them (separate knowledge only)


def ablation_variants(direct: Recipe, hierarchical: Recipe) -> dict[str, Recipe]:
    """The variants, each a full recipe; technique settings come from the shipped recipes' last stage."""
    full = direct.transfer.stages[-1]
    off = replace(
        full, representation=RepresentationConfig(weight=0.0), sharing=SharingConfig(modules=[]), adapter=AdapterConfig(enabled=False)
    )
    stages = {
        "vanilla KD": replace(off, distillation=replace(full.distillation, head="serving")),
        "aux KD": off,
        "aux KD + representation": replace(off, representation=full.representation),
        "aux KD + sharing": replace(off, sharing=full.sharing),
        f"aux KD + sharing ({'fine-tuned' if full.sharing.freeze else 'frozen'})": replace(off, sharing=replace(full.sharing, freeze=not full.sharing.freeze)),
        "aux KD + adapter": replace(off, adapter=full.adapter),
        CLAIMED: replace(full, adapter=AdapterConfig(enabled=False)),
        "all combined (direct)": full,
        EMBEDDINGS: replace(off, distillation=replace(full.distillation, head="serving", weight=0.0), embedding_features=EMBEDDING),
        EMBEDDINGS_KD: replace(off, distillation=replace(full.distillation, head="serving"), embedding_features=EMBEDDING),
    }
    variants = {}
    for name, stage in stages.items():
        recipe = copy.deepcopy(direct)
        recipe.transfer.stages = [stage]
        variants[name] = recipe
    variants["all combined (hierarchical)"] = hierarchical
    warm = copy.deepcopy(hierarchical)
    warm.domain_fms.warm_start = True  # the domain FM first learns its domain of the teacher's window from labels
    variants[WARM] = warm
    return variants


@dataclass
class Collected:
    rows: list[dict] = field(default_factory=list)

    def add(self, dataset: str, variant: str, seed: int, table: pl.DataFrame) -> None:
        for row in table.iter_rows(named=True):
            self.rows.append({"dataset": dataset, "variant": variant, "seed": seed, **row})


def run_quietly(recipe: Recipe, path: Path, seed: int, overrides: dict) -> pl.DataFrame:
    recipe = bench_recipe(recipe, path, seed, overrides)
    with contextlib.redirect_stdout(io.StringIO()):
        return run_recipe(recipe, path).table


def bench_recipe(recipe: Recipe, path: Path, seed: int, overrides: dict) -> Recipe:
    """`recipe` as the benchmark runs it for `seed`: its data scale, seeds, output folder and experiment, validated."""
    recipe = copy.deepcopy(recipe)
    recipe.seed = seed
    if recipe.data.dataset == "synthetic":
        recipe.data.synthetic.seed = seed  # another world per seed: the data's noise is in the spread too
        if SCALE["synthetic"] == "bench":  # the benchmark world: ≥ 2,000 eval positives per slice (`make bench-world`)
            recipe.data.synthetic.rows, recipe.data.synthetic.days = BENCH.spec.rows, BENCH.spec.days
            recipe.data.train.days, recipe.data.student.days = BENCH.cutoff, BENCH.student
            recipe.data.validation.days, recipe.data.eval.days = BENCH.validation, BENCH.eval
    elif SCALE["users"] < 1:  # a fixed log (MovieLens): another sample of its users per seed varies the data
        recipe.data.users = UserSampleConfig(fraction=SCALE["users"], seed=seed)
    if SCALE["knowledge"] == "training_traffic":  # production's protocol: knowledge scored from the teacher's training traffic
        recipe.transfer.knowledge, recipe.trainer.order = "training_traffic", "time"
    recipe.transfer.vanilla_reference = False  # the ablation's own "vanilla KD" variant is the reference
    recipe.output_dir = str(OUTPUT)
    recipe.trainer.progress = False
    recipe.tracking.experiment = f"bench_{recipe.name}"
    for key, value in overrides.items():
        _set(recipe, key, value)
    validate(recipe, path)
    return recipe


def _set(recipe: Recipe, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    node = recipe
    for part in parents:
        node = node[int(part)] if part.isdigit() else getattr(node, part)
    setattr(node, last, value)


def ablation(study: Study, seeds: list[int], collected: Collected, only: list[str] | None = None, trials: int = 0,
             gated: bool = True) -> list[dict]:
    """Run every chosen variant on every seed; with `trials`, each variant first tuned (see `tuned`);
    without `gated`, on every slice whatever the headroom gate says (it is still reported).
    → the knobs tuning chose (one row per tuned variant; empty without tuning)."""
    direct, hierarchical = load_recipe(REPO / study.direct), load_recipe(REPO / study.hierarchical)
    if study.students:
        direct.students = hierarchical.students = [StudentConfig(vertical=name) for name in study.students]
    variants = {name: recipe for name, recipe in ablation_variants(direct, hierarchical).items()
                if (name in only if only else name not in ON_REQUEST_VARIANTS) or name == "vanilla KD"}  # vanilla KD: every comparison's reference
    chosen: list[dict] = []
    if trials:
        variants, chosen = tuned(study, variants, seeds[0], trials)
    _run(study, {"vanilla KD": variants.pop("vanilla KD")}, seeds, collected)  # it trains the teacher and the baselines the gate reads
    if not gated:
        _run(study, variants, seeds, collected)
        return chosen
    passing = gated_verticals(pl.DataFrame(collected.rows).filter(pl.col("dataset") == study.name))
    if not passing:
        print(f"  {study.name}: the headroom gate passes on no slice: the other {len(variants)} variants are not run", flush=True)
        return chosen
    for recipe in variants.values():
        recipe.students = [student for student in recipe.students if student.vertical in passing]
    _run(study, variants, seeds, collected)
    return chosen


def _run(study: Study, variants: dict[str, Recipe], seeds: list[int], collected: Collected) -> None:
    for seed in seeds:
        for variant, recipe in variants.items():
            start = time.perf_counter()
            collected.add(study.name, variant, seed, run_quietly(recipe, _study_path(study, variant), seed, {}))
            print(f"  {study.name} seed {seed}: {variant} ({time.perf_counter() - start:.0f} s)", flush=True)


def gated_verticals(frame: pl.DataFrame) -> set[str]:
    """The VMs whose slice passes the headroom gate on `frame` (one study's rows; `benchmarks.headroom`),
    each failing one said in a line: only those are studied with the other variants."""
    verticals = dict(frame.filter(pl.col("role") == "baseline").select("slice", "model").unique().iter_rows())
    passing = set()
    for found in headroom(frame):
        if found.problem:
            print(f"  headroom gate: {found.dataset} {found.slice} ({verticals[found.slice]}) is not studied: {found.problem}", flush=True)
        else:
            passing.add(verticals[found.slice])
    return passing


def _study_path(study: Study, variant: str) -> Path:
    return REPO / (study.hierarchical if "hierarchical" in variant else study.direct)


def tuned(study: Study, variants: dict[str, Recipe], seed: int, trials: int) -> tuple[dict[str, Recipe], list[dict]]:
    """Each variant with its last stage's technique knobs chosen by `gem-transfer tune` with the same
    budget (`trials` trials each, on seed `seed`'s validation window: the eval window is never seen);
    variants without knobs (sharing alone adds none) are run as they are. The study for each variant is
    its recipe as the benchmark runs it, written as YAML under `benchmarks/.runs/tuning/` (reruns resume
    it). → the tuned variants, and per variant the knobs chosen with their validation NE."""
    folder = OUTPUT / "tuning" / study.name
    folder.mkdir(parents=True, exist_ok=True)
    result_variants, chosen = {}, []
    for variant, recipe in variants.items():
        index = len(recipe.transfer.stages) - 1
        result_variants[variant] = recipe = copy.deepcopy(recipe)
        if not stage_knobs(recipe.transfer.stages[index]):
            continue
        file = folder / (re.sub(r"[^a-z0-9]+", "_", variant.lower()).strip("_") + ".yaml")
        write_text_atomic(file, bench_recipe(recipe, _study_path(study, variant), seed, {}).to_yaml())
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            result = tune(file, [], trials)
        for key, value in result.best_params.items():
            _set(recipe, f"transfer.stages.{index}.{key}", value)
        chosen.append({"variant": variant, "best val NE": result.best_value, **result.best_params})
        print(f"  {study.name}: tuned {variant} in {trials} trials ({time.perf_counter() - start:.0f} s): "
              + ", ".join(f"{k}={v:.3g}" for k, v in result.best_params.items()), flush=True)
    return result_variants, chosen


def knobs_table(chosen: list[dict]) -> str:
    """Markdown: per tuned variant, the knobs chosen and the mean validation NE they reached."""
    if not chosen:
        return ""
    keys = sorted({key for row in chosen for key in row} - {"variant", "best val NE", "trials"})
    lines = ["| variant | mean val NE (tuning seed) | " + " | ".join(keys) + " |", "|---" * (len(keys) + 2) + "|"]
    for row in chosen:
        lines.append(f"| {row['variant']} | {row['best val NE']:.4f} | "
                     + " | ".join(f"{row[k]:.3g}" if k in row else "—" for k in keys) + " |")
    return "\n".join(lines)


def staleness(seeds: list[int], collected: Collected, sweep: tuple[int, ...]) -> None:
    """The staleness sweep: at each d the teacher's window ends d days before the students' (fixed)
    window, with and without the Student Adapter. On the benchmark world the log starts as many days before the teacher's
    window as the recipe leaves (a week; same density), so the stalest teacher still has 21 days."""
    path = REPO / STALENESS_RECIPE
    base = load_recipe(path)
    scale = {}
    if SCALE["synthetic"] == "bench":
        lead = (date.fromisoformat(base.data.train.start) - date.fromisoformat(base.data.synthetic.start)).days  # the recipe's room for the stalest teacher
        days = BENCH.spec.days + lead
        scale = {"data.synthetic.days": days, "data.synthetic.rows": round(BENCH.spec.rows * days / BENCH.spec.days)}
    stage = base.transfer.stages[0]
    arms = {  # the adapter, its identity placebo and a run without it at the same total distillation weight
        "without adapter": {"transfer.stages.0.adapter.enabled": False},
        "with adapter": {"transfer.stages.0.adapter.enabled": True},
        "placebo adapter": {"transfer.stages.0.adapter.enabled": True, "transfer.stages.0.adapter.placebo": True},
        "weight-matched control": {"transfer.stages.0.adapter.enabled": False,
                                   "transfer.stages.0.distillation.weight": stage.distillation.weight + stage.adapter.weight},
    }
    for seed in seeds:
        for days in sweep:
            for arm, settings in arms.items():
                if days != max(sweep) and arm not in ("without adapter", "with adapter"):
                    continue  # the controls run at the stalest d, where the adapter's claim is decided
                variant = f"d={days} {arm}"
                start = time.perf_counter()
                collected.add("staleness", variant, seed, run_quietly(base, path, seed, scale | settings | {"transfer.staleness_days": days}))
                print(f"  staleness seed {seed}: {variant} ({time.perf_counter() - start:.0f} s)", flush=True)


def _mean_std(values: list[float], digits: int) -> str:
    values = [v for v in values if v is not None and not math.isnan(v)]  # e.g. recal NE where the fit day holds one class
    if not values:
        return "n/a"
    if len(values) < 2:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def ablation_table(frame: pl.DataFrame, dataset: str) -> str:
    """Markdown: per VM, the teacher/domain FM, baseline and each variant — NE and AUC (mean ± std
    over seeds), lift % with its 95% interval over seeds, and the gain ratio (ratio of mean gains, with
    Fieller's interval; undefined where vanilla KD's gain is not resolvable)."""
    data = frame.filter(pl.col("dataset") == dataset)
    lines = ["| VM (slice) | model | NE | AUC | recal NE | lift % [95% CI over seeds] | gain ratio vs vanilla KD [Fieller 95% CI] |",
             "|---|---|---|---|---|---|---|"]
    for slice_ in data["slice"].unique(maintain_order=True):
        rows = data.filter(pl.col("slice") == slice_)
        baseline = _baseline(rows)
        entries = [("teacher", rows.filter((pl.col("role") == "teacher") & (pl.col("variant") == "vanilla KD")).sort("seed"))]
        fms = rows.filter(pl.col("role") == "domain_fm")
        entries += [(f"domain FM {m}" + (" (warm-started)" if v == WARM else ""),
                     fms.filter((pl.col("model") == m) & (pl.col("variant") == v)).sort("seed"))
                    for m, v in fms.select("model", "variant").unique(maintain_order=True).iter_rows()]
        entries.append(("baseline", baseline))
        entries += [(v, _student(rows, v)) for v in rows["variant"].unique(maintain_order=True)]
        vanilla_gain = (baseline["NE"] - _student(rows, "vanilla KD")["NE"]).to_list()
        for name, sel in entries:
            gain = "—"
            if name == "vanilla KD":
                gain = "1 (the reference)"
            elif name not in ("teacher", "baseline") and not name.startswith("domain FM"):
                # a ratio of mean gains with Fieller's interval, only where vanilla KD's gain is resolvable over the seeds
                gain = fieller_interval((baseline["NE"] - sel["NE"]).to_list(), vanilla_gain).cell().replace(
                    "undefined: its denominator is not resolvable over the seeds", "undefined (vanilla KD's gain not resolvable)")
            lift = seed_interval(sel["lift %"].to_list())
            lines.append(
                f"| {slice_} | {name} | {_mean_std(sel['NE'].to_list(), 4)} | {_mean_std(sel['AUC'].to_list(), 4)} | "
                f"{_mean_std(sel['recal NE'].to_list(), 4)} | {_with_interval(lift, 2)} | {gain} |"
            )
    return "\n".join(lines)


def claims_table(frame: pl.DataFrame, dataset: str) -> str:
    """Markdown: the study's endpoints, named before its data. Primary: GEM's 2× claim on each VM for
    each combined variant — gain_combined − 2·gain_vanilla (NE points), its verdict Holm-adjusted over
    all of them (one claim, one family). Secondary, each variant's NE points over vanilla KD, Holm-
    adjusted within its VM. Each is the mean of per-seed paired differences with its 95% interval; per
    slice its eval positives and the minimum detectable effect (80% power)."""
    data = frame.filter(pl.col("dataset") == dataset)
    rows_out, primary, secondary = [], [], {}
    for slice_ in data["slice"].unique(maintain_order=True):
        rows = data.filter(pl.col("slice") == slice_)
        baseline, vanilla = _baseline(rows)["NE"], _student(rows, "vanilla KD")["NE"]
        positives = statistics.mean(_student(rows, "vanilla KD")["eval positives"].cast(pl.Float64).to_list())
        for variant in [v for v in rows["variant"].unique(maintain_order=True) if v != "vanilla KD"]:
            ne = _student(rows, variant)["NE"]
            over = seed_interval((100 * (vanilla - ne)).to_list())
            twice = seed_interval((100 * ((baseline - ne) - 2 * (baseline - vanilla))).to_list()) if variant in COMBINED else None
            rows_out.append((slice_, positives, variant, over, twice))
            secondary.setdefault(slice_, []).append(len(rows_out) - 1)
            if twice is not None:
                primary.append(len(rows_out) - 1)
    if not rows_out:  # vanilla KD alone: no endpoint against it
        return ""
    adjusted_primary = dict(zip(primary, holm_adjusted([rows_out[i][4].p_value for i in primary]), strict=True))
    adjusted_secondary = {i: p for members in secondary.values()
                          for i, p in zip(members, holm_adjusted([rows_out[i][3].p_value for i in members]), strict=True)}
    lines = ["| VM (slice) | eval positives per seed | variant | NE points over vanilla KD [95% CI] | vs vanilla KD (secondary, Holm within VM) | "
             "MDE (80% power) | gain − 2·vanilla gain, NE points [95% CI] | Holm-adjusted p | GEM's 2× (primary) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for i, (slice_, positives, variant, over, twice) in enumerate(rows_out):
        claim = ("", "", "")
        if twice is not None:
            verdict = {"better": "holds", "worse": "refuted"}.get(holm_verdict(twice, adjusted_primary[i]), "not distinguishable")
            claim = (_with_interval(twice, 2), f"{adjusted_primary[i]:.3f}", verdict)
        lines.append(f"| {slice_} | {positives:,.0f} | {variant} | {_with_interval(over, 2)} | {holm_verdict(over, adjusted_secondary[i])} | "
                     f"{over.minimum_detectable():.2f} | {claim[0]} | {claim[1]} | {claim[2]} |")
    return "\n".join(lines)


def embeddings_table(frame: pl.DataFrame, dataset: str) -> str:
    """Markdown: the teacher's embeddings as a VM input, endpoints named before the data. Primary:
    embedding features + vanilla KD against vanilla KD on each slice (NE points, positive = the
    embeddings add to KD), Holm over the slices. Secondary: embedding features alone against the
    baseline VM (its lift with no soft labels), Holm over the slices; each variant's FLOPs against
    vanilla KD's (the lookup and projection are in the served VM). "" when neither variant ran."""
    data = frame.filter((pl.col("dataset") == dataset) & (pl.col("role") == "student"))
    if not {EMBEDDINGS, EMBEDDINGS_KD} & set(data["variant"].to_list()):
        return ""
    found = []
    for slice_ in data["slice"].unique(maintain_order=True):
        rows = frame.filter((pl.col("dataset") == dataset) & (pl.col("slice") == slice_))
        vanilla, baseline = _student(rows, "vanilla KD"), _baseline(rows)
        for variant, reference, against in ((EMBEDDINGS_KD, vanilla, "vanilla KD"), (EMBEDDINGS, baseline, "baseline VM")):
            own = _student(rows, variant)
            if own.is_empty():
                continue
            gain = seed_interval((100 * (reference["NE"] - own["NE"])).to_list())
            flops = statistics.mean(own["FLOPs vs teacher"].to_list()) / statistics.mean(vanilla["FLOPs vs teacher"].to_list())
            found.append((slice_, variant, against, gain, flops, statistics.mean(own["eval positives"].cast(pl.Float64).to_list())))
    lines = ["| VM (slice) | eval positives per seed | variant | against | NE points [95% CI] | Holm-adjusted p (over slices) | verdict | "
             "FLOPs × vanilla KD's |", "|---|---|---|---|---|---|---|---|"]
    for variant, endpoint in ((EMBEDDINGS_KD, "primary"), (EMBEDDINGS, "secondary")):
        members = [row for row in found if row[1] == variant]
        for (slice_, _, against, gain, flops, positives), p in zip(members, holm_adjusted([row[3].p_value for row in members]), strict=True):
            lines.append(f"| {slice_} | {positives:,.0f} | {variant} ({endpoint}) | {against} | {_with_interval(gain, 2)} | {p:.3f} | "
                         f"{holm_verdict(gain, p)} | {flops:.3f} |")
    return "**Embedding features** (the teacher's user embeddings as a VM input; positive = better than what it is set against):\n\n" + "\n".join(lines)


TRANSFER_CLAIM = 0.7  # GEM: a VM keeps at least this share of the teacher's lead…
FLOPS_CLAIM = 1 / 20  # …at no more than this share of its forward FLOPs


def transfer_ratio_table(frame: pl.DataFrame, dataset: str) -> str:
    """Markdown: each variant's transfer ratio over seeds — mean student gain over mean teacher lead
    (NE, both against the baseline VM), with its Fieller interval — on every slice where the teacher's
    lead is resolvable (elsewhere the ratio does not exist). Primary: vanilla KD's ratio against GEM's
    0.7 at ≤ 1/20 of the teacher's FLOPs, its interval Bonferroni-adjusted over the slices (a superset
    of Holm's, so a verdict from it holds under Holm too); the other variants' ratios are secondary."""
    data = frame.filter(pl.col("dataset") == dataset)
    slices = []
    for slice_ in data["slice"].unique(maintain_order=True):
        rows = data.filter(pl.col("slice") == slice_)
        teacher = rows.filter((pl.col("role") == "teacher") & (pl.col("variant") == "vanilla KD")).sort("seed")
        lead = (100 * (_baseline(rows)["NE"] - teacher["NE"])).to_list()
        if len(lead) > 1 and fieller_interval(lead, lead).defined:  # the lead resolvably positive: a ratio exists
            slices.append((slice_, rows, lead))
    if not slices:
        return "**Transfer ratio**: undefined on every slice (the teacher's lead over the baseline VM is not resolvable)."
    level = 1 - (1 - 0.95) / len(slices)
    lines = ["**Transfer ratio** (mean gain over mean teacher lead, Fieller 95% CI over seeds; primary: vanilla KD against GEM's "
             f"≥ {TRANSFER_CLAIM:g} at ≤ 1/{1 / FLOPS_CLAIM:.0f} of the teacher's FLOPs, its interval at {level:.1%} — Bonferroni over "
             f"{len(slices)} slice(s)):", "",
             "| VM (slice) | variant | FLOPs vs teacher | transfer ratio [95% CI] | adjusted CI (primary) | GEM's ≥ 0.7 (primary) |",
             "|---|---|---|---|---|---|"]
    for slice_, rows, lead in slices:
        for variant in rows.filter(pl.col("role") == "student")["variant"].unique(maintain_order=True).to_list():
            student = _student(rows, variant)
            gain = (100 * (_baseline(rows)["NE"] - student["NE"])).to_list()
            flops = statistics.mean(student["FLOPs vs teacher"].to_list())
            ratio = fieller_interval(gain, lead)
            adjusted, verdict = "", ""
            if variant == "vanilla KD":
                wide = fieller_interval(gain, lead, level)
                adjusted = f"[{wide.low:.2f}, {wide.high:.2f}]"
                verdict = ("not applicable (over the FLOPs share)" if flops > FLOPS_CLAIM else "holds" if wide.low >= TRANSFER_CLAIM
                           else "refuted" if wide.high < TRANSFER_CLAIM else "not distinguishable")
            lines.append(f"| {slice_} | {variant} | {flops:.3f} | {ratio.ratio:.2f} [{ratio.low:.2f}, {ratio.high:.2f}] | {adjusted} | {verdict} |")
    return "\n".join(lines)


FAR_DOMAIN = "msg_"  # the synthetic world's far domain (messenger): where hierarchical transfer claims to beat direct


def hierarchy_table(frame: pl.DataFrame, dataset: str) -> str:
    """Markdown: hierarchical (its warm-started variant where it ran, else plain) against direct, all
    techniques combined, NE points per seed (positive = hierarchical better). Endpoints named before the
    data: primary, the far domain's VMs (the claim "beats direct on the far domain"), Holm over them;
    secondary, the other VMs ("no worse elsewhere"), Holm over them. "" when the study lacks either arm."""
    data = frame.filter((pl.col("dataset") == dataset) & (pl.col("role") == "student"))
    variants = set(data["variant"].to_list())
    hierarchical = next((v for v in (WARM, "all combined (hierarchical)") if v in variants), None)
    if hierarchical is None or "all combined (direct)" not in variants:
        return ""
    measured = []
    for slice_ in data["slice"].unique(maintain_order=True):
        rows = data.filter(pl.col("slice") == slice_)
        effect = seed_interval((100 * (_student(rows, "all combined (direct)")["NE"] - _student(rows, hierarchical)["NE"])).to_list())
        measured.append((slice_, slice_.startswith(FAR_DOMAIN), effect))
    adjusted = {}
    for far in (True, False):
        members = [i for i, (_, is_far, _) in enumerate(measured) if is_far == far]
        adjusted |= dict(zip(members, holm_adjusted([measured[i][2].p_value for i in members]), strict=True))
    lines = [f"| VM (slice) | domain | {hierarchical} − all combined (direct), NE points [95% CI] | Holm-adjusted p | verdict |",
             "|---|---|---|---|---|"]
    for i, (slice_, far, effect) in enumerate(measured):
        lines.append(f"| {slice_} | {'far (primary)' if far else 'near (secondary)'} | {_with_interval(effect, 2)} | {adjusted[i]:.3f} | "
                     f"{holm_verdict(effect, adjusted[i])} |")
    return "\n".join(lines)


def gate_table(frame: pl.DataFrame, dataset: str, applied: bool = True) -> str:
    """The headroom gate on this study's seeds (teacher − baseline VM per slice): the variants beyond vanilla
    KD run only on the VMs whose slice passes it — unless it is not `applied` (`--ungated`): then it is reported."""
    table = headroom_table(headroom(frame.filter(pl.col("dataset") == dataset)))
    how = ("reported, not applied: this run (`--ungated`) ran every variant on every slice; a transfer ratio still exists only "
           "where the teacher's lead is resolvable" if not applied else
           "the variants beyond vanilla KD run only on the VMs whose slice passes; runs made before the gate ran every variant")
    with pl.Config(tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True, tbl_rows=-1, tbl_cols=-1,
                   tbl_width_chars=10_000, fmt_str_lengths=200, tbl_formatting="ASCII_MARKDOWN"):
        return f"**Headroom gate** (`benchmarks/headroom.py`; {how}):\n\n" + str(table.drop("dataset"))


def _with_interval(interval: SeedInterval, digits: int) -> str:
    return f"{interval.mean:.{digits}f} [{interval.low:.{digits}f}, {interval.high:.{digits}f}]"


def _baseline(rows: pl.DataFrame) -> pl.DataFrame:
    """The no-transfer baseline per seed (the same model in every variant's run: reused from the stage cache)."""
    return rows.filter((pl.col("role") == "baseline") & (pl.col("variant") == "vanilla KD")).sort("seed")


def _student(rows: pl.DataFrame, variant: str) -> pl.DataFrame:
    return rows.filter((pl.col("role") == "student") & (pl.col("variant") == variant)).sort("seed")


def _pick(rows: pl.DataFrame, role: str, variant_part: str) -> pl.DataFrame:
    return rows.filter((pl.col("role") == role) & pl.col("variant").str.contains(variant_part)).sort("seed")


def staleness_table(frame: pl.DataFrame) -> str:
    """Markdown: per VM and staleness d, the teacher's and baseline's NE (mean ± std over seeds), the
    student's lift without and with the adapter, what staleness costs the student without it (NE points
    against d = 0) and what the adapter changes (NE points, positive = better) — each with its 95%
    interval over seeds of per-seed paired differences."""
    data = frame.filter((pl.col("dataset") == "staleness") & (pl.col("role").is_in(["student", "baseline", "teacher"])))
    lines = ["| VM (slice) | d | eval positives per seed | teacher NE | baseline NE | lift % without adapter [95% CI] | lift % with adapter [95% CI] | "
             "staleness cost without adapter, NE points vs d = 0 [95% CI] | adapter effect, NE points [95% CI] | adapter (secondary, Holm within the VM) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for slice_ in data["slice"].unique(maintain_order=True):
        rows = data.filter(pl.col("slice") == slice_)
        fresh = _pick(rows, "student", "d=0 without")["NE"]
        cells: list[tuple[SeedInterval, str]] = []
        for days in sorted({int(v.split()[0][2:]) for v in rows["variant"].to_list()}):
            sel = rows.filter(pl.col("variant").str.starts_with(f"d={days} "))
            without, with_ = _pick(sel, "student", "without adapter"), _pick(sel, "student", " with adapter")
            if without.is_empty() or with_.is_empty():
                continue
            cost = seed_interval((100 * (without["NE"] - fresh)).to_list()) if days else None
            effect = seed_interval((100 * (without["NE"] - with_["NE"])).to_list())
            positives = statistics.mean(without["eval positives"].cast(pl.Float64).to_list())
            cells.append((effect, f"| {slice_} | {days} | {positives:,.0f} | {_mean_std(_pick(sel, 'teacher', 'without')['NE'].to_list(), 4)} | "
                                  f"{_mean_std(_pick(sel, 'baseline', 'without')['NE'].to_list(), 4)} | "
                                  f"{_with_interval(seed_interval(without['lift %'].to_list()), 2)} | "
                                  f"{_with_interval(seed_interval(with_['lift %'].to_list()), 2)} | {_with_interval(cost, 2) if cost else '—'} | "
                                  f"{_with_interval(effect, 2)} |"))
        adjusted = holm_adjusted([effect.p_value for effect, _ in cells])  # secondary: the adapter's effect, Holm over the VM's d values
        lines += [f"{line} {holm_verdict(effect, p)} |" for (effect, line), p in zip(cells, adjusted, strict=True)]
    return "\n".join(lines)


def adapter_controls_table(frame: pl.DataFrame) -> str:
    """Markdown: at the stalest d, the adapter against no adapter, its identity placebo and the
    weight-matched control (NE points, positive = the adapter better), and whether it wins back half
    of what staleness costs. What it wins back is the part of the staleness cost it removes — its gain
    at d net of its gain with a fresh teacher (d = 0), which its extra head gives at any staleness:
    the interval of [(NE without − NE with) at d − (NE without − NE with) at 0] − ½·(NE without at d − NE without at 0)."""
    data = frame.filter((pl.col("dataset") == "staleness") & (pl.col("role") == "student"))
    days = max(int(v.split()[0][2:]) for v in data["variant"].to_list())
    if days == 0 or data.filter(pl.col("variant") == f"d={days} placebo adapter").is_empty():
        return ""
    measured = []
    for slice_ in data["slice"].unique(maintain_order=True):
        rows = data.filter(pl.col("slice") == slice_)
        arm = {name: _pick(rows, "student", f"^d={days} {name}$")["NE"] for name in ("without adapter", "with adapter", "placebo adapter", "weight-matched control")}
        fresh = _pick(rows, "student", "^d=0 without adapter$")["NE"]
        fresh_adapter = _pick(rows, "student", "^d=0 with adapter$")["NE"]
        adapter = arm["with adapter"]
        versus = [seed_interval((100 * (arm[name] - adapter)).to_list()) for name in ("without adapter", "placebo adapter", "weight-matched control")]
        cost_points = 100 * (arm["without adapter"] - fresh)  # [seeds]
        won_points = 100 * ((arm["without adapter"] - adapter) - (fresh - fresh_adapter))  # [seeds]
        cost, won = seed_interval(cost_points.to_list()), seed_interval(won_points.to_list())
        half = seed_interval((won_points - 0.5 * cost_points).to_list())
        measured.append((slice_, versus, cost, won, half))
    # primary: won back − ½·cost on each VM whose staleness cost is resolvable (else the win-back is undefined), Holm over them
    defined = [i for i, (_, _, cost, _, _) in enumerate(measured) if cost.low > 0]
    primary = dict(zip(defined, holm_adjusted([measured[i][4].p_value for i in defined]), strict=True))
    lines = [f"| VM (slice) | d | adapter vs none [95% CI] | vs placebo | vs weight-matched control (these three: secondary, Holm within the VM) | "
             f"staleness cost (d = {days} vs 0) | won back (its gain at d − its gain at 0) [95% CI] | won back − ½·cost [95% CI] | "
             "Holm-adjusted p | wins back ≥ 50 % (primary) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for i, (slice_, versus, cost, won, half) in enumerate(measured):
        adjusted = holm_adjusted([v.p_value for v in versus])
        cells = " | ".join(f"{_with_interval(v, 2)} {holm_verdict(v, p)}" for v, p in zip(versus, adjusted, strict=True))
        if i in primary:
            holds = {"better": "yes", "worse": "no"}.get(holm_verdict(half, primary[i]), "not distinguishable")
            p_cell = f"{primary[i]:.3f}"
        else:
            holds, p_cell = "undefined: no resolvable staleness cost to win back", ""
        lines.append(f"| {slice_} | {days} | {cells} | {_with_interval(cost, 2)} | {_with_interval(won, 2)} | {_with_interval(half, 2)} | "
                     f"{p_cell} | {holds} |")
    return "\n".join(lines)


def section_id(study: str, scale: str = "bench", tuned: bool = False, knowledge: str = "separate") -> str:
    """The RESULTS.md section a run of `study` ("staleness" or a name of STUDIES) writes: the current
    one for the VMs as they ship (`benchmarks.sections`), on the synthetic world's `scale`
    (`--synthetic-scale`; MovieLens has one), with its knobs `tuned` (`--tune`; the staleness sweep
    tunes nothing), its knowledge from the teacher's training traffic (`--knowledge`)."""
    name = "transfer-staleness-wide" if study == "staleness" else f"transfer-ablation-{study}-best-epoch"
    return (name + ("-400k" if scale == "recipe" and not study.startswith("movielens") else "") + ("-tuned" if tuned and study != "staleness" else "")
            + ("-traffic" if knowledge == "training_traffic" else ""))


def csv_path(section: str) -> Path:
    """Where a run writing `section` writes its CSV (its tuned knobs beside it, `_knobs.csv`): named
    after the section, under benchmarks/results/transfer/."""
    name = section.removeprefix("transfer-ablation-").removeprefix("transfer-")
    return study_dir("transfer") / f"transfer_ablation_{name.replace('-', '_')}.csv"


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--only", choices=[*STUDIES, "staleness"], nargs="+", default=None,
                        help=f"only these studies (default: all but {', '.join(sorted(ON_REQUEST))})")
    parser.add_argument("--variants", nargs="+", default=None, help="only these variants (vanilla KD always runs)")
    parser.add_argument("--staleness-days", type=int, nargs="+", default=list(STALENESS_DAYS), help="the staleness sweep's d values (0 always runs)")
    parser.add_argument("--from-csv", type=Path, default=None,
                        help="analyse this run's CSV again instead of running (the studies it holds, unless --only)")
    parser.add_argument("--section", default=None,
                        help="the RESULTS.md section to write (default: the study's current one, transfer-ablation-<study>-best-epoch[-400k][-tuned] "
                             "or transfer-staleness-wide[-400k]; needed to re-analyse any CSV but the one that section's run writes)")
    parser.add_argument("--synthetic-scale", choices=["bench", "recipe"], default="bench",
                        help="bench: 1.6M impressions over 40 days, eval 10 days (≥ 2,000 eval positives per slice); recipe: the recipes' 400k")
    parser.add_argument("--movielens-users", type=float, default=0.8,
                        help="below 1: each seed runs MovieLens on its own seeded sample of this share of the users (data.users), so seeds vary the data too")
    parser.add_argument("--knowledge", choices=["separate", "training_traffic"], default="separate",
                        help="training_traffic: the teacher trains on through the students' window in time order and scores each batch "
                             "before it learns from it (production's protocol; the staleness sweep cannot run with it)")
    parser.add_argument("--ungated", action="store_true",
                        help="run the variants on every slice, whatever the headroom gate says (it is reported; a ratio still exists "
                             "only where the teacher's lead is resolvable): for channels measured by their lift, such as embedding features")
    parser.add_argument("--tune", type=int, default=0, metavar="TRIALS",
                        help="tune each variant's technique knobs first (gem-transfer tune, TRIALS trials each, on the first seed's validation window)")
    return parser


def _knobs_file(csv: Path) -> Path:
    return csv.with_name(csv.stem + "_knobs.csv")


def plan(args: argparse.Namespace) -> tuple[list[str], int, dict[str, str]]:
    """What a run with `args` does: the studies it runs or, re-analysing a CSV, those the CSV holds
    (unless `--only`); its tuning trials (a re-analysis: those its knobs CSV records); per study, the
    section it writes — `--section` where given (for the staleness sweep only when it runs alone),
    else its current one (`section_id`), which a re-analysis writes only from that section's own CSV."""
    studies = [*STUDIES, "staleness"]
    trials = args.tune
    if args.from_csv is not None:
        held = set(pl.read_csv(args.from_csv, columns=["dataset"])["dataset"].to_list())
        studies = [name for name in studies if name in held]
        if _knobs_file(args.from_csv).is_file():
            trials = trials or int(pl.read_csv(_knobs_file(args.from_csv), columns=["trials"])["trials"][0])
    chosen = [name for name in studies if (name in args.only if args.only else name not in ON_REQUEST)]
    sections = {}
    for name in chosen:
        if args.section and (name != "staleness" or chosen == ["staleness"]):
            sections[name] = args.section
            continue
        sections[name] = section_id(name, args.synthetic_scale, bool(trials), args.knowledge)
        own = csv_path(sections[name])
        if args.from_csv is not None and args.from_csv.resolve() != own.resolve():
            raise SystemExit(f"transfer_ablation: {shown(args.from_csv)} is not the CSV of {sections[name]} ({shown(own)}): "
                             "name the section its analysis goes to with --section")
    return chosen, trials, sections


def main() -> None:
    args = arguments().parse_args()
    chosen, args.tune, sections = plan(args)
    SCALE["synthetic"], SCALE["users"], SCALE["knowledge"] = args.synthetic_scale, args.movielens_users, args.knowledge
    seeds = list(range(args.seeds))
    collected = Collected()
    start = time.perf_counter()
    knobs: dict[str, list[dict]] = {}
    source: dict[str, str] = {}  # per study, where its figures come from
    if args.from_csv is not None:
        frame = pl.read_csv(args.from_csv, schema_overrides={"eval positives": pl.String})
        seeds = sorted(set(frame["seed"].to_list()))
        source = dict.fromkeys(chosen, f"analysed again from `{shown(args.from_csv)}`")
        if _knobs_file(args.from_csv).is_file():  # the knobs a tuned run chose, per dataset
            chosen_knobs = pl.read_csv(_knobs_file(args.from_csv))
            for name in chosen_knobs["dataset"].unique(maintain_order=True).to_list():
                knobs[name] = [{k: v for k, v in row.items() if k not in ("dataset", "commit", "dirty") and v is not None}
                               for row in chosen_knobs.filter(pl.col("dataset") == name).iter_rows(named=True)]
    else:
        for name, study in STUDIES.items():
            if name in chosen:
                knobs[name] = ablation(study, seeds, collected, args.variants, args.tune, gated=not args.ungated)
        if "staleness" in chosen:
            staleness(seeds, collected, tuple(sorted({0, *args.staleness_days})))
        frame = pl.DataFrame(collected.rows)
        minutes = (time.perf_counter() - start) / 60
        for section in dict.fromkeys(sections.values()):  # each section's rows (and tuned knobs) in its CSV
            studies, csv = [name for name in chosen if sections[name] == section], csv_path(section)
            write_csv(frame.filter(pl.col("dataset").is_in(studies)), csv)
            if any(knobs.get(name) for name in studies):
                write_csv(pl.DataFrame([{"dataset": name, "trials": args.tune, **row} for name in studies for row in knobs.get(name, [])],
                                       infer_schema_length=None), _knobs_file(csv))
            source |= dict.fromkeys(studies, f"{minutes:.0f} min for this run, CSV `{shown(csv)}`")
    for name in STUDIES:
        if name in chosen:
            synthetic = not name.startswith("movielens")
            varies = "recipe `seed` and `data.synthetic.seed`: models and data" if synthetic else (
                f"recipe `seed` and `data.users` (a seeded {args.movielens_users:.0%} of the users): models and data" if args.movielens_users < 1
                else "recipe `seed`: models only (one fixed log)")
            scale = ""
            if synthetic:
                scale = (f" World: {BENCH.spec.rows:,} impressions over {BENCH.spec.days} days, windows {BENCH.cutoff}/{BENCH.student}/"
                         f"{BENCH.validation}/{BENCH.eval} days." if args.synthetic_scale == "bench" else " World: the recipes' own 400k impressions, windows 21/7/1/3 days.")
            tuning = ""
            if args.tune:
                tuning = (f" Every variant's technique knobs tuned first with the same budget: `gem-transfer tune`, {args.tune} trials each "
                          f"(seeded TPE, median pruner) on seed {seeds[0]}'s validation window; the knobs chosen:\n\n"
                          + knobs_table(knobs.get(name, [])) + "\n")
            protocol = (" Knowledge from training traffic (`transfer.knowledge: training_traffic`, `trainer.order: time`): the teacher trains "
                        "on through the students' window and scores each batch just before it learns from it."
                        if args.knowledge == "training_traffic" else "")
            body = (f"{len(seeds)} seeds ({varies}); {source[name]} (torch on {torch.get_num_threads()} threads).{scale}{protocol}{tuning}\n\n"
                    + gate_table(frame, name, applied=not args.ungated) + "\n\n" + ablation_table(frame, name) + "\n\n" + claims_table(frame, name)
                    + "\n\n" + transfer_ratio_table(frame, name)
                    + (f"\n\n{embeddings}" if (embeddings := embeddings_table(frame, name)) else "")
                    + (f"\n\n{hierarchy}" if (hierarchy := hierarchy_table(frame, name)) else ""))
            write_section(sections[name], command_line(), body)
            print(body)
    if "staleness" in chosen:
        world = (f"the benchmark world ({BENCH.spec.rows:,} impressions per {BENCH.spec.days} days, the log starting a week earlier for the stalest teacher; "
                 f"windows teacher 21 / students {BENCH.student} / validation {BENCH.validation} / eval {BENCH.eval} days)"
                 if args.synthetic_scale == "bench" else "the recipe's own world")
        lag = (" Knowledge from training traffic (`transfer.knowledge: training_traffic`, `trainer.order: time`): at every d the "
               "teacher trains on its window and the students' in time order, and each student row of day D is scored by the teacher "
               "as it was before day D − d (d = 0: just before it learnt from the row's batch); the windows never move."
               if args.knowledge == "training_traffic" else " The students' and eval windows are the same at every d: only the teacher's cutoff moves.")
        body = (f"`{STALENESS_RECIPE}` on {world}; {len(seeds)} seeds (models and data); {source['staleness']} (torch on {torch.get_num_threads()} threads). "
                f"{lag} Effects are means of per-seed paired differences "
                "with their 95% t-interval.\n\n" + staleness_table(frame) + "\n\n" + adapter_controls_table(frame))
        write_section(sections["staleness"], command_line(), body)
        print(body)


if __name__ == "__main__":
    main()
