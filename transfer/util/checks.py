"""Range checks for configuration values, free of torch: each raises `ValueError` naming the key,
what was found and what is allowed (the recipe loader turns it into the file's one-line error)."""

from __future__ import annotations

import math


def check_positive(key: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{key}: found {value}; allowed: a finite number > 0")


def check_non_negative(key: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{key}: found {value}; allowed: a finite number >= 0")


def check_one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{key}: unknown name '{value}'; allowed: {', '.join(sorted(allowed))}")
