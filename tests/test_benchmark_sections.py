"""The benchmarks write current sections: with their defaults (and through the make targets), and with
the command quoted in each section of `benchmarks/RESULTS.md`, each script writes the section the index
calls current (or engineering), never a superseded one, and its CSV where that section cites it; a
re-analysis (`--from-csv`) of any CSV but a section's own needs `--section`."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from benchmarks import teacher_quality, transfer_ablation
from benchmarks.results_file import REPO, RESULTS, command_line
from benchmarks.sections import CURRENT, ENGINEERING, SECTIONS, SUPERSEDED

SCRIPTS = {"benchmarks/transfer_ablation.py": transfer_ablation, "benchmarks/teacher_quality.py": teacher_quality}


def written(command: str) -> set[str]:
    """The sections `command` (`[VAR=value …] python <script> <arguments>`, a script of SCRIPTS) writes."""
    words = shlex.split(command)
    while "=" in words[0]:
        words.pop(0)  # environment settings
    assert words[0].endswith("python"), command
    module = SCRIPTS[words[1]]
    chosen = module.plan(module.arguments().parse_args(words[2:]))
    return set((chosen[-1] if module is transfer_ablation else chosen).values())


def _status(name: str) -> str:
    return SECTIONS.get(name, ("unclassified", ""))[0]


def _blocks() -> dict[str, str]:
    return {m.group(1): m.group(2) for m in re.finditer(r"<!-- ([\w.-]+):start -->(.*?)<!-- \1:end -->", RESULTS.read_text(), re.S)}


def _quoted_commands(text: str) -> list[str]:
    """The commands of SCRIPTS quoted in `text`, in code spans (`make …  (python …)` read as its command)."""
    commands = []
    for span in re.findall(r"`([^`]+)`", text):
        span = re.sub(r"^make [\w-]+\s+\((.*)\)$", r"\1", span)
        if any(f"python {script}" in span for script in SCRIPTS):
            commands.append(span)
    return commands


@pytest.fixture(autouse=True)
def _at_the_root(monkeypatch):
    monkeypatch.chdir(REPO)  # the commands name their files from the repository's root


def test_the_defaults_write_current_sections():
    assert written("python benchmarks/transfer_ablation.py") == {
        "transfer-ablation-synthetic-best-epoch", "transfer-ablation-movielens-best-epoch", "transfer-ablation-domains-best-epoch",
        "transfer-staleness-wide"}
    assert written("python benchmarks/transfer_ablation.py --only synthetic --tune 10") == {"transfer-ablation-synthetic-best-epoch-tuned"}
    assert written("python benchmarks/teacher_quality.py") == {
        "teacher-quality-counters-synthetic", "teacher-quality-counters-movielens", "teacher-scaling", "teacher-speed-options"}
    for command in ("python benchmarks/transfer_ablation.py", "python benchmarks/transfer_ablation.py --only synthetic --tune 10",
                    "python benchmarks/teacher_quality.py"):
        assert {_status(name) for name in written(command)} <= {CURRENT, ENGINEERING}, command


def test_a_section_id_follows_the_options():
    assert transfer_ablation.section_id("staleness", "recipe", tuned=True) == "transfer-staleness-wide-400k"  # the sweep tunes nothing
    assert transfer_ablation.section_id("movielens", "recipe", tuned=True) == "transfer-ablation-movielens-best-epoch-tuned"  # one scale
    assert transfer_ablation.section_id("domains", "recipe") == "transfer-ablation-domains-best-epoch-400k"
    assert (transfer_ablation.section_id("synthetic", "recipe", knowledge="training_traffic")
            == "transfer-ablation-synthetic-best-epoch-400k-traffic")
    assert (transfer_ablation.section_id("movielens1m", "recipe", knowledge="training_traffic")
            == "transfer-ablation-movielens1m-best-epoch-traffic")  # one scale
    assert (transfer_ablation.section_id("staleness", "recipe", knowledge="training_traffic")
            == "transfer-staleness-wide-400k-traffic")
    assert transfer_ablation.csv_path("transfer-staleness-wide").name == "transfer_ablation_staleness_wide.csv"
    assert transfer_ablation.csv_path("transfer-ablation-synthetic-best-epoch-tuned").name == "transfer_ablation_synthetic_best_epoch_tuned.csv"
    assert transfer_ablation.csv_path("elsewhere").name == "transfer_ablation_elsewhere.csv"  # a section named by hand: its own CSV
    assert written("python benchmarks/transfer_ablation.py --only staleness --section elsewhere") == {"elsewhere"}
    assert written("python benchmarks/transfer_ablation.py --only synthetic staleness --section elsewhere") == {"elsewhere", "transfer-staleness-wide"}
    assert "transfer-ablation-movielens1m-best-epoch" not in written("python benchmarks/transfer_ablation.py")  # on request only
    assert written("python benchmarks/transfer_ablation.py --only movielens1m --knowledge training_traffic") == {
        "transfer-ablation-movielens1m-best-epoch-traffic"}
    assert written("python benchmarks/teacher_quality.py --only quality --datasets movielens") == {"teacher-quality-counters-movielens"}


def test_the_make_targets_write_every_current_section_of_their_script_and_no_superseded_one():
    makefile = (REPO / "Makefile").read_text()
    for target, prefix in (("bench-transfer", "transfer-"), ("bench-teachers", "teacher-")):
        recipe = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", makefile, re.M).group(1)
        commands = [line.strip().replace("$(BIN)/python", "python") for line in recipe.splitlines()]
        sections = set().union(*(written(command) for command in commands))
        assert {_status(name) for name in sections} <= {CURRENT, ENGINEERING}, target
        assert {name for name, (status, _) in SECTIONS.items() if status == CURRENT and name.startswith(prefix)} <= sections, target


def test_each_section_cites_the_csv_its_run_writes_and_the_file_is_there():
    blocks = _blocks()
    for study in [*transfer_ablation.STUDIES, "staleness"]:
        for tuned in (False, True):
            name = transfer_ablation.section_id(study, tuned=tuned)
            csv = transfer_ablation.csv_path(name)
            if name in SECTIONS:
                assert csv.relative_to(REPO).as_posix() in blocks[name] and csv.is_file(), name
    for dataset in teacher_quality.DATASETS:
        name, csv = teacher_quality.quality_section(dataset), teacher_quality.quality_csv(dataset)
        assert csv.relative_to(REPO).as_posix() in blocks[name] and csv.is_file(), name


def test_the_commands_quoted_in_each_section_write_that_section():
    quoted = {name: _quoted_commands(block) for name, block in _blocks().items() if _status(name) != SUPERSEDED}
    wrong = {name: command for name, commands in quoted.items() for command in commands if name not in written(command)}
    assert wrong == {}
    # the sections these two scripts write, each with its command quoted (the run or the re-analysis of its CSV)
    assert {name for name, commands in quoted.items() if commands} >= {
        name for name, (status, _) in SECTIONS.items() if status == CURRENT and name.startswith(("transfer-ablation-", "transfer-staleness", "teacher-"))}


def test_a_reanalysis_of_another_csv_needs_its_section():
    archived = "benchmarks/archive/transfer/transfer_ablation_synthetic.csv"
    with pytest.raises(SystemExit, match="is not the CSV of transfer-ablation-synthetic-best-epoch"):
        written(f"python benchmarks/transfer_ablation.py --from-csv {archived}")
    assert written(f"python benchmarks/transfer_ablation.py --from-csv {archived} --section transfer-ablation-synthetic") == {
        "transfer-ablation-synthetic"}  # superseded: write_section puts it in the archive
    with pytest.raises(SystemExit, match="is not the CSV of a dataset's current section"):
        written("python benchmarks/teacher_quality.py --from-csv benchmarks/archive/teachers/teacher_quality.csv")
    assert written("python benchmarks/teacher_quality.py --from-csv benchmarks/results/teachers/teacher_quality_counters_synthetic.csv") == {
        "teacher-quality-counters-synthetic"}
    # a re-analysis analyses the studies its CSV holds, the tuned ones with their knobs
    assert written("python benchmarks/transfer_ablation.py --from-csv benchmarks/results/transfer/transfer_ablation_synthetic_best_epoch_tuned.csv") == {
        "transfer-ablation-synthetic-best-epoch-tuned"}


def test_no_script_names_a_superseded_or_unclassified_section():
    named = {name for path in (REPO / "benchmarks").glob("*.py") for name in re.findall(r'write_section\(\s*"([\w.-]+)"', path.read_text())}
    assert named and {name: _status(name) for name in named if _status(name) not in (CURRENT, ENGINEERING)} == {}


def test_the_command_line_is_the_one_a_reader_types_at_the_root():
    argv = [str(REPO / "benchmarks" / "transfer_ablation.py"), "--only", "synthetic", "--variants", "aux KD", "vanilla KD"]
    assert command_line(argv, {}) == "python benchmarks/transfer_ablation.py --only synthetic --variants 'aux KD' 'vanilla KD'"
    assert command_line(argv[:1], {"OMP_NUM_THREADS": "1"}) == "OMP_NUM_THREADS=1 python benchmarks/transfer_ablation.py"
    assert written(command_line(argv, {})) == {"transfer-ablation-synthetic-best-epoch"}
    assert Path(argv[0]).is_file()
