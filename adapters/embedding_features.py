"""Embeddings as features (design §8): the producer's embedding of each user (and, with `ads`, of each
ad) becomes an input of the consumer.

The producer writes one embedding table per id feature (`transfer.knowledge.embedding_table`): an
id's vector is the mean of the producer's embeddings of that id's impressions over its last `days`
days before its cutoff, scored as it was at the cutoff. The consumer looks its rows' ids up in the
table (`teacher.layers.EmbeddingFeature`): an id the table does not know gets a learned default
vector, with a known flag beside it; the vector is projected to the width of the consumer's id
tokens and added to that id's token, so the user's (the ad's) representation is its own id
embedding plus what the producer knew of it. The table, its lookup and the projection are part of
the serving model: the VM's parameters (the table's vectors are frozen weights), FLOPs, measured
latency and serving budget include them; the table's memory per million ids is `table_bytes_per_million`.

With `versions: K` the consumer takes the id's vectors from up to K newest producer versions — this
run's producer and the K − 1 before it (LoopFM's embeddings from successive cycles): `gem-transfer
cycle` passes each cycle the knowledge folders of the cycles before it (`earlier`, newest first), and
the consumer pools the versions that exist (one in a plain run and in the first cycle, then more as
cycles pass). Each version has its own lookup, default and projection; the projections are pooled
with learned weights (`teacher.layers.PooledVersions`). An earlier version counts in the consumer's
stage key by its content (its tables' checksums), not by its folder.

Knowledge as a feature has an age, as soft labels do: `max_age_days` refuses a table whose
producer's cutoff is older than that at the end of the consumers' window. The producer must not have
trained on the consumers' rows (its table would hold what their labels taught it): the technique
needs the teacher as producer, the students as consumers and knowledge scored in a separate pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from adapters.technique import FeatureSource, Knob
from transfer.util.checks import check_non_negative, check_positive

if TYPE_CHECKING:
    from torch import nn

KEY = "embedding_features"
KEY_BYTES = 8  # an int64 id per table row
SUMMARY = "the producer's embedding of each user (and ad) as an input feature of the consumer"


@dataclass
class EmbeddingFeaturesConfig:
    """Feed the producer's embedding of each user (and ad) into the consumer as an input feature."""

    enabled: bool = False  # true: the consumer takes the producer's embedding of each user as an input (teacher → students only)
    ads: bool = False  # also the ad's embedding, added to the ad's token (its history events' too)
    days: int = 7  # the producer's last days before its cutoff whose impressions make each id's vector
    width: int = 0  # a hidden layer of this width in the projection (0: one linear map)
    freeze: bool = False  # true: the projection stays the random map it starts as (the default vector still learns)
    max_age_days: int | None = None  # refuse a table whose cutoff is older than this at the consumers' window end
    versions: int = 1  # the newest producer versions whose vectors the consumer pools (>1: successive cycles of `gem-transfer cycle`)
    earlier: list[str] = field(default_factory=list)  # knowledge folders of earlier producer versions, newest first (`gem-transfer cycle` sets it)

    def check(self, key: str, window_days: int) -> None:
        check_positive(f"{key}.days", self.days)
        check_non_negative(f"{key}.width", self.width)
        if isinstance(self.versions, bool) or not (isinstance(self.versions, int) and self.versions >= 1):
            raise ValueError(f"{key}.versions: found {self.versions}; allowed: a whole number >= 1")
        if len(self.earlier) > self.versions - 1:
            raise ValueError(f"{key}.earlier: found {len(self.earlier)} folders with versions {self.versions}; "
                             f"allowed: at most versions - 1 = {self.versions - 1}")
        if len(set(self.earlier)) != len(self.earlier):
            raise ValueError(f"{key}.earlier: found a folder twice; allowed: each earlier version's folder once, newest first")
        if self.max_age_days is not None:
            check_non_negative(f"{key}.max_age_days", self.max_age_days)


Config = EmbeddingFeaturesConfig  # every technique's knobs go by this name (`adapters.technique`)


def enabled(stage) -> bool:
    return stage.embedding_features.enabled


def tag(stage) -> str:
    cfg = stage.embedding_features
    return ("embedding_features_user_ad" if cfg.ads else "embedding_features_user") + (f"_v{cfg.versions}" if cfg.versions > 1 else "")


def reference(stage) -> Config:
    return Config()  # off


def columns(stage) -> tuple[str, ...]:
    return ()  # an input of the model, looked up by id: no knowledge column


def knobs(stage) -> list[Knob]:
    return []  # its knobs are choices (which ids, width, frozen), not a range to search


def features(stage) -> tuple[str, ...]:
    """The id features whose embeddings the consumer takes."""
    return ("user_id", "ad_id") if stage.embedding_features.ads else ("user_id",)


def table_bytes_per_million(embedding_dim: int) -> int:
    """What one table holds per million ids: a float16 vector of `embedding_dim` and an int64 key each."""
    return 1_000_000 * (2 * embedding_dim + KEY_BYTES)


SERVING = ("a lookup, its table and a projection in the served VM (in its parameters, FLOPs, p99 and budget); the table: 2·E + 8 bytes "
           f"per id, {table_bytes_per_million(64) / 1e6:.0f} MB per million users at E = 64 (the skeleton teachers' embedding); "
           "K of each with `versions: K`")


def check_context(stage, producer: str, consumers: str, knowledge: str, age_days: float | None) -> None:
    """Only a producer that never trained on the consumers' rows can give their inputs, and no older
    than `max_age_days` when the recipe fixes its age (`age_days` at the consumers' window end; None
    when it does not) — a `ValueError` naming the field."""
    cfg = stage.embedding_features
    if cfg.max_age_days is not None and age_days is not None and age_days > cfg.max_age_days:
        raise ValueError(f"max_age_days: {cfg.max_age_days} refuses the embeddings this recipe makes: the teacher's cutoff is "
                         f"{age_days:g} days before the consumers' window ends (transfer.staleness_days + data.student.days); "
                         f"allowed: max_age_days >= {age_days:g}")
    if producer != "teacher":
        raise ValueError(f"enabled: found true on a stage {producer} → {consumers}; allowed: only teacher → students "
                         "(a domain FM trains on its VMs' window, so its table would hold what their labels taught it)")
    if consumers != "students":
        raise ValueError(f"enabled: found true on a stage {producer} → {consumers}; allowed: only teacher → students "
                         "(the served VMs take the inputs; a domain FM warm-started on the teacher's window would train on rows its table was made from)")
    if knowledge != "separate":
        raise ValueError(f"enabled: found true with transfer.knowledge '{knowledge}'; allowed: 'separate' (a teacher that "
                         "trains on through the consumers' window would put their labels into their inputs)")


def check_models(stage, producer, consumer) -> None:
    if not hasattr(getattr(consumer, "features", None), "add_input"):
        raise ValueError(f"enabled: the consumer {type(consumer).__name__} has no feature tables to add the embeddings to "
                         "(a `features` with `add_input`, teacher.layers.FeatureEmbedding)")


def reads(stage, knobs: dict, folder_content: Callable[[Path], object]) -> dict:
    """The knobs in the consumer's stage key: each earlier folder as its content (the checksums of the
    tables it holds, `folder_content`), wherever the folder is."""
    return knobs | {"earlier": [folder_content(Path(folder)) for folder in knobs["earlier"]]}


def check_cycle(stage, cycles: int, step_days: float, age_days: float) -> None:
    """Under `gem-transfer cycle` the earlier versions are the cycle's own: a hand-set `earlier` is
    refused, and so is a `max_age_days` the oldest pooled version would exceed in the last cycle."""
    cfg = stage.embedding_features
    if cfg.earlier:
        raise ValueError(f"earlier: found {len(cfg.earlier)} folder(s); under gem-transfer cycle each cycle's earlier versions are "
                         "the cycles before it; allowed: an empty list")
    oldest = age_days + min(cycles - 1, cfg.versions - 1) * step_days
    if cfg.max_age_days is not None and oldest > cfg.max_age_days:
        raise ValueError(f"max_age_days: {cfg.max_age_days} refuses the embeddings this cycle pools: by cycle {cycles - 1} the oldest of "
                         f"its {min(cycles, cfg.versions)} versions is {oldest:g} days old at the end of the consumers' window; "
                         f"allowed: max_age_days >= {oldest:g}, or fewer versions")


def take_earlier_versions(stage, folders: list[str]) -> None:
    """With `versions` K > 1, the K − 1 newest earlier versions' knowledge folders become `earlier`."""
    cfg = stage.embedding_features
    if cfg.versions > 1:
        cfg.earlier = list(folders[: cfg.versions - 1])


def add_inputs(stage, consumer: nn.Module, source: FeatureSource) -> None:
    """Look each configured id up in the producer's table (and, with `versions`, in its earlier versions'
    tables) and add its projection to that id's token."""
    from teacher.layers import EmbeddingFeature, PooledVersions

    cfg = stage.embedding_features
    if source.cutoff > source.consumers_start:
        raise source.refusal(f"{KEY}.enabled", f"the producer's cutoff ({source.cutoff.isoformat()}) is after the consumers' window "
                             f"starts ({source.consumers_start.isoformat()}): its table would hold what their labels taught it; "
                             "allowed: a producer window that ends where the consumers' begins, or earlier")
    if cfg.max_age_days is not None and source.age_days > cfg.max_age_days:
        raise source.refusal(f"{KEY}.max_age_days", f"the producer's embeddings (cutoff {source.cutoff.isoformat()}) are "
                             f"{source.age_days:.1f} days old at the end of the consumers' window; allowed: {cfg.max_age_days}")
    dim = consumer.features.table.embedding_dim
    for name in features(stage):
        table = source.table(name, cfg.days)
        lookups = [EmbeddingFeature(table.keys, table.vectors, dim, cfg.width, cfg.freeze)]
        earlier = [_earlier_table(source, cfg, folder, name, table) for folder in cfg.earlier]  # the versions that exist
        lookups += [EmbeddingFeature(t.keys, t.vectors, dim, cfg.width, cfg.freeze) for t in earlier]
        consumer.features.add_input(consumer.feature_names.index(name), lookups[0] if len(lookups) == 1 else PooledVersions(*lookups))


def _earlier_table(source: FeatureSource, cfg: Config, folder: str, name: str, current):
    """An earlier producer version's table of feature `name` (same days) in its knowledge `folder`,
    refused unless its cutoff is before the current version's and, with `max_age_days`, young enough."""
    older = source.earlier_table(folder, name, cfg.days)  # refused in one line when missing or another producer's
    cutoff = datetime.fromisoformat(older.provenance.cutoff)
    if cutoff >= source.cutoff:
        raise source.refusal(f"{KEY}.earlier", f"{folder}: its table's cutoff ({cutoff.isoformat()}) is not before this producer's "
                             f"({source.cutoff.isoformat()}); allowed: knowledge folders of earlier versions of the producer")
    age = (source.consumers_end - cutoff).total_seconds() / 86400
    if cfg.max_age_days is not None and age > cfg.max_age_days:
        raise source.refusal(f"{KEY}.max_age_days", f"an earlier version's embeddings ({folder}, cutoff {cutoff.isoformat()}) are "
                             f"{age:.1f} days old at the end of the consumers' window; allowed: {cfg.max_age_days}")
    if older.dim != current.dim:
        raise source.refusal(f"{KEY}.earlier", f"{folder}: its table's width is {older.dim}; allowed: this producer's, {current.dim}")
    return older
