"""Property: any malformed recipe — a key set to a value of the wrong type or out of range, a key
removed, an unknown key added, at any depth — ends in either a valid recipe or one clear error line
with exit code 2; never a traceback."""

from __future__ import annotations

import contextlib
import copy
import io
import math

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import REPO
from transfer.cli import main

BASE = yaml.safe_load((REPO / "recipes" / "direct_all_techniques.yaml").read_text())

ODD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12), st.sampled_from([math.nan, math.inf, -math.inf, -1.0, 0.0, 1e300]),
    st.text(max_size=12), st.lists(st.integers(-3, 3), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    st.sampled_from(["2026-13-45", "gem_huge", "hierarchical", "bf16-mixed", "", "students", "teacher"]),
)


def _paths(tree, prefix=()) -> list[tuple]:
    """Every key path in the recipe, list items included."""
    found = []
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else []
    for key, value in items:
        found.append((*prefix, key))
        found += _paths(value, (*prefix, key))
    return found


PATHS = _paths(BASE)


@st.composite
def malformed(draw) -> dict:
    recipe = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        parent = recipe
        try:
            for key in path[:-1]:
                parent = parent[key]
            kind = draw(st.sampled_from(["set", "delete", "add"]))
            if kind == "set":
                parent[path[-1]] = draw(ODD_VALUES)
            elif kind == "delete" and isinstance(parent, dict):
                del parent[path[-1]]
            elif isinstance(parent, dict):
                parent[draw(st.text(min_size=1, max_size=8))] = draw(ODD_VALUES)
        except (KeyError, IndexError, TypeError):  # an earlier mutation removed or replaced the path
            continue
    return recipe


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(recipe=malformed())
def test_a_malformed_recipe_is_valid_or_one_clear_line(tmp_path, recipe):
    path = tmp_path / "fuzzed.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["validate", str(path)])  # any exception escaping here fails the test, with the example
    if code == 0:
        assert out.getvalue().startswith(f"ok: {path}")
    else:
        assert code == 2
        lines = err.getvalue().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("gem-transfer: error: "), err.getvalue()
        assert "Traceback" not in err.getvalue()
