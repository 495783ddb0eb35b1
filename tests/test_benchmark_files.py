"""The benchmarks' CSVs and charts sit in a folder per study: under `benchmarks/results/<study>/` those
of the current sections, under `benchmarks/archive/<study>/` those only superseded sections cite.
Every one the results files, the README, the guides or the benchmarks cite exists, and the benchmarks
read and write where those texts say."""

from __future__ import annotations

import re
from pathlib import Path

from benchmarks import strong_baseline, synthetic_world, teacher_quality, vm_wide_start
from benchmarks.results_file import ARCHIVED, REPO, RESULTS, study_dir

BENCHMARKS = RESULTS.parent
ARCHIVE = BENCHMARKS / ARCHIVED
DATA = re.compile(r"(?<![\w/.])[\w./{},-]+\.(?:csv|png)")


def _data_files() -> list[Path]:
    return sorted(p for suffix in ("csv", "png") for p in BENCHMARKS.rglob(f"*.{suffix}")
                  if not any(part.startswith(".") for part in p.relative_to(BENCHMARKS).parts))  # .runs/: MLflow runs, not results


def _expanded(token: str) -> list[str]:
    found = re.search(r"\{([^}]*)\}", token)
    return [token[:found.start()] + part + token[found.end():] for part in found.group(1).split(",")] if found else [token]


def _cited(path: Path, only_repo_paths: bool = False) -> set[Path]:
    """The data files `path` cites: paths from the repository's root (`benchmarks/…`), or else relative
    to `path` (a Markdown link); with `only_repo_paths`, only the former (guides also name their own files)."""
    cited = set()
    for token in DATA.findall(path.read_text()):
        if only_repo_paths and not token.startswith("benchmarks/"):
            continue
        for name in _expanded(token):
            cited.add((REPO / name if name.startswith("benchmarks/") else path.parent / name).resolve())
    return cited


def test_every_data_file_sits_in_a_study_folder_of_results_or_the_archive():
    misplaced = [p.relative_to(BENCHMARKS).as_posix() for p in _data_files()
                 if len(p.relative_to(BENCHMARKS).parts) != 3 or p.relative_to(BENCHMARKS).parts[0] not in ("results", "archive")]
    assert misplaced == []


def test_every_data_file_the_results_files_cite_exists():
    for path in (RESULTS, ARCHIVE):
        assert sorted(str(p) for p in _cited(path) if not p.is_file()) == [], path


def test_every_benchmark_path_the_readme_guides_and_code_cite_exists():
    texts = [REPO / "README.md", REPO / "Makefile", *sorted((REPO / "docs").glob("*.md")), *sorted(BENCHMARKS.glob("*.py"))]
    for path in texts:
        assert sorted(str(p) for p in _cited(path, only_repo_paths=True) if not p.is_file()) == [], path


def test_current_sections_cite_no_archived_file_and_no_current_file_is_cited_only_by_the_archive():
    current, archived = _cited(RESULTS), _cited(ARCHIVE)
    archive_folder, results_folder = ARCHIVE.parent.resolve(), study_dir("").resolve()
    assert sorted(str(p) for p in current if p.is_relative_to(archive_folder)) == []
    assert sorted(str(p) for p in archived - current if p.is_relative_to(results_folder)) == []


def test_the_benchmarks_read_and_write_the_committed_files_where_the_texts_cite_them():
    cited = _cited(RESULTS)
    for study in strong_baseline.STUDIES:  # reads the ablations' CSVs by path
        assert study.ablation_csv.resolve() in cited and study.ablation_csv.is_file()
    assert teacher_quality.PLOT.resolve() in cited
    assert vm_wide_start.CSV.resolve() in cited
    assert synthetic_world.CSV.is_file() and synthetic_world.CSV.parent == study_dir("world")
