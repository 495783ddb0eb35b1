"""What a long Lightning stage shows while it runs: on a terminal, Lightning's bar without the
logger's version (`v_num`: an MLflow run id's tail, noise to a reader); redirected to a file or a
pipe, where a bar is a stream of carriage returns, one plain line every tenth of the epoch instead."""

from __future__ import annotations

import sys
import time

from lightning.pytorch.callbacks import Callback, TQDMProgressBar

LINES_PER_EPOCH = 10


class BarWithoutVersion(TQDMProgressBar):
    """Lightning's progress bar, minus `v_num`."""

    def get_metrics(self, trainer, pl_module):
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics


class LineProgress(Callback):
    """`  <label>: epoch 1/2, step 40/400, train_loss 0.4123 (12 s)` every tenth of an epoch, and
    `  <label>: scored 40/400 batches (3 s)` while predicting."""

    def __init__(self):
        self.start = time.perf_counter()

    def _say(self, pl_module, text: str) -> None:
        print(f"  {getattr(pl_module, 'label', 'model')}: {text} ({time.perf_counter() - self.start:.0f} s)", flush=True)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        total = trainer.num_training_batches
        if _due(batch_idx, total):
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs  # this step's training loss
            shown = f", train_loss {float(loss):.4f}" if loss is not None else ""
            self._say(pl_module, f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}, step {batch_idx + 1}/{total}{shown}")

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        total = trainer.num_predict_batches[dataloader_idx] if trainer.num_predict_batches else 0
        if _due(batch_idx, total):
            self._say(pl_module, f"scored {batch_idx + 1}/{total} batches")


def _due(batch_idx: int, total: float) -> bool:
    """Whether batch `batch_idx` (0-based) of `total` ends a tenth of the epoch (or the epoch)."""
    if not total or total == float("inf"):
        return (batch_idx + 1) % 100 == 0
    every = max(1, int(total) // LINES_PER_EPOCH)
    return (batch_idx + 1) % every == 0 or batch_idx + 1 == int(total)


def progress_callbacks(enabled: bool) -> tuple[list[Callback], bool]:
    """(callbacks, enable_progress_bar) for a Trainer: the bar on a terminal, lines elsewhere, nothing when disabled."""
    if not enabled:
        return [], False
    if sys.stdout.isatty():
        return [BarWithoutVersion()], True
    return [LineProgress()], False
