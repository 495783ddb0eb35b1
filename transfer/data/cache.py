"""The data cache (`data.cache_dir`): files made once per dataset and reused by every run.

Every file lies inside the cache folder (a path that would resolve outside it is refused), is
written atomically with a sha256 checksum beside it (`<file>.sha256`, written after the file), and
is verified before it is reused: a file that does not match its checksum (cut short, damaged) or
that has none (its writer was killed in between) is built again. Temporary files that a killed
writer left behind are removed when the data is prepared.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from transfer.errors import DataError
from transfer.util import ranks
from transfer.util.atomic import atomic_path, remove_stale_temps, write_text_atomic

CHECKSUM_SUFFIX = ".sha256"


def prepare_cache_dir(cache_dir: Path) -> Path:
    """Make `cache_dir` (its absolute path is returned) and drop this host's temporary files left
    there by killed writers (the first process of each node does). A component of the path that
    is a file, or a folder that cannot be made, is one `DataError` line naming `data.cache_dir`."""
    folder = Path(cache_dir).absolute()
    for parent in [folder, *folder.parents]:
        if parent.exists() and not parent.is_dir():
            raise DataError(f"data.cache_dir: found '{cache_dir}', but '{parent}' is a file; allowed: a folder path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"data.cache_dir: cannot make the folder '{cache_dir}' ({exc.strerror}); allowed: a writable folder path") from None
    if ranks.is_node_main():
        for path in remove_stale_temps(folder):
            print(f"  removed a file left half-written by a killed data build: {path}", flush=True)
    return folder


def cache_path(cache_dir: Path, *parts: str) -> Path:
    """`cache_dir / parts…`, refused (a `DataError`) unless it resolves inside `cache_dir`."""
    root = Path(cache_dir).resolve()
    path = root.joinpath(*parts)
    if path.resolve() == root or not path.resolve().is_relative_to(root):
        raise DataError(f"data.cache_dir: '{'/'.join(parts)}' would be written outside the data cache {root}; allowed: a file name inside it")
    return path


def cached(path: Path, build: Callable[[Path], None], intact: Callable[[Path], bool] | None = None) -> Path:
    """`path` when it is there and matches its checksum; otherwise `build(tmp)` writes it again
    (to a temporary name, renamed onto `path`), then its checksum is written. → `path`

    `intact(path)`, for a file whose content a verified file already fixes (a derived one), replaces
    hashing the whole file on every reuse by a cheaper test (its size and layout, say); the checksum
    is still written, and a file without one is built again."""
    problem = damage(path, intact)
    if problem is None:
        return path
    checksum_file(path).unlink(missing_ok=True)
    with atomic_path(path) as tmp:
        build(tmp)
    write_checksum(path)
    if problem != "missing":
        print(f"rebuilt the data cache: {path} {problem}", flush=True)
    return path


def damage(path: Path, intact: Callable[[Path], bool] | None = None) -> str | None:
    """Why `path` cannot be reused ('missing', 'was damaged', 'had no checksum'), or None when it can
    (its checksum matches, or `intact(path)` says so)."""
    if not path.is_file():
        return "missing"
    expected = checksum_file(path)
    if not expected.is_file():
        return "had no checksum"
    if intact is not None:
        return None if intact(path) else "was damaged"
    return None if expected.read_text().strip() == sha256(path) else "was damaged"


def checksum_file(path: Path) -> Path:
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def write_checksum(path: Path) -> None:
    """Record `path`'s sha256 beside it (`<path>.sha256`), once `path` is complete."""
    write_text_atomic(checksum_file(path), sha256(path))


def recorded_checksums(folder: Path) -> list[tuple[str, str]]:
    """(file relative to `folder`, its recorded sha256) for every file under `folder` with a checksum
    beside it, sorted: the folder's content, wherever the folder is (empty for a missing folder)."""
    return sorted((str(p.relative_to(folder))[: -len(CHECKSUM_SUFFIX)], p.read_text().strip()) for p in folder.rglob(f"*{CHECKSUM_SUFFIX}"))


def checksum_matches(path: Path) -> bool:
    """True when `path` and its recorded checksum exist and agree."""
    return damage(path) is None
