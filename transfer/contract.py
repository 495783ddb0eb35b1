"""The model contract: what every model — teacher, domain FM or vertical model (VM) — meets, written once.

This is the one module a team writing a model reads. It imports only torch and the standard library,
and model packages (`teacher/`, `students/`, `domain_fms/`, a team's own) import nothing else of
the engine. It holds:
- the data a builder is given: `InputSpec`, the feature positions (`AD_FEATURE`, `CATEGORY_FEATURE`)
  and `AGE_BUCKETS`;
- the batch a model's forward receives: `MODEL_INPUTS` (and `ENGINE_COLUMNS`, which it must not read);
- what a model is: `RankingModel` (a `typing.Protocol`), returning a `ModelOutput`; `RankingModelBase`
  sets its attributes once;
- how a model is catalogued: `ModelEntry` (a builder path and default sizes) and, for VMs, `ServingBudget`;
- the loss every model trains with: `label_loss` (labels may be NaN where a task is missing for a row).

A builder is a function `builder(inputs: InputSpec, *, size: type, ...) -> RankingModel` with typed
keyword sizes; `ModelEntry.builder` names it as "package.module:function".
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch
from torch import nn

ID_FEATURES = ("user_id", "ad_id", "ad_category")  # always the first categorical features, in this order
AD_FEATURE, CATEGORY_FEATURE = 1, 2  # their positions; history events reuse these vocabularies
AGE_BUCKETS = 16  # history event age, log2(1 + hours) buckets: `hist_age` is in [0, AGE_BUCKETS)

# The batch keys a model's forward may read (B rows, F categorical features, D dense, L history events,
# newest last, left-padded). Every batch the engine gives a model holds them; a served VM gets only these.
MODEL_INPUTS: Mapping[str, str] = MappingProxyType({
    "categorical": "[B, F] int64: hashed ids in [0, hash_buckets), the ID_FEATURES first, then the dataset's own",
    "dense": "[B, D] float32: the dataset's dense features (signed log1p), then its running counters (transfer.data.counters)",
    "surface": "[B] int64: the surface the impression was shown on, in [0, n_surfaces)",
    "hist_ad": "[B, L] int64: each history event's ad id (the vocabulary of categorical[:, AD_FEATURE]); 0 where padded",
    "hist_category": "[B, L] int64: each event's ad category (the vocabulary of categorical[:, CATEGORY_FEATURE]); 0 where padded",
    "hist_surface": "[B, L] int64: each event's surface; 0 where padded",
    "hist_action": "[B, L] int64: 0 seen, k = 1 + the last positive task's index, in [0, n_tasks + 1); 0 where padded",
    "hist_age": "[B, L] int64: log2(1 + hours before the impression), in [0, AGE_BUCKETS); 0 where padded",
    "hist_mask": "[B, L] bool: True where an event exists",
})

# Batch keys that are the engine's, not model inputs: a model's forward must not read them.
ENGINE_COLUMNS: Mapping[str, str] = MappingProxyType({
    "row": "[B] int64: the rows' indices in the encoded log",
    "labels": "[B, T] float32: the true labels, NaN where missing",
    "soft_logits": "[B, T] float32: knowledge, the producer's logits (consumers only)",
    "teacher_embedding": "[B, E_producer] float32: knowledge, the producer's embedding (consumers only)",
    "adapted_logits": "[B, T] float32: the producer's logits corrected by the Student Adapter (Student Adapter only)",
})


@dataclass(frozen=True)
class InputSpec:
    """What a model builder needs to know about the data: typed sizes, no config objects."""

    n_categorical: int  # F
    n_dense: int  # D
    n_surfaces: int
    n_tasks: int  # T of the data; history actions take n_tasks + 1 values
    hash_buckets: int
    categorical_names: tuple[str, ...] = ()  # names of the F categorical features, in order


class ModelOutput(NamedTuple):
    """What every ranking model returns."""

    logits: torch.Tensor  # [B, T] one logit per task it serves
    embedding: torch.Tensor  # [B, E] the representation stored as knowledge / aligned by students


@runtime_checkable
class SharedFeatures(Protocol):
    """A model's categorical feature tables, as parameter sharing exports and imports them."""

    def export_table(self, feature: int) -> torch.Tensor:
        """One feature's rows. → [hash_buckets, d]"""
        ...

    def import_table(self, feature: int, weight: torch.Tensor, freeze: bool) -> None:
        """Add a producer's table [hash_buckets, d_producer] to `feature`'s rows (projected if widths differ)."""
        ...


@runtime_checkable
class SharedEvents(Protocol):
    """A model's history-event context table ((surface, action, age) → token), as sharing moves it."""

    def export_context(self) -> torch.Tensor:
        """→ [n_surfaces · (n_tasks + 1) · AGE_BUCKETS, d]"""
        ...

    def import_context(self, weight: torch.Tensor, freeze: bool) -> None:
        """Use a producer's context table [n_contexts, d_producer] (projected if widths differ)."""
        ...


@runtime_checkable
class RankingModel(Protocol):
    """What the engine reads of a model (an `nn.Module`); `teacher.layers` has building blocks that meet it.

    - `forward(batch)`: batch holds `MODEL_INPUTS` (and `ENGINE_COLUMNS`, unread) → `ModelOutput`
      with logits [B, T] (T = the tasks it serves: every task for a teacher or domain FM, one for a
      VM) and embedding [B, embedding_dim];
    - `embedding_dim`: E, the width of `ModelOutput.embedding` (stored as knowledge, aligned by students);
    - `history_length`: L, how many history events the batches it gets hold;
    - `feature_names`: the F categorical features' names (sharing's `embeddings.<name>` parts);
    - `features`, `events`: the feature and event-context tables (`SharedFeatures`, `SharedEvents`);
    - `output_layer()`: the `nn.Linear` producing the logits (its bias starts at the base rates' logits);
    - `module_parts()`: named modules a consumer may import by name (parameter sharing); may be empty.

    Optionally, a one-logit model (a VM) with a linear term on raw features beside its deep part
    (wide & deep) has `wide` (that `nn.Linear`, no bias, into the logit) and `wide_features(batch)`
    ([B, W], what it reads): training then starts it at the logistic regression on those features
    (`transfer.training.wide_start`). Every VM keeps its best epoch on the validation window, its
    start counted as epoch 0 (`transfer.training.best_epoch`).
    """

    embedding_dim: int
    history_length: int
    feature_names: list[str]
    features: SharedFeatures
    events: SharedEvents

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput: ...

    def output_layer(self) -> nn.Linear: ...

    def module_parts(self) -> dict[str, nn.Module]: ...


class RankingModelBase(nn.Module):
    """An `nn.Module` holding the attributes `RankingModel` declares, set once: a model calls
    `super().__init__(...)` before building its layers (no parameter is created here), then
    defines `forward`, `output_layer`, `module_parts`, `features` and `events`."""

    def __init__(self, *, history_length: int, embedding_dim: int, feature_names: Sequence[str], n_categorical: int):
        super().__init__()
        self.history_length = history_length
        self.embedding_dim = embedding_dim
        self.feature_names = list(feature_names) or [f"feature_{i}" for i in range(n_categorical)]  # names, or feature_<i>


class BuilderError(LookupError):
    """A catalog entry's builder path does not name an importable function; the message says which."""


@dataclass(frozen=True)
class ServingBudget:
    """What a vertical model may cost in serving: parameters, and the p99 latency (ms) of scoring one
    request of 1,000 candidates on one CPU core."""

    max_params: int
    max_p99_ms: float

    def violations(self, params: int, p99_ms: float) -> list[str]:
        """One line per limit exceeded, saying by how much; empty when within budget."""
        found = []
        if params > self.max_params:
            found.append(f"parameters {params:,} exceed the budget of {self.max_params:,} by {params - self.max_params:,} "
                         f"({100 * (params / self.max_params - 1):.0f}%)")
        if p99_ms > self.max_p99_ms:
            found.append(f"p99 latency {p99_ms:.2f} ms exceeds the budget of {self.max_p99_ms:g} ms by "
                         f"{p99_ms - self.max_p99_ms:.2f} ms ({100 * (p99_ms / self.max_p99_ms - 1):.0f}%)")
        return found


@dataclass(frozen=True)
class ModelEntry:
    """One catalogued model. `builder` is "package.module:function" (or "package.module.function");
    the function takes the data's `InputSpec` first, then keyword sizes (typed), and returns the model."""

    name: str
    builder: str
    sizes: Mapping[str, Any] = field(default_factory=dict)
    surfaces: tuple[str, ...] = ()
    task: str | None = None
    owner: str = "gem-transfer"
    budget: ServingBudget | None = None
    description: str = ""

    def __post_init__(self):
        object.__setattr__(self, "sizes", MappingProxyType(dict(self.sizes)))
        object.__setattr__(self, "surfaces", tuple(self.surfaces))

    def builder_function(self) -> Callable[..., nn.Module]:
        return resolve_builder(self.builder)

    def build(self, inputs: InputSpec, sizes: Mapping[str, Any] | None = None) -> nn.Module:
        """The model, built at the entry's default sizes with `sizes` overriding some of them."""
        return self.builder_function()(inputs, **{**self.sizes, **(sizes or {})})

    def size_names(self) -> list[str]:
        """The keyword sizes the builder accepts."""
        params = list(inspect.signature(self.builder_function()).parameters.values())[1:]
        return [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]

    def summary(self) -> str:
        served = f"{'/'.join(self.surfaces)} × {self.task}" if self.surfaces else ""
        sizes = ", ".join(f"{k}={v}" for k, v in self.sizes.items())
        budget = f"; budget ≤ {self.budget.max_params:,} params, p99 ≤ {self.budget.max_p99_ms:g} ms" if self.budget else ""
        parts = [served, f"{self.builder}({sizes})", f"owner {self.owner}"]
        return f"{self.name}: " + ", ".join(p for p in parts if p) + budget


def resolve_builder(path: str) -> Callable[..., nn.Module]:
    """"pkg.module:function" or "pkg.module.function" → the function; a `BuilderError` if it is not there."""
    module_name, _, attribute = path.partition(":") if ":" in path else path.rpartition(".")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except Exception as error:  # a third-party module may fail to import in any way: name it, one line
        raise BuilderError(f"builder '{path}' cannot be imported: {type(error).__name__}: {error}") from None
    if not callable(function):
        raise BuilderError(f"builder '{path}' is not a function")
    return function


def label_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean BCE over the labelled entries. logits, labels: [B, T] (NaN = no label) → scalar."""
    known = ~torch.isnan(labels)
    if not known.any():
        return logits.sum() * 0.0
    return nn.functional.binary_cross_entropy_with_logits(logits[known], labels[known])
