"""What a transfer technique is: one module of this package that declares everything about it.
Its top level imports no torch (the recipe's checks run before torch is imported); the hooks that
build or compute with tensors import it when called.

A technique module provides:

- `SUMMARY` (one line) and `SERVING` (what it costs the served model), for `gem-transfer ls techniques`;
- `KEY`: its key under a recipe's transfer stage (`transfer.stages.N.<KEY>`), and `Config`: its
  knobs, a dataclass with defaults and `check(key, window_days)` (raises `ValueError` naming
  `key.<field>`: `window_days` is the consumers' window);
- `enabled(stage)`, `tag(stage)` (its MLflow tag), `reference(stage)` (its config in the stage's
  vanilla-KD reference: standard distillation only), `columns(stage)` (the knowledge columns its
  batches need: `soft_logits`, `teacher_embedding`, or one it derives), `knobs(stage)` (what
  `gem-transfer tune` searches);

and, optionally, hooks into a consumer's training (every hook takes the whole `stage`, the recipe's
`StageConfig`, since a technique may read another's knob: the adapter's head uses distillation's β):

- `check_models(stage, producer, consumer)`: raise `ValueError` if it cannot apply to these built
  models, its message starting with the field at fault (`modules: …`; run by `gem-transfer validate`);
- `prepare(stage, producer, consumer)`: change the consumer model before training (sharing);
- `derive(stage, rows) -> Derived`: knowledge columns it computes from the joined knowledge before
  the consumer trains, and metrics about them (the Student Adapter's fit);
- `distill_heads(stage, shape)`, `heads(stage, shape)`: its training-only parameters, by name.
  Every technique's distillation heads (logits [B, T], whose bias starts at the task's base rate)
  are created first, then every other head: a fixed order, so a recipe's random initialisation
  never depends on which file a technique lives in;
- `loss(stage, heads, step) -> {name: weighted term}`: its part of one training step;
- `check_context(stage, producer, consumers, knowledge, age_days)`: raise `ValueError` (message starting
  with the field at fault) if it cannot apply to a stage of this producer and consumers (`teacher`,
  `domain_fms`, `students`) with this `transfer.knowledge`, its knowledge `age_days` old at the end of
  the consumers' window (None where the recipe does not fix it); run when the recipe is checked;
- `add_inputs(stage, consumer, source)`: give the consumer new inputs from its producer before
  training (embeddings as features), reading the producer's tables through a `FeatureSource`;
- `take_earlier_versions(stage, folders)`: in a continuous cycle, take the knowledge folders of the
  producer's earlier versions (the cycles before, newest first), setting its own knobs;
- `reads(stage, knobs, folder_content) -> dict`: its knobs as the consumer's stage key holds them, a
  knob that names a folder replaced by `folder_content(folder)` (its files' checksums), so the key
  follows the content, not the place;
- `check_cycle(stage, cycles, step_days, age_days)`: raise `ValueError` (message starting with the field
  at fault) if it cannot run through a continuous cycle of `cycles` cycles `step_days` apart, its
  producer's knowledge `age_days` old at the end of the consumers' window; run before the cycle trains.

The engine names no technique: it reaches them through `adapters.TECHNIQUES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class ConsumerShape:
    """The sizes a technique's heads depend on."""

    hidden_dim: int  # the consumer's hidden state (its `embedding`) [B, H]
    n_tasks: int  # the consumer's tasks [B, T]
    producer_dim: int  # the producer's stored embedding [B, E]
    n_surfaces: int  # the dataset's surfaces


@dataclass(frozen=True)
class Step:
    """What a technique's loss reads in one training step."""

    serving_logits: torch.Tensor  # [B, T] the consumer's serving head
    hidden: torch.Tensor  # [B, H] the consumer's hidden state (its trunk's output)
    batch: dict[str, torch.Tensor]  # the batch, with the knowledge columns the techniques asked for


@dataclass(frozen=True)
class KnowledgeRows:
    """A consumer's training rows with its producer's knowledge joined: what `derive` reads."""

    log: object  # the encoded log (`transfer.data.encoding.EncodedLog`)
    rows: torch.Tensor  # [n] the consumer's rows of the log
    logits: torch.Tensor  # [n, T] the producer's logits for them
    labels: torch.Tensor  # [n, T] their labels for the consumer's tasks (NaN = none)
    age_days: torch.Tensor  # [n] float, each row's knowledge age: days between the end of what the producer saw and the row
    window_end: datetime  # the end of the consumers' window
    n_surfaces: int
    seed: int


@dataclass(frozen=True)
class FeatureSource:
    """What `add_inputs` reads of a consumer's producer: its embedding table of one id feature over its
    last days (`table(feature name, days)`, made once and reused) and its earlier versions' (`earlier_table`), its cutoff, the consumers' window's start, and the age of what it
    knows at the end of the consumers' window, and how to refuse a setting (`refusal(field, message)`
    → the exception to raise, naming the stage's key)."""

    table: Callable[[str, int], object]  # → a `transfer.knowledge.embedding_table.EmbeddingTable` (keys [U], vectors [U, E])
    cutoff: datetime
    consumers_start: datetime  # the start of the consumers' window
    age_days: float
    refusal: Callable[[str, str], Exception]
    # an earlier producer version's table of one feature over its last days, read from its knowledge folder
    # (`earlier_table(folder, feature name, days)`), refused in one line when missing or another producer's
    earlier_table: Callable[[str, str, int], object] | None = None
    consumers_end: datetime | None = None  # the end of the consumers' window (the ages are measured there)


@dataclass(frozen=True)
class Derived:
    """Knowledge columns a technique computed ([n, …] each, by name) and metrics about them."""

    columns: dict[str, torch.Tensor] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Knob:
    """One value `gem-transfer tune` searches: its key under the stage (e.g. `distillation.weight`) and range."""

    key: str
    low: float
    high: float
    log: bool = True
    whole: bool = False  # a whole number (epochs, steps) from low to high, both included

    def suggest(self, trial) -> float:
        """This trial's value (an `optuna.Trial`)."""
        if self.whole:
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, log=self.log)


def scale_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity forward (exactly `x`); the gradient flowing back through it is multiplied by `scale`
    (β: how much a training-only head teaches the trunk). [*] → [*]"""
    if scale == 1.0:
        return x
    frozen = x.detach()
    return frozen + (x - frozen) * scale
