"""Interrupting hydranet_train runs, for the resume tests of every training task."""
from __future__ import annotations

import os
import signal
from typing import Any, Callable

import pytest

import hydranet_ros.training.loop as L


class Killed(BaseException):
    """Stands in for SIGKILL: nothing in the script may catch it."""


def interrupt_at(monkeypatch: pytest.MonkeyPatch, call: int, action: Callable[[], None]) -> None:
    """Make the ``call``-th train step (1-based) run ``action`` (before a kill, after a SIGINT)."""
    real, count = L.train_step, {"n": 0}

    def step(*args: Any, **kwargs: Any) -> dict[str, float]:
        count["n"] += 1
        if count["n"] == call and action is kill:
            kill()
        values = real(*args, **kwargs)
        if count["n"] == call and action is not kill:
            action()
        return values

    monkeypatch.setattr(L, "train_step", step)


def kill() -> None:
    raise Killed


def sigint() -> None:
    os.kill(os.getpid(), signal.SIGINT)
