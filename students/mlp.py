"""Small vertical models: hashed features + a short history (pooled, and its classic aggregates:
past action rates, length, recency) → MLP → one serving logit. The same architecture with one output per
task and the teacher's history is the "scaled VM" teacher, the reference a teacher must not fall below."""

from __future__ import annotations

import torch
from torch import nn

from teacher.layers import EventEmbedding, FeatureEmbedding, HistoryAggregates, HistoryPooling, dense_projection, mlp
from transfer.contract import AD_FEATURE, CATEGORY_FEATURE, InputSpec, ModelOutput, RankingModelBase


class MLPVerticalModel(RankingModelBase):
    """One surface × task (a `transfer.contract.RankingModel`): logits [B, outputs] (the serving head; one for a VM),
    embedding [B, hidden[-1]]."""

    def __init__(
        self,
        *,
        n_categorical: int,
        n_dense: int,
        n_surfaces: int,
        n_actions: int,
        hash_buckets: int,
        dim: int,
        history_length: int,
        hidden: list[int],
        aggregates: bool = True,
        wide: bool = True,
        feature_names: tuple[str, ...] = (),
        outputs: int = 1,
    ):
        super().__init__(history_length=history_length, embedding_dim=hidden[-1], feature_names=feature_names,
                         n_categorical=n_categorical)
        self.features = FeatureEmbedding(n_categorical, hash_buckets, dim)
        self.events = EventEmbedding(self.features, n_surfaces, n_actions, dim, AD_FEATURE, CATEGORY_FEATURE)
        self.pooling = HistoryPooling(dim, heads=1, recent=min(4, history_length))
        self.dense = dense_projection(n_dense, dim)
        self.aggregates = HistoryAggregates(n_actions, history_length, dim) if aggregates else None
        self.trunk = mlp([(n_categorical + 1) * dim + (4 if aggregates else 3) * dim, *hidden])
        self.head = nn.Linear(hidden[-1], outputs)
        # wide & deep: a linear term on the dense features and the history's raw aggregates straight into the
        # logit, so the VM holds the logistic regression on them that a small slice can fit without overfitting
        self.wide = nn.Linear(n_dense + (n_actions + 2 if aggregates else 0), outputs, bias=False) if wide else None
        if self.wide is not None:
            nn.init.zeros_(self.wide.weight)  # neutral until started: an unstarted VM still predicts its base rate

    def wide_features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """What the wide term reads: the dense features and the raw history aggregates. → [B, D (+ A + 2)]"""
        raw = [batch["dense"], *([self.aggregates.features(batch)] if self.aggregates is not None else [])]
        return torch.cat(raw, dim=-1)

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        tokens = self.features(batch["categorical"])  # [B, F, d]
        target = tokens[:, AD_FEATURE] + tokens[:, CATEGORY_FEATURE]  # [B, d]
        history = [self.pooling(self.events(batch), batch["hist_mask"], target)]  # [B, 3d]
        if self.aggregates is not None:
            history.append(self.aggregates(batch))  # [B, d]
        hidden = self.trunk(torch.cat([tokens.flatten(1), self.dense(batch["dense"]), *history], dim=-1))  # [B, H]
        logits = self.head(hidden)  # [B, outputs]
        if self.wide is not None:
            logits = logits + self.wide(self.wide_features(batch))
        return ModelOutput(logits, hidden)

    def output_layer(self) -> nn.Linear:
        return self.head

    def module_parts(self) -> dict[str, nn.Module]:
        return {"history.pooling": self.pooling}


MLP_VM_SIZES = {
    "xs": {"dim": 4, "history_length": 8, "hidden": [32]},  # the smallest VM
    "s": {"dim": 8, "history_length": 16, "hidden": [64, 32]},  # the default VM
    "m": {"dim": 16, "history_length": 32, "hidden": [128, 64]},  # a larger VM
}


def mlp_vm(inputs: InputSpec, *, dim: int, history_length: int, hidden: list[int], aggregates: bool = True,
           wide: bool = True) -> MLPVerticalModel:
    """An MLP vertical model: `dim`-wide embeddings, the last `history_length` events (pooled and, with
    `aggregates`, summarised as past action rates, length and recency), MLP `hidden`; with `wide`, a
    linear term on the dense features and raw aggregates into its logit (wide & deep), which training
    starts at their logistic regression (`transfer.training.wide_start`)."""
    return _mlp_model(inputs, dim, history_length, hidden, aggregates, wide, outputs=1)


def scaled_vm_teacher(inputs: InputSpec, *, dim: int, history_length: int, hidden: list[int]) -> MLPVerticalModel:
    """The VM architecture as a teacher (one output per task, trained on the teacher's data and window
    with the teacher's longer history): the reference a teacher must beat to know more than a VM
    scaled up to its data would."""
    return _mlp_model(inputs, dim, history_length, hidden, aggregates=True, wide=True, outputs=inputs.n_tasks)


def _mlp_model(inputs: InputSpec, dim: int, history_length: int, hidden: list[int], aggregates: bool, wide: bool,
               outputs: int) -> MLPVerticalModel:
    return MLPVerticalModel(
        n_categorical=inputs.n_categorical,
        n_dense=inputs.n_dense,
        n_surfaces=inputs.n_surfaces,
        n_actions=inputs.n_tasks + 1,
        hash_buckets=inputs.hash_buckets,
        dim=dim,
        history_length=history_length,
        hidden=list(hidden),
        aggregates=aggregates,
        wide=wide,
        feature_names=inputs.categorical_names,
        outputs=outputs,
    )
