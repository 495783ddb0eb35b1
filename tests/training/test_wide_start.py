"""A wide & deep VM starts at the logistic regression on its wide features: the fitted weights meet
the regression's optimality conditions on a real encoded log, and the VM then predicts it."""

from __future__ import annotations

import pytest
import torch

from students import MLP_VM_SIZES, mlp_vm
from teacher.skeleton import skeleton_model
from tests.conftest import write_dataset, write_recipe
from transfer.config.loader import load_recipe
from transfer.data.batches import WindowBatches
from transfer.data.prepare import prepare_data
from transfer.training.wide_start import has_wide_term, start_at_regression, wide_inputs


@pytest.fixture(scope="module")
def data(tmp_path_factory, small_log):
    folder = tmp_path_factory.mktemp("wide")
    return prepare_data(load_recipe(write_recipe(folder, write_dataset(folder, small_log, counters=["ad_id"]))).data)


def _vm(data):
    torch.manual_seed(0)
    return mlp_vm(data.log.inputs, **MLP_VM_SIZES["xs"])


def test_the_start_solves_the_penalised_regression_and_the_vm_predicts_it(data):
    vm = _vm(data)
    batches = WindowBatches(data.log, data.student_rows, vm.history_length)
    assert start_at_regression(vm, batches, [0])
    x, y = wide_inputs(vm, batches, 0)  # [n, W], [n]
    w, b = vm.wide.weight.detach().double()[0], float(vm.head.bias.detach())
    p = torch.sigmoid(x @ w + b)
    n = len(y)
    # optimality: the mean gradient of the log loss plus the 1/n-weighted L2 penalty's is zero
    torch.testing.assert_close(x.T @ (p - y) / n + 2 * w / n, torch.zeros_like(w), atol=1e-4, rtol=0)  # float32 weights
    assert abs(float((p - y).mean())) < 1e-5
    assert w.abs().max() > 0.01  # the counters and aggregates do carry weight
    with torch.no_grad():
        vm.head.weight.zero_()  # without its deep part, the VM's logit is the regression's
        out = vm(batches[torch.arange(len(batches))]).logits[:, 0].double()
    torch.testing.assert_close(out, x @ w + b, atol=1e-4, rtol=1e-4)


def test_a_model_without_a_wide_term_or_a_slice_with_one_class_is_left_as_it_was(data):
    teacher = skeleton_model(data.log.inputs, dim=8, history_length=8, hidden=[16])
    assert not has_wide_term(teacher)
    assert not start_at_regression(teacher, WindowBatches(data.log, data.student_rows, 8), [0, 1])
    vm = _vm(data)
    before = {k: v.clone() for k, v in vm.state_dict().items()}
    negatives = data.student_rows[data.log.labels[data.student_rows, 0] == 0]
    assert not start_at_regression(vm, WindowBatches(data.log, negatives, vm.history_length), [0])
    assert all(torch.equal(before[k], v) for k, v in vm.state_dict().items())


def test_an_unstarted_wide_term_is_neutral(data):
    vm = _vm(data)
    batch = WindowBatches(data.log, data.student_rows, vm.history_length)[torch.arange(64)]
    with torch.no_grad():
        before = vm(batch).logits
        vm.wide.weight.normal_()  # had it started random, the counters would move every logit
        assert not torch.allclose(before, vm(batch).logits)
        vm.wide.weight.zero_()
        torch.testing.assert_close(before, vm(batch).logits)
    assert torch.count_nonzero(_vm(data).wide.weight) == 0


def test_a_multi_task_teacher_with_a_wide_term_starts_each_output_at_its_tasks_regression(data):
    from students.mlp import scaled_vm_teacher

    torch.manual_seed(0)
    teacher = scaled_vm_teacher(data.log.inputs, dim=4, history_length=8, hidden=[16])
    batches = WindowBatches(data.log, data.train_rows, teacher.history_length)
    assert has_wide_term(teacher, outputs=2) and not has_wide_term(teacher)
    assert start_at_regression(teacher, batches, [0, 1])
    for output, column in enumerate([0, 1]):
        x, y = wide_inputs(teacher, batches, column)  # the rows labelled for this task only
        w, b = teacher.wide.weight.detach().double()[output], float(teacher.head.bias.detach()[output])
        p = torch.sigmoid(x @ w + b)
        torch.testing.assert_close(x.T @ (p - y) / len(y) + 2 * w / len(y), torch.zeros_like(w), atol=1e-4, rtol=0)
    assert not torch.equal(teacher.wide.weight[0], teacher.wide.weight[1])  # each task its own regression
