"""The built-in vertical models: one per surface × task of the built-in datasets.

Each entry names the surface and task it serves and the architecture builder it uses (a key of
`ARCHITECTURES`). Recipes target verticals by name.
"""

from __future__ import annotations

from dataclasses import dataclass

from students.mlp import mlp_vm_m, mlp_vm_s, mlp_vm_xs

ARCHITECTURES = {
    "mlp_vm_xs": mlp_vm_xs,
    "mlp_vm_s": mlp_vm_s,
    "mlp_vm_m": mlp_vm_m,
}


@dataclass(frozen=True)
class VerticalSpec:
    """A vertical model: what it serves and how it is built."""

    name: str
    surface: str
    task: str
    architecture: str


_SYNTHETIC_SURFACES = ("fb_feed", "fb_marketplace", "ig_feed", "ig_stories", "ig_reels")
_MOVIELENS_SURFACES = ("weekday_day", "weekday_night", "weekend_day", "weekend_night")


def _grid(surfaces: tuple[str, ...], prefix: str = "") -> dict[str, VerticalSpec]:
    specs = [
        VerticalSpec(f"{prefix}{surface}_{task}", surface, task, "mlp_vm_s")
        for surface in surfaces
        for task in ("click", "conversion")
    ]
    return {spec.name: spec for spec in specs}


VERTICALS: dict[str, VerticalSpec] = {**_grid(_SYNTHETIC_SURFACES), **_grid(_MOVIELENS_SURFACES, prefix="ml_")}
