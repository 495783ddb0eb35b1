"""Run a measurement in a fresh process, so its peak memory and warm state are its own."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable
from typing import Any


def in_fresh_process(target: Callable[..., None], *args: Any) -> Any:
    """Call `target(*args, queue)` in a spawned process; → what it put on the queue."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=target, args=(*args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result
