"""Two CPU processes (Lightning DDP, gloo).

- Evaluation over two ranks gives the metrics of one process (each rank scores its own rows,
  torchmetrics syncs the states), and DDP training hands its trained weights back.
- A whole recipe (every technique, the Student Adapter and embedding features included) run as two
  processes by `gem-transfer run … trainer.strategy=ddp trainer.devices=2` gives the single-process
  lift table; each rank writes its own knowledge shard (every example once, the same provenance in
  each), the embedding table is the one-process table; only rank 0 tracks in MLflow.
- Knowledge from training traffic a day behind (`transfer.staleness_days: 1`) on two processes is
  the one-process table.
- Bad multi-process settings end in one line and exit code 2.
- The processes of a single-host run listen on 127.0.0.1 only (stores and gloo), not on every interface.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import torch
from mlflow.tracking import MlflowClient

from students import MLP_VM_SIZES, mlp_vm
from tests.conftest import REPO, run_cli, time_limit, write_dataset, write_recipe
from transfer.config.loader import load_recipe
from transfer.config.recipe import TrainerConfig
from transfer.data.batches import WindowBatches, window_loader
from transfer.data.prepare import prepare_data
from transfer.knowledge.table import PROVENANCE_KEY
from transfer.training.module import RankingModule
from transfer.training.trainer import evaluate, fit

ONE = TrainerConfig(progress=False)
TWO = TrainerConfig(progress=False, devices=2, strategy="ddp_spawn")


@pytest.fixture(scope="module")
def data(tmp_path_factory, small_log):
    folder = tmp_path_factory.mktemp("ddp")
    return prepare_data(load_recipe(write_recipe(folder, write_dataset(folder, small_log))).data)


@pytest.mark.slow
def test_two_process_training_and_evaluation_match_one_process(data):
    torch.manual_seed(0)
    model = mlp_vm(data.log.inputs, **MLP_VM_SIZES["xs"])
    module = RankingModule(model, ["click"], [0], lr=3e-3)
    before = model.head.weight.detach().clone()
    fit(module, window_loader(WindowBatches(data.log, data.train_rows, model.history_length), 64, shuffle=True), TWO, 1, logger=False)
    assert not torch.equal(before, model.head.weight)  # trained in the workers, weights back in this process

    # an odd number of rows, so the ranks get different counts and nothing may be padded or dropped
    rows = data.eval_rows[: len(data.eval_rows) // 2 * 2 - 1]
    loader = window_loader(WindowBatches(data.log, rows, model.history_length), 100, shuffle=False)
    single, double = evaluate(module, loader, ONE, "click"), evaluate(module, loader, TWO, "click")
    assert double.ne == pytest.approx(single.ne, rel=1e-9)
    assert double.auc == pytest.approx(single.auc, rel=1e-6)
    assert double.calibration == pytest.approx(single.calibration, rel=1e-9)


ALL_TECHNIQUES = {
    "teacher": {"model": "skeleton_tiny", "max_epochs": 1},
    "transfer": {"strategy": "direct", "stages": [{
        "producer": "teacher", "consumers": "students",
        "distillation": {"weight": 1.0, "head": "auxiliary"},
        "representation": {"weight": 1.0, "loss": "cosine"},
        "sharing": {"modules": ["events.context"], "freeze": True},
        "adapter": {"enabled": True, "fit_days": 2},
        "embedding_features": {"enabled": True, "days": 2},
    }]},
    "students": [{"vertical": "ig_stories_click"}, {"vertical": "fb_feed_conversion"}],
    "trainer": {"max_epochs": 2, "progress": False},
}


@pytest.fixture(scope="module")
def recipe(tmp_path_factory, small_log):
    folder = tmp_path_factory.mktemp("ddp_recipe")
    path = write_recipe(folder, write_dataset(folder, small_log), name="two_ranks", **ALL_TECHNIQUES)
    # a validation day, so every VM keeps its best epoch there: the ranks must agree on which
    path.write_text(path.read_text().replace("validation:\n    days: 0", "validation:\n    days: 1").replace("eval:\n    days: 2", "eval:\n    days: 1"))
    return path


def _lift(output_dir) -> pl.DataFrame:
    (csv,) = output_dir.glob("two_ranks/*/lift.csv")
    return pl.read_csv(csv).drop("run_id")  # the results (run ids are new each run)


def _knowledge(output_dir) -> list:
    (folder,) = output_dir.glob("stages/knowledge-*")
    return sorted(folder.glob("*.parquet"))


def _kept_epochs(output_dir) -> dict[str, float]:
    """Each VM run's kept epoch (`best_epoch`), by run name."""
    client = MlflowClient(f"sqlite:///{output_dir / 'mlflow.db'}")
    found = client.search_runs([client.get_experiment_by_name("two_ranks").experiment_id])
    return {r.info.run_name: r.data.metrics["best_epoch"] for r in found if "best_epoch" in r.data.metrics}


@pytest.mark.slow
def test_a_recipe_on_two_processes_gives_the_single_process_results(recipe, tmp_path, capsys):
    one, two = tmp_path / "one", tmp_path / "two"
    code, _, _ = run_cli(capsys, "run", str(recipe), f"output_dir={one}")
    assert code == 0
    done = subprocess.run(
        [sys.executable, "-m", "transfer.cli", "run", str(recipe), f"output_dir={two}", "trainer.strategy=ddp", "trainer.devices=2"],
        cwd=REPO, capture_output=True, text=True, timeout=time_limit(600),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("| model ") == 1  # rank 0 prints the table; the other rank's output is dropped

    single, double = _lift(one), _lift(two)
    assert double.select("model", "role", "slice").equals(single.select("model", "role", "slice"))
    # a training step is the same under DDP (each rank takes its half of every batch, gradients averaged),
    # up to rounding that two epochs amplify: NE and calibration stay within 0.1 % and 1 %; the AUC of a
    # near-chance VM on this tiny slice (0.52) reorders many near-tied pairs, so it is held to 0.01 absolute
    for column, tolerance in (("NE", 1e-3), ("calibration", 1e-2)):
        assert double[column].to_list() == pytest.approx(single[column].to_list(), rel=tolerance), column
    assert double["AUC"].to_list() == pytest.approx(single["AUC"].to_list(), abs=1e-2)

    # each rank wrote its shard: together every example of the students' window exactly once
    shards = _knowledge(two)
    assert [p.name for p in shards] == ["skeleton_tiny.rank0-of-2.parquet", "skeleton_tiny.rank1-of-2.parquet"]
    (whole,) = _knowledge(one)
    expected = pl.read_parquet(whole).sort("example_id")
    parts = [pl.read_parquet(p) for p in shards]
    assert all(part.height > 0 for part in parts)
    joined = pl.concat(parts).sort("example_id")
    assert joined["example_id"].is_unique().all()
    assert joined["example_id"].to_list() == expected["example_id"].to_list()
    assert joined["logit_click"].to_numpy() == pytest.approx(expected["logit_click"].to_numpy(), abs=1e-4)
    provenances = [json.loads(pl.read_parquet_metadata(p)[PROVENANCE_KEY]) for p in shards]
    assert provenances[0] == provenances[1]
    assert provenances[0]["producer"] == "skeleton_tiny"
    # the teacher's user embeddings (every rank computes the table, the first writes it): the one-process table
    (single_table,), (double_table,) = (list(folder.rglob("embeddings/skeleton_tiny.user_id.2d.parquet")) for folder in (one, two))
    embedded = [pl.read_parquet(path) for path in (single_table, double_table)]
    assert embedded[1]["key"].to_list() == embedded[0]["key"].to_list() and embedded[0].height > 0
    assert (embedded[1]["embedding"].to_numpy().astype("float32") == pytest.approx(embedded[0]["embedding"].to_numpy().astype("float32"), abs=1e-2))

    # only rank 0 tracked: the same runs as one process, every one finished; nothing half-written left
    def runs(folder):
        client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
        found = client.search_runs([client.get_experiment_by_name("two_ranks").experiment_id])
        return sorted(r.info.run_name for r in found), {r.info.status for r in found}

    names, statuses = runs(two)
    assert names == runs(one)[0]
    kept_one, kept_two = _kept_epochs(one), _kept_epochs(two)
    assert len(kept_one) >= 4 and kept_two == kept_one  # every VM kept the same epoch on two processes as on one
    assert statuses == {"FINISHED"}
    assert not list(two.rglob("*.tmp"))

    # the same two processes started by torchrun instead (what a multi-node launch runs on each node)
    three = tmp_path / "torchrun"
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "transfer.cli", "run", str(recipe),
         f"output_dir={three}", "trainer.strategy=ddp", "trainer.devices=2"],
        cwd=REPO, capture_output=True, text=True, timeout=time_limit(600), env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert _lift(three).equals(double)


def test_bad_multi_process_settings_are_one_line(recipe, capsys):
    cases = {
        "trainer.devices=2": "trainer.strategy: found 'auto' with devices 2",
        "trainer.strategy=ddp_spawn": "trainer.strategy: unknown name 'ddp_spawn'; allowed: auto, ddp, fsdp",
        "trainer.strategy=fsdp": "Lightning's FSDP runs on GPUs only",
        "trainer.sharding=zigzag": "trainer.sharding: unknown name 'zigzag'; allowed: full, hybrid",
        "trainer.sharding=hybrid": "trainer.sharding: found 'hybrid' with strategy 'auto'; sharding applies to strategy fsdp only",
        "trainer.devices=auto": "trainer.devices: found 'auto'; allowed: a whole number ≥ 1",
        "trainer.num_nodes=0": "trainer.num_nodes: found 0",
    }
    for override, message in cases.items():
        code, out, err = run_cli(capsys, "run", str(recipe), override)
        assert code == 2, override
        assert message in err and err.count("\n") == 1, (override, err)


def test_a_multi_node_recipe_needs_a_launcher(recipe, capsys):
    code, _, err = run_cli(capsys, "run", str(recipe), "trainer.strategy=ddp", "trainer.num_nodes=2")
    assert code == 2
    assert "trainer.num_nodes: found 2; a multi-node run is started on every node by a launcher" in err


def test_under_a_launcher_the_recipe_must_ask_for_its_world_size(recipe, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    code, out, err = run_cli(capsys, "run", str(recipe), "trainer.strategy=ddp", "trainer.devices=2")
    assert code == 2 and out == ""
    assert "devices 2 × num_nodes 1 = 2 processes, but the launcher started 3 (WORLD_SIZE)" in err
    monkeypatch.setenv("RANK", "1")  # every rank meets the same bad input; only rank 0 says so
    code, out, err = run_cli(capsys, "run", str(recipe), "trainer.strategy=ddp", "trainer.devices=2")
    assert (code, out, err) == (2, "", "")


def test_fsdp_shards_the_teacher_only_and_hybrid_is_hsdp():
    from lightning.pytorch.strategies import FSDPStrategy
    from torch.distributed.fsdp import ShardingStrategy

    from transfer.training.trainer import lightning_strategy

    hybrid = TrainerConfig(strategy="fsdp", accelerator="gpu", devices=8, num_nodes=125, sharding="hybrid")
    teacher = lightning_strategy(hybrid, shard=True)
    assert isinstance(teacher, FSDPStrategy)
    assert teacher.sharding_strategy == ShardingStrategy.HYBRID_SHARD
    assert teacher.kwargs["device_mesh"] == (125, 8)  # shard within a node's 8 GPUs, replicate across 125 nodes
    full = lightning_strategy(TrainerConfig(strategy="fsdp", accelerator="gpu", devices=8), shard=True)
    assert full.sharding_strategy == ShardingStrategy.FULL_SHARD and "device_mesh" not in full.kwargs
    assert lightning_strategy(hybrid, shard=False) == "ddp"  # VMs, domain FMs and all scoring
    assert lightning_strategy(TrainerConfig(strategy="ddp", devices=2), shard=True) == "ddp"


def _process_tree(pid: int) -> list[int]:
    """`pid` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(current := todo.pop())
        todo.extend(children.get(current, []))
    return tree


def _listening(pid: int) -> list[str]:
    """`address:port` of every listening TCP socket (IPv4 and IPv6) open in process `pid`."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    found = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                address, port = fields[1].split(":")
                raw = bytes.fromhex(address)  # 32-bit words in host (little-endian) order
                ip = ipaddress.ip_address(b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4)))
                found.append(f"{ip}:{int(port, 16)}")
    return found


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_two_process_run_listens_on_loopback_only(tmp_path, small_log):
    recipe = write_recipe(tmp_path, write_dataset(tmp_path, small_log), name="loopback", teacher={"model": "skeleton_tiny", "batch_size": 256},
                          students=[{"vertical": "ig_stories_click", "batch_size": 64}])
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "transfer.cli", "run", str(recipe), "trainer.strategy=ddp", "trainer.devices=2"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    seen, sockets = [], {}
    for line in process.stdout:
        seen.append(line)
        if "▸ baseline: ig_stories_click" in line:  # the teacher trained: every rank's process group is up
            sockets = {pid: _listening(pid) for pid in _process_tree(process.pid)}
            break
    out = "".join(seen) + process.communicate(timeout=time_limit(600))[0]
    assert process.returncode == 0, out[-3000:]
    assert len(sockets) == 3 and all(sockets.values()), sockets  # the launcher's store, each rank's gloo
    assert all(address.startswith("127.0.0.1:") for found in sockets.values() for address in found), sockets


@pytest.mark.slow
def test_knowledge_a_day_behind_the_training_traffic_on_two_processes_is_the_one_process_table(tmp_path, small_log, capsys):
    """Lag 1 on knowledge from training traffic, two DDP processes: each rank scores its half of the
    consumers' rows with the weights of the day its lag reaches back to (every rank snapshots at the
    same step), so the two shards together are the one-process table — every consumer row once, the
    same logits up to DDP's rounding, the same provenance and cutoff."""
    dataset = write_dataset(tmp_path, small_log)
    recipe = write_recipe(tmp_path, dataset, name="lagged_ranks", teacher={"model": "skeleton_tiny", "batch_size": 256},
                          transfer={"knowledge": "training_traffic", "staleness_days": 1})
    one, two = tmp_path / "one", tmp_path / "two"
    code, _, err = run_cli(capsys, "run", str(recipe), f"output_dir={one}")
    assert code == 0, err
    done = subprocess.run([sys.executable, "-m", "transfer.cli", "run", str(recipe), f"output_dir={two}", "trainer.strategy=ddp", "trainer.devices=2"],
                          cwd=REPO, capture_output=True, text=True, timeout=time_limit(600), env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]

    (whole,), shards = sorted(one.rglob("knowledge/skeleton_tiny*.parquet")), sorted(two.rglob("knowledge/skeleton_tiny*.parquet"))
    assert [p.name for p in shards] == ["skeleton_tiny.rank0-of-2.parquet", "skeleton_tiny.rank1-of-2.parquet"]
    expected = pl.read_parquet(whole).sort("example_id")
    parts = [pl.read_parquet(p) for p in shards]
    assert all(part.height > 0 for part in parts)
    joined = pl.concat(parts).sort("example_id")
    assert joined["example_id"].to_list() == expected["example_id"].to_list()  # every consumer row once, over both ranks
    for column in [c for c in expected.columns if c.startswith("logit_")]:
        assert joined[column].to_numpy() == pytest.approx(expected[column].to_numpy(), abs=1e-4), column
    provenances = [json.loads(pl.read_parquet_metadata(p)[PROVENANCE_KEY]) for p in [whole, *shards]]
    assert provenances[1] == provenances[2]
    assert provenances[1]["cutoff"] == provenances[0]["cutoff"]
