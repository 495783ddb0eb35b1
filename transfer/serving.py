"""Serving cost of a trained vertical model: parameters, and the latency of scoring one request of
1,000 candidates on one CPU core (p50/p99 over repeated requests), checked against its budget."""

from __future__ import annotations

import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from teacher.cost import parameter_count
from transfer.batches import WindowBatches
from transfer.catalog import ServingBudget

CANDIDATES = 1_000
REPEATS = 200
WARMUP = 20


@dataclass(frozen=True)
class ServingCost:
    params: int
    p50_ms: float
    p99_ms: float

    def metrics(self) -> dict[str, float]:
        return {"serving_params": self.params, "serving_p50_ms": self.p50_ms, "serving_p99_ms": self.p99_ms}


def request(batches: WindowBatches, candidates: int = CANDIDATES) -> dict[str, torch.Tensor]:
    """One request: `candidates` rows of the window (cycled if it has fewer), as the model sees them."""
    positions = torch.arange(candidates) % len(batches)  # [C]
    return batches[positions]


@contextmanager
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def measure(model: nn.Module, batch: dict[str, torch.Tensor], repeats: int = REPEATS, warmup: int = WARMUP) -> ServingCost:
    """Score `batch` `warmup + repeats` times on one thread; p50/p99 of the timed repeats, in ms."""
    was_training = model.training
    model.eval()
    times = []
    with one_thread(), torch.inference_mode():
        for i in range(warmup + repeats):
            start = time.perf_counter()
            model(batch)
            if i >= warmup:
                times.append(1000 * (time.perf_counter() - start))
    model.train(was_training)
    cuts = statistics.quantiles(times, n=100, method="inclusive")  # 99 cut points: [49] = p50, [98] = p99
    return ServingCost(parameter_count(model), cuts[49], cuts[98])


def budget_status(cost: ServingCost, budget: ServingBudget | None) -> str:
    """"within budget", "no budget", or "over budget: <each limit exceeded and by how much>"."""
    if budget is None:
        return "no budget"
    violations = budget.violations(cost.params, cost.p99_ms)
    return "over budget: " + "; ".join(violations) if violations else "within budget"
