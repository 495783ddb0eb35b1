"""Knowledge from training traffic vs a separate generation pass (issue #14): what each costs.

On the quickstart's data (400k synthetic impressions; teacher window 21 days, consumers' window 7),
the teacher `skeleton_tiny` is trained for one epoch in time order on the teacher and consumers'
windows together, (a) plainly and (b) keeping its training-step outputs for the consumers' rows
(`transfer.knowledge: training_traffic`); and (c) the separate pass scores the consumers' window
with the trained teacher (`transfer.knowledge: separate`, the engine's `generate_table`). The cost
of traffic knowledge is (b) − (a); the separate pass costs (c). Each step is timed `--repeats`
times in turns (a, b, c, a, b, c, …) and reported as medians, torch on `--threads` threads.

    python benchmarks/traffic_knowledge.py [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.results_file import write_section  # noqa: E402

COMMAND = "make bench-traffic  (python benchmarks/traffic_knowledge.py)"


def _teacher(data, seed: int = 0):
    import lightning as L

    from transfer.catalog import catalog
    from transfer.training.module import RankingModule

    L.seed_everything(seed, verbose=False)
    model = catalog("teacher")["skeleton_tiny"].build(data.log.inputs, {})
    tasks = list(range(len(data.log.tasks)))
    return RankingModule(model, data.log.tasks, tasks, lr=2e-3, base_rates=data.base_rates(data.train_rows, tasks))


def _fit_seconds(data, recipe, rows, keep: bool, folder: Path) -> float:
    import torch

    from transfer.data.batches import WindowBatches, window_loader
    from transfer.knowledge.table import Provenance
    from transfer.knowledge.traffic import TrafficKnowledge
    from transfer.training.trainer import fit

    module = _teacher(data)
    loader = window_loader(WindowBatches(data.log, rows, module.model.history_length), recipe.teacher.batch_size, shuffle=True,
                           seed=0, order="time")
    watchers = []
    if keep:
        wanted = torch.zeros(len(data.log.labels), dtype=torch.bool)
        wanted[data.student_rows] = True
        provenance = Provenance("skeleton_tiny", "bench", data.student.end.isoformat(), datetime.now(timezone.utc).isoformat(), recipe.hash)
        watchers = [TrafficKnowledge(folder / "traffic.parquet", wanted, data.log.example_id, data.log.tasks, provenance,
                                     module.model.embedding_dim)]
    start = time.perf_counter()
    fit(module, loader, recipe.trainer, 1, False, watchers=watchers)
    return time.perf_counter() - start


def _generation_seconds(data, recipe, folder: Path) -> float:
    from transfer.knowledge.generate import Producer, generate_table

    module = _teacher(data)
    producer = Producer("skeleton_tiny", module, "bench", data.train.end, data.student_rows)
    start = time.perf_counter()
    generate_table(producer, data, recipe.trainer, recipe.hash, folder / "separate.parquet")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    import torch

    from transfer.config.loader import load_recipe
    from transfer.data.prepare import prepare_data

    torch.set_num_threads(args.threads)
    recipe = load_recipe(REPO / "recipes" / "quickstart.yaml", ["trainer.progress=false"])
    data = prepare_data(recipe.data)
    rows = torch.cat([data.train_rows, data.student_rows])
    plain, kept, separate = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for repeat in range(args.repeats):
            plain.append(_fit_seconds(data, recipe, rows, False, folder))
            kept.append(_fit_seconds(data, recipe, rows, True, folder))
            separate.append(_generation_seconds(data, recipe, folder))
            print(f"repeat {repeat + 1}: plain {plain[-1]:.1f} s, keeping {kept[-1]:.1f} s, separate pass {separate[-1]:.1f} s", flush=True)
    a, b, c = (statistics.median(v) for v in (plain, kept, separate))
    spread = lambda v: f"{min(v):.1f}–{max(v):.1f}"  # noqa: E731
    load = os.getloadavg()
    body = "\n".join([
        f"Quickstart data ({len(data.log.labels):,} impressions): teacher `skeleton_tiny` trained one epoch in time order on "
        f"{len(rows):,} rows (teacher + consumers' windows), batch {recipe.teacher.batch_size}; the consumers' window holds "
        f"{len(data.student_rows):,} rows. Medians of {args.repeats} repeats (run in turns; range in brackets), torch on "
        f"{args.threads} threads; load average at the end {load[0]:.2f}.",
        "",
        "| step | seconds |",
        "|---|---|",
        f"| (a) teacher training, plain | {a:.1f} ({spread(plain)}) |",
        f"| (b) teacher training keeping its traffic's knowledge | {b:.1f} ({spread(kept)}) |",
        f"| (c) separate generation pass over the consumers' window | {c:.1f} ({spread(separate)}) |",
        "",
        f"Paired by repeat, (b) − (a) = {', '.join(f'{k - p:+.1f}' for p, k in zip(plain, kept, strict=True))} s "
        f"(median {statistics.median(k - p for p, k in zip(plain, kept, strict=True)):+.1f} s).",
        "",
        f"**Knowledge from training traffic costs (b) − (a) = {b - a:+.1f} s ({100 * (b - a) / a:+.1f} % of the training); "
        f"the separate pass costs {c:.1f} s**, so traffic knowledge saves {c - (b - a):.1f} s per teacher "
        f"({(c - (b - a)) / c:.0%} of the separate pass) — and is out-of-sample for the whole window it trained on.",
    ])
    print(body)
    if not args.no_write:
        write_section("traffic-knowledge", COMMAND, body)


if __name__ == "__main__":
    main()
