"""A run's output redirected to a file shows a plain line per tenth of each epoch, not a stream of
carriage returns; no logger version (`v_num`) anywhere."""

from __future__ import annotations

import re

from tests.conftest import run_cli, write_dataset, write_recipe


def test_redirected_output_gets_plain_progress_lines(tmp_path, capsys, small_log):
    recipe = write_recipe(tmp_path, write_dataset(tmp_path, small_log), teacher={"model": "skeleton_tiny", "batch_size": 64},
                          students=[{"vertical": "ig_stories_click", "batch_size": 16}])
    code, out, err = run_cli(capsys, "run", str(recipe), "trainer.progress=true")  # captured: not a terminal
    assert code == 0, err
    assert "\r" not in out and "v_num" not in out + err
    teacher = [line for line in out.splitlines() if line.startswith("  teacher: skeleton_tiny: epoch 1/1, step ")]
    steps = [int(re.search(r"step (\d+)/(\d+)", line).group(1)) for line in teacher]
    total = int(re.search(r"step \d+/(\d+)", teacher[0]).group(1))
    assert total >= 10 and 10 <= len(steps) <= 11 and steps[-1] == total  # a tenth of the epoch per line, and its end
    assert all("train_loss" in line for line in teacher)
    assert any(line.startswith("  student: ig_stories_click: epoch 1/1, step ") for line in out.splitlines())
