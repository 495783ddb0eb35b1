"""Two CPU processes (Lightning DDP, gloo): evaluation over two ranks gives the metrics of one process
(each rank scores its own rows, torchmetrics syncs the states), and DDP training hands its trained
weights back."""

from __future__ import annotations

import pytest
import torch

from students import MLP_VM_SIZES, mlp_vm
from tests.conftest import write_dataset, write_recipe
from transfer.batches import WindowBatches, window_loader
from transfer.data import prepare_data
from transfer.module import RankingModule
from transfer.recipe import TrainerConfig, load_recipe
from transfer.training import evaluate, fit

ONE = TrainerConfig(progress=False)
TWO = TrainerConfig(progress=False, devices=2, strategy="ddp_spawn")


@pytest.fixture(scope="module")
def data(tmp_path_factory, small_log):
    folder = tmp_path_factory.mktemp("ddp")
    return prepare_data(load_recipe(write_recipe(folder, write_dataset(folder, small_log))).data)


@pytest.mark.slow
def test_two_process_training_and_evaluation_match_one_process(data):
    torch.manual_seed(0)
    model = mlp_vm(data.log.inputs, **MLP_VM_SIZES["xs"])
    module = RankingModule(model, ["click"], [0], lr=3e-3)
    before = model.head.weight.detach().clone()
    fit(module, window_loader(WindowBatches(data.log, data.train_rows, model.history_length), 64, shuffle=True), TWO, 1, logger=False)
    assert not torch.equal(before, model.head.weight)  # trained in the workers, weights back in this process

    # an odd number of rows, so the ranks get different counts and nothing may be padded or dropped
    rows = data.eval_rows[: len(data.eval_rows) // 2 * 2 - 1]
    loader = window_loader(WindowBatches(data.log, rows, model.history_length), 100, shuffle=False)
    single, double = evaluate(module, loader, ONE, "click"), evaluate(module, loader, TWO, "click")
    assert double.ne == pytest.approx(single.ne, rel=1e-9)
    assert double.auc == pytest.approx(single.auc, rel=1e-6)
    assert double.calibration == pytest.approx(single.calibration, rel=1e-9)
