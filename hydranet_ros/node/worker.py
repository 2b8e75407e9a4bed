"""The node's inference thread: warm up, then run the newest frames until stopped.

Plain Python, no rclpy. The subscriptions only park each camera's newest message in
the thread's ``CameraSlots``; the thread takes whatever is waiting, one frame per
camera, so a slow GPU drops frames rather than queueing them. The warm-up runs in this thread too,
because torch.compile keeps its CUDA graphs per thread.

A forward pass cannot be interrupted. ``stop`` therefore waits only as long as it
is told and reports whether the thread ended; a process that must exit while a
long warm-up (a torch.compile, a large CPU frame) is still running exits without
waiting for it (see ``node.main``).
"""
from __future__ import annotations

import threading
from typing import Callable, Generic, TypeVar

from .camera_slots import CameraSlots

T = TypeVar("T")

# how long the thread waits for a frame before checking whether it should stop
POLL_S = 0.5


class InferenceWorker(Generic[T]):
    def __init__(self, process: Callable[[dict[str, T]], None], warm_up: Callable[[Callable[[], bool]], None],
                 on_error: Callable[[Exception], None], slot: CameraSlots[T] | None = None,
                 name: str = "hydranet_inference") -> None:
        """``warm_up(stopping)`` runs first and should return early once ``stopping()`` is
        True; ``process(frames)`` runs for the frames taken at once from ``slot`` (by camera;
        default: one camera named ""); an exception from it goes to ``on_error`` and the
        thread carries on (one broken frame must not stop the node)."""
        self.slot: CameraSlots[T] = slot if slot is not None else CameraSlots()
        self.warmed = threading.Event()
        self._process, self._warm_up, self._on_error = process, warm_up, on_error
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def stopping(self) -> bool:
        return self.slot.closed

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            self._warm_up(lambda: self.slot.closed)
        except Exception as error:  # noqa: BLE001 - a failed warm-up still leaves frames to run
            if not self.slot.closed:
                self._on_error(error)
        finally:
            self.warmed.set()
        while not self.slot.closed:
            frames = self.slot.take(timeout=POLL_S)
            if frames is None:
                continue
            try:
                self._process(frames)
            except Exception as error:  # noqa: BLE001 - one broken frame must not stop the node
                if self.slot.closed:
                    return  # shutting down: what the frame needed may already be gone
                self._on_error(error)

    def wait_warmed(self, give_up: Callable[[], bool], poll_s: float = 0.1) -> bool:
        """Wait for the warm-up to finish; False as soon as ``give_up()`` says so. Short waits,
        so that a signal handler in the waiting (main) thread runs between them."""
        while not self.warmed.wait(poll_s):
            if give_up() or not self._thread.is_alive():
                return self.warmed.is_set()
        return True

    def stop(self, timeout: float) -> bool:
        """Ask the thread to end and wait up to ``timeout`` s; True once it has ended."""
        self.slot.close()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return not self._thread.is_alive()
