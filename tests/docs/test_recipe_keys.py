"""The recipe key reference (docs/recipe-keys.md) is generated from the schema, says something about
every key, and lists only keys the loader accepts."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest
import yaml
from omegaconf import OmegaConf

from adapters.distillation import DistillationConfig
from tests.conftest import REPO, run_cli, time_limit
from transfer.config.loader import load_recipe
from transfer.config.reference import REFERENCE, Key, missing_meanings, recipe_keys, render


@pytest.fixture(scope="module")
def keys() -> list[Key]:
    return recipe_keys()


def test_every_key_and_section_has_a_meaning_in_the_schema(keys):
    missing = missing_meanings(keys)
    assert not missing, f"no comment on these recipe fields (add one on the field, then run make docs): {', '.join(missing)}"


def test_the_committed_reference_is_current(keys):
    committed = (REPO / REFERENCE).read_text(encoding="utf-8")
    assert committed == render(keys), f"{REFERENCE} is not what the recipe schema gives: run make docs"


def test_known_keys_carry_their_type_default_and_meaning(keys):
    by_path = {key.path: key for key in keys}
    assert (by_path["trainer.max_epochs"].type, by_path["trainer.max_epochs"].default) == ("int", "2")
    temperature = by_path["transfer.stages.N.distillation.temperature"]
    assert (temperature.type, temperature.default, temperature.section) == ("float", "1.0", "transfer.stages.N.distillation")
    # a nested default is its parent's (DataConfig gives train 21 days), not the window class's, which has none
    assert by_path["data.train.days"].default == "21" and by_path["data.eval.days"].default == "3"
    assert by_path["students.N.vertical"].default == "required"
    assert by_path["teacher.precision"].type == "str or null"
    assert by_path["transfer.stages.N.sharing.modules"].type == "list of str"
    assert by_path["verticals.N.budget"].is_section and by_path["verticals.N.budget"].type == "section or null"
    text = (REPO / REFERENCE).read_text(encoding="utf-8")
    assert "| `transfer.stages.N.distillation.temperature` | float | `1.0` | T |" in text
    assert "## `transfer.stages.N.adapter`" in text


def _override_value(key: Key, recipe) -> str:
    """The key's default as override text, or (where the schema has none) what the recipe holds."""
    if key.default != "required":
        return key.default
    held = OmegaConf.to_container(OmegaConf.structured(recipe))
    for part in key.path.replace(".N.", ".0.").split("."):
        held = held[int(part)] if isinstance(held, list) else held[part]
    return "[" + ", ".join(held) + "]" if isinstance(held, list) else str(held)


def test_every_key_in_the_reference_is_accepted_by_validate_with_its_default(keys, tmp_path, capsys):
    """`gem-transfer validate RECIPE KEY=DEFAULT …` with every key of the reference (a refusal names the
    override), on the quickstart recipe plus an inline VM with a budget, so that `verticals.N.…` names an item."""
    recipe = yaml.safe_load((REPO / "recipes" / "quickstart.yaml").read_text())
    recipe["verticals"] = [{"name": "my_stories_click", "surfaces": ["ig_stories"], "task": "click",
                            "budget": {"max_params": 1_000_000, "max_p99_ms": 25}}]
    recipe["students"].append({"vertical": "my_stories_click"})
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    loaded = load_recipe(path)
    overrides = [f"{key.path.replace('.N.', '.0.')}={_override_value(key, loaded)}" for key in keys if not key.is_section]
    assert len(overrides) > 80
    code, out, err = run_cli(capsys, "validate", str(path), *overrides)
    assert code == 0 and out.startswith("ok:"), err
    code, _, err = run_cli(capsys, "validate", str(path), "trainer.max_epoch=2")  # what a key the schema lacks gets
    assert code == 2 and "unknown key 'trainer.max_epoch'" in err


def test_a_stage_made_by_make_dataclass_takes_its_sections_meaning_from_their_classes():
    """Without source (`dataclasses.make_dataclass`), a section's meaning is its class's docstring and
    a plain field has none, which the reference reports rather than prints blank."""
    stage = dataclasses.make_dataclass("Stage", [("producer", str, dataclasses.field(default="teacher")),
                                                 ("distillation", DistillationConfig,
                                                  dataclasses.field(default_factory=DistillationConfig))])
    root = dataclasses.make_dataclass("Root", [("stages", list[stage], dataclasses.field(default_factory=list))])
    found = {key.path: key for key in recipe_keys(root)}
    assert found["stages.N.distillation"].meaning == "Knowledge distillation from the producer's logits."
    assert found["stages.N.distillation.head"].meaning.startswith("serving: vanilla KD")  # DistillationConfig has source
    assert missing_meanings(list(found.values())) == ["stages", "stages.N.producer"]


def test_the_generator_imports_no_torch():
    script = ("import sys; from transfer.config.reference import recipe_keys, render; render(recipe_keys()); "
              "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=time_limit(120))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"
