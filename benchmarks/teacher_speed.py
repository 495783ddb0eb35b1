"""The teacher's speed options on this machine: `teacher.compile` (torch.compile) and
`teacher.precision: bf16-mixed`, each through a real Lightning Trainer on the GEM teacher (gem_tiny,
the synthetic default's batches). Seconds per training step: the median of timed steps after a
warm-up fit (which also pays the compile), against plain fp32 eager in the same run."""

from __future__ import annotations

import statistics
import time

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from transfer.catalog import catalog
from transfer.config.loader import load_recipe
from transfer.data.batches import WindowBatches, window_loader
from transfer.data.prepare import prepare_data
from transfer.training.module import RankingModule

MODES = {"fp32 eager": ("32-true", False), "torch.compile": ("32-true", True), "bf16-mixed": ("bf16-mixed", False)}
TEACHER, WARMUP_STEPS, TIMED_STEPS = "gem_tiny", 3, 15


class StepTimer(Callback):
    def __init__(self):
        self.times: list[float] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.times.append(time.perf_counter() - self._start)


def _fit(module: RankingModule, loader, precision: str, steps: int) -> tuple[float, list[float]]:
    timer = StepTimer()
    trainer = L.Trainer(max_epochs=1, limit_train_batches=steps, precision=precision, accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[timer])
    start = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    return time.perf_counter() - start, timer.times


def measure(recipe_path: str = "recipes/quickstart.yaml") -> dict[str, tuple[float, float]]:
    """mode → (warm-up seconds incl. compile, median seconds per step)."""
    recipe = load_recipe(recipe_path)
    data = prepare_data(recipe.data)
    tasks = list(range(len(data.log.tasks)))
    results = {}
    for mode, (precision, compile_model) in MODES.items():
        torch.manual_seed(0)
        model = catalog("teacher")[TEACHER].build(data.log.inputs)
        if compile_model:
            model.compile()
        module = RankingModule(model, data.log.tasks, tasks, lr=recipe.teacher.lr)
        loader = window_loader(WindowBatches(data.log, data.train_rows, model.history_length), recipe.teacher.batch_size, shuffle=True)
        warmup, _ = _fit(module, loader, precision, WARMUP_STEPS)
        _, times = _fit(module, loader, precision, TIMED_STEPS)
        results[mode] = (warmup, statistics.median(times))
        print(f"speed {mode}: warm-up {warmup:.1f} s, {results[mode][1]:.3f} s/step", flush=True)
    return results


def speed_section() -> str:
    results = measure()
    base = results["fp32 eager"][1]
    lines = [f"GEM teacher `{TEACHER}`, batch 1,024, history 256, synthetic default; median of {TIMED_STEPS} steps after "
             f"a {WARMUP_STEPS}-step warm-up fit.", "",
             "| option | warm-up fit (s, incl. compile) | s / training step | speed-up vs fp32 eager |", "|---|---|---|---|"]
    for mode, (warmup, per_step) in results.items():
        lines.append(f"| {mode} | {warmup:.1f} | {per_step:.3f} | {base / per_step:.2f}× |")
    return "\n".join(lines)
