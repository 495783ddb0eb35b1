"""Evaluation metrics (design §7): NE, AUC, calibration; lift and transfer ratio."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import BinaryAUROC


class NormalizedEntropy(Metric):
    """Mean log loss divided by the entropy of the base rate p: `−(p log p + (1−p) log(1−p))`.

    Lower is better; 1.0 is what always predicting the base rate scores. Syncs across ranks.
    """

    higher_is_better = False
    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("log_loss", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("positives", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """logits, labels: [N]"""
        labels = labels.double()
        self.log_loss += F.binary_cross_entropy_with_logits(logits.double(), labels, reduction="sum")
        self.positives += labels.sum()
        self.count += labels.numel()

    def compute(self) -> torch.Tensor:
        p = self.positives / self.count
        entropy = -(p * torch.log(p) + (1 - p) * torch.log(1 - p))
        return (self.log_loss / self.count) / entropy


class Calibration(Metric):
    """Σ predicted probabilities / Σ labels; 1.0 is perfectly calibrated on aggregate."""

    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("predicted", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("positives", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """logits, labels: [N]"""
        self.predicted += torch.sigmoid(logits.double()).sum()
        self.positives += labels.double().sum()

    def compute(self) -> torch.Tensor:
        return self.predicted / self.positives


class _AUROCFromLogits(BinaryAUROC):
    """BinaryAUROC fed with logits and float labels, like the other metrics here."""

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        super().update(logits, labels.long())


def eval_metrics() -> MetricCollection:
    """NE, AUC and calibration, all updated with (logits [N], labels [N])."""
    return MetricCollection({"ne": NormalizedEntropy(), "auc": _AUROCFromLogits(), "calibration": Calibration()})


def logit_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """NE, AUC and calibration of logits [N] against 0/1 labels [N] (NaN labels dropped), in one call."""
    known = ~torch.isnan(labels)
    metrics = eval_metrics()
    metrics.update(logits[known], labels[known])
    return {name: float(value) for name, value in metrics.compute().items()}


def normalized_entropy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """NE of logits [N] against 0/1 labels [N] (NaN labels dropped), in one call."""
    known = ~torch.isnan(labels)
    metric = NormalizedEntropy()
    metric.update(logits[known], labels[known])
    return float(metric.compute())


def recalibration_shift(logits: torch.Tensor, labels: torch.Tensor, steps: int = 25) -> float:
    """The one-parameter recalibration (design §7): the logit shift b minimising the log loss of
    σ(logits + b) on labelled rows (logits, labels: [N]; NaN labels dropped). Newton's method on a
    convex function of one variable; NaN when the rows hold one class only (no finite optimum), so a
    recalibrated NE that cannot be fitted reads NaN rather than passing for the raw NE."""
    known = ~torch.isnan(labels)
    z, y = logits[known].double(), labels[known].double()
    if len(y) == 0 or y.min() == y.max():
        return math.nan
    b = torch.logit(y.mean()) - torch.logit(torch.sigmoid(z).mean())  # a good start: match the base rate
    for _ in range(steps):
        p = torch.sigmoid(z + b)
        gradient, curvature = (p - y).sum(), (p * (1 - p)).sum().clamp(min=1e-12)
        b = b - gradient / curvature
        if abs(float(gradient)) < 1e-9 * len(y):
            break
    return float(b)


def lift_percent(ne_baseline: float, ne_student: float) -> float:
    """(NE_baseline − NE_student) / NE_baseline, in percent; positive when the student is better."""
    return 100.0 * (ne_baseline - ne_student) / ne_baseline


def transfer_ratio(ne_baseline: float, ne_student: float, ne_teacher: float) -> float:
    """Share of the teacher's NE gain over the baseline that the student captured; NaN (undefined)
    when the teacher gains nothing, since a ratio over a loss flips its sign."""
    gap = ne_baseline - ne_teacher
    return (ne_baseline - ne_student) / gap if gap > 0 else math.nan
