"""Atomic writes: everything goes to a temporary name in the target folder, then is renamed."""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

PID_MARK = "-pid-"  # temporary names carry their writer's host and process: `.name.<host>.<pid>-pid-<random>.tmp`
HOST_TAG = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]  # no dots, unlike host names


class DiskFull(OSError):
    """A write the device had no room for, naming its target and, where the writer knew it, about how
    many bytes it needed."""

    def __init__(self, target: Path, needed_bytes: int | None = None):
        super().__init__(errno.ENOSPC, "No space left on device", str(target))
        self.needed_bytes = needed_bytes


@contextlib.contextmanager
def atomic_path(target: str | Path, needed_bytes: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds.
    `needed_bytes`: about how much the write takes, said if the device fills up.

    >>> with atomic_path("out.parquet") as tmp:
    ...     frame.write_parquet(tmp)
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.{HOST_TAG}.{os.getpid()}{PID_MARK}", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~process_umask())  # mkstemp makes it private (0600); the result is a normal file
        os.replace(tmp, target)
    except Exception as exc:
        if disk_full(exc, target.parent):  # whichever library wrote (torch, polars, pyarrow): the same one clear error
            raise DiskFull(target, getattr(exc, "needed_bytes", None) or needed_bytes) from exc
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename in (None, str(tmp)):
            raise OSError(exc.errno, exc.strerror, str(target)) from exc  # a failed write names what it was writing
        raise
    finally:
        tmp.unlink(missing_ok=True)


FULL_BELOW_BYTES = 1 << 20  # a device with less free space than this is full, whatever the writer called its error


def disk_full(exc: BaseException, folder: Path) -> bool:
    """Whether a failed write failed for want of space: said so by its error (errno, or the OS message
    a library passed on), or the device is (nearly) full now. torch's writer, for one, says neither."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    if "No space left on device" in text or "os error 28" in text:
        return True
    try:
        return shutil.disk_usage(folder).free < FULL_BELOW_BYTES
    except OSError:
        return False


@functools.cache
def process_umask() -> int:
    """The process's umask, read without changing it (Linux: /proc; elsewhere set and restored once)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(target: str | Path, text: str) -> None:
    """Write `text` to `target` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def remove_stale_temps(root: Path) -> list[Path]:
    """Delete temporary files under `root` written on this host by a process that is gone (killed
    mid-write); → them. Other hosts' temporary files (a shared folder) are left alone."""
    removed = []
    for tmp in Path(root).rglob(".*.tmp"):
        head = tmp.name.rsplit(PID_MARK, 1)[0]  # .name.<host>.<pid>
        host, _, pid_text = head.rpartition(".")
        if host.endswith(f".{HOST_TAG}") and pid_text.isdigit() and not process_alive(int(pid_text)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
