"""A labelled 3-D point cloud from the predicted depth and labels, on the model's device.

Back-projection through the camera's pinhole K in its optical frame (REP 103: z
forward, x right, y down): pixel (u, v) with depth z becomes
``x = (u - cx) / fx * z``, ``y = (v - cy) / fy * z``. The ratios depend only on the
column or the row, so they are computed once per column and row and each
coordinate costs one multiply per point. Pixel (0, 0) is the centre of the first
pixel, as in image_geometry and depth_image_proc.

Only every ``stride``-th pixel in each direction is taken (``[::stride, ::stride]``,
from pixel 0), points beyond ``max_depth``, without a finite positive depth or
of an excluded class are dropped, and only what is kept is copied to the host.

Each point is five 4-byte words, so that one tensor holds the whole cloud and one
copy moves it: x, y, z (float32 metres), rgb (0x00RRGGBB, read as a float32 as
RViz and PCL expect), label (the class id in the low bytes of a little-endian
word). On the host ``point_dtype`` views those words as a structured array with
fields x, y, z, rgb and label (uint8, or uint16 above 255 classes): the layout of
the PointCloud2 that ``messages.point_cloud`` builds. An organized cloud keeps the
strided grid and marks dropped points with NaN x, y, z (and rgb = label = 0), as
PCL does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch

from ..common.pinhole import PinholeK

# 640x480 -> 160x120 = 19,200 points, about the 20 k a costmap layer digests at camera rate
DEFAULT_STRIDE = 4
COLOUR_SOURCES = ("input", "class")
WORDS = 5                 # x, y, z, rgb, label
POINT_STEP = 4 * WORDS    # bytes per point


class UnknownClassError(ValueError):
    """Class names the model card does not have (the message names them)."""


@dataclass(frozen=True)
class PointsOptions:
    """Which points a cloud holds and how they look. ``exclude`` holds class ids (see
    ``points_options`` for names); ``max_depth`` None = no limit; ``colour``: ``input``
    (the camera pixel) or ``class`` (the class colour)."""

    stride: int = DEFAULT_STRIDE
    max_depth: float | None = None
    exclude: tuple[int, ...] = ()
    organized: bool = False
    colour: str = "input"

    def __post_init__(self) -> None:
        if isinstance(self.stride, bool) or not isinstance(self.stride, (int, np.integer)) or self.stride < 1:
            raise ValueError(f"points stride must be a positive integer, got {self.stride!r}")
        if self.max_depth is not None and not (self.max_depth > 0 and math.isfinite(self.max_depth)):
            raise ValueError(f"points max depth must be a positive number of metres (or none), got {self.max_depth}")
        if self.colour not in COLOUR_SOURCES:
            raise ValueError(f"points colour must be one of {', '.join(COLOUR_SOURCES)}, got {self.colour!r}")


def points_options(class_names: Sequence[str], stride: int = DEFAULT_STRIDE, max_depth: float | None = None,
                   exclude_classes: Iterable[str] = (), organized: bool = False,
                   colour: str = "input") -> PointsOptions:
    """``PointsOptions`` with excluded classes given by name (the model card's); a
    ``max_depth`` of 0 means no limit. UnknownClassError naming any class the model lacks,
    ValueError for another bad option."""
    names = [name.strip() for name in exclude_classes if name.strip()]
    unknown = [name for name in names if name not in class_names]
    if unknown:
        raise UnknownClassError(f"unknown class name(s) {', '.join(map(repr, unknown))}; "
                         f"the model's classes are {', '.join(class_names)}")
    ids = tuple(sorted({list(class_names).index(name) for name in names}))
    return PointsOptions(stride=stride, max_depth=max_depth or None, exclude=ids, organized=organized,
                         colour=colour)


def point_dtype(num_classes: int) -> np.dtype:
    """The host layout of a point: x, y, z, rgb float32 and the label in the fifth word
    (uint8, or uint16 for more than 255 classes); little-endian, 20 bytes."""
    label = "<u2" if num_classes > 255 else "<u1"
    return np.dtype({"names": ["x", "y", "z", "rgb", "label"], "formats": ["<f4", "<f4", "<f4", "<f4", label],
                     "offsets": [0, 4, 8, 12, 16], "itemsize": POINT_STEP})


def intrinsics_tensor(camera: PinholeK | Sequence[PinholeK] | None, count: int, height: int, width: int,
                      device: torch.device) -> torch.Tensor:
    """(N, 4) float32 fx, fy, cx, cy for ``count`` frames of ``width`` x ``height``: one camera
    for every frame, or one per frame; each checked (``PinholeK.check``: CameraError)."""
    if camera is None:
        raise ValueError("the 'points' output needs the camera's intrinsics: camera=PinholeK(fx, fy, cx, cy)")
    cameras = [camera] * count if isinstance(camera, PinholeK) else list(camera)
    if len(cameras) != count:
        raise ValueError(f"{len(cameras)} cameras for {count} frames")
    for one in cameras:
        one.check(width, height)
    return torch.tensor([[c.fx, c.fy, c.cx, c.cy] for c in cameras], dtype=torch.float32, device=device)


def pack_rgb(rgb: torch.Tensor) -> torch.Tensor:
    """(..., 3) uint8 -> (...) int32 0x00RRGGBB."""
    rgb = rgb.to(torch.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def point_grid(depth: torch.Tensor, labels: torch.Tensor, rgb: torch.Tensor, intrinsics: torch.Tensor,
               options: PointsOptions, palette: torch.Tensor | None = None) -> torch.Tensor:
    """Back-project N frames on their device -> (N, h, w, 5) int32 words of the strided grid.

    ``depth`` (N, H, W) metres; ``labels`` (N, H, W) class ids; ``rgb`` (N, H, W, 3)
    uint8 frames (for ``colour="input"``; a view is enough); ``intrinsics`` (N, 4)
    fx, fy, cx, cy (``intrinsics_tensor``); ``palette`` (classes, 3) uint8 for
    ``colour="class"``. Dropped points have NaN x, y, z and zero rgb and label."""
    s = options.stride
    z = depth[:, ::s, ::s].float()
    ids = labels[:, ::s, ::s].long()
    height, width = depth.shape[1:]
    device = z.device
    fx, fy, cx, cy = (intrinsics[:, i].to(device, torch.float32) for i in range(4))
    u = torch.arange(0, width, s, device=device, dtype=torch.float32)
    v = torch.arange(0, height, s, device=device, dtype=torch.float32)
    x_per_z = (u[None, :] - cx[:, None]) / fx[:, None]          # (N, w)
    y_per_z = (v[None, :] - cy[:, None]) / fy[:, None]          # (N, h)
    x = z * x_per_z[:, None, :]
    y = z * y_per_z[:, :, None]
    keep = torch.isfinite(z) & (z > 0)
    if options.max_depth is not None:
        keep &= z <= options.max_depth
    if options.exclude:
        keep &= ~torch.isin(ids, torch.tensor(options.exclude, device=device))
    if options.colour == "class":
        if palette is None:
            raise ValueError("class colours need the palette")
        colours = palette[ids]
    else:
        colours = rgb[:, ::s, ::s]
    xyz = torch.where(keep[..., None], torch.stack((x, y, z), dim=-1), float("nan"))
    rgb = torch.where(keep, pack_rgb(colours), 0)
    label = torch.where(keep, ids.to(torch.int32), 0)
    return torch.cat((xyz.view(torch.int32), rgb[..., None], label[..., None]), dim=-1)


def frame_points(grid: torch.Tensor, organized: bool) -> torch.Tensor:
    """One frame's (h, w, 5) grid as the cloud to copy to the host: the grid itself
    (organized) or only its kept points, (P, 5) (dense; this synchronises with the device)."""
    if organized:
        return grid
    kept = ~torch.isnan(grid[..., 0].view(torch.float32))
    return grid[kept]


def host_points(words: np.ndarray, num_classes: int) -> np.ndarray:
    """Host words (..., 5) int32 -> the structured points (...) of ``point_dtype``, a view."""
    words = np.ascontiguousarray(words)
    return words.view(point_dtype(num_classes))[..., 0]
