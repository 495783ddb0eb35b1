"""The model catalog: every vertical model, teacher and domain FM a recipe can name.

An entry (a `transfer.contract.ModelEntry`, declared with the model contract) says what a model serves (surfaces, task), how it is built (a dotted path to a builder
function with typed arguments, and default sizes for it), who owns it, and — for vertical models —
its serving budget. Built-in entries are declared in `students/`, `teacher/` and `domain_fms/`; a
team's own package adds entries through a Python entry point, without touching this repository:

    [project.entry-points."gem_transfer.verticals"]
    acme = "acme_models.catalog:VERTICALS"     # a ModelEntry, a list of them, or a function returning either

A name registered twice (in any two sources) is an error naming both sources.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterable, Mapping
from importlib.metadata import entry_points
from typing import Any

from transfer.contract import ModelEntry, ServingBudget
from transfer.errors import UserError

__all__ = ["CatalogError", "ModelEntry", "ServingBudget", "catalog", "clear_cache", "sources"]

KINDS = {"vertical": "gem_transfer.verticals", "teacher": "gem_transfer.teachers", "domain_fm": "gem_transfer.domain_fms"}
BUILT_IN = {"vertical": "students:CATALOG", "teacher": "teacher:CATALOG", "domain_fm": "domain_fms:CATALOG"}


class CatalogError(UserError):
    """A broken catalog: a duplicate name, an entry point that does not load (a bad builder path is a
    `transfer.contract.BuilderError`, raised when an entry builds)."""


def catalog(kind: str) -> dict[str, ModelEntry]:
    """Every entry of `kind` ("vertical", "teacher", "domain_fm"): built-in ones, then those of
    installed packages' entry points, by name."""
    return dict(_load(kind))


def sources(kind: str) -> dict[str, str]:
    """Where each entry of `kind` was declared (for messages and `ls`)."""
    return {name: source for name, (_, source) in _load_with_sources(kind).items()}


@functools.cache
def _load_with_sources(kind: str) -> dict[str, tuple[ModelEntry, str]]:
    found: dict[str, tuple[ModelEntry, str]] = {}
    declared = [(f"built-in ({BUILT_IN[kind]})", lambda: _import_object(BUILT_IN[kind]))]
    for point in sorted(entry_points(group=KINDS[kind]), key=lambda p: p.name):
        package = point.dist.name if point.dist is not None else "an unknown package"
        declared.append((f"entry point '{point.name}' = {point.value} (package {package})", point.load))
    for source, load in declared:
        for entry in _entries(load, source):
            if entry.name in found:
                raise CatalogError(f"{kind} '{entry.name}' is registered twice: by {found[entry.name][1]} and by {source}")
            found[entry.name] = (entry, source)
    return found


def _load(kind: str) -> dict[str, ModelEntry]:
    return {name: entry for name, (entry, _) in _load_with_sources(kind).items()}


def _import_object(path: str) -> Any:
    module_name, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def _entries(load: Callable[[], Any], source: str) -> list[ModelEntry]:
    try:
        declared = load()
        if callable(declared) and not isinstance(declared, ModelEntry):
            declared = declared()
    except Exception as error:  # a third-party package failing to import must say which one
        raise CatalogError(f"{source} failed to load: {type(error).__name__}: {error}") from None
    if isinstance(declared, ModelEntry):
        declared = [declared]
    elif isinstance(declared, Mapping):
        declared = list(declared.values())
    entries = list(declared) if isinstance(declared, Iterable) else [declared]
    for entry in entries:
        if not isinstance(entry, ModelEntry):
            raise CatalogError(f"{source} declared {type(entry).__name__} {entry!r}; expected transfer.contract.ModelEntry")
    return entries


def clear_cache() -> None:
    """Forget loaded entries (after installing a package in this process)."""
    _load_with_sources.cache_clear()
