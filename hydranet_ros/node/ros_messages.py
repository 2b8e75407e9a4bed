"""The node's rclpy messages and QoS profiles, built from plain values.

Kept apart from the node's logic so that the image and camera-info builders can move
onto the shared ``messages/`` builders (the replay tool's) in one place.
"""
from __future__ import annotations

import array
from typing import Any, Sequence

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, RegionOfInterest
from std_msgs.msg import String

from ..messages.camera_info import Intrinsics, scale_intrinsics
from ..messages.image import array_to_fields
from ..messages.label_info import label_entries, label_info_json
from .health import Health
from .qos import BEST_EFFORT, RELIABLE, QosChoice

try:
    from vision_msgs.msg import LabelInfo, VisionClass
except ImportError:
    LabelInfo = VisionClass = None

# the message type of segmentation/label_info
LABEL_INFO_TYPE = String if LabelInfo is None else LabelInfo
LEVELS = {"ok": DiagnosticStatus.OK, "warn": DiagnosticStatus.WARN, "error": DiagnosticStatus.ERROR}


def qos_profile(choice: QosChoice) -> QoSProfile:
    reliability = {BEST_EFFORT: ReliabilityPolicy.BEST_EFFORT, RELIABLE: ReliabilityPolicy.RELIABLE}
    durability = {"volatile": DurabilityPolicy.VOLATILE, "transient_local": DurabilityPolicy.TRANSIENT_LOCAL}
    history = {"keep_last": HistoryPolicy.KEEP_LAST, "keep_all": HistoryPolicy.KEEP_ALL}
    return QoSProfile(depth=choice.depth, reliability=reliability[choice.reliability],
                      durability=durability[choice.durability], history=history[choice.history])


def reliability_name(policy: Any) -> str:
    return RELIABLE if policy == ReliabilityPolicy.RELIABLE else BEST_EFFORT


def image_msg(header: Any, pixels: np.ndarray, encoding: str) -> Image:
    fields = array_to_fields(pixels, encoding)
    msg = Image(header=header, height=fields.height, width=fields.width, encoding=fields.encoding,
                is_bigendian=fields.is_bigendian, step=fields.step)
    # an array.array('B') is stored as is; bytes or a list would be checked element by element
    msg.data = array.array("B", fields.data)
    return msg


def depth_camera_info_msg(source: CameraInfo, header: Any, input_size: tuple[int, int],
                          output_size: tuple[int, int]) -> CameraInfo:
    roi = source.roi
    scaled = scale_intrinsics(
        Intrinsics(width=source.width, height=source.height, k=tuple(source.k), p=tuple(source.p),
                   roi=(roi.x_offset, roi.y_offset, roi.width, roi.height)),
        input_size, output_size)
    x, y, w, h = scaled.roi
    return CameraInfo(
        header=header, width=scaled.width, height=scaled.height,
        distortion_model=source.distortion_model, d=list(source.d), k=list(scaled.k),
        r=list(source.r), p=list(scaled.p), binning_x=source.binning_x, binning_y=source.binning_y,
        roi=RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h, do_rectify=roi.do_rectify))


def label_info_msg(card: Any, stamp: Any) -> Any:
    """vision_msgs/LabelInfo where installed, else std_msgs/String JSON with the colours."""
    entries = label_entries(card.class_names, card.palette)
    if LabelInfo is None:
        return String(data=label_info_json(entries))
    msg = LabelInfo(class_map=[VisionClass(class_id=e.class_id, class_name=e.name) for e in entries],
                    threshold=0.0)   # labels are an argmax; no confidence threshold is applied
    msg.header.stamp = stamp
    return msg


def diagnostic_array(name: str, health: Health, hardware_id: str, pairs: Sequence[tuple[str, str]],
                     stamp: Any) -> DiagnosticArray:
    """One status as diagnostic_updater would publish it (that package is not on PyPI, and
    one message needs no library)."""
    status = DiagnosticStatus(level=LEVELS[health.level], name=name, message=health.message,
                              hardware_id=hardware_id,
                              values=[KeyValue(key=key, value=value) for key, value in pairs])
    msg = DiagnosticArray(status=[status])
    msg.header.stamp = stamp
    return msg
