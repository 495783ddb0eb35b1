"""The model contract (`transfer.contract`): model packages import only it of the engine, no module
imports itself back through others, the contract loads nothing else, and every catalogued model meets it."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, time_limit
from transfer.catalog import catalog
from transfer.contract import (
    ENGINE_COLUMNS,
    MODEL_INPUTS,
    InputSpec,
    ModelOutput,
    RankingModel,
    SharedEvents,
    SharedFeatures,
)
from transfer.data.batches import random_batch

MODEL_PACKAGES = ("teacher", "students", "domain_fms")
GRAPH_PACKAGES = ("transfer", *MODEL_PACKAGES, "adapters")
INPUTS = InputSpec(n_categorical=5, n_dense=2, n_surfaces=3, n_tasks=2, hash_buckets=32,
                   categorical_names=("user_id", "ad_id", "ad_category", "age", "country"))


def module_name(path: Path) -> str:
    """repo-relative .py path → dotted module name (a package's `__init__.py` → the package)."""
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(packages: tuple[str, ...]) -> dict[str, Path]:
    """Every module of `packages` in this repository, by dotted name."""
    return {module_name(path): path for package in packages for path in sorted((REPO / package).rglob("*.py"))}


def imported_modules(tree: ast.Module, module: str, known: set[str], top_level_only: bool) -> Iterator[str]:
    """The dotted names `tree` (the source of `module`) imports: `from a import b` names the module
    "a.b" when `b` is one of `known`, else "a"; relative imports are resolved against `module`."""
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module)
            yield from (f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names)


def _absolute(node: ast.ImportFrom, module: str) -> str:
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    anchor = parts[: len(parts) - node.level + (1 if (REPO / module.replace(".", "/") / "__init__.py").exists() else 0)]
    return ".".join([*anchor, *([node.module] if node.module else [])])


def import_graph() -> dict[str, set[str]]:
    """module → the repository modules it imports anywhere: at module level, inside functions and under
    `TYPE_CHECKING` (a lazy or type-only import is still a dependency). Only the module named is an
    edge: the parent packages Python also runs first (`teacher/__init__.py` for `teacher.layers`) are
    not, as a package importing its own modules is no cycle."""
    known = modules(GRAPH_PACKAGES)
    return {name: {target for target in imported_modules(ast.parse(path.read_text()), name, set(known), top_level_only=False)
                   if target in known and target != name}
            for name, path in known.items()}


# The layers of the house, top to bottom: a module may import its own layer's modules (without a
# cycle) and any layer below, never one above.
LAYERS = (
    ("transfer.cli",),
    ("transfer.tuning",),
    ("transfer.pipeline",),
    ("transfer.knowledge",),
    ("transfer.training", "transfer.tracking"),
    ("transfer.evaluation",),
    ("transfer.data",),
    ("transfer.config",),
    ("adapters", "students", "domain_fms"),
    ("teacher",),
    ("transfer.catalog",),
    ("transfer.util", "transfer.errors"),
    ("transfer.contract", "transfer"),  # `transfer/__init__.py` imports nothing
)


def layer_of(module: str) -> int:
    """The index in `LAYERS` of the part of the house `module` belongs to (its subpackage of `transfer`, else its package)."""
    parts = module.split(".")
    part = ".".join(parts[:2]) if parts[0] == "transfer" else parts[0]
    for index, layer in enumerate(LAYERS):
        if part in layer or module in layer:
            return index
    raise AssertionError(f"{module} belongs to no layer of LAYERS; add it")


def arrows_up(graph: dict[str, set[str]]) -> list[str]:
    """Every import from a lower layer to a higher one, as "a → b"."""
    return [f"{a} → {b}" for a, targets in sorted(graph.items()) for b in sorted(targets) if layer_of(b) < layer_of(a)]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` as [a, b, …, a], or None when it is acyclic (depth-first search)."""
    state: dict[str, str] = {}  # "open" while on the stack, "done" after
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


@pytest.mark.parametrize("name", sorted(modules(MODEL_PACKAGES)))
def test_model_packages_import_only_the_contract_of_the_engine(name):
    tree = ast.parse(modules(MODEL_PACKAGES)[name].read_text())
    imported = imported_modules(tree, name, set(modules(GRAPH_PACKAGES)), top_level_only=False)  # lazy imports too
    engine = sorted({n for n in imported if n.split(".")[0] == "transfer" and n != "transfer.contract"})
    assert not engine, f"{name} imports {engine}; a model package may import only transfer.contract of the engine"


def test_finds_a_cycle_and_none_in_an_acyclic_graph():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_import_graph_sees_the_known_edges_including_lazy_and_type_only_imports():
    graph = import_graph()
    assert "transfer.contract" in graph["teacher.gem"] and "teacher.layers" in graph["students.mlp"]
    assert "transfer.evaluation.cost" in graph["transfer.evaluation.serving"]
    assert "transfer.config.validate_models" in graph["transfer.config.loader"]  # imported inside a function
    assert "transfer.contract" in graph["transfer.config.dataset"]  # inside a function and under TYPE_CHECKING
    assert "transfer.evaluation.serving" in graph["transfer.tracking.tags"]  # under TYPE_CHECKING only
    assert graph["transfer.contract"] == set()


def test_finds_arrows_up_and_places_every_module_in_a_layer():
    assert arrows_up({"transfer.util.atomic": {"transfer.pipeline.keys"}, "transfer.cli": {"transfer.util.atomic"}}) == [
        "transfer.util.atomic → transfer.pipeline.keys"]
    for module in import_graph():
        layer_of(module)  # raises for a module outside every layer


def test_no_import_cycles_between_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])


def test_imports_point_down_the_layers():
    assert arrows_up(import_graph()) == []


def test_importing_the_contract_loads_nothing_else_of_the_repository():
    script = ("import sys, transfer.contract; "
              f"print(sorted(m for m in sys.modules if m.split('.')[0] in {GRAPH_PACKAGES!r}))")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=time_limit(120), cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "['transfer', 'transfer.contract']"


def test_random_batch_holds_the_model_inputs_and_labels():
    batch = random_batch(INPUTS.n_categorical, INPUTS.n_dense, INPUTS.n_surfaces, INPUTS.n_tasks + 1, INPUTS.hash_buckets, 2, 4)
    assert set(batch) == {*MODEL_INPUTS, "labels"} and "labels" in ENGINE_COLUMNS
    assert not set(MODEL_INPUTS) & set(ENGINE_COLUMNS)


SMALL = {"history_length": 8}  # every catalogued builder takes it; short histories keep building and scoring fast
SMALLER = {"gem_large": {"layers": 1, "segment": 4, "summary_tokens": 2}}  # the accelerator-scale preset, widths kept


def catalogued() -> list[tuple[str, str]]:
    return [(kind, name) for kind in ("teacher", "domain_fm", "vertical") for name in catalog(kind)]


@pytest.mark.parametrize(("kind", "name"), catalogued())
def test_catalogued_model_meets_the_contract(kind, name):
    torch.manual_seed(0)
    model = catalog(kind)[name].build(INPUTS, {**SMALL, **SMALLER.get(name, {})})
    assert isinstance(model, RankingModel), f"{name} lacks a member of transfer.contract.RankingModel"
    assert isinstance(model.features, SharedFeatures) and isinstance(model.events, SharedEvents)
    assert model.history_length == SMALL["history_length"]
    batch = random_batch(INPUTS.n_categorical, INPUTS.n_dense, INPUTS.n_surfaces, INPUTS.n_tasks + 1, INPUTS.hash_buckets, 3,
                         model.history_length)
    with torch.no_grad():
        out = model({key: batch[key] for key in MODEL_INPUTS})  # reads no key outside the contract's inputs
    served = 1 if kind == "vertical" else INPUTS.n_tasks
    assert isinstance(out, ModelOutput)
    assert out.logits.shape == (3, served) and out.embedding.shape == (3, model.embedding_dim)
    assert model.output_layer().out_features == served and len(model.feature_names) == INPUTS.n_categorical
