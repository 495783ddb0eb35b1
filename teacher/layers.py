"""Building blocks shared by teachers and vertical models: embeddings, history pooling, MLPs.

`FeatureEmbedding` and `EventEmbedding` meet the contract's `SharedFeatures` and `SharedEvents`
(`transfer.contract`): a model built on them can give and take shared parts."""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from transfer.contract import AGE_BUCKETS


class SharedTable(nn.Module):
    """An embedding table imported from a producer (parameter sharing): frozen or fine-tuned, and
    projected to the consumer's width when they differ. ids [...] → [..., dim]"""

    def __init__(self, weight: torch.Tensor, dim: int, freeze: bool):
        super().__init__()
        self.table = nn.Embedding.from_pretrained(weight.detach().clone(), freeze=freeze)  # [N, d_producer]
        self.project = nn.Linear(weight.shape[1], dim, bias=False) if weight.shape[1] != dim else nn.Identity()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.project(self.table(ids))


class EmbeddingFeature(nn.Module):
    """A producer's embedding of each id as an input to a consumer (embeddings as features): the ids'
    vectors looked up in a table of known ids (`keys` [U] sorted int64, a buffer; `vectors` [U, E], frozen
    weights: the serving model carries the table, and its parameters count it), a learned default vector for ids it does not
    know, the known flag beside it, projected to the consumer's width `dim` (linear, or through a
    hidden layer of `width`); a frozen projection stays the random map it starts as. ids [...] → [..., dim]"""

    def __init__(self, keys: torch.Tensor, vectors: torch.Tensor, dim: int, width: int = 0, freeze: bool = False):
        super().__init__()
        if len(keys) == 0:  # one row no id matches (ids are ≥ 0): every id gets the default
            keys, vectors = torch.tensor([-1]), torch.zeros(1, vectors.shape[1])
        self.register_buffer("keys", keys.to(torch.int64).contiguous())  # [U]
        # [U, E] frozen weights, like a frozen shared table: counted in the served VM's parameters (and its budget)
        self.vectors = nn.Parameter(vectors.to(torch.float16).contiguous(), requires_grad=False)
        self.default = nn.Parameter(torch.zeros(vectors.shape[1]))  # [E] for an id the table does not know
        n_in = vectors.shape[1] + 1  # the vector and the known flag
        self.project = nn.Linear(n_in, dim) if width == 0 else nn.Sequential(nn.Linear(n_in, width), nn.ReLU(), nn.Linear(width, dim))
        if freeze:
            self.project.requires_grad_(False)

    def looked_up(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The ids' vectors (the default where unknown) and whether each was known. ids [...] → ([..., E], [...] bool)"""
        flat = ids.reshape(-1).contiguous()
        where = torch.searchsorted(self.keys, flat).clamp(max=len(self.keys) - 1)  # [n]
        known = self.keys[where] == flat
        vectors = torch.where(known[:, None], self.vectors[where].to(self.default.dtype), self.default)  # [n, E], the training dtype
        return vectors.reshape(*ids.shape, -1), known.reshape(ids.shape)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        vectors, known = self.looked_up(ids)
        return self.project(torch.cat([vectors, known[..., None].to(vectors.dtype)], dim=-1))


class PooledVersions(nn.Module):
    """The same ids looked up in several producer versions' tables (newest first), each with its own
    lookup, default and projection (an `EmbeddingFeature`), pooled with learned weights (a softmax over
    the versions, equal at the start). ids [...] → [..., dim]"""

    def __init__(self, *versions: nn.Module):
        super().__init__()
        self.versions = nn.ModuleList(versions)
        self.weights = nn.Parameter(torch.zeros(len(versions)))  # [K] logits of each version's share

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        projected = torch.stack([version(ids) for version in self.versions], dim=-1)  # [..., dim, K]
        return projected @ torch.softmax(self.weights, dim=0).to(projected.dtype)  # [..., dim]


class AddedInputs(nn.Module):
    """Several modules' outputs on the same ids, summed (a feature taking a shared table and an
    embedding feature both). ids [...] → [..., dim]"""

    def __init__(self, *parts: nn.Module):
        super().__init__()
        self.parts = nn.ModuleList(parts)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return sum(part(ids) for part in self.parts)


class FeatureEmbedding(nn.Module):
    """Hashed categorical features → tokens, one table row range per feature.

    A feature's rows can be replaced by a producer's table (`import_table`); the fused lookup stays
    one gather for the others.

    >>> emb = FeatureEmbedding(n_features=10, buckets=8192, dim=16)
    >>> emb(torch.zeros(4, 10, dtype=torch.long)).shape
    torch.Size([4, 10, 16])
    """

    def __init__(self, n_features: int, buckets: int, dim: int):
        super().__init__()
        self.buckets = buckets
        self.table = nn.Embedding(n_features * buckets, dim)
        nn.init.normal_(self.table.weight, std=0.05)
        self.register_buffer("offsets", torch.arange(n_features) * buckets, persistent=False)
        self.imported = nn.ModuleDict()  # str(feature index) → SharedTable

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: [B, F] → [B, F, d]"""
        tokens = self.table(ids + self.offsets)  # [B, F, d]
        if not self.imported:
            return tokens
        columns = list(tokens.unbind(1))
        for feature, table in self.imported.items():
            columns[int(feature)] = columns[int(feature)] + table(ids[:, int(feature)])
        return torch.stack(columns, dim=1)

    def lookup(self, feature: int, ids: torch.Tensor) -> torch.Tensor:
        """Embed ids of one feature, any shape [...] → [..., d]"""
        own = self.table(ids + feature * self.buckets)
        if str(feature) in self.imported:
            return own + self.imported[str(feature)](ids)
        return own

    def export_table(self, feature: int) -> torch.Tensor:
        """One feature's rows, as a producer shares them. → [buckets, d]"""
        own = self.table.weight[feature * self.buckets : (feature + 1) * self.buckets].detach()
        if str(feature) in self.imported:
            return own + self.imported[str(feature)](torch.arange(self.buckets, device=own.device)).detach()
        return own

    def import_table(self, feature: int, weight: torch.Tensor, freeze: bool) -> None:
        """Add a producer's table [buckets, d_producer] (projected if widths differ) to `feature`'s own
        rows: the imported knowledge is a prior the consumer's own rows refine."""
        if weight.shape[0] != self.buckets:
            raise ValueError(f"the producer's table has {weight.shape[0]} rows, the consumer's {self.buckets} hash buckets")
        self.add_input(feature, SharedTable(weight, self.table.embedding_dim, freeze))

    def add_input(self, feature: int, part: nn.Module) -> None:
        """Add `part`'s output (ids [...] → [..., d]) to `feature`'s tokens, beside any added before."""
        key = str(feature)
        self.imported[key] = AddedInputs(self.imported[key], part) if key in self.imported else part


class EventEmbedding(nn.Module):
    """History events → tokens: ad + category (rows of the feature tables) + a context token.

    The context token embeds (surface, action, age bucket) jointly from one small table, and the ad
    and category rows come from one lookup, so the backward pass scatters into two tables, not five.
    """

    def __init__(self, features: FeatureEmbedding, n_surfaces: int, n_actions: int, dim: int, ad_feature: int, category_feature: int):
        super().__init__()
        self.features = features
        self.n_actions = n_actions
        self.ad_feature, self.category_feature = ad_feature, category_feature
        self.dim = dim
        self.n_contexts = n_surfaces * n_actions * AGE_BUCKETS
        self.register_buffer(
            "id_offsets", torch.tensor([ad_feature, category_feature]) * features.buckets, persistent=False
        )
        self.context = nn.Embedding(self.n_contexts, dim)
        nn.init.normal_(self.context.weight, std=0.05)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """→ [B, L, d]"""
        context = (batch["hist_surface"] * self.n_actions + batch["hist_action"]) * AGE_BUCKETS + batch["hist_age"]
        return self._items(batch["hist_ad"], batch["hist_category"]) + self.context(context)  # [B, L, d]

    def _items(self, ad: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        """ad, category: [B, L] → their embeddings summed [B, L, d], one fused gather unless imported."""
        if self.features.imported:
            return self.features.lookup(self.ad_feature, ad) + self.features.lookup(self.category_feature, category)
        ids = torch.stack([ad, category], dim=-1) + self.id_offsets  # [B, L, 2]
        return self.features.table(ids).sum(dim=-2)

    def export_context(self) -> torch.Tensor:
        """The (surface, action, age) context table. → [n_contexts, d]"""
        if isinstance(self.context, SharedTable):
            return self.context(torch.arange(self.n_contexts, device=self.context.table.weight.device)).detach()
        return self.context.weight.detach()

    def import_context(self, weight: torch.Tensor, freeze: bool) -> None:
        """Use a producer's context table [n_contexts, d_producer] (projected if widths differ)."""
        if weight.shape[0] != self.n_contexts:
            raise ValueError(f"the producer's context table has {weight.shape[0]} rows, the consumer's {self.n_contexts}")
        self.context = SharedTable(weight, self.dim, freeze)


class HistoryPooling(nn.Module):
    """Summarise a padded history: target attention (query = candidate ad), masked mean, last-k mean.

    Rows with an empty history get zeros. Output: [B, 3·d].
    """

    def __init__(self, dim: int, heads: int, recent: int):
        super().__init__()
        self.heads, self.recent = heads, recent
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)

    def forward(self, events: torch.Tensor, mask: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """events: [B, L, d], mask: [B, L] bool, target: [B, d] → [B, 3d]"""
        b, length, d = events.shape
        h = self.heads
        q = self.query(target).view(b, h, 1, d // h)  # [B, H, 1, d/H]
        k = self.key(events).view(b, length, h, d // h).transpose(1, 2)  # [B, H, L, d/H]
        v = self.value(events).view(b, length, h, d // h).transpose(1, 2)  # [B, H, L, d/H]
        scores = (q @ k.transpose(-1, -2)) / (d // h) ** 0.5  # [B, H, 1, L]
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
        weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # empty history → all zeros
        attended = (weights @ v).reshape(b, d)  # [B, d]
        maskf = mask.unsqueeze(-1).float()  # [B, L, 1]
        mean = (events * maskf).sum(1) / maskf.sum(1).clamp(min=1.0)  # [B, d]
        recent_mask = maskf[:, -self.recent :]
        recent = (events[:, -self.recent :] * recent_mask).sum(1) / recent_mask.sum(1).clamp(min=1.0)  # [B, d]
        return torch.cat([attended, mean, recent], dim=-1)


class TargetMatchCounts(nn.Module):
    """How often the user met the candidate before: history events with the same ad, and with the
    same category, counted overall and per action level (clicked, converted, …), log-scaled.

    Softmax attention averages and so cannot count; these counts give the trunk the "how many times
    did this user click this category" signal directly. Output: [B, d].
    """

    def __init__(self, n_actions: int, dim: int):
        super().__init__()
        self.n_actions = n_actions
        self.project = nn.Linear(2 * n_actions, dim)

    def forward(self, batch: dict[str, torch.Tensor], ad_id: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        """ad_id, category: [B] hashed ids of the candidate → [B, d]"""
        mask = batch["hist_mask"]  # [B, L]
        levels = torch.arange(self.n_actions, device=mask.device)  # [A]
        reached = batch["hist_action"].unsqueeze(-1) >= levels  # [B, L, A] event's action at least level a
        counts = []
        for hist, target in ((batch["hist_ad"], ad_id), (batch["hist_category"], category)):
            match = (hist == target.unsqueeze(1)) & mask  # [B, L]
            counts.append((match.unsqueeze(-1) & reached).sum(dim=1))  # [B, A]
        return self.project(torch.log1p(torch.cat(counts, dim=-1).float()))  # [B, d]


class HistoryAggregates(nn.Module):
    """The classic aggregates of a user's recent history that a standard CTR model is given: the past
    rate of each action level (share of the events clicked, converted, …), how many events there
    are (log-scaled against the window) and how recent the last one is (its age bucket), with a
    flag for an empty history. Output: [B, d].
    """

    def __init__(self, n_actions: int, history_length: int, dim: int):
        super().__init__()
        self.n_actions, self.history_length = n_actions, history_length
        self.project = nn.Linear(n_actions + 2, dim)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """→ [B, d] from hist_action, hist_age and hist_mask [B, L] (newest event last)."""
        return self.project(self.features(batch))

    def features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The raw aggregates [B, A + 2]: rates of levels 1 … A−1, log count, last event's age, empty."""
        mask = batch["hist_mask"]  # [B, L]
        count = mask.sum(dim=1, keepdim=True).float()  # [B, 1]
        levels = torch.arange(1, self.n_actions, device=mask.device)  # [A − 1]
        reached = (batch["hist_action"].unsqueeze(-1) >= levels) & mask.unsqueeze(-1)  # [B, L, A − 1]
        rates = reached.sum(dim=1).float() / count.clamp(min=1.0)  # [B, A − 1]
        size = torch.log1p(count) / math.log1p(max(self.history_length, 1))  # [B, 1] in [0, 1]; 0 with no history read
        if mask.shape[1] == 0:  # a model that reads no history (history_length 0): every row's is empty
            last_age = torch.zeros_like(count)
        else:
            last_age = torch.where(mask[:, -1], batch["hist_age"][:, -1], 0).float().unsqueeze(-1) / AGE_BUCKETS  # [B, 1]
        empty = (count == 0).float()  # [B, 1]
        return torch.cat([rates, size, last_age, empty], dim=-1)


def dense_projection(n_dense: int, dim: int) -> nn.Linear:
    """nn.Linear(n_dense, dim) for the dense features: [B, n_dense] → [B, dim]. With none (n_dense
    = 0) its output is its bias alone; built without torch's zero-element initialisation warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors is a no-op")
        return nn.Linear(n_dense, dim)


def mlp(sizes: list[int], dropout: float = 0.0) -> nn.Sequential:
    """Linear → ReLU (→ Dropout) stack over consecutive `sizes`; the last layer also gets ReLU."""
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=False):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)
