"""95% intervals for a VM's lift and transfer ratio: a paired bootstrap over eval examples.

The student, its no-transfer baseline and the teacher are scored on the same eval rows; each
resample draws the rows with replacement (the same draw for all three models), recomputes every
model's NE on it, and so the lift's spread includes the eval set's own noise — which, on a slice
with few positives, is most of it. The interval is the resamples' 2.5th–97.5th percentiles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

RESAMPLES = 1000
LEVEL = 0.95
_CHUNK = 100  # resamples per batch of work: [chunk, n] weights at a time


@dataclass(frozen=True)
class LiftInterval:
    """The bootstrap interval of a student's lift % and transfer ratio over its baseline."""

    lift_low: float
    lift_high: float
    ratio_low: float
    ratio_high: float
    positives: int  # eval positives behind it
    resamples: int

    @property
    def verdict(self) -> str:
        """"better" / "worse" when the interval excludes 0, else "not distinguishable"."""
        if self.lift_low > 0:
            return "better"
        return "worse" if self.lift_high < 0 else "not distinguishable"


def resampled_ne(labels: torch.Tensor, logits: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """NE under each resample's row weights (how often it drew each row). labels, logits: [n];
    weights: [R, n] → [R] (NaN for a resample without positives or negatives)."""
    labels, weights = labels.double(), weights.double()
    losses = F.binary_cross_entropy_with_logits(logits.double(), labels, reduction="none")  # [n]
    count = weights.sum(dim=1)  # [R]
    p = (weights @ labels) / count  # [R] the resample's base rate
    entropy = -(p * torch.log(p) + (1 - p) * torch.log(1 - p))
    return (weights @ losses) / count / entropy


def multinomial_weights(n: int, resamples: int, generator: torch.Generator) -> torch.Tensor:
    """[resamples, n] counts of each row in `resamples` draws of n rows with replacement."""
    draws = torch.randint(n, (resamples, n), generator=generator)  # [R, n]
    weights = torch.zeros(resamples, n, dtype=torch.float64)
    return weights.scatter_add_(1, draws, torch.ones_like(draws, dtype=torch.float64))


def lift_interval(labels: torch.Tensor, baseline: torch.Tensor, student: torch.Tensor, teacher: torch.Tensor,
                  resamples: int = RESAMPLES, seed: int = 0, weights: torch.Tensor | None = None) -> LiftInterval:
    """The paired bootstrap interval of lift % (student over baseline) and transfer ratio (share of
    the teacher's gain). labels and each model's logits: [n], the same eval rows. `weights` [R, n]
    replaces the random draws (for an exact enumeration in tests); the same seed, the same interval."""
    known = ~torch.isnan(labels)
    labels, baseline, student, teacher = labels[known], baseline[known], student[known], teacher[known]
    lifts, ratios = [], []
    chunks = [weights] if weights is not None else _random_chunks(len(labels), resamples, seed)
    for w in chunks:
        ne_b, ne_s, ne_t = (resampled_ne(labels, logits, w) for logits in (baseline, student, teacher))
        lifts.append(100 * (ne_b - ne_s) / ne_b)
        gap = ne_b - ne_t
        ratios.append(torch.where(gap != 0, (ne_b - ne_s) / gap, torch.full_like(gap, math.nan)))
    lift, ratio = torch.cat(lifts), torch.cat(ratios)
    low, high = (1 - LEVEL) / 2, 1 - (1 - LEVEL) / 2
    q = torch.tensor([low, high], dtype=torch.float64)
    lift_low, lift_high = torch.nanquantile(lift, q).tolist()
    ratio_low, ratio_high = torch.nanquantile(ratio, q).tolist()
    return LiftInterval(lift_low, lift_high, ratio_low, ratio_high, int(labels.sum().item()), len(lift))


def _random_chunks(n: int, resamples: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    for start in range(0, resamples, _CHUNK):
        yield multinomial_weights(n, min(_CHUNK, resamples - start), generator)
