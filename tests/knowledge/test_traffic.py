"""Knowledge from training traffic: each batch scored by the teacher just before it learns from it —
out-of-sample, every wanted row once, at no extra forward pass — as a recipe option that the
pipeline caches with the teacher (a lost table trains the teacher again)."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone

import lightning as L
import polars as pl
import pytest
import torch

from tests.conftest import run_cli, write_dataset, write_recipe
from transfer.catalog import catalog
from transfer.config.loader import load_recipe
from transfer.config.recipe import TrainerConfig
from transfer.data.batches import WindowBatches, window_loader
from transfer.data.prepare import prepare_data
from transfer.knowledge.join import knowledge_age_days
from transfer.knowledge.table import Provenance, join_knowledge, table_provenance
from transfer.knowledge.traffic import LaggedTrafficKnowledge, TrafficKnowledge
from transfer.training.module import RankingModule
from transfer.training.trainer import fit

TRAFFIC = {"knowledge": "training_traffic"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, small_log):
    folder = tmp_path_factory.mktemp("traffic")
    return folder, write_dataset(folder, small_log)


def _teacher(data) -> RankingModule:
    L.seed_everything(0, verbose=False)
    model = catalog("teacher")["skeleton_tiny"].build(data.log.inputs, {})
    tasks = list(range(len(data.log.tasks)))
    return RankingModule(model, data.log.tasks, tasks, lr=5e-3, base_rates=data.base_rates(data.train_rows, tasks))


def _keep(data, module, loader, wanted_rows, path, epochs: int) -> None:
    """Train `module` on `loader` with a `TrafficKnowledge` keeping `wanted_rows` at `path`."""
    wanted = torch.zeros(len(data.log.labels), dtype=torch.bool)
    wanted[wanted_rows] = True
    provenance = Provenance("skeleton_tiny", "run", datetime.now(timezone.utc).isoformat(), "now", "hash")
    keeper = TrafficKnowledge(path, wanted, data.log.example_id, data.log.tasks, provenance, module.model.embedding_dim)
    fit(module, loader, TrainerConfig(progress=False), epochs, False, watchers=[keeper])


def _kept_logits(path, data, rows: torch.Tensor) -> torch.Tensor:
    """[n, T] the table's logits for `rows`, in their order."""
    return join_knowledge([path], data.log.example_id.gather(rows.numpy()), data.log.tasks).logits


def test_every_wanted_row_is_kept_once_and_not_as_the_trained_teacher_scores_it(tiny, tmp_path):
    folder, dataset = tiny
    data = prepare_data(load_recipe(write_recipe(folder, dataset)).data)
    module = _teacher(data)
    rows = torch.cat([data.train_rows, data.student_rows])
    loader = window_loader(WindowBatches(data.log, rows, module.model.history_length), 128, shuffle=True, seed=0, order="time")
    path = tmp_path / "teacher.parquet"
    _keep(data, module, loader, data.student_rows, path, epochs=2)

    ids = data.log.example_id.gather(data.student_rows.numpy())
    assert sorted(pl.read_parquet(path)["example_id"].to_list()) == sorted(ids.to_list())  # each consumer row once, no other
    module.eval()
    with torch.no_grad():
        final = module(WindowBatches(data.log, data.student_rows, module.model.history_length)[torch.arange(len(data.student_rows))])
    kept = _kept_logits(path, data, data.student_rows)
    assert (kept - final.logits.float()).abs().mean() > 1e-3  # not the trained (in-sample) teacher's scores


def test_the_first_batch_is_scored_by_the_model_before_any_step(tiny, tmp_path):
    folder, dataset = tiny
    data = prepare_data(load_recipe(write_recipe(folder, dataset)).data)
    module = _teacher(data)
    rows = data.student_rows
    loader = window_loader(WindowBatches(data.log, rows, module.model.history_length), 64, shuffle=True, seed=0, order="time")
    batches = iter(loader)
    first, second = next(batches), next(batches)
    untrained = copy.deepcopy(module).eval()
    with torch.no_grad():
        before_first, before_any = untrained(first).logits.float(), untrained(second).logits.float()
    path = tmp_path / "teacher.parquet"
    _keep(data, module, loader, rows, path, epochs=1)
    assert torch.allclose(_kept_logits(path, data, first["row"]), before_first, atol=1e-5)
    assert not torch.allclose(_kept_logits(path, data, second["row"]), before_any, atol=1e-5)  # one step later: a changed model
    assert len(pl.read_parquet(path)) == len(rows)


def test_a_recipe_takes_its_knowledge_from_training_traffic_and_a_rerun_reuses_it(tiny, capsys):
    folder, dataset = tiny
    recipe = write_recipe(folder, dataset, name="traffic", teacher={"model": "skeleton_tiny", "batch_size": 256}, transfer=TRAFFIC)
    code, out, err = run_cli(capsys, "run", str(recipe))
    assert code == 0, err
    data = prepare_data(load_recipe(recipe).data)
    assert f"teacher: skeleton_tiny on {len(data.train_rows) + len(data.student_rows):,} impressions" in out
    assert "knowledge: skeleton_tiny" in out and "kept from its training traffic" in out
    assert "knowledge: scoring" not in out  # no separate scoring pass
    (table,) = folder.rglob("knowledge/skeleton_tiny.parquet")
    assert len(pl.read_parquet(table)) == len(data.student_rows)

    code, out, _ = run_cli(capsys, "run", str(recipe))
    assert code == 0 and "already trained" in out and "kept from its training traffic" in out

    table.unlink()  # only the teacher's training makes the table: it trains again
    code, out, err = run_cli(capsys, "run", str(recipe))
    assert code == 0, err
    assert "training teacher:skeleton_tiny again" in out and table.is_file()


@pytest.mark.parametrize(("sections", "key"), [
    ({"trainer": {"max_epochs": 1, "progress": False, "order": "shuffled"}}, "trainer.order: found 'shuffled'"),
    ({"transfer": TRAFFIC | {"staleness_days": 3}}, "transfer.staleness_days: found 3; with transfer.knowledge 'training_traffic'"),
    ({"transfer": {"knowledge": "online"}}, "transfer.knowledge: unknown name 'online'"),
], ids=["shuffled", "stale", "unknown"])
def test_a_recipe_that_cannot_take_knowledge_from_training_traffic_is_refused_in_one_line(tiny, capsys, sections, key):
    folder, dataset = tiny
    sections = {"transfer": TRAFFIC} | sections
    recipe = write_recipe(folder, dataset, name="refused", **sections)
    code, _, err = run_cli(capsys, "run", str(recipe))
    assert code == 2
    (line,) = err.strip().splitlines()
    assert str(recipe) in line and key in line


def test_a_domain_fm_keeps_its_vms_knowledge_from_its_training_traffic_by_default(tiny, capsys):
    """Under the default `transfer.knowledge: separate` the teacher still scores the window in a separate
    pass (it did not train on it), but each domain FM, which trains on its VMs' own window, keeps their
    knowledge from its first epoch's pre-step outputs: out-of-sample, one row each, no scoring pass."""
    folder, dataset = tiny
    recipe = write_recipe(
        folder, dataset, name="hier_traffic", teacher={"model": "skeleton_tiny", "batch_size": 256},
        domain_fms={"model": "dfm_tiny", "batch_size": 256, "max_epochs": 2}, transfer={"strategy": "hierarchical"},
        students=[{"vertical": "ig_stories_click", "batch_size": 64}],
    )
    code, out, err = run_cli(capsys, "run", str(recipe))
    assert code == 0, err
    assert "knowledge: scoring" in out and "with skeleton_tiny" in out  # the teacher's separate pass
    assert "knowledge: scoring" not in out.split("domain FM: dfm_tiny:instagram")[1]  # none after the domain FM
    assert "knowledge: dfm_tiny:instagram" in out and "kept from its training traffic" in out
    data = prepare_data(load_recipe(recipe).data)
    instagram = data.domain_rows(data.student_rows, "instagram")
    (table,) = folder.rglob("knowledge/dfm_tiny-instagram.parquet")
    kept = pl.read_parquet(table)
    assert len(kept) == len(instagram) and kept["example_id"].n_unique() == len(instagram)


def test_a_warm_started_domain_fm_learns_its_domain_of_the_teachers_window_first_and_keeps_that_models_knowledge(tiny, capsys):
    """`domain_fms.warm_start`: the FM first trains on its domain's rows of the teacher's window (labels
    only), so the knowledge it keeps for its VMs' first batch is the warm-started model's score, not a
    cold start's."""
    folder, dataset = tiny
    recipe = write_recipe(
        folder, dataset, name="hier_warm", teacher={"model": "skeleton_tiny", "batch_size": 256},
        domain_fms={"model": "dfm_tiny", "batch_size": 256, "max_epochs": 1, "warm_start": True}, transfer={"strategy": "hierarchical"},
        students=[{"vertical": "ig_stories_click", "batch_size": 64}],
    )
    code, out, err = run_cli(capsys, "run", str(recipe))
    assert code == 0, err
    loaded = load_recipe(recipe)
    data = prepare_data(loaded.data)
    warm_rows = data.domain_rows(data.train_rows, "instagram")
    assert f"domain FM warm start: dfm_tiny:instagram on {len(warm_rows):,} impressions of the teacher's window" in out
    (weights,) = folder.rglob("warm_start/model.pt")
    fm_folder = weights.parent.parent
    table = fm_folder / "knowledge" / "dfm_tiny-instagram.parquet"

    L.seed_everything(loaded.seed, verbose=False)  # the FM's initial weights, as its stage builds them
    cold = catalog("domain_fm")["dfm_tiny"].build(data.log.inputs, {})
    warm = copy.deepcopy(cold)
    warm.load_state_dict(torch.load(weights))
    rows = data.domain_rows(data.student_rows, "instagram")
    first = next(iter(window_loader(WindowBatches(data.log, rows, warm.history_length), 256, shuffle=True, seed=loaded.seed, order="time")))
    with torch.no_grad():
        warm_scores, cold_scores = warm.eval()(first).logits.float(), cold.eval()(first).logits.float()
    kept = _kept_logits(table, data, first["row"])
    assert torch.allclose(kept, warm_scores, atol=1e-4)
    assert not torch.allclose(kept, cold_scores, atol=1e-2)

    code, out, _ = run_cli(capsys, "run", str(recipe))  # a rerun reuses the warm start with the rest
    assert code == 0 and "warm start: dfm_tiny:instagram" in out and out.count("already trained") >= 3


class _PreStepOutputs(L.Callback):
    """Records, before each training step of the first epoch, the model's logits for the step's rows."""

    def __init__(self):
        self.logits: dict[int, torch.Tensor] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == 0:
            with torch.no_grad():
                out = pl_module.model(batch).logits.float()
            self.logits |= {int(row): logit for row, logit in zip(batch["row"], out, strict=True)}


def _through_both_windows(folder, dataset):
    """The tiny recipe's data, an untrained teacher, a loader over the teacher's and the consumers'
    windows in time order, the consumers' rows as a [n_log] mask, and a provenance."""
    data = prepare_data(load_recipe(write_recipe(folder, dataset)).data)
    module = _teacher(data)
    rows = torch.cat([data.train_rows, data.student_rows])
    loader = window_loader(WindowBatches(data.log, rows, module.model.history_length), 128, shuffle=True, seed=0, order="time")
    wanted = torch.zeros(len(data.log.labels), dtype=torch.bool)
    wanted[data.student_rows] = True
    return data, module, loader, wanted, Provenance("skeleton_tiny", "run", datetime.now(timezone.utc).isoformat(), "now", "hash")


def test_no_consumer_rows_knowledge_comes_from_a_model_that_trained_on_it(tiny, tmp_path):
    """Three epochs through time over the teacher's and the consumers' windows: every consumer row's
    kept logits are exactly the model's output just before its own training step of the first epoch
    (recorded independently of the keeper), so no row's knowledge saw that row's label."""
    folder, dataset = tiny
    data, module, loader, wanted, provenance = _through_both_windows(folder, dataset)
    path = tmp_path / "teacher.parquet"
    keeper = TrafficKnowledge(path, wanted, data.log.example_id, data.log.tasks, provenance, module.model.embedding_dim)
    recorder = _PreStepOutputs()
    fit(module, loader, TrainerConfig(progress=False), 3, False, watchers=[recorder, keeper])
    consumer_rows = data.student_rows
    pre_step = torch.stack([recorder.logits[int(row)] for row in consumer_rows])  # [n, T]
    torch.testing.assert_close(_kept_logits(path, data, consumer_rows), pre_step, atol=1e-5, rtol=1e-5)


class _WeightsAtEachDay(L.Callback):
    """Records the model's weights before the first training batch of each day of the first epoch
    (rows arrive in time order), independently of the keeper."""

    def __init__(self, ts: torch.Tensor):
        self.ts = ts  # [n_log] each row's timestamp, seconds
        self.weights: dict[int, dict[str, torch.Tensor]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        day = int(self.ts[batch["row"]].max() // 86_400)
        if trainer.current_epoch == 0 and day not in self.weights:
            self.weights[day] = copy.deepcopy(pl_module.model.state_dict())


def test_knowledge_a_day_behind_comes_from_the_weights_before_the_day_before_the_rows_day(tiny, tmp_path):
    """Lag 1: every consumer row of day D is scored by the model as it was before its first batch of
    day D − 1 (recorded independently), in eval mode — so it learnt from no row of D − 1 or later."""
    folder, dataset = tiny
    data, module, loader, wanted, provenance = _through_both_windows(folder, dataset)
    path = tmp_path / "lagged.parquet"
    keeper = LaggedTrafficKnowledge(path, wanted, data.log, data.log.tasks, provenance, module.model.embedding_dim,
                                    module.model.history_length, lag_days=1)
    recorder = _WeightsAtEachDay(data.log.ts)
    fit(module, loader, TrainerConfig(progress=False), 2, False, watchers=[recorder, keeper])

    days = data.log.ts[data.student_rows] // 86_400
    assert len(days.unique()) == 2  # the consumers' two days
    scorer = copy.deepcopy(module.model).eval()
    for day in days.unique().tolist():
        day_rows = data.student_rows[days == day]
        scorer.load_state_dict(recorder.weights[day - 1])
        with torch.no_grad():
            expected = scorer(WindowBatches(data.log, day_rows, module.model.history_length)[torch.arange(len(day_rows))]).logits.float()
        torch.testing.assert_close(_kept_logits(path, data, day_rows), expected, atol=1e-5, rtol=1e-5)
    assert sorted(pl.read_parquet(path)["example_id"].to_list()) == sorted(data.log.example_id.gather(data.student_rows.numpy()).to_list())


def test_a_recipe_with_knowledge_from_training_traffic_a_day_behind_keeps_the_teachers_window_and_dates_its_knowledge(
        tmp_path, small_log, capsys):
    folder, dataset = tmp_path, write_dataset(tmp_path, small_log)
    lagged = write_recipe(folder, dataset, name="lagged", teacher={"model": "skeleton_tiny", "batch_size": 256},
                          transfer=TRAFFIC | {"staleness_days": 1})
    code, out, err = run_cli(capsys, "run", str(lagged))
    assert code == 0, err
    data = prepare_data(load_recipe(lagged).data)  # the windows as written: staleness moves none of them
    assert f"teacher: skeleton_tiny on {len(data.train_rows) + len(data.student_rows):,} impressions" in out
    (table,) = folder.rglob("knowledge/skeleton_tiny.parquet")
    provenance = table_provenance([table])
    assert datetime.fromisoformat(provenance.cutoff) == data.student.end - timedelta(days=2)  # the last day's rows: weights from before the day before
    assert len(pl.read_parquet(table)) == len(data.student_rows)


def test_a_lag_reaching_the_first_day_scores_with_the_starting_weights_even_when_the_first_batch_spans_days(tiny, tmp_path):
    """Lag 2 on a 2-day teacher window, in batches of 4,096 rows that span days: every consumer row's
    day − 2 is at or before the first batch, so every row is scored by the weights training started from."""
    folder, dataset = tiny
    data, module, _, wanted, provenance = _through_both_windows(folder, dataset)
    rows = torch.cat([data.train_rows, data.student_rows])
    loader = window_loader(WindowBatches(data.log, rows, module.model.history_length), 4096, shuffle=True, seed=0, order="time")
    first = next(iter(loader))["row"]
    assert len((data.log.ts[first] // 86_400).unique()) > 1  # the first batch spans days
    start = copy.deepcopy(module.model).eval()
    path = tmp_path / "lagged.parquet"
    keeper = LaggedTrafficKnowledge(path, wanted, data.log, data.log.tasks, provenance, module.model.embedding_dim,
                                    module.model.history_length, lag_days=2)
    fit(module, loader, TrainerConfig(progress=False), 1, False, watchers=[keeper])
    consumers = data.student_rows
    with torch.no_grad():
        expected = start(WindowBatches(data.log, consumers, module.model.history_length)[torch.arange(len(consumers))]).logits.float()
    torch.testing.assert_close(_kept_logits(path, data, consumers), expected, atol=1e-5, rtol=1e-5)


def test_a_rows_knowledge_age_counts_from_its_producers_cutoff_or_from_the_day_its_lag_reaches_back_to():
    day = 86_400
    ts = torch.tensor([10 * day + day // 2, 11 * day])  # day 10 at noon, day 11 at midnight
    cutoff = datetime.fromtimestamp(9 * day, tz=timezone.utc)
    assert knowledge_age_days(ts, cutoff, 0).tolist() == [1.5, 2.0]
    assert knowledge_age_days(ts, cutoff, 2).tolist() == [2.5, 2.0]  # from the start of day 8 and day 9
