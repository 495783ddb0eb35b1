"""Training that survives interruption: a model's stage folder holds its epoch checkpoints while it
trains and its weights once finished. A rerun reuses finished weights (tagging the new MLflow run
with the run that trained them) and resumes an unfinished training from its last checkpoint."""

from __future__ import annotations

import contextlib
import copy
import shutil
from collections.abc import Iterator
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader

from transfer.config.recipe import TrainerConfig
from transfer.errors import DataError
from transfer.pipeline.cache import StageCache, stage_lock
from transfer.tracking import tags as T
from transfer.tracking.runs import Tracker
from transfer.training.best_epoch import KeepBestEpoch
from transfer.training.module import RankingModule
from transfer.training.trainer import LAST_CHECKPOINT, fit
from transfer.util import ranks
from transfer.util.progress import step


def fit_or_reuse(
    cache: StageCache, folder: Path, module: RankingModule, loader: DataLoader, cfg: TrainerConfig, max_epochs: int,
    tracker: Tracker, run_id: str, label: str, detail: str, shard: bool = False, watchers: list[Callback] | None = None,
) -> str:
    """Train `module` (resuming if interrupted) or load its finished weights; → the id of the run that trained it.
    `label` names the model in progress lines and errors ("student: ig_stories_click"), `detail` its data.
    Every rank of a multi-process run trains (DDP keeps their weights equal); rank 0 saves them.
    `watchers`: callbacks that see the training (see `transfer.training.trainer.fit`); a `KeepBestEpoch`
    among them has its kept epoch stored with the weights and read back when they are reused."""
    message = f"{label} {detail}"
    with building(folder, label):
        cached = _cached_everywhere(cache, folder, module)
        keepers = [watcher for watcher in watchers or [] if isinstance(watcher, KeepBestEpoch)]
        if cached is not None:
            print(f"✓ {message}: already trained (run {cached['run_id']}), reused", flush=True)
            tracker.set_tags({T.REUSED_FROM_RUN_ID: cached["run_id"], T.STAGE_CACHE: str(folder)})
            for keeper in keepers:
                keeper.reused(cached)
            return cached["run_id"]
        checkpoints = folder / "checkpoints"
        with step(message):
            _train(module, loader, cfg, max_epochs, tracker.lightning_logger(run_id), checkpoints, label, shard and cfg.strategy == "fsdp",
                   watchers)
        if ranks.is_main():
            cache.save_model(folder, module.model, {"run_id": run_id, **{k: v for keeper in keepers for k, v in keeper.record().items()}})
            shutil.rmtree(checkpoints, ignore_errors=True)
        ranks.barrier()  # every rank sees the same cache from here on
    return run_id


@contextlib.contextmanager
def building(folder: Path, label: str) -> Iterator[None]:
    """While a stage is checked and built: rank 0 holds its lock (a concurrent run of the same stage
    waits, then reuses it); the other ranks go on once rank 0 has it."""
    with stage_lock(folder, label) if ranks.is_main() else contextlib.nullcontext():
        ranks.barrier()
        yield


def _train(module: RankingModule, loader: DataLoader, cfg: TrainerConfig, max_epochs: int, logger, checkpoints: Path,
           label: str, sharded: bool, watchers: list[Callback] | None) -> None:
    """Fit `module`; a sharded (FSDP) training fits a copy, whose layers FSDP wraps in place, and
    `module` takes the trained weights from the consolidated (full) checkpoint of its last epoch."""
    if not sharded:
        fit(module, loader, cfg, max_epochs, logger, checkpoints=checkpoints, label=label, watchers=watchers)
        return
    fit(copy.deepcopy(module), loader, cfg, max_epochs, logger, checkpoints=checkpoints, label=label, shard=True, watchers=watchers)
    state = torch.load(checkpoints / f"{LAST_CHECKPOINT}.ckpt", map_location="cpu", weights_only=True, mmap=True)["state_dict"]
    module.load_state_dict(state)


def _cached_everywhere(cache: StageCache, folder: Path, module: RankingModule) -> dict | None:
    """The cached weights' metadata (weights loaded into `module`), or None to train. Rank 0 decides for
    every rank (they must all train, or none); a rank that cannot read what rank 0 read stops."""
    cached = cache.load_model(folder, module.model)
    if ranks.from_main(cached is not None) and cached is None:
        raise DataError(f"rank {ranks.rank()}: cannot read the cached weights in {folder} that rank 0 read; output_dir must be storage every process sees")
    return ranks.from_main(cached)
