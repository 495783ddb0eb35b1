"""Which process this is in a multi-process recipe run, and the few collectives the engine needs.

A multi-process run is N copies of the same command started by a launcher (torchrun, `srun
torchrun`, or `gem-transfer run` itself for one host), each with RANK / WORLD_SIZE / MASTER_ADDR in
its environment. Every process runs every stage (Lightning's DDP needs all ranks in each `fit`);
only rank 0 talks to MLflow and writes shared files, and each rank writes its own knowledge shard.
In a single process every function here is a no-op (rank 0 of 1).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")

LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
COLLECTIVE_TIMEOUT = timedelta(minutes=30)  # a rank waiting longer than this for the others gives up


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
        raise RuntimeError(f"WORLD_SIZE is set but {', '.join(missing)} is not: start multi-process runs with torchrun or `gem-transfer run`")
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


def gather(value: T) -> list[T]:
    """Every rank's `value`, in rank order, in every rank."""
    if not dist.is_initialized():
        return [value]
    found: list = [None] * dist.get_world_size()
    dist.all_gather_object(found, value)
    return found
