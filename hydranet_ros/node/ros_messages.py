"""The node's own rclpy messages (label info, diagnostics) and QoS profiles, built from
plain values. Images, camera info and point clouds come from the builders in
``messages/`` that the replay tool uses too."""
from __future__ import annotations

from typing import Any, Sequence

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Header, String

from ..messages.label_info import label_entries, label_info_json, label_info_message
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
    return QoSProfile(depth=choice.depth, reliability=reliability[choice.reliability],
                      durability=durability[choice.durability], history=HistoryPolicy.KEEP_LAST)


def reliability_name(policy: Any) -> str:
    return RELIABLE if policy == ReliabilityPolicy.RELIABLE else BEST_EFFORT


def label_info_msg(card: Any, stamp: Any) -> Any:
    """vision_msgs/LabelInfo where installed, else std_msgs/String JSON with the colours."""
    entries = label_entries(card.class_names, card.palette)
    if LabelInfo is None:
        return String(data=label_info_json(entries))
    return label_info_message(LabelInfo, VisionClass, Header(stamp=stamp), entries)


def diagnostic_status(name: str, health: Health, hardware_id: str,
                      pairs: Sequence[tuple[str, str]]) -> DiagnosticStatus:
    return DiagnosticStatus(level=LEVELS[health.level], name=name, message=health.message, hardware_id=hardware_id,
                            values=[KeyValue(key=key, value=value) for key, value in pairs])


def diagnostic_array(statuses: Sequence[DiagnosticStatus], stamp: Any) -> DiagnosticArray:
    """The statuses as diagnostic_updater would publish them (that package is not on PyPI,
    and one message needs no library)."""
    msg = DiagnosticArray(status=list(statuses))
    msg.header.stamp = stamp
    return msg
