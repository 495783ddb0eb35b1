"""Training that survives interruption: a model's stage folder holds its epoch checkpoints while it
trains and its weights once finished. A rerun reuses finished weights (tagging the new MLflow run
with the run that trained them) and resumes an unfinished training from its last checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
from lightning.pytorch.loggers import Logger
from torch.utils.data import DataLoader

from transfer.module import RankingModule
from transfer.progress import step
from transfer.recipe import TrainerConfig
from transfer.stage_cache import StageCache
from transfer.training import fit


def fit_or_reuse(
    cache: StageCache, folder: Path, module: RankingModule, loader: DataLoader, cfg: TrainerConfig, max_epochs: int,
    logger: Logger | bool, run_id: str, label: str, detail: str,
) -> str:
    """Train `module` (resuming if interrupted) or load its finished weights; → the id of the run that trained it.
    `label` names the model in progress lines and errors ("student: ig_stories_click"), `detail` its data."""
    message = f"{label} {detail}"
    cached = cache.load_model(folder, module.model)
    if cached is not None:
        print(f"✓ {message}: already trained (run {cached['run_id']}), reused", flush=True)
        mlflow.set_tags({"reused_from_run_id": cached["run_id"], "stage_cache": str(folder)})
        return cached["run_id"]
    checkpoints = folder / "checkpoints"
    with step(message):
        fit(module, loader, cfg, max_epochs, logger, checkpoints=checkpoints, label=label)
    cache.save_model(folder, module.model, {"run_id": run_id})
    shutil.rmtree(checkpoints, ignore_errors=True)
    return run_id
