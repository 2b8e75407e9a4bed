"""Ctrl-C and SIGTERM during training: finish the step, write a checkpoint, stop."""
from __future__ import annotations

import signal
import sys
import time
from contextlib import contextmanager
from typing import Any, Iterator

from .tasks import PROG

# Under torchrun a terminal's ^C reaches each worker twice: from the terminal (the whole
# foreground process group) and forwarded by torchrun's agent a moment later. A repeat
# within this many seconds is the same ^C, not a second one.
SAME_SIGNAL_S = 2.0


@contextmanager
def stop_on_signal(announce: bool = True) -> Iterator[dict[str, bool]]:
    """SIGINT/SIGTERM set ``flag["stop"]``; the loop checkpoints after the current step and
    stops. A second signal (after ``SAME_SIGNAL_S``) aborts at once. ``announce``: say so
    on stderr (one process of several announces for all)."""
    flag = {"stop": False}
    first = {"at": 0.0}

    def handler(signum: int, frame: Any) -> None:
        now = time.monotonic()
        if flag["stop"]:
            if now - first["at"] < SAME_SIGNAL_S:
                return
            raise KeyboardInterrupt  # a second ^C: give up at once
        flag["stop"], first["at"] = True, now
        if announce:
            print(f"\n{PROG}: stopping after this step (checkpointing); press ^C again to abort", file=sys.stderr)

    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: no handlers, no graceful stop
        pass
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
