"""Keep the epoch of a training that scores best on a validation slice, its start counted as epoch 0.

A VM starts at the logistic regression on its raw features (`transfer.training.wide_start`). Trained on
labels alone, its deep part can drift from that start and end worse than it began: on the synthetic
world the baseline VM ended behind the very regression it started at (benchmarks/archive/RESULTS.md
§ strong-baseline-analysis; what keeping the best epoch changed: benchmarks/RESULTS.md
§ transfer-ablation-synthetic-best-epoch). So a VM is scored
on its validation slice before training and after each epoch, and it keeps the best of those weights:
training can improve on the start but never end below it (on the validation slice).
"""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from transfer.util import ranks


def _copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in state.items()}


class KeepBestEpoch(Callback):
    """Score `module` with `score` (lower is better, e.g. its NE on a validation slice) now, as epoch 0,
    and after each training epoch; when the fit ends, `module` holds the weights of the best-scoring
    epoch (the earliest on a tie). Its record travels in the epoch checkpoints, so an interrupted
    training that resumes picks the same epoch as one that was not."""

    def __init__(self, module: L.LightningModule, score: Callable[[], float]):
        self.score = score
        self.best_epoch, self.best_score = 0, ranks.from_main(score())  # every process decides as rank 0 does
        self.best_state = _copy(module.state_dict())

    @property
    def state_key(self) -> str:
        return "KeepBestEpoch"  # where its record sits in a checkpoint: fixed, so a rename cannot lose it

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        score = trainer.strategy.broadcast(self.score(), src=0)
        if score < self.best_score:
            self.best_epoch, self.best_score, self.best_state = trainer.current_epoch + 1, score, _copy(pl_module.state_dict())

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.load_state_dict(self.best_state)

    def state_dict(self) -> dict:
        return {"epoch": self.best_epoch, "score": self.best_score, "weights": self.best_state}

    def record(self) -> dict[str, float]:
        """What a finished training's stage folder keeps of it (`reused` reads it back)."""
        return {"kept_epoch": self.best_epoch, "kept_score": self.best_score}

    def reused(self, record: dict) -> None:
        """A finished training's weights were reused: take the epoch it kept, and its score, from its
        `record` (None where the folder was written before they were recorded)."""
        self.best_epoch, self.best_score = record.get("kept_epoch"), record.get("kept_score")
        if self.best_score is None:  # written before scores were recorded: the reused weights are the kept ones
            self.best_score = ranks.from_main(self.score())

    def load_state_dict(self, state_dict: dict) -> None:
        self.best_epoch, self.best_score, self.best_state = state_dict["epoch"], state_dict["score"], state_dict["weights"]
