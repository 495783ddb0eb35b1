"""The knobs `gem-transfer tune` searches: those of the techniques a stage turns on, each technique
declaring its own (`knobs` in its module of `adapters/`)."""

from __future__ import annotations

import adapters
from adapters.technique import Knob
from transfer.config.recipe import StageConfig

__all__ = ["Knob", "stage_knobs"]


def stage_knobs(stage: StageConfig) -> list[Knob]:
    """The knobs of the techniques `stage` turns on."""
    return adapters.knobs(stage)
