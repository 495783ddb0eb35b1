"""The knobs `gem-transfer tune` searches: those of the techniques a stage turns on, with ranges wide
enough to reach the scalings public re-implementations of the auxiliary head needed (α, β ≫ 1)."""

from __future__ import annotations

from dataclasses import dataclass

from adapters import distillation, representation, student_adapter
from transfer.config.recipe import StageConfig


@dataclass(frozen=True)
class Knob:
    """One searched value: the recipe key under the stage (e.g. `distillation.weight`) and its range."""

    key: str
    low: float
    high: float
    log: bool = True

    def suggest(self, trial) -> float:
        """This trial's value (an `optuna.Trial`)."""
        return trial.suggest_float(self.key, self.low, self.high, log=self.log)


def stage_knobs(stage: StageConfig) -> list[Knob]:
    """The knobs of the techniques `stage` turns on (sharing has none: which modules it shares is a choice, not a knob)."""
    knobs: list[Knob] = []
    if distillation.enabled(stage.distillation):
        knobs += [Knob("distillation.weight", 0.1, 10.0), Knob("distillation.temperature", 1.0, 4.0, log=False)]
        if stage.distillation.head == "auxiliary":  # ExFM's auxiliary head: label scaling α and gradient scaling β
            knobs += [Knob("distillation.label_scale", 0.5, 4.0), Knob("distillation.grad_scale", 0.5, 16.0)]
    if representation.enabled(stage.representation):
        knobs.append(Knob("representation.weight", 0.01, 2.0))
    if student_adapter.enabled(stage.adapter):
        knobs.append(Knob("adapter.weight", 0.1, 3.0))
    return knobs
