"""The model catalog: every vertical model, teacher and domain FM a recipe can name.

An entry says what a model serves (surfaces, task), how it is built (a dotted path to a builder
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
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import Any

from torch import nn

from transfer.data.encoding import InputSpec
from transfer.errors import UserError

KINDS = {"vertical": "gem_transfer.verticals", "teacher": "gem_transfer.teachers", "domain_fm": "gem_transfer.domain_fms"}
BUILT_IN = {"vertical": "students:CATALOG", "teacher": "teacher:CATALOG", "domain_fm": "domain_fms:CATALOG"}


class CatalogError(UserError):
    """A broken catalog: a duplicate name, an entry point that does not load, a bad builder path."""


@dataclass(frozen=True)
class ServingBudget:
    """What a vertical model may cost in serving: parameters, and the p99 latency (ms) of scoring one
    request of 1,000 candidates on one CPU core."""

    max_params: int
    max_p99_ms: float

    def violations(self, params: int, p99_ms: float) -> list[str]:
        """One line per limit exceeded, saying by how much; empty when within budget."""
        found = []
        if params > self.max_params:
            found.append(f"parameters {params:,} exceed the budget of {self.max_params:,} by {params - self.max_params:,} "
                         f"({100 * (params / self.max_params - 1):.0f}%)")
        if p99_ms > self.max_p99_ms:
            found.append(f"p99 latency {p99_ms:.2f} ms exceeds the budget of {self.max_p99_ms:g} ms by "
                         f"{p99_ms - self.max_p99_ms:.2f} ms ({100 * (p99_ms / self.max_p99_ms - 1):.0f}%)")
        return found


@dataclass(frozen=True)
class ModelEntry:
    """One catalogued model. `builder` is "package.module:function" (or "package.module.function");
    the function takes the data's `InputSpec` first, then keyword sizes (typed), and returns the model."""

    name: str
    builder: str
    sizes: Mapping[str, Any] = field(default_factory=dict)
    surfaces: tuple[str, ...] = ()
    task: str | None = None
    owner: str = "gem-transfer"
    budget: ServingBudget | None = None
    description: str = ""

    def __post_init__(self):
        object.__setattr__(self, "sizes", MappingProxyType(dict(self.sizes)))
        object.__setattr__(self, "surfaces", tuple(self.surfaces))

    def builder_function(self) -> Callable[..., nn.Module]:
        return resolve_builder(self.builder)

    def build(self, inputs: InputSpec, sizes: Mapping[str, Any] | None = None) -> nn.Module:
        """The model, built at the entry's default sizes with `sizes` overriding some of them."""
        return self.builder_function()(inputs, **{**self.sizes, **(sizes or {})})

    def size_names(self) -> list[str]:
        """The keyword sizes the builder accepts."""
        params = list(inspect.signature(self.builder_function()).parameters.values())[1:]
        return [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]

    def summary(self) -> str:
        served = f"{'/'.join(self.surfaces)} × {self.task}" if self.surfaces else ""
        sizes = ", ".join(f"{k}={v}" for k, v in self.sizes.items())
        budget = f"; budget ≤ {self.budget.max_params:,} params, p99 ≤ {self.budget.max_p99_ms:g} ms" if self.budget else ""
        parts = [served, f"{self.builder}({sizes})", f"owner {self.owner}"]
        return f"{self.name}: " + ", ".join(p for p in parts if p) + budget


def resolve_builder(path: str) -> Callable[..., nn.Module]:
    """"pkg.module:function" or "pkg.module.function" → the function; a `CatalogError` if it is not there."""
    module_name, _, attribute = path.partition(":") if ":" in path else path.rpartition(".")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except Exception as error:  # a third-party module may fail to import in any way: name it, one line
        raise CatalogError(f"builder '{path}' cannot be imported: {type(error).__name__}: {error}") from None
    if not callable(function):
        raise CatalogError(f"builder '{path}' is not a function")
    return function


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
            raise CatalogError(f"{source} declared {type(entry).__name__} {entry!r}; expected transfer.catalog.ModelEntry")
    return entries


def clear_cache() -> None:
    """Forget loaded entries (after installing a package in this process)."""
    _load_with_sources.cache_clear()
