"""The GEM teacher's parts: shapes, masks, causality, and each against a direct computation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from teacher.attention import AttentionBlock, QueryPooling
from teacher.gem import GEM_SIZES, GEMTeacher
from teacher.pyramid import FullAttentionEncoder, PyramidEncoder, pyramid_depth
from teacher.wukong import FactorizationMachineBlock, LinearCompressionBlock, WukongLayer, WukongTower
from transfer.contract import AGE_BUCKETS, InputSpec

INPUTS = InputSpec(n_categorical=6, n_dense=2, n_surfaces=5, n_tasks=2, hash_buckets=64, categorical_names=tuple("abcdef"))


def _mask(b: int, length: int, seed: int = 0) -> torch.Tensor:
    """Left-padded masks of varied lengths, one row empty."""
    lengths = torch.randint(0, length + 1, (b,), generator=torch.Generator().manual_seed(seed))
    lengths[0] = 0
    return torch.arange(length).flip(0).unsqueeze(0) < lengths.unsqueeze(1)


def _garbage_where_masked(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    noisy = x.clone()
    noisy[~mask] = 1e3 * torch.randn_like(noisy[~mask])
    return noisy


def _sdpa_block(block: AttentionBlock, x: torch.Tensor, mask: torch.Tensor, causal: bool) -> torch.Tensor:
    """The same block through PyTorch's fused attention: an independent reference."""
    b, length, d = x.shape
    q, k, v = block.qkv(block.norm1(x)).view(b, length, 3, block.heads, d // block.heads).permute(2, 0, 3, 1, 4)
    allowed = mask[:, None, None, :] & (torch.ones(length, length, dtype=torch.bool).tril() if causal else True)
    attended = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed).nan_to_num(0.0)
    x = x + block.out(attended.transpose(1, 2).reshape(b, length, d))
    return (x + block.ffn(block.norm2(x))) * mask.unsqueeze(-1)


@pytest.mark.parametrize("causal", [False, True])
def test_attention_block_matches_fused_attention(causal):
    torch.manual_seed(0)
    block = AttentionBlock(16, 4)
    x, mask = torch.randn(5, 40, 16), _mask(5, 40)
    mask[1] = True
    assert torch.allclose(block(x, mask, causal), _sdpa_block(block, x, mask, causal), atol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_pyramid_with_one_segment_is_full_attention(causal):
    torch.manual_seed(0)
    pyramid = PyramidEncoder(dim=16, heads=2, segment=64, summary_tokens=4, max_length=64, causal=causal)
    x, mask = torch.randn(4, 64, 16), _mask(4, 64)
    assert len(pyramid.blocks) == 1
    assert torch.allclose(pyramid(x, mask), _sdpa_block(pyramid.blocks[0], x, mask, causal), atol=1e-5)


def test_pyramid_shapes_and_depth():
    assert pyramid_depth(1024, 32, 2) == 2  # 1024 → 64 → 4
    assert pyramid_depth(8192, 128, 8) == 2  # 8192 → 512 → 32
    pyramid = PyramidEncoder(dim=8, heads=2, segment=16, summary_tokens=2, max_length=1000)
    assert pyramid(torch.randn(3, 1000, 8), torch.ones(3, 1000, dtype=torch.bool)).shape == (3, 1000, 8)
    assert pyramid(torch.randn(2, 37, 8), torch.ones(2, 37, dtype=torch.bool)).shape == (2, 37, 8)


@pytest.mark.parametrize("causal", [False, True])
def test_pyramid_ignores_padded_positions(causal):
    torch.manual_seed(0)
    pyramid = PyramidEncoder(dim=16, heads=2, segment=16, summary_tokens=2, max_length=300, causal=causal)
    x, mask = torch.randn(6, 300, 16), _mask(6, 300)
    clean = pyramid(x, mask)
    assert not torch.isnan(clean).any()
    assert torch.equal(clean[~mask], torch.zeros_like(clean[~mask]))
    assert torch.allclose(pyramid(_garbage_where_masked(x, mask), mask), clean, atol=1e-4)


def test_causal_pyramid_never_sees_later_events():
    torch.manual_seed(0)
    pyramid = PyramidEncoder(dim=16, heads=2, segment=16, summary_tokens=2, max_length=512, causal=True)
    x, mask = torch.randn(3, 512, 16), torch.ones(3, 512, dtype=torch.bool)
    before = pyramid(x, mask)
    for cut in (17, 200, 511):
        changed = x.clone()
        changed[:, cut:] = torch.randn_like(changed[:, cut:])
        after = pyramid(changed, mask)
        assert torch.allclose(after[:, :cut], before[:, :cut], atol=1e-5)
        assert not torch.allclose(after[:, cut:], before[:, cut:])
    non_causal = PyramidEncoder(dim=16, heads=2, segment=16, summary_tokens=2, max_length=512, causal=False)
    changed = x.clone()
    changed[:, 400:] += 1.0
    assert not torch.allclose(non_causal(changed, mask)[:, :16], non_causal(x, mask)[:, :16])  # it does look ahead


def test_full_attention_baseline_shapes():
    assert FullAttentionEncoder(dim=8, heads=2)(torch.randn(2, 50, 8), torch.ones(2, 50, dtype=torch.bool)).shape == (2, 50, 8)


def test_query_pooling_of_an_empty_sequence_is_zero():
    pooled = QueryPooling(8, 3)(torch.randn(2, 10, 8), torch.zeros(2, 10, dtype=torch.bool))
    assert pooled.shape == (2, 3, 8) and torch.equal(pooled, torch.zeros_like(pooled))


def test_fmb_interactions_match_the_pairwise_formula():
    torch.manual_seed(0)
    fmb = FactorizationMachineBlock(n_rows=5, dim=4, rank=3, out_rows=2, hidden=8)
    x = torch.randn(2, 5, 4)
    y = fmb.projection
    # row i, column c: Σ_j <x_i, x_j> · Y[j, c]
    direct = torch.zeros(2, 5, 3)
    for b in range(2):
        for i in range(5):
            for c in range(3):
                direct[b, i, c] = sum(torch.dot(x[b, i], x[b, j]) * y[j, c] for j in range(5))
    assert torch.allclose(fmb.interactions(x), direct, atol=1e-5)
    assert fmb(x).shape == (2, 2, 4)


def test_wukong_shapes_and_lcb():
    lcb = LinearCompressionBlock(5, 3)
    x = torch.randn(2, 5, 4)
    assert torch.allclose(lcb(x)[1, 2], sum(lcb.weight[2, j] * x[1, j] for j in range(5)), atol=1e-6)
    assert WukongLayer(5, 4, fmb_rows=3, lcb_rows=3, rank=2, hidden=8)(x).shape == (2, 6, 4)
    tower = WukongTower(5, 4, layers=3, rows=8, rank=2, hidden=16)
    assert tower(x).shape == (2, 8, 4) and len(tower.layers) == 3


def _batch(b: int, length: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ints = lambda high, *shape: torch.randint(0, high, shape, generator=g)  # noqa: E731
    return {
        "categorical": ints(64, b, 6), "dense": torch.randn(b, 2, generator=g), "surface": ints(5, b),
        "hist_ad": ints(64, b, length), "hist_category": ints(64, b, length), "hist_surface": ints(5, b, length),
        "hist_action": ints(3, b, length), "hist_age": ints(AGE_BUCKETS, b, length), "hist_mask": _mask(b, length, seed),
    }


@pytest.mark.parametrize("preset", sorted(GEM_SIZES))
def test_every_preset_builds_and_runs(preset):
    torch.manual_seed(0)
    model = GEMTeacher(INPUTS, GEM_SIZES[preset])
    out = model(_batch(2, model.history_length))
    assert out.logits.shape == (2, 2) and out.embedding.shape == (2, model.embedding_dim)
    assert not torch.isnan(out.logits).any()


def test_gem_teacher_ignores_padded_history_and_is_deterministic():
    torch.manual_seed(0)
    model = GEMTeacher(INPUTS, GEM_SIZES["gem_tiny"]).eval()
    batch = _batch(6, model.history_length)
    noisy = dict(batch)
    for key in ("hist_ad", "hist_category"):
        noisy[key] = torch.where(batch["hist_mask"], batch[key], torch.randint(0, 64, batch[key].shape))
    assert torch.allclose(model(noisy).logits, model(batch).logits, atol=1e-5)
    torch.manual_seed(0)
    again = GEMTeacher(INPUTS, GEM_SIZES["gem_tiny"]).eval()
    assert torch.equal(again(batch).logits, model(batch).logits)


def test_dcn_cross_layer_by_hand_and_baselines_run():
    from teacher.baselines import BaselineTeacher, CrossLayer

    layer = CrossLayer(3)
    x0, x = torch.randn(2, 3), torch.randn(2, 3)
    expected = x0 * (x @ layer.linear.weight.T + layer.linear.bias) + x
    assert torch.allclose(layer(x0, x), expected, atol=1e-6)
    for cross in (0, 2):
        model = BaselineTeacher(INPUTS, dim=8, history_length=32, hidden=[32, 16], cross_layers=cross)
        out = model(_batch(3, 32))
        assert out.logits.shape == (3, 2) and out.embedding.shape == (3, 16)
