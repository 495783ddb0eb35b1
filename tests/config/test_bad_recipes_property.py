"""Property: any malformed recipe — a key set to a value of the wrong type or out of range, a key
removed, an unknown key added, at any depth; a name that is no single folder; and text that is no
clean YAML (tabs, a key given twice, bytes that are not UTF-8, unresolvable interpolations, a file
cut short) — ends in either a valid recipe or one clear error line with exit code 2; never a
traceback. A recipe accepted as valid holds only finite numbers, seeds in range and a name that
stays inside output_dir."""

from __future__ import annotations

import contextlib
import copy
import io
import math
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import REPO
from transfer.cli import main
from transfer.config.loader import load_recipe

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


def _validate(path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["validate", str(path)])  # any exception escaping here fails the test, with the example
    return code, out.getvalue(), err.getvalue()


def _assert_valid_or_one_line(path: Path) -> None:
    code, out, err = _validate(path)
    if code == 0:
        assert out.startswith(f"ok: {path}")
        _assert_sound(load_recipe(path))
    else:
        assert code == 2
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("gem-transfer: error: "), err
        assert "Traceback" not in err


def _assert_sound(recipe) -> None:
    """What an accepted recipe promises: finite numbers, seeds numpy takes, a name that is one folder."""
    for key, value in recipe.flat().items():
        assert not (isinstance(value, float) and not math.isfinite(value)), key
    assert 0 <= recipe.seed < 2**32 and 0 <= recipe.data.synthetic.seed < 2**32
    root = Path(recipe.output_dir).resolve()
    assert (root / recipe.name).resolve().parent == root and recipe.name.isprintable()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(recipe=malformed())
def test_a_malformed_recipe_is_valid_or_one_clear_line(tmp_path, recipe):
    path = tmp_path / "fuzzed.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True))
    _assert_valid_or_one_line(path)


NAMES = st.one_of(st.text(max_size=12), st.sampled_from(["../../x", "/tmp/abs", "a/b", "..", ".", "a\nb", "", " ", "ok-name_1.2"]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=NAMES, seed=st.integers(-2**40, 2**40), data_seed=st.integers(-2**40, 2**40))
def test_names_and_seeds_are_valid_or_one_clear_line(tmp_path, name, seed, data_seed):
    recipe = copy.deepcopy(BASE) | {"name": name, "seed": seed}
    recipe["data"] = {**recipe.get("data", {}), "synthetic": {"seed": data_seed}}
    path = tmp_path / "named.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True))
    _assert_valid_or_one_line(path)


TEXT = yaml.safe_dump(BASE).encode()


@st.composite
def damaged_text(draw) -> bytes:
    """The base recipe's YAML with one textual fault."""
    lines = TEXT.splitlines(keepends=True)
    at = draw(st.integers(0, len(lines) - 1))
    fault = draw(st.sampled_from(["tab", "duplicate", "bytes", "env", "missing", "cut", "list_as_map"]))
    if fault == "tab":
        lines[at] = b"\t" + lines[at]
    elif fault == "duplicate":
        lines.insert(at, lines[at])
    elif fault == "bytes":
        lines[at] = lines[at].rstrip(b"\n") + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\x80abc"])) + b"\n"
    elif fault in ("env", "missing"):
        key, sep, _ = lines[at].partition(b":")
        lines[at] = key + sep + (b" ${oc.env:GEM_TRANSFER_NOT_SET}\n" if fault == "env" else b" ${no.such.key}\n")
    elif fault == "list_as_map":
        return TEXT.replace(b"students:\n- ", b"students:\n  ")
    else:
        return TEXT[: draw(st.integers(0, len(TEXT)))]
    return b"".join(lines)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=damaged_text())
def test_recipe_text_that_is_no_clean_yaml_is_one_clear_line(tmp_path, text):
    path = tmp_path / "damaged.yaml"
    path.write_bytes(text)
    _assert_valid_or_one_line(path)
