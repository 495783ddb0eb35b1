"""Where a benchmark's figures go, each with the code it was made on: its section of
benchmarks/RESULTS.md (between its own markers) and its CSVs and charts, under
benchmarks/results/<study>/, written atomically, stamped with the git commit and whether the tree had
uncommitted changes. Superseded sections (`benchmarks.sections`) live in benchmarks/archive/RESULTS.md,
their CSVs under benchmarks/archive/<study>/; a benchmark that writes a superseded section writes it
to the archive."""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import torch

from benchmarks.sections import INDEX_END, INDEX_START, SECTIONS, SUPERSEDED, index
from transfer.util.atomic import atomic_path, write_text_atomic

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "RESULTS.md"
ARCHIVED = "archive/RESULTS.md"  # the superseded sections, relative to RESULTS.md
HEADER = ("# Benchmark results\n\nEach section is rewritten by the benchmark named in it (`make bench`). Every figure carries "
          "the commit it was made on (`commit` line and CSV column), and whether the tree had uncommitted changes. "
          f"Superseded sections are kept in [`{ARCHIVED}`]({ARCHIVED}).\n")
ARCHIVE_HEADER = """# Benchmark results: the archive

The sections of [`RESULTS.md`](../RESULTS.md) that a later run superseded, kept as they were: each with the
command, date, commit and machine it was made on and what it showed then, the history of a claim. The
evidence to read now is in [`RESULTS.md`](../RESULTS.md), whose index lists every section here with its
successor. Their CSVs are under `benchmarks/archive/<study>/`. The index below is generated from
`benchmarks/sections.py`; a benchmark that writes a superseded section writes it here.
"""
# what benchmarks write, and the archive of what they wrote: not code, so not a change to it
OUTPUTS = re.compile(r"benchmarks/((results|archive)/([^/]+/)?)?[^/]+\.(md|csv|png)")


def study_dir(study: str) -> Path:
    """Where a study writes its CSVs and charts: benchmarks/results/<study>/, the study named as its
    make target (`make bench-<study>`)."""
    return RESULTS.parent / "results" / study


def shown(path: Path) -> str:
    """`path` as the results files cite it: from the repository's root when it lies inside it."""
    path = path.resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


@dataclass(frozen=True)
class CodeVersion:
    """The code a benchmark ran: the commit checked out, and the files that differ from it."""

    commit: str  # 40 hex digits, or "unknown" outside a git checkout
    changed: tuple[str, ...] = ()  # code files modified, added or deleted since the commit (untracked included)
    content: str = ""  # a hash of the changed files' contents: tells two dirty trees apart

    @property
    def dirty(self) -> bool:
        return bool(self.changed)

    def __str__(self) -> str:
        if not self.dirty:
            return f"{self.commit} (clean tree)"
        shown = ", ".join(self.changed[:5]) + (f" and {len(self.changed) - 5} more" if len(self.changed) > 5 else "")
        return f"{self.commit} + uncommitted changes to {len(self.changed)} file(s) (content {self.content}): {shown}"


def _git(*args: str, repo: Path) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def code_version(repo: Path = REPO) -> CodeVersion:
    """The commit `repo` has checked out and its uncommitted code changes (benchmark outputs excluded)."""
    try:
        commit = _git("rev-parse", "HEAD", repo=repo).strip()
        status = _git("status", "--porcelain", "--untracked-files=all", repo=repo)
    except (OSError, subprocess.CalledProcessError):
        return CodeVersion("unknown")
    changed = tuple(sorted(p for p in (line[3:].split(" -> ")[-1] for line in status.splitlines()) if not OUTPUTS.fullmatch(p)))
    digest = hashlib.sha256()
    for path in changed:
        file = repo / path
        digest.update(path.encode() + b"\0" + (file.read_bytes() if file.is_file() else b"(deleted)") + b"\0")
    return CodeVersion(commit, changed, digest.hexdigest()[:12] if changed else "")


STARTED_ON = code_version()  # when the benchmark started (this module is imported before it measures anything)


def commit_line() -> str:
    """What RESULTS.md says about the code: the commit at the start, and a warning if it changed since."""
    now = code_version()
    if now == STARTED_ON:
        return str(STARTED_ON)
    return f"{STARTED_ON} at the start; {now} at the end (the code changed during the run: figures may mix both)"


def command_line(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> str:
    """The command a benchmark was started with (`argv`, by default `sys.argv`), as a reader types it
    at the repository's root: `python <script> <arguments>`, shell-quoted, after `OMP_NUM_THREADS=…`
    when that is set (it sets torch's threads)."""
    argv, environ = sys.argv if argv is None else argv, os.environ if environ is None else environ
    threads = f"OMP_NUM_THREADS={environ['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in environ else ""
    return threads + shlex.join(["python", shown(Path(argv[0])), *argv[1:]])


def machine() -> str:
    cpus = len(os.sched_getaffinity(0))
    return f"{platform.machine()}, {cpus} CPU cores available, torch {torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}"


def write_csv(frame: pl.DataFrame, path: Path, kept: pl.DataFrame | None = None) -> None:
    """`frame` as a CSV, atomically, each row stamped with the code it was made on (`commit`, `dirty`);
    `kept` rows of an earlier run (already stamped, same columns) follow with their own stamps."""
    stamped = frame.with_columns(pl.lit(STARTED_ON.commit).alias("commit"), pl.lit(STARTED_ON.dirty).alias("dirty"))
    if kept is not None and len(kept):
        stamped = pl.concat([stamped, kept.select(stamped.columns).cast(stamped.schema)])
    with atomic_path(path) as tmp:
        stamped.write_csv(tmp)


def write_section(name: str, command: str, body: str, results: Path = RESULTS) -> None:
    """Replace (or append) the section `name` with a dated body and the commit it was made on: in
    `results`, or in the archive beside it when `benchmarks.sections` calls the section superseded
    (said in one line); the indexes of both are regenerated."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        f"<!-- {name}:start -->\n## {name}\n\n"
        f"- command: `{command}`\n- date: {stamp}\n- commit: {commit_line()}\n- machine: {machine()}\n\n{body.strip()}\n"
        f"<!-- {name}:end -->\n"
    )
    archive = results.parent / ARCHIVED
    texts = {results: results.read_text() if results.exists() else HEADER, archive: archive.read_text() if archive.exists() else ARCHIVE_HEADER}
    status, successor = SECTIONS.get(name, ("", ""))
    target = archive if status == SUPERSEDED else results
    pattern = re.compile(rf"<!-- {re.escape(name)}:start -->.*?<!-- {re.escape(name)}:end -->\n", re.S)
    texts[target] = pattern.sub(lambda _: section, texts[target]) if pattern.search(texts[target]) else f"{texts[target]}\n{section}"
    _write_indexed(results, texts[results], texts[archive])
    if target == archive:
        print(f"benchmarks: section {name} is superseded ({successor if successor.startswith('the ') else 'by ' + successor}): "
              f"written to the archive, {archive}", flush=True)


def reindex(results: Path = RESULTS) -> None:
    """Rewrite the indexes of `results` and of its archive from `benchmarks.sections`, after a section
    was reclassified or moved by hand: `python -m benchmarks.results_file`."""
    archive = results.parent / ARCHIVED
    _write_indexed(results, results.read_text(), archive.read_text() if archive.exists() else ARCHIVE_HEADER)


def _write_indexed(results: Path, text: str, archived: str) -> None:
    """`text` to `results` and `archived` to the archive beside it, each with its index regenerated;
    each written only if that changes it, the archive only once it holds a section."""
    archive = results.parent / ARCHIVED
    for path, new in ((results, with_index(text, section_names(archived))), (archive, archive_with_index(archived, section_names(text)))):
        if (path.read_text() if path.exists() else None) != new and (path == results or section_names(archived)):
            write_text_atomic(path, new)


def section_names(text: str) -> list[str]:
    """The sections of a results file, in file order."""
    return [name for name in re.findall(r"<!-- ([\w.-]+):start -->", text) if name != "index"]


def with_index(text: str, archived: list[str]) -> str:
    """RESULTS.md's `text` with its index (`benchmarks.sections`) regenerated below the header: its own
    sections, and the `archived` ones, each linked to its heading in the archive."""
    own = section_names(text)
    places = {name: f"{ARCHIVED}#{name}" for name in archived} | {name: f"#{name}" for name in own}
    return _with_block(text, [*own, *(name for name in archived if name not in own)], places)


def archive_with_index(text: str, current: list[str]) -> str:
    """The archive's `text` with its index regenerated: its sections, their successors linked to their
    headings in RESULTS.md (`current`: its sections)."""
    own = section_names(text)
    places = {name: f"../{RESULTS.name}#{name}" for name in current} | {name: f"#{name}" for name in own}
    return _with_block(text, own, places)


def _with_block(text: str, listed: list[str], places: dict[str, str]) -> str:
    block = index(listed, places)
    if INDEX_START in text:
        return re.sub(rf"{re.escape(INDEX_START)}.*?{re.escape(INDEX_END)}", lambda _: block, text, count=1, flags=re.S)
    first = text.find("<!-- ")
    return f"{text[:first]}{block}\n\n{text[first:]}" if first != -1 else f"{text}\n{block}\n"


if __name__ == "__main__":
    reindex()
