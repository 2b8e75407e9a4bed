"""The node's QoS choices as plain values; node.py maps them onto rclpy's enums."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .parameters import NodeConfig


@dataclass(frozen=True)
class QosChoice:
    reliability: str   # "best_effort" | "reliable"
    depth: int
    durability: str = "volatile"   # "volatile" | "transient_local"
    history: str = "keep_last"


def subscription_qos(config: NodeConfig) -> QosChoice:
    """Sensor-data style by default: best effort matches reliable and best-effort publishers."""
    return QosChoice(reliability=config.qos_reliability, depth=config.qos_depth)


# Outputs are reliable (RViz and recorders default to reliable) but keep only the newest
# frame, so a slow subscriber never makes the node hold old images.
PUBLISHER_QOS = QosChoice(reliability="reliable", depth=1)


# Camera drivers publish camera_info reliable or best effort; best effort accepts both.
CAMERA_INFO_QOS = QosChoice(reliability="best_effort", depth=1)


# Class names and colours are sent once; late joiners get them from the publisher's history.
LATCHED_QOS = QosChoice(reliability="reliable", depth=1, durability="transient_local")
