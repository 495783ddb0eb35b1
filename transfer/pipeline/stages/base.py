"""What every stage is (`Stage`: kind, name, group, inputs, key, status, run) and what a run's
stages read (`RunContext`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device

from transfer.config.recipe import Recipe
from transfer.data.batches import WindowBatches
from transfer.data.prepare import PreparedData
from transfer.evaluation.lift_table import Scores
from transfer.evaluation.metrics import logit_metrics, normalized_entropy, recalibration_shift
from transfer.knowledge.generate import SCORING_BATCH
from transfer.pipeline.cache import StageCache
from transfer.pipeline.keys import StageKey
from transfer.tracking.runs import Tracker
from transfer.training.module import RankingModule

CACHED, WILL_RUN, ALWAYS = "cached", "will run", "runs every time"


@dataclass(frozen=True)
class RunContext:
    """What every stage of one recipe run reads (no stage writes to it)."""

    recipe: Recipe
    data: PreparedData
    cache: StageCache
    tracker: Tracker | None = None  # None while planning
    run_dir: Path | None = None  # where the run's lift.csv goes
    on_student: Callable[[str, dict[str, float]], None] | None = None  # called with (vertical, val_* metrics) as each student is scored

    def evaluate(self, module: RankingModule, rows: torch.Tensor, task: str, shift: float) -> tuple[Scores, torch.Tensor]:
        """`module`'s NE, AUC and calibration on `task` over `rows` ([n]) and its NE after the logit
        `shift` (its one-parameter recalibration, `recalibration`), from one pass over the rows; and its logits [n]."""
        logits, labels = self.predict(module, rows, task), self.labels(rows, task)
        return Scores(**logit_metrics(logits, labels), recal_ne=normalized_entropy(logits + shift, labels)), logits

    def recalibration(self, module: RankingModule, fit_rows: torch.Tensor, task: str) -> float:
        """The logit shift that recalibrates `module` on `task` over `fit_rows` ([m], the consumers'
        last training day; NaN when they hold one class only)."""
        return recalibration_shift(self.predict(module, fit_rows, task), self.labels(fit_rows, task))

    def predict(self, module: RankingModule, rows: torch.Tensor, task: str) -> torch.Tensor:
        """`module`'s logits for `task` on `rows` ([n], of the eval window), in order. → [n]
        Every process scores all of them (an eval slice is small), so each holds the same values. The
        module may be on an accelerator (scored during its training): the rows go to it, the logits come back."""
        batches = WindowBatches(self.data.log, rows, module.model.history_length)  # every row, whatever this process's rank
        column = module.tasks.index(task)
        was_training = module.training
        module.eval()
        with torch.no_grad():
            logits = torch.cat([module(move_data_to_device(batches[index], module.device)).logits[:, column].cpu()
                                for index in torch.arange(len(rows)).split(SCORING_BATCH)])
        module.train(was_training)
        return logits

    def labels(self, rows: torch.Tensor, task: str) -> torch.Tensor:
        """[n] the true labels of `task` on `rows` (NaN where missing)."""
        return self.data.log.labels[rows, self.data.log.tasks.index(task)]


class Stage:
    """The stage protocol: `kind`, `name`, `group` (0: before the recipe's stages, i: within recipe
    stage i), `inputs`, `key`, `status(ctx)` and `run(ctx)`."""

    kind: str
    name: str
    group: int
    inputs: tuple[Stage, ...] = ()

    @property
    def key(self) -> StageKey:
        raise NotImplementedError

    def status(self, ctx: RunContext) -> str:
        """CACHED when the stage cache holds this stage's finished output, else WILL_RUN."""
        return CACHED if self.cached_run(ctx) is not None else WILL_RUN

    def cached_run(self, ctx: RunContext) -> str | None:
        """The MLflow run that made the cached output (None: not cached)."""
        return ctx.cache.finished_run(ctx.cache.folder(self.key))

    def run(self, ctx: RunContext) -> None:
        raise NotImplementedError
