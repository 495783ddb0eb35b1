"""Transfer techniques (design §8), one module each: its recipe config, its heads, the batch columns it
needs, its loss term and its tag.

| module | technique |
| --- | --- |
| `distillation.py` | knowledge distillation on the serving head (vanilla) or an auxiliary head (α, β, T) |
| `representation.py` | a projection head aligned with the producer's embedding (cosine, MSE, InfoNCE) |
| `sharing.py` | importing producer parts (embedding tables, named modules), frozen or fine-tuned |
| `student_adapter.py` | the Student Adapter, fit on the freshest labels before the consumer trains, supervising a second head |

`technique.py` says what a technique provides. Adding one: its config dataclass (knobs and their
`check`) in `transfer/config/techniques.py`, free of torch so a bad knob is answered before the heavy
imports, and a field of that type in the recipe's `StageConfig`; then a module here with `enabled`,
`tag` and `build`, named in `TECHNIQUES`.
"""

from __future__ import annotations

import dataclasses
from types import ModuleType

from torch import nn

from adapters import distillation, representation, sharing, student_adapter
from adapters.student_adapter import StudentAdapter
from adapters.technique import ConsumerShape, Technique, Trunk, scale_gradient

# StageConfig field → its module, in the order of the recipe schema (tags and loss terms follow it)
TECHNIQUES: dict[str, ModuleType] = {
    "distillation": distillation,
    "representation": representation,
    "sharing": sharing,
    "adapter": student_adapter,
}

__all__ = ["TECHNIQUES", "ConsumerShape", "StudentAdapter", "Technique", "Trunk", "build_techniques", "columns", "enabled", "is_vanilla_kd", "scale_gradient", "techniques_tag", "vanilla_kd"]


def enabled(stage) -> dict[str, object]:
    """The stage's enabled techniques: field name → its config."""
    return {name: getattr(stage, name) for name, module in TECHNIQUES.items() if module.enabled(getattr(stage, name))}


def vanilla_kd(stage):
    """The stage with standard knowledge distillation only (design §8, the gain ratio's reference): the
    soft-label loss on the serving head at the stage's weight (1 if it distils nothing), α = β = T = 1,
    and every other technique off."""
    return dataclasses.replace(stage, distillation=distillation.DistillationConfig(weight=stage.distillation.weight or 1.0, head="serving"),
                               representation=representation.RepresentationConfig(), sharing=sharing.SharingConfig(),
                               adapter=student_adapter.AdapterConfig())


def is_vanilla_kd(stage) -> bool:
    """Whether the stage's techniques are exactly standard knowledge distillation."""
    return list(enabled(stage)) == ["distillation"] and stage.distillation == vanilla_kd(stage).distillation


def techniques_tag(stage) -> str:
    """The enabled techniques as one MLflow tag value, e.g. `aux_kd,representation_cosine`."""
    return ",".join(TECHNIQUES[name].tag(cfg) for name, cfg in enabled(stage).items()) or "none"


def columns(stage) -> set[str]:
    """The knowledge columns the stage's techniques need in their batches."""
    return {column for technique in _built(stage) for column in technique.columns}


def _built(stage) -> list[Technique]:
    """The enabled techniques, constructed (no parameters yet: the hooks below create them)."""
    return [TECHNIQUES[name].build(cfg) for name, cfg in enabled(stage).items()]


def build_techniques(stage, producer: nn.Module, consumer: nn.Module, shape: ConsumerShape) -> list[Technique]:
    """The stage's techniques for one consumer: producer parts imported, then every technique's
    distillation heads and heads built in that order (see `adapters.technique`)."""
    built = _built(stage)
    for technique in built:
        technique.prepare(producer, consumer)
    for hook in ("distill_heads", "heads"):
        for technique in built:
            getattr(technique, hook)(shape)
    return built
