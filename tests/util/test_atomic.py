"""Atomic writes: a failure leaves the old file intact and no temporary file behind."""

import pytest

from transfer.util.atomic import atomic_path, write_text_atomic


def test_success_replaces_target(tmp_path):
    target = tmp_path / "out.txt"
    write_text_atomic(target, "old")
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_failure_keeps_old_content_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half-writ")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_temporary_files_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    import os
    import subprocess
    import sys

    from transfer.util.atomic import HOST_TAG, PID_MARK, remove_stale_temps

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    stale = tmp_path / "stages" / f".table.parquet.{HOST_TAG}.{dead.stdout.strip()}{PID_MARK}abc.tmp"
    live = tmp_path / f".lift.csv.{HOST_TAG}.{os.getpid()}{PID_MARK}xyz.tmp"
    elsewhere = tmp_path / f".lift.csv.0a1b2c3d.{dead.stdout.strip()}{PID_MARK}xyz.tmp"  # another host's writer
    elsewhere.write_text("theirs")
    stale.parent.mkdir()
    stale.write_text("half")
    live.write_text("being written")
    assert remove_stale_temps(tmp_path) == [stale]
    assert not stale.exists() and live.exists() and elsewhere.exists()


def test_an_atomically_written_file_gets_normal_permissions(tmp_path):
    import os

    from transfer.util.atomic import write_text_atomic

    write_text_atomic(tmp_path / "lift.csv", "a,b\n")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "lift.csv").stat().st_mode & 0o777 == 0o666 & ~umask
