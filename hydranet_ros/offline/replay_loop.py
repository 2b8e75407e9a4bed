"""The replay's frame loop: decode, predict, hand each frame to the outputs, time every stage.

Stages: ``read`` (everything between two frames: reading, copying other
messages), ``decode``, ``predict``, ``encode`` and ``write`` (all outputs
together, one sample per frame each) and ``evaluate`` (ground truth, including
ground-truth messages read between frames; totals exact, attribution +-1 frame).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from ..common.timing import StageTimer
from ..inference.predictor import POINTS, Predictor
from ..messages.image import ImageDecodeError
from .bagio import BagMessage
from .replay_outputs import FrameOutput, GroundTruth
from .replay_points import PointsRequest
from .sources import Frame

STAGES = ("read", "decode", "predict", "encode", "write", "evaluate")
MAX_LISTED_SKIPS = 100


@dataclass
class FrameCounts:
    read: int = 0
    done: int = 0
    skipped_count: int = 0
    skipped: list[dict[str, Any]] = field(default_factory=list)   # the first MAX_LISTED_SKIPS
    warmup_s: float = 0.0

    def skip(self, frame: Frame, reason: str) -> None:
        self.skipped_count += 1
        if len(self.skipped) < MAX_LISTED_SKIPS:
            self.skipped.append({"index": frame.index, "stamp_ns": frame.header.stamp_ns, "reason": reason})


class FrameLoop:
    """Runs the predictor over a source's messages and feeds the outputs."""

    def __init__(self, predictor: Predictor, predict_outputs: tuple[str, ...], outputs: Sequence[FrameOutput],
                 ground_truth: GroundTruth | None, timer: StageTimer, warmup: int,
                 points: PointsRequest | None = None) -> None:
        self.predictor, self.predict_outputs, self.points = predictor, predict_outputs, points
        self.outputs, self.ground_truth, self.timer, self.warmup = list(outputs), ground_truth, timer, warmup
        self.counts = FrameCounts()

    def run(self, items: Iterable[Frame | BagMessage], max_frames: int | None, progress: Any) -> FrameCounts:
        last = time.perf_counter()
        for item in items:
            if not isinstance(item, Frame):
                self._message(item)
                continue
            self._frame(item, time.perf_counter() - last)
            progress.update(1)
            if max_frames is not None and self.counts.read >= max_frames:
                break
            last = time.perf_counter()
        return self.counts

    def _message(self, message: BagMessage) -> None:
        for output in self.outputs:
            output.message(message)
        if self.ground_truth is not None:
            self.ground_truth.message(message)

    def _frame(self, frame: Frame, read_s: float) -> None:
        self.counts.read += 1
        try:
            with self.timer.stage("decode"):
                decoded = frame.decode()
        except ImageDecodeError as error:
            self.counts.skip(frame, str(error))
            for output in self.outputs:
                output.skipped(frame)
            return
        truth_s = self.ground_truth.take_seconds() if self.ground_truth is not None else 0.0
        self.timer.record("read", read_s - truth_s)
        width, height = decoded.size
        if self.counts.done == 0 and self.warmup > 0:
            # lazy initialisation (allocators, cuDNN autotuning) would otherwise be the first frame's latency
            start = time.perf_counter()
            self.predictor.warmup(height, width, self.warmup, decoded.channels)
            self.counts.warmup_s = time.perf_counter() - start
        outputs, cloud = self.predict_outputs, {}
        camera = self.points.camera(width, height) if self.points is not None else None
        if camera is not None:
            outputs, cloud = (*outputs, POINTS), {"camera": camera, "points": self.points.options}
        with self.timer.stage("predict"):
            # in the frame's own channel order: the predictor converts it on the device
            prediction = self.predictor.predict(decoded.pixels, outputs, decoded.channels, **cloud)
        if prediction.points is not None:
            self.points.record(prediction.points)
        with self.timer.stage("encode"):
            encoded = [output.encode(frame, decoded, prediction) for output in self.outputs]
        with self.timer.stage("write"):
            for output, item in zip(self.outputs, encoded):
                output.write(frame, item)
        if self.ground_truth is not None:
            start = time.perf_counter()
            self.ground_truth.evaluate(frame, prediction)
            self.timer.record("evaluate", time.perf_counter() - start + truth_s)
        self.counts.done += 1
