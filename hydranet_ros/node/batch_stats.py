"""How the inference thread ran the frames: how many frames went through the network
together (a histogram of batch sizes) and how long each pass took. Plain Python, no
rclpy; the inference thread writes, the diagnostics timer reads."""
from __future__ import annotations

import math
import threading
from collections import Counter, deque
from dataclasses import dataclass

from .health import format_ms, recent_ms


@dataclass(frozen=True)
class BatchSnapshot:
    sizes: dict[int, int]                        # batch size -> passes of that size
    inference_ms: tuple[float, float, float]     # p50, p95, max of the recent passes

    def histogram(self) -> str:
        return ", ".join(f"{size}: {count}" for size, count in sorted(self.sizes.items())) or "none yet"

    def summary(self) -> str:
        """For the status line: the histogram and the median pass."""
        timing = "" if math.isnan(self.inference_ms[0]) else f" (pass p50 {self.inference_ms[0]:.0f} ms)"
        return f"batches {self.histogram()}{timing}"

    def as_pairs(self) -> list[tuple[str, str]]:
        """Key/value strings for a diagnostic status."""
        return [("batches (frames in one pass: passes)", self.histogram()),
                ("batch inference p50/p95/max (ms)", format_ms(self.inference_ms))]


class BatchStats:
    def __init__(self, max_samples: int = 1000) -> None:
        self._lock = threading.Lock()
        self._sizes: Counter[int] = Counter()
        self._inference: deque[float] = deque(maxlen=max_samples)

    def batch_done(self, size: int, inference_s: float) -> None:
        with self._lock:
            self._sizes[size] += 1
            self._inference.append(inference_s)

    def snapshot(self) -> BatchSnapshot:
        with self._lock:
            return BatchSnapshot(sizes=dict(self._sizes), inference_ms=recent_ms(self._inference))
