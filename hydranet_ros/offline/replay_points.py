"""Replay's point cloud: the camera each frame is back-projected with, and what the report says.

The cloud is computed by the predictor with the rest of the frame (``inference.points``)
from the camera's latest CameraInfo in the recording; ``BagOutput`` writes it as the
node's PointCloud2 (``messages.point_cloud``). A frame that cannot have points (no
camera_info yet, none in the input, one with no focal length or for another image
size) still gets its other outputs; it is counted with its reason.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Callable

import numpy as np

from ..common.pinhole import CameraError, PinholeK
from ..inference.points import PointsOptions, UnknownClassError, points_options
from ..messages.point_cloud import camera_for_frame
from ..messages.topics import camera_info_beside
from .replay_plan import Plan, ReplayError, ReplayOptions
from .sources import BagSource, FrameSource


def replay_points_options(options: ReplayOptions, class_names: list[str]) -> PointsOptions:
    """The point options of a replay, class names checked against the model card's."""
    try:
        return points_options(class_names, stride=options.points_stride, max_depth=options.points_max_depth,
                              exclude_classes=options.points_exclude, organized=options.points_organized,
                              colour=options.points_colour)
    except UnknownClassError as error:
        raise ReplayError(f"--points-exclude: {error}") from None
    except ValueError as error:  # options built in code rather than by the command line
        raise ReplayError(str(error)) from None


def missing_camera_info(plan: Plan, source: FrameSource) -> str | None:
    """Why no frame of this input can have points, or None when a camera_info topic was found."""
    if plan.camera_info_topic is not None:
        return None
    if isinstance(source, BagSource):
        expected = camera_info_beside(source.image_topic, source.image_msgtype)
        return f"the input has no CameraInfo on {expected} (name one with --camera-info-topic)"
    return f"a {source.kind} input has no camera_info"


class PointsRequest:
    """Per frame, the camera to back-project with (or None, counted with the reason), and the
    number of points each frame got."""

    def __init__(self, options: PointsOptions, camera_info: Callable[[], Any], missing: str | None = None) -> None:
        """``camera_info()`` returns the recording's latest CameraInfo or None; ``missing`` says
        why there will never be one (no camera_info topic in the input)."""
        self.options, self._camera_info, self._missing = options, camera_info, missing
        self.without: Counter[str] = Counter()
        self.sizes: list[int] = []

    def camera(self, width: int, height: int) -> PinholeK | None:
        if self._missing is not None:
            self.without[self._missing] += 1
            return None
        try:
            return camera_for_frame(self._camera_info(), width, height)
        except CameraError as error:
            self.without[str(error)] += 1
            return None

    def record(self, points: np.ndarray) -> None:
        """A frame's cloud; an organized one counts its kept (non-NaN) points."""
        self.sizes.append(int(points.size if points.ndim == 1 else np.count_nonzero(~np.isnan(points["x"]))))

    def report(self, topic: str) -> dict[str, Any]:
        sizes = np.asarray(self.sizes or [0])
        return {"topic": topic, "stride": self.options.stride, "max_depth": self.options.max_depth,
                "exclude_ids": list(self.options.exclude), "organized": self.options.organized,
                "colour": self.options.colour, "frames_with_points": len(self.sizes),
                "frames_without_points": sum(self.without.values()), "without_points_reasons": dict(self.without),
                "points_per_frame": {"min": int(sizes.min()), "median": float(np.median(sizes)),
                                     "max": int(sizes.max()), "mean": float(sizes.mean())}}


def points_lines(points: dict[str, Any]) -> str:
    """The report's point-cloud lines."""
    per_frame = points["points_per_frame"]
    lines = [f"points: {points['topic']}: {points['frames_with_points']} frames with points "
             f"(per frame min {per_frame['min']}, median {per_frame['median']:.0f}, max {per_frame['max']}), "
             f"{points['frames_without_points']} without"]
    lines += [f"  {count} frame(s) without points: {reason}"
              for reason, count in points["without_points_reasons"].items()]
    return "\n".join(lines)
