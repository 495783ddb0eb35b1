"""The built-in vertical models: one per surface × task of the built-in datasets.

Each is a catalog entry (`transfer.contract.ModelEntry`): the surface and task it serves, its builder
and default sizes, its owner and its serving budget. Recipes target verticals by name; a team's own
package adds verticals through the `gem_transfer.verticals` entry point.
"""

from __future__ import annotations

from students.mlp import MLP_VM_SIZES
from transfer.contract import ModelEntry, ServingBudget

# One request = 1,000 candidates scored on one CPU core (measured after training, logged to the run).
DEFAULT_BUDGET = ServingBudget(max_params=1_000_000, max_p99_ms=25.0)

_SYNTHETIC_SURFACES = ("fb_feed", "fb_marketplace", "ig_feed", "ig_stories", "ig_reels", "msg_inbox", "msg_stories")
_MOVIELENS_SURFACES = ("weekday_day", "weekday_night", "weekend_day", "weekend_night")


def _grid(surfaces: tuple[str, ...], prefix: str = "") -> list[ModelEntry]:
    return [
        ModelEntry(f"{prefix}{surface}_{task}", "students.mlp:mlp_vm", MLP_VM_SIZES["s"], surfaces=(surface,), task=task,
                   owner="gem-transfer", budget=DEFAULT_BUDGET, description=f"MLP VM for {task} on {surface}")
        for surface in surfaces
        for task in ("click", "conversion")
    ]


# What a recipe's inline VM (`verticals:`) may be built as: name → (builder, default sizes).
ARCHITECTURES: dict[str, tuple[str, dict]] = {f"mlp_{size}": ("students.mlp:mlp_vm", sizes) for size, sizes in MLP_VM_SIZES.items()}
ARCHITECTURES["mlp"] = ARCHITECTURES["mlp_s"]  # the default VM

CATALOG: list[ModelEntry] = [*_grid(_SYNTHETIC_SURFACES), *_grid(_MOVIELENS_SURFACES, prefix="ml_")]
