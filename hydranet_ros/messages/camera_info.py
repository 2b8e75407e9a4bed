"""Camera intrinsics for an output image, as plain values (no ROS types)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Intrinsics:
    width: int
    height: int
    k: tuple[float, ...]          # 3x3 row-major
    p: tuple[float, ...]          # 3x4 row-major
    roi: tuple[int, int, int, int] = (0, 0, 0, 0)   # x_offset, y_offset, width, height


def scale_intrinsics(info: Intrinsics, input_size: tuple[int, int], output_size: tuple[int, int]) -> Intrinsics:
    """The camera's intrinsics for an output image of ``output_size`` (width, height)
    computed from an input image of ``input_size``.

    Scales like image_proc's resize: fx, cx, fy, cy (in K and P), P's Tx and Ty, the
    calibrated width/height and the ROI all by the output/input ratio. D, R and binning
    do not depend on the image size and are left to the caller to copy. An uncalibrated
    camera_info (width/height 0) stays uncalibrated."""
    (in_w, in_h), (out_w, out_h) = input_size, output_size
    if min(in_w, in_h, out_w, out_h) <= 0:
        raise ValueError(f"image sizes must be positive, got {input_size} -> {output_size}")
    if (in_w, in_h) == (out_w, out_h):
        return info
    sx, sy = out_w / in_w, out_h / in_h
    k = list(info.k)
    k[0], k[2] = k[0] * sx, k[2] * sx          # fx, cx
    k[4], k[5] = k[4] * sy, k[5] * sy          # fy, cy
    p = list(info.p)
    p[0], p[2], p[3] = p[0] * sx, p[2] * sx, p[3] * sx   # fx', cx', Tx = -fx' * baseline
    p[5], p[6], p[7] = p[5] * sy, p[6] * sy, p[7] * sy   # fy', cy', Ty
    x, y, w, h = info.roi
    return Intrinsics(width=round(info.width * sx), height=round(info.height * sy), k=tuple(k), p=tuple(p),
                      roi=(round(x * sx), round(y * sy), round(w * sx), round(h * sy)))
