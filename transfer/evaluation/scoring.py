"""Scoring a model on slices of the log (design §7): its logits in row order; its NE, AUC and
calibration on a VM's eval slice with its NE after a one-parameter recalibration fitted on the
consumers' last training day; its scores on the validation slice. Every process scores every row (a
slice is small), so each holds the same values. `module` is a `RankingModule` (its `tasks` and
`model.history_length` are read)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from torch import nn

from transfer.data.batches import WindowBatches
from transfer.evaluation.lift_table import Scores
from transfer.evaluation.metrics import logit_metrics, normalized_entropy, recalibration_shift

SCORING_BATCH = 4096  # rows per forward pass when scoring


@dataclass(frozen=True)
class Slices:
    """A VM's slices of the log (row indices of its surfaces) and the task it serves."""

    task: str
    eval: torch.Tensor  # [n] where it is scored
    recalibration: torch.Tensor  # [m] the consumers' last training day: fits its recalibration
    validation: torch.Tensor  # [v] chooses the epoch it keeps (and `gem-transfer tune`'s knobs)


@dataclass(frozen=True)
class SliceScores:
    """A model on a VM's slices."""

    scores: Scores  # on the eval slice
    logits: torch.Tensor  # [n] its logits there
    validation: Scores | None = None  # on the validation slice (None unasked, or where it cannot score: one class only)


def predict(module: nn.Module, log, rows: torch.Tensor, task: str) -> torch.Tensor:
    """`module`'s logits for `task` on `rows` ([n] of the encoded `log`), in order. → [n]
    The module may be on an accelerator (scored during its training): the rows go to it, the logits come back."""
    batches = WindowBatches(log, rows, module.model.history_length)  # every row, whatever this process's rank
    column = module.tasks.index(task)
    was_training = module.training
    module.eval()
    with torch.no_grad():
        logits = torch.cat([module(move_data_to_device(batches[index], module.device)).logits[:, column].cpu()
                            for index in torch.arange(len(rows)).split(SCORING_BATCH)])
    module.train(was_training)
    return logits


def labels_of(log, rows: torch.Tensor, task: str) -> torch.Tensor:
    """[n] the true labels of `task` on `rows` (NaN where missing)."""
    return log.labels[rows, log.tasks.index(task)]


def both_classes(labels: torch.Tensor) -> bool:
    """Whether labels [n] (NaN where unlabelled) hold both a 0 and a 1: what NE needs to score."""
    known = labels[~torch.isnan(labels)]
    return bool(len(known)) and 0 < known.sum().item() < len(known)


def score_slices(module: nn.Module, log, slices: Slices, validation: bool = True) -> SliceScores:
    """`module` on the eval slice, recalibrated on the recalibration slice (the shift NaN when that
    holds one class only), and (with `validation`) on the validation slice where it can be scored."""
    shift = recalibration_shift(predict(module, log, slices.recalibration, slices.task), labels_of(log, slices.recalibration, slices.task))
    scores, logits = _scores(module, log, slices.eval, slices.task, shift)
    if not validation or not both_classes(labels_of(log, slices.validation, slices.task)):
        return SliceScores(scores, logits)
    return SliceScores(scores, logits, _scores(module, log, slices.validation, slices.task, shift)[0])


def _scores(module: nn.Module, log, rows: torch.Tensor, task: str, shift: float) -> tuple[Scores, torch.Tensor]:
    """NE, AUC, calibration and NE after the logit `shift` on `rows`, from one pass; and the logits [n]."""
    logits, labels = predict(module, log, rows, task), labels_of(log, rows, task)
    return Scores(**logit_metrics(logits, labels), recal_ne=normalized_entropy(logits + shift, labels)), logits


def validation_ne(module: nn.Module, log, slices: Slices) -> Callable[[], float] | None:
    """What scores `module`'s current weights by raw NE on the validation slice (for keeping its best
    epoch); None when the slice cannot score it (no rows, or one class only)."""
    labels = labels_of(log, slices.validation, slices.task)
    if not both_classes(labels):
        return None
    return lambda: normalized_entropy(predict(module, log, slices.validation, slices.task), labels)


def mean_validation_ne(module: nn.Module, log, rows: torch.Tensor) -> Callable[[], float] | None:
    """What scores a multi-task `module`'s current weights by its mean raw NE over the tasks that
    `rows` (the validation window, [v]) can score (both classes); None where none can."""
    tasks = [task for task in module.tasks if both_classes(labels_of(log, rows, task))]
    if not tasks:
        return None
    labels = {task: labels_of(log, rows, task) for task in tasks}
    return lambda: sum(normalized_entropy(predict(module, log, rows, task), labels[task]) for task in tasks) / len(tasks)
