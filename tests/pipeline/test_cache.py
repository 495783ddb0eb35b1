"""Stage outputs found again by content; label base rates with missing tasks; empty VM slices."""

from __future__ import annotations

import polars as pl
import torch
from torch import nn

from tests.conftest import run_cli, write_dataset, write_recipe
from transfer.data.prepare import label_rates
from transfer.pipeline.cache import StageCache
from transfer.pipeline.keys import stage_key


def test_cached_weights_come_back_and_a_mismatch_is_a_miss(tmp_path):
    cache = StageCache(tmp_path)
    folder = cache.folder(stage_key("teacher", {"seed": 1}, {}, []))
    assert folder == cache.folder(stage_key("teacher", {"seed": 1}, {}, [])) != cache.folder(stage_key("teacher", {"seed": 2}, {}, []))
    source = nn.Linear(3, 2)
    assert cache.load_model(folder, nn.Linear(3, 2)) is None
    cache.save_model(folder, source, {"run_id": "abc"})
    target = nn.Linear(3, 2)
    assert cache.load_model(folder, target)["run_id"] == "abc"
    assert torch.equal(target.weight, source.weight)
    assert cache.load_model(folder, nn.Linear(4, 2)) is None  # another architecture: train again


def test_label_rates_fall_back_where_a_task_has_no_labels():
    nan = float("nan")
    here = torch.tensor([[1.0, nan], [0.0, nan], [1.0, nan]])
    everywhere = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [1.0, 0.0]])
    assert torch.allclose(label_rates(here, everywhere), torch.tensor([2 / 3, 0.25]))


def test_a_vm_without_impressions_in_its_window_is_a_clear_error(tmp_path, small_log, capsys):
    dataset = write_dataset(tmp_path, small_log.filter(pl.col("surface") != "ig_stories"))
    code, _, err = run_cli(capsys, "run", str(write_recipe(tmp_path, dataset)))
    assert code == 2
    assert "'ig_stories_click' has no impressions of surface(s) 'ig_stories'" in err
