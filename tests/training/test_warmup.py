"""Learning-rate warm-up (`teacher.warmup_steps`): on a real Lightning Trainer the learning rate of
step k is lr·(k + 1)/warmup until it reaches lr, and a resumed training continues the ramp."""

from __future__ import annotations

import lightning as L
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
LR, WARMUP = 4e-3, 5


class _LearningRates(L.Callback):
    """The optimizer's learning rate at the start of every training step."""

    def __init__(self):
        self.seen: list[float] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.seen.append(trainer.optimizers[0].param_groups[0]["lr"])


@pytest.fixture(scope="module")
def data(tmp_path_factory, small_log):
    folder = tmp_path_factory.mktemp("warmup")
    return prepare_data(load_recipe(write_recipe(folder, write_dataset(folder, small_log))).data)


def _train(data, warmup: int, epochs: int, checkpoints=None) -> list[float]:
    torch.manual_seed(0)
    model = mlp_vm(data.log.inputs, **MLP_VM_SIZES["xs"])
    rows = data.train_rows[:256]  # 4 steps of 64 per epoch
    loader = window_loader(WindowBatches(data.log, rows, model.history_length), 64, shuffle=True, seed=1)
    rates = _LearningRates()
    fit(RankingModule(model, ["click"], [0], lr=LR, warmup_steps=warmup), loader, CFG, epochs, logger=False,
        checkpoints=checkpoints, watchers=[rates])
    return rates.seen


def test_the_learning_rate_ramps_linearly_then_holds(data):
    seen = _train(data, WARMUP, epochs=2)
    assert seen == pytest.approx([LR * min(1.0, (k + 1) / WARMUP) for k in range(8)])
    assert _train(data, 0, epochs=1) == pytest.approx([LR] * 4)


def test_a_resumed_training_continues_the_ramp(data, tmp_path):
    _train(data, WARMUP, epochs=1, checkpoints=tmp_path)  # "killed" after epoch 1 (4 steps)
    resumed = _train(data, WARMUP, epochs=2, checkpoints=tmp_path)
    assert resumed == pytest.approx([LR * min(1.0, (k + 1) / WARMUP) for k in range(4, 8)])
