"""Sequence scaling (issue #4): the pyramid-parallel encoder against full self-attention of the
same width, forward + backward, at L = 256 … 8192. Each (encoder, L) runs in its own process so its
peak memory (ru_maxrss above the process's baseline) is its own; wall time is the median of repeats.

    python benchmarks/sequence_scaling.py [--repeats 5] [--batch 4]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.isolated import in_fresh_process  # noqa: E402
from benchmarks.results_file import write_section  # noqa: E402
from teacher.pyramid import FullAttentionEncoder, PyramidEncoder  # noqa: E402

LENGTHS = (256, 512, 1024, 2048, 4096, 8192)
DIM, HEADS, SEGMENT, SUMMARY_TOKENS = 32, 2, 64, 4


def _measure(kind: str, length: int, batch: int, repeats: int, queue: mp.Queue) -> None:
    torch.manual_seed(0)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if kind == "pyramid":
        encoder = PyramidEncoder(dim=DIM, heads=HEADS, segment=SEGMENT, summary_tokens=SUMMARY_TOKENS, max_length=length)
    else:
        encoder = FullAttentionEncoder(dim=DIM, heads=HEADS)
    x = torch.randn(batch, length, DIM, requires_grad=True)
    mask = torch.ones(batch, length, dtype=torch.bool)
    times = []
    for _ in range(repeats + 1):  # the first is a warm-up
        start = time.perf_counter()
        encoder(x, mask).square().mean().backward()
        times.append(time.perf_counter() - start)
    peak_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    queue.put((statistics.median(times[1:]), peak_mib))


def measure(kind: str, length: int, batch: int, repeats: int) -> tuple[float, float]:
    return in_fresh_process(_measure, kind, length, batch, repeats)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    rows = {}
    for length in LENGTHS:
        rows[length] = {kind: measure(kind, length, args.batch, args.repeats) for kind in ("pyramid", "full")}
        p, f = rows[length]["pyramid"], rows[length]["full"]
        print(f"L={length}: pyramid {p[0]:.3f} s {p[1]:.0f} MiB, full {f[0]:.3f} s {f[1]:.0f} MiB", flush=True)
    lines = [
        f"Forward + backward of one encoder layer stack, batch {args.batch}, width {DIM}, {HEADS} heads; pyramid segment "
        f"{SEGMENT}, {SUMMARY_TOKENS} summary tokens per segment. Median of {args.repeats} repeats (after a warm-up), "
        "each configuration in its own process; peak memory = peak RSS above the process's start.",
        "",
        "| L | pyramid s | full attention s | full / pyramid | pyramid peak MiB | full peak MiB |",
        "|---|---|---|---|---|---|",
    ]
    for length, r in rows.items():
        (pt, pm), (ft, fm) = r["pyramid"], r["full"]
        lines.append(f"| {length} | {pt:.3f} | {ft:.3f} | {ft / pt:.1f}× | {pm:.0f} | {fm:.0f} |")
    speedup = rows[4096]["full"][0] / rows[4096]["pyramid"][0]
    growth = rows[8192]["pyramid"][0] / rows[1024]["pyramid"][0]
    lines += [
        "",
        f"**At L = 4096 the pyramid is {speedup:.1f}× faster than full attention** (target ≥ 8×: {'met' if speedup >= 8 else 'MISSED'}).",
        f"**Pyramid time(8192) / time(1024) = {growth:.1f}** (target ≤ 12: {'met' if growth <= 12 else 'MISSED'}).",
    ]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section("sequence-scaling", "make bench  (python benchmarks/sequence_scaling.py)", body)


if __name__ == "__main__":
    main()
