"""Interrupted training resumes from its last epoch checkpoint and ends exactly where an
uninterrupted training ends (a real Lightning Trainer, real checkpoints)."""

from __future__ import annotations

import pytest
import torch

from students import MLP_VM_SIZES, mlp_vm
from tests.conftest import write_dataset, write_recipe
from transfer.config.loader import load_recipe
from transfer.config.recipe import TrainerConfig
from transfer.data.batches import WindowBatches, window_loader
from transfer.data.prepare import prepare_data
from transfer.training.module import RankingModule
from transfer.training.trainer import fit

CFG = TrainerConfig(progress=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory, small_log):
    folder = tmp_path_factory.mktemp("resume")
    return prepare_data(load_recipe(write_recipe(folder, write_dataset(folder, small_log))).data)


def _module(data) -> tuple[RankingModule, torch.utils.data.DataLoader]:
    torch.manual_seed(0)
    model = mlp_vm(data.log.inputs, **MLP_VM_SIZES["xs"])
    loader = window_loader(WindowBatches(data.log, data.train_rows, model.history_length), 64, shuffle=True, seed=5)
    return RankingModule(model, ["click"], [0], lr=3e-3), loader


def test_a_training_stopped_after_one_epoch_resumes_to_the_same_weights(data, tmp_path):
    straight, loader = _module(data)
    fit(straight, loader, CFG, 3, logger=False)

    resumed, loader = _module(data)
    fit(resumed, loader, CFG, 1, logger=False, checkpoints=tmp_path)  # "killed" after epoch 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
    again, loader = _module(data)  # a new process: fresh weights, the checkpoint on disk
    fit(again, loader, CFG, 3, logger=False, checkpoints=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
    for (name, a), b in zip(straight.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert not torch.equal(resumed.model.head.weight, again.model.head.weight)  # it did train on


def test_a_nan_loss_stops_training_naming_the_model_and_the_step(data):
    import copy

    from transfer.errors import TrainingError

    module, _ = _module(data)
    log = copy.copy(data.log)
    log.dense = data.log.dense.clone()
    log.dense[data.train_rows[70:]] = float("nan")  # from the second batch on
    loader = window_loader(WindowBatches(log, data.train_rows, module.model.history_length), 64, shuffle=False)
    with pytest.raises(TrainingError, match=r"^student: x: the training loss became nan at step 2 \(epoch 1; label nan\)"):
        fit(module, loader, CFG, 1, logger=False, label="student: x")
