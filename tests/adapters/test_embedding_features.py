"""Embeddings as features: the producer's embedding table (per-id means over its last days, versioned
with its provenance), the consumer's lookup (known ids, the learned default for unknown ones, the
known flag), the age and provenance refusals, and a recipe whose VM takes them as inputs — the
serving model carries the lookup, and its parameters and FLOPs count it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import lightning as L
import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from adapters import embedding_features
from teacher.layers import EmbeddingFeature
from tests.conftest import run_cli, write_dataset, write_recipe
from transfer.catalog import catalog
from transfer.config.loader import load_recipe
from transfer.data.batches import WindowBatches
from transfer.data.prepare import prepare_data
from transfer.errors import DataError
from transfer.evaluation.metrics import normalized_entropy
from transfer.knowledge.embedding_table import (
    EmbeddingTableInfo,
    embedding_table,
    mean_embeddings,
    read_embedding_table,
    write_embedding_table,
)
from transfer.knowledge.table import Provenance

STAGE = {"producer": "teacher", "consumers": "students", "distillation": {"weight": 0.0},
         "embedding_features": {"enabled": True, "days": 2}}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, small_log):
    folder = tmp_path_factory.mktemp("embedding_features")
    return folder, write_dataset(folder, small_log)


def _provenance(run_id: str = "run-1") -> Provenance:
    return Provenance("skeleton_tiny", run_id, "2026-01-03T00:00:00+00:00", datetime.now(timezone.utc).isoformat(), "")


def test_a_hand_built_table_gives_known_ids_their_vectors_and_unknown_ids_the_learned_default():
    keys, vectors = torch.tensor([3, 7, 11]), torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, -1.0]])
    lookup = EmbeddingFeature(keys, vectors, dim=4)
    with torch.no_grad():
        lookup.default.copy_(torch.tensor([0.5, -0.5]))
    found, known = lookup.looked_up(torch.tensor([[7, 5], [3, 12]]))  # 5 and 12 are not in the table
    assert known.tolist() == [[True, False], [True, False]]
    assert found.tolist() == [[[0.0, 2.0], [0.5, -0.5]], [[1.0, 0.0], [0.5, -0.5]]]
    # the projection reads the vector and the known flag: two unknown ids get the same token, a known one another
    out = lookup(torch.tensor([5, 12, 7]))
    assert out.shape == (3, 4)
    assert torch.equal(out[0], out[1]) and not torch.equal(out[0], out[2])
    assert lookup.default.requires_grad and not lookup.vectors.requires_grad  # the default learns; the table is the producer's
    frozen = EmbeddingFeature(keys, vectors, dim=4, width=8, freeze=True)
    assert not any(p.requires_grad for p in frozen.project.parameters()) and frozen.default.requires_grad


def test_ad_embeddings_reach_the_ads_token_and_its_history_events_and_add_to_a_shared_table():
    """`ads: true` looks the ad up wherever the consumer embeds an ad id (its token and its history
    events, `FeatureEmbedding.lookup`); a feature that also imports a shared table gets both, summed."""
    from teacher.layers import FeatureEmbedding, SharedTable
    from transfer.contract import AD_FEATURE

    features = FeatureEmbedding(n_features=3, buckets=16, dim=4)
    ids = torch.tensor([[1, 5, 2], [3, 9, 0]])  # [B, F]: ad ids 5 (in the table) and 9 (not)
    history = torch.tensor([[5, 9, 5]])  # [1, L] history events' ad ids
    own_tokens, own_events = features(ids), features.lookup(AD_FEATURE, history)
    lookup = EmbeddingFeature(torch.tensor([5]), torch.tensor([[1.0, -1.0]]), dim=4)
    features.add_input(AD_FEATURE, lookup)
    with torch.no_grad():
        torch.testing.assert_close(features(ids)[:, AD_FEATURE], own_tokens[:, AD_FEATURE] + lookup(ids[:, AD_FEATURE]))
        torch.testing.assert_close(features(ids)[:, 0], own_tokens[:, 0])  # the user's token is untouched
        torch.testing.assert_close(features.lookup(AD_FEATURE, history), own_events + lookup(history))
        shared = SharedTable(torch.randn(16, 4), 4, freeze=True)
        features.add_input(AD_FEATURE, shared)  # parameter sharing on the same feature: both added
        torch.testing.assert_close(features(ids)[:, AD_FEATURE], own_tokens[:, AD_FEATURE] + lookup(ids[:, AD_FEATURE]) + shared(ids[:, AD_FEATURE]))


def test_an_empty_table_gives_every_id_the_default():
    lookup = EmbeddingFeature(torch.zeros(0, dtype=torch.long), torch.zeros(0, 3), dim=2)
    found, known = lookup.looked_up(torch.tensor([1, 2]))
    assert not known.any() and torch.equal(found, torch.zeros(2, 3))


def test_the_table_holds_each_ids_mean_embedding_over_its_rows_and_reads_back(tiny, tmp_path):
    folder, dataset = tiny
    data = prepare_data(load_recipe(write_recipe(folder, dataset)).data)
    L.seed_everything(0, verbose=False)
    model = catalog("teacher")["skeleton_tiny"].build(data.log.inputs, {}).eval()
    rows = data.train_rows
    keys, vectors = mean_embeddings(model, data.log, rows, feature=0, batch_size=97)  # batches that do not divide the rows

    # expected, independently: every row scored at once, then a Python mean per user id
    with torch.no_grad():
        each = model(WindowBatches(data.log, rows, model.history_length)[torch.arange(len(rows))]).embedding
    users = data.log.categorical[rows, 0]
    assert keys.tolist() == sorted(set(users.tolist()))
    for k in (0, len(keys) // 2, len(keys) - 1):
        torch.testing.assert_close(vectors[k], each[users == keys[k]].mean(0), atol=1e-5, rtol=1e-5)

    path = tmp_path / "user_embeddings.parquet"
    write_embedding_table(path, keys, vectors, _provenance(), EmbeddingTableInfo("user_id", 2, len(rows), vectors.shape[1]))
    back = read_embedding_table(path, "skeleton_tiny", "run-1")
    assert torch.equal(back.keys, keys) and torch.equal(back.vectors, vectors.to(torch.float16))
    assert back.info == EmbeddingTableInfo("user_id", 2, len(rows), vectors.shape[1]) and back.provenance.cutoff == "2026-01-03T00:00:00+00:00"
    assert (tmp_path / "user_embeddings.parquet.sha256").is_file()

    with pytest.raises(DataError, match="knowledge was produced by 'skeleton_tiny', but the recipe's producer is 'gem_tiny'"):
        read_embedding_table(path, "gem_tiny")
    with pytest.raises(DataError, match="comes from run run-1 of 'skeleton_tiny', expected run run-2"):
        read_embedding_table(path, "skeleton_tiny", "run-2")

    # made once: a second call with the same producer run reuses the file; another run of the producer makes it again
    made = embedding_table(path, model, data.log, rows[:10], 0, _provenance(), 2)
    assert torch.equal(made.keys, keys)  # the file's table, not one over the 10 rows asked now
    remade = embedding_table(path, model, data.log, rows[:10], 0, _provenance("run-2"), 2)
    assert len(remade.keys) < len(keys) and read_embedding_table(path, "skeleton_tiny").provenance.producer_run_id == "run-2"


def test_a_recipe_whose_vm_takes_the_teachers_embeddings_as_inputs(tiny, capsys, monkeypatch):
    folder, dataset = tiny
    recipe = write_recipe(folder, dataset, name="embeddings", teacher={"model": "skeleton_tiny", "batch_size": 256},
                          transfer={"strategy": "direct", "stages": [STAGE]}, tracking={"log_models": True})
    code, out, err = run_cli(capsys, "run", str(recipe))
    assert code == 0, err
    (table_path,) = folder.rglob("embeddings/skeleton_tiny.user_id.2d.parquet")
    table = read_embedding_table(table_path, "skeleton_tiny")
    data = prepare_data(load_recipe(recipe).data)
    cutoff = data.student.start  # the teacher's cutoff: its window ends where the students' starts
    assert datetime.fromisoformat(table.provenance.cutoff) == cutoff
    made_from = data.log.window_rows(cutoff - timedelta(days=2), cutoff)
    assert table.keys.tolist() == sorted(set(data.log.categorical[made_from, 0].tolist())) and table.info.rows_scored == len(made_from)

    client = MlflowClient(f"sqlite:///{folder / 'runs' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("embeddings").experiment_id])
    by_role = {r.data.tags.get("role"): r for r in runs if r.data.tags.get("vertical") == "ig_stories_click"}
    student, baseline = by_role["student"], by_role["baseline"]
    assert "embedding_features_user" in student.data.tags["techniques"]
    # the serving model carries the table, its lookup and the projection: its parameters count the table's vectors
    # (and the budget sees them), its FLOPs the projection
    assert student.data.metrics["serving_params"] - baseline.data.metrics["serving_params"] > len(table.keys) * table.dim
    assert student.data.metrics["flops_vs_teacher"] > baseline.data.metrics["flops_vs_teacher"]
    # the logged serving graph (pt2) carries the table and the lookup: its weights hold the table, it gives the run's
    # eval NE on the eval rows, and other outputs once the table's vectors are zeroed (the same ids, the same rows)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'runs' / 'mlflow.db'}")
    info = mlflow.models.get_model_info(student.data.tags["model_uri"])
    served, inputs = mlflow.pytorch.load_model(student.data.tags["model_uri"]), info.signature.inputs.input_names()
    state = served.state_dict()
    assert torch.equal(state["model.features.imported.0.keys"], table.keys)
    assert torch.equal(state["model.features.imported.0.vectors"], table.vectors)
    rows = data.log.surface_rows(data.eval_rows, "ig_stories")
    batch = WindowBatches(data.log, rows, info.metadata["history_length"])[torch.arange(len(rows))]
    with torch.no_grad():
        logits = served(*[batch[name] for name in inputs])[:, 0]
        state["model.features.imported.0.vectors"].zero_()
        without = served(*[batch[name] for name in inputs])[:, 0]
    labels = batch["labels"][:, data.log.tasks.index("click")]
    assert normalized_entropy(logits, labels) == pytest.approx(student.data.metrics["eval_ne"], abs=1e-6)
    assert (logits - without).abs().max() > 1e-4

    code, out, _ = run_cli(capsys, "run", str(recipe))  # a rerun reuses the VM and the table
    assert code == 0 and "already trained" in out


def _logged_model(run):
    import mlflow

    return mlflow.pytorch.load_model(run.data.tags["model_uri"])


@pytest.mark.parametrize(("stage", "transfer", "found"), [
    (STAGE | {"embedding_features": {"enabled": True, "max_age_days": 1}}, {}, "transfer.stages.0.embedding_features.max_age_days: "
     "1 refuses the embeddings this recipe makes: the teacher's cutoff is 2 days before the consumers' window ends"),
    (STAGE, {"knowledge": "training_traffic"}, "transfer.stages.0.embedding_features.enabled: found true with transfer.knowledge "
     "'training_traffic'; allowed: 'separate'"),
    (STAGE | {"producer": "domain_fms"}, {"strategy": "hierarchical", "stages": [{"producer": "teacher", "consumers": "domain_fms"}]},
     "transfer.stages.1.embedding_features.enabled: found true on a stage domain_fms → students; allowed: only teacher → students"),
], ids=["too old", "training traffic", "domain FM"])
def test_a_table_too_old_or_a_producer_that_trained_on_the_consumers_rows_is_refused_in_one_line(tiny, capsys, stage, transfer, found):
    folder, dataset = tiny
    recipe = write_recipe(folder, dataset, name="refused", teacher={"model": "skeleton_tiny", "batch_size": 256},
                          transfer={"strategy": "direct", **transfer, "stages": [*transfer.get("stages", []), stage]}, trainer={"max_epochs": 1, "progress": False, "order": "time"})
    code, _, err = run_cli(capsys, "run", str(recipe))
    assert code == 2
    assert found in err and len(err.strip().splitlines()) == 1, err


def test_a_teacher_window_running_into_the_consumers_window_is_refused_in_one_line(tiny, capsys):
    folder, dataset = tiny
    overlapping = {"dataset": str(dataset), "cache_dir": str(folder / "cache"), "train": {"days": 2},
                   "student": {"start": "2026-01-02", "days": 2}, "validation": {"days": 0}, "eval": {"days": 2}}
    recipe = write_recipe(folder, dataset, name="overlap", data=overlapping, teacher={"model": "skeleton_tiny", "batch_size": 256},
                          transfer={"strategy": "direct", "stages": [STAGE]})
    code, _, err = run_cli(capsys, "run", str(recipe))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "transfer.stages.0.embedding_features.enabled: the producer's cutoff (2026-01-03T00:00:00+00:00) is after the consumers' window starts" in err


def test_the_technique_states_its_table_memory_per_million_ids():
    assert embedding_features.table_bytes_per_million(64) == 136_000_000  # a float16 vector of 64 and an int64 key per id


def test_versions_are_pooled_with_learned_weights_equal_at_the_start():
    """LoopFM's variant: each producer version has its own lookup (an id one version lacks gets that
    version's default) and projection; the consumer pools them with learned softmax weights."""
    from teacher.layers import PooledVersions

    newest = EmbeddingFeature(torch.tensor([3, 7]), torch.tensor([[1.0, 0.0], [0.0, 2.0]]), dim=4)
    older = EmbeddingFeature(torch.tensor([7]), torch.tensor([[-1.0, 1.0]]), dim=4)
    pooled = PooledVersions(newest, older)
    ids = torch.tensor([3, 7, 9])
    with torch.no_grad():
        torch.testing.assert_close(pooled(ids), (newest(ids) + older(ids)) / 2)
        pooled.weights.copy_(torch.tensor([torch.log(torch.tensor(3.0)), 0.0]))  # shares 3/4 and 1/4
        torch.testing.assert_close(pooled(ids), 0.75 * newest(ids) + 0.25 * older(ids))
    pooled(ids).sum().backward()
    assert pooled.weights.grad is not None and pooled.weights.grad.abs().sum() > 0  # the shares learn


def _versioned_source(tmp_path, cutoffs: dict[str, str], current_cutoff: str, dims: dict[str, int] | None = None):
    """A FeatureSource whose current table (cutoff `current_cutoff`) is keyed 1..3 and whose earlier
    versions are parquet tables in folders named by `cutoffs` (folder → its cutoff), each keyed [2]."""
    from adapters.technique import FeatureSource
    from transfer.knowledge.embedding_table import EmbeddingTable

    for name, cutoff in cutoffs.items():
        (tmp_path / name).mkdir(exist_ok=True)
        dim = (dims or {}).get(name, 2)
        write_embedding_table(tmp_path / name / "t.parquet", torch.tensor([2]), torch.full((1, dim), float(len(name))),
                              Provenance("skeleton_tiny", f"run-{name}", cutoff, "", ""), EmbeddingTableInfo("user_id", 2, 1, dim))
    current = EmbeddingTable(torch.tensor([1, 2, 3]), torch.ones(3, 2, dtype=torch.float16),
                             Provenance("skeleton_tiny", "run-now", current_cutoff, "", ""), EmbeddingTableInfo("user_id", 2, 3, 2))
    at = datetime.fromisoformat(current_cutoff)
    return FeatureSource(lambda feature, days: current, at, at, 2.0, lambda field, message: DataError(f"stage.{field}: {message}"),
                         lambda folder, feature, days: read_embedding_table(tmp_path / folder / "t.parquet", "skeleton_tiny"),
                         at + timedelta(days=2))


def _consumer():
    from teacher.layers import FeatureEmbedding

    consumer = torch.nn.Module()
    consumer.features, consumer.feature_names = FeatureEmbedding(n_features=2, buckets=8, dim=4), ["user_id", "ad_id"]
    return consumer


def test_a_consumer_of_three_versions_pools_the_versions_that_exist_newest_first(tmp_path):
    from types import SimpleNamespace

    from teacher.layers import PooledVersions

    source = _versioned_source(tmp_path, {"one": "2026-01-02T00:00:00+00:00"}, "2026-01-05T00:00:00+00:00")
    stage = SimpleNamespace(embedding_features=embedding_features.Config(enabled=True, days=2, versions=3, earlier=["one"]))
    consumer = _consumer()
    embedding_features.add_inputs(stage, consumer, source)
    pooled = consumer.features.imported["0"]
    assert isinstance(pooled, PooledVersions) and len(pooled.versions) == 2  # this run's and the one earlier version made so far
    newest, earlier = pooled.versions
    assert newest.keys.tolist() == [1, 2, 3] and earlier.keys.tolist() == [2] and earlier.vectors.tolist() == [[3.0, 3.0]]
    # the served VM carries both tables: its parameters are both lookups' (vectors, default, projection) and the 2 pooling weights
    per_version = {v: 2 * len(v.keys) + 2 + (2 + 1) * 4 + 4 for v in (newest, earlier)}
    assert sum(p.numel() for p in pooled.parameters()) == sum(per_version.values()) + 2

    alone = _consumer()  # no earlier version yet (a plain run, the first cycle): the lookup of `versions: 1`
    embedding_features.add_inputs(SimpleNamespace(embedding_features=embedding_features.Config(enabled=True, days=2, versions=3)), alone, source)
    assert isinstance(alone.features.imported["0"], EmbeddingFeature)


def test_earlier_versions_count_in_the_consumers_key_by_their_tables_content_not_their_folder(tmp_path):
    from transfer.config.recipe import Recipe, StageConfig
    from transfer.pipeline.stages.producers import consumer_settings

    for name in ("here", "there"):
        (tmp_path / name / "embeddings").mkdir(parents=True)
        (tmp_path / name / "embeddings" / "skeleton_tiny.user_id.2d.parquet.sha256").write_text("abc\n")
        (tmp_path / name / "skeleton_tiny.parquet.sha256").write_text("def\n")  # its knowledge table

    def settings(folder: str) -> dict:  # what the consumer's stage key reads of its settings
        stage = StageConfig(embedding_features=embedding_features.Config(enabled=True, versions=2, earlier=[str(tmp_path / folder)]))
        return consumer_settings(Recipe(name="r"), "w", stage)

    assert settings("here") == settings("there")  # the same table elsewhere: the same key
    (tmp_path / "there" / "embeddings" / "skeleton_tiny.user_id.2d.parquet.sha256").write_text("abd\n")
    assert settings("here") != settings("there")  # another table in the same place: another key
    assert str(tmp_path) not in repr(settings("here"))


@pytest.mark.parametrize(("cutoffs", "dims", "max_age", "found"), [
    ({"same": "2026-01-05T00:00:00+00:00"}, None, None, "stage.embedding_features.earlier: same: its table's cutoff "
     "(2026-01-05T00:00:00+00:00) is not before this producer's"),
    ({"old": "2026-01-01T00:00:00+00:00"}, None, 5, "stage.embedding_features.max_age_days: an earlier version's embeddings "
     "(old, cutoff 2026-01-01T00:00:00+00:00) are 6.0 days old at the end of the consumers' window; allowed: 5"),
    ({"wide": "2026-01-02T00:00:00+00:00"}, {"wide": 3}, None, "stage.embedding_features.earlier: wide: its table's width is 3; allowed: "
     "this producer's, 2"),
], ids=["not earlier", "too old", "another width"])
def test_an_earlier_version_that_is_not_earlier_too_old_or_of_another_width_is_refused(tmp_path, cutoffs, dims, max_age, found):
    from types import SimpleNamespace

    source = _versioned_source(tmp_path, cutoffs, "2026-01-05T00:00:00+00:00", dims)
    config = embedding_features.Config(enabled=True, days=2, versions=2, earlier=list(cutoffs), max_age_days=max_age)
    with pytest.raises(DataError) as refused:
        embedding_features.add_inputs(SimpleNamespace(embedding_features=config), _consumer(), source)
    assert str(refused.value) == found or str(refused.value).startswith(found)


@pytest.mark.parametrize(("knobs", "found"), [
    ({"versions": 0}, "transfer.stages.0.embedding_features.versions: found 0; allowed: a whole number >= 1"),
    ({"versions": 2, "earlier": ["a", "b"]}, "transfer.stages.0.embedding_features.earlier: found 2 folders with versions 2; "
     "allowed: at most versions - 1 = 1"),
    ({"versions": 3, "earlier": ["a", "a"]}, "transfer.stages.0.embedding_features.earlier: found a folder twice"),
], ids=["no version", "more folders than versions", "a folder twice"])
def test_versions_settings_are_checked_before_anything_runs(tiny, capsys, knobs, found):
    folder, dataset = tiny
    stage = STAGE | {"embedding_features": {"enabled": True, "days": 2, **knobs}}
    recipe = write_recipe(folder, dataset, name="versions", transfer={"strategy": "direct", "stages": [stage]})
    code, _, err = run_cli(capsys, "validate", str(recipe))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert found in err
