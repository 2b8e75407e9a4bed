"""The newest frame of each camera, waiting for the inference thread.

Plain Python, no rclpy. Each camera keeps only its newest frame: one that arrives
while the camera's previous frame still waits replaces it (``put`` says so, and the
node counts it as dropped for that camera), so a slow GPU skips frames rather than
building a backlog. The inference thread takes every waiting frame at once, so that
frames of several cameras can run as one batch. With ``gather_s`` > 0 it waits for the
cameras that have no frame waiting yet, but never longer than ``gather_s`` after the
oldest waiting frame arrived; with 0 it takes only what is already there.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Generic, Sequence, TypeVar

T = TypeVar("T")


class CameraSlots(Generic[T]):
    def __init__(self, cameras: Sequence[str] = ("",), gather_s: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``cameras``: the names frames are put under (one "" for a single camera);
        ``gather_s`` may be changed while frames run (the node's ``batch_wait_ms``)."""
        self.cameras = tuple(cameras)
        self.gather_s = gather_s
        self._clock = clock
        self._items: dict[str, T] = {}
        self._arrived: dict[str, float] = {}
        self._closed = False
        self._cond = threading.Condition()

    def put(self, camera: str, item: T) -> bool:
        """Store ``item`` as ``camera``'s newest frame; True if it replaced one not yet taken (dropped)."""
        with self._cond:
            replaced = camera in self._items
            self._items[camera] = item
            self._arrived.setdefault(camera, self._clock())   # a replacement waits no longer than the first
            self._cond.notify()
            return replaced

    def take(self, timeout: float | None = None) -> dict[str, T] | None:
        """Every waiting frame by camera (in ``cameras`` order), waiting up to ``timeout`` s for
        the first; None on timeout or once closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._items or self._closed, timeout)
            if self._closed or not self._items:
                return None
            if self.gather_s > 0 and len(self._items) < len(self.cameras):
                deadline = min(self._arrived.values()) + self.gather_s
                self._cond.wait_for(lambda: len(self._items) == len(self.cameras) or self._closed,
                                    max(0.0, deadline - self._clock()))
                if self._closed:
                    return None
            items, self._items = self._items, {}
            self._arrived.clear()
            return {camera: items[camera] for camera in self.cameras if camera in items}

    def clear(self) -> None:
        """Forget the frames not yet taken (the node was deactivated)."""
        with self._cond:
            self._items.clear()
            self._arrived.clear()

    def close(self) -> None:
        """Wake the worker and make every later ``take`` return None."""
        with self._cond:
            self._closed = True
            self._items.clear()
            self._arrived.clear()
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
