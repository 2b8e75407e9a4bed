"""sensor_msgs/PointCloud2 from the predictor's points, and the camera_info checks they need.

One builder for both message families, as in ``builders``: the classes come in
``MessageTypes`` (rclpy for the node, a rosbags typestore for replay). The
points are the structured array of ``inference.points.point_dtype`` (x, y, z,
rgb float32, label uint8 or uint16; 20 bytes a point, little-endian), so the
message's fields are read off the array's dtype and its data is the array's
bytes: copied once for rclpy, a view for rosbags. An organized cloud is the
strided image grid (height x width, NaN where a point was dropped); a dense one
is 1 x N.
"""
from __future__ import annotations

import sys
from typing import Any

import numpy as np

from ..common.pinhole import CameraError, PinholeK
from .builders import MessageTypes
from .image import data_bytes

# sensor_msgs/PointField datatypes by numpy type
DATATYPES = {np.dtype("int8"): 1, np.dtype("uint8"): 2, np.dtype("int16"): 3, np.dtype("uint16"): 4,
             np.dtype("int32"): 5, np.dtype("uint32"): 6, np.dtype("float32"): 7, np.dtype("float64"): 8}
NUMPY_TYPES = {code: dtype for dtype, code in DATATYPES.items()}


def point_cloud_message(types: MessageTypes, header: Any, points: np.ndarray) -> Any:
    """A PointCloud2 holding ``points`` (structured, (h, w) organized or (N,) dense) and ``header``.

    The message may share memory with ``points`` (rosbags): serialise or publish it
    before the array is reused."""
    if types.point_cloud is None or types.point_field is None:
        raise ValueError("these message types have no PointCloud2/PointField classes")
    if points.dtype.names is None or points.ndim not in (1, 2):
        raise ValueError(f"expected a structured (N,) or (H, W) array of points, got {points.dtype} {points.shape}")
    if sys.byteorder != "little" or any(points.dtype.fields[n][0].byteorder == ">" for n in points.dtype.names):
        raise ValueError("points must be little-endian")  # what is_bigendian=False promises
    height, width = points.shape if points.ndim == 2 else (1, points.shape[0])
    fields = [types.point_field(name=name, offset=offset, datatype=DATATYPES[dtype.newbyteorder("=")], count=1)
              for name, (dtype, offset) in points.dtype.fields.items()]
    points = np.ascontiguousarray(points)
    # dense clouds hold only kept points; an organized one is dense when nothing was dropped
    is_dense = points.ndim == 1 or not bool(np.isnan(points["x"]).any())
    step = points.dtype.itemsize
    return types.build(types.point_cloud, dict(header=header, height=height, width=width, fields=fields,
                                               is_bigendian=False, point_step=step, row_step=step * width,
                                               is_dense=is_dense), points.reshape(-1).view(np.uint8))


def cloud_array(msg: Any) -> np.ndarray:
    """A PointCloud2's points as an (height, width) structured array, decoded from its
    fields (for reading clouds back, from a bag or a topic); a view of ``msg.data``."""
    order = ">" if msg.is_bigendian else "<"
    names, formats, offsets = [], [], []
    for field in msg.fields:
        if field.datatype not in NUMPY_TYPES:
            raise ValueError(f"field {field.name!r} has unknown PointField datatype {field.datatype}")
        names.append(field.name)
        formats.append((NUMPY_TYPES[field.datatype].newbyteorder(order), (field.count,)) if field.count > 1
                       else NUMPY_TYPES[field.datatype].newbyteorder(order))
        offsets.append(field.offset)
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": msg.point_step})
    data = data_bytes(msg.data)
    rows = data[: msg.row_step * msg.height].reshape(msg.height, msg.row_step)[:, : msg.point_step * msg.width]
    return np.ascontiguousarray(rows).view(dtype).reshape(msg.height, msg.width)


def pinhole_from_camera_info(info: Any) -> PinholeK:
    """The intrinsics of a sensor_msgs/CameraInfo (rclpy or rosbags): K and the calibrated size."""
    return PinholeK.from_k(info.k, width=int(info.width), height=int(info.height))


def camera_for_frame(info: Any | None, width: int, height: int) -> PinholeK:
    """The intrinsics to back-project a ``width`` x ``height`` frame with, or a CameraError that
    says why there are none: no camera_info yet, no focal length, a size that does not match."""
    if info is None:
        raise CameraError("no camera_info received yet")
    camera = pinhole_from_camera_info(info)
    camera.check(width, height)
    return camera
