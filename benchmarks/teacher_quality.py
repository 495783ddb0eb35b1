"""Teacher quality (issues #4, #14): the GEM teacher against the skeleton teacher, an order-free
counting model (`counts_mlp`: MLP + target-match counts), a DCN-v2-style and an MLP baseline, given the
same training budget (same examples, same epochs, same batch size, same optimiser), on the synthetic
default and on MovieLens-100K, over seeds that vary the data as well as the models (the synthetic
world's seed; a seeded 80 % of MovieLens's users); a scaling curve of eval NE against training FLOPs
and history length over seeds (the skeleton at 128 → 1,024 events and its larger size, gem_lite → gem_tiny
→ gem_base), trained under production's protocol, with GEM against the skeleton at matched compute; and the speed options (torch.compile, bf16-mixed) measured on the
GEM teacher's training steps.

Every model is trained by the same Lightning path a recipe uses (`transfer.training.trainer.fit`) and
scored on the students' window (the rows whose knowledge it would generate, right after its own) and
on the eval window. Each teacher is compared with `counts_mlp` by per-seed paired NE differences with
their 95% t-interval: where a teacher beats it, reading the history (its order, high-order crosses)
bought what target-match counts alone do not. Training FLOPs = 3 × forward FLOPs per example × examples seen.

With `--tune TRIALS` each teacher's learning rate and warm-up are first chosen on seed 0's validation
window; with `--matched-compute` cheaper teachers train more epochs, so every teacher spends about the
training FLOPs of the costliest (the comparison the GEM claim is about).

The quality comparison writes one section of benchmarks/RESULTS.md per dataset (`quality_section`),
its CSV under benchmarks/results/teachers/ (`quality_csv`); `--from-csv` analyses such a CSV again into it.

    python benchmarks/teacher_quality.py [--seeds 3] [--only quality|scaling|speed] [--models NAME …] [--datasets synthetic movielens]
                                         [--tune TRIALS] [--matched-compute] [--reference NAME] [--points TEACHER@HISTORY …]
    python benchmarks/teacher_quality.py --from-csv benchmarks/results/teachers/teacher_quality_counters_synthetic.csv --reference skeleton_tiny
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import lightning as L
import polars as pl
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.results_file import RESULTS, command_line, shown, study_dir, write_csv, write_section  # noqa: E402
from transfer.catalog import catalog  # noqa: E402
from transfer.config.loader import load_recipe  # noqa: E402
from transfer.config.recipe import Recipe, UserSampleConfig  # noqa: E402
from transfer.data.batches import WindowBatches, window_loader  # noqa: E402
from transfer.data.prepare import PreparedData, prepare_data  # noqa: E402
from transfer.evaluation.cost import forward_flops_per_example, parameter_count  # noqa: E402
from transfer.evaluation.intervals import SeedInterval, holm_adjusted, holm_verdict, seed_interval  # noqa: E402
from transfer.training.module import RankingModule  # noqa: E402
from transfer.training.trainer import fit, make_trainer  # noqa: E402
from transfer.util.atomic import atomic_path  # noqa: E402

DATASETS = {"synthetic": "recipes/quickstart.yaml", "movielens": "recipes/movielens_direct.yaml"}
COMPARED = ("gem_tiny", "gem_lite", "skeleton_tiny", "counts_mlp", "dcn_v2", "mlp")
REFERENCE = "counts_mlp"  # the order-free counting model every teacher is paired against
MOVIELENS_USERS = 0.8  # share of MovieLens's users each seed samples (so seeds vary its data)
# the scaling curve's points: (teacher, history length) — the skeleton at 128 → 1,024 events, its larger
# size, and the GEM presets at their own history lengths
SCALING = (("skeleton_tiny", 128), ("skeleton_tiny", 256), ("skeleton_tiny", 1024), ("skeleton_small", 1024),
           ("gem_lite", 128), ("gem_tiny", 256), ("gem_base", 512))
# GEM against the skeleton at about matched compute (the closest preset pairs: GEM's forward FLOPs about 1.5× the
# skeleton's, the ratio printed beside each): the curve's primary endpoints, named before the run
MATCHED = (("gem_lite@128", "skeleton_tiny@256"), ("gem_tiny@256", "skeleton_tiny@1024"))
HISTORY_REFERENCE = "skeleton_tiny@256"  # today's teacher: every other point is paired against it (secondary)
PLOT = study_dir("teachers") / "teacher_scaling.png"
TUNING = REPO / "benchmarks" / ".runs" / "teacher_tuning"
LR_RANGE = (3e-4, 2e-2)
WARMUP_STEPS = (0, 100, 300, 1000)
MAX_EPOCHS = 8


@dataclass(frozen=True)
class Trained:
    """One teacher trained and scored: NE/AUC per task on the eval window, and what it cost."""

    dataset: str
    model: str
    seed: int
    params: int
    flops_per_example: float
    train_flops: float
    train_seconds: float
    scores: dict[str, dict[str, float]]  # task → {"ne", "auc", "calibration", "knowledge_ne", "knowledge_auc"}


def train_and_score(name: str, recipe: Recipe, data: PreparedData, seed: int, dataset: str, sizes: dict | None = None,
                    rows: torch.Tensor | None = None, order: str = "shuffled", label: str | None = None) -> Trained:
    """Train `name` (its catalog sizes, `sizes` overriding some) on `rows` (default: the recipe's teacher
    window) visited in `order` as a recipe would, then score the eval window; `label` names it in the results."""
    cfg = recipe.teacher
    L.seed_everything(seed, verbose=False)
    model = catalog("teacher")[name].build(data.log.inputs, sizes)
    rows = data.train_rows if rows is None else rows
    tasks = list(range(len(data.log.tasks)))
    module = RankingModule(model, data.log.tasks, tasks, lr=cfg.lr, base_rates=data.base_rates(rows, tasks), warmup_steps=cfg.warmup_steps)
    train = window_loader(WindowBatches(data.log, rows, model.history_length), cfg.batch_size, shuffle=True, seed=seed, order=order)
    trainer_cfg = replace(recipe.trainer, progress=False)
    start = time.perf_counter()
    fit(module, train, trainer_cfg, cfg.max_epochs, logger=False)
    seconds = time.perf_counter() - start
    scores = {task: {} for task in data.log.tasks}
    for prefix, rows in (("", data.eval_rows), ("knowledge_", data.student_rows), ("val_", data.validation_rows)):
        if not len(rows):
            continue
        window = window_loader(WindowBatches(data.log, rows, model.history_length), 4096, shuffle=False)
        (logged,) = make_trainer(trainer_cfg, 1, progress=False).test(module, dataloaders=window, verbose=False)
        for task in data.log.tasks:
            scores[task] |= {f"{prefix}{m}": float(logged[f"eval_{task}_{m}"]) for m in ("ne", "auc", "calibration")}
    flops = forward_flops_per_example(model.eval(), data.log.inputs)
    examples = len(rows) * cfg.max_epochs
    return Trained(dataset, label or name, seed, parameter_count(model), flops, 3 * flops * examples, seconds, scores)


def as_rows(results: list[Trained]) -> list[dict]:
    return [
        {"dataset": r.dataset, "model": r.model, "seed": r.seed, "task": task, **metrics, "params": r.params,
         "flops_per_example": r.flops_per_example, "train_flops": r.train_flops, "train_seconds": r.train_seconds}
        for r in results for task, metrics in r.scores.items()
    ]


def summary_table(frame: pl.DataFrame) -> str:
    """Mean ± std over seeds per (dataset, model, task), best NE per (dataset, task) in bold."""
    agg = frame.group_by("dataset", "model", "task").agg(
        pl.col("ne").mean().alias("ne"), pl.col("ne").std().alias("ne_sd"), pl.col("auc").mean().alias("auc"),
        pl.col("auc").std().alias("auc_sd"), pl.col("knowledge_ne").mean(), pl.col("flops_per_example").first(), pl.col("params").first(),
        pl.col("train_seconds").median(), pl.len().alias("seeds") / pl.col("task").n_unique(),
    ).sort("dataset", "task", "ne")
    best = agg.group_by("dataset", "task").agg(pl.col("ne").min().alias("best"))
    lines = ["| dataset | task | teacher | eval NE (mean ± sd) | eval AUC | students'-window NE | params | FLOPs/example | train s | seeds |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in agg.join(best, on=["dataset", "task"]).sort("dataset", "task", "ne").iter_rows(named=True):
        ne = f"{row['ne']:.4f} ± {row['ne_sd'] or 0:.4f}"
        ne = f"**{ne}**" if row["ne"] == row["best"] else ne
        lines.append(
            f"| {row['dataset']} | {row['task']} | {row['model']} | {ne} | {row['auc']:.4f} ± {row['auc_sd'] or 0:.4f} "
            f"| {row['knowledge_ne']:.4f} | {row['params'] / 1e6:.2f} M | {row['flops_per_example'] / 1e6:.2f} M | {row['train_seconds']:.0f} | {row['seeds']:.0f} |"
        )
    return "\n".join(lines)


def paired_table(frame: pl.DataFrame, reference_model: str = REFERENCE) -> str:
    """Each other teacher against `reference_model`: the mean over seeds of the per-seed NE difference
    (NE points, ×100; positive = the teacher is better) with its 95% t-interval. Endpoints named before
    the data: primary, the eval window (the claim "best eval NE"), its verdicts Holm-adjusted over every
    row of the table; secondary, the students' window, Holm-adjusted on its own."""
    lines = [f"| dataset | task | teacher | eval window, NE points over {reference_model} [95% CI] | Holm-adjusted p | verdict (primary) | "
             "students' window [95% CI] | verdict (secondary, Holm) | seeds |", "|---|---|---|---|---|---|---|---|---|"]
    reference = frame.filter(pl.col("model") == reference_model).select(
        "dataset", "task", "seed", pl.col("knowledge_ne").alias("ref_k"), pl.col("ne").alias("ref_e"))
    paired = frame.filter(pl.col("model") != reference_model).join(reference, on=["dataset", "task", "seed"])
    rows = []
    for (dataset, task, model), group in sorted(paired.group_by("dataset", "task", "model"), key=lambda g: g[0]):
        rows.append((dataset, task, model, seed_interval((100 * (group["ref_e"] - group["ne"])).to_list()),
                     seed_interval((100 * (group["ref_k"] - group["knowledge_ne"])).to_list())))
    primary = holm_adjusted([row[3].p_value for row in rows])
    secondary = holm_adjusted([row[4].p_value for row in rows])
    for (dataset, task, model, evaluation, window), p, q in zip(rows, primary, secondary, strict=True):
        lines.append(f"| {dataset} | {task} | {model} | {_interval(evaluation)} | {p:.3f} | {holm_verdict(evaluation, p)} | "
                     f"{_interval(window)} | {holm_verdict(window, q)} | {evaluation.seeds} |")
    return "\n".join(lines)


def _interval(interval: SeedInterval) -> str:
    return f"{interval.mean:+.2f} [{interval.low:.2f}, {interval.high:.2f}]"


def seeded_recipe(dataset: str, seed: int) -> Recipe:
    """The dataset's recipe with seed `seed`'s data: another synthetic world, another sample of MovieLens's users."""
    recipe = load_recipe(REPO / DATASETS[dataset])
    if recipe.data.dataset == "synthetic":
        recipe.data.synthetic.seed = seed
    else:
        recipe.data.users = UserSampleConfig(fraction=MOVIELENS_USERS, seed=seed)
    return recipe


@dataclass(frozen=True)
class Setting:
    """How one teacher trains on one dataset: its learning rate, warm-up and epochs."""

    lr: float
    warmup_steps: int
    epochs: int
    val_ne: float | None = None  # the tuning study's best mean validation NE (None: not tuned)

    def applied(self, recipe: Recipe) -> Recipe:
        teacher = replace(recipe.teacher, lr=self.lr, warmup_steps=self.warmup_steps, max_epochs=self.epochs)
        return replace(recipe, teacher=teacher)


def matched_epochs(models: list[str], recipe: Recipe, data: PreparedData) -> dict[str, int]:
    """Epochs per teacher so each spends about the training FLOPs of the costliest one's epochs
    (examples × forward FLOPs; cheaper models see the window more often), at most `MAX_EPOCHS`."""
    flops = {name: forward_flops_per_example(catalog("teacher")[name].build(data.log.inputs).eval(), data.log.inputs) for name in models}
    budget = max(flops.values()) * recipe.teacher.max_epochs
    return {name: max(1, min(MAX_EPOCHS, round(budget / f))) for name, f in flops.items()}


def tuned_setting(name: str, dataset: str, trials: int, epochs: int) -> Setting:
    """The learning rate and warm-up of `name` on `dataset` chosen by an Optuna study (seeded TPE,
    `trials` trials) on seed 0's validation window (never the eval window); resumable from
    `benchmarks/.runs/teacher_tuning/<dataset>-<name>-<epochs>ep.db`."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    TUNING.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(storage=f"sqlite:///{TUNING / f'{dataset}-{name}-{epochs}ep.db'}", study_name="teacher",
                                direction="minimize", sampler=optuna.samplers.TPESampler(seed=0), load_if_exists=True)
    recipe = seeded_recipe(dataset, 0)
    data = prepare_data(recipe.data)

    def objective(trial) -> float:
        setting = Setting(trial.suggest_float("lr", *LR_RANGE, log=True), trial.suggest_categorical("warmup_steps", WARMUP_STEPS), epochs)
        trained = train_and_score(name, setting.applied(recipe), data, 0, dataset)
        value = sum(s["val_ne"] for s in trained.scores.values()) / len(trained.scores)
        print(f"  tune {dataset} {name}: lr {setting.lr:.2g}, warm-up {setting.warmup_steps} → mean val NE {value:.4f}", flush=True)
        return value

    remaining = trials - sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    if remaining > 0:
        study.optimize(objective, n_trials=remaining)
    return Setting(study.best_params["lr"], study.best_params["warmup_steps"], epochs, study.best_value)


def settings_for(models: list[str], datasets: list[str], trials: int, matched: bool) -> dict[tuple[str, str], Setting]:
    """Per (dataset, teacher): the recipe's lr and warm-up, or tuned ones (`trials` > 0); the recipe's
    epochs, or epochs matched on training FLOPs (`matched`)."""
    settings = {}
    for dataset in datasets:
        recipe = seeded_recipe(dataset, 0)
        epochs = matched_epochs(models, recipe, prepare_data(recipe.data)) if matched else dict.fromkeys(models, recipe.teacher.max_epochs)
        for name in models:
            settings[dataset, name] = (tuned_setting(name, dataset, trials, epochs[name]) if trials
                                       else Setting(recipe.teacher.lr, recipe.teacher.warmup_steps, epochs[name]))
    return settings


def settings_table(settings: dict[tuple[str, str], Setting]) -> str:
    lines = ["| dataset | teacher | lr | warm-up steps | epochs | best mean val NE (tuning, seed 0) |", "|---|---|---|---|---|---|"]
    for (dataset, name), s in settings.items():
        lines.append(f"| {dataset} | {name} | {s.lr:.3g} | {s.warmup_steps} | {s.epochs} | {'—' if s.val_ne is None else f'{s.val_ne:.4f}'} |")
    return "\n".join(lines)


def run_quality(seeds: int, models: list[str], datasets: list[str], settings: dict[tuple[str, str], Setting]) -> list[Trained]:
    results = []
    for dataset in datasets:
        for seed in range(seeds):
            recipe = seeded_recipe(dataset, seed)
            data = prepare_data(recipe.data)
            for name in models:
                results.append(trained := train_and_score(name, settings[dataset, name].applied(recipe), data, seed, dataset))
                print(f"{dataset} seed {seed} {name}: " + ", ".join(f"{t} NE {s['ne']:.4f}" for t, s in trained.scores.items())
                      + f" ({trained.train_seconds:.0f} s)", flush=True)
    return results


def point_label(name: str, history: int) -> str:
    return f"{name}@{history}"


def run_scaling(seeds: int, points: list[str]) -> list[Trained]:
    """Each point of the curve on `seeds` quickstart worlds, trained as production's protocol trains the
    teacher: one pass over its window and on through the students' window, days in time order; scored on
    the eval window (after the validation day, which no point trains on)."""
    chosen = [(name, history) for name, history in SCALING if point_label(name, history) in points]
    results = []
    for seed in range(seeds):
        recipe = seeded_recipe("synthetic", seed)
        data = prepare_data(recipe.data)
        stream = torch.cat([data.train_rows, data.student_rows])
        for name, history in chosen:
            label = point_label(name, history)
            results.append(trained := train_and_score(name, recipe, data, seed, "synthetic", {"history_length": history}, stream, "time", label))
            print(f"scaling seed {seed} {label}: {trained.train_flops:.3g} FLOPs, {trained.train_seconds:.0f} s, "
                  + ", ".join(f"{t} NE {s['ne']:.4f}" for t, s in trained.scores.items()), flush=True)
    return results


def scaling_csv() -> Path:
    return study_dir("teachers") / "teacher_scaling.csv"


def scaling_section(frame: pl.DataFrame) -> str:
    """The curve: per point its size, cost and eval NE over seeds (a PNG of NE against training FLOPs),
    GEM against the skeleton at matched compute (primary, Holm), every point against today's teacher
    (secondary, Holm)."""
    tasks = frame["task"].unique(maintain_order=True).to_list()
    agg = frame.group_by("model", "task", maintain_order=True).agg(
        pl.col("ne").mean().alias("ne"), pl.col("ne").std().fill_null(0.0).alias("sd"), pl.col("params").first(), pl.col("flops_per_example").first(),
        pl.col("train_flops").first(), pl.col("train_seconds").median(), pl.col("seed").n_unique().alias("seeds"))
    _scaling_plot(agg, tasks)
    lines = ["| point (teacher@history) | params | FLOPs/example | training FLOPs | median train s | " + " | ".join(f"{t} NE (mean ± sd)" for t in tasks)
             + " | seeds |", "|---|---|---|---|---|" + "---|" * len(tasks) + "---|"]
    for (model,), group in agg.group_by("model", maintain_order=True):
        by_task = {row["task"]: row for row in group.iter_rows(named=True)}
        first = by_task[tasks[0]]
        lines.append(f"| {model} | {first['params'] / 1e6:.2f} M | {first['flops_per_example'] / 1e6:.2f} M | {first['train_flops']:.3g} | "
                     f"{first['train_seconds']:.0f} | " + " | ".join(f"{by_task[t]['ne']:.4f} ± {by_task[t]['sd']:.4f}" for t in tasks)
                     + f" | {first['seeds']} |")
    matched = [(a, b) for a, b in MATCHED if {a, b} <= set(agg["model"].to_list())]
    models = agg["model"].unique(maintain_order=True).to_list()
    versus = [(m, HISTORY_REFERENCE) for m in models if m != HISTORY_REFERENCE] if HISTORY_REFERENCE in models else []
    return ("\n".join(lines) + f"\n\n![eval NE against training FLOPs]({PLOT.relative_to(RESULTS.parent)})\n\n"
            + "**GEM against the skeleton at matched compute** (primary endpoints, named before the run; the closest pairs the presets "
              "allow, GEM's forward FLOPs per example the ratio shown over the skeleton's; NE points, positive = the first is better; Holm "
              "over the table):\n\n" + _pairs_table(frame, matched, tasks)
            + f"\n\nSecondary (every point against today's teacher `{HISTORY_REFERENCE}`, Holm over the table):\n\n" + _pairs_table(frame, versus, tasks))


def scaling_intro(seeds: int, minutes: float | None) -> str:
    timing = (f"{minutes:.0f} min for this run, torch on {torch.get_num_threads()} threads" if minutes is not None
              else f"analysed again from `{shown(scaling_csv())}` (train seconds as its run measured them)")
    return (f"The quickstart world (`recipes/quickstart.yaml`, 400k impressions; seed s = another world and other models), {seeds} seeds; "
            f"{timing}. Production's protocol for the teacher: one pass over its 21 days and on "
            f"through the students' 7, days in time order, recipe lr and batch; scored on the 3 eval days. Each point is a teacher at a "
            f"history length (`teacher.sizes.history_length`). CSV `{shown(scaling_csv())}`.\n\n")


def _pairs_table(frame: pl.DataFrame, pairs: list[tuple[str, str]], tasks: list[str]) -> str:
    """Each pair's per-seed NE difference (points, positive = the first better) with its t-interval,
    Holm over the table, and the first's forward FLOPs per example over the second's."""
    flops = dict(frame.group_by("model").agg(pl.col("flops_per_example").first()).iter_rows())
    rows = []
    for first, second in pairs:
        for task in tasks:
            a = frame.filter((pl.col("model") == first) & (pl.col("task") == task)).select("seed", "ne")
            b = frame.filter((pl.col("model") == second) & (pl.col("task") == task)).select("seed", pl.col("ne").alias("ne_b"))
            joined = a.join(b, on="seed")
            rows.append((first, second, task, seed_interval((100 * (joined["ne_b"] - joined["ne"])).to_list())))
    adjusted = holm_adjusted([row[3].p_value for row in rows])
    lines = ["| point | against | FLOPs ratio | task | NE points [95% CI] | Holm-adjusted p | verdict | seeds |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {a} | {b} | {flops[a] / flops[b]:.2f}× | {task} | {_interval(i)} | {p:.3f} | {holm_verdict(i, p)} | {i.seeds} |"
              for (a, b, task, i), p in zip(rows, adjusted, strict=True)]
    return "\n".join(lines)


def _scaling_plot(agg: pl.DataFrame, tasks: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4.2))
    for ax, task in zip(axes, tasks, strict=True):
        points = agg.filter(pl.col("task") == task)
        for family, marker in (("skeleton", "o"), ("gem", "s")):
            part = points.filter(pl.col("model").str.starts_with(family))
            ax.errorbar(part["train_flops"].to_list(), part["ne"].to_list(), yerr=part["sd"].fill_null(0).to_list(), marker=marker,
                        linestyle="none", capsize=3, label=family)
            for row in part.iter_rows(named=True):
                ax.annotate(row["model"], (row["train_flops"], row["ne"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("training FLOPs (3 × forward × examples)")
        ax.set_ylabel(f"eval NE, {task} (lower is better; mean ± sd over seeds)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with atomic_path(PLOT) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def quality_section(dataset: str) -> str:
    """The RESULTS.md section a quality comparison on `dataset` writes: the current one for the
    teachers' inputs as they ship (the item's running counters; `benchmarks.sections`)."""
    return f"teacher-quality-counters-{dataset}"


def quality_csv(dataset: str) -> Path:
    """Where a quality comparison on `dataset` writes its CSV: named after its section."""
    return study_dir("teachers") / f"{quality_section(dataset).replace('-', '_')}.csv"


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", choices=["quality", "scaling", "speed"])
    parser.add_argument("--models", nargs="+", choices=COMPARED, default=list(COMPARED), help="teachers to compare (the reference always runs)")
    parser.add_argument("--reference", choices=COMPARED, default=REFERENCE, help="the teacher every other is paired against")
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument("--tune", type=int, default=0, metavar="TRIALS",
                        help="choose each teacher's lr and warm-up first: an Optuna study of TRIALS trials on seed 0's validation window")
    parser.add_argument("--matched-compute", action="store_true",
                        help=f"epochs per teacher so each spends about the costliest teacher's training FLOPs (at most {MAX_EPOCHS})")
    parser.add_argument("--points", nargs="+", choices=[point_label(n, h) for n, h in SCALING], default=[point_label(n, h) for n, h in SCALING],
                        help="the scaling curve's points (teacher@history)")
    parser.add_argument("--from-csv", type=Path, default=None, help="analyse this run's CSV again (no training) into its section")
    parser.add_argument("--section", default=None,
                        help="with --from-csv: the RESULTS.md section to write (default: teacher-quality-counters-<dataset>, "
                             "only from that section's own CSV)")
    return parser


def plan(args: argparse.Namespace) -> dict[str, str]:
    """What a run with `args` writes: per part — a dataset of the quality comparison, "scaling",
    "speed"; re-analysing a CSV, the dataset it holds (or "csv" with `--section`) — its RESULTS.md
    section. A re-analysis writes a dataset's current section (`quality_section`) only from that
    section's own CSV; any other CSV needs `--section`."""
    if args.from_csv is not None:
        if args.from_csv.resolve() == scaling_csv().resolve():
            return {"scaling": "teacher-scaling"}
        if args.section:
            return {"csv": args.section}
        held = pl.read_csv(args.from_csv, columns=["dataset"])["dataset"].unique(maintain_order=True).to_list()
        if len(held) != 1 or args.from_csv.resolve() != quality_csv(held[0]).resolve():
            raise SystemExit(f"teacher_quality: {shown(args.from_csv)} is not the CSV of a dataset's current section "
                             f"({', '.join(shown(quality_csv(name)) for name in DATASETS)}): name the section its analysis goes to with --section")
        return {held[0]: quality_section(held[0])}
    sections = {name: quality_section(name) for name in args.datasets} if args.only in (None, "quality") else {}
    if args.only in (None, "scaling"):
        sections["scaling"] = "teacher-scaling"
    if args.only in (None, "speed"):
        sections["speed"] = "teacher-speed-options"
    return sections


def main() -> None:
    args = arguments().parse_args()
    sections = plan(args)
    if "scaling" in sections and args.from_csv is not None:
        frame = pl.read_csv(args.from_csv)
        write_section(sections["scaling"], command_line(), scaling_intro(frame["seed"].n_unique(), None) + scaling_section(frame))
        return
    if args.from_csv is not None:
        frame = pl.read_csv(args.from_csv)
        body = (f"Analysed again from `{shown(args.from_csv)}` (no training; settings as in its run). Seeds vary the data and the models "
                f"({frame['seed'].n_unique()} seeds).\n\n" + summary_table(frame) + "\n\n" + paired_table(frame, args.reference))
        write_section(next(iter(sections.values())), command_line(), body)
        print(body, flush=True)
        return
    results: list[Trained] = []
    if args.only in (None, "quality"):
        models = [m for m in COMPARED if m in args.models or m == args.reference]
        settings = settings_for(models, args.datasets, args.tune, args.matched_compute)
        results = run_quality(args.seeds, models, args.datasets, settings)
        subset = "" if models == list(COMPARED) else f"A subset: teachers {', '.join(models)}"
        for dataset in args.datasets:  # each dataset its own CSV and section
            frame = pl.DataFrame(as_rows([r for r in results if r.dataset == dataset]))
            write_csv(frame, quality_csv(dataset))
            how = ((f"Each teacher's lr and warm-up tuned first ({args.tune} trials each, seeded TPE, on seed 0's validation window). " if args.tune else "")
                   + ("Epochs matched on training FLOPs. " if args.matched_compute else "")) + "Settings:\n\n" + settings_table(
                {key: s for key, s in settings.items() if key[0] == dataset}) + "\n\n"
            gem = [m for m in models if m.startswith("gem_")]  # the GEM claim: its preset against every other teacher
            versus_gem = "".join(f"\n\n{paired_table(frame, name)}" for name in gem[:1]
                                 if name != args.reference and len(models) > 2)  # with two teachers it would mirror the table above
            write_section(sections[dataset], command_line(), (f"{subset} on {dataset}.\n\n" if subset else "") + how
                          + f"Seeds vary the data and the models ({args.seeds} seeds); CSV `{shown(quality_csv(dataset))}`.\n\n"
                          + summary_table(frame) + "\n\n" + paired_table(frame, args.reference) + versus_gem)
    if args.only in (None, "scaling"):
        start = time.perf_counter()
        frame = pl.DataFrame(as_rows(run_scaling(args.seeds, args.points)))
        write_csv(frame, scaling_csv())
        write_section(sections["scaling"], command_line(), scaling_intro(args.seeds, (time.perf_counter() - start) / 60) + scaling_section(frame))
    if args.only in (None, "speed"):
        from benchmarks.teacher_speed import speed_section

        write_section(sections["speed"], command_line(), speed_section())
    print("results written to benchmarks/RESULTS.md", flush=True)


if __name__ == "__main__":
    main()
