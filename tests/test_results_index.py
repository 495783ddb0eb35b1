"""`benchmarks/RESULTS.md` opens with an index that says which section is current, superseded (and by
what) or engineering: every section is classified, every successor exists, and the committed index is
the one the benchmarks would write."""

from __future__ import annotations

import re

from benchmarks.results_file import RESULTS, with_index
from benchmarks.sections import SECTIONS, SUPERSEDED


def _sections() -> list[str]:
    return [name for name in re.findall(r"<!-- ([\w.-]+):start -->", RESULTS.read_text()) if name != "index"]


def test_every_section_is_classified_and_every_classification_names_a_section():
    assert set(_sections()) == set(SECTIONS)


def test_every_superseded_section_names_successors_that_exist():
    for name, (status, successor) in SECTIONS.items():
        if status == SUPERSEDED and not successor.startswith("the "):
            assert set(successor.split(", ")) <= set(_sections()), name


def test_the_committed_index_is_the_generated_one():
    text = RESULTS.read_text()
    assert with_index(text) == text
