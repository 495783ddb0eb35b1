"""Lightning plumbing: build Trainers from the recipe, fit, test, predict."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import Logger
from torch.utils.data import DataLoader

from transfer.module import RankingModule
from transfer.recipe import TrainerConfig
from transfer.report import Scores

LAST_CHECKPOINT = "last"

# Lightning's start-up chatter (GPU/TPU availability, worker hints) is noise on every model trained.
logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*`isinstance\\(treespec, LeafSpec\\)` is deprecated.*")


def make_trainer(
    cfg: TrainerConfig, max_epochs: int, logger: Logger | bool = False, progress: bool | None = None, log_every: int = 50,
    callbacks: list[Callback] | None = None,
) -> L.Trainer:
    return L.Trainer(
        max_epochs=max_epochs,
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        precision=cfg.precision,
        logger=logger,
        callbacks=callbacks,
        enable_checkpointing=bool(callbacks and any(isinstance(c, ModelCheckpoint) for c in callbacks)),
        enable_model_summary=False,
        enable_progress_bar=cfg.progress if progress is None else progress,
        log_every_n_steps=log_every,
        num_sanity_val_steps=0,
    )


def fit(
    module: RankingModule, loader: DataLoader, cfg: TrainerConfig, max_epochs: int, logger: Logger | bool,
    checkpoints: Path | None = None, label: str = "model",
) -> None:
    """Train `module`. With `checkpoints`, the state is saved there at the end of every epoch and a
    training interrupted earlier resumes from the last one (same result as an uninterrupted run)."""
    log_every = max(1, min(50, len(loader) // 2))  # short epochs still log their curves
    module.label = label
    callbacks, resume = [], None
    if checkpoints is not None:
        callbacks.append(ModelCheckpoint(dirpath=checkpoints, filename=LAST_CHECKPOINT, save_top_k=1, every_n_epochs=1,
                                         save_on_train_epoch_end=True, enable_version_counter=False))
        last = checkpoints / f"{LAST_CHECKPOINT}.ckpt"
        resume = str(last) if _readable(last) else None
        if resume:
            print(f"  resuming from {last}", flush=True)
    make_trainer(cfg, max_epochs, logger, log_every=log_every, callbacks=callbacks).fit(module, train_dataloaders=loader, ckpt_path=resume)


def evaluate(module: RankingModule, loader: DataLoader, cfg: TrainerConfig, task: str) -> Scores:
    """NE, AUC and calibration of `module` on `task` over `loader`."""
    (logged,) = make_trainer(cfg, 1, progress=False).test(module, dataloaders=loader, verbose=False)
    return Scores(
        ne=float(logged[f"eval_{task}_ne"]),
        auc=float(logged[f"eval_{task}_auc"]),
        calibration=float(logged[f"eval_{task}_calibration"]),
    )


def predict(module: RankingModule, loader: DataLoader, cfg: TrainerConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """rows [N], logits [N, T], embedding [N, E] over `loader`, in loader order."""
    outputs = make_trainer(cfg, 1).predict(module, dataloaders=loader)
    rows, logits, embedding = zip(*outputs, strict=False)
    return torch.cat(rows), torch.cat(logits).float(), torch.cat(embedding).float()  # float32 even under bf16


def _readable(checkpoint: Path) -> bool:
    """A checkpoint that loads; one cut short by a kill is removed (training restarts from scratch)."""
    if not checkpoint.is_file():
        return False
    try:
        torch.load(checkpoint, map_location="cpu", weights_only=False)
    except Exception:  # any damage: a truncated zip, a half-written pickle
        checkpoint.unlink(missing_ok=True)
        return False
    return True
