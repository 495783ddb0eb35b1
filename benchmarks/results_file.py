"""Write one benchmark's section of benchmarks/RESULTS.md, between its own markers, atomically."""

from __future__ import annotations

import platform
import re
from datetime import datetime, timezone
from pathlib import Path

import torch

from transfer.atomic import write_text_atomic

RESULTS = Path(__file__).parent / "RESULTS.md"
HEADER = "# Benchmark results\n\nEach section is rewritten by the benchmark named in it (`make bench`).\n"


def machine() -> str:
    cpus = len(__import__("os").sched_getaffinity(0))
    return f"{platform.machine()}, {cpus} CPU cores available, torch {torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}"


def write_section(name: str, command: str, body: str) -> None:
    """Replace (or append) the section `name` with a dated body."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        f"<!-- {name}:start -->\n## {name}\n\n"
        f"- command: `{command}`\n- date: {stamp}\n- machine: {machine()}\n\n{body.strip()}\n"
        f"<!-- {name}:end -->\n"
    )
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    pattern = re.compile(rf"<!-- {re.escape(name)}:start -->.*?<!-- {re.escape(name)}:end -->\n", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else f"{text}\n{section}"
    write_text_atomic(RESULTS, text)
