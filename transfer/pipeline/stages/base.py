"""What every stage is (`Stage`: kind, name, group, inputs, key, status, run) and what a run's
stages read (`RunContext`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from transfer.config.recipe import Recipe
from transfer.data.prepare import PreparedData
from transfer.pipeline.cache import StageCache
from transfer.pipeline.keys import StageKey
from transfer.tracking.runs import Tracker

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
