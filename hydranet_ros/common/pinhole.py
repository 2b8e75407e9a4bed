"""A camera's pinhole intrinsics as plain values, and the checks that make them usable.

The predictor back-projects depth with them (``inference.points``) and the message
layer reads them from sensor_msgs/CameraInfo (``messages.point_cloud``); both import
them from here, beneath either.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np


class CameraError(ValueError):
    """Camera intrinsics that cannot back-project this frame; the message says why."""


@dataclass(frozen=True)
class PinholeK:
    """The pinhole intrinsics of the image the depth belongs to (from camera_info's K)
    and the image size they were calibrated for (0 = not given: not checked)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int = 0
    height: int = 0

    @classmethod
    def from_k(cls, k: Sequence[float], width: int = 0, height: int = 0) -> "PinholeK":
        """From a row-major 3x3 K, as in sensor_msgs/CameraInfo."""
        k = [float(v) for v in np.asarray(k, dtype=np.float64).reshape(-1)]
        if len(k) != 9:
            raise CameraError(f"K must have 9 values (3x3, row-major), got {len(k)}")
        return cls(fx=k[0], fy=k[4], cx=k[2], cy=k[5], width=int(width), height=int(height))

    def check(self, width: int, height: int) -> None:
        """CameraError unless these intrinsics can back-project a ``width`` x ``height`` depth image."""
        if not (math.isfinite(self.fx) and math.isfinite(self.fy) and self.fx > 0 and self.fy > 0):
            raise CameraError(f"camera_info has no usable focal length (fx={self.fx:g}, fy={self.fy:g}); "
                              "is the camera calibrated?")
        if not (math.isfinite(self.cx) and math.isfinite(self.cy)):
            raise CameraError(f"camera_info has a non-finite principal point (cx={self.cx:g}, cy={self.cy:g})")
        if (self.width, self.height) != (0, 0) and (self.width, self.height) != (width, height):
            raise CameraError(f"camera_info is for {self.width}x{self.height} images, the frame is {width}x{height}")
