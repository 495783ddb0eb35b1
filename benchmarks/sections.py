"""What each section of `benchmarks/RESULTS.md` is now: the evidence to read (current), replaced by a
later run (superseded, with its successor), or a measurement of the engine itself (engineering).
Superseded sections live in `benchmarks/archive/RESULTS.md`, which no benchmark writes. The index at
the top of each file is generated from this table (`benchmarks.results_file`) whenever a benchmark
writes its section; a test checks that every section of either file is listed here."""

from __future__ import annotations

CURRENT, SUPERSEDED, ENGINEERING = "current", "superseded", "engineering"

# section → (status, what it holds or its successor)
SECTIONS: dict[str, tuple[str, str]] = {
    "headroom-levers": (CURRENT, "which teacher-side lever gives the teacher a lead over the baseline VM (quickstart world)"),
    "headroom-gate": (CURRENT, "the gate before any transfer claim: does the teacher lead the baseline VM by enough, slice by slice?"),
    "transfer-ablation-synthetic-best-epoch": (CURRENT, "transfer claims on the synthetic world (2×, vanilla KD, combination)"),
    "transfer-ablation-synthetic-best-epoch-tuned": (CURRENT, "tuned vanilla KD on the synthetic world"),
    "transfer-ablation-synthetic-best-epoch-traffic": (CURRENT, "transfer claims on the benchmark world with knowledge from training "
                                                       "traffic (production's protocol)"),
    "transfer-ablation-synthetic-best-epoch-400k-traffic": (CURRENT, "transfer claims where the headroom gate passes: the quickstart "
                                                            "world, knowledge from training traffic"),
    "transfer-ablation-movielens-best-epoch": (CURRENT, "transfer claims on MovieLens-100K"),
    "transfer-ablation-movielens1m-best-epoch-traffic": (CURRENT, "transfer claims on MovieLens-1M, knowledge from training traffic"),
    "regime-map-400k": (CURRENT, "the regime map: where transfer pays and through which channel (VM history, VM days, the teacher's lag)"),
    "transfer-embedding-features-400k": (CURRENT, "the teacher's user embeddings as a VM input, with and without vanilla KD "
                                                  "(the quickstart world)"),
    "transfer-ablation-domains-best-epoch": (CURRENT, "hierarchical against direct, near and far domains"),
    "transfer-staleness-wide": (CURRENT, "the Student Adapter and staleness"),
    "transfer-staleness-wide-400k-traffic": (CURRENT, "the Student Adapter where staleness is a lag on knowledge from training traffic "
                                                      "(the staleness recipe's world)"),
    "teacher-quality-counters-synthetic": (CURRENT, "GEM teacher against the skeleton, synthetic"),
    "teacher-quality-counters-movielens": (CURRENT, "GEM teacher against the skeleton, MovieLens"),
    "strong-baseline": (CURRENT, "the baseline VM against a tuned tree on its inputs"),
    "vm-wide-start": (CURRENT, "a VM started at its regression against a random start"),
    "hierarchical-far-domain-probe": (CURRENT, "why hierarchical does not beat direct on the far domain (one seed, no claim)"),
    "synthetic-world": (CURRENT, "the synthetic world itself: speed, positives per slice, what staleness costs an oracle"),
    "teacher-scaling": (CURRENT, "teacher NE against training compute"),
    "transfer-ablation-movielens": (SUPERSEDED, "transfer-ablation-movielens-best-epoch"),
    "transfer-ablation-movielens-issue15": (SUPERSEDED, "transfer-ablation-movielens-best-epoch"),
    "transfer-ablation-movielens-tuned-12": (SUPERSEDED, "transfer-ablation-movielens-best-epoch"),
    "transfer-ablation-movielens-tuned": (SUPERSEDED, "transfer-ablation-movielens-best-epoch"),
    "transfer-ablation-movielens-warm-start": (SUPERSEDED, "transfer-ablation-movielens-best-epoch"),
    "transfer-ablation-movielens-wide": (SUPERSEDED, "transfer-ablation-movielens-best-epoch"),
    "transfer-ablation-synthetic": (SUPERSEDED, "transfer-ablation-synthetic-best-epoch"),
    "transfer-ablation-synthetic-400k": (SUPERSEDED, "transfer-ablation-synthetic-best-epoch"),
    "transfer-ablation-synthetic-tuned": (SUPERSEDED, "transfer-ablation-synthetic-best-epoch-tuned"),
    "transfer-ablation-synthetic-wide": (SUPERSEDED, "transfer-ablation-synthetic-best-epoch"),
    "transfer-ablation-synthetic-wide-tuned": (SUPERSEDED, "transfer-ablation-synthetic-best-epoch-tuned"),
    "transfer-ablation-domains": (SUPERSEDED, "transfer-ablation-domains-best-epoch"),
    "transfer-staleness": (SUPERSEDED, "transfer-staleness-wide"),
    "transfer-analysis": (SUPERSEDED, "the README's claims table, from the current sections"),
    "teacher-quality": (SUPERSEDED, "teacher-quality-counters-synthetic, teacher-quality-counters-movielens"),
    "teacher-quality-tuned-movielens": (SUPERSEDED, "teacher-quality-counters-movielens"),
    "teacher-quality-tuned-synthetic": (SUPERSEDED, "teacher-quality-counters-synthetic"),
    "teacher-analysis": (SUPERSEDED, "teacher-quality-counters-synthetic, teacher-quality-counters-movielens"),
    "strong-baseline-analysis": (SUPERSEDED, "strong-baseline"),
    "framework-overhead": (ENGINEERING, "gem-transfer's training loop against a hand-written one"),
    "sequence-scaling": (ENGINEERING, "the sequence encoders' time and memory against history length"),
    "teacher-speed-options": (ENGINEERING, "torch.compile and bf16 for the teacher"),
    "knowledge-generation": (ENGINEERING, "knowledge generation's memory and throughput at 1M and 4M impressions"),
    "continuous-cycle": (ENGINEERING, "the continuous transfer cycle over 4 windows"),
    "multi-process": (ENGINEERING, "several processes and nodes"),
    "data-scale": (ENGINEERING, "memory and time as the log grows: the data build, and whole runs in one process and two"),
    "traffic-knowledge": (ENGINEERING, "knowledge from training traffic against a separate pass"),
}

INDEX_START, INDEX_END = "<!-- index:start -->", "<!-- index:end -->"


def index(listed: list[str], places: dict[str, str]) -> str:
    """The index block for the sections `listed` (in file order): current ones first, then engineering,
    then superseded with their successors; each name links to its heading at `places[name]` (a path and
    an anchor), a section missing from SECTIONS is listed as unclassified."""
    order = {CURRENT: 0, ENGINEERING: 1, SUPERSEDED: 2}
    rows = sorted(listed, key=lambda name: (order.get(SECTIONS.get(name, ("?", ""))[0], 3), listed.index(name)))
    lines = [INDEX_START, "| section | status | what it holds / superseded by |", "|---|---|---|"]
    for name in rows:
        status, what = SECTIONS.get(name, ("unclassified", "add it to benchmarks/sections.py"))
        if status == SUPERSEDED and not what.startswith("the "):
            what = "by " + ", ".join(_link(successor, places) for successor in what.split(", "))
        lines.append(f"| {_link(name, places)} | {status} | {what} |")
    return "\n".join([*lines, INDEX_END])


def _link(name: str, places: dict[str, str]) -> str:
    return f"[`{name}`]({places[name]})" if name in places else f"`{name}`"
