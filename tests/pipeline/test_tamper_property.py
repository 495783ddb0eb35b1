"""Property: a cached file changed in any way after it was written — any byte altered, or the file cut
short — is never reused: the stage cache refuses the weights, and a knowledge shard's checksum no
longer matches."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from transfer.pipeline.cache import StageCache, checksum_matches, write_checksum
from transfer.pipeline.keys import stage_key

DAMAGE = st.one_of(
    st.tuples(st.just("flip"), st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
    st.tuples(st.just("cut"), st.floats(0, 1, exclude_max=True), st.just(0)),
)


def _damage(path, damage) -> None:
    kind, where, xor = damage
    data = bytearray(path.read_bytes())
    at = int(where * len(data))
    if kind == "flip":
        data[at] ^= xor
    else:
        del data[at:]
    path.write_bytes(bytes(data))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(damage=DAMAGE)
def test_damaged_cached_weights_are_never_loaded(tmp_path, damage):
    cache = StageCache(tmp_path)
    folder = cache.folder(stage_key("teacher", {"case": repr(damage)}, {}, []))
    cache.save_model(folder, nn.Linear(4, 3), {"run_id": "r"})
    _damage(folder / "model.pt", damage)
    target = nn.Linear(4, 3)
    before = target.weight.detach().clone()
    assert cache.load_model(folder, target) is None
    assert torch.equal(target.weight, before)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(damage=DAMAGE, size=st.integers(1, 4096))
def test_a_damaged_file_no_longer_matches_its_checksum(tmp_path, damage, size):
    path = tmp_path / f"shard-{size}.parquet"
    path.write_bytes(bytes(range(256)) * (size // 256 + 1))
    write_checksum(path)
    assert checksum_matches(path)
    _damage(path, damage)
    assert not checksum_matches(path)
