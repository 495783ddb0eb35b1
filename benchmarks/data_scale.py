"""Memory and time as the log grows: the data build alone, and whole runs in one process and in two
(`make bench-scale`).

The log is a file, as a user's is: `gem-transfer data synth --rows N --days 32` writes the quickstart
world's impressions to parquet (in its own process, measured apart: it is the benchmark's source of
data, not a stage of a run), and a dataset YAML maps it exactly as the built-in synthetic dataset
maps its generated log. Then, each in a fresh data cache and watched from outside every `SAMPLE_S`
seconds over every process of its tree:
- `gem-transfer data check recipes/quickstart.yaml` (read, validate, encode, map, cut the windows)
  at every size of `--check-rows`;
- `gem-transfer run recipes/quickstart.yaml`, in one process and as two (DDP on CPU), at every size
  of `--run-rows`.
Memory is the processes' proportional set size (PSS: a page shared by k processes counts 1/k in
each, so the processes' PSS add up to what the host holds for them), split into anonymous memory
(what the processes hold) and file pages (the memory-mapped encoded log and libraries: page cache
the kernel can drop and read again). Per stage (the run's `▸`/`✓` lines): wall time and the highest
totals while it ran; per run, the largest process's peak RSS (VmHWM).

    python benchmarks/data_scale.py [--check-rows 1000000 4000000 16000000 32000000] [--run-rows 1000000 4000000] [--threads 1] [--from-csv]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.results_file import RESULTS, command_line, shown, study_dir, write_csv, write_section  # noqa: E402

SECTION = "data-scale"
CSV = study_dir("scale") / "data_scale.csv"
PLOT = study_dir("scale") / "data_scale.png"
SAMPLE_S = 0.2
STAGE = re.compile(r"^([▸✓]) ([a-z ]+?): (\w+)")
CLI = [sys.executable, "-m", "transfer.cli"]  # this checkout's code (PYTHONPATH), whichever checkout the venv was installed from
FIELDS = ("Pss_Anon", "Pss_File", "Pss_Shmem")


@dataclass
class Watch:
    """What one command showed: samples (seconds since start, total anonymous PSS MiB, total file and
    shared PSS MiB), stage marks (seconds, '▸' or '✓', stage), each process's last seen VmHWM (MiB)."""

    samples: list[tuple[float, float, float]] = field(default_factory=list)
    marks: list[tuple[float, str, str]] = field(default_factory=list)
    peaks: dict[int, float] = field(default_factory=dict)


def _tree(root: int) -> list[int]:
    """`root` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def _memory_kib(pid: int) -> tuple[int, int, int] | None:
    """(anonymous PSS, file + shared PSS, VmHWM) of one process in KiB, or None once it is gone."""
    try:
        rollup = (Path("/proc") / str(pid) / "smaps_rollup").read_text()
        status = (Path("/proc") / str(pid) / "status").read_text()
        pss = {name: int(re.search(rf"^{name}:\s+(\d+)", rollup, re.M).group(1)) for name in FIELDS}
        hwm = int(re.search(r"^VmHWM:\s+(\d+)", status, re.M).group(1))
    except (OSError, AttributeError):
        return None
    return pss["Pss_Anon"], pss["Pss_File"] + pss["Pss_Shmem"], hwm


def watch(command: list[str], env: dict[str, str], log: Path) -> Watch:
    """Run `command`, sampling its process tree's memory and reading its stage lines; its output goes to `log`."""
    seen = Watch()
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)

        def read() -> None:
            for line in proc.stdout:
                out.write(line)
                mark = STAGE.match(line)
                if mark:
                    stage = f"data {mark.group(3)}" if mark.group(2) == "data" else mark.group(2)  # data reading, data encoding
                    seen.marks.append((time.perf_counter() - start, mark.group(1), stage))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        while proc.poll() is None:
            found = [(pid, m) for pid in _tree(proc.pid) if (m := _memory_kib(pid)) is not None]
            if found:
                seen.samples.append((time.perf_counter() - start, sum(m[0] for _, m in found) / 1024, sum(m[1] for _, m in found) / 1024))
                for pid, m in found:
                    seen.peaks[pid] = max(seen.peaks.get(pid, 0.0), m[2] / 1024)
            time.sleep(SAMPLE_S)
        reader.join()
    if proc.returncode != 0:
        raise SystemExit(f"benchmarks: `{' '.join(command)}` failed (exit {proc.returncode}); its output: {log}")
    return seen


def stage_rows(seen: Watch) -> list[dict]:
    """Per stage (in order; a stage that runs several times, as one VM after another, is one row):
    its wall seconds and the highest total anonymous and total PSS sampled while it ran."""
    rows: dict[str, dict] = {}
    open_at = {}
    for at, sign, stage in seen.marks:
        if sign == "▸":
            open_at[stage] = at
        elif stage in open_at:
            began = open_at.pop(stage)
            inside = [s for s in seen.samples if began <= s[0] <= at] or [min(seen.samples, key=lambda s: abs(s[0] - at))]
            row = rows.setdefault(stage, {"stage": stage, "seconds": 0.0, "peak anon MiB": 0.0, "peak PSS MiB": 0.0})
            row["seconds"] += at - began
            row["peak anon MiB"] = max(row["peak anon MiB"], *(s[1] for s in inside))
            row["peak PSS MiB"] = max(row["peak PSS MiB"], *(s[1] + s[2] for s in inside))
    return list(rows.values())


def _whole(seen: Watch, seconds: float, processes: int) -> dict:
    peaks = sorted(seen.peaks.values(), reverse=True)
    return {"stage": "whole", "seconds": seconds, "peak anon MiB": max(s[1] for s in seen.samples),
            "peak PSS MiB": max(s[1] + s[2] for s in seen.samples), "largest VmHWM MiB": peaks[0] if peaks else None}


DATASET_YAML = """# the built-in synthetic dataset's mapping, reading a log file instead of generating one
name: scale
source: {{files: {{impressions: {log}}}}}
tables:
  - {{file: impressions}}
timestamp: {{column: ts, unit: datetime}}
counters: [ad_id]
categorical: [advertiser, objective, ad_format, country, age_bucket, device, hour]
dense: [bid, ad_age_days]
labels: {{click: click, conversion: conversion}}
surfaces: {{fb_feed: facebook, fb_marketplace: facebook, ig_feed: instagram, ig_stories: instagram, ig_reels: instagram,
           msg_inbox: messenger, msg_stories: messenger}}
"""


def _env(threads: int) -> dict[str, str]:
    return os.environ | {"OMP_NUM_THREADS": str(threads), "POLARS_MAX_THREADS": str(threads), "PYTHONPATH": str(REPO)}


def make_log(rows: int, folder: Path, threads: int) -> tuple[Path, dict]:
    """The quickstart world's `rows` impressions as a parquet file and a dataset YAML over it; → the
    YAML and the generator's own figures (a row of the CSV)."""
    log = folder / "log.parquet"
    start = time.perf_counter()
    seen = watch([*CLI, "data", "synth", "--rows", str(rows), "--days", "32", "--seed", "0", "--out", str(log)],
                 _env(threads), folder / "synth.log")
    (folder / "scale.yaml").write_text(DATASET_YAML.format(log=log.name))
    row = {"command": "data synth", "impressions": rows, "processes": 1, **_whole(seen, time.perf_counter() - start, 1),
           "log MiB": log.stat().st_size / 2**20}
    return folder / "scale.yaml", row


def measure(command: str, rows: int, processes: int, threads: int, folder: Path, dataset: Path) -> list[dict]:
    """One `data check` or `run` in a fresh data cache and outputs: a row per stage and one for the whole command."""
    work = Path(tempfile.mkdtemp(prefix="run-", dir=folder))
    args = [*CLI, *command.split(), "recipes/quickstart.yaml", f"data.dataset={dataset}",
            f"data.cache_dir={work / 'cache'}", f"output_dir={work / 'runs'}", f"tracking.uri=sqlite:///{work / 'mlflow.db'}",
            "trainer.progress=false"]
    if processes > 1:
        args += [f"trainer.devices={processes}", "trainer.strategy=ddp"]
    start = time.perf_counter()
    seen = watch(args, _env(threads), work / "out.log")
    whole = _whole(seen, time.perf_counter() - start, processes)
    cache = sum(p.stat().st_size for p in (work / "cache").rglob("*") if p.is_file()) / 2**20
    shutil.rmtree(work, ignore_errors=True)
    common = {"command": command, "impressions": rows, "processes": processes}
    return [common | row for row in stage_rows(seen)] + [common | whole | {"cache MiB": cache}]


def body(frame: pl.DataFrame, minutes: float | None) -> str:
    timing = f"{minutes:.0f} min for this run" if minutes is not None else f"analysed again from `{shown(CSV)}`"
    whole = frame.filter(pl.col("stage") == "whole").sort("command", "processes", "impressions")
    lines = [f"`recipes/quickstart.yaml` on the quickstart world read from a parquet file (`data synth --rows N --days 32`, mapped as "
             f"the built-in synthetic dataset); every command in a fresh data cache; torch and polars on {frame['threads'][0]} thread(s) a process; {timing}. "
             "Memory: the processes' PSS summed (a page shared by k processes counts 1/k in each); *anon* is what the processes hold, "
             "*PSS* adds the file pages they map (the encoded log's `.npy` blocks, libraries: page cache the kernel can drop and "
             f"read again). CSV `{shown(CSV)}`.", "",
             "| command | impressions | processes | wall s | peak anon MiB | peak PSS MiB | largest VmHWM MiB | data cache MiB |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in whole.iter_rows(named=True):
        cache = f"{r['cache MiB']:,.0f}" if r.get("cache MiB") is not None else ""
        lines.append(f"| `{r['command']}` | {r['impressions']:,} | {r['processes']} | {r['seconds']:.0f} | {r['peak anon MiB']:,.0f} | "
                     f"{r['peak PSS MiB']:,.0f} | {r['largest VmHWM MiB']:,.0f} | {cache} |")
    stages = list(dict.fromkeys(frame.filter(pl.col("stage") != "whole")["stage"].to_list()))
    lines += ["", "Per stage: wall seconds, peak anon / peak PSS (MiB):", "",
              "| command | impressions | processes | " + " | ".join(stages) + " |", "| --- | --- | --- |" + " --- |" * len(stages)]
    parts = frame.filter(pl.col("stage") != "whole").group_by(["command", "impressions", "processes"], maintain_order=True)
    for (command, rows, processes), part in parts:
        cells = {r["stage"]: f"{r['seconds']:.0f} s, {r['peak anon MiB']:,.0f} / {r['peak PSS MiB']:,.0f}" for r in part.iter_rows(named=True)}
        lines.append(f"| `{command}` | {rows:,} | {processes} | " + " | ".join(cells.get(s, "") for s in stages) + " |")
    lines += ["", *verdicts(whole), "", f"![peak memory against impressions]({PLOT.relative_to(RESULTS.parent)})"]
    plot(whole)
    return "\n".join(lines)


GOAL_SIZES = (1_000_000, 16_000_000)  # the one-process goal: peak at 16M / peak at 1M ≤ 1.5×


def verdicts(whole: pl.DataFrame) -> list[str]:
    """The goals' ratios where both of their rows are in the table, and the growth over the sizes run."""
    said = []
    for command in ("data check", "run"):
        peak = {(r["impressions"], r["processes"]): r for r in whole.filter(pl.col("command") == command).iter_rows(named=True)}
        one = sorted(rows for rows, p in peak if p == 1)
        if all((size, 1) in peak for size in GOAL_SIZES):
            small, large = (peak[(size, 1)] for size in GOAL_SIZES)
            ratio = large["peak anon MiB"] / small["peak anon MiB"]
            said.append(f"- `{command}`, one process, 16M / 1M impressions: peak anon **{ratio:.2f}×** (goal ≤ 1.5×: "
                        f"{'met' if ratio <= 1.5 else 'not met'}), peak PSS {large['peak PSS MiB'] / small['peak PSS MiB']:.2f}×.")
        if len(one) >= 2 and (one[0], one[-1]) != GOAL_SIZES:
            small, large = peak[(one[0], 1)], peak[(one[-1], 1)]
            said.append(f"- `{command}`, one process, {one[-1]:,} / {one[0]:,} impressions: peak anon "
                        f"{large['peak anon MiB'] / small['peak anon MiB']:.2f}×, peak PSS {large['peak PSS MiB'] / small['peak PSS MiB']:.2f}×.")
        for rows in sorted(r for r, p in peak if p == 2 and (r, 1) in peak):
            two, single = peak[(rows, 2)], peak[(rows, 1)]
            ratio = two["peak PSS MiB"] / single["peak PSS MiB"]
            said.append(f"- `{command}` at {rows:,} impressions, two processes / one: peak PSS **{ratio:.2f}×** (goal ≤ 1.2×: "
                        f"{'met' if ratio <= 1.2 else 'not met'}), peak anon {two['peak anon MiB'] / single['peak anon MiB']:.2f}×.")
    return said


def plot(whole: pl.DataFrame) -> None:
    """A PNG: peak anonymous memory and peak PSS against impressions, per command and process count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (command, processes), part in whole.filter(pl.col("command") != "data synth").sort("impressions").group_by(
            ["command", "processes"], maintain_order=True):
        x = part["impressions"] / 1e6
        line = ax.plot(x, part["peak PSS MiB"] / 1024, marker="o", label=f"{command}, {processes} process(es): PSS")[0]
        ax.plot(x, part["peak anon MiB"] / 1024, marker="s", linestyle="--", color=line.get_color(), label=f"{command}, {processes}: anon")
    ax.set_xlabel("impressions (millions)")
    ax.set_ylabel("peak memory, all processes (GiB)")
    ax.set_title("recipes/quickstart.yaml on a log file")
    ax.legend(fontsize=7)
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check-rows", type=int, nargs="*", default=[1_000_000, 4_000_000, 16_000_000, 32_000_000])
    parser.add_argument("--run-rows", type=int, nargs="*", default=[1_000_000, 4_000_000])
    parser.add_argument("--threads", type=int, default=1, help="torch and polars threads per process (the machine is shared: say so)")
    parser.add_argument("--from-csv", action="store_true")
    args = parser.parse_args()
    if args.from_csv:
        frame, minutes = pl.read_csv(CSV), None
    else:
        start, found = time.perf_counter(), []
        for rows in sorted(set(args.check_rows) | set(args.run_rows)):
            with tempfile.TemporaryDirectory(prefix="gem-scale-") as folder:
                dataset, generated = make_log(rows, Path(folder), args.threads)
                found.append(generated)
                runs = [("data check", 1)] * (rows in args.check_rows) + [("run", 1), ("run", 2)] * (rows in args.run_rows)
                for command, processes in runs:
                    found += measure(command, rows, processes, args.threads, Path(folder), dataset)
                    print(f"  {rows:,} impressions, {command}, {processes} process(es): {found[-1]}", flush=True)
        minutes = (time.perf_counter() - start) / 60
        write_csv(pl.DataFrame(found, infer_schema_length=None).with_columns(pl.lit(args.threads).alias("threads")), CSV)
        frame = pl.read_csv(CSV)
    text = body(frame, minutes)
    print(text)
    write_section(SECTION, command_line(), text)


if __name__ == "__main__":
    main()
