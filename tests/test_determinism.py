"""Results you can trust: every benchmark figure records the code it was made on."""

from __future__ import annotations

import subprocess
from pathlib import Path

from benchmarks.results_file import code_version


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_code_version_is_the_commit_and_whether_code_changed_since(tmp_path):
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "model.py").write_text("x = 1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "model.py")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    clean = code_version(tmp_path)
    assert len(clean.commit) == 40 and not clean.dirty and str(clean).endswith("(clean tree)")

    (tmp_path / "benchmarks" / "RESULTS.md").write_text("figures\n")  # what benchmarks write is not code
    (tmp_path / "benchmarks" / "ablation.csv").write_text("a\n1\n")
    assert code_version(tmp_path) == clean

    (tmp_path / "model.py").write_text("x = 2\n")
    edited = code_version(tmp_path)
    assert edited.commit == clean.commit and edited.changed == ("model.py",) and "uncommitted changes to 1 file(s)" in str(edited)
    (tmp_path / "model.py").write_text("x = 3\n")
    assert code_version(tmp_path).content != edited.content  # two different dirty trees are told apart


def test_code_version_outside_a_git_checkout_is_unknown(tmp_path):
    assert code_version(tmp_path).commit == "unknown"
