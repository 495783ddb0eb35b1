"""How many intra-op threads a recipe process takes: the recipe's, else $OMP_NUM_THREADS, else its
share of the cores it may use."""

from __future__ import annotations

import os

from transfer.pipeline.launch import torch_threads


def test_the_recipe_wins_then_the_environment_then_a_share_of_the_cores(monkeypatch):
    cores = len(os.sched_getaffinity(0))
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert torch_threads(1) == 1  # trainer.threads: 1
    assert torch_threads(0) == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert torch_threads(0) == cores
    assert torch_threads(0, processes=2 * cores) == 1  # never 0, however many processes share the host
    assert torch_threads(0, processes=2) == max(1, cores // 2)


def test_a_run_uses_and_logs_the_threads_its_recipe_sets(tmp_path, capsys, small_log):
    import torch
    from mlflow.tracking import MlflowClient

    from tests.conftest import run_cli, write_dataset, write_recipe

    before = torch.get_num_threads()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    recipe = write_recipe(tmp_path, write_dataset(tmp_path, small_log), teacher={"model": "skeleton_tiny", "batch_size": 256},
                          students=[{"vertical": "ig_stories_click", "batch_size": 64}], tracking={"uri": uri, "experiment": "threads"})
    try:
        code, _, err = run_cli(capsys, "run", str(recipe), "trainer.threads=1")
        assert code == 0, err
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    client = MlflowClient(uri)
    (parent,) = [r for r in client.search_runs([client.get_experiment_by_name("threads").experiment_id]) if r.data.tags.get("role") is None
                 or "mlflow.parentRunId" not in r.data.tags]
    assert parent.data.params["torch_threads"] == "1" and parent.data.params["trainer.threads"] == "1"
