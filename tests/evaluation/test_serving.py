"""Serving cost of a real vertical model: what is counted (parameters, FLOPs) is the same on every
measurement, latency is CPU time (waiting for a core does not count), and a VM well inside its
budget stays within it while other processes keep every core busy."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch
from torch import nn

from students import MLP_VM_SIZES, mlp_vm
from tests.conftest import write_dataset, write_recipe
from transfer.catalog import ServingBudget
from transfer.config.loader import load_recipe
from transfer.data.batches import WindowBatches
from transfer.data.prepare import prepare_data
from transfer.evaluation.cost import forward_flops, parameter_count
from transfer.evaluation.serving import ServingCost, budget_status, cpu_ms, fastest_ms, measure, percentiles, requests
from transfer.tracking.tags import serving_metrics

BUSY_SECONDS = 60  # the busy processes end by themselves after this, should the test be killed
BUSY_PER_CORE = 2  # more runnable processes than cores: a wall-clock timing would wait for a core in most requests


@pytest.fixture(scope="module")
def eval_batches(tmp_path_factory, small_log) -> WindowBatches:
    folder = tmp_path_factory.mktemp("serving")
    data = prepare_data(load_recipe(write_recipe(folder, write_dataset(folder, small_log))).data)
    return WindowBatches(data.log, data.eval_rows, MLP_VM_SIZES["s"]["history_length"])


@pytest.fixture(scope="module")
def vm(eval_batches) -> nn.Module:
    torch.manual_seed(0)
    return mlp_vm(eval_batches.log.inputs, **MLP_VM_SIZES["s"])


class Sleeper(nn.Module):
    """Waits `seconds` in its forward without computing (as a request does while other processes hold the cores)."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds

    def forward(self, batch: dict[str, torch.Tensor]) -> None:
        time.sleep(self.seconds)


class FirstCallSlow(nn.Module):
    """Multiplies a matrix `work` times on its first call and once on later ones (as a cold first call)."""

    def __init__(self, work: int = 300):  # far above the steady call: CPU-time noise on a loaded host stays well under 3x
        super().__init__()
        self.work, self.calls = work, 0
        self.x = torch.randn(256, 256)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        self.calls += 1
        return [self.x @ self.x for _ in range(self.work if self.calls == 1 else 1)][-1]


def test_requests_are_consecutive_slices_of_the_window_cycled_when_it_is_short(eval_batches):
    rows = len(eval_batches)
    first, second = requests(eval_batches, count=2, candidates=rows - 1)
    assert torch.equal(first["row"], eval_batches.rows[: rows - 1])
    assert torch.equal(second["row"], eval_batches.rows[torch.arange(rows - 1, 2 * rows - 2) % rows])
    assert second["categorical"].shape == first["categorical"].shape == (rows - 1, eval_batches.log.categorical.shape[1])


def test_time_spent_waiting_is_not_counted():
    assert cpu_ms(Sleeper(0.05), {}) < 25  # perf_counter would say >= 50


def test_a_request_costs_its_fastest_repeat():
    assert fastest_ms(FirstCallSlow(), {}, repeats=3) < fastest_ms(FirstCallSlow(), {}, repeats=1) / 3


def test_percentiles_across_requests():
    assert percentiles([3.0]) == (3.0, 3.0)
    p50, p99 = percentiles([float(v) for v in range(1, 102)])  # 1 … 101
    assert p50 == 51.0 and p99 == 100.0


def test_counted_costs_are_the_same_on_every_measurement_and_scale_with_candidates(vm, eval_batches):
    one = measure(vm, requests(eval_batches, count=4), repeats=2, warmup=1)
    again = measure(vm, requests(eval_batches, count=4), repeats=2, warmup=1)
    assert one.params == again.params == parameter_count(vm)
    assert one.flops == again.flops > 0
    doubled = forward_flops(vm.eval(), requests(eval_batches, count=1, candidates=2_000)[0])
    assert doubled == pytest.approx(2 * one.flops, rel=1e-9)
    assert 0 < one.p50_ms <= one.p99_ms
    assert serving_metrics(one) == {"serving_params": one.params, "serving_flops": one.flops,
                             "serving_p50_ms": one.p50_ms, "serving_p99_ms": one.p99_ms}


def test_measuring_leaves_the_model_training_and_torch_threads_as_they_were(vm, eval_batches):
    threads = torch.get_num_threads()
    vm.train()
    measure(vm, requests(eval_batches, count=1), repeats=1, warmup=0)
    assert vm.training and torch.get_num_threads() == threads


def test_budget_status_names_exceeded_limits_without_measured_timings():
    budget = ServingBudget(max_params=1_000, max_p99_ms=2.0)
    assert budget_status(ServingCost(900, 1.0, 1.5, 1e6), budget) == "within budget"
    assert budget_status(ServingCost(900, 1.0, 1.5), None) == "no budget"
    slow, slower = budget_status(ServingCost(900, 2.5, 3.17), budget), budget_status(ServingCost(900, 5.0, 81.86), budget)
    assert slow == slower == "over budget: p99 latency over the budget of 2 ms"
    both = budget_status(ServingCost(1_500, 2.5, 3.17), budget)
    assert both == "over budget: parameters 1,500 exceed the budget of 1,000 by 500 (50%); p99 latency over the budget of 2 ms"


def _busy_processes(count: int) -> list[subprocess.Popen]:
    """`count` processes, each spinning on a core for at most BUSY_SECONDS."""
    loop = f"import time\nend = time.monotonic() + {BUSY_SECONDS}\nwhile time.monotonic() < end:\n    pass\n"
    return [subprocess.Popen([sys.executable, "-c", loop]) for _ in range(count)]


@pytest.mark.slow
def test_a_vm_well_inside_its_budget_stays_within_it_while_every_core_is_busy(vm, eval_batches):
    batches = requests(eval_batches)
    idle = measure(vm, batches)
    budget = ServingBudget(max_params=parameter_count(vm), max_p99_ms=5 * idle.p99_ms)  # well inside: 5× its idle p99
    assert budget_status(idle, budget) == "within budget"

    cores = len(os.sched_getaffinity(0))
    busy = _busy_processes(BUSY_PER_CORE * cores)
    try:
        loaded = measure(vm, batches)
    finally:
        for process in busy:
            process.terminate()
        for process in busy:
            process.wait()
    assert budget_status(loaded, budget) == "within budget", (idle, loaded)
