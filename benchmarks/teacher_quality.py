"""Teacher quality (issue #4): the GEM teacher against the skeleton teacher, a DCN-v2-style and an
MLP baseline, given the same training budget (same examples, same epochs, same batch size, same
optimiser), on the synthetic default and on MovieLens-100K, over seeds; a scaling curve of eval NE
against training FLOPs for gem_lite → gem_tiny → gem_base; and the speed options (torch.compile,
bf16-mixed) measured on the GEM teacher's training steps.

Every model is trained by the same Lightning path a recipe uses (`transfer.training.trainer.fit`) and
scored on the recipe's eval window. Training FLOPs = 3 × forward FLOPs per example × examples seen.

    python benchmarks/teacher_quality.py [--seeds 3] [--only quality|scaling|speed]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import lightning as L
import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.results_file import write_csv, write_section  # noqa: E402
from transfer.catalog import catalog  # noqa: E402
from transfer.config.recipe import Recipe, load_recipe  # noqa: E402
from transfer.data.batches import WindowBatches, window_loader  # noqa: E402
from transfer.data.prepare import PreparedData, prepare_data  # noqa: E402
from transfer.evaluation.cost import forward_flops_per_example, parameter_count  # noqa: E402
from transfer.training.module import RankingModule  # noqa: E402
from transfer.training.trainer import fit, make_trainer  # noqa: E402
from transfer.util.atomic import atomic_path  # noqa: E402

COMMAND = "make bench-teachers  (python benchmarks/teacher_quality.py)"
DATASETS = {"synthetic": "recipes/quickstart.yaml", "movielens": "recipes/movielens_direct.yaml"}
COMPARED = ("gem_tiny", "gem_lite", "skeleton_tiny", "dcn_v2", "mlp")
SCALING = ("gem_lite", "gem_tiny", "gem_base")
PLOT = REPO / "benchmarks" / "teacher_scaling.png"
CSV = REPO / "benchmarks" / "teacher_quality.csv"


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
    scores: dict[str, dict[str, float]]  # task → {"ne", "auc", "calibration"}


def train_and_score(name: str, recipe: Recipe, data: PreparedData, seed: int, dataset: str) -> Trained:
    """Train `name` on the recipe's teacher window as a recipe would, then score the eval window."""
    cfg = recipe.teacher
    L.seed_everything(seed, verbose=False)
    model = catalog("teacher")[name].build(data.log.inputs)
    tasks = list(range(len(data.log.tasks)))
    module = RankingModule(model, data.log.tasks, tasks, lr=cfg.lr, base_rates=data.base_rates(data.train_rows, tasks))
    train = window_loader(WindowBatches(data.log, data.train_rows, model.history_length), cfg.batch_size, shuffle=True, seed=seed)
    trainer_cfg = replace(recipe.trainer, progress=False)
    start = time.perf_counter()
    fit(module, train, trainer_cfg, cfg.max_epochs, logger=False)
    seconds = time.perf_counter() - start
    evaluation = window_loader(WindowBatches(data.log, data.eval_rows, model.history_length), 4096, shuffle=False)
    (logged,) = make_trainer(trainer_cfg, 1, progress=False).test(module, dataloaders=evaluation, verbose=False)
    scores = {task: {m: float(logged[f"eval_{task}_{m}"]) for m in ("ne", "auc", "calibration")} for task in data.log.tasks}
    flops = forward_flops_per_example(model.eval(), data.log.inputs)
    examples = len(data.train_rows) * cfg.max_epochs
    return Trained(dataset, name, seed, parameter_count(model), flops, 3 * flops * examples, seconds, scores)


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
        pl.col("auc").std().alias("auc_sd"), pl.col("flops_per_example").first(), pl.col("params").first(),
        pl.col("train_seconds").median(), pl.len().alias("seeds") / pl.col("task").n_unique(),
    ).sort("dataset", "task", "ne")
    best = agg.group_by("dataset", "task").agg(pl.col("ne").min().alias("best"))
    lines = ["| dataset | task | teacher | eval NE (mean ± sd) | eval AUC | params | FLOPs/example | train s | seeds |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in agg.join(best, on=["dataset", "task"]).sort("dataset", "task", "ne").iter_rows(named=True):
        ne = f"{row['ne']:.4f} ± {row['ne_sd'] or 0:.4f}"
        ne = f"**{ne}**" if row["ne"] == row["best"] else ne
        lines.append(
            f"| {row['dataset']} | {row['task']} | {row['model']} | {ne} | {row['auc']:.4f} ± {row['auc_sd'] or 0:.4f} "
            f"| {row['params'] / 1e6:.2f} M | {row['flops_per_example'] / 1e6:.2f} M | {row['train_seconds']:.0f} | {row['seeds']:.0f} |"
        )
    return "\n".join(lines)


def run_quality(seeds: int) -> list[Trained]:
    results = []
    for dataset, recipe_path in DATASETS.items():
        recipe = load_recipe(REPO / recipe_path)
        data = prepare_data(recipe.data)
        for seed in range(seeds):
            for name in COMPARED:
                results.append(trained := train_and_score(name, recipe, data, seed, dataset))
                print(f"{dataset} seed {seed} {name}: " + ", ".join(f"{t} NE {s['ne']:.4f}" for t, s in trained.scores.items())
                      + f" ({trained.train_seconds:.0f} s)", flush=True)
    return results


def run_scaling(done: list[Trained]) -> list[Trained]:
    """Seed 0 on the synthetic default; presets the quality comparison already trained are reused."""
    recipe = load_recipe(REPO / DATASETS["synthetic"])
    data = prepare_data(recipe.data)
    reuse = {r.model: r for r in done if r.dataset == "synthetic" and r.seed == 0}
    results = []
    for name in SCALING:
        results.append(trained := reuse.get(name) or train_and_score(name, recipe, data, 0, "synthetic"))
        print(f"scaling {name}: {trained.train_flops:.3g} FLOPs, " + ", ".join(f"{t} NE {s['ne']:.4f}" for t, s in trained.scores.items()), flush=True)
    return results


def scaling_section(results: list[Trained]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(results[0].scores)
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4))
    for ax, task in zip(axes, tasks, strict=True):
        xs = [r.train_flops for r in results]
        ys = [r.scores[task]["ne"] for r in results]
        ax.plot(xs, ys, marker="o")
        for r, x, y in zip(results, xs, ys, strict=True):
            ax.annotate(r.model, (x, y), textcoords="offset points", xytext=(5, 5))
        ax.set_xscale("log")
        ax.set_xlabel("training FLOPs (3 × forward × examples)")
        ax.set_ylabel(f"eval NE, {task} (lower is better)")
        ax.set_title(f"GEM teacher scaling: {task}")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(PLOT) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    lines = ["| preset | params | FLOPs/example | training FLOPs | train s | " + " | ".join(f"{t} NE" for t in tasks) + " |",
             "|---|---|---|---|---|" + "---|" * len(tasks)]
    for r in results:
        lines.append(f"| {r.model} | {r.params / 1e6:.2f} M | {r.flops_per_example / 1e6:.2f} M | {r.train_flops:.3g} | "
                     f"{r.train_seconds:.0f} | " + " | ".join(f"{r.scores[t]['ne']:.4f}" for t in tasks) + " |")
    return "\n".join(lines) + f"\n\n![eval NE against training FLOPs]({PLOT.name}) (synthetic default, seed 0, one epoch)"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", choices=["quality", "scaling", "speed"])
    args = parser.parse_args()
    results: list[Trained] = []
    if args.only in (None, "quality"):
        results = run_quality(args.seeds)
        frame = pl.DataFrame(as_rows(results))
        write_csv(frame, CSV)
        write_section("teacher-quality", COMMAND, summary_table(frame))
    if args.only in (None, "scaling"):
        write_section("teacher-scaling", COMMAND, scaling_section(run_scaling(results)))
    if args.only in (None, "speed"):
        from benchmarks.teacher_speed import speed_section

        write_section("teacher-speed-options", COMMAND, speed_section())
    print("results written to benchmarks/RESULTS.md", flush=True)


if __name__ == "__main__":
    main()
