"""The counting baseline: what target-match counts give without the history's order."""

from __future__ import annotations

import torch

from transfer.catalog import catalog
from transfer.contract import AD_FEATURE, CATEGORY_FEATURE, InputSpec
from transfer.data.batches import random_batch

INPUTS = InputSpec(n_categorical=6, n_dense=2, n_surfaces=5, n_tasks=2, hash_buckets=64, categorical_names=tuple("abcdef"))
HISTORY_KEYS = ("hist_ad", "hist_category", "hist_surface", "hist_action", "hist_age")


def _model():
    torch.manual_seed(0)
    return catalog("teacher")["counts_mlp"].build(INPUTS, {"history_length": 32}).eval()


def test_counts_mlp_ignores_the_order_of_the_history():
    model, batch = _model(), random_batch(6, 2, 5, 3, 64, 8, 32, seed=1)
    shuffled = dict(batch)
    order = torch.randperm(32, generator=torch.Generator().manual_seed(2))
    for key in HISTORY_KEYS:
        shuffled[key] = batch[key][:, order]  # the same events, in another order
    with torch.no_grad():
        torch.testing.assert_close(model(shuffled).logits, model(batch).logits)


def test_counts_mlp_reads_how_often_the_history_met_the_candidate():
    """The same events with their category set to the candidate's (and only that changed) move its
    logits through the match counts: the history's mean-pooled part is unchanged by construction."""
    model, batch = _model(), random_batch(6, 2, 5, 3, 64, 8, 32, seed=3)
    batch["hist_category"] = (batch["categorical"][:, CATEGORY_FEATURE] + 1).unsqueeze(1).expand(-1, 32) % 64  # never the candidate's
    batch["hist_ad"] = (batch["categorical"][:, AD_FEATURE] + 1).unsqueeze(1).expand(-1, 32) % 64
    matched = dict(batch)
    swap = {"hist_category": batch["categorical"][:, CATEGORY_FEATURE], "hist_ad": batch["categorical"][:, AD_FEATURE]}
    with torch.no_grad():
        counts_off = model.match_counts(batch, swap["hist_ad"], swap["hist_category"])
        matched["hist_category"] = swap["hist_category"].unsqueeze(1).expand(-1, 32)
        counts_on = model.match_counts(matched, swap["hist_ad"], swap["hist_category"])
    assert not torch.allclose(counts_on, counts_off)
    zero = model.match_counts.project.bias.expand_as(counts_off)
    torch.testing.assert_close(counts_off, zero)  # no match: log1p(0) = 0 counts, only the bias
