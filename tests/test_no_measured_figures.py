"""No measured figures in the code's docstrings and comments: they go stale. A timing, a speed, a
memory use, an NE, AUC or lift result, a count of passing tests belongs in `benchmarks/RESULTS.md`,
and the code points at its section ("benchmarks/RESULTS.md § synthetic-world"). Definitions,
formulas, design constants and the values of constants, limits, units and examples stay; text in
`code spans` (commands, output formats, identifiers) is not read. The rare legitimate match is
listed in EXCEPTIONS with its reason."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("transfer", "adapters", "teacher", "students", "domain_fms", "benchmarks")

_NUMBER = r"(?<![\w.])[~≈<>≥≤]?\d(?:[\d,]*\d)?(?:\.\d+)?"
_RANGE = rf"{_NUMBER}(?:\s*[–-]\s*\d(?:[\d,]*\d)?(?:\.\d+)?)?"
PATTERNS = {
    "a duration": re.compile(rf"{_RANGE}\s*(?:ms|µs|s|secs?|seconds?|mins?|minutes?|h|hrs?|hours?)\b"
                             r"|\b(?:two|three|four|five|six|seven|eight|nine|ten|twenty|thirty|a few|several|tens of|hundreds of)"
                             r"\s+(?:seconds|minutes|hours)\b"),
    "a measurement": re.compile(r"\bas measured\b|\bmeasured (?:at|here)\b", re.I),
    "a memory size": re.compile(rf"{_RANGE}\s*(?:KB|KiB|MB|MiB|GB|GiB|TB|TiB)\b"),
    "a speed-up": re.compile(rf"{_RANGE}\s*(?:[×x]|times|%)\s*(?:faster|slower|quicker|speed-?up)\b|\b(?:twice|half) as (?:fast|slow)\b", re.I),
    "a throughput": re.compile(rf"{_RANGE}\s*[kKM]?\s*(?:rows|impressions|examples|samples|steps|requests|batches|it)"
                               r"\s*(?:/\s*s\b|per second\b)"),
    "an NE or AUC result": re.compile(rf"{_RANGE}\s*(?:NE|AUC)\s+points?\b|\b(?:NE|AUC)\b[^.;:]{{0,40}}?(?<![\w.])[01]\.\d{{2,}}"),
    "a lift result": re.compile(r"\blifts?\s+(?:of\s+)?[+−-]?\d+(?:\.\d+)?\s*%"),
    "a test count": re.compile(r"\b\d+\s+(?:tests?\s+)?(?:passed|failed|passing|failing)\b|\b\d+\s+tests\s+(?:pass|ran|run)\b", re.I),
}
# a comment on a constant's definition may restate its value in a unit (`BLOCK = 1 << 20  # 1 MiB`)
_CONSTANT = re.compile(r"^\s*[A-Z][A-Z0-9_]*\s*(?::[^=]*)?=[^=]")

# (file, the text around the match) → why it is no measured figure
EXCEPTIONS = {
    ("transfer/data/cache.py", "read in 1 MiB blocks"): "the read's block size, a design choice (`1 << 20` in the code)",
    ("transfer/data/prepare.py", "× 24 h of"): "a unit conversion: `recalibration_days` in hours",
    ("benchmarks/knowledge_generation.py", "sampled every 10 ms"): "the RSS sampler's interval, a design choice (`wait(0.01)`)",
}


@dataclass(frozen=True)
class Figure:
    file: str
    line: int
    kind: str  # the pattern's name
    text: str  # the match with some context

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.kind}: …{self.text}…"


def _blank_code_spans(text: str) -> str:
    """`text` with each `code span` blanked out, lines and offsets kept."""
    return re.sub(r"`[^`]*`", lambda m: re.sub(r"[^\n]", " ", m.group()), text)


def _texts(source: str) -> list[tuple[int, str, list[str]]]:
    """The docstrings and comment blocks of `source`: (first line, text, source line of each text
    line, for comments, else [])."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                found.append((first.lineno, first.value.value, []))
    lines = source.splitlines()
    block: list[tuple[int, str]] = []  # consecutive comment lines: one text, a phrase may wrap
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type != tokenize.COMMENT:
            continue
        if block and token.start[0] != block[-1][0] + 1:
            found.append((block[0][0], "\n".join(text for _, text in block), [lines[row - 1] for row, _ in block]))
            block = []
        block.append((token.start[0], token.string.lstrip("#")))
    if block:
        found.append((block[0][0], "\n".join(text for _, text in block), [lines[row - 1] for row, _ in block]))
    return found


def measured_figures(source: str, file: str = "<source>") -> list[Figure]:
    """What in `source`'s docstrings and comments looks like a measured figure."""
    figures = []
    for first, text, code_lines in _texts(source):
        readable = _blank_code_spans(text)
        for kind, pattern in PATTERNS.items():
            for match in pattern.finditer(readable):
                offset = readable.count("\n", 0, match.start())
                if kind == "a memory size" and code_lines and _CONSTANT.match(code_lines[offset]):
                    continue
                context = " ".join(text[max(0, match.start() - 30):match.end() + 30].split())
                figures.append(Figure(file, first + offset, kind, context))
    return figures


def _excused(figure: Figure) -> bool:
    return any(file == figure.file and phrase in figure.text for file, phrase in EXCEPTIONS)


def _package_figures() -> list[Figure]:
    return [figure for package in PACKAGES for path in sorted((REPO / package).rglob("*.py"))
            for figure in measured_figures(path.read_text(), path.relative_to(REPO).as_posix())]


def test_no_docstring_or_comment_of_the_packages_holds_a_measured_figure():
    found = [str(figure) for figure in _package_figures() if not _excused(figure)]
    assert found == [], "measured figures belong in benchmarks/RESULTS.md; point at its section instead:\n" + "\n".join(found)


def test_every_exception_is_still_needed():
    figures = _package_figures()
    unused = [key for key in EXCEPTIONS if not any(figure.file == key[0] and key[1] in figure.text for figure in figures)]
    assert unused == []


MEASURED = '''"""Generate the world: 1M impressions take 2.2 s (about three minutes at 100M); the pyramid is
13.6× faster than full attention and scores 120,000 rows/s; the baseline VM ended 4–7 NE
points behind its regression, eval NE 0.9318, a lift of 2.5 %; 528 tests passed."""

PEAK = 680  # bytes per impression (6.8 GB at 10M, as measured)


def f():
    # generating it takes a few seconds
    # and 12 GiB
    return 1
'''

CLEAN = '''"""The 95% t-interval over seeds; one request = 1,000 candidates scored on one CPU core, its p99
latency in ms; NE is 1.0 for the base rate, lower is better; the 2× claim is gain − 2·vanilla gain;
prints `✓ message (12.3 s)`; windows of 21/7/2/10 days (how fast: benchmarks/RESULTS.md § synthetic-world)."""

BLOCK = 1 << 20  # 1 MiB
CANDIDATES = 1_000  # per request
'''


def test_the_check_finds_measured_figures_in_a_sample_and_passes_a_clean_one():
    kinds = [figure.kind for figure in measured_figures(MEASURED)]
    assert kinds.count("a duration") == 3  # 2.2 s, three minutes, a few seconds
    assert kinds.count("a measurement") == 1 and kinds.count("a speed-up") == 1 and kinds.count("a throughput") == 1
    assert kinds.count("an NE or AUC result") == 2 and kinds.count("a lift result") == 1 and kinds.count("a test count") == 1
    # a size on a constant's line may restate its value: 6.8 GB there is caught as "as measured"; 12 GiB is not on one
    assert [(figure.line, figure.kind) for figure in measured_figures(MEASURED) if figure.line == 5] == [(5, "a measurement")]
    assert [figure.line for figure in measured_figures(MEASURED) if figure.kind == "a memory size"] == [10]
    assert measured_figures(CLEAN) == []
