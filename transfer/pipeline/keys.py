"""How a stage's cache key is made: the hash of what the stage reads. Each stage declares what it reads
(`Reads`) beside the code that reads it — `teacher_reads`, `knowledge_reads` and `domain_fm_reads` in
`stages/producers.py`, `vm_reads` in `stages/verticals.py`, `evaluation_reads` in `stages/evaluation.py`
— and this module only hashes; `tests/pipeline/test_keys_follow_reads.py` changes every recipe field
and checks which keys move.

A key is the digest of everything that can change the stage's output, and nothing else:
- the stage's own settings (a teacher's config, a VM's sizes and learning rate, a stage's techniques);
- its inputs' keys (the encoded data, the producer that teaches it, the knowledge it reads);
- a fingerprint of the code that can change its output: the whole engine (`transfer/`), the source
  files of the models it builds — the builder's module and every model-package module it imports,
  transitively (wherever they are installed: `teacher/`, `students/`, a team's own package) — and,
  for consumers, `adapters/`; plus the versions of the numerical libraries.

A key depends on no run id or time, so the same recipe plans to the same keys before anything runs.
Settings that another stage owns stay out: `trainer.max_epochs` is the VMs' (the teacher and the
domain FMs have their own `max_epochs`), so changing it reuses the teacher and its knowledge.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.metadata
import importlib.util
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from transfer.config.recipe import TrainerConfig
from transfer.pipeline.launch import recipe_threads
from transfer.util.fingerprint import fingerprint

KEY_VERSION = 3  # bump when what a stage produces changes meaning without any code change
ENGINE = "transfer"
TECHNIQUES = "adapters"
MODEL_PACKAGES = ("teacher", "students", "domain_fms", "adapters")  # a builder's imports of these count as its code
LIBRARIES = ("torch", "lightning", "torchmetrics", "polars", "numpy", "pyarrow")


@dataclass(frozen=True)
class StageKey:
    """A stage's identity: its kind and the digest of what it depends on."""

    kind: str  # teacher, knowledge, domain_fm, vm
    digest: str

    @property
    def name(self) -> str:
        """The stage's folder name in the stage cache, e.g. `teacher-3f2a…`."""
        return f"{self.kind}-{self.digest}"


@dataclass(frozen=True)
class Reads:
    """What a stage's output depends on, as the stage declares it beside the code that reads it (its
    module's `*_reads` function): its settings (rows as `rows_digest`s), its inputs' keys, the packages
    whose code it runs whole, and the model builder it runs."""

    settings: dict
    inputs: dict[str, StageKey | str | None]
    packages: tuple[str, ...] = ()
    builder: str | None = None


def key_of(kind: str, reads: Reads) -> StageKey:
    """The key of a `kind` stage that reads `reads`: their hash, with the code and libraries it runs."""
    return stage_key(kind, reads.settings, reads.inputs, list(reads.packages), reads.builder)


def stage_key(kind: str, settings: dict, inputs: dict[str, StageKey | str | None], packages: list[str],
              builder: str | None = None) -> StageKey:
    """The key of a `kind` stage from its settings, its inputs' keys, the code of `packages` (whole)
    and of the model `builder` ("package.module:function": its module and what it imports)."""
    content = {
        "v": KEY_VERSION,
        "settings": settings,
        "inputs": {name: key.name if isinstance(key, StageKey) else key for name, key in inputs.items()},
        "code": {package: package_fingerprint(package) for package in sorted({ENGINE, *packages})},
        "model_code": builder_fingerprint(builder) if builder else None,
        "libraries": library_versions(),
    }
    return StageKey(kind, fingerprint(content, length=16))


@functools.cache
def package_fingerprint(package: str) -> str:
    """A hash of every Python source file of an installed top-level package (recursively), read from
    where Python imports it: a changed file anywhere in it changes the hash."""
    root = package_root(package)
    files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(root.parent)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def package_root(package: str) -> Path:
    """The folder (or single-module file) Python imports top-level `package` from."""
    spec = importlib.util.find_spec(package)
    if spec is None or (spec.origin is None and not spec.submodule_search_locations):
        raise ModuleNotFoundError(f"package '{package}' is not importable")
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(spec.origin)


@functools.cache
def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


@functools.cache
def builder_fingerprint(builder: str) -> str:
    """A hash of the source files a model builder runs: its module, the packages above it, and every
    module of its own or a model package that it imports, transitively (the engine is hashed whole)."""
    module = builder.partition(":")[0] if ":" in builder else builder.rpartition(".")[0]
    files = module_closure(module, {module.split(".")[0], *MODEL_PACKAGES})
    digest = hashlib.sha256()
    for name, path in sorted(files.items()):
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def module_closure(module: str, packages: set[str]) -> dict[str, Path]:
    """`module` and the modules of `packages` it imports (statically, transitively), with their
    packages' `__init__` files: module name → source file."""
    found: dict[str, Path] = {}
    pending = [module]
    while pending:
        name = pending.pop()
        if name in found or name.split(".")[0] not in packages:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            continue
        found[name] = Path(spec.origin)
        parent = name.rpartition(".")[0]
        pending += [parent] if parent else []
        pending += _imported_modules(Path(spec.origin), name if spec.submodule_search_locations else parent)
    return found


def _imported_modules(source: Path, package: str) -> list[str]:
    """Module names a source file imports (`from a import b` also names `a.b`, which may be a module)."""
    names = []
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from .x import y
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            names += [base] + [f"{base}.{alias.name}" for alias in node.names]
    return [name for name in names if name and _is_module(name)]


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent that is no package (`from pkg import function`)
        return False


def trainer_settings(cfg: TrainerConfig, own_epochs: bool) -> dict[str, str]:
    """The trainer settings that change what a training produces. `own_epochs`: the stage trains for
    `trainer.max_epochs` (the VMs); the teacher and domain FMs have their own epoch counts.

    On a CPU, `threads` counts as the intra-op threads each of the run's processes resolves it to
    (`launch.recipe_threads`): a training's floats depend on how its sums are split among threads, so a
    stage trained on one count is not reused by a run on another. Every process of a run computes the keys, so a multi-node CPU
    run needs nodes that resolve the same count (`trainer.threads` pins it)."""
    ignored = {"progress"} | (set() if cfg.strategy == "fsdp" else {"sharding"})  # sharding only means something under fsdp
    if not own_epochs:
        ignored.add("max_epochs")
    settings = {k: str(v) for k, v in asdict(cfg).items() if k not in ignored}
    settings["threads"] = str(recipe_threads(cfg)) if cfg.accelerator == "cpu" else "accelerator"
    return settings


def rows_digest(rows: torch.Tensor) -> str:
    """A hash of the exact rows a stage reads (not only their count). rows: [N] int64"""
    return hashlib.sha256(rows.to(torch.int64).contiguous().numpy().tobytes()).hexdigest()[:16]
