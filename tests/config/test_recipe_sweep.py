"""Regression tests for the recipe inputs a bad-input sweep found ending in a traceback or accepted
silently: each is one line naming the file and key, exit code 2, through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import run_cli

VALID = {"name": "sweep", "students": [{"vertical": "ig_stories_click"}]}


def _write(folder: Path, text: str | bytes, name: str = "r.yaml") -> Path:
    path = folder / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _yaml(**changes) -> str:
    return yaml.safe_dump({**VALID, **changes})


# case → (recipe text, overrides, what the one line must say)
CASES = {
    "env interpolation": ("name: sweep\nseed: ${oc.env:GEM_TRANSFER_NOT_SET}\nstudents: [{vertical: ig_stories_click}]\n", [],
                          "key 'seed': KeyError raised while resolving interpolation"),
    "missing interpolation key": ("name: sweep\nseed: ${nope}\nstudents: [{vertical: ig_stories_click}]\n", [], "Interpolation key 'nope' not found"),
    "interpolation in an override": (_yaml(), ["seed=${oc.env:GEM_TRANSFER_NOT_SET}"], "cannot parse the value: KeyError raised while resolving interpolation"),
    "not UTF-8": (b"name: sw\xffeep\nstudents: [{vertical: ig_stories_click}]\n", [], "not UTF-8 text (byte 0xff at offset 8)"),
    "a map where a list goes": ("name: sweep\nstudents: {vertical: ig_stories_click}\n", [], "key 'students': found a mapping; allowed: a list"),
    "a list where a section goes": ("name: sweep\ntrainer: [1, 2]\nstudents: [{vertical: ig_stories_click}]\n", [], "key 'trainer': found a list; allowed: a mapping"),
    "lr nan": (_yaml(), ["students.0.lr=nan"], "students.0.lr: found nan; allowed: a finite number > 0"),
    "lr inf": (_yaml(), ["teacher.lr=inf"], "teacher.lr: found inf"),
    "negative warm-up": (_yaml(), ["teacher.warmup_steps=-5"], "teacher.warmup_steps: found -5; allowed: a finite number >= 0"),
    "weight nan": (_yaml(), ["transfer.stages=[{distillation: {weight: .nan}}]"], "distillation.weight: found nan"),
    "negative seed": (_yaml(seed=-1), [], "seed: found -1; allowed: a whole number from 0 to 4294967295"),
    "negative data seed": (_yaml(), ["data.synthetic.seed=-3"], "data.synthetic.seed: found -3"),
    "no users sampled": (_yaml(), ["data.users.fraction=0"], "data.users.fraction: found 0.0; allowed: a share of users above 0 and at most 1"),
    "more users than there are": (_yaml(), ["data.users.fraction=1.5"], "data.users.fraction: found 1.5"),
    "negative user-sample seed": (_yaml(), ["data.users.seed=-1"], "data.users.seed: found -1"),
    "empty name": (_yaml(name=""), [], "name: found ''; allowed: 1 to 100 letters"),
    "name climbing out": (_yaml(name="../../x"), [], "name: found '../../x'"),
    "absolute name": (_yaml(name="/tmp/elsewhere"), [], "name: found '/tmp/elsewhere'"),
    "name with a newline": (_yaml(name="a\nb"), [], "name: found 'a\\nb'"),
    "duplicate key": ("name: sweep\nname: other\nstudents: [{vertical: ig_stories_click}]\n", [], "line 2, column 1: found duplicate key name"),
    "tab indent": ("name: sweep\nstudents:\n\t- {vertical: ig_stories_click}\n", [], "line 3: indented with a tab"),
    "broken flow list": ("name: sweep\nstudents: [{vertical: ig_stories_click}\n", [], "not valid YAML (line 3, column 1: did not find expected ',' or ']'"),
    "unknown accelerator": (_yaml(trainer={"accelerator": "tpu9"}), [], "trainer.accelerator: unknown name 'tpu9'"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_recipe_is_one_line_naming_the_key(tmp_path, capsys, case):
    text, overrides, expected = CASES[case]
    path = _write(tmp_path, text)
    code, _, err = run_cli(capsys, "validate", str(path)) if not overrides else run_cli(capsys, "data", "check", str(path), *overrides)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"gem-transfer: error: {path}"), err
    assert expected in lines[0]


def test_validating_several_files_reports_the_bad_one_after_the_good(tmp_path, capsys):
    good, bad = _write(tmp_path, _yaml(), "a.yaml"), _write(tmp_path, b"name: \xff\n", "b.yaml")
    code, out, err = run_cli(capsys, "validate", str(good), str(bad))
    assert code == 2 and out.startswith(f"ok: {good}") and err.strip() == f"gem-transfer: error: {bad}: not UTF-8 text (byte 0xff at offset 6); a recipe is UTF-8 YAML"


def test_a_gpu_recipe_on_a_machine_without_one_stops_before_reading_data(tmp_path, capsys):
    cache = tmp_path / "cache"
    path = _write(tmp_path, _yaml(trainer={"accelerator": "gpu"}, output_dir=str(tmp_path / "runs"), data={"cache_dir": str(cache)}))
    code, out, err = run_cli(capsys, "run", str(path))
    assert code == 2 and "trainer.accelerator: found 'gpu', but this machine has no CUDA GPU" in err
    assert out == "" and not cache.exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("content", [b"not a checkpoint", b"PK\x03\x04truncated zip"])
def test_init_from_that_is_not_a_checkpoint_is_one_line(tmp_path, capsys, content):
    weights = tmp_path / "w.pt"
    weights.write_bytes(content)
    path = _write(tmp_path, _yaml(teacher={"init_from": str(weights)}))
    code, _, err = run_cli(capsys, "validate", str(path))
    assert code == 2 and f"teacher.init_from: '{weights}' does not load as a checkpoint" in err


def test_init_from_holding_code_is_refused_without_running_it(tmp_path, capsys):
    import os

    import torch

    marker = tmp_path / "ran"

    class Planted:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    weights = tmp_path / "w.pt"
    torch.save({"layer.weight": Planted()}, weights)
    code, _, err = run_cli(capsys, "validate", str(_write(tmp_path, _yaml(teacher={"init_from": str(weights)}))))
    assert code == 2 and "does not load as a checkpoint (UnpicklingError)" in err and not marker.exists()
