"""Ctrl-C (SIGINT) stops a command promptly: one line, exit code 130, nothing half-written.

Python's KeyboardInterrupt is not enough: Lightning catches it inside `Trainer.fit`, stops
"gracefully" and calls `sys.exit(1)`, with no word of why. `Interrupted` is raised instead; Lightning
tears down and re-raises it like any other error, files being written are dropped by
`transfer.util.atomic`, and `transfer.tracking.runs` ends the MLflow runs it unwinds through as KILLED.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C
MESSAGE = "gem-transfer: interrupted — rerun the same command to resume"


class Interrupted(BaseException):
    """SIGINT arrived (a BaseException, so no `except Exception` swallows it)."""


def _raise_interrupted(signum, frame) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C does not break the clean-up of the first
    raise Interrupted


@contextlib.contextmanager
def sigint_raises_interrupted() -> Iterator[None]:
    """Inside the block, SIGINT raises `Interrupted` (in the main thread)."""
    previous = signal.signal(signal.SIGINT, _raise_interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
