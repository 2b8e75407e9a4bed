"""One camera of the node: its topics, what it publishes, its latest camera_info and its
statistics. Plain values and the rclpy objects the node made for it; no rclpy import.

With ``cameras: []`` the node has one camera named "" on the plain relative topics
(``image``, ``depth/image``, ...); with ``cameras: [front, left]`` each camera's topics
carry its name as a prefix (``front/image``, ``front/depth/image``, ...), remapped in
launch like the single camera's.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..messages.topics import topic_in
from .health import HealthJudge, Stats


def camera_list(names: Sequence[str]) -> tuple[str, ...]:
    """The cameras of a ``cameras`` parameter: its names, or the one unnamed camera."""
    return tuple(names) or ("",)


@dataclass
class Camera:
    """A camera's subscription, publishers and state. The publisher tables are replaced
    whole when live parameters add one, so the inference thread reads consistent values."""

    name: str
    stats: Stats
    judge: HealthJudge = field(default_factory=HealthJudge)
    subscription: Any = None
    reliability: str = ""
    listening_since: float = field(default_factory=time.monotonic)
    image_pubs: dict[str, Any] = field(default_factory=dict)
    info_pub: Any = None
    info_sub: Any = None
    points_pub: Any = None
    label_pub: Any = None
    camera_info: Any = None
    frame_size: tuple[int, int] | None = None   # (width, height) of its previous frame
    starved_note: str = ""

    def topic(self, relative: str) -> str:
        """The camera's own relative topic: ``depth/image`` -> ``front/depth/image``."""
        return topic_in(self.name, relative)

    @property
    def label(self) -> str:
        """How logs name it."""
        return f"camera '{self.name}'" if self.name else "the camera"

    def publishers(self) -> list[Any]:
        return [pub for pub in (*self.image_pubs.values(), self.info_pub, self.points_pub, self.label_pub)
                if pub is not None]

    def subscriptions(self) -> list[Any]:
        return [sub for sub in (self.subscription, self.info_sub) if sub is not None]
