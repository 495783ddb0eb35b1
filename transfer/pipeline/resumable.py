"""Training that survives interruption: a model's stage folder holds its epoch checkpoints while it
trains and its weights once finished. A rerun reuses finished weights (tagging the new MLflow run
with the run that trained them) and resumes an unfinished training from its last checkpoint."""

from __future__ import annotations

import contextlib
import copy
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Training:
    """One model's training in its stage folder: what trains, on what, for how long, and how it is named."""

    module: RankingModule
    loader: DataLoader
    trainer: TrainerConfig
    max_epochs: int
    folder: Path  # its stage folder: epoch checkpoints while it trains, its weights once finished
    label: str  # names the model in progress lines and errors ("student: ig_stories_click")
    detail: str  # its data, for the progress line ("on 12,345 impressions of ig_stories")
    shard: bool = False  # FSDP-shard it when the trainer's strategy is fsdp
    watchers: tuple[Callback, ...] = ()  # callbacks that see the training (`transfer.training.trainer.fit`)


def fit_or_reuse(training: Training, cache: StageCache, tracker: Tracker, run_id: str) -> str:
    """Train (resuming if interrupted) or load the finished weights of `training.module`; → the id of
    the run that trained it. Every rank of a multi-process run trains (DDP keeps their weights equal);
    rank 0 saves them. A `KeepBestEpoch` among the watchers has its kept epoch stored with the
    weights and read back when they are reused."""
    folder, message = training.folder, f"{training.label} {training.detail}"
    with building(folder, training.label):
        cached = _cached_everywhere(cache, folder, training.module)
        keepers = [watcher for watcher in training.watchers if isinstance(watcher, KeepBestEpoch)]
        if cached is not None:
            print(f"✓ {message}: already trained (run {cached['run_id']}), reused", flush=True)
            tracker.set_tags({T.REUSED_FROM_RUN_ID: cached["run_id"], T.STAGE_CACHE: str(folder)})
            for keeper in keepers:
                keeper.reused(cached)
            return cached["run_id"]
        checkpoints = folder / "checkpoints"
        with step(message):
            _train(training, tracker.lightning_logger(run_id), checkpoints)
        if ranks.is_main():
            cache.save_model(folder, training.module.model, {"run_id": run_id, **{k: v for keeper in keepers for k, v in keeper.record().items()}})
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


def _train(training: Training, logger, checkpoints: Path) -> None:
    """Fit the module; a sharded (FSDP) training fits a copy, whose layers FSDP wraps in place, and
    the module takes the trained weights from the consolidated (full) checkpoint of its last epoch."""
    t = training
    sharded = t.shard and t.trainer.strategy == "fsdp"
    watchers = list(t.watchers) or None
    if not sharded:
        fit(t.module, t.loader, t.trainer, t.max_epochs, logger, checkpoints=checkpoints, label=t.label, watchers=watchers)
        return
    fit(copy.deepcopy(t.module), t.loader, t.trainer, t.max_epochs, logger, checkpoints=checkpoints, label=t.label, shard=True, watchers=watchers)
    state = torch.load(checkpoints / f"{LAST_CHECKPOINT}.ckpt", map_location="cpu", weights_only=True, mmap=True)["state_dict"]
    t.module.load_state_dict(state)


def _cached_everywhere(cache: StageCache, folder: Path, module: RankingModule) -> dict | None:
    """The cached weights' metadata (weights loaded into `module`), or None to train. Rank 0 decides for
    every rank (they must all train, or none); a rank that cannot read what rank 0 read stops."""
    cached = cache.load_model(folder, module.model)
    if ranks.from_main(cached is not None) and cached is None:
        raise DataError(f"rank {ranks.rank()}: cannot read the cached weights in {folder} that rank 0 read; output_dir must be storage every process sees")
    return ranks.from_main(cached)
