"""Lightning plumbing: build Trainers from the recipe, fit, test, predict."""

from __future__ import annotations

import logging
import warnings

import lightning as L
import torch
from lightning.pytorch.loggers import Logger
from torch.utils.data import DataLoader

from transfer.module import RankingModule
from transfer.recipe import TrainerConfig
from transfer.report import Scores

# Lightning's start-up chatter (GPU/TPU availability, worker hints) is noise on every model trained.
logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*`isinstance\\(treespec, LeafSpec\\)` is deprecated.*")


def make_trainer(
    cfg: TrainerConfig, max_epochs: int, logger: Logger | bool = False, progress: bool | None = None, log_every: int = 50
) -> L.Trainer:
    return L.Trainer(
        max_epochs=max_epochs,
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        precision=cfg.precision,
        logger=logger,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=cfg.progress if progress is None else progress,
        log_every_n_steps=log_every,
        num_sanity_val_steps=0,
    )


def fit(module: RankingModule, loader: DataLoader, cfg: TrainerConfig, max_epochs: int, logger: Logger | bool) -> None:
    log_every = max(1, min(50, len(loader) // 2))  # short epochs still log their curves
    make_trainer(cfg, max_epochs, logger, log_every=log_every).fit(module, train_dataloaders=loader)


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
