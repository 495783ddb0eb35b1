"""A VM keeps its best epoch on a validation slice, its start counted as epoch 0 (a real Lightning
Trainer, a real VM on an encoded log, real checkpoints)."""

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
from transfer.evaluation.metrics import normalized_entropy
from transfer.training.best_epoch import KeepBestEpoch
from transfer.training.module import RankingModule
from transfer.training.trainer import fit

CFG = TrainerConfig(progress=False)


class _Snapshots(L.Callback):
    """The module's weights at the end of every epoch."""

    def __init__(self):
        self.states: list[dict[str, torch.Tensor]] = []

    def on_train_epoch_end(self, trainer, module):
        self.states.append({name: tensor.clone() for name, tensor in module.state_dict().items()})


@pytest.fixture(scope="module")
def data(tmp_path_factory, small_log):
    folder = tmp_path_factory.mktemp("best_epoch")
    return prepare_data(load_recipe(write_recipe(folder, write_dataset(folder, small_log))).data)


def _module(data, lr: float = 3e-3) -> tuple[RankingModule, torch.utils.data.DataLoader]:
    torch.manual_seed(0)
    model = mlp_vm(data.log.inputs, **MLP_VM_SIZES["xs"])
    loader = window_loader(WindowBatches(data.log, data.train_rows[:512], model.history_length), 64, shuffle=True, seed=5)
    return RankingModule(model, ["click"], [0], lr=lr), loader


def _validation_ne(data, module: RankingModule) -> float:
    """The module's click NE on the log's eval rows, scored as the pipeline scores a slice."""
    rows = data.eval_rows
    batch = WindowBatches(data.log, rows, module.model.history_length)[torch.arange(len(rows))]
    was_training = module.training
    module.eval()
    with torch.no_grad():
        logits = module(batch).logits[:, 0]
    module.train(was_training)
    return normalized_entropy(logits, data.log.labels[rows, 0])


def _scripted(scores: list[float]):
    """A score that reads `scores` in turn: the start's, then one per epoch."""
    calls = iter(scores)
    return lambda: next(calls)


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


def test_the_best_scoring_epoch_is_kept(data):
    module, loader = _module(data)
    keeper, snapshots = KeepBestEpoch(module, _scripted([0.9, 0.8, 0.7, 0.75])), _Snapshots()
    fit(module, loader, CFG, 3, logger=False, watchers=[keeper, snapshots])
    assert keeper.best_epoch == 2
    assert _equal(module.state_dict(), snapshots.states[1])
    assert not _equal(module.state_dict(), snapshots.states[2])  # the last epoch was trained, then dropped


def test_a_training_that_never_beats_its_start_ends_at_its_start(data):
    module, loader = _module(data)
    start = {name: tensor.clone() for name, tensor in module.state_dict().items()}
    keeper, snapshots = KeepBestEpoch(module, _scripted([0.5, 0.6, 0.5])), _Snapshots()  # a tie goes to the earlier epoch
    fit(module, loader, CFG, 2, logger=False, watchers=[keeper, snapshots])
    assert keeper.best_epoch == 0
    assert _equal(module.state_dict(), start)
    assert not _equal(snapshots.states[-1], start)


def test_on_real_scores_the_kept_weights_score_no_worse_than_the_start(data):
    module, loader = _module(data, lr=3e-2)  # a high rate: some epochs overshoot
    start_ne = _validation_ne(data, module)
    keeper = KeepBestEpoch(module, lambda: _validation_ne(data, module))
    fit(module, loader, CFG, 4, logger=False, watchers=[keeper])
    kept_ne = _validation_ne(data, module)
    assert kept_ne == keeper.best_score <= start_ne


def test_an_interrupted_training_keeps_the_same_epoch_as_an_uninterrupted_one(data, tmp_path):
    straight, loader = _module(data, lr=3e-2)
    keeper = KeepBestEpoch(straight, lambda: _validation_ne(data, straight))
    fit(straight, loader, CFG, 3, logger=False, watchers=[keeper])

    first, loader = _module(data, lr=3e-2)
    fit(first, loader, CFG, 1, logger=False, checkpoints=tmp_path, watchers=[KeepBestEpoch(first, lambda: _validation_ne(data, first))])
    again, loader = _module(data, lr=3e-2)  # a new process: fresh weights, the checkpoint on disk
    resumed = KeepBestEpoch(again, lambda: _validation_ne(data, again))
    fit(again, loader, CFG, 3, logger=False, checkpoints=tmp_path, watchers=[resumed])
    assert (resumed.best_epoch, resumed.best_score) == (keeper.best_epoch, keeper.best_score)
    assert _equal(again.state_dict(), straight.state_dict())
