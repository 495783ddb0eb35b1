"""Which process this is in a multi-process recipe run, and the few collectives the engine needs.

A multi-process run is N copies of the same command started by a launcher (torchrun, `srun
torchrun`, or `gem-transfer run` itself for one host), each with RANK / WORLD_SIZE / MASTER_ADDR in
its environment. Every process runs every stage (Lightning's DDP needs all ranks in each `fit`);
only rank 0 talks to MLflow and writes shared files, and each rank writes its own knowledge shard.
In a single process every function here is a no-op (rank 0 of 1).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

from transfer.errors import UserError

T = TypeVar("T")

LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
COLLECTIVE_TIMEOUT = timedelta(hours=3)  # a rank waiting longer than this for the others gives up (rank 0 may build a large data cache meanwhile)


def launched_world_size() -> int:
    """The number of processes a launcher started (1 when none did)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def start() -> None:
    """Join the launcher's process group (gloo on CPU, NCCL for CUDA tensors), once, before any stage:
    the engine's own collectives need it before Lightning's first Trainer (which then reuses it)."""
    if launched_world_size() == 1 or dist.is_initialized():
        return
    missing = [name for name in LAUNCHER_VARIABLES if name not in os.environ]
    if missing:
        raise UserError(f"WORLD_SIZE is set but {', '.join(missing)} is not; allowed: start multi-process runs with torchrun or `gem-transfer run`")
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT)


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """True in rank 0, the process that tracks in MLflow and writes shared outputs."""
    return rank() == 0


def barrier() -> None:
    """Wait until every rank gets here (e.g. rank 0 has finished writing a shared file)."""
    if dist.is_initialized():
        dist.barrier()


def from_main(value: T) -> T:
    """Rank 0's `value` in every rank (run ids, timestamps: whatever must agree across ranks)."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def is_node_main() -> bool:
    """True in the first process of each node (host-local chores: its stale temporary files)."""
    return int(os.environ.get("LOCAL_RANK", "0")) == 0


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. builds a cache); the other ranks run it once rank 0 is done."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()
