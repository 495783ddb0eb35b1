"""Parameter sharing (design §8): a consumer imports named modules of its producer.

Part names, the same for every model that has them:
- `embeddings.<feature>`: one categorical feature's hashed table (projected if widths differ);
- `events.context`: the history events' (surface, action, age) table (projected likewise);
- the model's named modules (`history.pooling`, …): weights copied, shapes must match.
Imported tables are added to the consumer's own rows for that feature (the import is a prior the
consumer refines); frozen imports keep their values exactly (no gradient, not in the optimizer).
What a model offers for this (`feature_names`, `features`, `events`, `module_parts()`) is part of
the model contract, `transfer.contract.RankingModel`. `gem-transfer ls sharing` lists the parts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from adapters.technique import Knob

if TYPE_CHECKING:
    import torch
    from torch import nn

    from transfer.contract import RankingModel

KEY = "sharing"
SUMMARY = "named producer parts (embedding tables, modules) imported, frozen or fine-tuned"
SERVING = "the imported parts' parameters (and a projection where widths differ) are in the served VM"


@dataclass
class SharingConfig:
    """Producer modules the consumer imports (see `gem-transfer ls sharing`)."""

    modules: list[str] = field(default_factory=list)  # e.g. [embeddings.ad_id, history.pooling]
    freeze: bool = True  # true: the imported parts stay as the producer trained them; false: the consumer trains them on

    def check(self, key: str, window_days: int) -> None:
        """Nothing here: the names are checked against the built producer and consumer (`check_models`)."""


Config = SharingConfig  # every technique's knobs go by this name (`adapters.technique`)


def enabled(stage) -> bool:
    return bool(stage.sharing.modules)


def tag(stage) -> str:
    return "sharing" + ("_frozen" if stage.sharing.freeze else "")


def reference(stage) -> Config:
    return Config()  # off


def columns(stage) -> tuple[str, ...]:
    return ()  # it needs no knowledge: the producer's parts themselves


def knobs(stage) -> list[Knob]:
    return []  # which parts it shares is a choice, not a knob


def check_models(stage, producer: RankingModel, consumer: RankingModel) -> None:
    """The named parts exist on both models and fit (a `SharingError` says which does not)."""
    try:
        share_parts(producer, consumer, list(stage.sharing.modules), stage.sharing.freeze)
    except SharingError as exc:
        raise SharingError(f"modules: {exc}") from None


def prepare(stage, producer: RankingModel, consumer: RankingModel) -> None:
    """Import the producer's parts into the consumer before training."""
    share_parts(producer, consumer, list(stage.sharing.modules), stage.sharing.freeze)


class SharingError(ValueError):
    """A part cannot be shared; the message says which and why."""


def part_names(model: RankingModel) -> list[str]:
    """Every part `model` can give or take."""
    return [*(f"embeddings.{name}" for name in model.feature_names), "events.context", *model.module_parts()]


def share_parts(producer: RankingModel, consumer: RankingModel, names: list[str], freeze: bool) -> None:
    """Import `names` from `producer` into `consumer`; a `SharingError` names any part that cannot be."""
    for name in names:
        _check_name(name, producer, "producer")
        _check_name(name, consumer, "consumer")
        try:
            _import(consumer, name, _export(producer, name), freeze)
        except ValueError as exc:
            raise SharingError(f"'{name}' cannot fit: {exc}") from None


def _check_name(name: str, model: RankingModel, role: str) -> None:
    available = part_names(model)
    if name not in available:
        raise SharingError(f"the {role} ({type(model).__name__}) has no part '{name}'; available: {', '.join(available)}")


def _export(model: RankingModel, name: str) -> torch.Tensor | nn.Module:
    if name.startswith("embeddings."):
        return model.features.export_table(model.feature_names.index(name.removeprefix("embeddings.")))
    if name == "events.context":
        return model.events.export_context()
    return model.module_parts()[name]


def _import(model: RankingModel, name: str, part: torch.Tensor | nn.Module, freeze: bool) -> None:
    if name.startswith("embeddings."):
        model.features.import_table(model.feature_names.index(name.removeprefix("embeddings.")), part, freeze)
    elif name == "events.context":
        model.events.import_context(part, freeze)
    else:
        _copy_module(part, model.module_parts()[name], freeze)


def _copy_module(source: nn.Module, target: nn.Module, freeze: bool) -> None:
    theirs, ours = source.state_dict(), target.state_dict()
    mismatched = [
        f"{key} {list(theirs[key].shape)} vs {list(ours[key].shape)}"
        for key in ours
        if key in theirs and theirs[key].shape != ours[key].shape
    ]
    if mismatched or theirs.keys() != ours.keys():
        detail = "; ".join(mismatched) or "different parameters"
        raise ValueError(f"producer vs consumer shapes differ ({detail}); only embedding tables are projected")
    target.load_state_dict(theirs)
    for parameter in target.parameters():
        parameter.requires_grad_(not freeze)
