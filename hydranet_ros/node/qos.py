"""The node's QoS choices as plain values; node.py maps them onto rclpy's enums.

Why the image subscription adapts to the camera (``qos_reliability: auto``): measured
with Fast DDS (the Jazzy default) on one machine, a best-effort subscription lost about
half of a reliable camera's raw rgb8 frames at 640x480 and 30 Hz and most of them at
1920x1080, because the transport drops large best-effort samples; a reliable
subscription received every frame it could keep up with (README, "QoS"). A reliable
subscription, however, never matches a best-effort camera. So the node asks the graph
what the camera offers and subscribes reliable when every publisher is reliable, as
``ros2 topic echo`` and rosbag2 do.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from .parameters import NodeConfig

RELIABLE, BEST_EFFORT = "reliable", "best_effort"


@dataclass(frozen=True)
class QosChoice:
    """Every profile keeps the last ``depth`` messages: none of them may queue without bound."""

    reliability: str   # "best_effort" | "reliable"
    depth: int
    durability: str = "volatile"   # "volatile" | "transient_local"


def choose_reliability(requested: str, offered: Iterable[str]) -> str:
    """The image subscription's reliability for ``requested`` (auto, best_effort or reliable)
    given what the topic's publishers offer: auto subscribes reliable only when there are
    publishers and every one is reliable (anything else would not match them all)."""
    if requested != "auto":
        return requested
    offered = list(offered)
    return RELIABLE if offered and all(o == RELIABLE for o in offered) else BEST_EFFORT


def subscription_qos(config: NodeConfig, offered: Iterable[str] = ()) -> QosChoice:
    """Keep the newest frame(s) only; reliability as ``choose_reliability`` says."""
    return QosChoice(reliability=choose_reliability(config.qos_reliability, offered), depth=config.qos_depth)


# Outputs are reliable (RViz and recorders default to reliable) but keep only the newest
# frame, so a slow subscriber never makes the node hold old images.
PUBLISHER_QOS = QosChoice(reliability=RELIABLE, depth=1)


# Camera drivers publish camera_info reliable or best effort; best effort accepts both,
# and a camera_info message is small enough that the transport does not drop it.
CAMERA_INFO_QOS = QosChoice(reliability=BEST_EFFORT, depth=1)


# Class names and colours are sent once; late joiners get them from the publisher's history.
LATCHED_QOS = QosChoice(reliability=RELIABLE, depth=1, durability="transient_local")

# /diagnostics as diagnostic_updater publishes it
DIAGNOSTICS_QOS = QosChoice(reliability=RELIABLE, depth=10)
