"""Each transfer technique's recipe knobs (design §8) and their range checks.

This is the schema half of `adapters/`: plain dataclasses, free of torch, so a bad knob is answered
before the heavy imports. The technique itself (its heads, batch columns and loss) lives in
`adapters/<technique>.py`, which re-exports its config. Each config's `check(key, window_days)`
raises `ValueError` naming `key.<field>` for a value out of range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

HEADS = ("serving", "auxiliary")  # where distillation's soft-label loss goes
LOSSES = ("cosine", "mse", "infonce")  # representation learning's alignment losses


@dataclass
class DistillationConfig:
    """Knowledge distillation from the producer's logits."""

    weight: float = 1.0  # w; 0 turns distillation off
    head: str = "serving"  # serving: vanilla KD on the serving logit; auxiliary: a separate head
    label_scale: float = 1.0  # α in min(α·σ(z_t / T), 1)
    grad_scale: float = 1.0  # β: the distillation heads' gradient into the trunk is scaled by β
    temperature: float = 1.0  # T

    def check(self, key: str, window_days: int) -> None:
        check_one_of(f"{key}.head", self.head, HEADS)
        check_non_negative(f"{key}.weight", self.weight)
        check_non_negative(f"{key}.grad_scale", self.grad_scale)
        check_positive(f"{key}.label_scale", self.label_scale)
        check_positive(f"{key}.temperature", self.temperature)


@dataclass
class RepresentationConfig:
    """Align the consumer's hidden state with the producer's embedding through a projection head."""

    weight: float = 0.0  # 0 turns it off
    loss: str = "cosine"  # cosine, mse or infonce (in-batch negatives)
    temperature: float = 0.1  # InfoNCE only

    def check(self, key: str, window_days: int) -> None:
        check_one_of(f"{key}.loss", self.loss, LOSSES)
        check_non_negative(f"{key}.weight", self.weight)
        check_positive(f"{key}.temperature", self.temperature)


@dataclass
class SharingConfig:
    """Producer modules the consumer imports (see `gem-transfer ls sharing`)."""

    modules: list[str] = field(default_factory=list)  # e.g. [embeddings.ad_id, history.pooling]
    freeze: bool = True  # true: the imported parts stay as the producer trained them; false: the consumer trains them on

    def check(self, key: str, window_days: int) -> None:
        """Nothing here: the names are checked against the built producer and consumer (it needs the
        catalog and the data; `transfer.config.validate_models`)."""


@dataclass
class AdapterConfig:
    """The Student Adapter: corrects stale producer logits from the freshest labels."""

    enabled: bool = False  # true: fit the adapter and train the second distillation head
    fit_days: int = 3  # the adapter is fit on the last `fit_days` of the consumers' window
    weight: float = 1.0  # weight of the second distillation head, supervised by σ(z_a)
    hidden: int = 16  # the adapter's hidden width
    lr: float = 0.03  # its learning rate (Adam) while it is fit
    epochs: int = 5  # passes over the fit rows
    placebo: bool = False  # the identity instead of a fitted adapter (the control)

    def check(self, key: str, window_days: int) -> None:
        """`window_days`: the consumers' window, which the fit window must fit in."""
        check_non_negative(f"{key}.weight", self.weight)
        for name in ("lr", "hidden", "fit_days", "epochs"):
            check_positive(f"{key}.{name}", getattr(self, name))
        if self.enabled and self.fit_days > window_days:
            raise ValueError(f"{key}.fit_days: found {self.fit_days}; allowed: at most the consumers' window ({window_days} days)")


def check_positive(key: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{key}: found {value}; allowed: a finite number > 0")


def check_non_negative(key: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{key}: found {value}; allowed: a finite number >= 0")


def check_one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{key}: unknown name '{value}'; allowed: {', '.join(sorted(allowed))}")
