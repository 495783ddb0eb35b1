"""Transfer techniques (design §8), one module each, declaring everything about it: its recipe knobs
and their checks, the knowledge columns it needs, its tuning space, its metrics and its hooks into a
consumer's training (`adapters/technique.py` says what a module provides). Nothing here imports
torch at import time, so a recipe's knobs are checked before the heavy imports.

| module | technique |
| --- | --- |
| `distillation.py` | knowledge distillation on the serving head (vanilla) or an auxiliary head (α, β, T) |
| `representation.py` | a projection head aligned with the producer's embedding (cosine, MSE, InfoNCE) |
| `sharing.py` | importing producer parts (embedding tables, named modules), frozen or fine-tuned |
| `student_adapter.py` | the Student Adapter, fit on the freshest labels before the consumer trains, supervising a second head |

Adding a technique is adding a module here (and its tests): every module of this package with a
`KEY` is one, in the order of their file names. The recipe's `StageConfig` gets a field `<KEY>` of its
`Config`; the engine reaches techniques only through the functions below.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from adapters.technique import Knob


def _technique_modules() -> tuple[ModuleType, ...]:
    """Every module of this package that declares a technique (a `KEY`), by file name."""
    found = (importlib.import_module(f"{__name__}.{info.name}") for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name))
    return tuple(module for module in found if hasattr(module, "KEY"))


# in the order of the recipe schema (tags, heads and loss terms follow it)
TECHNIQUES: tuple[ModuleType, ...] = _technique_modules()

__all__ = ["TECHNIQUES", "by_key", "columns", "enabled", "is_vanilla_kd", "knobs", "techniques_tag", "vanilla_kd"]


def enabled(stage) -> list[ModuleType]:
    """The technique modules the stage (a recipe `StageConfig`) turns on."""
    return [technique for technique in TECHNIQUES if technique.enabled(stage)]


def by_key(key: str) -> ModuleType:
    """The technique module whose `KEY` is `key`."""
    return next(technique for technique in TECHNIQUES if technique.KEY == key)


def vanilla_kd(stage):
    """The stage with standard knowledge distillation only (design §8, the gain ratio's reference):
    each technique's `reference` config (distillation on the serving head at the stage's weight, or 1
    if it distils nothing, α = β = T = 1; every other technique off)."""
    return dataclasses.replace(stage, **{technique.KEY: technique.reference(stage) for technique in TECHNIQUES})


def is_vanilla_kd(stage) -> bool:
    """Whether the stage's techniques are exactly standard knowledge distillation."""
    reference = vanilla_kd(stage)
    on = enabled(stage)
    return on == enabled(reference) and all(getattr(stage, technique.KEY) == getattr(reference, technique.KEY) for technique in on)


def techniques_tag(stage) -> str:
    """The enabled techniques as one MLflow tag value, e.g. `aux_kd,representation_cosine`."""
    return ",".join(technique.tag(stage) for technique in enabled(stage)) or "none"


def columns(stage) -> set[str]:
    """The knowledge columns the stage's techniques need in their batches."""
    return {column for technique in enabled(stage) for column in technique.columns(stage)}


def knobs(stage) -> list[Knob]:
    """What `gem-transfer tune` searches for this stage: the knobs of the techniques it turns on."""
    return [knob for technique in enabled(stage) for knob in technique.knobs(stage)]


def take_earlier_versions(stage, folders: list[str]) -> None:
    """Hand the stage's techniques that read earlier producer versions the knowledge folders of the
    continuous cycle's earlier cycles, newest first (`take_earlier_versions` hooks)."""
    for _, hook in _hooks(stage, "take_earlier_versions"):
        hook(stage, folders)


def check_cycle(stage, cycles: int, step_days: float, age_days: float) -> None:
    """Before a continuous cycle of `cycles` cycles, each `step_days` later, trains anything: each
    enabled technique that reads earlier producer versions checks it can (`check_cycle` hooks; a
    `ValueError` whose message starts with `<KEY>.<field>`). `age_days`: the producer's knowledge's age at
    the end of the consumers' window in one cycle."""
    for technique, hook in _hooks(stage, "check_cycle"):
        try:
            hook(stage, cycles, step_days, age_days)
        except ValueError as exc:
            raise ValueError(f"{technique.KEY}.{exc}") from None


def stage_reads(stage, folder_content: Callable[[Path], object]) -> dict:
    """What a consumer's stage key holds of its stage: every technique's knobs (`asdict`), where an
    enabled technique's `reads(stage, knobs, folder_content)` hook replaces a folder it names by the
    folder's content (`folder_content(folder)`: its files' checksums), so the key follows the content."""
    from dataclasses import asdict

    settings = asdict(stage)
    for technique, hook in _hooks(stage, "reads"):
        settings[technique.KEY] = hook(stage, settings[technique.KEY], folder_content)
    return settings


def _hooks(stage, name: str) -> list[tuple[ModuleType, Callable]]:
    """(technique, its hook `name`) for each technique enabled in `stage` that has that optional hook."""
    return [(technique, hook) for technique in enabled(stage) if (hook := getattr(technique, name, None)) is not None]
