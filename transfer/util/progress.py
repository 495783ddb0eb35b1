"""Progress lines for long steps: what is happening, then how long it took."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator


@contextlib.contextmanager
def step(message: str) -> Iterator[None]:
    """Print `▸ message` now and `✓ message (12.3 s)` when the block ends."""
    print(f"▸ {message}", flush=True)
    start = time.perf_counter()
    yield
    print(f"✓ {message} ({time.perf_counter() - start:.1f} s)", flush=True)
