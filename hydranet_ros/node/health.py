"""The node's health: which outputs to compute, each camera's frame statistics, the
diagnostic level and why no frame arrives.

Plain Python, no rclpy: the node feeds these from its callbacks and worker thread,
and the tests drive them with a fake clock.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

from ..common.timing import stage_stats
from ..messages.topics import IMAGE_TOPIC, OUTPUT_SPECS
from .qos import BEST_EFFORT


def select_outputs(enabled: Iterable[str], subscriber_counts: Mapping[str, int]) -> tuple[str, ...]:
    """The enabled outputs somebody listens to, in OUTPUT_SPECS order; the predictor
    computes exactly these, so an output nobody subscribes to costs nothing."""
    wanted = set(enabled)
    return tuple(spec.name for spec in OUTPUT_SPECS
                 if spec.name in wanted and subscriber_counts.get(spec.name, 0) > 0)


def recent_ms(seconds: Sequence[float]) -> tuple[float, float, float]:
    """p50, p95 and max of durations in seconds, in ms as replay reports them (NaN when empty)."""
    stats = stage_stats(list(seconds))
    return stats.p50_ms, stats.p95_ms, stats.max_ms


def format_ms(values: tuple[float, float, float]) -> str:
    """``recent_ms``'s three values for a diagnostic status: ``p50/p95/max`` or n/a."""
    return "n/a" if math.isnan(values[0]) else "/".join(f"{v:.1f}" for v in values)


def stamp_latency(stamp_ns: int, now_ns: int) -> float | None:
    """Seconds from the image stamp to now; None for an unset (zero) stamp, which would
    report the age of the epoch, or while simulated time has not started (now = 0).
    May be negative when the camera's clock runs ahead of ours."""
    if stamp_ns <= 0 or now_ns <= 0:
        return None
    return (now_ns - stamp_ns) / 1e9


@dataclass(frozen=True)
class StatsSnapshot:
    received: int
    processed: int
    dropped: int
    bad: int
    out_of_memory: int
    errors: int
    idle: int               # frames skipped because nobody subscribed
    resized: int            # frames of another size than the camera's previous frame
    without_points: int     # frames whose camera_info could not back-project them
    fps: float
    latency_ms: tuple[float, float, float]     # p50, p95, max over the window
    inference_ms: tuple[float, float, float]
    last_error: str
    device: str
    seconds_since_frame: float | None

    def as_pairs(self) -> list[tuple[str, str]]:
        """Key/value strings for a diagnostic status."""
        return [("device", self.device), ("frame rate (Hz)", f"{self.fps:.2f}"),
                ("latency stamp->publish p50/p95/max (ms)", format_ms(self.latency_ms)),
                ("inference p50/p95/max (ms)", format_ms(self.inference_ms)),
                ("frames received", str(self.received)), ("frames processed", str(self.processed)),
                ("frames dropped (newer frame arrived)", str(self.dropped)),
                ("frames bad (could not decode)", str(self.bad)),
                ("frames skipped (no subscribers)", str(self.idle)),
                ("frames of a new size", str(self.resized)),
                ("frames without points (camera_info)", str(self.without_points)),
                ("GPU out of memory", str(self.out_of_memory)), ("inference errors", str(self.errors)),
                ("last error", self.last_error or "none")]


class Stats:
    """Thread-safe counters and rolling timings; the subscription, the worker and the
    diagnostics timer all touch it."""

    def __init__(self, device: str = "", window_s: float = 5.0, clock: Callable[[], float] = time.monotonic,
                 max_samples: int = 1000) -> None:
        self.device = device
        self._window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._start = clock()
        self._done_times: deque[float] = deque(maxlen=max_samples)
        self._latency: deque[float] = deque(maxlen=max_samples)
        self._inference: deque[float] = deque(maxlen=max_samples)
        self._last_frame: float | None = None
        self.received = self.processed = self.dropped = self.bad = 0
        self.out_of_memory = self.errors = self.idle = self.resized = self.without_points = 0
        self.last_error = ""

    def frame_received(self, replaced: bool) -> None:
        with self._lock:
            self.received += 1
            self.dropped += int(replaced)
            self._last_frame = self._clock()

    def _problem(self, counter: str, reason: str) -> None:
        with self._lock:
            setattr(self, counter, getattr(self, counter) + 1)
            self.last_error = reason

    def frame_bad(self, reason: str) -> None:
        self._problem("bad", reason)

    def frame_idle(self) -> None:
        with self._lock:
            self.idle += 1

    def frame_resized(self, reason: str) -> None:
        self._problem("resized", reason)

    def frame_without_points(self, reason: str) -> None:
        self._problem("without_points", reason)

    def frame_out_of_memory(self, reason: str) -> None:
        self._problem("out_of_memory", reason)

    def frame_error(self, reason: str) -> None:
        self._problem("errors", reason)

    def frame_done(self, inference_s: float, latency_s: float | None) -> None:
        with self._lock:
            self.processed += 1
            self._done_times.append(self._clock())
            self._inference.append(inference_s)
            if latency_s is not None:
                self._latency.append(latency_s)

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            now = self._clock()
            cutoff = now - self._window_s
            recent = [t for t in self._done_times if t >= cutoff]
            span = min(self._window_s, now - self._start)
            fps = len(recent) / span if span > 0 else 0.0
            n = len(recent)   # timings of the frames inside the window only
            return StatsSnapshot(
                received=self.received, processed=self.processed, dropped=self.dropped, bad=self.bad,
                out_of_memory=self.out_of_memory, errors=self.errors, idle=self.idle, resized=self.resized,
                without_points=self.without_points, fps=fps,
                latency_ms=recent_ms(list(self._latency)[-n:] if n else []),
                inference_ms=recent_ms(list(self._inference)[-n:] if n else []), last_error=self.last_error, device=self.device,
                seconds_since_frame=None if self._last_frame is None else now - self._last_frame)


@dataclass
class Health:
    level: str      # "ok" | "warn" | "error"
    message: str


class HealthJudge:
    """Turns successive snapshots into a diagnostic level: problems are judged on what
    happened since the previous report, so one bad frame an hour ago doesn't keep the
    status at WARN forever."""

    def __init__(self, stale_after_s: float = 5.0) -> None:
        self._stale_after_s = stale_after_s
        self._previous: StatsSnapshot | None = None

    def judge(self, snap: StatsSnapshot, topic: str = IMAGE_TOPIC) -> Health:
        prev = self._previous
        self._previous = snap
        new = {name: getattr(snap, name) - (getattr(prev, name) if prev else 0)
               for name in ("bad", "out_of_memory", "errors", "processed", "idle", "resized", "without_points")}
        if snap.received == 0:
            return Health("warn", f"no images received yet on '{topic}'")
        if new["out_of_memory"]:
            return Health("error", f"{new['out_of_memory']} frame(s) ran out of GPU memory: {snap.last_error}")
        if new["errors"]:
            return Health("error", f"{new['errors']} frame(s) failed: {snap.last_error}")
        if new["bad"]:
            return Health("warn", f"{new['bad']} bad frame(s) dropped: {snap.last_error}")
        if snap.seconds_since_frame is not None and snap.seconds_since_frame > self._stale_after_s:
            return Health("warn", f"no image for {snap.seconds_since_frame:.1f} s on '{topic}'")
        if new["without_points"]:
            return Health("warn", f"{new['without_points']} frame(s) without points: {snap.last_error}")
        if new["resized"]:
            return Health("warn", f"{new['resized']} frame(s) changed size: {snap.last_error}")
        if new["idle"] and not new["processed"]:
            return Health("ok", "idle: no subscribers to any output")
        return Health("ok", f"{snap.fps:.1f} fps")


def format_log_line(snap: StatsSnapshot) -> str:
    def ms(values: tuple[float, float, float]) -> str:
        return "n/a" if math.isnan(values[0]) else f"{values[0]:.0f}/{values[1]:.0f} ms"
    return (f"{snap.fps:.1f} fps on {snap.device}, latency p50/p95 {ms(snap.latency_ms)}, "
            f"inference p50/p95 {ms(snap.inference_ms)}, frames: {snap.received} received, "
            f"{snap.processed} processed, {snap.dropped} dropped, {snap.bad} bad, "
            f"{snap.idle} idle, {snap.out_of_memory} out of memory, {snap.errors} errors"
            + (f", {snap.without_points} without points" if snap.without_points else "")
            + (f", {snap.resized} of a new size" if snap.resized else ""))


LEVEL_ORDER = ("ok", "warn", "error")


def worst_health(named: Sequence[tuple[str, Health]]) -> Health:
    """One level for several cameras: the worst camera's, with its name; all fine: each one's rate."""
    if not named:
        return Health("ok", "no cameras")
    name, worst = max(named, key=lambda item: LEVEL_ORDER.index(item[1].level))
    if worst.level != "ok":
        return Health(worst.level, f"{name}: {worst.message}")
    return Health("ok", "; ".join(f"{name}: {health.message}" for name, health in named))


# seconds with publishers but no frame before the node says why
STARVED_AFTER_S = 5.0


def starvation(topic: str, offered: int, matched: int, waited_s: float | None, reliability: str,
               after_s: float = STARVED_AFTER_S) -> str | None:
    """Why no frame has arrived for ``waited_s`` seconds although ``offered`` publishers are on
    ``topic`` (``matched`` of them matched the subscription), and the parameter to change;
    None while frames arrive or nobody publishes."""
    if offered == 0 or waited_s is None or waited_s < after_s:
        return None
    if matched < offered:
        return (f"{offered - matched} of {offered} publisher(s) on '{topic}' offer a QoS that the image "
                f"subscription ({reliability}) cannot match, most likely a best-effort camera: set "
                "qos_reliability to auto or best_effort")
    if reliability == BEST_EFFORT:
        return (f"{matched} publisher(s) on '{topic}' but no frame for {waited_s:.0f} s: the DDS transport "
                "drops large best-effort frames; if the camera publishes reliable, set qos_reliability to "
                "auto or reliable; if it publishes best effort, give the camera's process a larger "
                "transport buffer (config/fastdds_large_images.xml, README 'QoS')")
    return (f"{matched} publisher(s) on '{topic}' but no frame for {waited_s:.0f} s: the camera is matched "
            "but sends nothing (stopped, or its frames are too large for its transport); check it with "
            f"`ros2 topic hz {topic}`")


def lifecycle_health(state: str, failure: str, active: Health | None) -> Health:
    """The diagnostic level in each lifecycle state; ``active`` is the judged health while active."""
    if state == "active" and active is not None:
        return active
    if failure:
        return Health("error", f"{state}: the last configure failed: {failure}")
    if state == "inactive":
        return Health("ok", "inactive: frames are ignored until the node is activated")
    if state == "unconfigured":
        return Health("ok", "unconfigured: waiting for configure")
    return Health("ok", state)
