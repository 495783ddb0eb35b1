"""Loading a recipe: its YAML and overrides into the schema (`transfer.config.recipe`), the strategy's
default stages, then its checks (`transfer.config.validate`)."""

from __future__ import annotations

from pathlib import Path

from transfer.config.recipe import STRATEGY_STAGES, Recipe
from transfer.config.structured import load_structured
from transfer.config.validate import default_stages, validate_values


def load_recipe(path: str | Path, overrides: list[str] | None = None, models: bool = True) -> Recipe:
    """Load, override and validate a recipe; raises `RecipeError` with one line on any problem.

    An empty `transfer.stages` becomes the strategy's stages with default techniques. `models=False`
    checks the values only (no torch; `transfer.config.validate`), not the models the recipe names.
    """
    recipe = load_structured(Recipe, Path(path), overrides or [])
    if not recipe.transfer.stages and recipe.transfer.strategy in STRATEGY_STAGES:
        recipe.transfer.stages = default_stages(recipe.transfer.strategy)
    (validate if models else validate_values)(recipe, Path(path))  # the values first, free of torch; then the models
    return recipe


def validate(recipe: Recipe, path: Path) -> None:
    """Both passes: the values, then the models (importing the catalog, and so torch, only when the values pass)."""
    validate_values(recipe, path)
    from transfer.config.validate_models import validate_models

    validate_models(recipe, path)
