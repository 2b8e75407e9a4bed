"""Output messages from arrays: one implementation for the node (rclpy messages) and
the replay tool (rosbags typestore messages).

Both message families take the same keyword fields, so each builder takes the
classes as a parameter (``MessageTypes``) along with how that family wants its
``data`` field filled. The header object is passed through unchanged: the node
hands in the input message's header, replay one built for its typestore.

Per frame each output is copied at most once between the predictor's array and
the message: rclpy stores an ``array.array('B')`` as it is, filled from the
array's memory in one copy; rosbags serialises straight from a numpy view.
"""
from __future__ import annotations

import array
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .image import image_fields


def byte_array(pixels: np.ndarray) -> array.array:
    """The bytes of a C-contiguous array as ``array.array('B')``, in one copy. rclpy keeps
    such an array as it is; bytes or a list would be checked element by element."""
    data = array.array("B")
    data.frombytes(memoryview(pixels).cast("B"))
    return data


def byte_view(pixels: np.ndarray) -> np.ndarray:
    """The bytes of a C-contiguous array as a flat uint8 view: no copy (rosbags messages)."""
    return pixels.reshape(-1).view(np.uint8)


@dataclass(frozen=True)
class MessageTypes:
    """One message family: its Image and CameraInfo classes and its ``data`` filler."""

    image: type
    camera_info: type
    data: Callable[[np.ndarray], Any]


def ros_message_types() -> MessageTypes:
    """sensor_msgs' rclpy classes, for the node."""
    from sensor_msgs.msg import CameraInfo, Image

    return MessageTypes(image=Image, camera_info=CameraInfo, data=byte_array)


def image_message(types: MessageTypes, header: Any, pixels: np.ndarray, encoding: str) -> Any:
    """An Image carrying ``pixels`` in ``encoding`` (tightly packed rows) and ``header`` as given.

    The message may share memory with ``pixels`` (rosbags): serialise or publish it before
    the array is reused."""
    fields = image_fields(pixels, encoding)
    return types.image(header=header, height=fields.height, width=fields.width, encoding=fields.encoding,
                       is_bigendian=fields.is_bigendian, step=fields.step, data=types.data(fields.data))


def depth_camera_info(types: MessageTypes, header: Any, camera_info: Any) -> Any:
    """``depth/camera_info``: the camera's CameraInfo with the depth image's header.

    The predictor's outputs are always at the input's resolution, so the camera's
    intrinsics, distortion, rectification, binning and ROI describe the depth image
    exactly as they describe the camera image; only the header changes."""
    return types.camera_info(
        header=header, height=camera_info.height, width=camera_info.width,
        distortion_model=camera_info.distortion_model, d=camera_info.d, k=camera_info.k, r=camera_info.r,
        p=camera_info.p, binning_x=camera_info.binning_x, binning_y=camera_info.binning_y, roi=camera_info.roi)
