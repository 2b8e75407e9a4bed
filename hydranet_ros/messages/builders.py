"""Output messages from arrays: one implementation for the node (rclpy messages) and
the replay tool (rosbags typestore messages).

Both message families take the same keyword fields, so each builder takes the
classes as a parameter (``MessageTypes``) along with how that family wants its
``data`` field filled. The header object is passed through unchanged: the node
hands in the input message's header, replay one built for its typestore.

Per frame each output is copied at most once between the predictor's array and
the message: into an ``array.array('B')`` that rclpy keeps as it is, or not at
all for rosbags, which serialises straight from a numpy view.
"""
from __future__ import annotations

import array
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .image import image_fields


def byte_array(pixels: np.ndarray) -> array.array:
    """The bytes of a C-contiguous array as ``array.array('B')``, in one copy."""
    data = array.array("B")
    data.frombytes(memoryview(pixels).cast("B"))
    return data


def with_byte_array(message_class: type, fields: dict[str, Any], pixels: np.ndarray) -> Any:
    """An rclpy message with ``data`` = the pixels' bytes, copied once.

    rclpy keeps an ``array.array('B')`` as it is when it checks fields (Humble always
    does); from Jazzy on it checks only with ROS_PYTHON_CHECK_FIELDS=1 and otherwise
    copies the array again, and its constructor copies ``data`` too. So the message is
    built without data and the array assigned with checking on: the check is a type test."""
    msg = message_class(**fields)
    checking = getattr(msg, "_check_fields", None)
    if checking is False:
        msg._check_fields = True
        msg.data = byte_array(pixels)
        msg._check_fields = False
    else:
        msg.data = byte_array(pixels)
    return msg


def with_byte_view(message_class: type, fields: dict[str, Any], pixels: np.ndarray) -> Any:
    """A rosbags message with ``data`` = a flat uint8 view of the pixels: no copy."""
    return message_class(**fields, data=pixels.reshape(-1).view(np.uint8))


@dataclass(frozen=True)
class MessageTypes:
    """One message family: its Image and CameraInfo classes, and how an Image gets its data
    (``build(Image, fields, pixels)``); PointCloud2 and PointField for ``point_cloud``."""

    image: type
    camera_info: type
    build: Callable[[type, dict[str, Any], np.ndarray], Any]
    point_cloud: type | None = None
    point_field: type | None = None


def ros_message_types() -> MessageTypes:
    """sensor_msgs' rclpy classes, for the node."""
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField

    return MessageTypes(image=Image, camera_info=CameraInfo, build=with_byte_array, point_cloud=PointCloud2,
                        point_field=PointField)


def image_message(types: MessageTypes, header: Any, pixels: np.ndarray, encoding: str) -> Any:
    """An Image carrying ``pixels`` in ``encoding`` (tightly packed rows) and ``header`` as given.

    The message may share memory with ``pixels`` (rosbags): serialise or publish it before
    the array is reused."""
    fields = image_fields(pixels, encoding)
    return types.build(types.image, dict(header=header, height=fields.height, width=fields.width,
                                         encoding=fields.encoding, is_bigendian=fields.is_bigendian,
                                         step=fields.step), fields.data)


def depth_camera_info(types: MessageTypes, header: Any, camera_info: Any) -> Any:
    """``depth/camera_info``: the camera's CameraInfo with the depth image's header.

    The predictor's outputs are always at the input's resolution, so the camera's
    intrinsics, distortion, rectification, binning and ROI describe the depth image
    exactly as they describe the camera image; only the header changes."""
    return types.camera_info(
        header=header, height=camera_info.height, width=camera_info.width,
        distortion_model=camera_info.distortion_model, d=camera_info.d, k=camera_info.k, r=camera_info.r,
        p=camera_info.p, binning_x=camera_info.binning_x, binning_y=camera_info.binning_y, roi=camera_info.roi)
