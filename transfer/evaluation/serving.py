"""Serving cost of a trained vertical model — parameters, forward FLOPs, and the latency of scoring
one request of 1,000 candidates on one CPU core — checked against its budget.

Latency is measured so that the verdict does not depend on how busy the machine is: each request is
timed in CPU time of the scoring thread (`time.thread_time`, torch on one thread), so time spent
waiting for a core while other processes run is not counted; each request is scored `REPEATS`
times and costs its fastest repeat (interrupts and cache misses only ever add time); p50/p99 are
taken across the recipe's `tracking.serving_requests` different requests (`REQUESTS` by default). Parameters and FLOPs are counted, not timed, so they
are the same on every run.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from transfer.catalog import ServingBudget
from transfer.data.batches import WindowBatches
from transfer.evaluation.cost import forward_flops, parameter_count

CANDIDATES = 1_000
REQUESTS = 64  # different requests (slices of the eval window); p50/p99 are taken across them
REPEATS = 3  # timed scorings of each request; its latency is the fastest
WARMUP = 8

Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class ServingCost:
    """What scoring one request costs: parameters, forward FLOPs (counted), CPU ms (measured)."""

    params: int
    p50_ms: float
    p99_ms: float
    flops: float | None = None  # forward FLOPs of one request; None when not counted

    def summary(self) -> str:
        """One line for the terminal, measured figures included."""
        flops = f", {self.flops / 1e6:,.1f} MFLOP" if self.flops is not None else ""
        return f"{self.params:,} params{flops}, CPU p50 {self.p50_ms:.2f} ms, p99 {self.p99_ms:.2f} ms per request"


def requests(batches: WindowBatches, count: int = REQUESTS, candidates: int = CANDIDATES) -> list[Batch]:
    """`count` requests of `candidates` rows each: consecutive slices of the window (cycled if it has
    fewer rows), as the model sees them."""
    return [batches[(torch.arange(candidates) + i * candidates) % len(batches)] for i in range(count)]  # [C] rows each


@contextmanager
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def cpu_ms(model: nn.Module, batch: Batch) -> float:
    """CPU time (ms) this thread spends scoring `batch` once; time waiting for a core is not counted."""
    start = time.thread_time()
    model(batch)
    return 1000 * (time.thread_time() - start)


def fastest_ms(model: nn.Module, batch: Batch, repeats: int = REPEATS) -> float:
    """The fastest of `repeats` scorings of `batch`, in CPU ms."""
    return min(cpu_ms(model, batch) for _ in range(repeats))


def percentiles(values: list[float]) -> tuple[float, float]:
    """(p50, p99) of `values` (interpolated between the nearest ranks; one value is both)."""
    if len(values) == 1:
        return values[0], values[0]
    cuts = statistics.quantiles(values, n=100, method="inclusive")  # 99 cut points: [49] = p50, [98] = p99
    return cuts[49], cuts[98]


def measure(model: nn.Module, batches: list[Batch], repeats: int = REPEATS, warmup: int = WARMUP) -> ServingCost:
    """Score each request of `batches` `repeats` times on one thread, after `warmup` scorings of the
    first; p50/p99 across requests of each request's fastest CPU time, in ms."""
    was_training = model.training
    model.eval()
    with one_thread(), torch.inference_mode():
        for _ in range(warmup):
            model(batches[0])
        latencies = [fastest_ms(model, batch, repeats) for batch in batches]
        flops = forward_flops(model, batches[0])
    model.train(was_training)
    p50, p99 = percentiles(latencies)
    return ServingCost(parameter_count(model), p50, p99, flops)


def budget_status(cost: ServingCost, budget: ServingBudget | None) -> str:
    """"within budget", "no budget", or "over budget: <each limit exceeded>". Deterministic given the
    verdict: an exceeded parameter limit says by how much (counted), an exceeded latency limit names
    only the limit (the measured figures are the run's metrics and the terminal line)."""
    if budget is None:
        return "no budget"
    violations = budget.violations(cost.params, budget.max_p99_ms)  # counted limits only: latency at the limit passes
    if cost.p99_ms > budget.max_p99_ms:
        violations.append(f"p99 latency over the budget of {budget.max_p99_ms:g} ms")
    return "over budget: " + "; ".join(violations) if violations else "within budget"
