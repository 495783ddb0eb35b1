"""The teacher's speed options pass through to Lightning: `teacher.precision` (bf16-mixed) and
`teacher.compile` (torch.compile), on a real run; bad values are refused before training."""

from __future__ import annotations

import polars as pl
import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.conftest import run_cli, write_dataset, write_recipe


def _teacher_run(db):
    client = MlflowClient(f"sqlite:///{db}")
    runs = client.search_runs([client.get_experiment_by_name("opts").experiment_id])
    (teacher,) = [r for r in runs if r.data.tags.get("role") == "teacher"]
    return teacher


# torch.compile of the GEM teacher takes minutes on this machine's 2 cores (its interleaved graph, forward
# and backward, at each batch shape): the compile option is proven on the skeleton teacher, whose graph
# compiles in seconds; bf16 on the GEM teacher itself.
@pytest.mark.slow
@pytest.mark.parametrize(("model", "options"), [("gem_lite", {"precision": "bf16-mixed"}), ("skeleton_tiny", {"compile": True})])
def test_teacher_trains_and_scores_with_speed_option(tmp_path, small_log, capsys, model, options):
    dataset = write_dataset(tmp_path, small_log)
    db = tmp_path / "mlflow.db"
    recipe = write_recipe(tmp_path, dataset, name="opts", teacher={"model": model, "batch_size": 256, **options},
                          tracking={"uri": f"sqlite:///{db}"})
    code, out, err = run_cli(capsys, "run", str(recipe))
    assert code == 0, err
    teacher = _teacher_run(db)
    assert teacher.data.params["precision"] == options.get("precision", "32-true")
    assert teacher.data.params["compile"] == str(options.get("compile", False))
    (knowledge,) = list((tmp_path / "runs").rglob(f"{model}.parquet"))
    table = pl.read_parquet(knowledge)
    logits = torch.tensor(table["logit_click"].to_numpy())
    assert table["logit_click"].dtype == pl.Float32  # stored as float32 whatever the precision
    assert torch.isfinite(logits).all() and logits.std() > 0


def test_unknown_teacher_precision_is_refused_naming_the_key(tmp_path, small_log, capsys):
    dataset = write_dataset(tmp_path, small_log)
    recipe = write_recipe(tmp_path, dataset, name="opts", teacher={"model": "gem_lite", "precision": "fp8"})
    code, out, err = run_cli(capsys, "run", str(recipe))
    assert code == 2
    assert "teacher.precision" in err and "'fp8'" in err and "bf16-mixed" in err
    assert not (tmp_path / "runs").exists()  # refused before anything was written
