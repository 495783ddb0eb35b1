"""The recipe key reference (`docs/recipe-keys.md`, written by `make docs`): every key of the recipe
schema with its type, default and meaning, walked from the root `Recipe` dataclass.

Nothing here is written twice: the keys and types come from `dataclasses.fields` and
`typing.get_type_hints` (sections recursed into, a list of sections as `key.N.field`), the defaults
from the default instances (so `data.train.days` is the 21 that `DataConfig` gives it, not the
`WindowConfig` class's), and each meaning from the comment on the field in the source of the class
that declares it — the comment lines just above the field and the comment after it — followed, for
a section, by the first paragraph of its class's docstring (all a section made without source, by
`dataclasses.make_dataclass`, has). Free of torch, like the schema.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import io
import sys
import textwrap
import tokenize
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from transfer.config.recipe import Recipe

REFERENCE = Path("docs/recipe-keys.md")  # relative to the repository root
SECTION, SECTIONS = "section", "list of sections"


@dataclass(frozen=True)
class Key:
    """One key of the schema: a leaf (a value a recipe sets) or a section (a mapping of keys)."""

    path: str  # dotted, list items as N: transfer.stages.N.distillation.temperature
    type: str  # as YAML sees it: int, float, str, bool, list of str, mapping, "or null" when it may be null
    default: str  # the default as YAML text; "required" where the schema has none
    meaning: str  # "" when the schema says nothing about it
    section: str  # the path of the section it belongs to ("" for the top level)
    is_section: bool = False


def recipe_keys(root: type = Recipe) -> list[Key]:
    """Every key of the schema under `root`, sections before their keys, in the schema's order."""
    return list(_walk(root, root(), ""))


def missing_meanings(keys: list[Key]) -> list[str]:
    """The keys whose meaning the schema does not give (the reference would show them blank)."""
    return [key.path for key in keys if not key.meaning]


def render(keys: list[Key]) -> str:
    """The reference as Markdown: the top level's keys, then one table per section."""
    lines = [
        "# Recipe keys",
        "",
        "Every key a recipe (or a `key=value` override) may set: its type, its default and what it means.",
        "Back to the [README](../README.md); how to write and run a recipe: [Recipes](recipes.md).",
        "",
        "Generated from the recipe schema (`transfer/config/recipe.py` and the techniques' configs) by `make docs`",
        "(`transfer/config/reference.py`); `tests/docs/test_recipe_keys.py` keeps it current. `N` stands for a list",
        "item's index, counted from 0 (`students.0.lr=3e-3`); an override changes an item the recipe has.",
        "",
        "## Top level",
    ]
    lines += _table(keys, "")
    for section in (k for k in keys if k.is_section):
        lines += ["", f"## `{section.path}`", "", _escape(section.meaning)]
        if section.type == SECTIONS:
            lines += ["", f"A list, each item a mapping of the keys below; default `{section.default}`."]
        elif section.type != SECTION:
            lines += ["", f"A mapping of the keys below, or null; default `{section.default}`."]
        lines += _table(keys, section.path)
    return "\n".join(lines) + "\n"


def _table(keys: list[Key], section: str) -> list[str]:
    leaves = [k for k in keys if k.section == section and not k.is_section]
    if not leaves:
        return []
    rows = [f"| `{k.path}` | {k.type} | {_default_cell(k.default)} | {_escape(k.meaning)} |" for k in leaves]
    return ["", "| key | type | default | meaning |", "| --- | --- | --- | --- |", *rows]


def _walk(cls: type, instance: Any, prefix: str) -> typing.Iterator[Key]:
    hints = typing.get_type_hints(cls)
    section = prefix.rstrip(".")
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        path = f"{prefix}{f.name}"
        value = getattr(instance, f.name)
        inner, optional = _unwrap_optional(hint)
        meaning = _field_meaning(cls, f.name)
        if dataclasses.is_dataclass(inner):
            yield Key(path, SECTION + (" or null" if optional else ""), _yaml(value) if value is None else "",
                      _join(meaning, _doc_summary(inner)), section, is_section=True)
            yield from _walk(inner, value if value is not None else inner(), f"{path}.")
        elif typing.get_origin(inner) is list and dataclasses.is_dataclass(element := typing.get_args(inner)[0]):
            yield Key(path, SECTIONS, _yaml(value), _join(meaning, _doc_summary(element)), section, is_section=True)
            yield from _walk(element, element(), f"{path}.N.")
        else:
            yield Key(path, _type_name(hint), _yaml(value), meaning, section)


def _join(meaning: str, doc: str) -> str:
    """A section's meaning: the comment on its field, then its class's docstring."""
    return "\n\n".join(text for text in (meaning, doc) if text)


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    args = typing.get_args(hint)
    if _is_union(hint) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0], True
    return hint, False


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _type_name(hint: Any) -> str:
    if hint is type(None):
        return "null"
    if _is_union(hint):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    origin = typing.get_origin(hint)
    if origin is list:
        return f"list of {_type_name(typing.get_args(hint)[0])}"
    if origin is dict or hint is dict:
        return "mapping"
    if hint is Any:
        return "any"
    return getattr(hint, "__name__", str(hint))


def _yaml(value: Any) -> str:
    """A default as a recipe would write it."""
    if value == MISSING:
        return "required"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml(v)}" for k, v in value.items()) + "}"
    return str(value) if value != "" else '""'


def _escape(text: str) -> str:
    """Text for Markdown: a `|` does not end a table cell, a `<name>` is not taken for HTML."""
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _default_cell(default: str) -> str:
    return "required" if default == "required" else f"`{default}`"


def _field_meaning(cls: type, name: str) -> str:
    """The comment on field `name` in the source of the class (of `cls`'s MRO) that declares it."""
    owner = next((c for c in cls.__mro__ if name in c.__dict__.get("__annotations__", {})), cls)
    return _class_comments(owner).get(name, "")


@functools.cache  # each class's source is read and tokenized once
def _class_comments(cls: type) -> dict[str, str]:
    """Field name → its comments (the lines just above it, then those within its statement) in
    `cls`'s source; {} where there is no source (a class made by `dataclasses.make_dataclass`, say)."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    comments: dict[str, str] = {}
    depth = statement_depth = 0
    above: list[str] = []  # comment lines since the last statement or blank line
    leading: list[str] = []  # those above the statement being read
    statement: list[tokenize.TokenInfo] = []  # the tokens of the statement being read
    within: list[str] = []  # its comments
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.INDENT:
            depth += 1
        elif token.type == tokenize.DEDENT:
            depth -= 1
        elif token.type == tokenize.COMMENT:
            (within if statement else above).append(token.string.lstrip("#").strip())
        elif token.type == tokenize.NL:
            if not statement and not token.line.strip():
                above = []  # a blank line parts the comments above it from the next field
        elif token.type == tokenize.NEWLINE:
            # a field: `name: type …` directly in the class body
            if statement_depth == 1 and len(statement) > 1 and statement[0].type == tokenize.NAME and statement[1].string == ":":
                comments[statement[0].string] = " ".join([*leading, *within])
            statement, within = [], []
        elif token.type != tokenize.ENDMARKER:
            if not statement:
                statement_depth, leading, above = depth, above, []
            statement.append(token)
    return comments


def _doc_summary(cls: type) -> str:
    """The first paragraph of a class's own docstring, on one line ("" when it has none)."""
    doc = cls.__dict__.get("__doc__")
    if not doc or doc.startswith(f"{cls.__name__}("):  # dataclasses make a docstring of the signature
        return ""
    return " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())


def main(argv: list[str] | None = None) -> int:
    """`python -m transfer.config.reference [OUT]`: write the reference (default docs/recipe-keys.md)."""
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else REFERENCE
    keys = recipe_keys()
    if missing := missing_meanings(keys):
        print(f"no meaning in the schema for: {', '.join(missing)} (add a comment on the field)", file=sys.stderr)
        return 1
    out.write_text(render(keys), encoding="utf-8")
    print(f"wrote {out}: {sum(not k.is_section for k in keys)} keys in {sum(k.is_section for k in keys)} sections")
    return 0


if __name__ == "__main__":
    sys.exit(main())
