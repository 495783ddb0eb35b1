"""Lightning plumbing: build Trainers from the recipe, fit, test, predict."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, Callback, ModelCheckpoint
from lightning.pytorch.loggers import Logger
from lightning.pytorch.strategies import FSDPStrategy, Strategy
from torch import nn
from torch.utils.data import DataLoader

from transfer.config.recipe import TrainerConfig
from transfer.evaluation.lift_table import Scores
from transfer.training.module import RankingModule
from transfer.training.progress import progress_callbacks
from transfer.util import ranks
from transfer.util.atomic import DiskFull, disk_full

LAST_CHECKPOINT = "last"

LIGHTNING_LOGGERS = ("lightning.pytorch", "pytorch_lightning")  # the second is its name under torch's elastic launcher
QUIET = (
    ".*when logging on epoch level in distributed setting.*",  # torchmetrics' `compute()` has already summed over the ranks
    ".*does not have many workers.*",  # batches are whole-tensor gathers: workers would not help
    ".*`isinstance\\(treespec, LeafSpec\\)` is deprecated.*",
    ".*Couldn't infer the batch indices fetched from your dataloader.*",  # our prediction writer does not use them
)


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """While Lightning runs: its start-up chatter (GPU/TPU availability) and the warnings above are
    hidden; the process's own logging and warning settings are restored afterwards."""
    levels = {name: logging.getLogger(name).level for name in LIGHTNING_LOGGERS}
    with warnings.catch_warnings():
        for pattern in QUIET:
            warnings.filterwarnings("ignore", pattern)
        for name in LIGHTNING_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        try:
            yield
        finally:
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)


def lightning_strategy(cfg: TrainerConfig, shard: bool) -> str | Strategy:
    """The recipe's strategy for one training. With `fsdp`, a model trained with `shard` (the teacher)
    has its dense layers sharded (every `nn.Linear` its own FSDP unit, the embedding tables in the root
    unit; `sharding: hybrid` = HSDP, sharded within a node and replicated across nodes); every other
    model, and all scoring, runs under DDP."""
    if cfg.strategy != "fsdp":
        return cfg.strategy
    if not shard:
        return "ddp"
    hybrid = cfg.sharding == "hybrid"
    mesh = {"device_mesh": (cfg.num_nodes, int(cfg.devices))} if hybrid else {}
    return FSDPStrategy(auto_wrap_policy={nn.Linear}, sharding_strategy="HYBRID_SHARD" if hybrid else "FULL_SHARD",
                        state_dict_type="full", use_orig_params=True, **mesh)


def make_trainer(
    cfg: TrainerConfig, max_epochs: int, logger: Logger | bool = False, progress: bool | None = None, log_every: int = 50,
    callbacks: list[Callback] | None = None, shard: bool = False,
) -> L.Trainer:
    shown, bar = progress_callbacks(cfg.progress if progress is None else progress)
    return L.Trainer(
        max_epochs=max_epochs,
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        strategy=lightning_strategy(cfg, shard),
        num_nodes=cfg.num_nodes,
        use_distributed_sampler=False,  # IndexBatchSampler shards by rank itself, without padding evaluation
        precision=cfg.precision,
        logger=logger,
        callbacks=[*(callbacks or []), *shown],
        enable_checkpointing=bool(callbacks and any(isinstance(c, ModelCheckpoint) for c in callbacks)),
        enable_model_summary=False,
        enable_progress_bar=bar,
        log_every_n_steps=log_every,
        num_sanity_val_steps=0,
    )


def fit(
    module: RankingModule, loader: DataLoader, cfg: TrainerConfig, max_epochs: int, logger: Logger | bool,
    checkpoints: Path | None = None, label: str = "model", shard: bool = False, watchers: list[Callback] | None = None,
) -> None:
    """Train `module`. With `checkpoints`, the state is saved there at the end of every epoch and a
    training interrupted earlier resumes from the last one (same result as an uninterrupted run).
    `shard`: the model may be sharded (FSDP, when the recipe asks for it; see `lightning_strategy`).
    `watchers`: callbacks that see the training (e.g. keeping knowledge from its traffic); they run
    before the epoch's checkpoint is saved."""
    log_every = max(1, min(50, len(loader) // 2))  # short epochs still log their curves
    module.label = label
    callbacks, resume = list(watchers or []), None
    if checkpoints is not None:
        callbacks.append(ModelCheckpoint(dirpath=checkpoints, filename=LAST_CHECKPOINT, save_top_k=1, every_n_epochs=1,
                                         save_on_train_epoch_end=True, enable_version_counter=False))
        last = checkpoints / f"{LAST_CHECKPOINT}.ckpt"
        resume = ranks.from_main(str(last) if ranks.is_main() and _readable(last) else None)  # rank 0 decides for all
        if resume:
            print(f"  resuming from {last}", flush=True)
    with quiet_lightning(), _checkpoints_on(checkpoints, module):
        trainer = make_trainer(cfg, max_epochs, logger, log_every=log_every, callbacks=callbacks, shard=shard)
        trainer.fit(module, train_dataloaders=loader, ckpt_path=resume, weights_only=True)


@contextlib.contextmanager
def _checkpoints_on(checkpoints: Path | None, module: RankingModule) -> Iterator[None]:
    """An epoch checkpoint the device had no room for, said as a `DiskFull` naming its folder and about
    what one takes (weights and the optimizer's two moments: three times the parameters)."""
    try:
        yield
    except OSError as exc:
        if checkpoints is None or not disk_full(exc, checkpoints):
            raise
        needed = 3 * sum(p.numel() * p.element_size() for p in module.parameters())
        raise DiskFull(Path(exc.filename2 or checkpoints), needed) from exc


def evaluate(module: RankingModule, loader: DataLoader, cfg: TrainerConfig, task: str) -> Scores:
    """NE, AUC and calibration of `module` on `task` over `loader`."""
    with quiet_lightning():
        (logged,) = make_trainer(cfg, 1, progress=False).test(module, dataloaders=loader, verbose=False)
    return Scores(
        ne=float(logged[f"eval_{task}_ne"]),
        auc=float(logged[f"eval_{task}_auc"]),
        calibration=float(logged[f"eval_{task}_calibration"]),
    )


def _readable(checkpoint: Path) -> bool:
    """A checkpoint that loads as plain tensors and containers (`weights_only`: nothing in it runs);
    one cut short by a kill, or holding anything else, is removed and training restarts from scratch."""
    if not checkpoint.is_file():
        return False
    try:
        torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:  # any damage: a truncated zip, a half-written or foreign pickle
        print(f"  ! {checkpoint}: not a loadable checkpoint ({type(exc).__name__}); removed, training from the start", flush=True)
        checkpoint.unlink(missing_ok=True)
        return False
    return True


class _BatchSink(BasePredictionWriter):
    """Hands each predicted batch to `consume` and keeps nothing (predictions never pile up in memory)."""

    def __init__(self, consume: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None]):
        super().__init__(write_interval="batch")
        self.consume = consume

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        rows, logits, embedding = prediction
        self.consume(rows.cpu(), logits.float().cpu(), embedding.float().cpu())


def predict_each(module: RankingModule, loader: DataLoader, cfg: TrainerConfig,
                 consume: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None]) -> None:
    """Score `loader` in order, calling `consume(rows [B], logits [B, T], embedding [B, E])` per batch
    (in a multi-process run, for this rank's batches: the sampler gives each rank its own rows)."""
    with quiet_lightning():
        trainer = make_trainer(cfg, 1, callbacks=[_BatchSink(consume)])
        trainer.predict(module, dataloaders=loader, return_predictions=False)
