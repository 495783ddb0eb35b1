"""Load YAML into a structured (dataclass) schema with one-line errors naming file and key path."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from transfer.errors import RecipeError

T = TypeVar("T")


def load_structured(schema: type[T], path: Path, overrides: list[str], what: str = "recipe") -> T:
    """Merge `path` and `key=value` overrides onto `schema`; return a typed dataclass instance."""
    path = Path(path)
    _check_file(path, what)
    raw = _read_yaml(path, what)
    _check_keys(OmegaConf.to_container(raw), schema, "", str(path))
    base = OmegaConf.structured(schema)
    cfg = _merge(base, raw, f"{path}", schema)
    for item in overrides:
        cfg = _apply_override(cfg, item, path, schema)
    try:
        _check_no_missing(cfg, path)
        return OmegaConf.to_object(cfg)  # type: ignore[return-value]  # resolves ${…} interpolations
    except OmegaConfBaseException as exc:
        raise RecipeError(f"{path}: key '{exc.full_key or '?'}': {_first_line(exc)}") from exc


def precheck(path: Path, overrides: list[str], what: str = "recipe") -> None:
    """What can be said about a config file without the schema's heavy imports (torch, for the
    model catalogs): it exists, is UTF-8 YAML holding a mapping, and each override is key=value.
    The CLI runs this first, so a typo costs no import time."""
    path = Path(path)
    _check_file(path, what)
    _read_yaml(path, what)
    for item in overrides:
        _split_override(item, path)


def _check_file(path: Path, what: str) -> None:
    """A `RecipeError` unless `path` is a file: a folder is named as one, a missing path as missing."""
    if path.is_dir():
        raise RecipeError(f"{path}: is a folder; a {what} is a YAML file (e.g. {path / 'my_recipe.yaml'})")
    if not path.is_file():
        raise RecipeError(f"{what} file not found: {path}")


def _split_override(item: str, path: Path) -> tuple[str, str]:
    """`dotted.key=value` → (key, value text); a `RecipeError` for anything else."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"{path}: override '{item}' is not of the form key=value (e.g. trainer.max_epochs=2)")
    return key.strip(), text


def _read_yaml(path: Path, what: str) -> DictConfig:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); a {what} is UTF-8 YAML") from None
    tabbed = [i for i, line in enumerate(text.splitlines(), start=1) if "\t" in line[: len(line) - len(line.lstrip())]]
    if tabbed:
        raise RecipeError(f"{path}: line {tabbed[0]}: indented with a tab; YAML indents with spaces only")
    try:
        raw = OmegaConf.create(text)  # OmegaConf's YAML loader: dates stay text, a key given twice is refused
    except yaml.YAMLError as exc:
        hint = DUPLICATE_SURFACE_HINT if what == "dataset config" and _duplicate_under(exc, text, "surfaces") else ""
        raise RecipeError(f"{path}: not valid YAML ({_yaml_problem(exc)}){hint}") from None
    except OmegaConfBaseException as exc:
        raise RecipeError(f"{path}: not a valid {what} ({_first_line(exc)})") from None
    if not isinstance(raw, DictConfig):
        raise RecipeError(f"{path}: a {what} must be a YAML mapping, found {type(raw).__name__}")
    return raw


def _duplicate_under(exc: yaml.YAMLError, text: str, parent: str) -> bool:
    """Whether `exc` is a key given twice inside the top-level mapping `parent` (block or flow style)."""
    mark = getattr(exc, "problem_mark", None)
    if mark is None or "duplicate key" not in str(exc):
        return False
    lines = text.splitlines()[: mark.line + 1]
    owner = next((line for line in reversed(lines) if line.strip() and not line[0].isspace() and not line.startswith("#")), "")
    return owner.startswith(f"{parent}:")


DUPLICATE_SURFACE_HINT = ("; a surface name used by two domains: name the domain column with `domain:` and list "
                          "each domain's surfaces under `domains:` (surfaces become <domain>_<surface>)")


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """'line L, column C: what is wrong' from a YAML error."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or _first_line(exc)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem


def _apply_override(cfg: DictConfig, item: str, path: Path, schema: type) -> DictConfig:
    """Apply one `dotted.key=value` (list items by index: `students.0.lr=3e-3`)."""
    key, text = _split_override(item, path)
    source = f"{path} (override '{item}')"
    try:
        value = OmegaConf.from_dotlist([f"value={text}"])["value"]
    except (OmegaConfBaseException, yaml.YAMLError) as exc:
        raise RecipeError(f"{source}: cannot parse the value: {_first_line(exc)}") from exc
    if OmegaConf.select(cfg, key, default=_ABSENT) is _ABSENT and not _in_free_mapping(cfg, key):
        if (missing := _missing_list_item(cfg, key)) is not None:
            raise RecipeError(f"{source}: {missing}")
        allowed = _allowed_keys(schema, key)
        raise RecipeError(f"{source}: unknown key '{key}'; allowed here: {allowed}")
    try:
        OmegaConf.update(cfg, key, value, merge=True)
    except OmegaConfBaseException as exc:
        raise RecipeError(f"{source}: key '{key}': {_first_line(exc)}") from exc
    return cfg


_ABSENT = object()


def _missing_list_item(cfg: DictConfig, key: str) -> str | None:
    """What is wrong when `key` indexes past the end of a list the config has (None: it does not):
    an override changes an item that exists, it does not add one."""
    parts = key.split(".")
    for depth in range(len(parts) - 1):
        node = OmegaConf.select(cfg, ".".join(parts[: depth + 1]), default=None)
        following = parts[depth + 1]
        if isinstance(node, ListConfig) and following.isdigit() and int(following) >= len(node):
            where = ".".join(parts[: depth + 1])
            if not len(node):
                return (f"'{where}' has no items in this recipe, so '{key}' names none; an override changes an item the recipe "
                        f"has: write {where} in the recipe itself")
            return (f"'{where}' has {len(node)} item(s) in this recipe, so '{key}' names none; allowed: an index from 0 to "
                    f"{len(node) - 1} (an override changes an item the recipe has; add new items to the recipe itself)")
    return None


def _in_free_mapping(cfg: DictConfig, key: str) -> bool:
    """True when `key`'s parent is a free-form mapping (e.g. `teacher.sizes`), where new keys are allowed."""
    parent = OmegaConf.select(cfg, key.rpartition(".")[0], default=None)
    return isinstance(parent, DictConfig) and OmegaConf.get_type(parent) is dict


def _merge(base: DictConfig, extra: Any, source: str, schema: type) -> DictConfig:
    try:
        return OmegaConf.merge(base, extra)  # type: ignore[return-value]
    except TypeError as exc:  # a mapping where the schema has a list, or the other way round
        raise RecipeError(f"{source}: {_first_line(exc)}") from exc
    except ConfigKeyError as exc:
        key = exc.full_key or str(exc.key)
        allowed = _allowed_keys(schema, key)
        raise RecipeError(f"{source}: unknown key '{key}'; allowed here: {allowed}") from exc
    except OmegaConfBaseException as exc:
        key = exc.full_key or "?"
        raise RecipeError(f"{source}: key '{key}': {_first_line(exc)}") from exc


def _check_keys(tree: Any, schema: Any, prefix: str, source: str) -> None:
    """Unknown keys anywhere in the YAML, list items included, named by their full path."""
    if dataclasses.is_dataclass(schema) and isinstance(tree, dict):
        hints = typing.get_type_hints(schema)
        for key, value in tree.items():
            path = f"{prefix}{key}"
            if key not in hints:
                allowed = ", ".join(f.name for f in dataclasses.fields(schema))
                raise RecipeError(f"{source}: unknown key '{path}'; allowed here: {allowed}")
            _check_shape(value, hints[key], path, source)
            _check_keys(value, _element_type(hints[key]), f"{path}.", source)
    elif isinstance(tree, list):
        for i, item in enumerate(tree):
            _check_keys(item, schema, f"{prefix[:-1]}.{i}." if prefix else f"{i}.", source)


def _check_shape(value: Any, hint: Any, path: str, source: str) -> None:
    """A list where the schema has a list, a mapping where it has a section or a dict."""
    expected = _container(hint)
    found = "list" if isinstance(value, list) else "mapping" if isinstance(value, dict) else None
    if expected and found and found != expected:
        example = "[{vertical: ig_stories_click}]" if path == "students" else "[...]" if expected == "list" else "{...}"
        raise RecipeError(f"{source}: key '{path}': found a {found}; allowed: a {expected}, e.g. {example}")


def _container(hint: Any) -> str | None:
    """'list' or 'mapping' when the schema type (Optional allowed) is one, else None."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is typing.Union and len(args) == 1:
        hint = args[0]
    if typing.get_origin(hint) is list:
        return "list"
    if typing.get_origin(hint) is dict or dataclasses.is_dataclass(hint):
        return "mapping"
    return None


def _check_no_missing(cfg: DictConfig, path: Path) -> None:
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise RecipeError(f"{path}: required key '{missing[0]}' is not set")


def _allowed_keys(schema: type, dotted: str) -> str:
    """The field names valid at the parent of `dotted` in the dataclass schema."""
    node: Any = schema
    for part in dotted.split(".")[:-1]:
        if part.isdigit():
            continue
        hints = typing.get_type_hints(node) if dataclasses.is_dataclass(node) else {}
        if part not in hints:
            break
        node = _element_type(hints[part])
    if dataclasses.is_dataclass(node):
        return ", ".join(f.name for f in dataclasses.fields(node))
    return "(see the schema)"


def _element_type(tp: Any) -> Any:
    """list[X] / Optional[X] → X; anything else unchanged."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (list, typing.Union) and args:
        return _element_type(args[0])
    return tp


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
