"""The recipe's second pass of checks (see `transfer.config.validate`): the models it names exist in
the catalog, take and build with their sizes, serve surfaces and tasks the dataset has, and the modules
a stage shares fit its producer and consumers. The catalog's model packages import torch."""

from __future__ import annotations

from pathlib import Path

import adapters
from transfer.catalog import CatalogError, ModelEntry, catalog, sources
from transfer.config.dataset import DatasetConfig, dataset_config_path, inputs_of, load_dataset_config
from transfer.config.recipe import Recipe
from transfer.config.validate import one_of
from transfer.config.verticals import architectures, inline_entry, recipe_verticals
from transfer.contract import BuilderError
from transfer.errors import RecipeError, UserError


def validate_models(recipe: Recipe, path: Path) -> None:
    """Every check that needs the catalog (run after `validate_values` passed)."""
    _check_model(path, "teacher", "teacher.model", recipe.teacher.model, recipe.teacher.sizes)
    _check_model(path, "domain_fm", "domain_fms.model", recipe.domain_fms.model, recipe.domain_fms.sizes)
    if recipe.teacher.init_from is not None:
        _check_state_dict(path, "teacher.init_from", recipe.teacher.init_from)
    dataset = load_dataset_config(dataset_config_path(recipe.data.dataset))
    _check_inline_verticals(recipe, path, dataset)
    entries = recipe_verticals(recipe)
    for i, student in enumerate(recipe.students):
        entry = _check_model(path, "vertical", f"students.{i}.vertical", student.vertical, student.sizes, entries)
        _check_serves(path, f"students.{i}.vertical", entry, dataset)
    _check_techniques(recipe, path)


def _check_inline_verticals(recipe: Recipe, path: Path, dataset: DatasetConfig) -> None:
    """Each inline VM: a name the catalog does not have, a known architecture with sizes it takes (and
    builds), surfaces and a task the dataset has (its name's form and budget: `validate_values`)."""
    shared, known = catalog("vertical"), architectures()
    for i, cfg in enumerate(recipe.verticals):
        key = f"verticals.{i}"
        if cfg.name in shared:
            raise RecipeError(f"{path}: {key}.name: '{cfg.name}' is already a catalog vertical ({sources('vertical')[cfg.name]}); "
                              "allowed: a new name")
        one_of(path, f"{key}.architecture", cfg.architecture, known)
        entry = inline_entry(cfg)
        _check_sizes(path, f"{key}.sizes", entry, dict(cfg.sizes))
        _check_serves(path, key, entry, dataset)


def _check_serves(path: Path, key: str, entry: ModelEntry, dataset: DatasetConfig) -> None:
    """The VM's surfaces and task are ones the dataset YAML declares (so `validate` catches what
    `run` would only find after loading the data)."""
    missing = [s for s in entry.surfaces if s not in dataset.surfaces]
    if missing or not entry.surfaces:
        raise RecipeError(f"{path}: {key}: '{entry.name}' serves surface(s) '{', '.join(entry.surfaces)}', which dataset "
                          f"'{dataset.name}' does not have; its surfaces: {', '.join(dataset.surfaces)}")
    if entry.task not in dataset.labels:
        raise RecipeError(f"{path}: {key}: '{entry.name}' serves task '{entry.task}'; dataset '{dataset.name}' has tasks: "
                          f"{', '.join(dataset.labels)}")


def _check_techniques(recipe: Recipe, path: Path) -> None:
    """Each stage's techniques that check the models they apply to (sharing: the parts exist and fit):
    build the stage's producer and consumers and let them try."""
    checking = {i: [t for t in adapters.enabled(stage) if hasattr(t, "check_models")] for i, stage in enumerate(recipe.transfer.stages)}
    if not any(checking.values()):
        return
    try:
        inputs = inputs_of(load_dataset_config(dataset_config_path(recipe.data.dataset)))
    except UserError as exc:
        raise RecipeError(f"{path}: data.dataset: {exc}") from None
    producers = {"teacher": (catalog("teacher")[recipe.teacher.model], recipe.teacher.sizes),
                 "domain_fms": (catalog("domain_fm")[recipe.domain_fms.model], recipe.domain_fms.sizes)}
    verticals = recipe_verticals(recipe)
    for i, stage in enumerate(recipe.transfer.stages):
        consumers = [producers["domain_fms"]] if stage.consumers == "domain_fms" else [
            (verticals[s.vertical], s.sizes) for s in recipe.students
        ]
        producer, producer_sizes = producers[stage.producer]
        for technique in checking[i]:
            for entry, sizes in consumers:
                try:
                    technique.check_models(stage, producer.build(inputs, producer_sizes), entry.build(inputs, sizes))
                except ValueError as exc:
                    raise RecipeError(f"{path}: transfer.stages.{i}.{technique.KEY}.{exc}") from None  # exc names its field


def _check_model(path: Path, kind: str, key: str, name: str, sizes: dict, entries: dict[str, ModelEntry] | None = None) -> ModelEntry:
    """`name` is in the catalog of `kind` (or in `entries`, when given), and `sizes` only names sizes
    its builder takes."""
    try:
        entries = catalog(kind) if entries is None else entries
    except CatalogError as exc:
        raise RecipeError(f"{path}: {key}: {exc}") from None
    one_of(path, key, name, entries)
    entry = entries[name]
    _check_sizes(path, key.rsplit(".", 1)[0] + ".sizes", entry, sizes)
    return entry


def _check_sizes(path: Path, sizes_key: str, entry: ModelEntry, sizes: dict) -> None:
    """`sizes` only names sizes the entry's builder takes, and the model builds with them."""
    try:
        allowed = entry.size_names()
    except BuilderError as exc:
        raise RecipeError(f"{path}: {sizes_key.rsplit('.', 1)[0]}: {exc}") from None
    unknown = [k for k in sizes if k not in allowed]
    if unknown:
        raise RecipeError(f"{path}: {sizes_key}: unknown size '{unknown[0]}' for {entry.builder}; allowed: {', '.join(allowed)}")
    if sizes:
        _check_builds(path, sizes_key, entry, sizes)


def _check_builds(path: Path, sizes_key: str, entry: ModelEntry, sizes: dict) -> None:
    """Overridden sizes must make a model: build it once on the synthetic dataset's features."""
    inputs = inputs_of(load_dataset_config(dataset_config_path("synthetic")))
    try:
        entry.build(inputs, sizes)
    except Exception as exc:  # a wrong type or value fails anywhere inside the builder: name the key instead
        shown = ", ".join(f"{k}={v!r}" for k, v in sizes.items())
        raise RecipeError(f"{path}: {sizes_key}: {entry.builder} cannot build with {shown} ({type(exc).__name__}: {exc})") from None


def _check_state_dict(path: Path, key: str, weights: str) -> None:
    """`weights` is a file holding a saved state dict (tensors by parameter name), loadable without running code."""
    import torch

    allowed = "a state dict saved with torch.save(model.state_dict(), path), or null"
    if not Path(weights).is_file():
        raise RecipeError(f"{path}: {key}: '{weights}' is not a file; allowed: {allowed}")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # not a torch file, truncated, or holding objects that would run code
        raise RecipeError(f"{path}: {key}: '{weights}' does not load as a checkpoint ({type(exc).__name__}); allowed: {allowed}") from None
    if not (isinstance(state, dict) and state and all(isinstance(v, torch.Tensor) for v in state.values())):
        raise RecipeError(f"{path}: {key}: '{weights}' holds no state dict of tensors; allowed: {allowed}")


def check_machine(recipe: Recipe, path: Path) -> None:
    """The recipe's accelerator exists on this machine (checked before any data is read)."""
    import torch

    accelerator = recipe.trainer.accelerator
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise RecipeError(f"{path}: trainer.accelerator: found '{accelerator}', but this machine has no CUDA GPU; allowed here: cpu, auto")
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise RecipeError(f"{path}: trainer.accelerator: found 'mps', but this machine has no Apple GPU; allowed here: cpu, auto")
