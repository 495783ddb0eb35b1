"""95% intervals for a VM's lift, transfer ratio and gain ratio: a paired bootstrap over eval examples.

The student, its no-transfer baseline, the teacher (and, where one was trained, the VM's vanilla-KD
student) are scored on the same eval rows; each resample draws the rows with replacement (the same
draw for every model), recomputes every
model's NE on it, and so the lift's spread includes the eval set's own noise — which, on a slice
with few positives, is most of it. The interval is the resamples' 2.5th–97.5th percentiles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import torch
import torch.nn.functional as F

RESAMPLES = 1000
LEVEL = 0.95
_CHUNK = 100  # resamples per batch of work: [chunk, n] weights at a time


@dataclass(frozen=True)
class LiftInterval:
    """The bootstrap interval of a student's lift % and transfer ratio over its baseline and, against
    the VM's vanilla-KD student, of its gain ratio and of its NE gain over vanilla KD (NaN without one)."""

    lift_low: float
    lift_high: float
    ratio_low: float
    ratio_high: float
    positives: int  # eval positives behind it
    resamples: int
    gain_low: float = math.nan  # gain ratio (NE_b − NE_s) / (NE_b − NE_vanilla)
    gain_high: float = math.nan
    over_vanilla_low: float = math.nan  # 100 · (NE_vanilla − NE_s), NE points the student gains over vanilla KD
    over_vanilla_high: float = math.nan

    @property
    def verdict(self) -> str:
        """"better" / "worse" when the lift's interval excludes 0, else "not distinguishable"."""
        return _verdict(self.lift_low, self.lift_high)

    def minimum_detectable_lift(self, power: float = 0.8) -> float:
        """The smallest true lift % this eval slice detects with `power` at the 95% level (two-sided):
        (z_0.975 + z_power) × the lift's standard error, read from the interval's width (2 × 1.96 SE)."""
        z = NormalDist().inv_cdf
        level = z(1 - (1 - LEVEL) / 2)
        return (level + z(power)) * (self.lift_high - self.lift_low) / (2 * level)

    @property
    def vanilla_verdict(self) -> str:
        """The student against vanilla KD: "better" / "worse" / "not distinguishable"; "" without one."""
        return "" if math.isnan(self.over_vanilla_low) else _verdict(self.over_vanilla_low, self.over_vanilla_high)


def _verdict(low: float, high: float) -> str:
    if low > 0:
        return "better"
    return "worse" if high < 0 else "not distinguishable"


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
                  resamples: int = RESAMPLES, seed: int = 0, weights: torch.Tensor | None = None,
                  vanilla: torch.Tensor | None = None) -> LiftInterval:
    """The paired bootstrap interval of lift % (student over baseline), transfer ratio (share of the
    teacher's gain) and, given the VM's `vanilla`-KD student, gain ratio and NE gain over it. labels
    and each model's logits: [n], the same eval rows. `weights` [R, n] replaces the random draws (for
    an exact enumeration in tests); the same seed, the same interval."""
    known = ~torch.isnan(labels)
    models = {"baseline": baseline, "student": student, "teacher": teacher} | ({"vanilla": vanilla} if vanilla is not None else {})
    labels, models = labels[known], {name: logits[known] for name, logits in models.items()}
    draws: dict[str, list[torch.Tensor]] = {}
    chunks = [weights] if weights is not None else _random_chunks(len(labels), resamples, seed)
    for w in chunks:
        ne = {name: resampled_ne(labels, logits, w) for name, logits in models.items()}
        for name, value in _statistics(ne).items():
            draws.setdefault(name, []).append(value)
    bounds = {name: _percentiles(torch.cat(values)) for name, values in draws.items()}
    nan = (math.nan, math.nan)
    gain, over = bounds.get("gain", nan), bounds.get("over_vanilla", nan)
    return LiftInterval(*bounds["lift"], *bounds["ratio"], int(labels.sum().item()), len(torch.cat(draws["lift"])),
                        gain_low=gain[0], gain_high=gain[1], over_vanilla_low=over[0], over_vanilla_high=over[1])


def _statistics(ne: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each resample's lift %, transfer ratio and (with a vanilla-KD student) gain ratio and NE points
    over vanilla KD, from the models' resampled NE ([R] each); a ratio over a zero gap is NaN."""
    b, s = ne["baseline"], ne["student"]
    stats = {"lift": 100 * (b - s) / b, "ratio": _ratio(b - s, b - ne["teacher"])}
    if "vanilla" in ne:
        stats |= {"gain": _ratio(b - s, b - ne["vanilla"]), "over_vanilla": 100 * (ne["vanilla"] - s)}
    return stats


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    return torch.where(denominator != 0, numerator / denominator, torch.full_like(denominator, math.nan))


def _percentiles(values: torch.Tensor) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles of the resamples' values (NaN ones left out)."""
    q = torch.tensor([(1 - LEVEL) / 2, 1 - (1 - LEVEL) / 2], dtype=torch.float64)
    low, high = torch.nanquantile(values, q).tolist()
    return low, high


def _random_chunks(n: int, resamples: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    for start in range(0, resamples, _CHUNK):
        yield multinomial_weights(n, min(_CHUNK, resamples - start), generator)


@dataclass(frozen=True)
class SeedInterval:
    """The 95% t-interval of an effect's mean over seeds (each seed one paired measurement; with seeds
    that vary the data as well as the models, their spread holds the eval set's noise too)."""

    mean: float
    low: float
    high: float
    seeds: int
    error: float = math.nan  # the mean's standard error, sd / √n

    @property
    def verdict(self) -> str:
        """"better" / "worse" when the interval excludes 0, else "not distinguishable"."""
        return _verdict(self.low, self.high)

    def minimum_detectable(self, power: float = 0.8) -> float:
        """The smallest true effect this many seeds detect with `power` at the 5% level (two-sided):
        (t_{0.975} + t_{power}) × the mean's standard error, with n − 1 degrees of freedom."""
        from scipy.stats import t

        return (float(t.ppf(1 - (1 - LEVEL) / 2, self.seeds - 1)) + float(t.ppf(power, self.seeds - 1))) * self.error


def seed_interval(values: list[float]) -> SeedInterval:
    """The mean of per-seed effects with its 95% t-interval (NaN bounds for fewer than 2 seeds)."""
    from scipy.stats import t

    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return SeedInterval(mean, math.nan, math.nan, n)
    error = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) / math.sqrt(n)
    half = float(t.ppf(1 - (1 - LEVEL) / 2, n - 1)) * error
    return SeedInterval(mean, mean - half, mean + half, n, error)
