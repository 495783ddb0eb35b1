"""What a user meets when the store or the disk is not what a command expects: `lift` and `register`
from a folder without runs name `--tracking-uri`, the flag that fixes it, and create nothing; an
output folder the user cannot write and a full disk are one line naming the path (never a
traceback), with nothing half-written."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_cli


@pytest.mark.parametrize("command", [["lift"], ["register", "0123456789abcdef"]], ids=["lift", "register"])
def test_a_command_that_reads_runs_in_a_folder_without_them_names_the_flag(tmp_path, capsys, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    code, _, err = run_cli(capsys, *command)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("gem-transfer: error: --tracking-uri: sqlite:///") and "no MLflow store there" in err
    assert "tracking.uri:" not in err.split("error: ")[1][:20]  # the recipe's key is not what a lift or register user sets
    assert list(tmp_path.iterdir()) == []  # no empty store left behind


def test_an_output_folder_that_cannot_be_written_is_one_line(tracked_store, capsys):
    """/sys is read-only even for root: where `--out` cannot be created."""
    code, _, err = run_cli(capsys, "lift", "--tracking-uri", tracked_store, "--out", "/sys/gem_transfer_lift")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "/sys/gem_transfer_lift: permission denied" in err and "a folder it can write" in err


@pytest.fixture
def tracked_store(tmp_path, capsys) -> str:
    """A store with one finished quickstart-shaped run of a tiny recipe."""
    from tests.conftest import write_dataset, write_recipe
    from transfer.data.synthetic import SyntheticSpec, generate

    dataset = write_dataset(tmp_path, generate(SyntheticSpec(rows=4_000, days=6, seed=2)))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    recipe = write_recipe(tmp_path, dataset, name="stored", teacher={"model": "skeleton_tiny", "batch_size": 256},
                          students=[{"vertical": "ig_stories_click", "batch_size": 64}], tracking={"uri": uri})
    code, _, err = run_cli(capsys, "run", str(recipe))
    assert code == 0, err
    return uri


def _tiny_device(tmp_path: Path, size: str):
    """A tmpfs of `size`: a folder whose device fills up (mounting needs root, which CI and these machines are)."""
    folder = tmp_path / "full"
    folder.mkdir()
    assert os.geteuid() == 0, "this test mounts a tiny tmpfs to fill a disk, which needs root"
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True)
    yield folder
    subprocess.run(["umount", "--lazy", str(folder)], check=False)  # lazily: a failed writer may still hold a handle there


@pytest.fixture
def full_disk(tmp_path) -> Path:
    """4 KiB: about one small file fits."""
    yield from _tiny_device(tmp_path, "4k")


@pytest.fixture
def small_disk(tmp_path) -> Path:
    """256 KiB: a run's small files fit, a teacher's weights do not."""
    yield from _tiny_device(tmp_path, "256k")


@pytest.mark.slow
def test_a_full_disk_is_one_line_naming_the_path_with_nothing_half_written(tracked_store, full_disk, capsys):
    code, _, err = run_cli(capsys, "lift", "--tracking-uri", tracked_store, "--out", str(full_disk / "lift"))
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert str(full_disk / "lift") in err and "no space left on the device" in err and "rerun the same command" in err
    assert not [p for p in (full_disk / "lift").iterdir() if ".tmp" in p.name]  # nothing half-written left


@pytest.mark.parametrize("writer", ["torch", "polars"])
def test_a_full_disk_under_any_writer_is_the_same_error_naming_the_target(full_disk, writer):
    """torch's writer fails with an unrelated message and polars wraps the OS error: both become ENOSPC on the target."""
    import errno

    import numpy as np
    import polars as pl
    import torch

    from transfer.util.atomic import atomic_path

    target = full_disk / "weights.bin"
    with pytest.raises(OSError) as raised, atomic_path(target) as tmp:
        if writer == "torch":
            torch.save(torch.zeros(100_000), tmp)
        else:
            pl.DataFrame({"a": np.arange(100_000)}).write_parquet(tmp)
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(target)
    assert list(full_disk.iterdir()) == []  # the temporary file is gone


@pytest.mark.slow
def test_a_run_whose_output_folder_fills_up_says_what_the_write_needed(tmp_path, small_disk, capsys):
    """The teacher's epoch checkpoint cannot be written to a full output folder: one line with the file,
    the free space and about what the write needs, exit 1, no traceback."""
    from tests.conftest import write_dataset, write_recipe
    from transfer.data.synthetic import SyntheticSpec, generate

    dataset = write_dataset(tmp_path, generate(SyntheticSpec(rows=4_000, days=6, seed=2)))
    recipe = write_recipe(tmp_path, dataset, name="full", teacher={"model": "skeleton_tiny", "batch_size": 256},
                          students=[{"vertical": "ig_stories_click", "batch_size": 64}], output_dir=str(small_disk),
                          tracking={"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    code, out, err = run_cli(capsys, "run", str(recipe))
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, out + err
    assert f"{small_disk}/stages/teacher-" in err and ": no space left on the device" in err and "this write needs about" in err
    assert "rerun the same command: it resumes" in err
