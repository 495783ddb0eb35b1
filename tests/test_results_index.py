"""`benchmarks/RESULTS.md` opens with an index that says which section is current, superseded (and by
what) or engineering; superseded sections live in `benchmarks/archive/RESULTS.md`, which has an index
of its own. Every section of either file is classified, each lives in the file its status says, every
successor is a section of RESULTS.md, every index link lands on a heading, the committed indexes are
the ones the benchmarks would write, and a benchmark that writes a superseded section writes it to
the archive."""

from __future__ import annotations

import re
from pathlib import Path

from benchmarks.results_file import (
    ARCHIVED,
    RESULTS,
    archive_with_index,
    reindex,
    section_names,
    with_index,
    write_section,
)
from benchmarks.sections import INDEX_END, INDEX_START, SECTIONS, SUPERSEDED

ARCHIVE = RESULTS.parent / ARCHIVED


def _own() -> list[str]:
    return section_names(RESULTS.read_text())


def _archived() -> list[str]:
    return section_names(ARCHIVE.read_text())


def _status(name: str) -> str:
    return SECTIONS.get(name, ("unclassified", ""))[0]


def test_every_section_of_either_file_is_classified_and_every_classification_names_a_section():
    own, archived = _own(), _archived()
    assert len(set(own)) == len(own) and len(set(archived)) == len(archived) and not set(own) & set(archived)
    assert set(own) | set(archived) == set(SECTIONS)


def test_superseded_sections_are_in_the_archive_and_nothing_else_is():
    assert [name for name in _own() if _status(name) == SUPERSEDED] == []
    assert [name for name in _archived() if _status(name) != SUPERSEDED] == []


def test_every_superseded_section_names_successors_in_results():
    for name, (status, successor) in SECTIONS.items():
        if status == SUPERSEDED and not successor.startswith("the "):
            assert set(successor.split(", ")) <= set(_own()), name


def test_the_committed_indexes_are_the_generated_ones():
    text, archive = RESULTS.read_text(), ARCHIVE.read_text()
    assert with_index(text, section_names(archive)) == text
    assert archive_with_index(archive, section_names(text)) == archive


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation other than - and _ dropped, spaces as -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _broken_index_links(path: Path) -> list[str]:
    """The links in `path`'s index whose file (relative to `path`; none: `path` itself) lacks the heading named."""
    text = path.read_text()
    block = text[text.index(INDEX_START):text.index(INDEX_END)]
    broken = []
    for target in re.findall(r"\]\(([^)]*)\)", block):
        file, _, anchor = target.partition("#")
        linked = path.parent / file if file else path
        headings = {_anchor(h) for h in re.findall(r"^#+ (.+)$", linked.read_text(), re.M)} if linked.is_file() else set()
        if anchor not in headings:
            broken.append(target)
    return broken


def test_every_index_link_lands_on_a_heading_of_the_file_it_names():
    assert _broken_index_links(RESULTS) == []
    assert _broken_index_links(ARCHIVE) == []


def test_a_link_to_a_missing_heading_or_file_is_found(tmp_path):
    (tmp_path / "archive").mkdir()
    (tmp_path / "archive" / "RESULTS.md").write_text("# archive\n\n<!-- old:start -->\n## old\n<!-- old:end -->\n")
    (tmp_path / "RESULTS.md").write_text(f"# results\n\n{INDEX_START}\n| [`old`](archive/RESULTS.md#old) | [`gone`](archive/RESULTS.md#gone) "
                                         f"| [`new`](#new) | [`elsewhere`](other.md#old) |\n{INDEX_END}\n")
    assert _broken_index_links(tmp_path / "RESULTS.md") == ["archive/RESULTS.md#gone", "#new", "other.md#old"]


def test_a_written_section_goes_to_results_whose_index_links_the_archived_ones(tmp_path, capsys):
    (tmp_path / "archive").mkdir()
    (tmp_path / "archive" / "RESULTS.md").write_text("<!-- transfer-staleness:start -->\n## transfer-staleness\n<!-- transfer-staleness:end -->\n")
    results = tmp_path / "RESULTS.md"
    write_section("transfer-staleness-wide", "a command", "figures", results=results)
    text, archive = results.read_text(), (tmp_path / "archive" / "RESULTS.md").read_text()
    assert section_names(text) == ["transfer-staleness-wide"] and "\n- command: `a command`\n" in text and "\nfigures\n" in text
    assert ("| [`transfer-staleness`](archive/RESULTS.md#transfer-staleness) | superseded | by [`transfer-staleness-wide`](#transfer-staleness-wide) |"
            in text)
    assert "| [`transfer-staleness`](#transfer-staleness) | superseded | by [`transfer-staleness-wide`](../RESULTS.md#transfer-staleness-wide) |" in archive
    assert _broken_index_links(results) == [] and _broken_index_links(tmp_path / "archive" / "RESULTS.md") == []
    assert capsys.readouterr().out == ""


def test_a_superseded_section_is_written_to_the_archive_and_said_so(tmp_path, capsys):
    results = tmp_path / "RESULTS.md"
    write_section("transfer-staleness-wide", "a command", "figures", results=results)
    write_section("transfer-staleness", "an older command", "older figures", results=results)
    text, archive = results.read_text(), (tmp_path / "archive" / "RESULTS.md").read_text()
    assert section_names(text) == ["transfer-staleness-wide"] and section_names(archive) == ["transfer-staleness"]
    assert "\nolder figures\n" in archive and "older figures" not in text
    assert capsys.readouterr().out == (f"benchmarks: section transfer-staleness is superseded (by transfer-staleness-wide): "
                                       f"written to the archive, {tmp_path / 'archive' / 'RESULTS.md'}\n")
    assert "[`transfer-staleness`](archive/RESULTS.md#transfer-staleness)" in text
    assert _broken_index_links(results) == [] and _broken_index_links(tmp_path / "archive" / "RESULTS.md") == []


def test_reindex_rewrites_both_indexes_after_a_section_is_moved_by_hand(tmp_path):
    results = tmp_path / "RESULTS.md"
    write_section("transfer-staleness-wide", "a command", "figures", results=results)
    write_section("vm-wide-start", "a command", "figures", results=results)
    text = results.read_text()
    block = text[text.index("<!-- vm-wide-start:start -->"):text.index("<!-- vm-wide-start:end -->\n") + len("<!-- vm-wide-start:end -->\n")]
    results.write_text(text.replace(block, ""))  # moved by hand (as if superseded); the indexes are stale
    (tmp_path / "archive").mkdir()
    (tmp_path / "archive" / "RESULTS.md").write_text("# archive\n\n" + block)
    reindex(results)
    text, archive = results.read_text(), (tmp_path / "archive" / "RESULTS.md").read_text()
    assert "[`vm-wide-start`](archive/RESULTS.md#vm-wide-start)" in text and "[`vm-wide-start`](#vm-wide-start)" in archive
    assert with_index(text, section_names(archive)) == text and archive_with_index(archive, section_names(text)) == archive
    assert _broken_index_links(results) == [] and _broken_index_links(tmp_path / "archive" / "RESULTS.md") == []
