"""The vertical models a recipe can target: the catalog's (built-in and from packages' entry
points) and those the recipe declares inline under `verticals:`."""

from __future__ import annotations

from transfer.catalog import catalog
from transfer.config.recipe import InlineVerticalConfig, Recipe
from transfer.contract import ModelEntry, ServingBudget


def architectures() -> dict[str, tuple[str, dict]]:
    """What an inline VM may be built as: the architectures' names, then every catalog vertical's
    (its builder and sizes copied) → (builder, default sizes)."""
    from students import ARCHITECTURES

    return {**ARCHITECTURES, **{name: (entry.builder, dict(entry.sizes)) for name, entry in catalog("vertical").items()}}


def inline_entry(cfg: InlineVerticalConfig) -> ModelEntry:
    """The catalog entry of an inline VM (its architecture checked by validation first)."""
    builder, sizes = architectures()[cfg.architecture]
    budget = ServingBudget(max_params=cfg.budget.max_params, max_p99_ms=cfg.budget.max_p99_ms) if cfg.budget else None
    return ModelEntry(cfg.name, builder, {**sizes, **cfg.sizes}, surfaces=tuple(cfg.surfaces), task=cfg.task, owner=cfg.owner,
                      budget=budget, description=cfg.description or f"{cfg.architecture} VM for {cfg.task} on {'/'.join(cfg.surfaces)} (inline)")


def recipe_verticals(recipe: Recipe) -> dict[str, ModelEntry]:
    """Every vertical the recipe's students may name, by name: the catalog's, then its inline ones."""
    return {**catalog("vertical"), **{cfg.name: inline_entry(cfg) for cfg in recipe.verticals}}
