"""Per-stage latency measurement and its percentile report.

The replay tool and the benchmark both time frames stage by stage (decode,
predict, encode, write ...) with ``StageTimer`` and print the same table, so
numbers from the two tools can be compared directly.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Iterator, Sequence

import numpy as np

PERCENTILES = (50, 95, 99)


@dataclass(frozen=True)
class StageStats:
    count: int
    total_s: float
    mean_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def stage_stats(seconds: Sequence[float]) -> StageStats:
    """Summary of one stage's per-frame durations (seconds in, milliseconds out)."""
    if len(seconds) == 0:
        nan = float("nan")
        return StageStats(0, 0.0, nan, nan, nan, nan, nan)
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    p50, p95, p99 = np.percentile(ms, PERCENTILES)
    return StageStats(count=int(ms.size), total_s=float(ms.sum() / 1000.0), mean_ms=float(ms.mean()),
                      p50_ms=float(p50), p95_ms=float(p95), p99_ms=float(p99), max_ms=float(ms.max()))


class StageTimer:
    """Collects wall-clock durations per named stage, in the order stages were first seen.

    Durations use ``time.perf_counter``; callers must make device work finish
    inside the stage (``Predictor.predict`` does, by copying results to the host).
    """

    def __init__(self, stages: Sequence[str] = ()) -> None:
        # pre-declared stages keep their table position even if they never run
        self._samples: dict[str, list[float]] = {name: [] for name in stages}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.record(name, time.perf_counter() - start)

    def record(self, name: str, seconds: float) -> None:
        self._samples.setdefault(name, []).append(seconds)

    def samples(self, name: str) -> list[float]:
        return list(self._samples.get(name, []))

    def stats(self) -> dict[str, StageStats]:
        return {name: stage_stats(values) for name, values in self._samples.items()}


def format_table(stats: dict[str, StageStats]) -> str:
    """A fixed-width text table: one row per stage, latencies in milliseconds."""
    header = f"{'stage':<12} {'count':>6} {'mean':>9} {'p50':>9} {'p95':>9} {'p99':>9} {'max':>9}"
    lines = [header, "-" * len(header)]
    for name, s in stats.items():
        lines.append(f"{name:<12} {s.count:>6d} {s.mean_ms:>9.2f} {s.p50_ms:>9.2f} "
                     f"{s.p95_ms:>9.2f} {s.p99_ms:>9.2f} {s.max_ms:>9.2f}")
    lines.append("(latencies in ms)")
    return "\n".join(lines)
