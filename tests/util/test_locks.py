"""The one file-lock helper behind the stage, study and tracking-store locks: another process holding
it is named to the one that finds it busy, which may refuse or wait; a lock that cannot be created
is optional only where asked."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from transfer.util.locks import file_lock

HOLD = """
import sys, time
from pathlib import Path
from transfer.util.locks import file_lock
with file_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _holder(path, seconds: float) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_busy_lock_names_its_holder_and_may_refuse(tmp_path):
    lock = tmp_path / "x.lock"
    holder = _holder(lock, 30)
    try:
        def refuse(who: str) -> None:
            raise RuntimeError(who)

        with pytest.raises(RuntimeError, match=f"^process {holder.pid}$"), file_lock(lock, refuse):
            pass
    finally:
        holder.kill()
        holder.wait()
    with file_lock(lock, refuse):  # its holder died: the lock is free
        assert lock.read_text() == f"process {os.getpid()}"


def test_a_busy_lock_waits_for_its_holder_when_told_to(tmp_path):
    lock = tmp_path / "x.lock"
    holder = _holder(lock, 1.0)
    told = []
    with file_lock(lock, told.append):
        pass
    holder.wait()
    assert told == [f"process {holder.pid}"]  # found busy, told who held it, then waited for it and got it


def test_a_lock_that_cannot_be_created_is_skipped_only_when_optional(tmp_path):
    missing = tmp_path / "no" / "such" / "x.lock"
    with file_lock(missing, optional=True):
        pass
    with pytest.raises(OSError), file_lock(missing):
        pass
