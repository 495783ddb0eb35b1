"""Starting a multi-process recipe run: every process runs the same command (design: one program, N ranks).

- Under a launcher (torchrun, `srun torchrun`, …) the processes already exist: the recipe's
  `trainer.devices × trainer.num_nodes` must equal the launcher's WORLD_SIZE.
- `gem-transfer run` on one host with `trainer.devices: N > 1` starts the N processes itself through
  torch's elastic launcher (what torchrun runs), each re-running the same command line; every socket
  they listen on is bound to 127.0.0.1 (`transfer.util.loopback`).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import uuid
from pathlib import Path

from transfer.config.recipe import TrainerConfig
from transfer.errors import RecipeError
from transfer.util import ranks
from transfer.util.interrupt import Interrupted, Terminated

LAUNCHER_PID = "GEM_TRANSFER_LAUNCHER_PID"  # set for the processes `run_on_this_host` starts


def torch_threads(requested: int, processes: int = 1) -> int:
    """The intra-op threads a recipe process uses: `requested` (trainer.threads) when > 0, else
    $OMP_NUM_THREADS when set, else the cores this process may use divided among `processes`."""
    if requested > 0:
        return requested
    if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        return int(os.environ["OMP_NUM_THREADS"])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    on_this_host = int(os.environ.get("LOCAL_WORLD_SIZE", processes))  # a launcher's processes on this host, not all nodes'
    return max(1, cores // max(1, on_this_host))


def recipe_threads(cfg: TrainerConfig) -> int:
    """The intra-op threads each process of a run of `cfg` uses: in one a launcher started, as
    `torch_threads` resolves them; before any is started (`plan`, or the command that will start
    them), what `run_on_this_host` will give each of the `devices` processes it starts."""
    processes = ranks.launched_world_size() if "WORLD_SIZE" in os.environ else int(cfg.devices)
    return torch_threads(cfg.threads, processes)


def processes_wanted(cfg: TrainerConfig) -> int:
    """How many processes the recipe's trainer settings ask for."""
    return int(cfg.devices) * cfg.num_nodes


def needs_launch(cfg: TrainerConfig) -> bool:
    """True when this command must start the recipe's processes itself (none was started for it)."""
    return processes_wanted(cfg) > 1 and "WORLD_SIZE" not in os.environ


def check_world(cfg: TrainerConfig, recipe_path: Path) -> None:
    """A recipe started by a launcher asks for as many processes as it started."""
    started = ranks.launched_world_size()
    if "WORLD_SIZE" in os.environ and started != processes_wanted(cfg):
        raise RecipeError(
            f"{recipe_path}: trainer: devices {cfg.devices} × num_nodes {cfg.num_nodes} = {processes_wanted(cfg)} processes, "
            f"but the launcher started {started} (WORLD_SIZE); allowed: devices × num_nodes = WORLD_SIZE"
        )
    if cfg.num_nodes > 1 and "WORLD_SIZE" not in os.environ:
        raise RecipeError(
            f"{recipe_path}: trainer.num_nodes: found {cfg.num_nodes}; a multi-node run is started on every node by a launcher "
            "(torchrun or srun: see the README, 'Several processes and nodes')"
        )


def die_with_launcher() -> None:
    """In a process started by an elastic launcher (ours or torchrun's, which start each worker in a
    session of its own): be killed when the launcher dies, so a killed run leaves no orphan ranks
    working on (a rerun then finds their MLflow runs abandoned and their temporary files stale)."""
    if "TORCHELASTIC_RUN_ID" not in os.environ or not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    launcher = os.environ.get(LAUNCHER_PID)
    if launcher is not None and os.getppid() != int(launcher):  # it died before the line above
        os._exit(1)


def run_on_this_host(cfg: TrainerConfig, argv: list[str]) -> int:
    """Run `gem-transfer argv` as `devices` processes on this host; → the exit code (the first failing rank's)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    from transfer.util import loopback

    nprocs = int(cfg.devices)
    os.environ.setdefault("OMP_NUM_THREADS", str(torch_threads(0, nprocs)))  # no oversubscribed cores
    if sys.platform.startswith("linux"):
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # the ranks' gloo connections listen on loopback too
    os.environ[LAUNCHER_PID] = str(os.getpid())
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # failures are reported by the ranks themselves
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nprocs, run_id=str(uuid.uuid4()), rdzv_backend=loopback.register(),
                          rdzv_endpoint=f"{loopback.LOOPBACK}:0", local_addr=loopback.LOOPBACK, max_restarts=0)
    try:
        elastic_launch(config, sys.executable)("-m", "transfer.cli", *argv)
    except ChildFailedError as failed:
        _, first = failed.get_first_failure()
        return first.exitcode if first.exitcode > 0 else 1
    except SignalException as signalled:  # the launcher passed the signal on to the ranks, which have stopped
        if signalled.sigval == signal.SIGINT:
            raise Interrupted from None
        if signalled.sigval == signal.SIGTERM:
            raise Terminated from None
        raise
    return 0
