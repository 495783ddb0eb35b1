"""Stage keys cover what changes a stage's output and nothing else: settings, inputs' keys, and the
code that runs — checked on a temporary copy of the source with one file edited at a time."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, time_limit
from transfer.catalog import catalog
from transfer.config.recipe import Recipe, StageConfig, StudentConfig, TeacherConfig, TrainerConfig
from transfer.pipeline.keys import key_of, stage_key
from transfer.pipeline.stages.producers import knowledge_reads, teacher_reads
from transfer.pipeline.stages.verticals import vm_reads

PACKAGES = ("transfer", "teacher", "students", "domain_fms", "adapters")

# Prints every kind of stage key for one fixed recipe, computed by whatever source is on PYTHONPATH.
KEYS_SCRIPT = """
import json, torch
from transfer.catalog import catalog
from transfer.config.recipe import Recipe, StageConfig, StudentConfig
from transfer.pipeline.keys import key_of
from transfer.pipeline.stages.producers import domain_fm_reads, knowledge_reads, teacher_reads
from transfer.pipeline.stages.verticals import vm_reads
teacher_key = lambda *a: key_of("teacher", teacher_reads(*a))
knowledge_key = lambda *a: key_of("knowledge", knowledge_reads(*a))
domain_fm_key = lambda *a: key_of("domain_fm", domain_fm_reads(*a))
vm_key = lambda *a: key_of("vm", vm_reads(*a))
student = StudentConfig(vertical="ig_stories_click")
recipe = Recipe(name="keys", students=[student])
stage = StageConfig()
vm = catalog("vertical")["ig_stories_click"]
teacher = teacher_key(recipe, "data", "train", catalog("teacher")["skeleton_tiny"].builder)
knowledge = knowledge_key(teacher, "students", torch.arange(10), "32-true")
keys = {
    "teacher": teacher,
    "knowledge": knowledge,
    "domain_fm": domain_fm_key(recipe, "data", "students", "instagram", stage, teacher, knowledge, catalog("domain_fm")["dfm_small"].builder),
    "student": vm_key(recipe, "data", {"train": "rows"}, vm.name, vm.builder, dict(vm.sizes), student, 1, stage, teacher, knowledge),
    "baseline": vm_key(recipe, "data", {"train": "rows"}, vm.name, vm.builder, dict(vm.sizes), student, 1),
}
print(json.dumps({kind: key.name for kind, key in keys.items()}))
"""


def teacher_key(*args):
    return key_of("teacher", teacher_reads(*args))


def knowledge_key(*args):
    return key_of("knowledge", knowledge_reads(*args))


def vm_key(*args):
    return key_of("vm", vm_reads(*args))


def _source_copy(root: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _keys(source: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(source)}
    done = subprocess.run([sys.executable, "-c", KEYS_SCRIPT], capture_output=True, text=True, env=env, cwd=source, timeout=time_limit(300))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _edit(path: Path) -> None:
    path.write_text(path.read_text() + "\nEDITED_FOR_A_TEST = 1\n")


# edited file → the stages whose output it can change
EDITS = {
    "transfer/contract.py": {"teacher", "knowledge", "domain_fm", "student", "baseline"},  # the label loss, the batch keys
    "teacher/layers.py": {"teacher", "knowledge", "domain_fm", "student", "baseline"},  # a layer every model uses
    "students/mlp.py": {"student", "baseline"},  # the VM architecture only
    "adapters/student_adapter.py": {"domain_fm", "student"},  # a technique: consumers that transfer only
}


@pytest.mark.slow
def test_editing_the_source_changes_the_keys_of_the_stages_it_can_affect_only(tmp_path):
    original = _keys(_source_copy(tmp_path / "original"))
    assert _keys(_source_copy(tmp_path / "again")) == original  # the same code in another place: the same keys
    for edited, affected in EDITS.items():
        source = _source_copy(tmp_path / edited.replace("/", "_"))
        _edit(source / edited)
        keys = _keys(source)
        changed = {kind for kind in keys if keys[kind] != original[kind]}
        assert changed == affected, edited


def _builders() -> tuple[str, str]:
    return catalog("teacher")["skeleton_tiny"].builder, catalog("vertical")["ig_stories_click"].builder


def test_a_students_setting_leaves_the_teacher_and_its_knowledge_alone():
    teacher_builder, vm_builder = _builders()
    recipe = Recipe(name="r", students=[StudentConfig(vertical="ig_stories_click")])
    changed = replace(recipe, trainer=replace(recipe.trainer, max_epochs=3), students=[StudentConfig(vertical="ig_stories_click", lr=3e-3)])
    assert teacher_key(recipe, "d", "w", teacher_builder) == teacher_key(changed, "d", "w", teacher_builder)
    vm = [vm_key(r, "d", {"train": "w"}, "ig_stories_click", vm_builder, {}, r.students[0], 1) for r in (recipe, changed)]
    assert vm[0] != vm[1]  # trainer.max_epochs is the VMs' setting
    progress_only = replace(recipe, trainer=replace(recipe.trainer, progress=False))
    assert teacher_key(progress_only, "d", "w", teacher_builder) == teacher_key(recipe, "d", "w", teacher_builder)


def test_what_a_teacher_learns_from_is_in_its_key(tmp_path):
    teacher_builder, _ = _builders()
    recipe = Recipe(name="r")
    base = teacher_key(recipe, "d", "w", teacher_builder)
    assert teacher_key(replace(recipe, seed=1), "d", "w", teacher_builder) != base
    assert teacher_key(replace(recipe, teacher=TeacherConfig(lr=1e-3)), "d", "w", teacher_builder) != base
    assert teacher_key(recipe, "other data", "w", teacher_builder) != base
    assert teacher_key(recipe, "d", "w", "teacher.gem:gem_model") != base
    assert teacher_key(replace(recipe, trainer=TrainerConfig(precision="bf16-mixed")), "d", "w", teacher_builder) != base
    weights = tmp_path / "w.pt"  # a continued teacher: the weights count by content, not by path
    torch.save({"a": torch.zeros(2)}, weights)
    first = teacher_key(replace(recipe, teacher=TeacherConfig(init_from=str(weights))), "d", "w", teacher_builder)
    torch.save({"a": torch.ones(2)}, weights)
    assert teacher_key(replace(recipe, teacher=TeacherConfig(init_from=str(weights))), "d", "w", teacher_builder) != first


def test_knowledge_and_students_follow_their_inputs_keys():
    teacher_builder, vm_builder = _builders()
    recipe = Recipe(name="r", students=[StudentConfig(vertical="ig_stories_click")])
    teacher = teacher_key(recipe, "d", "w", teacher_builder)
    other_teacher = teacher_key(replace(recipe, seed=7), "d", "w", teacher_builder)
    rows = torch.arange(10)
    knowledge = knowledge_key(teacher, "s", rows, "32-true")
    assert knowledge != knowledge_key(other_teacher, "s", rows, "32-true")
    assert knowledge != knowledge_key(teacher, "s", rows.flip(0), "32-true")  # the exact rows, not their count
    student = recipe.students[0]

    def student_key(stage: StageConfig, producer=teacher, table=knowledge):
        return vm_key(recipe, "d", {"train": "s"}, "ig_stories_click", vm_builder, {}, student, 1, stage, producer, table)

    assert student_key(StageConfig()) != student_key(StageConfig(), other_teacher)
    assert student_key(StageConfig()) != student_key(StageConfig(), table=knowledge_key(other_teacher, "s", rows, "32-true"))
    assert student_key(StageConfig()) != student_key(replace(StageConfig(), producer="domain_fms"))
    assert stage_key("vm", {"a": 1}, {}, []) == stage_key("vm", {"a": 1}, {}, [])


def test_the_thread_count_a_run_resolves_is_in_its_keys_and_how_it_was_asked_for_is_not(monkeypatch):
    """Floats depend on how sums split among threads, so a stage trained on 1 thread is not reused on 2;
    the same count asked for as trainer.threads or as $OMP_NUM_THREADS is the same key."""
    teacher_builder, _ = _builders()
    recipe = Recipe(name="r")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    one = teacher_key(recipe, "d", "w", teacher_builder)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    two = teacher_key(recipe, "d", "w", teacher_builder)
    assert one != two
    assert teacher_key(replace(recipe, trainer=TrainerConfig(threads=1)), "d", "w", teacher_builder) == one


def test_plan_resolves_the_threads_the_processes_a_run_starts_will_use_and_an_accelerator_ignores_them(monkeypatch):
    """`plan` (no process started) keys a 2-process recipe on what `run` gives each of its processes,
    so it reports the stages `run` reuses; on an accelerator the CPU thread count is not in the key."""
    from transfer.pipeline.launch import recipe_threads, torch_threads

    teacher_builder, _ = _builders()
    two = Recipe(name="r", trainer=TrainerConfig(strategy="ddp", devices=2))
    for name in ("WORLD_SIZE", "LOCAL_WORLD_SIZE", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    planned = teacher_key(two, "d", "w", teacher_builder)
    monkeypatch.setenv("OMP_NUM_THREADS", str(torch_threads(0, 2)))  # what run_on_this_host gives its processes
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert recipe_threads(two.trainer) == torch_threads(0, 2)
    assert teacher_key(two, "d", "w", teacher_builder) == planned
    gpu = replace(two, trainer=replace(two.trainer, accelerator="gpu"))
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    seven = teacher_key(gpu, "d", "w", teacher_builder)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert teacher_key(gpu, "d", "w", teacher_builder) == seven
