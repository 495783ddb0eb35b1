"""One process at a time: an exclusive `flock` on a file, held for a block, with the holder's process
written into it so a process that finds it busy can say who holds it. The lock is released when the
block ends or the process dies."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def file_lock(path: Path, when_busy: Callable[[str], None] | None = None, optional: bool = False) -> Iterator[None]:
    """Hold the lock `path` (created if missing) for the block. When another process holds it,
    `when_busy(holder)` is called first ("process 1234"): it raises to refuse, or returns to wait for
    it. `optional`: a lock that cannot be created (a read-only folder) is done without."""
    try:
        handle = open(path, "a+")
    except OSError:
        if not optional:
            raise
        yield
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            if when_busy is not None:
                when_busy(handle.read().strip() or "another process")
            fcntl.flock(handle, fcntl.LOCK_EX)
        _write_holder(handle, path)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_holder(handle, path: Path) -> None:
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()}")
        handle.flush()
    except OSError as exc:  # a full disk, say: name the file, which the OS error does not
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
