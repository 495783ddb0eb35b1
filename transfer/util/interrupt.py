"""Ctrl-C (SIGINT) and a scheduler's SIGTERM stop a command promptly: one line, exit code 130 or
143, MLflow runs ended as KILLED, nothing half-written, and a rerun resumes.

Python's KeyboardInterrupt is not enough: Lightning catches it inside `Trainer.fit`, stops
"gracefully" and calls `sys.exit(1)`, with no word of why; and on SIGTERM Lightning's own handler
only notes the signal and lets the training go on, so a preempted job used to finish its epoch and
exit 0 — recorded by its scheduler as a success. `Interrupted` is raised instead (Lightning keeps a
handler that was there before its own and calls it after it); Lightning tears down and re-raises it
like any other error, files being written are dropped by `transfer.util.atomic`, and
`transfer.tracking.runs` ends the MLflow runs it unwinds through as KILLED.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM, what a scheduler expects of a job it stopped
MESSAGE = "gem-transfer: interrupted — rerun the same command to resume"
TERMINATED = "gem-transfer: terminated (SIGTERM) — rerun the same command to resume"


class Interrupted(BaseException):
    """SIGINT arrived (a BaseException, so no `except Exception` swallows it)."""

    exit_code = EXIT_INTERRUPTED
    message = MESSAGE


class Terminated(Interrupted):
    """SIGTERM arrived."""

    exit_code = EXIT_TERMINATED
    message = TERMINATED


_SIGNALS = {signal.SIGINT: Interrupted, signal.SIGTERM: Terminated}


def _raise_for(signum, frame) -> None:
    for each in _SIGNALS:  # a second signal does not break the clean-up of the first
        signal.signal(each, signal.SIG_IGN)
    raise _SIGNALS[signum]


@contextlib.contextmanager
def signals_raise_interrupted() -> Iterator[None]:
    """Inside the block, SIGINT raises `Interrupted` and SIGTERM `Terminated` (in the main thread)."""
    previous = {each: signal.signal(each, _raise_for) for each in _SIGNALS}
    try:
        yield
    finally:
        for each, handler in previous.items():
            signal.signal(each, handler)
