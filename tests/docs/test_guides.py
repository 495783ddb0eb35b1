"""The guides in docs/ run as written: every shell example a guide marks runnable is run by these tests,
in a scratch folder holding a copy of recipes/, with `gem-transfer` and `python` on the PATH as after
`make setup`, and must exit 0 and print what the guide says it prints.

A guide marks an example by fencing it as ```bash run``` (```bash run slow``` where it trains a model:
those run under the slow marker, all guides' in one folder, so later ones reuse the stage cache). A
```text output``` block after it lists lines its output (stdout and stderr) must hold, in order: `…`
stands for any text within a line, and runs of spaces count as one. A guide's examples run in order in
one folder, each its own `bash -euo pipefail`, so a later one sees the files an earlier one wrote.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import REPO, time_limit

DOCS = REPO / "docs"
GUIDES = sorted(DOCS.glob("*.md"))
GENERATED = {"recipe-keys.md"}  # made by `make docs`, with nothing to run
FENCE = re.compile(r"^```(.*)$")


@dataclass
class Example:
    guide: str
    line: int  # of the opening fence
    code: str
    slow: bool
    expected: list[str] = field(default_factory=list)


def examples(path: Path) -> list[Example]:
    """The runnable examples of a guide, each with the output lines the guide shows for it."""
    found: list[Example] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        info = opening.group(1).split()
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        body = lines[i + 1:end]
        if info[:2] == ["bash", "run"]:
            found.append(Example(path.name, i + 1, "\n".join(body) + "\n", slow=info[2:] == ["slow"]))
        elif info == ["text", "output"]:
            assert found, f"{path.name}:{i + 1}: an output block before any runnable example"
            found[-1].expected += [line for line in body if line.strip()]
        i = end + 1
    return found


def _squeeze(line: str) -> str:
    return " ".join(line.split())


def missing_lines(expected: list[str], output: str) -> list[str]:
    """The expected lines not found in `output` in order (each matched by a later line than the last)."""
    got = [_squeeze(line) for line in output.splitlines()]
    position, missing = 0, []
    for line in expected:
        pattern = re.compile(".*".join(re.escape(part) for part in _squeeze(line).split("…")))
        hit = next((k for k in range(position, len(got)) if pattern.fullmatch(got[k])), None)
        if hit is None:
            missing.append(line)
        else:
            position = hit + 1
    return missing


def workspace(folder: Path) -> tuple[Path, dict[str, str]]:
    """A scratch folder with a copy of recipes/, and an environment with this checkout's `gem-transfer`
    and `python` first on the PATH (and no tracking server of the caller's)."""
    work = folder / "work"
    shutil.copytree(REPO / "recipes", work / "recipes")
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    for name, command in (("gem-transfer", f'"{sys.executable}" -m transfer.cli'), ("python", f'"{sys.executable}"')):
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\nexec {command} "$@"\n')
        script.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", PYTHONPATH=str(REPO))
    return work, env


def run_example(example: Example, work: Path, env: dict[str, str]) -> None:
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", example.code], cwd=work, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=time_limit(600 if example.slow else 120))
    where = f"docs/{example.guide}:{example.line}"
    assert done.returncode == 0, f"{where} exited {done.returncode}:\n{example.code}\n{done.stdout[-3000:]}"
    missing = missing_lines(example.expected, done.stdout)
    assert not missing, f"{where}: its output lacks (in order) {missing}:\n{done.stdout[-3000:]}"


def _guides_with(slow: bool) -> list[str]:
    return [path.name for path in GUIDES if any(e.slow == slow for e in examples(path))]


def test_every_guide_has_runnable_examples():
    for path in GUIDES:
        if path.name not in GENERATED:
            assert examples(path), f"docs/{path.name} has no ```bash run``` example"


@pytest.mark.parametrize("guide", _guides_with(slow=False))
def test_a_guides_examples_run_as_written(guide, tmp_path):
    work, env = workspace(tmp_path)
    for example in examples(DOCS / guide):
        if not example.slow:
            run_example(example, work, env)


@pytest.mark.slow
def test_the_guides_training_examples_run_as_written(tmp_path):
    """Every guide's slow examples, in one folder: a second `gem-transfer run` of the same tiny recipe
    trains nothing (the stage cache), so each guide can start from a run of its own cheaply."""
    work, env = workspace(tmp_path)
    for guide in _guides_with(slow=True):
        for example in examples(DOCS / guide):
            if example.slow:
                run_example(example, work, env)


def test_output_lines_match_in_order_with_ellipses():
    output = "plan of recipe 'q'\nstage  kind   key        status\n-      teacher teacher-6a1d  will run\n"
    assert missing_lines(["stage kind key status", "- teacher teacher-… will run"], output) == []
    assert missing_lines(["- teacher teacher-… will run", "stage kind key status"], output) == ["stage kind key status"]
    assert missing_lines(["- teacher teacher-… cached"], output) == ["- teacher teacher-… cached"]


def test_the_guides_open_with_their_reader_and_a_way_back_and_the_readme_links_each():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for path in GUIDES:
        lines = path.read_text(encoding="utf-8").splitlines()
        opening = "\n".join(lines[:8])
        assert "](../README.md)" in opening, f"docs/{path.name} does not link back to the README near its top"
        assert path.name in GENERATED or lines[2].startswith("For "), f"docs/{path.name} does not open with who it is for"
        assert f"](docs/{path.name})" in readme, f"the README does not link docs/{path.name}"


LINK = re.compile(r"\]\((?!https?:)([^)#\s]*)(?:#([^)\s]+))?\)")


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors for a Markdown file's headings (not a code block's comments)."""
    anchors, in_code = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        in_code ^= line.startswith("```")
        if line.startswith("#") and not in_code:
            anchors.add(re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-"))
    return anchors


def test_links_between_the_readme_and_the_guides_resolve():
    for path in [REPO / "README.md", *GUIDES]:
        for target, anchor in LINK.findall(path.read_text(encoding="utf-8")):
            linked = (path.parent / target).resolve() if target else path
            assert linked.exists(), f"{path.name}: a link to {target}, which does not exist"
            if anchor and linked.suffix == ".md":
                assert anchor in _anchors(linked), f"{path.name}: a link to {target}#{anchor}, a heading {linked.name} lacks"


def test_no_internal_issue_numbers_in_user_facing_docs():
    for path in [REPO / "README.md", *GUIDES]:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            assert not re.search(r"(?<![\w&])#\d+|\b[Ii]ssues? \d+|\bnext issue", line), f"{path.name}:{number}: {line}"
