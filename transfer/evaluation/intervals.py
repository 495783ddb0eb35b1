"""95% intervals for a VM's lift, transfer ratio and gain ratio: a paired bootstrap over eval users.

The student, its no-transfer baseline, the teacher (and, where one was trained, the VM's vanilla-KD
student) are scored on the same eval rows. Rows are not independent: one user's rows share that user's
taste, so a model's gain over another clusters by user. Each resample therefore draws the slice's
*users* with replacement (every row of a drawn user comes along, the same draw for every model) —
or, on a slice with fewer than `MIN_USERS` users, user × day blocks — recomputes every model's NE on
it, and so the lift's spread holds the eval set's own noise at the level it varies. The interval is
the resamples' 2.5th–97.5th percentiles.

A ratio (transfer ratio, gain ratio) is only reported where its denominator is resolvable: the
teacher's lead over the baseline (vanilla KD's gain) has an interval above 0. Elsewhere the ratio is
undefined, whatever its point value, and its interval is not shown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import torch
import torch.nn.functional as F

RESAMPLES = 1000
LEVEL = 0.95
POWER = 0.8  # the power the minimum detectable lift is quoted at
MIN_USERS = 50  # a slice with fewer users is resampled in user × day blocks
_CHUNK = 100  # resamples per batch of work: [chunk, n] weights at a time
_DAY = 86_400


@dataclass(frozen=True)
class LiftInterval:
    """The bootstrap interval of a student's lift % and transfer ratio over its baseline and, against
    the VM's vanilla-KD student, of its gain ratio and of its NE gain over vanilla KD (NaN without one);
    with the denominators' own intervals (in NE points), which decide whether a ratio exists, the
    slice's minimum detectable lift, and the units resampled."""

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
    lead_low: float = math.nan  # 100 · (NE_b − NE_teacher): the teacher's lead, the transfer ratio's denominator
    lead_high: float = math.nan
    vanilla_gain_low: float = math.nan  # 100 · (NE_b − NE_vanilla): vanilla KD's gain, the gain ratio's denominator
    vanilla_gain_high: float = math.nan
    mde_lift: float = math.nan  # the slice's minimum detectable lift % (`_minimum_detectable_lift`)
    units: int = 0  # how many units each resample draws
    unit: str = "rows"  # what they are: "users", "user-days" or "rows"

    @property
    def verdict(self) -> str:
        """"better" / "worse" when the lift's interval excludes 0, else "not distinguishable"."""
        return _verdict(self.lift_low, self.lift_high)

    @property
    def ratio_defined(self) -> bool:
        """Whether the transfer ratio exists: the teacher's lead over the baseline is resolvably above 0."""
        return self.lead_low > 0

    @property
    def gain_defined(self) -> bool:
        """Whether the gain ratio exists: vanilla KD's gain over the baseline is resolvably above 0."""
        return self.vanilla_gain_low > 0

    def ratio_reason(self) -> str:
        """Why the transfer ratio is undefined ("" when it is defined)."""
        return "" if self.ratio_defined else _undefined("the teacher's lead over the baseline", self.lead_low, self.lead_high)

    def gain_reason(self) -> str:
        """Why the gain ratio is undefined ("" when it is defined or there is no vanilla-KD reference)."""
        if self.gain_defined or math.isnan(self.over_vanilla_low):
            return ""
        return _undefined("vanilla KD's gain over the baseline", self.vanilla_gain_low, self.vanilla_gain_high)

    @property
    def vanilla_verdict(self) -> str:
        """The student against vanilla KD: "better" / "worse" / "not distinguishable"; "" without one."""
        return "" if math.isnan(self.over_vanilla_low) else _verdict(self.over_vanilla_low, self.over_vanilla_high)


def _verdict(low: float, high: float) -> str:
    if low > 0:
        return "better"
    return "worse" if high < 0 else "not distinguishable"


def _undefined(denominator: str, low: float, high: float) -> str:
    if math.isnan(low):
        return f"undefined: {denominator} was not measured"
    if high < 0:
        return f"undefined: {denominator} is negative ([{low:.2f}, {high:.2f}] NE points)"
    return f"undefined: {denominator} is not resolvable ([{low:.2f}, {high:.2f}] NE points)"


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


def cluster_weights(units: torch.Tensor, resamples: int, generator: torch.Generator) -> torch.Tensor:
    """[resamples, n] row weights of `resamples` draws of the K units with replacement: each row
    weighs as often as its unit was drawn. units: [n] int64 codes in 0..K-1 (`resampling_units`)."""
    k = int(units.max().item()) + 1
    return multinomial_weights(k, resamples, generator)[:, units]


def resampling_units(users: torch.Tensor, ts: torch.Tensor | None = None) -> tuple[torch.Tensor, str]:
    """The units a slice's bootstrap draws: its users, or, with fewer than `MIN_USERS` of them (and
    times given), user × day blocks. users: [n] any int64 id per row; ts: [n] seconds since epoch.
    → (codes [n] in 0..K-1, "users" / "user-days")."""
    _, codes = torch.unique(users, return_inverse=True)
    if ts is None or int(codes.max().item()) + 1 >= MIN_USERS:
        return codes, "users"
    _, blocks = torch.unique(torch.stack([codes, ts // _DAY]), dim=1, return_inverse=True)
    return blocks, "user-days"


def lift_interval(labels: torch.Tensor, baseline: torch.Tensor, student: torch.Tensor, teacher: torch.Tensor,
                  resamples: int = RESAMPLES, seed: int = 0, weights: torch.Tensor | None = None,
                  vanilla: torch.Tensor | None = None, units: torch.Tensor | None = None, unit: str = "users") -> LiftInterval:
    """The paired bootstrap interval of lift % (student over baseline), transfer ratio (share of the
    teacher's gain) and, given the VM's `vanilla`-KD student, gain ratio and NE gain over it. labels
    and each model's logits: [n], the same eval rows; `units` [n] (`resampling_units`) the clusters
    drawn, named `unit` (None: rows, an independent-rows bootstrap). `weights` [R, n] replaces the
    random draws (for an exact enumeration in tests); the same seed, the same interval."""
    known = ~torch.isnan(labels)
    models = {"baseline": baseline, "student": student, "teacher": teacher} | ({"vanilla": vanilla} if vanilla is not None else {})
    labels, models = labels[known], {name: logits[known] for name, logits in models.items()}
    if units is not None:
        _, units = torch.unique(units[known], return_inverse=True)
    draws: dict[str, list[torch.Tensor]] = {}
    chunks = [weights] if weights is not None else _random_chunks(len(labels), resamples, seed, units)
    for w in chunks:
        ne = {name: resampled_ne(labels, logits, w) for name, logits in models.items()}
        for name, value in _statistics(ne).items():
            draws.setdefault(name, []).append(value)
    values = {name: torch.cat(chunks_) for name, chunks_ in draws.items()}
    bounds = {name: _percentiles(v) for name, v in values.items() if name != "baseline_ne"}
    nan = (math.nan, math.nan)
    n_units = len(labels) if units is None else int(units.max().item()) + 1
    return LiftInterval(*bounds["lift"], *bounds["ratio"], int(labels.sum().item()), len(values["lift"]),
                        *bounds.get("gain", nan), *bounds.get("over_vanilla", nan), *bounds["lead"], *bounds.get("vanilla_gain", nan),
                        mde_lift=_minimum_detectable_lift(values["baseline_ne"]), units=n_units,
                        unit="rows" if units is None else unit)


def _statistics(ne: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each resample's lift %, transfer ratio, the teacher's lead (NE points) and the baseline's NE,
    and (with a vanilla-KD student) gain ratio, NE points over vanilla KD and vanilla KD's gain, from
    the models' resampled NE ([R] each); a ratio over a zero gap is NaN."""
    b, s = ne["baseline"], ne["student"]
    stats = {"lift": 100 * (b - s) / b, "ratio": _ratio(b - s, b - ne["teacher"]), "lead": 100 * (b - ne["teacher"]), "baseline_ne": b}
    if "vanilla" in ne:
        stats |= {"gain": _ratio(b - s, b - ne["vanilla"]), "over_vanilla": 100 * (ne["vanilla"] - s),
                  "vanilla_gain": 100 * (b - ne["vanilla"])}
    return stats


def _minimum_detectable_lift(baseline_ne: torch.Tensor) -> float:
    """The smallest true lift % this eval slice detects with 80% power at the 95% level (two-sided), a
    property of the slice: (z_0.975 + z_0.8) × √2 × sd(NE_b) / NE_b, the bootstrap standard error of the
    baseline's NE over its users — the noise of comparing two unrelated models on these users and
    positives. A student's paired comparison with its own baseline usually resolves less (their errors
    cancel). baseline_ne: [R] the baseline's resampled NE."""
    finite = baseline_ne[torch.isfinite(baseline_ne)]
    if len(finite) < 2:
        return math.nan
    z = NormalDist().inv_cdf
    return 100 * (z(1 - (1 - LEVEL) / 2) + z(POWER)) * math.sqrt(2) * finite.std().item() / finite.mean().item()


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    return torch.where(denominator != 0, numerator / denominator, torch.full_like(denominator, math.nan))


def _percentiles(values: torch.Tensor) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles of the resamples' values (NaN ones left out)."""
    q = torch.tensor([(1 - LEVEL) / 2, 1 - (1 - LEVEL) / 2], dtype=torch.float64)
    low, high = torch.nanquantile(values, q).tolist()
    return low, high


def _random_chunks(n: int, resamples: int, seed: int, units: torch.Tensor | None):
    generator = torch.Generator().manual_seed(seed)
    for start in range(0, resamples, _CHUNK):
        size = min(_CHUNK, resamples - start)
        yield multinomial_weights(n, size, generator) if units is None else cluster_weights(units, size, generator)


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

    @property
    def p_value(self) -> float:
        """The two-sided p-value of "no effect" (a one-sample t-test of the per-seed effects, n − 1
        degrees of freedom); NaN for fewer than 2 seeds, 0 when every seed agrees exactly on a non-zero effect."""
        from scipy.stats import t

        if self.seeds < 2 or math.isnan(self.error):
            return math.nan
        if self.error == 0:
            return 1.0 if self.mean == 0 else 0.0
        return float(2 * t.sf(abs(self.mean) / self.error, self.seeds - 1))

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


@dataclass(frozen=True)
class RatioInterval:
    """A ratio of two means over seeds (e.g. the transfer ratio: mean student gain over mean teacher
    lead) with its 95% Fieller interval. `low`/`high` are ±inf where the interval is unbounded; a
    ratio whose denominator is not resolvable over the seeds is undefined (`defined` False)."""

    ratio: float
    low: float
    high: float
    seeds: int
    defined: bool

    def cell(self, digits: int = 2) -> str:
        """"0.93 [0.84, 1.02]", or "undefined: …" when the denominator is not resolvably positive."""
        if not self.defined:
            if math.isnan(self.low):
                return "undefined: its denominator is negative over the seeds"
            return "undefined: its denominator is not resolvable over the seeds"
        return f"{self.ratio:.{digits}f} [{_bound(self.low, digits)}, {_bound(self.high, digits)}]"


def _bound(value: float, digits: int) -> str:
    return ("−∞" if value < 0 else "+∞") if math.isinf(value) else f"{value:.{digits}f}"


def fieller_interval(numerators: list[float], denominators: list[float], level: float = LEVEL) -> RatioInterval:
    """The ratio of the means of paired per-seed `numerators` and `denominators` with its 95% Fieller
    interval (t quantile, n − 1 degrees of freedom): the θ with (x̄ − θȳ)² ≤ t² Var(x̄ − θȳ). It is a
    bounded interval exactly when ȳ is resolvable (ȳ² / Var(ȳ) > t²); the ratio is defined only when ȳ
    is also positive (the denominators here are a teacher's lead, vanilla KD's gain)."""
    from scipy.stats import t

    n = len(numerators)
    if n != len(denominators) or n < 2:
        return RatioInterval(math.nan, math.nan, math.nan, n, False)
    x, y = torch.tensor(numerators, dtype=torch.float64), torch.tensor(denominators, dtype=torch.float64)
    mx, my = x.mean().item(), y.mean().item()
    vx, vy = x.var().item() / n, y.var().item() / n  # variances of the means
    cxy = ((x - mx) * (y - my)).sum().item() / (n - 1) / n
    q = float(t.ppf(1 - (1 - level) / 2, n - 1)) ** 2  # `level`: 0.95, or higher for a Bonferroni-adjusted endpoint
    a, b, c = my * my - q * vy, -2 * (mx * my - q * cxy), mx * mx - q * vx
    ratio = mx / my if my != 0 else math.nan
    if a <= 0:  # the denominator is not resolvable: the set is unbounded
        return RatioInterval(ratio, -math.inf, math.inf, n, False)
    if my < 0:  # resolvably negative: a share of a loss is no transfer or gain ratio (as in the lift table)
        return RatioInterval(ratio, math.nan, math.nan, n, False)
    half = math.sqrt(max(b * b - 4 * a * c, 0.0))
    return RatioInterval(ratio, (-b - half) / (2 * a), (-b + half) / (2 * a), n, True)


def holm_adjusted(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment of a family's p-values (one claim's primary endpoints), in their
    order: the k-th smallest is multiplied by (m − k + 1), made non-decreasing, capped at 1. A verdict
    from an adjusted p-value below 0.05 keeps the family's chance of any false verdict under 5%. A NaN
    p-value stays NaN and does not count in m."""
    finite = [i for i, p in enumerate(p_values) if not math.isnan(p)]  # an endpoint without a p-value (one seed) is no test: NaN
    m = len(finite)
    order = sorted(finite, key=lambda i: p_values[i])
    adjusted, running = [math.nan] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def holm_verdict(interval: SeedInterval, adjusted_p: float) -> str:
    """"better" / "worse" when the Holm-adjusted p-value is below 5% (the direction of the mean), else
    "not distinguishable"."""
    if not adjusted_p < 1 - LEVEL:
        return "not distinguishable"
    return "better" if interval.mean > 0 else "worse"
