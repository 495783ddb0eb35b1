"""Stage keys follow what each stage reads: every recipe field (and a dataset YAML field, and each
input window) changed one at a time, through `gem-transfer plan` as a user would, changes exactly the
keys of the stages that read it — the validation window, which chooses the epoch every VM keeps,
among them."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import run_cli, write_dataset, write_recipe
from tests.pipeline.test_plan import _plan
from transfer.config.recipe import Recipe
from transfer.data.synthetic import SyntheticSpec, generate

TEACHER, KNOWLEDGE = "teacher:skeleton_tiny", "knowledge:skeleton_tiny"
IG = {"baseline:ig_stories_click", "student:ig_stories_click"}
FB = {"baseline:fb_feed_conversion", "student:fb_feed_conversion"}
STUDENTS = {"student:ig_stories_click", "student:fb_feed_conversion"}
VMS = IG | FB
ALL = {TEACHER, KNOWLEDGE} | VMS
NONE: set[str] = set()
TAUGHT = ALL - {"baseline:ig_stories_click", "baseline:fb_feed_conversion"}  # the teacher and all it teaches

# A 6-day log from 2026-01-01: teacher 01-02 → 01-04, students → 01-05, validation → 01-06, eval → 01-07.
WINDOWS = {"train": {"start": "2026-01-02", "days": 2}, "student": {"days": 1}, "validation": {"days": 1}, "eval": {"days": 1}}

CASES = [  # (override, the stages whose keys it changes)
    ("name=renamed", NONE),
    ("seed=1", ALL),
    ("output_dir=elsewhere", NONE),
    ("data.train.days=1", ALL),  # the teacher's window, and the students' window that starts where it ends
    ("data.student.hours=12", {KNOWLEDGE} | VMS),  # the consumers' rows: the knowledge scored for them and every VM
    ("data.validation.hours=12", VMS),  # the validation rows choose the epoch each VM keeps
    ("data.validation.days=0", VMS),  # no validation window: each VM keeps its last epoch
    ("data.train.hours=12", ALL),
    ("data.eval.hours=12", NONE),  # only the evaluation, which runs every time, reads it
    ("data.recalibration_days=2", NONE),  # so does the recalibration
    ("data.cache_dir=elsewhere", NONE),  # where the encoded log is cached, not what it holds
    ("data.users.seed=3", NONE),  # with every user kept (fraction 1), the sample's seed picks nothing
    ("data.users.fraction=0.5", ALL),
    ("data.min_train_positives=5", NONE),  # a warning threshold
    ("teacher.lr=0.001", ALL - {"baseline:ig_stories_click", "baseline:fb_feed_conversion"}),
    ("teacher.max_epochs=2", ALL - {"baseline:ig_stories_click", "baseline:fb_feed_conversion"}),
    ("teacher.batch_size=128", ALL - {"baseline:ig_stories_click", "baseline:fb_feed_conversion"}),
    ("teacher.warmup_steps=10", TAUGHT),
    ("teacher.keep_best_epoch=true", TAUGHT),  # and then the validation rows choose its epoch
    ("teacher.sizes.dim=8", TAUGHT),
    ("teacher.compile=true", TAUGHT),
    ("teacher.precision=bf16-mixed", TAUGHT),
    ("transfer.staleness_days=1", ALL - {"baseline:ig_stories_click", "baseline:fb_feed_conversion"}),
    ("transfer.knowledge=training_traffic", TAUGHT),  # the teacher trains on through the students' window, scoring it first
    ("transfer.max_age_days=30", NONE),  # it refuses knowledge that is too old; it never changes what trains
    ("transfer.stages.0.distillation.weight=0.5", STUDENTS),
    ("students.0.lr=0.003", IG),
    ("students.1.batch_size=32", FB),
    ("students.0.sizes.hidden=[16]", IG),
    ("trainer.max_epochs=3", VMS),  # the VMs' epochs; the teacher has its own
    ("trainer.order=shuffled", ALL),
    ("trainer.threads=1", ALL),  # the base recipe pins 2: a training's sums depend on the thread count
    ("trainer.progress=false", NONE),
    ("trainer.precision=bf16-mixed", ALL),
    ("tracking.experiment=elsewhere", NONE),
    ("tracking.uri=sqlite:///elsewhere.db", NONE),
    ("tracking.log_models=true", NONE),
    ("tracking.serving_requests=16", NONE),
]


@pytest.fixture(scope="module")
def log() -> pl.DataFrame:
    return generate(SyntheticSpec(rows=6_000, days=6, seed=5))


def _recipe(folder: Path, log: pl.DataFrame, **dataset) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = {"dataset": str(write_dataset(folder, log, **dataset)), **WINDOWS, "cache_dir": str(folder / "cache")}
    students = [{"vertical": "ig_stories_click", "batch_size": 64}, {"vertical": "fb_feed_conversion", "batch_size": 64}]
    transfer = {"stages": [{"producer": "teacher", "consumers": "students", "distillation": {"weight": 1.0, "head": "serving"}}]}
    return write_recipe(folder, "", name="keys", data=data, teacher={"model": "skeleton_tiny", "batch_size": 256}, students=students,
                        transfer=transfer,
                        trainer={"max_epochs": 1, "threads": 2, "progress": False}, tracking={"uri": f"sqlite:///{folder / 'mlflow.db'}"})


def _keys(capsys, recipe: Path, *overrides: str) -> dict[str, str]:
    return {name: key for _, kind, name, key, _ in _plan(capsys, recipe, *overrides) if kind != "evaluation"}


def _changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    assert set(after) == set(before)
    return {name for name in before if before[name] != after[name]}


def test_each_recipe_field_changes_exactly_the_keys_of_the_stages_that_read_it(tmp_path, log, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # `output_dir=elsewhere` is relative: its data cache goes here, not into the repository
    recipe = _recipe(tmp_path, log)
    base = _keys(capsys, recipe)
    assert set(base) == ALL
    found = {override: _changed(base, _keys(capsys, recipe, override)) for override, _ in CASES}
    assert found == dict(CASES)


def test_a_dataset_field_changes_every_stage(tmp_path, log, capsys):
    base = _keys(capsys, _recipe(tmp_path / "a", log))
    assert _changed(base, _keys(capsys, _recipe(tmp_path / "b", log, hash_buckets=256))) == ALL


def test_an_inline_vms_task_is_in_its_key(tmp_path, log, capsys):
    """A VM declared in the recipe keeps its name when its task changes: its stages must not be reused."""
    recipe = _recipe(tmp_path, log)
    inline = {"name": "stories_vm", "surfaces": ["ig_stories"], "task": "click"}
    text = recipe.read_text().replace("vertical: ig_stories_click", "vertical: stories_vm")
    recipe.write_text(text + f"verticals: [{{name: {inline['name']}, surfaces: [ig_stories], task: click}}]\n")
    click = _keys(capsys, recipe)
    conversion = _keys(capsys, recipe, "verticals.0.task=conversion")
    assert _changed(click, conversion) == {"baseline:stories_vm", "student:stories_vm"}


def test_a_vanilla_kd_reference_is_the_same_stage_as_a_vanilla_kd_student(tmp_path, log, capsys):
    """One recipe's reference (role vanilla_kd) and another's vanilla-KD student train alike: one key, so one training."""
    recipe = _recipe(tmp_path, log)
    aux = "transfer.stages.0.distillation.head=auxiliary"
    with_reference = {name: key for _, _, name, key, _ in _plan(capsys, recipe, aux, "transfer.vanilla_reference=true")}
    vanilla_students = _keys(capsys, recipe)  # the default stage is vanilla KD on the serving head
    assert with_reference["vanilla_kd:ig_stories_click"] == vanilla_students["student:ig_stories_click"]
    assert with_reference["student:ig_stories_click"] != vanilla_students["student:ig_stories_click"]
    code, _, err = run_cli(capsys, "plan", str(recipe), "transfer.max_age_days=-1")
    assert code == 2 and "max_age_days" in err


FMS = {"domain_fm:dfm_small:facebook", "domain_fm:dfm_small:instagram"}
FM_KNOWLEDGE = {"knowledge:dfm_small:facebook", "knowledge:dfm_small:instagram"}
HIERARCHICAL = ["transfer.strategy=hierarchical", "transfer.stages=[]"]  # the strategy's two default stages
HIERARCHICAL_CASES = [
    ("domain_fms.lr=0.001", FMS | FM_KNOWLEDGE | STUDENTS),
    ("domain_fms.batch_size=512", FMS | FM_KNOWLEDGE | STUDENTS),
    ("domain_fms.warm_start=true", FMS | FM_KNOWLEDGE | STUDENTS),
    ("domain_fms.sizes.dim=8", FMS | FM_KNOWLEDGE | STUDENTS),
    ("domain_fms.max_epochs=2", FMS | FM_KNOWLEDGE | STUDENTS),
    ("data.validation.hours=12", VMS),  # the domain FMs keep no epoch by validation: only the VMs read it
    ("teacher.lr=0.001", (ALL | FMS | FM_KNOWLEDGE) - {"baseline:ig_stories_click", "baseline:fb_feed_conversion"}),
    ("students.0.lr=0.003", IG),
]


def test_in_a_hierarchical_recipe_each_field_changes_exactly_the_stages_that_read_it(tmp_path, log, capsys):
    recipe = _recipe(tmp_path, log)
    base = _keys(capsys, recipe, *HIERARCHICAL)
    assert set(base) == ALL | FMS | FM_KNOWLEDGE
    found = {override: _changed(base, _keys(capsys, recipe, *HIERARCHICAL, override)) for override, _ in HIERARCHICAL_CASES}
    assert found == dict(HIERARCHICAL_CASES)


# Recipe fields no case above changes, and why (each still reaches its stages' keys where it matters).
ELSEWHERE = {
    "data.dataset": "a dataset YAML's field changes every stage (test_a_dataset_field_changes_every_stage)",
    "data.synthetic.days": "the built-in synthetic dataset only: its settings are part of the encoded log's fingerprint",
    "data.synthetic.rows": "as data.synthetic.days", "data.synthetic.seed": "as data.synthetic.days",
    "data.synthetic.start": "as data.synthetic.days",
    "data.train.start": "a window is its rows: its days and hours change them above",
    "data.student.start": "as data.train.start", "data.student.days": "data.student.hours above (days and hours add up)",
    "data.eval.days": "data.eval.hours above (days and hours add up)", "data.validation.start": "as data.train.start", "data.eval.start": "as data.train.start",
    "domain_fms.model": "hierarchical only; its builder's code and sizes are in its key as domain_fms.sizes",
    "students": "students.0.lr and students.1.batch_size above",
    "verticals": "test_an_inline_vms_task_is_in_its_key",
    "teacher.model": "another teacher is another stage (its name changes with it), and so is all it teaches",
    "teacher.init_from": "the weights it continues from count by content (tests/pipeline/test_keys.py)",
    "transfer.stages": "transfer.stages.0.distillation.weight above",
    "transfer.strategy": "the hierarchical plan below has other stages",
    "transfer.vanilla_reference": "adds stages and leaves the others' keys (test_a_vanilla_kd_reference_is_the_same_stage_as_a_vanilla_kd_student)",
    "trainer.accelerator": "a CPU-only machine plans on the CPU only", "trainer.devices": "as trainer.accelerator",
    "trainer.strategy": "as trainer.accelerator", "trainer.num_nodes": "as trainer.accelerator", "trainer.sharding": "as trainer.accelerator",
}


def _recipe_fields(cls: type, prefix: str = "") -> set[str]:
    hints = typing.get_type_hints(cls)
    found = set()
    for item in dataclasses.fields(cls):
        kind = hints[item.name]
        found |= _recipe_fields(kind, f"{prefix}{item.name}.") if dataclasses.is_dataclass(kind) else {prefix + item.name}
    return found


def test_every_recipe_field_has_a_case_or_says_where_it_is_covered():
    """A field added to the recipe schema must be added to the table (or to ELSEWHERE, with the reason)."""
    tested = {override.split("=")[0] for override, _ in CASES + HIERARCHICAL_CASES}
    covered = {field for field in _recipe_fields(Recipe) if field in tested or any(key.startswith(field + ".") for key in tested)}
    assert _recipe_fields(Recipe) - covered - set(ELSEWHERE) == set()
    assert set(ELSEWHERE) <= _recipe_fields(Recipe)  # no stale excuse
