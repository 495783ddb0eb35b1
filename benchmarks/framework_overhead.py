"""Framework overhead: one VM distillation epoch through gem-transfer vs a hand-written PyTorch loop.

Both train the same VM architecture (mlp_vm_s) from the same initial weights on the same tensors:
the quickstart's ig_stories training rows, batch size 512, soft labels joined (one logit per row).
gem-transfer = `RankingModule` + Lightning `Trainer.fit` over `window_loader` (as `gem-transfer run`
trains, without the progress bar and MLflow logger); hand-written = a loop calling the same batch
gather, forward, the same loss, backward and Adam step. Median of repeats, interleaved.

    python benchmarks/framework_overhead.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.distillation import distillation_loss  # noqa: E402
from adapters.technique import ConsumerShape  # noqa: E402
from benchmarks.results_file import write_section  # noqa: E402
from students import MLP_VM_SIZES, mlp_vm  # noqa: E402
from transfer.config.loader import load_recipe  # noqa: E402
from transfer.config.recipe import StageConfig  # noqa: E402
from transfer.contract import label_loss  # noqa: E402
from transfer.data.batches import WindowBatches, window_loader  # noqa: E402
from transfer.data.prepare import prepare_data  # noqa: E402
from transfer.training.module import RankingModule  # noqa: E402
from transfer.training.techniques import StageTechniques  # noqa: E402
from transfer.training.trainer import fit  # noqa: E402

BATCH = 512
LR = 2e-3


def framework_epoch(model: torch.nn.Module, data: WindowBatches, task_col: int, cfg) -> float:
    vanilla_kd = StageTechniques(StageConfig(), model, model, ConsumerShape(model.embedding_dim, 1, model.embedding_dim, 1))  # no heads, no sharing
    module = RankingModule(model, ["click"], [task_col], lr=LR, techniques=vanilla_kd)
    loader = window_loader(data, BATCH, shuffle=True, seed=0)
    start = time.perf_counter()
    fit(module, loader, cfg, max_epochs=1, logger=False)
    return time.perf_counter() - start


def hand_written_epoch(model: torch.nn.Module, data: WindowBatches, task_col: int) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    model.train()
    start = time.perf_counter()
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    for positions in order.split(BATCH):
        batch = data[positions]
        logits = model(batch).logits
        labels = batch["labels"][:, [task_col]]
        loss = label_loss(logits, labels) + distillation_loss(logits, batch["soft_logits"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()

    recipe = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml", ["trainer.progress=false"])
    prepared = prepare_data(recipe.data)
    log = prepared.log
    rows = log.surface_rows(prepared.train_rows, "ig_stories")
    task_col = log.tasks.index("click")
    L.seed_everything(0, verbose=False)
    initial = mlp_vm(log.inputs, **MLP_VM_SIZES["s"])
    soft = torch.randn(len(rows), 1)  # stands in for the joined teacher logits: same shape, same cost
    data = WindowBatches(log, rows, initial.history_length, {"soft_logits": soft})

    framework, hand = [], []
    for _ in range(args.repeats):  # interleaved, so drift on a noisy machine hits both alike
        framework.append(framework_epoch(copy.deepcopy(initial), data, task_col, recipe.trainer))
        hand.append(hand_written_epoch(copy.deepcopy(initial), data, task_col))
    f_med, h_med = statistics.median(framework), statistics.median(hand)
    ratio = f_med / h_med
    steps = (len(rows) + BATCH - 1) // BATCH
    body = (
        f"One epoch of `mlp_vm_s` on {len(rows):,} ig_stories rows ({steps} steps of {BATCH}), distilled (soft labels joined), "
        f"{args.repeats} interleaved repeats.\n\n"
        "| loop | median s/epoch | min | max |\n|---|---|---|---|\n"
        f"| hand-written PyTorch | {h_med:.3f} | {min(hand):.3f} | {max(hand):.3f} |\n"
        f"| gem-transfer (Lightning) | {f_med:.3f} | {min(framework):.3f} | {max(framework):.3f} |\n\n"
        f"**Ratio gem-transfer / hand-written: {ratio:.3f}×** (target ≤ 1.10×: {'met' if ratio <= 1.10 else 'MISSED'}).\n"
    )
    print(body)
    if not args.no_write:
        write_section("framework-overhead", "make bench  (python benchmarks/framework_overhead.py)", body)


if __name__ == "__main__":
    main()
