"""MLflow tag and metric names are written once, in `transfer.tracking.tags`: no other engine module
spells one of them as a string literal (a renamed tag cannot leave a reader behind)."""

from __future__ import annotations

import ast

from tests.conftest import REPO
from transfer.tracking import tags as T

TAGS_MODULE = REPO / "transfer" / "tracking" / "tags.py"


def _names() -> set[str]:
    """The distinctive tag and metric names (with an underscore: `role` or `model` also name table columns)."""
    values = [v for k, v in vars(T).items() if k.isupper() and isinstance(v, str)]
    return {v for v in values if "_" in v.strip("_")}


def _literals(path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and node.body
                  and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def test_the_tag_names_are_distinctive_enough_to_search_for():
    assert {"recipe_run_id", "baseline_run_id", "budget_status", "model_uri", "lift_pct", "serving_p99_ms"} <= _names()


def test_no_engine_module_spells_a_tag_or_metric_name_itself():
    names = _names()
    found = [f"{path.relative_to(REPO)}:{line}: '{value}'"
             for path in sorted((REPO / "transfer").rglob("*.py")) if path != TAGS_MODULE
             for line, value in _literals(path) if value in names]
    assert found == [], "use transfer.tracking.tags instead of: " + "; ".join(found)
